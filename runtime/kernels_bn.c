// kernels_bn.c: batch normalization, training and inference, forward and
// backward, on a range of channels (the thread pool splits by channel).
//
// Statistics accumulate in double and round once at the end, in two
// passes: the mean, then the squared deviations from it. The loops
// (bn_body.h) are compiled twice, as they are and for AVX2, which hosts
// that have it take (k_avx2(); NNC_NO_AVX2 turns it off): 4 doubles a
// vector, not SSE2's 2. This file is compiled without contraction into
// FMA (runtime/CMakeLists.txt), so the two give the same bytes, in every
// build (the JIT's and a compiled model's runtime alike).
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Channel c of (N,C,HW) is N runs of HW values, one run per sample.
#define BN_AT(x, n, c) ((x) + ((n) * C + (c)) * HW)

// 8 partial sums (bn_body.h's runs), combined pairwise.
static double combine8(const double s[8]) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }

// Channel c's batch mean and invstd, and its running statistics updated
// (the running variance unbiased); returns the invstd.
static double bn_stats(int64_t c, double mu, double var, int64_t cnt, float eps, float momentum, float *mean,
                       float *invstd, float *running_mean, float *running_var) {
  double is = 1.0 / sqrt(var + eps);
  mean[c] = (float)mu;
  invstd[c] = (float)is;
  running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + (double)momentum * mu);
  running_var[c] = (float)((1.0 - momentum) * running_var[c] + (double)momentum * var * cnt / (cnt - 1));
  return is;
}

// Channels whose run per sample is short (the deep layers' 7x7 to 1x1
// planes) go another way: a block of channels at a time, along each
// sample's contiguous block of channels x HW values, with one partial sum
// (or coefficient) per element of the block; the per-element sums are
// added up per channel at the end. One channel at a time, the loops would
// run over a few values each.
#define BN_SHORT_RUN 64
#define BN_BLOCK 1024   // elements in a block of channels (its sums and coefficients in L1)

typedef struct BnBlock {
  int64_t b0, b1, L;    // channels [b0, b1): L = (b1 - b0) * HW elements
  double *s, *t;        // per-element sums
  double *dm, *di;      // per-element mean and invstd (double)
  float *fm, *fi, *fa, *fb, *fc;   // per-element float coefficients
  double *pc[5];        // per-channel values, [c - b0]
} BnBlock;

static void bn_block_init(BnBlock *k, int64_t HW) {
  int64_t cb = BN_BLOCK / HW, cap = cb * HW;
  k->s = xmalloc(sizeof(double) * (4 * cap + 5 * cb));
  k->t = k->s + cap, k->dm = k->t + cap, k->di = k->dm + cap;
  for (int i = 0; i < 5; i++)
    k->pc[i] = k->di + cap + i * cb;
  k->fm = xmalloc(sizeof(float) * 5 * cap);
  k->fi = k->fm + cap, k->fa = k->fi + cap, k->fb = k->fa + cap, k->fc = k->fb + cap;
}

static void bn_block_free(BnBlock *k) {
  free(k->s);
  free(k->fm);
}

// Sum of channel c's HW per-element sums in a (the block's).
static double bn_channel(const BnBlock *k, const double *a, int64_t c, int64_t HW) {
  double s = 0;
  for (int64_t i = 0; i < HW; i++)
    s += a[(c - k->b0) * HW + i];
  return s;
}

// v[c] for every element of channel c in the block, as doubles or floats.
static void bn_expand(const BnBlock *k, double *d, float *f, const double *v, int64_t HW) {
  for (int64_t c = k->b0; c < k->b1; c++)
    for (int64_t i = 0; i < HW; i++) {
      if (d)
        d[(c - k->b0) * HW + i] = v[c - k->b0];
      if (f)
        f[(c - k->b0) * HW + i] = (float)v[c - k->b0];
    }
}

#define BN_NAME(f) f##_plain
#define BN_TARGET
#include "bn_body.h"
#undef BN_NAME
#undef BN_TARGET

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BN_AVX2 1
#define BN_NAME(f) f##_avx2
#define BN_TARGET __attribute__((target("avx2")))
#include "bn_body.h"
#undef BN_NAME
#undef BN_TARGET
#endif

void k_batchnorm_forward(float *y, float *mean, float *invstd, float *running_mean,
                         float *running_var, const float *x, const float *gamma,
                         const float *beta, int64_t N, int64_t C, int64_t HW,
                         float eps, float momentum) {
  k_batchnorm_forward_range(y, mean, invstd, running_mean, running_var, x, gamma, beta, N, C, HW, eps, momentum, 0,
                            C);
}

void k_batchnorm_batch_stats(float *mean, float *invstd, const float *x, int64_t N, int64_t C, int64_t HW,
                             float eps) {
  float *y = xmalloc(sizeof(float) * N * C * HW);
  float *rm = xcalloc(C, sizeof(float)), *rv = xcalloc(C, sizeof(float));   // updated copies of nothing
  k_batchnorm_forward(y, mean, invstd, rm, rv, x, NULL, NULL, N, C, HW, eps, 0.0f);
  free(y);
  free(rm);
  free(rv);
}

void k_batchnorm_forward_range(float *y, float *mean, float *invstd, float *running_mean, float *running_var,
                               const float *x, const float *gamma, const float *beta, int64_t N, int64_t C,
                               int64_t HW, float eps, float momentum, int64_t c0, int64_t c1) {
  int64_t cnt = N * HW;
  if (cnt <= 1)
    nnc_fatal("batchnorm: training needs more than one value per channel, got %lld "
              "(batch %lld, %lld per sample)\n"
              "---> HINT: use a batch size of at least 2",
              (long long)cnt, (long long)N, (long long)HW);
#ifdef BN_AVX2
  if (k_avx2()) {
    forward_avx2(y, mean, invstd, running_mean, running_var, x, gamma, beta, N, C, HW, eps, momentum, c0, c1);
    return;
  }
#endif
  forward_plain(y, mean, invstd, running_mean, running_var, x, gamma, beta, N, C, HW, eps, momentum, c0, c1);
}

void k_batchnorm_forward_eval(float *y, const float *x, const float *gamma, const float *beta,
                              const float *running_mean, const float *running_var,
                              int64_t N, int64_t C, int64_t HW, float eps) {
  k_batchnorm_forward_eval_range(y, x, gamma, beta, running_mean, running_var, N, C, HW, eps, 0, C);
}

void k_batchnorm_forward_eval_range(float *y, const float *x, const float *gamma, const float *beta,
                                    const float *running_mean, const float *running_var, int64_t N, int64_t C,
                                    int64_t HW, float eps, int64_t c0, int64_t c1) {
#ifdef BN_AVX2
  if (k_avx2()) {
    forward_eval_avx2(y, x, gamma, beta, running_mean, running_var, N, C, HW, eps, c0, c1);
    return;
  }
#endif
  forward_eval_plain(y, x, gamma, beta, running_mean, running_var, N, C, HW, eps, c0, c1);
}

void k_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *x, const float *mean, const float *invstd,
                          const float *gamma, int64_t N, int64_t C, int64_t HW) {
  k_batchnorm_backward_range(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, N, C, HW, 0, C);
}

void k_batchnorm_backward_range(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                const float *mean, const float *invstd, const float *gamma, int64_t N, int64_t C,
                                int64_t HW, int64_t c0, int64_t c1) {
#ifdef BN_AVX2
  if (k_avx2()) {
    backward_avx2(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, N, C, HW, c0, c1);
    return;
  }
#endif
  backward_plain(dx, dgamma, dbeta, dy, x, mean, invstd, gamma, N, C, HW, c0, c1);
}
