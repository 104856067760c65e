// test_ir.c: tests of the graph IR library (ir/): the op table, builders,
// element counts, types and FLOPs, the printer and the parser (every dump
// must read back to an equal graph), the verifier and the dot printer.
//
//   test_ir [DIR]
//
// DIR holds the golden .ir files (default: this file's directory). Each one
// must parse, verify and print back byte for byte. Exit status 0 when every
// check passed, 1 otherwise; each failure prints file:line and the values.
#include "../test.h"
#include "ir.h"

#include <math.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>


#define N IR_N

//
// Helpers
//

// Diagnostics into a string.
typedef struct Capture {
  char *buf;
  size_t len;
  FILE *f;
  Diag d;
} Capture;

static void cap_open(Capture *c) {
  c->buf = NULL;
  c->f = open_memstream(&c->buf, &c->len);
  diag_init(&c->d, c->f);
  c->d.max_errors = 0;
}

// Closes the stream and frees the Diag; the caller frees the returned text.
static char *cap_close(Capture *c) {
  diag_free(&c->d);
  fclose(c->f);
  return c->buf;
}

static char *print_graph(const IrGraph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ir_print(f, g);
  fclose(f);
  return buf;
}

static char *print_dot(const IrGraph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ir_print_dot(f, g);
  fclose(f);
  return buf;
}

// Parses text (named t.ir) of length len; the messages go to *msgs (free
// it) and the error count to *nerr.
static IrGraph *parse_len(Arena *a, const char *text, size_t len, char **msgs, int *nerr) {
  SrcFile file = {.name = "t.ir", .text = text, .len = len};
  Capture c;
  cap_open(&c);
  IrGraph *g = ir_parse(&file, a, &c.d);
  *nerr = c.d.nerrors;
  *msgs = cap_close(&c);
  return g;
}

static IrGraph *parse_text(Arena *a, const char *text, char **msgs, int *nerr) {
  return parse_len(a, text, strlen(text), msgs, nerr);
}

static bool same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

// Compares two nodes field by field; reports the first difference.
static bool same_node(const IrNode *a, const IrNode *b) {
  const char *what = NULL;
  if (a->op != b->op) what = "op";
  else if (a->id != b->id) what = "id";
  else if (a->dtype != b->dtype) what = "dtype";
  else if (a->ndim != b->ndim) what = "ndim";
  else if (a->ndim > 0 && memcmp(a->shape, b->shape, a->ndim * sizeof a->shape[0])) what = "shape";
  else if (a->nsrc != b->nsrc) what = "nsrc";
  else if (memcmp(a->attr.i, b->attr.i, sizeof a->attr.i)) what = "attr.i";
  else if (memcmp(a->attr.f, b->attr.f, sizeof a->attr.f)) what = "attr.f";
  else if (!same_str(a->name, b->name)) what = "name";
  else if (a->init.kind != b->init.kind) what = "init.kind";
  else if (!same_double(a->init.a, b->init.a) || !same_double(a->init.b, b->init.b)) what = "init";
  else if (!same_str(a->scope, b->scope)) what = "scope";
  else if (a->loc.line != b->loc.line || a->loc.col != b->loc.col) what = "loc";
  else if (!a->loc.file != !b->loc.file) what = "loc.file";
  else if (a->loc.file && !same_str(a->loc.file->name, b->loc.file->name)) what = "loc.file->name";
  for (int i = 0; !what && i < a->nsrc; i++)
    if (!a->src[i] != !b->src[i] || (a->src[i] && a->src[i]->id != b->src[i]->id))
      what = "src";
  if (what)
    printf("  %%%d differs in %s\n", a->id, what);
  return !what;
}

static bool same_graph(const IrGraph *a, const IrGraph *b) {
  if (!same_str(a->name, b->name) || !same_str(a->file, b->file) || a->nnodes != b->nnodes) {
    printf("  graphs differ in name, file or node count\n");
    return false;
  }
  for (int i = 0; i < a->nnodes; i++)
    if (!same_node(a->nodes[i], b->nodes[i]))
      return false;
  if (!a->output != !b->output || (a->output && a->output->id != b->output->id) ||
      !a->loss != !b->loss || (a->loss && a->loss->id != b->loss->id)) {
    printf("  graphs differ in output or loss\n");
    return false;
  }
  return true;
}

static IrNode *set_shape(IrNode *n, DType dt, int ndim, const int64_t *shape) {
  n->dtype = dt;
  n->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    n->shape[i] = shape[i];
  return n;
}

#define DIMS(...) (int64_t[]){__VA_ARGS__}, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define SHAPE(n, ...) set_shape((n), DT_F32, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define SCALAR(n) set_shape((n), DT_F32, 0, NULL)
// Sets a node's first integer / float attributes, in ops.def order.
#define IATTRS(n, ...) memcpy((n)->attr.i, (int64_t[]){__VA_ARGS__}, sizeof((int64_t[]){__VA_ARGS__}))
#define FATTRS(n, ...) memcpy((n)->attr.f, (double[]){__VA_ARGS__}, sizeof((double[]){__VA_ARGS__}))

static IrNode *leaf(IrGraph *g, IrOp op, const char *name, const int64_t *shape, int ndim, SrcLoc loc) {
  return ir_leaf(g, op, name, DT_F32, ndim, shape, loc);
}

static IrNode *param(IrGraph *g, const char *name, InitKind k, double a, double b,
                     const int64_t *shape, int ndim, SrcLoc loc, const char *scope) {
  IrNode *n = leaf(g, IR_PARAM, name, shape, ndim, loc);
  n->init = (IrInit){k, a, b};
  n->scope = scope;
  return n;
}

static IrNode *scoped(IrNode *n, const char *scope) {
  n->scope = scope;
  return n;
}

//
// Graphs built by hand, as the lowering would build them
//

static const SrcFile mlp_nn = {.name = "models/mlp.nn"};
static const SrcFile cnn_nn = {.name = "models/cnn.nn"};

static SrcLoc at(const SrcFile *f, int line, int col) {
  return (SrcLoc){.file = f, .line = line, .col = col, .len = 1};
}

// models/mlp.nn with one hidden layer.
static IrGraph *build_mlp(Arena *a) {
  IrGraph *g = ir_graph_new(a, "mlp");
  g->file = "models/mlp.nn";
  const SrcFile *f = &mlp_nn;
  IrNode *x = leaf(g, IR_INPUT, "image", DIMS(N, 28, 28), at(f, 3, 12));
  IrNode *y = ir_leaf(g, IR_TARGET, "label", DT_I32, 1, (int64_t[]){N}, at(f, 4, 12));
  y->attr.i[0] = 10;
  IrNode *h = scoped(SHAPE(ir_unary(g, IR_RESHAPE, x, at(f, 6, 14)), N, 784), "flatten_1");
  double b1 = 1 / sqrt(784.0), b2 = 1 / sqrt(512.0);
  IrNode *w1 = param(g, "linear_1.weight", INIT_UNIFORM, -b1, b1, DIMS(512, 784), at(f, 6, 25), "linear_1");
  IrNode *c1 = param(g, "linear_1.bias", INIT_UNIFORM, -b1, b1, DIMS(512), at(f, 6, 25), "linear_1");
  IrNode *m = scoped(SHAPE(ir_binary(g, IR_MATMUL, h, w1, at(f, 6, 25)), N, 512), "linear_1");
  m->attr.i[1] = 1;
  h = scoped(SHAPE(ir_binary(g, IR_ADD, m, c1, at(f, 6, 25)), N, 512), "linear_1");
  h = scoped(SHAPE(ir_unary(g, IR_RELU, h, at(f, 6, 40)), N, 512), "relu_1");
  IrNode *w2 = param(g, "linear_2.weight", INIT_UNIFORM, -b2, b2, DIMS(10, 512), at(f, 8, 14), "linear_2");
  IrNode *c2 = param(g, "linear_2.bias", INIT_ZEROS, 0, 0, DIMS(10), at(f, 8, 14), "linear_2");
  m = scoped(SHAPE(ir_binary(g, IR_MATMUL, h, w2, at(f, 8, 14)), N, 10), "linear_2");
  m->attr.i[1] = 1;
  g->output = scoped(SHAPE(ir_binary(g, IR_ADD, m, c2, at(f, 8, 14)), N, 10), "linear_2");
  g->loss = SCALAR(ir_binary(g, IR_CROSS_ENTROPY, g->output, y, at(f, 10, 11)));
  return g;
}

// conv2d (with and without bias), batchnorm, both pools, dropout, a
// constant, log_softmax and nll.
static IrGraph *build_cnn(Arena *a) {
  IrGraph *g = ir_graph_new(a, "cnn");
  g->file = "models/cnn.nn";
  const SrcFile *f = &cnn_nn;
  IrNode *x = leaf(g, IR_INPUT, "image", DIMS(N, 1, 28, 28), at(f, 3, 12));
  IrNode *y = ir_leaf(g, IR_TARGET, "label", DT_I32, 1, (int64_t[]){N}, at(f, 4, 12));
  y->attr.i[0] = 10;
  IrNode *w = param(g, "conv2d_1.weight", INIT_UNIFORM, -1 / 3.0, 1 / 3.0, DIMS(32, 1, 3, 3), at(f, 6, 14), "conv2d_1");
  IrNode *b = param(g, "conv2d_1.bias", INIT_CONSTANT, 0.1, 0, DIMS(32), at(f, 6, 14), "conv2d_1");
  IrNode *c = scoped(SHAPE(ir_add(g, IR_CONV2D, (IrNode *[]){x, w, b}, 3, at(f, 6, 14)), N, 32, 26, 26), "conv2d_1");
  for (int i = 0; i < 7; i++)
    c->attr.i[i] = i < 2 || i >= 4;   // stride 1, pad 0, dilation 1, groups 1
  IrNode *bn[5] = {c};
  bn[1] = param(g, "bn_1.weight", INIT_ONES, 0, 0, DIMS(32), at(f, 6, 28), "bn_1");
  bn[2] = param(g, "bn_1.bias", INIT_ZEROS, 0, 0, DIMS(32), at(f, 6, 28), "bn_1");
  bn[3] = leaf(g, IR_BUFFER, "bn_1.running_mean", DIMS(32), at(f, 6, 28));
  bn[4] = leaf(g, IR_BUFFER, "bn_1.running_var", DIMS(32), at(f, 6, 28));
  bn[4]->init.kind = INIT_ONES;
  IrNode *h = scoped(SHAPE(ir_add(g, IR_BATCHNORM, bn, 5, at(f, 6, 28)), N, 32, 26, 26), "bn_1");
  h->attr.f[0] = 1e-5;
  h->attr.f[1] = 0.1;
  h = SHAPE(ir_unary(g, IR_RELU, h, at(f, 6, 44)), N, 32, 26, 26);
  h = scoped(SHAPE(ir_unary(g, IR_MAXPOOL, h, at(f, 6, 52)), N, 32, 13, 13), "maxpool_1");
  memcpy(h->attr.i, (int64_t[]){2, 2, 2, 2, 0, 0, 1, 1}, 8 * sizeof(int64_t));
  h = SHAPE(ir_unary(g, IR_DROPOUT, h, at(f, 6, 67)), N, 32, 13, 13);
  h->attr.f[0] = 0.25;
  w = param(g, "conv2d_2.weight", INIT_NORMAL, -0.0357, 0.0589, DIMS(64, 32, 3, 3), at(f, 7, 14), "conv2d_2");
  c = scoped(SHAPE(ir_binary(g, IR_CONV2D, h, w, at(f, 7, 14)), N, 64, 13, 13), "conv2d_2");
  memcpy(c->attr.i, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, 7 * sizeof(int64_t));
  h = SHAPE(ir_unary(g, IR_AVGPOOL, c, at(f, 7, 28)), N, 64, 7, 7);
  memcpy(h->attr.i, (int64_t[]){3, 3, 2, 2, 1, 1}, 6 * sizeof(int64_t));
  h = SHAPE(ir_unary(g, IR_GLOBAL_AVGPOOL, h, at(f, 7, 40)), N, 64, 1, 1);
  h = SHAPE(ir_unary(g, IR_RESHAPE, h, at(f, 8, 14)), N, 64);
  IrNode *k = SCALAR(leaf(g, IR_CONST, NULL, NULL, 0, at(f, 8, 25)));
  k->attr.f[0] = 1 / 784.0;
  h = SHAPE(ir_binary(g, IR_MUL, h, k, at(f, 8, 25)), N, 64);
  w = param(g, "linear_1.weight", INIT_UNIFORM, -0.125, 0.125, DIMS(10, 64), at(f, 8, 30), "linear_1");
  h = scoped(SHAPE(ir_binary(g, IR_MATMUL, h, w, at(f, 8, 30)), N, 10), "linear_1");
  h->attr.i[1] = 1;
  h = SHAPE(ir_unary(g, IR_LOG_SOFTMAX, h, at(f, 8, 44)), N, 10);
  h->attr.i[0] = 1;
  g->output = h;
  g->loss = SCALAR(ir_binary(g, IR_NLL, h, y, at(f, 10, 11)));
  return g;
}

// The forward ops that mlp and cnn leave out, with odd names, scopes,
// floats and no .nn file: the printer and the parser must carry all of it.
static IrGraph *build_misc(Arena *a) {
  IrGraph *g = ir_graph_new(a, "my model");
  IrNode *x = leaf(g, IR_INPUT, "in\"put\\1\n\t\001\177\303\251", DIMS(N, 4), (SrcLoc){0});
  IrNode *t = leaf(g, IR_TARGET, "t", DIMS(N, 4), (SrcLoc){0});
  IrNode *p = param(g, "p", INIT_NORMAL, -0.0357, 1e-8, DIMS(4), (SrcLoc){.line = 1, .col = 0}, "");
  static const double vals[] = {-0.0, 1e-8, 5e-324, DBL_MAX, -1.0 / 3, 123456789012345678.0};
  IrNode *prev = x;
  for (int i = 0; i < countof(vals); i++) {
    IrNode *k = SCALAR(leaf(g, IR_CONST, NULL, NULL, 0, (SrcLoc){0}));
    k->attr.f[0] = vals[i];
    k->scope = "consts\\\"";
    prev = SHAPE(ir_binary(g, i % 2 ? IR_SUB : IR_DIV, prev, k, (SrcLoc){0}), N, 4);
  }
  static const IrOp unary[] = {IR_NEG, IR_SIGMOID, IR_TANH, IR_EXP, IR_LOG, IR_SOFTMAX};
  for (int i = 0; i < countof(unary); i++)
    prev = SHAPE(ir_unary(g, unary[i], prev, (SrcLoc){.line = 100000 + i, .col = 7}), N, 4);
  prev->attr.i[0] = -1;
  IrNode *b = param(g, "b", INIT_CONSTANT, INFINITY, 0, DIMS(4), (SrcLoc){0}, NULL);
  prev = SHAPE(ir_binary(g, IR_MUL, ir_binary(g, IR_ADD, prev, b, (SrcLoc){0}), p, (SrcLoc){0}), N, 4);
  SHAPE(g->nodes[prev->id - 1], N, 4);
  IrNode *buf = leaf(g, IR_BUFFER, "buf", DIMS(1), (SrcLoc){0});
  buf->init = (IrInit){INIT_UNIFORM, -INFINITY, NAN};
  SCALAR(ir_binary(g, IR_MSE, prev, t, (SrcLoc){0}));
  SCALAR(ir_binary(g, IR_L1, prev, t, (SrcLoc){0}));
  g->loss = SCALAR(ir_binary(g, IR_BCE_WITH_LOGITS, prev, t, (SrcLoc){0}));
  IrNode *cat = SHAPE(ir_add(g, IR_CONCAT, (IrNode *[]){prev, b, prev}, 3, (SrcLoc){0}), N, 12);
  cat->attr.i[0] = 1;
  IrNode *sl = SHAPE(ir_unary(g, IR_SLICE, cat, (SrcLoc){0}), N, 3);
  sl->attr = (IrAttr){.i = {1, 1, 7, 2}};
  IrNode *sm = SHAPE(ir_unary(g, IR_SUM, sl, (SrcLoc){0}), N, 1);
  sm->attr = (IrAttr){.i = {2, 1}};
  IrNode *mn = SHAPE(ir_unary(g, IR_MEAN, sl, (SrcLoc){0}), N);
  mn->attr = (IrAttr){.i = {2, 0}};
  IrNode *mx = SHAPE(ir_unary(g, IR_MAX, sl, (SrcLoc){0}), N, 1);
  mx->attr = (IrAttr){.i = {2, 1}};
  g->output = prev;
  // An integer input looked up in a table, and the table's gradient.
  IrNode *tok = leaf(g, IR_INPUT, "tok", DIMS(N, 3), (SrcLoc){0});
  tok->dtype = DT_I32;
  IrNode *table = param(g, "embedding_1.weight", INIT_NORMAL, 0, 1, DIMS(5, 4), (SrcLoc){0}, "embedding_1");
  IrNode *e = SHAPE(ir_binary(g, IR_EMBEDDING, tok, table, (SrcLoc){0}), N, 3, 4);
  SHAPE(ir_binary(g, IR_EMBEDDING_GRAD, e, tok, (SrcLoc){0}), 5, 4);
  // The activations with parameters (and silu, sqrt, abs), on a side chain.
  static const IrOp acts[] = {IR_GELU, IR_LEAKY_RELU, IR_SILU, IR_ELU, IR_SOFTPLUS, IR_SQRT, IR_ABS, IR_CLAMP};
  IrNode *act = prev;
  for (int i = 0; i < countof(acts); i++)
    act = SHAPE(ir_unary(g, acts[i], act, (SrcLoc){0}), N, 4);
  act->attr = (IrAttr){.i = {1, 0}, .f = {-1.5, 0}};   // clamp(min = -1.5)
  g->nodes[act->id - 7]->attr.i[0] = 1;                 // gelu(tanh = true)
  g->nodes[act->id - 6]->attr.f[0] = -0.02;             // leaky_relu(slope = -0.02)
  g->nodes[act->id - 4]->attr.f[0] = 0.5;               // elu(alpha = 0.5)
  g->nodes[act->id - 3]->attr = (IrAttr){.f = {2, 15}};  // softplus(beta = 2, threshold = 15)
  SHAPE(ir_unary(g, IR_GAUSSIAN_NOISE, act, (SrcLoc){0}), N, 4)->attr.f[0] = 0.25;
  IrNode *pm = SHAPE(ir_unary(g, IR_PERMUTE, prev, (SrcLoc){0}), N, 4);   // attention's ops
  pm->attr.i[1] = 1;
  IrNode *q = param(g, "q", INIT_ZEROS, 0, 0, DIMS(2, 4, 4), (SrcLoc){0}, NULL);
  IrNode *r = param(g, "r", INIT_ONES, 0, 0, DIMS(2, 3, 4), (SrcLoc){0}, NULL);
  SHAPE(ir_binary(g, IR_BATCH_MATMUL, q, r, (SrcLoc){0}), 2, 4, 3)->attr.i[1] = 1;
  IrNode *ln = SHAPE(ir_unary(g, IR_LAYERNORM, prev, (SrcLoc){0}), N, 4);
  ln->attr.i[0] = 1;
  ln->attr.f[0] = 1e-5;
  SHAPE(ir_binary(g, IR_LAYERNORM_GRAD, ln, prev, (SrcLoc){0}), N, 4)->attr = ln->attr;
  return g;
}

static const SrcFile multitask_nn = {.name = "multitask.nn"};

// An optimizer's state buffer for p, as autodiff makes it: "<p>.<what>",
// zeros, p's shape, location and scope.
static IrNode *state_buf(IrGraph *g, const IrNode *p, const char *what) {
  char name[64];
  snprintf(name, sizeof name, "%s.%s", p->name, what);
  IrNode *b = leaf(g, IR_BUFFER, name, p->shape, p->ndim, p->loc);
  b->scope = p->scope;
  return b;
}

// An update op; src[0] is the parameter, whose shape, location and scope it takes.
static IrNode *step(IrGraph *g, IrOp op, IrNode **src, int nsrc) {
  IrNode *p = src[0];
  IrNode *n = set_shape(ir_add(g, op, src, nsrc, p->loc), DT_F32, p->ndim, p->shape);
  n->scope = p->scope;
  return n;
}

// Adam (decoupled: AdamW) with PyTorch's defaults but weight_decay.
static IrNode *adam_step(IrGraph *g, IrNode *p, IrNode *dp, int decoupled, double weight_decay) {
  IrNode *m = state_buf(g, p, "exp_avg"), *v = state_buf(g, p, "exp_avg_sq");
  IrNode *n = step(g, IR_ADAM_STEP, (IrNode *[]){p, dp, m, v}, 4);
  n->attr.i[0] = decoupled;
  FATTRS(n, 0.001, 0.9, 0.999, 1e-8, weight_decay);
  return n;
}

// SGD; with momentum, a momentum buffer as the third input.
static IrNode *sgd_step(IrGraph *g, IrNode *p, IrNode *dp, int nesterov, double lr, double momentum,
                        double weight_decay) {
  IrNode *src[3] = {p, dp, NULL};
  if (momentum != 0)
    src[2] = state_buf(g, p, "momentum_buffer");
  IrNode *n = step(g, IR_SGD_STEP, src, momentum != 0 ? 3 : 2);
  n->attr.i[0] = nesterov;
  FATTRS(n, lr, momentum, 0, weight_decay);
  return n;
}

// RMSprop with momentum and centered: every kind of its state.
static IrNode *rmsprop_step(IrGraph *g, IrNode *p, IrNode *dp) {
  IrNode *sq = state_buf(g, p, "square_avg"), *buf = state_buf(g, p, "momentum_buffer");
  IrNode *n = step(g, IR_RMSPROP_STEP, (IrNode *[]){p, dp, sq, buf, state_buf(g, p, "grad_avg")}, 5);
  n->attr.i[0] = 1;
  FATTRS(n, 0.01, 0.99, 1e-8, 0, 0.9);
  return n;
}

// Adagrad, its sum starting at 0.1.
static IrNode *adagrad_step(IrGraph *g, IrNode *p, IrNode *dp) {
  IrNode *sum = state_buf(g, p, "sum");
  sum->init = (IrInit){INIT_CONSTANT, 0.1, 0};
  IrNode *n = step(g, IR_ADAGRAD_STEP, (IrNode *[]){p, dp, sum}, 3);
  FATTRS(n, 0.01, 0.1, 0, 0.1, 1e-10);
  return n;
}

// Head k of multitask.nn (line 8 + k): its weight, into *w, and feat @ w^T.
static IrNode *head(IrGraph *g, IrNode *feat, int k, int64_t width, IrNode **w) {
  SrcLoc loc = at(&multitask_nn, 8 + k, 10);
  const char *scope = arena_printf(g->arena, "linear_%d", k);
  *w = param(g, arena_printf(g->arena, "%s.weight", scope), INIT_UNIFORM, -0.25, 0.25, DIMS(width, 16), loc, scope);
  IrNode *m = scoped(SHAPE(ir_binary(g, IR_MATMUL, feat, *w, loc), N, width), scope);
  m->attr.i[1] = 1;
  return m;
}

/*
** A training step laid out as passes/autodiff.c lays one out: the forward
** graph, the gradients in reverse order, then one update per parameter.
** The model has a small conv trunk and five heads, one per loss; the first
** head's nll is the graph's loss. autodiff seeds only that one, but here
** every loss seeds its gradient (as training on their sum would), so that
** all five loss-gradient ops appear and the feature gradient adds up.
** The parameters fall in three groups: AdamW for the convolutions, Adam
** without weight decay for batchnorm, and SGD (Nesterov momentum for the
** main head, plain for the others). The locations point into this sketch
** of the model, multitask.nn:
**
**    1 model multitask {
**    2     input  image: f32[3, 16, 16]
**    3     target label: class(10)
**    4     target attrs: f32[4]
**    5     target box: f32[4]
**    6     target soft_label: f32[10]
**    7     f = image -> conv2d(8, 3, pad = 1) -> batchnorm -> relu -> maxpool(2) -> dropout(0.25)
**    8               -> conv2d(16, 3, pad = 1, bias = false) -> tanh -> avgpool(2) -> global_avgpool -> flatten
**    9     f -> linear(10) -> log_softmax -> nll(label)
**   10     f -> linear(10, bias = false) -> cross_entropy(label)
**   11     f -> linear(4, bias = false) -> bce_with_logits(attrs)
**   12     f -> linear(4, bias = false) -> sigmoid -> l1(box)
**   13     f -> linear(10, bias = false) -> softmax -> mse(soft_label)
**   14 }
*/
static IrGraph *build_train(Arena *a) {
  IrGraph *g = ir_graph_new(a, "multitask");
  g->file = "multitask.nn";
  const SrcFile *f = &multitask_nn;
  // Forward.
  IrNode *x = leaf(g, IR_INPUT, "image", DIMS(N, 3, 16, 16), at(f, 2, 12));
  IrNode *label = ir_leaf(g, IR_TARGET, "label", DT_I32, 1, (int64_t[]){N}, at(f, 3, 12));
  label->attr.i[0] = 10;
  IrNode *attrs = leaf(g, IR_TARGET, "attrs", DIMS(N, 4), at(f, 4, 12));
  IrNode *box = leaf(g, IR_TARGET, "box", DIMS(N, 4), at(f, 5, 12));
  IrNode *soft = leaf(g, IR_TARGET, "soft_label", DIMS(N, 10), at(f, 6, 12));
  double b1 = 1 / sqrt(27.0), b2 = 1 / sqrt(72.0);
  IrNode *w1 = param(g, "conv2d_1.weight", INIT_UNIFORM, -b1, b1, DIMS(8, 3, 3, 3), at(f, 7, 18), "conv2d_1");
  IrNode *c1 = param(g, "conv2d_1.bias", INIT_UNIFORM, -b1, b1, DIMS(8), at(f, 7, 18), "conv2d_1");
  IrNode *conv1 = scoped(SHAPE(ir_add(g, IR_CONV2D, (IrNode *[]){x, w1, c1}, 3, at(f, 7, 18)), N, 8, 16, 16), "conv2d_1");
  IATTRS(conv1, 1, 1, 1, 1, 1, 1, 1);
  IrNode *bn[5] = {conv1};
  bn[1] = param(g, "batchnorm_1.weight", INIT_ONES, 0, 0, DIMS(8), at(f, 7, 43), "batchnorm_1");
  bn[2] = param(g, "batchnorm_1.bias", INIT_ZEROS, 0, 0, DIMS(8), at(f, 7, 43), "batchnorm_1");
  bn[3] = scoped(leaf(g, IR_BUFFER, "batchnorm_1.running_mean", DIMS(8), at(f, 7, 43)), "batchnorm_1");
  bn[4] = scoped(leaf(g, IR_BUFFER, "batchnorm_1.running_var", DIMS(8), at(f, 7, 43)), "batchnorm_1");
  bn[4]->init.kind = INIT_ONES;
  IrNode *norm = scoped(SHAPE(ir_add(g, IR_BATCHNORM, bn, 5, at(f, 7, 43)), N, 8, 16, 16), "batchnorm_1");
  FATTRS(norm, 1e-5, 0.1);
  IrNode *relu = scoped(SHAPE(ir_unary(g, IR_RELU, norm, at(f, 7, 56)), N, 8, 16, 16), "relu_1");
  IrNode *pool = scoped(SHAPE(ir_unary(g, IR_MAXPOOL, relu, at(f, 7, 64)), N, 8, 8, 8), "maxpool_1");
  IATTRS(pool, 2, 2, 2, 2, 0, 0, 1, 1);
  IrNode *drop = scoped(SHAPE(ir_unary(g, IR_DROPOUT, pool, at(f, 7, 78)), N, 8, 8, 8), "dropout_1");
  drop->attr.f[0] = 0.25;
  IrNode *w2 = param(g, "conv2d_2.weight", INIT_UNIFORM, -b2, b2, DIMS(16, 8, 3, 3), at(f, 8, 18), "conv2d_2");
  IrNode *conv2 = scoped(SHAPE(ir_binary(g, IR_CONV2D, drop, w2, at(f, 8, 18)), N, 16, 8, 8), "conv2d_2");
  IATTRS(conv2, 1, 1, 1, 1, 1, 1, 1);
  IrNode *th = scoped(SHAPE(ir_unary(g, IR_TANH, conv2, at(f, 8, 58)), N, 16, 8, 8), "tanh_1");
  IrNode *avg = scoped(SHAPE(ir_unary(g, IR_AVGPOOL, th, at(f, 8, 66)), N, 16, 4, 4), "avgpool_1");
  IATTRS(avg, 2, 2, 2, 2, 0, 0);
  IrNode *gap = scoped(SHAPE(ir_unary(g, IR_GLOBAL_AVGPOOL, avg, at(f, 8, 80)), N, 16, 1, 1), "global_avgpool_1");
  IrNode *feat = scoped(SHAPE(ir_unary(g, IR_RESHAPE, gap, at(f, 8, 98)), N, 16), "flatten_1");
  // The heads, on lines 9 to 13: linear_1 (with a bias) to linear_5.
  static const int64_t width[5] = {10, 10, 4, 4, 10};
  IrNode *w[5], *lin[5], *loss[5];
  lin[0] = head(g, feat, 1, width[0], &w[0]);
  IrNode *bias = param(g, "linear_1.bias", INIT_UNIFORM, -0.25, 0.25, DIMS(10), at(f, 9, 10), "linear_1");
  lin[0] = scoped(SHAPE(ir_binary(g, IR_ADD, lin[0], bias, at(f, 9, 10)), N, 10), "linear_1");
  lin[0] = scoped(SHAPE(ir_unary(g, IR_LOG_SOFTMAX, lin[0], at(f, 9, 24)), N, 10), "log_softmax_1");
  lin[0]->attr.i[0] = 1;
  loss[0] = scoped(SCALAR(ir_binary(g, IR_NLL, lin[0], label, at(f, 9, 39))), "loss");
  lin[1] = head(g, feat, 2, width[1], &w[1]);
  loss[1] = scoped(SCALAR(ir_binary(g, IR_CROSS_ENTROPY, lin[1], label, at(f, 10, 38))), "loss_2");
  lin[2] = head(g, feat, 3, width[2], &w[2]);
  loss[2] = scoped(SCALAR(ir_binary(g, IR_BCE_WITH_LOGITS, lin[2], attrs, at(f, 11, 37))), "loss_3");
  lin[3] = head(g, feat, 4, width[3], &w[3]);
  lin[3] = scoped(SHAPE(ir_unary(g, IR_SIGMOID, lin[3], at(f, 12, 37)), N, 4), "sigmoid_1");
  loss[3] = scoped(SCALAR(ir_binary(g, IR_L1, lin[3], box, at(f, 12, 48))), "loss_4");
  lin[4] = head(g, feat, 5, width[4], &w[4]);
  lin[4] = scoped(SHAPE(ir_unary(g, IR_SOFTMAX, lin[4], at(f, 13, 38)), N, 10), "softmax_1");
  lin[4]->attr.i[0] = 1;
  loss[4] = scoped(SCALAR(ir_binary(g, IR_MSE, lin[4], soft, at(f, 13, 49))), "loss_5");
  g->output = lin[0];
  g->loss = loss[0];
  // Each loss's gradient with respect to its head's output.
  static const IrOp grad_op[5] = {IR_NLL_GRAD, IR_CROSS_ENTROPY_GRAD, IR_BCE_WITH_LOGITS_GRAD, IR_L1_GRAD, IR_MSE_GRAD};
  IrNode *dy[5];
  for (int i = 0; i < 5; i++) {
    IrNode *y = loss[i]->src[0];
    dy[i] = scoped(set_shape(ir_binary(g, grad_op[i], y, loss[i]->src[1], loss[i]->loc), DT_F32, y->ndim, y->shape),
                   loss[i]->scope);
  }
  // Backward through the heads, the last first; the feature gradient adds up.
  IrNode *dw[5], *dfeat = NULL, *dbias = NULL;
  for (int i = 4; i >= 0; i--) {
    const char *scope = w[i]->scope;
    SrcLoc loc = w[i]->loc;
    IrNode *d = dy[i];
    if (i == 4) {
      d = scoped(SHAPE(ir_binary(g, IR_SOFTMAX_GRAD, d, lin[4], at(f, 13, 38)), N, 10), "softmax_1");
      d->attr.i[0] = 1;
    } else if (i == 3) {
      d = scoped(SHAPE(ir_binary(g, IR_SIGMOID_GRAD, d, lin[3], at(f, 12, 37)), N, 4), "sigmoid_1");
    } else if (i == 0) {
      d = scoped(SHAPE(ir_binary(g, IR_LOG_SOFTMAX_GRAD, d, lin[0], at(f, 9, 24)), N, 10), "log_softmax_1");
      d->attr.i[0] = 1;
      dbias = scoped(SHAPE(ir_unary(g, IR_SUM_TO, d, loc), 10), scope);
    }
    IrNode *df = scoped(SHAPE(ir_binary(g, IR_MATMUL, d, w[i], loc), N, 16), scope);
    if (dfeat)
      df = scoped(SHAPE(ir_binary(g, IR_ADD, dfeat, df, loc), N, 16), scope);
    dfeat = df;
    dw[i] = scoped(SHAPE(ir_binary(g, IR_MATMUL, d, feat, loc), width[i], 16), scope);
    dw[i]->attr.i[0] = 1;
  }
  // Backward through the trunk.
  IrNode *d = scoped(SHAPE(ir_unary(g, IR_RESHAPE, dfeat, feat->loc), N, 16, 1, 1), "flatten_1");
  d = scoped(SHAPE(ir_unary(g, IR_GLOBAL_AVGPOOL_GRAD, d, gap->loc), N, 16, 4, 4), "global_avgpool_1");
  d = scoped(SHAPE(ir_unary(g, IR_AVGPOOL_GRAD, d, avg->loc), N, 16, 8, 8), "avgpool_1");
  d->attr = avg->attr;
  d = scoped(SHAPE(ir_binary(g, IR_TANH_GRAD, d, th, th->loc), N, 16, 8, 8), "tanh_1");
  IrNode *dx2 = scoped(SHAPE(ir_binary(g, IR_CONV2D_GRAD_INPUT, d, w2, conv2->loc), N, 8, 8, 8), "conv2d_2");
  dx2->attr = conv2->attr;
  IrNode *dw2 = scoped(SHAPE(ir_binary(g, IR_CONV2D_GRAD_WEIGHT, d, drop, conv2->loc), 16, 8, 3, 3), "conv2d_2");
  dw2->attr = conv2->attr;
  d = scoped(SHAPE(ir_binary(g, IR_DROPOUT_GRAD, dx2, drop, drop->loc), N, 8, 8, 8), "dropout_1");
  d->attr = drop->attr;
  d = scoped(SHAPE(ir_binary(g, IR_MAXPOOL_GRAD, d, relu, pool->loc), N, 8, 16, 16), "maxpool_1");
  d->attr = pool->attr;
  d = scoped(SHAPE(ir_binary(g, IR_RELU_GRAD, d, norm, relu->loc), N, 8, 16, 16), "relu_1");
  IrNode *dx1 = scoped(SHAPE(ir_add(g, IR_BATCHNORM_GRAD, (IrNode *[]){d, conv1, bn[1]}, 3, norm->loc), N, 8, 16, 16),
                       "batchnorm_1");
  dx1->attr.f[0] = norm->attr.f[0];
  IrNode *dgamma = scoped(SHAPE(ir_binary(g, IR_BATCHNORM_GRAD_GAMMA, d, conv1, norm->loc), 8), "batchnorm_1");
  dgamma->attr.f[0] = norm->attr.f[0];
  IrNode *dbeta = scoped(SHAPE(ir_unary(g, IR_CHANNEL_SUM, d, norm->loc), 8), "batchnorm_1");
  IrNode *dw1 = scoped(SHAPE(ir_binary(g, IR_CONV2D_GRAD_WEIGHT, dx1, x, conv1->loc), 8, 3, 3, 3), "conv2d_1");
  dw1->attr = conv1->attr;
  IrNode *dc1 = scoped(SHAPE(ir_unary(g, IR_CHANNEL_SUM, dx1, conv1->loc), 8), "conv2d_1");
  // The updates, in parameter order.
  adam_step(g, w1, dw1, 1, 0.01);
  adam_step(g, c1, dc1, 1, 0.01);
  adam_step(g, bn[1], dgamma, 0, 0);
  adam_step(g, bn[2], dbeta, 0, 0);
  adam_step(g, w2, dw2, 1, 0.01);
  sgd_step(g, w[0], dw[0], 1, 0.1, 0.9, 5e-4);
  sgd_step(g, bias, dbias, 1, 0.1, 0.9, 5e-4);
  for (int i = 1; i < 3; i++)
    sgd_step(g, w[i], dw[i], 0, 0.01, 0, 0);
  rmsprop_step(g, w[3], dw[3]);
  adagrad_step(g, w[4], dw[4]);
  // The activations' gradient ops, (g, x) with their forward ops' attributes.
  static const IrOp act_grads[] = {IR_GELU_GRAD, IR_LEAKY_RELU_GRAD, IR_SILU_GRAD, IR_ELU_GRAD,
                                   IR_SOFTPLUS_GRAD, IR_SQRT_GRAD, IR_ABS_GRAD, IR_CLAMP_GRAD};
  IrNode *da = d;
  for (int i = 0; i < countof(act_grads); i++)
    da = scoped(SHAPE(ir_binary(g, act_grads[i], da, norm, norm->loc), N, 8, 16, 16), "act");
  da->attr = (IrAttr){.i = {1, 1}, .f = {-1, 1}};   // clamp(-1, 1)
  g->nodes[da->id - 3]->attr = (IrAttr){.f = {1, 20}};   // softplus's defaults
  g->nodes[da->id - 4]->attr.f[0] = 1;                  // elu's alpha
  g->nodes[da->id - 6]->attr.f[0] = 0.01;               // leaky_relu's slope
  IrNode *sg = scoped(SHAPE(ir_unary(g, IR_SLICE_GRAD, dfeat, feat->loc), N, 32), "slice_1");
  sg->attr = (IrAttr){.i = {1, 0, 32, 2}};
  IrNode *first = scoped(SHAPE(ir_binary(g, IR_MAX_FIRST, sg, dfeat, feat->loc), N, 16), "max_1");
  first->attr.i[0] = 2;
  IrNode *dmax = scoped(SHAPE(ir_binary(g, IR_MAX_GRAD, dfeat, first, feat->loc), N, 16), "max_1");
  dmax->attr.i[0] = 2;
  // conv2d_1's weight and input gradients as pass_simplify writes them
  // through a max pooling of the convolution's output: (the pooled gradient,
  // x or w, the pooling)
  IrNode *dwp = scoped(SHAPE(ir_add(g, IR_CONV2D_GRAD_WEIGHT_POOLED, (IrNode *[]){dx2, x, pool}, 3, conv1->loc), 8,
                             3, 3, 3),
                       "conv2d_1");
  dwp->attr = conv1->attr;
  IrNode *dxp = scoped(SHAPE(ir_add(g, IR_CONV2D_GRAD_INPUT_POOLED, (IrNode *[]){dx2, w1, pool}, 3, conv1->loc), N,
                             3, 16, 16),
                       "conv2d_1");
  dxp->attr = conv1->attr;
  return g;
}

//
// The op table, builders, counts and types
//

static void test_op_table(void) {
  const IrOpInfo *conv = ir_op_info(IR_CONV2D);
  CHECK_STR("conv2d", conv->mnem);
  CHECK_INT(2, conv->min_in);
  CHECK_INT(3, conv->max_in);
  CHECK_INT(7, conv->niattr);
  CHECK_INT(0, conv->nfattr);
  CHECK_STR("stride_h", conv->iattr[0]);
  CHECK_STR("dil_w", conv->iattr[5]);
  CHECK_STR("groups", conv->iattr[6]);
  CHECK(conv->iattr[7] == NULL);
  const IrOpInfo *pool = ir_op_info(IR_MAXPOOL);
  CHECK_INT(8, pool->niattr);
  CHECK_STR("dil_w", pool->iattr[7]);
  const IrOpInfo *bn = ir_op_info(IR_BATCHNORM);
  CHECK_INT(5, bn->min_in);
  CHECK_INT(2, bn->nfattr);
  CHECK_STR("eps", bn->fattr[0]);
  CHECK_STR("momentum", bn->fattr[1]);
  CHECK(bn->fattr[2] == NULL);
  // The optimizer ops hold the most float attributes.
  const IrOpInfo *adam = ir_op_info(IR_ADAM_STEP);
  CHECK_STR("adam_step", adam->mnem);
  CHECK_INT(4, adam->min_in);
  CHECK_INT(4, adam->max_in);
  CHECK_INT(1, adam->niattr);
  CHECK_STR("decoupled", adam->iattr[0]);
  CHECK(adam->iattr[1] == NULL);
  CHECK_INT(5, adam->nfattr);
  CHECK_STR("lr", adam->fattr[0]);
  CHECK_STR("beta1", adam->fattr[1]);
  CHECK_STR("beta2", adam->fattr[2]);
  CHECK_STR("eps", adam->fattr[3]);
  CHECK_STR("weight_decay", adam->fattr[4]);
  CHECK(adam->fattr[5] == NULL);
  const IrOpInfo *sgd = ir_op_info(IR_SGD_STEP);
  CHECK_INT(2, sgd->min_in);
  CHECK_INT(3, sgd->max_in);
  CHECK_INT(1, sgd->niattr);
  CHECK_STR("nesterov", sgd->iattr[0]);
  CHECK_INT(4, sgd->nfattr);
  CHECK_STR("dampening", sgd->fattr[2]);
  CHECK_STR("weight_decay", sgd->fattr[3]);
  CHECK(sgd->fattr[4] == NULL);
  const IrOpInfo *bng = ir_op_info(IR_BATCHNORM_GRAD);
  CHECK_INT(3, bng->min_in);
  CHECK_INT(0, bng->niattr);
  CHECK_INT(1, bng->nfattr);
  CHECK_STR("eps", bng->fattr[0]);
  CHECK_INT(7, ir_op_info(IR_CONV2D_GRAD_WEIGHT)->niattr);
  CHECK_INT(8, ir_op_info(IR_MAXPOOL_GRAD)->niattr);
  CHECK_INT(6, ir_op_info(IR_AVGPOOL_GRAD)->niattr);
  CHECK_STR("p", ir_op_info(IR_DROPOUT_GRAD)->fattr[0]);
  CHECK_STR("axis", ir_op_info(IR_LOG_SOFTMAX_GRAD)->iattr[0]);
  CHECK_STR("classes", ir_op_info(IR_TARGET)->iattr[0]);
  CHECK_STR("value", ir_op_info(IR_CONST)->fattr[0]);
  CHECK_INT(0, ir_op_info(IR_ADD)->niattr + ir_op_info(IR_ADD)->nfattr);
  CHECK(ir_op_info(IR_ADD)->iattr[0] == NULL);
  CHECK_INT(87, IR_NUM_OPS);
  int nkind[IR_KIND_UPDATE + 1] = {0}, most_i = 0, most_f = 0;
  for (int op = 0; op < IR_NUM_OPS; op++) {
    const IrOpInfo *info = ir_op_info(op);
    CHECK_INT(op, ir_op_lookup(info->mnem));
    CHECK(info->min_in >= 0 && info->min_in <= info->max_in && info->max_in <= IR_MAX_SRC);
    CHECK(info->niattr <= IR_MAX_IATTR && info->nfattr <= IR_MAX_FATTR);
    for (int i = 0; i < IR_MAX_IATTR; i++)
      CHECK((info->iattr[i] != NULL) == (i < info->niattr));
    for (int i = 0; i < IR_MAX_FATTR; i++)
      CHECK((info->fattr[i] != NULL) == (i < info->nfattr));
    most_i = info->niattr > most_i ? info->niattr : most_i;
    most_f = info->nfattr > most_f ? info->nfattr : most_f;
    IrOpKind kind = ir_op_kind(op);
    CHECK((unsigned)kind <= IR_KIND_UPDATE && kind == info->kind);
    nkind[kind]++;
    CHECK((info->max_in == 0) == (kind == IR_KIND_LEAF));   // only leaves have no inputs
    if (kind == IR_KIND_ELEMENTWISE)   // attributes: the activations' parameters, a permute's order
      CHECK(info->min_in == info->max_in && info->max_in <= 2 &&
            (op == IR_PERMUTE || (info->niattr <= 2 && info->nfattr <= 2)));
    if (kind == IR_KIND_LOSS || kind == IR_KIND_LOSS_GRAD)
      CHECK(info->min_in == 2 && info->max_in == 2);
    CHECK(ir_op_is_leaf(op) == (kind == IR_KIND_LEAF) && ir_op_is_loss(op) == (kind == IR_KIND_LOSS));
  }
  CHECK_INT(5, nkind[IR_KIND_LEAF]);
  CHECK_INT(31, nkind[IR_KIND_ELEMENTWISE]);   // 18 forward ops, relu_grad, sigmoid_grad, tanh_grad, 8 act grads, max_grad, permute
  CHECK_INT(2, nkind[IR_KIND_MATMUL]);          // matmul, batch_matmul
  CHECK_INT(7, nkind[IR_KIND_REDUCE]);         // sum_to, channel_sum, slice_grad, sum, mean, max, max_first
  CHECK_INT(1, nkind[IR_KIND_VIEW]);           // reshape
  CHECK_INT(2, nkind[IR_KIND_INDEX]);          // slice, concat
  CHECK_INT(25, nkind[IR_KIND_LIB]);
  CHECK_INT(5, nkind[IR_KIND_LOSS]);
  CHECK_INT(5, nkind[IR_KIND_LOSS_GRAD]);
  CHECK_INT(4, nkind[IR_KIND_UPDATE]);
  CHECK_INT(8, most_i);    // maxpool, maxpool_grad
  CHECK_INT(5, most_f);    // adam_step, rmsprop_step, adagrad_step
  CHECK(ir_op_is_leaf(IR_CONST) && ir_op_is_loss(IR_NLL) && ir_op_kind(IR_LOG) == IR_KIND_ELEMENTWISE);
  CHECK(ir_op_kind(IR_DROPOUT) == IR_KIND_LIB && ir_op_kind(IR_MATMUL) == IR_KIND_MATMUL);
  CHECK_INT(IR_GLOBAL_AVGPOOL, ir_op_lookup("global_avgpool"));
  CHECK_INT(IR_ADAM_STEP, ir_op_lookup("adam_step"));
  CHECK_INT(IR_SUM_TO, ir_op_lookup("sum_to"));
  CHECK(!ir_op_is_loss(IR_NLL_GRAD) && ir_op_kind(IR_NLL_GRAD) == IR_KIND_LOSS_GRAD && !ir_op_is_leaf(IR_SGD_STEP));
  CHECK(ir_op_kind(IR_RELU_GRAD) == IR_KIND_ELEMENTWISE && ir_op_kind(IR_SOFTMAX_GRAD) == IR_KIND_LIB);
  CHECK(ir_op_kind(IR_RESHAPE) == IR_KIND_VIEW && ir_op_kind(IR_ADAM_STEP) == IR_KIND_UPDATE);
  CHECK_INT(IR_NUM_OPS, ir_op_lookup("matmull"));
  CHECK_INT(IR_NUM_OPS, ir_op_lookup(""));
  CHECK_INT(IR_NUM_OPS, ir_op_lookup(NULL));
}

static void test_builders(void) {
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, "g");
  char name[] = "x";
  IrNode *x = leaf(g, IR_INPUT, name, DIMS(N, 3), at(&mlp_nn, 2, 5));
  name[0] = 'z';
  CHECK_STR("x", x->name);
  CHECK_INT(0, x->id);
  CHECK_INT(2, x->ndim);
  CHECK_INT(N, x->shape[0]);
  CHECK_INT(2, x->loc.line);
  IrNode *r = ir_unary(g, IR_RELU, x, (SrcLoc){0});
  CHECK_INT(1, r->id);
  CHECK_INT(-1, r->ndim);
  CHECK_INT(1, r->nsrc);
  CHECK(r->src[0] == x && r->src[1] == NULL);
  IrNode *u = leaf(g, IR_PARAM, "u", NULL, -1, (SrcLoc){0});
  CHECK_INT(-1, u->ndim);
  // The node array grows; ids stay positions.
  IrNode *prev = r;
  for (int i = 0; i < 1000; i++)
    prev = ir_binary(g, IR_ADD, prev, x, (SrcLoc){0});
  CHECK_INT(1003, g->nnodes);
  CHECK_INT(1002, prev->id);
  CHECK(g->nodes[500]->id == 500 && g->nodes[500]->src[0] == g->nodes[499]);
  CHECK(g->nodes[1002] == prev);
  arena_free(a);
}

static void test_counts_and_types(void) {
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, "g");
  IrNode *x = leaf(g, IR_INPUT, "x", DIMS(N, 28, 28), (SrcLoc){0});
  IrNode *w = leaf(g, IR_PARAM, "w", DIMS(512, 784), (SrcLoc){0});
  IrNode *s = SCALAR(leaf(g, IR_CONST, NULL, NULL, 0, (SrcLoc){0}));
  IrNode *y = ir_leaf(g, IR_TARGET, "y", DT_I32, 1, (int64_t[]){N}, (SrcLoc){0});
  IrNode *u = ir_unary(g, IR_RELU, x, (SrcLoc){0});
  char buf[64];
  CHECK_INT(784, ir_numel(x, 1));
  CHECK_INT(64 * 784, ir_numel(x, 64));
  CHECK_INT(512 * 784, ir_numel(w, 64));
  CHECK_INT(1, ir_numel(s, 64));
  CHECK_INT(-1, ir_numel(u, 64));
  CHECK(ir_is_batched(x) && ir_is_batched(y) && !ir_is_batched(w) && !ir_is_batched(s));
  CHECK(!ir_is_batched(u));
  CHECK(ir_same_shape(x, x) && !ir_same_shape(x, w) && !ir_same_shape(u, u));
  CHECK_STR("f32[N,28,28]", ir_type_str(x, buf, sizeof buf));
  CHECK_STR("i32[N]", ir_type_str(y, buf, sizeof buf));
  CHECK_STR("f32[]", ir_type_str(s, buf, sizeof buf));
  CHECK_STR("?", ir_type_str(u, buf, sizeof buf));
  CHECK_STR("[512,784]", ir_shape_str(w->ndim, w->shape, buf, sizeof buf));
  CHECK_STR("[]", ir_shape_str(0, NULL, buf, sizeof buf));
  CHECK_STR("?", ir_shape_str(-1, NULL, buf, sizeof buf));
  CHECK_STR("f32[N", ir_type_str(x, buf, 6));     // cut short, still terminated
  CHECK(ir_type_str(x, buf, 0) == buf);
  int64_t big[IR_MAX_DIMS] = {INT64_MAX, INT64_MIN, N, 1, 2, 3};
  CHECK_STR("[9223372036854775807,-9223372036854775808,N,1,2,3]",
            ir_shape_str(IR_MAX_DIMS, big, buf, sizeof buf));
  IrNode *huge = SHAPE(ir_unary(g, IR_RELU, x, (SrcLoc){0}), INT64_MAX, 4);
  CHECK_INT(INT64_MAX, ir_numel(huge, 1));   // stuck, not overflowed
  arena_free(a);
}

static void test_flops(void) {
  Arena *a = arena_new();
  IrGraph *g = build_mlp(a);
  CHECK_INT(0, ir_flops(g->nodes[0]));                 // input
  CHECK_INT(0, ir_flops(g->nodes[2]));                 // reshape
  CHECK_INT(0, ir_flops(g->nodes[3]));                 // param
  CHECK_INT(2 * 784 * 512, ir_flops(g->nodes[5]));     // [N,784] @ [512,784]^T
  CHECK_INT(512, ir_flops(g->nodes[6]));               // add
  CHECK_INT(512, ir_flops(g->nodes[7]));               // relu
  CHECK_INT(2 * 512 * 10, ir_flops(g->nodes[10]));
  CHECK_INT(3 * 10, ir_flops(g->loss));                // 3 * numel(logits) per sample
  // The weight gradient x^T @ dy contracts over the batch: K = 1 per sample.
  IrNode *gw = SHAPE(ir_binary(g, IR_MATMUL, g->nodes[2], g->nodes[6], (SrcLoc){0}), 784, 512);
  gw->attr.i[0] = 1;
  CHECK_INT(2 * 784 * 512, ir_flops(gw));
  // Parameters only: counted in full. [3,4] @ [4,5] and [4,3]^T @ [5,4]^T.
  IrNode *p = leaf(g, IR_PARAM, "p", DIMS(3, 4), (SrcLoc){0});
  IrNode *q = leaf(g, IR_PARAM, "q", DIMS(4, 5), (SrcLoc){0});
  CHECK_INT(2 * 4 * 15, ir_flops(SHAPE(ir_binary(g, IR_MATMUL, p, q, (SrcLoc){0}), 3, 5)));
  IrNode *pt = leaf(g, IR_PARAM, "pt", DIMS(7, 3), (SrcLoc){0});
  IrNode *qt = leaf(g, IR_PARAM, "qt", DIMS(5, 7), (SrcLoc){0});
  IrNode *m = SHAPE(ir_binary(g, IR_MATMUL, pt, qt, (SrcLoc){0}), 3, 5);
  m->attr.i[0] = m->attr.i[1] = 1;
  CHECK_INT(2 * 7 * 15, ir_flops(m));
  // K from b when a's shape is unknown (tb: b is [N, K]).
  IrNode *unk = ir_unary(g, IR_RELU, g->nodes[2], (SrcLoc){0});
  m = SHAPE(ir_binary(g, IR_MATMUL, unk, g->nodes[3], (SrcLoc){0}), N, 512);
  m->attr.i[1] = 1;
  CHECK_INT(2 * 784 * 512, ir_flops(m));
  CHECK_INT(0, ir_flops(unk));
  arena_free(a);

  a = arena_new();
  g = build_cnn(a);
  int64_t out1 = 32 * 26 * 26;
  CHECK_INT(2 * 1 * 3 * 3 * out1 + out1, ir_flops(g->nodes[4]));     // conv2d with bias
  CHECK_INT(2 * out1, ir_flops(g->nodes[9]));                        // batchnorm
  CHECK_INT(out1, ir_flops(g->nodes[10]));                           // relu
  CHECK_INT(2 * 2 * 32 * 13 * 13, ir_flops(g->nodes[11]));           // maxpool 2x2
  CHECK_INT(32 * 13 * 13, ir_flops(g->nodes[12]));                   // dropout
  CHECK_INT(2 * 32 * 3 * 3 * 64 * 13 * 13, ir_flops(g->nodes[14]));  // conv2d, no bias
  CHECK_INT(3 * 3 * 64 * 7 * 7, ir_flops(g->nodes[15]));             // avgpool 3x3
  CHECK_INT(64 * 7 * 7, ir_flops(g->nodes[16]));                     // global_avgpool: its input
  CHECK_INT(0, ir_flops(g->nodes[17]));                              // reshape
  CHECK_INT(0, ir_flops(g->nodes[18]));                              // const
  CHECK_INT(3 * 10, ir_flops(g->nodes[22]));                         // log_softmax
  CHECK_INT(3 * 10, ir_flops(g->nodes[23]));                         // nll
  IrNode *sm = SHAPE(ir_unary(g, IR_SOFTMAX, g->nodes[21], (SrcLoc){0}), N, 10);
  CHECK_INT(30, ir_flops(sm));
  arena_free(a);
}

//
// Printing and parsing
//

static const char mlp_text[] =
  "graph mlp \"models/mlp.nn\" {\n"
  "  %0 = input \"image\" : f32[N,28,28] @3:12\n"
  "  %1 = target \"label\" {classes=10} : i32[N] @4:12\n"
  "  %2 = reshape %0 : f32[N,784] @6:14 scope \"flatten_1\"\n"
  "  %3 = param \"linear_1.weight\" init uniform(-0.03571428571428571, 0.03571428571428571) : f32[512,784] @6:25 scope \"linear_1\"\n"
  "  %4 = param \"linear_1.bias\" init uniform(-0.03571428571428571, 0.03571428571428571) : f32[512] @6:25 scope \"linear_1\"\n"
  "  %5 = matmul %2, %3 {ta=0, tb=1} : f32[N,512] @6:25 scope \"linear_1\"\n"
  "  %6 = add %5, %4 : f32[N,512] @6:25 scope \"linear_1\"\n"
  "  %7 = relu %6 : f32[N,512] @6:40 scope \"relu_1\"\n"
  "  %8 = param \"linear_2.weight\" init uniform(-0.044194173824159216, 0.044194173824159216) : f32[10,512] @8:14 scope \"linear_2\"\n"
  "  %9 = param \"linear_2.bias\" init zeros : f32[10] @8:14 scope \"linear_2\"\n"
  "  %10 = matmul %7, %8 {ta=0, tb=1} : f32[N,10] @8:14 scope \"linear_2\"\n"
  "  %11 = add %10, %9 : f32[N,10] @8:14 scope \"linear_2\"\n"
  "  %12 = cross_entropy %11, %1 {label_smoothing=0} : f32[] @10:11\n"
  "  output %11\n"
  "  loss %12\n"
  "}\n";

static void test_print_mlp(void) {
  Arena *a = arena_new();
  IrGraph *g = build_mlp(a);
  char *text = print_graph(g);
  CHECK_STR(mlp_text, text);
  free(text);
  FILE *f = open_memstream(&text, &(size_t){0});
  ir_print_node(f, g->nodes[5]);
  fclose(f);
  CHECK_STR("%5 = matmul %2, %3 {ta=0, tb=1} : f32[N,512] @6:25 scope \"linear_1\"\n", text);
  free(text);
  arena_free(a);
}

// A clone prints as its original, shares no node with it, maps every id
// to its copy, and lives on after the original's arena is freed.
static void test_clone(void) {
  Arena *a = arena_new(), *b = arena_new();
  IrGraph *g = build_train(a);
  IrNode **map = xcalloc(g->nnodes, sizeof(IrNode *));
  IrGraph *c = ir_graph_clone(g, b, map);
  char *want = print_graph(g);
  CHECK(same_graph(g, c));
  for (int i = 0; i < g->nnodes; i++) {
    CHECK(map[i] == c->nodes[i] && map[i] != g->nodes[i]);
    for (int k = 0; k < c->nodes[i]->nsrc; k++)
      CHECK(c->nodes[i]->src[k] == c->nodes[c->nodes[i]->src[k]->id]);
  }
  CHECK(c->output == map[g->output->id] && c->loss == map[g->loss->id]);
  arena_free(a);
  char *got = print_graph(c);
  CHECK_STR(want, got);
  free(want);
  free(got);
  free(map);
  arena_free(b);
}

// ir_verify_program: a program whose kernel touches a buffer without a
// place, or past the arena, or a node outside its graph, is refused.
static void test_verify_program(void) {
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, "p");
  IrNode *x = leaf(g, IR_INPUT, "x", DIMS(N, 4), (SrcLoc){0});
  IrNode *y = ir_unary(g, IR_RELU, x, (SrcLoc){0});
  y->ndim = 2, y->shape[0] = N, y->shape[1] = 4;
  Kernel *k = ir_kernel_new(g, KN_LOOP, "relu");
  ir_kernel_add_node(g, k, y);
  int bx = ir_kernel_buf(g, k, x), by = ir_kernel_buf(g, k, y);
  int ld = ir_kernel_instr(g, k, (KInstr){.op = KI_LOAD, .buf = bx});
  ir_kernel_store(g, k, (KStore){.buf = by, .value = ld});
  KBufInfo places[4] = {{KB_INPUT, 0, 32}, {KB_ARENA, 32, 32}};
  KProgram p = {.g = g, .kernels = &k, .nkernels = 1, .buf = places, .max_batch = 2, .arena_bytes = 64};
  char err[256];
  CHECK(ir_verify_program(&p, err, sizeof err));
  places[1].bytes = 0;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "%1 (relu) has 0 bytes at 32 in the arena (64 bytes), but needs 32");
  places[1] = (KBufInfo){KB_ARENA, 48, 32};
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "has 32 bytes at 48 in the arena (64 bytes)");
  places[1] = (KBufInfo){KB_ARENA, 32, 32};
  k->body[0].buf = 5;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "instruction 0 loads buffer 5 of 2");
  k->body[0].buf = bx;
  IrNode stray = *y;
  k->nodes[0] = &stray;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "computes a node outside the graph");
  k->nodes[0] = y;
  // a value in local rows: only inside a batch-blocked region, a block of
  // its rows inside the region's local rows
  places[1] = (KBufInfo){KB_LOCAL, 0, 32};
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "kernel 0 touches a value in local rows outside a batch-blocked region");
  Kernel *two[2] = {k, k};
  KRegion reg = {0, 1, 32, false, 2, 32};
  p.kernels = two, p.nkernels = 2, p.regions = &reg, p.nregions = 1;
  k->ndim = 2, k->dims[0] = IR_N, k->dims[1] = 4, k->parallel = true;   // row by row
  k->body[0].idx = k->stores[0].idx = (KIndex){.stride = {4, 1}};
  CHECK(ir_verify_program(&p, err, sizeof err));
  reg.local_bytes = 16;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "does not hold a block of its rows (2 rows of 16 bytes) inside region 0's 16 local bytes");
  reg.local_bytes = 32, reg.block = 3;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  reg.block = 0;
  CHECK(!ir_verify_program(&p, err, sizeof err));
  CHECK_HAS(err, "without rows for its blocks");
  arena_free(a);
}

// print -> parse -> print gives the same text and an equal graph.
static void check_roundtrip(IrGraph *g, const char *what) {
  Arena *a = arena_new();
  char *text = print_graph(g), *msgs;
  int nerr;
  IrGraph *back = parse_text(a, text, &msgs, &nerr);
  if (!back) {
    FAIL("%s: does not parse back:\n%s\n%s", what, msgs, text);
  } else {
    char *again = print_graph(back);
    CHECK_STR(text, again);
    if (!same_graph(g, back))
      FAIL("%s: the graph read back differs\n", what);
    free(again);
  }
  CHECK_INT(0, nerr);
  free(msgs);
  free(text);
  arena_free(a);
}

static void test_roundtrip(void) {
  Arena *a = arena_new();
  check_roundtrip(build_mlp(a), "mlp");
  check_roundtrip(build_cnn(a), "cnn");
  check_roundtrip(build_train(a), "train");
  IrGraph *misc = build_misc(a);
  check_roundtrip(misc, "misc");
  // Unknown shapes, an empty graph, an empty name, NaN with a sign.
  IrGraph *g = ir_graph_new(a, "");
  check_roundtrip(g, "empty");
  IrNode *x = leaf(g, IR_INPUT, "", NULL, -1, (SrcLoc){.line = 1, .col = 1});
  ir_unary(g, IR_RELU, x, (SrcLoc){0})->scope = "";
  IrNode *k = leaf(g, IR_CONST, "named const", NULL, -1, (SrcLoc){0});
  k->attr.f[0] = -NAN;
  k->dtype = DT_F32;
  g->output = x;
  check_roundtrip(g, "unknown shapes");
  char *text = print_graph(g);
  CHECK_HAS(text, "graph \"\" {\n");
  CHECK_HAS(text, "%0 = input \"\" : ? @1:1\n");
  CHECK_HAS(text, "{value=-nan} : ?\n");
  free(text);
  // Names that look like numbers or keywords are quoted or not as needed.
  check_roundtrip(ir_graph_new(a, "inf"), "inf");
  check_roundtrip(ir_graph_new(a, "graph"), "graph");
  check_roundtrip(ir_graph_new(a, "x y"), "x y");
  // A graph without a name prints as "" (and so reads back with name "").
  text = print_graph(ir_graph_new(a, NULL));
  CHECK_STR("graph \"\" {\n}\n", text);
  free(text);
  arena_free(a);
}

static void test_misc_text(void) {
  Arena *a = arena_new();
  char *text = print_graph(build_misc(a));
  CHECK_HAS(text, "graph \"my model\" {\n");
  CHECK_HAS(text, "%0 = input \"in\\\"put\\\\1\\n\\t\\001\\177\\303\\251\" : f32[N,4]\n");
  CHECK_HAS(text, "%2 = param \"p\" init normal(-0.0357, 1e-08) : f32[4] @1:0 scope \"\"\n");
  CHECK_HAS(text, "{value=-0} : f32[] scope \"consts\\\\\\\"\"\n");
  CHECK_HAS(text, "{value=1e-08}");
  CHECK_HAS(text, "{value=4.94066e-324}");
  CHECK_HAS(text, "{value=1.7976931348623157e+308}");
  CHECK_HAS(text, "{value=-0.3333333333333333}");
  CHECK_HAS(text, "{value=1.2345678901234568e+17}");
  CHECK_HAS(text, "%20 = softmax %19 {axis=-1} : f32[N,4] @100005:7\n");
  CHECK_HAS(text, "init constant(inf) :");
  CHECK_HAS(text, "init uniform(-inf, nan) :");
  CHECK_HAS(text, "  output %23\n  loss %27\n}\n");
  free(text);
  arena_free(a);
}

// Floats print with the fewest digits that read back exactly.
static void test_floats(void) {
  static const struct { double v; const char *text; } cases[] = {
    {0.1, "0.1"}, {1e-8, "1e-08"}, {1 / 784.0, "0.0012755102040816326"},
    {-0.0357, "-0.0357"}, {2.5, "2.5"}, {0.0, "0"}, {-0.0, "-0"}, {1e-5, "1e-05"},
    {100, "100"}, {1e21, "1e+21"}, {0.3, "0.3"}, {1.0 / 3, "0.3333333333333333"},
  };
  Arena *a = arena_new();
  for (int i = 0; i < countof(cases); i++) {
    IrGraph *g = ir_graph_new(a, "f");
    SCALAR(leaf(g, IR_CONST, NULL, NULL, 0, (SrcLoc){0}))->attr.f[0] = cases[i].v;
    char *text = print_graph(g), want[128];
    snprintf(want, sizeof want, "{value=%s}", cases[i].text);
    CHECK_HAS(text, want);
    free(text);
    check_roundtrip(g, cases[i].text);
  }
  arena_free(a);
}

// Reading text: what the printer never writes but the parser accepts.
static void test_parse_accepts(void) {
  Arena *a = arena_new();
  char *msgs;
  int nerr;
  const char *text =
    "# a comment before the graph\n"
    "graph \"a\\\"b\" {   # after the brace\n"
    "# a whole line\n"
    "  %0 = input \"\\x41\\101\\a\" : f32[N,4]\n"
    "  %1 = param \"w\" : f32[3,4]\n"
    "  %2 = matmul %0, %1 {tb=1, ta=0} : f32[N,3]\n"
    "  %3 = matmul %0, %1 : f32[N,3]\n"
    "  %4 = matmul %0, %1 {} : f32[N,3]\n"
    "  %5 = const {value=2} : f32[]\n"
    "  %6 = const {value=-0} : f32[]\n"
    "  %7 = const {value=-inf} : f32[]\n"
    "  %8 = matmul %0, %1 {ta=9223372036854775807, tb=-9223372036854775808} : f32[N,3]\n"
    "  %9 = const {value=1.5E+3} : f32[]\n"
    "  loss %5\n"
    "  output %2\n"
    "\n"
    "}  # the end\n"
    "\n";
  IrGraph *g = parse_text(a, text, &msgs, &nerr);
  CHECK_STR("", msgs ? msgs : "");
  CHECK(g != NULL);
  if (g) {
    CHECK_STR("a\"b", g->name);
    CHECK(g->file == NULL && g->nodes[0]->loc.file == NULL);
    CHECK_STR("AA\a", g->nodes[0]->name);
    CHECK_INT(INIT_ZEROS, g->nodes[1]->init.kind);
    CHECK(g->nodes[2]->attr.i[0] == 0 && g->nodes[2]->attr.i[1] == 1);
    CHECK(g->nodes[3]->attr.i[0] == 0 && g->nodes[3]->attr.i[1] == 0);
    CHECK(g->nodes[4]->attr.i[0] == 0 && g->nodes[4]->attr.i[1] == 0);
    CHECK(g->nodes[5]->attr.f[0] == 2.0);
    CHECK(g->nodes[6]->attr.f[0] == 0 && signbit(g->nodes[6]->attr.f[0]));
    CHECK(isinf(g->nodes[7]->attr.f[0]) && g->nodes[7]->attr.f[0] < 0);
    CHECK(g->nodes[8]->attr.i[0] == INT64_MAX && g->nodes[8]->attr.i[1] == INT64_MIN);
    CHECK(g->nodes[9]->attr.f[0] == 1500);
    CHECK(g->output == g->nodes[2] && g->loss == g->nodes[5]);
  }
  free(msgs);
  // Node locations name the .nn file of the header; its text is not here.
  g = parse_text(a, mlp_text, &msgs, &nerr);
  CHECK(g && g->nodes[0]->loc.file && g->nodes[0]->loc.file->text == NULL);
  if (g && g->nodes[0]->loc.file) {
    CHECK_STR("models/mlp.nn", g->nodes[0]->loc.file->name);
    CHECK(g->nodes[12]->loc.file == g->nodes[0]->loc.file);
    CHECK_INT(10, g->nodes[12]->loc.line);
    CHECK_INT(11, g->nodes[12]->loc.col);
  }
  free(msgs);
  arena_free(a);
}

// The text must fail with exactly one error whose first line is want and
// whose hint (when given) is hint.
static void expect_error(int line, const char *text, const char *want, const char *hint) {
  Arena *a = arena_new();
  char *msgs;
  int nerr;
  IrGraph *g = parse_text(a, text, &msgs, &nerr);
  size_t n = strlen(want);
  if (g || nerr != 1 || strncmp(msgs, want, n) != 0 || msgs[n] != '\n') {
    t_record(__FILE__, line, false, "expected the error\n  %s\ngot %d error(s)%s:\n%s\n", want, nerr,
             g ? " and a graph" : "", msgs);
  }
  char h[128];
  if (hint) {
    snprintf(h, sizeof h, "  hint: %s\n", hint);
    t_record(__FILE__, line, strstr(msgs, h), "expected the hint '%s' in:\n%s\n", hint, msgs);
  } else {
    t_record(__FILE__, line, !strstr(msgs, "hint:"), "expected no hint in:\n%s\n", msgs);
  }
  free(msgs);
  arena_free(a);
}

#define EXPECT_ERROR(text, want) expect_error(__LINE__, (text), (want), NULL)
#define EXPECT_ERROR_HINT(text, want, hint) expect_error(__LINE__, (text), (want), (hint))

// Two leaves, then the line under test (line 4), then the end.
#define HEAD "graph t {\n  %0 = input \"x\" : f32[N,4]\n  %1 = param \"w\" : f32[4,4]\n"
#define LINE4(s) HEAD s "\n  output %0\n}\n"

static void test_parse_errors(void) {
  EXPECT_ERROR_HINT(LINE4("  %2 = matmull %0, %1 : f32[N,4]"),
                    "t.ir:4:8: error: unknown op 'matmull'", "did you mean 'matmul'?");
  EXPECT_ERROR(LINE4("  %2 = frobnicate %0 : f32[N,4]"), "t.ir:4:8: error: unknown op 'frobnicate'");
  EXPECT_ERROR(LINE4("  %2 = relu %7 : f32[N,4]"), "t.ir:4:13: error: %7 used before it is defined");
  EXPECT_ERROR(LINE4("  %2 = relu %2 : f32[N,4]"), "t.ir:4:13: error: %2 used before it is defined");
  EXPECT_ERROR(HEAD "  output %3\n}\n", "t.ir:4:10: error: %3 used before it is defined");
  EXPECT_ERROR(LINE4("  %5 = relu %0 : f32[N,4]"),
               "t.ir:4:3: error: node ids must be consecutive: expected %2, found %5");
  EXPECT_ERROR(LINE4("  %1 = relu %0 : f32[N,4]"),
               "t.ir:4:3: error: node ids must be consecutive: expected %2, found %1");
  EXPECT_ERROR(LINE4("  %2 = conv2d %0 : f32[N,4]"), "t.ir:4:8: error: conv2d takes 2 to 3 inputs, found 1");
  EXPECT_ERROR(LINE4("  %2 = relu %0, %1 : f32[N,4]"), "t.ir:4:8: error: relu takes 1 input, found 2");
  EXPECT_ERROR(LINE4("  %2 = relu : f32[N,4]"), "t.ir:4:8: error: relu takes 1 input, found 0");
  EXPECT_ERROR(LINE4("  %2 = matmul %0 : f32[N,4]"), "t.ir:4:8: error: matmul takes 2 inputs, found 1");
  EXPECT_ERROR(LINE4("  %2 = input %0 \"y\" : f32[N,4]"), "t.ir:4:8: error: input takes no inputs, found 1");
  EXPECT_ERROR(LINE4("  %2 = add %0, %0, %0, %0, %0, %0, %0 : f32[N,4]"),
               "t.ir:4:8: error: add takes 2 inputs, found 7");
  EXPECT_ERROR(LINE4("  %2 = add %0, : f32[N,4]"), "t.ir:4:16: error: expected a node (%N) after ','");
  // Attributes.
  EXPECT_ERROR(LINE4("  %2 = conv2d %0, %1 {strid=1} : f32[N,4]"),
               "t.ir:4:23: error: unknown attribute 'strid' for conv2d");
  EXPECT_ERROR_HINT(LINE4("  %2 = conv2d %0, %1 {stride_x=1} : f32[N,4]"),
                    "t.ir:4:23: error: unknown attribute 'stride_x' for conv2d", "did you mean 'stride_h'?");
  EXPECT_ERROR(LINE4("  %2 = add %0, %1 {ta=1} : f32[N,4]"), "t.ir:4:20: error: unknown attribute 'ta' for add");
  EXPECT_ERROR(LINE4("  %2 = matmul %0, %1 {ta=1.5} : f32[N,4]"),
               "t.ir:4:26: error: attribute 'ta' takes an integer, found '1.5'");
  EXPECT_ERROR(LINE4("  %2 = matmul %0, %1 {ta=0, ta=1} : f32[N,4]"), "t.ir:4:29: error: duplicate attribute 'ta'");
  EXPECT_ERROR(LINE4("  %2 = matmul %0, %1 {ta=9223372036854775808} : f32[N,4]"),
               "t.ir:4:26: error: integer '9223372036854775808' is out of range");
  EXPECT_ERROR(LINE4("  %2 = matmul %0, %1 {ta 1} : f32[N,4]"), "t.ir:4:26: error: expected '='");
  EXPECT_ERROR(LINE4("  %2 = matmul %0, %1 {ta=1 tb=1} : f32[N,4]"), "t.ir:4:28: error: expected ',' or '}'");
  EXPECT_ERROR(LINE4("  %2 = const {value=x} : f32[]"), "t.ir:4:21: error: expected a number");
  // Types.
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4 @1:1"), "t.ir:4:26: error: expected ']'");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4"), "t.ir:4:25: error: expected ']'");
  EXPECT_ERROR_HINT(LINE4("  %2 = relu %0 : f16[N,4]"), "t.ir:4:18: error: unknown type 'f16'",
                    "the types are f32 and i32");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[1,2,3,4,5,6,7]"), "t.ir:4:34: error: too many dimensions (at most 6)");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[99999999999999999999]"),
               "t.ir:4:22: error: integer '99999999999999999999' is out of range");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[M]"), "t.ir:4:22: error: expected a dimension (a number or N)");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,]"), "t.ir:4:24: error: expected a dimension (a number or N)");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[2.5]"), "t.ir:4:22: error: expected a dimension (a number or N)");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[1e]"), "t.ir:4:22: error: bad number '1e'");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[12abc]"), "t.ir:4:22: error: bad number '12abc'");
  EXPECT_ERROR(LINE4("  %2 = relu %0"), "t.ir:4:15: error: expected ':'");
  EXPECT_ERROR(LINE4("  %2 = relu %0 :"), "t.ir:4:17: error: expected a type (f32[...], i32[...] or ?)");
  // Inits.
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init gaussian(0, 1) : f32[4]"),
               "t.ir:4:23: error: unknown init 'gaussian'");
  EXPECT_ERROR_HINT(LINE4("  %2 = param \"v\" init unifrom(0, 1) : f32[4]"),
                    "t.ir:4:23: error: unknown init 'unifrom'", "did you mean 'uniform'?");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init normal(0) : f32[4]"), "t.ir:4:23: error: init normal takes 2 arguments");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init normal(0, 1, 2) : f32[4]"),
               "t.ir:4:23: error: init normal takes 2 arguments");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init constant(1, 2) : f32[4]"),
               "t.ir:4:23: error: init constant takes 1 argument");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init zeros() : f32[4]"), "t.ir:4:23: error: init zeros takes no arguments");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init uniform 0, 1 : f32[4]"), "t.ir:4:31: error: expected '('");
  EXPECT_ERROR(LINE4("  %2 = param \"v\" init : f32[4]"),
               "t.ir:4:23: error: expected an init kind (zeros, ones, constant, normal or uniform)");
  EXPECT_ERROR(LINE4("  %2 = relu %0 init zeros : f32[N,4]"),
               "t.ir:4:16: error: only param and buffer nodes have an init");
  // Output and loss lines.
  EXPECT_ERROR(HEAD "  output %1\n  output %0\n}\n", "t.ir:5:3: error: a second output named \"output\"");
  EXPECT_ERROR(HEAD "  output %1 \"a\"\n  output %0 \"a\"\n}\n", "t.ir:5:3: error: a second output named \"a\"");
  EXPECT_ERROR(HEAD "  loss %1\n  output %0\n  loss %1\n}\n", "t.ir:6:3: error: duplicate loss line (the first is at 4:3)");
  EXPECT_ERROR(HEAD "  output\n}\n", "t.ir:4:9: error: expected a node (%N)");
  // Strings.
  EXPECT_ERROR(LINE4("  %2 = param \"v : f32[4]"), "t.ir:4:14: error: unterminated string");
  EXPECT_ERROR(LINE4("  %2 = param \"v\\"), "t.ir:4:14: error: unterminated string");
  EXPECT_ERROR(LINE4("  %2 = param \"a\\qb\" : f32[4]"), "t.ir:4:16: error: unknown escape sequence '\\q'");
  EXPECT_ERROR(LINE4("  %2 = param \"a\\0\" : f32[4]"), "t.ir:4:16: error: a string cannot hold a NUL byte");
  EXPECT_ERROR(LINE4("  %2 = param \"a\\x\" : f32[4]"), "t.ir:4:16: error: \\x needs hexadecimal digits");
  EXPECT_ERROR(LINE4("  %2 = param \"\\777\" : f32[4]"), "t.ir:4:15: error: octal escape out of range");
  EXPECT_ERROR(LINE4("  %2 = param \"a\tb\" : f32[4]"),
               "t.ir:4:16: error: control character in a string; write it as an escape");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] scope"), "t.ir:4:32: error: expected a string after 'scope'");
  // Locations.
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] @0:1"), "t.ir:4:28: error: line number out of range");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] @3:-1"), "t.ir:4:30: error: column number out of range");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] @3:99999999999"), "t.ir:4:30: error: column number out of range");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] @3"), "t.ir:4:29: error: expected ':'");
  // Structure and stray characters.
  EXPECT_ERROR("", "t.ir:1:1: error: expected 'graph'");
  EXPECT_ERROR("  # only a comment\n", "t.ir:1:1: error: expected 'graph'");
  EXPECT_ERROR("grph t {\n}\n", "t.ir:1:1: error: expected 'graph'");
  EXPECT_ERROR("graph {\n}\n", "t.ir:1:7: error: expected the graph's name");
  EXPECT_ERROR("graph t\n  %0 = input \"x\" : f32[N]\n}\n", "t.ir:1:8: error: expected '{'");
  EXPECT_ERROR("graph t { %0 = input \"x\" : f32[N]\n}\n", "t.ir:1:11: error: expected the end of the line, found '%0'");
  EXPECT_ERROR("graph t {\n  %0 = input \"x\" : f32[N,4]\n", "t.ir:2:28: error: expected '}' at the end of the graph");
  EXPECT_ERROR("graph t {\n}\nxyz\n", "t.ir:3:1: error: unexpected text after the graph");
  EXPECT_ERROR(LINE4("  %2 = relu %0 : f32[N,4] junk"), "t.ir:4:27: error: expected the end of the line, found 'junk'");
  EXPECT_ERROR(LINE4("  %2 = relu $0"), "t.ir:4:13: error: unexpected character '$'");
  EXPECT_ERROR(LINE4("  %2 = relu \x01"), "t.ir:4:13: error: unexpected byte 0x01");
  EXPECT_ERROR(LINE4("  %2 = relu %x"), "t.ir:4:13: error: expected a node number after '%'");
  EXPECT_ERROR(LINE4("  %2 = relu %99999999999"), "t.ir:4:13: error: node number too large");
  EXPECT_ERROR(LINE4("  %2 relu %0"), "t.ir:4:6: error: expected '='");
  EXPECT_ERROR(LINE4("  %2 = %0"), "t.ir:4:8: error: expected an op name");
  EXPECT_ERROR(LINE4("  foo"), "t.ir:4:3: error: expected a node, 'output', 'loss' or '}'");
  EXPECT_ERROR(LINE4("  %2 = const {value=1} : f32[] \"name\""),
               "t.ir:4:32: error: expected the end of the line, found '\"name\"'");
}

// An error message quotes the line and underlines the token; a NUL byte
// inside the text is an error, not its end.
static void test_parse_error_display(void) {
  Arena *a = arena_new();
  char *msgs;
  int nerr;
  CHECK(!parse_text(a, LINE4("  %2 = matmull %0, %1 : f32[N,4]"), &msgs, &nerr));
  CHECK_STR("t.ir:4:8: error: unknown op 'matmull'\n"
            "    %2 = matmull %0, %1 : f32[N,4]\n"
            "         ^~~~~~~\n"
            "  hint: did you mean 'matmul'?\n", msgs);
  free(msgs);
  static const char with_nul[] = "graph t {\n  %0 = input \"x\" : f32[N]\0\n}\n";
  CHECK(!parse_len(a, with_nul, sizeof with_nul - 1, &msgs, &nerr));
  CHECK_HAS(msgs, "t.ir:2:26: error: unexpected NUL byte\n");
  free(msgs);
  // A very long op name is quoted only in part.
  StrBuf b = {0};
  sb_puts(&b, HEAD "  %2 = ");
  for (int i = 0; i < 100000; i++)
    sb_putc(&b, 'q');
  sb_puts(&b, " %0 : f32[N]\n}\n");
  CHECK(!parse_text(a, b.data, &msgs, &nerr));
  CHECK_HAS(msgs, "t.ir:4:8: error: unknown op 'qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'\n");
  free(msgs);
  sb_free(&b);
  arena_free(a);
}

// Large inputs: a long chain of nodes and a long name parse back.
static void test_parse_large(void) {
  Arena *a = arena_new();
  StrBuf b = {0};
  sb_puts(&b, "graph chain {\n  %0 = input \"");
  for (int i = 0; i < 1 << 20; i++)
    sb_putc(&b, 'a' + i % 26);
  sb_puts(&b, "\" : f32[N,8]\n");
  for (int i = 1; i < 20000; i++)
    sb_printf(&b, "  %%%d = tanh %%%d : f32[N,8] @%d:5\n", i, i - 1, i);
  sb_puts(&b, "  output %19999\n}\n");
  char *msgs;
  int nerr;
  IrGraph *g = parse_text(a, b.data, &msgs, &nerr);
  CHECK(g && g->nnodes == 20000 && strlen(g->nodes[0]->name) == 1 << 20);
  if (g) {
    CHECK(g->output == g->nodes[19999] && g->nodes[19999]->src[0] == g->nodes[19998]);
    char *text = print_graph(g);
    CHECK(strcmp(text, b.data) == 0);
    free(text);
  }
  free(msgs);
  sb_free(&b);
  arena_free(a);
}

// A graph that parses must survive the rest of the library: verify, FLOPs,
// dot, and a second print -> parse -> print that changes nothing.
static void exercise(IrGraph *g) {
  Capture c;
  cap_open(&c);
  ir_verify(g, &c.d);
  free(cap_close(&c));
  for (int i = 0; i < g->nnodes; i++) {
    ir_flops(g->nodes[i]);
    ir_numel(g->nodes[i], 64);
  }
  free(print_dot(g));
  Arena *a = arena_new();
  char *text = print_graph(g), *msgs;
  int nerr;
  IrGraph *back = parse_text(a, text, &msgs, &nerr);
  if (!back) {
    FAIL("a parsed graph does not parse back after printing:\n%s%s", msgs, text);
  } else {
    char *again = print_graph(back);
    CHECK_STR(text, again);
    CHECK(same_graph(g, back));
    free(again);
  }
  free(msgs);
  free(text);
  arena_free(a);
}

static const char alphabet[] = "%\"\\{}[](),:=@?# \n\t-+.eE0123456789Nnaif_x\001\377";

// Replaces, deletes or inserts one byte of buf[0..len) (buf has room for
// one more) and returns the new length.
static size_t mutate(Rng *rng, char *buf, size_t len) {
  size_t pos = rng_below(rng, len);
  char c = rng_below(rng, 8) == 0 ? (char)rng_below(rng, 256)
                                  : alphabet[rng_below(rng, sizeof alphabet - 1)];
  switch (rng_below(rng, 4)) {
  case 0:
    memmove(buf + pos, buf + pos + 1, len - pos);
    return len - 1;
  case 1:
    memmove(buf + pos + 1, buf + pos, len - pos + 1);
    buf[pos] = c;
    return len + 1;
  default:
    buf[pos] = c;
    return len;
  }
}

// Every prefix of a dump, and dumps with bytes changed at random: the
// parser never crashes, and a prefix without the closing brace fails.
static void test_parse_fuzz(void) {
  Arena *keep = arena_new();
  char *texts[] = {print_graph(build_cnn(keep)), print_graph(build_misc(keep)), print_graph(build_train(keep))};
  arena_free(keep);
  for (int t = 0; t < countof(texts); t++) {
    size_t len = strlen(texts[t]);
    size_t close = strrchr(texts[t], '}') - texts[t];
    char *buf = xmalloc(len + 1);
    for (size_t n = 0; n <= len; n++) {
      memcpy(buf, texts[t], n);
      buf[n] = 0;
      Arena *a = arena_new();
      char *msgs;
      int nerr;
      IrGraph *g = parse_text(a, buf, &msgs, &nerr);
      if ((g != NULL) != (n > close))
        FAIL("prefix of %zu bytes: %s\n%s", n, g ? "parsed" : "failed", msgs);
      free(msgs);
      arena_free(a);
    }
    free(buf);
  }
  Rng rng;
  rng_seed(&rng, 42, 7);
  int parsed = 0;
  for (int iter = 0; iter < 4000; iter++) {
    const char *src = texts[iter % countof(texts)];
    size_t len = strlen(src);
    char *buf = xmalloc(len + 8);
    memcpy(buf, src, len + 1);
    int nmut = 1 + rng_below(&rng, 3);
    for (int m = 0; m < nmut; m++)
      len = mutate(&rng, buf, len);
    Arena *a = arena_new();
    char *msgs;
    int nerr;
    IrGraph *g = parse_len(a, buf, len, &msgs, &nerr);
    if (g) {
      parsed++;
      exercise(g);
    } else if (nerr != 1) {
      FAIL("a failed parse reported %d errors:\n%s", nerr, msgs);
    }
    free(msgs);
    arena_free(a);
    free(buf);
  }
  CHECK(parsed > 0);
  // Random text from the same alphabet, with and without a header.
  for (int iter = 0; iter < 2000; iter++) {
    char buf[400];
    int n = iter % 2 ? snprintf(buf, sizeof buf, "graph g {\n") : 0;
    int extra = rng_below(&rng, 300);
    for (int i = 0; i < extra; i++)
      buf[n++] = alphabet[rng_below(&rng, sizeof alphabet - 1)];
    buf[n] = 0;
    Arena *a = arena_new();
    char *msgs;
    int nerr;
    IrGraph *g = parse_len(a, buf, n, &msgs, &nerr);
    if (g)
      exercise(g);
    free(msgs);
    arena_free(a);
  }
  for (int t = 0; t < countof(texts); t++)
    free(texts[t]);
}

//
// The verifier
//

static char *verify_msgs(const IrGraph *g, int *nerr, bool *ok) {
  Capture c;
  cap_open(&c);
  *ok = ir_verify(g, &c.d);
  *nerr = c.d.nerrors;
  char *msgs = cap_close(&c);
  return msgs;
}

static void test_verify_good(void) {
  Arena *a = arena_new();
  IrGraph *gs[] = {build_mlp(a), build_cnn(a), build_misc(a), build_train(a), ir_graph_new(a, "empty")};
  for (int i = 0; i < countof(gs); i++) {
    int nerr;
    bool ok;
    char *msgs = verify_msgs(gs[i], &nerr, &ok);
    CHECK(ok);
    CHECK_INT(0, nerr);
    CHECK_STR("", msgs ? msgs : "");
    free(msgs);
  }
  arena_free(a);
}

// Breaks a fresh mlp graph with one mutation and checks the report: nerr
// errors, the first line of which is want.
typedef void Breaker(IrGraph *g, IrGraph *other);

static void expect_violation(int line, int icase, Breaker *brk, int nerr_want, const char *want) {
  Arena *a = arena_new();
  IrGraph *g = build_mlp(a), *other = build_mlp(a);
  brk(g, other);
  int nerr;
  bool ok;
  char *msgs = verify_msgs(g, &nerr, &ok);
  if (ok || nerr != nerr_want || !msgs || strncmp(msgs, want, strlen(want)) != 0 ||
      msgs[strlen(want)] != '\n') {
    t_record(__FILE__, line, false, "case %d: expected %d error(s), the first\n  %s\ngot %d:\n%s\n", icase,
             nerr_want, want, nerr, msgs ? msgs : "");
  }
  free(msgs);
  arena_free(a);
}

static void break_id(IrGraph *g, IrGraph *o) { (void)o; g->nodes[12]->id = 5; }
static void break_null_src(IrGraph *g, IrGraph *o) { (void)o; g->nodes[6]->src[1] = NULL; }
static void break_extra_src(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->src[1] = g->nodes[0]; }
static void break_foreign_src(IrGraph *g, IrGraph *o) { g->nodes[7]->src[0] = o->nodes[6]; }
static void break_order(IrGraph *g, IrGraph *o) { (void)o; g->nodes[5]->src[0] = g->nodes[7]; }
static void break_self(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->src[0] = g->nodes[7]; }
static void break_arity(IrGraph *g, IrGraph *o) { (void)o; g->nodes[6]->nsrc = 1; g->nodes[6]->src[1] = NULL; }
static void break_nsrc(IrGraph *g, IrGraph *o) { (void)o; g->nodes[6]->nsrc = IR_MAX_SRC + 1; }
static void break_no_name(IrGraph *g, IrGraph *o) { (void)o; g->nodes[3]->name = NULL; }
static void break_empty_name(IrGraph *g, IrGraph *o) { (void)o; g->nodes[0]->name = ""; }
static void break_dup_name(IrGraph *g, IrGraph *o) { (void)o; g->nodes[4]->name = "linear_1.weight"; }
static void break_dup_kind(IrGraph *g, IrGraph *o) { (void)o; g->nodes[1]->name = "image"; }
static void break_unknown(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->ndim = -1; }
static void break_ndim(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->ndim = 7; }
static void break_dim0(IrGraph *g, IrGraph *o) { (void)o; g->nodes[3]->shape[1] = 0; }
static void break_dimneg(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->shape[0] = -5; }
static void break_dtype(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->dtype = (DType)9; }
static void break_op(IrGraph *g, IrGraph *o) { (void)o; g->nodes[7]->op = (IrOp)99; }
static void break_output(IrGraph *g, IrGraph *o) { g->output = o->nodes[2]; }
static void break_loss_graph(IrGraph *g, IrGraph *o) { g->loss = o->nodes[12]; }
static void break_loss_op(IrGraph *g, IrGraph *o) { (void)o; g->loss = g->nodes[11]; }
static void break_loss_type(IrGraph *g, IrGraph *o) { (void)o; g->loss->ndim = 1; g->loss->shape[0] = N; }
static void break_loss_dtype(IrGraph *g, IrGraph *o) { (void)o; g->loss->dtype = DT_I32; }
static void break_null_node(IrGraph *g, IrGraph *o) { (void)o; g->nodes[12] = NULL; g->loss = NULL; }

static void test_verify_bad(void) {
  static const struct { Breaker *brk; int nerr; const char *want; } cases[] = {
    {break_id, 2, "models/mlp.nn:10:11: error: ir: %5 (cross_entropy): id does not match its position 12"},
    {break_null_src, 1, "models/mlp.nn:6:25: error: ir: %6 (add): input 1 is NULL"},
    {break_extra_src, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): src[1] is set, but the node has only 1 inputs"},
    {break_foreign_src, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): input 0 (%6) is not a node of this graph"},
    {break_order, 1, "models/mlp.nn:6:25: error: ir: %5 (matmul): input 0 (%7) does not come before its user"},
    {break_self, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): input 0 (%7) does not come before its user"},
    {break_arity, 1, "models/mlp.nn:6:25: error: ir: %6 (add): has 1 inputs; add takes 2"},
    {break_nsrc, 1, "models/mlp.nn:6:25: error: ir: %6 (add): nsrc is 1025, outside 0..1024"},
    {break_no_name, 1, "models/mlp.nn:6:25: error: ir: %3 (param): param nodes need a name"},
    {break_empty_name, 1, "models/mlp.nn:3:12: error: ir: %0 (input): input nodes need a name"},
    {break_dup_name, 1, "models/mlp.nn:6:25: error: ir: %4 (param): name \"linear_1.weight\" is already used by %3"},
    {break_dup_kind, 1, "models/mlp.nn:4:12: error: ir: %1 (target): name \"image\" is already used by %0"},
    {break_unknown, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): shape is not known (ndim -1)"},
    {break_ndim, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): shape is not known (ndim 7)"},
    {break_dim0, 1, "models/mlp.nn:6:25: error: ir: %3 (param): dimension 1 is 0"},
    {break_dimneg, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): dimension 0 is -5"},
    {break_dtype, 1, "models/mlp.nn:6:40: error: ir: %7 (relu): bad dtype 9"},
    {break_op, 1, "models/mlp.nn:6:40: error: ir: %7 (?): op 99 is not an op"},
    {break_output, 1, "models/mlp.nn:6:14: error: ir: %2 (reshape): the output is not a node of this graph"},
    {break_loss_graph, 1, "models/mlp.nn:10:11: error: ir: %12 (cross_entropy): the loss is not a node of this graph"},
    {break_loss_op, 2, "models/mlp.nn:8:14: error: ir: %11 (add): the loss must come from a loss op, or be a weighted sum of loss ops"},
    {break_loss_type, 1, "models/mlp.nn:10:11: error: ir: %12 (cross_entropy): the loss must be f32[], not f32[N]"},
    {break_loss_dtype, 1, "models/mlp.nn:10:11: error: ir: %12 (cross_entropy): the loss must be f32[], not i32[]"},
    {break_null_node, 1, "nnc: error: ir: node 12 is NULL"},
  };
  for (int i = 0; i < countof(cases); i++)
    expect_violation(__LINE__, i, cases[i].brk, cases[i].nerr, cases[i].want);
  // Both reports of the id case, and the second of the loss-op case.
  Arena *a = arena_new();
  IrGraph *g = build_mlp(a);
  break_id(g, NULL);
  int nerr;
  bool ok;
  char *msgs = verify_msgs(g, &nerr, &ok);
  CHECK_HAS(msgs, "ir: %5 (cross_entropy): the loss is not a node of this graph\n");
  free(msgs);
  g = build_mlp(a);
  break_loss_op(g, NULL);
  msgs = verify_msgs(g, &nerr, &ok);
  CHECK_HAS(msgs, "ir: %11 (add): the loss must be f32[], not f32[N,10]\n");
  free(msgs);
  // Constants need no names, and may share them.
  g = build_mlp(a);
  leaf(g, IR_CONST, "c", NULL, 0, (SrcLoc){0});
  leaf(g, IR_CONST, "c", NULL, 0, (SrcLoc){0});
  leaf(g, IR_CONST, NULL, NULL, 0, (SrcLoc){0});
  msgs = verify_msgs(g, &nerr, &ok);
  CHECK(ok && nerr == 0);
  free(msgs);
  arena_free(a);
}

//
// The dot printer
//

static int count(const char *s, const char *sub) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
    n++;
  return n;
}

static void test_dot(void) {
  Arena *a = arena_new();
  IrGraph *g = build_mlp(a);
  char *dot = print_dot(g);
  CHECK(strncmp(dot, "digraph \"mlp\" {\n", 16) == 0);
  CHECK_HAS(dot, "  n0 [label=\"%0 input\\nimage\\nf32[N,28,28]\", shape=ellipse, style=filled, fillcolor=lightblue];\n");
  CHECK_HAS(dot, "  n3 [label=\"%3 param\\nlinear_1.weight\\nf32[512,784]\", shape=ellipse, style=filled, fillcolor=lightyellow];\n");
  CHECK_HAS(dot, "  n5 [label=\"%5 matmul\\nlinear_1\\nf32[N,512]\"];\n");
  CHECK_HAS(dot, "  n11 [label=\"%11 add\\nlinear_2\\nf32[N,10]\", penwidth=2];\n");
  CHECK_HAS(dot, "  n12 [label=\"%12 cross_entropy\\nf32[]\", penwidth=2];\n");
  CHECK_HAS(dot, "  n2 -> n5;\n");
  CHECK_HAS(dot, "  n3 -> n5;\n");
  CHECK_HAS(dot, "  n11 -> n12;\n");
  CHECK_HAS(dot, "  n1 -> n12;\n");
  CHECK_HAS(dot, "  n11 -> output;\n");
  CHECK_HAS(dot, "  n12 -> loss;\n");
  int edges = 2;
  for (int i = 0; i < g->nnodes; i++)
    edges += g->nodes[i]->nsrc;
  CHECK_INT(edges, count(dot, " -> "));
  CHECK(strcmp(dot + strlen(dot) - 2, "}\n") == 0);
  free(dot);
  dot = print_dot(build_misc(a));
  CHECK(strncmp(dot, "digraph \"my model\" {\n", 21) == 0);
  CHECK_HAS(dot, "  n0 [label=\"%0 input\\nin\\\"put\\\\1\\n   \303\251\\nf32[N,4]\"");
  CHECK_HAS(dot, "[label=\"%3 const\\nconsts\\\\\\\"\\nf32[]\", shape=ellipse, style=filled, fillcolor=lightgrey];\n");
  CHECK_HAS(dot, "fillcolor=khaki");
  free(dot);
  g = build_train(a);
  dot = print_dot(g);
  CHECK(strncmp(dot, "digraph \"multitask\" {\n", 22) == 0);
  CHECK_HAS(dot, "  n26 [label=\"%26 log_softmax\\nlog_softmax_1\\nf32[N,10]\", penwidth=2];\n");
  CHECK_HAS(dot, "  n27 [label=\"%27 nll\\nloss\\nf32[]\", penwidth=2];\n");
  CHECK_HAS(dot, "  n42 [label=\"%42 nll_grad\\nloss\\nf32[N,10]\"];\n");
  CHECK_HAS(dot, "  n66 [label=\"%66 global_avgpool_grad\\nglobal_avgpool_1\\nf32[N,16,4,4]\"];\n");
  CHECK_HAS(dot, "  n79 [label=\"%79 buffer\\nconv2d_1.weight.exp_avg\\nf32[8,3,3,3]\", shape=ellipse, style=filled, fillcolor=khaki];\n");
  CHECK_HAS(dot, "  n81 [label=\"%81 adam_step\\nconv2d_1\\nf32[8,3,3,3]\"];\n");
  CHECK_HAS(dot, "  n105 [label=\"%105 adagrad_step\\nlinear_5\\nf32[10,16]\"];\n");
  CHECK_HAS(dot, "  n5 -> n81;\n  n77 -> n81;\n  n79 -> n81;\n  n80 -> n81;\n");
  CHECK_HAS(dot, "  n73 -> n74;\n  n7 -> n74;\n  n8 -> n74;\n");
  CHECK_HAS(dot, "  n26 -> output;\n");
  CHECK_HAS(dot, "  n27 -> loss;\n");
  edges = 2;
  for (int i = 0; i < g->nnodes; i++)
    edges += g->nodes[i]->nsrc;
  CHECK_INT(edges, count(dot, " -> "));
  free(dot);
  arena_free(a);
}

//
// Golden files
//

static const char *golden_dir;

// dir/name must parse, verify and print back byte for byte, and equal the
// graph that build() makes.
static void check_golden(const char *name, IrGraph *(*build)(Arena *)) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", golden_dir, name);
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    FAIL("cannot read %s\n", path);
    return;
  }
  Arena *a = arena_new();
  SrcFile file = {.name = path, .text = text, .len = len};
  Capture c;
  cap_open(&c);
  IrGraph *g = ir_parse(&file, a, &c.d);
  bool ok = g && ir_verify(g, &c.d);
  char *msgs = cap_close(&c);
  if (!ok) {
    FAIL("%s does not parse and verify:\n%s", path, msgs);
  } else {
    char *again = print_graph(g);
    if (strcmp(text, again) != 0)
      FAIL("%s does not print back the same:\n%s", path, again);
    char *built = print_graph(build(a));
    if (strcmp(text, built) != 0)
      FAIL("%s differs from the graph built by hand, which prints as:\n%s", path, built);
    CHECK(same_graph(g, build(a)));
    free(again);
    free(built);
  }
  free(msgs);
  free(text);
  arena_free(a);
}

static void test_goldens(void) {
  check_golden("mlp.ir", build_mlp);
  check_golden("cnn.ir", build_cnn);
  check_golden("misc.ir", build_misc);
  check_golden("train.ir", build_train);
  // Together the golden graphs use every op in ops.def.
  Arena *a = arena_new();
  IrGraph *gs[] = {build_mlp(a), build_cnn(a), build_misc(a), build_train(a)};
  bool used[IR_NUM_OPS] = {0};
  for (int i = 0; i < countof(gs); i++)
    for (int j = 0; j < gs[i]->nnodes; j++)
      used[gs[i]->nodes[j]->op] = true;
  for (int op = 0; op < IR_NUM_OPS; op++)
    if (!used[op])
      FAIL("no golden graph uses %s; add it to build_misc() and misc.ir (a forward op) or to "
           "build_train() and train.ir (a gradient or optimizer op)\n", ir_op_info(op)->mnem);
  arena_free(a);
}

// The directory of this source file, where the golden files live.
static const char *default_dir(void) {
  static char dir[4096];
  snprintf(dir, sizeof dir, "%s", __FILE__);
  char *slash = strrchr(dir, '/');
  if (!slash)
    return ".";
  *slash = 0;
  return dir;
}

int main(int argc, char **argv) {
  golden_dir = argc > 1 ? argv[1] : default_dir();
  test_op_table();
  test_builders();
  test_counts_and_types();
  test_flops();
  test_print_mlp();
  test_roundtrip();
  test_clone();
  test_verify_program();
  test_misc_text();
  test_floats();
  test_parse_accepts();
  test_parse_errors();
  test_parse_error_display();
  test_parse_large();
  test_parse_fuzz();
  test_verify_good();
  test_verify_bad();
  test_dot();
  test_goldens();
  return t_finish("test_ir");
}
