// test_augment.c: data augmentation (data/augment.c): each transform on
// small images whose result is known (translations with zero fill, the
// horizontal flip, rotations by 90 and 180 degrees and by 0, a rotation
// that samples between pixels); RandomCrop's offsets, each of the
// (2k + 1)^2 equally likely; the flip's probability; noise of the asked
// standard deviation; and determinism: one sample's generator gives the
// same bytes however often it is drawn, another sample other bytes.
#include "../test.h"
#include "data.h"

static const float img3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};   // [1, 3, 3]

static void test_translate(void) {
  float out[18];
  data_image_translate(out, img3, 1, 3, 3, 1, -1);   // down one, left one
  static const float want[9] = {0, 0, 0, 2, 3, 0, 5, 6, 0};
  t_equal("translate (1, -1)", out, want, 9);
  data_image_translate(out, img3, 1, 3, 3, 0, 0);
  t_equal("translate (0, 0)", out, img3, 9);
  data_image_translate(out, img3, 1, 3, 3, -3, 0);   // all of it outside
  static const float zero[9] = {0};
  t_equal("translate past the edge", out, zero, 9);
  float two[18], want2[18];   // two channels move alike
  for (int i = 0; i < 18; i++)
    two[i] = (float)(i + 1);
  data_image_translate(out, two, 2, 3, 3, 0, 1);
  for (int c = 0; c < 2; c++)
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 3; x++)
        want2[(c * 3 + y) * 3 + x] = x == 0 ? 0 : two[(c * 3 + y) * 3 + x - 1];
  t_equal("translate two channels", out, want2, 18);
}

static void test_flip(void) {
  float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};   // [2, 1, 4]
  data_image_flip(v, 2, 1, 4);
  static const float want[8] = {4, 3, 2, 1, 8, 7, 6, 5};
  t_equal("flip", v, want, 8);
  float odd[3] = {1, 2, 3};
  data_image_flip(odd, 1, 1, 3);
  static const float want_odd[3] = {3, 2, 1};
  t_equal("flip an odd width", odd, want_odd, 3);
}

static void test_rotate(void) {
  float out[9];
  data_image_rotate(out, img3, 1, 3, 3, 90);   // counter-clockwise: the right column goes to the top
  t_close("rotate 90", out, (const double[]){3, 6, 9, 2, 5, 8, 1, 4, 7}, 9, 1e-5, 0);
  data_image_rotate(out, img3, 1, 3, 3, -90);
  t_close("rotate -90", out, (const double[]){7, 4, 1, 8, 5, 2, 9, 6, 3}, 9, 1e-5, 0);
  data_image_rotate(out, img3, 1, 3, 3, 180);
  t_close("rotate 180", out, (const double[]){9, 8, 7, 6, 5, 4, 3, 2, 1}, 9, 1e-5, 0);
  data_image_rotate(out, img3, 1, 3, 3, 0);
  t_equal("rotate 0", out, img3, 9);
  // 45 degrees: the centre stays; a corner samples outside (zero fill), the
  // top middle samples between pixels, at (x, y) = (1 + s, 1 - s), s =
  // sqrt(1/2): bilinear over 2, 3 (weight s) and 5, 6 (weight 1 - s).
  float one[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
  data_image_rotate(out, one, 1, 3, 3, 45);
  double s = sqrt(0.5), w = (1 - s) * (1 - s);   // the weight of the centre pixel
  CHECK(fabs(out[4] - 1) < 1e-6 && out[0] == 0 && fabs(out[1] - w) < 1e-6,
        "rotate 45: centre %g, corner %g, top %g (want %g)", out[4], out[0], out[1], w);
  data_image_rotate(out, img3, 1, 3, 3, 45);
  double top = s * ((1 - s) * 2 + s * 3) + (1 - s) * ((1 - s) * 5 + s * 6);
  CHECK(fabs(out[1] - top) < 1e-5, "rotate 45: top %g, want %g", out[1], top);
}

// crop = k: one of the (2k + 1)^2 translations, each about equally often;
// hflip: half the time.
static void test_random(void) {
  DataAugment crop = {.crop = 1}, flip = {.hflip = true};
  int seen[9] = {0}, flips = 0, n = 9000;
  float scratch[9];
  for (int i = 0; i < n; i++) {
    Rng r;
    data_augment_seed(&r, 5, 0, i);
    float v[9];
    memcpy(v, img3, sizeof v);
    data_augment_image(v, 1, 3, 3, &crop, &r, scratch);
    int found = -1;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        float t[9];
        data_image_translate(t, img3, 1, 3, 3, dy, dx);
        if (!memcmp(t, v, sizeof t))
          found = (dy + 1) * 3 + dx + 1;
      }
    CHECK(found >= 0, "crop 1: sample %d is no translation by at most 1", i);
    if (found >= 0)
      seen[found]++;
    data_augment_seed(&r, 5, 0, i);
    memcpy(v, img3, sizeof v);
    data_augment_image(v, 1, 3, 3, &flip, &r, scratch);
    flips += v[0] == 3;
  }
  for (int k = 0; k < 9; k++)
    CHECK(seen[k] > 850 && seen[k] < 1150, "crop 1: offset %d drawn %d times of %d", k, seen[k], n);
  CHECK(flips > 4300 && flips < 4700, "hflip: %d flips of %d", flips, n);
}

static void test_noise_and_determinism(void) {
  enum { N = 100000 };
  static float x[N], y[N];
  Rng r;
  data_augment_seed(&r, 1, 2, 3);
  data_augment_noise(x, N, 0.5, &r);
  double s = 0, s2 = 0;
  for (int i = 0; i < N; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
  }
  double mean = s / N, sd = sqrt(s2 / N - mean * mean);
  CHECK(fabs(mean) < 0.01 && fabs(sd - 0.5) < 0.01, "noise 0.5: mean %g, std %g", mean, sd);
  data_augment_seed(&r, 1, 2, 3);
  data_augment_noise(y, N, 0.5, &r);
  t_equal("the same sample's noise again", y, x, N);
  // every transform at once, twice from one sample's generator: the same bytes
  DataAugment all = {.shift = 1, .crop = 1, .hflip = true, .rotate = 30, .noise = 0.1};
  float a[9], b[9], scratch[9];
  memcpy(a, img3, sizeof a);
  memcpy(b, img3, sizeof b);
  data_augment_seed(&r, 7, 1, 42);
  data_augment_image(a, 1, 3, 3, &all, &r, scratch);
  data_augment_seed(&r, 7, 1, 42);
  data_augment_image(b, 1, 3, 3, &all, &r, scratch);
  t_equal("one sample twice", a, b, 9);
  Rng p, q;
  data_augment_seed(&p, 7, 1, 42);
  data_augment_seed(&q, 7, 1, 43);
  CHECK(p.state != q.state || p.inc != q.inc, "two samples share a generator");
  data_augment_seed(&q, 7, 2, 42);
  CHECK(p.state != q.state || p.inc != q.inc, "two epochs share a generator");
  CHECK(data_augment_geometric(&all) && !data_augment_geometric(&(DataAugment){.noise = 1}), "geometric");
}

int main(void) {
  test_translate();
  test_flip();
  test_rotate();
  test_random();
  test_noise_and_determinism();
  return t_finish("test_augment");
}
