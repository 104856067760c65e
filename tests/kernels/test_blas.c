// test_blas.c: the portable GEMM (k_portable_sgemm, the runtime's BLAS in
// a build without OpenBLAS) against a naive triple loop in double and,
// where the build has OpenBLAS, against cblas_sgemm: all four transpose
// combinations, ragged sizes and sizes past each of its blocks (MC 64 rows,
// KC 256 of K, NC 1024 columns), leading dimensions longer than the rows,
// several alpha and beta, and beta = 0 over a C full of NaN (ignored, as
// cblas ignores it). Nothing outside the matrices' rows may change.
#include "../test.h"
#include "runtime.h"

#ifndef NNC_NO_BLAS
#include <cblas.h>
#endif

#define PAD 3          // each matrix's leading dimension is its row length + PAD
#define SENTINEL 12345.0f

// op(X)(i, k) of X stored with leading dimension ld, transposed when t.
static double at(const float *X, bool t, int64_t ld, int64_t i, int64_t k) {
  return t ? X[k * ld + i] : X[i * ld + k];
}

// want (M, N) = alpha op(A) op(B) + beta C0, in double; beta = 0 ignores C0.
static void naive_gemm(double *want, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta, const float *C0,
                       int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++)
        s += at(A, ta, lda, i, k) * at(B, tb, ldb, k, j);
      want[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : (double)beta * C0[i * ldc + j]);
    }
}

// C (M rows of ldc, padded) into a dense (M, N) copy; false if a padding
// float of C was written.
static bool unpad(float *dense, const float *C, int64_t M, int64_t N, int64_t ldc) {
  bool kept = true;
  for (int64_t i = 0; i < M; i++) {
    memcpy(dense + i * N, C + i * ldc, sizeof(float) * N);
    for (int64_t j = N; j < ldc; j++)
      kept &= C[i * ldc + j] == SENTINEL;
  }
  return kept;
}

static void test_case(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta, bool nan_c) {
  int64_t lda = (ta ? M : K) + PAD, ldb = (tb ? K : N) + PAD, ldc = N + PAD;
  int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
  float *A = t_randf(na, -1, 1), *B = t_randf(nb, -1, 1), *C0 = t_randf(nc, -1, 1);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < ldc; j++)
      C0[i * ldc + j] = j >= N ? SENTINEL : nan_c ? NAN : C0[i * ldc + j];
  float *C = t_copyf(C0, nc), *got = xmalloc(sizeof(float) * M * N);
  double *want = xmalloc(sizeof(double) * M * N);
  char what[160];
  snprintf(what, sizeof what, "portable M%lld N%lld K%lld ta%d tb%d alpha %g beta %g%s", (long long)M,
           (long long)N, (long long)K, ta, tb, alpha, beta, nan_c ? " (C NaN)" : "");

  naive_gemm(want, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
  k_portable_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  CHECK(unpad(got, C, M, N, ldc), "%s: wrote past N into the leading dimension's padding", what);
  // float sums of K products of [-1, 1] numbers: about K * 2^-24 apart
  double tol = 1e-6 * (K + 1);
  t_close(what, got, want, M * N, tol, 1e-5);

#ifndef NNC_NO_BLAS
  float *Cb = t_copyf(C0, nc), *gotb = xmalloc(sizeof(float) * M * N);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, alpha, A, (int)lda, B, (int)ldb, beta, Cb, (int)ldc);
  unpad(gotb, Cb, M, N, ldc);
  double *blas = t_tod(gotb, M * N);
  snprintf(what, sizeof what, "portable against cblas_sgemm M%lld N%lld K%lld ta%d tb%d alpha %g beta %g%s",
           (long long)M, (long long)N, (long long)K, ta, tb, alpha, beta, nan_c ? " (C NaN)" : "");
  t_close(what, got, blas, M * N, 2 * tol, 2e-5);
  free(Cb);
  free(gotb);
  free(blas);
#endif
  free(A);
  free(B);
  free(C0);
  free(C);
  free(got);
  free(want);
}

// k_blas_sgemm, whichever GEMM this build has, on one product.
static void test_dispatch(void) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, -1, 2, 0.5f, 1}, c[4] = {NAN, NAN, NAN, NAN};
  // [[1,2,3],[4,5,6]] @ [[1,0],[-1,2],[0.5,1]] = [[0.5,7],[2,16]]
  k_blas_sgemm(false, false, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
  CHECK(c[0] == 0.5f && c[1] == 7 && c[2] == 2 && c[3] == 16, "k_blas_sgemm: %g %g %g %g", c[0], c[1], c[2],
        c[3]);
}

int main(void) {
  t_seed(31);
  static const int64_t shapes[][3] = {   // M, N, K
      {1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {3, 1, 300}, {130, 9, 513}, {5, 1030, 260},
  };
  static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, 2}, {-1.5f, 0.25f}, {0, 0.5f}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t & 2;
      int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
      for (size_t v = 0; v < sizeof ab / sizeof ab[0]; v++)
        test_case(ta, tb, M, N, K, ab[v][0], ab[v][1], false);
      test_case(ta, tb, M, N, K, 1, 0, true);
      test_case(ta, tb, M, N, K, -2, 0, true);
    }
  test_dispatch();
  return t_finish("test_kernels_blas");
}
