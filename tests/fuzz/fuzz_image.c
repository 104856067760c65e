// fuzz_image.c: PNG, PGM and PPM through data_image_decode, then resized to
// 28x28 and to a thin 1x7. Every pixel must lie in [0, 1]. A PNG is
// decoded twice: as it is, and with every chunk's CRC made right, since
// mutations that break a CRC would otherwise never get past the check.
#include "fuzz.h"

#include <zlib.h>

static void check_pixels(const Image *img) {
  for (int64_t i = 0; i < (int64_t)img->w * img->h; i++)
    if (!(img->px[i] >= 0 && img->px[i] <= 1.0001f)) {
      fprintf(stderr, "pixel %lld of %dx%d is %g\n", (long long)i, img->w, img->h, img->px[i]);
      abort();
    }
}

// A copy of a PNG with the CRC of each whole chunk recomputed.
static unsigned char *fix_crcs(const uint8_t *data, size_t size) {
  unsigned char *b = malloc(size);
  memcpy(b, data, size);
  for (size_t pos = 8; size - pos >= 12;) {
    uint32_t n = (uint32_t)b[pos] << 24 | b[pos + 1] << 16 | b[pos + 2] << 8 | b[pos + 3];
    if (n > size - pos - 12)
      break;
    uint32_t c = (uint32_t)crc32(0, b + pos + 4, n + 4);
    for (int i = 0; i < 4; i++)
      b[pos + 8 + n + i] = (unsigned char)(c >> (24 - 8 * i));
    pos += 12 + (size_t)n;
  }
  return b;
}

static void decode(const uint8_t *data, size_t size) {
  char err[1024] = "";
  Image img, r;
  bool ok = data_image_decode(data, size, "fuzz.png", &img, err, sizeof err);
  fuzz_check_message(ok, err, "data_image_decode");
  if (!ok)
    return;
  check_pixels(&img);
  data_image_resize(&img, 28, 28, &r);
  check_pixels(&r);
  data_image_free(&r);
  data_image_resize(&img, 1, 7, &r);
  check_pixels(&r);
  data_image_free(&r);
  data_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size);
  if (size >= 8 && !memcmp(data, "\x89PNG", 4)) {
    unsigned char *fixed = fix_crcs(data, size);
    decode(fixed, size);
    free(fixed);
  }
  return 0;
}
