// idx_png.c: images of an IDX file written as 8-bit grayscale PNG files,
// for the examples' tests (nothing else on the machine writes PNG).
//
//   idx_png IMAGES.idx[.gz] FIRST COUNT OUT_PREFIX
//
// writes images FIRST .. FIRST+COUNT-1 as OUT_PREFIX<i>.png, each with the
// image's width and height from the IDX header, pixels as stored.
#include "nncrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

// One chunk: length, type, data, CRC of type and data.
static void chunk(FILE *f, const char *type, const unsigned char *data, uint32_t len) {
  unsigned char head[8], tail[4];
  put32(head, len);
  for (int i = 0; i < 4; i++)
    head[4 + i] = type[i];
  uLong crc = crc32(0, head + 4, 4);
  if (len)   // crc32 with a NULL buffer would start over
    crc = crc32(crc, data, len);
  put32(tail, crc);
  fwrite(head, 1, 8, f);
  fwrite(data, 1, len, f);
  fwrite(tail, 1, 4, f);
}

static int write_png(const char *path, const float *pixels, int w, int h) {
  uLong raw_len = (uLong)(w + 1) * h, packed_len = compressBound(raw_len);
  unsigned char *raw = malloc(raw_len), *packed = malloc(packed_len);
  for (int y = 0; y < h; y++) {
    raw[y * (w + 1)] = 0;   // filter type None
    for (int x = 0; x < w; x++)
      raw[y * (w + 1) + 1 + x] = (unsigned char)(pixels[y * w + x] * 255 + 0.5f);
  }
  FILE *f = fopen(path, "wb");
  int status = !f || compress2(packed, &packed_len, raw, raw_len, 9) != Z_OK ? -1 : 0;
  if (f && status == 0) {
    unsigned char ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8;   // bit depth 8, colour type 0 (gray), no interlace
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    chunk(f, "IHDR", ihdr, 13);
    chunk(f, "IDAT", packed, packed_len);
    chunk(f, "IEND", NULL, 0);
  }
  if (f && fclose(f))
    status = -1;
  free(raw);
  free(packed);
  return status;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: idx_png IMAGES.idx[.gz] FIRST COUNT OUT_PREFIX\n");
    return 2;
  }
  char err[1024], path[4096];
  float *x;
  int32_t *y;
  int64_t n, dim, first = atoll(argv[2]), count = atoll(argv[3]);
  if (nncrt_read_idx(argv[1], NULL, &x, &y, &n, &dim, err, sizeof err)) {
    fprintf(stderr, "idx_png: %s\n", err);
    return 1;
  }
  int side = 1;
  while ((int64_t)side * side < dim)
    side++;
  if ((int64_t)side * side != dim || first < 0 || count < 0 || first + count > n) {
    fprintf(stderr, "idx_png: %s holds %lld images of %lld pixels: not square, or fewer than asked\n", argv[1],
            (long long)n, (long long)dim);
    return 1;
  }
  for (int64_t i = first; i < first + count; i++) {
    snprintf(path, sizeof path, "%s%lld.png", argv[4], (long long)i);
    if (write_png(path, x + i * dim, side, side)) {
      fprintf(stderr, "idx_png: cannot write %s\n", path);
      return 1;
    }
  }
  nncrt_free(x);
  return 0;
}
