// kernels_conv.c: the reference kernels for convolution and pooling.
//
// A convolution is im2col + sgemm, one image at a time: im2col copies every
// input value each output position's window reads into a matrix col
// (C*KH*KW, OH*OW), so that the convolution of one image is the product
// w (O, C*KH*KW) @ col. The backward uses the same matrix for dw and the
// adjoint of im2col (col2im, which adds rather than copies) for dx. A 1x1
// convolution with stride 1 and no padding needs no col: it is x itself.
//
// Groups (G > 1) convolve each group's C/G input channels with its O/G
// weights on their own: the same im2col and product per group, on the
// group's channels of each image (no 1x1 or single-tap shortcut).
//
// Pooling is a direct loop over each output position's window.
//
// The reference entry points (k_conv2d_forward, k_conv2d_backward,
// k_maxpool2d_forward, ...) are plain C throughout, with k_sgemm (the BLAS) for
// the products. The cpu backend's variants (the _ws convolutions,
// k_conv2d_grad_weight_channels, k_maxpool2d_forward_fast) share their
// loops but take the cpu backend's GEMM and, where the host has them, the
// AVX-512 fast paths of fast_avx512.c, or on AVX2 hosts the stride-1
// convolutions of conv_avx2.c, which read the image in place (no im2col).
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// A broken promise by the caller (shapes the passes should have rejected).
#define K_CHECK(cond, what)                    \
  do {                                         \
    if (!(cond))                               \
      nnc_bug(__FILE__, __LINE__, what);       \
  } while (0)

int64_t k_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  int64_t span = in + 2 * pad - dil * (k - 1) - 1;   // room left after the first window
  if (span < 0)
    return 0;
  return span / stride + 1;
}

//
// Convolution
//

// Checks the geometry and gives the output size.
static void conv_geometry(const KConv2d *g, int64_t *OH, int64_t *OW) {
  K_CHECK(g->N >= 0 && g->C >= 1 && g->H >= 1 && g->W >= 1 && g->O >= 1 &&
          g->KH >= 1 && g->KW >= 1, "conv2d: bad shape");
  K_CHECK(g->sh >= 1 && g->sw >= 1 && g->ph >= 0 && g->pw >= 0 && g->dh >= 1 && g->dw >= 1,
          "conv2d: stride and dilation must be >= 1 and padding >= 0");
  K_CHECK(g->G >= 0 && (g->G <= 1 || (g->C % g->G == 0 && g->O % g->G == 0)),
          "conv2d: the groups must divide the channels");
  *OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh);
  *OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  K_CHECK(*OH >= 1 && *OW >= 1, "conv2d: kernel larger than the padded input");
}

// True when the col matrix of an image is the image itself.
static bool conv_is_pointwise(const KConv2d *g) {
  return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

// col (C*KH*KW, OH*OW): row (c, kh, kw), column (oh, ow) holds the input
// value that tap (kh, kw) of channel c reads at output (oh, ow), or 0 where
// the tap falls in the padding.
// Rows are ld floats apart (OH*OW for one image; N*OH*OW when the cols of
// a whole batch sit side by side).
static void im2col_any(float *col,          // (C*KH*KW, ld)
                       const float *x,      // (C,H,W): one image
                       const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
        int64_t lo, hi, off = kw * g->dw - g->pw;
        k_conv_tap_span(g, kw, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; oh++) {
          float *dst = row + oh * OW;
          int64_t ih = oh * g->sh - g->ph + kh * g->dh;
          if (ih < 0 || ih >= g->H) {
            memset(dst, 0, OW * sizeof(float));
            continue;
          }
          const float *src = x + (c * g->H + ih) * g->W;   // src[ow*sw + off] is tap kw of output ow
          memset(dst, 0, lo * sizeof(float));
          if (g->sw == 1)
            memcpy(dst + lo, src + lo + off, (hi - lo) * sizeof(float));
          else
            for (int64_t ow = lo; ow < hi; ow++)
              dst[ow] = src[ow * g->sw + off];
          memset(dst + hi, 0, (OW - hi) * sizeof(float));
        }
      }
}

// The adjoint of im2col: dx += each col entry at the input position it was
// copied from (entries from the padding are dropped).
static void col2im_add_any(float *dx,          // (C,H,W): one image
                           const float *col,   // (C*KH*KW, ld)
                           const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        const float *row = col + ((c * g->KH + kh) * g->KW + kw) * ld;
        int64_t lo, hi, off = kw * g->dw - g->pw;
        k_conv_tap_span(g, kw, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; oh++) {
          int64_t ih = oh * g->sh - g->ph + kh * g->dh;
          if (ih < 0 || ih >= g->H)
            continue;
          const float *src = row + oh * OW;
          float *dst = dx + (c * g->H + ih) * g->W;   // dst[ow*sw + off] is tap kw of output ow
          if (g->sw == 1)
            for (int64_t ow = lo; ow < hi; ow++)
              dst[ow + off] += src[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++)
              dst[ow * g->sw + off] += src[ow];
        }
      }
}

// Small output planes (deep layers: a few positions, many channels): the
// input offset each tap reads at each output position, or -1 in the
// padding, is the same for every channel, so it is found once (idx, KH*KW
// x OH*OW of them) and every channel is a gather through it, instead of a
// few library calls per tap and channel.
#define SMALL_TAPS 256

static void tap_offsets(int32_t *idx, const KConv2d *g, int64_t OH, int64_t OW) {
  for (int64_t kh = 0; kh < g->KH; kh++)
    for (int64_t kw = 0; kw < g->KW; kw++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t ih = oh * g->sh - g->ph + kh * g->dh, iw = ow * g->sw - g->pw + kw * g->dw;
          bool in = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W;
          *idx++ = in ? (int32_t)(ih * g->W + iw) : -1;
        }
}

static void im2col_small(float *col, const float *x, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  int32_t idx[SMALL_TAPS];
  int64_t P = OH * OW, KK = g->KH * g->KW, HW = g->H * g->W;
  tap_offsets(idx, g, OH, OW);
  for (int64_t c = 0; c < g->C; c++) {
    const float *plane = x + c * HW;
    for (int64_t t = 0; t < KK; t++) {
      float *dst = col + (c * KK + t) * ld;
      const int32_t *at = idx + t * P;
      for (int64_t q = 0; q < P; q++)
        dst[q] = at[q] >= 0 ? plane[at[q]] : 0.0f;
    }
  }
}

static void col2im_add_small(float *dx, const float *col, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld) {
  int32_t idx[SMALL_TAPS];
  int64_t P = OH * OW, KK = g->KH * g->KW, HW = g->H * g->W;
  tap_offsets(idx, g, OH, OW);
  for (int64_t c = 0; c < g->C; c++) {
    float *plane = dx + c * HW;
    for (int64_t t = 0; t < KK; t++) {
      const float *src = col + (c * KK + t) * ld;
      const int32_t *at = idx + t * P;
      for (int64_t q = 0; q < P; q++)
        if (at[q] >= 0)
          plane[at[q]] += src[q];
    }
  }
}

// Which im2col / col2im a geometry takes: the offset table for small
// output planes, else the plain loops; in the cpu backend's convolutions
// (fast), the AVX-512 rows of fast_avx512.c for stride 1 where the host
// has them. All of them give the same bytes (copies, and the same
// additions in the same order).
typedef enum { COLS_SMALL, COLS_S1, COLS_ANY } ColsPath;

static ColsPath cols_path(const KConv2d *g, int64_t OH, int64_t OW, bool fast) {
  if (OH * OW * g->KH * g->KW <= SMALL_TAPS)
    return COLS_SMALL;
  if (fast && g->sh == 1 && g->sw == 1 && k_avx512())
    return COLS_S1;
  return COLS_ANY;
}

static void im2col(float *col, const float *x, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld, bool fast) {
  switch (cols_path(g, OH, OW, fast)) {
  case COLS_SMALL: im2col_small(col, x, g, OH, OW, ld); return;
  case COLS_S1: k_avx512_im2col_s1(col, x, g, OH, OW, ld); return;
  default: im2col_any(col, x, g, OH, OW, ld); return;
  }
}

static void col2im_add(float *dx, const float *col, const KConv2d *g, int64_t OH, int64_t OW, int64_t ld,
                       bool fast) {
  switch (cols_path(g, OH, OW, fast)) {
  case COLS_SMALL: col2im_add_small(dx, col, g, OH, OW, ld); return;
  case COLS_S1: k_avx512_col2im_add_s1(dx, col, g, OH, OW, ld); return;
  default: col2im_add_any(dx, col, g, OH, OW, ld); return;
  }
}

static int64_t conv_groups(const KConv2d *g) { return g->G > 1 ? g->G : 1; }
static int64_t single_tap(const KConv2d *g, int64_t OH, int64_t OW);
static bool unroll_path(const KConv2d *g, int64_t OH, int64_t OW, bool fast);

// Floats of scratch a convolution of g needs: the cols of its images
// (C*KH*KW, N*P) and the output with images moved inside (O, N*P) (with
// groups, the cols of one group at a time: less).
static int64_t conv_scratch(const KConv2d *g, bool fast) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  if (single_tap(g, OH, OW) >= 0 || unroll_path(g, OH, OW, fast))   // no cols: weights in the thread's scratch
    return 0;
  int64_t NP = g->N * OH * OW, cols = (g->C * g->KH * g->KW + g->O) * NP, direct = k_avx2_conv_scratch(g);
  int64_t rows = k_avx512_conv_rows_scratch(g);
  direct = direct > rows ? direct : rows;
  return cols > direct ? cols : direct;
}

int64_t k_conv2d_scratch(const KConv2d *g) { return conv_scratch(g, true); }

bool k_conv2d_unrolled(const KConv2d *g) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  return unroll_path(g, OH, OW, true);
}

// Scratch memory reused from call to call (a training step would otherwise
// map and unmap megabytes per convolution), for the callers that bring none.
// Not reentrant: such convolutions run one at a time.
static float *scratch(int64_t n) {
  static float *buf;
  static int64_t cap;
  return k_grow(&buf, &cap, n);
}

// A convolution of one input and one output position per channel whose
// taps but one read only padding (a 3x3 layer on a 1x1 plane: resnet18's
// last block on 28x28 images) is a product over channels, y (N, O) = x
// (N, C) @ w[:, :, tap]^T, a KH*KW-th of the im2col product's work. The tap,
// or -1 when g is not such a convolution.
static int64_t single_tap(const KConv2d *g, int64_t OH, int64_t OW) {
  if (OH != 1 || OW != 1 || g->H != 1 || g->W != 1 || conv_groups(g) > 1)
    return -1;
  int64_t t = -1;
  for (int64_t kh = 0; kh < g->KH; kh++)
    for (int64_t kw = 0; kw < g->KW; kw++)
      if (kh * g->dh == g->ph && kw * g->dw == g->pw)   // the one that reads (0, 0)
        t = kh * g->KW + kw;
  return t;
}

// w[:, :, t] as (O, C), in the thread's scratch.
static float *tap_weights(const float *w, const KConv2d *g, int64_t t) {
  int64_t KK = g->KH * g->KW;
  float *wt = k_thread_scratch(K_SCRATCH_CONV, g->O * g->C);
  for (int64_t i = 0; i < g->O * g->C; i++)
    wt[i] = w[i * KK + t];
  return wt;
}

// A convolution of 1x1 output planes whose window reads the input at only
// some of its taps (the rest in the padding: resnet18's 3x3 stride-2 layer
// from 2x2 planes reads 4 of its 9) is a product over those taps alone:
// y (N, O) = xs @ ws^T, xs (N, C*nt) the values the nt taps read, ws
// (O, C*nt) their weights, a KH*KW/nt-th of im2col's work. The cpu
// backend's only (the reference keeps im2col), on AVX2 hosts (off with
// NNC_NO_AVX2, as conv_avx2.c's paths, so that it restores the old ones).
// The taps [t[0], t[1]) x [t[2], t[3]), or false where g is not such a
// convolution.
static bool inner_taps(const KConv2d *g, int64_t OH, int64_t OW, bool fast, int64_t t[4]) {
  if (!fast || !k_avx2() || OH != 1 || OW != 1 || conv_groups(g) > 1)
    return false;
  t[0] = (g->ph + g->dh - 1) / g->dh, t[1] = (g->ph + g->H + g->dh - 1) / g->dh;   // kh*dh - ph in [0, H)
  t[2] = (g->pw + g->dw - 1) / g->dw, t[3] = (g->pw + g->W + g->dw - 1) / g->dw;
  t[1] = t[1] < g->KH ? t[1] : g->KH, t[3] = t[3] < g->KW ? t[3] : g->KW;
  int64_t nt = (t[1] - t[0]) * (t[3] - t[2]);
  return t[1] > t[0] && t[3] > t[2] && nt < g->KH * g->KW;
}

// Where tap i of the inner ones reads a plane, and its index in the window.
static int64_t inner_at(const KConv2d *g, const int64_t t[4], int64_t i, int64_t *k) {
  int64_t nkw = t[3] - t[2], kh = t[0] + i / nkw, kw = t[2] + i % nkw;
  *k = kh * g->KW + kw;
  return (kh * g->dh - g->ph) * g->W + kw * g->dw - g->pw;
}

// xs (N, C*nt): the values the inner taps read in channels [c0, c0 + C).
static void inner_cols(float *xs, const float *x, const KConv2d *g, const int64_t t[4], int64_t c0, int64_t C) {
  int64_t nt = (t[1] - t[0]) * (t[3] - t[2]), HW = g->H * g->W, k;
  for (int64_t i = 0; i < nt; i++) {
    int64_t at = inner_at(g, t, i, &k);
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t c = 0; c < C; c++)
        xs[(n * C + c) * nt + i] = x[(n * g->C + c0 + c) * HW + at];
  }
}

// wt (O, C*nt): their weights, in the thread's scratch.
static float *inner_weights(const float *w, const KConv2d *g, const int64_t t[4]) {
  int64_t nt = (t[1] - t[0]) * (t[3] - t[2]), CT = g->C * nt, KK = g->KH * g->KW, k;
  float *wt = k_thread_scratch(K_SCRATCH_CONV, g->O * CT);
  for (int64_t i = 0; i < nt; i++) {
    inner_at(g, t, i, &k);
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t c = 0; c < g->C; c++)
        wt[o * CT + c * nt + i] = w[(o * g->C + c) * KK + k];
  }
  return wt;
}

// Planes smaller than the window (resnet18's 3x3 layers on 2x2 planes,
// where each output reads 4 of its 9 taps, the rest in the padding): the
// convolution of an image is a dense layer from its C*H*W values to its
// O*OH*OW outputs, y (N, O*P) = x (N, C*HW) @ wu^T, with the weights
// unrolled, wu (O*P, C*HW): wu[(o, p), (c, q)] = w[o, c, the tap by which
// output p reads input q], 0 where none does. x and y are the product's
// own matrices (no cols), its products P*HW per pair of channels against
// im2col's P*KH*KW: taken where that saves a quarter, and wu is at most
// UNROLL_MAX floats and at most UNROLL_WEIGHTS times w. The cpu backend's
// only (the reference keeps im2col); off with NNC_NO_AVX2 as inner_taps.
#define UNROLL_MAX (4 << 20)
#define UNROLL_WEIGHTS 4

static bool unrolled(const KConv2d *g, int64_t OH, int64_t OW, bool fast) {
  int64_t P = OH * OW, HW = g->H * g->W, KK = g->KH * g->KW, wu = g->O * P * g->C * HW;
  return fast && k_avx2() && conv_groups(g) == 1 && 4 * HW <= 3 * KK && wu <= UNROLL_MAX &&
         wu <= UNROLL_WEIGHTS * g->O * g->C * KK && g->C * KK < INT32_MAX;   // (int32 offsets into w's rows)
}

// Whether g takes the unrolled weights: where unrolled allows, unless
// the taps read only part of a 1x1 output's input (inner_taps, then, does
// fewer products).
static bool unroll_path(const KConv2d *g, int64_t OH, int64_t OW, bool fast) {
  int64_t t[4];
  if (!unrolled(g, OH, OW, fast))
    return false;
  return !inner_taps(g, OH, OW, fast, t) || (t[1] - t[0]) * (t[3] - t[2]) == g->H * g->W;
}

// The tap by which output p reads input q, or KH*KW where none does (P x
// HW of them).
static int32_t *unroll_taps(const KConv2d *g, int64_t OH, int64_t OW) {
  int64_t P = OH * OW, HW = g->H * g->W;
  int32_t *tab = xmalloc(sizeof(int32_t) * P * HW);
  for (int64_t i = 0; i < P * HW; i++)
    tab[i] = (int32_t)(g->KH * g->KW);
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++)
      for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) {
          int64_t ih = oh * g->sh - g->ph + kh * g->dh, iw = ow * g->sw - g->pw + kw * g->dw;
          if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
            tab[(oh * OW + ow) * HW + ih * g->W + iw] = (int32_t)(kh * g->KW + kw);
        }
  return tab;
}

// wu's rows of output channels [o0, o1), as above: each row (o, p) a
// gather from w's rows of output channel o through one offset table per p
// (C*HW offsets), from a copy of those rows with a zero after them where
// some output reads no input at some tap.
void k_conv2d_unroll_weights(float *wu, const float *w, const KConv2d *g, int64_t o0, int64_t o1) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  int64_t P = OH * OW, HW = g->H * g->W, KK = g->KH * g->KW, CHW = g->C * HW, CKK = g->C * KK;
  int32_t *tab = unroll_taps(g, OH, OW), *off = xmalloc(sizeof(int32_t) * P * CHW);
  bool gaps = false;
  for (int64_t p = 0; p < P; p++)
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t q = 0; q < HW; q++) {
        int32_t t = tab[p * HW + q];
        gaps |= t == KK;
        off[p * CHW + c * HW + q] = (int32_t)(t == KK ? CKK : c * KK + t);
      }
  float *wl = gaps ? xmalloc(sizeof(float) * (CKK + 1)) : NULL;
  for (int64_t o = o0; o < o1; o++) {
    const float *wo = w + o * CKK;
    if (gaps) {
      memcpy(wl, wo, sizeof(float) * CKK);
      wl[CKK] = 0.0f;
      wo = wl;
    }
    for (int64_t p = 0; p < P; p++) {
      float *row = wu + (o * P + p) * CHW;
      const int32_t *op = off + p * CHW;
      for (int64_t j = 0; j < CHW; j++)
        row[j] = wo[op[j]];
    }
  }
  free(wl);
  free(off);
  free(tab);
}

int64_t k_conv2d_unrolled_size(const KConv2d *g) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  return g->O * OH * OW * g->C * g->H * g->W;
}

// y (N, O*P) = x (N, C*HW) @ wu^T (+ bias).
void k_conv2d_forward_unrolled(float *y, const float *x, const float *wu, const float *bias, const KConv2d *g,
                               KGemmFn gemm) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  int64_t P = OH * OW;
  gemm(false, true, g->N, g->O * P, g->C * g->H * g->W, 1.0f, x, wu, 0.0f, y);
  if (bias)
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t o = 0; o < g->O; o++)
        for (int64_t p = 0; p < P; p++)
          y[(n * g->O + o) * P + p] += bias[o];
}

// dx (N, C*HW) += dy (N, O*P) @ wu.
void k_conv2d_grad_input_unrolled(float *dx, const float *dy, const float *wu, const KConv2d *g, KGemmFn gemm) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  gemm(false, false, g->N, g->C * g->H * g->W, g->O * OH * OW, 1.0f, dy, wu, 1.0f, dx);
}

// wu in the thread's scratch.
static float *unroll_weights(const float *w, const KConv2d *g) {
  float *wu = k_thread_scratch(K_SCRATCH_CONV, k_conv2d_unrolled_size(g));
  k_conv2d_unroll_weights(wu, w, g, 0, g->O);
  return wu;
}

// dw's rows of input channels [c0, c1) += (or, set, =) the unrolled
// gradient gu ((O*P, (c1 - c0)*HW), rows ld floats apart) folded onto the
// taps, each tap's terms added in the order of p.
static void unroll_fold(float *dw, const float *gu, int64_t ld, const KConv2d *g, int64_t OH, int64_t OW, int64_t c0,
                        int64_t c1, bool set) {
  int64_t P = OH * OW, HW = g->H * g->W, KK = g->KH * g->KW;
  int32_t *tab = unroll_taps(g, OH, OW);
  for (int64_t o = 0; o < g->O; o++) {
    float *row = dw + (o * g->C + c0) * KK;
    if (set)
      memset(row, 0, sizeof(float) * (c1 - c0) * KK);
    for (int64_t p = 0; p < P; p++) {
      const float *src = gu + (o * P + p) * ld;
      const int32_t *at = tab + p * HW;
      for (int64_t c = 0; c < c1 - c0; c++)
        for (int64_t q = 0; q < HW; q++)
          if (at[q] < KK)
            row[c * KK + at[q]] += src[c * HW + q];
    }
  }
  free(tab);
}

// Whether g runs as a product over its taps that read more than padding
// (single_tap, inner_taps, unrolled).
static bool few_taps(const KConv2d *g, int64_t OH, int64_t OW, bool fast) {
  int64_t t[4];
  return single_tap(g, OH, OW) >= 0 || inner_taps(g, OH, OW, fast, t) || unrolled(g, OH, OW, fast);
}

// A grouped convolution, G > 1: group q's cols (C/G*KH*KW, N*P) from its
// channels of each image, Yt (O/G, N*P) = w[q] (O/G, C/G*KH*KW) @ col, and
// Yt to its channels of y.
static void conv_forward_groups(float *y, const float *x, const float *w, const KConv2d *g, int64_t OH,
                                int64_t OW, float *ws, KGemmFn gemm, bool fast) {
  int64_t G = conv_groups(g), P = OH * OW, NP = g->N * P, HW = g->H * g->W, CHW = g->C * HW;
  KConv2d gg = *g;   // one group: its channels, in images of all C
  gg.C = g->C / G, gg.O = g->O / G, gg.G = 1;
  int64_t CKK = gg.C * g->KH * g->KW;
  float *col = ws, *yt = ws + CKK * NP;   // (CKK, N*P), (O/G, N*P)
  for (int64_t q = 0; q < G; q++) {
    for (int64_t n = 0; n < g->N; n++)
      im2col(col + n * P, x + n * CHW + q * gg.C * HW, &gg, OH, OW, NP, fast);
    gemm(false, false, gg.O, NP, CKK, 1.0f, w + q * gg.O * CKK, col, 0.0f, yt);
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t o = 0; o < gg.O; o++)
        memcpy(y + (n * g->O + q * gg.O + o) * P, yt + o * NP + n * P, sizeof(float) * P);
  }
}

// The whole batch in one GEMM: the cols of all images side by side,
// (C*KH*KW, N*P), so BLAS gets one large product instead of N small ones.
// Yt (O, N*P) = w (O, CKK) @ col, then y (N, O, P) = Yt with images first.
static void conv_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g, float *ws,
                         KGemmFn gemm, bool fast, bool direct) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  int64_t P = OH * OW, CKK = g->C * g->KH * g->KW, CHW = g->C * g->H * g->W, NP = g->N * P;
  bool pointwise = conv_is_pointwise(g);
  int64_t tap = single_tap(g, OH, OW), t[4];
  if (tap >= 0) {   // (before the direct paths, which would multiply the padding's zeros)
    gemm(false, true, g->N, g->O, g->C, 1.0f, x, tap_weights(w, g, tap), 0.0f, y);
  } else if (unroll_path(g, OH, OW, fast)) {   // (with its bias)
    k_conv2d_forward_unrolled(y, x, unroll_weights(w, g), bias, g, gemm);
    return;
  } else if (inner_taps(g, OH, OW, fast, t)) {   // y (N, O) = xs @ ws^T
    int64_t CT = g->C * (t[1] - t[0]) * (t[3] - t[2]);
    inner_cols(ws, x, g, t, 0, g->C);
    gemm(false, true, g->N, g->O, CT, 1.0f, ws, inner_weights(w, g, t), 0.0f, y);
  } else if (direct) {   // (the bias too, as it copies the output)
    if (k_avx512_conv_rows_fits(g))
      k_avx512_conv_rows_forward(y, x, w, bias, g, ws);
    else
      k_avx2_conv_forward(y, x, w, bias, g, ws);
    return;
  } else if (conv_groups(g) > 1) {
    conv_forward_groups(y, x, w, g, OH, OW, ws, gemm, fast);
  } else if (pointwise) {   // the image is its own col
    for (int64_t n = 0; n < g->N; n++)
      gemm(false, false, g->O, P, CKK, 1.0f, w, x + n * CHW, 0.0f, y + n * g->O * P);
  } else {
    float *col = ws;                      // (CKK, N*P)
    float *yt = ws + CKK * NP;            // (O, N*P)
    for (int64_t n = 0; n < g->N; n++)
      im2col(col + n * P, x + n * CHW, g, OH, OW, NP, fast);
    gemm(false, false, g->O, NP, CKK, 1.0f, w, col, 0.0f, yt);
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t o = 0; o < g->O; o++)
        memcpy(y + (n * g->O + o) * P, yt + o * NP + n * P, sizeof(float) * P);
  }
  if (bias)
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t o = 0; o < g->O; o++)
        for (int64_t p = 0; p < P; p++)
          y[(n * g->O + o) * P + p] += bias[o];
}

// The grouped backward, G > 1: dY (O, N*P) as below, then per group q its
// rows of dY with its cols: dw[q] += dY[q] @ col^T, and dcol = w[q]^T @
// dY[q] added into its channels of each image's dx.
static void conv_backward_groups(float *dx, float *dw, const float *dy, const float *x, const float *w,
                                 const KConv2d *g, int64_t OH, int64_t OW, float *ws, KGemmFn gemm, bool fast) {
  int64_t G = conv_groups(g), P = OH * OW, NP = g->N * P, HW = g->H * g->W, CHW = g->C * HW;
  KConv2d gg = *g;
  gg.C = g->C / G, gg.O = g->O / G, gg.G = 1;
  int64_t CKK = gg.C * g->KH * g->KW;
  float *col = ws, *dyt = ws + CKK * NP;   // (CKK, N*P), (O, N*P)
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t o = 0; o < g->O; o++)
      memcpy(dyt + o * NP + n * P, dy + (n * g->O + o) * P, sizeof(float) * P);
  for (int64_t q = 0; q < G; q++) {
    const float *dyq = dyt + q * gg.O * NP, *wq = w + q * gg.O * CKK;
    if (dw) {
      for (int64_t n = 0; n < g->N; n++)
        im2col(col + n * P, x + n * CHW + q * gg.C * HW, &gg, OH, OW, NP, fast);
      gemm(false, true, gg.O, CKK, NP, 1.0f, dyq, col, 1.0f, dw + q * gg.O * CKK);
    }
    if (dx) {
      gemm(true, false, CKK, NP, gg.O, 1.0f, wq, dyq, 0.0f, col);
      for (int64_t n = 0; n < g->N; n++)
        col2im_add(dx + n * CHW + q * gg.C * HW, col + n * P, &gg, OH, OW, NP, fast);
    }
  }
}

// The batch at once, as the forward: dY (O, N*P) is dy with images moved
// inside; dw (O, CKK) += dY @ col^T over all images in one product, and
// dcol (CKK, N*P) = w^T @ dY, which col2im adds into each image's dx.
static void conv_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w,
                          const KConv2d *g, float *ws, KGemmFn gemm, bool fast, bool direct) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  int64_t P = OH * OW, CKK = g->C * g->KH * g->KW, CHW = g->C * g->H * g->W, NP = g->N * P;
  if (dbias)
    for (int64_t o = 0; o < g->O; o++) {
      double sum = 0;
      for (int64_t n = 0; n < g->N; n++)
        for (int64_t p = 0; p < P; p++)
          sum += dy[(n * g->O + o) * P + p];
      dbias[o] += (float)sum;
    }
  if (!dw && !dx)
    return;
  direct = direct && !few_taps(g, OH, OW, fast);   // (they would multiply the padding's zeros)
  if (direct && dw && k_avx512_conv_rows_grad_weight_fits(g)) {   // dw in place from x
    k_avx512_conv_rows_grad_weight(dw, dy, x, g, ws);
    dw = NULL;
  } else if (direct && dw && k_avx2_conv_grad_weight_fits(g)) {
    k_avx2_conv_grad_weight(dw, dy, x, g, ws);
    dw = NULL;
  }
  if (direct && dx && k_avx512_conv_rows_grad_input_fits(g)) {   // dx in place from dy
    k_avx512_conv_rows_grad_input(dx, dy, w, g, ws);
    dx = NULL;
  } else if (direct && dx && k_avx2_conv_grad_input_fits(g)) {
    k_avx2_conv_grad_input(dx, dy, w, g, ws);
    dx = NULL;
  }
  if (!dw && !dx)
    return;
  if (conv_groups(g) > 1) {
    conv_backward_groups(dx, dw, dy, x, w, g, OH, OW, ws, gemm, fast);
    return;
  }
  int64_t tap = single_tap(g, OH, OW), KK = g->KH * g->KW;
  if (tap >= 0) {
    if (dx)   // dx (N, C) += dy (N, O) @ w[:, :, tap]
      gemm(false, false, g->N, g->C, g->O, 1.0f, dy, tap_weights(w, g, tap), 1.0f, dx);
    if (dw) {   // dw[:, :, tap] += dy^T @ x
      float *gt = k_thread_scratch(K_SCRATCH_CONV, g->O * g->C);
      gemm(true, false, g->O, g->C, g->N, 1.0f, dy, x, 0.0f, gt);
      for (int64_t i = 0; i < g->O * g->C; i++)
        dw[i * KK + tap] += gt[i];
    }
    return;
  }
  if (unroll_path(g, OH, OW, fast)) {
    int64_t OP = g->O * P;
    if (dw) {   // wu's gradient (O*P, C*HW) = dy^T @ x, onto the taps
      float *gu = k_thread_scratch(K_SCRATCH_TAPS, OP * CHW);
      gemm(true, false, OP, CHW, g->N, 1.0f, dy, x, 0.0f, gu);
      unroll_fold(dw, gu, CHW, g, OH, OW, 0, g->C, false);
    }
    if (dx)
      k_conv2d_grad_input_unrolled(dx, dy, unroll_weights(w, g), g, gemm);
    return;
  }
  int64_t t[4];
  if (inner_taps(g, OH, OW, fast, t)) {
    int64_t nt = (t[1] - t[0]) * (t[3] - t[2]), CT = g->C * nt, k;
    float *part = k_thread_scratch(K_SCRATCH_TAPS, (g->N > g->O ? g->N : g->O) * CT);
    if (dw) {   // dw[:, :, inner] += dy^T @ xs
      inner_cols(ws, x, g, t, 0, g->C);
      gemm(true, false, g->O, CT, g->N, 1.0f, dy, ws, 0.0f, part);
      for (int64_t o = 0; o < g->O; o++)
        for (int64_t c = 0; c < g->C; c++)
          for (int64_t i = 0; i < nt; i++) {
            inner_at(g, t, i, &k);
            dw[(o * g->C + c) * KK + k] += part[o * CT + c * nt + i];
          }
    }
    if (dx) {   // dx at the inner taps' inputs += dy @ ws
      gemm(false, false, g->N, CT, g->O, 1.0f, dy, inner_weights(w, g, t), 0.0f, part);
      for (int64_t i = 0; i < nt; i++) {
        int64_t at = inner_at(g, t, i, &k);
        for (int64_t n = 0; n < g->N; n++)
          for (int64_t c = 0; c < g->C; c++)
            dx[(n * g->C + c) * g->H * g->W + at] += part[(n * g->C + c) * nt + i];
      }
    }
    return;
  }
  bool pointwise = conv_is_pointwise(g);
  if (pointwise) {   // per image: the image is its own col
    for (int64_t n = 0; n < g->N; n++) {
      const float *dyn = dy + n * g->O * P;   // (O,P)
      if (dw)
        gemm(false, true, g->O, CKK, P, 1.0f, dyn, x + n * CHW, 1.0f, dw);
      if (dx)
        gemm(true, false, CKK, P, g->O, 1.0f, w, dyn, 1.0f, dx + n * CHW);
    }
    return;
  }
  float *col = ws, *dyt = ws + CKK * NP;   // (CKK, N*P), (O, N*P)
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t o = 0; o < g->O; o++)
      memcpy(dyt + o * NP + n * P, dy + (n * g->O + o) * P, sizeof(float) * P);
  if (dw) {
    for (int64_t n = 0; n < g->N; n++)
      im2col(col + n * P, x + n * CHW, g, OH, OW, NP, fast);
    gemm(false, true, g->O, CKK, NP, 1.0f, dyt, col, 1.0f, dw);
  }
  if (dx) {
    gemm(true, false, CKK, NP, g->O, 1.0f, w, dyt, 0.0f, col);
    for (int64_t n = 0; n < g->N; n++)
      col2im_add(dx + n * CHW, col + n * P, g, OH, OW, NP, fast);
  }
}

void k_conv2d_dy_t(float *dyt, const float *dy, const KConv2d *g) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  int64_t P = OH * OW;
  if (single_tap(g, OH, OW) < 0 && unroll_path(g, OH, OW, true)) {   // (O*P, N): dy^T, the unrolled product's A
    for (int64_t n = 0; n < g->N; n++)
      for (int64_t i = 0; i < g->O * P; i++)
        dyt[i * g->N + n] = dy[n * g->O * P + i];
    return;
  }
  for (int64_t n = 0; n < g->N; n++)   // (N*P, O): each image's (O, P) transposed
    k_transpose(dyt + n * P * g->O, dy + n * g->O * P, g->O, P);
}

void k_conv2d_grad_weight_channels(float *dw, const float *dyt, const float *x, const KConv2d *g, int64_t c0,
                                   int64_t c1, float *ws) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  K_CHECK(conv_groups(g) == 1, "conv2d: a weight gradient by channel of a grouped convolution");
  int64_t P = OH * OW, KK = g->KH * g->KW, CHW = g->C * g->H * g->W, NP = g->N * P;
  if (c1 <= c0)
    return;
  KConv2d part = *g;   // channels c0..c1 of every image
  part.C = c1 - c0;
  int64_t tap = single_tap(g, OH, OW);
  if (tap >= 0) {      // 0 but at the tap: dyt^T (O, N) @ x[:, c0..c1]
    float *gt = k_thread_scratch(K_SCRATCH_CONV, g->O * part.C);
    k_gemm_ld(true, false, g->O, part.C, g->N, dyt, g->O, x + c0, CHW, 0.0f, gt, part.C);
    for (int64_t o = 0; o < g->O; o++) {   // (rows of these channels' taps: one memset each)
      float *row = dw + (o * g->C + c0) * KK;
      memset(row, 0, sizeof(float) * part.C * KK);
      for (int64_t c = 0; c < part.C; c++)
        row[c * KK + tap] = gt[o * part.C + c];
    }
    return;
  }
  if (unroll_path(g, OH, OW, true)) {   // dyt (O*P, N) @ x[:, c0..c1], onto the taps
    int64_t HW = g->H * g->W, CT = part.C * HW;
    float *gu = k_thread_scratch(K_SCRATCH_TAPS, g->O * P * CT);
    k_gemm_ld(false, false, g->O * P, CT, g->N, dyt, g->N, x + c0 * HW, CHW, 0.0f, gu, CT);
    unroll_fold(dw, gu, CT, g, OH, OW, c0, c1, true);
    return;
  }
  int64_t t[4];
  if (inner_taps(g, OH, OW, true, t)) {   // 0 but at the inner taps: dyt^T (O, N) @ xs
    int64_t nt = (t[1] - t[0]) * (t[3] - t[2]), CT = part.C * nt;
    float *gt = k_thread_scratch(K_SCRATCH_TAPS, g->O * CT);
    inner_cols(ws, x, g, t, c0, part.C);
    k_gemm_ld(true, false, g->O, CT, g->N, dyt, g->O, ws, CT, 0.0f, gt, CT);
    int64_t *at = xmalloc(sizeof(int64_t) * nt);   // the inner taps' places in the window
    for (int64_t i = 0; i < nt; i++)
      inner_at(g, t, i, &at[i]);
    for (int64_t o = 0; o < g->O; o++) {
      float *row = dw + (o * g->C + c0) * KK;
      memset(row, 0, sizeof(float) * part.C * KK);
      for (int64_t c = 0; c < part.C; c++)
        for (int64_t i = 0; i < nt; i++)
          row[c * KK + at[i]] = gt[o * CT + c * nt + i];
    }
    free(at);
    return;
  }
  // dw^T (part.C*KK, O) = col (part.C*KK, N*P) @ dyt (N*P, O): both read
  // by rows, no packing (dw = dyt^T @ col^T would pack col, the larger),
  // then its columns to dw's rows
  int64_t CK = part.C * KK;
  for (int64_t n = 0; n < g->N; n++)
    im2col(ws + n * P, x + n * CHW + c0 * g->H * g->W, &part, OH, OW, NP, true);
  float *dwt = k_thread_scratch(K_SCRATCH_TAPS, CK * g->O);
  k_gemm_ld(false, false, CK, g->O, NP, ws, NP, dyt, g->O, 0.0f, dwt, g->O);
  for (int64_t o = 0; o < g->O; o++) {
    float *row = dw + (o * g->C + c0) * KK;
    for (int64_t j = 0; j < CK; j++)
      row[j] = dwt[j * g->O + o];
  }
}

// The reference: k_sgemm (the BLAS) and the plain loops.
void k_conv2d_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g) {
  conv_forward(y, x, w, bias, g, scratch(conv_scratch(g, false)), k_sgemm, false, false);
}

void k_conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w,
                       const KConv2d *g) {
  conv_backward(dx, dw, dbias, dy, x, w, g, scratch(conv_scratch(g, false)), k_sgemm, false, false);
}

// The cpu backend's: its GEMM and the fast im2col, or, on AVX2 hosts
// without AVX-512 or with AVX-512 in 256-bit halves (Zen 4), the stride-1
// convolutions of conv_avx2.c where they fit (each of the forward, dw and
// dx on its own) and the caller brings no GEMM of its own (one that splits
// the product across threads, for a batch smaller than the pool). On Zen
// 4 they beat im2col and the AVX-512 GEMM: cnn's training step 15.1
// against 17.6 ms on one core; where AVX-512 runs full width, the GEMM
// has twice their FLOPs a cycle.
static bool direct_path(KGemmFn gemm) { return !gemm && (!k_avx512() || k_avx512_halves()) && k_avx2(); }

bool k_conv2d_by_image(const KConv2d *g, int pass) {
  int64_t OH, OW;
  conv_geometry(g, &OH, &OW);
  if (!direct_path(NULL) || few_taps(g, OH, OW, true))
    return false;
  return pass == 0 ? k_avx512_conv_rows_fits(g)
         : pass == 1 ? k_avx512_conv_rows_grad_input_fits(g)
                     : k_avx512_conv_rows_grad_weight_fits(g);
}

void k_conv2d_forward_ws(float *y, const float *x, const float *w, const float *bias, const KConv2d *g, float *ws,
                         KGemmFn gemm) {
  conv_forward(y, x, w, bias, g, ws, gemm ? gemm : k_gemm, true,
               direct_path(gemm) && (k_avx512_conv_rows_fits(g) || k_avx2_conv_fits(g)));
}

void k_conv2d_backward_ws(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w,
                          const KConv2d *g, float *ws, KGemmFn gemm) {
  conv_backward(dx, dw, dbias, dy, x, w, g, ws, gemm ? gemm : k_gemm, true, direct_path(gemm));
}

//
// The weight gradient through a max pooling's argmax
//

// dw += sum over (n, o, q) of dy[n, o, q] * (the window of x that output
// argmax[n, o, q] of the convolution reads): the weight gradient of a
// convolution whose output's gradient is dy routed through a max pooling's
// argmax (the dense gradient is zero at every output no window chose).
// A window is a list of T segments of L contiguous floats, at offsets
// toff[t] from where it starts (KPooledAt, for output a), in one of two
// layouts of the image:
//   planes (few input channels): x itself, or a copy with its padding;
//     a segment is one row of one channel's window, (c, kh), KW floats
//     (one float, (c, kh, kw), under dilation), and the accumulator's row
//     is in dw's own order;
//   channels last, [Hp][Wp][C] with the padding: a segment is one tap
//     (kh, kw), C/G channels; the accumulator's rows are (kh, kw, c),
//     turned to dw's (c, kh, kw) at the end.
// Each takes the one with fewer vectors a window. A zero gradient adds
// nothing and is skipped (most are: the relu's mask and dropout's zeros
// reach dy), the others listed first, each with where its window starts.
typedef struct PooledPlan {
  int64_t OH, OW, Cg, Og, KK, R, Hp, Wp;
  bool planes, copy;    // the layout; whether the image is copied (not x itself)
  int64_t T, L;         // segments of a window, their length
  int64_t img;          // floats of an image's copy
  int64_t chunk;        // images whose windows one pass of the sums covers
} PooledPlan;

// A pass of the sums takes at most this many images' copies (in L2),
// and at least this many windows an output channel where it can (the
// accumulators' loads and stores are a pass's fixed cost).
#define POOLED_COPY_FLOATS (48 * 1024)
#define POOLED_MIN_WINDOWS 128

static PooledPlan pooled_plan(const KConv2d *g, int64_t PP) {
  PooledPlan p = {0};
  conv_geometry(g, &p.OH, &p.OW);
  int64_t G = conv_groups(g);
  p.Cg = g->C / G, p.Og = g->O / G, p.KK = g->KH * g->KW, p.R = p.Cg * p.KK;
  p.Hp = g->H + 2 * g->ph, p.Wp = g->W + 2 * g->pw;
  int64_t row = g->dw == 1 ? g->KW : 1;   // a segment of the planes
  int64_t by_planes = p.R / row * ((row + 15) / 16), by_channels = p.KK * ((p.Cg + 15) / 16);
  p.planes = by_planes <= by_channels;
  p.T = p.planes ? p.R / row : p.KK;
  p.L = p.planes ? row : p.Cg;
  p.copy = !p.planes || g->ph || g->pw;
  p.img = p.copy ? g->C * p.Hp * p.Wp : 0;
  p.chunk = (POOLED_MIN_WINDOWS + PP - 1) / PP;
  if (p.copy && p.chunk * p.img > POOLED_COPY_FLOATS)
    p.chunk = POOLED_COPY_FLOATS / p.img > 1 ? POOLED_COPY_FLOATS / p.img : 1;
  int64_t CHW = g->C * g->H * g->W;   // (x itself: the pass's windows' offsets are int32)
  if (!p.copy && p.chunk > INT32_MAX / CHW)
    p.chunk = INT32_MAX / CHW > 1 ? INT32_MAX / CHW : 1;
  return p;
}

int64_t k_conv2d_pooled_scratch(const KConv2d *g, int64_t PP) {
  PooledPlan p = pooled_plan(g, PP);
  // the copies, an image channels last before its padding, the
  // accumulators, and as int32 (a float's room each): toff, the listed
  // windows and their values
  return p.chunk * p.img + (p.planes ? 0 : g->C * g->H * g->W) + g->O * p.R + p.T + 2 * (p.chunk * PP + 16);
}

// The sums in plain loops, compiled twice: as they are, and for AVX2
// with FMA, which hosts without AVX-512 take. For each window i and
// segment t, with row = rows + t*L and win = img + off[i] + toff[t]: the
// weight gradient's row += val[i] * win (k_avx512_pooled_sums), or the
// input gradient's win += val[i] * row (k_avx512_pooled_scatter).
#define POOLED_LOOPS(name, attr)                                                                      \
  attr static void name(float *rows, float *img, int64_t T, int64_t L, const int32_t *toff,           \
                        const int32_t *off, const float *val, int64_t nz, bool scatter) {             \
    for (int64_t i = 0; i < nz; i++)                                                                  \
      for (int64_t t = 0; t < T; t++) {                                                               \
        float *restrict row = rows + t * L, *restrict win = img + off[i] + toff[t];                   \
        if (scatter)                                                                                  \
          for (int64_t c = 0; c < L; c++)                                                             \
            win[c] += val[i] * row[c];                                                                \
        else                                                                                          \
          for (int64_t c = 0; c < L; c++)                                                             \
            row[c] += val[i] * win[c];                                                                \
      }                                                                                               \
  }
POOLED_LOOPS(pooled_loops, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
POOLED_LOOPS(pooled_loops_avx2, __attribute__((target("avx2,fma"))))
#else
#define pooled_loops_avx2 pooled_loops
#endif

// The sums of one output channel's windows on this host: rows += (or,
// scatter, the windows +=) as above.
static void pooled_rows(float *rows, float *img, int64_t T, int64_t L, const int32_t *toff, const int32_t *off,
                        const float *val, int64_t nz, bool scatter) {
  if (k_avx512() && scatter)
    k_avx512_pooled_scatter(img, T, L, toff, rows, off, val, nz);
  else if (k_avx512())
    k_avx512_pooled_sums(rows, T, L, toff, img, off, val, nz);
  else if (k_avx2())
    pooled_loops_avx2(rows, img, T, L, toff, off, val, nz, scatter);
  else
    pooled_loops(rows, img, T, L, toff, off, val, nz, scatter);
}

// The windows of dy's nonzero gradients: where each starts and its value;
// returns how many.
static int64_t pooled_list(int32_t *off, float *val, const float *d, const int32_t *at, int64_t PP,
                           const KPooledAt *w) {
  int64_t nz = 0;
  for (int64_t q = 0; q < PP; q++) {   // without branches
    bool on = (d[q] != 0.0f) & ((uint32_t)at[q] < (uint32_t)w->P);
    int32_t a = on ? at[q] : 0;
    off[nz] = a / w->OW * w->ystep + a % w->OW * w->xstep + w->add;
    val[nz] = d[q];
    nz += on;
  }
  return nz;
}

// Image n's copy at img: its planes in their padding, or channels last
// (through tmp, C*H*W floats, where there is padding).
static void pooled_copy(float *img, float *tmp, const float *xn, const KConv2d *g, const PooledPlan *p) {
  int64_t HW = g->H * g->W, HWp = p->Hp * p->Wp;
  if (!p->planes && !g->ph && !g->pw) {
    k_transpose(img, xn, g->C, HW);
    return;
  }
  memset(img, 0, sizeof(float) * p->img);
  if (p->planes) {
    for (int64_t c = 0; c < g->C; c++)
      for (int64_t h = 0; h < g->H; h++)
        memcpy(img + c * HWp + (h + g->ph) * p->Wp + g->pw, xn + c * HW + h * g->W, sizeof(float) * g->W);
    return;
  }
  k_transpose(tmp, xn, g->C, HW);
  for (int64_t h = 0; h < g->H; h++)
    memcpy(img + ((h + g->ph) * p->Wp + g->pw) * g->C, tmp + h * g->W * g->C, sizeof(float) * g->W * g->C);
}

// Where windows lie in the image the sums read (padded: the copy with its
// padding; else x itself): each segment's offset from its window's start,
// toff[t], and where output a's window starts (*at, add left 0).
static void pooled_offsets(int32_t *toff, KPooledAt *at, const KConv2d *g, const PooledPlan *p, bool padded) {
  int64_t ld = padded ? p->Wp : g->W, plane = padded ? p->Hp * p->Wp : g->H * g->W;   // a row's floats, a plane's
  int64_t lc = p->planes ? 1 : g->C;                                                  // a pixel's
  *at = (KPooledAt){.OW = (int32_t)p->OW, .P = (int32_t)(p->OH * p->OW), .ystep = (int32_t)(g->sh * ld * lc),
                    .xstep = (int32_t)(g->sw * lc)};
  for (int64_t t = 0; t < p->T; t++) {
    int64_t c, kh, kw;   // the segment's first float
    if (p->planes)
      c = t / (p->T / p->Cg), kh = t % (p->T / p->Cg) / (g->dw == 1 ? 1 : g->KW), kw = g->dw == 1 ? 0 : t % g->KW;
    else
      c = 0, kh = t / g->KW, kw = t % g->KW;
    toff[t] = (int32_t)(c * plane + (kh * g->dh * ld + kw * g->dw) * lc);
  }
}

// pooled_list on this host (AVX-512 where the argmaxes are exact in floats).
static int64_t pooled_windows(int32_t *off, float *val, const float *d, const int32_t *am, int64_t PP,
                              const KPooledAt *at) {
  return k_avx512() && at->P < (1 << 24) ? k_avx512_pooled_list(off, val, d, am, PP, at)
                                         : pooled_list(off, val, d, am, PP, at);
}

void k_conv2d_grad_weight_pooled(float *dw, const float *dy, const int32_t *argmax, int64_t PP, const float *x,
                                 const KConv2d *g, float *ws) {
  K_CHECK(PP >= 1, "conv2d_grad_weight_pooled: bad shape");
  PooledPlan p = pooled_plan(g, PP);
  int64_t CHW = g->C * g->H * g->W, HW = g->H * g->W, HWp = p.Hp * p.Wp;
  int64_t stride = p.copy ? p.img : CHW;   // from one image's windows to the next's
  K_CHECK(p.chunk * stride <= INT32_MAX && g->C * HWp <= INT32_MAX, "conv2d_grad_weight_pooled: too large");
  float *img = ws, *tmp = img + p.chunk * p.img, *acc = tmp + (p.planes ? 0 : CHW), *val;
  int32_t *toff = (int32_t *)(acc + g->O * p.R), *off = toff + p.T;
  val = (float *)(off + p.chunk * PP + 16);   // (the AVX-512 list stores whole vectors)
  memset(acc, 0, sizeof(float) * g->O * p.R);
  KPooledAt w;
  pooled_offsets(toff, &w, g, &p, p.copy);
  for (int64_t n0 = 0; n0 < g->N; n0 += p.chunk) {   // images [n0, n1): one pass
    int64_t n1 = g->N - n0 < p.chunk ? g->N : n0 + p.chunk;
    const float *base = p.copy ? img : x + n0 * CHW;
    if (p.copy)
      for (int64_t n = n0; n < n1; n++)
        pooled_copy(img + (n - n0) * p.img, tmp, x + n * CHW, g, &p);
    for (int64_t o = 0; o < g->O; o++) {
      int64_t c0 = o / p.Og * p.Cg, nz = 0;   // the group's first channel
      for (int64_t n = n0; n < n1; n++) {
        const float *d = dy + (n * g->O + o) * PP;
        const int32_t *at = argmax + (n * g->O + o) * PP;
        w.add = (int32_t)((n - n0) * stride + (p.planes ? c0 * (p.copy ? HWp : HW) : c0));
        nz += pooled_windows(off + nz, val + nz, d, at, PP, &w);
      }
      pooled_rows(acc + o * p.R, (float *)base, p.T, p.L, toff, off, val, nz, false);
    }
  }
  for (int64_t o = 0; o < g->O; o++) {   // into dw's order
    float *out = dw + o * p.R;
    const float *ac = acc + o * p.R;
    if (p.planes)
      for (int64_t r = 0; r < p.R; r++)
        out[r] += ac[r];
    else
      for (int64_t c = 0; c < p.Cg; c++)
        for (int64_t t = 0; t < p.KK; t++)
          out[c * p.KK + t] += ac[t * p.Cg + c];
  }
}

// The input gradient through a max pooling's argmax: dx += for each
// nonzero pooled gradient dy[n, o, q] at the convolution's output a =
// argmax[n, o, q], dy[n, o, q] times w[o] spread over the window of x that
// output a reads (col2im of one column). Image by image, into a padded
// copy of dx in the layout of the weight gradient's plan (planes, or
// channels last with w's rows turned to (kh, kw, c)), each window's
// segments += its value times o's row of w, in registers; then the copy's
// inside added to dx.
int64_t k_conv2d_pooled_input_scratch(const KConv2d *g, int64_t PP) {
  PooledPlan p = pooled_plan(g, PP);
  int64_t img = g->C * p.Hp * p.Wp;
  // the padded dx, its inside channels last, w's rows, and as int32: toff,
  // the listed windows and their values
  return img + g->C * g->H * g->W + g->O * p.R + p.T + 2 * (PP + 16);
}

void k_conv2d_grad_input_pooled(float *dx, const float *dy, const int32_t *argmax, int64_t PP, const float *w,
                                const KConv2d *g, float *ws) {
  K_CHECK(PP >= 1, "conv2d_grad_input_pooled: bad shape");
  PooledPlan p = pooled_plan(g, PP);
  int64_t HW = g->H * g->W, CHW = g->C * HW, HWp = p.Hp * p.Wp, img = g->C * HWp;
  K_CHECK(img <= INT32_MAX, "conv2d_grad_input_pooled: too large");
  float *acc = ws, *tmp = acc + img, *wr = tmp + CHW, *val;
  int32_t *toff = (int32_t *)(wr + g->O * p.R), *off = toff + p.T;
  val = (float *)(off + PP + 16);
  for (int64_t o = 0; o < g->O; o++)   // o's row in the segments' order
    for (int64_t r = 0; r < p.R; r++)
      wr[o * p.R + r] = p.planes ? w[o * p.R + r] : w[o * p.R + r % p.Cg * p.KK + r / p.Cg];
  KPooledAt at;
  pooled_offsets(toff, &at, g, &p, true);   // in the padded copy of dx
  for (int64_t n = 0; n < g->N; n++) {
    memset(acc, 0, sizeof(float) * img);
    for (int64_t o = 0; o < g->O; o++) {
      const float *d = dy + (n * g->O + o) * PP;
      const int32_t *am = argmax + (n * g->O + o) * PP;
      int64_t c0 = o / p.Og * p.Cg;
      at.add = (int32_t)(p.planes ? c0 * HWp : c0);
      int64_t nz = pooled_windows(off, val, d, am, PP, &at);
      pooled_rows(wr + o * p.R, acc, p.T, p.L, toff, off, val, nz, true);
    }
    float *dxn = dx + n * CHW;
    if (p.planes) {   // the inside of each plane
      for (int64_t c = 0; c < g->C; c++)
        for (int64_t h = 0; h < g->H; h++) {
          const float *src = acc + c * HWp + (h + g->ph) * p.Wp + g->pw;
          float *dst = dxn + c * HW + h * g->W;
          for (int64_t x = 0; x < g->W; x++)
            dst[x] += src[x];
        }
    } else {   // the inside, channels last, turned to planes
      for (int64_t h = 0; h < g->H; h++)
        memcpy(tmp + h * g->W * g->C, acc + ((h + g->ph) * p.Wp + g->pw) * g->C, sizeof(float) * g->W * g->C);
      k_transpose(acc, tmp, HW, g->C);
      for (int64_t i = 0; i < CHW; i++)
        dxn[i] += acc[i];
    }
  }
}

//
// Pooling
//

static void pool_geometry(const KPool2d *g, int64_t *OH, int64_t *OW) {
  K_CHECK(g->N >= 0 && g->C >= 0 && g->H >= 1 && g->W >= 1 && g->kh >= 1 && g->kw >= 1,
          "pool2d: bad shape");
  K_CHECK(g->sh >= 1 && g->sw >= 1 && g->ph >= 0 && g->pw >= 0 && g->dh >= 1 && g->dw >= 1,
          "pool2d: stride and dilation must be >= 1 and padding >= 0");
  *OH = k_out_size(g->H, g->kh, g->sh, g->ph, g->dh);
  *OW = k_out_size(g->W, g->kw, g->sw, g->pw, g->dw);
  K_CHECK(*OH >= 1 && *OW >= 1, "pool2d: window larger than the padded input");
}

// Max pooling scans each window in row-major order: an element replaces
// the best so far if it is greater or NaN (PyTorch's rule), so the first of
// equal maxima wins; padding is never a candidate.
//
// Without padding every window lies inside the plane: the scan with no
// bounds checks (the common maxpool(2) and maxpool(3, 2)),
// organized by window element: for each (kh, kw) in window order, one pass
// along the output row. The passes are independent across the row, so they
// vectorize, and comparisons turn into selects, not branches (which element
// of a window is largest is random, and mispredicted branches cost more
// than the scan). Ties keep the first element; a NaN wins.
// The taps k in [*k0, *k1) of a window starting at s (stride between taps
// d, k taps) that fall inside [0, n).
static void tap_range(int64_t s, int64_t d, int64_t k, int64_t n, int64_t *k0, int64_t *k1) {
  int64_t a = s >= 0 ? 0 : (-s + d - 1) / d;
  int64_t b = n - s <= 0 ? 0 : (n - s + d - 1) / d;
  *k0 = a < k ? a : k;
  *k1 = b < *k0 ? *k0 : b > k ? k : b;
}

// One step of the scan: v at index i against the best so far (none yet
// where *at is -1: the first element in a window wins even at -inf).
// The selects are written as masks: compilers turn `take ? v : best` into
// a branch, which mispredicts on every other window of random data.
static inline void max_step(float v, int32_t i, float *best, int32_t *at) {
  uint32_t m = -(uint32_t)((v > *best) | (v != v) | (*at < 0)), vb, bb;
  memcpy(&vb, &v, 4);
  memcpy(&bb, best, 4);
  bb = (bb & ~m) | (vb & m);
  memcpy(best, &bb, 4);
  *at = (int32_t)(((uint32_t)*at & ~m) | ((uint32_t)i & m));
}

// maxpool(2): 2x2 windows, stride 2, the commonest case, with the window
// in registers.
static bool is_maxpool_2x2(const KPool2d *g) {
  return g->ph == 0 && g->pw == 0 && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->dh == 1 &&
         g->dw == 1;
}

// One row of outputs: the windows of input rows r0 and r1 (at index i0 of
// the plane), max_step's rule as selects over whole rows, which the
// compiler vectorizes (the outputs are independent). at may be NULL.
static void maxpool_2x2_row(float *restrict y, int32_t *restrict at, const float *restrict r0,
                            const float *restrict r1, int32_t i0, int32_t W, int64_t OW) {
  for (int64_t ow = 0; ow < OW; ow++) {
    float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
    int32_t i = i0 + 2 * (int32_t)ow, k = i;
    float best = a;
    bool t = (b > best) | (b != b);
    best = t ? b : best;
    k = t ? i + 1 : k;
    t = (c > best) | (c != c);
    best = t ? c : best;
    k = t ? i + W : k;
    t = (d > best) | (d != d);
    best = t ? d : best;
    k = t ? i + W + 1 : k;
    y[ow] = best;
    if (at)
      at[ow] = k;
  }
}

static void maxpool_2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  int64_t W = g->W;
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    const float *xp = x + nc * g->H * W;   // (H,W)
    float *yp = y + nc * OH * OW;          // (OH,OW)
    int32_t *ap = argmax ? argmax + nc * OH * OW : NULL;
    for (int64_t oh = 0; oh < OH; oh++) {
      const float *r0 = xp + 2 * oh * W;
      maxpool_2x2_row(yp + oh * OW, ap ? ap + oh * OW : NULL, r0, r0 + W, (int32_t)(2 * oh * W), (int32_t)W, OW);
    }
  }
}

// One tap of a row of windows: best[ow], at[ow] against x[start + ow * sw]
// for ow in [lo, hi), max_step's rule as selects the compiler vectorizes
// (the outputs are independent).
static void max_tap(float *restrict best, int32_t *restrict at, const float *restrict x, int64_t start, int64_t sw,
                    int64_t lo, int64_t hi) {
  for (int64_t ow = lo; ow < hi; ow++) {
    int32_t i = (int32_t)(start + ow * sw);
    float v = x[i];
    bool take = (v > best[ow]) | (v != v) | (at[ow] < 0);
    best[ow] = take ? v : best[ow];
    at[ow] = take ? i : at[ow];
  }
}

// Any other window: one output row at a time, tap by tap, each tap over
// the outputs whose window it falls in (the rest lie in the padding, which
// is -inf), as max_step's selects on arrays of the row's best values and
// their indexes. Outputs are independent, so the scan is not one long
// chain of dependent selects per window. A window wholly in the padding
// gives -inf and index -1 (no gradient).
static void maxpool_rows_any(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW) {
  int64_t *kr = xmalloc(sizeof(int64_t) * (2 * OH + 2 * g->kw + 1)), *ow0 = kr + 2 * OH, *ow1 = ow0 + g->kw;
  for (int64_t oh = 0; oh < OH; oh++)
    tap_range(oh * g->sh - g->ph, g->dh, g->kh, g->H, &kr[2 * oh], &kr[2 * oh + 1]);
  for (int64_t kw = 0; kw < g->kw; kw++) {   // outputs [ow0, ow1) whose column kw lies in the plane
    int64_t off = kw * g->dw - g->pw;        // the column is ow * sw + off
    ow0[kw] = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    ow1[kw] = g->W - off <= 0 ? 0 : (g->W - off + g->sw - 1) / g->sw;
    ow1[kw] = ow1[kw] > OW ? OW : ow1[kw] < ow0[kw] ? ow0[kw] : ow1[kw];
  }
  // the row's best values and their indexes, apart from x and y so that
  // the compiler need not reload them after every store
  float *restrict best = xmalloc(sizeof(float) * (OW ? OW : 1));
  int32_t *restrict at = xmalloc(sizeof(int32_t) * (OW ? OW : 1));
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    const float *restrict xp = x + nc * g->H * g->W;   // (H,W)
    for (int64_t oh = 0; oh < OH; oh++) {
      for (int64_t ow = 0; ow < OW; ow++) {
        best[ow] = -INFINITY;
        at[ow] = -1;
      }
      for (int64_t kh = kr[2 * oh]; kh < kr[2 * oh + 1]; kh++) {
        int64_t h = oh * g->sh - g->ph + kh * g->dh;
        for (int64_t kw = 0; kw < g->kw; kw++) {
          int64_t start = h * g->W + kw * g->dw - g->pw;   // column ow * sw of this row, tap kw
          max_tap(best, at, xp, start, g->sw, ow0[kw], ow1[kw]);
        }
      }
      memcpy(y + (nc * OH + oh) * OW, best, sizeof(float) * OW);
      if (argmax)
        memcpy(argmax + (nc * OH + oh) * OW, at, sizeof(int32_t) * OW);
    }
  }
  free(best);
  free(at);
  free(kr);
}

void k_maxpool2d_forward(float *y, int32_t *argmax, const float *x, const KPool2d *g) {
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  K_CHECK(g->H * g->W <= INT32_MAX, "maxpool2d: plane too large for int32 indices");
  if (is_maxpool_2x2(g))
    maxpool_2x2(y, argmax, x, g, OH, OW);
  else
    maxpool_rows_any(y, argmax, x, g, OH, OW);
}

// The cpu backend's: the AVX-512 kernels of fast_avx512.c where the host
// has them, or else the AVX2 ones of conv_avx2.c, for 2x2 windows and for
// 16 (8) small planes at a time; the same bytes as the reference's.
#define POOL_PLANES_MAX_HW 1024

void k_maxpool2d_forward_fast(float *y, int32_t *argmax, const float *x, const KPool2d *g) {
  bool wide = k_avx512();
  if (!wide && !k_avx2()) {
    k_maxpool2d_forward(y, argmax, x, g);
    return;
  }
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  K_CHECK(g->H * g->W <= INT32_MAX, "maxpool2d: plane too large for int32 indices");
  if (is_maxpool_2x2(g)) {
    if (wide)
      k_avx512_maxpool2x2(y, argmax, x, g, OH, OW);
    else
      k_avx2_maxpool2x2(y, argmax, x, g, OH, OW);
    return;
  }
  KPool2d rest = *g;
  int64_t done = 0, lanes = wide ? 16 : 8;
  if (g->H * g->W <= POOL_PLANES_MAX_HW && g->N * g->C >= lanes) {
    float *xt = xmalloc(sizeof(float) * lanes * (g->H * g->W + 2 * OH * OW));
    for (; done + lanes <= g->N * g->C; done += lanes)
      if (wide)
        k_avx512_maxpool_planes16(y, argmax, x, g, OH, OW, done, xt);
      else
        k_avx2_maxpool_planes8(y, argmax, x, g, OH, OW, done, xt);
    free(xt);
  }
  rest.N = 1;   // the planes left, as one image of that many channels
  rest.C = g->N * g->C - done;
  maxpool_rows_any(y + done * OH * OW, argmax ? argmax + done * OH * OW : NULL, x + done * g->H * g->W, &rest, OH,
                   OW);
}

void k_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g) {
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    float *dxp = dx + nc * g->H * g->W;   // (H,W)
    for (int64_t p = 0; p < OH * OW; p++) {
      int64_t k = nc * OH * OW + p;
      if (argmax[k] >= 0)
        dxp[argmax[k]] += dy[k];
    }
  }
}

void k_maxpool2d_backward_fast(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g) {
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  K_CHECK(g->H * g->W <= INT32_MAX, "maxpool2d: plane too large for int32 indices");
  if (is_maxpool_2x2(g) && k_avx512() && OW >= 8) {   // (narrower rows: the per-row work outweighs the scatter)
    k_avx512_maxpool2x2_backward(dx, dy, argmax, g, OH, OW);
    return;
  }
  memset(dx, 0, sizeof(float) * g->N * g->C * g->H * g->W);
  k_maxpool2d_backward(dx, dy, argmax, g);
}

// The window of output (oh, ow) clipped to the input: rows [*h0, *h1) and
// columns [*w0, *w1). Returns the divisor with count_include_pad: the
// window's size clipped only to the padded input, as PyTorch computes it.
static int64_t avg_window(const KPool2d *g, int64_t oh, int64_t ow,
                          int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1) {
  int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
  int64_t he = hs + g->kh, we = ws + g->kw;
  if (he > g->H + g->ph)
    he = g->H + g->ph;
  if (we > g->W + g->pw)
    we = g->W + g->pw;
  int64_t divisor = (he - hs) * (we - ws);
  *h0 = hs < 0 ? 0 : hs;
  *w0 = ws < 0 ? 0 : ws;
  *h1 = he > g->H ? g->H : he;
  *w1 = we > g->W ? g->W : we;
  return divisor;
}

void k_avgpool2d_forward(float *y, const float *x, const KPool2d *g) {
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  K_CHECK(g->dh == 1 && g->dw == 1, "avgpool2d: dilation must be 1");
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    const float *xp = x + nc * g->H * g->W;   // (H,W)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t h0, h1, w0, w1;
        int64_t divisor = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++)
            sum += xp[ih * g->W + iw];
        y[(nc * OH + oh) * OW + ow] = (float)(sum / divisor);
      }
  }
}

void k_avgpool2d_backward(float *dx, const float *dy, const KPool2d *g) {
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  K_CHECK(g->dh == 1 && g->dw == 1, "avgpool2d: dilation must be 1");
  for (int64_t nc = 0; nc < g->N * g->C; nc++) {
    float *dxp = dx + nc * g->H * g->W;   // (H,W)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t h0, h1, w0, w1;
        int64_t divisor = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
        float d = dy[(nc * OH + oh) * OW + ow] / (float)divisor;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++)
            dxp[ih * g->W + iw] += d;
      }
  }
}

// Each input of a tiling window gets its one addition of dy / (kh * kw), as
// in the reference, along whole rows of dx.
void k_avgpool2d_backward_fast(float *dx, const float *dy, const KPool2d *g) {
  if (g->ph || g->pw || g->sh != g->kh || g->sw != g->kw || g->dh != 1 || g->dw != 1) {
    k_avgpool2d_backward(dx, dy, g);
    return;
  }
  int64_t OH, OW;
  pool_geometry(g, &OH, &OW);
  float divisor = (float)(g->kh * g->kw);
  for (int64_t nc = 0; nc < g->N * g->C; nc++)
    for (int64_t oh = 0; oh < OH; oh++) {
      const float *d = dy + (nc * OH + oh) * OW;
      for (int64_t i = 0; i < g->kh; i++) {
        float *row = dx + (nc * g->H + oh * g->kh + i) * g->W;
        for (int64_t ow = 0; ow < OW; ow++) {
          float v = d[ow] / divisor;
          for (int64_t j = 0; j < g->kw; j++)
            row[ow * g->kw + j] += v;
        }
      }
    }
}

void k_global_avgpool_forward(float *y, const float *x, int64_t N, int64_t C, int64_t HW) {
  for (int64_t nc = 0; nc < N * C; nc++) {
    double sum = 0;
    for (int64_t i = 0; i < HW; i++)
      sum += x[nc * HW + i];
    y[nc] = (float)(sum / HW);
  }
}

void k_global_avgpool_backward(float *dx, const float *dy, int64_t N, int64_t C, int64_t HW) {
  for (int64_t nc = 0; nc < N * C; nc++) {
    float d = dy[nc] / (float)HW;
    for (int64_t i = 0; i < HW; i++)
      dx[nc * HW + i] += d;
  }
}
