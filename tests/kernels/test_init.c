// test_init.c: the initializers and PyTorch's default bounds. Constant
// fills are checked exactly; random ones for range, determinism (the same
// Rng state gives the same numbers) and moments over 200000 draws, within
// 5 standard errors of the expected mean and variance.
#include "../test.h"
#include "runtime.h"

#define NDRAW 200000

static void test_constants(void) {
  float p[7];
  bool ok = true;
  k_init_zeros(p, 7);
  for (int i = 0; i < 7; i++)
    ok = ok && p[i] == 0.0f && !signbit(p[i]);
  CHECK(ok, "zeros");
  k_init_ones(p, 7);
  for (int i = 0; i < 7; i++)
    ok = ok && p[i] == 1.0f;
  CHECK(ok, "ones");
  k_init_constant(p, 7, -2.5f);
  for (int i = 0; i < 7; i++)
    ok = ok && p[i] == -2.5f;
  CHECK(ok, "constant");
}

static void moments(const float *p, int64_t n, double *mean, double *var) {
  double s = 0, sq = 0;
  for (int64_t i = 0; i < n; i++)
    s += p[i];
  *mean = s / n;
  for (int64_t i = 0; i < n; i++)
    sq += (p[i] - *mean) * (p[i] - *mean);
  *var = sq / n;
}

static void test_uniform(float lo, float hi) {
  float *p = xmalloc(NDRAW * sizeof(float)), *q = xmalloc(NDRAW * sizeof(float));
  Rng r, r0;
  rng_seed(&r, 1234, 3);
  r0 = r;
  k_init_uniform(p, NDRAW, lo, hi, &r);
  bool in_range = true;
  for (int i = 0; i < NDRAW; i++)
    in_range = in_range && p[i] >= lo && p[i] <= hi;
  char what[120];
  snprintf(what, sizeof what, "uniform(%g, %g) within bounds", lo, hi);
  CHECK(in_range, "%s", what);

  // The first draw is exactly lo + (hi - lo) * rng_uniformf of the same state.
  Rng replay = r0;
  float first = lo + (hi - lo) * rng_uniformf(&replay);
  snprintf(what, sizeof what, "uniform(%g, %g) draws rng_uniformf in order", lo, hi);
  CHECK(p[0] == first, "%s", what);

  Rng again = r0;
  k_init_uniform(q, NDRAW, lo, hi, &again);
  snprintf(what, sizeof what, "uniform(%g, %g) is deterministic", lo, hi);
  CHECK(memcmp(p, q, NDRAW * sizeof(float)) == 0 && memcmp(&r, &again, sizeof r) == 0, "%s", what);

  double mean, var, w = (double)hi - lo;
  moments(p, NDRAW, &mean, &var);
  double want_mean = ((double)lo + hi) / 2, want_var = w * w / 12;
  double se_mean = sqrt(want_var / NDRAW), se_var = want_var * sqrt(0.8 / NDRAW);
  printf("  mean %.5f (want %.5f), variance %.5f (want %.5f)\n", mean, want_mean, var, want_var);
  snprintf(what, sizeof what, "uniform(%g, %g) mean and variance", lo, hi);
  CHECK(fabs(mean - want_mean) < 5 * se_mean && fabs(var - want_var) < 5 * se_var, "%s", what);
  free(p), free(q);
}

static void test_normal(float mean_, float std) {
  float *p = xmalloc(NDRAW * sizeof(float)), *q = xmalloc(NDRAW * sizeof(float));
  Rng r, r0;
  rng_seed(&r, 99, 5);
  r0 = r;
  k_init_normal(p, NDRAW, mean_, std, &r);
  Rng again = r0;
  k_init_normal(q, NDRAW, mean_, std, &again);
  char what[120];
  snprintf(what, sizeof what, "normal(%g, %g) is deterministic", mean_, std);
  CHECK(memcmp(p, q, NDRAW * sizeof(float)) == 0, "%s", what);

  double mean, var, want_var = (double)std * std;
  moments(p, NDRAW, &mean, &var);
  double se_mean = std / sqrt(NDRAW), se_var = want_var * sqrt(2.0 / NDRAW);
  printf("  mean %.5f (want %.5f), variance %.5f (want %.5f)\n", mean, mean_, var, want_var);
  snprintf(what, sizeof what, "normal(%g, %g) mean and variance", mean_, std);
  CHECK(fabs(mean - mean_) < 5 * se_mean && fabs(var - want_var) < 5 * se_var, "%s", what);
  free(p), free(q);
}

static void test_bounds(void) {
  double got[6], want[6];
  int64_t fans[] = {1, 3, 784, 1000};
  for (int i = 0; i < 4; i++) {   // a = sqrt(5) gives 1/sqrt(fan_in)
    got[i] = k_default_weight_bound(fans[i]);
    want[i] = 1 / sqrt((double)fans[i]);
  }
  got[4] = k_kaiming_uniform_bound(50, 0);        // relu gain sqrt(2): sqrt(6/fan_in)
  want[4] = sqrt(6.0 / 50);
  got[5] = k_kaiming_uniform_bound(8, 1);         // gain 1: sqrt(3/fan_in)
  want[5] = sqrt(3.0 / 8);
  bool ok = true;
  for (int i = 0; i < 6; i++) {
    ok = ok && fabs(got[i] - want[i]) <= 1e-12 * want[i];
    if (fabs(got[i] - want[i]) > 1e-12 * want[i])
      printf("  bound %d: got %.17g, want %.17g\n", i, got[i], want[i]);
  }
  CHECK(ok, "kaiming_uniform bounds");
  CHECK(fabs(k_default_bias_bound(25) - 0.2) < 1e-15 && k_default_bias_bound(0) == 0 &&
        k_default_weight_bound(0) == 0, "bias bound 1/sqrt(fan_in)");
}

int main(void) {
  test_constants();
  test_uniform(0, 1);
  test_uniform(-0.125f, 0.125f);
  test_uniform(2, 5);
  test_normal(0, 1);
  test_normal(0.5f, 0.02f);
  test_bounds();
  return t_finish("test_init");
}
