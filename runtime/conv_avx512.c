// conv_avx512.c: the cpu backend's stride-1 convolutions by output rows,
// on hosts with AVX-512.
//
// A tile is mr consecutive outputs of one output row (mr <= 14) by 32 (or
// 16) output channels: y^T (P, O) in zmm accumulators, 2*mr of them. The
// windows of those outputs start one float apart in the padded image, so
// tap r = (kh, c, kw) of output i reads img[off[r] + i] from the row's
// base: each tap is 2 loads of w^T's row (32 channels) and mr broadcasts
// of x for 2*mr FMAs. No column is computed and dropped, as conv_avx2.c's
// wide tiles do between rows (cnn's 11x11 outputs on a 13-wide image: 16
// % of their work), and an output row whose window reaches into the zero
// rows of the padding skips those taps (taps go kh-major for that).
//
//   forward: y = the row tiles over the padded image, y^T to y
//   dx:      the same tiles over dy's rows, in place (taps: its O planes),
//            each tap (kh, kw) of w adding its products into dx^T where
//            they land; dx += dx^T's transpose
//   dw:      dw^T (C*KH*KW, O) by tiles of 6 taps by 32 channels over the
//            real outputs, each output's 6 values broadcast against dy^T's
//            row (dy^T of an image by 16 x 16 transposes)
//
// The input gradient as a forward over dy padded by the window's reach
// (gathering) computed the zeros at a row's edges too: on cnn's second
// layer 1557 us against the scattering's (one core, 32 images); tiles of
// their own for a padded row's edge outputs, which skip those zeros,
// took 1733: narrow tiles stream w^T from L2 for few FMAs.
//
// The w^T of a call is packed once, in column blocks of 32 channels, each
// block's rows of all taps together (a block is the tiles' stream: 36 KB
// for cnn's second layer, in L1 or L2). y^T of an image goes to y by
// 16 x 16 transposes (k_transpose_rows); the bias starts the forward's
// accumulators.
//
// Measured on one Zen 4 core against conv_avx2.c's wide tiles, which these
// replace there (k_conv2d_forward_ws and k_conv2d_backward_ws): see
// bench/RESULTS.md. Code compiled for AVX-512 function by function, as in
// fast_avx512.c; tests/kernels/test_conv.c checks it against the
// reference on such hosts.
#include "runtime.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX512_PATH 1
#endif

#define ROW_TILE 14     // outputs of a tile, at most: 28 accumulators, 2 rows of w^T, 1 broadcast
#define BLOCK 32        // channels of a tile (16 for a last block of 16)
#define PLANAR_MAX_TAPS 32   // a forward of this many taps (C*KH*KW) or fewer goes by planes (planar_row)
#define MIN_OW 4        // narrower output rows leave the tiles short: the older paths take them
                        // (resnet18's 2x2 planes: forward 2857 us against im2col's 1923,
                        // its 4x4: 1517 against 2335, one core, 32 images)

// The row tiles' view of a convolution: an input of C planes Hp x Wp
// (padded), rows [Z, Z + D) holding data and the others zeros, the window,
// the outputs, M output channels (a multiple of 16).
typedef struct RowConv {
  int64_t C, Hp, Wp, Z, D, KH, KW, dh, dw, OH, OW, M;
} RowConv;

static bool int32_fits(int64_t n) { return n <= INT32_MAX; }

static bool geometry_fits(const KConv2d *g) {
  return k_avx512() && g->sh == 1 && g->sw == 1 && g->G <= 1 && g->KH * g->KW >= 2 && g->N >= 0 &&
         g->dh >= 1 && g->dw >= 1;
}

bool k_avx512_conv_rows_fits(const KConv2d *g) {
  if (!geometry_fits(g) || g->O % 16)
    return false;
  int64_t OW = k_out_size(g->W, g->KW, 1, g->pw, g->dw), OH = k_out_size(g->H, g->KH, 1, g->ph, g->dh);
  return OH >= 1 && OW >= MIN_OW && int32_fits(g->C * (g->H + 2 * g->ph) * (g->W + 2 * g->pw));
}

// The input gradient by scattering each tap's products: dx^T at (oh - ph
// + kh*dh, ow - pw + kw*dw) += the sum over o of dy[o, oh, ow] * w[o, c,
// kh, kw], by row tiles over dy's rows (read in place: K = O taps o*P
// apart) that add into dx^T (H*W, C); then dx += dx^T's transpose. Every
// FMA is real work, where the gather form (a forward over dy padded by
// the window's reach) reads zeros at a row's edges (cnn's second layer:
// 13 outputs a row over 15 columns, 2 of them zeros: a sixth of its work),
// and a tap's weights (O x 32) stay in L1 across the image.
bool k_avx512_conv_rows_grad_input_fits(const KConv2d *g) {
  if (!geometry_fits(g) || g->C % 16)
    return false;
  int64_t OH = k_out_size(g->H, g->KH, 1, g->ph, g->dh), OW = k_out_size(g->W, g->KW, 1, g->pw, g->dw);
  return OH >= 1 && OW >= MIN_OW && int32_fits(g->O * OH * OW) && int32_fits(g->C * g->H * g->W);
}

// The weight gradient by 6 x 32 tiles of dw^T (taps by output channels):
// 64 taps or more (fewer: conv_avx2.c's dot products), the output
// channels a multiple of 16, planes of 16 outputs or more (each image adds
// its tiles into all of dw^T: on resnet18's 2x2 planes that traffic made
// its deep layers' weight gradients 3 to 8 times slower than im2col's
// GEMM; on its 4x4 planes, 2731 us against 3106, one core, 32 images).
#define DW_TAPS 6
#define DW_MIN_TAPS 64
#define DW_MIN_OUTPUTS 16

bool k_avx512_conv_rows_grad_weight_fits(const KConv2d *g) {
  if (!geometry_fits(g) || g->O % 16 || g->C * g->KH * g->KW < DW_MIN_TAPS)
    return false;
  int64_t OW = k_out_size(g->W, g->KW, 1, g->pw, g->dw), OH = k_out_size(g->H, g->KH, 1, g->ph, g->dh);
  return OH >= 1 && OW >= 1 && OH * OW >= DW_MIN_OUTPUTS &&
         int32_fits(g->C * (g->H + 2 * g->ph) * (g->W + 2 * g->pw));
}

static RowConv forward_rows(const KConv2d *g) {
  int64_t OH = k_out_size(g->H, g->KH, 1, g->ph, g->dh), OW = k_out_size(g->W, g->KW, 1, g->pw, g->dw);
  return (RowConv){.C = g->C, .Hp = g->H + 2 * g->ph, .Wp = g->W + 2 * g->pw, .Z = g->ph, .D = g->H, .KH = g->KH,
                   .KW = g->KW, .dh = g->dh, .dw = g->dw, .OH = OH, .OW = OW, .M = g->O};
}

// Floats of scratch for the forward: the padded image, the taps' offsets,
// the packed w^T, y^T of an image.
static int64_t rows_scratch(const RowConv *v) {
  int64_t CKK = v->C * v->KH * v->KW;
  return v->C * v->Hp * v->Wp + CKK + CKK * v->M + v->OH * v->OW * v->M;
}

int64_t k_avx512_conv_rows_scratch(const KConv2d *g) {
  int64_t n = 0;
  if (k_avx512_conv_rows_fits(g)) {
    RowConv v = forward_rows(g);
    n = rows_scratch(&v);
  }
  if (k_avx512_conv_rows_grad_input_fits(g)) {   // the packed weights, dx^T and its transpose, the offsets
    int64_t m = g->KH * g->KW * g->O * g->C + 2 * g->H * g->W * g->C + g->O;
    n = n > m ? n : m;
  }
  if (k_avx512_conv_rows_grad_weight_fits(g)) {   // the padded image, dy^T, dw^T, the offsets, the outputs'
    RowConv v = forward_rows(g);
    int64_t CKK = v.C * v.KH * v.KW, m = v.C * v.Hp * v.Wp + v.OH * v.OW * v.M + CKK * v.M + CKK + v.OH * v.OW;
    n = n > m ? n : m;
  }
  return n;
}

// off[r] for the taps r = (kh, c, kw), kh-major: where tap r of output 0
// lies in the padded image.
static void row_taps(int32_t *off, const RowConv *v) {
  for (int64_t kh = 0; kh < v->KH; kh++)
    for (int64_t c = 0; c < v->C; c++)
      for (int64_t kw = 0; kw < v->KW; kw++)
        *off++ = (int32_t)(c * v->Hp * v->Wp + kh * v->dh * v->Wp + kw * v->dw);
}

// dw^T's tile, nv = 1 or 2: C[i, 0..16*nv] += the sum over the outputs
// p < P of x[off[i] + pos[p]] * b[p*ldb ..+ 16*nv], i < mr (taps past mr
// repeat the last, unstored): 2 loads of dy^T and 6 broadcasts for 12
// FMAs.
typedef void (*DwTileFn)(int64_t P, const int32_t *pos, const float *x, const int32_t *off, int mr, const float *b,
                         int64_t ldb, float *c, int64_t ldc);

// A tile's function: row_tile for one (mr, nv).
typedef void (*RowTileFn)(int64_t K, const float *x, const int32_t *off, const float *w, int64_t ldw,
                          const float *init, float *c, int64_t ldc);

#ifdef HAVE_AVX512_PATH
#define AVX512_FMA __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

// C[i, 0..16*nv] = init + sum over r < K of x[off[r] + i] * w[r*ldw ..+
// 16*nv], i < MR: the tile, as one function per (MR, nv) below; init ==
// c: C += that sum.
AVX512_FMA static inline __attribute__((always_inline)) void row_tile(int MR, int nv, int64_t K, const float *x,
                                                                       const int32_t *off, const float *w,
                                                                       int64_t ldw, const float *init, float *c,
                                                                       int64_t ldc) {
  __m512 a[ROW_TILE][2];
  if (init == c) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      a[i][0] = _mm512_loadu_ps(c + i * ldc);
      a[i][1] = nv > 1 ? _mm512_loadu_ps(c + i * ldc + 16) : a[i][0];
    }
  } else {
    __m512 i0 = init ? _mm512_loadu_ps(init) : _mm512_setzero_ps();
    __m512 i1 = init && nv > 1 ? _mm512_loadu_ps(init + 16) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
      a[i][0] = i0, a[i][1] = i1;
  }
  for (int64_t r = 0; r < K; r++, w += ldw) {
    const float *p = x + off[r];
    __m512 w0 = _mm512_loadu_ps(w), w1 = nv > 1 ? _mm512_loadu_ps(w + 16) : w0;
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512 t = _mm512_set1_ps(p[i]);
      a[i][0] = _mm512_fmadd_ps(t, w0, a[i][0]);
      if (nv > 1)
        a[i][1] = _mm512_fmadd_ps(t, w1, a[i][1]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    _mm512_storeu_ps(c + i * ldc, a[i][0]);
    if (nv > 1)
      _mm512_storeu_ps(c + i * ldc + 16, a[i][1]);
  }
}

#define ROW_TILE_FN(MR, NV)                                                                                        \
  AVX512_FMA static void row_tile_##MR##_##NV(int64_t K, const float *x, const int32_t *off, const float *w,     \
                                              int64_t ldw, const float *init, float *c, int64_t ldc) {           \
    row_tile(MR, NV, K, x, off, w, ldw, init, c, ldc);                                                            \
  }
#define ROW_TILE_FNS(MR) ROW_TILE_FN(MR, 1) ROW_TILE_FN(MR, 2)
ROW_TILE_FNS(1) ROW_TILE_FNS(2) ROW_TILE_FNS(3) ROW_TILE_FNS(4) ROW_TILE_FNS(5) ROW_TILE_FNS(6) ROW_TILE_FNS(7)
ROW_TILE_FNS(8) ROW_TILE_FNS(9) ROW_TILE_FNS(10) ROW_TILE_FNS(11) ROW_TILE_FNS(12) ROW_TILE_FNS(13)
ROW_TILE_FNS(14)

static const RowTileFn row_tiles[ROW_TILE + 1][2] = {
  {NULL, NULL},
#define ROW_TILE_PAIR(MR) {row_tile_##MR##_1, row_tile_##MR##_2}
  ROW_TILE_PAIR(1), ROW_TILE_PAIR(2), ROW_TILE_PAIR(3), ROW_TILE_PAIR(4), ROW_TILE_PAIR(5), ROW_TILE_PAIR(6),
  ROW_TILE_PAIR(7), ROW_TILE_PAIR(8), ROW_TILE_PAIR(9), ROW_TILE_PAIR(10), ROW_TILE_PAIR(11), ROW_TILE_PAIR(12),
  ROW_TILE_PAIR(13), ROW_TILE_PAIR(14),
#undef ROW_TILE_PAIR
};

static RowTileFn row_tile_fn(int64_t mr, int64_t nv) { return row_tiles[mr][nv - 1]; }

AVX512_FMA static inline __attribute__((always_inline)) void dw_tile(int nv, int64_t P, const int32_t *pos,
                                                                      const float *x, const int32_t *off, int mr,
                                                                      const float *b, int64_t ldb, float *c,
                                                                      int64_t ldc) {
  const float *a[DW_TAPS];
  __m512 acc[DW_TAPS][2];
#pragma GCC unroll 16
  for (int i = 0; i < DW_TAPS; i++) {
    a[i] = x + off[i < mr ? i : mr - 1];
    acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < P; p++, b += ldb) {   // one loop over the outputs: few of its ends mispredicted
    int64_t q = pos[p];
    __m512 b0 = _mm512_loadu_ps(b), b1 = nv > 1 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 16
    for (int i = 0; i < DW_TAPS; i++) {
      __m512 t = _mm512_set1_ps(a[i][q]);
      acc[i][0] = _mm512_fmadd_ps(t, b0, acc[i][0]);
      if (nv > 1)
        acc[i][1] = _mm512_fmadd_ps(t, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < mr; i++)
    for (int v = 0; v < nv; v++)
      _mm512_storeu_ps(c + i * ldc + 16 * v, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc + 16 * v), acc[i][v]));
}

AVX512_FMA static void dw_tile_1(int64_t P, const int32_t *pos, const float *x, const int32_t *off, int mr,
                                 const float *b, int64_t ldb, float *c, int64_t ldc) {
  dw_tile(1, P, pos, x, off, mr, b, ldb, c, ldc);
}

AVX512_FMA static void dw_tile_2(int64_t P, const int32_t *pos, const float *x, const int32_t *off, int mr,
                                 const float *b, int64_t ldb, float *c, int64_t ldc) {
  dw_tile(2, P, pos, x, off, mr, b, ldb, c, ldc);
}

static DwTileFn dw_tile_fn(int64_t nv) { return nv > 1 ? dw_tile_2 : dw_tile_1; }

// Output row oh of channels [o0, o0 + 16) of the few-taps forward: y (M
// planes of P) at row oh = init + the sum over taps r in [r0, r1) of
// wp[r*M + o] * img[off[r] + oh*Wp + ow], by vectors of 16 outputs along
// the row, 16 channels' accumulators each, every tap's inputs loaded once
// for them.
AVX512_FMA static void planar_row(float *y, int64_t P, int64_t oh, const float *img, const int32_t *off,
                                  int64_t r0, int64_t r1, const float *wp, const float *init, const RowConv *v,
                                  int64_t o0) {
  for (int64_t ow = 0; ow < v->OW; ow += 16) {
    // a row of 16 or more ends with a whole vector that overlaps the one
    // before (its outputs stored twice, alike): a masked store into a line
    // not in cache costs several times a plain one on Zen 4 (cnn's first
    // layer into a cold arena: 546 us against 213, 32 images)
    if (v->OW >= 16 && v->OW - ow < 16)
      ow = v->OW - 16;
    __mmask16 m = v->OW - ow >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (v->OW - ow)) - 1);
    const float *base = img + oh * v->Wp + ow;
    __m512 a[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
      a[j] = init ? _mm512_set1_ps(init[o0 + j]) : _mm512_setzero_ps();
    for (int64_t r = r0; r < r1; r++) {
      __m512 x = _mm512_maskz_loadu_ps(m, base + off[r]);
      const float *wr = wp + r * v->M + o0;
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++)
        a[j] = _mm512_fmadd_ps(_mm512_set1_ps(wr[j]), x, a[j]);
    }
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++)
      if (m == 0xffff)
        _mm512_storeu_ps(y + (o0 + j) * P + oh * v->OW + ow, a[j]);
      else
        _mm512_mask_storeu_ps(y + (o0 + j) * P + oh * v->OW + ow, m, a[j]);
  }
}
#else
static RowTileFn row_tile_fn(int64_t mr, int64_t nv) {
  (void)mr, (void)nv;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}

static DwTileFn dw_tile_fn(int64_t nv) {
  (void)nv;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}

static void planar_row(float *y, int64_t P, int64_t oh, const float *img, const int32_t *off, int64_t r0,
                       int64_t r1, const float *wp, const float *init, const RowConv *v, int64_t o0) {
  (void)y, (void)P, (void)oh, (void)img, (void)off, (void)r0, (void)r1, (void)wp, (void)init, (void)v, (void)o0;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}
#endif

// The taps [*r0, *r1) (row_taps' order, kh-major) whose rows hold data
// for output row oh: none for a row that reads padding alone.
static void row_taps_on_data(const RowConv *v, int64_t oh, int64_t *r0, int64_t *r1) {
  int64_t klo, khi, CKW = v->C * v->KW;   // taps kh whose row oh + kh*dh holds data
  k_rows_on_data(oh, oh, v->Z, v->D, v->dh, v->KH, &klo, &khi);
  *r0 = khi >= klo ? klo * CKW : 0;
  *r1 = khi >= klo ? (khi + 1) * CKW : 0;
}

// yt (OH*OW, M) = the row tiles of one padded image img, each column block
// of wt (packed by pack_*: block j's rows of BLOCK or fewer channels at wt
// + j*CKK) starting from init + j (or zeros).
static void rows_run(float *yt, const float *img, const float *wt, const int32_t *off, const float *init,
                     const RowConv *v) {
  int64_t CKK = v->C * v->KW * v->KH;
  int64_t segs = (v->OW + ROW_TILE - 1) / ROW_TILE;
  for (int64_t j = 0; j < v->M; j += BLOCK) {
    int64_t bw = v->M - j < BLOCK ? v->M - j : BLOCK;
    const float *wb = wt + j * CKK;
    for (int64_t oh = 0; oh < v->OH; oh++) {
      int64_t r0, r1;
      row_taps_on_data(v, oh, &r0, &r1);
      int64_t K = r1 - r0;
      for (int64_t s = 0, ow = 0; s < segs; s++) {
        int64_t mr = (v->OW - ow + (segs - s) - 1) / (segs - s);   // even pieces: 13 + 13, not 14 + 12
        row_tile_fn(mr, bw / 16)(K, img + oh * v->Wp + ow, off + r0, wb + r0 * bw, bw, init ? init + j : NULL,
                                 yt + (oh * v->OW + ow) * v->M + j, v->M);
        ow += mr;
      }
    }
  }
}

// wt's column blocks of WIDTH channels: block j (channels [j, j + bw)),
// row r = tap r in row_taps' order, from w(m, r) (the weight of output
// channel m and tap r).
#define PACK(wt, v, W_OF, WIDTH)                                                                                   \
  do {                                                                                                             \
    int64_t CKK_ = (v)->C * (v)->KH * (v)->KW;                                                                     \
    for (int64_t j = 0; j < (v)->M; j += (WIDTH)) {                                                                \
      int64_t bw = (v)->M - j < (WIDTH) ? (v)->M - j : (WIDTH);                                                    \
      float *blk = (wt) + j * CKK_;                                                                                \
      int64_t r = 0;                                                                                               \
      for (int64_t kh = 0; kh < (v)->KH; kh++)                                                                     \
        for (int64_t c = 0; c < (v)->C; c++)                                                                       \
          for (int64_t kw = 0; kw < (v)->KW; kw++, r++)                                                            \
            for (int64_t m = 0; m < bw; m++)                                                                       \
              blk[r * bw + m] = W_OF(j + m, c, kh, kw);                                                            \
    }                                                                                                              \
  } while (0)

// The image xn as the tiles read it: in place without padding, else
// copied into xp's zeroed padding.
static const float *image_of(float *xp, const float *xn, const KConv2d *g, const RowConv *v) {
  if (!g->ph && !g->pw)
    return xn;
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t h = 0; h < g->H; h++)
      memcpy(xp + (c * v->Hp + g->ph + h) * v->Wp + g->pw, xn + (c * g->H + h) * g->W, sizeof(float) * g->W);
  return xp;
}

void k_avx512_conv_rows_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g,
                                float *ws) {
  RowConv v = forward_rows(g);
  int64_t CKK = v.C * v.KH * v.KW, HW = g->H * g->W, P = v.OH * v.OW, KK = g->KH * g->KW;
  bool padded = g->ph || g->pw;
  float *xp = ws, *wt = xp + (padded ? v.C * v.Hp * v.Wp : 0), *yt = wt + CKK * v.M;
  int32_t *off = (int32_t *)(yt + P * v.M);
  row_taps(off, &v);
  if (padded)
    memset(xp, 0, sizeof(float) * v.C * v.Hp * v.Wp);   // the zeros stay; each image fills the rest
#define W_FWD(m, c, kh, kw) w[((m) * g->C + (c)) * KK + (kh) * g->KW + (kw)]
  if (CKK <= PLANAR_MAX_TAPS) {   // wt (CKK, M), one block: tap r's weights of every channel
    PACK(wt, &v, W_FWD, v.M);
    for (int64_t n = 0; n < g->N; n++) {
      const float *img = image_of(xp, x + n * g->C * HW, g, &v);
      for (int64_t o = 0; o < v.M; o += 16)   // plane by plane: 16 streams of stores, not all M
        for (int64_t oh = 0; oh < v.OH; oh++) {
          int64_t r0, r1;
          row_taps_on_data(&v, oh, &r0, &r1);
          planar_row(y + n * g->O * P, P, oh, img, off, r0, r1, wt, bias, &v, o);
        }
    }
    return;
  }
  PACK(wt, &v, W_FWD, BLOCK);
#undef W_FWD
  for (int64_t n = 0; n < g->N; n++) {
    const float *img = image_of(xp, x + n * g->C * HW, g, &v);
    rows_run(yt, img, wt, off, bias, &v);
    k_transpose_rows(y + n * g->O * P, yt, P, v.M, 0, P);
  }
}

void k_avx512_conv_rows_grad_input(float *dx, const float *dy, const float *w, const KConv2d *g, float *ws) {
  int64_t OH = k_out_size(g->H, g->KH, 1, g->ph, g->dh), OW = k_out_size(g->W, g->KW, 1, g->pw, g->dw);
  int64_t P = OH * OW, KK = g->KH * g->KW, HW = g->H * g->W, C = g->C, O = g->O;
  float *wt = ws, *dxt = wt + KK * O * C, *xs = dxt + HW * C;
  int32_t *off = (int32_t *)(xs + C * HW);
  for (int64_t o = 0; o < O; o++)
    off[o] = (int32_t)(o * P);
  for (int64_t j = 0; j < C; j += BLOCK) {   // block j, tap t: w[o, j + m, t] at (t*O + o)*bw + m
    int64_t bw = C - j < BLOCK ? C - j : BLOCK;
    for (int64_t t = 0; t < KK; t++)
      for (int64_t o = 0; o < O; o++)
        for (int64_t m = 0; m < bw; m++)
          wt[j * KK * O + (t * O + o) * bw + m] = w[(o * C + j + m) * KK + t];
  }
  for (int64_t n = 0; n < g->N; n++) {
    const float *dyn = dy + n * O * P;
    memset(dxt, 0, sizeof(float) * HW * C);
    for (int64_t j = 0; j < C; j += BLOCK) {
      int64_t bw = C - j < BLOCK ? C - j : BLOCK;
      for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) {
          const float *wb = wt + j * KK * O + (kh * g->KW + kw) * O * bw;
          int64_t sx = kw * g->dw - g->pw, lo = sx < 0 ? -sx : 0, hi = g->W - sx < OW ? g->W - sx : OW;
          int64_t segs = (hi - lo + ROW_TILE - 1) / ROW_TILE;   // dy's outputs [lo, hi) land in dx's row
          for (int64_t oh = 0; oh < OH && lo < hi; oh++) {
            int64_t h = oh - g->ph + kh * g->dh;
            if (h < 0 || h >= g->H)
              continue;
            for (int64_t s = 0, ow = lo; s < segs; s++) {
              int64_t mr = (hi - ow + (segs - s) - 1) / (segs - s);
              float *c = dxt + (h * g->W + ow + sx) * C + j;
              row_tile_fn(mr, bw / 16)(O, dyn + oh * OW + ow, off, wb, bw, c, c, C);
              ow += mr;
            }
          }
        }
    }
    k_transpose_rows(xs, dxt, HW, C, 0, HW);
    float *dxn = dx + n * C * HW;
    for (int64_t i = 0; i < C * HW; i++)
      dxn[i] += xs[i];
  }
}

// dw += the weight gradient: per image, dy^T (P, O) by 16 x 16
// transposes, then dw^T (C*KH*KW, O) by 6 x 32 tiles over the real outputs,
// each column block of dy^T (P x 32) in L1 across all the taps' tiles.
void k_avx512_conv_rows_grad_weight(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws) {
  RowConv v = forward_rows(g);
  int64_t CKK = v.C * v.KH * v.KW, HW = g->H * g->W, P = v.OH * v.OW;
  bool padded = g->ph || g->pw;
  float *xp = ws, *dyt = xp + v.C * v.Hp * v.Wp, *dwt = dyt + P * v.M;
  int32_t *off = (int32_t *)(dwt + CKK * v.M), *pos = off + CKK;
  for (int64_t oh = 0, p = 0; oh < v.OH; oh++)   // where output p's window starts
    for (int64_t ow = 0; ow < v.OW; ow++)
      pos[p++] = (int32_t)(oh * v.Wp + ow);
  k_tap_starts(off, v.C, v.KH, v.KW, v.Hp, v.Wp, v.dh, v.dw);   // taps in dw's order, (c, kh, kw)
  memset(dwt, 0, sizeof(float) * CKK * v.M);
  if (padded)
    memset(xp, 0, sizeof(float) * v.C * v.Hp * v.Wp);
  for (int64_t n = 0; n < g->N; n++) {
    const float *img = image_of(xp, x + n * g->C * HW, g, &v);
    k_transpose_rows(dyt, dy + n * g->O * P, g->O, P, 0, g->O);
    for (int64_t j = 0; j < v.M; j += BLOCK) {
      int64_t bw = v.M - j < BLOCK ? v.M - j : BLOCK;
      for (int64_t r = 0; r < CKK; r += DW_TAPS)
        dw_tile_fn(bw / 16)(P, pos, img, off + r, CKK - r < DW_TAPS ? (int)(CKK - r) : DW_TAPS, dyt + j, v.M,
                            dwt + r * v.M + j, v.M);
    }
  }
  for (int64_t o = 0; o < g->O; o++)
    for (int64_t r = 0; r < CKK; r++)
      dw[o * CKK + r] += dwt[r * v.M + o];
}

// The pooled weight gradient's sums (k_conv2d_grad_weight_pooled): acc's
// T segments of L floats += sum over i < nz of val[i] * the segments at
// img + off[i] + toff[t]. The segments' vectors go in groups of up to
// POOLED_GROUP accumulators, each group one pass over the windows, so
// that a window's value is broadcast once for the group's FMAs; a small
// group runs two chains (even and odd windows) against the FMA's latency.
#define POOLED_GROUP 8
#ifdef HAVE_AVX512_PATH
// The windows of the nonzero gradients (pooled_list in kernels_conv.c):
// 16 at a time, each argmax's row and column by a product with 1/OW in
// floats and one correction, both packed to the front by compress and
// stored whole (off and val have 16 floats of room past PP).
AVX512_FMA int64_t k_avx512_pooled_list(int32_t *off, float *val, const float *d, const int32_t *at, int64_t PP,
                                        const KPooledAt *w) {
  int64_t nz = 0;
  const __m512i bound = _mm512_set1_epi32(w->P), ow = _mm512_set1_epi32(w->OW), one = _mm512_set1_epi32(1);
  const __m512i ys = _mm512_set1_epi32(w->ystep), xs = _mm512_set1_epi32(w->xstep), plus = _mm512_set1_epi32(w->add);
  const __m512 inv = _mm512_set1_ps(1.0f / (float)w->OW);
  for (int64_t q = 0; q < PP; q += 16) {
    __mmask16 in = PP - q >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (PP - q)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(in, d + q);
    __m512i a = _mm512_maskz_loadu_epi32(in, at + q);
    __mmask16 on = _mm512_mask_cmpneq_ps_mask(in, v, _mm512_setzero_ps()) & _mm512_cmplt_epu32_mask(a, bound);
    __m512i y = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(a), inv));   // a / OW, or one off
    __m512i x = _mm512_sub_epi32(a, _mm512_mullo_epi32(y, ow));
    __mmask16 hi = _mm512_cmpge_epi32_mask(x, ow), lo = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
    y = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(y, hi, y, one), lo, y, one);
    x = _mm512_mask_add_epi32(_mm512_mask_sub_epi32(x, hi, x, ow), lo, x, ow);
    __m512i o = _mm512_add_epi32(_mm512_add_epi32(_mm512_mullo_epi32(y, ys), _mm512_mullo_epi32(x, xs)), plus);
    _mm512_storeu_si512(off + nz, _mm512_maskz_compress_epi32(on, o));
    _mm512_storeu_ps(val + nz, _mm512_maskz_compress_ps(on, v));
    nz += __builtin_popcount(on);
  }
  return nz;
}

// A group of the sums: J of the segments' vectors in accumulators (J a
// constant in each body, so that they stay in registers), one pass over
// the windows; groups of PAIRS or fewer run two chains. One body per
// vector width: 512 bits, and for segments of 4 or 8 floats at most (a
// first layer's window rows) 128 and 256, whose loads cross fewer cache
// lines than a 512-bit load of a few lanes does (ZERO, SET1, LOAD, FMA,
// ADD, STORE: the width's intrinsics).
#define POOLED_GROUP_FN(name, V, M, PAIRS, ZERO, SET1, LOAD, FMA, ADD, STORE)                                  \
  AVX512_FMA static inline __attribute__((always_inline)) void name(int J, float *acc, const int32_t *src,   \
                                                                     const int32_t *dst, const M *m,         \
                                                                     const float *img, const int32_t *off,   \
                                                                     const float *val, int64_t nz) {         \
    V a[POOLED_GROUP], b[POOLED_GROUP];                                                                       \
    for (int j = 0; j < J; j++)                                                                               \
      a[j] = b[j] = ZERO();                                                                                   \
    int64_t i = 0;                                                                                            \
    if (J <= PAIRS)                                                                                           \
      for (; i + 2 <= nz; i += 2) {                                                                           \
        V u = SET1(val[i]), w = SET1(val[i + 1]);                                                             \
        const float *p = img + off[i], *q = img + off[i + 1];                                                 \
        for (int j = 0; j < J; j++) {                                                                         \
          a[j] = FMA(u, LOAD(m[j], p + src[j]), a[j]);                                                        \
          b[j] = FMA(w, LOAD(m[j], q + src[j]), b[j]);                                                        \
        }                                                                                                     \
      }                                                                                                       \
    for (; i < nz; i++) {                                                                                     \
      V u = SET1(val[i]);                                                                                     \
      const float *p = img + off[i];                                                                          \
      for (int j = 0; j < J; j++)                                                                             \
        a[j] = FMA(u, LOAD(m[j], p + src[j]), a[j]);                                                          \
    }                                                                                                         \
    for (int j = 0; j < J; j++)                                                                               \
      STORE(acc + dst[j], m[j], ADD(ADD(a[j], b[j]), LOAD(m[j], acc + dst[j])));                              \
  }
POOLED_GROUP_FN(pooled_group, __m512, __mmask16, 4, _mm512_setzero_ps, _mm512_set1_ps, _mm512_maskz_loadu_ps,
                _mm512_fmadd_ps, _mm512_add_ps, _mm512_mask_storeu_ps)
POOLED_GROUP_FN(pooled_group128, __m128, __mmask8, POOLED_GROUP, _mm_setzero_ps, _mm_set1_ps, _mm_maskz_loadu_ps,
                _mm_fmadd_ps, _mm_add_ps, _mm_mask_storeu_ps)
POOLED_GROUP_FN(pooled_group256, __m256, __mmask8, POOLED_GROUP, _mm256_setzero_ps, _mm256_set1_ps,
                _mm256_maskz_loadu_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_mask_storeu_ps)

// Jobs [j0, j0 + J) of T segments of L floats in 16-lane vectors: the
// vector's offset in a window (src), in the segments' row (dst; may be
// NULL), and its lanes.
static inline void pooled_jobs(int64_t j0, int J, int64_t L, const int32_t *toff, int32_t *src, int32_t *dst,
                               __mmask16 *m) {
  int64_t nv = (L + 15) / 16;
  for (int j = 0; j < J; j++) {
    int64_t t = (j0 + j) / nv, v = (j0 + j) % nv, lanes = L - 16 * v < 16 ? L - 16 * v : 16;
    src[j] = (int32_t)(toff[t] + 16 * v);
    if (dst)
      dst[j] = (int32_t)(t * L + 16 * v);
    m[j] = (__mmask16)((1u << lanes) - 1);
  }
}

// Segments of L <= 8 floats, T of them, in groups of POOLED_GROUP.
AVX512_FMA static void pooled_sums_narrow(float *acc, int64_t T, int64_t L, const int32_t *toff, const float *img,
                                          const int32_t *off, const float *val, int64_t nz) {
  __mmask8 lanes = (__mmask8)((1u << L) - 1);
  for (int64_t t0 = 0; t0 < T; t0 += POOLED_GROUP) {
    int J = T - t0 < POOLED_GROUP ? (int)(T - t0) : POOLED_GROUP;
    int32_t src[POOLED_GROUP], dst[POOLED_GROUP];
    __mmask8 m[POOLED_GROUP];
    for (int j = 0; j < J; j++) {
      src[j] = toff[t0 + j];
      dst[j] = (int32_t)((t0 + j) * L);
      m[j] = lanes;
    }
#define NARROW_CASE(k)                                               \
  case k:                                                            \
    if (L <= 4)                                                      \
      pooled_group128(k, acc, src, dst, m, img, off, val, nz);       \
    else                                                             \
      pooled_group256(k, acc, src, dst, m, img, off, val, nz);       \
    break;
    switch (J) {
      NARROW_CASE(1) NARROW_CASE(2) NARROW_CASE(3) NARROW_CASE(4) NARROW_CASE(5) NARROW_CASE(6) NARROW_CASE(7)
      default:
        if (L <= 4)
          pooled_group128(8, acc, src, dst, m, img, off, val, nz);
        else
          pooled_group256(8, acc, src, dst, m, img, off, val, nz);
        break;
    }
#undef NARROW_CASE
  }
}

AVX512_FMA void k_avx512_pooled_sums(float *acc, int64_t T, int64_t L, const int32_t *toff, const float *img,
                                     const int32_t *off, const float *val, int64_t nz) {
  if (L <= 8) {
    pooled_sums_narrow(acc, T, L, toff, img, off, val, nz);
    return;
  }
  int64_t nv = (L + 15) / 16, jobs = T * nv;
  for (int64_t j0 = 0; j0 < jobs; j0 += POOLED_GROUP) {
    int J = jobs - j0 < POOLED_GROUP ? (int)(jobs - j0) : POOLED_GROUP;
    int32_t src[POOLED_GROUP], dst[POOLED_GROUP];
    __mmask16 m[POOLED_GROUP];
    pooled_jobs(j0, J, L, toff, src, dst, m);
    switch (J) {   // one body per group size, its accumulators in registers
    case 1: pooled_group(1, acc, src, dst, m, img, off, val, nz); break;
    case 2: pooled_group(2, acc, src, dst, m, img, off, val, nz); break;
    case 3: pooled_group(3, acc, src, dst, m, img, off, val, nz); break;
    case 4: pooled_group(4, acc, src, dst, m, img, off, val, nz); break;
    case 5: pooled_group(5, acc, src, dst, m, img, off, val, nz); break;
    case 6: pooled_group(6, acc, src, dst, m, img, off, val, nz); break;
    case 7: pooled_group(7, acc, src, dst, m, img, off, val, nz); break;
    default: pooled_group(8, acc, src, dst, m, img, off, val, nz); break;
    }
  }
}

// The input gradient's scatter: a group of up to POOLED_GROUP of the
// segments' vectors, their weights in registers, each window's vectors
// loaded, added to and stored in order of the windows.
// Whole vectors (full) where the segments are: a masked store does not
// forward to a later load of the same floats on Zen 4, and neighbouring
// windows overlap.
AVX512_FMA static inline __attribute__((always_inline)) void scatter_group(int J, bool full, float *img,
                                                                            const int32_t *src, const __m512 *wv,
                                                                            const __mmask16 *m, const int32_t *off,
                                                                            const float *val, int64_t nz) {
  for (int64_t i = 0; i < nz; i++) {
    __m512 u = _mm512_set1_ps(val[i]);
    float *p = img + off[i];
    for (int j = 0; j < J; j++)
      if (full)
        _mm512_storeu_ps(p + src[j], _mm512_fmadd_ps(u, wv[j], _mm512_loadu_ps(p + src[j])));
      else
        _mm512_mask_storeu_ps(p + src[j], m[j], _mm512_fmadd_ps(u, wv[j], _mm512_maskz_loadu_ps(m[j], p + src[j])));
  }
}

AVX512_FMA void k_avx512_pooled_scatter(float *img, int64_t T, int64_t L, const int32_t *toff, const float *wrow,
                                        const int32_t *off, const float *val, int64_t nz) {
  int64_t nv = (L + 15) / 16, jobs = T * nv;
  for (int64_t j0 = 0; j0 < jobs; j0 += POOLED_GROUP) {
    int J = jobs - j0 < POOLED_GROUP ? (int)(jobs - j0) : POOLED_GROUP;
    int32_t src[POOLED_GROUP];
    __m512 wv[POOLED_GROUP];
    __mmask16 m[POOLED_GROUP];
    int32_t dst[POOLED_GROUP];
    pooled_jobs(j0, J, L, toff, src, dst, m);
    for (int j = 0; j < J; j++)
      wv[j] = _mm512_maskz_loadu_ps(m[j], wrow + dst[j]);
    bool full = L % 16 == 0;
#define SCATTER_CASE(k)                                          \
  case k:                                                        \
    if (full)                                                    \
      scatter_group(k, true, img, src, wv, m, off, val, nz);     \
    else                                                         \
      scatter_group(k, false, img, src, wv, m, off, val, nz);    \
    break;
    switch (J) {
      SCATTER_CASE(1) SCATTER_CASE(2) SCATTER_CASE(3) SCATTER_CASE(4) SCATTER_CASE(5) SCATTER_CASE(6)
      SCATTER_CASE(7)
    default:
      if (full)
        scatter_group(8, true, img, src, wv, m, off, val, nz);
      else
        scatter_group(8, false, img, src, wv, m, off, val, nz);
      break;
    }
#undef SCATTER_CASE
  }
}
#else
int64_t k_avx512_pooled_list(int32_t *off, float *val, const float *d, const int32_t *at, int64_t PP,
                             const KPooledAt *w) {
  (void)off, (void)val, (void)d, (void)at, (void)PP, (void)w;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}

void k_avx512_pooled_scatter(float *img, int64_t T, int64_t L, const int32_t *toff, const float *wrow,
                             const int32_t *off, const float *val, int64_t nz) {
  (void)img, (void)T, (void)L, (void)toff, (void)wrow, (void)off, (void)val, (void)nz;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}

void k_avx512_pooled_sums(float *acc, int64_t T, int64_t L, const int32_t *toff, const float *img,
                          const int32_t *off, const float *val, int64_t nz) {
  (void)acc, (void)T, (void)L, (void)toff, (void)img, (void)off, (void)val, (void)nz;
  nnc_bug(__FILE__, __LINE__, "no AVX-512 path in this build");
}
#endif
