// test_loss.c: cross_entropy, nll, mse, l1 and bce_with_logits against
// naive double versions (written differently where a stable form matters:
// bce through log-sigmoid); their backward by gradient checks with an
// upstream gradient g = 0.7; labels out of range end the program.
#include "../test.h"
#include "runtime.h"

static const double G = 0.7;   // the upstream gradient the backward gets

typedef enum { L_CE, L_NLL, L_MSE, L_L1, L_BCE } LossKind;

static const char *loss_names[] = {"cross_entropy", "nll", "mse", "l1", "bce_with_logits"};

// log(sigmoid(x)), stable for either sign.
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

static double naive_loss(LossKind k, const double *x, const double *t, const int32_t *labels,
                         int64_t N, int64_t C) {
  double s = 0;
  switch (k) {
  case L_CE:
    for (int64_t i = 0; i < N; i++) {
      double m = -INFINITY, e = 0;
      for (int64_t c = 0; c < C; c++)
        m = fmax(m, x[i * C + c]);
      for (int64_t c = 0; c < C; c++)
        e += exp(x[i * C + c] - m);
      s += m + log(e) - x[i * C + labels[i]];
    }
    return s / N;
  case L_NLL:
    for (int64_t i = 0; i < N; i++)
      s -= x[i * C + labels[i]];
    return s / N;
  case L_MSE:
    for (int64_t i = 0; i < N * C; i++)
      s += (x[i] - t[i]) * (x[i] - t[i]);
    return s / (N * C);
  case L_L1:
    for (int64_t i = 0; i < N * C; i++)
      s += fabs(x[i] - t[i]);
    return s / (N * C);
  case L_BCE:
    for (int64_t i = 0; i < N * C; i++)
      s -= t[i] * log_sigmoid(x[i]) + (1 - t[i]) * log_sigmoid(-x[i]);
    return s / (N * C);
  }
  return NAN;
}

typedef struct LossCtx {
  LossKind k;
  double *x, *t;
  const int32_t *labels;
  int64_t N, C;
} LossCtx;

static double loss_fn(void *p) {
  LossCtx *c = p;
  return G * naive_loss(c->k, c->x, c->t, c->labels, c->N, c->C);
}

static float run_forward(LossKind k, const float *x, const float *t, const int32_t *labels,
                         int64_t N, int64_t C) {
  switch (k) {
  case L_CE: return k_cross_entropy_forward(x, labels, N, C);
  case L_NLL: return k_nll_forward(x, labels, N, C);
  case L_MSE: return k_mse_forward(x, t, N * C);
  case L_L1: return k_l1_forward(x, t, N * C);
  case L_BCE: return k_bce_with_logits_forward(x, t, N * C);
  }
  return NAN;
}

static void run_backward(LossKind k, float *dx, float *dt, const float *x, const float *t,
                         const int32_t *labels, int64_t N, int64_t C) {
  switch (k) {
  case L_CE: k_cross_entropy_backward(dx, (float)G, x, labels, N, C); return;
  case L_NLL: k_nll_backward(dx, (float)G, labels, N, C); return;
  case L_MSE: k_mse_backward(dx, dt, (float)G, x, t, N * C); return;
  case L_L1: k_l1_backward(dx, dt, (float)G, x, t, N * C); return;
  case L_BCE: k_bce_with_logits_backward(dx, dt, (float)G, x, t, N * C); return;
  }
}

// Inputs suited to each loss: logits, log-probabilities, targets in [0,1],
// and for l1 an x at least 0.01 away from its target.
static void make_inputs(LossKind k, float **x, float **t, int32_t **labels, int64_t N, int64_t C,
                        double offset) {
  int64_t n = N * C;
  *labels = xmalloc(N * sizeof(int32_t));
  for (int64_t i = 0; i < N; i++)
    (*labels)[i] = (int32_t)rng_below(&t_rng, (uint32_t)C);
  *x = t_randf(n, offset - 2, offset + 2);
  *t = k == L_BCE ? t_randf(n, 0, 1) : t_randf(n, -1, 1);
  if (k == L_NLL)   // log-probabilities: log_softmax of the random row
    k_log_softmax_forward(*x, *x, N, C, 1);
  if (k == L_L1) {
    float *d = t_randf_away0(n, 0.01, 1);
    for (int64_t i = 0; i < n; i++)
      (*x)[i] = (*t)[i] + d[i];
    free(d);
  }
}

static void test_loss(LossKind k, int64_t N, int64_t C, double offset) {
  int64_t n = N * C;
  float *x, *t;
  int32_t *labels;
  make_inputs(k, &x, &t, &labels, N, C, offset);
  LossCtx c = {k, t_tod(x, n), t_tod(t, n), labels, N, C};
  char name[120], what[160];
  snprintf(name, sizeof name, "%s (%lld,%lld)%s", loss_names[k], (long long)N, (long long)C,
           offset ? " offset" : "");

  float loss = run_forward(k, x, t, labels, N, C);
  double want = naive_loss(k, c.x, c.t, labels, N, C);
  snprintf(what, sizeof what, "%s forward", name);
  t_close_fwd(what, &loss, &want, 1);

  bool has_dt = k == L_MSE || k == L_L1 || k == L_BCE;
  float *dx0 = t_randf(n, -1, 1), *dt0 = t_randf(n, -1, 1);
  float *dx = t_copyf(dx0, n), *dt = t_copyf(dt0, n);
  run_backward(k, dx, has_dt ? dt : NULL, x, t, labels, N, C);
  snprintf(what, sizeof what, "%s d/dx", name);
  t_grad(what, dx, dx0, loss_fn, &c, c.x, n);
  if (has_dt) {
    snprintf(what, sizeof what, "%s d/dtarget", name);
    t_grad(what, dt, dt0, loss_fn, &c, c.t, n);
  }
  free(x), free(t), free(labels), free(c.x), free(c.t), free(dx0), free(dt0), free(dx), free(dt);
}

// Values where a naive formula would overflow or lose everything.
static void test_extremes(void) {
  float logits[] = {1000, -1000, 0, 88, 89, 90};   // (2,3)
  int32_t labels[] = {1, 2};
  float ce = k_cross_entropy_forward(logits, labels, 2, 3);
  double want = (2000.0 + (90.0 + log(exp(-2.0) + exp(-1.0) + 1.0) - 90.0)) / 2;
  t_close_fwd("cross_entropy with logits of +-1000", &ce, &want, 1);

  float x[] = {100, -100, 0, 30}, t[] = {0, 1, 0.5f, 1};
  float bce = k_bce_with_logits_forward(x, t, 4);
  want = (100.0 + 100.0 + log(2.0) + log1p(exp(-30.0))) / 4;
  t_close_fwd("bce_with_logits at +-100", &bce, &want, 1);
  float dx[4] = {0};
  k_bce_with_logits_backward(dx, NULL, 1.0f, x, t, 4);
  CHECK(dx[0] == 0.25f && dx[1] == -0.25f && dx[2] == 0 && fabsf(dx[3]) < 1e-13f, "bce_with_logits gradient at +-100 is finite, +-1/n");
}

// cross_entropy(label_smoothing = 0.15) against PyTorch's in float64
// (F.cross_entropy(x, y, label_smoothing=0.15) and its x.grad), and 0
// against the plain kernels bit for bit.
static void test_label_smoothing(void) {
  float x[] = {0.5f, -1.25f, 2.0f, 0.75f, -0.3f, 0.1f, 0.9f, -2.0f, 1.5f, 1.5f, -0.5f, 0.0f};   // (3,4)
  int32_t y[] = {2, 0, 3};
  float loss = k_cross_entropy_smooth_forward(x, y, 3, 4, 0.15);
  double want = 1.573700829597396;
  t_close_fwd("cross_entropy label_smoothing 0.15 against PyTorch", &loss, &want, 1);
  static const double grad[12] = {0.035534280433328284, -0.004152893668295987, -0.08055862371373242,
                                  0.049177236948700166, -0.24022796597470467,  0.070453460347018,
                                  0.1721163211623655,   -0.002341815534678809, 0.12883483883270677,
                                  0.12883483883270677,  0.006627590444625376,  -0.26429726811003895};
  float dx[12] = {0};
  k_cross_entropy_smooth_backward(dx, 1.0f, x, y, 3, 4, 0.15);
  t_close_fwd("cross_entropy label_smoothing 0.15 gradient against PyTorch", dx, grad, 12);
  float plain = k_cross_entropy_forward(x, y, 3, 4), zero = k_cross_entropy_smooth_forward(x, y, 3, 4, 0);
  float d0[12] = {0}, d1[12] = {0};
  k_cross_entropy_backward(d0, 1.0f, x, y, 3, 4);
  k_cross_entropy_smooth_backward(d1, 1.0f, x, y, 3, 4, 0);
  CHECK(plain == zero && !memcmp(d0, d1, sizeof d0), "label_smoothing 0 is plain cross_entropy");
}

// PyTorch's l1 subgradient at x == t is 0.
static void test_l1_at_equality(void) {
  float x[] = {1, 2, 3}, t[] = {1, 1, 4}, dx[3] = {0}, dt[3] = {0};
  k_l1_backward(dx, dt, 3.0f, x, t, 3);
  CHECK(dx[0] == 0 && dx[1] == 1 && dx[2] == -1 && dt[0] == 0 && dt[1] == -1 && dt[2] == 1, "l1 gradient is sign(x - t), 0 at equality");
}

static float bad_logits[6];

static void ce_label_negative(void *unused) {
  (void)unused;
  int32_t labels[] = {0, -1};
  k_cross_entropy_forward(bad_logits, labels, 2, 3);
}

static void ce_label_too_big(void *unused) {
  (void)unused;
  int32_t labels[] = {3, 0};
  float d[6] = {0};
  k_cross_entropy_backward(d, 1.0f, bad_logits, labels, 2, 3);
}

static void nll_label_too_big(void *unused) {
  (void)unused;
  int32_t labels[] = {1, 7};
  k_nll_forward(bad_logits, labels, 2, 3);
}

int main(void) {
  t_seed(6);
  for (LossKind k = L_CE; k <= L_BCE; k++) {
    test_loss(k, 4, 5, 0);
    test_loss(k, 1, 1, 0);
    test_loss(k, 7, 3, 0);
    test_loss(k, 1, 10, 0);
  }
  test_loss(L_CE, 3, 4, 500);   // large logits: the maximum must come out first
  test_extremes();
  test_l1_at_equality();
  test_label_smoothing();
  t_exits_with_error("cross_entropy forward refuses label -1", ce_label_negative, NULL,
                     "label -1 of sample 1 is outside [0, 3)");
  t_exits_with_error("cross_entropy backward refuses label C", ce_label_too_big, NULL,
                     "label 3 of sample 0 is outside [0, 3)");
  t_exits_with_error("nll forward refuses label 7 of 3", nll_label_too_big, NULL,
                     "nll: label 7 of sample 1");
  return t_finish("test_loss");
}
