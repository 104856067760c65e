// augment.c: data augmentation of training images, on the fly: random
// translation (shift, and PyTorch's RandomCrop with padding), horizontal
// flip, rotation with bilinear sampling, each filling with zeros what
// comes from outside the image; and Gaussian noise on any input.
//
// Every sample draws from a generator of its own, seeded by the run's seed,
// the epoch and the sample's place in the epoch's order: a batch's bytes do
// not depend on the thread count, on the batch size's split into steps
// before it, or on a resume in the middle of the epoch.
#include "data.h"

#include <math.h>
#include <string.h>

// splitmix64's finalizer: spreads nearby inputs over the whole word.
static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void data_augment_seed(Rng *r, uint64_t seed, int64_t epoch, int64_t sample) {
  rng_seed(r, mix(seed ^ mix((uint64_t)epoch * 0x9e3779b97f4a7c15ULL + (uint64_t)sample)), RT_STREAM_AUGMENT);
}

bool data_augment_geometric(const DataAugment *a) {
  return a->shift > 0 || a->crop > 0 || a->hflip || a->rotate > 0;
}

void data_image_translate(float *out, const float *img, int64_t C, int64_t H, int64_t W, int64_t dy, int64_t dx) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t y = 0; y < H; y++) {
      float *o = out + (c * H + y) * W;
      int64_t sy = y - dy;
      for (int64_t x = 0; x < W; x++) {
        int64_t sx = x - dx;
        o[x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? img[(c * H + sy) * W + sx] : 0.0f;
      }
    }
}

// Pixel (y, x) of plane p, or 0 outside it.
static double at(const float *p, int64_t H, int64_t W, int64_t y, int64_t x) {
  return y >= 0 && y < H && x >= 0 && x < W ? p[y * W + x] : 0.0;
}

// Each output pixel samples the input where the inverse rotation takes it.
void data_image_rotate(float *out, const float *img, int64_t C, int64_t H, int64_t W, double deg) {
  double t = deg * M_PI / 180, cs = cos(t), sn = sin(t), cy = (H - 1) / 2.0, cx = (W - 1) / 2.0;
  for (int64_t c = 0; c < C; c++) {
    const float *p = img + c * H * W;
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) {
        double ox = x - cx, oy = y - cy;
        double sx = ox * cs - oy * sn + cx, sy = ox * sn + oy * cs + cy;
        double fx = floor(sx), fy = floor(sy), wx = sx - fx, wy = sy - fy;
        int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
        double v = (1 - wy) * ((1 - wx) * at(p, H, W, y0, x0) + wx * at(p, H, W, y0, x0 + 1)) +
                   wy * ((1 - wx) * at(p, H, W, y0 + 1, x0) + wx * at(p, H, W, y0 + 1, x0 + 1));
        out[(c * H + y) * W + x] = (float)v;
      }
  }
}

void data_image_flip(float *img, int64_t C, int64_t H, int64_t W) {
  for (int64_t row = 0; row < C * H; row++)
    for (int64_t x = 0; x < W / 2; x++) {
      float t = img[row * W + x];
      img[row * W + x] = img[row * W + W - 1 - x];
      img[row * W + W - 1 - x] = t;
    }
}

void data_augment_image(float *img, int64_t C, int64_t H, int64_t W, const DataAugment *a, Rng *r,
                        float *scratch) {
  int64_t n = C * H * W;
  if (a->crop > 0) {   // RandomCrop(padding = crop): the window's corner in the padded image
    int64_t top = rng_below(r, (uint32_t)(2 * a->crop + 1)), left = rng_below(r, (uint32_t)(2 * a->crop + 1));
    data_image_translate(scratch, img, C, H, W, a->crop - top, a->crop - left);
    memcpy(img, scratch, sizeof(float) * n);
  }
  if (a->shift > 0) {
    int64_t dy = (int64_t)rng_below(r, (uint32_t)(2 * a->shift + 1)) - a->shift;
    int64_t dx = (int64_t)rng_below(r, (uint32_t)(2 * a->shift + 1)) - a->shift;
    data_image_translate(scratch, img, C, H, W, dy, dx);
    memcpy(img, scratch, sizeof(float) * n);
  }
  if (a->hflip && rng_below(r, 2))
    data_image_flip(img, C, H, W);
  if (a->rotate > 0) {
    double deg = (2 * rng_uniform(r) - 1) * a->rotate;
    data_image_rotate(scratch, img, C, H, W, deg);
    memcpy(img, scratch, sizeof(float) * n);
  }
}

void data_augment_noise(float *x, int64_t n, double std, Rng *r) {
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)(x[i] + std * rng_normal(r));
}
