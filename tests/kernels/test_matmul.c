// test_matmul.c: k_sgemm and the batched matmul against a naive triple loop
// in double, for every combination of the transpose flags; the backward by
// gradient checks.
#include "check.h"

// A(i, k) of op(A) for A stored (M,K), or (K,M) when transposed.
static double at(const double *A, bool t, int64_t rows, int64_t cols, int64_t i, int64_t k) {
  return t ? A[k * rows + i] : A[i * cols + k];
}

// y (batch,M,N) = op(a_i) @ op(b), in double.
static void naive_matmul(double *y, const double *a, const double *b, int64_t batch, int64_t M,
                         int64_t K, int64_t N, bool ta, bool tb) {
  for (int64_t bi = 0; bi < batch; bi++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++)
          s += at(a + bi * M * K, ta, M, K, i, k) * at(b, tb, K, N, k, j);
        y[(bi * M + i) * N + j] = s;
      }
}

typedef struct MmCtx {
  int64_t batch, M, K, N;
  bool ta, tb;
  double *a, *b, *y;
  const float *w;
} MmCtx;

static double mm_loss(void *p) {
  MmCtx *c = p;
  naive_matmul(c->y, c->a, c->b, c->batch, c->M, c->K, c->N, c->ta, c->tb);
  return t_dot(c->w, c->y, c->batch * c->M * c->N);
}

static void test_matmul(int64_t batch, int64_t M, int64_t K, int64_t N, bool ta, bool tb) {
  MmCtx c = {batch, M, K, N, ta, tb, NULL, NULL, NULL, NULL};
  int64_t na = batch * M * K, nb = K * N, ny = batch * M * N;
  float *a = t_randf(na, -1, 1), *b = t_randf(nb, -1, 1), *y = t_randf(ny, -1, 1);
  c.a = t_tod(a, na);
  c.b = t_tod(b, nb);
  c.y = xmalloc(ny * sizeof(double));
  char what[160];

  k_matmul_forward(y, a, b, batch, M, K, N, ta, tb);
  naive_matmul(c.y, c.a, c.b, batch, M, K, N, ta, tb);
  snprintf(what, sizeof what, "matmul b%lld M%lld K%lld N%lld ta%d tb%d forward",
           (long long)batch, (long long)M, (long long)K, (long long)N, ta, tb);
  t_close_fwd(what, y, c.y, ny);

  float *w = t_randf(ny, -1, 1);
  float *da0 = t_randf(na, -1, 1), *db0 = t_randf(nb, -1, 1);
  float *da = t_copyf(da0, na), *db = t_copyf(db0, nb);
  c.w = w;
  k_matmul_backward(da, db, w, a, b, batch, M, K, N, ta, tb);
  snprintf(what, sizeof what, "matmul b%lld M%lld K%lld N%lld ta%d tb%d d/da",
           (long long)batch, (long long)M, (long long)K, (long long)N, ta, tb);
  t_grad(what, da, da0, mm_loss, &c, c.a, na);
  snprintf(what, sizeof what, "matmul b%lld M%lld K%lld N%lld ta%d tb%d d/db",
           (long long)batch, (long long)M, (long long)K, (long long)N, ta, tb);
  t_grad(what, db, db0, mm_loss, &c, c.b, nb);
  free(a), free(b), free(y), free(c.a), free(c.b), free(c.y);
  free(w), free(da0), free(db0), free(da), free(db);
}

// alpha and beta: C = 0.5 * A @ B^T + 2 * C; and beta = 0 ignores NaN in C.
static void test_sgemm_alpha_beta(void) {
  int64_t M = 5, N = 4, K = 3;
  float *A = t_randf(M * K, -1, 1), *B = t_randf(N * K, -1, 1), *C = t_randf(M * N, -1, 1);
  double *Ad = t_tod(A, M * K), *Bd = t_tod(B, N * K), *want = xmalloc(M * N * sizeof(double));
  naive_matmul(want, Ad, Bd, 1, M, K, N, false, true);
  for (int64_t i = 0; i < M * N; i++)
    want[i] = 0.5 * want[i] + 2.0 * C[i];
  k_sgemm(false, true, M, N, K, 0.5f, A, B, 2.0f, C);
  t_close_fwd("sgemm alpha 0.5 beta 2", C, want, M * N);

  for (int64_t i = 0; i < M * N; i++)
    C[i] = NAN;
  naive_matmul(want, Ad, Bd, 1, M, K, N, false, true);
  k_sgemm(false, true, M, N, K, 1.0f, A, B, 0.0f, C);
  t_close_fwd("sgemm beta 0 over NaN", C, want, M * N);

  // K = 0: an empty sum, C = beta * C.
  float C2[4] = {1, 2, NAN, 4};
  k_sgemm(false, false, 2, 2, 0, 1.0f, A, B, 0.0f, C2);
  t_check("sgemm K = 0, beta = 0 gives zeros",
          C2[0] == 0 && C2[1] == 0 && C2[2] == 0 && C2[3] == 0);
  free(A), free(B), free(C), free(Ad), free(Bd), free(want);
}

// A larger product, where OpenBLAS takes its blocked paths.
static void test_matmul_large(void) {
  int64_t batch = 3, M = 37, K = 130, N = 65;
  for (int t = 0; t < 4; t++) {
    bool ta = t & 1, tb = t & 2;
    float *a = t_randf(batch * M * K, -1, 1), *b = t_randf(K * N, -1, 1);
    float *y = xmalloc(batch * M * N * sizeof(float));
    double *ad = t_tod(a, batch * M * K), *bd = t_tod(b, K * N);
    double *want = xmalloc(batch * M * N * sizeof(double));
    k_matmul_forward(y, a, b, batch, M, K, N, ta, tb);
    naive_matmul(want, ad, bd, batch, M, K, N, ta, tb);
    char what[100];
    snprintf(what, sizeof what, "matmul 3x37x130 @ 130x65 ta%d tb%d forward", ta, tb);
    t_close_fwd(what, y, want, batch * M * N);
    free(a), free(b), free(y), free(ad), free(bd), free(want);
  }
}

int main(void) {
  t_seed(2);
  static const int64_t shapes[][4] = {   // batch, M, K, N
    {1, 1, 1, 1}, {1, 3, 4, 5}, {2, 3, 4, 5}, {3, 1, 7, 2}, {1, 5, 1, 3}, {4, 2, 3, 1},
  };
  for (int i = 0; i < countof(shapes); i++)
    for (int t = 0; t < 4; t++)
      test_matmul(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], t & 1, (t & 2) != 0);
  test_sgemm_alpha_beta();
  test_matmul_large();
  return t_finish("test_matmul");
}
