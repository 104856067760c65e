// fuse.c: from the graph to kernel IR, fusing what can share a loop.
//
// Every node an entry point needs becomes part of a kernel. Elementwise
// ops (and constants) are loop bodies; a chain of them whose intermediate
// values have a single consumer of the same shape becomes one loop that
// reads its inputs once and writes one result; an intermediate value that
// later kernels read too is stored by that loop beside its result (an
// LSTM step's c, which its h and the next step read). A matrix product is a GEMM
// whose elementwise consumers (bias, activation, a residual add) run as its
// epilogue, and so is a convolution's (the runtime runs it on each share of
// images as soon as that share is computed); a reduction (sum_to,
// channel_sum) takes in the elementwise ops that feed it. Reshapes (and
// dropout outside training) move no data: they alias their input.
// Everything else runs as a library kernel: convolution, pooling,
// batchnorm, softmax, losses, updates.
//
// fused_into[P] = E records that node P is computed inside the kernel of
// E; a node that is in no one's kernel is the root of its own.
#include "passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Ops in one fused loop at most: a chain of 40,000 adds is many loops of
// 128, not one whose generator recurses 40,000 deep.
#define MAX_LOOP_OPS 128

typedef struct Fuse {
  const Model *m;
  IrGraph *g;
  EntryKind entry;
  bool fuse;
  FILE *why;
  bool *need;            // need[id]: the entry point computes node id
  bool *keep;            // keep[id]: the caller reads it after the step (output, loss)
  int *uses;             // uses[id]: consumers among the needed nodes
  bool *folded;          // folded[id]: a layout op that batched products read through (fold_views)
  int *fused_into;       // the node whose kernel computes this one, or -1
  bool *stored;          // stored[id]: computed in another node's loop, which also stores it (several readers)
  int *value;            // value[id]: a stored node's instruction in that loop
  int *gemms;            // GEMMs and convolutions in the kernel rooted at this node
  int *ops;              // ops computed in the kernel rooted at this node, itself included
  KProgram *p;
} Fuse;

float pass_mean_scale(const IrNode *n) {
  const IrNode *x = n->src[0];
  int64_t count = 1;
  for (int j = 0; j < x->ndim; j++)
    if (n->attr.i[0] >> j & 1)
      count *= x->shape[j];
  return (float)(1.0 / (double)count);
}

unsigned pass_entries(const Model *m) {
  unsigned e = 1u << ENTRY_FORWARD;
  if (m->g->loss)
    e |= 1u << ENTRY_EVAL;
  if (m->g->loss && m->steps)
    e |= 1u << ENTRY_TRAIN;
  return e;
}

void pass_kept(const Model *m, EntryKind entry, bool *keep) {
  const IrGraph *g = m->g;
  for (int i = 0; i < g->noutputs; i++)
    keep[g->outputs[i]->id] = true;
  if (g->output)
    keep[g->output->id] = true;
  if (entry == ENTRY_FORWARD || !g->loss)
    return;
  keep[g->loss->id] = true;
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int n = ir_loss_terms(g, terms, w, IR_MAX_LOSS_TERMS);
  for (int i = 0; i < n && i < IR_MAX_LOSS_TERMS; i++)
    keep[terms[i]->id] = true;
}

void pass_needed(const Model *m, EntryKind entry, bool *need) {
  const IrGraph *g = m->g;
  memset(need, 0, sizeof(bool) * g->nnodes);
  pass_kept(m, entry, need);
  if (entry == ENTRY_TRAIN)
    for (int i = 0; i < m->nparams; i++)
      need[m->steps[i]->id] = true;
  for (int i = g->nnodes - 1; i >= 0; i--)
    if (need[i])
      for (int k = 0; k < g->nodes[i]->nsrc; k++)
        need[g->nodes[i]->src[k]->id] = true;
}

// The op kinds (ops.def) that decide how a node is lowered.
static bool is_elementwise(IrOp op) { return ir_op_kind(op) == IR_KIND_ELEMENTWISE; }
static bool is_reduction(IrOp op) { return ir_op_kind(op) == IR_KIND_REDUCE; }
static bool is_update(IrOp op) { return ir_op_kind(op) == IR_KIND_UPDATE; }

// Products whose elementwise consumers may run as their epilogue: a GEMM,
// and a convolution (a library kernel that runs the epilogue on each share
// of images as soon as it has computed it).
static bool has_epilogue(IrOp op) { return op == IR_MATMUL || op == IR_CONV2D || op == IR_LAYERNORM; }

// Ops that move no data in this entry point: their value is their input's.
static bool is_alias(const Fuse *f, const IrNode *n) {
  return ir_op_kind(n->op) == IR_KIND_VIEW ||
         ((n->op == IR_DROPOUT || n->op == IR_GAUSSIAN_NOISE) && f->entry != ENTRY_TRAIN);
}

static const char *mnem(const IrNode *n) { return ir_op_info(n->op)->mnem; }

static void why_not(Fuse *f, const IrNode *p, const IrNode *c, const char *reason) {
  if (f->why)
    fprintf(f->why, "  %%%d (%s) -> %%%d (%s): %s\n", p->id, mnem(p), c->id, mnem(c), reason);
}

// How many of c's inputs are p (x + x: 2).
static int reads(const IrNode *c, const IrNode *p) {
  int n = 0;
  for (int k = 0; k < c->nsrc; k++)
    n += c->src[k] == p;
  return n;
}

// Decides whether producer p is computed inside consumer c's kernel.
static void try_fuse(Fuse *f, IrNode *p, IrNode *c) {
  if (ir_op_is_leaf(p->op))
    return;   // constants are inlined; parameters and inputs are loaded
  if (f->folded[p->id] || f->folded[c->id])
    return;   // no data moves there: each product reads the tensor under the chain
  if (f->fuse && c->op == IR_PERMUTE && p->op == IR_BATCH_MATMUL && !f->keep[p->id] && f->uses[p->id] == 1 &&
      !(p->ndim > 0 && p->shape[0] == IR_N && c->attr.i[0] != 0)) {
    f->fused_into[p->id] = c->id;   // the product stores its sums in the permute's order
    return;
  }
  bool c_loop = is_elementwise(c->op) || is_reduction(c->op);
  const char *reason = NULL;
  if (!f->fuse)
    reason = "fusion is off";
  else if (c->op == IR_SLICE && p->op != IR_SLICE)
    reason = "a slice loads its input from memory, at its own indexes";
  else if (c->op == IR_CONCAT && (!(is_elementwise(p->op) || p->op == IR_SLICE) || f->gemms[p->id] ||
                                   p->ndim != c->ndim))
    reason = "a concat copies each input from memory";   // a part's loop computes only loops
  else if (c->op == IR_PERMUTE)
    reason = "a permute reads its input from memory, in another order";
  else if (!c_loop && c->op != IR_SLICE && c->op != IR_CONCAT)
    reason = c->op == IR_BATCH_MATMUL ? "a batched product reads its operands from memory"
             : ir_op_kind(c->op) == IR_KIND_MATMUL ? "a GEMM reads its operands from memory"
             : is_update(c->op) ? "an optimizer update reads the gradient from memory"
             : is_alias(f, c)   ? "a reshape moves no data; its input stays as it is"
                                : "a library kernel reads its inputs from memory";
  else if (is_alias(f, p))
    reason = "a reshape changes the index space";
  else if (!is_elementwise(p->op) && !has_epilogue(p->op) && p->op != IR_SLICE)
    reason = is_reduction(p->op) || p->op == IR_BATCH_MATMUL ? "a reduction's result is complete only after its loop"
             : p->op == IR_CONCAT                            ? "a concat writes its result to memory"
                                                             : "a library kernel writes its result to memory";
  else if (f->keep[p->id])
    reason = "the value is an output of the step";
  else if (f->fused_into[p->id] >= 0)
    reason = "the value is computed and stored in the loop of another consumer";
  else if (f->uses[p->id] > 1 && (!is_elementwise(p->op) || !is_elementwise(c->op) || f->gemms[p->id] ||
                                  f->gemms[c->id] || !ir_same_shape(p, c) || f->uses[p->id] == reads(c, p)))
    reason = "the value has several consumers";   // else computed in this loop and stored too (store_siblings)
  else if (c->op != IR_SLICE && c->op != IR_CONCAT && !ir_same_shape(p, is_reduction(c->op) ? c->src[0] : c))
    reason = "the shapes differ (a broadcast)";
  else if ((has_epilogue(p->op) || f->gemms[p->id]) && is_reduction(c->op))
    reason = "an epilogue cannot reduce";   // nor can a loop that holds one (x @ w -> * p, summed to p)
  else if ((has_epilogue(p->op) || f->gemms[p->id]) && f->gemms[c->id])
    reason = "the consumer already has a GEMM or convolution";
  else if (f->ops[c->id] + f->ops[p->id] > MAX_LOOP_OPS)
    reason = "the consumer's loop has as many ops as one loop may have";
  if (reason) {
    why_not(f, p, c, reason);
    return;
  }
  f->fused_into[p->id] = c->id;
  f->stored[p->id] = f->uses[p->id] > 1;
  f->gemms[c->id] += f->gemms[p->id] + has_epilogue(p->op);
  f->ops[c->id] += f->ops[p->id];
}

//
// Loop bodies
//

typedef struct Gen {
  Fuse *f;
  Kernel *k;
  const IrNode *root;
  const IrNode *gemm;    // the GEMM of an epilogue: its value is loaded from C
} Gen;

static int emit(Gen *gen, KInstr in) { return ir_kernel_instr(gen->f->g, gen->k, in); }
static int emit_const(Gen *gen, float v) { return emit(gen, (KInstr){.op = KI_CONST, .imm = v}); }
static int emit2(Gen *gen, KInstrOp op, int a, int b) { return emit(gen, (KInstr){.op = op, .a = a, .b = b}); }
static int emit1(Gen *gen, KInstrOp op, int a) { return emit(gen, (KInstr){.op = op, .a = a}); }
static int emit_select(Gen *gen, int cond, int a, int b) { return emit(gen, (KInstr){.op = KI_SELECT, .a = cond, .b = a, .c = b}); }
static int emit_mulc(Gen *gen, int a, float c) { return emit2(gen, KI_MUL, a, emit_const(gen, c)); }

static int gen_value(Gen *gen, const IrNode *n);
static int gen_act(Gen *gen, const IrNode *n, int a, int b);

// The row-major strides of n's elements, dimension by dimension.
static KIndex strides_of(const IrNode *n) { return ir_kernel_index(n, n->ndim, n->shape); }

// A permute's value: its input loaded with the strides of its dimensions in
// the permute's order (the loop's space is the permute's shape).
static int gen_permute(Gen *gen, const IrNode *n) {
  const IrNode *x = n->src[0];
  KIndex xs = strides_of(x), idx = {0};
  int off = gen->k->ndim - n->ndim;
  for (int i = 0; i < n->ndim; i++)
    idx.stride[off + i] = xs.stride[n->attr.i[i]];
  return emit(gen, (KInstr){.op = KI_LOAD, .buf = ir_kernel_buf(gen->f->g, gen->k, x), .idx = idx});
}

// A value from memory, broadcast over the loop space.
static int gen_load(Gen *gen, const IrNode *n) {
  Kernel *k = gen->k;
  KInstr in = {.op = n->dtype == DT_I32 ? KI_LOADI : KI_LOAD, .buf = ir_kernel_buf(gen->f->g, k, n),
               .idx = ir_kernel_index(n, k->ndim, k->dims)};
  return emit(gen, in);
}

// n's element's position over the axes of the mask (row-major), from the
// loop indexes, as a float: the loop space is n's shape, aligned at the right.
static int gen_position(Gen *gen, const IrNode *n, int64_t axes) {
  int pos = emit_const(gen, 0);
  int64_t stride = 1;
  for (int j = n->ndim - 1; j >= 0; j--)
    if (axes >> j & 1) {
      int at = emit(gen, (KInstr){.op = KI_INDEX, .dim = gen->k->ndim - n->ndim + j});
      pos = emit2(gen, KI_ADD, pos, emit2(gen, KI_MUL, at, emit_const(gen, (float)stride)));
      stride *= n->shape[j];
    }
  return pos;
}

// The instructions of elementwise node n, on its operands' values.
static int gen_op(Gen *gen, const IrNode *n) {
  if (n->op == IR_PERMUTE)
    return gen_permute(gen, n);
  int a = n->nsrc > 0 ? gen_value(gen, n->src[0]) : -1;
  int b = n->nsrc > 1 ? gen_value(gen, n->src[1]) : -1;
  switch (n->op) {
  case IR_CONST: return emit_const(gen, (float)n->attr.f[0]);
  case IR_ADD: return emit2(gen, KI_ADD, a, b);
  case IR_SUB: return emit2(gen, KI_SUB, a, b);
  case IR_MUL: return emit2(gen, KI_MUL, a, b);
  case IR_DIV: return emit2(gen, KI_DIV, a, b);
  case IR_NEG: return emit1(gen, KI_NEG, a);
  case IR_EXP: return emit1(gen, KI_EXP, a);
  case IR_LOG: return emit1(gen, KI_LOG, a);
  case IR_TANH: return emit1(gen, KI_TANH, a);
  case IR_SIGMOID: return emit1(gen, KI_SIGMOID, a);
  case IR_RELU: {   // x > 0 ? x : 0, as the ref kernel
    int zero = emit_const(gen, 0);
    return emit(gen, (KInstr){.op = KI_SELECT, .a = emit2(gen, KI_GT, a, zero), .b = a, .c = zero});
  }
  case IR_RELU_GRAD: {   // (g, y): g where y > 0
    int zero = emit_const(gen, 0);
    return emit(gen, (KInstr){.op = KI_SELECT, .a = emit2(gen, KI_GT, b, zero), .b = a, .c = zero});
  }
  case IR_SIGMOID_GRAD:   // (g, y): g * (1 - y) * y, in the ref kernel's order
    return emit2(gen, KI_MUL, emit2(gen, KI_MUL, a, emit2(gen, KI_SUB, emit_const(gen, 1), b)), b);
  case IR_MAX_GRAD: {     // (g, first): g where this is the first maximum, as k_max_grad
    int at = emit2(gen, KI_EQ, gen_position(gen, n, n->attr.i[0]), emit1(gen, KI_NEG, b));
    return emit(gen, (KInstr){.op = KI_SELECT, .a = at, .b = a, .c = emit_const(gen, 0)});
  }
  case IR_TANH_GRAD:      // (g, y): g * (1 - y * y)
    return emit2(gen, KI_MUL, a, emit2(gen, KI_SUB, emit_const(gen, 1), emit2(gen, KI_MUL, b, b)));
  default:
    return gen_act(gen, n, a, b);
  }
}

// The activations and their gradients (a: x, or g and b: x), in the order
// of operations of the ref kernels (runtime/kernels_act.c).
static int gen_act(Gen *gen, const IrNode *n, int a, int b) {
  const double *f = n->attr.f;
  switch (n->op) {
  case IR_GELU:
    if (n->attr.i[0]) {   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      int x3 = emit2(gen, KI_MUL, emit2(gen, KI_MUL, a, a), a);
      int inner = emit_mulc(gen, emit2(gen, KI_ADD, a, emit_mulc(gen, x3, K_GELU_KAPPA)), K_GELU_BETA);
      return emit2(gen, KI_MUL, emit_mulc(gen, a, 0.5f), emit2(gen, KI_ADD, emit_const(gen, 1), emit1(gen, KI_TANH, inner)));
    }
    return emit2(gen, KI_MUL, emit_mulc(gen, a, 0.5f),
                 emit2(gen, KI_ADD, emit_const(gen, 1), emit1(gen, KI_ERF, emit_mulc(gen, a, K_SQRT1_2))));
  case IR_GELU_GRAD:
    if (n->attr.i[0]) {
      int x2 = emit2(gen, KI_MUL, b, b), x3 = emit2(gen, KI_MUL, x2, b);
      int inner = emit_mulc(gen, emit2(gen, KI_ADD, b, emit_mulc(gen, x3, K_GELU_KAPPA)), K_GELU_BETA);
      int th = emit1(gen, KI_TANH, inner);
      int left = emit_mulc(gen, b, 0.5f), right = emit2(gen, KI_ADD, emit_const(gen, 1), th);
      int dleft = emit_mulc(gen, right, 0.5f);
      int dtanh = emit2(gen, KI_SUB, emit_const(gen, 1), emit2(gen, KI_MUL, th, th));
      int dinner = emit_mulc(gen, emit2(gen, KI_ADD, emit_const(gen, 1), emit_mulc(gen, x2, 3 * K_GELU_KAPPA)), K_GELU_BETA);
      int dright = emit2(gen, KI_MUL, emit2(gen, KI_MUL, left, dtanh), dinner);
      return emit2(gen, KI_MUL, a, emit2(gen, KI_ADD, dleft, dright));
    } else {   // g (cdf + x pdf)
      int cdf = emit_mulc(gen, emit2(gen, KI_ADD, emit_const(gen, 1), emit1(gen, KI_ERF, emit_mulc(gen, b, K_SQRT1_2))), 0.5f);
      int pdf = emit_mulc(gen, emit1(gen, KI_EXP, emit_mulc(gen, emit2(gen, KI_MUL, b, b), -0.5f)), K_GELU_PDF);
      return emit2(gen, KI_MUL, a, emit2(gen, KI_ADD, cdf, emit2(gen, KI_MUL, b, pdf)));
    }
  case IR_LEAKY_RELU:
    return emit_select(gen, emit2(gen, KI_GT, a, emit_const(gen, 0)), a, emit_mulc(gen, a, (float)f[0]));
  case IR_LEAKY_RELU_GRAD:
    return emit_select(gen, emit2(gen, KI_GT, b, emit_const(gen, 0)), a, emit_mulc(gen, a, (float)f[0]));
  case IR_SILU:   // x / (1 + exp(-x))
    return emit2(gen, KI_DIV, a, emit2(gen, KI_ADD, emit_const(gen, 1), emit1(gen, KI_EXP, emit1(gen, KI_NEG, a))));
  case IR_SILU_GRAD: {   // g s (1 + x (1 - s)), s = sigmoid(x)
    int s = emit2(gen, KI_DIV, emit_const(gen, 1), emit2(gen, KI_ADD, emit_const(gen, 1), emit1(gen, KI_EXP, emit1(gen, KI_NEG, b))));
    int t = emit2(gen, KI_ADD, emit_const(gen, 1), emit2(gen, KI_MUL, b, emit2(gen, KI_SUB, emit_const(gen, 1), s)));
    return emit2(gen, KI_MUL, emit2(gen, KI_MUL, a, s), t);
  }
  case IR_ELU: {   // x > 0 ? x : alpha (exp(x) - 1)
    int neg = emit2(gen, KI_MUL, emit_const(gen, (float)f[0]), emit2(gen, KI_SUB, emit1(gen, KI_EXP, a), emit_const(gen, 1)));
    return emit_select(gen, emit2(gen, KI_GT, a, emit_const(gen, 0)), a, neg);
  }
  case IR_ELU_GRAD: {
    int neg = emit2(gen, KI_MUL, a, emit2(gen, KI_MUL, emit_const(gen, (float)f[0]), emit1(gen, KI_EXP, b)));
    return emit_select(gen, emit2(gen, KI_GT, b, emit_const(gen, 0)), a, neg);
  }
  case IR_SOFTPLUS: {   // x beta > threshold ? x : log1p(exp(x beta)) / beta
    int bx = emit_mulc(gen, a, (float)f[0]), z = emit1(gen, KI_EXP, bx), u = emit2(gen, KI_ADD, emit_const(gen, 1), z);
    // log1p(z) = log(u) z / (u - 1), exact where u rounds to 1 (log1p(z) = z there)
    int lp = emit2(gen, KI_MUL, emit1(gen, KI_LOG, u), emit2(gen, KI_DIV, z, emit2(gen, KI_SUB, u, emit_const(gen, 1))));
    lp = emit_select(gen, emit2(gen, KI_EQ, u, emit_const(gen, 1)), z, lp);
    int soft = emit2(gen, KI_DIV, lp, emit_const(gen, (float)f[0]));
    return emit_select(gen, emit2(gen, KI_GT, bx, emit_const(gen, (float)f[1])), a, soft);
  }
  case IR_SOFTPLUS_GRAD: {   // g where x beta > threshold, else g z / (z + 1), z = exp(x beta)
    int bx = emit_mulc(gen, b, (float)f[0]), z = emit1(gen, KI_EXP, bx);
    int soft = emit2(gen, KI_DIV, emit2(gen, KI_MUL, a, z), emit2(gen, KI_ADD, z, emit_const(gen, 1)));
    return emit_select(gen, emit2(gen, KI_GT, bx, emit_const(gen, (float)f[1])), a, soft);
  }
  case IR_SQRT: return emit1(gen, KI_SQRT, a);
  case IR_SQRT_GRAD: return emit2(gen, KI_DIV, a, emit_mulc(gen, b, 2));
  case IR_ABS: return emit1(gen, KI_ABS, a);
  case IR_ABS_GRAD: return emit2(gen, KI_MUL, a, emit1(gen, KI_SIGN, b));
  case IR_CLAMP: {   // min(max(x, lo), hi) with NaN kept: the bound is the first operand
    int v = a;
    if (n->attr.i[0])
      v = emit2(gen, KI_MAX, emit_const(gen, (float)f[0]), v);
    if (n->attr.i[1])
      v = emit2(gen, KI_MIN, emit_const(gen, (float)f[1]), v);
    return v;
  }
  case IR_CLAMP_GRAD: {   // g where lo < x < hi
    int v = a;
    if (n->attr.i[0])
      v = emit_select(gen, emit2(gen, KI_GT, b, emit_const(gen, (float)f[0])), v, emit_const(gen, 0));
    if (n->attr.i[1])
      v = emit_select(gen, emit2(gen, KI_GT, emit_const(gen, (float)f[1]), b), v, emit_const(gen, 0));
    return v;
  }
  default:
    unreachable();
  }
}

static int root_of(const Fuse *f, int n);

// Whether n's value is computed inside the kernel rather than loaded (a
// value stored for other readers is loaded by them).
static bool computed_here(Gen *gen, const IrNode *n) {
  if (gen->f->stored[n->id] && root_of(gen->f, n->id) != gen->root->id)
    return false;
  return n == gen->root || (n != gen->gemm && gen->f->fused_into[n->id] >= 0 && !has_epilogue(n->op));
}

// The index of element base[j] + mul[j] * i of tensor x (of seen's rank),
// i running over the loop space aligned at the right with seen's shape:
// where seen has 1 and the loop more, i is 0 (a broadcast).
static KIndex strided_index(const Kernel *k, const IrNode *x, const IrNode *seen, const int64_t *base,
                            const int64_t *mul) {
  KIndex ix = {0};
  int64_t stride = 1;
  for (int j = x->ndim - 1; j >= 0; j--) {
    int d = k->ndim - x->ndim + j;
    ix.offset += stride * base[j];
    if (d >= 0 && (seen->shape[j] != 1 || k->dims[d] == 1))
      ix.stride[d] = stride * mul[j];
    if (x->shape[j] != IR_N)
      stride *= x->shape[j];
  }
  return ix;
}

// A slice (and the slices of slices computed with it): one load of the
// tensor under them at element start + step * i along each sliced axis.
static int gen_slice(Gen *gen, const IrNode *n) {
  int64_t base[IR_MAX_DIMS] = {0}, mul[IR_MAX_DIMS];
  for (int j = 0; j < IR_MAX_DIMS; j++)
    mul[j] = 1;
  const IrNode *x = n;
  for (;;) {   // along axis a, x's element base + mul * i is its input's start + step * (base + mul * i)
    int a = (int)x->attr.i[0];
    base[a] = x->attr.i[1] + x->attr.i[3] * base[a];
    mul[a] *= x->attr.i[3];
    x = x->src[0];
    if (x->op != IR_SLICE || !computed_here(gen, x))
      break;
    ir_kernel_add_node(gen->f->g, gen->k, x);
  }
  KInstr in = {.op = KI_LOAD, .buf = ir_kernel_buf(gen->f->g, gen->k, x),
               .idx = strided_index(gen->k, x, n, base, mul)};
  return emit(gen, in);
}

// The value of n inside the kernel: computed in place when n is fused
// into it, else loaded.
static int gen_value(Gen *gen, const IrNode *n) {
  Fuse *f = gen->f;
  if (n->op == IR_CONST)
    return emit_const(gen, (float)n->attr.f[0]);
  if (!computed_here(gen, n))
    return gen_load(gen, n);
  ir_kernel_add_node(f->g, gen->k, n);
  int v = n->op == IR_SLICE ? gen_slice(gen, n) : gen_op(gen, n);
  if (f->stored[n->id])
    f->value[n->id] = v;
  return v;
}

static void set_space(Kernel *k, const IrNode *shape) {
  k->ndim = shape->ndim;
  memcpy(k->dims, shape->shape, sizeof(int64_t) * shape->ndim);
}

// "linear_1 + relu_1": the distinct scopes of a kernel's nodes.
static const char *scopes_name(Fuse *f, const Kernel *k) {
  StrBuf sb = {0};
  for (int i = 0; i < k->nnodes; i++) {
    const char *s = k->nodes[i]->scope ? k->nodes[i]->scope : mnem(k->nodes[i]);
    bool seen = false;
    for (int j = 0; j < i && !seen; j++)
      seen = !strcmp(s, k->nodes[j]->scope ? k->nodes[j]->scope : mnem(k->nodes[j]));
    if (!seen)
      sb_printf(&sb, "%s%s", sb.len ? " + " : "", s);
  }
  const char *name = arena_strdup(f->g->arena, sb.data ? sb.data : k->name);
  sb_free(&sb);
  return name;
}

// Whether a loop may split dimension 0 across threads: no store sums over it.
static bool splittable(const Kernel *k) {
  if (k->ndim == 0)
    return false;
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].reduce != KR_NONE && k->stores[i].idx.stride[0] == 0)
      return false;
  return true;
}

// The kernel that computes n: its root's.
static int root_of(const Fuse *f, int n) {
  while (f->fused_into[n] >= 0)
    n = f->fused_into[n];
  return n;
}

// A value with several readers may be computed in the loop of one of them
// and stored there too (an LSTM step's c: its h reads it, and so does the
// next step), when that loop is a plain loop or a concat's part (no GEMM,
// no reduction; the LSTM's h goes into [x_t, h]) and runs before the
// kernel of every other reader, which loads it. Kernels run in the order
// of their roots. Any other stays a loop of its own.
static void store_siblings(Fuse *f) {
  const IrGraph *g = f->g;
  int nn = g->nnodes;
  int *first_reader = xmalloc(sizeof(int) * nn);   // the earliest kernel root that reads each node
  for (bool changed = true; changed;) {   // a node taken out changes the roots of those fused into it
    changed = false;
    for (int i = 0; i < nn; i++)
      first_reader[i] = nn;
    for (int i = 0; i < nn; i++)
      if (f->need[i])
        for (int k = 0; k < g->nodes[i]->nsrc; k++) {
          int p = g->nodes[i]->src[k]->id, r = root_of(f, i);
          if (f->stored[p] && r != root_of(f, p) && r < first_reader[p])
            first_reader[p] = r;
        }
    for (int i = nn - 1; i >= 0 && !changed; i--) {
      if (!f->stored[i])
        continue;
      int r = root_of(f, i);
      if (first_reader[i] <= r || f->gemms[r] || !(is_elementwise(g->nodes[r]->op) || g->nodes[r]->op == IR_CONCAT)) {
        why_not(f, g->nodes[i], g->nodes[f->fused_into[i]], "the value has several consumers, and the "
                "loop of this one cannot store it for the others");
        f->stored[i] = false;
        f->fused_into[i] = -1;
        changed = true;
      }
    }
  }
  for (int i = 0; i < nn; i++)   // every reader in the same loop (n - z * n): nothing to store
    if (f->stored[i] && first_reader[i] == nn)
      f->stored[i] = false;
  free(first_reader);
}

// Stores the values computed in k's loop that other kernels read too
// (store_siblings), each at its own index over k's dimensions.
static void store_computed(Fuse *f, Kernel *k, const IrNode *root) {
  for (int i = 0; i < k->nnodes; i++) {
    const IrNode *x = k->nodes[i];
    if (x != root && f->stored[x->id])
      ir_kernel_store(f->g, k, (KStore){.buf = ir_kernel_buf(f->g, k, x),
                                        .idx = ir_kernel_index(x, k->ndim, k->dims), .value = f->value[x->id]});
  }
}

// An elementwise root: a loop over its shape storing its value (and the
// values computed in it that other kernels read too).
static Kernel *loop_kernel(Fuse *f, IrNode *root, const IrNode *gemm) {
  Kernel *k = ir_kernel_new(f->g, KN_LOOP, root->scope ? root->scope : mnem(root));
  set_space(k, root);
  Gen gen = {f, k, root, gemm};
  int v = gen_value(&gen, root);
  KStore st = {.buf = ir_kernel_buf(f->g, k, root), .idx = ir_kernel_index(root, k->ndim, k->dims), .value = v};
  ir_kernel_store(f->g, k, st);
  store_computed(f, k, root);
  k->parallel = splittable(k);
  k->name = scopes_name(f, k);
  return k;
}

// sum_to and channel_sum: a loop over the input's shape, summing into the
// result; the ops that feed the input are computed in the same loop.
static Kernel *reduce_kernel(Fuse *f, IrNode *root) {
  const IrNode *x = root->src[0];
  Kernel *k = ir_kernel_new(f->g, KN_LOOP, root->scope ? root->scope : mnem(root));
  set_space(k, x);
  Gen gen = {f, k, root, NULL};
  ir_kernel_add_node(f->g, k, root);
  int v = gen_value(&gen, x);
  KIndex idx = {0};
  if (root->op == IR_SUM_TO) {
    idx = ir_kernel_index(root, k->ndim, k->dims);
  } else if (root->op == IR_MAX_FIRST) {   // -position where x equals the max, or -inf: the largest wins
    idx = ir_kernel_index(root, k->ndim, k->dims);
    int eq = emit2(&gen, KI_EQ, v, gen_value(&gen, root->src[1]));
    int pos = emit1(&gen, KI_NEG, gen_position(&gen, x, root->attr.i[0]));
    v = emit(&gen, (KInstr){.op = KI_SELECT, .a = eq, .b = pos, .c = emit_const(&gen, -INFINITY)});
  } else if (root->op == IR_SUM || root->op == IR_MEAN || root->op == IR_MAX) {   // the axes reduced have stride 0
    int64_t stride = 1;
    for (int j = x->ndim - 1; j >= 0; j--)
      if (!(root->attr.i[0] >> j & 1)) {
        idx.stride[j] = stride;
        stride *= x->shape[j] == IR_N ? 1 : x->shape[j];
      }
    if (root->op == IR_MEAN)
      v = emit2(&gen, KI_MUL, v, emit_const(&gen, pass_mean_scale(root)));
  } else if (root->op == IR_SLICE_GRAD) {   // each element of g to its place in the zeroed result
    int64_t base[IR_MAX_DIMS] = {0}, mul[IR_MAX_DIMS];
    for (int j = 0; j < IR_MAX_DIMS; j++)
      mul[j] = 1;
    base[root->attr.i[0]] = root->attr.i[1];
    mul[root->attr.i[0]] = root->attr.i[3];
    idx = strided_index(k, root, x, base, mul);
  } else {
    idx.stride[1] = 1;   // channel_sum: [N, C, ...] -> [C]
  }
  KReduce r = root->op == IR_MAX || root->op == IR_MAX_FIRST ? KR_MAX : KR_SUM;
  ir_kernel_store(f->g, k, (KStore){.buf = ir_kernel_buf(f->g, k, root), .idx = idx, .value = v, .reduce = r});
  k->parallel = splittable(k);
  k->name = scopes_name(f, k);
  return k;
}

// A concat: a loop per input over its part of the result, each element
// stored at its offset along the axis (an input without the batch
// dimension is loaded again for every sample). An elementwise input that
// only the concat reads is computed in its part's loop.
static void add_kernel(Fuse *f, Kernel *k);

static void concat_kernels(Fuse *f, IrNode *n) {
  int axis = (int)n->attr.i[0];
  int64_t inner = 1, at = 0;
  for (int j = axis + 1; j < n->ndim; j++)
    inner *= n->shape[j];
  for (int i = 0; i < n->nsrc; i++) {
    const IrNode *x = n->src[i];
    Kernel *k = ir_kernel_new(f->g, KN_LOOP, n->scope ? n->scope : mnem(n));
    set_space(k, n);
    k->dims[axis] = x->shape[axis - (n->ndim - x->ndim)];
    Gen gen = {f, k, n, NULL};
    ir_kernel_add_node(f->g, k, n);
    int v = gen_value(&gen, x);
    KIndex idx = ir_kernel_index(n, k->ndim, k->dims);
    idx.stride[axis] = inner;
    idx.offset = at * inner;
    ir_kernel_store(f->g, k, (KStore){.buf = ir_kernel_buf(f->g, k, n), .idx = idx, .value = v});
    store_computed(f, k, n);
    k->parallel = splittable(k);
    k->name = arena_printf(f->g->arena, "%s: part %d of %d", scopes_name(f, k), i + 1, n->nsrc);
    add_kernel(f, k);
    at += k->dims[axis];
  }
}

// The extents of a GEMM from its operands' shapes.
static Kernel *gemm_kernel(Fuse *f, IrNode *mm) {
  const IrNode *a = mm->src[0], *b = mm->src[1];
  Kernel *k = ir_kernel_new(f->g, KN_GEMM, mm->scope ? mm->scope : "matmul");
  ir_kernel_buf(f->g, k, a);
  ir_kernel_buf(f->g, k, b);
  ir_kernel_buf(f->g, k, mm);
  ir_kernel_add_node(f->g, k, mm);
  k->ta = mm->attr.i[0];
  k->tb = mm->attr.i[1];
  int64_t last = a->shape[a->ndim - 1];
  if (k->ta) {   // a is [..., K, M]: leading dimensions fold into K
    k->k = (KExtent){ir_numel(a, 1) / last, ir_is_batched(a)};
    k->m = (KExtent){last, false};
  } else {       // a is [..., M, K]: leading dimensions fold into M
    k->k = (KExtent){last, false};
    k->m = (KExtent){ir_numel(a, 1) / last, ir_is_batched(a)};
  }
  k->n = (KExtent){k->tb ? b->shape[0] : b->shape[b->ndim - 1], false};
  return k;
}

// An operand of a batched product as its loop reads it: the buffer, and
// the offset and the stride of each of the operand's dimensions in it
// (through a chain of folded layout ops, those of the tensor under it).
typedef struct View {
  const IrNode *buf;
  int64_t offset;
  int64_t stride[IR_MAX_DIMS];
} View;

// The view of x after reshape n (x's view v, n's shape): each run of n's
// dimensions whose sizes multiply to a run of x's takes its strides from
// that run, which must then be contiguous in itself. False where it is not
// (a reshape that merges a permuted pair of dimensions moves data).
static bool reshape_view(const IrNode *x, const View *v, const IrNode *n, View *out) {
  int i = 0, j = 0;
  for (int d = 1; d < x->ndim || d < n->ndim; d++)
    if ((d < x->ndim && x->shape[d] == IR_N) || (d < n->ndim && n->shape[d] == IR_N))
      return false;
  if (x->ndim > 0 && n->ndim > 0 && (x->shape[0] == IR_N || n->shape[0] == IR_N)) {
    if (x->shape[0] != IR_N || n->shape[0] != IR_N)
      return false;
    out->stride[0] = v->stride[0];
    i = j = 1;
  }
  while (i < x->ndim || j < n->ndim) {
    int i0 = i, j0 = j;
    int64_t pi = i < x->ndim ? x->shape[i++] : 1, po = j < n->ndim ? n->shape[j++] : 1;
    while (pi != po) {
      if (pi < po && i < x->ndim)
        pi *= x->shape[i++];
      else if (pi > po && j < n->ndim)
        po *= n->shape[j++];
      else
        return false;
    }
    int64_t inner = 1, outer = 0;   // the run's innermost stride; the next dimension's, were it contiguous
    bool seen = false;
    for (int d = i - 1; d >= i0; d--) {
      if (x->shape[d] == 1)
        continue;   // one element: any stride
      if (!seen)
        inner = v->stride[d], seen = true;
      else if (v->stride[d] != outer)
        return false;   // not contiguous within the run
      outer = v->stride[d] * x->shape[d];
    }
    for (int d = j - 1; d >= j0; d--) {
      out->stride[d] = inner;
      inner *= n->shape[d];
    }
  }
  return true;
}

// The view of layout op n's value in the tensor under the chain of folded
// ops it reads (n's own buffer where n is not folded). False where a
// reshape along the way cannot be a view.
static bool view_of(const Fuse *f, const IrNode *n, View *v) {
  if (!f->folded[n->id]) {
    *v = (View){.buf = n};
    memcpy(v->stride, strides_of(n).stride, sizeof v->stride);
    return true;
  }
  const IrNode *x = n->src[0];
  View in;
  if (!view_of(f, x, &in))
    return false;
  *v = (View){.buf = in.buf, .offset = in.offset};
  switch (n->op) {
  case IR_PERMUTE:
    if (x->ndim > 0 && x->shape[0] == IR_N && n->attr.i[0] != 0)
      return false;   // the batch stays the outermost loop
    for (int d = 0; d < n->ndim; d++)
      v->stride[d] = in.stride[n->attr.i[d]];
    return true;
  case IR_SLICE: {
    int a = (int)n->attr.i[0];
    memcpy(v->stride, in.stride, sizeof v->stride);
    v->offset += n->attr.i[1] * in.stride[a];
    v->stride[a] *= n->attr.i[3];
    return true;
  }
  default: return reshape_view(x, &in, n, v);
  }
}

// Layout ops (reshape, permute, slice) read only by batched products and
// by other such ops move no data: each product reads the tensor under the
// chain with the chain's offset and strides (attention's q, k and v are
// slices of a permute of a reshape of one GEMM's result). A chain that
// cannot be a view (view_of) is computed, and so is everything under it.
static void fold_views(Fuse *f) {
  const IrGraph *g = f->g;
  int nn = g->nnodes;
  bool *other_reader = xcalloc(nn, sizeof(bool));   // read by something that needs it in memory
  for (int i = nn - 1; i >= 0; i--) {
    const IrNode *n = g->nodes[i];
    IrOp op = n->op;
    f->folded[i] = f->fuse && f->need[i] && !f->keep[i] && f->uses[i] > 0 && !other_reader[i] &&
                   (op == IR_RESHAPE || op == IR_PERMUTE || op == IR_SLICE) && n->src[0]->op != IR_CONST;
    if (f->need[i] && op != IR_BATCH_MATMUL && !f->folded[i])
      for (int k = 0; k < n->nsrc; k++)
        other_reader[n->src[k]->id] = true;
  }
  free(other_reader);
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = 0; i < nn; i++) {
      View v;
      if (!f->folded[i] || view_of(f, g->nodes[i], &v))
        continue;
      for (const IrNode *x = g->nodes[i]; f->folded[x->id]; x = x->src[0])
        f->folded[x->id] = false;   // computed, and so is what it reads
      changed = true;
    }
  }
}

static View operand_view(Fuse *f, Kernel *k, const IrNode *x) {
  View v;
  if (!view_of(f, x, &v))
    abort();   // fold_views keeps only chains that are views
  for (const IrNode *n = x; f->folded[n->id]; n = n->src[0])
    if (n->op != IR_RESHAPE)   // an alias: named by what it reshapes
      ir_kernel_add_node(f->g, k, n);
  return v;
}

// The strides of operand x (v) over the product's loop [lead..., M, K, P]:
// its leading dimensions aligned at the right (0 where it broadcasts),
// then its last two dimensions as stored (r, c: the loop dimensions they
// run along).
static KIndex operand_index(const IrNode *x, const View *v, int nl, int r, int c) {
  KIndex ix = {.offset = v->offset};
  int lx = x->ndim - 2;
  for (int i = 0; i < nl; i++) {
    int j = lx - nl + i;
    if (j >= 0 && x->shape[j] != 1)
      ix.stride[i] = v->stride[j];
  }
  ix.stride[r] = v->stride[lx];
  ix.stride[c] = v->stride[lx + 1];
  return ix;
}

// A batched product C[..., M, P] = op(A) op(B): a loop over [lead..., M, K,
// P] summing A[..., m, k] B[..., k, p] into C, P innermost (a row of B and
// of C at a time), or over [lead..., M, P, K] where B's rows are not
// contiguous but both operands' K is (dot products: q @ transpose(k)),
// with a permute feeding either operand read in place.
static Kernel *batch_matmul_kernel(Fuse *f, IrNode *mm, IrNode *out) {
  const IrNode *a = mm->src[0], *b = mm->src[1];
  bool ta = mm->attr.i[0], tb = mm->attr.i[1];
  int nl = mm->ndim - 2;
  Kernel *k = ir_kernel_new(f->g, KN_LOOP, mm->scope ? mm->scope : mnem(mm));
  ir_kernel_add_node(f->g, k, mm);
  if (out)
    ir_kernel_add_node(f->g, k, out);
  View va = operand_view(f, k, a), vb = operand_view(f, k, b);
  // the stride of K and P in each operand as stored (its last two dimensions: row, column)
  int64_t ak = va.stride[a->ndim - 1 - ta], bk = vb.stride[b->ndim - 2 + tb], bp = vb.stride[b->ndim - 1 - tb];
  bool dots = bp != 1 && ak == 1 && bk == 1;
  int m = nl, kd = dots ? nl + 2 : nl + 1, p = dots ? nl + 1 : nl + 2;   // their loop dimensions
  k->ndim = nl + 3;
  memcpy(k->dims, mm->shape, sizeof(int64_t) * nl);
  k->dims[m] = mm->shape[nl];
  k->dims[kd] = a->shape[a->ndim - 1 - ta];
  k->dims[p] = mm->shape[nl + 1];
  KIndex ia = operand_index(a, &va, nl, ta ? kd : m, ta ? m : kd);
  KIndex ib = operand_index(b, &vb, nl, tb ? p : kd, tb ? kd : p);
  KIndex ic = {0}, cs = strides_of(mm);
  if (out) {   // C's dimension out->attr.i[d] is the permute's d
    KIndex os = strides_of(out);
    for (int d = 0; d < out->ndim; d++)
      cs.stride[out->attr.i[d]] = os.stride[d];
  }
  memcpy(ic.stride, cs.stride, sizeof(int64_t) * nl);
  ic.stride[m] = cs.stride[nl];
  ic.stride[p] = cs.stride[nl + 1];
  Gen gen = {f, k, mm, NULL};
  int la = emit(&gen, (KInstr){.op = KI_LOAD, .buf = ir_kernel_buf(f->g, k, va.buf), .idx = ia});
  int lb = emit(&gen, (KInstr){.op = KI_LOAD, .buf = ir_kernel_buf(f->g, k, vb.buf), .idx = ib});
  ir_kernel_store(f->g, k, (KStore){.buf = ir_kernel_buf(f->g, k, out ? out : mm), .idx = ic, .value = emit2(&gen, KI_MUL, la, lb),
                                    .reduce = KR_SUM});
  k->parallel = splittable(k);
  k->name = scopes_name(f, k);
  return k;
}

// A load of slot k of the step scalars, the same for every element.
static int gen_scalar(Gen *gen, int slot) {
  KInstr in = {.op = KI_LOAD, .buf = ir_kernel_buf(gen->f->g, gen->k, gen->f->p->scalars), .idx = {.offset = slot}};
  return emit(gen, in);
}

static int gen_flat_load(Gen *gen, const IrNode *n) {
  return emit(gen, (KInstr){.op = KI_LOAD, .buf = ir_kernel_buf(gen->f->g, gen->k, n), .idx = {.stride = {1}}});
}

// Stores v over n's old value old, unless the step's updates are off.
static void flat_store(Gen *gen, const IrNode *n, int v, int old) {
  v = emit(gen, (KInstr){.op = KI_SELECT, .a = gen_scalar(gen, KS_APPLY), .b = v, .c = old});
  ir_kernel_store(gen->f->g, gen->k, (KStore){.buf = ir_kernel_buf(gen->f->g, gen->k, n), .idx = {.stride = {1}},
                                             .value = v});
}

static int emit_fma(Gen *gen, int a, int b, int c) { return emit(gen, (KInstr){.op = KI_FMA, .a = a, .b = b, .c = c}); }

// SGD (momentum, dampening, nesterov, weight decay) with PyTorch's
// operations in PyTorch's order, as k_sgd_step: one loop over a parameter.
static void gen_sgd(Gen *gen, const IrNode *n) {
  const double *a = n->attr.f;   // lr momentum dampening weight_decay
  const IrNode *p = n->src[0];
  int pv = gen_flat_load(gen, p), gi = gen_flat_load(gen, n->src[1]);
  if (a[3] != 0)
    gi = emit_fma(gen, pv, emit_const(gen, (float)a[3]), gi);
  if (a[1] != 0) {
    const IrNode *buf = n->src[2];
    int mom = emit_const(gen, (float)a[1]);
    int old = gen_flat_load(gen, buf);
    int decayed = emit2(gen, KI_MUL, old, mom);   // one emit per statement: the order is the printout's
    int next = emit_fma(gen, gi, emit_const(gen, (float)(1.0 - a[2])), decayed);
    int b = emit(gen, (KInstr){.op = KI_SELECT, .a = gen_scalar(gen, KS_FIRST), .b = gi, .c = next});
    flat_store(gen, buf, b, old);
    gi = n->attr.i[0] ? emit_fma(gen, b, mom, gi) : b;
  }
  flat_store(gen, p, emit_fma(gen, gi, gen_scalar(gen, KS_NEG_LR), pv), pv);
}

// Adam and AdamW, as k_adam_step.
static void gen_adam(Gen *gen, const IrNode *n) {
  const double *a = n->attr.f;   // lr beta1 beta2 eps weight_decay
  const IrNode *p = n->src[0], *m = n->src[2], *v = n->src[3];
  int p0 = gen_flat_load(gen, p), pv = p0, gi = gen_flat_load(gen, n->src[1]);
  if (n->attr.i[0])
    pv = emit2(gen, KI_MUL, pv, gen_scalar(gen, KS_DECAY));
  else if (a[4] != 0)
    gi = emit_fma(gen, pv, emit_const(gen, (float)a[4]), gi);
  float w1 = (float)(1.0 - a[1]);
  int mv = gen_flat_load(gen, m), diff = emit2(gen, KI_SUB, gi, mv);
  int mn = w1 < 0.5f ? emit_fma(gen, emit_const(gen, w1), diff, mv)   // torch.lerp
                     : emit_fma(gen, emit_const(gen, w1 - 1.0f), diff, gi);
  int vv = gen_flat_load(gen, v);
  // Arguments that emit are evaluated in an unspecified order: at most one
  // a call, so that the kernel prints the same from every compiler.
  int sq = emit2(gen, KI_MUL, emit2(gen, KI_MUL, emit_const(gen, (float)(1.0 - a[2])), gi), gi);
  int vn = emit2(gen, KI_ADD, emit2(gen, KI_MUL, vv, emit_const(gen, (float)a[2])), sq);
  int eps = emit_const(gen, (float)a[3]), bc2 = gen_scalar(gen, KS_BC2_SQRT);
  int denom = emit2(gen, KI_ADD, emit2(gen, KI_DIV, emit1(gen, KI_SQRT, vn), bc2), eps);
  int step = emit2(gen, KI_DIV, emit2(gen, KI_MUL, gen_scalar(gen, KS_NEG_STEP_SIZE), mn), denom);
  flat_store(gen, m, mn, mv);
  flat_store(gen, v, vn, vv);
  flat_store(gen, p, emit2(gen, KI_ADD, pv, step), p0);
}

// RMSprop, as k_rmsprop_step.
static void gen_rmsprop(Gen *gen, const IrNode *n) {
  const double *a = n->attr.f;   // lr alpha eps weight_decay momentum
  const IrNode *p = n->src[0], *sq = n->src[2];
  int s = 3;
  const IrNode *buf = a[4] > 0 ? n->src[s++] : NULL, *ga = n->attr.i[0] ? n->src[s++] : NULL;
  int pv = gen_flat_load(gen, p), gi = gen_flat_load(gen, n->src[1]);
  if (a[3] != 0)
    gi = emit_fma(gen, pv, emit_const(gen, (float)a[3]), gi);
  float w = (float)(1.0 - a[1]);
  int sv = gen_flat_load(gen, sq);
  int sqg = emit2(gen, KI_MUL, emit2(gen, KI_MUL, emit_const(gen, w), gi), gi);
  int sn = emit2(gen, KI_ADD, emit2(gen, KI_MUL, sv, emit_const(gen, (float)a[1])), sqg);
  int var = sn;
  if (ga) {
    int gv = gen_flat_load(gen, ga), diff = emit2(gen, KI_SUB, gi, gv);
    int gn = w < 0.5f ? emit_fma(gen, emit_const(gen, w), diff, gv)   // torch.lerp
                      : emit_fma(gen, emit_const(gen, w - 1.0f), diff, gi);
    var = emit2(gen, KI_ADD, sn, emit2(gen, KI_MUL, emit2(gen, KI_MUL, emit_const(gen, -1.0f), gn), gn));
    flat_store(gen, ga, gn, gv);
  }
  int root = emit1(gen, KI_SQRT, var);   // one call per emit's arguments, as in gen_adam
  int avg = emit2(gen, KI_ADD, root, emit_const(gen, (float)a[2]));
  flat_store(gen, sq, sn, sv);
  if (buf) {
    int bv = gen_flat_load(gen, buf);
    int decayed = emit2(gen, KI_MUL, bv, emit_const(gen, (float)a[4]));
    int bn = emit2(gen, KI_ADD, decayed, emit2(gen, KI_DIV, gi, avg));
    flat_store(gen, buf, bn, bv);
    flat_store(gen, p, emit_fma(gen, bn, gen_scalar(gen, KS_NEG_LR), pv), pv);
  } else {
    int step = emit2(gen, KI_DIV, emit2(gen, KI_MUL, gen_scalar(gen, KS_NEG_LR), gi), avg);
    flat_store(gen, p, emit2(gen, KI_ADD, pv, step), pv);
  }
}

// Adagrad, as k_adagrad_step.
static void gen_adagrad(Gen *gen, const IrNode *n) {
  const double *a = n->attr.f;   // lr lr_decay weight_decay initial_accumulator_value eps
  const IrNode *p = n->src[0], *sum = n->src[2];
  int pv = gen_flat_load(gen, p), gi = gen_flat_load(gen, n->src[1]);
  if (a[2] != 0)
    gi = emit_fma(gen, pv, emit_const(gen, (float)a[2]), gi);
  int sv = gen_flat_load(gen, sum);
  int sn = emit2(gen, KI_ADD, sv, emit2(gen, KI_MUL, gi, gi));
  int root = emit1(gen, KI_SQRT, sn);
  int std = emit2(gen, KI_ADD, root, emit_const(gen, (float)a[4]));
  int step = emit2(gen, KI_DIV, emit2(gen, KI_MUL, gen_scalar(gen, KS_NEG_CLR), gi), std);
  flat_store(gen, sum, sn, sv);
  flat_store(gen, p, emit2(gen, KI_ADD, pv, step), pv);
}

// The body of update n (or of the update over the blocks).
static void gen_update(Gen *gen, const IrNode *n) {
  switch (n->op) {
  case IR_SGD_STEP: gen_sgd(gen, n); break;
  case IR_ADAM_STEP: gen_adam(gen, n); break;
  case IR_RMSPROP_STEP: gen_rmsprop(gen, n); break;
  case IR_ADAGRAD_STEP: gen_adagrad(gen, n); break;
  default: unreachable();
  }
}

// An optimizer update: a loop over the parameter's elements.
static Kernel *step_kernel(Fuse *f, IrNode *n) {
  Kernel *k = ir_kernel_new(f->g, KN_LOOP, n->scope ? n->scope : mnem(n));
  k->ndim = 1;
  k->dims[0] = ir_numel(n->src[0], 1);
  Gen gen = {f, k, n, NULL};
  ir_kernel_add_node(f->g, k, n);
  gen_update(&gen, n);
  k->parallel = k->dims[0] >= 32768;
  k->name = arena_printf(f->g->arena, "%s: %s", k->name, mnem(n));
  return k;
}

// Whether the updates (those whose gradients no earlier update shares) can
// run as one loop over every parameter: the same optimizer with the same
// settings for all, each gradient a value that a kernel of this step writes
// (not an alias, not an output of the step), and every parameter's state
// the same kinds. The others keep a loop each.
static bool one_update(Fuse *f, IrNode **steps, int n) {
  if (n < 2 || !f->p->scalars)
    return false;
  for (int i = 0; i < n; i++) {
    const IrNode *s = steps[i], *gr = s->src[1];
    if (s->op != steps[0]->op || s->nsrc != steps[0]->nsrc || memcmp(&s->attr, &steps[0]->attr, sizeof s->attr))
      return false;
    if (s->src[0]->op != IR_PARAM || ir_op_is_leaf(gr->op) || is_alias(f, gr) || f->keep[gr->id] ||
        ir_numel(gr, 1) != ir_numel(s->src[0], 1) || gr->ndim == 0 || gr->shape[0] == IR_N)
      return false;
  }
  return true;
}

// A flat block of `floats` floats standing for a run of tensors (id `id`,
// in no graph).
static IrNode *block_node(Fuse *f, int id, const char *name, int64_t floats) {
  IrNode *b = arena_alloc(f->g->arena, sizeof *b);
  *b = (IrNode){.op = IR_BUFFER, .dtype = DT_F32, .ndim = 1, .shape = {floats}, .name = name, .id = id};
  return b;
}

// Every update as one loop over the blocks of parameters, gradients and
// state (memplan lays them out alike): the optimizer's body, once.
static Kernel *updates_kernel(Fuse *f, IrNode **steps, int n) {
  static const char *const names[KP_MAX_BLOCKS] = {"parameters", "gradients", "optimizer state 1",
                                                   "optimizer state 2", "optimizer state 3"};
  int64_t floats = 0;
  for (int i = 0; i < n; i++)   // each parameter as memplan lays it out, padding included
    floats += pass_state_bytes(steps[i]->src[0]) / 4;
  KProgram *p = f->p;
  p->nblocks = steps[0]->nsrc;   // parameters, gradients, then each kind of state
  IrNode all = *steps[0];   // the first update, over the blocks
  all.src = arena_alloc(f->g->arena, sizeof(IrNode *) * ir_src_slots(all.nsrc));
  for (int b = 0; b < p->nblocks; b++) {
    p->blocks[b] = block_node(f, f->g->nnodes + 1 + b, names[b], floats);
    all.src[b] = (IrNode *)p->blocks[b];
  }
  Kernel *k = ir_kernel_new(f->g, KN_LOOP, "updates");
  k->ndim = 1;
  k->dims[0] = floats;
  Gen gen = {f, k, &all, NULL};
  for (int i = 0; i < n; i++)   // each update once: no search of the kernel's nodes
    ir_kernel_add_new_node(f->g, k, steps[i]);
  gen_update(&gen, &all);
  k->parallel = floats >= 32768;
  k->name = arena_printf(f->g->arena, "every parameter: %s", mnem(steps[0]));
  return k;
}

// A library kernel: the runtime's kernel for node n.
static Kernel *lib_kernel(Fuse *f, IrNode *n) {
  Kernel *k = ir_kernel_new(f->g, KN_LIB, n->scope ? n->scope : mnem(n));
  k->node = n;
  ir_kernel_add_node(f->g, k, n);
  for (int i = 0; i < n->nsrc; i++)
    ir_kernel_buf(f->g, k, n->src[i]);
  ir_kernel_buf(f->g, k, n);
  return k;
}

static void add_kernel(Fuse *f, Kernel *k) {
  KProgram *p = f->p;
  if (!(p->nkernels & (p->nkernels - 1))) {
    Kernel **fresh = arena_alloc(f->g->arena, sizeof(Kernel *) * (p->nkernels ? 2 * p->nkernels : 1));
    if (p->nkernels)
      memcpy(fresh, p->kernels, sizeof(Kernel *) * p->nkernels);
    p->kernels = fresh;
  }
  p->kernels[p->nkernels++] = k;
}

// The kernel(s) of root node n.
static void lower_root(Fuse *f, IrNode *n) {
  if (is_update(n->op) && f->p->scalars) {
    add_kernel(f, step_kernel(f, n));
    return;
  }
  if (is_reduction(n->op)) {
    add_kernel(f, reduce_kernel(f, n));
    return;
  }
  if (n->op == IR_BATCH_MATMUL) {
    add_kernel(f, batch_matmul_kernel(f, n, NULL));
    return;
  }
  if (n->op == IR_PERMUTE && f->fused_into[n->src[0]->id] == n->id) {
    add_kernel(f, batch_matmul_kernel(f, n->src[0], n));
    return;
  }
  if (ir_op_kind(n->op) == IR_KIND_MATMUL) {
    add_kernel(f, gemm_kernel(f, n));
    return;
  }
  if (n->op == IR_CONCAT) {
    concat_kernels(f, n);
    return;
  }
  if (is_elementwise(n->op) || n->op == IR_CONST || n->op == IR_SLICE) {
    // A loop (a constant that a GEMM or library kernel reads is a loop that
    // fills its buffer). An epilogue: the fused GEMM or convolution runs
    // first, then the loop over its result.
    const IrNode *gemm = NULL;
    for (int i = n->id - 1; f->gemms[n->id] && i >= 0 && !gemm; i--) {
      int r = f->fused_into[i];
      while (r >= 0 && r != n->id)
        r = f->fused_into[r];
      if (r == n->id && has_epilogue(f->g->nodes[i]->op))
        gemm = f->g->nodes[i];
    }
    Kernel *k = loop_kernel(f, n, gemm);
    if (!gemm) {
      add_kernel(f, k);
      return;
    }
    IrNode *product = f->g->nodes[gemm->id];
    Kernel *gk = product->op == IR_MATMUL ? gemm_kernel(f, product) : lib_kernel(f, product);
    gk->epilogue = k;
    for (int i = 0; i < k->nnodes; i++)
      if (k->nodes[i] != gemm)
        ir_kernel_add_node(f->g, gk, k->nodes[i]);
    gk->name = scopes_name(f, gk);
    add_kernel(f, gk);
    return;
  }
  add_kernel(f, lib_kernel(f, n));
}

// The runtime's library kernel for op: the one of the op's name.
static RtLibKind lib_kind(IrOp op) {
  for (int k = 0; k < RL_COUNT; k++)
    if (!strcmp(rt_lib_name(k), ir_op_info(op)->mnem))
      return (RtLibKind)k;
  unreachable();   // lower_root makes no library kernel of it
}

const IrNode *pass_saved_forward(const IrGraph *g, const IrNode *n) {
  if (n->op == IR_DROPOUT_GRAD || n->op == IR_CONV2D_GRAD_WEIGHT_POOLED || n->op == IR_CONV2D_GRAD_INPUT_POOLED)
    return n->src[n->op == IR_DROPOUT_GRAD ? 1 : 2];
  if (n->op != IR_MAXPOOL_GRAD && n->op != IR_BATCHNORM_GRAD && n->op != IR_BATCHNORM_GRAD_GAMMA)
    return NULL;
  const IrNode *found = NULL;
  int count = 0;
  for (int j = 0; j < n->id; j++) {
    const IrNode *f = g->nodes[j];
    bool match = n->op == IR_MAXPOOL_GRAD
                     ? f->op == IR_MAXPOOL && f->src[0] == n->src[1] && !memcmp(f->attr.i, n->attr.i, sizeof f->attr.i)
                     : f->op == IR_BATCHNORM && f->src[0] == n->src[1] &&
                           (n->op == IR_BATCHNORM_GRAD_GAMMA || f->src[1] == n->src[2]);
    if (match) {
      found = f;
      count++;
    }
  }
  return count == 1 ? found : NULL;
}

// Buffer i of d: where node n's value lies and its shape.
static void lib_buf(const KProgram *p, RtLib *d, const IrNode *n) {
  const KBufInfo *b = &p->buf[n->id];
  if (!b->bytes || d->nbufs == RT_LIB_MAX_BUFS || n->ndim > RT_MAX_DIMS)
    unreachable();   // memplan places every value a kernel touches
  RtLibBuf *r = &d->buf[d->nbufs++];
  r->space = ir_rt_space(b->space);
  r->offset = b->offset;
  r->ndim = n->ndim;
  for (int i = 0; i < n->ndim; i++)
    r->shape[i] = n->shape[i] == IR_N ? RT_BATCH : n->shape[i];
}

_Static_assert(sizeof(((RtLib *)0)->i) == sizeof(((IrAttr *)0)->i), "RtLib holds every int attribute");
_Static_assert(sizeof(((RtLib *)0)->f) == sizeof(((IrAttr *)0)->f), "RtLib holds every float attribute");

// Each library kernel's descriptor, once memory is planned: its buffers
// (the operands, then the result; an update has none, it writes its
// parameter and state in place; a dropout gradient reads the mask, not the
// forward's value, and a pooled weight or input gradient the pooling's
// argmax, not its output), the op's settings, and the slots of run-time state: in a
// training program, each max pooling, batchnorm and dropout keeps
// its argmax, statistics or mask in a slot of its own, which its gradient
// reads.
void pass_describe_libs(KProgram *p) {
  const IrGraph *g = p->g;
  int *slot = arena_alloc(g->arena, sizeof(int) * g->nnodes);
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double weights[IR_MAX_LOSS_TERMS];
  int nterms = p->entry == ENTRY_FORWARD ? 0 : ir_loss_terms(g, terms, weights, IR_MAX_LOSS_TERMS);
  if (p->entry != ENTRY_FORWARD && (nterms < 1 || nterms > IR_MAX_LOSS_TERMS))
    nnc_bug(__FILE__, __LINE__, "pass_describe_libs: the loss is no longer a weighted sum of loss ops");
  for (int i = 0; i < g->nnodes; i++)
    slot[i] = -1;
  for (int i = 0; i < p->nkernels; i++) {
    Kernel *k = p->kernels[i];
    if (k->kind != KN_LIB)
      continue;
    const IrNode *n = k->node;
    RtLib *d = arena_alloc(g->arena, sizeof *d);
    d->kind = lib_kind(n->op);
    d->node = n->id;
    for (int t = 0; t < nterms; t++)
      if (n == terms[t]) {
        d->loss = 1;
        d->loss_weight += weights[t];   // (a term that appears twice, merged)
      }
    d->aux = d->aux_from = -1;
    memcpy(d->i, n->attr.i, sizeof d->i);
    memcpy(d->f, n->attr.f, sizeof d->f);
    int nsrc = n->op == IR_DROPOUT_GRAD                                                        ? 1
               : n->op == IR_CONV2D_GRAD_WEIGHT_POOLED || n->op == IR_CONV2D_GRAD_INPUT_POOLED ? 2
                                                                                             : n->nsrc;
    for (int s = 0; s < nsrc; s++)
      lib_buf(p, d, n->src[s]);
    if (!is_update(n->op))
      lib_buf(p, d, n);
    if (p->entry == ENTRY_TRAIN && (n->op == IR_MAXPOOL || n->op == IR_BATCHNORM || n->op == IR_DROPOUT)) {
      d->aux = slot[n->id] = p->naux++;
      int64_t elems = ir_numel(n, p->max_batch);
      d->aux_bytes = n->op == IR_BATCHNORM ? 2 * 4 * n->shape[1]   // mean and 1/std, floats
                     : n->op == IR_MAXPOOL ? 4 * elems            // an int32 argmax per window
                                           : elems;               // a byte of mask per element
    }
    const IrNode *fwd = pass_saved_forward(g, n);
    if (fwd)
      d->aux_from = slot[fwd->id];
    k->lib = d;
  }
}

KProgram *pass_fuse(const Model *m, EntryKind entry, int64_t max_batch, bool fuse, FILE *why) {
  IrGraph *g = m->g;
  Arena *a = g->arena;
  int nn = g->nnodes;
  Fuse f = {.m = m, .g = g, .entry = entry, .fuse = fuse, .why = why};
  f.need = arena_alloc(a, sizeof(bool) * nn);
  f.keep = arena_alloc(a, sizeof(bool) * nn);
  f.uses = arena_alloc(a, sizeof(int) * nn);
  f.folded = arena_alloc(a, sizeof(bool) * nn);
  f.fused_into = arena_alloc(a, sizeof(int) * nn);
  f.gemms = arena_alloc(a, sizeof(int) * nn);
  f.stored = arena_alloc(a, sizeof(bool) * nn);
  f.value = arena_alloc(a, sizeof(int) * nn);
  f.ops = arena_alloc(a, sizeof(int) * nn);
  pass_needed(m, entry, f.need);
  pass_kept(m, entry, f.keep);
  for (int i = 0; i < nn; i++) {
    f.fused_into[i] = -1;
    f.ops[i] = 1;
    if (f.need[i])
      for (int k = 0; k < g->nodes[i]->nsrc; k++)
        f.uses[g->nodes[i]->src[k]->id]++;
  }
  fold_views(&f);
  KProgram *p = arena_alloc(a, sizeof *p);
  *p = (KProgram){.g = g, .entry = entry, .max_batch = max_batch};
  f.p = p;
  if (entry == ENTRY_TRAIN && m->nparams > 0 && fuse) {
    IrNode *s = arena_alloc(a, sizeof *s);
    *s = (IrNode){.op = IR_BUFFER, .dtype = DT_F32, .ndim = 1, .shape = {8}, .name = "optimizer scalars",
                  .id = nn};
    p->scalars = s;
  }
  if (why)
    fprintf(why, "unfused producer/consumer pairs of %s:\n", ir_entry_name(entry));
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    if (f.need[i] && !ir_op_is_leaf(n->op))
      for (int k = 0; k < n->nsrc; k++) {
        bool again = false;   // x + x: one decision for the pair
        for (int j = 0; j < k; j++)
          again |= n->src[j] == n->src[k];
        if (f.need[n->src[k]->id] && !again)
          try_fuse(&f, n->src[k], n);
      }
  }
  store_siblings(&f);
  // A constant gets a buffer only when a GEMM or a library kernel reads it
  // (a concat's part loop writes it inline).
  bool *const_buffer = arena_alloc(a, sizeof(bool) * nn);
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    if (f.need[i] && !is_elementwise(n->op) && !is_reduction(n->op) && n->op != IR_CONCAT)
      for (int k = 0; k < n->nsrc; k++)
        const_buffer[n->src[k]->id] |= n->src[k]->op == IR_CONST;
  }
  IrNode **steps = arena_alloc(a, sizeof(IrNode *) * (nn + 1));
  int nsteps = 0;
  const bool *in_blocks = pass_updates_in_blocks(g);
  for (int i = 0; i < nn; i++)
    if (f.need[i] && in_blocks[i])
      steps[nsteps++] = g->nodes[i];
  bool together = one_update(&f, steps, nsteps);
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    bool skip = n->op == IR_CONST ? !const_buffer[i] : ir_op_is_leaf(n->op);
    if (together && in_blocks[i])
      continue;   // in the one update below
    if (f.need[i] && !skip && !is_alias(&f, n) && f.fused_into[i] < 0 && !f.folded[i])
      lower_root(&f, n);
  }
  if (together)
    add_kernel(&f, updates_kernel(&f, steps, nsteps));
  return p;
}
