// rational_check.h: the points the compiled erf and tanh (KI_ERF and
// KI_TANH: codegen/llvm.c's emit_erf and emit_tanh, the CUDA prelude's
// nnc_erf and nnc_tanh, rational functions) are checked at, and the
// checks, for test_codegen and test_cuda_shim. Include after test.h.
#ifndef NNC_RATIONAL_CHECK_H
#define NNC_RATIONAL_CHECK_H

// x[0..dense) a grid over [-lim, lim], x[dense..n) magnitudes from 1e-30
// to 1e3, of alternate signs.
static void grid_and_magnitudes(float *x, int n, int dense, float lim) {
  for (int i = 0; i < dense; i++)
    x[i] = -lim + 2 * lim * (float)i / (dense - 1);
  for (int i = dense; i < n; i++)
    x[i] = (i & 1 ? -1.0f : 1.0f) * powf(10.0f, -30 + 33.0f * (float)(i - dense) / (n - dense));
}

// A dense grid over [-6, 6], magnitudes from 1e-30 to 1e3 of both signs,
// 0.921875 and its neighbours, 4 (where the argument is held) and past
// it, the infinities and NaN.
#define ERF_POINTS 65536
static void erf_points(float *x) {
  grid_and_magnitudes(x, ERF_POINTS, 49152, 6.0f);
  x[0] = 0.921875f;
  x[1] = nextafterf(0.921875f, 1);
  x[2] = -nextafterf(0.921875f, 0);
  x[3] = INFINITY;
  x[4] = -INFINITY;
  x[5] = NAN;
  x[6] = 0;
  x[7] = 4;
  x[8] = nextafterf(4, 5);
}

// y = erf(x) within 4e-7 relative of double erf (a float holds erf to 6e-8
// relative at best; the rational approximation's own error is about 3e-7,
// near |x| = 4), 0 at 0, +-1 at the infinities, NaN at NaN; prints the
// worst errors.
static void erf_check(const char *what, const float *x, const float *y) {
  double worst_abs = 0, worst_rel = 0;
  int bad = 0;
  for (int i = 0; i < ERF_POINTS; i++) {
    if (isnan(x[i])) {
      CHECK(isnan(y[i]), "%s: erf(NaN) = %g", what, y[i]);
      continue;
    }
    double want = erf((double)x[i]), e = fabs(y[i] - want);
    worst_abs = fmax(worst_abs, e);
    if (want != 0)
      worst_rel = fmax(worst_rel, e / fabs(want));
    bool ok = want == 0 ? y[i] == 0 : e <= 4e-7 * fabs(want);
    if (!ok && bad++ < 5)
      printf("  %s: erf(%.9g) = %.9g, double erf %.17g\n", what, x[i], y[i], want);
  }
  printf("%s: %d points, worst error %.2e absolute, %.2e relative\n", what, ERF_POINTS, worst_abs, worst_rel);
  CHECK(bad == 0, "%s: %d points off", what, bad);
}

#define TANH_POINTS 65536
// tanh(x) against double tanh: a dense grid over [-10, 10], magnitudes
// from 1e-30 to 1e3 of both signs, the points where the argument is held
// (7.75607491), just below it and where it would pass 1, the infinities,
// -0, denormals and NaN. The compiled form is a rational function within
// 3.7e-7 of tanh relative to it (codegen/llvm.c, and the prelude's
// nnc_tanh), exact for tiny arguments, never past +-1.
static void tanh_points(float *xv) {
  grid_and_magnitudes(xv, TANH_POINTS, TANH_POINTS / 2, 10.0f);
  float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 7.75607491f, -7.75607491f,
                     7.756074f, 7.88820982f, 9.0f, 1e-30f, -1e-38f, 1e-45f};
  for (int i = 0; i < countof(special); i++)
    xv[TANH_POINTS - 1 - i] = special[i];
}

static void tanh_check(const char *what, const float *xv, const float *y) {
  int bad = 0;
  double worst = 0;
  for (int i = 0; i < TANH_POINTS; i++) {
    double want = tanh((double)xv[i]), e = fabs(y[i] - want);
    bool ok = isnan(xv[i]) ? isnan(y[i])
              : fabs(y[i]) <= 1 && (want == 0 ? y[i] == 0 && signbit(y[i]) == signbit(xv[i]) : e <= 4e-7 * fabs(want));
    if (want != 0)
      worst = fmax(worst, e / fabs(want));
    if (!ok && bad++ < 5)
      printf("  %s: tanh(%.9g) = %.9g, double tanh %.17g\n", what, xv[i], y[i], want);
  }
  printf("%s: %d points, worst error %.2e relative\n", what, TANH_POINTS, worst);
  CHECK(bad == 0, "%s: %d of %d points off", what, bad, TANH_POINTS);
}

#endif
