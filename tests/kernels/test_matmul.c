// test_matmul.c: k_sgemm and the batched matmul against a naive triple loop
// in double, for every combination of the transpose flags; the backward by
// gradient checks.
#include "../test.h"
#include "runtime.h"

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
  CHECK(C2[0] == 0 && C2[1] == 0 && C2[2] == 0 && C2[3] == 0, "sgemm K = 0, beta = 0 gives zeros");
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

// The cpu backend's GEMM (k_gemm, k_gemm_ld) on ragged shapes around its
// 8 x 32 register tile, 4 x 4 dot tile and K blocks of at most 256 (and
// an empty K), every ta/tb:
// beta 0 over a C of NaN (ignored), then beta 1 (accumulates). The same
// product as a block of larger matrices (leading dimensions past the
// block's sizes), as the thread pool's split calls it. Runs the AVX-512
// path where the host has it; the suite runs it again under NNC_NO_AVX512.
static void test_gemm_fast(void) {
  static const int64_t sizes[] = {1, 7, 8, 9, 17, 33, 64, 65, 300};
  static const int64_t depths[] = {0, 1, 10, 63, 64, 257, 288, 513};
  for (int si = 0; si < countof(sizes); si++)
    for (int sj = 0; sj < countof(sizes); sj += 2)
      for (int sk = 0; sk < countof(depths); sk++)
        for (int t = 0; t < 4; t++) {
          int64_t M = sizes[si], N = sizes[(si + sj) % countof(sizes)], K = depths[sk];
          bool ta = t & 1, tb = t & 2;
          float *a = t_randf(M * K, -1, 1), *b = t_randf(K * N, -1, 1), *c = xmalloc(M * N * sizeof(float));
          double *ad = t_tod(a, M * K), *bd = t_tod(b, K * N), *want = xmalloc(M * N * sizeof(double));
          naive_matmul(want, ad, bd, 1, M, K, N, ta, tb);
          for (int64_t i = 0; i < M * N; i++)
            c[i] = NAN;
          k_gemm(ta, tb, M, N, K, 1.0f, a, b, 0.0f, c);
          char what[100];
          snprintf(what, sizeof what, "gemm %lldx%lldx%lld ta%d tb%d beta 0", (long long)M, (long long)K,
                   (long long)N, ta, tb);
          t_close(what, c, want, M * N, 1e-5 * sqrt((double)K), 1e-4);
          for (int64_t i = 0; i < M * N; i++)
            want[i] += c[i];
          k_gemm(ta, tb, M, N, K, 1.0f, a, b, 1.0f, c);
          snprintf(what, sizeof what, "gemm %lldx%lldx%lld ta%d tb%d beta 1", (long long)M, (long long)K,
                   (long long)N, ta, tb);
          t_close(what, c, want, M * N, 2e-5 * sqrt((double)K), 1e-4);
          free(a), free(b), free(c), free(ad), free(bd), free(want);
        }
  // A 20 x 40 block at (3, 5) of C (30, 50), from blocks of larger A and B.
  int64_t M = 20, N = 40, K = 70, ldc = 50;
  for (int t = 0; t < 4; t++) {
    bool ta = t & 1, tb = t & 2;
    int64_t lda = (ta ? M : K) + 11, ldb = (tb ? K : N) + 13;
    int64_t arows = ta ? K : M, brows = tb ? N : K;
    float *a = t_randf(arows * lda, -1, 1), *b = t_randf(brows * ldb, -1, 1), *c = t_randf(30 * ldc, -1, 1);
    float *c0 = t_copyf(c, 30 * ldc);
    double *ad = xmalloc(M * K * sizeof(double)), *bd = xmalloc(K * N * sizeof(double));
    for (int64_t r = 0; r < arows; r++)   // the block, packed, as naive_matmul reads it
      for (int64_t s = 0; s < (ta ? M : K); s++)
        ad[r * (ta ? M : K) + s] = a[r * lda + s];
    for (int64_t r = 0; r < brows; r++)
      for (int64_t s = 0; s < (tb ? K : N); s++)
        bd[r * (tb ? K : N) + s] = b[r * ldb + s];
    double *want = xmalloc(M * N * sizeof(double));
    naive_matmul(want, ad, bd, 1, M, K, N, ta, tb);
    k_gemm_ld(ta, tb, M, N, K, a, lda, b, ldb, 1.0f, c + 3 * ldc + 5, ldc);
    bool ok = true;
    double worst = 0;
    for (int64_t i = 0; i < 30; i++)
      for (int64_t j = 0; j < ldc; j++) {
        bool inside = i >= 3 && i < 3 + M && j >= 5 && j < 5 + N;
        double w = inside ? c0[i * ldc + j] + want[(i - 3) * N + j - 5] : c0[i * ldc + j];
        double d = fabs(c[i * ldc + j] - w);
        worst = d > worst ? d : worst;
        ok = ok && d <= 1e-4 + 1e-4 * fabs(w);
      }
    char what[100];
    snprintf(what, sizeof what, "gemm_ld block of larger matrices ta%d tb%d (and nothing outside it)", ta, tb);
    t_report(what, ok, worst, 30 * ldc);
    free(a), free(b), free(c), free(c0), free(ad), free(bd), free(want);
  }
}

// k_transpose, and k_transpose_rows in two shares split at a row that is
// (or is not) a multiple of 16, against the plain copy: 16 x 16 blocks
// through AVX-512 registers where the host has them (and not under
// NNC_NO_AVX512: test_kernels_matmul_portable), ragged edges both ways.
static void test_transpose(int64_t rows, int64_t cols, int64_t cut) {
  float *src = t_randf(rows * cols, -1, 1), *want = xmalloc(sizeof(float) * rows * cols);
  float *got = t_randf(rows * cols, -1, 1), *whole = t_randf(rows * cols, -1, 1);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++)
      want[j * rows + i] = src[i * cols + j];
  k_transpose_rows(got, src, rows, cols, cut, rows);
  k_transpose_rows(got, src, rows, cols, 0, cut);
  k_transpose(whole, src, rows, cols);
  char what[96];
  snprintf(what, sizeof what, "transpose of (%lld, %lld), shares cut at row %lld", (long long)rows, (long long)cols,
           (long long)cut);
  t_equal(what, got, want, rows * cols);
  snprintf(what, sizeof what, "transpose of (%lld, %lld) whole", (long long)rows, (long long)cols);
  t_equal(what, whole, want, rows * cols);
  free(src), free(want), free(got), free(whole);
}

int main(void) {
  t_seed(2);
  static const int64_t transposes[][3] = {   // rows, cols, cut
    {1, 1, 0}, {16, 16, 16}, {37, 50, 16}, {33, 16, 17}, {512, 784, 256}, {15, 40, 7},
  };
  for (int i = 0; i < countof(transposes); i++)
    test_transpose(transposes[i][0], transposes[i][1], transposes[i][2]);
  static const int64_t shapes[][4] = {   // batch, M, K, N
    {1, 1, 1, 1}, {1, 3, 4, 5}, {2, 3, 4, 5}, {3, 1, 7, 2}, {1, 5, 1, 3}, {4, 2, 3, 1},
  };
  for (int i = 0; i < countof(shapes); i++)
    for (int t = 0; t < 4; t++)
      test_matmul(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], t & 1, (t & 2) != 0);
  test_sgemm_alpha_beta();
  test_matmul_large();
  test_gemm_fast();
  return t_finish("test_matmul");
}
