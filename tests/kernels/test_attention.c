// test_attention.c: the reference kernels of attention's ops against naive
// double versions: k_permute against index arithmetic, k_batch_matmul with
// transposed and broadcast operands, k_layernorm_forward, and
// k_layernorm_backward by a gradient check.
#include "../test.h"
#include "runtime.h"

//
// Permute
//

// x[2,3,4,5] permuted to (0, 3, 1, 2): y[a][d][b][c] = x[a][b][c][d].
static void test_permute(void) {
  KShape xs = k_shape(4, (int64_t[]){2, 3, 4, 5});
  int64_t n = k_numel(&xs);
  float *x = t_randf(n, -1, 1), *y = xmalloc(n * sizeof(float));
  double *want = xmalloc(n * sizeof(double));
  k_permute(y, x, &xs, (int64_t[]){0, 3, 1, 2});
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 4; c++)
        for (int d = 0; d < 5; d++)
          want[((a * 5 + d) * 3 + b) * 4 + c] = x[((a * 3 + b) * 4 + c) * 5 + d];
  t_close("permute (0, 3, 1, 2)", y, want, n, 0, 0);
  k_permute(y, x, &xs, (int64_t[]){0, 1, 2, 3});   // the identity
  double *same = t_tod(x, n);
  t_close("permute (identity)", y, same, n, 0, 0);
  free(x), free(y), free(want), free(same);
}

//
// Batched matrix products
//

// y = op(a) op(b) over leading dimensions [L0, L1] where a has [A0, L1]
// (A0 = 1 or L0) and b has [L1] only (broadcast over L0).
static void test_batch_matmul(int64_t A0, bool ta, bool tb) {
  const int64_t L0 = 3, L1 = 2, M = 4, K = 5, P = 6;
  KShape as = k_shape(4, (int64_t[]){A0, L1, ta ? K : M, ta ? M : K});
  KShape bs = k_shape(3, (int64_t[]){L1, tb ? P : K, tb ? K : P});
  KShape ys = k_shape(4, (int64_t[]){L0, L1, M, P});
  float *a = t_randf(k_numel(&as), -1, 1), *b = t_randf(k_numel(&bs), -1, 1);
  int64_t n = k_numel(&ys);
  float *y = xmalloc(n * sizeof(float));
  double *want = xmalloc(n * sizeof(double));
  k_batch_matmul(y, &ys, a, &as, ta, b, &bs, tb);
  for (int64_t i = 0; i < L0; i++)
    for (int64_t j = 0; j < L1; j++)
      for (int64_t m = 0; m < M; m++)
        for (int64_t p = 0; p < P; p++) {
          const float *ai = a + ((A0 == 1 ? 0 : i) * L1 + j) * M * K, *bj = b + j * K * P;
          double s = 0;
          for (int64_t k = 0; k < K; k++)
            s += (double)(ta ? ai[k * M + m] : ai[m * K + k]) * (tb ? bj[p * K + k] : bj[k * P + p]);
          want[((i * L1 + j) * M + m) * P + p] = s;
        }
  char what[96];
  snprintf(what, sizeof what, "batch_matmul a[%lld,2] ta=%d tb=%d", (long long)A0, ta, tb);
  t_close_fwd(what, y, want, n);
  free(a), free(b), free(y), free(want);
}

//
// Layer normalization
//

typedef struct LnCtx {
  int64_t rows, D;
  double eps;
  double *x, *y;
  const float *dy;
} LnCtx;

static void naive_ln(LnCtx *c) {
  for (int64_t r = 0; r < c->rows; r++) {
    const double *x = c->x + r * c->D;
    double m = 0, v = 0;
    for (int64_t j = 0; j < c->D; j++)
      m += x[j] / c->D;
    for (int64_t j = 0; j < c->D; j++)
      v += (x[j] - m) * (x[j] - m) / c->D;
    for (int64_t j = 0; j < c->D; j++)
      c->y[r * c->D + j] = (x[j] - m) / sqrt(v + c->eps);
  }
}

static double ln_loss(void *p) {
  LnCtx *c = p;
  naive_ln(c);
  return t_dot(c->dy, c->y, c->rows * c->D);
}

static void test_layernorm(int64_t rows, int64_t D, double eps) {
  int64_t n = rows * D;
  char what[96];
  float *x = t_randf(n, -2, 3), *y = xmalloc(n * sizeof(float));
  LnCtx c = {rows, D, eps, t_tod(x, n), xmalloc(n * sizeof(double)), NULL};
  k_layernorm_forward(y, x, rows, D, eps);
  naive_ln(&c);
  snprintf(what, sizeof what, "layernorm (%lld, %lld) eps %g forward", (long long)rows, (long long)D, eps);
  t_close_fwd(what, y, c.y, n);
  float *dy = t_randf(n, -1, 1), *dx = xmalloc(n * sizeof(float)), *zero = calloc(n, sizeof(float));
  c.dy = dy;
  k_layernorm_backward(dx, dy, x, rows, D, eps);
  snprintf(what, sizeof what, "layernorm (%lld, %lld) eps %g dx", (long long)rows, (long long)D, eps);
  t_grad(what, dx, zero, ln_loss, &c, c.x, n);
  free(x), free(y), free(c.x), free(c.y), free(dy), free(dx), free(zero);
}

int main(void) {
  t_seed(13);
  test_permute();
  for (int t = 0; t < 4; t++) {
    test_batch_matmul(3, t & 1, t >> 1);
    test_batch_matmul(1, t & 1, t >> 1);
  }
  test_layernorm(4, 8, 1e-5);
  test_layernorm(3, 1, 1e-5);    // one value a row: all zeros, a zero gradient
  test_layernorm(2, 50, 0.1);
  return t_finish("test_attention");
}
