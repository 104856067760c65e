// blas.c: the one place the runtime calls a BLAS, and the plain C GEMM
// that stands in for it where there is none.
//
// k_blas_sgemm is cblas_sgemm in a build with OpenBLAS (CMake's NNC_BLAS,
// the default) and k_portable_sgemm in one without (-DNNC_BLAS=OFF, which
// defines NNC_NO_BLAS: the aarch64 runtime library, for instance). The
// reference kernels' k_sgemm, the cpu backend's fallback in gemm.c and
// rt_time_sgemm all go through it, so this file alone includes cblas.h.
//
// The runtime library models compiled ahead of time link (nncrt/) builds
// this file once more with NNC_BLAS_DLOPEN: OpenBLAS is then opened when a
// product first needs it, not linked. Loading OpenBLAS (its relocations and
// its threads) costs a process milliseconds at start-up, which a program
// whose model never calls it (its GEMMs are its own micro-kernels, as in an
// MLP) then never pays. It is the same library, so the same numbers.
//
// k_portable_sgemm is compiled in every build (the tests compare it with
// cblas_sgemm). It is a BLIS-like blocked product in plain C, on one
// thread: op(B) is packed in blocks of KC x NC (the rows of K that stay in
// L2 while all of M passes over them), op(A) times alpha in blocks of
// MC x KC, each into panels of NR columns / MR rows laid out along K, zero
// padded at the edges. A micro-kernel then computes one MR x NR tile of C
// from a pair of panels in a local array, which GCC keeps in vector
// registers at -O3 (the loops have constant trip counts): 8 accumulators
// of 4 floats, 8 multiply-adds per step of K (fmla by element on aarch64).
// Larger tiles, whose accumulators GCC left on the stack, were slower: at
// 512 x 512 x 512 on an x86-64 build (SSE2), 4 x 8 ran at 27.7 GFLOP/s,
// 6 x 8 at 22, 8 x 8 at 7.9 and 4 x 16 at 6.6.
//
//   for each NC-column block of C:
//     for each KC block of K:            pack op(B)[kc, nc] as NR-wide panels
//       for each MC-row block of C:      pack alpha op(A)[mc, kc] as MR-high panels
//         for each MR x NR tile:         C tile += A panel @ B panel
#include "runtime.h"

#include <string.h>

#ifndef NNC_NO_BLAS
#include <cblas.h>
#endif

enum {
  MR = 4,     // rows of a register tile
  NR = 8,     // columns of a register tile (2 vectors of 4 floats)
  KC = 256,   // the K of a packed block
  MC = 64,    // the rows of a packed block of A (MC x KC: 64 KiB)
  NC = 1024,  // the columns of a packed block of B (KC x NC: 1 MiB)
};

// C[0..mr, 0..nr] += a @ b for one tile: a is kc columns of MR (one panel,
// a[k*MR + i]), b kc rows of NR (b[k*NR + j]); mr <= MR, nr <= NR are the
// rows and columns of C that exist.
static void micro_tile(int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                       int64_t ldc, int64_t mr, int64_t nr) {
  float acc[MR][NR] = {{0}};
  for (int64_t k = 0; k < kc; k++, a += MR, b += NR)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++)
        acc[i][j] += a[i] * b[j];
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++)
        c[i * ldc + j] += acc[i][j];
    return;
  }
  for (int64_t i = 0; i < mr; i++)
    for (int64_t j = 0; j < nr; j++)
      c[i * ldc + j] += acc[i][j];
}

// alpha op(A)[0..mc, 0..kc] (A[i][k] at A[i*ars + k*acs]) packed as MR-row
// panels along K: pk[(i/MR)*kc*MR + k*MR + i%MR], rows past mc zero.
static void pack_a(float *pk, const float *A, int64_t ars, int64_t acs, int64_t mc, int64_t kc, float alpha) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR, pk += kc * MR)
    for (int64_t k = 0; k < kc; k++)
      for (int64_t i = 0; i < MR; i++)
        pk[k * MR + i] = i0 + i < mc ? alpha * A[(i0 + i) * ars + k * acs] : 0.0f;
}

// op(B)[0..kc, 0..nc] (B[k][j] at B[k*brs + j*bcs]) packed as NR-column
// panels along K: pk[(j/NR)*kc*NR + k*NR + j%NR], columns past nc zero.
static void pack_b(float *pk, const float *B, int64_t brs, int64_t bcs, int64_t kc, int64_t nc) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR, pk += kc * NR) {
    int64_t jn = nc - j0 < NR ? nc - j0 : NR;
    for (int64_t k = 0; k < kc; k++) {
      const float *bk = B + k * brs + j0 * bcs;
      float *p = pk + k * NR;
      if (bcs == 1 && jn == NR)
        memcpy(p, bk, sizeof(float) * NR);
      else
        for (int64_t j = 0; j < NR; j++)
          p[j] = j < jn ? bk[j * bcs] : 0.0f;
    }
  }
}

// C (M, N) = alpha op(A) op(B) + beta C, row-major, with cblas_sgemm's
// meaning of every argument (see runtime.h); beta = 0 sets C without
// reading it, and alpha = 0 or K = 0 only scales C, as BLAS does.
void k_portable_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  if (beta != 1.0f)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
  if (alpha == 0.0f || K <= 0)
    return;
  int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;   // op(A)[i][k] = A[i*ars + k*acs]
  int64_t brs = tb ? 1 : ldb, bcs = tb ? ldb : 1;   // op(B)[k][j] = B[k*brs + j*bcs]
  int64_t ncap = (N < NC ? N : NC) + NR - 1, mcap = (M < MC ? M : MC) + MR - 1;
  float *bp = k_thread_scratch(K_SCRATCH_BLAS_B, (K < KC ? K : KC) * (ncap - ncap % NR));
  float *ap = k_thread_scratch(K_SCRATCH_BLAS_A, (K < KC ? K : KC) * (mcap - mcap % MR));
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = N - jc < NC ? N - jc : NC;
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = K - pc < KC ? K - pc : KC;
      pack_b(bp, B + pc * brs + jc * bcs, brs, bcs, kc, nc);
      for (int64_t ic = 0; ic < M; ic += MC) {
        int64_t mc = M - ic < MC ? M - ic : MC;
        pack_a(ap, A + ic * ars + pc * acs, ars, acs, mc, kc, alpha);
        for (int64_t jr = 0; jr < nc; jr += NR)
          for (int64_t ir = 0; ir < mc; ir += MR)
            micro_tile(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                       mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR);
      }
    }
  }
}

#if defined(NNC_BLAS_DLOPEN) && !defined(NNC_NO_BLAS)
#include <dlfcn.h>
#include <pthread.h>

typedef void (*SgemmFn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
                        float, const float *, blasint, const float *, blasint, float, float *, blasint);
static SgemmFn blas_sgemm;
static void (*blas_set_threads)(int);
static int blas_threads_wanted = 1;   // rt_blas_threads' last word, applied when OpenBLAS opens
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;

static void open_blas(void) {
  static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
  void *h = NULL;
  for (int i = 0; i < countof(names) && !h; i++)
    h = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL);   // lazy: its functions bound as they are first called
  if (h) {
    blas_sgemm = (SgemmFn)dlsym(h, "cblas_sgemm");
    blas_set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  }
  if (!blas_sgemm || !blas_set_threads)
    nnc_fatal("the nnc runtime library was built to use OpenBLAS, but %s\n---> HINT: install OpenBLAS "
              "(apt-get install libopenblas0), or use a runtime library built with -DNNC_BLAS=OFF",
              h ? "libopenblas.so.0 has no cblas_sgemm" : "libopenblas.so.0 cannot be loaded");
  pthread_mutex_lock(&blas_lock);
  blas_set_threads(blas_threads_wanted);
  pthread_mutex_unlock(&blas_lock);
}

void k_blas_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  pthread_once(&blas_once, open_blas);
  blas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N,
             (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void rt_blas_threads(int n) {
  pthread_mutex_lock(&blas_lock);
  if (blas_threads_wanted != n) {
    blas_threads_wanted = n;
    if (blas_set_threads)
      blas_set_threads(n);
  }
  pthread_mutex_unlock(&blas_lock);
}

#else
void k_blas_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#ifndef NNC_NO_BLAS
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
#else
  k_portable_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

#ifndef NNC_NO_BLAS
static int blas_threads_now = 0;
#endif

void rt_blas_threads(int n) {
#ifndef NNC_NO_BLAS
  if (blas_threads_now != n) {
    openblas_set_num_threads(n);
    blas_threads_now = n;
  }
#else
  (void)n;   // k_portable_sgemm runs on the calling thread alone
#endif
}
#endif
