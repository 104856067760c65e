// fuzz_image.c: PNG, PGM and PPM through rt_image_decode, then resized to
// 28x28 and to a thin 1x7. Every pixel must lie in [0, 1].
#include "fuzz.h"

static void check_pixels(const RtImage *img) {
  for (int64_t i = 0; i < (int64_t)img->w * img->h; i++)
    if (!(img->px[i] >= 0 && img->px[i] <= 1.0001f)) {
      fprintf(stderr, "pixel %lld of %dx%d is %g\n", (long long)i, img->w, img->h, img->px[i]);
      abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[1024] = "";
  RtImage img, r;
  bool ok = rt_image_decode(data, size, "fuzz.png", &img, err, sizeof err);
  fuzz_check_message(ok, err, "rt_image_decode");
  if (!ok)
    return 0;
  check_pixels(&img);
  rt_image_resize(&img, 28, 28, &r);
  check_pixels(&r);
  rt_image_free(&r);
  rt_image_resize(&img, 1, 7, &r);
  check_pixels(&r);
  rt_image_free(&r);
  rt_image_free(&img);
  return 0;
}
