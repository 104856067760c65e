// conv_avx2.c: the cpu backend's stride-1 convolutions on AVX2 hosts,
// without im2col, and its max pooling there.
//
// With stride 1, the window of output (oh, ow) in an image padded to
// (Hp, Wp) starts at oh*Wp + ow, and tap (c, kh, kw) reads it at
// c*Hp*Wp + kh*dh*Wp + kw*dw further on. Taking the outputs "wide", at q =
// oh*Wp + ow (the columns ow >= OW are computed and dropped), every row of
// the im2col matrix is a contiguous run of the padded image: row r starts
// at off[r]. So the product y (O, Q) = w (O, C*KH*KW) @ col reads col in
// place through off, one image at a time, with the padded image (a copy
// the size of the input, not KH*KW times it) in L1 or L2:
//
//   forward: y (O, Q)     = w @ rows of x at off           (tile 4 x 24: 4 weights broadcast, 3 loads of x)
//            or, where a fifth of Q or more is dropped, y^T (N*P, O) over the real outputs alone
//            (the indirect forward: tile 6 x 16, 6 values of x broadcast, 2 loads of w^T)
//   dw:      dw^T (CKK, O) += rows of x at off @ dy^T (P, O)   (tile 6 x 16: 6 values of x broadcast;
//                                                               only the real outputs, row by row);
//            under 64 taps, dot products of dy's rows and x's along each output row
//   dx:      the same wide loop as the forward, over dy stored W + pw wide (see back_of),
//            with w flipped and its O and C swapped
//
// Q = (OH-1)*Wp + OW, so that no tap reads past the padded image; tiles
// read up to 23 floats past it, into a zeroed margin. The forward's wide
// columns waste (Wp - OW) / Wp of the work, and a last tile of columns
// some more: k_avx2_conv_fits takes planes of 32 outputs or more where
// 60 % or more of the columns are real (cnn's 26x26 and 11x11, resnet18's
// 7x7; not its 4x4 and smaller, which the batched im2col product serves
// better). The weight gradient walks the real outputs alone.
//
// Measured on one Zen 3 core, 8 images, best of 15 (GFLOP/s; this path
// against im2col and OpenBLAS): cnn's second layer (32 -> 64 channels,
// 13x13, 3x3) forward 69-80 against 41-48, weight gradient 82-86 against
// 36-49; resnet18's 64 channels at 7x7, pad 1: forward 63 against 38-40,
// weight gradient 77 against 38-40. Later (best of 40, thread CPU time):
// cnn's second layer's dx 64-69 against 45-55 by col2im; resnet18's 7x7
// forward 77 by the indirect forward, dx 55-74.
//
// The code is compiled for AVX2 and FMA function by function (target
// attributes), as fast_avx512.c is for AVX-512; k_avx2() says whether the
// host runs it. tests/kernels/test_conv.c checks these paths against the
// reference on such hosts.
#include "runtime.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

static pthread_once_t avx2_once = PTHREAD_ONCE_INIT;
static bool avx2_host;

static void find_avx2(void) {
#ifdef HAVE_AVX2_PATH
  __builtin_cpu_init();
  avx2_host = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("NNC_NO_AVX2");
#endif
}

bool k_avx2(void) {
  pthread_once(&avx2_once, find_avx2);
  return avx2_host;
}

#define MR 4    // rows of a tile
#define NR 24   // columns of a tile: 3 vectors of 8
#define MARGIN NR
#define CMR 6   // the weight gradient's tile: 6 rows of dw^T (taps)
#define CNR 16  // by 16 columns (output channels)

static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The padded plane's sizes and the wide output's columns for g at stride 1.
typedef struct Wide {
  int64_t OH, OW, Hp, Wp, Q, Qr;   // Qr: Q rounded up to whole tiles
} Wide;

static Wide wide_of(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  Wide v;
  v.Hp = H + 2 * ph, v.Wp = W + 2 * pw;
  v.OH = v.Hp - dh * (KH - 1), v.OW = v.Wp - dw * (KW - 1);
  v.Q = (v.OH - 1) * v.Wp + v.OW;
  v.Qr = round_up(v.Q, NR);
  return v;
}

// Whether the direct path takes g (stride 1, one group, a window larger
// than 1x1): the useful outputs are 3/4 or more of the columns computed.
static bool fits_any(const KConv2d *g) {
  if (g->sh != 1 || g->sw != 1 || g->G > 1 || g->KH * g->KW < 2 || g->N < 0)
    return false;
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  return v.OH >= 1 && v.OW >= 1 && g->C * v.Hp * v.Wp + MARGIN <= INT32_MAX;
}

// Planes of fewer outputs than this are one or two tiles per image, where
// the batched im2col product (images side by side) is faster.
#define MIN_OUTPUTS 32

static bool fits(const KConv2d *g) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  return fits_any(g) && v.OH * v.OW >= MIN_OUTPUTS && 5 * v.OH * v.OW >= 3 * v.Qr;
}

bool k_avx2_conv_fits(const KConv2d *g) { return k_avx2() && fits(g); }

// The input gradient, dx[c, h, w] = sum over (o, kh, kw) of w[o, c, kh,
// kw] * dy[o, h + ph - kh*dh, w + pw - kw*dw], is a stride-1 convolution
// of dy with w flipped and its O and C swapped. Taken wide at q = h*L + w
// with L = W + pw, it reads dy stored L wide: each row's OW values, then
// ex = dw*(KW-1) - pw zeros (L = OW + ex), which are also what a window
// reaching past the left edge reads, at the end of the row before; eh =
// dh*(KH-1) - ph zero rows above and below, and one more above for the
// first row's reach to the left. So only pw columns of each row of dx are
// computed and dropped (a forward of dy padded on both sides would drop
// dw*(KW-1)), none at padding 0. Where ex or eh would be negative (padding
// wider than the window), im2col's GEMM and col2im take it.
typedef struct Back {
  int64_t ex, eh, L, Hd, Q, Qr;   // Hd: rows of a channel of the stored dy
} Back;

static Back back_of(const KConv2d *g) {
  Back b;
  int64_t OH = g->H + 2 * g->ph - g->dh * (g->KH - 1);
  b.ex = g->dw * (g->KW - 1) - g->pw, b.eh = g->dh * (g->KH - 1) - g->ph;
  b.L = g->W + g->pw, b.Hd = OH + 2 * b.eh + 1;
  b.Q = (g->H - 1) * b.L + g->W, b.Qr = round_up(b.Q, NR);
  return b;
}

static bool grad_input_fits(const KConv2d *g) {
  if (!fits_any(g))
    return false;
  Back b = back_of(g);
  return b.ex >= 0 && b.eh >= 0 && g->H * g->W >= MIN_OUTPUTS && 5 * g->H * g->W >= 3 * b.Qr &&
         g->O * b.Hd * b.L + MARGIN <= INT32_MAX;
}

bool k_avx2_conv_grad_input_fits(const KConv2d *g) { return k_avx2() && grad_input_fits(g); }

// The weight gradient computes the real outputs only, so any plane of
// MIN_OUTPUTS fits: by dw^T's tiles, or, under this many taps (C*KH*KW),
// by dot products along the output rows.
#define GRAD_WEIGHT_MIN_ROWS 64

static bool grad_weight_fits(const KConv2d *g) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  return fits_any(g) && v.OH * v.OW >= MIN_OUTPUTS;
}

bool k_avx2_conv_grad_weight_fits(const KConv2d *g) { return k_avx2() && grad_weight_fits(g); }

// Floats of scratch: the padded image, the offsets, and the packed weights
// and wide output (forward) or dy^T and dw^T (dw).
static int64_t scratch_of(const KConv2d *g) {
  if (!fits_any(g))
    return 0;
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  int64_t CKK = g->C * g->KH * g->KW, Or = round_up(g->O, CNR);
  int64_t fwd = fits(g) ? round_up(g->O, MR) * CKK + round_up(g->O, MR) * v.Qr : 0;
  int64_t dw = grad_weight_fits(g) ? v.OH * v.OW * Or + CKK * Or : 0;
  return g->C * v.Hp * v.Wp + MARGIN + 2 * CKK + (fwd > dw ? fwd : dw);
}

static int64_t indirect_scratch(const KConv2d *g);   // (below, by the indirect forward)

int64_t k_avx2_conv_scratch(const KConv2d *g) {
  int64_t n = scratch_of(g);
  n = n > indirect_scratch(g) ? n : indirect_scratch(g);
  if (grad_input_fits(g)) {   // the stored dy, the offsets, the packed weights, the wide dx
    Back b = back_of(g);
    int64_t OKK = g->O * g->KH * g->KW, Cm = round_up(g->C, MR);
    int64_t m = g->O * b.Hd * b.L + MARGIN + 2 * OKK + Cm * OKK + Cm * b.Qr;
    n = n > m ? n : m;
  }
  return n;
}

// The image x (C, H, W) into xp (C, Hp, Wp) with zeros around, and a
// zeroed margin after it.
static void pad_image(float *xp, const float *x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw) {
  int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  if (ph == 0 && pw == 0) {
    memcpy(xp, x, sizeof(float) * C * H * W);
  } else {
    memset(xp, 0, sizeof(float) * C * Hp * Wp);
    for (int64_t c = 0; c < C; c++)
      for (int64_t h = 0; h < H; h++)
        memcpy(xp + (c * Hp + ph + h) * Wp + pw, x + (c * H + h) * W, sizeof(float) * W);
  }
  memset(xp + C * Hp * Wp, 0, sizeof(float) * MARGIN);
}

void k_tap_starts(int32_t *off, int64_t C, int64_t KH, int64_t KW, int64_t Hp, int64_t Wp, int64_t dh, int64_t dw) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t kh = 0; kh < KH; kh++)
      for (int64_t kw = 0; kw < KW; kw++)
        *off++ = (int32_t)(c * Hp * Wp + kh * dh * Wp + kw * dw);
}

void k_rows_on_data(int64_t h0, int64_t h1, int64_t Z, int64_t D, int64_t d, int64_t K, int64_t *lo, int64_t *hi) {
  int64_t below = Z - h1, above = Z + D - 1 - h0;   // k*d within [below, above]
  *lo = below <= 0 ? 0 : (below + d - 1) / d;
  *hi = above < 0 ? -1 : above / d < K - 1 ? above / d : K - 1;
}

#ifdef HAVE_AVX2_PATH
#define AVX2 __attribute__((target("avx2,fma")))

// C[0..mr, 0..24] (+)= sum over r < K of a[r*4 + i] * b[off[r] ..+ 24]:
// the forward's tile, a packed 4 rows at a time.
AVX2 static void tile_rows(int64_t K, const float *a, const float *b, const int32_t *off, float *c, int64_t ldc,
                           int mr, bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t r = 0; r < K; r++, a += MR) {
    const float *p = b + off[r];
    __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8), b2 = _mm256_loadu_ps(p + 16);
    __m256 t = _mm256_broadcast_ss(a);   // one broadcast live at a time: 12 + 3 + 1 registers
    c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01), c02 = _mm256_fmadd_ps(t, b2, c02);
    t = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11), c12 = _mm256_fmadd_ps(t, b2, c12);
    t = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21), c22 = _mm256_fmadd_ps(t, b2, c22);
    t = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31), c32 = _mm256_fmadd_ps(t, b2, c32);
  }
  __m256 v[MR][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < 3; j++) {
      float *p = c + i * ldc + 8 * j;
      _mm256_storeu_ps(p, add ? _mm256_add_ps(_mm256_loadu_ps(p), v[i][j]) : v[i][j]);
    }
}

// The same for the last columns of a row of tiles: nv vectors of 8 (1 or
// 2) instead of 3.
AVX2 static void tile_rows_narrow(int64_t K, const float *a, const float *b, const int32_t *off, float *c,
                                  int64_t ldc, int mr, bool add, int nv) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (nv == 1)
    for (int64_t r = 0; r < K; r++, a += MR) {
      __m256 b0 = _mm256_loadu_ps(b + off[r]);
      c00 = _mm256_fmadd_ps(_mm256_broadcast_ss(a), b0, c00);
      c10 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 1), b0, c10);
      c20 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 2), b0, c20);
      c30 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 3), b0, c30);
    }
  else
    for (int64_t r = 0; r < K; r++, a += MR) {
      const float *p = b + off[r];
      __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
      __m256 t = _mm256_broadcast_ss(a);
      c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01);
      t = _mm256_broadcast_ss(a + 1);
      c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11);
      t = _mm256_broadcast_ss(a + 2);
      c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21);
      t = _mm256_broadcast_ss(a + 3);
      c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31);
    }
  __m256 v[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nv; j++) {
      float *p = c + i * ldc + 8 * j;
      _mm256_storeu_ps(p, add ? _mm256_add_ps(_mm256_loadu_ps(p), v[i][j]) : v[i][j]);
    }
}

// One step of a 6 x 16 tile (c00 ... c51, declared by TILE6_ZERO): row
// i's value p_i[o] broadcast, times the 16 floats at b, into c_i0, c_i1.
#define TILE6_ZERO                                                                                         \
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;                 \
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00
#define TILE6_ROW(i, p)                                                                                    \
  t = _mm256_broadcast_ss(p), c##i##0 = _mm256_fmadd_ps(t, b0, c##i##0), c##i##1 = _mm256_fmadd_ps(t, b1, c##i##1)
#define TILE6_STEP(p0, p1, p2, p3, p4, p5, o, b)                                                           \
  do {                                                                                                     \
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps((b) + 8), t;                                      \
    TILE6_ROW(0, p0 + (o)), TILE6_ROW(1, p1 + (o)), TILE6_ROW(2, p2 + (o));                                \
    TILE6_ROW(3, p3 + (o)), TILE6_ROW(4, p4 + (o)), TILE6_ROW(5, p5 + (o));                                \
  } while (0)

// C[0..mr, 0..16] (+)= the 6 x 16 accumulators c00 ... c51, rows past mr left out.
AVX2 static inline void tile6_store(float *c, int64_t ldc, int mr, bool add, __m256 c00, __m256 c01, __m256 c10,
                                    __m256 c11, __m256 c20, __m256 c21, __m256 c30, __m256 c31, __m256 c40,
                                    __m256 c41, __m256 c50, __m256 c51) {
  __m256 v[CMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < 2; j++) {
      float *p = c + i * ldc + 8 * j;
      _mm256_storeu_ps(p, add ? _mm256_add_ps(_mm256_loadu_ps(p), v[i][j]) : v[i][j]);
    }
}
#define TILE6_STORE(c, ldc, mr, add) \
  tile6_store(c, ldc, mr, add, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51)

// C[0..mr, 0..16] (+)= sum over r < K of x[pos[i] + off[r]] * b[r*ldb
// ..+ 16]: y^T's tile of the indirect forward, 6 outputs (anywhere in the
// padded images) by 16 channels (12 accumulators, 2 loads of w^T, one
// broadcast); rows past mr repeat the last.
AVX2 static void tile_pos(int64_t K, const float *x, const int32_t *pos, int mr, const int32_t *off, const float *b,
                          int64_t ldb, float *c, int64_t ldc, bool add) {
  const float *x0 = x + pos[0], *x1 = x + pos[mr > 1 ? 1 : 0], *x2 = x + pos[mr > 2 ? 2 : mr - 1];
  const float *x3 = x + pos[mr > 3 ? 3 : mr - 1], *x4 = x + pos[mr > 4 ? 4 : mr - 1], *x5 = x + pos[mr > 5 ? 5 : mr - 1];
  TILE6_ZERO;
  for (int64_t r = 0; r < K; r++, b += ldb)
    TILE6_STEP(x0, x1, x2, x3, x4, x5, off[r], b);
  TILE6_STORE(c, ldc, mr, add);
}

// C[0..mr, 0..16] += sum over the outputs (oh, ow) of a_i[oh*Wp + ow] *
// b[(oh*OW + ow)*ldb ..+ 16], a_i = a + off[i] (rows past mr repeat the
// last one): dw^T's tile, 6 x 16 (12 accumulators, 2 loads of dy^T, one
// broadcast), over the real outputs only, one output row at a time.
AVX2 static void tile_cols(int64_t OH, int64_t OW, int64_t Wp, const float *a, const int32_t *off, int mr,
                           const float *b, int64_t ldb, float *c, int64_t ldc) {
  const float *ai[CMR];
  for (int i = 0; i < CMR; i++)
    ai[i] = a + off[i < mr ? i : mr - 1];
  TILE6_ZERO;
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *a0 = ai[0] + oh * Wp, *a1 = ai[1] + oh * Wp, *a2 = ai[2] + oh * Wp, *a3 = ai[3] + oh * Wp;
    const float *a4 = ai[4] + oh * Wp, *a5 = ai[5] + oh * Wp;
    for (int64_t q = 0; q < OW; q++, b += ldb)
      TILE6_STEP(a0, a1, a2, a3, a4, a5, q, b);
  }
  TILE6_STORE(c, ldc, mr, true);
}

// Few taps (C*KH*KW under GRAD_WEIGHT_MIN_ROWS: one input channel's 3x3)
// leave dw^T's tiles mostly idle, and transposing dy would cost more than
// the product: there dw[o, r] is a dot product along each output row, of
// dy's row and the padded image's at off[r]. A 3 x 3 block of them (9
// accumulators, 3 loads of dy, one of x at a time), a masked load at a
// row's end; dots[i*3 + j] = the block's sums (rows past mo and taps past
// mr repeat the last one).
AVX2 static void dots_3x3(int64_t OH, int64_t OW, int64_t Wp, const float *dy, int64_t P, int mo, const float *xp,
                          const int32_t *off, int mr, float *dots) {
  static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  const float *d0 = dy, *d1 = dy + (mo > 1 ? 1 : 0) * P, *d2 = dy + (mo > 2 ? 2 : mo - 1) * P;
  const float *x0 = xp + off[0], *x1 = xp + off[mr > 1 ? 1 : 0], *x2 = xp + off[mr > 2 ? 2 : mr - 1];
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00;
  __m256i tail = _mm256_loadu_si256((const __m256i *)(lanes + 8 - OW % 8));
  for (int64_t oh = 0; oh < OH; oh++, d0 += OW, d1 += OW, d2 += OW, x0 += Wp, x1 += Wp, x2 += Wp)
    for (int64_t ow = 0; ow < OW; ow += 8) {
      __m256i m = ow + 8 <= OW ? _mm256_set1_epi32(-1) : tail;
      __m256 a0 = _mm256_maskload_ps(d0 + ow, m), a1 = _mm256_maskload_ps(d1 + ow, m);
      __m256 a2 = _mm256_maskload_ps(d2 + ow, m);
      __m256 t = _mm256_maskload_ps(x0 + ow, m);
      c00 = _mm256_fmadd_ps(a0, t, c00), c10 = _mm256_fmadd_ps(a1, t, c10), c20 = _mm256_fmadd_ps(a2, t, c20);
      t = _mm256_maskload_ps(x1 + ow, m);
      c01 = _mm256_fmadd_ps(a0, t, c01), c11 = _mm256_fmadd_ps(a1, t, c11), c21 = _mm256_fmadd_ps(a2, t, c21);
      t = _mm256_maskload_ps(x2 + ow, m);
      c02 = _mm256_fmadd_ps(a0, t, c02), c12 = _mm256_fmadd_ps(a1, t, c12), c22 = _mm256_fmadd_ps(a2, t, c22);
    }
  __m256 v[9] = {c00, c01, c02, c10, c11, c12, c20, c21, c22};
  for (int i = 0; i < 9; i++) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v[i]), _mm256_extractf128_ps(v[i], 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    dots[i] = _mm_cvtss_f32(h);
  }
}

// maxpool(2) on 8 outputs at once (maxpool_2x2 in kernels_conv.c): the
// even and odd columns of two input rows, by shuffles of 16 consecutive
// floats, then max_step's scan as selects. The reference's bytes.
AVX2 void k_avx2_maxpool2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  int64_t W = g->W;
  const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), one = _mm256_set1_epi32(1);
  const __m256i wv = _mm256_set1_epi32((int32_t)W);
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    const float *xp = x + nc * g->H * W;   // (H,W)
    float *yp = y + nc * OH * OW;          // (OH,OW)
    int32_t *ap = argmax ? argmax + nc * OH * OW : NULL;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow += 8) {
        int64_t cnt = OW - ow < 8 ? OW - ow : 8, i = 2 * oh * W + 2 * ow;   // outputs; 2*cnt inputs per row
        const float *r0 = xp + i, *r1 = r0 + W;
        __m256 a, b, c, d;
        if (cnt == 8) {
          a = _mm256_loadu_ps(r0), b = _mm256_loadu_ps(r0 + 8), c = _mm256_loadu_ps(r1), d = _mm256_loadu_ps(r1 + 8);
        } else {
          __m256i mlo = _mm256_loadu_si256((const __m256i *)(lanes + 8 - (cnt >= 4 ? 8 : 2 * cnt)));
          __m256i mhi = _mm256_loadu_si256((const __m256i *)(lanes + 8 - (cnt <= 4 ? 0 : 2 * cnt - 8)));
          a = _mm256_maskload_ps(r0, mlo), b = _mm256_maskload_ps(r0 + 8, mhi);
          c = _mm256_maskload_ps(r1, mlo), d = _mm256_maskload_ps(r1 + 8, mhi);
        }
#define EVEN(p, q) _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p, q, 0x88)), 0xd8))
#define ODD(p, q) _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p, q, 0xdd)), 0xd8))
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int32_t)i), step), at = idx;
        __m256 best = EVEN(a, b);
        __m256 v[3] = {ODD(a, b), EVEN(c, d), ODD(c, d)};
#undef EVEN
#undef ODD
        __m256i vi[3] = {_mm256_add_epi32(idx, one), _mm256_add_epi32(idx, wv),
                         _mm256_add_epi32(_mm256_add_epi32(idx, wv), one)};
        for (int s = 0; s < 3; s++) {
          __m256 take = _mm256_or_ps(_mm256_cmp_ps(v[s], best, _CMP_GT_OQ), _mm256_cmp_ps(v[s], v[s], _CMP_UNORD_Q));
          best = _mm256_blendv_ps(best, v[s], take);
          at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(vi[s]), take));
        }
        if (cnt == 8) {
          _mm256_storeu_ps(yp + oh * OW + ow, best);
          if (ap)
            _mm256_storeu_si256((__m256i *)(ap + oh * OW + ow), at);
        } else {   // (masked stores are slow on AMD's cores: through a buffer)
          float yb[8];
          int32_t ab[8];
          _mm256_storeu_ps(yb, best);
          _mm256_storeu_si256((__m256i *)ab, at);
          memcpy(yp + oh * OW + ow, yb, sizeof(float) * cnt);
          if (ap)
            memcpy(ap + oh * OW + ow, ab, sizeof(int32_t) * cnt);
        }
      }
  }
}

// Max pooling of small planes (resnet18's 14x14 before its 3x3 pool):
// planes nc..nc+7, one per lane, their values moved position-major into
// xt (8*H*W floats), every window max_step's scan on whole vectors into
// yt and att (8*OH*OW each), moved back to the 8 planes. The reference's
// bytes.
AVX2 void k_avx2_maxpool_planes8(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH,
                                 int64_t OW, int64_t nc, float *xt) {
  int64_t HW = g->H * g->W, OHW = OH * OW;
  float *yt = xt + 8 * HW;
  int32_t *att = (int32_t *)(yt + 8 * OHW);
  const float *xp = x + nc * HW;
  for (int l = 0; l < 8; l++)
    for (int64_t p = 0; p < HW; p++)
      xt[8 * p + l] = xp[l * HW + p];
  const __m256i none = _mm256_set1_epi32(-1);
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++) {
      __m256 best = _mm256_set1_ps(-INFINITY);
      __m256i at = none;
      for (int64_t kh = 0; kh < g->kh; kh++) {
        int64_t h = oh * g->sh - g->ph + kh * g->dh;
        if (h < 0 || h >= g->H)
          continue;
        for (int64_t kw = 0; kw < g->kw; kw++) {
          int64_t w = ow * g->sw - g->pw + kw * g->dw;
          if (w < 0 || w >= g->W)
            continue;
          __m256 v = _mm256_loadu_ps(xt + 8 * (h * g->W + w));
          __m256 take = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)),
                                     _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, none)));
          best = _mm256_blendv_ps(best, v, take);
          at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at),
                                                    _mm256_castsi256_ps(_mm256_set1_epi32((int32_t)(h * g->W + w))), take));
        }
      }
      _mm256_storeu_ps(yt + 8 * (oh * OW + ow), best);
      _mm256_storeu_si256((__m256i *)(att + 8 * (oh * OW + ow)), at);
    }
  for (int l = 0; l < 8; l++)
    for (int64_t p = 0; p < OHW; p++) {
      y[(nc + l) * OHW + p] = yt[8 * p + l];
      if (argmax)
        argmax[(nc + l) * OHW + p] = att[8 * p + l];
    }
}
// to[i] = from[i] + b, i < n: a row of the wide output into y with the
// bias, 8 at a time (a first convolution's output is large next to its
// work: the copy was a tenth of cnn's forward at batch 1000).
AVX2 static void add_row(float *to, const float *from, int64_t n, float b) {
  __m256 bv = _mm256_set1_ps(b);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(to + i, _mm256_add_ps(_mm256_loadu_ps(from + i), bv));
  for (; i < n; i++)
    to[i] = from[i] + b;
}

// Dropout's forward (kernels_train.c, k_dropout_forward), as
// fast_avx512.c's k_avx512_dropout: dropout_hash of 8 consecutive indexes
// at a time in two vectors of 4 64-bit lanes, whose first step goes up by
// golden from one index to the next. AVX2 has no 64-bit product: mul64
// makes the low 64 bits of a * c from three 32-bit ones.
AVX2 static inline __m256i mul64(__m256i a, uint64_t c) {
  __m256i cl = _mm256_set1_epi64x((int64_t)(c & 0xffffffffu)), ch = _mm256_set1_epi64x((int64_t)(c >> 32));
  __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), cl), _mm256_mul_epu32(a, ch));
  return _mm256_add_epi64(_mm256_mul_epu32(a, cl), _mm256_slli_epi64(cross, 32));
}

AVX2 static inline __m256i splitmix_mix4(__m256i z) {
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), K_DROPOUT_MIX1);
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), K_DROPOUT_MIX2);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

AVX2 void k_avx2_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                         uint64_t key, int64_t first) {
  const uint64_t golden = K_DROPOUT_GOLDEN;
  __m256i step = _mm256_set1_epi64x((int64_t)(8 * golden));
  // draw >= least as draw > least - 1 on signed lanes (draws and least are under 2^25)
  __m256i lim = _mm256_set1_epi64x((int64_t)least - 1);
  __m256i z0 = _mm256_add_epi64(_mm256_set1_epi64x((int64_t)(key + ((uint64_t)first + 1) * golden)),
                                _mm256_setr_epi64x(0, (int64_t)golden, (int64_t)(2 * golden), (int64_t)(3 * golden)));
  __m256i z1 = _mm256_add_epi64(z0, _mm256_set1_epi64x((int64_t)(4 * golden)));
  __m256 sv = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i k0 = _mm256_cmpgt_epi64(_mm256_srli_epi64(splitmix_mix4(z0), 40), lim);
    __m256i k1 = _mm256_cmpgt_epi64(_mm256_srli_epi64(splitmix_mix4(z1), 40), lim);
    // the 8 lanes' all-ones or zero words, as 32-bit lanes in order
    __m256i keep = _mm256_permutevar8x32_epi32(_mm256_blend_epi32(k0, _mm256_slli_epi64(k1, 32), 0xaa),
                                               _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    __m256 v = _mm256_loadu_ps(x + i);   // x * (keep ? scale : 0), as the reference
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_and_ps(_mm256_castsi256_ps(keep), sv)));
    unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(keep));
    for (int l = 0; l < 8; l++)
      mask[i + l] = (uint8_t)(bits >> l & 1);
    z0 = _mm256_add_epi64(z0, step);
    z1 = _mm256_add_epi64(z1, step);
  }
  if (i < n)   // the last few: the reference's loop from index first + i
    k_dropout_forward_tail(y + i, mask + i, x + i, n - i, scale, least, key, first + i);
}
#else
static void add_row(float *to, const float *from, int64_t n, float b) {
  (void)to, (void)from, (void)n, (void)b;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void dots_3x3(int64_t OH, int64_t OW, int64_t Wp, const float *dy, int64_t P, int mo, const float *xp,
                     const int32_t *off, int mr, float *dots) {
  (void)OH, (void)OW, (void)Wp, (void)dy, (void)P, (void)mo, (void)xp, (void)off, (void)mr, (void)dots;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_rows(int64_t K, const float *a, const float *b, const int32_t *off, float *c, int64_t ldc,
                      int mr, bool add) {
  (void)K, (void)a, (void)b, (void)off, (void)c, (void)ldc, (void)mr, (void)add;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_rows_narrow(int64_t K, const float *a, const float *b, const int32_t *off, float *c,
                             int64_t ldc, int mr, bool add, int nv) {
  (void)K, (void)a, (void)b, (void)off, (void)c, (void)ldc, (void)mr, (void)add, (void)nv;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_pos(int64_t K, const float *x, const int32_t *pos, int mr, const int32_t *off, const float *b,
                     int64_t ldb, float *c, int64_t ldc, bool add) {
  (void)K, (void)x, (void)pos, (void)mr, (void)off, (void)b, (void)ldb, (void)c, (void)ldc, (void)add;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_cols(int64_t OH, int64_t OW, int64_t Wp, const float *a, const int32_t *off, int mr,
                      const float *b, int64_t ldb, float *c, int64_t ldc) {
  (void)OH, (void)OW, (void)Wp, (void)a, (void)off, (void)mr, (void)b, (void)ldb, (void)c, (void)ldc;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

void k_avx2_maxpool2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  (void)y, (void)argmax, (void)x, (void)g, (void)OH, (void)OW;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

void k_avx2_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                    uint64_t key, int64_t first) {
  (void)y, (void)mask, (void)x, (void)n, (void)scale, (void)least, (void)key, (void)first;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

void k_avx2_maxpool_planes8(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW,
                            int64_t nc, float *xt) {
  (void)y, (void)argmax, (void)x, (void)g, (void)OH, (void)OW, (void)nc, (void)xt;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}
#endif

// A stride-1 convolution taken wide, the forward's and the input
// gradient's: out (M, Qr) at q = h*L + w, out[i, q] = the sum over taps
// (c, k, kw) of a[i, tap] * img[c*plane + (h + k*dh)*L + w + kw*dw], img
// from base. The rows of img outside [Z, Z + D) hold zeros, so a tile of
// outputs in rows [h0, h1] skips the taps k whose rows h + k*dh all lie
// there (a padded image's first and last rows). The channels go in blocks
// of cb, each block's image (cb planes) and weights in L1 while its tiles
// run, adding into out after the first; a block's taps go k-major, (k, c,
// kw), so that the taps a tile keeps are one run.
typedef struct WideConv {
  int64_t M, C, KH, KW, dh, dw;   // rows of out, channels of img, the window
  int64_t L, plane, Z, D, Q, Qr;  // img's row and channel; its zero rows above, its rows of data; out's columns
  int64_t cb;                     // channels per block
} WideConv;

// A block's image: this many floats (32 KiB, L1's size) or fewer: smaller
// blocks cost more in adding the blocks' sums than they save.
#define WIDE_BLOCK 8192

static WideConv wide_conv(int64_t M, int64_t C, const KConv2d *g, int64_t L, int64_t plane, int64_t Z, int64_t D,
                          int64_t Q) {
  WideConv v = {.M = M, .C = C, .KH = g->KH, .KW = g->KW, .dh = g->dh, .dw = g->dw, .L = L, .plane = plane,
                .Z = Z, .D = D, .Q = Q, .Qr = round_up(Q, NR)};
  int64_t blocks = (C * plane + WIDE_BLOCK - 1) / WIDE_BLOCK;
  v.cb = (C + blocks - 1) / blocks;
  return v;
}

// For each tap r of v in order, off[r]: where it reads output 0 from
// base, and src[r]: its weight's index in w, less that of the row (c*cs +
// kh*KW + kw, or with the window flipped, c*cs + KH*KW-1 - kh*KW - kw).
static void wide_taps(int32_t *off, int32_t *src, const WideConv *v, int64_t cs, bool flip) {
  int64_t KK = v->KH * v->KW;
  for (int64_t c0 = 0; c0 < v->C; c0 += v->cb)
    for (int64_t k = 0; k < v->KH; k++)
      for (int64_t c = c0; c < v->C && c < c0 + v->cb; c++)
        for (int64_t kw = 0; kw < v->KW; kw++) {
          *off++ = (int32_t)(c * v->plane + k * v->dh * v->L + kw * v->dw);
          *src++ = (int32_t)(c * cs + (flip ? KK - 1 - k * v->KW - kw : k * v->KW + kw));
        }
}

// out = the wide convolution of the image at base with the weights wp,
// packed 4 rows at a time (wp[(i/4*C*KH*KW + tap)*4 + i%4]).
static void wide_run(float *out, const float *wp, const float *base, const int32_t *off, const WideConv *v) {
  int64_t KK = v->KH * v->KW, CKK = v->C * KK;
  for (int64_t c0 = 0; c0 < v->C; c0 += v->cb) {
    int64_t m = v->C - c0 < v->cb ? v->C - c0 : v->cb;
    for (int64_t j = 0; j < v->Q; j += NR) {
      int nv = v->Q - j >= NR ? 3 : (int)((v->Q - j + 7) / 8);
      int64_t h0 = j / v->L, h1 = (j + 8 * nv - 1) / v->L;
      int64_t klo, khi;
      k_rows_on_data(h0, h1, v->Z, v->D, v->dh, v->KH, &klo, &khi);
      int64_t r0 = c0 * KK + klo * m * v->KW, K = khi >= klo ? (khi - klo + 1) * m * v->KW : 0;
      for (int64_t i = 0; i < v->M; i += MR) {
        int mr = v->M - i < MR ? (int)(v->M - i) : MR;
        const float *a = wp + (i / MR * CKK + r0) * MR;
        if (nv == 3)
          tile_rows(K, a, base + j, off + r0, out + i * v->Qr + j, v->Qr, mr, c0 > 0);
        else
          tile_rows_narrow(K, a, base + j, off + r0, out + i * v->Qr + j, v->Qr, mr, c0 > 0, nv);
      }
    }
  }
}

// The indirect forward: y^T (N*P, O) = the real outputs of all N images,
// 6 at a time, each tap read in place from the padded images through
// pos (where output p's window starts) and off (where tap r lies in it),
// against w^T (C*KH*KW, O), 16 channels at a time, the taps in blocks of
// IND_KC (w^T's block in L1); then y^T to y. It computes no column that
// is dropped, but its tile broadcasts more (6 values of x and 2 loads of
// w^T for 12 FMAs, against 4 and 3), which pays where the wide forward
// drops a fifth of its columns or more: resnet18's 64 channels at 7x7, 68
// % real, 77 GFLOP/s against 67 on one Zen 3 core (cnn's 13x13, 84 % real:
// 77 either way). Its tiles are 16 channels wide: for 32 or more.
#define IND_KC 256
#define IND_MIN_O 32

static bool indirect_fits(const KConv2d *g) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  return fits(g) && g->O >= IND_MIN_O && 5 * v.OH * v.OW < 4 * v.Qr && g->N * g->C * v.Hp * v.Wp <= INT32_MAX;
}

static int64_t indirect_scratch(const KConv2d *g) {
  if (!indirect_fits(g))
    return 0;
  int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, CKK = g->C * g->KH * g->KW, Or = round_up(g->O, CNR);
  int64_t P = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh) * k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  return g->N * g->C * Hp * Wp + g->N * P + CKK + CKK * Or + g->N * P * Or;
}

static void conv_forward_indirect(float *y, const float *x, const float *w, const float *bias, const KConv2d *g,
                                  float *ws) {
  int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, CKK = g->C * g->KH * g->KW, Or = round_up(g->O, CNR);
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  int64_t P = OH * OW, NP = g->N * P, S = g->C * Hp * Wp, HW = g->H * g->W;
  float *xp = ws, *wt = xp + g->N * S, *yt = wt + CKK * Or;
  int32_t *pos = (int32_t *)(yt + NP * Or), *off = pos + NP;
  for (int64_t n = 0; n < g->N; n++) {
    float *dst = xp + n * S;
    if (g->ph == 0 && g->pw == 0) {
      memcpy(dst, x + n * g->C * HW, sizeof(float) * g->C * HW);
      continue;
    }
    memset(dst, 0, sizeof(float) * S);
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t h = 0; h < g->H; h++)
        memcpy(dst + (c * Hp + g->ph + h) * Wp + g->pw, x + ((n * g->C + c) * g->H + h) * g->W, sizeof(float) * g->W);
  }
  for (int64_t n = 0, p = 0; n < g->N; n++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        pos[p++] = (int32_t)(n * S + oh * g->sh * Wp + ow * g->sw);
  for (int64_t c = 0, r = 0; c < g->C; c++)
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++)
        off[r++] = (int32_t)(c * Hp * Wp + kh * g->dh * Wp + kw * g->dw);
  for (int64_t r = 0; r < CKK; r++)
    for (int64_t o = 0; o < Or; o++)
      wt[r * Or + o] = o < g->O ? w[o * CKK + r] : 0.0f;
  for (int64_t k0 = 0; k0 < CKK; k0 += IND_KC) {
    int64_t kc = CKK - k0 < IND_KC ? CKK - k0 : IND_KC;
    for (int64_t j = 0; j < Or; j += CNR)
      for (int64_t p = 0; p < NP; p += CMR)
        tile_pos(kc, xp, pos + p, NP - p < CMR ? (int)(NP - p) : CMR, off + k0, wt + k0 * Or + j, Or,
                 yt + p * Or + j, Or, k0 > 0);
  }
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t p = 0; p < P; p++)
        y[(n * g->O + o) * P + p] = yt[(n * P + p) * Or + o] + (bias ? bias[o] : 0.0f);
}

// y (N, O, OH, OW) = the convolution of x (N, C, H, W), on the padded
// image wide at q = oh*Wp + ow.
void k_avx2_conv_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g, float *ws) {
  if (indirect_fits(g)) {
    conv_forward_indirect(y, x, w, bias, g, ws);
    return;
  }
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  WideConv wc = wide_conv(g->O, g->C, g, v.Wp, v.Hp * v.Wp, g->ph, g->H, v.Q);
  int64_t KK = g->KH * g->KW, CKK = g->C * KK, Om = round_up(g->O, MR), P = v.OH * v.OW, HW = g->H * g->W;
  float *wp = ws, *xp = wp + Om * CKK, *yw = xp + g->C * v.Hp * v.Wp + MARGIN;   // the padded image; (Om, Qr)
  int32_t *off = (int32_t *)(yw + Om * v.Qr), *src = off + CKK;
  wide_taps(off, src, &wc, KK, false);
  for (int64_t o = 0; o < Om; o++)   // rows past O repeat the last
    for (int64_t r = 0; r < CKK; r++)
      wp[(o / MR * CKK + r) * MR + o % MR] = w[(o < g->O ? o : g->O - 1) * CKK + src[r]];
  for (int64_t n = 0; n < g->N; n++) {
    pad_image(xp, x + n * g->C * HW, g->C, g->H, g->W, g->ph, g->pw);
    wide_run(yw, wp, xp, off, &wc);
    float *yn = y + n * g->O * P;
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t oh = 0; oh < v.OH; oh++) {
        const float *from = yw + o * v.Qr + oh * v.Wp;
        float *to = yn + (o * v.OH + oh) * v.OW;
        if (bias)
          add_row(to, from, v.OW, bias[o]);
        else
          memcpy(to, from, sizeof(float) * v.OW);
      }
  }
}

// dx (N, C, H, W) += the input gradient of dy (N, O, OH, OW): the wide
// convolution of dy stored L wide (see back_of) with w flipped and its O
// and C swapped.
void k_avx2_conv_grad_input(float *dx, const float *dy, const float *w, const KConv2d *g, float *ws) {
  Back b = back_of(g);
  int64_t OH = b.Hd - 2 * b.eh - 1, OW = b.L - b.ex, P = OH * OW, HW = g->H * g->W, plane = b.Hd * b.L;
  WideConv wc = wide_conv(g->C, g->O, g, b.L, plane, b.eh, OH, b.Q);
  int64_t KK = g->KH * g->KW, CKK = g->C * KK, OKK = g->O * KK, Cm = round_up(g->C, MR);
  float *wp = ws, *dyp = wp + Cm * OKK, *xw = dyp + g->O * plane + MARGIN;   // the stored dy; the wide dx (Cm, Qr)
  int32_t *off = (int32_t *)(xw + Cm * b.Qr), *src = off + OKK;
  wide_taps(off, src, &wc, CKK, true);
  for (int64_t c = 0; c < Cm; c++)   // w'[c, o, kh, kw] = w[o, c, KH-1-kh, KW-1-kw]; rows past C repeat the last
    for (int64_t r = 0; r < OKK; r++)
      wp[(c / MR * OKK + r) * MR + c % MR] = w[(c < g->C ? c : g->C - 1) * KK + src[r]];
  memset(dyp, 0, sizeof(float) * (g->O * plane + MARGIN));   // the zeros stay; each image fills the rest
  for (int64_t n = 0; n < g->N; n++) {
    const float *dyn = dy + n * g->O * P;
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        memcpy(dyp + o * plane + (1 + b.eh + oh) * b.L, dyn + (o * OH + oh) * OW, sizeof(float) * OW);
    wide_run(xw, wp, dyp + b.L - b.ex, off, &wc);   // (tap (0, 0) of output 0 reads row 1, ex to the left)
    float *dxn = dx + n * g->C * HW;
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t h = 0; h < g->H; h++) {
        const float *src = xw + c * b.Qr + h * b.L;
        float *dst = dxn + (c * g->H + h) * g->W;
        for (int64_t i = 0; i < g->W; i++)
          dst[i] += src[i];
      }
  }
}

// dw += the dot products of each image, 3 x 3 at a time.
static void grad_weight_dots(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  int64_t CKK = g->C * g->KH * g->KW, P = v.OH * v.OW, HW = g->H * g->W;
  float *xp = ws, dots[9];
  int32_t *off = (int32_t *)(xp + g->C * v.Hp * v.Wp + MARGIN);
  k_tap_starts(off, g->C, g->KH, g->KW, v.Hp, v.Wp, g->dh, g->dw);
  for (int64_t n = 0; n < g->N; n++) {
    pad_image(xp, x + n * g->C * HW, g->C, g->H, g->W, g->ph, g->pw);
    const float *dyn = dy + n * g->O * P;
    for (int64_t o = 0; o < g->O; o += 3)
      for (int64_t r = 0; r < CKK; r += 3) {
        int mo = g->O - o < 3 ? (int)(g->O - o) : 3, mr = CKK - r < 3 ? (int)(CKK - r) : 3;
        dots_3x3(v.OH, v.OW, v.Wp, dyn + o * P, P, mo, xp, off + r, mr, dots);
        for (int i = 0; i < mo; i++)
          for (int j = 0; j < mr; j++)
            dw[(o + i) * CKK + r + j] += dots[i * 3 + j];
      }
  }
}

void k_avx2_conv_grad_weight(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  int64_t CKK = g->C * g->KH * g->KW, Or = round_up(g->O, CNR), P = v.OH * v.OW, HW = g->H * g->W;
  if (CKK < GRAD_WEIGHT_MIN_ROWS) {
    grad_weight_dots(dw, dy, x, g, ws);
    return;
  }
  float *xp = ws, *dyt = xp + g->C * v.Hp * v.Wp + MARGIN;   // the padded image; dy^T (P, Or)
  float *dwt = dyt + P * Or;                                  // dw^T (CKK, Or)
  int32_t *off = (int32_t *)(dwt + CKK * Or);
  k_tap_starts(off, g->C, g->KH, g->KW, v.Hp, v.Wp, g->dh, g->dw);
  memset(dyt, 0, sizeof(float) * P * Or);   // (the columns past O stay 0)
  memset(dwt, 0, sizeof(float) * CKK * Or);
  for (int64_t n = 0; n < g->N; n++) {
    pad_image(xp, x + n * g->C * HW, g->C, g->H, g->W, g->ph, g->pw);
    const float *dyn = dy + n * g->O * P;
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t p = 0; p < P; p++)
        dyt[p * Or + o] = dyn[o * P + p];
    for (int64_t j = 0; j < Or; j += CNR)
      for (int64_t r = 0; r < CKK; r += CMR)
        tile_cols(v.OH, v.OW, v.Wp, xp, off + r, CKK - r < CMR ? (int)(CKK - r) : CMR, dyt + j, Or,
                  dwt + r * Or + j, Or);
  }
  for (int64_t o = 0; o < g->O; o++)
    for (int64_t r = 0; r < CKK; r++)
      dw[o * CKK + r] += dwt[r * Or + o];
}
