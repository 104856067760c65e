// fuzz_idx.c: IDX bytes through data_idx_decode, then as a file through the
// data set loader, as images alone and as images with themselves for labels.
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[1024] = "";
  IdxFile idx;
  bool ok = data_idx_decode(data, size, "fuzz.idx", &idx, err, sizeof err);
  fuzz_check_message(ok, err, "data_idx_decode");
  if (ok)
    data_idx_free(&idx);
  const char *path = fuzz_file(data, size);
  Dataset ds;
  for (int labels = 0; labels < 2; labels++) {
    err[0] = 0;
    ok = data_load_idx(path, labels ? path : NULL, labels ? 0 : 10, &ds, err, sizeof err);
    fuzz_check_message(ok, err, "data_load_idx");
    if (ok)
      data_free(&ds);
  }
  return 0;
}
