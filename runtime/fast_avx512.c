// fast_avx512.c: the cpu backend's AVX-512 fast paths, apart from the
// reference kernels they are checked against.
//
// Each function here computes what a plain C kernel computes, faster, on
// hosts with AVX-512 (F, VL, BW, DQ): the GEMM's micro-kernels and its
// transposes of B for packing (called by the GEMM driver, gemm.c), im2col
// and its adjoint for stride 1, and max pooling of 2x2 windows and of 16
// small planes at a time (called by the cpu backend's variants of the
// convolution and pooling kernels, kernels_conv.c). Every caller asks
// k_avx512() first; the reference kernels never call these. runtime.h
// names the reference each one is checked against, and
// tests/kernels/test_avx512.c checks them on hosts that have AVX-512.
//
// The code is compiled for AVX-512 function by function (target
// attributes), not with -mavx512f, so the library builds for and runs on
// any x86-64 host; elsewhere k_avx512() is false and the functions below
// are defined only to stop with nnc_bug(): nothing reaches them, and the
// callers need no #if of their own.
#include "runtime.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_AVX512_PATH 1
#endif

// Whether the host has the AVX-512 the fast paths use, found once (threads
// ask at once: pthread_once).
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

// AMD's family 19h: Zen 3, without AVX-512, and Zen 4, which runs each
// 512-bit instruction as two 256-bit halves. Zen 5 (1Ah) and Intel's
// AVX-512 cores have full-width units.
static pthread_once_t halves_once = PTHREAD_ONCE_INIT;
static bool halves_host;

static void find_halves(void) {
#ifdef HAVE_AVX512_PATH
  unsigned a, b, c, d;
  char vendor[13] = {0};
  if (!__get_cpuid(0, &a, &b, &c, &d))
    return;
  memcpy(vendor, &b, 4), memcpy(vendor + 4, &d, 4), memcpy(vendor + 8, &c, 4);
  if (strcmp(vendor, "AuthenticAMD") || !__get_cpuid(1, &a, &b, &c, &d))
    return;
  unsigned family = (a >> 8) & 0xf;
  if (family == 0xf)
    family += (a >> 20) & 0xff;
  halves_host = family == 0x19;
#endif
}

bool k_avx512_halves(void) {
  if (!k_avx512())
    return false;
  pthread_once(&halves_once, find_halves);
  return halves_host;
}

#ifdef HAVE_AVX512_PATH
#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq")))
#define AVX512_FMA __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

//
// The GEMM (gemm.c): a register tile of MR x NR (16 zmm accumulators), dot
// products along K, 4 x 4 or 1 x 8 of them; ragged edges use masked loads
// and stores for columns and repeat the last row for rows, so no tile
// reads or writes outside the matrices.
//
#define MR 8
#define NR 32

static __mmask16 mask_of(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// Row i of a ragged block of n rows ld floats apart: rows past n repeat
// the last one (read, never stored).
static inline const float *row_at(const float *p, int i, int64_t n, int64_t ld) { return p + (i < n ? i : n - 1) * ld; }

// One register tile (a RtTileFn): C[0..mr, 0..nr] (+)= A rows @ B rows,
// rows past mr repeating the last one, unstored.
AVX512_FMA static void tile(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs, float *c,
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
AVX512_FMA static void dot_tile(int64_t K, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
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
AVX512_FMA static void dot_row(int64_t K, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
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
AVX512_FMA void k_avx512_transpose16(float *dst, int64_t ldd, const float *src, int64_t lds) {
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

// The micro-kernels as k_gemm_micro takes them, for the products no
// program generated kernels for (a convolution's).
const RtGemmKernels k_avx512_gemm = {
  .tile = tile, .dot = dot_tile, .row = dot_row, .tile_m = MR, .tile_n = NR, .dot_m = 4, .dot_n = 4, .row_n = 8,
};

//
// Convolution (kernels_conv.c)
//

// Columns [0, n) of a row of 16-float pieces: piece j's lanes that are in
// the row and whose output ow is in [lo, hi), as masks.
AVX512 static inline __mmask16 row_mask(int64_t j, int64_t n, int64_t lo, int64_t hi) {
  int64_t a = lo - j < 0 ? 0 : lo - j, b = (hi < n ? hi : n) - j;
  if (b > 16)
    b = 16;
  return b <= a ? 0 : (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

// A "same" convolution (stride 1, output rows as wide as the input's):
// tap (kh, kw)'s plane is the input plane shifted by a whole number of
// elements, d = (kh*dh - ph)*W + kw*dw - pw, so one flat run covers it
// from its first valid element qa to its last, qb; what lies outside, and
// the entries of the run that wrapped around a row's end (the first or
// last |kw*dw - pw| columns), are the padding.
typedef struct FlatTap {
  int64_t d, qa, qb;       // shift; the run [qa, qb) of the plane
  int64_t oh0, oh1;        // rows with a valid input row
  int64_t lo, hi;          // columns with a valid input column
} FlatTap;

static bool flat_tap(const KConv2d *g, int64_t kh, int64_t kw, int64_t OH, int64_t OW, FlatTap *t) {
  k_conv_tap_span(g, kw, OW, &t->lo, &t->hi);
  int64_t r = kh * g->dh - g->ph;   // ih = oh + r
  t->oh0 = r >= 0 ? 0 : -r;
  t->oh1 = g->H - r < OH ? g->H - r : OH;
  if (t->oh1 <= t->oh0 || t->hi <= t->lo)
    return false;
  t->d = r * g->W + kw * g->dw - g->pw;
  t->qa = t->oh0 * OW + t->lo;
  t->qb = (t->oh1 - 1) * OW + t->hi;
  return true;
}

// im2col for stride 1 (the plain loops' im2col_any, kernels_conv.c). A
// "same" convolution copies each tap's plane as one flat run; otherwise
// each row of a tap's plane is the input row shifted by off, zero outside
// [lo, hi): masked loads (the lanes outside are not read) and stores, 16
// outputs at a time, instead of three library calls per row of a few
// floats.
AVX512 void k_avx512_im2col_s1(float *col, const float *x, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  if (OW == g->W) {
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) {
          float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
          const float *plane = x + c * g->H * g->W;
          FlatTap t;
          if (!flat_tap(g, kh, kw, OH, OW, &t)) {
            memset(row, 0, sizeof(float) * OH * OW);
            continue;
          }
          memset(row, 0, sizeof(float) * t.qa);
          memcpy(row + t.qa, plane + t.qa + t.d, sizeof(float) * (t.qb - t.qa));
          memset(row + t.qb, 0, sizeof(float) * (OH * OW - t.qb));
          for (int64_t oh = t.oh0; oh < t.oh1; oh++) {   // the wrapped columns
            for (int64_t ow = 0; ow < t.lo; ow++)
              row[oh * OW + ow] = 0.0f;
            for (int64_t ow = t.hi; ow < OW; ow++)
              row[oh * OW + ow] = 0.0f;
          }
        }
    return;
  }
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
        int64_t lo, hi, off = kw * g->dw - g->pw;
        k_conv_tap_span(g, kw, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; oh++) {
          float *dst = row + oh * OW;
          int64_t ih = oh - g->ph + kh * g->dh;
          bool inside = ih >= 0 && ih < g->H;
          const float *src = x + (c * g->H + (inside ? ih : 0)) * g->W;
          for (int64_t j = 0; j < OW; j += 16) {
            __mmask16 all = row_mask(j, OW, 0, OW), in = inside ? row_mask(j, OW, lo, hi) : 0;
            // lanes in `in` read src[ow + off], which is inside the row
            __m512 v = _mm512_maskz_loadu_ps(in, src + j + off);
            _mm512_mask_storeu_ps(dst + j, all, v);
          }
        }
      }
}

// col2im_add for stride 1 (col2im_add_any), the same way.
AVX512 void k_avx512_col2im_add_s1(float *dx, const float *col, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  if (OW == g->W) {   // flat runs, as im2col_s1, skipping the wrapped columns
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) {
          const float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
          float *plane = dx + c * g->H * g->W;
          FlatTap t;
          if (!flat_tap(g, kh, kw, OH, OW, &t))
            continue;
          if (t.lo == 0 && t.hi == OW) {   // no wrapped columns: one run
            for (int64_t q = t.qa; q < t.qb; q++)
              plane[q + t.d] += row[q];
            continue;
          }
          for (int64_t oh = t.oh0; oh < t.oh1; oh++)
            for (int64_t q = oh * OW + t.lo; q < oh * OW + t.hi; q++)
              plane[q + t.d] += row[q];
        }
    return;
  }
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        const float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
        int64_t lo, hi, off = kw * g->dw - g->pw;
        k_conv_tap_span(g, kw, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; oh++) {
          int64_t ih = oh - g->ph + kh * g->dh;
          if (ih < 0 || ih >= g->H)
            continue;
          const float *src = row + oh * OW;
          float *dst = dx + (c * g->H + ih) * g->W;
          for (int64_t j = 0; j < OW; j += 16) {
            __mmask16 in = row_mask(j, OW, lo, hi);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(in, dst + j + off), _mm512_maskz_loadu_ps(in, src + j));
            _mm512_mask_storeu_ps(dst + j + off, in, v);
          }
        }
      }
}

//
// Max pooling (kernels_conv.c)
//

// maxpool(2) (maxpool_2x2, kernels_conv.c) on 16 outputs at once: the even
// and odd columns of two input rows, by permutes of 32 consecutive floats,
// then the same scan as max_step with masks for its selects.
AVX512 void k_avx512_maxpool2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  int64_t W = g->W;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32((int32_t)W);
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    const float *xp = x + nc * g->H * W;   // (H,W)
    float *yp = y + nc * OH * OW;          // (OH,OW)
    int32_t *ap = argmax ? argmax + nc * OH * OW : NULL;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow += 16) {
        int64_t cnt = OW - ow < 16 ? OW - ow : 16;   // outputs; 2*cnt inputs per row
        __mmask16 mo = (__mmask16)((1u << cnt) - 1);
        __mmask16 mlo = cnt >= 8 ? (__mmask16)0xffff : (__mmask16)((1u << (2 * cnt)) - 1);
        __mmask16 mhi = cnt <= 8 ? 0 : (__mmask16)((1u << (2 * cnt - 16)) - 1);
        int64_t i = 2 * oh * W + 2 * ow;
        const float *r0 = xp + i, *r1 = r0 + W;
        __m512 a = _mm512_maskz_loadu_ps(mlo, r0), b = _mm512_maskz_loadu_ps(mhi, r0 + 16);
        __m512 c = _mm512_maskz_loadu_ps(mlo, r1), d = _mm512_maskz_loadu_ps(mhi, r1 + 16);
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int32_t)i), _mm512_slli_epi32(_mm512_setr_epi32(
                          0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1));
        __m512 best = _mm512_permutex2var_ps(a, even, b);
        __m512i at = idx;
        __m512 v[3] = {_mm512_permutex2var_ps(a, odd, b), _mm512_permutex2var_ps(c, even, d),
                       _mm512_permutex2var_ps(c, odd, d)};
        __m512i vi[3] = {_mm512_add_epi32(idx, one), _mm512_add_epi32(idx, wv),
                         _mm512_add_epi32(_mm512_add_epi32(idx, wv), one)};
        for (int s = 0; s < 3; s++) {
          __mmask16 take = _mm512_cmp_ps_mask(v[s], best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[s], v[s], _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, take, v[s]);
          at = _mm512_mask_mov_epi32(at, take, vi[s]);
        }
        _mm512_mask_storeu_ps(yp + oh * OW + ow, mo, best);
        if (ap)
          _mm512_mask_storeu_epi32(ap + oh * OW + ow, mo, at);
      }
  }
}

// Max pooling of small planes (resnet18's 14x14 before its 3x3 pool; the
// plain loops are maxpool_rows_any): planes nc..nc+15, one per lane. Their
// values are gathered position-major into xt (16*H*W floats), every window
// is max_step's scan on whole vectors, and the results are scattered back
// to the 16 planes.
AVX512 void k_avx512_maxpool_planes16(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH,
                                     int64_t OW, int64_t nc, float *xt) {
  int64_t HW = g->H * g->W, OHW = OH * OW;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i in = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)HW));
  __m512i out = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)OHW));
  const float *xp = x + nc * HW;
  for (int64_t p = 0; p < HW; p++)
    _mm512_storeu_ps(xt + 16 * p, _mm512_i32gather_ps(in, xp + p, 4));
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++) {
      __m512 best = _mm512_set1_ps(-INFINITY);
      __m512i at = _mm512_set1_epi32(-1);
      for (int64_t kh = 0; kh < g->kh; kh++) {
        int64_t h = oh * g->sh - g->ph + kh * g->dh;
        if (h < 0 || h >= g->H)
          continue;
        for (int64_t kw = 0; kw < g->kw; kw++) {
          int64_t w = ow * g->sw - g->pw + kw * g->dw;
          if (w < 0 || w >= g->W)
            continue;
          __m512 v = _mm512_loadu_ps(xt + 16 * (h * g->W + w));
          __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) |
                           _mm512_cmplt_epi32_mask(at, _mm512_setzero_si512());
          best = _mm512_mask_mov_ps(best, take, v);
          at = _mm512_mask_mov_epi32(at, take, _mm512_set1_epi32((int32_t)(h * g->W + w)));
        }
      }
      int64_t q = nc * OHW + oh * OW + ow;
      _mm512_i32scatter_ps(y + q, out, best, 4);
      if (argmax)
        _mm512_i32scatter_epi32(argmax + q, out, at, 4);
    }
}

// The gradient of maxpool(2) (k_maxpool2d_backward into a zeroed dx) on
// 16 outputs at once, writing every element of dx once: each output's
// gradient goes to the one of its window's 2 places in an input row that
// its argmax names (zeros to the other), interleaved into 32 floats of
// that row, the window's two rows one after the other. A row's last
// vector is written whole where what it writes past the row's end is
// rewritten later, in address order, and zeros until then (masked stores
// are slow on AMD's cores); a last odd row or column, which no window
// reads, gets zeros. The reference's bytes.
AVX512 void k_avx512_maxpool2x2_backward(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g,
                                         int64_t OH, int64_t OW) {
  int64_t H = g->H, W = g->W;
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i one = _mm512_set1_epi32(1);
  const float *end = dx + g->N * g->C * H * W;
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    float *xp = dx + nc * H * W;
    const float *gp = dy + nc * OH * OW;
    const int32_t *ap = argmax + nc * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t k = 0; k < 2; k++) {   // the window's rows 2*oh and 2*oh + 1
        float *r = xp + (2 * oh + k) * W;
        for (int64_t ow = 0; ow < OW; ow += 16) {
          int64_t cnt = OW - ow < 16 ? OW - ow : 16;
          __mmask16 in = mask_of(cnt);
          __m512 gv = _mm512_maskz_loadu_ps(in, gp + oh * OW + ow);
          __m512i at = _mm512_maskz_loadu_epi32(in, ap + oh * OW + ow);
          __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int32_t)((2 * oh + k) * W + 2 * ow)), lane2);
          __m512 e = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, base), gv);
          __m512 o = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(base, one)), gv);
          __m512 a0 = _mm512_permutex2var_ps(e, lo, o);
          float *p = r + 2 * ow;
          bool whole = p + (cnt > 8 ? 32 : 16) <= end;
          if (cnt > 8) {
            __m512 a1 = _mm512_permutex2var_ps(e, hi, o);
            _mm512_storeu_ps(p, a0);
            if (whole)
              _mm512_storeu_ps(p + 16, a1);
            else
              _mm512_mask_storeu_ps(p + 16, mask_of(2 * cnt - 16), a1);
          } else if (whole) {
            _mm512_storeu_ps(p, a0);
          } else {
            _mm512_mask_storeu_ps(p, mask_of(2 * cnt), a0);
          }
        }
        for (int64_t w = 2 * OW; w < W; w++)
          r[w] = 0.0f;
      }
    for (int64_t h = 2 * OH; h < H; h++)
      memset(xp + h * W, 0, sizeof(float) * W);
  }
}

//
// Dropout's forward (kernels_train.c, k_dropout_forward): dropout_hash of
// 16 consecutive indexes at a time, in two vectors of 8 64-bit lanes. The
// hash's first step, key + (index + 1) * golden, goes up by golden from
// one index to the next, so it is an addition here.
//
AVX512 static __m512i splitmix_mix(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((int64_t)K_DROPOUT_MIX1));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((int64_t)K_DROPOUT_MIX2));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

AVX512 void k_avx512_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                             uint64_t key, int64_t first) {
  const uint64_t golden = K_DROPOUT_GOLDEN;
  __m512i step = _mm512_set1_epi64((int64_t)(16 * golden)), lim = _mm512_set1_epi64((int64_t)least);
  __m512i z0 = _mm512_add_epi64(_mm512_set1_epi64((int64_t)(key + ((uint64_t)first + 1) * golden)),
                                _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                                   _mm512_set1_epi64((int64_t)golden)));
  __m512i z1 = _mm512_add_epi64(z0, _mm512_set1_epi64((int64_t)(8 * golden)));
  __m512 sv = _mm512_set1_ps(scale);
  __m128i ones = _mm_set1_epi8(1);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 in = mask_of(n - i);
    __mmask8 k0 = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(splitmix_mix(z0), 40), lim);
    __mmask8 k1 = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(splitmix_mix(z1), 40), lim);
    __mmask16 keep = (__mmask16)(k0 | (unsigned)k1 << 8);
    __m512 v = _mm512_maskz_loadu_ps(in, x + i);   // x * (keep ? scale : 0), as the reference
    _mm512_mask_storeu_ps(y + i, in, _mm512_mul_ps(v, _mm512_maskz_mov_ps(keep, sv)));
    _mm_mask_storeu_epi8(mask + i, in, _mm_maskz_mov_epi8(keep, ones));
    z0 = _mm512_add_epi64(z0, step);
    z1 = _mm512_add_epi64(z1, step);
  }
}

#else

// No AVX-512 code in this build: k_avx512() is false, so nothing calls these.
static _Noreturn void no_avx512(void) { nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build"); }

static void tile_unreachable(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs, float *c,
                      int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col, char *arena,
                      char *state, int64_t B) {
  (void)kc, (void)a, (void)ars, (void)acs, (void)b, (void)brs, (void)c, (void)ldc, (void)mr, (void)nr, (void)flags;
  (void)row, (void)col, (void)arena, (void)state, (void)B;
  no_avx512();
}

const RtGemmKernels k_avx512_gemm = {
  .tile = tile_unreachable, .dot = tile_unreachable, .row = tile_unreachable, .tile_m = 8, .tile_n = 32, .dot_m = 4, .dot_n = 4, .row_n = 8,
};

void k_avx512_transpose16(float *dst, int64_t ldd, const float *src, int64_t lds) {
  (void)dst, (void)ldd, (void)src, (void)lds;
  no_avx512();
}

void k_avx512_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                      uint64_t key, int64_t first) {
  (void)y, (void)mask, (void)x, (void)n, (void)scale, (void)least, (void)key, (void)first;
  no_avx512();
}

void k_avx512_im2col_s1(float *col, const float *x, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  (void)col, (void)x, (void)g, (void)OH, (void)OW, (void)ld;
  no_avx512();
}

void k_avx512_col2im_add_s1(float *dx, const float *col, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  (void)dx, (void)col, (void)g, (void)OH, (void)OW, (void)ld;
  no_avx512();
}

void k_avx512_maxpool2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  (void)y, (void)argmax, (void)x, (void)g, (void)OH, (void)OW;
  no_avx512();
}

void k_avx512_maxpool2x2_backward(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g,
                                  int64_t OH, int64_t OW) {
  (void)dx, (void)dy, (void)argmax, (void)g, (void)OH, (void)OW;
  no_avx512();
}

void k_avx512_maxpool_planes16(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH,
                               int64_t OW, int64_t nc, float *xt) {
  (void)y, (void)argmax, (void)x, (void)g, (void)OH, (void)OW, (void)nc, (void)xt;
  no_avx512();
}

#endif
