// test_conv.c: conv2d (im2col + sgemm) against the direct seven-loop
// convolution in double, over strides, paddings, dilations, non-square
// kernels, odd sizes, batch 1 and one channel, groups (depthwise too); dx, dw and dbias by
// gradient checks. Then the cpu backend's convolutions (the _ws variants,
// the weight gradient by channels) against the reference's, on whichever
// paths the host takes (test_avx512.c has shapes for the AVX-512 ones),
// and the weight gradient through a max pooling's argmax against the
// dense one.
#include "../test.h"
#include "runtime.h"

// The definition: y[n,o,oh,ow] = bias[o] + sum over c, kh, kw of
// x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] * w[o,c,kh,kw], where x
// is 0 outside the image. With G groups, output o sums over the C/G
// input channels of its group, o / (O/G), and w is (O, C/G, KH, KW).
static int64_t groups(const KConv2d *g) { return g->G > 1 ? g->G : 1; }

static void naive_conv2d(double *y, const double *x, const double *w, const double *bias,
                         const KConv2d *g, int64_t OH, int64_t OW) {
  int64_t Cg = g->C / groups(g), Og = g->O / groups(g);
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double s = bias ? bias[o] : 0;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t kh = 0; kh < g->KH; kh++)
              for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t ih = oh * g->sh - g->ph + kh * g->dh;
                int64_t iw = ow * g->sw - g->pw + kw * g->dw;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                  continue;
                s += x[((n * g->C + o / Og * Cg + c) * g->H + ih) * g->W + iw] *
                     w[((o * Cg + c) * g->KH + kh) * g->KW + kw];
              }
          y[((n * g->O + o) * OH + oh) * OW + ow] = s;
        }
}

typedef struct ConvCtx {
  const KConv2d *g;
  int64_t OH, OW;
  double *x, *w, *bias, *y;   // bias NULL: no bias
  const float *dy;
} ConvCtx;

static double conv_loss(void *p) {
  ConvCtx *c = p;
  naive_conv2d(c->y, c->x, c->w, c->bias, c->g, c->OH, c->OW);
  return t_dot(c->dy, c->y, c->g->N * c->g->O * c->OH * c->OW);
}

static void test_conv(const KConv2d *g, bool with_bias) {
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh);
  int64_t OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * g->C / groups(g) * g->KH * g->KW, nb = g->O;
  int64_t ny = g->N * g->O * OH * OW;
  char name[160], what[220];
  snprintf(name, sizeof name,
           "conv x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld) s%lld,%lld p%lld,%lld d%lld,%lld g%lld%s",
           (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->O,
           (long long)g->KH, (long long)g->KW, (long long)g->sh, (long long)g->sw,
           (long long)g->ph, (long long)g->pw, (long long)g->dh, (long long)g->dw, (long long)groups(g),
           with_bias ? "" : " no bias");

  float *x = t_randf(nx, -1, 1), *w = t_randf(nw, -1, 1), *bias = t_randf(nb, -1, 1);
  float *y = t_randf(ny, -1, 1);
  ConvCtx c = {g, OH, OW, t_tod(x, nx), t_tod(w, nw), with_bias ? t_tod(bias, nb) : NULL,
               xmalloc(ny * sizeof(double)), NULL};
  k_conv2d_forward(y, x, w, with_bias ? bias : NULL, g);
  naive_conv2d(c.y, c.x, c.w, c.bias, g, OH, OW);
  snprintf(what, sizeof what, "%s forward", name);
  t_close_fwd(what, y, c.y, ny);

  float *dy = t_randf(ny, -1, 1);
  float *dx0 = t_randf(nx, -1, 1), *dw0 = t_randf(nw, -1, 1), *db0 = t_randf(nb, -1, 1);
  float *dx = t_copyf(dx0, nx), *dw = t_copyf(dw0, nw), *db = t_copyf(db0, nb);
  c.dy = dy;
  k_conv2d_backward(dx, dw, with_bias ? db : NULL, dy, x, w, g);
  snprintf(what, sizeof what, "%s dx", name);
  t_grad(what, dx, dx0, conv_loss, &c, c.x, nx);
  snprintf(what, sizeof what, "%s dw", name);
  t_grad(what, dw, dw0, conv_loss, &c, c.w, nw);
  if (with_bias) {
    snprintf(what, sizeof what, "%s dbias", name);
    t_grad(what, db, db0, conv_loss, &c, c.bias, nb);
  }

  // Each gradient alone equals the same gradient computed with the others.
  float *dx1 = t_copyf(dx0, nx), *dw1 = t_copyf(dw0, nw);
  k_conv2d_backward(dx1, NULL, NULL, dy, x, w, g);
  k_conv2d_backward(NULL, dw1, NULL, dy, x, w, g);
  snprintf(what, sizeof what, "%s dx alone", name);
  t_equal(what, dx1, dx, nx);
  snprintf(what, sizeof what, "%s dw alone", name);
  t_equal(what, dw1, dw, nw);

  free(x), free(w), free(bias), free(y), free(c.x), free(c.w), free(c.bias), free(c.y);
  free(dy), free(dx0), free(dw0), free(db0), free(dx), free(dw), free(db), free(dx1), free(dw1);
}

// The cpu backend's convolution of g against the reference's: with the
// reference's GEMM the same bytes (the im2col paths differ only in speed),
// with the cpu backend's GEMM within rounding; the weight gradient by
// channels, in two ranges, within rounding of the reference's. One output
// position over a plane larger than 1x1 is the exception: there the cpu
// backend's product runs over the taps that read the input only, a shorter
// sum than the reference's im2col product, and BLAS kernels that split the
// sum (OpenBLAS's AVX-512 ones do) round the two differently, so those
// agree within rounding too; and so do planes smaller than the window,
// whose product the cpu backend runs with the weights unrolled
// (k_conv2d_unrolled).
static void same_or_close(const char *what, const float *got, const float *want, int64_t n, bool exact) {
  if (exact) {
    t_equal(what, got, want, n);
    return;
  }
  double *wd = t_tod(want, n);
  t_close_fwd(what, got, wd, n);
  free(wd);
}

static void test_conv_cpu(const KConv2d *g) {
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * g->C / groups(g) * g->KH * g->KW, ny = g->N * g->O * OH * OW;
  int64_t P = OH * OW, KK = g->KH * g->KW;
  char name[160], what[240];
  snprintf(name, sizeof name, "cpu conv x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld) s%lld,%lld p%lld,%lld d%lld,%lld g%lld",
           (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->O, (long long)g->KH,
           (long long)g->KW, (long long)g->sh, (long long)g->sw, (long long)g->ph, (long long)g->pw,
           (long long)g->dh, (long long)g->dw, (long long)groups(g));
  float *x = t_randf(nx, -1, 1), *w = t_randf(nw, -1, 1), *bias = t_randf(g->O, -1, 1), *dy = t_randf(ny, -1, 1);
  float *ws = xmalloc(sizeof(float) * k_conv2d_scratch(g));
  float *y = xmalloc(sizeof(float) * ny), *yc = xmalloc(sizeof(float) * ny);
  k_conv2d_forward(y, x, w, bias, g);
  k_conv2d_forward_ws(yc, x, w, bias, g, ws, k_sgemm);
  bool exact = (P > 1 && !k_conv2d_unrolled(g)) || (g->H * g->W == 1 && P == 1);   // (see above)
  snprintf(what, sizeof what, "%s forward, reference GEMM", name);
  same_or_close(what, yc, y, ny, exact);
  k_conv2d_forward_ws(yc, x, w, bias, g, ws, NULL);
  double *yd = t_tod(y, ny);
  snprintf(what, sizeof what, "%s forward", name);
  t_close_fwd(what, yc, yd, ny);

  float *dx0 = t_randf(nx, -1, 1), *dw0 = t_randf(nw, -1, 1);
  float *dx = t_copyf(dx0, nx), *dw = t_copyf(dw0, nw), *dxc = t_copyf(dx0, nx), *dwc = t_copyf(dw0, nw);
  k_conv2d_backward(dx, dw, NULL, dy, x, w, g);
  k_conv2d_backward_ws(dxc, dwc, NULL, dy, x, w, g, ws, k_sgemm);
  snprintf(what, sizeof what, "%s dx, reference GEMM", name);
  same_or_close(what, dxc, dx, nx, exact);
  snprintf(what, sizeof what, "%s dw, reference GEMM", name);
  same_or_close(what, dwc, dw, nw, exact);
  memcpy(dxc, dx0, sizeof(float) * nx);
  memcpy(dwc, dw0, sizeof(float) * nw);
  k_conv2d_backward_ws(dxc, dwc, NULL, dy, x, w, g, ws, NULL);
  double *dxd = t_tod(dx, nx), *dwd = t_tod(dw, nw);
  snprintf(what, sizeof what, "%s dx", name);
  t_close_fwd(what, dxc, dxd, nx);
  snprintf(what, sizeof what, "%s dw", name);
  t_close_fwd(what, dwc, dwd, nw);

  if (groups(g) == 1) {   // (the weight gradient by channels is for one group)
    float *dwr = xcalloc(nw, sizeof(float)), *dwch = t_randf(nw, -1, 1);
    float *dyt = xmalloc(sizeof(float) * g->O * g->N * P), *cws = xmalloc(sizeof(float) * g->C * KK * g->N * P);
    k_conv2d_backward(NULL, dwr, NULL, dy, x, w, g);
    k_conv2d_dy_t(dyt, dy, g);
    k_conv2d_grad_weight_channels(dwch, dyt, x, g, 0, g->C / 2, cws);
    k_conv2d_grad_weight_channels(dwch, dyt, x, g, g->C / 2, g->C, cws);
    double *dwrd = t_tod(dwr, nw);
    snprintf(what, sizeof what, "%s dw by channels", name);
    t_close_fwd(what, dwch, dwrd, nw);
    free(dwr), free(dwch), free(dyt), free(cws), free(dwrd);
  }
  free(x), free(w), free(bias), free(dy), free(ws), free(y), free(yc), free(yd);
  free(dx0), free(dw0), free(dx), free(dw), free(dxc), free(dwc), free(dxd), free(dwd);
}

// The weight and input gradients through a max pooling's argmax
// (k_conv2d_grad_weight_pooled, k_conv2d_grad_input_pooled) against the
// dense ones of the pooling's
// gradient: y = a convolution's output (random here), p = maxpool(y) with
// window k, stride st, padding pd, its argmax; G p's gradient with a share
// zero of its elements zeroed (skipped) and a few argmaxes set to -1 (a
// window all padding: no gradient); dw starts nonzero (the kernel adds).
static void test_conv_pooled(const KConv2d *g, int64_t k, int64_t st, int64_t pd, double zero) {
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  KPool2d pg = {g->N, g->O, OH, OW, k, k, st, st, pd, pd, 1, 1};
  int64_t PH = k_out_size(OH, k, st, pd, 1), PW = k_out_size(OW, k, st, pd, 1), PP = PH * PW;
  if (PP < 1)
    return;
  int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * g->C / groups(g) * g->KH * g->KW, ny = g->N * g->O * OH * OW;
  int64_t np = g->N * g->O * PP;
  float *x = t_randf(nx, -1, 1), *y = t_randf(ny, -1, 1), *p = xmalloc(sizeof(float) * np), *G = t_randf(np, -1, 1);
  int32_t *at = xmalloc(sizeof(int32_t) * np);
  k_maxpool2d_forward(p, at, y, &pg);
  for (int64_t i = 0; i < np; i++) {
    if (t_uniform(0, 1) < zero)
      G[i] = 0.0f;
    if (i % 23 == 5)
      at[i] = -1;
  }
  float *dy = xcalloc(ny, sizeof(float)), *dw0 = t_randf(nw, -1, 1), *dw = t_copyf(dw0, nw), *got = t_copyf(dw0, nw);
  k_maxpool2d_backward(dy, G, at, &pg);
  k_conv2d_backward(NULL, dw, NULL, dy, x, NULL, g);
  float *ws = xmalloc(sizeof(float) * k_conv2d_pooled_scratch(g, PP));
  k_conv2d_grad_weight_pooled(got, G, at, PP, x, g, ws);
  char what[200];
  snprintf(what, sizeof what, "pooled dw x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld) s%lld,%lld p%lld,%lld d%lld,%lld "
           "g%lld, pool %lld/%lld/%lld", (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W,
           (long long)g->O, (long long)g->KH, (long long)g->KW, (long long)g->sh, (long long)g->sw, (long long)g->ph,
           (long long)g->pw, (long long)g->dh, (long long)g->dw, (long long)groups(g), (long long)k, (long long)st,
           (long long)pd);
  // Both sums are float sums of many terms in different orders (33 images
  // of 169 windows: 5,577 a weight): each within rounding of the sum of
  // their magnitudes, the largest of which scales the tolerance.
  int64_t Cg = g->C / groups(g), Og = g->O / groups(g), KK = g->KH * g->KW, HW = g->H * g->W;
  double *mag = xcalloc(nw, sizeof(double)), most = 0;
  for (int64_t i = 0; i < np; i++) {
    int64_t n = i / (g->O * PP), o = i / PP % g->O, a = at[i];
    if (a < 0)
      continue;
    for (int64_t c = 0; c < Cg; c++)
      for (int64_t t = 0; t < KK; t++) {
        int64_t h = a / OW * g->sh - g->ph + t / g->KW * g->dh, w = a % OW * g->sw - g->pw + t % g->KW * g->dw;
        if (h >= 0 && h < g->H && w >= 0 && w < g->W)
          mag[(o * Cg + c) * KK + t] += fabs(G[i] * x[(n * g->C + o / Og * Cg + c) * HW + h * g->W + w]);
      }
  }
  for (int64_t i = 0; i < nw; i++)
    most = mag[i] > most ? mag[i] : most;
  double *want = t_tod(dw, nw);
  t_close(what, got, want, nw, FWD_ATOL + 2e-7 * most, FWD_RTOL);
  // the input gradient the same way: dx against the dense one's (each dx
  // element a sum of at most O*KH*KW terms)
  float *w = t_randf(nw, -1, 1), *dx0 = t_randf(nx, -1, 1), *dx = t_copyf(dx0, nx), *dxp = t_copyf(dx0, nx);
  k_conv2d_backward(dx, NULL, NULL, dy, NULL, w, g);
  float *wsi = xmalloc(sizeof(float) * k_conv2d_pooled_input_scratch(g, PP));
  k_conv2d_grad_input_pooled(dxp, G, at, PP, w, g, wsi);
  double *dxd = t_tod(dx, nx);
  memcpy(strstr(what, "dw"), "dx", 2);
  t_close_fwd(what, dxp, dxd, nx);
  free(w), free(dx0), free(dx), free(dxp), free(wsi), free(dxd);
  free(x), free(y), free(p), free(G), free(at), free(dy), free(dw0), free(dw), free(got), free(ws), free(want);
  free(mag);
}

int main(void) {
  t_seed(3);
  static const KConv2d cases[] = {
    // N  C  H  W  O KH KW sh sw ph pw dh dw  G
    {1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 1, 1, 1},    // batch 1, one channel
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // "same" padding
    {2, 3, 8, 7, 2, 3, 2, 2, 1, 1, 0, 1, 1, 1},    // non-square kernel, stride on one axis
    {1, 2, 9, 9, 3, 3, 3, 2, 2, 1, 1, 2, 2, 1},    // dilation and stride
    {3, 2, 5, 7, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1},    // 1x1: the pointwise path
    {1, 2, 6, 5, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1},    // 1x1 strided: im2col again
    {2, 1, 7, 7, 2, 5, 5, 3, 3, 2, 2, 1, 1, 1},    // big kernel, stride 3
    {1, 3, 4, 4, 2, 4, 4, 1, 1, 0, 0, 1, 1, 1},    // kernel as big as the image
    {1, 2, 6, 8, 3, 2, 3, 1, 2, 2, 1, 2, 1, 1},    // everything differs per axis
    {2, 2, 3, 5, 3, 3, 1, 1, 1, 2, 0, 1, 3, 1},    // padding wider than needed
    {1, 1, 1, 1, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1},    // a single pixel
    {1, 1, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // a single pixel, all padding around
    {3, 4, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // 1x1 planes, one tap inside: a product over channels
    {2, 3, 1, 1, 4, 3, 5, 1, 1, 2, 2, 2, 1, 1},    // the same through dilation and uneven padding
    {2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},    // two groups
    {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 0, 1, 2, 3},    // depthwise, non-square, strided, dilated
    {1, 4, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4},    // depthwise with a multiplier of 2
    {2, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0, 1, 1, 3},    // grouped 1x1 (no pointwise shortcut)
    {3, 4, 1, 1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2},    // grouped on 1x1 planes (no single-tap shortcut)
    {3, 5, 2, 2, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1},    // a 1x1 output reading 4 of 9 taps (cpu: over those alone)
    {2, 4, 3, 3, 6, 5, 5, 1, 1, 1, 1, 1, 1, 1},    // the same, 9 of 25
    {1, 3, 3, 3, 5, 3, 3, 3, 3, 1, 1, 2, 2, 1},    // the same through dilation: 1 of 9 on a 3x3 plane
    {2, 6, 2, 2, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // 2x2 planes, 3x3 window (cpu: the weights unrolled)
    {1, 3, 2, 2, 4, 3, 3, 1, 1, 2, 2, 2, 2, 1},    // the same dilated: outputs that read no input at some taps
    {2, 3, 4, 4, 4, 5, 5, 1, 1, 2, 2, 1, 1, 1},    // 4x4 planes, 5x5 window: inputs outside a corner's reach
    {2, 3, 2, 3, 5, 3, 5, 1, 1, 1, 2, 1, 1, 1},    // non-square, unrolled
    {2, 3, 1, 1, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1},    // a 1x1 plane to 3x3 outputs through padding
  };
  for (int i = 0; i < countof(cases); i++)
    test_conv(&cases[i], true);
  test_conv(&cases[1], false);
  test_conv(&cases[4], false);
  for (int i = 0; i < countof(cases); i++)
    test_conv_cpu(&cases[i]);
  // Stride-1 convolutions that AVX2 hosts without AVX-512 take through
  // conv_avx2.c (the forward on planes of 32 outputs or more, 60 % of
  // the padded width real; dw on planes of 32 outputs or more, by dot
  // products under 64 taps; dx on planes of 32 inputs or more, 60 % of its
  // wide columns real, padding no wider than the window and a stored dy of
  // 16384 floats or fewer), and some that they leave to im2col
  static const struct { KConv2d g; bool fwd, dw, dx; } direct[] = {
    // N   C   H   W   O KH KW sh sw ph pw dh dw  G
    {{3, 32, 13, 13, 64, 3, 3, 1, 1, 0, 0, 1, 1, 1}, true, true, true},      // cnn's second layer
    {{3,  1, 28, 28, 32, 3, 3, 1, 1, 0, 0, 1, 1, 1}, true, true, true},      // cnn's first: dw by dots
    {{2,  8, 17, 15,  7, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // padding, ragged tiles
    {{2,  5,  9, 12,  8, 2, 3, 1, 1, 1, 0, 1, 2, 1}, true, true, true},      // dw by dots: 30 taps
    {{2, 11, 20, 19,  5, 3, 2, 1, 1, 2, 1, 2, 3, 1}, true, true, true},      // dilation, uneven padding
    {{2, 16,  7,  7, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // resnet18's 7x7 planes
    {{2, 16,  4,  4, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1}, false, false, false},   // 16 outputs: im2col
    {{2, 16,  9,  9, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1}, false, false, false},   // stride 2: im2col
    {{1,  9, 11,  7,  6, 3, 3, 1, 1, 2, 2, 1, 1, 1}, true, true, true},      // padding 2 = the window's reach
    {{3,  5, 13,  9, 10, 3, 3, 1, 1, 3, 1, 1, 1, 1}, true, true, false},     // padding 3 > 2: dx by col2im
    {{1,  3,  9, 11,  5, 3, 5, 1, 1, 0, 0, 1, 1, 1}, false, true, true},     // batch 1, 3x5: dx, not the forward
    {{2,  6,  9,  9,150, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // dx in blocks of 32 channels of dy
    {{3,  5,  7,  7, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // the indirect forward: 68 % real, O = 16 + 16 + 5
    {{1,  9,  8,  6, 33, 3, 3, 1, 1, 2, 2, 1, 1, 1}, true, true, true},      // the same at padding 2, batch 1
  };
  for (int i = 0; i < countof(direct); i++) {
    const KConv2d *g = &direct[i].g;
    if (k_avx2() && (!k_avx512() || k_avx512_halves()))
      CHECK(k_avx2_conv_fits(g) == direct[i].fwd && k_avx2_conv_grad_weight_fits(g) == direct[i].dw &&
            k_avx2_conv_grad_input_fits(g) == direct[i].dx, "direct case %d", i);
    test_conv_cpu(g);
  }
  // Stride-1 convolutions that hosts with AVX-512 in halves take by output
  // rows (conv_avx512.c): the forward where the output channels are a
  // multiple of 16, dx where the input channels are, rows of 4 outputs or
  // more (dx: of dy's); dw by 6 x 32 tiles of
  // dw^T where the output channels are a multiple of 16, 64 taps or more,
  // 16 outputs or more
  static const struct { KConv2d g; bool fwd, dx, dw; } rows[] = {
    // N   C   H   W   O KH KW sh sw ph pw dh dw  G
    {{3, 32, 13, 13, 64, 3, 3, 1, 1, 0, 0, 1, 1, 1}, true, true, true},      // cnn's second layer: rows of 11
    {{2,  1, 28, 28, 32, 3, 3, 1, 1, 0, 0, 1, 1, 1}, true, false, false},    // cnn's first: 2 tiles of 13; 9 taps
    {{2, 16,  6, 31, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // rows of 31 in 3 tiles, 32 + 16 channels
    {{2, 32,  7,  7, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // resnet18's 7x7: edge rows skip taps
    {{1, 16, 12, 14, 32, 3, 2, 1, 1, 2, 1, 2, 3, 1}, true, true, true},      // dilation, uneven padding
    {{2, 16,  9, 10, 16, 3, 3, 1, 1, 3, 1, 1, 1, 1}, true, true, true},      // rows of padding alone, padding 3 > 2
    {{1, 48,  6, 20, 16, 1, 7, 1, 1, 0, 3, 1, 1, 1}, true, true, true},      // a 1x7 window
    {{2,  9,  8,  8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, false, true},     // 81 taps: a last tile of 3
    {{2, 16,  4,  4, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, true, true},      // resnet18's 4x4 planes: rows of 4
    {{2, 16,  3,  3, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, false, false, false},   // rows of 3, 9 outputs: the older paths
    {{2, 16,  7,  3, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, false, false, true},    // 21 outputs in rows of 3: dw alone
    {{2, 16,  9,  9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1}, false, false, false},   // stride 2
    {{2, 20,  9,  9, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1}, false, false, false},   // 20 channels each way
    // few taps (32 or fewer): the forward by planes, 16 outputs of a row a vector
    {{2,  3, 19, 37, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, true, false, false},    // RGB 3x3 "same": rows of 16 + 16 + 5
    {{2,  1, 12, 21, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1}, true, false, false},    // lenet5's 5x5, padded: edge rows skip taps
    {{1,  2,  9, 40, 48, 3, 2, 1, 1, 3, 0, 2, 1, 1}, true, false, false},    // dilation, rows of padding alone
    {{2,  1,  6,  7, 16, 1, 3, 1, 1, 0, 1, 1, 2, 1}, true, false, false},    // a 1x3 window dilated, rows of 5
    {{1,  2,  5, 18, 32, 4, 4, 1, 1, 1, 1, 1, 1, 1}, true, false, false},    // 32 taps: the most by planes
  };
  for (int i = 0; i < countof(rows); i++) {
    const KConv2d *g = &rows[i].g;
    if (k_avx512())
      CHECK(k_avx512_conv_rows_fits(g) == rows[i].fwd && k_avx512_conv_rows_grad_input_fits(g) == rows[i].dx &&
                k_avx512_conv_rows_grad_weight_fits(g) == rows[i].dw,
            "rows case %d", i);
    test_conv_cpu(g);
  }
  for (int64_t W = 8; W <= 17; W++) {   // every tile width, 6 to 14 (and 15 as 8 + 7), both column blocks
    KConv2d g = {2, 16, 4, W, 48, 3, 3, 1, 1, 0, 0, 1, 1, 1};
    test_conv_cpu(&g);
  }
  // the pooled weight gradient: every case above under 2x2 pooling and 3x3
  // stride-2 padded pooling (overlapping windows), each layout (planes for
  // few channels, channels last for many), and batches of more than one
  // pass of its sums
  for (int i = 0; i < countof(cases); i++) {
    test_conv_pooled(&cases[i], 2, 2, 0, 0.5);
    test_conv_pooled(&cases[i], 3, 2, 1, 0.3);
  }
  for (int i = 0; i < countof(rows); i++)
    test_conv_pooled(&rows[i].g, 2, 2, 0, 0.6);
  static const KConv2d pooled[] = {
    // N   C   H   W   O KH KW sh sw ph pw dh dw  G
    {37, 32, 13, 13, 64, 3, 3, 1, 1, 0, 0, 1, 1, 1},   // cnn's second layer, many passes
    {33,  1, 28, 28, 32, 3, 3, 1, 1, 0, 0, 1, 1, 1},   // cnn's first: x itself, no copy
    {9,  24, 10, 12, 40, 3, 3, 2, 1, 1, 1, 1, 1, 1},   // 24 channels: vectors of 16 + 8
    {5,  40,  9,  9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 4},   // groups of 10 channels last
    {7,   3, 12, 12,  8, 3, 3, 1, 1, 1, 1, 2, 2, 1},   // dilated planes: segments of one float
  };
  for (int i = 0; i < countof(pooled); i++) {
    test_conv_pooled(&pooled[i], 2, 2, 0, 0.5);
    test_conv_pooled(&pooled[i], 2, 2, 0, 0.0);
    test_conv_pooled(&pooled[i], 3, 3, 1, 0.9);
  }
  return t_finish("test_conv");
}
