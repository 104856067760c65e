// conv_avx2.c: the cpu backend's stride-1 convolutions on AVX2 hosts,
// without im2col.
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
//   dw:      dw^T (CKK, O) += rows of x at off @ dy^T (P, O)   (tile 6 x 16: 6 values of x broadcast;
//                                                               only the real outputs, row by row);
//            under 64 taps, dot products of dy's rows and x's along each output row
//   dx:      the forward of dy padded by dh*(KH-1) - ph, with w flipped and its O and C swapped,
//            where a padded dy stays in L1 (else im2col's GEMM and col2im)
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
// weight gradient 77 against 38-40.
//
// The code is compiled for AVX2 and FMA function by function (target
// attributes), as fast_avx512.c is for AVX-512; k_avx2() says whether the
// host runs it. tests/kernels/test_conv.c checks these paths against the
// reference on such hosts.
#include "runtime.h"

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

// The convolution dx of g is: dy padded by dh*(KH-1) - ph (stride 1),
// with w flipped and its O and C swapped. Meaningful where that padding
// is not negative; faster than col2im where the padded dy of an image
// stays in L1 (resnet18's 64 channels at 7x7: 43-62 GFLOP/s against 35-52
// on one core), not where each tile reads it from L2 (cnn's 64 channels
// at 11x11 padded to 15x15: 36-52 against 39-55).
#define GRAD_INPUT_MAX_PLANE 6144   // floats: 24 KiB
static KConv2d grad_input_geometry(const KConv2d *g) {
  KConv2d t = *g;
  t.C = g->O, t.O = g->C;
  t.H = g->H + 2 * g->ph - g->dh * (g->KH - 1), t.W = g->W + 2 * g->pw - g->dw * (g->KW - 1);
  t.ph = g->dh * (g->KH - 1) - g->ph, t.pw = g->dw * (g->KW - 1) - g->pw;
  return t;
}

static bool grad_input_fits(const KConv2d *g) {
  KConv2d t = grad_input_geometry(g);
  return fits_any(g) && t.ph >= 0 && t.pw >= 0 && t.H >= 1 && t.W >= 1 && fits(&t) &&
         t.C * (t.H + 2 * t.ph) * (t.W + 2 * t.pw) <= GRAD_INPUT_MAX_PLANE;
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
  return g->C * v.Hp * v.Wp + MARGIN + CKK + (fwd > dw ? fwd : dw);
}

int64_t k_avx2_conv_scratch(const KConv2d *g) {
  int64_t n = scratch_of(g);
  if (grad_input_fits(g)) {   // the forward of dy
    KConv2d t = grad_input_geometry(g);
    int64_t m = scratch_of(&t);
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

// off[r] for r = (c, kh, kw): where row r of the wide col starts.
static void tap_starts(int32_t *off, int64_t C, int64_t KH, int64_t KW, int64_t Hp, int64_t Wp, int64_t dh,
                       int64_t dw) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t kh = 0; kh < KH; kh++)
      for (int64_t kw = 0; kw < KW; kw++)
        *off++ = (int32_t)(c * Hp * Wp + kh * dh * Wp + kw * dw);
}

#ifdef HAVE_AVX2_PATH
#define AVX2 __attribute__((target("avx2,fma")))

// C[0..mr, 0..24] = sum over r < K of a[r*4 + i] * b[off[r] ..+ 24]:
// the forward's tile, a packed 4 rows at a time.
AVX2 static void tile_rows(int64_t K, const float *a, const float *b, const int32_t *off, float *c, int64_t ldc,
                           int mr) {
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
    for (int j = 0; j < 3; j++)
      _mm256_storeu_ps(c + i * ldc + 8 * j, v[i][j]);
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
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *a0 = ai[0] + oh * Wp, *a1 = ai[1] + oh * Wp, *a2 = ai[2] + oh * Wp, *a3 = ai[3] + oh * Wp;
    const float *a4 = ai[4] + oh * Wp, *a5 = ai[5] + oh * Wp;
    for (int64_t q = 0; q < OW; q++, b += ldb) {
      __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      __m256 t = _mm256_broadcast_ss(a0 + q);
      c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01);
      t = _mm256_broadcast_ss(a1 + q);
      c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11);
      t = _mm256_broadcast_ss(a2 + q);
      c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21);
      t = _mm256_broadcast_ss(a3 + q);
      c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31);
      t = _mm256_broadcast_ss(a4 + q);
      c40 = _mm256_fmadd_ps(t, b0, c40), c41 = _mm256_fmadd_ps(t, b1, c41);
      t = _mm256_broadcast_ss(a5 + q);
      c50 = _mm256_fmadd_ps(t, b0, c50), c51 = _mm256_fmadd_ps(t, b1, c51);
    }
  }
  __m256 v[CMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < 2; j++) {
      float *p = c + i * ldc + 8 * j;
      _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v[i][j]));
    }
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
#else
static void dots_3x3(int64_t OH, int64_t OW, int64_t Wp, const float *dy, int64_t P, int mo, const float *xp,
                     const int32_t *off, int mr, float *dots) {
  (void)OH, (void)OW, (void)Wp, (void)dy, (void)P, (void)mo, (void)xp, (void)off, (void)mr, (void)dots;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_rows(int64_t K, const float *a, const float *b, const int32_t *off, float *c, int64_t ldc,
                      int mr) {
  (void)K, (void)a, (void)b, (void)off, (void)c, (void)ldc, (void)mr;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}

static void tile_cols(int64_t OH, int64_t OW, int64_t Wp, const float *a, const int32_t *off, int mr,
                      const float *b, int64_t ldb, float *c, int64_t ldc) {
  (void)OH, (void)OW, (void)Wp, (void)a, (void)off, (void)mr, (void)b, (void)ldb, (void)c, (void)ldc;
  nnc_bug(__FILE__, __LINE__, "an AVX2 kernel on a host without AVX2");
}
#endif

// The forward of geometry g on images whose weights are packed in wp
// (round_up(O, 4) rows, by 4 rows r-major: wp[(ob*CKK + r)*4 + i]):
// y (N, O, OH, OW) (+)= the convolution of x (N, C, H, W).
static void conv_images(float *y, bool add, const float *x, const float *wp, const KConv2d *g, float *ws) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  int64_t CKK = g->C * g->KH * g->KW, P = v.OH * v.OW, HW = g->H * g->W;
  float *xp = ws, *yw = xp + g->C * v.Hp * v.Wp + MARGIN;   // the padded image, the wide output (O, Qr)
  int32_t *off = (int32_t *)(yw + round_up(g->O, MR) * v.Qr);
  tap_starts(off, g->C, g->KH, g->KW, v.Hp, v.Wp, g->dh, g->dw);
  for (int64_t n = 0; n < g->N; n++) {
    pad_image(xp, x + n * g->C * HW, g->C, g->H, g->W, g->ph, g->pw);
    for (int64_t j = 0; j < v.Qr; j += NR)
      for (int64_t o = 0; o < g->O; o += MR)
        tile_rows(CKK, wp + o * CKK, xp + j, off, yw + o * v.Qr + j, v.Qr, g->O - o < MR ? (int)(g->O - o) : MR);
    float *yn = y + n * g->O * P;
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t oh = 0; oh < v.OH; oh++) {
        const float *src = yw + o * v.Qr + oh * v.Wp;
        float *dst = yn + (o * v.OH + oh) * v.OW;
        if (add)
          for (int64_t i = 0; i < v.OW; i++)
            dst[i] += src[i];
        else
          memcpy(dst, src, sizeof(float) * v.OW);
      }
  }
}

void k_avx2_conv_forward(float *y, const float *x, const float *w, const KConv2d *g, float *ws) {
  int64_t CKK = g->C * g->KH * g->KW, Om = round_up(g->O, MR);
  float *wp = ws;   // 4 rows at a time, rows past O repeating the last
  for (int64_t o = 0; o < Om; o++)
    for (int64_t r = 0; r < CKK; r++)
      wp[(o / MR * CKK + r) * MR + o % MR] = w[(o < g->O ? o : g->O - 1) * CKK + r];
  conv_images(y, false, x, wp, g, ws + Om * CKK);
}

void k_avx2_conv_grad_input(float *dx, const float *dy, const float *w, const KConv2d *g, float *ws) {
  KConv2d t = grad_input_geometry(g);
  int64_t KK = g->KH * g->KW, CKK = g->C * KK, OKK = g->O * KK, Cm = round_up(g->C, MR);
  float *wp = ws;   // w'[c, o, kh, kw] = w[o, c, KH-1-kh, KW-1-kw], packed as the forward's
  for (int64_t c = 0; c < Cm; c++)
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t k = 0; k < KK; k++)
        wp[(c / MR * OKK + o * KK + k) * MR + c % MR] = w[o * CKK + (c < g->C ? c : g->C - 1) * KK + KK - 1 - k];
  conv_images(dx, true, dy, wp, &t, ws + Cm * OKK);
}

// dw += the dot products of each image, 3 x 3 at a time.
static void grad_weight_dots(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws) {
  Wide v = wide_of(g->H, g->W, g->KH, g->KW, g->ph, g->pw, g->dh, g->dw);
  int64_t CKK = g->C * g->KH * g->KW, P = v.OH * v.OW, HW = g->H * g->W;
  float *xp = ws, dots[9];
  int32_t *off = (int32_t *)(xp + g->C * v.Hp * v.Wp + MARGIN);
  tap_starts(off, g->C, g->KH, g->KW, v.Hp, v.Wp, g->dh, g->dw);
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
  tap_starts(off, g->C, g->KH, g->KW, v.Hp, v.Wp, g->dh, g->dw);
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
