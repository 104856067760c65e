// simplify.c: algebraic simplification, constant folding, common
// subexpressions and dead code, before fusion.
//
// One walk in graph order: each node's inputs are first replaced by what
// they simplified to; then the node itself may become one of its inputs
// (x * 1, x + 0, x - 0, x / 1, -(-x), a reshape to the same shape), a
// constant (an elementwise op of scalar constants, folded in double and
// rounded to float as the kernels would), the earlier node computing the
// same thing, or a reshape of the reshape's input. NLL of a log-softmax
// becomes cross-entropy of the logits, one kernel, and its gradient,
// log_softmax_grad(nll_grad(L, t), L), the one kernel that cross-entropy's
// gradient is: (exp(L) - onehot(t)) / N, exp(L) being softmax(x), which the
// log-softmax's output L holds already. A relu's (tanh's, sigmoid's)
// gradient through a max pooling of its output moves to the pooled side
// (pool_relu_grad), and a convolution's weight, input and bias gradients
// through a max pooling of its output read the pooled gradient
// (pooled_conv_grad, pooled_channel_sum), and columns sliced from a product
// with a concatenation become the product with the part they come from
// (slice_product); these count with the identities.
// Finally the node list
// keeps only leaves and what the model's outputs, loss and updates need, in
// the same order, renumbered.
#include "passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Simp {
  IrGraph *g;
  IrNode **repl;         // repl[id]: the node that now stands for node id
  bool *grad;            // grad[id]: node id is a parameter's gradient
  int *uses;             // uses[id]: readers of node id in the graph as it came (the model's
                         // output, loss and gradients count as readers)
  // Chains of the mergeable nodes that stand for themselves, by node_hash,
  // earliest first; [1] holds parameters' gradients, [0] the other nodes.
  int *head[2], *tail[2];  // nbuckets each; -1: none
  int *chain;            // chain[id]: the next node id in its bucket
  int nbuckets;          // a power of 2
  bool *redefined;       // redefined[id]: node id now computes another value (where: NULL)
  int folded, identities, merged, removed, losses;
} Simp;

static bool is_const(const IrNode *n, double v) {
  return n->op == IR_CONST && n->attr.f[0] == v;
}

// Whether two nodes compute the same value: same op, inputs, attributes,
// shape. Random or stateful ops never do.
static bool same_node(const IrNode *a, const IrNode *b) {
  if (a->op != b->op || a->nsrc != b->nsrc || a->dtype != b->dtype || a->ndim != b->ndim)
    return false;
  if (memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim) || memcmp(&a->attr, &b->attr, sizeof a->attr))
    return false;
  for (int i = 0; i < a->nsrc; i++)
    if (a->src[i] != b->src[i])
      return false;
  return true;
}

// A hash of what same_node compares, so that a node is compared only with
// the earlier nodes of its bucket (a graph of 40,000 nodes is not 800
// million comparisons).
static uint32_t node_hash(const IrNode *n) {
  uint64_t h = 1469598103934665603u;
  const uint64_t words[] = {(uint64_t)n->op, (uint64_t)n->nsrc, (uint64_t)n->dtype, (uint64_t)n->ndim};
  const unsigned char *parts[] = {(const void *)words, (const void *)n->shape, (const void *)&n->attr};
  size_t sizes[] = {sizeof words, sizeof(int64_t) * (n->ndim > 0 ? n->ndim : 0), sizeof n->attr};
  for (int p = 0; p < 3; p++)
    for (size_t i = 0; i < sizes[p]; i++)
      h = (h ^ parts[p][i]) * 1099511628211u;
  for (int i = 0; i < n->nsrc; i++)
    h = (h ^ (uint64_t)n->src[i]->id) * 1099511628211u;
  return (uint32_t)(h ^ h >> 32);
}

static bool mergeable(const IrNode *n) {
  switch (n->op) {
  case IR_INPUT: case IR_TARGET: case IR_PARAM: case IR_BUFFER:   // each a tensor of its own
  case IR_DROPOUT: case IR_GAUSSIAN_NOISE: case IR_BATCHNORM:       // random, or updates state
  case IR_SGD_STEP: case IR_ADAM_STEP: case IR_RMSPROP_STEP: case IR_ADAGRAD_STEP:
    return false;
  default:
    return true;
  }
}

// x op c where the result has x's shape and c leaves x as it is.
static IrNode *identity(IrNode *n) {
  IrNode *a = n->nsrc > 0 ? n->src[0] : NULL, *b = n->nsrc > 1 ? n->src[1] : NULL;
  switch (n->op) {
  case IR_MUL:
    if (is_const(b, 1) && ir_same_shape(a, n))
      return a;
    if (is_const(a, 1) && ir_same_shape(b, n))
      return b;
    return NULL;
  case IR_ADD:
    if (is_const(b, 0) && ir_same_shape(a, n))
      return a;
    if (is_const(a, 0) && ir_same_shape(b, n))
      return b;
    return NULL;
  case IR_SUB:
    return is_const(b, 0) && ir_same_shape(a, n) ? a : NULL;
  case IR_DIV:
    return is_const(b, 1) && ir_same_shape(a, n) ? a : NULL;
  case IR_NEG:
    return a->op == IR_NEG ? a->src[0] : NULL;
  case IR_RESHAPE:
    return ir_same_shape(a, n) ? a : NULL;
  case IR_PERMUTE:
    for (int i = 0; i < n->ndim; i++)
      if (n->attr.i[i] != i)
        return NULL;
    return a;
  default:
    return NULL;
  }
}

// Folds an elementwise op of scalar constants into a constant, in place.
static bool fold(IrNode *n) {
  if (n->ndim != 0 || ir_op_kind(n->op) != IR_KIND_ELEMENTWISE || n->nsrc == 0)
    return false;
  for (int i = 0; i < n->nsrc; i++)
    if (n->src[i]->op != IR_CONST)
      return false;
  double a = n->src[0]->attr.f[0], b = n->nsrc > 1 ? n->src[1]->attr.f[0] : 0, v;
  switch (n->op) {
  case IR_ADD: v = (float)a + (float)b; break;
  case IR_SUB: v = (float)a - (float)b; break;
  case IR_MUL: v = (float)a * (float)b; break;
  case IR_DIV: v = (float)a / (float)b; break;
  case IR_NEG: v = -(float)a; break;
  case IR_EXP: v = expf((float)a); break;
  case IR_LOG: v = logf((float)a); break;
  case IR_TANH: v = tanhf((float)a); break;
  case IR_SIGMOID: v = 1.0f / (1.0f + expf(-(float)a)); break;
  case IR_RELU: v = a > 0 ? (float)a : 0.0f; break;
  default: return false;
  }
  n->op = IR_CONST;
  memset(n->src, 0, sizeof(IrNode *) * ir_src_slots(n->nsrc));
  n->nsrc = 0;
  memset(&n->attr, 0, sizeof n->attr);
  n->attr.f[0] = (float)v;
  return true;
}

// nll(L, t) with L = log_softmax(x) over classes (axis 1 of [N, C]): in
// place, cross_entropy(x, t), whose one kernel finds the log-softmax of the
// target class itself (the model's output L is still computed for whoever
// reads it).
static bool softmax_loss(IrNode *n) {
  if (n->op != IR_NLL)
    return false;
  IrNode *L = n->src[0];
  if (L->op != IR_LOG_SOFTMAX || L->ndim != 2 || L->attr.i[0] != 1)
    return false;
  n->op = IR_CROSS_ENTROPY;
  n->src[0] = L->src[0];
  return true;
}

// log_softmax_grad(nll_grad(L, t), L) over classes (axis 1 of [N, C]),
// with L = log_softmax(x): in place, cross_entropy_grad(L, t).
static bool softmax_loss_grad(IrNode *n) {
  if (n->op != IR_LOG_SOFTMAX_GRAD || n->ndim != 2 || n->attr.i[0] != 1)
    return false;
  IrNode *g = n->src[0], *L = n->src[1];
  if (g->op != IR_NLL_GRAD || g->src[0] != L || L->op != IR_LOG_SOFTMAX)
    return false;
  n->op = IR_CROSS_ENTROPY_GRAD;
  n->src[0] = L;
  n->src[1] = g->src[1];
  memset(&n->attr, 0, sizeof n->attr);
  return true;
}

// Whether n is a permute that swaps the last two dimensions of its input
// and keeps the others in place.
static bool swaps_last_two(const IrNode *n) {
  if (n->op != IR_PERMUTE || n->ndim < 2)
    return false;
  for (int i = 0; i < n->ndim - 2; i++)
    if (n->attr.i[i] != i)
      return false;
  return n->attr.i[n->ndim - 2] == n->ndim - 1 && n->attr.i[n->ndim - 1] == n->ndim - 2;
}

// A transposed operand of a matrix product: in place, the product of the
// transpose's input with its ta / tb flipped (a matmul's left operand only
// when it is a matrix: ta over more dimensions sums over them).
static bool fold_transpose(IrNode *n) {
  if (n->op != IR_MATMUL && n->op != IR_BATCH_MATMUL)
    return false;
  bool folded = false;
  for (int i = 0; i < 2; i++) {
    IrNode *x = n->src[i];
    if (!swaps_last_two(x) || (n->op == IR_MATMUL && x->ndim != 2))
      continue;
    n->src[i] = x->src[0];
    n->attr.i[i] = !n->attr.i[i];
    folded = true;
  }
  return folded;
}

// The transpose of a product whose only reader it is (of two matrices, or
// a batched product): (op(A) op(B))^T = op(B)^T op(A)^T, in place, the
// product the other way round (a weight's gradient through x @
// transpose(w) is one GEMM, k's through q @ transpose(k) one loop, no copy).
static bool transpose_product(Simp *s, IrNode *n) {
  if (!swaps_last_two(n))
    return false;
  IrNode *p = n->src[0];
  bool matrices = p->op == IR_MATMUL && p->src[0]->ndim == 2 && p->src[1]->ndim == 2;
  if ((!matrices && p->op != IR_BATCH_MATMUL) || s->uses[p->id] != 1)
    return false;
  bool ta = p->attr.i[0], tb = p->attr.i[1];
  n->op = p->op;
  n->src[0] = p->src[1];
  n->src[1] = p->src[0];
  memset(&n->attr, 0, sizeof n->attr);
  n->attr.i[0] = !tb;
  n->attr.i[1] = !ta;
  return true;
}

static IrNode *find(Simp *s, IrNode *n) {
  while (s->repl[n->id] != n)
    n = s->repl[n->id];
  return n;
}

// Whether M has one reader as the graph stands: uses[] counts the
// readers of the graph as it came, and a later node merged into M (the
// same value) brings its own, through find().
static bool read_once(Simp *s, IrNode *M) {
  IrGraph *g = s->g;
  int readers = 0;
  for (int j = M->id + 1; j < g->nnodes; j++)
    for (int k = 0; k < g->nodes[j]->nsrc; k++)
      readers += find(s, g->nodes[j]->src[k]) == M;
  IrNode *roots[] = {g->output, g->loss};
  for (int i = 0; i < 2; i++)
    readers += roots[i] && find(s, roots[i]) == M;
  for (int i = 0; i < g->noutputs; i++)
    readers += find(s, g->outputs[i]) == M;
  return readers == 1;
}

// Columns i..j of a product that nothing else reads, (op(A) op(B))[:, i:j],
// where B = concat(B1, ..., Bn) along op(B)'s columns and i..j are exactly
// Bk's: op(A) op(Bk), in place; the whole product goes. An LSTM's step
// multiplies [x_t, h] by W = [W_ih, W_hh]: the gradient of h takes its
// columns of g W, and those of x_t, an input's, are not computed.
static bool slice_product(Simp *s, IrNode *n) {
  if (n->op != IR_SLICE || n->ndim != 2 || n->attr.i[0] != 1 || n->attr.i[3] != 1)
    return false;
  IrNode *p = n->src[0];
  if (p->op != IR_MATMUL)
    return false;
  IrNode *B = p->src[1];
  int axis = p->attr.i[1] ? 0 : 1;   // op(B)'s columns
  if (p->src[0]->ndim != 2 || B->ndim != 2 || B->op != IR_CONCAT || B->attr.i[0] != axis || s->uses[p->id] != 1 ||
      !read_once(s, p))
    return false;
  int64_t at = 0;
  for (int i = 0; i < B->nsrc; at += B->src[i++]->shape[axis]) {
    IrNode *part = B->src[i];
    if (part->ndim != 2 || part->shape[1 - axis] != B->shape[1 - axis])   // broadcast along the other axis
      return false;
    if (at == n->attr.i[1] && at + part->shape[axis] == n->attr.i[2]) {
      n->op = IR_MATMUL;
      n->attr = p->attr;
      n->src[0] = p->src[0];
      n->src[1] = part;
      n->nsrc = 2;
      return true;
    }
  }
  return false;
}

// The max pooling whose argmax maxpool_grad M routes its gradient by: the
// one forward over M's input with M's window (pass_saved_forward's rule,
// among the nodes that stand for themselves), or NULL.
static IrNode *pool_of(Simp *s, const IrNode *M) {
  IrNode *F = NULL;
  for (int j = M->src[1]->id + 1; j < M->id; j++) {
    IrNode *f = s->g->nodes[j];
    if (s->repl[j] == f && f->op == IR_MAXPOOL && f->src[0] == M->src[1] && !memcmp(f->attr.i, M->attr.i, sizeof f->attr.i)) {
      if (F)
        return NULL;   // two such forwards: which one's argmax is ambiguous
      F = f;
    }
  }
  return F;
}

// relu_grad(maxpool_grad(G, Y), Y) with Y = relu(x), the max pooling's
// gradient its only reader: in place, maxpool_grad(relu_grad(G, F), Y),
// F = maxpool(Y) (its forward, the same settings). The mask moves to the
// pooled side, a quarter of the elements for 2x2 windows, and the loop
// over Y's full size goes: F's elements are Y's at the argmax, so F > 0
// exactly where Y > 0 at the element each gradient goes to (with
// overlapping windows too, each adding its own). The pooling gradient M
// becomes the relu's gradient (its one reader is n). tanh's and
// sigmoid's gradients, (g, Y) functions of Y at the element too, move
// the same way.
static bool pool_relu_grad(Simp *s, IrNode *n) {
  IrOp act = n->op == IR_RELU_GRAD ? IR_RELU : n->op == IR_TANH_GRAD ? IR_TANH
           : n->op == IR_SIGMOID_GRAD ? IR_SIGMOID : IR_NUM_OPS;
  if (act == IR_NUM_OPS)
    return false;
  IrNode *M = n->src[0], *Y = n->src[1];
  if (M->op != IR_MAXPOOL_GRAD || M->src[1] != Y || Y->op != act || s->uses[M->id] != 1 || !read_once(s, M))
    return false;
  IrOp grad = n->op;
  IrNode *F = pool_of(s, M), *G = M->src[0];
  if (!F || F->ndim != G->ndim || memcmp(F->shape, G->shape, sizeof(int64_t) * F->ndim))
    return false;
  n->op = IR_MAXPOOL_GRAD;
  n->attr = M->attr;
  n->src[0] = M;
  M->op = grad;
  memset(&M->attr, 0, sizeof M->attr);
  M->src[1] = F;
  M->ndim = F->ndim;
  memcpy(M->shape, F->shape, sizeof(int64_t) * F->ndim);
  const char *scope = n->scope;   // each keeps its layer's name: the pooling's gradient, the relu's
  SrcLoc loc = n->loc;
  n->scope = M->scope, n->loc = M->loc;
  M->scope = scope, M->loc = loc;
  s->redefined[M->id] = true;
  return true;
}

// Whether every window of a pooling (kernel k, stride st, padding pad,
// dilation dil over in elements, out windows) holds an element of the
// input: then each has an argmax.
static bool windows_hold_data(int64_t k, int64_t st, int64_t pad, int64_t dil, int64_t in, int64_t out) {
  for (int64_t o = 0; o < out; o++) {
    bool some = false;
    for (int64_t t = 0; t < k && !some; t++)
      some = o * st - pad + t * dil >= 0 && o * st - pad + t * dil < in;
    if (!some)
      return false;
  }
  return true;
}

// conv2d_grad_weight(maxpool_grad(G, Y), x), the pooling's windows taking
// at most half of Y's elements: conv2d_grad_weight_pooled(G, x, F), F the
// pooling, which reads G and F's argmax and adds each window's gradient
// times the convolution's window at its argmax, where the dense form
// multiplies every output's, zero at all but those; conv2d_grad_input(
// maxpool_grad(G, Y), w) likewise conv2d_grad_input_pooled(G, w, F), each
// window's gradient times w spread over the input window of its argmax. A
// quarter of the products for 2x2 windows, and the dense gradient of Y
// goes where nothing else reads it.
static bool pooled_conv_grad(Simp *s, IrNode *n) {
  if ((n->op != IR_CONV2D_GRAD_WEIGHT && n->op != IR_CONV2D_GRAD_INPUT) || n->src[0]->op != IR_MAXPOOL_GRAD)
    return false;
  IrNode *M = n->src[0], *G = M->src[0], *F = pool_of(s, M);
  const IrNode *x = n->op == IR_CONV2D_GRAD_WEIGHT ? n->src[1] : n;   // the kernels' offsets in x, padded, are int32
  if (!F || !ir_same_shape(F, G) || M->ndim != 4 || x->ndim != 4 || 2 * ir_numel(G, 1) > ir_numel(M, 1) ||
      (double)x->shape[1] * (double)(x->shape[2] + 2 * n->attr.i[2]) * (double)(x->shape[3] + 2 * n->attr.i[3]) >
          INT32_MAX)
    return false;
  n->op = n->op == IR_CONV2D_GRAD_WEIGHT ? IR_CONV2D_GRAD_WEIGHT_POOLED : IR_CONV2D_GRAD_INPUT_POOLED;
  n->src[0] = G;
  n->src[2] = F;
  n->nsrc = 3;
  return true;
}

// channel_sum(maxpool_grad(G, Y)) = channel_sum(G) where every window has
// an argmax: the pooling's gradient moves each of G's values to one of Y's
// elements of the same channel (a bias's gradient through a max pooling).
static bool pooled_channel_sum(IrNode *n) {
  if (n->op != IR_CHANNEL_SUM || n->src[0]->op != IR_MAXPOOL_GRAD)
    return false;
  IrNode *M = n->src[0], *G = M->src[0];
  const int64_t *a = M->attr.i;   // k_h k_w stride_h stride_w pad_h pad_w dil_h dil_w
  if (M->ndim != 4 || G->ndim != 4 || !windows_hold_data(a[0], a[2], a[4], a[6], M->shape[2], G->shape[2]) ||
      !windows_hold_data(a[1], a[3], a[5], a[7], M->shape[3], G->shape[3]))
    return false;
  n->src[0] = G;
  return true;
}

static void simplify_node(Simp *s, IrNode *n) {
  for (int i = 0; i < n->nsrc; i++)
    n->src[i] = find(s, n->src[i]);
  if (n->op == IR_RESHAPE && n->src[0]->op == IR_RESHAPE) {   // a reshape of a reshape
    n->src[0] = n->src[0]->src[0];
    s->identities++;
  }
  if (n->op == IR_PERMUTE && n->src[0]->op == IR_PERMUTE) {   // a permute of a permute: one permute
    IrNode *p = n->src[0];
    int64_t order[IR_MAX_DIMS];
    for (int i = 0; i < n->ndim; i++)
      order[i] = p->attr.i[n->attr.i[i]];
    memcpy(n->attr.i, order, sizeof(int64_t) * n->ndim);
    n->src[0] = p->src[0];
    s->identities++;
  }
  if (fold_transpose(n) || transpose_product(s, n) || slice_product(s, n))
    s->identities++;
  if (softmax_loss(n) || softmax_loss_grad(n))
    s->losses++;
  if (pool_relu_grad(s, n) || pooled_conv_grad(s, n) || pooled_channel_sum(n))
    s->identities++;
  IrNode *same = identity(n);
  if (same) {
    s->repl[n->id] = same;
    s->identities++;
    return;
  }
  if (fold(n))
    s->folded++;
  if (!mergeable(n))
    return;
  // The first earlier node computing the same value. Two parameters'
  // gradients stay two values: each has its place in the update's block.
  uint32_t h = node_hash(n) & (s->nbuckets - 1);
  bool grad = s->grad[n->id];
  IrNode *first = NULL;
  for (int t = 0; t < (grad ? 1 : 2); t++)
    for (int j = s->head[t][h]; j >= 0; j = s->chain[j])
      if (same_node(s->g->nodes[j], n)) {
        if (!first || j < first->id)
          first = s->g->nodes[j];
        break;
      }
  if (first) {
    s->repl[n->id] = first;
    s->merged++;
    return;
  }
  s->chain[n->id] = -1;
  if (s->tail[grad][h] >= 0)
    s->chain[s->tail[grad][h]] = n->id;
  else
    s->head[grad][h] = n->id;
  s->tail[grad][h] = n->id;
}

// Keeps leaves and what the roots need, in order; renumbers.
static void compact(Simp *s, Model *m) {
  IrGraph *g = s->g;
  bool *need = xcalloc(g->nnodes, 1);
  if (g->loss)
    need[g->loss->id] = true;
  if (g->output)   // (a graph built by hand may set its one output alone)
    need[g->output->id] = true;
  for (int i = 0; i < g->noutputs; i++)
    need[g->outputs[i]->id] = true;
  for (int i = 0; i < m->nparams; i++)
    need[m->steps[i]->id] = need[m->grads[i]->id] = true;
  for (int i = g->nnodes - 1; i >= 0; i--)
    if (need[i])
      for (int k = 0; k < g->nodes[i]->nsrc; k++)
        need[g->nodes[i]->src[k]->id] = true;
  int k = 0;
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *n = g->nodes[i];
    bool keep = need[i] || (ir_op_is_leaf(n->op) && n->op != IR_CONST && s->repl[i] == n);
    if (!keep) {
      s->removed++;
      continue;
    }
    n->id = k;
    g->nodes[k++] = n;
  }
  g->nnodes = k;
  free(need);
}

bool pass_simplify(Model *m, FILE *report, IrNode **where) {
  IrGraph *g = m->g;
  int n0 = g->nnodes;
  Simp s = {.g = g, .repl = xmalloc(sizeof(IrNode *) * g->nnodes), .grad = xcalloc(g->nnodes, sizeof(bool)),
            .redefined = xcalloc(g->nnodes, sizeof(bool))};
  for (int i = 0; i < g->nnodes; i++)
    s.repl[i] = g->nodes[i];
  s.nbuckets = 16;
  while (s.nbuckets < g->nnodes)
    s.nbuckets *= 2;
  for (int t = 0; t < 2; t++) {
    s.head[t] = xmalloc(sizeof(int) * s.nbuckets);
    s.tail[t] = xmalloc(sizeof(int) * s.nbuckets);
    memset(s.head[t], -1, sizeof(int) * s.nbuckets);
    memset(s.tail[t], -1, sizeof(int) * s.nbuckets);
  }
  s.chain = xmalloc(sizeof(int) * (g->nnodes + 1));
  s.uses = xcalloc(g->nnodes, sizeof(int));
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i]->nsrc; k++)
      s.uses[g->nodes[i]->src[k]->id]++;
  if (g->output)
    s.uses[g->output->id]++;
  if (g->loss)
    s.uses[g->loss->id]++;
  for (int i = 0; i < m->nparams; i++)
    s.uses[m->grads[i]->id]++;
  for (int i = 0; i < m->nparams; i++)
    s.grad[m->grads[i]->id] = true;
  for (int i = 0; i < g->nnodes; i++)
    simplify_node(&s, g->nodes[i]);
  for (int i = 0; i < g->noutputs; i++)
    g->outputs[i] = find(&s, g->outputs[i]);
  if (g->output)
    g->output = find(&s, g->output);
  if (g->loss)
    g->loss = find(&s, g->loss);
  for (int i = 0; i < m->nparams; i++) {
    m->grads[i] = find(&s, m->grads[i]);
    m->steps[i] = find(&s, m->steps[i]);
  }
  if (where)
    for (int i = 0; i < n0; i++) {
      IrNode *r = find(&s, g->nodes[i]);   // (a node merged into one redefined stands for it no more)
      where[i] = s.redefined[r->id] ? NULL : r;
    }
  compact(&s, m);
  if (where)   // a node compact dropped is no longer at its id
    for (int i = 0; i < n0; i++)
      if (where[i] && (where[i]->id >= g->nnodes || g->nodes[where[i]->id] != where[i]))
        where[i] = NULL;
  free(s.repl);
  free(s.grad);
  free(s.redefined);
  free(s.uses);
  for (int t = 0; t < 2; t++) {
    free(s.head[t]);
    free(s.tail[t]);
  }
  free(s.chain);
  if (report)
    fprintf(report, "simplify: %d identities, %d constants folded, %d common subexpressions merged, "
            "%d log-softmax + NLL pairs fused (loss or gradient), %d dead nodes removed\n", s.identities, s.folded,
            s.merged, s.losses, s.removed);
  return s.identities + s.folded + s.merged + s.losses + s.removed > 0;
}
