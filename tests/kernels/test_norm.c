// test_norm.c: batchnorm (training and evaluation), dropout, softmax and
// log_softmax against naive double versions; batchnorm, softmax and
// log_softmax backward by gradient checks, dropout's backward exactly;
// the cpu backend's dropout against the reference's bytes.
#include "../test.h"
#include "runtime.h"

//
// Batchnorm
//

// Training-mode batchnorm in double over (N,C,HW); mean and var (biased)
// per channel may be NULL.
static void naive_bn(double *y, double *mean, double *var, const double *x, const double *gamma,
                     const double *beta, int64_t N, int64_t C, int64_t HW, double eps) {
  int64_t cnt = N * HW;
  for (int64_t c = 0; c < C; c++) {
    double s = 0, sq = 0;
    for (int64_t n = 0; n < N; n++)
      for (int64_t i = 0; i < HW; i++)
        s += x[(n * C + c) * HW + i];
    double mu = s / cnt;
    for (int64_t n = 0; n < N; n++)
      for (int64_t i = 0; i < HW; i++)
        sq += (x[(n * C + c) * HW + i] - mu) * (x[(n * C + c) * HW + i] - mu);
    double v = sq / cnt;
    if (mean)
      mean[c] = mu;
    if (var)
      var[c] = v;
    for (int64_t n = 0; n < N; n++)
      for (int64_t i = 0; i < HW; i++) {
        int64_t k = (n * C + c) * HW + i;
        y[k] = (x[k] - mu) / sqrt(v + eps) * (gamma ? gamma[c] : 1) + (beta ? beta[c] : 0);
      }
  }
}

typedef struct BnCtx {
  int64_t N, C, HW;
  double eps;
  double *x, *gamma, *beta, *y;
  const float *dy;
} BnCtx;

static double bn_loss(void *p) {
  BnCtx *c = p;
  naive_bn(c->y, NULL, NULL, c->x, c->gamma, c->beta, c->N, c->C, c->HW, c->eps);
  return t_dot(c->dy, c->y, c->N * c->C * c->HW);
}

static void test_batchnorm(int64_t N, int64_t C, int64_t HW, bool affine) {
  const float eps = 1e-5f, momentum = 0.1f;
  int64_t n = N * C * HW;
  char name[100], what[160];
  snprintf(name, sizeof name, "batchnorm (%lld,%lld,%lld)%s", (long long)N, (long long)C,
           (long long)HW, affine ? "" : " no affine");
  float *x = t_randf(n, -2, 3), *gamma = t_randf(C, 0.5, 1.5), *beta = t_randf(C, -1, 1);
  float *rm = t_randf(C, -1, 1), *rv = t_randf(C, 0.5, 2);
  float *rm0 = t_copyf(rm, C), *rv0 = t_copyf(rv, C);
  float *y = xmalloc(n * sizeof(float)), *mean = xmalloc(C * sizeof(float));
  float *invstd = xmalloc(C * sizeof(float));
  BnCtx c = {N, C, HW, eps, t_tod(x, n), affine ? t_tod(gamma, C) : NULL,
             affine ? t_tod(beta, C) : NULL, xmalloc(n * sizeof(double)), NULL};
  double *mu = xmalloc(C * sizeof(double)), *var = xmalloc(C * sizeof(double));

  k_batchnorm_forward(y, mean, invstd, rm, rv, x, affine ? gamma : NULL, affine ? beta : NULL,
                      N, C, HW, eps, momentum);
  naive_bn(c.y, mu, var, c.x, c.gamma, c.beta, N, C, HW, eps);
  snprintf(what, sizeof what, "%s forward", name);
  t_close_fwd(what, y, c.y, n);
  snprintf(what, sizeof what, "%s saved mean", name);
  t_close_fwd(what, mean, mu, C);
  double *want = xmalloc(C * sizeof(double));
  for (int64_t i = 0; i < C; i++)
    want[i] = 1 / sqrt(var[i] + eps);
  snprintf(what, sizeof what, "%s saved invstd", name);
  t_close_fwd(what, invstd, want, C);
  for (int64_t i = 0; i < C; i++)
    want[i] = 0.9 * rm0[i] + 0.1 * mu[i];
  snprintf(what, sizeof what, "%s running_mean", name);
  t_close_fwd(what, rm, want, C);
  for (int64_t i = 0; i < C; i++)   // the unbiased variance goes into running_var
    want[i] = 0.9 * rv0[i] + 0.1 * var[i] * (N * HW) / (N * HW - 1.0);
  snprintf(what, sizeof what, "%s running_var (unbiased)", name);
  t_close_fwd(what, rv, want, C);

  // Evaluation uses the running statistics just updated.
  k_batchnorm_forward_eval(y, x, affine ? gamma : NULL, affine ? beta : NULL, rm, rv, N, C, HW,
                           eps);
  double *ye = xmalloc(n * sizeof(double));
  for (int64_t k = 0; k < n; k++) {
    int64_t ch = k / HW % C;
    ye[k] = (x[k] - (double)rm[ch]) / sqrt((double)rv[ch] + eps) * (affine ? gamma[ch] : 1) +
            (affine ? beta[ch] : 0);
  }
  snprintf(what, sizeof what, "%s eval forward", name);
  t_close_fwd(what, y, ye, n);

  float *dy = t_randf(n, -1, 1), *dx0 = t_randf(n, -1, 1), *dg0 = t_randf(C, -1, 1);
  float *db0 = t_randf(C, -1, 1);
  float *dx = t_copyf(dx0, n), *dg = t_copyf(dg0, C), *db = t_copyf(db0, C);
  c.dy = dy;
  k_batchnorm_backward(dx, affine ? dg : NULL, affine ? db : NULL, dy, x, mean, invstd,
                       affine ? gamma : NULL, N, C, HW);
  snprintf(what, sizeof what, "%s dx", name);
  t_grad(what, dx, dx0, bn_loss, &c, c.x, n);
  if (affine) {
    snprintf(what, sizeof what, "%s dgamma", name);
    t_grad(what, dg, dg0, bn_loss, &c, c.gamma, C);
    snprintf(what, sizeof what, "%s dbeta", name);
    t_grad(what, db, db0, bn_loss, &c, c.beta, C);
  }
  free(x), free(gamma), free(beta), free(rm), free(rv), free(rm0), free(rv0), free(y);
  free(mean), free(invstd), free(c.x), free(c.gamma), free(c.beta), free(c.y), free(mu);
  free(var), free(want), free(ye), free(dy), free(dx0), free(dg0), free(db0), free(dx);
  free(dg), free(db);
}

// One value per channel: no unbiased variance, so training refuses it.
static void bn_single_value(void *unused) {
  (void)unused;
  float x[3] = {1, 2, 3}, y[3], mean[3], invstd[3], rm[3] = {0}, rv[3] = {1, 1, 1};
  k_batchnorm_forward(y, mean, invstd, rm, rv, x, NULL, NULL, 1, 3, 1, 1e-5f, 0.1f);
}

//
// Dropout
//

static void test_dropout(void) {
  int64_t n = 100000;
  float *x = t_randf(n, -1, 1), *y = xmalloc(n * sizeof(float));
  uint8_t *mask = xmalloc(n);
  Rng r, r0;
  rng_seed(&r, 42, 1);
  r0 = r;

  k_dropout_forward(y, mask, x, n, 0.0f, k_dropout_key(0.0f, &r), 0);
  bool ok = memcmp(&r, &r0, sizeof r) == 0;
  for (int64_t i = 0; i < n; i++)
    ok = ok && y[i] == x[i] && mask[i] == 1;
  CHECK(ok, "dropout p=0 is the identity and draws nothing");

  float inf_x[2] = {INFINITY, 3.0f}, inf_y[2];
  uint8_t m2[2];
  k_dropout_forward(y, mask, x, n, 1.0f, k_dropout_key(1.0f, &r), 0);
  k_dropout_forward(inf_y, m2, inf_x, 2, 1.0f, k_dropout_key(1.0f, &r), 0);
  ok = memcmp(&r, &r0, sizeof r) == 0 && inf_y[1] == 0 && m2[0] == 0 && m2[1] == 0;
  for (int64_t i = 0; i < n; i++)
    ok = ok && y[i] == 0 && mask[i] == 0;
  CHECK(ok, "dropout p=1 gives zeros without dividing by zero");

  const float p = 0.3f;
  float scale = k_dropout_scale(p);
  CHECK(scale == 1.0f / 0.7f, "dropout scale is 1/(1-p)");
  uint64_t key = k_dropout_key(p, &r);
  Rng two = r0;
  rng_u32(&two);
  rng_u32(&two);
  CHECK(memcmp(&r, &two, sizeof r) == 0, "dropout p=0.3: the key takes two draws");
  k_dropout_forward(y, mask, x, n, p, key, 0);
  int64_t kept = 0;
  ok = true;
  for (int64_t i = 0; i < n; i++) {
    kept += mask[i];
    ok = ok && mask[i] == (k_dropout_uniform(key, i) >= p);
    ok = ok && y[i] == (mask[i] ? x[i] * scale : 0.0f * x[i]);
  }
  CHECK(ok, "dropout p=0.3: mask is u >= p, kept values scaled");
  double frac = (double)kept / n;   // the standard deviation is 0.00145
  printf("  kept fraction %.4f\n", frac);
  CHECK(fabs(frac - 0.7) < 0.01, "%s", "dropout p=0.3 keeps 70% +- 1%");
  // Neighbours are independent: P(both kept) = 0.49 (standard deviation 0.0016).
  int64_t both = 0;
  for (int64_t i = 0; i + 1 < n; i++)
    both += mask[i] & mask[i + 1];
  CHECK(fabs((double)both / (n - 1) - 0.49) < 0.01, "dropout p=0.3: neighbouring elements independent");

  // Any share drawn on its own gives the same mask as the whole.
  uint8_t *mask2 = xmalloc(n);
  float *y2 = xmalloc(n * sizeof(float));
  int64_t cut = 33333;
  k_dropout_forward(y2 + cut, mask2 + cut, x + cut, n - cut, p, key, cut);
  k_dropout_forward(y2, mask2, x, cut, p, key, 0);
  CHECK(memcmp(mask, mask2, n) == 0, "dropout: two shares give the mask of the whole");
  Rng r1 = r0;
  CHECK(k_dropout_key(p, &r) != key && k_dropout_key(p, &r1) == key, "dropout: another key, another mask");

  // In place.
  float *z = t_copyf(x, n);
  k_dropout_forward(z, mask2, z, n, p, key, 0);
  t_equal("dropout in place", z, y, n);

  float *dy = t_randf(n, -1, 1), *dx0 = t_randf(n, -1, 1), *dx = t_copyf(dx0, n);
  k_dropout_backward(dx, dy, mask, n, p);
  float *want = xmalloc(n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    want[i] = dx0[i] + dy[i] * (mask[i] ? scale : 0.0f);
  t_equal("dropout backward: dx += dy * mask * scale", dx, want, n);
  free(x), free(y), free(mask), free(mask2), free(y2), free(z), free(dy), free(dx0), free(dx);
  free(want);
}

//
// Gaussian noise
//

// The cpu backend's dropout, k_dropout_forward_fast (k_avx512_dropout on
// AVX-512 hosts, k_avx2_dropout on AVX2 ones: test_kernels_norm_portable
// runs this under NNC_NO_AVX512), against the reference k_dropout_forward: the same values and mask bytes, over lengths around
// the vector's 16, shares that start anywhere in the tensor (an index past
// 2^32 too), drop rates down to one kept in 2^24, infinities, NaN and
// negative zero among the inputs, and y in place of x.
static void test_dropout_fast(void) {
  static const int64_t lens[] = {1, 15, 16, 17, 33, 1000};
  static const int64_t firsts[] = {0, 5, 4096, (int64_t)1 << 33};
  // (0: p is element n / 3's own draw, which keeps it on the boundary)
  static const float ps[] = {0.1f, 0.5f, 0.9f, 1.0f - 1.0f / 16777216.0f, 0};
  int checks = 0, bad = 0;
  for (int li = 0; li < countof(lens); li++)
    for (int fi = 0; fi < countof(firsts); fi++)
      for (int pi = 0; pi < countof(ps); pi++) {
        int64_t n = lens[li];
        uint64_t key = (uint64_t)rng_u32(&t_rng) << 32 | rng_u32(&t_rng);
        float p = ps[pi] ? ps[pi] : k_dropout_uniform(key, firsts[fi] + n / 3);
        float *x = t_randf(n, -2, 2), *y = xmalloc(sizeof(float) * n), *yf = xmalloc(sizeof(float) * n);
        uint8_t *m = xmalloc(n), *mf = xmalloc(n);
        x[0] = n > 3 ? INFINITY : x[0];
        x[n - 1] = n > 3 ? NAN : x[n - 1];
        x[n / 2] = n > 3 ? -0.0f : x[n / 2];
        k_dropout_forward(y, m, x, n, p, key, firsts[fi]);
        k_dropout_forward_fast(yf, mf, x, n, p, key, firsts[fi]);
        bad += memcmp(y, yf, sizeof(float) * n) != 0 || memcmp(m, mf, n) != 0 || (!ps[pi] && p > 0 && !m[n / 3]);
        k_dropout_forward_fast(x, mf, x, n, p, key, firsts[fi]);   // in place
        bad += memcmp(y, x, sizeof(float) * n) != 0 || memcmp(m, mf, n) != 0;
        checks += 2;
        free(x), free(y), free(yf), free(m), free(mf);
      }
  CHECK(bad == 0, "k_dropout_forward_fast against k_dropout_forward: %d of %d runs differ", bad, checks);
}

static void test_noise(void) {
  int64_t n = 200000;
  float *x = t_randf(n, -1, 1), *y = xmalloc(n * sizeof(float)), *y2 = xmalloc(n * sizeof(float));
  Rng r, r0;
  rng_seed(&r, 42, 1);
  r0 = r;
  k_noise_forward(y, x, n, 0.0f, k_noise_key(0.0f, &r), 0);
  CHECK(memcmp(y, x, n * sizeof(float)) == 0 && memcmp(&r, &r0, sizeof r) == 0,
        "gaussian_noise std=0 is the identity and draws nothing");
  for (int k = 0; k < 2; k++) {
    float std = k == 0 ? 0.3f : 2.0f;
    uint64_t key = k_noise_key(std, &r);
    k_noise_forward(y, x, n, std, key, 0);
    double sum = 0, sum2 = 0, lag = 0, big = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
      double z = ((double)y[i] - x[i]) / std;
      finite = finite && isfinite(z);
      sum += z, sum2 += z * z, big += fabs(z) > 1.96;
      lag += i > 0 ? z * (((double)y[i - 1] - x[i - 1]) / std) : 0;
    }
    double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
    // The mean of n normals is within 4.5 / sqrt(n) = 0.01 of 0 but by a
    // chance of 1e-5; their std within 1%.
    CHECK(finite && fabs(mean) < 0.01 && fabs(sd - 1) < 0.01, "gaussian_noise std=%g: mean %g std %g (in units of std)",
          (double)std, mean, sd);
    CHECK(fabs(big / n - 0.05) < 0.003, "gaussian_noise std=%g: %.4f of the values beyond 1.96 std (a normal: 0.05)",
          (double)std, big / n);
    CHECK(fabs(lag / n) < 0.01, "gaussian_noise std=%g: neighbouring elements uncorrelated (%g)", (double)std, lag / n);
  }
  uint64_t key = k_noise_key(0.5f, &r);
  k_noise_forward(y, x, n, 0.5f, key, 0);
  int64_t cut = 777;   // two shares, the second first: the same as the whole
  k_noise_forward(y2 + cut, x + cut, n - cut, 0.5f, key, cut);
  k_noise_forward(y2, x, cut, 0.5f, key, 0);
  CHECK(memcmp(y, y2, n * sizeof(float)) == 0, "gaussian_noise: two shares give the noise of the whole");
  bool same = true;
  for (int64_t i = 0; i < n; i++)
    same = same && y[i] == x[i] + 0.5f * k_noise_normal(key, i);
  CHECK(same, "gaussian_noise: y = x + std * k_noise_normal(key, i)");
  memcpy(y2, x, n * sizeof(float));
  k_noise_forward(y2, y2, n, 0.5f, key, 0);
  t_equal("gaussian_noise in place", y2, y, n);
  CHECK(k_noise_key(0.5f, &r) != key, "gaussian_noise: a new key each call");
  free(x), free(y), free(y2);
}

//
// Softmax and log_softmax
//

static void naive_softmax(double *y, const double *x, int64_t outer, int64_t C, int64_t inner,
                          bool log_) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double m = -INFINITY, s = 0;
      for (int64_t c = 0; c < C; c++)
        m = fmax(m, x[(o * C + c) * inner + i]);
      for (int64_t c = 0; c < C; c++)
        s += exp(x[(o * C + c) * inner + i] - m);
      for (int64_t c = 0; c < C; c++) {
        int64_t k = (o * C + c) * inner + i;
        y[k] = log_ ? x[k] - m - log(s) : exp(x[k] - m) / s;
      }
    }
}

typedef struct SmCtx {
  int64_t outer, C, inner;
  bool log_;
  double *x, *y;
  const float *dy;
} SmCtx;

static double sm_loss(void *p) {
  SmCtx *c = p;
  naive_softmax(c->y, c->x, c->outer, c->C, c->inner, c->log_);
  return t_dot(c->dy, c->y, c->outer * c->C * c->inner);
}

static void test_softmax(int64_t outer, int64_t C, int64_t inner, double offset, bool log_) {
  int64_t n = outer * C * inner;
  char name[120], what[160];
  snprintf(name, sizeof name, "%s (%lld,%lld,%lld)%s", log_ ? "log_softmax" : "softmax",
           (long long)outer, (long long)C, (long long)inner, offset ? " offset 1000" : "");
  float *x = t_randf(n, offset - 3, offset + 3), *y = xmalloc(n * sizeof(float));
  SmCtx c = {outer, C, inner, log_, t_tod(x, n), xmalloc(n * sizeof(double)), NULL};
  (log_ ? k_log_softmax_forward : k_softmax_forward)(y, x, outer, C, inner);
  naive_softmax(c.y, c.x, outer, C, inner, log_);
  snprintf(what, sizeof what, "%s forward", name);
  t_close_fwd(what, y, c.y, n);

  float *z = t_copyf(x, n);   // y may alias x
  (log_ ? k_log_softmax_forward : k_softmax_forward)(z, z, outer, C, inner);
  snprintf(what, sizeof what, "%s in place", name);
  t_equal(what, z, y, n);

  float *dy = t_randf(n, -1, 1), *dx0 = t_randf(n, -1, 1), *dx = t_copyf(dx0, n);
  c.dy = dy;
  (log_ ? k_log_softmax_backward : k_softmax_backward)(dx, dy, y, outer, C, inner);
  snprintf(what, sizeof what, "%s dx", name);
  t_grad(what, dx, dx0, sm_loss, &c, c.x, n);
  free(x), free(y), free(c.x), free(c.y), free(z), free(dy), free(dx0), free(dx);
}

// The cpu backend's float kernels (kernels_fast.c) against the double
// references: close on random rows of every length around the vectors'
// (17: attention over 16 patches and a class token), in place as out of
// place, and the references' NaN, inf and -inf behaviour.
static void test_fast(int64_t outer, int64_t C, int64_t inner) {
  int64_t n = outer * C * inner;
  char what[160];
  float *x = t_randf(n, -8, 8), *y = xmalloc(n * sizeof(float)), *want = xmalloc(n * sizeof(float));
  if (C > 2) {   // a row with -inf among finite values (rows of -inf alone: test_fast_special)
    x[1] = -INFINITY;
    x[n - 1] = 40;
  }
  k_softmax_forward(want, x, outer, C, inner);
  k_softmax_fast(y, x, outer, C, inner);
  snprintf(what, sizeof what, "softmax fast (%lld,%lld,%lld)", (long long)outer, (long long)C, (long long)inner);
  double *w = t_tod(want, n);
  t_close_fwd(what, y, w, n);
  float *z = t_copyf(x, n);
  k_softmax_fast(z, z, outer, C, inner);
  snprintf(what, sizeof what, "softmax fast (%lld,%lld,%lld) in place", (long long)outer, (long long)C,
           (long long)inner);
  t_equal(what, z, y, n);

  float *dy = t_randf(n, -1, 1), *dx = xmalloc(n * sizeof(float)), *dxw = xmalloc(n * sizeof(float));
  double *dw = NULL;
  int64_t rows = outer * inner, D = C;   // layer normalization over rows of C
  free(w);
  for (int64_t i = 0; i < n; i++)
    if (isinf(x[i]))
      x[i] = 3;   // normalization of a row with inf is NaN either way; finite rows here
  k_layernorm_forward(want, x, rows, D, 1e-5);
  k_layernorm_fast(y, x, rows, D, 1e-5);
  w = t_tod(want, n);
  snprintf(what, sizeof what, "layernorm fast (%lld rows of %lld)", (long long)rows, (long long)D);
  t_close_fwd(what, y, w, n);
  k_layernorm_backward(dxw, dy, x, rows, D, 1e-5);
  k_layernorm_backward_fast(dx, dy, x, rows, D, 1e-5);
  free(dw);
  dw = t_tod(dxw, n);
  snprintf(what, sizeof what, "layernorm fast (%lld rows of %lld) dx", (long long)rows, (long long)D);
  t_close_fwd(what, dx, dw, n);
  free(x), free(y), free(want), free(w), free(z), free(dy), free(dx), free(dxw), free(dw);
}

// Rows computed together give the same bits as each row alone, so that any
// split of the rows across threads gives the same result.
static void test_fast_groups(int64_t outer, int64_t C) {
  int64_t n = outer * C;
  float *x = t_randf(n, -8, 8), *all = xmalloc(n * sizeof(float)), *one = xmalloc(n * sizeof(float));
  x[C / 2] = NAN;   // a NaN skipped by the maximum, as the reference skips it
  k_softmax_fast(all, x, outer, C, 1);
  for (int64_t o = 0; o < outer; o++)
    k_softmax_fast(one + o * C, x + o * C, 1, C, 1);
  char what[96];
  snprintf(what, sizeof what, "softmax fast: %lld rows of %lld, together and alone", (long long)outer,
           (long long)C);
  t_equal(what, all, one, n);
  free(x), free(all), free(one);
}

// Rows with NaN, +inf and only -inf give what the reference gives.
static void test_fast_special(void) {
  enum { C = 19, R = 12 };   // (more rows than a vector has lanes)
  float rows[R][C], want[R][C], got[R][C];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      rows[r][c] = (float)(c % 5) - 2;
  for (int g = 0; g < R; g += 4) {
    rows[g][3] = NAN;
    rows[g + 1][17] = INFINITY;
    for (int c = 0; c < C; c++)
      rows[g + 2][c] = -INFINITY;
    rows[g + 3][0] = 1e30f;
    rows[g + 3][18] = NAN;   // in the last, partial vector
  }
  k_softmax_forward(&want[0][0], &rows[0][0], R, C, 1);
  k_softmax_fast(&got[0][0], &rows[0][0], R, C, 1);
  t_equal("softmax fast: NaN, inf, all -inf and 1e30 rows", &got[0][0], &want[0][0], R * C);
}

int main(void) {
  t_seed(5);
  test_batchnorm(4, 3, 1, true);     // (N,C)
  test_batchnorm(2, 3, 20, true);    // (N,C,H,W)
  test_batchnorm(1, 2, 6, true);     // batch 1, but 6 values per channel
  test_batchnorm(5, 1, 1, true);     // one channel
  test_batchnorm(3, 4, 5, false);    // no gamma, beta
  test_batchnorm(2, 2, 1, true);     // two values per channel: the smallest allowed
  test_batchnorm(2, 3, 70, true);    // runs of 64 or more: one channel at a time
  test_batchnorm(3, 100, 50, true);  // short runs over more channels than one block
  t_exits_with_error("batchnorm training with one value per channel is refused", bn_single_value,
                     NULL, "more than one value per channel");
  test_dropout();
  test_dropout_fast();
  test_noise();
  for (int log_ = 0; log_ < 2; log_++) {
    test_softmax(4, 5, 1, 0, log_);
    test_softmax(2, 3, 6, 0, log_);
    test_softmax(1, 1, 1, 0, log_);
    test_softmax(3, 10, 1, 1000, log_);
    test_softmax(2, 7, 4, 0, log_);
  }
  int64_t lens[] = {1, 3, 8, 17, 24, 31, 33, 64, 100};
  for (int i = 0; i < countof(lens); i++) {
    test_fast(5, lens[i], 1);
    test_fast(2, lens[i], 11);   // along a middle axis: 8 columns at a time, then 3
    test_fast(21, lens[i], 1);
    test_fast_groups(21, lens[i]);
  }
  test_fast_special();
  return t_finish("test_norm");
}
