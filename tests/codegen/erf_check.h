// erf_check.h: the points the compiled erf (KI_ERF: codegen/llvm.c's
// emit_erf and the CUDA prelude's nnc_erf) is checked at, and the check,
// for test_codegen and test_cuda_shim. Include after test.h.
#ifndef NNC_ERF_CHECK_H
#define NNC_ERF_CHECK_H

// A dense grid over [-6, 6], magnitudes from 1e-30 to 1e3 of both signs,
// 0.921875 and its neighbours, 4 (where the argument is held) and past
// it, the infinities and NaN.
#define ERF_POINTS 65536
static void erf_points(float *x) {
  for (int i = 0; i < 49152; i++)
    x[i] = -6.0f + 12.0f * (float)i / 49151;
  for (int i = 49152; i < ERF_POINTS; i++)
    x[i] = (i & 1 ? -1.0f : 1.0f) * powf(10.0f, -30 + 33.0f * (float)(i - 49152) / (ERF_POINTS - 49152));
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

#endif
