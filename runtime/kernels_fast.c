// kernels_fast.c: the cpu backend's softmax and layer normalization, in
// float and in vectors of 8 (GCC's vector extensions: AVX on hosts that
// have it, through a clone of each function the loader picks, and pairs of
// SSE or NEON registers elsewhere). The reference kernels (kernels.c) sum
// in double and call libm's exp: the oracle. These compute the same
// formulas in float, the sums in a fixed order, so any split of the rows
// across threads gives the same bytes; exp is one polynomial, as the
// generated code's (codegen/llvm.c, emit_exp), within 2 ulp of expf.
#include "runtime.h"

#include <math.h>
#include <string.h>

#define W 8
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));

// The function in two clones on x86-64 (AVX2 without FMA, so that both
// compute the same bits), one elsewhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NNC_NO_CLONES)
#define FAST __attribute__((target_clones("avx2", "default")))
#else
#define FAST
#endif

// Every helper inlined into its caller, so that it is compiled for the
// caller's clone.
#define INLINE inline __attribute__((always_inline))

static INLINE vf splat(float v) { return (vf){v, v, v, v, v, v, v, v}; }

static INLINE vf vload(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

// m ? a : b, lane by lane (m: a comparison's lanes, all ones or zeros).
static INLINE vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

static INLINE vf vmax(vf a, vf b) { return vsel(a > b, a, b); }

// Cephes' expf: x = n ln2 + r, e^r a polynomial, 2^n as two normal
// factors 2^(n/2) 2^(n - n/2) so that results underflow gradually and
// overflow to inf as expf's do; x held in [-104, 89] first, NaN passed on.
static INLINE vf vexp(vf x) {
  vf xc = vsel(x > splat(89), splat(89), x);
  xc = vsel(xc < splat(-104), splat(-104), xc);
  // rint(x log2 e): |t| < 2^22, so adding and taking away 1.5 * 2^23 rounds
  // it to the nearest integer, ties to even, as llvm.rint does
  vf fn = xc * splat(1.44269504088896341f) + splat(12582912.0f) - splat(12582912.0f);
  vi n = __builtin_convertvector(fn, vi);
  vf r = xc - fn * splat(0.693359375f);
  r = r - fn * splat(-2.12194440e-4f);
  vf p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * (r * r) + r + splat(1);
  vi n1 = n >> 1, n2 = n - n1;
  vf e1 = (vf)((n1 + 127) << 23), e2 = (vf)((n2 + 127) << 23);
  vf y = p * e1 * e2;
  return vsel(x != x, x, y);
}

// v with its halves, quarters or pairs of lanes swapped.
#if defined(__clang__)
#define SWAP4(v) __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3)
#define SWAP2(v) __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5)
#define SWAP1(v) __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6)
#else
#define SWAP4(v) __builtin_shuffle(v, (vi){4, 5, 6, 7, 0, 1, 2, 3})
#define SWAP2(v) __builtin_shuffle(v, (vi){2, 3, 0, 1, 6, 7, 4, 5})
#define SWAP1(v) __builtin_shuffle(v, (vi){1, 0, 3, 2, 5, 4, 7, 6})
#endif

// The sum and the maximum of v's lanes, in a fixed order (halves, then
// quarters, then pairs).
static INLINE float hsum(vf v) {
  v += SWAP4(v);
  v += SWAP2(v);
  v += SWAP1(v);
  return v[0];
}

static INLINE float hmax(vf v) {
  v = vmax(v, SWAP4(v));
  v = vmax(v, SWAP2(v));
  v = vmax(v, SWAP1(v));
  return v[0];
}

// The maximum and the sum of a row of C values, in vectors of W and then
// the last C % W one by one (NaNs skipped by the maximum, as the
// reference's are).
static INLINE float row_max(const float *x, int64_t C) {
  vf m = splat(-INFINITY);
  int64_t c = 0;
  for (; c + W <= C; c += W)
    m = vmax(vload(x + c), m);
  float r = hmax(m);
  for (; c < C; c++)
    r = x[c] > r ? x[c] : r;
  return r;
}

static INLINE float row_sum(const float *x, int64_t D) {
  vf s = splat(0);
  int64_t j = 0;
  for (; j + W <= D; j += W)
    s += vload(x + j);
  float t = hsum(s);
  for (; j < D; j++)
    t += x[j];
  return t;
}

static INLINE void row_scale(float *y, const float *x, int64_t C, float add, float mul) {
  vf va = splat(add), vm = splat(mul);
  int64_t c = 0;
  for (; c + W <= C; c += W)
    vstore(y + c, (vload(x + c) + va) * vm);
  for (; c < C; c++)
    y[c] = (x[c] + add) * mul;
}

// exp of n contiguous values in place, all in whole vectors but the last.
static INLINE void exp_run(float *y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W)
    vstore(y + i, vexp(vload(y + i)));
  if (i < n) {
    float t[W];
    for (int j = 0; j < W; j++)
      t[j] = i + j < n ? y[i + j] : 0;
    vf e = vexp(vload(t));
    for (int j = 0; i + j < n; j++)
      y[i + j] = e[j];
  }
}

// Rows of C contiguous values (inner = 1), `rows` of them: each row less
// its maximum into y, then exp over all of y at once (the rows lie end to
// end: no lanes idle at a short row's end), then each row divided by its
// sum.
static INLINE void softmax_rows(float *y, const float *x, int64_t rows, int64_t C) {
  for (int64_t o = 0; o < rows; o++)
    row_scale(y + o * C, x + o * C, C, -row_max(x + o * C, C), 1.0f);
  exp_run(y, rows * C);
  for (int64_t o = 0; o < rows; o++)
    row_scale(y + o * C, y + o * C, C, 0.0f, 1.0f / row_sum(y + o * C, C));
}

FAST void k_softmax_fast(float *y, const float *x, int64_t outer, int64_t C, int64_t inner) {
  if (inner == 1) {
    softmax_rows(y, x, outer, C);
    return;
  }
  for (int64_t o = 0; o < outer; o++) {   // W columns of the inner axis at a time
    const float *xo = x + o * C * inner;
    float *yo = y + o * C * inner;
    int64_t i = 0;
    for (; i + W <= inner; i += W) {
      vf m = splat(-INFINITY), s = splat(0);
      for (int64_t c = 0; c < C; c++)
        m = vmax(vload(xo + c * inner + i), m);
      for (int64_t c = 0; c < C; c++) {
        vf e = vexp(vload(xo + c * inner + i) - m);
        vstore(yo + c * inner + i, e);
        s += e;
      }
      vf inv = splat(1) / s;
      for (int64_t c = 0; c < C; c++)
        vstore(yo + c * inner + i, vload(yo + c * inner + i) * inv);
    }
    for (; i < inner; i++) {   // the last columns one at a time
      float m = -INFINITY, s = 0;
      for (int64_t c = 0; c < C; c++)
        m = xo[c * inner + i] > m ? xo[c * inner + i] : m;
      for (int64_t c = 0; c < C; c++) {
        float e = vexp(splat(xo[c * inner + i] - m))[0];
        yo[c * inner + i] = e;
        s += e;
      }
      for (int64_t c = 0; c < C; c++)
        yo[c * inner + i] *= 1.0f / s;
    }
  }
}

// The mean and 1/sqrt(var + eps) of x[0..D) (two passes).
static INLINE void row_stats(const float *x, int64_t D, float eps, float *mean, float *rstd) {
  float m = row_sum(x, D) / (float)D;
  vf s = splat(0), vm = splat(m);
  int64_t j = 0;
  for (; j + W <= D; j += W) {
    vf d = vload(x + j) - vm;
    s += d * d;
  }
  float v = hsum(s);
  for (; j < D; j++)
    v += (x[j] - m) * (x[j] - m);
  *mean = m;
  *rstd = 1.0f / sqrtf(v / (float)D + eps);
}

FAST void k_layernorm_fast(float *y, const float *x, int64_t rows, int64_t D, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float m, rstd;
    row_stats(xr, D, (float)eps, &m, &rstd);
    row_scale(y + r * D, xr, D, -m, rstd);   // (x - mean) * rstd
  }
}

FAST void k_layernorm_backward_fast(float *dx, const float *dy, const float *x, int64_t rows, int64_t D,
                                    double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *gr = dy + r * D;
    float *dr = dx + r * D, m, rstd;
    row_stats(xr, D, (float)eps, &m, &rstd);
    vf vm = splat(m), vr = splat(rstd), sg = splat(0), sgx = splat(0);
    int64_t j = 0;
    for (; j + W <= D; j += W) {
      vf g = vload(gr + j);
      sg += g;
      sgx += g * ((vload(xr + j) - vm) * vr);
    }
    float a = hsum(sg), b = hsum(sgx);
    for (; j < D; j++) {
      a += gr[j];
      b += gr[j] * ((xr[j] - m) * rstd);
    }
    a /= (float)D;
    b /= (float)D;
    vf va = splat(a), vb = splat(b);
    for (j = 0; j + W <= D; j += W)
      vstore(dr + j, vr * (vload(gr + j) - va - (vload(xr + j) - vm) * vr * vb));
    for (; j < D; j++)
      dr[j] = rstd * (gr[j] - a - (xr[j] - m) * rstd * b);
  }
}
