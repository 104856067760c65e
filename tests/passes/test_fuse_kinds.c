// test_fuse_kinds.c: pass_fuse (through pass_compile) lowers each node as its op kind (ops.def)
// says, on graphs built by hand, for the cases no .nn model reaches: a
// constant that a GEMM reads is filled by a loop of its own, and the
// elementwise gradients (relu_grad, ...) fuse into loops like the forward
// ops while softmax_grad stays a library kernel; and the shape pass refuses
// activations' attributes out of range.
#include "../test.h"
#include "passes.h"

#include <string.h>

static const int64_t x_shape[] = {IR_N, 4};

// A forward-only model around graph g with output out, shapes inferred.
static Model model_of(IrGraph *g, IrNode *out) {
  ir_add_output(g, out, "output");
  Diag d;
  diag_init(&d, stderr);
  CHECK(pass_shapes(g, &d));
  diag_free(&d);
  return (Model){.g = g, .input = g->nodes[0], .inputs = &g->nodes[0], .ninputs = 1};
}

// x[N, 4] @ const[4, 3]: the constant is a buffer that a loop fills before
// the GEMM reads it.
static void test_const_read_by_gemm(void) {
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, "const_gemm");
  SrcLoc loc = {0};
  IrNode *x = ir_leaf(g, IR_INPUT, "x", DT_F32, 2, x_shape, loc);
  IrNode *c = ir_leaf(g, IR_CONST, NULL, DT_F32, 2, (int64_t[]){4, 3}, loc);
  c->attr.f[0] = 2;
  Model m = model_of(g, ir_binary(g, IR_MATMUL, x, c, loc));
  Compilation *cp = pass_compile(&m, ENTRY_FORWARD, &(CompileOptions){.max_batch = 4, .fuse = true});
  const KProgram *p = cp->prog;   // over a copy of g, with g's ids
  CHECK_INT(2, p->nkernels);
  if (p->nkernels == 2) {
    CHECK_INT(KN_LOOP, p->kernels[0]->kind);
    const Kernel *k = p->kernels[0];
    CHECK_INT(1, k->nstores);
    CHECK(k->nstores == 1 && k->bufs[k->stores[0].buf]->id == c->id);
    CHECK_INT(KN_GEMM, p->kernels[1]->kind);
  }
  CHECK(p->buf[c->id].bytes >= 4 * 3 * 4);
  pass_compilation_free(cp);
  arena_free(a);
}

// relu_grad(neg(x), x) is one loop, and so are the activations'
// gradients; softmax_grad(neg(x), x) is a loop for neg(x) and a library
// kernel.
static void test_gradients(void) {
  IrOp ops[] = {IR_RELU_GRAD, IR_SIGMOID_GRAD, IR_TANH_GRAD, IR_SOFTMAX_GRAD, IR_GELU_GRAD, IR_LEAKY_RELU_GRAD,
                IR_SILU_GRAD, IR_ELU_GRAD, IR_SOFTPLUS_GRAD, IR_SQRT_GRAD, IR_ABS_GRAD, IR_CLAMP_GRAD};
  for (int i = 0; i < countof(ops); i++) {
    Arena *a = arena_new();
    IrGraph *g = ir_graph_new(a, "grad");
    SrcLoc loc = {0};
    IrNode *x = ir_leaf(g, IR_INPUT, "x", DT_F32, 2, x_shape, loc);
    IrNode *out = ir_binary(g, ops[i], ir_unary(g, IR_NEG, x, loc), x, loc);
    if (ops[i] == IR_SOFTMAX_GRAD)
      out->attr.i[0] = 1;
    if (ops[i] == IR_SOFTPLUS_GRAD)
      out->attr.f[0] = 1;   // beta
    if (ops[i] == IR_CLAMP_GRAD)
      out->attr = (IrAttr){.i = {1, 1}, .f = {-1, 1}};
    Model m = model_of(g, out);
    Compilation *cp = pass_compile(&m, ENTRY_FORWARD, &(CompileOptions){.max_batch = 4, .fuse = true});
    const KProgram *p = cp->prog;
    bool lib = ops[i] == IR_SOFTMAX_GRAD;
    CHECK_INT(lib ? 2 : 1, p->nkernels);
    CHECK_INT(lib ? KN_LIB : KN_LOOP, p->kernels[p->nkernels - 1]->kind);
    CHECK_INT(lib ? 1 : 2, p->kernels[0]->nnodes);
    pass_compilation_free(cp);
    arena_free(a);
  }
}

// The activations' attributes as an edited IR text could give them: the
// shape pass refuses what the language would not accept.
static void test_act_attrs(void) {
  static const struct { IrOp op; IrAttr attr; const char *want; } cases[] = {
      {IR_SOFTPLUS, {.f = {0, 20}}, "softplus: beta must be positive and finite"},
      {IR_SOFTPLUS_GRAD, {.f = {-1, 20}}, "softplus_grad: beta must be positive and finite"},
      {IR_CLAMP, {.i = {0, 0}}, "clamp: has neither a min nor a max"},
      {IR_CLAMP, {.i = {1, 1}, .f = {2, 1}}, "clamp: min must not be greater than max"},
      {IR_CLAMP_GRAD, {.i = {1, 0}, .f = {NAN, 0}}, "clamp_grad: min must not be greater than max"},
      {IR_LEAKY_RELU, {.f = {INFINITY}}, "leaky_relu: the slope must be finite"},
      {IR_ELU_GRAD, {.f = {NAN}}, "elu_grad: the alpha must be finite"},
  };
  for (int i = 0; i < countof(cases); i++) {
    Arena *a = arena_new();
    IrGraph *g = ir_graph_new(a, "attrs");
    SrcLoc loc = {0};
    IrNode *x = ir_leaf(g, IR_INPUT, "x", DT_F32, 2, x_shape, loc);
    IrNode *n = ir_op_info(cases[i].op)->min_in == 2 ? ir_binary(g, cases[i].op, x, x, loc)
                                                     : ir_unary(g, cases[i].op, x, loc);
    n->attr = cases[i].attr;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    Diag d;
    diag_init(&d, f);
    CHECK(!pass_shapes(g, &d), "%s: accepted", cases[i].want);
    diag_free(&d);
    fclose(f);
    CHECK_HAS(text, cases[i].want);
    free(text);
    arena_free(a);
  }
}

// relu_grad(maxpool_grad(g, y), y), y = relu(x): pass_simplify moves the
// mask to the pooled side (a relu_grad of the pooled shape) where the
// pooling's gradient has that one reader; not where a second, identical
// pooling gradient merged into it has another reader too (other: then
// neg(that gradient) is added to the output).
static bool pooled_mask(bool other) {
  Arena *a = arena_new();
  IrGraph *g = ir_graph_new(a, "pool_relu");
  SrcLoc loc = {0};
  IrNode *x = ir_leaf(g, IR_INPUT, "x", DT_F32, 4, (int64_t[]){IR_N, 1, 4, 4}, loc);
  IrNode *y = ir_unary(g, IR_RELU, x, loc);
  IrNode *f = ir_unary(g, IR_MAXPOOL, y, loc);
  const int64_t pool[8] = {2, 2, 2, 2, 0, 0, 1, 1};
  memcpy(f->attr.i, pool, sizeof pool);
  IrNode *gp = ir_unary(g, IR_NEG, f, loc);   // a gradient of the pooled shape
  IrNode *m1 = ir_binary(g, IR_MAXPOOL_GRAD, gp, y, loc), *m2 = ir_binary(g, IR_MAXPOOL_GRAD, gp, y, loc);
  memcpy(m1->attr.i, pool, sizeof pool);
  memcpy(m2->attr.i, pool, sizeof pool);
  IrNode *out = ir_binary(g, IR_RELU_GRAD, other ? m2 : m1, y, loc);
  if (other)
    out = ir_binary(g, IR_ADD, out, ir_unary(g, IR_NEG, m1, loc), loc);
  Model m = model_of(g, out);
  Compilation *cp = pass_compile(&m, ENTRY_FORWARD, &(CompileOptions){.max_batch = 4, .fuse = true});
  bool moved = false;
  const IrGraph *sg = cp->model->g;
  for (int i = 0; i < sg->nnodes; i++)
    moved |= sg->nodes[i]->op == IR_RELU_GRAD && sg->nodes[i]->shape[2] == 2;
  pass_compilation_free(cp);
  arena_free(a);
  return moved;
}

int main(void) {
  CHECK(pooled_mask(false));
  CHECK(!pooled_mask(true));
  test_const_read_by_gemm();
  test_gradients();
  test_act_attrs();
  return t_finish("test_fuse_kinds");
}
