// gemm.c: single-precision GEMM for the cpu backend, on one thread.
//
// C (M, N) = op(A) op(B) + beta C, row-major, beta 0 or 1: the products a
// training step makes (batch 32-256 against layers of 10-1600 units, and a
// convolution's im2col matrices), which the thread pool has already cut
// into one block per thread. k_gemm_micro blocks the product for a set of
// micro-kernels (RtGemmKernels): a GEMM's own, which the codegen generates
// with its epilogue applied to the register tile, or the runtime's below,
// for AVX-512 hosts, on products no program made kernels for. A register
// tile of tile_m x tile_n (8 x 32 with AVX-512: 16 zmm accumulators) runs
// over K in blocks of KC:
//
//   for each KC block of K:            B's rows stay in L1/L2 across M
//     for each tile_n-column panel:    (B packed K-major when tb)
//       for each tile_m-row tile:      A read in place, by row and column
//         tile += A[rows, kc] @ B[kc, cols]     (8 broadcasts, 2 loads, 16 FMA per k)
//
// A is read where it lies (each of a tile's rows is a broadcast stream,
// strided by lda or 1), and so is B when it is (K, N) row-major; B stored
// (N, K) is first packed into (KC, N) rows, once per KC block, except for
// few rows of A against a long K (a linear layer's forward), where dot
// products along K (dot_m x dot_n of them, or 1 x row_n for one row) run
// on A and B in place. Ragged edges use masked loads and stores for
// columns and repeat the last row for rows, so no tile reads or writes
// outside the matrices. Without generated kernels and AVX-512, or with
// alpha/beta other than 1 and {0, 1}, the call goes to cblas_sgemm.
#include "runtime.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MR 8
#define NR 32
#define KC 256

// Scratch of each kind per thread, freed when the thread exits.
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

typedef struct Scratch {
  float *p[K_SCRATCH_KINDS];
  int64_t cap[K_SCRATCH_KINDS];
} Scratch;

static void scratch_free(void *v) {
  Scratch *sc = v;
  for (int i = 0; i < K_SCRATCH_KINDS; i++)
    free(sc->p[i]);
  free(sc);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

float *k_thread_scratch(int kind, int64_t n) {
  pthread_once(&scratch_once, scratch_init);
  Scratch *sc = pthread_getspecific(scratch_key);
  if (!sc) {
    sc = xcalloc(1, sizeof *sc);
    pthread_setspecific(scratch_key, sc);
  }
  return k_grow(&sc->p[kind], &sc->cap[kind], n);
}

float *k_grow(float **buf, int64_t *cap, int64_t n) {
  if (n > *cap) {
    free(*buf);
    *buf = xmalloc(sizeof(float) * n);
    *cap = n;
  }
  return *buf;
}

static void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX512_PATH 1

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

static __mmask16 mask_of(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// Row i of a ragged block of n rows ld floats apart: rows past n repeat
// the last one (read, never stored).
static inline const float *row_at(const float *p, int i, int64_t n, int64_t ld) { return p + (i < n ? i : n - 1) * ld; }

// One register tile (a RtTileFn): C[0..mr, 0..nr] (+)= A rows @ B rows,
// rows past mr repeating the last one, unstored.
AVX512 static void tile(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs, float *c,
                        int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col, char *arena,
                        char *state, int64_t B) {
  (void)row, (void)col, (void)arena, (void)state, (void)B;
  __mmask16 m0 = mask_of(nr), m1 = mask_of(nr - 16);
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  const float *a0 = row_at(a, 0, mr, ars), *a1 = row_at(a, 1, mr, ars), *a2 = row_at(a, 2, mr, ars),
              *a3 = row_at(a, 3, mr, ars), *a4 = row_at(a, 4, mr, ars), *a5 = row_at(a, 5, mr, ars),
              *a6 = row_at(a, 6, mr, ars), *a7 = row_at(a, 7, mr, ars);
#define ROW(i)                                \
  do {                                        \
    __m512 ai = _mm512_set1_ps(a##i[o]);      \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0); \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1); \
  } while (0)
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
    int64_t o = k * acs;
    ROW(0);
    ROW(1);
    ROW(2);
    ROW(3);
    ROW(4);
    ROW(5);
    ROW(6);
    ROW(7);
    b += brs;
  }
#undef ROW
  __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                       {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  for (int i = 0; i < mr; i++) {
    float *ci = c + i * ldc;
    __m512 v0 = acc[i][0], v1 = acc[i][1];
    if (flags & RT_ACCUMULATE) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
  }
}

// C[0..4, 0..4] (+)= A rows @ B rows^T, both read along K (A (M, K) and
// B (N, K), the layout of a linear layer's x and weight): 16 dot products
// at a time, 16 lanes each, summed across lanes at the end. Rows past mr /
// nr repeat the last one and are not stored.
AVX512 static void dot_tile(int64_t K, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
                            float *c, int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col,
                            char *arena, char *state, int64_t B) {
  (void)acs, (void)row, (void)col, (void)arena, (void)state, (void)B;
  // 16 named accumulators, so that the compiler keeps them in registers
  __m512 s00 = _mm512_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00,
         s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00;
  const float *a0 = a, *a1 = row_at(a, 1, mr, lda), *a2 = row_at(a, 2, mr, lda), *a3 = row_at(a, 3, mr, lda);
  const float *b0p = b, *b1p = row_at(b, 1, nr, ldb), *b2p = row_at(b, 2, nr, ldb), *b3p = row_at(b, 3, nr, ldb);
#define DOT_ROW(i, m)                                  \
  do {                                                 \
    __m512 ai = _mm512_maskz_loadu_ps(m, a##i + k);    \
    s##i##0 = _mm512_fmadd_ps(ai, b0, s##i##0);        \
    s##i##1 = _mm512_fmadd_ps(ai, b1, s##i##1);        \
    s##i##2 = _mm512_fmadd_ps(ai, b2, s##i##2);        \
    s##i##3 = _mm512_fmadd_ps(ai, b3, s##i##3);        \
  } while (0)
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 m = mask_of(K - k);
    __m512 b0 = _mm512_maskz_loadu_ps(m, b0p + k), b1 = _mm512_maskz_loadu_ps(m, b1p + k),
           b2 = _mm512_maskz_loadu_ps(m, b2p + k), b3 = _mm512_maskz_loadu_ps(m, b3p + k);
    DOT_ROW(0, m);
    DOT_ROW(1, m);
    DOT_ROW(2, m);
    DOT_ROW(3, m);
  }
#undef DOT_ROW
  __m512 s[4][4] = {{s00, s01, s02, s03}, {s10, s11, s12, s13}, {s20, s21, s22, s23}, {s30, s31, s32, s33}};
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float v = _mm512_reduce_add_ps(s[i][j]);
      c[i * ldc + j] = flags & RT_ACCUMULATE ? c[i * ldc + j] + v : v;
    }
}

// One row of A (a batch of one) against 8 rows of B at a time: C[0, 0..8]
// (+)= dot products along K. Rows past nr repeat the last one, unstored.
AVX512 static void dot_row(int64_t K, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
                           float *c, int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col,
                           char *arena, char *state, int64_t B) {
  (void)lda, (void)acs, (void)ldc, (void)mr, (void)row, (void)col, (void)arena, (void)state, (void)B;
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
  const float *b0 = b, *b1 = row_at(b, 1, nr, ldb), *b2 = row_at(b, 2, nr, ldb), *b3 = row_at(b, 3, nr, ldb),
              *b4 = row_at(b, 4, nr, ldb), *b5 = row_at(b, 5, nr, ldb), *b6 = row_at(b, 6, nr, ldb),
              *b7 = row_at(b, 7, nr, ldb);
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 m = mask_of(K - k);
    __m512 av = _mm512_maskz_loadu_ps(m, a + k);
    s0 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b0 + k), s0);
    s1 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b1 + k), s1);
    s2 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b2 + k), s2);
    s3 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b3 + k), s3);
    s4 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b4 + k), s4);
    s5 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b5 + k), s5);
    s6 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b6 + k), s6);
    s7 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b7 + k), s7);
  }
  __m512 s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
  for (int j = 0; j < nr; j++) {
    float v = _mm512_reduce_add_ps(s[j]);
    c[j] = flags & RT_ACCUMULATE ? c[j] + v : v;
  }
}

// dst (16 rows of ldd) = the transpose of src (16 rows of lds), 16 x 16
// floats through registers: pairs of rows interleaved by 1, 2, 4 and 8.
AVX512 static void transpose16(float *dst, int64_t ldd, const float *src, int64_t lds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++)
    r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#define PD(x) _mm512_castps_pd(x)
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(PD(t[i]), PD(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(PD(t[i]), PD(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(PD(t[i + 1]), PD(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(PD(t[i + 1]), PD(t[i + 3])));
  }
#undef PD
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; i++) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
      t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
    }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
  }
  for (int i = 0; i < 16; i++)
    _mm512_storeu_ps(dst + i * ldd, r[i]);
}

// The runtime's own micro-kernels, for products no program generated
// kernels for (a convolution's).
static const RtGemmKernels avx512_kernels = {
  .tile = tile, .dot = dot_tile, .row = dot_row, .tile_m = MR, .tile_n = NR, .dot_m = 4, .dot_n = 4, .row_n = 8,
};

#endif

// Whether the host has the AVX-512 the kernels use, found once (threads ask
// at once: pthread_once).
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
static bool avx512_host;

static void find_avx512(void) {
#ifdef HAVE_AVX512_PATH
  __builtin_cpu_init();
  avx512_host = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && !getenv("NNC_NO_AVX512");
#endif
}

bool k_avx512(void) {
  pthread_once(&avx512_once, find_avx512);
  return avx512_host;
}

// op(B)[p..p+kc, :] of B stored (N, K), packed as kc rows of N: 16 columns
// at a time, in 16 x 16 blocks through registers on AVX-512 hosts.
static void pack_bt(float *pk, const float *B, int64_t ldb, int64_t p, int64_t kc, int64_t N) {
#ifdef HAVE_AVX512_PATH
  bool wide = k_avx512();
#endif
  for (int64_t j0 = 0; j0 < N; j0 += 16) {
    int64_t jn = N - j0 < 16 ? N - j0 : 16, k = 0;
#ifdef HAVE_AVX512_PATH
    if (wide && jn == 16)
      for (; k + 16 <= kc; k += 16)
        transpose16(pk + k * N + j0, N, B + j0 * ldb + p + k, ldb);
#endif
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
  int64_t tm = uk->tile_m, tn = uk->tile_n;
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
    for (int64_t j = 0; j < N; j += tn)
      for (int64_t i = 0; i < M; i += tm)
        uk->tile(kc, A + i * ars + p * acs, ars, acs, bk + j, brs, C + i * ldc + j, ldc, M - i < tm ? M - i : tm,
                 N - j < tn ? N - j : tn, flags, row0 + i, col0 + j, uk->arena, uk->state, uk->B);
  }
}

void k_gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
               int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
#ifdef HAVE_AVX512_PATH
  if ((beta == 0.0f || beta == 1.0f) && k_avx512()) {
    k_gemm_micro(&avx512_kernels, ta, tb, M, N, K, A, lda, B, ldb, beta == 1.0f, C, ldc, 0, 0);
    return;
  }
#endif
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  blas(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void k_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
            float beta, float *C) {
  int64_t lda = ta ? M : K, ldb = tb ? K : N;
  if (alpha != 1.0f && M > 0 && N > 0 && K > 0) {
    blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
    return;
  }
  k_gemm_ld(ta, tb, M, N, K, A, lda ? lda : 1, B, ldb ? ldb : 1, beta, C, N);
}

static int blas_threads_now = 0;

void rt_blas_threads(int n) {
  if (blas_threads_now != n) {
    openblas_set_num_threads(n);
    blas_threads_now = n;
  }
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
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, 1.0f, a, ta ? (int)M : (int)K, b, tb ? (int)K : (int)N, 0.0f, c, (int)N);
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
