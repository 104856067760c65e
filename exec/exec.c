// exec.c: the ref backend: runs a model's graph one node at a time.
//
// Each node gets a buffer sized for the largest batch; PARAM and BUFFER
// nodes get persistent ones. A run picks the nodes its entry point needs
// (walking back from the output, the loss, and the optimizer updates) and
// calls one plain C kernel per node, with the batch dimension IR_N
// replaced by the batch at hand. Backward kernels accumulate, so a
// gradient node's buffer is zeroed before its kernel runs.
#include "exec.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct Exec {
  const Model *m;
  const IrGraph *g;
  int64_t max_batch;
  void **buf;          // buf[id]: the node's values ([max_batch, ...] for batched nodes)
  uint8_t **mask;      // mask[id]: the dropout mask of a DROPOUT node, or NULL
  float **bn;          // bn[id]: a training BATCHNORM node's batch mean and 1/std ([2, C]), or NULL
  int *bn_fwd;         // bn_fwd[id]: for BATCHNORM_GRAD(_GAMMA), its forward node's id, or -1
  int32_t **argmax;    // argmax[id]: where each window of a MAXPOOL node found its maximum
  int *pool_fwd;       // pool_fwd[id]: for MAXPOOL_GRAD, its forward node's id, or -1
  bool *masked;        // masked[id]: the last run applied dropout at node id
  bool *need[3];       // need[mode][id]: the entry point computes node id
  bool *done;          // done[id]: the last run computed node id
  int *state_ids;      // ids of the persistent nodes (PARAM, BUFFER), in graph order
  int nstate;
  int64_t batch;       // the batch of the last run
  int64_t steps;       // training steps taken: the optimizer's t
  bool dropout;        // apply dropout in training
  Rng rng;             // dropout masks
  RtBackend backend;
  // The cpu backend: buf[] points into these, per the running program's plan.
  Model *model;        // for pass_fuse
  bool fuse;
  KProgram *prog[3];   // per EntryKind, planned when first needed
  CgModule *mod[3];    // compiled when first run
  char *arena;         // the activations of the running entry point
  int64_t arena_bytes;
  char *state;         // parameters, buffers and optimizer state
  RtPool *pool;
  float **ws;          // ws[s]: share s's buffer, for library kernels split across the pool in shares
  int nws;
  int64_t *ws_cap;
  float *dyt;          // a convolution's dy with images moved inside, for a weight gradient by channel
  int64_t dyt_cap;
  RtCalls rt;        // the callbacks compiled code makes
  void (*tick)(void *arg, int kernel);   // per-kernel timing, or NULL
  void *tick_arg;
  bool training;       // of the step running now (for library kernels)
  double lr;
  double loss;         // the loss the step computed
  bool skip_updates;   // the loss is not finite: no updates this step
  float *scalars;      // the running program's step scalars (KS_*), or NULL
};

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

// Elements of n for batch B.
static int64_t numel(const IrNode *n, int64_t B) { return ir_numel(n, B); }

static KShape kshape(const IrNode *n, int64_t B) {
  KShape s = {.ndim = n->ndim};
  for (int i = 0; i < n->ndim; i++)
    s.dim[i] = n->shape[i] == IR_N ? B : n->shape[i];
  return s;
}

static float *F(const Exec *ex, const IrNode *n) { return ex->buf[n->id]; }

// Marks what node n needs, recursively (iteratively: graphs are deep).
static void mark(const IrGraph *g, bool *need, const IrNode *root) {
  if (!root)
    return;
  need[root->id] = true;
  for (int i = root->id; i >= 0; i--) {
    if (!need[i])
      continue;
    const IrNode *n = g->nodes[i];
    for (int k = 0; k < n->nsrc; k++)
      need[n->src[k]->id] = true;
  }
}

// The forward batchnorm each batchnorm gradient node belongs to: the one
// reading the same x (and gamma, for BATCHNORM_GRAD); -1 when none or
// several match, and the gradient recomputes the statistics.
static void find_bn_forward(const IrGraph *g, int *fwd) {
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    fwd[i] = -1;
    if (n->op != IR_BATCHNORM_GRAD && n->op != IR_BATCHNORM_GRAD_GAMMA)
      continue;
    int found = 0;
    for (int j = 0; j < i; j++) {
      const IrNode *f = g->nodes[j];
      if (f->op == IR_BATCHNORM && f->src[0] == n->src[1] &&
          (n->op == IR_BATCHNORM_GRAD_GAMMA || f->src[1] == n->src[2])) {
        fwd[i] = j;
        found++;
      }
    }
    if (found != 1)
      fwd[i] = -1;
  }
}

// The forward max pooling of each maxpool gradient: the one over the same
// x with the same window; -1 when none or several match.
static void find_pool_forward(const IrGraph *g, int *fwd) {
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    fwd[i] = -1;
    if (n->op != IR_MAXPOOL_GRAD)
      continue;
    int found = 0;
    for (int j = 0; j < i; j++) {
      const IrNode *f = g->nodes[j];
      if (f->op == IR_MAXPOOL && f->src[0] == n->src[1] && !memcmp(f->attr.i, n->attr.i, sizeof(int64_t) * 8)) {
        fwd[i] = j;
        found++;
      }
    }
    if (found != 1)
      fwd[i] = -1;
  }
}

// What both backends share: masks, flags, the state list, the needed sets.
static Exec *exec_common(const Model *m, int64_t max_batch) {
  const IrGraph *g = m->g;
  Exec *ex = xcalloc(1, sizeof *ex);
  ex->m = m;
  ex->g = g;
  ex->max_batch = max_batch;
  ex->dropout = true;
  rng_seed(&ex->rng, m->train.seed, 0x64726f70ULL);   // "drop"
  ex->buf = xcalloc(g->nnodes, sizeof(void *));
  ex->mask = xcalloc(g->nnodes, sizeof(uint8_t *));
  ex->bn = xcalloc(g->nnodes, sizeof(float *));
  ex->bn_fwd = xmalloc(sizeof(int) * g->nnodes);
  find_bn_forward(g, ex->bn_fwd);
  ex->argmax = xcalloc(g->nnodes, sizeof(int32_t *));
  ex->pool_fwd = xmalloc(sizeof(int) * g->nnodes);
  find_pool_forward(g, ex->pool_fwd);
  ex->masked = xcalloc(g->nnodes, sizeof(bool));
  ex->done = xcalloc(g->nnodes, sizeof(bool));
  ex->state_ids = xcalloc(g->nnodes, sizeof(int));
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    int64_t k = numel(n, max_batch);
    if (n->op == IR_DROPOUT)
      ex->mask[i] = xcalloc(k > 0 ? k : 1, 1);
    if (n->op == IR_BATCHNORM)
      ex->bn[i] = xcalloc(2 * n->shape[1], sizeof(float));
    if (n->op == IR_MAXPOOL)
      ex->argmax[i] = xcalloc(k > 0 ? k : 1, sizeof(int32_t));
    if (is_state(n))
      ex->state_ids[ex->nstate++] = i;
  }
  for (int mode = 0; mode < 3; mode++)
    ex->need[mode] = xcalloc(g->nnodes, sizeof(bool));
  mark(g, ex->need[ENTRY_FORWARD], g->output);
  mark(g, ex->need[ENTRY_EVAL], g->output);
  mark(g, ex->need[ENTRY_EVAL], g->loss);
  mark(g, ex->need[ENTRY_TRAIN], g->output);
  mark(g, ex->need[ENTRY_TRAIN], g->loss);
  for (int i = 0; i < m->nparams; i++)
    mark(g, ex->need[ENTRY_TRAIN], m->steps[i]);
  return ex;
}

Exec *exec_new(const Model *m, int64_t max_batch) {
  Exec *ex = exec_common(m, max_batch);
  ex->backend = RT_BACKEND_REF;
  for (int i = 0; i < m->g->nnodes; i++) {
    int64_t k = numel(m->g->nodes[i], max_batch);
    ex->buf[i] = xcalloc(k > 0 ? k : 1, sizeof(float));   // int32 targets are 4 bytes too
  }
  return ex;
}

void exec_free(Exec *ex) {
  if (!ex)
    return;
  for (int i = 0; i < ex->g->nnodes; i++) {
    if (ex->backend == RT_BACKEND_REF)
      free(ex->buf[i]);
    free(ex->mask[i]);
    free(ex->bn[i]);
    free(ex->argmax[i]);
  }
  free(ex->bn);
  free(ex->bn_fwd);
  free(ex->argmax);
  free(ex->pool_fwd);
  for (int mode = 0; mode < 3; mode++)
    cg_free(ex->mod[mode]);
  free(ex->arena);
  free(ex->state);
  for (int t = 0; t < ex->nws; t++)
    free(ex->ws[t]);
  free(ex->ws);
  free(ex->ws_cap);
  free(ex->dyt);
  rt_pool_free(ex->pool);
  for (int mode = 0; mode < 3; mode++)
    free(ex->need[mode]);
  free(ex->buf);
  free(ex->mask);
  free(ex->masked);
  free(ex->done);
  free(ex->state_ids);
  free(ex);
}

void exec_init_params(Exec *ex, uint64_t seed) {
  Rng r;
  rng_seed(&r, seed, 0x696e6974ULL);   // "init"
  for (int i = 0; i < ex->nstate; i++) {
    const IrNode *n = ex->g->nodes[ex->state_ids[i]];
    float *p = F(ex, n);
    int64_t k = numel(n, 1);
    switch (n->init.kind) {
    case INIT_ZEROS: k_init_zeros(p, k); break;
    case INIT_ONES: k_init_ones(p, k); break;
    case INIT_CONSTANT: k_init_constant(p, k, (float)n->init.a); break;
    case INIT_NORMAL: k_init_normal(p, k, (float)n->init.a, (float)n->init.b, &r); break;
    case INIT_UNIFORM: k_init_uniform(p, k, (float)n->init.a, (float)n->init.b, &r); break;
    }
  }
  ex->steps = 0;
}

//
// Kernels, one per op
//

static KConv2d conv_geometry(const IrNode *x, const IrNode *w, const IrAttr *a, int64_t B) {
  return (KConv2d){.N = x->shape[0] == IR_N ? B : x->shape[0], .C = x->shape[1], .H = x->shape[2],
                   .W = x->shape[3], .O = w->shape[0], .KH = w->shape[2], .KW = w->shape[3],
                   .sh = a->i[0], .sw = a->i[1], .ph = a->i[2], .pw = a->i[3], .dh = a->i[4], .dw = a->i[5]};
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
// training forward computes them (it updates copies of nothing).
static void bn_stats(const IrNode *x, const float *xv, int64_t B, float eps, float *mean, float *invstd) {
  int64_t N, C, HW;
  bn_sizes(x, B, &N, &C, &HW);
  float *y = xmalloc(sizeof(float) * N * C * HW);
  float *rm = xcalloc(C, sizeof(float)), *rv = xcalloc(C, sizeof(float));
  k_batchnorm_forward(y, mean, invstd, rm, rv, xv, NULL, NULL, N, C, HW, eps, 0.0f);
  free(y);
  free(rm);
  free(rv);
}

// The batch mean and 1/std (2 x C floats) a batchnorm gradient node n
// uses: its forward's, saved this step, or else computed again exactly as
// the forward computes them into *fresh, which the caller frees.
static float *bn_grad_stats(Exec *ex, const IrNode *n, int64_t B, float **fresh) {
  const IrNode *x = n->src[1];
  int f = ex->bn_fwd[n->id];
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
// did not run in this step. fast: the cpu backend's kernel, else the
// reference.
static void maxpool_rows(Exec *ex, const IrNode *n, int64_t B, int64_t lo, int64_t hi, bool fast) {
  void (*forward)(float *, int32_t *, const float *, const KPool2d *) =
      fast ? k_maxpool2d_forward_fast : k_maxpool2d_forward;
  if (n->op == IR_MAXPOOL) {
    const IrNode *x = n->src[0];
    KPool2d geo = pool_geometry(x, n, B);
    geo.N = hi - lo;
    forward(F(ex, n) + lo * numel(n, 1), ex->training ? ex->argmax[n->id] + lo * numel(n, 1) : NULL,
            F(ex, x) + lo * numel(x, 1), &geo);   // only a gradient reads the argmax
    return;
  }
  const IrNode *g = n->src[0], *x = n->src[1];
  KPool2d geo = pool_geometry(x, n, B);
  geo.N = hi - lo;
  int64_t in = numel(x, 1), out = numel(g, 1), k = (hi - lo) * out;
  float *dx = F(ex, n) + lo * in;
  int f = ex->pool_fwd[n->id];
  if (f >= 0 && ex->done[f]) {
    k_maxpool2d_backward(dx, F(ex, g) + lo * out, ex->argmax[f] + lo * out, &geo);
    return;
  }
  float *y = xmalloc(sizeof(float) * k);
  int32_t *at = xmalloc(sizeof(int32_t) * k);
  forward(y, at, F(ex, x) + lo * in, &geo);
  k_maxpool2d_backward(dx, F(ex, g) + lo * out, at, &geo);
  free(y);
  free(at);
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
  case IR_CROSS_ENTROPY: return k_cross_entropy_forward(yv, tv, B, C);
  case IR_NLL: return k_nll_forward(yv, tv, B, C);
  case IR_MSE: return k_mse_forward(yv, tv, k);
  case IR_L1: return k_l1_forward(yv, tv, k);
  case IR_BCE_WITH_LOGITS: return k_bce_with_logits_forward(yv, tv, k);
  case IR_CROSS_ENTROPY_GRAD: k_cross_entropy_backward(d, 1.0f, yv, tv, B, C); return 0;
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
  case IR_CHANNEL_SUM: channel_sum(out, a, g, B); return;
  case IR_MAXPOOL_GRAD:
    maxpool_rows(ex, n, B, 0, B, false);
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
  case IR_MATMUL: run_matmul(ex, n, B); return 0;
  case IR_CONV2D: {
    KConv2d geo = conv_geometry(a, n->src[1], &n->attr, B);
    k_conv2d_forward(out, F(ex, a), F(ex, n->src[1]), n->nsrc == 3 ? F(ex, n->src[2]) : NULL, &geo);
    return 0;
  }
  case IR_MAXPOOL:
    maxpool_rows(ex, n, B, 0, B, false);
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
                        k_dropout_key((float)n->attr.f[0], &ex->rng), 0);
    else
      memcpy(out, F(ex, a), sizeof(float) * k);
    return 0;
  case IR_RESHAPE:
    memcpy(out, F(ex, a), sizeof(float) * k);
    return 0;
  case IR_SOFTMAX: case IR_LOG_SOFTMAX: {
    int64_t outer, C, inner;
    around_axis(n, (int)n->attr.i[0], B, &outer, &C, &inner);
    if (n->op == IR_SOFTMAX)
      k_softmax_forward(out, F(ex, a), outer, C, inner);
    else
      k_log_softmax_forward(out, F(ex, a), outer, C, inner);
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
  case IR_SGD_STEP: case IR_ADAM_STEP:
    run_step(ex, n, lr);
    return 0;
  default:
    run_grad(ex, n, B);
    return 0;
  }
}

static double run_cpu(Exec *ex, EntryKind mode, int64_t B, const float *x, const void *y, double lr);

// OpenBLAS's own threads: the ref backend lets OpenBLAS split its GEMMs
// over rt_set_threads' count; the cpu backend splits work over its own pool
// and keeps OpenBLAS on the calling thread, since OpenBLAS's idle threads
// spin (sched_yield) after each GEMM and would take cores from the pool.
static int blas_threads_wanted = 1;

void rt_set_threads(int n) { blas_threads_wanted = n < 1 ? 1 : n; }

void blas_threads_default(void) { rt_blas_threads(blas_threads_wanted); }

int64_t exec_sample_dim(const Model *m) {
  int64_t d = 0;
  for (int i = 0; i < m->ninputs; i++)
    d += numel(m->inputs[i], 1);
  return d;
}

// Splits x's B rows (every input's values, in declaration order) over the
// inputs' buffers, [B, numel] each. Both backends keep a buffer for every
// input, used or not (a cpu plan gives each input a slot of its own).
static void feed_inputs(Exec *ex, int64_t B, const float *x) {
  const Model *m = ex->m;
  int64_t row = exec_sample_dim(m), at = 0;
  for (int i = 0; i < m->ninputs; i++) {
    const IrNode *in = m->inputs[i];
    int64_t d = numel(in, 1);
    float *dst = F(ex, in);
    if (dst && d == row)
      memcpy(dst, x, sizeof(float) * B * d);
    else if (dst)
      for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * d, x + b * row + at, sizeof(float) * d);
    at += d;
  }
}

double exec_run(Exec *ex, EntryKind mode, int64_t B, const float *x, const void *y, double lr) {
  if (ex->backend == RT_BACKEND_CPU)
    return run_cpu(ex, mode, B, x, y, lr);
  blas_threads_default();
  const IrGraph *g = ex->g;
  if (B < 1 || B > ex->max_batch)
    nnc_bug(__FILE__, __LINE__, "batch out of range for this executor");
  if (mode != ENTRY_FORWARD && !g->loss)
    nnc_bug(__FILE__, __LINE__, "the model has no loss");
  ex->batch = B;
  const IrNode *t = ex->m->target;
  feed_inputs(ex, B, x);
  if (y && t)
    memcpy(ex->buf[t->id], y, 4 * numel(t, B));
  bool training = mode == ENTRY_TRAIN;
  ex->training = training;
  if (training)
    ex->steps++;
  double loss = 0;
  const bool *need = ex->need[mode];
  memset(ex->done, 0, sizeof(bool) * g->nnodes);
  for (int i = 0; i < g->nnodes; i++) {
    if (!need[i])
      continue;
    double l = run_node(ex, g->nodes[i], B, training, lr);
    ex->done[i] = true;
    if (g->nodes[i] == g->loss) {
      loss = l;
      if (!isfinite(loss) && training) {   // no gradients from it: the parameters stay as they were
        ex->steps--;
        break;
      }
    }
  }
  return loss;
}

const float *exec_output(const Exec *ex) { return ex->buf[ex->g->output->id]; }

int64_t exec_output_dim(const Exec *ex) { return numel(ex->g->output, 1); }

const IrNode *exec_first_nonfinite(const Exec *ex) {
  for (int i = 0; i < ex->g->nnodes; i++) {
    const IrNode *n = ex->g->nodes[i];
    if (!ex->done[i] || n->dtype != DT_F32)
      continue;
    const float *v = ex->buf[i];
    int64_t k = numel(n, ex->batch);
    for (int64_t j = 0; j < k; j++)
      if (!isfinite(v[j]))
        return n;
  }
  return NULL;
}

int exec_num_state(const Exec *ex) { return ex->nstate; }

const IrNode *exec_state_node(const Exec *ex, int i) { return ex->g->nodes[ex->state_ids[i]]; }

float *exec_state_data(Exec *ex, int i, int64_t *n) {
  const IrNode *node = exec_state_node(ex, i);
  if (n)
    *n = numel(node, 1);
  return ex->buf[node->id];
}

float *exec_find_state(Exec *ex, const char *name, int64_t *n) {
  for (int i = 0; i < ex->nstate; i++)
    if (!strcmp(exec_state_node(ex, i)->name, name))
      return exec_state_data(ex, i, n);
  return NULL;
}

int64_t exec_steps(const Exec *ex) { return ex->steps; }
void exec_set_steps(Exec *ex, int64_t steps) { ex->steps = steps; }
Rng *exec_rng(Exec *ex) { return &ex->rng; }
void exec_set_dropout(Exec *ex, bool enabled) { ex->dropout = enabled; }

const float *exec_value(const Exec *ex, const IrNode *n) {
  return ex->done[n->id] || is_state(n) ? ex->buf[n->id] : NULL;
}

//
// The cpu backend
//

RtBackend exec_backend(const Exec *ex) { return ex->backend; }

static void cpu_tick(void *ctx, int kernel) {
  Exec *ex = ctx;
  if (ex->tick)
    ex->tick(ex->tick_arg, kernel);
}

void exec_set_tick(Exec *ex, void (*tick)(void *arg, int kernel), void *arg) {
  ex->tick = tick;
  ex->tick_arg = arg;
}


// Runs a compiled loop over rows [lo, hi) on a pool thread.
typedef struct LoopCall {
  RtLoopFn fn;
  char *arena, *state;
  int64_t B;
} LoopCall;

static void loop_chunk(void *arg, int64_t lo, int64_t hi) {
  LoopCall *c = arg;
  c->fn(c->arena, c->state, c->B, lo, hi);
}

static void cpu_parallel(void *ctx, RtLoopFn fn, char *arena, char *state, int64_t B, int64_t extent) {
  Exec *ex = ctx;
  LoopCall c = {fn, arena, state, B};
  rt_pool_run(ex->pool, loop_chunk, &c, extent);
}

// A GEMM split across the pool: C (M, N) by blocks of GEMM_BLOCK rows when
// it has more rows than columns, else by blocks of columns; the pool's
// chunks are runs of whole blocks, each computed through the GEMM's own
// micro-kernels (uk, which run its epilogue) or, for a convolution's,
// k_gemm_ld.
#define GEMM_BLOCK 16
#define GEMM_SPLIT_FLOPS (1 << 21)   // smaller products stay on the calling thread,
#define GEMM_SPLIT_BYTES (1 << 19)   // unless B is this large (a batch of one against a layer's weights)
#define GEMM_CHUNK_FLOPS (1 << 19)   // the pool's chunks of a split product: this many FLOPs or more, but one per
                                     // thread at least (a batch of one's: 2 chunks, not 8 of 2 us each)

typedef struct GemmCall {
  int ta, tb;
  int64_t M, N, K;
  const float *A, *B;
  float beta;
  float *C;
  bool rows;
  const RtGemmKernels *uk;
} GemmCall;

static void gemm_part(void *arg, int64_t lo, int64_t hi) {
  const GemmCall *c = arg;
  int64_t M = c->M, N = c->N, K = c->K, row0 = 0, col0 = 0;
  const float *A = c->A, *B = c->B;
  float *C = c->C;
  lo *= GEMM_BLOCK;
  hi *= GEMM_BLOCK;
  if (c->rows) {
    hi = hi < M ? hi : M;
    A += c->ta ? lo : lo * K;
    C += lo * N;
    M = hi - lo;
    row0 = lo;
  } else {
    hi = hi < N ? hi : N;
    B += c->tb ? lo * K : lo;
    C += lo;
    N = hi - lo;
    col0 = lo;
  }
  int64_t lda = c->ta ? c->M : K, ldb = c->tb ? K : c->N;
  if (c->uk)
    k_gemm_micro(c->uk, c->ta, c->tb, M, N, K, A, lda, B, ldb, c->beta != 0.0f, C, c->N, row0, col0);
  else
    k_gemm_ld(c->ta, c->tb, M, N, K, A, lda, B, ldb, c->beta, C, c->N);
}

static void cpu_sgemm(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *Bm,
                      float beta, float *C, const RtGemmKernels *uk) {
  Exec *ex = ctx;
  GemmCall c = {ta, tb, M, N, K, A, Bm, beta, C, M > N, uk};
  int64_t blocks = ((c.rows ? M : N) + GEMM_BLOCK - 1) / GEMM_BLOCK;
  if (2.0 * M * N * K < GEMM_SPLIT_FLOPS && 4 * K * N < GEMM_SPLIT_BYTES) {
    gemm_part(&c, 0, blocks);
    return;
  }
  int64_t block_flops = 2 * GEMM_BLOCK * (c.rows ? N : M) * K;
  int64_t grain = block_flops > 0 ? (GEMM_CHUNK_FLOPS + block_flops - 1) / block_flops : blocks;
  rt_pool_run_grain(ex->pool, gemm_part, &c, blocks, grain);
}

// A library kernel split across the pool: node n at batch B, in T shares
// (key: a dropout mask's).
typedef struct SplitCall {
  Exec *ex;
  const IrNode *n;
  int64_t B;
  int T;
  uint64_t key;
  float *aux;          // a batchnorm's statistics; a weight gradient's dy, transposed
  KGemmFn gemm;        // a convolution's GEMM (NULL: k_gemm on the calling thread)
  RtLoopFn epi;        // a convolution's epilogue, run on each share of rows once computed, or NULL
  char *arena, *state; // the epilogue's arguments
} SplitCall;

// Max pooling of samples [lo, hi) of a batch: samples are independent, so
// the pool's threads each take a share.
static void maxpool_slice(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *c = arg;
  if (c->n->op == IR_MAXPOOL_GRAD)   // this share of dx, zeroed
    memset(F(c->ex, c->n) + lo * numel(c->n, 1), 0, sizeof(float) * (hi - lo) * numel(c->n, 1));
  maxpool_rows(c->ex, c->n, c->B, lo, hi, true);
}

// Share s's buffer, at least n floats.
static float *share_ws(Exec *ex, int s, int64_t n) { return k_grow(&ex->ws[s], &ex->ws_cap[s], n); }

// A convolution or one of its gradients, on share t of T of the batch:
// images [B*t/T, B*(t+1)/T), a few at a time (their cols within
// CONV_CHUNK_FLOATS, so that they stay in cache between im2col and the
// GEMM) through the running thread's im2col scratch. The weight gradient of
// each share goes to the share's buffer; the caller sums the shares in
// order, so the sum is the same whichever thread ran which share.
#define CONV_CHUNK_FLOATS (256 * 1024)
static void conv_share(void *arg, int64_t t, int64_t t_end) {
  const SplitCall *c = arg;
  Exec *ex = c->ex;
  const IrNode *n = c->n;
  for (; t < t_end && c->aux; t++) {   // a weight gradient by input channel
    KConv2d geo = conv_geometry(n->src[1], n, &n->attr, c->B);
    int64_t c0 = geo.C * t / c->T, c1 = geo.C * (t + 1) / c->T;
    int64_t NP = c->B * (numel(n->src[0], 1) / geo.O);
    float *ws = share_ws(ex, (int)t, (c1 - c0) * geo.KH * geo.KW * NP);
    k_conv2d_grad_weight_channels(F(ex, n), c->aux, F(ex, n->src[1]), &geo, c0, c1, ws);
  }
  for (; t < t_end; t++) {
    int64_t lo = c->B * t / c->T, hi = c->B * (t + 1) / c->T;
    const IrNode *a = n->src[0], *b = n->src[1];
    KConv2d geo;
    if (n->op == IR_CONV2D)
      geo = conv_geometry(a, b, &n->attr, c->B);
    else if (n->op == IR_CONV2D_GRAD_INPUT)
      geo = conv_geometry(n, b, &n->attr, c->B);
    else
      geo = conv_geometry(b, n, &n->attr, c->B);
    geo.N = 1;
    int64_t in = geo.C * geo.H * geo.W, out = numel(n->op == IR_CONV2D ? n : a, 1);
    int64_t per = k_conv2d_scratch(&geo), chunk = CONV_CHUNK_FLOATS / per > 1 ? CONV_CHUNK_FLOATS / per : 1;
    int64_t pieces = (hi - lo + chunk - 1) / chunk;
    chunk = pieces > 0 ? (hi - lo + pieces - 1) / pieces : 1;   // pieces of even size: 4 + 4, not 7 + 1
    geo.N = hi - lo < chunk ? hi - lo : chunk;
    float *ws = k_thread_scratch(K_SCRATCH_COLS, k_conv2d_scratch(&geo)), *dw = NULL;
    if (n->op == IR_CONV2D_GRAD_WEIGHT) {   // the share's gradient
      dw = share_ws(ex, (int)t, numel(n, 1));
      memset(dw, 0, sizeof(float) * numel(n, 1));
    }
    for (int64_t s = lo; s < hi; s += chunk) {   // images [s, s + geo.N)
      geo.N = hi - s < chunk ? hi - s : chunk;
      if (n->op == IR_CONV2D) {
        k_conv2d_forward_ws(F(ex, n) + s * out, F(ex, a) + s * in, F(ex, b),
                            n->nsrc == 3 ? F(ex, n->src[2]) : NULL, &geo, ws, c->gemm);
        if (c->epi)   // while these images are still in cache
          c->epi(c->arena, c->state, c->B, s, s + geo.N);
      } else if (n->op == IR_CONV2D_GRAD_INPUT) {
        float *dx = F(ex, n) + s * in;
        memset(dx, 0, sizeof(float) * geo.N * in);
        k_conv2d_backward_ws(dx, NULL, NULL, F(ex, a) + s * out, NULL, F(ex, b), &geo, ws, c->gemm);
      } else {
        k_conv2d_backward_ws(NULL, dw, NULL, F(ex, a) + s * out, F(ex, b) + s * in, NULL, &geo, ws, c->gemm);
      }
    }
  }
}

// A GEMM split across the pool of the convolution running on the calling
// thread (a batch smaller than the pool: the images cannot be shared out).
static _Thread_local Exec *gemm_exec;

static void pool_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const float *Bm, float beta, float *C) {
  if (alpha != 1.0f) {
    k_gemm(ta, tb, M, N, K, alpha, A, Bm, beta, C);
    return;
  }
  cpu_sgemm(gemm_exec, ta, tb, M, N, K, A, Bm, beta, C, NULL);
}

// A weight gradient with few output positions per thread's part of the
// images (P*B/T under this) splits by input channel instead: summing per
// image shares would write and add a whole (O, C*KH*KW) gradient per share
// for a product of little depth.
#define CONV_DW_MIN_DEPTH 256

// Shares per thread: a thread the scheduler stops holds up one share, and
// the others take the rest (the pool hands out one share per chunk). A
// weight gradient by images has fewer where each share would sum under
// CONV_DW_MIN_DEPTH products per weight.
#define CONV_SHARES_PER_THREAD 4
#define CONV_SUM_SPLIT 32768   // the shares' sum runs on the calling thread under this many additions

// The weight gradient's elements [lo, hi): the shares' partial sums, added
// in share order.
static void conv_dw_sum(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *c = arg;
  float *dw = F(c->ex, c->n);
  memset(dw + lo, 0, sizeof(float) * (hi - lo));
  for (int t = 0; t < c->T; t++) {
    const float *part = c->ex->ws[t];
    for (int64_t i = lo; i < hi; i++)
      dw[i] += part[i];
  }
}

// A convolution or one of its gradients over the pool (epi: the forward's
// epilogue, or NULL).
static void run_conv_split(Exec *ex, const IrNode *n, int64_t B, RtLoopFn epi, char *arena, char *state) {
  int T = rt_pool_threads(ex->pool), S = T * CONV_SHARES_PER_THREAD;
  S = T == 1 ? 1 : S <= B ? S : B > T ? (int)B : T;   // (a weight gradient of a batch under T: T shares, some empty)
  SplitCall c = {.ex = ex, .n = n, .B = B, .T = S, .epi = epi, .arena = arena, .state = state};
  if (B < T && n->op != IR_CONV2D_GRAD_WEIGHT) {   // one share, its GEMMs split
    gemm_exec = ex;
    c.T = 1;
    c.gemm = pool_gemm;
    conv_share(&c, 0, 1);
    return;
  }
  if (n->op == IR_CONV2D_GRAD_WEIGHT && T > 1) {
    KConv2d geo = conv_geometry(n->src[1], n, &n->attr, B);
    int64_t P = numel(n->src[0], 1) / geo.O;
    if (P * B / T < CONV_DW_MIN_DEPTH && geo.C >= T) {
      c.aux = k_grow(&ex->dyt, &ex->dyt_cap, geo.O * B * P);
      k_conv2d_dy_t(c.aux, F(ex, n->src[0]), &geo);
      c.T = geo.C < T * CONV_SHARES_PER_THREAD ? (int)geo.C : T * CONV_SHARES_PER_THREAD;
      rt_pool_run(ex->pool, conv_share, &c, c.T);
      return;
    }
    int64_t deep = P * B / CONV_DW_MIN_DEPTH;
    S = S <= deep ? S : deep > T ? (int)deep : T;
    c.T = S;
  }
  rt_pool_run(ex->pool, conv_share, &c, S);
  if (n->op != IR_CONV2D_GRAD_WEIGHT)
    return;
  int64_t wn = numel(n, 1);
  if (wn * S < CONV_SUM_SPLIT)
    conv_dw_sum(&c, 0, wn);
  else
    rt_pool_run(ex->pool, conv_dw_sum, &c, wn);
}

// Dropout, or its gradient, on elements [lo, hi) of the batch (the mask of
// an element depends only on the call's key and the element's index).
static void dropout_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *c = arg;
  Exec *ex = c->ex;
  const IrNode *n = c->n, *a = n->src[0];
  float p = (float)n->attr.f[0];
  if (n->op == IR_DROPOUT) {
    k_dropout_forward(F(ex, n) + lo, ex->mask[n->id] + lo, F(ex, a) + lo, hi - lo, p, c->key, lo);
    return;
  }
  float *dx = F(ex, n) + lo;
  memset(dx, 0, sizeof(float) * (hi - lo));
  k_dropout_backward(dx, F(ex, a) + lo, ex->mask[n->src[1]->id] + lo, hi - lo, p);
}

static void run_dropout_split(Exec *ex, const IrNode *n, int64_t B) {
  SplitCall c = {.ex = ex, .n = n, .B = B, .T = rt_pool_threads(ex->pool),
                 .key = n->op == IR_DROPOUT ? k_dropout_key((float)n->attr.f[0], &ex->rng) : 0};
  rt_pool_run(ex->pool, dropout_share, &c, numel(n, B));
}

// Batchnorm or a gradient of it, channels split across the pool.
static void batchnorm_share(void *arg, int64_t c0, int64_t c1) {
  const SplitCall *c = arg;
  batchnorm_channels(c->ex, c->n, c->B, c->ex->training, c->aux, c0, c1);
}

static void run_batchnorm_split(Exec *ex, const IrNode *n, int64_t B) {
  float *fresh = NULL, *stats;
  if (n->op == IR_BATCHNORM)
    stats = ex->training ? ex->bn[n->id] : NULL;
  else
    stats = bn_grad_stats(ex, n, B, &fresh);
  SplitCall c = {.ex = ex, .n = n, .B = B, .T = rt_pool_threads(ex->pool), .aux = stats};
  rt_pool_run(ex->pool, batchnorm_share, &c, n->src[n->op == IR_BATCHNORM ? 0 : 1]->shape[1]);
  free(fresh);
}

// A library kernel: the ref kernel of one node, on planned buffers, then
// its epilogue. A step whose loss is not finite makes no updates.
static void cpu_lib(void *ctx, int id, char *arena, char *state, int64_t B, RtLoopFn epi) {
  Exec *ex = ctx;
  const IrNode *n = ex->g->nodes[id];
  // Split by sample (the batch dimension of the first operand: x, or dy
  // for the gradients); one share when the pool has one thread.
  bool batched = n->nsrc > 0 && n->src[0]->ndim > 0 && n->src[0]->shape[0] == IR_N;
  switch (batched ? n->op : IR_NUM_OPS) {
  case IR_MAXPOOL: case IR_MAXPOOL_GRAD: {
    SplitCall c = {.ex = ex, .n = n, .B = B, .T = rt_pool_threads(ex->pool)};
    rt_pool_run(ex->pool, maxpool_slice, &c, B);
    return;
  }
  case IR_BATCHNORM: case IR_BATCHNORM_GRAD: case IR_BATCHNORM_GRAD_GAMMA:
    run_batchnorm_split(ex, n, B);
    return;
  case IR_CONV2D: case IR_CONV2D_GRAD_INPUT: case IR_CONV2D_GRAD_WEIGHT:
    run_conv_split(ex, n, B, epi, arena, state);
    return;
  case IR_DROPOUT:
    if (ex->training && ex->dropout) {
      ex->masked[n->id] = true;
      run_dropout_split(ex, n, B);
      return;
    }
    break;
  case IR_DROPOUT_GRAD:
    if (ex->masked[n->src[1]->id]) {
      run_dropout_split(ex, n, B);
      return;
    }
    break;
  default:
    break;
  }
  if ((n->op == IR_SGD_STEP || n->op == IR_ADAM_STEP) && ex->skip_updates)
    return;
  double l = run_node(ex, n, B, ex->training, ex->lr);
  if (epi)
    epi(arena, state, B, 0, n->shape[0] == IR_N ? B : n->shape[0]);
  if (n == ex->g->loss) {
    ex->loss = l;
    ex->skip_updates = ex->training && !isfinite(l);
    if (ex->skip_updates && ex->scalars)
      ex->scalars[KS_APPLY] = 0;   // the compiled updates keep every value as it was
  }
}

// Points buf[] at where the plan of mode puts each value.
static void bind_program(Exec *ex, const KProgram *p) {
  for (int i = 0; i < ex->g->nnodes; i++) {
    const KBufInfo *b = &p->buf[i];
    if (b->space == KB_STATE)
      continue;
    ex->buf[i] = b->bytes ? ex->arena + b->offset : NULL;
  }
}

static KProgram *plan(Exec *ex, EntryKind mode) {
  if (!ex->prog[mode])
    ex->prog[mode] = pass_fuse(ex->model, mode, ex->max_batch, ex->fuse, NULL);
  return ex->prog[mode];
}

Exec *exec_new_cpu(Model *m, int64_t max_batch, bool fuse, int threads, char *err, size_t errsz) {
  (void)err;
  (void)errsz;
  if (fuse)
    pass_simplify(m, NULL);
  Exec *ex = exec_common(m, max_batch);
  ex->backend = RT_BACKEND_CPU;
  ex->model = m;
  ex->fuse = fuse;
  ex->pool = rt_pool_new(threads);
  ex->nws = rt_pool_threads(ex->pool) * CONV_SHARES_PER_THREAD;
  ex->ws = xcalloc(ex->nws, sizeof(float *));
  ex->ws_cap = xcalloc(ex->nws, sizeof(int64_t));
  ex->rt = (RtCalls){ex, cpu_parallel, cpu_sgemm, cpu_lib, cpu_tick};
  // The state layout is the same in every plan: take the forward one's.
  const KProgram *p = plan(ex, ENTRY_FORWARD);
  ex->state = xcalloc(1, p->state_bytes ? p->state_bytes : 1);
  for (int i = 0; i < ex->g->nnodes; i++)
    if (p->buf[i].space == KB_STATE && is_state(ex->g->nodes[i]))
      ex->buf[i] = ex->state + p->buf[i].offset;
  return ex;
}

// Plans and compiles mode's program if it was not yet; false with err set
// when LLVM fails.
static bool ensure_compiled(Exec *ex, EntryKind mode, char *err, size_t errsz) {
  if (ex->mod[mode])
    return true;
  KProgram *p = plan(ex, mode);
  ex->mod[mode] = cg_compile(p, NULL, err, errsz);
  if (!ex->mod[mode])
    return false;
  if (p->arena_bytes > ex->arena_bytes) {
    free(ex->arena);
    ex->arena = xcalloc(1, p->arena_bytes);
    ex->arena_bytes = p->arena_bytes;
  }
  return true;
}

const KProgram *exec_program(Exec *ex, EntryKind mode, CgTimes *times) {
  if (ex->backend != RT_BACKEND_CPU)
    return NULL;
  char err[1024];
  if (!ensure_compiled(ex, mode, err, sizeof err))
    nnc_fatal("compiling the %s step failed: %s", mode == ENTRY_TRAIN ? "training" : "inference", err);
  if (times)
    *times = cg_times(ex->mod[mode]);
  return ex->prog[mode];
}

// The per-step scalars of the compiled updates (KS_*), computed as
// k_sgd_step and k_adam_step compute them: in double, rounded to float.
static void write_scalars(const Exec *ex, float *s, double lr) {
  const OptimConfig *o = &ex->m->opt;
  double t = (double)ex->steps;
  s[KS_NEG_LR] = (float)-lr;
  s[KS_FIRST] = ex->steps == 1 ? 1.0f : 0.0f;
  s[KS_NEG_STEP_SIZE] = (float)-(lr / (1.0 - pow(o->beta1, t)));
  s[KS_BC2_SQRT] = (float)sqrt(1.0 - pow(o->beta2, t));
  s[KS_DECAY] = (float)(1.0 - lr * o->weight_decay);
  s[KS_APPLY] = 1;
}

static double run_cpu(Exec *ex, EntryKind mode, int64_t B, const float *x, const void *y, double lr) {
  const IrGraph *g = ex->g;
  if (B < 1 || B > ex->max_batch)
    nnc_bug(__FILE__, __LINE__, "batch out of range for this executor");
  char err[1024];
  if (!ensure_compiled(ex, mode, err, sizeof err))
    nnc_fatal("compiling the %s step failed: %s", mode == ENTRY_TRAIN ? "training" : "inference", err);
  const KProgram *p = ex->prog[mode];
  bind_program(ex, p);
  const IrNode *t = ex->m->target;
  feed_inputs(ex, B, x);
  if (y && t && ex->buf[t->id])
    memcpy(ex->buf[t->id], y, 4 * numel(t, B));
  ex->batch = B;
  ex->training = mode == ENTRY_TRAIN;
  ex->lr = lr;
  ex->loss = 0;
  ex->skip_updates = false;
  if (ex->training)
    ex->steps++;
  for (int i = 0; i < g->nnodes; i++)
    ex->done[i] = ex->need[mode][i] && ex->buf[i] != NULL;
  ex->scalars = p->scalars ? (float *)(ex->arena + p->buf[g->nnodes].offset) : NULL;
  if (ex->scalars)
    write_scalars(ex, ex->scalars, lr);
  rt_blas_threads(1);
  cg_entry(ex->mod[mode])(ex->arena, ex->state, B, &ex->rt);
  if (ex->skip_updates)
    ex->steps--;
  return ex->loss;
}
