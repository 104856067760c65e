// ref.c: the ref backend, the oracle: runs a model's graph one node at a
// time, one plain C kernel per node.
//
// Each node gets a buffer sized for the largest batch; PARAM and BUFFER
// nodes get persistent ones. A run takes the nodes its entry point needs
// (pass_needed) and calls one kernel per node, with the batch dimension
// IR_N replaced by the batch at hand. Backward kernels accumulate, so a
// gradient node's buffer is zeroed before its kernel runs. It shares no
// code with the cpu backend's library kernels (runtime/lib.c): the oracle
// stays independent of what it checks.
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Elements of n for batch B.
static int64_t numel(const IrNode *n, int64_t B) { return ir_numel(n, B); }

static KShape kshape(const IrNode *n, int64_t B) {
  KShape s = {.ndim = n->ndim};
  for (int i = 0; i < n->ndim; i++)
    s.dim[i] = n->shape[i] == IR_N ? B : n->shape[i];
  return s;
}

static float *F(const Exec *ex, const IrNode *n) { return ex->buf[n->id]; }

//
// Kernels, one per op
//

static KConv2d conv_geometry(const IrNode *x, const IrNode *w, const IrAttr *a, int64_t B) {
  return (KConv2d){.N = x->shape[0] == IR_N ? B : x->shape[0], .C = x->shape[1], .H = x->shape[2],
                   .W = x->shape[3], .O = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                   .sh = a->i[0], .sw = a->i[1], .ph = a->i[2], .pw = a->i[3], .dh = a->i[4], .dw = a->i[5],
                   .G = a->i[6]};
}

static KPool2d pool_geometry(const IrNode *x, const IrNode *n, int64_t B) {
  const int64_t *a = n->attr.i;
  bool max = n->op == IR_MAXPOOL || n->op == IR_MAXPOOL_GRAD;
  return (KPool2d){.N = x->shape[0] == IR_N ? B : x->shape[0], .C = x->shape[1], .H = x->shape[2],
                   .W = x->shape[3], .kh = a[0], .kw = a[1], .sh = a[2], .sw = a[3], .ph = a[4],
                   .pw = a[5], .dh = max ? a[6] : 1, .dw = max ? a[7] : 1};
}

// [outer, C, inner] around dimension axis of n.
static void around_axis(const IrNode *n, int axis, int64_t B, int64_t *outer, int64_t *C, int64_t *inner) {
  KShape s = kshape(n, B);
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++)
    *outer *= s.dim[i];
  *C = s.dim[axis];
  for (int i = axis + 1; i < s.ndim; i++)
    *inner *= s.dim[i];
}

// Batchnorm sizes: [N, C, HW] for x [N, C] or [N, C, H, W].
static void bn_sizes(const IrNode *x, int64_t B, int64_t *N, int64_t *C, int64_t *HW) {
  KShape s = kshape(x, B);
  *N = s.dim[0];
  *C = s.dim[1];
  *HW = s.ndim == 4 ? s.dim[2] * s.dim[3] : 1;
}

// The batch mean and inverse standard deviation of x, exactly as the
// training forward computes them.
static void bn_stats(const IrNode *x, const float *xv, int64_t B, float eps, float *mean, float *invstd) {
  int64_t N, C, HW;
  bn_sizes(x, B, &N, &C, &HW);
  k_batchnorm_batch_stats(mean, invstd, xv, N, C, HW, eps);
}

// The batch mean and 1/std (2 x C floats) a batchnorm gradient node n
// uses: its forward's, saved this step, or else computed again exactly as
// the forward computes them into *fresh, which the caller frees.
static float *bn_grad_stats(Exec *ex, const IrNode *n, int64_t B, float **fresh) {
  const IrNode *x = n->src[1];
  int f = ex->fwd[n->id];
  *fresh = NULL;
  if (f >= 0 && ex->done[f])
    return ex->bn[f];
  int64_t C = x->shape[1];
  *fresh = xmalloc(sizeof(float) * 2 * C);
  bn_stats(x, F(ex, x), B, (float)n->attr.f[0], *fresh, *fresh + C);
  return *fresh;
}

// Batchnorm (training: with the batch statistics, saved into stats) or
// one of its gradients (with the statistics stats), on channels [c0, c1)
// only: each channel's work is its own. A gradient's part of its output is
// zeroed first (its kernel accumulates).
static void batchnorm_channels(Exec *ex, const IrNode *n, int64_t B, bool training, float *stats, int64_t c0,
                               int64_t c1) {
  const IrNode *x = n->op == IR_BATCHNORM ? n->src[0] : n->src[1];
  int64_t N, C, HW;
  bn_sizes(x, B, &N, &C, &HW);
  float *out = F(ex, n), *mean = stats, *invstd = stats ? stats + C : NULL;
  if (n->op == IR_BATCHNORM) {
    float eps = (float)n->attr.f[0];
    float *gamma = F(ex, n->src[1]), *beta = F(ex, n->src[2]), *rm = F(ex, n->src[3]), *rv = F(ex, n->src[4]);
    if (training)
      k_batchnorm_forward_range(out, mean, invstd, rm, rv, F(ex, x), gamma, beta, N, C, HW, eps,
                                (float)n->attr.f[1], c0, c1);
    else
      k_batchnorm_forward_eval_range(out, F(ex, x), gamma, beta, rm, rv, N, C, HW, eps, c0, c1);
    return;
  }
  const float *g = F(ex, n->src[0]);
  if (n->op == IR_BATCHNORM_GRAD) {
    for (int64_t s = 0; s < N; s++)
      memset(out + (s * C + c0) * HW, 0, sizeof(float) * (c1 - c0) * HW);
    k_batchnorm_backward_range(out, NULL, NULL, g, F(ex, x), mean, invstd, F(ex, n->src[2]), N, C, HW, c0, c1);
  } else {
    memset(out + c0, 0, sizeof(float) * (c1 - c0));
    k_batchnorm_backward_range(NULL, out, NULL, g, F(ex, x), mean, invstd, NULL, N, C, HW, c0, c1);
  }
}

// Max pooling, or its gradient, for samples [lo, hi) of a batch of B: the
// forward keeps each window's argmax; the gradient (into a zeroed dx)
// routes through the forward's argmax, or finds it again when the forward
// did not run in this step.
// dx += the gradient g of max pooling n's output (n: the pooling or its
// gradient, for the settings) routed to x's elements, rows [lo, hi), through
// the argmax its forward f saved this step, or else found again.
static void maxpool_dx(Exec *ex, float *dx, const float *g, const IrNode *x, const IrNode *n, int f, int64_t B,
                       int64_t lo, int64_t hi) {
  KPool2d geo = pool_geometry(x, n, B);
  geo.N = hi - lo;
  int64_t OH, OW;
  OH = k_out_size(geo.H, geo.kh, geo.sh, geo.ph, geo.dh), OW = k_out_size(geo.W, geo.kw, geo.sw, geo.pw, geo.dw);
  int64_t in = numel(x, 1), out = geo.C * OH * OW, k = (hi - lo) * out;
  dx += lo * in, g += lo * out;
  if (f >= 0 && ex->done[f]) {
    k_maxpool2d_backward(dx, g, ex->argmax[f] + lo * out, &geo);
    return;
  }
  float *y = xmalloc(sizeof(float) * (k > 0 ? k : 1));
  int32_t *at = xmalloc(sizeof(int32_t) * (k > 0 ? k : 1));
  k_maxpool2d_forward(y, at, F(ex, x) + lo * in, &geo);
  k_maxpool2d_backward(dx, g, at, &geo);
  free(y);
  free(at);
}

static void maxpool_rows(Exec *ex, const IrNode *n, int64_t B, int64_t lo, int64_t hi) {
  if (n->op == IR_MAXPOOL) {
    const IrNode *x = n->src[0];
    KPool2d geo = pool_geometry(x, n, B);
    geo.N = hi - lo;
    k_maxpool2d_forward(F(ex, n) + lo * numel(n, 1), ex->training ? ex->argmax[n->id] + lo * numel(n, 1) : NULL,
                        F(ex, x) + lo * numel(x, 1), &geo);   // only a gradient reads the argmax
    return;
  }
  const IrNode *g = n->src[0], *x = n->src[1];
  maxpool_dx(ex, F(ex, n), F(ex, g), x, n, ex->fwd[n->id], B, lo, hi);
}

// The rows a layer normalization normalizes: all but its last attr.i[0] dimensions.
static int64_t layernorm_rows(const IrNode *n, int64_t B) {
  KShape s = kshape(n, B);
  int64_t rows = 1;
  for (int i = 0; i < s.ndim - (int)n->attr.i[0]; i++)
    rows *= s.dim[i];
  return rows;
}

static void run_matmul(Exec *ex, const IrNode *n, int64_t B) {
  const IrNode *a = n->src[0], *b = n->src[1];
  KShape as = kshape(a, B), bs = kshape(b, B);
  bool ta = n->attr.i[0], tb = n->attr.i[1];
  int64_t last = as.dim[as.ndim - 1];   // a transposed a[..., K, M] folds its leading dimensions into K
  int64_t K = ta ? k_numel(&as) / last : last;
  int64_t M = ta ? last : k_numel(&as) / K;
  int64_t P = tb ? bs.dim[0] : bs.dim[bs.ndim - 1];
  k_matmul_forward(F(ex, n), F(ex, a), F(ex, b), 1, M, K, P, ta, tb);
}

// Losses and their gradients: (output, target).
static double run_loss(Exec *ex, const IrNode *n, int64_t B, bool grad) {
  const IrNode *y = n->src[0], *t = n->src[1];
  int64_t k = numel(y, B), C = y->ndim == 2 ? y->shape[1] : 1;
  const float *yv = F(ex, y);
  const void *tv = ex->buf[t->id];
  float *d = grad ? F(ex, n) : NULL;
  switch (n->op) {
  case IR_CROSS_ENTROPY: return k_cross_entropy_smooth_forward(yv, tv, B, C, n->attr.f[0]);
  case IR_NLL: return k_nll_forward(yv, tv, B, C);
  case IR_MSE: return k_mse_forward(yv, tv, k);
  case IR_L1: return k_l1_forward(yv, tv, k);
  case IR_BCE_WITH_LOGITS: return k_bce_with_logits_forward(yv, tv, k);
  case IR_CROSS_ENTROPY_GRAD: k_cross_entropy_smooth_backward(d, 1.0f, yv, tv, B, C, n->attr.f[0]); return 0;
  case IR_NLL_GRAD: k_nll_backward(d, 1.0f, tv, B, C); return 0;
  case IR_MSE_GRAD: k_mse_backward(d, NULL, 1.0f, yv, tv, k); return 0;
  case IR_L1_GRAD: k_l1_backward(d, NULL, 1.0f, yv, tv, k); return 0;
  case IR_BCE_WITH_LOGITS_GRAD: k_bce_with_logits_backward(d, NULL, 1.0f, yv, tv, k); return 0;
  default: unreachable();
  }
}

static void run_step(Exec *ex, const IrNode *n, double lr) {
  const IrNode *p = n->src[0];
  int64_t k = numel(p, 1);
  const double *f = n->attr.f;
  if (n->op == IR_SGD_STEP) {
    KSgd o = {.lr = lr, .momentum = f[1], .dampening = f[2], .weight_decay = f[3], .nesterov = n->attr.i[0]};
    k_sgd_step(F(ex, p), n->nsrc == 3 ? F(ex, n->src[2]) : NULL, F(ex, n->src[1]), k, &o, ex->steps);
  } else if (n->op == IR_RMSPROP_STEP) {
    KRmsprop o = {.lr = lr, .alpha = f[1], .eps = f[2], .weight_decay = f[3], .momentum = f[4],
                  .centered = n->attr.i[0]};
    int s = 3;
    float *buf = o.momentum > 0 ? F(ex, n->src[s++]) : NULL;
    float *ga = o.centered ? F(ex, n->src[s++]) : NULL;
    k_rmsprop_step(F(ex, p), F(ex, n->src[2]), buf, ga, F(ex, n->src[1]), k, &o);
  } else if (n->op == IR_ADAGRAD_STEP) {
    KAdagrad o = {.lr = lr, .lr_decay = f[1], .weight_decay = f[2], .eps = f[4]};
    k_adagrad_step(F(ex, p), F(ex, n->src[2]), F(ex, n->src[1]), k, &o, ex->steps);
  } else {
    KAdam o = {.lr = lr, .beta1 = f[1], .beta2 = f[2], .eps = f[3], .weight_decay = f[4], .decoupled = n->attr.i[0]};
    k_adam_step(F(ex, p), F(ex, n->src[2]), F(ex, n->src[3]), F(ex, n->src[1]), k, &o, ex->steps);
  }
}

// Sums g [N, C, ...] over every dimension but 1.
static void channel_sum(float *out, const IrNode *g, const float *gv, int64_t B) {
  int64_t outer, C, inner;
  around_axis(g, 1, B, &outer, &C, &inner);
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < inner; i++)
        s += gv[(o * C + c) * inner + i];
    out[c] = (float)s;
  }
}

// The indexes x of an embedding (or its gradient) whose table has vocab
// rows, checked before anything is read: an index outside the table comes
// from the data, so the message names the input, the sample and the value.
static const int32_t *embedding_indexes(const Exec *ex, const IrNode *x, int64_t B, int64_t vocab) {
  const int32_t *idx = ex->buf[x->id];
  int64_t per = numel(x, 1), bad = k_embedding_check(idx, numel(x, B), vocab);
  if (bad >= 0)
    nnc_fatal("embedding: input '%s': index %d of sample %lld (value %lld of the sample) is outside [0, %lld)\n"
              "---> HINT: indexes count from 0 and must be less than the embedding's vocab; check the data "
              "or make vocab larger", x->name, (int)idx[bad], (long long)(bad / per), (long long)(bad % per),
              (long long)vocab);
  return idx;
}

// The activation an act node (gelu ... clamp, or its gradient) computes.
static KAct act_of(const IrNode *n) {
  const double *f = n->attr.f;
  switch (n->op) {
  case IR_GELU: case IR_GELU_GRAD: return (KAct){n->attr.i[0] ? K_GELU_TANH : K_GELU, 0, 0};
  case IR_LEAKY_RELU: case IR_LEAKY_RELU_GRAD: return (KAct){K_LEAKY_RELU, (float)f[0], 0};
  case IR_SILU: case IR_SILU_GRAD: return (KAct){K_SILU, 0, 0};
  case IR_ELU: case IR_ELU_GRAD: return (KAct){K_ELU, (float)f[0], 0};
  case IR_SOFTPLUS: case IR_SOFTPLUS_GRAD: return (KAct){K_SOFTPLUS, (float)f[0], (float)f[1]};
  case IR_SQRT: case IR_SQRT_GRAD: return (KAct){K_SQRT, 0, 0};
  case IR_ABS: case IR_ABS_GRAD: return (KAct){K_ABS, 0, 0};
  case IR_CLAMP: case IR_CLAMP_GRAD:
    return (KAct){K_CLAMP, n->attr.i[0] ? (float)f[0] : -INFINITY, n->attr.i[1] ? (float)f[1] : INFINITY};
  default: unreachable();
  }
}

// Gradient ops (their kernels accumulate into the zeroed output).
static void run_grad(Exec *ex, const IrNode *n, int64_t B) {
  const IrNode *a = n->src[0], *b = n->nsrc > 1 ? n->src[1] : NULL;
  float *out = F(ex, n);
  const float *g = F(ex, a);
  int64_t k = numel(n, B);
  memset(out, 0, sizeof(float) * k);
  switch (n->op) {
  case IR_SUM_TO: {
    KShape ds = kshape(n, B), ss = kshape(a, B);
    k_sum_to_shape(out, &ds, g, &ss);
    return;
  }
  case IR_RELU_GRAD: k_relu_backward(out, g, F(ex, b), k); return;
  case IR_SIGMOID_GRAD: k_sigmoid_backward(out, g, F(ex, b), k); return;
  case IR_TANH_GRAD: k_tanh_backward(out, g, F(ex, b), k); return;
  case IR_GELU_GRAD: case IR_LEAKY_RELU_GRAD: case IR_SILU_GRAD: case IR_ELU_GRAD: case IR_SOFTPLUS_GRAD:
  case IR_SQRT_GRAD: case IR_ABS_GRAD: case IR_CLAMP_GRAD: {
    KAct act = act_of(n);
    k_act_backward(&act, out, g, F(ex, b), k);
    return;
  }
  case IR_CONV2D_GRAD_INPUT: {
    KConv2d geo = conv_geometry(n, b, &n->attr, B);
    k_conv2d_backward(out, NULL, NULL, g, NULL, F(ex, b), &geo);
    return;
  }
  case IR_CONV2D_GRAD_WEIGHT: {
    KConv2d geo = conv_geometry(b, n, &n->attr, B);
    k_conv2d_backward(NULL, out, NULL, g, F(ex, b), NULL, &geo);
    return;
  }
  case IR_CONV2D_GRAD_WEIGHT_POOLED: case IR_CONV2D_GRAD_INPUT_POOLED: {   // the dense form: the pooling's
    const IrNode *p = n->src[2], *y = p->src[0];                           // gradient of y, then y's conv's
    bool input = n->op == IR_CONV2D_GRAD_INPUT_POOLED;
    KConv2d geo = input ? conv_geometry(n, b, &n->attr, B) : conv_geometry(b, n, &n->attr, B);
    float *dy = xcalloc(numel(y, B) > 0 ? numel(y, B) : 1, sizeof(float));
    maxpool_dx(ex, dy, g, y, p, ex->training ? ex->fwd[n->id] : -1, B, 0, B);
    if (input)
      k_conv2d_backward(out, NULL, NULL, dy, NULL, F(ex, b), &geo);
    else
      k_conv2d_backward(NULL, out, NULL, dy, F(ex, b), NULL, &geo);
    free(dy);
    return;
  }
  case IR_CHANNEL_SUM: channel_sum(out, a, g, B); return;
  case IR_MAX_FIRST: {
    KShape xs = kshape(a, B);
    for (int64_t i = 0; i < k; i++)
      out[i] = -INFINITY;
    k_max_first(out, g, F(ex, b), &xs, (unsigned)n->attr.i[0]);
    return;
  }
  case IR_MAX_GRAD: {
    KShape xs = kshape(n, B);
    k_max_grad(out, g, F(ex, b), &xs, (unsigned)n->attr.i[0]);
    return;
  }
  case IR_SLICE_GRAD: {
    int64_t outer, xc, inner;
    around_axis(n, (int)n->attr.i[0], B, &outer, &xc, &inner);
    k_slice_backward(out, g, outer, xc, a->shape[n->attr.i[0]], inner, n->attr.i[1], n->attr.i[3]);
    return;
  }
  case IR_MAXPOOL_GRAD:
    maxpool_rows(ex, n, B, 0, B);
    return;
  case IR_AVGPOOL_GRAD: {
    KPool2d geo = pool_geometry(n, n, B);
    k_avgpool2d_backward(out, g, &geo);
    return;
  }
  case IR_GLOBAL_AVGPOOL_GRAD: {
    KShape s = kshape(n, B);
    k_global_avgpool_backward(out, g, s.dim[0], s.dim[1], s.dim[2] * s.dim[3]);
    return;
  }
  case IR_BATCHNORM_GRAD: case IR_BATCHNORM_GRAD_GAMMA: {
    float *fresh, *stats = bn_grad_stats(ex, n, B, &fresh);
    batchnorm_channels(ex, n, B, true, stats, 0, b->shape[1]);
    free(fresh);
    return;
  }
  case IR_DROPOUT_GRAD:
    if (ex->masked[b->id])
      k_dropout_backward(out, g, ex->mask[b->id], k, (float)n->attr.f[0]);
    else
      memcpy(out, g, sizeof(float) * k);
    return;
  case IR_EMBEDDING_GRAD: {
    int64_t dim = n->shape[1];
    k_embedding_backward(out, g, embedding_indexes(ex, b, B, n->shape[0]), numel(b, B), dim, 0, dim);
    return;
  }
  case IR_LAYERNORM_GRAD: {
    int64_t D = numel(n, B) / layernorm_rows(n, B);
    k_layernorm_backward(out, g, F(ex, b), layernorm_rows(n, B), D, n->attr.f[0]);
    return;
  }
  case IR_SOFTMAX_GRAD: case IR_LOG_SOFTMAX_GRAD: {
    int64_t outer, C, inner;
    around_axis(n, (int)n->attr.i[0], B, &outer, &C, &inner);
    if (n->op == IR_SOFTMAX_GRAD)
      k_softmax_backward(out, g, F(ex, b), outer, C, inner);
    else
      k_log_softmax_backward(out, g, F(ex, b), outer, C, inner);
    return;
  }
  default:
    unreachable();
  }
}

// Runs node n for batch B; returns the loss for a loss node.
// The index that element 0 of random layer n's result has in the larger
// batch whose draws this step shares (exec_set_first_sample).
static int64_t first_element(const Exec *ex, const IrNode *n) {
  return n->ndim > 0 && n->shape[0] == IR_N ? ex->first_sample * ir_numel(n, 1) : 0;
}

static double run_node(Exec *ex, const IrNode *n, int64_t B, bool training, double lr) {
  float *out = F(ex, n);
  const IrNode *a = n->nsrc > 0 ? n->src[0] : NULL;
  int64_t k = numel(n, B);
  switch (n->op) {
  case IR_INPUT: case IR_TARGET: case IR_PARAM: case IR_BUFFER:
    return 0;   // set by the caller, or persistent
  case IR_CONST:
    for (int64_t i = 0; i < k; i++)
      out[i] = (float)n->attr.f[0];
    return 0;
  case IR_ADD: case IR_SUB: case IR_MUL: case IR_DIV: {
    static const KBinary ops[] = {[IR_ADD] = K_ADD, [IR_SUB] = K_SUB, [IR_MUL] = K_MUL, [IR_DIV] = K_DIV};
    KShape as = kshape(a, B), bs = kshape(n->src[1], B);
    k_binary_forward(ops[n->op], out, F(ex, a), &as, F(ex, n->src[1]), &bs);
    return 0;
  }
  case IR_NEG: k_neg_forward(out, F(ex, a), k); return 0;
  case IR_RELU: k_relu_forward(out, F(ex, a), k); return 0;
  case IR_SIGMOID: k_sigmoid_forward(out, F(ex, a), k); return 0;
  case IR_TANH: k_tanh_forward(out, F(ex, a), k); return 0;
  case IR_EXP: k_exp_forward(out, F(ex, a), k); return 0;
  case IR_LOG: k_log_forward(out, F(ex, a), k); return 0;
  case IR_GELU: case IR_LEAKY_RELU: case IR_SILU: case IR_ELU: case IR_SOFTPLUS: case IR_SQRT: case IR_ABS:
  case IR_CLAMP: {
    KAct act = act_of(n);
    k_act_forward(&act, out, F(ex, a), k);
    return 0;
  }
  case IR_MATMUL: run_matmul(ex, n, B); return 0;
  case IR_BATCH_MATMUL: {
    KShape ys = kshape(n, B), as = kshape(a, B), bs = kshape(n->src[1], B);
    k_batch_matmul(out, &ys, F(ex, a), &as, n->attr.i[0], F(ex, n->src[1]), &bs, n->attr.i[1]);
    return 0;
  }
  case IR_LAYERNORM:
    k_layernorm_forward(out, F(ex, a), layernorm_rows(n, B), k / layernorm_rows(n, B), n->attr.f[0]);
    return 0;
  case IR_PERMUTE: {
    KShape xs = kshape(a, B);
    k_permute(out, F(ex, a), &xs, n->attr.i);
    return 0;
  }
  case IR_CONV2D: {
    KConv2d geo = conv_geometry(a, n->src[1], &n->attr, B);
    k_conv2d_forward(out, F(ex, a), F(ex, n->src[1]), n->nsrc == 3 ? F(ex, n->src[2]) : NULL, &geo);
    return 0;
  }
  case IR_MAXPOOL:
    maxpool_rows(ex, n, B, 0, B);
    return 0;
  case IR_AVGPOOL: {
    KPool2d geo = pool_geometry(a, n, B);
    k_avgpool2d_forward(out, F(ex, a), &geo);
    return 0;
  }
  case IR_GLOBAL_AVGPOOL: {
    KShape s = kshape(a, B);
    k_global_avgpool_forward(out, F(ex, a), s.dim[0], s.dim[1], s.dim[2] * s.dim[3]);
    return 0;
  }
  case IR_BATCHNORM:   // training saves the batch statistics for the gradient
    batchnorm_channels(ex, n, B, training, training ? ex->bn[n->id] : NULL, 0, a->shape[1]);
    return 0;
  case IR_DROPOUT:
    ex->masked[n->id] = training && ex->dropout;
    if (ex->masked[n->id])
      k_dropout_forward(out, ex->mask[n->id], F(ex, a), k, (float)n->attr.f[0],
                        k_dropout_key((float)n->attr.f[0], &ex->rng), first_element(ex, n));
    else
      memcpy(out, F(ex, a), sizeof(float) * k);
    return 0;
  case IR_GAUSSIAN_NOISE:   // the key drawn as the cpu backend's (runtime/lib.c run_noise)
    if (training && ex->dropout && n->attr.f[0] > 0)
      k_noise_forward(out, F(ex, a), k, (float)n->attr.f[0], k_noise_key((float)n->attr.f[0], &ex->rng),
                      first_element(ex, n));
    else
      memcpy(out, F(ex, a), sizeof(float) * k);
    return 0;
  case IR_RESHAPE:
    memcpy(out, F(ex, a), sizeof(float) * k);
    return 0;
  case IR_SLICE: {
    int64_t outer, xc, yc, inner;
    around_axis(a, (int)n->attr.i[0], B, &outer, &xc, &inner);
    yc = n->shape[n->attr.i[0]];
    k_slice_forward(out, F(ex, a), outer, xc, yc, inner, n->attr.i[1], n->attr.i[3]);
    return 0;
  }
  case IR_MAX: {
    KShape xs = kshape(a, B);
    for (int64_t i = 0; i < k; i++)
      out[i] = -INFINITY;
    k_max_axes(out, F(ex, a), &xs, (unsigned)n->attr.i[0]);
    return 0;
  }
  case IR_SUM: case IR_MEAN: {
    KShape xs = kshape(a, B);
    memset(out, 0, sizeof(float) * k);
    k_sum_axes(out, F(ex, a), &xs, (unsigned)n->attr.i[0], n->op == IR_MEAN ? pass_mean_scale(n) : 1.0f);
    return 0;
  }
  case IR_CONCAT: {
    int axis = (int)n->attr.i[0];
    int64_t outer, yc, inner, at = 0;
    around_axis(n, axis, B, &outer, &yc, &inner);
    for (int i = 0; i < n->nsrc; i++) {   // an input of one dimension fewer repeats along N
      const IrNode *x = n->src[i];
      int64_t xouter = x->ndim < n->ndim ? outer / B : outer, xc = x->shape[axis - (n->ndim - x->ndim)];
      k_concat_part(out, F(ex, x), outer, xouter, yc, xc, inner, at);
      at += xc;
    }
    return 0;
  }
  case IR_SOFTMAX: case IR_LOG_SOFTMAX: {
    int64_t outer, C, inner;
    around_axis(n, (int)n->attr.i[0], B, &outer, &C, &inner);
    if (n->op == IR_SOFTMAX)
      k_softmax_forward(out, F(ex, a), outer, C, inner);
    else
      k_log_softmax_forward(out, F(ex, a), outer, C, inner);
    return 0;
  }
  case IR_EMBEDDING: {
    const IrNode *w = n->src[1];
    k_embedding_forward(out, F(ex, w), embedding_indexes(ex, a, B, w->shape[0]), numel(a, B), w->shape[1]);
    return 0;
  }
  case IR_CROSS_ENTROPY: case IR_NLL: case IR_MSE: case IR_L1: case IR_BCE_WITH_LOGITS: {
    double loss = run_loss(ex, n, B, false);
    out[0] = (float)loss;
    return loss;
  }
  case IR_CROSS_ENTROPY_GRAD: case IR_NLL_GRAD: case IR_MSE_GRAD: case IR_L1_GRAD:
  case IR_BCE_WITH_LOGITS_GRAD:
    memset(out, 0, sizeof(float) * k);
    run_loss(ex, n, B, true);
    return 0;
  case IR_SGD_STEP: case IR_ADAM_STEP: case IR_RMSPROP_STEP: case IR_ADAGRAD_STEP:
    run_step(ex, n, lr);
    return 0;
  default:
    run_grad(ex, n, B);
    return 0;
  }
}


//
// The backend
//

static bool ref_init(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  (void)o;
  (void)err;
  (void)errsz;
  exec_tables(ex, m);   // the caller's graph, as it is
  const IrGraph *g = ex->g;
  ex->mask = xcalloc(g->nnodes, sizeof(uint8_t *));
  ex->bn = xcalloc(g->nnodes, sizeof(float *));
  ex->argmax = xcalloc(g->nnodes, sizeof(int32_t *));
  ex->fwd = xmalloc(sizeof(int) * g->nnodes);
  ex->masked = xcalloc(g->nnodes, sizeof(bool));
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i], *f = pass_saved_forward(g, n);
    int64_t k = numel(n, ex->max_batch);
    ex->buf[i] = xcalloc(k > 0 ? k : 1, sizeof(float));   // int32 targets are 4 bytes too
    if (n->op == IR_DROPOUT)
      ex->mask[i] = xcalloc(k > 0 ? k : 1, 1);
    if (n->op == IR_BATCHNORM)
      ex->bn[i] = xcalloc(2 * n->shape[1], sizeof(float));
    if (n->op == IR_MAXPOOL)
      ex->argmax[i] = xcalloc(k > 0 ? k : 1, sizeof(int32_t));
    ex->fwd[i] = f && n->op != IR_DROPOUT_GRAD ? f->id : -1;   // a dropout gradient reads masked[] of its input
  }
  return true;
}

static void ref_free(Exec *ex) {
  for (int i = 0; i < ex->nnodes; i++) {
    free(ex->buf[i]);
    free(ex->mask[i]);
    free(ex->bn[i]);
    free(ex->argmax[i]);
  }
  free(ex->mask);
  free(ex->bn);
  free(ex->argmax);
  free(ex->fwd);
  free(ex->masked);
}

static double ref_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr) {
  rt_blas_threads(ex->threads);
  const IrGraph *g = ex->g;
  exec_feed(ex, B, x, y);
  bool training = entry == ENTRY_TRAIN;
  ex->training = training;
  if (training)
    ex->steps++;
  double loss = 0;
  const bool *need = ex->need[entry];
  memset(ex->done, 0, sizeof(bool) * g->nnodes);
  for (int i = 0; i < g->nnodes; i++) {
    if (!need[i])
      continue;
    double l = run_node(ex, g->nodes[i], B, training, lr);
    ex->done[i] = true;
    if (g->nodes[i] == g->loss) {
      loss = l;
      if (!ir_op_is_loss(g->loss->op)) {   // a weighted sum: its terms' values, summed in double
        IrNode *terms[IR_MAX_LOSS_TERMS];
        double w[IR_MAX_LOSS_TERMS];
        int n = ir_loss_terms(g, terms, w, IR_MAX_LOSS_TERMS);
        loss = 0;
        for (int t = 0; t < n && t < IR_MAX_LOSS_TERMS; t++)
          loss += w[t] * ((const float *)ex->buf[terms[t]->id])[0];
      }
      if (!isfinite(loss) && training) {   // no gradients from it: the parameters stay as they were
        ex->steps--;
        break;
      }
    }
  }
  return loss;
}

const ExecBackend exec_ref = {
    .name = "ref",
    .help = "one plain C kernel per graph node: the oracle",
    .keeps_values = true,
    .init = ref_init,
    .free = ref_free,
    .run = ref_run,
    .read = exec_host_read,
    .write = exec_host_write,
};
