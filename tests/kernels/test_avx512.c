// test_avx512.c: the cpu backend's AVX-512 fast paths (fast_avx512.c)
// against the reference kernels they stand in for, on ragged shapes: sizes
// that are not multiples of the 16-float vector or of the GEMM's tiles, a
// batch (or a row) of one, K not a multiple of the GEMM's K block. Where a
// fast path only copies, compares or adds in the reference's order
// (transposes, im2col and col2im, max pooling) the bytes must be the same;
// the GEMM agrees with k_sgemm within rounding, and writes nothing outside
// its block of C. Skipped (exit 77, CTest's skip) on hosts without AVX-512
// and under NNC_NO_AVX512.
#include "../test.h"
#include "runtime.h"

// k_gemm_micro over k_avx512_gemm against k_sgemm, on A, B and C stored
// with leading dimensions past their sizes (as the thread pool's split
// calls it). C starts as NaN for beta 0 (ignored) and as random values for
// beta 1 (accumulated); the padding of C must stay as it was. Returns
// whether it agreed; *worst gets the largest difference.
static bool gemm_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, bool acc, double *worst, int64_t *values) {
  int64_t arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
  int64_t lda = acols + 3, ldb = bcols + 5, ldc = N + 7;
  float *a = t_randf(arows * acols, -1, 1), *b = t_randf(brows * bcols, -1, 1);
  float *ap = t_randf(arows * lda, -1, 1), *bp = t_randf(brows * ldb, -1, 1);
  for (int64_t r = 0; r < arows; r++)
    memcpy(ap + r * lda, a + r * acols, sizeof(float) * acols);
  for (int64_t r = 0; r < brows; r++)
    memcpy(bp + r * ldb, b + r * bcols, sizeof(float) * bcols);
  float *want = t_randf(M * N, -1, 1), *c = t_randf(M * ldc, -1, 1), *c0 = t_copyf(c, M * ldc);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++)
      if (acc)
        c[i * ldc + j] = c0[i * ldc + j] = want[i * N + j];
      else
        c[i * ldc + j] = c0[i * ldc + j] = NAN;
  k_sgemm(ta, tb, M, N, K, 1.0f, a, b, acc ? 1.0f : 0.0f, want);
  k_gemm_micro(&k_avx512_gemm, ta, tb, M, N, K, ap, lda, bp, ldb, acc, c, ldc, 0, 0);
  bool ok = true;
  double tol = 2e-5 * sqrt((double)K + 1);   // two float sums of K products of values in [-1, 1]
  *values += M * ldc;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < ldc; j++) {
      float got = c[i * ldc + j];
      double d = j < N ? fabs((double)got - want[i * N + j]) : got == c0[i * ldc + j] ? 0 : INFINITY;
      bool good = d <= tol + 1e-5 * fabs(want[j < N ? i * N + j : 0]);
      if (!good && ok)
        printf("  gemm %lldx%lldx%lld ta%d tb%d beta %d: C[%lld][%lld] = %.9g, want %.9g%s\n", (long long)M,
               (long long)K, (long long)N, ta, tb, acc, (long long)i, (long long)j, got,
               j < N ? want[i * N + j] : c0[i * ldc + j], j < N ? "" : " (padding)");
      ok = ok && good;
      *worst = d > *worst || isnan(d) ? d : *worst;
    }
  free(a), free(b), free(ap), free(bp), free(want), free(c), free(c0);
  return ok;
}

// Every ta/tb, beta 0 and 1, over sizes around the 8 x 32 tile, the 4 x 4
// and 1 x 8 dot products (tb with K >= 512, or one row) and K blocks of at
// most 256.
static void test_gemm(void) {
  static const int64_t ms[] = {1, 3, 4, 5, 8, 9, 17, 33};
  static const int64_t ns[] = {1, 4, 5, 8, 15, 16, 17, 32, 33, 65};
  static const int64_t ks[] = {0, 1, 15, 17, 256, 257, 512, 513};
  for (int t = 0; t < 8; t++) {
    bool ta = t & 1, tb = t & 2, acc = t & 4;
    bool ok = true;
    double worst = 0;
    int64_t values = 0;
    for (int i = 0; i < countof(ms); i++)
      for (int j = 0; j < countof(ns); j++)
        for (int k = 0; k < countof(ks); k++)
          ok &= gemm_case(ta, tb, ms[i], ns[j], ks[k], acc, &worst, &values);
    char what[100];
    snprintf(what, sizeof what, "k_avx512_gemm against k_sgemm, ta%d tb%d beta %d, %d shapes", ta, tb, acc,
             countof(ms) * countof(ns) * countof(ks));
    t_report(what, ok, worst, values);
  }
}

// k_avx512_transpose16 against the plain copy, between rows of 19 and 21
// floats (what lies between the 16 columns stays as it was).
static void test_transpose(void) {
  int64_t lds = 19, ldd = 21;
  float *src = t_randf(16 * lds, -1, 1), *dst = t_randf(16 * ldd, -1, 1), *want = t_copyf(dst, 16 * ldd);
  for (int64_t i = 0; i < 16; i++)
    for (int64_t j = 0; j < 16; j++)
      want[j * ldd + i] = src[i * lds + j];
  k_avx512_transpose16(dst, ldd, src, lds);
  t_equal("k_avx512_transpose16 against the plain copy", dst, want, 16 * ldd);
  free(src), free(dst), free(want);
}

static void conv_name(char *buf, size_t n, const KConv2d *g) {
  snprintf(buf, n, "conv x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld) p%lld,%lld d%lld,%lld", (long long)g->N,
           (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->O, (long long)g->KH, (long long)g->KW,
           (long long)g->ph, (long long)g->pw, (long long)g->dh, (long long)g->dw);
}

// A stride-1 convolution through k_conv2d_forward_ws and
// k_conv2d_backward_ws, whose im2col and col2im are k_avx512_im2col_s1 and
// k_avx512_col2im_add_s1 here, against the reference k_conv2d_forward and
// k_conv2d_backward: with the reference's GEMM (k_sgemm) the same bytes;
// with the cpu backend's (k_gemm, k_avx512_gemm; named, as a GEMM that
// is passed keeps conv_avx2.c's paths out even where the host runs
// AVX-512 in halves) within rounding. Then
// the weight gradient by channels (k_conv2d_grad_weight_channels, im2col
// and k_gemm_ld) in two ranges against the reference's.
static void test_conv_s1(const KConv2d *g) {
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * g->C * g->KH * g->KW, ny = g->N * g->O * OH * OW;
  char name[160], what[240];
  conv_name(name, sizeof name, g);
  float *x = t_randf(nx, -1, 1), *w = t_randf(nw, -1, 1), *bias = t_randf(g->O, -1, 1), *dy = t_randf(ny, -1, 1);
  float *ws = xmalloc(sizeof(float) * k_conv2d_scratch(g));
  float *y = xmalloc(sizeof(float) * ny), *yf = xmalloc(sizeof(float) * ny);
  k_conv2d_forward(y, x, w, bias, g);
  k_conv2d_forward_ws(yf, x, w, bias, g, ws, k_sgemm);
  snprintf(what, sizeof what, "%s forward, AVX-512 im2col", name);
  t_equal(what, yf, y, ny);
  k_conv2d_forward_ws(yf, x, w, bias, g, ws, k_gemm);
  double *yd = t_tod(y, ny);
  snprintf(what, sizeof what, "%s forward, AVX-512 im2col and GEMM", name);
  t_close(what, yf, yd, ny, 1e-5 * sqrt((double)g->C * g->KH * g->KW), 1e-4);

  float *dx0 = t_randf(nx, -1, 1), *dw0 = t_randf(nw, -1, 1);
  float *dx = t_copyf(dx0, nx), *dw = t_copyf(dw0, nw), *dxf = t_copyf(dx0, nx), *dwf = t_copyf(dw0, nw);
  k_conv2d_backward(dx, dw, NULL, dy, x, w, g);
  k_conv2d_backward_ws(dxf, dwf, NULL, dy, x, w, g, ws, k_sgemm);
  snprintf(what, sizeof what, "%s dx, AVX-512 col2im", name);
  t_equal(what, dxf, dx, nx);
  snprintf(what, sizeof what, "%s dw, AVX-512 im2col", name);
  t_equal(what, dwf, dw, nw);
  memcpy(dxf, dx0, sizeof(float) * nx);
  memcpy(dwf, dw0, sizeof(float) * nw);
  k_conv2d_backward_ws(dxf, dwf, NULL, dy, x, w, g, ws, k_gemm);
  double *dxd = t_tod(dx, nx), *dwd = t_tod(dw, nw);
  double tol_dx = 1e-5 * sqrt((double)g->O * g->KH * g->KW), tol_dw = 1e-5 * sqrt((double)g->N * OH * OW);
  snprintf(what, sizeof what, "%s dx, AVX-512 col2im and GEMM", name);
  t_close(what, dxf, dxd, nx, tol_dx, 1e-4);
  snprintf(what, sizeof what, "%s dw, AVX-512 im2col and GEMM", name);
  t_close(what, dwf, dwd, nw, tol_dw, 1e-4);

  // the gradient alone (the reference's, from zero) against channels
  // [0, C/2) and [C/2, C) by k_conv2d_grad_weight_channels
  float *dwr = xcalloc(nw, sizeof(float)), *dwc = t_randf(nw, -1, 1);
  k_conv2d_backward(NULL, dwr, NULL, dy, x, w, g);
  int64_t P = OH * OW, KK = g->KH * g->KW;
  float *dyt = xmalloc(sizeof(float) * g->O * g->N * P), *cws = xmalloc(sizeof(float) * g->C * KK * g->N * P);
  k_conv2d_dy_t(dyt, dy, g);
  k_conv2d_grad_weight_channels(dwc, dyt, x, g, 0, g->C / 2, cws);
  k_conv2d_grad_weight_channels(dwc, dyt, x, g, g->C / 2, g->C, cws);
  double *dwrd = t_tod(dwr, nw);
  snprintf(what, sizeof what, "%s dw by channels, AVX-512 im2col and GEMM", name);
  t_close(what, dwc, dwrd, nw, tol_dw, 1e-4);

  free(x), free(w), free(bias), free(dy), free(ws), free(y), free(yf), free(yd);
  free(dx0), free(dw0), free(dx), free(dw), free(dxf), free(dwf), free(dxd), free(dwd);
  free(dwr), free(dwc), free(dyt), free(cws), free(dwrd);
}

// Max pooling values with many ties (a few distinct values), some NaN and
// some -inf.
static float *pool_input(int64_t n) {
  float *x = xmalloc(sizeof(float) * n);
  for (int64_t i = 0; i < n; i++) {
    uint32_t r = rng_u32(&t_rng) % 64;
    x[i] = r == 0 ? NAN : r == 1 ? -INFINITY : (float)(r % 5) - 2.0f;
  }
  return x;
}

// k_maxpool2d_forward_fast (k_avx512_maxpool2x2 for 2x2 windows,
// k_avx512_maxpool_planes16 for 16 small planes at a time, the reference's
// loops for the planes left) against the reference k_maxpool2d_forward:
// the same values and argmax, and the same values without an argmax.
static void test_maxpool(const KPool2d *g) {
  int64_t OH = k_out_size(g->H, g->kh, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->kw, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, ny = g->N * g->C * OH * OW;
  float *x = pool_input(nx), *y = xmalloc(sizeof(float) * ny), *yf = xmalloc(sizeof(float) * ny);
  int32_t *at = xmalloc(sizeof(int32_t) * ny), *atf = xmalloc(sizeof(int32_t) * ny);
  k_maxpool2d_forward(y, at, x, g);
  k_maxpool2d_forward_fast(yf, atf, x, g);
  char what[200];
  snprintf(what, sizeof what,
           "maxpool x(%lld,%lld,%lld,%lld) k%lld,%lld s%lld,%lld p%lld,%lld d%lld,%lld: AVX-512 against reference",
           (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->kh, (long long)g->kw,
           (long long)g->sh, (long long)g->sw, (long long)g->ph, (long long)g->pw, (long long)g->dh,
           (long long)g->dw);
  t_equal(what, yf, y, ny);
  CHECK(memcmp(at, atf, sizeof(int32_t) * ny) == 0, "%s", what);
  k_maxpool2d_forward_fast(yf, NULL, x, g);
  t_equal(what, yf, y, ny);
  free(x), free(y), free(yf), free(at), free(atf);
}

int main(void) {
  if (!k_avx512()) {
    return t_skip("test_avx512", "the host has no AVX-512 (F, VL, BW, DQ), or NNC_NO_AVX512 is set");
  }
  t_seed(11);
  test_gemm();
  test_transpose();
  // Stride 1 and more outputs than the offset table's 256 taps, so that
  // im2col takes the AVX-512 rows: output rows as wide as the input's (one
  // flat run per tap, with wrapped columns) or not (masked rows), widths
  // around 16.
  static const KConv2d convs[] = {
    // N  C  H  W  O KH KW sh sw ph pw dh dw  G
    {1, 2, 9, 17, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1}, // "same", 17 wide; a batch of one
    {2, 3, 7, 33, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1}, // no padding: 31 of 33 columns
    {3, 2, 6, 15, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1}, // "same", 15 wide
    {1, 3, 9, 16, 2, 2, 5, 1, 1, 1, 2, 2, 1, 1}, // 16 wide, dilation on one axis
    {2, 2, 8, 20, 3, 3, 3, 1, 1, 1, 1, 2, 2, 1}, // dilation: 18 of 20 columns
    {1, 2, 7, 13, 2, 3, 3, 1, 1, 3, 3, 1, 1, 1}, // padding wider than the window: 17 outputs of 13
    {2, 4, 12, 18, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, // 1x1 with padding (not pointwise)
    {1, 1, 60, 1, 2, 5, 1, 1, 1, 2, 0, 1, 1, 1}, // one column
    {1, 1, 17, 17, 2, 17, 17, 1, 1, 8, 8, 1, 1, 1}, // the kernel as big as the image
  };
  for (int i = 0; i < countof(convs); i++)
    test_conv_s1(&convs[i]);
  static const KPool2d pools[] = {
    // N  C  H  W kh kw sh sw ph pw dh dw
    {1, 1, 5, 65, 2, 2, 2, 2, 0, 0, 1, 1},    // 2x2: 32 outputs a row and a column left over
    {2, 3, 7, 34, 2, 2, 2, 2, 0, 0, 1, 1},    // 17 outputs a row
    {1, 2, 4, 31, 2, 2, 2, 2, 0, 0, 1, 1},    // 15
    {3, 1, 3, 2, 2, 2, 2, 2, 0, 0, 1, 1},     // one output
    {1, 16, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1},  // 16 planes a lane each
    {3, 7, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1},     // 21 planes: 16, and 5 by rows
    {1, 33, 5, 9, 2, 3, 1, 2, 1, 1, 2, 1},    // 33 planes, dilation, padding
    {2, 24, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1},  // planes of 1024 values, the most taken 16 at a time
    {1, 16, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},    // single pixels
    {1, 17, 33, 32, 3, 3, 2, 2, 1, 1, 1, 1},  // planes of 1056 values: all by rows
  };
  for (int i = 0; i < countof(pools); i++)
    test_maxpool(&pools[i]);
  return t_finish("test_avx512");
}
