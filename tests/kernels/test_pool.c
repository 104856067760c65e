// test_pool.c: max, average and global average pooling against naive
// double versions; ties, NaN and -inf padding for maxpool; the backward by
// gradient checks; the cpu backend's maxpool (k_maxpool2d_forward_fast)
// against the reference's bytes. Maxpool's gradient checks use inputs whose values are
// all distinct and at least 1e-3 apart, far more than the finite-difference
// step, so no perturbation changes which element is the maximum.
#include "../test.h"
#include "runtime.h"

// The naive maxpool: y and the argmax index within the (H,W) plane.
// Scans each window in row-major order and keeps the first maximum.
static void naive_maxpool(double *y, int32_t *arg, const double *x, const KPool2d *g,
                          int64_t OH, int64_t OW) {
  for (int64_t nc = 0; nc < g->N * g->C; nc++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        double best = -INFINITY;
        int64_t at = -1;
        for (int64_t kh = 0; kh < g->kh; kh++)
          for (int64_t kw = 0; kw < g->kw; kw++) {
            int64_t ih = oh * g->sh - g->ph + kh * g->dh;
            int64_t iw = ow * g->sw - g->pw + kw * g->dw;
            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
              continue;
            double v = x[nc * g->H * g->W + ih * g->W + iw];
            if (at < 0 || v > best) {
              best = v;
              at = ih * g->W + iw;
            }
          }
        int64_t k = (nc * OH + oh) * OW + ow;
        y[k] = best;
        if (arg)
          arg[k] = (int32_t)at;
      }
}

// The naive avgpool with count_include_pad: the window clipped to the
// padded input sets the divisor, the window clipped to the input the sum.
static void naive_avgpool(double *y, const double *x, const KPool2d *g, int64_t OH, int64_t OW) {
  for (int64_t nc = 0; nc < g->N * g->C; nc++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        double s = 0;
        int64_t count = 0;
        for (int64_t kh = 0; kh < g->kh; kh++)
          for (int64_t kw = 0; kw < g->kw; kw++) {
            int64_t ih = oh * g->sh - g->ph + kh, iw = ow * g->sw - g->pw + kw;
            if (ih < g->H + g->ph && iw < g->W + g->pw)
              count++;
            if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
              s += x[nc * g->H * g->W + ih * g->W + iw];
          }
        y[(nc * OH + oh) * OW + ow] = s / count;
      }
}

// n distinct values, a shuffled ladder from -1 in steps of 2/n (>= 1e-3).
static float *distinct_values(int64_t n) {
  float *x = xmalloc(n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)(-1.0 + 2.0 * i / n);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = rng_below(&t_rng, (uint32_t)(i + 1));
    float t = x[i];
    x[i] = x[j];
    x[j] = t;
  }
  return x;
}

typedef struct PoolCtx {
  const KPool2d *g;
  int64_t OH, OW;
  bool max;
  double *x, *y;
  const float *dy;
} PoolCtx;

static double pool_loss(void *p) {
  PoolCtx *c = p;
  if (c->max)
    naive_maxpool(c->y, NULL, c->x, c->g, c->OH, c->OW);
  else
    naive_avgpool(c->y, c->x, c->g, c->OH, c->OW);
  return t_dot(c->dy, c->y, c->g->N * c->g->C * c->OH * c->OW);
}

static void pool_name(char *buf, size_t size, const char *kind, const KPool2d *g) {
  snprintf(buf, size, "%s x(%lld,%lld,%lld,%lld) k%lld,%lld s%lld,%lld p%lld,%lld d%lld,%lld",
           kind, (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W,
           (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw,
           (long long)g->ph, (long long)g->pw, (long long)g->dh, (long long)g->dw);
}

static void test_pool(const KPool2d *g, bool max) {
  int64_t OH = k_out_size(g->H, g->kh, g->sh, g->ph, g->dh);
  int64_t OW = k_out_size(g->W, g->kw, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, ny = g->N * g->C * OH * OW;
  char name[160], what[220];
  pool_name(name, sizeof name, max ? "maxpool" : "avgpool", g);

  float *x = max ? distinct_values(nx) : t_randf(nx, -1, 1);
  float *y = xmalloc(ny * sizeof(float));
  int32_t *arg = xmalloc(ny * sizeof(int32_t)), *want_arg = xmalloc(ny * sizeof(int32_t));
  PoolCtx c = {g, OH, OW, max, t_tod(x, nx), xmalloc(ny * sizeof(double)), NULL};
  if (max) {
    k_maxpool2d_forward(y, arg, x, g);
    naive_maxpool(c.y, want_arg, c.x, g, OH, OW);
    snprintf(what, sizeof what, "%s forward", name);
    t_close(what, y, c.y, ny, 0, 0);
    snprintf(what, sizeof what, "%s argmax", name);
    CHECK(memcmp(arg, want_arg, ny * sizeof(int32_t)) == 0, "%s", what);
    // the cpu backend's kernel: the reference's bytes
    float *yf = xmalloc(ny * sizeof(float));
    int32_t *argf = xmalloc(ny * sizeof(int32_t));
    k_maxpool2d_forward_fast(yf, argf, x, g);
    snprintf(what, sizeof what, "%s k_maxpool2d_forward_fast", name);
    t_equal(what, yf, y, ny);
    snprintf(what, sizeof what, "%s k_maxpool2d_forward_fast argmax", name);
    CHECK(memcmp(argf, arg, ny * sizeof(int32_t)) == 0, "%s", what);
    free(yf), free(argf);
  } else {
    k_avgpool2d_forward(y, x, g);
    naive_avgpool(c.y, c.x, g, OH, OW);
    snprintf(what, sizeof what, "%s forward", name);
    t_close_fwd(what, y, c.y, ny);
  }

  float *dy = t_randf(ny, -1, 1), *dx0 = t_randf(nx, -1, 1), *dx = t_copyf(dx0, nx);
  c.dy = dy;
  if (max)
    k_maxpool2d_backward(dx, dy, arg, g);
  else
    k_avgpool2d_backward(dx, dy, g);
  snprintf(what, sizeof what, "%s dx", name);
  t_grad(what, dx, dx0, pool_loss, &c, c.x, nx);
  if (max) {   // the cpu backend's gradient: the reference's bytes into a zeroed dx, writing all of it
    float *dxz = xcalloc(nx, sizeof(float)), *dxf = t_copyf(dx0, nx);
    k_maxpool2d_backward(dxz, dy, arg, g);
    k_maxpool2d_backward_fast(dxf, dy, arg, g);
    snprintf(what, sizeof what, "%s k_maxpool2d_backward_fast", name);
    t_equal(what, dxf, dxz, nx);
    free(dxz), free(dxf);
  } else {   // the cpu backend's gradient: the reference's bytes, added into dx
    float *dxf = t_copyf(dx0, nx);
    k_avgpool2d_backward_fast(dxf, dy, g);
    snprintf(what, sizeof what, "%s k_avgpool2d_backward_fast", name);
    t_equal(what, dxf, dx, nx);
    free(dxf);
  }
  free(x), free(y), free(arg), free(want_arg), free(c.x), free(c.y), free(dy), free(dx0), free(dx);
}

typedef void (*MaxpoolFn)(float *y, int32_t *argmax, const float *x, const KPool2d *g);

// A check with the name of the kernel under test first.
static void check_of(const char *kernel, const char *what, bool ok) {
  char buf[200];
  snprintf(buf, sizeof buf, "%s: %s", kernel, what);
  CHECK(ok, "%s", buf);
}

// Ties go to the first maximum in row-major order; padding is -inf, so an
// all-negative input pools to its own maximum, not to 0; NaN wins. For
// the reference and for the cpu backend's kernel (AVX-512 where the host
// has it).
static void test_maxpool_edges(MaxpoolFn forward, const char *kernel) {
  KPool2d g = {1, 1, 2, 3, 2, 2, 1, 1, 0, 0, 1, 1};   // x (1,1,2,3), 2x2 windows
  float x[] = {5, 5, 1,
               5, 2, 5};
  float y[2];
  int32_t arg[2];
  forward(y, arg, x, &g);
  check_of(kernel, "maxpool tie: first maximum wins", y[0] == 5 && arg[0] == 0 && y[1] == 5 && arg[1] == 1);
  float dx[6] = {0}, dy[2] = {1, 10};
  k_maxpool2d_backward(dx, dy, arg, &g);
  check_of(kernel, "maxpool tie: gradient only to the first",
           dx[0] == 1 && dx[1] == 10 && dx[2] == 0 && dx[3] == 0 && dx[5] == 0);

  KPool2d gp = {1, 1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1};   // 3x3 windows with padding 1
  float neg[] = {-5, -7, -6, -8}, yp[4];
  int32_t argp[4];
  forward(yp, argp, neg, &gp);
  check_of(kernel, "maxpool padding is -inf",
           yp[0] == -5 && yp[1] == -5 && yp[2] == -5 && yp[3] == -5 && argp[3] == 0);

  float ninf[] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  forward(yp, argp, ninf, &gp);
  check_of(kernel, "maxpool of -inf picks the first element in the window",
           isinf(yp[0]) && yp[0] < 0 && argp[0] == 0 && argp[3] == 0);

  float withnan[] = {1, NAN, 3, 4};
  forward(yp, argp, withnan, &gp);
  check_of(kernel, "maxpool: NaN wins", isnan(yp[0]) && argp[0] == 1 && isnan(yp[3]));

  // The same rules with 16 planes at once (a plane per vector lane): every
  // plane -inf but plane 5, which has a NaN at 1, and plane 9, all ties.
  KPool2d g16 = {2, 8, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  float x16[64], y16[64];
  int32_t a16[64];
  for (int i = 0; i < 64; i++)
    x16[i] = i / 4 == 5 ? (i % 4 == 1 ? NAN : 1) : i / 4 == 9 ? 7 : -INFINITY;
  forward(y16, a16, x16, &g16);
  check_of(kernel, "maxpool, 16 planes: -inf picks the first element",
           isinf(y16[0]) && a16[0] == 0 && a16[3] == 0 && a16[60] == 0 && a16[63] == 0);
  check_of(kernel, "maxpool, 16 planes: NaN wins", isnan(y16[20]) && a16[20] == 1 && a16[23] == 1);
  check_of(kernel, "maxpool, 16 planes: ties to the first", y16[36] == 7 && a16[36] == 0 && a16[39] == 0);

  // A NULL argmax is allowed (inference).
  float y2[4];
  forward(y2, NULL, neg, &gp);
  check_of(kernel, "maxpool without argmax", y2[0] == -5 && y2[3] == -5);
}

// count_include_pad: a 3x3 window over a corner with padding 1 divides by 9.
static void test_avgpool_divisor(void) {
  KPool2d g = {1, 1, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1};
  float x[] = {9, 9, 9, 9}, y[4];
  k_avgpool2d_forward(y, x, &g);
  CHECK(y[0] == 4 && y[3] == 4, "avgpool counts padding in the divisor");
}

typedef struct GapCtx {
  int64_t N, C, HW;
  double *x, *y;
  const float *dy;
} GapCtx;

static void naive_gap(double *y, const double *x, int64_t NC, int64_t HW) {
  for (int64_t i = 0; i < NC; i++) {
    double s = 0;
    for (int64_t j = 0; j < HW; j++)
      s += x[i * HW + j];
    y[i] = s / HW;
  }
}

static double gap_loss(void *p) {
  GapCtx *c = p;
  naive_gap(c->y, c->x, c->N * c->C, c->HW);
  return t_dot(c->dy, c->y, c->N * c->C);
}

static void test_global_avgpool(int64_t N, int64_t C, int64_t HW) {
  int64_t nx = N * C * HW, ny = N * C;
  float *x = t_randf(nx, -1, 1), *y = xmalloc(ny * sizeof(float));
  GapCtx c = {N, C, HW, t_tod(x, nx), xmalloc(ny * sizeof(double)), NULL};
  char what[100];
  k_global_avgpool_forward(y, x, N, C, HW);
  naive_gap(c.y, c.x, N * C, HW);
  snprintf(what, sizeof what, "global_avgpool (%lld,%lld,%lld) forward", (long long)N,
           (long long)C, (long long)HW);
  t_close_fwd(what, y, c.y, ny);
  float *dy = t_randf(ny, -1, 1), *dx0 = t_randf(nx, -1, 1), *dx = t_copyf(dx0, nx);
  c.dy = dy;
  k_global_avgpool_backward(dx, dy, N, C, HW);
  snprintf(what, sizeof what, "global_avgpool (%lld,%lld,%lld) dx", (long long)N, (long long)C,
           (long long)HW);
  t_grad(what, dx, dx0, gap_loss, &c, c.x, nx);
  free(x), free(y), free(c.x), free(c.y), free(dy), free(dx0), free(dx);
}

int main(void) {
  t_seed(4);
  static const KPool2d max_cases[] = {
    // N  C  H  W kh kw sh sw ph pw dh dw
    {1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1},    // the usual 2x2/2
    {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1},    // 3x3/2 with padding, odd sizes
    {1, 2, 9, 8, 3, 2, 2, 1, 1, 0, 2, 2},    // dilation, non-square window
    {2, 1, 5, 5, 2, 3, 1, 2, 1, 1, 1, 1},    // stride 1 on one axis
    {1, 1, 6, 6, 3, 3, 3, 3, 1, 1, 1, 1},
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},    // a single pixel
    {3, 2, 5, 7, 2, 2, 1, 1, 1, 1, 3, 2},    // dilation larger than the window
    {3, 7, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1},    // 21 planes: 16 a lane each, 5 by rows
    {2, 16, 5, 7, 2, 3, 1, 2, 1, 1, 2, 1},   // 32 planes, dilation, padding
    {3, 5, 27, 13, 2, 2, 2, 2, 0, 0, 1, 1},  // 2x2/2, odd sizes: 6 outputs a row (AVX2: one part of 8)
    {1, 2, 26, 42, 2, 2, 2, 2, 0, 0, 1, 1},  // 21 outputs a row: two vectors of 8 and 5
    {2, 3, 9, 37, 2, 2, 2, 2, 0, 0, 1, 1},   // 18 outputs a row (AVX-512: 16 and 2), a last row and column no window reads
    {2, 2, 4, 19, 2, 2, 2, 2, 0, 0, 1, 1},   // 9 outputs a row: the gradient's last row written whole but the very end
    {3, 11, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1}, // resnet18's pool: 33 planes, 8 or 16 a lane each, then by rows
  };
  for (int i = 0; i < countof(max_cases); i++)
    test_pool(&max_cases[i], true);
  static const KPool2d avg_cases[] = {
    {1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1},
    {2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1},
    {1, 2, 6, 9, 3, 2, 1, 2, 1, 1, 1, 1},
    {2, 1, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1},
    {1, 1, 7, 5, 4, 3, 3, 2, 2, 1, 1, 1},
    {2, 3, 7, 9, 2, 2, 2, 2, 0, 0, 1, 1},    // windows that tile: a row and a column left over
    {1, 2, 9, 6, 3, 2, 3, 2, 0, 0, 1, 1},    // tiling 3x2 windows
  };
  for (int i = 0; i < countof(avg_cases); i++)
    test_pool(&avg_cases[i], false);
  test_maxpool_edges(k_maxpool2d_forward, "k_maxpool2d_forward");
  test_maxpool_edges(k_maxpool2d_forward_fast, "k_maxpool2d_forward_fast");
  test_avgpool_divisor();
  test_global_avgpool(2, 3, 20);
  test_global_avgpool(1, 1, 1);
  test_global_avgpool(3, 4, 49);
  return t_finish("test_pool");
}
