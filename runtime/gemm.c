// gemm.c: single-precision GEMM for the cpu backend, on one thread.
//
// C (M, N) = op(A) op(B) + beta C, row-major, beta 0 or 1: the products a
// training step makes (batch 32-256 against layers of 10-1600 units, and a
// convolution's im2col matrices), which the thread pool has already cut
// into one block per thread. k_gemm_micro blocks the product for a set of
// micro-kernels (RtGemmKernels): a GEMM's own, which the codegen generates
// with its epilogue applied to the register tile, or, on AVX-512 hosts, the
// runtime's (k_avx512_gemm, fast_avx512.c), on products no program made
// kernels for. A register tile of tile_m x tile_n (8 x 32 with AVX-512: 16
// zmm accumulators) runs over K in blocks of KC:
//
//   for each KC block of K:            B's rows stay in L1/L2 across M
//     for each block of MC_TILES tiles' rows:   A's block stays in L2 across N
//       for each tile_n-column panel:  (B packed K-major when tb)
//         for each tile_m-row tile:    A read in place, by row and column
//           tile += A[rows, kc] @ B[kc, cols]   (8 broadcasts, 2 loads, 16 FMA per k)
//
// Without the row blocks, a thread's half of a 2048 x 2048 x 2048 product
// read its 1 MiB of A's KC columns again for every panel, from L3 (Zen 4,
// 1 MiB of L2): 161-180 GFLOP/s on two cores against 169-196 with them
// (medians of 5 alternated rounds, 175 and 192).
//
// A is read where it lies (each of a tile's rows is a broadcast stream,
// strided by lda or 1), and so is B when it is (K, N) row-major; B stored
// (N, K) is first packed into (KC, N) rows, once per KC block, except for
// few rows of A against a long K (a linear layer's forward), where dot
// products along K (dot_m x dot_n of them, or 1 x row_n for one row) run
// on A and B in place. Ragged edges use masked loads and stores for
// columns and repeat the last row for rows, so no tile reads or writes
// outside the matrices. Without generated kernels and AVX-512, or with
// alpha/beta other than 1 and {0, 1}, the call goes to the BLAS
// (k_blas_sgemm: cblas_sgemm, or k_portable_sgemm in a build without it).
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#define KC 256
#define MC_TILES 8   // rows of A in a block: 8 tiles (64 rows with AVX-512), 64 KiB at KC

// op(B)[p..p+kc, :] of B stored (N, K), packed as kc rows of N: 16 columns
// at a time, in 16 x 16 blocks through registers on AVX-512 hosts.
static void pack_bt(float *pk, const float *B, int64_t ldb, int64_t p, int64_t kc, int64_t N) {
  bool wide = k_avx512();
  for (int64_t j0 = 0; j0 < N; j0 += 16) {
    int64_t jn = N - j0 < 16 ? N - j0 : 16, k = 0;
    if (wide && jn == 16)
      for (; k + 16 <= kc; k += 16)
        k_avx512_transpose16(pk + k * N + j0, N, B + j0 * ldb + p + k, ldb);
    for (; k < kc; k++)
      for (int64_t j = 0; j < jn; j++)
        pk[k * N + j0 + j] = B[(j0 + j) * ldb + p + k];
  }
}

// The blocked product over uk's micro-kernels, for beta 0 or 1 (see the
// top of the file); C[0][0] is element (row0, col0) of the whole product.
void k_gemm_micro(const RtGemmKernels *uk, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,
                  int64_t lda, const float *B, int64_t ldb, bool accumulate, float *C, int64_t ldc, int64_t row0,
                  int64_t col0) {
  if (M <= 0 || N <= 0)
    return;
  int64_t acc = accumulate ? RT_ACCUMULATE : 0;
  if ((uk->dot || uk->row) && !ta && tb && (!uk->tile || (K >= RT_DOT_MIN_K && M <= RT_DOT_MAX_M) || M == 1)) {
    // a linear layer's forward: no packing, long dots; the row kernel for
    // one row, or where there is no dot kernel
    bool one = !uk->dot || (M == 1 && uk->row);
    int64_t dm = one ? 1 : uk->dot_m, dn = one ? uk->row_n : uk->dot_n;
    RtTileFn f = one ? uk->row : uk->dot;
    for (int64_t j = 0; j < N; j += dn)
      for (int64_t i = 0; i < M; i += dm)
        f(K, A + i * lda, lda, 1, B + j * ldb, ldb, C + i * ldc + j, ldc, M - i < dm ? M - i : dm,
          N - j < dn ? N - j : dn, acc | RT_LAST, row0 + i, col0 + j, uk->arena, uk->state, uk->B);
    return;
  }
  int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;   // A[i][k] = A[i*ars + k*acs]
  int64_t tm = uk->tile_m, tn = uk->tile_n, mc = MC_TILES * tm;
  // K in blocks of at most KC, all of one size (a last block of a few
  // rows would load and store C for little work: K = 288 is 2 x 144)
  int64_t nkb = K > KC ? (K + KC - 1) / KC : 1, kb = K > 0 ? (K + nkb - 1) / nkb : 1;
  for (int64_t p = 0; p < K || p == 0; p += kb) {   // once when K is 0: C = 0 (or C), then the epilogue
    int64_t kc = K - p < kb ? K - p : kb;
    int64_t flags = (accumulate || p > 0 ? RT_ACCUMULATE : 0) | (p + kc >= K ? RT_LAST : 0);
    const float *bk;   // op(B)[p.., :] as rows of brs floats
    int64_t brs;
    if (!tb || kc == 0) {
      bk = B + p * ldb;
      brs = ldb;
    } else {           // B (N, K): op(B)[p..p+kc, :] packed as (kc, N)
      float *pk = k_thread_scratch(K_SCRATCH_PACK, kc * N);
      pack_bt(pk, B, ldb, p, kc, N);
      bk = pk;
      brs = N;
    }
    for (int64_t i0 = 0; i0 < M; i0 += mc)
      for (int64_t j = 0; j < N; j += tn)
        for (int64_t i = i0; i < M && i < i0 + mc; i += tm)
          uk->tile(kc, A + i * ars + p * acs, ars, acs, bk + j, brs, C + i * ldc + j, ldc, M - i < tm ? M - i : tm,
                   N - j < tn ? N - j : tn, flags, row0 + i, col0 + j, uk->arena, uk->state, uk->B);
  }
}

void k_pack_panels(float *P, const float *B, bool tb, int64_t ldb, int64_t K, int64_t N, int64_t tn) {
  for (int64_t j0 = 0; j0 < N; j0 += tn) {
    int64_t w = N - j0 < tn ? N - j0 : tn;
    float *panel = P + j0 * K;   // (j0 / tn) * K * tn
    for (int64_t j = 0; tb && j < w; j++)   // B's rows read along, the panel's columns written down
      for (int64_t k = 0; k < K; k++)
        panel[k * tn + j] = B[(j0 + j) * ldb + k];
    for (int64_t k = 0; k < K; k++) {
      if (!tb)
        memcpy(panel + k * tn, B + k * ldb + j0, sizeof(float) * w);
      if (w < tn)
        memset(panel + k * tn + w, 0, sizeof(float) * (tn - w));
    }
  }
}

void k_gemm_micro_panels(const RtGemmKernels *uk, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *P, bool accumulate, float *C, int64_t ldc, int64_t row0, int64_t col0) {
  if (M <= 0 || N <= 0)
    return;
  int64_t tm = uk->tile_m, tn = uk->tile_n;
  int64_t nkb = K > KC ? (K + KC - 1) / KC : 1, kb = K > 0 ? (K + nkb - 1) / nkb : 1;
  for (int64_t p = 0; p < K || p == 0; p += kb) {   // as k_gemm_micro's K blocks
    int64_t kc = K - p < kb ? K - p : kb;
    int64_t flags = (accumulate || p > 0 ? RT_ACCUMULATE : 0) | (p + kc >= K ? RT_LAST : 0);
    for (int64_t j = 0; j < N; j += tn)
      for (int64_t i = 0; i < M; i += tm)
        uk->tile(kc, A + i * lda + p, lda, 1, P + j * K + p * tn, tn, C + i * ldc + j, ldc, M - i < tm ? M - i : tm,
                 N - j < tn ? N - j : tn, flags, row0 + i, col0 + j, uk->arena, uk->state, uk->B);
  }
}

// In blocks of 16 rows of src, 16 x 16 through registers on AVX-512 hosts
// (k_avx512_transpose16), else a column of the block at a time: each
// block's rows stay in cache while their columns are read.
void k_transpose_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t r0, int64_t r1) {
  bool wide = k_avx512();
  for (int64_t i0 = r0; i0 < r1; i0 += 16) {
    int64_t in = r1 - i0 < 16 ? r1 - i0 : 16, j = 0;
    if (wide && in == 16)
      for (; j + 16 <= cols; j += 16)
        k_avx512_transpose16(dst + j * rows + i0, rows, src + i0 * cols + j, cols);
    for (; j < cols; j++)
      for (int64_t i = 0; i < in; i++)
        dst[j * rows + i0 + i] = src[(i0 + i) * cols + j];
  }
}

void k_transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
  k_transpose_rows(dst, src, rows, cols, 0, rows);
}

void k_gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
               int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  if ((beta == 0.0f || beta == 1.0f) && k_avx512()) {
    k_gemm_micro(&k_avx512_gemm, ta, tb, M, N, K, A, lda, B, ldb, beta == 1.0f, C, ldc, 0, 0);
    return;
  }
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  k_blas_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void k_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
            float beta, float *C) {
  int64_t lda = ta ? M : K, ldb = tb ? K : N;
  if (alpha != 1.0f && M > 0 && N > 0 && K > 0) {
    k_blas_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    return;
  }
  k_gemm_ld(ta, tb, M, N, K, A, lda ? lda : 1, B, ldb ? ldb : 1, beta, C, N);
}

double rt_time_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int reps, int threads) {
  float *a = xmalloc(sizeof(float) * M * K), *b = xmalloc(sizeof(float) * K * N), *c = xmalloc(sizeof(float) * M * N);
  Rng r;
  rng_seed(&r, 1, 2);
  for (int64_t i = 0; i < M * K; i++)
    a[i] = rng_uniformf(&r);
  for (int64_t i = 0; i < K * N; i++)
    b[i] = rng_uniformf(&r);
  double *t = xmalloc(sizeof(double) * (reps + 3));
  rt_blas_threads(threads);
  for (int i = 0; i < reps + 3; i++) {   // 3 warm-up calls
    double t0 = now_seconds();
    k_blas_sgemm(ta, tb, M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, 0.0f, c, N);
    t[i] = now_seconds() - t0;
  }
  sort_doubles(t + 3, (size_t)reps);
  double median = t[3 + reps / 2];
  free(a);
  free(b);
  free(c);
  free(t);
  return median;
}
