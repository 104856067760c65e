// autodiff.c: reverse-mode differentiation of the graph IR.
//
// Walks the forward nodes from the loss back to the parameters and, for
// each node whose gradient is known, appends the nodes that compute its
// inputs' gradients: one rule per op (grad_node). A value used several
// times gets the sum of its users' contributions. Only nodes on a path from
// a parameter to the loss get gradients. Every new node carries the .nn
// location and scope of the forward node it differentiates, so a problem in
// the backward pass still points at the user's source.
//
// Then the optimizer is lowered: one update op per parameter, with its state
// buffers as BUFFER leaves.
#include "passes.h"

#include <stdlib.h>
#include <string.h>

// A slice's gradient g, kept until every slice of its input is known.
typedef struct SlicePart {
  IrNode *slice;         // the forward slice
  IrNode *g;             // its gradient
  struct SlicePart *next;
} SlicePart;

typedef struct AD {
  IrGraph *g;
  Diag *d;
  IrNode **grad;         // grad[id]: the gradient of node id, or NULL
  bool *needs;           // needs[id]: node id depends on a parameter
  SlicePart **parts;     // parts[id]: the gradients of node id's slices, not yet in grad[id]
  const IrNode *fwd;     // the forward node being differentiated
} AD;

static IrNode *finish(AD *ad, IrNode *n, const IrNode *preset);

// Appends op(src) at the forward node's location and infers its shape;
// preset (or NULL) gives the output shape of shape-carrying ops.
static IrNode *mk(AD *ad, IrOp op, IrNode **src, int nsrc, const IrNode *preset) {
  return finish(ad, ir_add(ad->g, op, src, nsrc, ad->fwd->loc), preset);
}

static IrNode *mk1(AD *ad, IrOp op, IrNode *a) { return mk(ad, op, &a, 1, NULL); }
static IrNode *mk2(AD *ad, IrOp op, IrNode *a, IrNode *b) { return mk(ad, op, (IrNode *[]){a, b}, 2, NULL); }

// Adds a contribution to x's gradient.
static void accumulate(AD *ad, IrNode *x, IrNode *c) {
  if (!ad->needs[x->id])
    return;
  IrNode *old = ad->grad[x->id];
  ad->grad[x->id] = old ? mk2(ad, IR_ADD, old, c) : c;
}

// The gradient of a broadcast operand: g summed down to x's shape.
static IrNode *unbroadcast(AD *ad, IrNode *g, IrNode *x) {
  return ir_same_shape(g, x) ? g : mk(ad, IR_SUM_TO, &g, 1, x);
}

static IrNode *matmul(AD *ad, IrNode *a, IrNode *b, int ta, int tb) {
  IrNode *n = ir_add(ad->g, IR_MATMUL, (IrNode *[]){a, b}, 2, ad->fwd->loc);
  n->scope = ad->fwd->scope;
  n->attr.i[0] = ta;
  n->attr.i[1] = tb;
  if (!pass_infer_node(n, ad->d))
    nnc_bug(__FILE__, __LINE__, "autodiff built a matmul that fails its shape check");
  return n;
}

// C = op(A) op(B) with op a transpose when ta / tb. A may have leading
// dimensions (folded into rows) when not transposed.
static void grad_matmul(AD *ad, IrNode *n, IrNode *g) {
  IrNode *a = n->src[0], *b = n->src[1];
  int ta = (int)n->attr.i[0], tb = (int)n->attr.i[1];
  if (ad->needs[a->id]) {
    IrNode *da = !ta ? matmul(ad, g, b, 0, !tb)             // g op(B)^T
                     : tb ? matmul(ad, b, g, 1, 1)          // (g B)^T = B^T g^T
                          : matmul(ad, b, g, 0, 1);         // B g^T
    accumulate(ad, a, da);
  }
  if (ad->needs[b->id]) {
    // A and g of more than 2 dimensions are summed over all but the last
    // (a transposed left operand of more than 2 dimensions does that).
    IrNode *db = !tb ? matmul(ad, a, g, !ta, 0)             // op(A)^T g
                     : ta ? matmul(ad, g, a, 1, 1)          // g^T A^T
                          : matmul(ad, g, a, 1, 0);         // g^T A
    accumulate(ad, b, db);
  }
}

static IrNode *batch_matmul(AD *ad, IrNode *a, IrNode *b, int ta, int tb) {
  IrNode *n = ir_add(ad->g, IR_BATCH_MATMUL, (IrNode *[]){a, b}, 2, ad->fwd->loc);
  n->attr.i[0] = ta;
  n->attr.i[1] = tb;
  return finish(ad, n, NULL);
}

// C[..., M, P] = op(A) op(B) over broadcast leading dimensions: the rules
// of grad_matmul product by product, then each gradient summed over the
// leading dimensions its operand was broadcast along.
static void grad_batch_matmul(AD *ad, IrNode *n, IrNode *g) {
  IrNode *a = n->src[0], *b = n->src[1];
  int ta = (int)n->attr.i[0], tb = (int)n->attr.i[1];
  if (ad->needs[a->id]) {
    IrNode *da = !ta ? batch_matmul(ad, g, b, 0, !tb)       // g op(B)^T
                     : tb ? batch_matmul(ad, b, g, 1, 1)    // B^T g^T
                          : batch_matmul(ad, b, g, 0, 1);   // B g^T
    accumulate(ad, a, unbroadcast(ad, da, a));
  }
  if (ad->needs[b->id]) {
    IrNode *db = !tb ? batch_matmul(ad, a, g, !ta, 0)       // op(A)^T g
                     : ta ? batch_matmul(ad, g, a, 1, 1)    // g^T A^T
                          : batch_matmul(ad, g, a, 1, 0);   // g^T A
    accumulate(ad, b, unbroadcast(ad, db, b));
  }
}

// The gradient of a permute is g put back in x's order: the inverse permutation.
static IrNode *grad_permute(AD *ad, IrNode *n, IrNode *g) {
  IrNode *p = ir_add(ad->g, IR_PERMUTE, &g, 1, n->loc);
  for (int i = 0; i < n->ndim; i++)
    p->attr.i[n->attr.i[i]] = i;
  return finish(ad, p, NULL);
}

static IrNode *with_attrs(IrNode *n, const IrNode *from) {
  n->attr = from->attr;
  return n;
}

static void grad_conv2d(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0], *w = n->src[1];
  if (ad->needs[x->id]) {
    IrNode *dx = ir_add(ad->g, IR_CONV2D_GRAD_INPUT, (IrNode *[]){g, w}, 2, n->loc);
    accumulate(ad, x, finish(ad, with_attrs(dx, n), x));
  }
  if (ad->needs[w->id]) {
    IrNode *dw = ir_add(ad->g, IR_CONV2D_GRAD_WEIGHT, (IrNode *[]){g, x}, 2, n->loc);
    accumulate(ad, w, finish(ad, with_attrs(dw, n), w));
  }
  if (n->nsrc == 3)
    accumulate(ad, n->src[2], mk1(ad, IR_CHANNEL_SUM, g));
}

// A transposed convolution, y = conv2d_grad_input(x, w): the input gradient
// of the conv2d that takes y's shape to x's. Its own input gradient is that
// conv2d of g; its weight gradient is that conv2d's weight gradient, with
// x in the place of the output's gradient and g in the place of the input.
static void grad_conv_transpose2d(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0], *w = n->src[1];
  if (ad->needs[x->id]) {
    IrNode *dx = ir_add(ad->g, IR_CONV2D, (IrNode *[]){g, w}, 2, n->loc);
    accumulate(ad, x, finish(ad, with_attrs(dx, n), NULL));
  }
  if (ad->needs[w->id]) {
    IrNode *dw = ir_add(ad->g, IR_CONV2D_GRAD_WEIGHT, (IrNode *[]){x, g}, 2, n->loc);
    accumulate(ad, w, finish(ad, with_attrs(dw, n), w));
  }
}

// Finishes a node built with ir_add (attributes first): preset shape, scope
// and shape check.
static IrNode *finish(AD *ad, IrNode *n, const IrNode *preset) {
  n->scope = ad->fwd->scope;
  if (preset) {
    n->ndim = preset->ndim;
    memcpy(n->shape, preset->shape, sizeof(int64_t) * preset->ndim);
  }
  if (!pass_infer_node(n, ad->d))
    nnc_bug(__FILE__, __LINE__, "autodiff built a node that fails its shape check");
  return n;
}

// An activation's gradient op (g, x) with the forward node's attributes.
static IrNode *act_grad(AD *ad, IrNode *n, IrOp op, IrNode *g, IrNode *x) {
  return finish(ad, with_attrs(ir_add(ad->g, op, (IrNode *[]){g, x}, 2, n->loc), n), NULL);
}

// The gradient op of an op whose gradient is g, for ops of one input (or
// whose other inputs get no gradient).
static IrNode *grad_unary(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0];
  switch (n->op) {
  case IR_NEG: return mk1(ad, IR_NEG, g);
  case IR_GAUSSIAN_NOISE: return g;   // x + noise: the noise is no function of x
  case IR_RELU: return mk2(ad, IR_RELU_GRAD, g, n);   // y > 0 exactly where x > 0
  case IR_SIGMOID: return mk2(ad, IR_SIGMOID_GRAD, g, n);
  case IR_TANH: return mk2(ad, IR_TANH_GRAD, g, n);
  case IR_EXP: return mk2(ad, IR_MUL, g, n);
  case IR_LOG: return mk2(ad, IR_DIV, g, x);
  case IR_GELU: return act_grad(ad, n, IR_GELU_GRAD, g, x);
  case IR_LEAKY_RELU: return act_grad(ad, n, IR_LEAKY_RELU_GRAD, g, x);
  case IR_SILU: return act_grad(ad, n, IR_SILU_GRAD, g, x);
  case IR_ELU: return act_grad(ad, n, IR_ELU_GRAD, g, x);
  case IR_SOFTPLUS: return act_grad(ad, n, IR_SOFTPLUS_GRAD, g, x);
  case IR_SQRT: return act_grad(ad, n, IR_SQRT_GRAD, g, n);   // from the output, as PyTorch
  case IR_ABS: return act_grad(ad, n, IR_ABS_GRAD, g, x);
  case IR_CLAMP: return act_grad(ad, n, IR_CLAMP_GRAD, g, x);
  case IR_RESHAPE: return mk(ad, IR_RESHAPE, &g, 1, x);
  case IR_GLOBAL_AVGPOOL: return mk(ad, IR_GLOBAL_AVGPOOL_GRAD, &g, 1, x);
  case IR_AVGPOOL:
    return finish(ad, with_attrs(ir_add(ad->g, IR_AVGPOOL_GRAD, &g, 1, n->loc), n), x);
  case IR_MAXPOOL:
    return finish(ad, with_attrs(ir_add(ad->g, IR_MAXPOOL_GRAD, (IrNode *[]){g, x}, 2, n->loc), n), NULL);
  case IR_DROPOUT:
    return finish(ad, with_attrs(ir_add(ad->g, IR_DROPOUT_GRAD, (IrNode *[]){g, n}, 2, n->loc), n), NULL);
  case IR_SOFTMAX:
    return finish(ad, with_attrs(ir_add(ad->g, IR_SOFTMAX_GRAD, (IrNode *[]){g, n}, 2, n->loc), n), NULL);
  case IR_LOG_SOFTMAX:
    return finish(ad, with_attrs(ir_add(ad->g, IR_LOG_SOFTMAX_GRAD, (IrNode *[]){g, n}, 2, n->loc), n), NULL);
  case IR_LAYERNORM:
    return finish(ad, with_attrs(ir_add(ad->g, IR_LAYERNORM_GRAD, (IrNode *[]){g, x}, 2, n->loc), n), NULL);
  default:
    unreachable();
  }
}

static void grad_batchnorm(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0], *gamma = n->src[1], *beta = n->src[2];
  if (ad->needs[x->id]) {
    IrNode *dx = ir_add(ad->g, IR_BATCHNORM_GRAD, (IrNode *[]){g, x, gamma}, 3, n->loc);
    dx->attr.f[0] = n->attr.f[0];
    accumulate(ad, x, finish(ad, dx, NULL));
  }
  if (ad->needs[gamma->id]) {
    IrNode *dg = ir_add(ad->g, IR_BATCHNORM_GRAD_GAMMA, (IrNode *[]){g, x}, 2, n->loc);
    dg->attr.f[0] = n->attr.f[0];
    accumulate(ad, gamma, finish(ad, dg, NULL));
  }
  if (ad->needs[beta->id])
    accumulate(ad, beta, mk1(ad, IR_CHANNEL_SUM, g));
}

// A slice's gradient: g stored at the slice of a zeroed tensor of x's shape.
static IrNode *grad_slice(AD *ad, IrNode *n, IrNode *g) {
  return finish(ad, with_attrs(ir_add(ad->g, IR_SLICE_GRAD, &g, 1, n->loc), n), n->src[0]);
}

// The gradients of x's slices. When they are slices along one axis, of
// step 1, that do not overlap (an unrolled recurrence's steps and gates),
// x's gradient is their concat, with zeros where no slice reads: each
// element written once, not a zeroed tensor of x's shape per slice summed
// (which an LSTM of T steps would pay T^2 times). Otherwise one slice_grad
// per slice.
static int by_start(const void *a, const void *b) {
  int64_t x = (*(SlicePart *const *)a)->slice->attr.i[1], y = (*(SlicePart *const *)b)->slice->attr.i[1];
  return (x > y) - (x < y);
}

static void flush_slices(AD *ad, IrNode *x) {
  SlicePart *list = ad->parts[x->id];
  int n = 0;
  for (SlicePart *p = list; p; p = p->next)
    n++;
  SlicePart **v = arena_alloc(ad->g->arena, sizeof(SlicePart *) * n);
  n = 0;
  for (SlicePart *p = list; p; p = p->next)
    v[n++] = p;
  qsort(v, n, sizeof *v, by_start);
  int axis = (int)v[0]->slice->attr.i[0];
  bool joins = ir_is_batched(x) && n > 1;
  for (int i = 0; i < n && joins; i++) {
    const int64_t *at = v[i]->slice->attr.i;
    joins = at[0] == axis && at[3] == 1 && (i == 0 || at[1] >= v[i - 1]->slice->attr.i[2]);
  }
  IrNode **src = joins ? arena_alloc(ad->g->arena, sizeof(IrNode *) * (2 * n + 1)) : NULL;
  int nsrc = 0;
  int64_t end = 0;
  for (int i = 0; i <= n && joins; i++) {
    int64_t start = i < n ? v[i]->slice->attr.i[1] : x->shape[axis];
    if (start > end) {   // no slice reads [end, start): its gradient is 0
      ad->fwd = v[0]->slice;
      IrNode *z = ir_leaf(ad->g, IR_CONST, NULL, DT_F32, x->ndim, x->shape, ad->fwd->loc);
      z->shape[axis] = start - end;
      src[nsrc++] = finish(ad, z, NULL);
    }
    if (i < n) {
      src[nsrc++] = v[i]->g;
      end = v[i]->slice->attr.i[2];
    }
  }
  if (joins) {   // in groups of at most IR_MAX_SRC parts, then the groups joined
    ad->fwd = v[0]->slice;
    while (nsrc > 1) {
      int ngroups = 0;
      for (int i = 0; i < nsrc; i += IR_MAX_SRC) {
        int k = nsrc - i < IR_MAX_SRC ? nsrc - i : IR_MAX_SRC;
        IrNode *c = ir_add(ad->g, IR_CONCAT, src + i, k, ad->fwd->loc);
        c->attr.i[0] = axis;
        src[ngroups++] = finish(ad, c, NULL);
      }
      nsrc = ngroups;
    }
    accumulate(ad, x, src[0]);
    return;
  }
  for (int i = 0; i < n; i++) {
    ad->fwd = v[i]->slice;
    accumulate(ad, x, grad_slice(ad, v[i]->slice, v[i]->g));
  }
}

// A concat's gradient: each input's part of g, sliced back out (summed over
// N for an input that was broadcast along it).
static void grad_concat(AD *ad, IrNode *n, IrNode *g) {
  int axis = (int)n->attr.i[0];
  int64_t at = 0;
  for (int i = 0; i < n->nsrc; i++) {
    IrNode *x = n->src[i];
    int64_t size = x->shape[axis - (n->ndim - x->ndim)];
    if (ad->needs[x->id]) {
      IrNode *part = g;
      if (size != n->shape[axis]) {
        part = ir_add(ad->g, IR_SLICE, &g, 1, n->loc);
        part->attr.i[0] = axis;
        part->attr.i[1] = at;
        part->attr.i[2] = at + size;
        part->attr.i[3] = 1;
        part = finish(ad, part, NULL);
      }
      accumulate(ad, x, unbroadcast(ad, part, x));
    }
    at += size;
  }
}

// sum and mean: g spread back over the axes reduced (with the reduced axes
// as dimensions of 1, g broadcasts against a constant of x's shape: 1, or
// the mean's factor).
static void grad_reduce(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0];
  if (!ad->needs[x->id])
    return;
  if (!n->attr.i[1]) {
    IrNode kept = *x;
    for (int j = 0; j < x->ndim; j++)
      if (n->attr.i[0] >> j & 1)
        kept.shape[j] = 1;
    g = mk(ad, IR_RESHAPE, &g, 1, &kept);
  }
  IrNode *c = ir_leaf(ad->g, IR_CONST, NULL, DT_F32, x->ndim, x->shape, n->loc);
  c->attr.f[0] = n->op == IR_MEAN ? pass_mean_scale(n) : 1.0f;
  c->scope = n->scope;
  accumulate(ad, x, mk2(ad, IR_MUL, g, c));
}

// max: g routed to the first maximum of each reduced run (row-major over
// the axes), as PyTorch's max(x, dim) does through its indices: max_first
// finds that position, max_grad puts g there.
static void grad_max(AD *ad, IrNode *n, IrNode *g) {
  IrNode *x = n->src[0], *y = n;
  if (!ad->needs[x->id])
    return;
  if (!n->attr.i[1]) {
    IrNode kept = *x;
    for (int j = 0; j < x->ndim; j++)
      if (n->attr.i[0] >> j & 1)
        kept.shape[j] = 1;
    y = mk(ad, IR_RESHAPE, &y, 1, &kept);
    g = mk(ad, IR_RESHAPE, &g, 1, &kept);
  }
  IrNode *first = ir_add(ad->g, IR_MAX_FIRST, (IrNode *[]){x, y}, 2, n->loc);
  first->attr.i[0] = n->attr.i[0];
  first = finish(ad, first, NULL);
  IrNode *dx = ir_add(ad->g, IR_MAX_GRAD, (IrNode *[]){g, first}, 2, n->loc);
  dx->attr.i[0] = n->attr.i[0];
  accumulate(ad, x, finish(ad, dx, x));
}

// Appends the gradients of n's inputs, given n's gradient g.
static void grad_node(AD *ad, IrNode *n, IrNode *g) {
  ad->fwd = n;
  IrNode *a = n->src[0], *b = n->nsrc > 1 ? n->src[1] : NULL;
  switch (n->op) {
  case IR_ADD:
    accumulate(ad, a, unbroadcast(ad, g, a));
    accumulate(ad, b, unbroadcast(ad, g, b));
    break;
  case IR_SUB:
    accumulate(ad, a, unbroadcast(ad, g, a));
    if (ad->needs[b->id])
      accumulate(ad, b, unbroadcast(ad, mk1(ad, IR_NEG, g), b));
    break;
  case IR_MUL:
    if (ad->needs[a->id])
      accumulate(ad, a, unbroadcast(ad, mk2(ad, IR_MUL, g, b), a));
    if (ad->needs[b->id])
      accumulate(ad, b, unbroadcast(ad, mk2(ad, IR_MUL, g, a), b));
    break;
  case IR_DIV:   // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b
    if (ad->needs[a->id])
      accumulate(ad, a, unbroadcast(ad, mk2(ad, IR_DIV, g, b), a));
    if (ad->needs[b->id])
      accumulate(ad, b, unbroadcast(ad, mk1(ad, IR_NEG, mk2(ad, IR_DIV, mk2(ad, IR_MUL, g, n), b)), b));
    break;
  case IR_MATMUL:
    grad_matmul(ad, n, g);
    break;
  case IR_BATCH_MATMUL:
    grad_batch_matmul(ad, n, g);
    break;
  case IR_PERMUTE:
    accumulate(ad, a, grad_permute(ad, n, g));
    break;
  case IR_CONV2D:
    grad_conv2d(ad, n, g);
    break;
  case IR_CONV2D_GRAD_INPUT:   // conv_transpose2d
    grad_conv_transpose2d(ad, n, g);
    break;
  case IR_BATCHNORM:
    grad_batchnorm(ad, n, g);
    break;
  case IR_EMBEDDING:   // the indexes get no gradient; the weight's rows gather g
    if (ad->needs[b->id]) {
      IrNode *dw = ir_add(ad->g, IR_EMBEDDING_GRAD, (IrNode *[]){g, a}, 2, n->loc);
      accumulate(ad, b, finish(ad, dw, b));
    }
    break;
  case IR_SLICE:
    if (ad->needs[a->id]) {   // joined with a's other slices' gradients (flush_slices)
      SlicePart *p = arena_alloc(ad->g->arena, sizeof *p);
      *p = (SlicePart){n, g, ad->parts[a->id]};
      ad->parts[a->id] = p;
    }
    break;
  case IR_CONCAT:
    grad_concat(ad, n, g);
    break;
  case IR_SUM: case IR_MEAN:
    grad_reduce(ad, n, g);
    break;
  case IR_MAX:
    grad_max(ad, n, g);
    break;
  case IR_NEG: case IR_RELU: case IR_SIGMOID: case IR_TANH: case IR_EXP: case IR_LOG:
  case IR_GELU: case IR_LEAKY_RELU: case IR_SILU: case IR_ELU: case IR_SOFTPLUS: case IR_SQRT: case IR_ABS:
  case IR_CLAMP:
  case IR_RESHAPE: case IR_GLOBAL_AVGPOOL: case IR_AVGPOOL: case IR_MAXPOOL: case IR_DROPOUT: case IR_GAUSSIAN_NOISE:
  case IR_SOFTMAX: case IR_LOG_SOFTMAX: case IR_LAYERNORM:
    accumulate(ad, a, grad_unary(ad, n, g));
    break;
  default:
    nnc_bug(__FILE__, __LINE__, "no gradient rule for this op");
  }
}

// The loss's gradient with respect to the model's output (seeded with 1).
static IrOp loss_grad_op(IrOp loss) {
  switch (loss) {
  case IR_CROSS_ENTROPY: return IR_CROSS_ENTROPY_GRAD;
  case IR_NLL: return IR_NLL_GRAD;
  case IR_MSE: return IR_MSE_GRAD;
  case IR_L1: return IR_L1_GRAD;
  case IR_BCE_WITH_LOGITS: return IR_BCE_WITH_LOGITS_GRAD;
  default: unreachable();
  }
}

static IrNode *state_buffer(IrGraph *g, const IrNode *p, const char *what) {
  IrNode *b = ir_leaf(g, IR_BUFFER, arena_printf(g->arena, "%s.%s", p->name, what), DT_F32, p->ndim,
                      p->shape, p->loc);
  b->init = (IrInit){INIT_ZEROS, 0, 0};
  b->scope = p->scope;
  return b;
}

// One update op per parameter, with PyTorch's hyper-parameters.
static IrNode *optimizer_step(AD *ad, const OptimConfig *o, IrNode *p, IrNode *gp) {
  ad->fwd = p;
  IrNode *n;
  if (o->kind == OPT_SGD) {
    IrNode *src[3] = {p, gp, NULL};
    int nsrc = 2;
    if (o->momentum != 0)
      src[nsrc++] = state_buffer(ad->g, p, "momentum_buffer");
    n = ir_add(ad->g, IR_SGD_STEP, src, nsrc, p->loc);
    n->attr.i[0] = o->nesterov;
    double f[4] = {o->lr, o->momentum, o->dampening, o->weight_decay};
    memcpy(n->attr.f, f, sizeof f);
  } else if (o->kind == OPT_RMSPROP) {
    IrNode *src[5] = {p, gp, state_buffer(ad->g, p, "square_avg")};
    int nsrc = 3;
    if (o->momentum > 0)
      src[nsrc++] = state_buffer(ad->g, p, "momentum_buffer");
    if (o->centered)
      src[nsrc++] = state_buffer(ad->g, p, "grad_avg");
    n = ir_add(ad->g, IR_RMSPROP_STEP, src, nsrc, p->loc);
    n->attr.i[0] = o->centered;
    double f[5] = {o->lr, o->alpha, o->eps, o->weight_decay, o->momentum};
    memcpy(n->attr.f, f, sizeof f);
  } else if (o->kind == OPT_ADAGRAD) {
    IrNode *sum = state_buffer(ad->g, p, "sum");
    if (o->initial_accumulator_value != 0)
      sum->init = (IrInit){INIT_CONSTANT, o->initial_accumulator_value, 0};
    n = ir_add(ad->g, IR_ADAGRAD_STEP, (IrNode *[]){p, gp, sum}, 3, p->loc);
    double f[5] = {o->lr, o->lr_decay, o->weight_decay, o->initial_accumulator_value, o->eps};
    memcpy(n->attr.f, f, sizeof f);
  } else {
    IrNode *src[4] = {p, gp, state_buffer(ad->g, p, "exp_avg"), state_buffer(ad->g, p, "exp_avg_sq")};
    n = ir_add(ad->g, IR_ADAM_STEP, src, 4, p->loc);
    n->attr.i[0] = o->kind == OPT_ADAMW;
    double f[5] = {o->lr, o->beta1, o->beta2, o->eps, o->weight_decay};
    memcpy(n->attr.f, f, sizeof f);
  }
  return finish(ad, n, NULL);
}

// A scalar constant of the graph.
static IrNode *scalar(AD *ad, double v) {
  IrNode *c = ir_leaf(ad->g, IR_CONST, NULL, DT_F32, 0, NULL, ad->fwd->loc);
  c->attr.f[0] = v;
  c->scope = ad->fwd->scope;
  return c;
}

// torch.nn.utils.clip_grad_norm_(params, max_norm): the gradients g[0..n)
// times min(1, max_norm / (norm + 1e-6)), norm the L2 norm of all of them
// together, summed in parameter order; as PyTorch, the coefficient is
// max_norm times the reciprocal, and clamped rather than tested.
static void clip_grad_norm(AD *ad, IrNode **g, int n, double max_norm) {
  IrNode *total = NULL;
  for (int i = 0; i < n; i++) {
    IrNode *sq = mk2(ad, IR_MUL, g[i], g[i]);
    if (sq->ndim > 0) {
      IrNode *s = ir_add(ad->g, IR_SUM, &sq, 1, ad->fwd->loc);
      s->attr.i[0] = (int64_t)((1u << sq->ndim) - 1);
      sq = finish(ad, s, NULL);
    }
    total = total ? mk2(ad, IR_ADD, total, sq) : sq;
  }
  IrNode *norm = mk2(ad, IR_ADD, mk1(ad, IR_SQRT, total), scalar(ad, 1e-6));
  IrNode *coef = mk2(ad, IR_MUL, mk2(ad, IR_DIV, scalar(ad, 1), norm), scalar(ad, max_norm));
  IrNode *c = ir_add(ad->g, IR_CLAMP, &coef, 1, ad->fwd->loc);
  c->attr.i[1] = 1;   // max only
  c->attr.f[1] = 1;
  coef = finish(ad, c, NULL);
  for (int i = 0; i < n; i++)
    g[i] = mk2(ad, IR_MUL, g[i], coef);
}

bool pass_autodiff(Model *m, Diag *d) {
  IrGraph *g = m->g;
  if (!g->loss) {
    diag_error(d, ((SrcLoc){0}), "add a loss after the model, e.g. `loss cross_entropy`",
               "model '%s' has no loss to train with", g->name);
    return false;
  }
  int nfwd = g->nnodes;
  Arena *a = g->arena;
  AD ad = {g, d, arena_alloc(a, sizeof(IrNode *) * nfwd), arena_alloc(a, sizeof(bool) * nfwd),
            arena_alloc(a, sizeof(SlicePart *) * nfwd), NULL};
  for (int i = 0; i < nfwd; i++) {
    IrNode *n = g->nodes[i];
    ad.needs[i] = n->op == IR_PARAM;
    for (int k = 0; k < n->nsrc; k++)
      ad.needs[i] |= ad.needs[n->src[k]->id];
  }
  // The loss is one loss op or a weighted sum of them: each term seeds its
  // output's gradient with its weight (times 1, d total / d total).
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double weights[IR_MAX_LOSS_TERMS];
  int nterms = ir_loss_terms(g, terms, weights, IR_MAX_LOSS_TERMS);
  if (nterms < 1 || nterms > IR_MAX_LOSS_TERMS)
    nnc_bug(__FILE__, __LINE__, "pass_autodiff: the loss is not a weighted sum of loss ops");
  bool any = false;
  for (int t = 0; t < nterms; t++)
    any |= ad.needs[terms[t]->src[0]->id];
  if (!any) {
    diag_error(d, g->loss->loc, "declare a parameter or use a layer with weights, such as linear (not frozen)",
               "the loss does not depend on any trainable parameter, so there is nothing to train");
    return false;
  }
  for (int t = 0; t < nterms; t++) {
    IrNode *out = terms[t]->src[0], *target = terms[t]->src[1];
    if (!ad.needs[out->id])
      continue;
    ad.fwd = terms[t];
    IrNode *gt = mk2(&ad, loss_grad_op(terms[t]->op), out, target);
    gt->attr = terms[t]->attr;   // cross_entropy's label_smoothing
    if (weights[t] != 1) {
      IrNode *w = ir_leaf(g, IR_CONST, NULL, DT_F32, 0, NULL, terms[t]->loc);
      w->attr.f[0] = weights[t];
      gt = mk2(&ad, IR_MUL, gt, w);
    }
    accumulate(&ad, out, gt);
  }
  for (int i = nfwd - 1; i >= 0; i--) {
    IrNode *n = g->nodes[i];
    if (ad.parts[i])   // every consumer of n comes after it: all its slices are in
      flush_slices(&ad, n);
    if (ad.grad[i] && !ir_op_is_leaf(n->op))
      grad_node(&ad, n, ad.grad[i]);
  }
  int np = 0;
  for (int i = 0; i < nfwd; i++)
    np += g->nodes[i]->op == IR_PARAM && ad.grad[i];
  m->params = arena_alloc(a, sizeof(IrNode *) * np);
  m->grads = arena_alloc(a, sizeof(IrNode *) * np);
  m->steps = arena_alloc(a, sizeof(IrNode *) * np);
  m->nparams = 0;
  for (int i = 0; i < nfwd; i++) {
    IrNode *p = g->nodes[i];
    if (p->op != IR_PARAM || !ad.grad[i])
      continue;
    m->params[m->nparams] = p;
    m->grads[m->nparams] = ad.grad[i];
    m->nparams++;
  }
  IrNode **upd = arena_alloc(a, sizeof(IrNode *) * (np + 1));   // the gradients the updates read
  memcpy(upd, m->grads, sizeof(IrNode *) * np);
  if (m->opt.clip_norm > 0) {
    ad.fwd = g->loss;
    clip_grad_norm(&ad, upd, np, m->opt.clip_norm);
  }
  for (int i = 0; i < np; i++)
    m->steps[i] = optimizer_step(&ad, &m->opt, m->params[i], upd[i]);
  return true;
}
