// fuzz_idx_gz.c: gzip-compressed IDX. An input that starts with gzip's
// magic bytes is read as it is (corrupt, cut-off and concatenated streams,
// trailing bytes); any other input is compressed first, so that arbitrary
// IDX content reaches the streaming reader through valid gzip.
#include "fuzz.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char *gz = NULL;
  size_t n = size;
  if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) {
    z_stream zs = {0};
    if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      abort();
    n = deflateBound(&zs, size);
    gz = malloc(n);
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = gz;
    zs.avail_out = (uInt)n;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
      abort();
    n = zs.total_out;
    deflateEnd(&zs);
  }
  const unsigned char *in = gz ? gz : data;
  char err[1024] = "";
  IdxFile idx;
  bool ok = data_idx_decode(in, n, "fuzz.idx.gz", &idx, err, sizeof err);
  fuzz_check_message(ok, err, "data_idx_decode");
  if (ok)
    data_idx_free(&idx);
  err[0] = 0;
  ok = data_idx_read(fuzz_file(in, n), &idx, err, sizeof err);   // the same through a file
  fuzz_check_message(ok, err, "data_idx_read");
  if (ok)
    data_idx_free(&idx);
  free(gz);
  return 0;
}
