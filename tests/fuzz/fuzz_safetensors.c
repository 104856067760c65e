// fuzz_safetensors.c: checkpoints through data_st_read. A file that reads
// must describe tensors that lie inside it, aligned, each found by name;
// read by its header alone (data_st_read_header), it must say the same,
// and each tensor read on its own must be the whole read's bytes.
#include "fuzz.h"

static volatile unsigned char sink;   // keeps the reads of tensor data

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[1024] = "";
  StFile f;
  bool ok = data_st_read(fuzz_file(data, size), &f, err, sizeof err);
  fuzz_check_message(ok, err, "data_st_read");
  if (!ok)
    return 0;
  size_t total = 0;
  for (int i = 0; i < f.ntensors; i++) {
    const StTensor *t = &f.tensors[i];
    size_t n = data_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
      n *= (size_t)t->shape[d];
    if (n != t->nbytes || (n && !t->data) || (uintptr_t)t->data % data_dtype_size(t->dtype) ||
        data_st_find(&f, t->name) != t)
      abort();
    for (size_t k = 0; k < n; k++)   // every byte must be readable
      sink ^= ((const unsigned char *)t->data)[k];
    total += n;
  }
  if (total > f.size)
    abort();
  for (int i = 0; i < f.nmeta; i++)
    if (data_st_meta(&f, f.meta[i].key) != f.meta[i].value)
      abort();
  StFile h;
  if (!data_st_read_header(f.path, &h, err, sizeof err) || h.ntensors != f.ntensors || h.nmeta != f.nmeta)
    abort();
  for (int i = 0; i < h.ntensors; i++) {
    const StTensor *a = &f.tensors[i], *b = &h.tensors[i];
    unsigned char *buf = malloc(b->nbytes ? b->nbytes : 1);
    if (strcmp(a->name, b->name) || a->nbytes != b->nbytes || b->data ||
        !data_st_read_tensor(&h, b, buf, err, sizeof err) || memcmp(buf, a->data, a->nbytes))
      abort();
    free(buf);
  }
  data_st_free(&h);
  data_st_free(&f);
  return 0;
}
