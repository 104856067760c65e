// graph.c: the op table, the graph builders, and facts about single nodes
// (element counts, type strings, FLOPs).
//
// The op table is generated from ops.def with an X-macro, as QBE's ops.h
// is. ops.def gives each op its kind and names its attribute slots in two
// space-separated strings, the int slots' and the float slots';
// op_table_init() splits those strings once, in place, into the IrOpInfo
// name arrays that the printer, the parser and the passes use.
// Builders only record ops (like ggml's); the shape pass fills in shapes.
#include "ir.h"

#include <string.h>

// A writable copy of each op's attribute strings, split in place.
#define IR_OP(NAME, KIND, MIN, MAX, MNEM, IA, FA) \
  static char iattrs_##NAME[] = IA, fattrs_##NAME[] = FA;
#include "ops.def"
#undef IR_OP

static char *const iattrs_of[IR_NUM_OPS] = {
#define IR_OP(NAME, KIND, MIN, MAX, MNEM, IA, FA) [IR_##NAME] = iattrs_##NAME,
#include "ops.def"
#undef IR_OP
};

static char *const fattrs_of[IR_NUM_OPS] = {
#define IR_OP(NAME, KIND, MIN, MAX, MNEM, IA, FA) [IR_##NAME] = fattrs_##NAME,
#include "ops.def"
#undef IR_OP
};

static IrOpInfo op_table[IR_NUM_OPS] = {
#define IR_OP(NAME, KIND, MIN, MAX, MNEM, IA, FA) \
  [IR_##NAME] = {.mnem = MNEM, .kind = IR_KIND_##KIND, .min_in = MIN, .max_in = MAX},
#include "ops.def"
#undef IR_OP
};

/*
** Splits the space-separated words of s into names[], ending each word
** with a NUL in place, and returns how many there were. More than max
** words means ops.def and IR_MAX_IATTR / IR_MAX_FATTR disagree: a bug.
*/
static int split_names(char *s, const char **names, int max) {
  int n = 0;
  for (char *p = s; *p;) {
    if (*p == ' ') {
      *p++ = 0;
      continue;
    }
    if (n == max)
      nnc_bug(__FILE__, __LINE__, "ops.def: an op declares more attributes than IrAttr holds");
    names[n++] = p;
    while (*p && *p != ' ')
      p++;
  }
  return n;
}

// Fills the attribute names of every op on first use. The compiler builds
// graphs on one thread, so a plain flag is enough.
static void op_table_init(void) {
  static bool done;
  if (done)
    return;
  for (int op = 0; op < IR_NUM_OPS; op++) {
    IrOpInfo *info = &op_table[op];
    info->niattr = split_names(iattrs_of[op], info->iattr, IR_MAX_IATTR);
    info->nfattr = split_names(fattrs_of[op], info->fattr, IR_MAX_FATTR);
  }
  done = true;
}

const IrOpInfo *ir_op_info(IrOp op) {
  if ((unsigned)op >= IR_NUM_OPS)
    unreachable();
  op_table_init();
  return &op_table[op];
}

IrOp ir_op_lookup(const char *mnem) {
  if (!mnem)
    return IR_NUM_OPS;
  for (int op = 0; op < IR_NUM_OPS; op++)
    if (strcmp(op_table[op].mnem, mnem) == 0)
      return op;
  return IR_NUM_OPS;
}

IrOpKind ir_op_kind(IrOp op) {
  if ((unsigned)op >= IR_NUM_OPS)
    unreachable();
  return op_table[op].kind;
}

bool ir_op_is_leaf(IrOp op) { return ir_op_kind(op) == IR_KIND_LEAF; }
bool ir_op_is_loss(IrOp op) { return ir_op_kind(op) == IR_KIND_LOSS; }

//
// Building graphs
//

IrGraph *ir_graph_new(Arena *a, const char *name) {
  IrGraph *g = arena_alloc(a, sizeof *g);
  g->arena = a;
  g->name = name ? arena_strdup(a, name) : NULL;
  return g;
}

// A deep copy of g into a: every node, its name and scope strings, the
// output and the loss (source locations still point at g's SrcFile). map
// (may be NULL) receives, for each node of g by id, its copy.
IrGraph *ir_graph_clone(const IrGraph *g, Arena *a, IrNode **map) {
  IrGraph *c = ir_graph_new(a, g->name);
  c->file = g->file ? arena_strdup(a, g->file) : NULL;
  c->cap = c->nnodes = g->nnodes;
  c->nodes = arena_alloc(a, sizeof(IrNode *) * (g->nnodes ? g->nnodes : 1));
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    IrNode *k = arena_alloc(a, sizeof *k);
    *k = *n;
    k->name = n->name ? arena_strdup(a, n->name) : NULL;
    k->scope = n->scope ? arena_strdup(a, n->scope) : NULL;
    k->src = arena_alloc(a, sizeof(IrNode *) * ir_src_slots(n->nsrc));
    for (int j = 0; j < n->nsrc; j++)
      k->src[j] = c->nodes[n->src[j]->id];   // inputs precede their users
    c->nodes[i] = k;
    if (map)
      map[i] = k;
  }
  for (int i = 0; i < g->noutputs; i++)
    ir_add_output(c, c->nodes[g->outputs[i]->id], g->output_names[i]);
  c->output = g->output ? c->nodes[g->output->id] : NULL;
  c->loss = g->loss ? c->nodes[g->loss->id] : NULL;
  return c;
}

void ir_add_output(IrGraph *g, IrNode *n, const char *name) {
  IrNode **o = arena_alloc(g->arena, sizeof(IrNode *) * (g->noutputs + 1));
  const char **on = arena_alloc(g->arena, sizeof(char *) * (g->noutputs + 1));
  for (int i = 0; i < g->noutputs; i++)
    o[i] = g->outputs[i], on[i] = g->output_names[i];
  o[g->noutputs] = n;
  on[g->noutputs] = arena_strdup(g->arena, name ? name : "output");
  g->outputs = o;
  g->output_names = on;
  g->noutputs++;
  g->output = g->outputs[0];
}

const char *ir_output_name(const IrGraph *g, const IrNode *n) {
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i] == n)
      return g->output_names[i];
  return n && n == g->output ? "output" : NULL;   // (a graph built by hand: g->output alone)
}

// Collects the terms of the sum n (times w) into terms/weights; false when
// n is not a sum of weighted loss ops.
static bool loss_terms(IrNode *n, double w, IrNode **terms, double *weights, int max, int *k) {
  if (ir_op_is_loss(n->op)) {
    if (*k < max)
      terms[*k] = n, weights[*k] = w;
    ++*k;
    return true;
  }
  if (n->op == IR_ADD && n->nsrc == 2)
    return loss_terms(n->src[0], w, terms, weights, max, k) && loss_terms(n->src[1], w, terms, weights, max, k);
  if (n->op == IR_MUL && n->nsrc == 2) {
    int c = n->src[0]->op == IR_CONST ? 0 : n->src[1]->op == IR_CONST ? 1 : -1;
    if (c < 0 || n->src[c]->ndim != 0)
      return false;
    return loss_terms(n->src[1 - c], w * n->src[c]->attr.f[0], terms, weights, max, k);
  }
  return false;
}

int ir_loss_terms(const IrGraph *g, IrNode **terms, double *weights, int max) {
  int k = 0;
  if (!g->loss || !loss_terms(g->loss, 1.0, terms, weights, max, &k))
    return -1;
  return k;
}

// A misuse of ir_add is a bug in the pass that called it: say which op and
// what was wrong, then abort.
static _Noreturn void add_bug(int line, IrOp op, const char *what, int nsrc) {
  char msg[160];
  const IrOpInfo *info = ir_op_info(op);
  snprintf(msg, sizeof msg, "ir_add: %s takes %d to %d inputs; %s (%d inputs given)",
           info->mnem, info->min_in, info->max_in, what, nsrc);
  nnc_bug(__FILE__, line, msg);
}

// Doubles the node array; the old one stays in the arena unused.
static void grow_nodes(IrGraph *g) {
  int cap = g->cap ? g->cap * 2 : 32;
  IrNode **nodes = arena_alloc(g->arena, cap * sizeof *nodes);
  if (g->nnodes)
    memcpy(nodes, g->nodes, g->nnodes * sizeof *nodes);
  g->nodes = nodes;
  g->cap = cap;
}

IrNode *ir_add(IrGraph *g, IrOp op, IrNode **src, int nsrc, SrcLoc loc) {
  const IrOpInfo *info = ir_op_info(op);
  if (nsrc < info->min_in || nsrc > info->max_in)
    add_bug(__LINE__, op, "wrong number of inputs", nsrc);
  for (int i = 0; i < nsrc; i++) {
    const IrNode *s = src[i];
    if (!s || s->id < 0 || s->id >= g->nnodes || g->nodes[s->id] != s)
      add_bug(__LINE__, op, "an input is NULL or not a node of this graph", nsrc);
  }
  if (g->nnodes == g->cap)
    grow_nodes(g);
  IrNode *n = arena_alloc(g->arena, sizeof *n);
  n->op = op;
  n->ndim = -1;
  n->nsrc = nsrc;
  n->src = arena_alloc(g->arena, sizeof(IrNode *) * ir_src_slots(nsrc));   // zeroed
  for (int i = 0; i < nsrc; i++)
    n->src[i] = src[i];
  n->loc = loc;
  n->id = g->nnodes;
  g->nodes[g->nnodes++] = n;
  return n;
}

IrNode *ir_leaf(IrGraph *g, IrOp op, const char *name, DType dt, int ndim,
                const int64_t *shape, SrcLoc loc) {
  if (!ir_op_is_leaf(op) || ndim > IR_MAX_DIMS || (ndim > 0 && !shape))
    nnc_bug(__FILE__, __LINE__, "ir_leaf: not a leaf op, or a bad shape");
  IrNode *n = ir_add(g, op, NULL, 0, loc);
  n->name = name ? arena_strdup(g->arena, name) : NULL;
  n->dtype = dt;
  n->ndim = ndim < 0 ? -1 : ndim;
  for (int i = 0; i < ndim; i++)
    n->shape[i] = shape[i];
  return n;
}

IrNode *ir_unary(IrGraph *g, IrOp op, IrNode *a, SrcLoc loc) {
  IrNode *src[1] = {a};
  return ir_add(g, op, src, 1, loc);
}

IrNode *ir_binary(IrGraph *g, IrOp op, IrNode *a, IrNode *b, SrcLoc loc) {
  IrNode *src[2] = {a, b};
  return ir_add(g, op, src, 2, loc);
}

//
// Facts about nodes
//

// a * b, stuck at INT64_MAX or INT64_MIN instead of overflowing (a shape read
// from a broken dump can hold any number).
static int64_t mul_sat(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
  return r;
}

int64_t ir_numel(const IrNode *n, int64_t batch) {
  if (n->ndim < 0 || n->ndim > IR_MAX_DIMS)
    return -1;
  int64_t k = 1;
  for (int i = 0; i < n->ndim; i++)
    k = mul_sat(k, n->shape[i] == IR_N ? batch : n->shape[i]);
  return k;
}

bool ir_is_batched(const IrNode *n) {
  for (int i = 0; i < n->ndim && i < IR_MAX_DIMS; i++)
    if (n->shape[i] == IR_N)
      return true;
  return false;
}

// Two unknown shapes are not the same: nothing is known about either.
bool ir_same_shape(const IrNode *a, const IrNode *b) {
  if (a->ndim < 0 || a->ndim > IR_MAX_DIMS || a->ndim != b->ndim)
    return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return false;
  return true;
}

// Dimension i of n (negative: from the end), with the batch as 1; 0 when n
// has no such dimension.
static int64_t dim1(const IrNode *n, int i) {
  if (n->ndim < 0 || n->ndim > IR_MAX_DIMS)
    return 0;
  if (i < 0)
    i += n->ndim;
  if (i < 0 || i >= n->ndim)
    return 0;
  return n->shape[i] == IR_N ? 1 : n->shape[i];
}

// a[..., M, K] @ b[K, N] (or their transposes): 2 * K per output element.
// K may be the batch (a weight gradient, x^T @ dy); per sample it is 1.
static int64_t matmul_flops(const IrNode *n, int64_t out) {
  const IrNode *a = n->src[0];
  const IrNode *b = n->src[1];
  int64_t k = dim1(a, -1);
  if (n->attr.i[0] && a->ndim >= 2)   // a[..., K, M]^T: every leading dimension is summed over
    k = ir_numel(a, 1) < 0 || k == 0 ? 0 : ir_numel(a, 1) / k;
  if (k == 0)   // a's shape is unknown: take K from b
    k = n->attr.i[1] || b->ndim < 2 ? dim1(b, -1) : dim1(b, -2);
  return mul_sat(mul_sat(2, k), out);
}

// x[N, C, H, W] conv w[O, C, KH, KW]: 2 * C * KH * KW per output element,
// plus one add per element for the bias.
static int64_t conv2d_flops(const IrNode *n, int64_t out) {
  const IrNode *w = n->src[1];
  int64_t k = mul_sat(mul_sat(dim1(w, 1), dim1(w, 2)), dim1(w, 3));
  int64_t f = mul_sat(mul_sat(2, k), out);
  return n->nsrc == 3 ? f + out : f;
}

/*
** Floating-point operations for one sample: the batch dimension counts as 1,
** so a node without one (a computation on parameters only) counts in full.
** Unknown shapes count as 0.
*/
int64_t ir_flops(const IrNode *n) {
  int64_t out = ir_numel(n, 1);
  if (out < 0)
    return 0;
  switch (n->op) {
  case IR_INPUT: case IR_TARGET: case IR_PARAM: case IR_BUFFER: case IR_CONST:
  case IR_RESHAPE: case IR_SLICE: case IR_CONCAT: case IR_PERMUTE:
    return 0;
  case IR_MATMUL:
    return matmul_flops(n, out);
  case IR_BATCH_MATMUL:   // K multiply-adds per output element
    return mul_sat(mul_sat(2, dim1(n->src[0], n->attr.i[0] ? -2 : -1)), out);
  case IR_CONV2D:
    return conv2d_flops(n, out);
  case IR_MAXPOOL: case IR_AVGPOOL:
    return mul_sat(mul_sat(n->attr.i[0], n->attr.i[1]), out);
  case IR_GLOBAL_AVGPOOL: {
    int64_t in = ir_numel(n->src[0], 1);
    return in < 0 ? 0 : in;
  }
  case IR_BATCHNORM:
    return mul_sat(2, out);
  case IR_SOFTMAX: case IR_LOG_SOFTMAX:
    return mul_sat(3, out);
  case IR_LAYERNORM:   // the mean, the variance, then a subtraction and a multiplication
    return mul_sat(5, out);
  case IR_CROSS_ENTROPY: case IR_NLL: case IR_MSE: case IR_L1: case IR_BCE_WITH_LOGITS: {
    int64_t in = ir_numel(n->src[0], 1);
    return in < 0 ? 0 : mul_sat(3, in);
  }
  case IR_CONV2D_GRAD_INPUT: case IR_CONV2D_GRAD_WEIGHT: {
    // As much work as the forward convolution: 2 * C*KH*KW per output element.
    const IrNode *g = n->src[0], *w = n->op == IR_CONV2D_GRAD_INPUT ? n->src[1] : n;
    int64_t gout = ir_numel(g, 1);
    if (gout < 0 || w->ndim != 4)
      return 0;
    return mul_sat(mul_sat(2, mul_sat(w->shape[1], mul_sat(w->shape[2], w->shape[3]))), gout);
  }
  case IR_CONV2D_GRAD_WEIGHT_POOLED: case IR_CONV2D_GRAD_INPUT_POOLED: {
    // 2 * C*KH*KW per pooled gradient (one window each), at most: zeros are skipped
    const IrNode *w = n->op == IR_CONV2D_GRAD_INPUT_POOLED ? n->src[1] : n;
    int64_t gout = ir_numel(n->src[0], 1);
    if (gout < 0 || w->ndim != 4)
      return 0;
    return mul_sat(mul_sat(2, mul_sat(w->shape[1], mul_sat(w->shape[2], w->shape[3]))), gout);
  }
  case IR_MAXPOOL_GRAD: case IR_AVGPOOL_GRAD: {
    int64_t g = ir_numel(n->src[0], 1);
    return g < 0 ? 0 : mul_sat(mul_sat(n->attr.i[0], n->attr.i[1]), g);
  }
  case IR_BATCHNORM_GRAD:
    return mul_sat(5, out);
  case IR_BATCHNORM_GRAD_GAMMA: case IR_CHANNEL_SUM: case IR_SUM_TO: case IR_SUM: case IR_MEAN: case IR_MAX: {
    int64_t in = ir_numel(n->src[0], 1);
    return in < 0 ? 0 : mul_sat(n->op == IR_BATCHNORM_GRAD_GAMMA ? 3 : 1, in);
  }
  case IR_SOFTMAX_GRAD: case IR_LOG_SOFTMAX_GRAD: case IR_SIGMOID_GRAD: case IR_TANH_GRAD:
  case IR_CROSS_ENTROPY_GRAD: case IR_NLL_GRAD: case IR_MSE_GRAD: case IR_L1_GRAD: case IR_BCE_WITH_LOGITS_GRAD:
    return mul_sat(3, out);
  case IR_SGD_STEP:
    return mul_sat(4, out);
  case IR_ADAM_STEP:
    return mul_sat(10, out);
  case IR_RMSPROP_STEP:
    return mul_sat(9, out);
  case IR_ADAGRAD_STEP:
    return mul_sat(6, out);
  default:
    return out;
  }
}

const char *ir_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
  char tmp[IR_MAX_DIMS * 22 + 4];
  int len = 0;
  if (ndim < 0 || ndim > IR_MAX_DIMS) {
    tmp[len++] = '?';
  } else {
    tmp[len++] = '[';
    for (int i = 0; i < ndim; i++) {
      if (i)
        tmp[len++] = ',';
      if (shape[i] == IR_N)
        tmp[len++] = 'N';
      else
        len += snprintf(tmp + len, sizeof tmp - len, "%lld", (long long)shape[i]);
    }
    tmp[len++] = ']';
  }
  tmp[len] = 0;
  if (size)
    snprintf(buf, size, "%s", tmp);
  return buf;
}

const char *ir_type_str(const IrNode *n, char *buf, size_t size) {
  if (n->ndim < 0 || n->ndim > IR_MAX_DIMS)
    return ir_shape_str(n->ndim, n->shape, buf, size);
  char shape[IR_MAX_DIMS * 22 + 4];
  ir_shape_str(n->ndim, n->shape, shape, sizeof shape);
  const char *dt = n->dtype == DT_F32 ? "f32" : n->dtype == DT_I32 ? "i32" : "?";
  if (size)
    snprintf(buf, size, "%s%s", dt, shape);
  return buf;
}
