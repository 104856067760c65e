// cuda_lib.c: library kernels (RtLib descriptors) as CUDA C (cuda_gen.h):
// dropout, softmax and log-softmax, embedding, the losses and their gradients, and
// the SGD and Adam updates, with the arithmetic of runtime/lib.c and the
// reference kernels (runtime/kernels.c, kernels_train.c) operation for
// operation; convolutions, poolings and batchnorms are cuda_conv.c's.
//
// Nothing here uses atomics: a dropout's mask is a hash of its index, a
// softmax row is one thread's, and a loss is summed by one block in a
// fixed tree, so every run gives the same bytes. Where the reference rounds
// a product before adding it, the code says so (NNC_FMUL and friends):
// nvcc would otherwise fuse the two into one fma, another rounding.
#include "cuda_gen.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void put_double(StrBuf *s, double d) {
  if (d != d || d - d != 0.0)
    cuda_put_float(s, (float)d);   // (an infinity or a NaN converts exactly)
  else
    sb_printf(s, "%a", d);
}

// What one kernel of a descriptor is being written with.
typedef struct Lib {
  CudaGen *g;
  int kernel;
  const Kernel *k;
  const RtLib *d;
  const CudaLibCtx *x;
  StrBuf *s;
} Lib;

// The elements of buffer b as an extent (coef, times B when batched).
static KExtent numel_extent(const RtLibBuf *b) {
  KExtent e = {1, false};
  for (int i = 0; i < b->ndim; i++) {
    if (b->shape[i] == RT_BATCH)
      e.batched = true;
    else
      e.coef *= b->shape[i];
  }
  return e;
}

static bool same_extent(KExtent a, KExtent b) { return a.coef == b.coef && a.batched == b.batched; }

// "const float *x = ((float *)(arena + 64LL));"
static void put_ptr(Lib *l, const char *type, const char *name, int buf) {
  char p[96];
  const char *cast = strcmp(type, "const float") == 0 ? "float" : strcmp(type, "const int") == 0 ? "int" : type;
  sb_printf(l->s, "  %s *%s = %s;\n", type, name, cuda_lib_ptr(&l->d->buf[buf], cast, p, sizeof p));
}

static void put_numel(Lib *l, const char *name, int buf) {
  char n[64];
  sb_printf(l->s, "  const long long %s = %s;\n", name, cuda_lib_numel(&l->d->buf[buf], n, sizeof n));
}

// Opens kernel `what` of the descriptor: its name into name.
static void begin(Lib *l, char *name, size_t size, const char *what, const char *comment) {
  cuda_fn_name(name, size, l->kernel, what);
  cuda_begin_kernel(l->g, l->k, name, comment);
}

static bool fail(Lib *l, const char *why) {
  return cuda_fail(l->g, "library kernel %d (%s, node %d): %s", l->kernel, rt_lib_name(l->d->kind), l->d->node, why);
}

// Checks that the descriptor has nbufs buffers, of up to RT_MAX_DIMS
// dimensions each.
static bool check_bufs(Lib *l, int lo, int hi) {
  if (l->d->nbufs < lo || l->d->nbufs > hi)
    return fail(l, "a descriptor with the wrong number of buffers");
  for (int i = 0; i < l->d->nbufs; i++)
    if (l->d->buf[i].ndim < 0 || l->d->buf[i].ndim > RT_MAX_DIMS)
      return fail(l, "a buffer with more dimensions than a descriptor holds");
  return true;
}

//
// Dropout
//

// Gaussian noise: y = x + std * z in a training step with the random layers
// on (k_noise_forward's Box-Muller, the same float operations), else the
// identity.
static bool emit_noise(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  if (!check_bufs(l, 2, 2) || !same_extent(numel_extent(&d->buf[0]), numel_extent(&d->buf[1])))
    return fail(l, "gaussian_noise needs x and y of the same size");
  float std = (float)d->f[0];
  bool noisy = l->x->training && std > 0.0f;
  if (l->x->training && (l->x->key < 0 || l->x->key >= CUDA_MAX_KEYS))
    return fail(l, "a gaussian_noise without its key in the step block");
  char name[64], what[96];
  snprintf(what, sizeof what, "gaussian_noise (std = %g)%s", (double)std, noisy ? "" : ": the identity");
  begin(l, name, sizeof name, "gaussian_noise", what);
  put_ptr(l, "const float", "x", 0);
  put_ptr(l, "float", "y", 1);
  put_numel(l, "n", 1);
  if (!noisy) {
    sb_puts(s, "  NNC_FOR_EACH(i, n) y[i] = x[i];\n}\n");
    cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[1]));
    return true;
  }
  sb_printf(s,
            "  const unsigned long long key = NNC_KEY(%d);\n"
            "  const int on = NNC_TRAINING && NNC_DROPOUT;\n"
            "  NNC_FOR_EACH(i, n) {\n"
            "    if (!on) {   // the random layers off this step: the identity\n"
            "      y[i] = x[i];\n"
            "      continue;\n"
            "    }\n"
            "    const float u1 = (float)((nnc_dropout_hash(key, 2 * i) >> 40) + 1ULL) * (1.0f / 16777216.0f);\n"
            "    const float u2 = (float)(nnc_dropout_hash(key, 2 * i + 1) >> 40) * (1.0f / 16777216.0f);\n"
            "    y[i] = x[i] + ",
            l->x->key);
  cuda_put_float(s, std);
  sb_puts(s, " * (sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2));\n  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[1]));
  return true;
}

// The forward: y = x * (keep * scale), keep = hash(key, i) >> 40 >=
// ceil(p 2^24) (k_dropout_forward), the mask kept for the gradient; the
// identity where no mask applies this step (evaluation, dropout off, or a
// program that is not a training step); p <= 0 the identity with a full
// mask.
static bool emit_dropout(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  if (!check_bufs(l, 2, 2) || !same_extent(numel_extent(&d->buf[0]), numel_extent(&d->buf[1])))
    return fail(l, "dropout needs x and y of the same size");
  float p = (float)d->f[0], scale = k_dropout_scale(p);
  bool masked = l->x->training && d->aux >= 0;   // run_dropout: a mask only in a training step
  if (masked && (l->x->key < 0 || l->x->key >= CUDA_MAX_KEYS))
    return fail(l, "a dropout without its key in the step block");
  char name[64], what[96];
  snprintf(what, sizeof what, "dropout (p = %g)%s", (double)p, masked ? ", its mask kept in its slot" : ": the identity");
  begin(l, name, sizeof name, "dropout", what);
  put_ptr(l, "const float", "x", 0);
  put_ptr(l, "float", "y", 1);
  put_numel(l, "n", 1);
  if (!masked) {
    sb_puts(s, "  NNC_FOR_EACH(i, n) y[i] = x[i];\n}\n");
    cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[1]));
    return true;
  }
  uint64_t least = p >= 1.0f ? (uint64_t)1 << 24 : (uint64_t)ceil((double)p * 16777216.0);
  sb_printf(s,
            "  unsigned char *mask = (unsigned char *)aux[%d];\n"
            "  const unsigned long long key = NNC_KEY(%d);\n"
            "  const int on = NNC_TRAINING && NNC_DROPOUT;\n"
            "  NNC_FOR_EACH(i, n) {\n"
            "    if (!on) {   // no mask this step: the identity\n"
            "      y[i] = x[i];\n"
            "      continue;\n"
            "    }\n",
            d->aux, l->x->key);
  if (p <= 0.0f) {
    sb_puts(s, "    mask[i] = 1;\n    y[i] = x[i];\n");
  } else {
    sb_printf(s,
              "    const unsigned char keep = (nnc_dropout_hash(key, i) >> 40) >= %lluULL;\n"
              "    mask[i] = keep;\n"
              "    y[i] = x[i] * ((float)keep * ",
              (unsigned long long)least);
    cuda_put_float(s, scale);
    sb_puts(s, ");\n");
  }
  sb_puts(s, "  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[1]));
  return true;
}

// The gradient: dx = dy * (mask ? scale : 0) through the forward's mask
// where it applied this step (k_dropout_backward into a zeroed dx: 0 +
// the product, which makes -0 +0 as there), else dx = dy.
static bool emit_dropout_grad(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  if (!check_bufs(l, 2, 2) || !same_extent(numel_extent(&d->buf[0]), numel_extent(&d->buf[1])))
    return fail(l, "dropout_grad needs dy and dx of the same size");
  bool masked = l->x->saved && d->aux_from >= 0;
  float scale = k_dropout_scale((float)d->f[0]);
  char name[64];
  begin(l, name, sizeof name, "dropout_grad",
        masked ? "dropout's gradient, through the forward's mask" : "dropout's gradient: the identity (no mask kept)");
  put_ptr(l, "const float", "dy", 0);
  put_ptr(l, "float", "dx", 1);
  put_numel(l, "n", 1);
  if (!masked) {
    sb_puts(s, "  NNC_FOR_EACH(i, n) dx[i] = dy[i];\n}\n");
  } else {
    sb_printf(s,
              "  const unsigned char *mask = (const unsigned char *)aux[%d];\n"
              "  const int on = NNC_TRAINING && NNC_DROPOUT;\n"
              "  NNC_FOR_EACH(i, n) dx[i] = on ? 0.0f + dy[i] * (mask[i] ? ",
              d->aux_from);
    cuda_put_float(s, scale);
    sb_puts(s, " : 0.0f) : dy[i];\n}\n");
  }
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[1]));
  return true;
}

//
// Softmax and log-softmax: a thread per row of the axis
//

// [outer, C, inner] around dimension axis of b, as C expressions, and the
// rows (outer * inner) as an extent.
static KExtent around_axis(const RtLibBuf *b, int axis, char *outer, char *C, char *inner, size_t size) {
  int64_t fo = 1, fi = 1;
  bool bo = false, bi = false;
  for (int i = 0; i < b->ndim; i++) {
    if (i == axis)
      continue;
    bool *batched = i < axis ? &bo : &bi;
    int64_t *f = i < axis ? &fo : &fi;
    if (b->shape[i] == RT_BATCH)
      *batched = true;
    else
      *f *= b->shape[i];
  }
  snprintf(outer, size, bo ? "(B * %lldLL)" : "%lldLL", (long long)fo);
  snprintf(inner, size, bi ? "(B * %lldLL)" : "%lldLL", (long long)fi);
  cuda_lib_dim(b, axis, C, size);
  return (KExtent){fo * fi, bo || bi};
}

static bool emit_softmax(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  bool grad = d->kind == RL_SOFTMAX_GRAD || d->kind == RL_LOG_SOFTMAX_GRAD;
  bool log = d->kind == RL_LOG_SOFTMAX || d->kind == RL_LOG_SOFTMAX_GRAD;
  if (!check_bufs(l, grad ? 3 : 2, grad ? 3 : 2))
    return false;
  int r = d->nbufs - 1;
  const RtLibBuf *rb = &d->buf[r];
  if (d->i[0] < 0 || d->i[0] >= rb->ndim)
    return fail(l, "the axis is not a dimension of the result");
  for (int i = 0; i < r; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(rb)))
      return fail(l, "operands and result of different sizes");
  char outer[48], C[48], inner[48], name[64];
  KExtent rows = around_axis(rb, (int)d->i[0], outer, C, inner, sizeof outer);
  begin(l, name, sizeof name, rt_lib_name(d->kind), NULL);
  if (grad) {
    put_ptr(l, "const float", "dy", 0);
    put_ptr(l, "const float", "y", 1);
    put_ptr(l, "float", "dx", 2);
  } else {
    put_ptr(l, "const float", "x", 0);
    put_ptr(l, "float", "y", 1);
  }
  sb_printf(s,
            "  const long long outer = %s, C = %s, inner = %s;\n"
            "  NNC_FOR_EACH(e, outer * inner) {\n"
            "    const long long base = e / inner * C * inner + e %% inner;\n",
            outer, C, inner);
  if (!grad) {   // the maximum (NaNs skipped), the sum of exp in double
    sb_puts(s, "    float m = nnc_bits(0xff800000u);\n"
               "    for (long long c = 0; c < C; c++)\n"
               "      if (x[base + c * inner] > m)\n"
               "        m = x[base + c * inner];\n"
               "    double sum = 0;\n"
               "    for (long long c = 0; c < C; c++)\n"
               "      sum += exp((double)x[base + c * inner] - m);\n");
    if (log)
      sb_puts(s, "    const double lse = m + log(sum);\n"
                 "    for (long long c = 0; c < C; c++)\n"
                 "      y[base + c * inner] = (float)((double)x[base + c * inner] - lse);\n");
    else
      sb_puts(s, "    for (long long c = 0; c < C; c++)\n"
                 "      y[base + c * inner] = (float)(exp((double)x[base + c * inner] - m) / sum);\n");
  } else if (!log) {   // dx = y (dy - sum(dy y)), into a zeroed dx
    sb_puts(s, "    double dot = 0;\n"
               "    for (long long c = 0; c < C; c++)\n"
               "      dot += NNC_DMUL((double)dy[base + c * inner], (double)y[base + c * inner]);\n"
               "    for (long long c = 0; c < C; c++) {\n"
               "      const long long k = base + c * inner;\n"
               "      dx[k] = 0.0f + (float)(y[k] * (dy[k] - dot));\n"
               "    }\n");
  } else {   // dx = dy - exp(y) sum(dy), into a zeroed dx
    sb_puts(s, "    double sum = 0;\n"
               "    for (long long c = 0; c < C; c++)\n"
               "      sum += dy[base + c * inner];\n"
               "    for (long long c = 0; c < C; c++) {\n"
               "      const long long k = base + c * inner;\n"
               "      dx[k] = 0.0f + (float)(dy[k] - NNC_DMUL(exp((double)y[k]), sum));\n"
               "    }\n");
  }
  sb_puts(s, "  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, rows);
  return true;
}

//
// Layer normalization and its gradient: a thread per row of D values, the
// sums in double and in order, as k_layernorm_forward / _backward
//

static bool emit_layernorm(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  bool grad = d->kind == RL_LAYERNORM_GRAD;
  if (!check_bufs(l, grad ? 3 : 2, grad ? 3 : 2))
    return false;
  const RtLibBuf *rb = &d->buf[d->nbufs - 1];
  if (d->i[0] < 1 || d->i[0] > rb->ndim)
    return fail(l, "dims is not a count of the result's last dimensions");
  for (int i = 0; i < d->nbufs - 1; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(rb)))
      return fail(l, "operands and result of different sizes");
  int64_t D = 1;
  for (int i = rb->ndim - (int)d->i[0]; i < rb->ndim; i++) {
    if (rb->shape[i] == RT_BATCH)
      return fail(l, "a row that holds the batch dimension");
    D *= rb->shape[i];
  }
  KExtent rows = numel_extent(rb);
  rows.coef /= D;
  char name[64];
  begin(l, name, sizeof name, rt_lib_name(d->kind), NULL);
  if (grad) {
    put_ptr(l, "const float", "dy", 0);
    put_ptr(l, "const float", "x", 1);
    put_ptr(l, "float", "dx", 2);
  } else {
    put_ptr(l, "const float", "x", 0);
    put_ptr(l, "float", "y", 1);
  }
  sb_printf(s, "  const long long D = %lldLL;\n  const double eps = ", (long long)D);
  put_double(s, d->f[0]);
  sb_printf(s, ";\n  NNC_FOR_EACH(r, %s%lldLL%s) {\n", rows.batched ? "B * " : "", (long long)rows.coef, "");
  sb_puts(s, "    const float *xr = x + r * D;\n"
             "    double sx = 0, v = 0;\n"
             "    for (long long j = 0; j < D; j++)\n"
             "      sx += xr[j];\n"
             "    const double m = sx / (double)D;\n"
             "    for (long long j = 0; j < D; j++) {\n"
             "      const double t = xr[j] - m;\n"
             "      v += NNC_DMUL(t, t);\n"
             "    }\n"
             "    const double rstd = 1.0 / sqrt(v / (double)D + eps);\n");
  if (!grad)
    sb_puts(s, "    for (long long j = 0; j < D; j++)\n"
               "      y[r * D + j] = (float)NNC_DMUL(xr[j] - m, rstd);\n");
  else
    sb_puts(s, "    const float *gr = dy + r * D;\n"
               "    double sg = 0, sgx = 0;\n"
               "    for (long long j = 0; j < D; j++) {\n"
               "      sg += gr[j];\n"
               "      sgx += NNC_DMUL((double)gr[j], NNC_DMUL(xr[j] - m, rstd));\n"
               "    }\n"
               "    sg /= (double)D;\n"
               "    sgx /= (double)D;\n"
               "    for (long long j = 0; j < D; j++)\n"
               "      dx[r * D + j] = (float)NNC_DMUL(rstd, gr[j] - sg - NNC_DMUL(NNC_DMUL(xr[j] - m, rstd), sgx));\n");
  sb_puts(s, "  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, rows);
  return true;
}

//
// Losses: output, target -> the mean loss, or d loss / d output
//

#define LOSS_THREADS 256

static bool is_class_loss(int kind) {
  return kind == RL_CROSS_ENTROPY || kind == RL_NLL || kind == RL_CROSS_ENTROPY_GRAD || kind == RL_NLL_GRAD;
}

// logsumexp of row (C values) into double lse, as the reference's: the
// maximum first, an infinite one the answer.
static const char logsumexp[] =
    "      double m = nnc_bits(0xff800000u);\n"
    "      for (long long c = 0; c < C; c++)\n"
    "        if (row[c] > m)\n"
    "          m = row[c];\n"
    "      double lse = m;\n"
    "      if (nnc_finite(m)) {\n"
    "        double sum = 0;\n"
    "        for (long long c = 0; c < C; c++)\n"
    "          sum += exp(row[c] - m);\n"
    "        lse = m + log(sum);\n"
    "      }\n";

// The forward: one block whose threads each sum a stride of the samples
// (or elements) in double, their parts added in a fixed tree; thread 0
// writes the loss, the step's loss and, in a training step whose loss is
// not finite, that no update applies (rt_lib_run). A label outside [0, C)
// (the host checks the labels before the step; the reference stops there)
// makes the loss NaN, and so the step update nothing, rather than read
// outside the row.
static void emit_loss_forward(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  char name[64], N[48];
  begin(l, name, sizeof name, rt_lib_name(d->kind), d->loss ? "the step's loss, summed in double by one block" : NULL);
  put_ptr(l, "const float", "y", 0);
  put_ptr(l, is_class_loss(d->kind) ? "const int" : "const float", "t", 1);
  put_ptr(l, "float", "out", 2);
  sb_printf(s, "  __shared__ double nnc_sh[%d];\n  double part = 0;\n", LOSS_THREADS);
  if (is_class_loss(d->kind)) {
    sb_printf(s,
              "  const long long N = %s, C = %lldLL;\n"
              "  for (long long i = threadIdx.x; i < N; i += blockDim.x) {\n"
              "    const int label = t[i];\n"
              "    const float *row = y + i * C;\n"
              "    if (label < 0 || label >= C) {\n"
              "      part += nnc_bits(0x7fc00000u);\n"
              "    } else {\n",
              cuda_lib_dim(&d->buf[0], 0, N, sizeof N), (long long)(d->buf[0].ndim == 2 ? d->buf[0].shape[1] : 1));
    if (d->kind == RL_CROSS_ENTROPY && d->f[0] != 0) {   // label smoothing, as k_cross_entropy_smooth_forward
      sb_printf(s, "%s      double sum = 0;\n      for (long long c = 0; c < C; c++)\n        sum += row[c];\n"
                   "      part += NNC_DMUL(1.0 - ", logsumexp);
      put_double(s, d->f[0]);
      sb_puts(s, ", lse - row[label]) + NNC_DMUL(");
      put_double(s, d->f[0]);
      sb_puts(s, ", lse - sum / (double)C);\n");
    } else if (d->kind == RL_CROSS_ENTROPY) {
      sb_printf(s, "%s      part += lse - row[label];\n", logsumexp);
    } else
      sb_puts(s, "      part -= row[label];\n");
    sb_puts(s, "    }\n  }\n");
  } else {
    put_numel(l, "N", 0);
    sb_puts(s, "  for (long long i = threadIdx.x; i < N; i += blockDim.x) {\n");
    switch (d->kind) {
    case RL_MSE:
      sb_puts(s, "    const double e = (double)y[i] - t[i];\n    part += NNC_DMUL(e, e);\n");
      break;
    case RL_L1: sb_puts(s, "    part += fabs((double)y[i] - t[i]);\n"); break;
    default:   // bce_with_logits: max(x, 0) - x t + log(1 + exp(-|x|))
      sb_puts(s, "    const double xi = y[i];\n"
                 "    part += fmax(xi, 0.0) - NNC_DMUL(xi, (double)t[i]) + log1p(exp(-fabs(xi)));\n");
      break;
    }
    sb_puts(s, "  }\n");
  }
  sb_puts(s, "  const double total = nnc_block_sum_d(part, nnc_sh);\n"
             "  if (threadIdx.x == 0) {\n"
             "    const float loss = (float)(total / (double)N);\n"
             "    out[0] = loss;\n");
  if (d->loss) {
    sb_printf(s, "    NNC_LOSS += %.17g * (double)loss;   // the step's loss: the weighted sum of its terms\n",
              d->loss_weight);
    if (l->x->training) {
      sb_puts(s, "    if (!nnc_finite((double)loss)) {   // no update applies this step\n      NNC_APPLY = 0;\n");
      const KProgram *p = l->g->p;
      if (p && p->scalars) {
        const KBufInfo *b = &p->buf[p->g->nnodes];
        sb_printf(s, "      NNC_F(%s, %lldLL)[%d] = 0.0f;\n", b->space == KB_STATE ? "state" : "arena",
                  (long long)b->offset, KS_APPLY);
      }
      sb_puts(s, "    }\n");
    }
  }
  sb_puts(s, "  }\n}\n");
  cuda_launch(l->g, l->kernel, name, (KExtent){1, false}, 1, 1, 1, LOSS_THREADS, true);
}

// The gradients, into a zeroed output as the reference's (0 + the value:
// -0 becomes +0 as there): a thread per sample (cross_entropy), else per
// element. A sample whose label is outside [0, C) gets NaN.
static void emit_loss_backward(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  char name[64], N[48];
  begin(l, name, sizeof name, rt_lib_name(d->kind), NULL);
  put_ptr(l, "const float", "y", 0);
  put_ptr(l, is_class_loss(d->kind) ? "const int" : "const float", "t", 1);
  put_ptr(l, "float", "dx", 2);
  KExtent work = numel_extent(&d->buf[0]);
  if (is_class_loss(d->kind))
    sb_printf(s, "  const long long N = %s, C = %lldLL;\n", cuda_lib_dim(&d->buf[0], 0, N, sizeof N),
              (long long)(d->buf[0].ndim == 2 ? d->buf[0].shape[1] : 1));
  else
    put_numel(l, "n", 0);
  switch (d->kind) {
  case RL_CROSS_ENTROPY_GRAD:   // dx = 1/N (softmax - onehot), or with label smoothing e
                                // 1/N (softmax - (1 - e) onehot - e/C)
    work = d->buf[0].shape[0] == RT_BATCH ? (KExtent){1, true} : (KExtent){d->buf[0].shape[0], false};
    if (d->f[0] != 0) {
      sb_puts(s, "  const double keep = 1.0 - ");
      put_double(s, d->f[0]);
      sb_puts(s, ", off = ");
      put_double(s, d->f[0]);
      sb_puts(s, " / (double)C;\n");
    }
    sb_printf(s,
              "  const double scale = 1.0 / (double)N;\n"
              "  NNC_FOR_EACH(i, N) {\n"
              "    const int label = t[i];\n"
              "    const float *row = y + i * C;\n"
              "    if (label < 0 || label >= C) {\n"
              "      for (long long c = 0; c < C; c++)\n"
              "        dx[i * C + c] = nnc_bits(0x7fc00000u);\n"
              "    } else {\n"
              "%s"
              "      for (long long c = 0; c < C; c++)\n"
              "        dx[i * C + c] = 0.0f + (float)(scale * (exp(row[c] - lse) - %s));\n"
              "    }\n"
              "  }\n}\n",
              logsumexp, d->f[0] != 0 ? "NNC_DMUL(keep, (double)(c == label)) - off" : "(double)(c == label)");
    break;
  case RL_NLL_GRAD:   // dx[i, label] = -1/N
    sb_puts(s, "  const float g = (float)(-1.0 / (double)N);\n"
               "  (void)y;\n"
               "  NNC_FOR_EACH(e, N * C) {\n"
               "    const int label = t[e / C];\n"
               "    dx[e] = label < 0 || label >= C ? nnc_bits(0x7fc00000u) : e % C == label ? 0.0f + g : 0.0f;\n"
               "  }\n}\n");
    break;
  case RL_MSE_GRAD:   // 2/n (y - t)
    sb_puts(s, "  const double scale = 2.0 / (double)n;\n"
               "  NNC_FOR_EACH(i, n) dx[i] = 0.0f + (float)(scale * ((double)y[i] - t[i]));\n}\n");
    break;
  case RL_L1_GRAD:   // 1/n sign(y - t), 0 where equal
    sb_puts(s, "  const float scale = (float)(1.0 / (double)n);\n"
               "  NNC_FOR_EACH(i, n) dx[i] = 0.0f + scale * (float)((y[i] > t[i]) - (y[i] < t[i]));\n}\n");
    break;
  default:   // bce_with_logits: 1/n (sigmoid(y) - t)
    sb_puts(s, "  const double scale = 1.0 / (double)n;\n"
               "  NNC_FOR_EACH(i, n) dx[i] = 0.0f + (float)(scale * (1.0 / (1.0 + exp(-(double)y[i])) - t[i]));\n"
               "}\n");
    break;
  }
  cuda_launch_elems(l->g, l->kernel, name, work);
}

static bool emit_loss(Lib *l) {
  const RtLib *d = l->d;
  if (!check_bufs(l, 3, 3))
    return false;
  const RtLibBuf *y = &d->buf[0], *t = &d->buf[1];
  bool grad = d->kind >= RL_CROSS_ENTROPY_GRAD;
  if (is_class_loss(d->kind)) {   // y (N, C) or (N), labels (N)
    if (y->ndim < 1 || y->ndim > 2 || t->ndim < 1 || t->shape[0] != y->shape[0] ||
        numel_extent(t).coef != (t->shape[0] == RT_BATCH ? 1 : t->shape[0]))
      return fail(l, "a class loss needs outputs (N, C) and N labels");
  } else if (!same_extent(numel_extent(y), numel_extent(t))) {
    return fail(l, "output and target of different sizes");
  }
  if (grad ? !same_extent(numel_extent(&d->buf[2]), numel_extent(y)) : numel_extent(&d->buf[2]).coef < 1)
    return fail(l, "a result of the wrong size");
  if (grad)
    emit_loss_backward(l);
  else
    emit_loss_forward(l);
  return true;
}

//
// Embedding
//

// The forward: a thread per element of y, the row of w its token names;
// an index outside [0, vocab) (the host's readers refuse those before the
// step; the reference stops there) gives NaN, so the loss is not finite and
// the step updates nothing, rather than read outside the table. The
// gradient: a thread per column of dw, which zeroes it and then walks the
// tokens in order (k_embedding_backward's sums, without atomics), passing
// over an index outside the table.
static bool emit_embedding(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  bool grad = d->kind == RL_EMBEDDING_GRAD;
  if (!check_bufs(l, 3, 3))
    return false;
  const RtLibBuf *x = &d->buf[grad ? 1 : 0], *w = &d->buf[grad ? 2 : 1], *y = &d->buf[grad ? 0 : 2];
  KExtent nx = numel_extent(x), ny = numel_extent(y);
  if (w->ndim != 2 || ny.batched != nx.batched || ny.coef != nx.coef * w->shape[1])
    return fail(l, "an embedding needs a table (vocab, dim) and dim values per index");
  char name[64];
  begin(l, name, sizeof name, rt_lib_name(d->kind),
        grad ? "embedding_grad: a thread per column, the tokens in order" : "embedding: the rows the indexes name");
  put_ptr(l, grad ? "const float" : "float", "y", grad ? 0 : 2);
  put_ptr(l, "const int", "x", grad ? 1 : 0);
  put_ptr(l, grad ? "float" : "const float", "w", grad ? 2 : 1);
  put_numel(l, "n", grad ? 1 : 0);
  sb_printf(s, "  const long long vocab = %lldLL, dim = %lldLL;\n", (long long)w->shape[0], (long long)w->shape[1]);
  if (!grad) {
    sb_puts(s, "  NNC_FOR_EACH(e, n * dim) {\n"
               "    const int v = x[e / dim];\n"
               "    y[e] = v < 0 || v >= vocab ? nnc_bits(0x7fc00000u) : w[(long long)v * dim + e % dim];\n"
               "  }\n}\n");
    cuda_launch_elems(l->g, l->kernel, name, ny);
    return true;
  }
  sb_puts(s, "  NNC_FOR_EACH(j, dim) {\n"
             "    for (long long v = 0; v < vocab; v++)\n"
             "      w[v * dim + j] = 0.0f;\n"
             "    for (long long t = 0; t < n; t++) {\n"
             "      const int v = x[t];\n"
             "      if (v >= 0 && v < vocab)\n"
             "        w[(long long)v * dim + j] += y[t * dim + j];\n"
             "    }\n"
             "  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, (KExtent){w->shape[1], false});
  return true;
}

//
// Optimizer updates, in place, when the step's loss was finite
//

static bool emit_sgd(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  const double *f = d->f;
  if (!check_bufs(l, 2, 3))
    return false;
  if (f[1] != 0 && d->nbufs != 3)
    return fail(l, "SGD with momentum needs its momentum buffer");
  for (int i = 1; i < d->nbufs; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(&d->buf[0])))
      return fail(l, "parameter, gradient and momentum buffer of different sizes");
  char name[64];
  begin(l, name, sizeof name, "sgd_step", "an SGD update (k_sgd_step)");
  put_ptr(l, "float", "p", 0);
  put_ptr(l, "const float", "g", 1);
  if (d->nbufs == 3) {
    put_ptr(l, "float", "buf", 2);
    sb_puts(s, "  (void)buf;\n");
  }
  put_numel(l, "n", 0);
  sb_puts(s, "  if (!NNC_APPLY)   // the loss is not finite: nothing changes\n    return;\n"
             "  const float neg_lr = (float)-NNC_LR64;\n"
             "  const long long t = NNC_T;\n"
             "  (void)t;\n"
             "  NNC_FOR_EACH(i, n) {\n"
             "    float gi = g[i];\n");
  if (f[3] != 0) {
    sb_puts(s, "    gi = fmaf(p[i], ");
    cuda_put_float(s, (float)f[3]);
    sb_puts(s, ", gi);\n");
  }
  if (f[1] != 0) {
    float mom = (float)f[1], keep = (float)(1.0 - f[2]);
    sb_puts(s, "    if (t == 1)   // the buffer starts as a copy of g\n      buf[i] = gi;\n    else\n"
               "      buf[i] = fmaf(gi, ");
    cuda_put_float(s, keep);
    sb_puts(s, ", NNC_FMUL(buf[i], ");
    cuda_put_float(s, mom);
    sb_puts(s, "));\n");
    if (d->i[0]) {
      sb_puts(s, "    gi = fmaf(buf[i], ");
      cuda_put_float(s, mom);
      sb_puts(s, ", gi);\n");
    } else {
      sb_puts(s, "    gi = buf[i];\n");
    }
  }
  sb_puts(s, "    p[i] = fmaf(gi, neg_lr, p[i]);\n  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[0]));
  return true;
}

static bool emit_adam(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  const double *f = d->f;   // lr beta1 beta2 eps weight_decay
  if (!check_bufs(l, 4, 4))
    return false;
  for (int i = 1; i < 4; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(&d->buf[0])))
      return fail(l, "parameter, gradient and moments of different sizes");
  char name[64];
  begin(l, name, sizeof name, d->i[0] ? "adamw_step" : "adam_step",
        d->i[0] ? "an AdamW update (k_adam_step)" : "an Adam update (k_adam_step)");
  put_ptr(l, "float", "p", 0);
  put_ptr(l, "const float", "g", 1);
  put_ptr(l, "float", "m", 2);
  put_ptr(l, "float", "v", 3);
  put_numel(l, "n", 0);
  // The per-step scalars in double, as k_adam_step (and Python) computes them.
  sb_puts(s, "  if (!NNC_APPLY)   // the loss is not finite: nothing changes\n    return;\n"
             "  const double lr = NNC_LR64, t = (double)NNC_T;\n"
             "  const float neg_step_size = (float)-(lr / (1.0 - pow(");
  put_double(s, f[1]);
  sb_puts(s, ", t)));\n  const float bc2_sqrt = (float)sqrt(1.0 - pow(");
  put_double(s, f[2]);
  sb_puts(s, ", t));\n  const float decay = (float)(1.0 - NNC_DMUL(lr, ");
  put_double(s, f[4]);
  sb_puts(s, "));\n  (void)decay;\n  NNC_FOR_EACH(i, n) {\n    float gi = g[i];\n");
  if (d->i[0]) {
    sb_puts(s, "    p[i] = NNC_FMUL(p[i], decay);\n");
  } else if (f[4] != 0) {
    sb_puts(s, "    gi = fmaf(p[i], ");
    cuda_put_float(s, (float)f[4]);
    sb_puts(s, ", gi);\n");
  }
  // m = lerp(m, g, 1 - beta1) as torch_lerpf, its branch taken here.
  float w1 = (float)(1.0 - f[1]), b2 = (float)f[2], w2 = (float)(1.0 - f[2]), eps = (float)f[3];
  if (fabsf(w1) < 0.5f) {
    sb_puts(s, "    m[i] = fmaf(");
    cuda_put_float(s, w1);
    sb_puts(s, ", gi - m[i], m[i]);\n");
  } else {
    sb_puts(s, "    m[i] = fmaf(");
    cuda_put_float(s, w1 - 1.0f);
    sb_puts(s, ", gi - m[i], gi);\n");
  }
  sb_puts(s, "    v[i] = NNC_FADD(NNC_FMUL(v[i], ");
  cuda_put_float(s, b2);
  sb_puts(s, "), NNC_FMUL(NNC_FMUL(");
  cuda_put_float(s, w2);
  sb_puts(s, ", gi), gi));\n    const float denom = NNC_FADD(NNC_FDIV(NNC_FSQRT(v[i]), bc2_sqrt), ");
  cuda_put_float(s, eps);
  sb_puts(s, ");\n    p[i] = NNC_FADD(p[i], NNC_FDIV(NNC_FMUL(neg_step_size, m[i]), denom));\n  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[0]));
  return true;
}

// torch.lerp(a, b, w) into dst as torch_lerpf, its branch taken here.
static void put_lerp(StrBuf *s, const char *dst, const char *b, float w) {
  sb_printf(s, "    %s = fmaf(", dst);
  cuda_put_float(s, fabsf(w) < 0.5f ? w : w - 1.0f);
  sb_printf(s, ", %s - %s, %s);\n", b, dst, fabsf(w) < 0.5f ? dst : b);
}

static bool emit_rmsprop(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  const double *f = d->f;   // lr alpha eps weight_decay momentum
  bool mom = f[4] > 0, centered = d->i[0];
  if (!check_bufs(l, 3 + mom + centered, 3 + mom + centered))
    return false;
  for (int i = 1; i < d->nbufs; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(&d->buf[0])))
      return fail(l, "parameter, gradient and state of different sizes");
  char name[64];
  begin(l, name, sizeof name, "rmsprop_step", "an RMSprop update (k_rmsprop_step)");
  put_ptr(l, "float", "p", 0);
  put_ptr(l, "const float", "g", 1);
  put_ptr(l, "float", "sq", 2);
  int b = 3;
  if (mom)
    put_ptr(l, "float", "buf", b++);
  if (centered)
    put_ptr(l, "float", "ga", b++);
  put_numel(l, "n", 0);
  sb_puts(s, "  if (!NNC_APPLY)   // the loss is not finite: nothing changes\n    return;\n"
             "  const float neg_lr = (float)-NNC_LR64;\n"
             "  NNC_FOR_EACH(i, n) {\n    float gi = g[i];\n");
  if (f[3] != 0) {
    sb_puts(s, "    gi = fmaf(p[i], ");
    cuda_put_float(s, (float)f[3]);
    sb_puts(s, ", gi);\n");
  }
  float w = (float)(1.0 - f[1]);
  sb_puts(s, "    sq[i] = NNC_FADD(NNC_FMUL(sq[i], ");
  cuda_put_float(s, (float)f[1]);
  sb_puts(s, "), NNC_FMUL(NNC_FMUL(");
  cuda_put_float(s, w);
  sb_puts(s, ", gi), gi));\n");
  if (centered) {
    put_lerp(s, "ga[i]", "gi", w);
    sb_puts(s, "    const float var = NNC_FADD(sq[i], NNC_FMUL(NNC_FMUL(-1.0f, ga[i]), ga[i]));\n");
  } else {
    sb_puts(s, "    const float var = sq[i];\n");
  }
  sb_puts(s, "    const float avg = NNC_FADD(NNC_FSQRT(var), ");
  cuda_put_float(s, (float)f[2]);
  sb_puts(s, ");\n");
  if (mom) {
    sb_puts(s, "    buf[i] = NNC_FADD(NNC_FMUL(buf[i], ");
    cuda_put_float(s, (float)f[4]);
    sb_puts(s, "), NNC_FDIV(gi, avg));\n    p[i] = fmaf(buf[i], neg_lr, p[i]);\n  }\n}\n");
  } else {
    sb_puts(s, "    p[i] = NNC_FADD(p[i], NNC_FDIV(NNC_FMUL(neg_lr, gi), avg));\n  }\n}\n");
  }
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[0]));
  return true;
}

static bool emit_adagrad(Lib *l) {
  const RtLib *d = l->d;
  StrBuf *s = l->s;
  const double *f = d->f;   // lr lr_decay weight_decay initial_accumulator_value eps
  if (!check_bufs(l, 3, 3))
    return false;
  for (int i = 1; i < 3; i++)
    if (!same_extent(numel_extent(&d->buf[i]), numel_extent(&d->buf[0])))
      return fail(l, "parameter, gradient and sum of different sizes");
  char name[64];
  begin(l, name, sizeof name, "adagrad_step", "an Adagrad update (k_adagrad_step)");
  put_ptr(l, "float", "p", 0);
  put_ptr(l, "const float", "g", 1);
  put_ptr(l, "float", "sum", 2);
  put_numel(l, "n", 0);
  // -clr in double, as k_adagrad_neg_clr (and Python) computes it.
  sb_puts(s, "  if (!NNC_APPLY)   // the loss is not finite: nothing changes\n    return;\n"
             "  const float neg_clr = (float)-(NNC_LR64 / (1.0 + NNC_DMUL((double)(NNC_T - 1), ");
  put_double(s, f[1]);
  sb_puts(s, ")));\n  NNC_FOR_EACH(i, n) {\n    float gi = g[i];\n");
  if (f[2] != 0) {
    sb_puts(s, "    gi = fmaf(p[i], ");
    cuda_put_float(s, (float)f[2]);
    sb_puts(s, ", gi);\n");
  }
  sb_puts(s, "    sum[i] = NNC_FADD(sum[i], NNC_FMUL(gi, gi));\n"
             "    p[i] = NNC_FADD(p[i], NNC_FDIV(NNC_FMUL(neg_clr, gi), NNC_FADD(NNC_FSQRT(sum[i]), ");
  cuda_put_float(s, (float)f[4]);
  sb_puts(s, ")));\n  }\n}\n");
  cuda_launch_elems(l->g, l->kernel, name, numel_extent(&d->buf[0]));
  return true;
}

//
// The dispatch
//

bool cuda_emit_lib(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x) {
  static const CudaLibCtx none = {.key = -1};
  Lib l = {g, kernel, k, d, x ? x : &none, &g->src};
  if (!d)
    return cuda_fail(g, "library kernel %d has no descriptor", kernel);
  switch (d->kind) {
  case RL_CONV2D: case RL_CONV2D_GRAD_INPUT: case RL_CONV2D_GRAD_WEIGHT: case RL_CONV2D_GRAD_WEIGHT_POOLED:
  case RL_CONV2D_GRAD_INPUT_POOLED:
    return cuda_emit_conv(g, kernel, k, d, l.x);
  case RL_MAXPOOL: case RL_MAXPOOL_GRAD: case RL_AVGPOOL: case RL_AVGPOOL_GRAD: case RL_GLOBAL_AVGPOOL:
  case RL_GLOBAL_AVGPOOL_GRAD: case RL_BATCHNORM: case RL_BATCHNORM_GRAD: case RL_BATCHNORM_GRAD_GAMMA:
    return cuda_emit_pool_bn(g, kernel, k, d, l.x);
  case RL_DROPOUT: return emit_dropout(&l);
  case RL_GAUSSIAN_NOISE: return emit_noise(&l);
  case RL_DROPOUT_GRAD: return emit_dropout_grad(&l);
  case RL_SOFTMAX: case RL_LOG_SOFTMAX: case RL_SOFTMAX_GRAD: case RL_LOG_SOFTMAX_GRAD: return emit_softmax(&l);
  case RL_LAYERNORM: case RL_LAYERNORM_GRAD: return emit_layernorm(&l);
  case RL_CROSS_ENTROPY: case RL_NLL: case RL_MSE: case RL_L1: case RL_BCE_WITH_LOGITS: case RL_CROSS_ENTROPY_GRAD:
  case RL_NLL_GRAD: case RL_MSE_GRAD: case RL_L1_GRAD: case RL_BCE_WITH_LOGITS_GRAD:
    return emit_loss(&l);
  case RL_EMBEDDING: case RL_EMBEDDING_GRAD: return emit_embedding(&l);
  case RL_SGD_STEP: return emit_sgd(&l);
  case RL_ADAM_STEP: return emit_adam(&l);
  case RL_RMSPROP_STEP: return emit_rmsprop(&l);
  case RL_ADAGRAD_STEP: return emit_adagrad(&l);
  default: return cuda_fail(g, "library kernel %d: no CUDA C for kind %d", kernel, (int)d->kind);
  }
}
