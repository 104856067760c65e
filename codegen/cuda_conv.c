// cuda_conv.c: the convolutions, poolings and batchnorms of a program
// (RtLib descriptors) as CUDA C (cuda_gen.h), computing what
// runtime/lib.c and the kernels of runtime/kernels_conv.c and
// kernels_train.c compute.
//
// Nothing here adds into memory another thread writes: a convolution is an
// implicit GEMM (cuda_emit_gemm) whose operands read the images at their
// im2col positions, each output element summed by one thread; a pooling's
// gradient is gathered per input element from the windows that hold it,
// in the order the reference adds them; a batchnorm runs a block per
// channel whose threads sum in double and meet in a fixed tree. The same
// bytes on every run; a batchnorm rounds each product where the reference
// does (NNC_FMUL, NNC_DMUL: never an fma).
#include "cuda_gen.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// A library kernel that cannot run: its name and kind in the message.
static bool lib_fail(CudaGen *g, const Kernel *k, const RtLib *d, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool lib_fail(CudaGen *g, const Kernel *k, const RtLib *d, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return cuda_fail(g, "kernel '%s' (%s, node %d): %s", k && k->name ? k->name : "?", rt_lib_name(d->kind),
                   (int)d->node, what);
}

// The number of images of an NCHW buffer (dimension 0): the batch, or a
// fixed count.
static KExtent images(const RtLibBuf *b) {
  return b->shape[0] == RT_BATCH ? (KExtent){1, true} : (KExtent){b->shape[0], false};
}

static const char *images_expr(KExtent n, char *buf, size_t size) {
  if (n.batched)
    snprintf(buf, size, "B");
  else
    snprintf(buf, size, "%lldLL", (long long)n.coef);
  return buf;
}

static KExtent times(KExtent e, int64_t f) { return (KExtent){e.coef * f, e.batched}; }

// Whether b has ndim dimensions, each fixed and positive but dimension 0,
// which may be the batch (batch_ok).
static bool shape_ok(const RtLibBuf *b, int ndim, bool batch_ok) {
  if (b->ndim != ndim)
    return false;
  for (int i = 0; i < ndim; i++)
    if (!(b->shape[i] >= 1 || (i == 0 && batch_ok && b->shape[i] == RT_BATCH)))
      return false;
  return true;
}

static int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  int64_t span = in + 2 * pad - dil * (k - 1) - 1;   // as k_out_size
  return span < 0 ? 0 : span / stride + 1;
}

//
// Convolutions
//

typedef struct ConvGeo {
  KExtent n;                        // images
  int64_t C, H, W, O, KH, KW, OH, OW;
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t G, Cg, Og;                // groups, and the channels of one: C/G in, O/G out
} ConvGeo;

// The geometry of a convolution or one of its gradients, checked: x
// (N,C,H,W), w (O,C,KH,KW) and y (N,O,OH,OW) are whichever buffers have
// those shapes.
static bool conv_geo(CudaGen *g, const Kernel *k, const RtLib *d, ConvGeo *c) {
  int nb = d->nbufs;
  bool count = d->kind == RL_CONV2D ? nb == 3 || nb == 4 : nb == 3;
  if (!count)
    return lib_fail(g, k, d, "%d buffers", nb);
  const RtLibBuf *x, *w, *y;
  switch (d->kind) {
  case RL_CONV2D: x = &d->buf[0], w = &d->buf[1], y = &d->buf[nb - 1]; break;
  case RL_CONV2D_GRAD_INPUT: case RL_CONV2D_GRAD_INPUT_POOLED: y = &d->buf[0], w = &d->buf[1], x = &d->buf[2]; break;
  default: y = &d->buf[0], x = &d->buf[1], w = &d->buf[2]; break;
  }
  if (!shape_ok(x, 4, true) || !shape_ok(w, 4, false) || !shape_ok(y, 4, true))
    return lib_fail(g, k, d, "the input, weight and output must be (N,C,H,W), (O,C,KH,KW) and (N,O,OH,OW)");
  const int64_t *a = d->i;
  *c = (ConvGeo){.n = images(x), .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                 .KH = w->shape[2], .KW = w->shape[3], .sh = a[0], .sw = a[1], .ph = a[2], .pw = a[3],
                 .dh = a[4], .dw = a[5], .G = a[6]};
  if (c->G < 1 || c->C % c->G || c->O % c->G)
    return lib_fail(g, k, d, "%lld groups of %lld input and %lld output channels", (long long)c->G, (long long)c->C,
                    (long long)c->O);
  c->Cg = c->C / c->G, c->Og = c->O / c->G;
  if (c->sh < 1 || c->sw < 1 || c->ph < 0 || c->pw < 0 || c->dh < 1 || c->dw < 1)
    return lib_fail(g, k, d, "stride %lld x %lld, padding %lld x %lld, dilation %lld x %lld", (long long)c->sh,
                    (long long)c->sw, (long long)c->ph, (long long)c->pw, (long long)c->dh, (long long)c->dw);
  c->OH = out_size(c->H, c->KH, c->sh, c->ph, c->dh);
  c->OW = out_size(c->W, c->KW, c->sw, c->pw, c->dw);
  bool pooled = d->kind == RL_CONV2D_GRAD_WEIGHT_POOLED || d->kind == RL_CONV2D_GRAD_INPUT_POOLED;   // (y: the
                                                                                                   // pooled gradient)
  if (w->shape[1] != c->Cg || y->shape[0] != x->shape[0] || y->shape[1] != c->O ||
      (!pooled && (y->shape[2] != c->OH || y->shape[3] != c->OW)) || c->OH < 1 || c->OW < 1)
    return lib_fail(g, k, d, "the shapes do not agree: input (%lld,%lld,%lld,%lld), weight (%lld,%lld,%lld,%lld), "
                    "output (%lld,%lld,%lld,%lld)", (long long)x->shape[0], (long long)x->shape[1],
                    (long long)x->shape[2], (long long)x->shape[3], (long long)w->shape[0], (long long)w->shape[1],
                    (long long)w->shape[2], (long long)w->shape[3], (long long)y->shape[0], (long long)y->shape[1],
                    (long long)y->shape[2], (long long)y->shape[3]);
  if (d->kind == RL_CONV2D && nb == 4 && (d->buf[2].ndim != 1 || d->buf[2].shape[0] != c->O))
    return lib_fail(g, k, d, "the bias must be (%lld)", (long long)c->O);
  return true;
}

// The device function `name`(x, row, col): the im2col matrix of images x
// at row (c, kh, kw) and column (n, oh, ow); 0 in the padding. (Images of
// C channels; with groups, x points at the group's first channel and c
// counts within the group.)
static void emit_im2col(CudaGen *g, const char *name, const ConvGeo *c) {
  sb_printf(&g->src,
            "\n// the im2col matrix: x at row (c, kh, kw), column (n, oh, ow); 0 in the padding\n"
            "__device__ __forceinline__ float %s(const float *x, long long row, long long col) {\n"
            "  const long long kw = row %% %lldLL, kh = row / %lldLL %% %lldLL, ci = row / %lldLL;\n"
            "  const long long ow = col %% %lldLL, oh = col / %lldLL %% %lldLL, n = col / %lldLL;\n"
            "  const long long h = oh * %lldLL - %lldLL + kh * %lldLL, w = ow * %lldLL - %lldLL + kw * %lldLL;\n"
            "  return h >= 0 && h < %lldLL && w >= 0 && w < %lldLL ? x[((n * %lldLL + ci) * %lldLL + h) * %lldLL + w] "
            ": 0.0f;\n"
            "}\n",
            name, (long long)c->KW, (long long)c->KW, (long long)c->KH, (long long)(c->KH * c->KW),
            (long long)c->OW, (long long)c->OW, (long long)c->OH, (long long)(c->OH * c->OW), (long long)c->sh,
            (long long)c->ph, (long long)c->dh, (long long)c->sw, (long long)c->pw, (long long)c->dw,
            (long long)c->H, (long long)c->W, (long long)c->C, (long long)c->H, (long long)c->W);
}

// The device function `name`(dy, row, col) of the input gradient's GEMM:
// dy at the output position whose window puts tap (kh, kw) of row (o, kh,
// kw) on input column (n, h, w); 0 where none does (off the stride, or
// out of range).
static void emit_col2im(CudaGen *g, const char *name, const ConvGeo *c) {
  sb_printf(&g->src,
            "\n// dy at row (o, kh, kw), column (n, h, w): the output whose window puts tap (kh, kw) on (h, w)\n"
            "__device__ __forceinline__ float %s(const float *dy, long long row, long long col) {\n"
            "  const long long kw = row %% %lldLL, kh = row / %lldLL %% %lldLL, o = row / %lldLL;\n"
            "  const long long w = col %% %lldLL, h = col / %lldLL %% %lldLL, n = col / %lldLL;\n"
            "  const long long th = h + %lldLL - kh * %lldLL, tw = w + %lldLL - kw * %lldLL;\n"
            "  if (th < 0 || tw < 0 || th %% %lldLL != 0 || tw %% %lldLL != 0)\n"
            "    return 0.0f;\n"
            "  const long long oh = th / %lldLL, ow = tw / %lldLL;\n"
            "  return oh < %lldLL && ow < %lldLL ? dy[((n * %lldLL + o) * %lldLL + oh) * %lldLL + ow] : 0.0f;\n"
            "}\n",
            name, (long long)c->KW, (long long)c->KW, (long long)c->KH, (long long)(c->KH * c->KW),
            (long long)c->W, (long long)c->W, (long long)c->H, (long long)(c->H * c->W), (long long)c->ph,
            (long long)c->dh, (long long)c->pw, (long long)c->dw, (long long)c->sh, (long long)c->sw,
            (long long)c->sh, (long long)c->sw, (long long)c->OH, (long long)c->OW, (long long)c->O,
            (long long)c->OH, (long long)c->OW);
}

// A pooled gradient's kernel `name`: its comment, dy, the other operand
// (as `other`), the result (as `out`) and the forward's argmax.
static void begin_pooled(CudaGen *g, const Kernel *k, const RtLib *d, const char *name, const char *what,
                         const char *other, const char *out) {
  char p0[64], p1[64], p2[64];
  cuda_begin_kernel(g, k, name, what);
  sb_printf(&g->src, "  const float *dy = %s, *%s = %s;\n  float *%s = %s;\n  const int *argmax = (const int *)aux[%d];\n",
            cuda_lib_ptr(&d->buf[0], "const float", p0, sizeof p0), other,
            cuda_lib_ptr(&d->buf[1], "const float", p1, sizeof p1), out,
            cuda_lib_ptr(&d->buf[2], "float", p2, sizeof p2), (int)d->aux_from);
}

// The weight gradient through a max pooling's argmax (the forward's,
// saved): one thread per element of dw, summing over the images and the
// pooled gradients in order, each nonzero one times the input its tap
// reads at the window of the output the argmax names.
static bool emit_conv_pooled(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x,
                             const ConvGeo *c) {
  if (!x->saved || d->aux_from < 0)
    return lib_fail(g, k, d, "no max pooling earlier in the program keeps the argmax it reads");
  char name[64], nb[32];
  cuda_fn_name(name, sizeof name, kernel, rt_lib_name(d->kind));
  int64_t KK = c->KH * c->KW, PP = rt_lib_numel(&d->buf[0], 1) / c->O;
  StrBuf *s = &g->src;
  begin_pooled(g, k, d, name, "conv2d_grad_weight_pooled: dw[o, c, kh, kw] = sum over (n, q) of dy[n, o, q] x[n, c, "
               "at the window of output argmax[n, o, q] + (kh, kw)]", "x", "dw");
  sb_printf(s,
            "  NNC_FOR_EACH(e, %lldLL) {\n"
            "    const long long kw = e %% %lldLL, kh = e / %lldLL %% %lldLL, ci = e / %lldLL %% %lldLL, o = e / %lldLL;\n"
            "    const long long ch = o / %lldLL * %lldLL + ci;   // the group's channel ci\n"
            "    float sum = 0.0f;\n"
            "    for (long long n = 0; n < %s; n++)\n"
            "      for (long long q = 0; q < %lldLL; q++) {\n"
            "        const long long i = (n * %lldLL + o) * %lldLL + q;\n"
            "        const int a = argmax[i];\n"
            "        const float v = dy[i];\n"
            "        if (a < 0 || a >= %lldLL || v == 0.0f)\n"
            "          continue;\n"
            "        const long long h = a / %lldLL * %lldLL - %lldLL + kh * %lldLL;\n"
            "        const long long w = a %% %lldLL * %lldLL - %lldLL + kw * %lldLL;\n"
            "        if (h >= 0 && h < %lldLL && w >= 0 && w < %lldLL)\n"
            "          sum += v * x[((n * %lldLL + ch) * %lldLL + h) * %lldLL + w];\n"
            "      }\n"
            "    dw[e] = sum;\n"
            "  }\n}\n",
            (long long)(c->O * c->Cg * KK), (long long)c->KW, (long long)c->KW, (long long)c->KH, (long long)KK,
            (long long)c->Cg, (long long)(c->Cg * KK), (long long)c->Og, (long long)c->Cg,
            images_expr(c->n, nb, sizeof nb), (long long)PP, (long long)c->O, (long long)PP,
            (long long)(c->OH * c->OW), (long long)c->OW, (long long)c->sh, (long long)c->ph, (long long)c->dh,
            (long long)c->OW, (long long)c->sw, (long long)c->pw, (long long)c->dw, (long long)c->H, (long long)c->W,
            (long long)c->C, (long long)c->H, (long long)c->W);
  cuda_launch_elems(g, kernel, name, (KExtent){c->O * c->Cg * KK, false});
  return !g->failed;
}

// The input gradient through a max pooling's argmax (the forward's,
// saved): one thread per element of dx, gathering over the taps whose
// output window covers it, for each such output the pooling windows (the
// forward's settings) that hold it, and in each its group's output
// channels: their gradient where their argmax is that output.
static bool emit_conv_pooled_input(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x,
                                   const ConvGeo *c) {
  if (!x->saved || d->aux_from < 0 || !x->from || x->from->kind != RL_MAXPOOL)
    return lib_fail(g, k, d, "no max pooling earlier in the program keeps the argmax it reads");
  const int64_t *pa = x->from->i;   // k_h k_w stride_h stride_w pad_h pad_w dil_h dil_w
  int64_t PH = d->buf[0].shape[2], PW = d->buf[0].shape[3], PP = PH * PW;
  char name[64], nb[32];
  cuda_fn_name(name, sizeof name, kernel, rt_lib_name(d->kind));
  StrBuf *s = &g->src;
  begin_pooled(g, k, d, name, "conv2d_grad_input_pooled: dx[n, c, h, w] = sum over (o, kh, kw) of w[o, c, kh, kw] "
               "times the pooled gradients whose argmax is the output whose window puts (kh, kw) on (h, w)", "wt", "dx");
  sb_printf(s,
            "  NNC_FOR_EACH(e, %s * %lldLL) {\n"
            "    const long long w = e %% %lldLL, h = e / %lldLL %% %lldLL, ch = e / %lldLL %% %lldLL, n = e / %lldLL;\n",
            images_expr(c->n, nb, sizeof nb), (long long)(c->C * c->H * c->W), (long long)c->W, (long long)c->W,
            (long long)c->H, (long long)(c->H * c->W), (long long)c->C, (long long)(c->C * c->H * c->W));
  // Per tap: the output whose window puts it on (h, w), the pooling
  // windows that hold that output (rows qh whose window reaches it: those
  // of qh*sh_p - pad_p + i*dil_p = oh, i < k_h), then the group's output
  // channels whose argmax there is that output.
  sb_printf(s,
            "    const long long grp = ch / %lldLL, ci = ch %% %lldLL;\n"
            "    float sum = 0.0f;\n"
            "    for (long long kh = 0; kh < %lldLL; kh++)\n"
            "      for (long long kw = 0; kw < %lldLL; kw++) {\n"
            "        const long long th = h + %lldLL - kh * %lldLL, tw = w + %lldLL - kw * %lldLL;\n",
            (long long)c->Cg, (long long)c->Cg, (long long)c->KH, (long long)c->KW, (long long)c->ph, (long long)c->dh,
            (long long)c->pw, (long long)c->dw);
  sb_printf(s,
            "        if (th < 0 || tw < 0 || th %% %lldLL || tw %% %lldLL || th / %lldLL >= %lldLL || "
            "tw / %lldLL >= %lldLL)\n"
            "          continue;\n"
            "        const long long oh = th / %lldLL, ow = tw / %lldLL, uh = oh + %lldLL, uw = ow + %lldLL;\n",
            (long long)c->sh, (long long)c->sw, (long long)c->sh, (long long)c->OH, (long long)c->sw, (long long)c->OW,
            (long long)c->sh, (long long)c->sw, (long long)pa[4], (long long)pa[5]);
  sb_printf(s,
            "        const long long qh0 = uh < %lldLL ? 0 : (uh - %lldLL + %lldLL - 1) / %lldLL;\n"
            "        const long long qw0 = uw < %lldLL ? 0 : (uw - %lldLL + %lldLL - 1) / %lldLL;\n"
            "        for (long long qh = qh0; qh <= uh / %lldLL && qh < %lldLL; qh++)\n"
            "          for (long long qw = qw0; qw <= uw / %lldLL && qw < %lldLL; qw++) {\n"
            "            if ((uh - qh * %lldLL) %% %lldLL || (uw - qw * %lldLL) %% %lldLL)\n"
            "              continue;   // a dilated window skips (oh, ow)\n"
            "            for (long long o = grp * %lldLL; o < (grp + 1) * %lldLL; o++) {\n"
            "              const long long at = (n * %lldLL + o) * %lldLL + qh * %lldLL + qw;\n"
            "              if (argmax[at] == (int)(oh * %lldLL + ow))\n"
            "                sum += dy[at] * wt[((o * %lldLL + ci) * %lldLL + kh) * %lldLL + kw];\n"
            "            }\n"
            "          }\n"
            "      }\n"
            "    dx[e] = sum;\n"
            "  }\n}\n",
            (long long)((pa[0] - 1) * pa[6]), (long long)((pa[0] - 1) * pa[6]), (long long)pa[2], (long long)pa[2],
            (long long)((pa[1] - 1) * pa[7]), (long long)((pa[1] - 1) * pa[7]), (long long)pa[3], (long long)pa[3],
            (long long)pa[2], (long long)PH, (long long)pa[3], (long long)PW, (long long)pa[2], (long long)pa[6],
            (long long)pa[3], (long long)pa[7], (long long)c->Og, (long long)c->Og, (long long)c->O, (long long)PP,
            (long long)PW, (long long)c->OW, (long long)c->Cg, (long long)c->KH, (long long)c->KW);
  cuda_launch_elems(g, kernel, name, times(c->n, c->C * c->H * c->W));
  return !g->failed;
}

// The forward as C[O, N*P] = w[O, C*KH*KW] im2col(x); the input gradient
// as dx[C, N*H*W] = w^T[C, O*KH*KW] col2im(dy); the weight gradient as
// dw[O, C*KH*KW] = dy[O, N*P] im2col(x)^T. Each fully overwrites its
// result (the reference zeroes it, then adds one sum). With groups, each
// is one product per group, blockIdx.z, over the group's C/G and O/G
// channels: the prologue moves the pointers to the group's.
bool cuda_emit_conv(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x) {
  if (d->kind != RL_CONV2D && d->kind != RL_CONV2D_GRAD_INPUT && d->kind != RL_CONV2D_GRAD_WEIGHT &&
      d->kind != RL_CONV2D_GRAD_WEIGHT_POOLED && d->kind != RL_CONV2D_GRAD_INPUT_POOLED)
    return lib_fail(g, k, d, "not a convolution");
  ConvGeo c = {0};
  if (!conv_geo(g, k, d, &c))
    return false;
  if (d->kind == RL_CONV2D_GRAD_WEIGHT_POOLED)
    return emit_conv_pooled(g, kernel, k, d, x, &c);
  if (d->kind == RL_CONV2D_GRAD_INPUT_POOLED)
    return emit_conv_pooled_input(g, kernel, k, d, x, &c);
  char name[64], helper[80], p0[64], p1[64], p2[64], p3[64], what[192], a_at[192], b_at[192], store[192];
  cuda_fn_name(name, sizeof name, kernel, rt_lib_name(d->kind));
  int64_t P = c.OH * c.OW, HW = c.H * c.W, KK = c.KH * c.KW;
  StrBuf pro = {0};
  sb_puts(&pro, "  const long long grp = blockIdx.z;   // the group\n");
  CudaGemm m = {.kernel = kernel, .k = k, .name = name, .what = what, .a_at = a_at, .b_at = b_at, .store = store};
  int nb = d->nbufs;
  cuda_lib_ptr(&d->buf[0], "const float", p0, sizeof p0);
  cuda_lib_ptr(&d->buf[1], "const float", p1, sizeof p1);
  cuda_lib_ptr(&d->buf[nb - 1], "float", p2, sizeof p2);
  switch (d->kind) {
  case RL_CONV2D:
    snprintf(helper, sizeof helper, "%s_im2col", name);
    emit_im2col(g, helper, &c);
    m.m = (KExtent){c.Og, false}, m.n = times(c.n, P), m.kdim = (KExtent){c.Cg * KK, false};
    sb_printf(&pro, "  const float *xp = %s + grp * %lldLL, *wp = %s + grp * %lldLL;\n  float *yp = %s + grp * %lldLL;\n",
              p0, (long long)(c.Cg * HW), p1, (long long)(c.Og * c.Cg * KK), p2, (long long)(c.Og * P));
    snprintf(a_at, sizeof a_at, "wp[r * K + kk]");
    snprintf(b_at, sizeof b_at, "%s(xp, kk, c)", helper);
    if (nb == 4) {
      sb_printf(&pro, "  const float *bp = %s + grp * %lldLL;\n", cuda_lib_ptr(&d->buf[2], "const float", p3, sizeof p3),
                (long long)c.Og);
      snprintf(store, sizeof store, "yp[(c / %lldLL * %lldLL + r) * %lldLL + c %% %lldLL] = v + bp[r];",
               (long long)P, (long long)c.O, (long long)P, (long long)P);
    } else {
      snprintf(store, sizeof store, "yp[(c / %lldLL * %lldLL + r) * %lldLL + c %% %lldLL] = v;", (long long)P,
               (long long)c.O, (long long)P, (long long)P);
    }
    snprintf(what, sizeof what, "conv2d: y[n, o, p] = sum over (c, kh, kw) of w[o, c, kh, kw] x[n, c, at p + (kh, kw)]%s",
             nb == 4 ? " + bias[o]" : "");
    break;
  case RL_CONV2D_GRAD_INPUT:
    snprintf(helper, sizeof helper, "%s_col2im", name);
    emit_col2im(g, helper, &c);
    m.m = (KExtent){c.Cg, false}, m.n = times(c.n, HW), m.kdim = (KExtent){c.Og * KK, false};
    sb_printf(&pro, "  const float *dyp = %s + grp * %lldLL, *wp = %s + grp * %lldLL;\n  float *dxp = %s + grp * %lldLL;\n",
              p0, (long long)(c.Og * P), p1, (long long)(c.Og * c.Cg * KK), p2, (long long)(c.Cg * HW));
    snprintf(a_at, sizeof a_at, "wp[(kk / %lldLL * %lldLL + r) * %lldLL + kk %% %lldLL]", (long long)KK,
             (long long)c.Cg, (long long)KK, (long long)KK);
    snprintf(b_at, sizeof b_at, "%s(dyp, kk, c)", helper);
    snprintf(store, sizeof store, "dxp[(c / %lldLL * %lldLL + r) * %lldLL + c %% %lldLL] = v;", (long long)HW,
             (long long)c.C, (long long)HW, (long long)HW);
    snprintf(what, sizeof what, "conv2d_grad_input: dx[n, c, h, w] = sum over (o, kh, kw) of w[o, c, kh, kw] dy[n, o, "
             "the output whose window puts (kh, kw) on (h, w)]");
    break;
  default:
    snprintf(helper, sizeof helper, "%s_im2col", name);
    emit_im2col(g, helper, &c);
    m.m = (KExtent){c.Og, false}, m.n = (KExtent){c.Cg * KK, false}, m.kdim = times(c.n, P);
    sb_printf(&pro, "  const float *dyp = %s + grp * %lldLL, *xp = %s + grp * %lldLL;\n  float *dwp = %s + grp * %lldLL;\n",
              p0, (long long)(c.Og * P), p1, (long long)(c.Cg * HW), p2, (long long)(c.Og * c.Cg * KK));
    snprintf(a_at, sizeof a_at, "dyp[(kk / %lldLL * %lldLL + r) * %lldLL + kk %% %lldLL]", (long long)P,
             (long long)c.O, (long long)P, (long long)P);
    snprintf(b_at, sizeof b_at, "%s(xp, c, kk)", helper);
    snprintf(store, sizeof store, "dwp[r * N + c] = v;");
    snprintf(what, sizeof what, "conv2d_grad_weight: dw[o, c, kh, kw] = sum over (n, p) of dy[n, o, p] x[n, c, at p + "
             "(kh, kw)]");
    break;
  }
  m.prologue = pro.data;
  m.grid_z = c.G;
  cuda_emit_gemm(g, &m);
  sb_free(&pro);
  return !g->failed;
}

//
// Pooling
//

typedef struct PoolGeo {
  KExtent n;                        // images
  int64_t C, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
} PoolGeo;

// The geometry of a pooling or its gradient, checked: x (N,C,H,W) and y
// (N,C,OH,OW) whichever buffers hold them (an average pooling's gradient
// has no x: its result has x's shape).
static bool pool_geo(CudaGen *g, const Kernel *k, const RtLib *d, PoolGeo *p) {
  int want = d->kind == RL_MAXPOOL_GRAD ? 3 : 2;
  if (d->nbufs != want)
    return lib_fail(g, k, d, "%d buffers, not %d", d->nbufs, want);
  bool grad = d->kind == RL_MAXPOOL_GRAD || d->kind == RL_AVGPOOL_GRAD || d->kind == RL_GLOBAL_AVGPOOL_GRAD;
  const RtLibBuf *x = grad ? &d->buf[d->nbufs - 1] : &d->buf[0], *y = grad ? &d->buf[0] : &d->buf[1];
  if (!shape_ok(x, 4, true) || !shape_ok(y, 4, true) || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1])
    return lib_fail(g, k, d, "the input and output must be (N,C,H,W) and (N,C,OH,OW)");
  if (d->kind == RL_MAXPOOL_GRAD && memcmp(&d->buf[1].shape, &d->buf[2].shape, sizeof d->buf[1].shape))
    return lib_fail(g, k, d, "the input and its gradient differ in shape");
  *p = (PoolGeo){.n = images(x), .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .kh = x->shape[2],
                 .kw = x->shape[3], .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
  if (d->kind != RL_GLOBAL_AVGPOOL && d->kind != RL_GLOBAL_AVGPOOL_GRAD) {
    const int64_t *a = d->i;
    bool max = d->kind == RL_MAXPOOL || d->kind == RL_MAXPOOL_GRAD;
    p->kh = a[0], p->kw = a[1], p->sh = a[2], p->sw = a[3], p->ph = a[4], p->pw = a[5];
    p->dh = max ? a[6] : 1, p->dw = max ? a[7] : 1;
  }
  if (p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->ph < 0 || p->pw < 0 || p->dh < 1 || p->dw < 1)
    return lib_fail(g, k, d, "window %lld x %lld, stride %lld x %lld, padding %lld x %lld, dilation %lld x %lld",
                    (long long)p->kh, (long long)p->kw, (long long)p->sh, (long long)p->sw, (long long)p->ph,
                    (long long)p->pw, (long long)p->dh, (long long)p->dw);
  p->OH = out_size(p->H, p->kh, p->sh, p->ph, p->dh);
  p->OW = out_size(p->W, p->kw, p->sw, p->pw, p->dw);
  if (p->OH < 1 || p->OW < 1 || y->shape[2] != p->OH || y->shape[3] != p->OW)
    return lib_fail(g, k, d, "an output of %lld x %lld for an input of %lld x %lld; the window gives %lld x %lld",
                    (long long)y->shape[2], (long long)y->shape[3], (long long)p->H, (long long)p->W,
                    (long long)p->OH, (long long)p->OW);
  if (p->H * p->W > 2147483647)
    return lib_fail(g, k, d, "a plane of %lld elements, past the int32 indexes of the argmax", (long long)(p->H * p->W));
  return true;
}

// Starts a loop over the elements of (N, C, rows, cols) in scope as nc,
// row, col: `e` the element.
static void open_elems(CudaGen *g, KExtent n, int64_t C, int64_t rows, int64_t cols, const char *row,
                       const char *col) {
  char nb[32];
  sb_printf(&g->src,
            "  NNC_FOR_EACH(e, %s * %lldLL) {\n"
            "    const long long %s = e %% %lldLL, %s = e / %lldLL %% %lldLL, nc = e / %lldLL;\n",
            images_expr(n, nb, sizeof nb), (long long)(C * rows * cols), col, (long long)cols, row, (long long)cols,
            (long long)rows, (long long)(rows * cols));
}

// The device function `name`(x plane, oh, ow, &best): the window's max
// and its index in the plane, as the reference scans it: taps in
// row-major order, each taking the place of the best so far if greater,
// or NaN, or the first in the plane (so the first of equal maxima wins,
// the last NaN wins, and the padding is never chosen); -inf and -1 for a
// window wholly in the padding.
static void emit_window_max(CudaGen *g, const char *name, const PoolGeo *p) {
  sb_printf(&g->src,
            "\n// a window's max and its index in the plane (-1: none), as k_maxpool2d_forward scans it\n"
            "__device__ __forceinline__ int %s(const float *xp, long long oh, long long ow, float *best_out) {\n"
            "  float best = nnc_bits(0xff800000u);\n"
            "  int at = -1;\n"
            "  for (long long kh = 0; kh < %lldLL; kh++) {\n"
            "    const long long h = oh * %lldLL - %lldLL + kh * %lldLL;\n"
            "    if (h < 0 || h >= %lldLL)\n"
            "      continue;\n"
            "    for (long long kw = 0; kw < %lldLL; kw++) {\n"
            "      const long long w = ow * %lldLL - %lldLL + kw * %lldLL;\n"
            "      if (w < 0 || w >= %lldLL)\n"
            "        continue;\n"
            "      const float v = xp[h * %lldLL + w];\n"
            "      if (v > best || v != v || at < 0) {\n"
            "        best = v;\n"
            "        at = (int)(h * %lldLL + w);\n"
            "      }\n"
            "    }\n"
            "  }\n"
            "  *best_out = best;\n"
            "  return at;\n"
            "}\n",
            name, (long long)p->kh, (long long)p->sh, (long long)p->ph, (long long)p->dh, (long long)p->H,
            (long long)p->kw, (long long)p->sw, (long long)p->pw, (long long)p->dw, (long long)p->W, (long long)p->W,
            (long long)p->W);
}

// The windows that hold input (h, w) of a plane, in the order of their
// outputs (oh, ow) (kh falling is oh rising), as loops around `body`,
// which has oh, ow and o (the output's index in the plane) in scope.
static void open_windows(CudaGen *g, const PoolGeo *p) {
  sb_printf(&g->src,
            "    for (long long kh = %lldLL; kh >= 0; kh--) {\n"
            "      const long long th = h + %lldLL - kh * %lldLL;\n"
            "      if (th < 0 || th %% %lldLL != 0 || th / %lldLL >= %lldLL)\n"
            "        continue;\n"
            "      const long long oh = th / %lldLL;\n"
            "      for (long long kw = %lldLL; kw >= 0; kw--) {\n"
            "        const long long tw = w + %lldLL - kw * %lldLL;\n"
            "        if (tw < 0 || tw %% %lldLL != 0 || tw / %lldLL >= %lldLL)\n"
            "          continue;\n"
            "        const long long ow = tw / %lldLL, o = nc * %lldLL + oh * %lldLL + ow;\n",
            (long long)(p->kh - 1), (long long)p->ph, (long long)p->dh, (long long)p->sh, (long long)p->sh,
            (long long)p->OH, (long long)p->sh, (long long)(p->kw - 1), (long long)p->pw, (long long)p->dw,
            (long long)p->sw, (long long)p->sw, (long long)p->OW, (long long)p->sw, (long long)(p->OH * p->OW),
            (long long)p->OW);
}

static void close_windows(CudaGen *g) { sb_puts(&g->src, "      }\n    }\n"); }

// The divisor of average pooling's window (oh, ow) and its rows [h0, h1),
// columns [w0, w1) clipped to the plane, as avg_window computes them
// (count_include_pad: the window clipped to the padded input only).
static void emit_avg_window(CudaGen *g, const PoolGeo *p, const char *indent) {
  sb_printf(&g->src,
            "%sconst long long hs = oh * %lldLL - %lldLL, ws = ow * %lldLL - %lldLL;\n"
            "%sconst long long he = hs + %lldLL < %lldLL ? hs + %lldLL : %lldLL;\n"
            "%sconst long long we = ws + %lldLL < %lldLL ? ws + %lldLL : %lldLL;\n"
            "%sconst long long divisor = (he - hs) * (we - ws);\n",
            indent, (long long)p->sh, (long long)p->ph, (long long)p->sw, (long long)p->pw, indent, (long long)p->kh,
            (long long)(p->H + p->ph), (long long)p->kh, (long long)(p->H + p->ph), indent, (long long)p->kw,
            (long long)(p->W + p->pw), (long long)p->kw, (long long)(p->W + p->pw), indent);
}

static bool emit_pool(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x) {
  PoolGeo p = {0};
  if (!pool_geo(g, k, d, &p))
    return false;
  StrBuf *s = &g->src;
  char name[64], helper[80], p0[64], p1[64], p2[64], nb[32];
  cuda_fn_name(name, sizeof name, kernel, rt_lib_name(d->kind));
  int64_t HW = p.H * p.W, P = p.OH * p.OW;
  cuda_lib_ptr(&d->buf[0], "const float", p0, sizeof p0);
  switch (d->kind) {
  case RL_MAXPOOL: {
    bool keep = d->aux >= 0 && x->training;   // only a gradient reads the argmax
    snprintf(helper, sizeof helper, "%s_window", name);
    emit_window_max(g, helper, &p);
    cuda_begin_kernel(g, k, name, keep ? "maxpool: each window's max, its index kept for the gradient" : "maxpool");
    sb_printf(s, "  const float *x = %s;\n  float *y = %s;\n", p0, cuda_lib_ptr(&d->buf[1], "float", p1, sizeof p1));
    if (keep)
      sb_printf(s, "  int *argmax = (int *)aux[%d];\n", (int)d->aux);
    open_elems(g, p.n, p.C, p.OH, p.OW, "oh", "ow");
    sb_printf(s, "    float best;\n    const int at = %s(x + nc * %lldLL, oh, ow, &best);\n", helper, (long long)HW);
    sb_printf(s, "    y[e] = best;\n%s", keep ? "    argmax[e] = at;\n" : "    (void)at;\n");
    sb_puts(s, "  }\n}\n");
    cuda_launch_elems(g, kernel, name, times(p.n, p.C * P));
    return true;
  }
  case RL_MAXPOOL_GRAD: {
    // dx per input element: the dy of the windows whose argmax it is, in
    // the order of the windows (as k_maxpool2d_backward adds them).
    bool saved = x->saved && d->aux_from >= 0;
    if (!saved) {
      snprintf(helper, sizeof helper, "%s_window", name);
      emit_window_max(g, helper, &p);
    }
    cuda_begin_kernel(g, k, name,
                      saved ? "maxpool_grad: dx gathers dy through the forward's argmax"
                            : "maxpool_grad: dx gathers dy through each window's argmax, found again");
    sb_printf(s, "  const float *dy = %s;\n  float *dx = %s;\n", p0, cuda_lib_ptr(&d->buf[2], "float", p2, sizeof p2));
    if (saved)
      sb_printf(s, "  const int *argmax = (const int *)aux[%d];\n", (int)d->aux_from);
    else
      sb_printf(s, "  const float *x = %s;\n  float best;\n", cuda_lib_ptr(&d->buf[1], "const float", p1, sizeof p1));
    open_elems(g, p.n, p.C, p.H, p.W, "h", "w");
    sb_printf(s, "    const int self = (int)(h * %lldLL + w);\n    float sum = 0.0f;\n", (long long)p.W);
    open_windows(g, &p);
    if (saved)
      sb_puts(s, "        if (argmax[o] == self)\n");
    else
      sb_printf(s, "        if (%s(x + nc * %lldLL, oh, ow, &best) == self)\n", helper, (long long)HW);
    sb_puts(s, "          sum += dy[o];\n");
    close_windows(g);
    sb_puts(s, "    dx[e] = sum;\n  }\n}\n");
    cuda_launch_elems(g, kernel, name, times(p.n, p.C * HW));
    return true;
  }
  case RL_AVGPOOL:
    cuda_begin_kernel(g, k, name, "avgpool: each window's mean in double (count_include_pad)");
    sb_printf(s, "  const float *x = %s;\n  float *y = %s;\n", p0, cuda_lib_ptr(&d->buf[1], "float", p1, sizeof p1));
    open_elems(g, p.n, p.C, p.OH, p.OW, "oh", "ow");
    emit_avg_window(g, &p, "    ");
    sb_printf(s,
              "    const long long h0 = hs < 0 ? 0 : hs, w0 = ws < 0 ? 0 : ws;\n"
              "    const long long h1 = he > %lldLL ? %lldLL : he, w1 = we > %lldLL ? %lldLL : we;\n"
              "    const float *xp = x + nc * %lldLL;\n"
              "    double sum = 0;\n"
              "    for (long long ih = h0; ih < h1; ih++)\n"
              "      for (long long iw = w0; iw < w1; iw++)\n"
              "        sum += xp[ih * %lldLL + iw];\n"
              "    y[e] = (float)(sum / (double)divisor);\n"
              "  }\n}\n",
              (long long)p.H, (long long)p.H, (long long)p.W, (long long)p.W, (long long)HW, (long long)p.W);
    cuda_launch_elems(g, kernel, name, times(p.n, p.C * P));
    return true;
  case RL_AVGPOOL_GRAD:
    cuda_begin_kernel(g, k, name, "avgpool_grad: dx gathers dy / divisor from the windows that hold it");
    sb_printf(s, "  const float *dy = %s;\n  float *dx = %s;\n", p0, cuda_lib_ptr(&d->buf[1], "float", p1, sizeof p1));
    open_elems(g, p.n, p.C, p.H, p.W, "h", "w");
    sb_puts(s, "    float sum = 0.0f;\n");
    open_windows(g, &p);
    emit_avg_window(g, &p, "        ");
    sb_puts(s, "        sum += dy[o] / (float)divisor;\n");
    close_windows(g);
    sb_puts(s, "    dx[e] = sum;\n  }\n}\n");
    cuda_launch_elems(g, kernel, name, times(p.n, p.C * HW));
    return true;
  case RL_GLOBAL_AVGPOOL:
    cuda_begin_kernel(g, k, name, "global_avgpool: each plane's mean, summed in double in order");
    sb_printf(s,
              "  const float *x = %s;\n  float *y = %s;\n"
              "  NNC_FOR_EACH(nc, %s * %lldLL) {\n"
              "    const float *xp = x + nc * %lldLL;\n"
              "    double sum = 0;\n"
              "    for (long long i = 0; i < %lldLL; i++)\n"
              "      sum += xp[i];\n"
              "    y[nc] = (float)(sum / (double)%lldLL);\n"
              "  }\n}\n",
              p0, cuda_lib_ptr(&d->buf[1], "float", p1, sizeof p1), images_expr(p.n, nb, sizeof nb), (long long)p.C,
              (long long)HW, (long long)HW, (long long)HW);
    cuda_launch_elems(g, kernel, name, times(p.n, p.C));
    return true;
  default:   // RL_GLOBAL_AVGPOOL_GRAD
    cuda_begin_kernel(g, k, name, "global_avgpool_grad: dx = dy / HW over each plane");
    sb_printf(s,
              "  const float *dy = %s;\n  float *dx = %s;\n"
              "  NNC_FOR_EACH(e, %s * %lldLL)\n"
              "    dx[e] = dy[e / %lldLL] / (float)%lldLL;\n"
              "}\n",
              p0, cuda_lib_ptr(&d->buf[1], "float", p1, sizeof p1), images_expr(p.n, nb, sizeof nb),
              (long long)(p.C * HW), (long long)HW, (long long)HW);
    cuda_launch_elems(g, kernel, name, times(p.n, p.C * HW));
    return true;
  }
}

//
// Batch normalization
//

// Threads of a batchnorm's block per channel.
#define BN_THREADS 256

// A float setting as a double constant, as the reference promotes the float.
static void put_float_as_double(StrBuf *s, double f) {
  float v = (float)f;
  sb_printf(s, "%a", (double)v);
}

// The batch statistics of channel c, as k_batchnorm_forward_range computes
// them: the mean and the biased variance in double (two passes, the
// threads' parts in a fixed tree), is = 1 / sqrt(var + eps). Leaves mu,
// var and is (doubles) in scope; x, cnt and nnc_shd must be.
static void emit_batch_stats(CudaGen *g, const char *C, const char *HW, double eps) {
  StrBuf *s = &g->src;
  sb_printf(s,
            "    double part = 0;\n"
            "    for (long long i = threadIdx.x; i < cnt; i += blockDim.x)\n"
            "      part += x[(i / %s * %s + c) * %s + i %% %s];\n"
            "    const double mu = nnc_block_sum_d(part, nnc_shd) / (double)cnt;\n"
            "    part = 0;\n"
            "    for (long long i = threadIdx.x; i < cnt; i += blockDim.x) {\n"
            "      const double t = x[(i / %s * %s + c) * %s + i %% %s] - mu;\n"
            "      part += NNC_DMUL(t, t);\n"
            "    }\n"
            "    const double var = nnc_block_sum_d(part, nnc_shd) / (double)cnt;\n"
            "    const double is = 1.0 / sqrt(var + ",
            HW, C, HW, HW, HW, C, HW, HW);
  put_float_as_double(s, eps);
  sb_puts(s, ");\n");
}

typedef struct BnGeo {
  KExtent n;
  int64_t C, HW;
} BnGeo;

static bool bn_geo(CudaGen *g, const Kernel *k, const RtLib *d, BnGeo *b) {
  int want = d->kind == RL_BATCHNORM ? 6 : d->kind == RL_BATCHNORM_GRAD ? 4 : 3;
  if (d->nbufs != want)
    return lib_fail(g, k, d, "%d buffers, not %d", d->nbufs, want);
  const RtLibBuf *x = &d->buf[d->kind == RL_BATCHNORM ? 0 : 1];
  if (!(shape_ok(x, 2, true) || shape_ok(x, 4, true)))
    return lib_fail(g, k, d, "the input must be (N,C) or (N,C,H,W)");
  if (!isfinite(d->f[0]) || !isfinite(d->f[1]))
    return lib_fail(g, k, d, "eps %g and momentum %g must be finite", d->f[0], d->f[1]);
  *b = (BnGeo){.n = images(x), .C = x->shape[1], .HW = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
  // the buffers of x's shape, and those of one value per channel
  int same[2] = {d->kind == RL_BATCHNORM ? 5 : 0, d->kind == RL_BATCHNORM_GRAD ? 3 : d->kind == RL_BATCHNORM ? 5 : 0};
  for (int j = 0; j < 2; j++) {
    const RtLibBuf *o = &d->buf[same[j]];
    if (o->ndim != x->ndim || memcmp(o->shape, x->shape, sizeof(int64_t) * x->ndim))
      return lib_fail(g, k, d, "buffer %d differs in shape from the input", same[j]);
  }
  for (int j = 0; j < d->nbufs; j++) {
    bool per_channel = d->kind == RL_BATCHNORM ? j >= 1 && j <= 4 : d->kind == RL_BATCHNORM_GRAD ? j == 2 : j == 2;
    if (per_channel && (d->buf[j].ndim != 1 || d->buf[j].shape[0] != b->C))
      return lib_fail(g, k, d, "buffer %d must hold one value per channel (%lld)", j, (long long)b->C);
  }
  return true;
}

static bool emit_batchnorm(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x) {
  BnGeo b = {0};
  if (!bn_geo(g, k, d, &b))
    return false;
  StrBuf *s = &g->src;
  char name[64], p[6][64], nb[32], C[32], HW[32];
  cuda_fn_name(name, sizeof name, kernel, rt_lib_name(d->kind));
  for (int j = 0; j < d->nbufs; j++)
    cuda_lib_ptr(&d->buf[j], j == d->nbufs - 1 ? "float" : "const float", p[j], sizeof p[j]);
  images_expr(b.n, nb, sizeof nb);
  snprintf(C, sizeof C, "%lldLL", (long long)b.C);
  snprintf(HW, sizeof HW, "%lldLL", (long long)b.HW);
  KExtent channels = {b.C, false};
  if (d->kind == RL_BATCHNORM && x->training && !b.n.batched && b.n.coef * b.HW < 2)
    return lib_fail(g, k, d, "training needs more than one value per channel, got %lld",
                    (long long)(b.n.coef * b.HW));
  if (d->kind == RL_BATCHNORM && !x->training) {   // the running statistics, elementwise
    cuda_begin_kernel(g, k, name, "batchnorm (eval): y = (x - running_mean) / sqrt(running_var + eps) gamma + beta");
    sb_printf(s,
              "  const float *x = %s, *gamma = %s, *beta = %s, *rm = %s, *rv = %s;\n  float *y = %s;\n"
              "  NNC_FOR_EACH(e, %s * %lldLL) {\n"
              "    const long long c = e / %s %% %s;\n"
              "    const double is = 1.0 / sqrt((double)rv[c] + ",
              p[0], p[1], p[2], p[3], p[4], p[5], nb, (long long)(b.C * b.HW), HW, C);
    put_float_as_double(s, d->f[0]);
    sb_puts(s, ");\n"
               "    const float mu = rm[c], scale = (float)(is * (double)gamma[c]);\n"
               "    y[e] = NNC_FMUL(x[e] - mu, scale) + beta[c];\n"
               "  }\n}\n");
    cuda_launch_elems(g, kernel, name, times(b.n, b.C * b.HW));
    return true;
  }
  // A block per channel: its statistics, then its elements.
  cuda_begin_kernel(g, k, name,
                    d->kind == RL_BATCHNORM ? "batchnorm (training): a block per channel: the batch statistics "
                                              "(kept for the gradient), the running ones updated, y normalized"
                    : d->kind == RL_BATCHNORM_GRAD ? "batchnorm_grad: a block per channel: dx"
                                                   : "batchnorm_grad_gamma: a block per channel: dgamma");
  sb_printf(s,
            "  __shared__ double nnc_shd[%d];\n"
            "  const long long cnt = %s * %s;\n",
            BN_THREADS, nb, HW);
  if (d->kind == RL_BATCHNORM) {
    sb_printf(s, "  const float *x = %s, *gamma = %s, *beta = %s;\n  float *rm = (float *)%s, *rv = (float *)%s;\n"
                 "  float *y = %s;\n", p[0], p[1], p[2], p[3], p[4], p[5]);
    if (d->aux >= 0)
      sb_printf(s, "  float *stats = (float *)aux[%d];   // mean[C], invstd[C]\n", (int)d->aux);
    sb_printf(s, "  for (long long c = blockIdx.x; c < %s; c += gridDim.x) {\n", C);
    emit_batch_stats(g, C, HW, d->f[0]);
    sb_puts(s, "    if (threadIdx.x == 0) {\n");
    if (d->aux >= 0)
      sb_printf(s, "      stats[c] = (float)mu;\n      stats[%s + c] = (float)is;\n", C);
    sb_puts(s, "      const double m = ");
    put_float_as_double(s, d->f[1]);
    sb_puts(s, ";\n"
               "      rm[c] = (float)(NNC_DMUL(1.0 - m, (double)rm[c]) + NNC_DMUL(m, mu));\n"
               "      rv[c] = (float)(NNC_DMUL(1.0 - m, (double)rv[c]) + NNC_DMUL(m, var) * (double)cnt / (double)(cnt - 1));   // unbiased\n"
               "    }\n"
               "    const float muf = (float)mu, scale = (float)(is * (double)gamma[c]), shift = beta[c];\n"
               "    for (long long i = threadIdx.x; i < cnt; i += blockDim.x) {\n");
    sb_printf(s, "      const long long at = (i / %s * %s + c) * %s + i %% %s;\n", HW, C, HW, HW);
    sb_puts(s, "      y[at] = NNC_FMUL(x[at] - muf, scale) + shift;\n"
               "    }\n"
               "  }\n}\n");
    cuda_launch(g, kernel, name, channels, 1, 1, 1, BN_THREADS, true);
    return true;
  }
  // The gradients: the statistics from the forward's slot, or found again
  // as the forward finds them (rounded to floats, as it keeps them).
  bool saved = x->saved && d->aux_from >= 0;
  sb_printf(s, "  const float *dy = %s, *x = %s;\n", p[0], p[1]);
  if (d->kind == RL_BATCHNORM_GRAD)
    sb_printf(s, "  const float *gamma = %s;\n  float *dx = %s;\n", p[2], p[3]);
  else
    sb_printf(s, "  float *dgamma = %s;\n", p[2]);
  if (saved)
    sb_printf(s, "  const float *stats = (const float *)aux[%d];   // mean[C], invstd[C]\n", (int)d->aux_from);
  sb_printf(s, "  for (long long c = blockIdx.x; c < %s; c += gridDim.x) {\n", C);
  if (saved) {
    sb_printf(s, "    const float muf = stats[c], isf = stats[%s + c];\n    double part;\n", C);
  } else {
    emit_batch_stats(g, C, HW, d->f[0]);
    sb_puts(s, "    (void)var;\n    const float muf = (float)mu, isf = (float)is;\n");
  }
  sb_printf(s,
            "    const double m = muf, s = isf;\n"
            "    part = 0;\n"
            "    double part2 = 0;   // sum(dy), sum(dy xhat)\n"
            "    for (long long i = threadIdx.x; i < cnt; i += blockDim.x) {\n"
            "      const long long at = (i / %s * %s + c) * %s + i %% %s;\n"
            "      part += dy[at];\n"
            "      part2 += NNC_DMUL((double)dy[at], NNC_DMUL(x[at] - m, s));\n"
            "    }\n"
            "    const double sdy = nnc_block_sum_d(part, nnc_shd), sdyx = nnc_block_sum_d(part2, nnc_shd);\n",
            HW, C, HW, HW);
  if (d->kind == RL_BATCHNORM_GRAD_GAMMA) {
    sb_puts(s, "    (void)sdy;\n"
               "    if (threadIdx.x == 0)\n"
               "      dgamma[c] = (float)sdyx;\n"
               "  }\n}\n");
  } else {
    sb_printf(s,
              "    // dx = k (cnt dy - sum(dy) - xhat sum(dy xhat)), k = gamma invstd / cnt, in floats\n"
              "    const double kc = (double)gamma[c] * s / (double)cnt;\n"
              "    const float a = (float)(kc * (double)cnt), b = (float)(-kc * sdyx), d = (float)(-kc * sdy);\n"
              "    for (long long i = threadIdx.x; i < cnt; i += blockDim.x) {\n"
              "      const long long at = (i / %s * %s + c) * %s + i %% %s;\n"
              "      dx[at] = NNC_FMUL(a, dy[at]) + NNC_FMUL(b, NNC_FMUL(x[at] - muf, isf)) + d;\n"
              "    }\n"
              "  }\n}\n",
              HW, C, HW, HW);
  }
  cuda_launch(g, kernel, name, channels, 1, 1, 1, BN_THREADS, true);
  return true;
}

bool cuda_emit_pool_bn(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x) {
  switch (d->kind) {
  case RL_MAXPOOL: case RL_MAXPOOL_GRAD: case RL_AVGPOOL: case RL_AVGPOOL_GRAD: case RL_GLOBAL_AVGPOOL:
  case RL_GLOBAL_AVGPOOL_GRAD:
    return emit_pool(g, kernel, k, d, x) && !g->failed;
  case RL_BATCHNORM: case RL_BATCHNORM_GRAD: case RL_BATCHNORM_GRAD_GAMMA:
    return emit_batchnorm(g, kernel, k, d, x) && !g->failed;
  default:
    return lib_fail(g, k, d, "not a pooling or a batchnorm");
  }
}
