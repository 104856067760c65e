// test_codegen.c: the LLVM backend (codegen/) on kernel programs built by
// hand. Each program runs twice over the same random memory: compiled by
// cg_compile, and through a straightforward C evaluation of its kernel IR
// (interp below: one index point at a time, the ref kernels' formulas,
// tanhf and friends from libm). The two arenas and state blocks must
// agree everywhere, so a write outside a kernel's rows shows up too.
// Some tests also check results against the math written out directly
// (bias + relu, sums in double, GEMM in double, a library call's effect).
//
// Also: every KInstrOp, sums over the batch and over an inner dimension,
// a parallel kernel run through a callback that splits the range in two,
// GEMMs with every ta/tb and batched M, N or K plus epilogues, a library
// kernel, the tick callback, B below max_batch, buffers shared in place, the checks that
// refuse bad kernels, cg_print_llvm and cg_print_asm (the bias + relu loop
// must come out as packed vector instructions), and the time a compile of
// 30 kernels takes (printed, not asserted).
//
// Exit status 0 when every check passed; each failure prints file:line.
#include "../test.h"
#include "rational_check.h"

#include "codegen.h"
#include "runtime.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


#define N IR_N
#define MAXB 8            // every program's max_batch
#define CAP_NODES 512
#define CAP_KERNELS 64

//
// Building programs
//

// A program under construction: a graph whose nodes are the buffers, and
// the KProgram with each node's place. Every buffer is a leaf (INPUT in
// the arena, PARAM in the state); kernels only look at ids and shapes.
typedef struct T {
  Arena *a;
  IrGraph *g;
  KProgram p;
  const char *name;             // what the program tests, for messages
  int64_t top[2];               // next free byte in the arena [0] and the state [1]
  float lo[CAP_NODES], hi[CAP_NODES];   // the range of node i's random contents
  bool is_int[CAP_NODES];       // i32 class labels in [0, 10)
} T;

static void t_init(T *t, const char *name) {
  memset(t, 0, sizeof *t);
  t->a = arena_new();
  t->g = ir_graph_new(t->a, "test");
  t->p.g = t->g;
  t->name = name;
  t->p.entry = strcmp(name, "train_step") ? ENTRY_FORWARD : ENTRY_TRAIN;
  t->p.kernels = arena_alloc(t->a, CAP_KERNELS * sizeof(Kernel *));
  t->p.buf = arena_alloc(t->a, CAP_NODES * sizeof(KBufInfo));
  t->p.max_batch = MAXB;
}

static void t_free(T *t) { arena_free(t->a); }

// A buffer of the given shape, placed after the last one in its space
// (64-byte aligned), holding random values in [lo, hi).
static IrNode *tensor(T *t, KBufSpace space, const char *name, int ndim, const int64_t *shape, float lo, float hi) {
  SrcLoc loc = {0};
  IrNode *n = ir_leaf(t->g, space == KB_STATE ? IR_PARAM : IR_INPUT, name, DT_F32, ndim, shape, loc);
  int64_t bytes = ir_numel(n, MAXB) * 4;
  int s = space == KB_STATE;
  t->p.buf[n->id] = (KBufInfo){space, t->top[s], bytes};
  t->top[s] += (bytes + 63) / 64 * 64;
  t->p.arena_bytes = t->top[0];
  t->p.state_bytes = t->top[1];
  t->lo[n->id] = lo;
  t->hi[n->id] = hi;
  return n;
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define ARENA(t, name, ...) tensor(t, KB_ARENA, name, SHAPE(__VA_ARGS__), -1, 1)
#define STATE(t, name, ...) tensor(t, KB_STATE, name, SHAPE(__VA_ARGS__), -1, 1)

// A second node at the same place as `like` (an in-place result).
static IrNode *alias(T *t, const IrNode *like, const char *name) {
  SrcLoc loc = {0};
  IrNode *n = ir_leaf(t->g, IR_INPUT, name, DT_F32, like->ndim, like->shape, loc);
  t->p.buf[n->id] = t->p.buf[like->id];
  t->lo[n->id] = t->lo[like->id];
  t->hi[n->id] = t->hi[like->id];
  return n;
}

static Kernel *kernel(T *t, KernelKind kind, const char *name) {
  Kernel *k = arena_alloc(t->a, sizeof *k);
  k->kind = kind;
  k->name = name;
  k->bufs = arena_alloc(t->a, 32 * sizeof(IrNode *));
  k->body = arena_alloc(t->a, 96 * sizeof(KInstr));
  k->stores = arena_alloc(t->a, 16 * sizeof(KStore));
  return k;
}

static Kernel *loop(T *t, const char *name, int ndim, const int64_t *dims) {
  Kernel *k = kernel(t, KN_LOOP, name);
  k->ndim = ndim;
  for (int d = 0; d < ndim; d++)
    k->dims[d] = dims[d];
  return k;
}

#define LOOP(t, name, ...) loop(t, name, SHAPE(__VA_ARGS__))

static void add(T *t, Kernel *k) { t->p.kernels[t->p.nkernels++] = k; }

static int kbuf(Kernel *k, const IrNode *n) {
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i] == n)
      return i;
  k->bufs[k->nbufs] = n;
  return k->nbufs++;
}

// n's row-major index over k's loop space, its dimensions aligned at the
// right; a dimension n lacks, or has as 1 where the loop does not, has
// stride 0 (a broadcast for loads, a sum for KR_SUM stores).
static KIndex index_of(const Kernel *k, const IrNode *n) {
  KIndex ix = {0};
  int64_t stride = 1;
  for (int i = n->ndim - 1; i >= 0; i--) {
    int d = k->ndim - n->ndim + i;
    if (d >= 0 && !(n->shape[i] == 1 && k->dims[d] != 1))
      ix.stride[d] = stride;
    stride *= n->shape[i] == N ? 1 : n->shape[i];
  }
  return ix;
}

static int instr(Kernel *k, KInstr in) {
  k->body[k->nbody] = in;
  return k->nbody++;
}

static int ld(Kernel *k, const IrNode *n) {
  return instr(k, (KInstr){.op = KI_LOAD, .buf = kbuf(k, n), .idx = index_of(k, n)});
}

static int cst(Kernel *k, float v) { return instr(k, (KInstr){.op = KI_CONST, .imm = v}); }
static int op1(Kernel *k, KInstrOp op, int a) { return instr(k, (KInstr){.op = op, .a = a}); }
static int op2(Kernel *k, KInstrOp op, int a, int b) { return instr(k, (KInstr){.op = op, .a = a, .b = b}); }

static void st(Kernel *k, const IrNode *n, int v, KReduce r) {
  k->stores[k->nstores++] = (KStore){.buf = kbuf(k, n), .idx = index_of(k, n), .value = v, .reduce = r};
}

static Kernel *gemm(T *t, const char *name, const IrNode *a, const IrNode *b, const IrNode *c, bool ta, bool tb,
                    KExtent m, KExtent n, KExtent kk) {
  Kernel *k = kernel(t, KN_GEMM, name);
  kbuf(k, a);
  kbuf(k, b);
  kbuf(k, c);
  k->ta = ta;
  k->tb = tb;
  k->m = m;
  k->n = n;
  k->k = kk;
  return k;
}

// A library kernel the test's lib_fn runs by node id: the descriptor
// names the node and has its shape as the result's (the epilogue's rows).
static Kernel *lib(T *t, const char *name, const IrNode *node) {
  Kernel *k = kernel(t, KN_LIB, name);
  k->node = node;
  RtLib *d = arena_alloc(t->a, sizeof *d);
  d->kind = RL_SOFTMAX;
  d->node = node->id;
  d->aux = d->aux_from = -1;
  d->nbufs = 1;
  d->buf[0].ndim = node->ndim;
  for (int i = 0; i < node->ndim; i++)
    d->buf[0].shape[i] = node->shape[i] == IR_N ? RT_BATCH : node->shape[i];
  k->lib = d;
  return k;
}

//
// The runtime the compiled code calls
//

// What the callbacks saw.
typedef struct Calls {
  int parallel;                 // rt->parallel calls
  int64_t par_extent[8];        // the extent of each
  int splits;                   // RtLoopFn calls made by parallel
  int sgemm;
  int64_t mnk[32][3];           // M, N, K of each sgemm call
  int lib;
  int lib_node[8];              // node and B of each lib call
  int64_t lib_B[8];
  int ticks;
  int tick[16];                 // the kernel of each tick
  void (*lib_fn)(const KProgram *p, int node, char *arena, char *state, int64_t B);   // what lib does
  const KProgram *p;
} Calls;

static Calls calls;

// Splits [0, extent) in two, like a pool of two threads would.
static void par2(void *ctx, RtLoopFn fn, char *arena, char *state, int64_t B, int64_t extent) {
  Calls *c = ctx;
  if (c->parallel < 8)
    c->par_extent[c->parallel] = extent;
  c->parallel++;
  int64_t mid = extent / 2;
  fn(arena, state, B, 0, mid, NULL);
  fn(arena, state, B, mid, extent, NULL);
  c->splits += 2;
}

// Row-major C[M, N] = op(A) op(B) + beta C, summed in double.
static void naive_sgemm(int ta, int tb, int64_t M, int64_t Nn, int64_t K, const float *A, const float *Bm, float beta,
                        float *C) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < Nn; j++) {
      double s = 0;
      for (int64_t l = 0; l < K; l++)
        s += (double)(ta ? A[l * M + i] : A[i * K + l]) * (tb ? Bm[j * K + l] : Bm[l * Nn + j]);
      C[i * Nn + j] = (float)(beta != 0 ? s + beta * C[i * Nn + j] : s);
    }
}

// The compiled GEMM: the program's micro-kernels through the runtime's
// driver, in two halves of C's rows or columns (as the pool splits it), so
// that the epilogue sees a block's offset in the whole product.
static void micro_sgemm(void *ctx, int ta, int tb, int64_t M, int64_t Nn, int64_t K, const float *A, const float *Bm,
                        float beta, float *C, const RtGemmKernels *uk) {
  (void)ctx;
  if (calls.sgemm < 32) {
    calls.mnk[calls.sgemm][0] = M;
    calls.mnk[calls.sgemm][1] = Nn;
    calls.mnk[calls.sgemm][2] = K;
  }
  calls.sgemm++;
  CHECK(uk && (uk->tile || uk->dot || uk->row));
  if (!uk || !(uk->tile || uk->dot || uk->row))
    return;
  int64_t lda = ta ? M : K, ldb = tb ? K : Nn;
  bool rows = M > Nn;
  int64_t half = (rows ? M : Nn) / 2;
  for (int part = 0; part < 2; part++) {
    int64_t lo = part ? half : 0, hi = part ? (rows ? M : Nn) : half;
    if (rows)
      k_gemm_micro(uk, ta, tb, hi - lo, Nn, K, A + (ta ? lo : lo * lda), lda, Bm, ldb, beta != 0, C + lo * Nn, Nn,
                   lo, 0);
    else
      k_gemm_micro(uk, ta, tb, M, hi - lo, K, A, lda, Bm + (tb ? lo * ldb : lo), ldb, beta != 0, C + lo, Nn, 0, lo);
  }
}

static void lib_cb(void *ctx, const RtLib *k, char *arena, char *state, int64_t B, RtLoopFn epilogue) {
  Calls *c = ctx;
  int node = k->node;
  if (c->lib < 8) {
    c->lib_node[c->lib] = node;
    c->lib_B[c->lib] = B;
  }
  c->lib++;
  if (c->lib_fn)
    c->lib_fn(c->p, node, arena, state, B);
  if (epilogue)
    epilogue(arena, state, B, 0, B, NULL);
}

static void tick_cb(void *ctx, int kernel) {
  Calls *c = ctx;
  if (c->ticks < 16)
    c->tick[c->ticks] = kernel;
  c->ticks++;
}

static RtCalls rt = {&calls, par2, micro_sgemm, lib_cb, tick_cb, NULL, NULL, NULL, NULL, NULL};

//
// The C evaluation of a program
//

static char *place(const KProgram *p, const IrNode *n, char *arena, char *state) {
  const KBufInfo *b = &p->buf[n->id];
  return (b->space == KB_STATE ? state : arena) + b->offset;
}

static int64_t at(const Kernel *k, const KIndex *ix, const int64_t *i) {
  int64_t e = ix->offset;
  for (int d = 0; d < k->ndim; d++)
    e += ix->stride[d] * i[d];
  return e;
}

static float eval(const KInstr *in, const float *v, float x) {
  float a = v[in->a], b = v[in->b];
  switch (in->op) {
  case KI_LOAD: case KI_LOADI: case KI_INDEX: return x;
  case KI_CONST: return in->imm;
  case KI_ADD: return a + b;
  case KI_SUB: return a - b;
  case KI_MUL: return a * b;
  case KI_DIV: return a / b;
  case KI_MAX: return a > b ? a : b;
  case KI_MIN: return a < b ? a : b;
  case KI_NEG: return -a;
  case KI_EXP: return expf(a);
  case KI_LOG: return logf(a);
  case KI_TANH: return tanhf(a);
  case KI_SIGMOID: return 1.0f / (1.0f + expf(-a));
  case KI_SQRT: return sqrtf(a);
  case KI_ABS: return fabsf(a);
  case KI_SIGN: return a > 0 ? 1.0f : a < 0 ? -1.0f : 0.0f;
  case KI_GT: return a > b ? 1.0f : 0.0f;
  case KI_EQ: return a == b ? 1.0f : 0.0f;
  case KI_SELECT: return a != 0 ? b : v[in->c];
  case KI_FMA: return fmaf(a, b, v[in->c]);
  case KI_ERF: return erff(a);
  case KI_NUM_OPS: break;
  }
  return NAN;
}

// One point of the index space at a time, in order; stores after the body.
static void interp_loop(const KProgram *p, const Kernel *k, char *arena, char *state, int64_t B) {
  for (int s = 0; s < k->nstores; s++)
    if (k->stores[s].reduce == KR_SUM) {
      const IrNode *n = k->bufs[k->stores[s].buf];
      memset(place(p, n, arena, state), 0, ir_numel(n, B) * 4);
    }
  int64_t ext[IR_MAX_DIMS], i[IR_MAX_DIMS] = {0};
  int64_t total = 1;
  for (int d = 0; d < k->ndim; d++) {
    ext[d] = k->dims[d] == N ? B : k->dims[d];
    total *= ext[d];
  }
  float v[96];
  for (int64_t pt = 0; pt < total; pt++) {
    for (int j = 0; j < k->nbody; j++) {
      const KInstr *in = &k->body[j];
      float x = 0;
      if (in->op == KI_LOAD)
        x = ((float *)place(p, k->bufs[in->buf], arena, state))[at(k, &in->idx, i)];
      else if (in->op == KI_LOADI)
        x = (float)((int32_t *)place(p, k->bufs[in->buf], arena, state))[at(k, &in->idx, i)];
      else if (in->op == KI_INDEX)
        x = (float)i[in->dim];
      v[j] = eval(in, v, x);
    }
    for (int s = 0; s < k->nstores; s++) {
      const KStore *sk = &k->stores[s];
      float *dst = (float *)place(p, k->bufs[sk->buf], arena, state) + at(k, &sk->idx, i);
      *dst = sk->reduce == KR_SUM ? *dst + v[sk->value] : v[sk->value];
    }
    for (int d = k->ndim - 1; d >= 0 && ++i[d] == ext[d]; d--)
      i[d] = 0;
  }
}

static int64_t ext(KExtent e, int64_t B) { return e.coef * (e.batched ? B : 1); }

static void interp(const KProgram *p, char *arena, char *state, int64_t B) {
  for (int i = 0; i < p->nkernels; i++) {
    const Kernel *k = p->kernels[i];
    if (k->kind == KN_LOOP) {
      interp_loop(p, k, arena, state, B);
    } else if (k->kind == KN_GEMM) {
      naive_sgemm(k->ta, k->tb, ext(k->m, B), ext(k->n, B), ext(k->k, B),
                  (float *)place(p, k->bufs[0], arena, state), (float *)place(p, k->bufs[1], arena, state),
                  k->accumulate ? 1.0f : 0.0f, (float *)place(p, k->bufs[2], arena, state));
      if (k->epilogue)
        interp_loop(p, k->epilogue, arena, state, B);
    } else {
      lib_cb(&calls, k->lib, arena, state, B, NULL);
      if (k->epilogue)
        interp_loop(p, k->epilogue, arena, state, B);
    }
  }
}

//
// Running and comparing
//

// The memory of one run: the arena and the state.
typedef struct Mem {
  char *arena, *state;
} Mem;

// Random contents for every buffer, the same for every call with one seed.
static Mem mem_new(const T *t, uint64_t seed) {
  Mem m = {xcalloc(t->p.arena_bytes + 64, 1), xcalloc(t->p.state_bytes + 64, 1)};
  Rng r;
  rng_seed(&r, seed, 3);
  for (int id = 0; id < t->g->nnodes; id++) {
    const KBufInfo *b = &t->p.buf[id];
    float *f = (float *)place(&t->p, t->g->nodes[id], m.arena, m.state);
    for (int64_t e = 0; e < b->bytes / 4; e++) {
      if (t->is_int[id])
        ((int32_t *)f)[e] = (int32_t)rng_below(&r, 10);
      else
        f[e] = t->lo[id] + (t->hi[id] - t->lo[id]) * rng_uniformf(&r);
    }
  }
  return m;
}

static void mem_free(Mem *m) {
  free(m->arena);
  free(m->state);
}

static float *F(const T *t, const Mem *m, const IrNode *n) { return (float *)place(&t->p, n, m->arena, m->state); }

// got and want agree: equal bits (NaN included), or within rtol relative
// plus atol.
static bool agree(float got, float want, double rtol, double atol) {
  if (memcmp(&got, &want, 4) == 0 || (isnan(got) && isnan(want)))
    return true;
  return fabs((double)got - want) <= rtol * fabs(want) + atol;
}

// Compares two blocks of floats; prints the first few differences and the
// largest. Returns the number that differ.
static int compare(const char *what, const float *got, const float *want, int64_t n, double rtol, double atol) {
  int bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    if (agree(got[i], want[i], rtol, atol))
      continue;
    if (bad < 5)
      printf("  %s[%lld]: got %.9g, want %.9g\n", what, (long long)i, got[i], want[i]);
    double d = fabs((double)got[i] - want[i]);
    if (d > worst || isnan(d))
      worst = d;
    bad++;
  }
  if (bad)
    printf("  %s: %d of %lld differ; largest difference %.3g\n", what, bad, (long long)n, worst);
  return bad;
}

static CgModule *compile_with(const T *t, int opt, const char *cpu) {
  char err[1024];
  CgOptions o = {opt, cpu, NULL};
  CgModule *m = cg_compile(&t->p, &o, err, sizeof err);
  if (!m)
    FAIL("cg_compile(%s): %s\n", t->name, err);
  return m;
}

// Compiles t, runs it for batch B and the C evaluation on the same random
// memory; the two must agree everywhere. Returns the compiled run's memory
// for checks of its own (the caller frees it).
static Mem run_both_with(const T *t, int64_t B, double rtol, double atol, int opt, const char *cpu) {
  Mem got = mem_new(t, 42), want = mem_new(t, 42);
  CgModule *m = compile_with(t, opt, cpu);
  if (m) {
    calls.p = &t->p;
    cg_entry(m)(got.arena, got.state, B, &rt);
    cg_free(m);
  }
  Calls saved = calls;
  interp(&t->p, want.arena, want.state, B);
  calls = saved;    // the callers check what the compiled run called
  char what[96];
  snprintf(what, sizeof what, "%s arena (B=%lld)", t->name, (long long)B);
  CHECK(compare(what, (float *)got.arena, (float *)want.arena, t->p.arena_bytes / 4, rtol, atol) == 0, "%s", what);
  snprintf(what, sizeof what, "%s state (B=%lld)", t->name, (long long)B);
  CHECK(compare(what, (float *)got.state, (float *)want.state, t->p.state_bytes / 4, rtol, atol) == 0, "%s", what);
  mem_free(&want);
  return got;
}

static Mem run_both(const T *t, int64_t B, double rtol, double atol) { return run_both_with(t, B, rtol, atol, 2, NULL); }

static void reset_calls(void) { memset(&calls, 0, sizeof calls); }

//
// The tests
//

// y[N,512] = relu(x[N,512] + b[512]): the bias broadcast over the batch.
static void build_relu(T *t, IrNode **x, IrNode **b, IrNode **y) {
  t_init(t, "forward");
  *x = ARENA(t, "x", N, 512);
  *b = STATE(t, "b", 512);
  *y = ARENA(t, "y", N, 512);
  Kernel *k = LOOP(t, "linear_1: add + relu", N, 512);
  st(k, *y, op2(k, KI_MAX, op2(k, KI_ADD, ld(k, *x), ld(k, *b)), cst(k, 0)), KR_NONE);
  add(t, k);
}

static void test_relu_bias(void) {
  T t;
  IrNode *x, *b, *y;
  build_relu(&t, &x, &b, &y);
  for (int64_t B = MAXB; B >= 1; B -= 5) {   // 8, then 3: rows 3.. stay as they were
    Mem m = run_both(&t, B, 0, 0);
    Mem before = mem_new(&t, 42);
    const float *xv = F(&t, &m, x), *bv = F(&t, &m, b), *yv = F(&t, &m, y), *y0 = F(&t, &before, y);
    int bad = 0;
    for (int64_t i = 0; i < MAXB * 512; i++) {
      float s = xv[i] + bv[i % 512];
      float want = i < B * 512 ? (s > 0 ? s : 0) : y0[i];
      bad += yv[i] != want;
    }
    if (bad)
      FAIL("relu(x + b) for B=%lld: %d elements wrong\n", (long long)B, bad);
    mem_free(&m);
    mem_free(&before);
  }
  // -O0, and a named CPU (generic x86-64: SSE only) instead of the host's;
  // no tick callback.
  rt.tick = NULL;
  Mem m0 = run_both_with(&t, 5, 0, 0, 0, NULL);
  mem_free(&m0);
  Mem m1 = run_both_with(&t, 5, 0, 0, 3, "x86-64");
  mem_free(&m1);
  rt.tick = tick_cb;
  t_free(&t);
}

// Every KInstrOp, each into a buffer of its own, over [N, 37] (37: the
// vector loop's remainder runs too). A first kernel copies x into every
// third column of y, so that EQ meets ties; SIGN and SELECT meet zeros.
static void test_every_op(void) {
  T t;
  t_init(&t, "every_op");
  IrNode *x = tensor(&t, KB_ARENA, "x", SHAPE(N, 37), -6, 6);
  IrNode *y = tensor(&t, KB_ARENA, "y", SHAPE(N, 37), -6, 6);
  IrNode *pos = tensor(&t, KB_STATE, "pos", SHAPE(N, 37), 0.01f, 10);
  IrNode *lab = tensor(&t, KB_ARENA, "lab", SHAPE(N, 1), 0, 0);
  t.is_int[lab->id] = true;
  IrNode *out[KI_NUM_OPS];
  for (int op = 0; op < KI_NUM_OPS; op++) {
    char name[16];
    snprintf(name, sizeof name, "out%d", op);
    out[op] = ARENA(&t, name, N, 37);
  }
  Kernel *tie = LOOP(&t, "ties", N, 13);
  KIndex every3 = {.stride = {37, 3}};
  int vt = instr(tie, (KInstr){.op = KI_LOAD, .buf = kbuf(tie, x), .idx = every3});
  tie->stores[tie->nstores++] = (KStore){.buf = kbuf(tie, y), .idx = every3, .value = vt};
  add(&t, tie);

  Kernel *k = LOOP(&t, "every op", N, 37);
  int vx = ld(k, x), vy = ld(k, y), vp = ld(k, pos);
  int sx = op2(k, KI_MUL, vx, op2(k, KI_MUL, vy, vy));   // |sx| up to 216, tiny near y = 0
  int sel = op2(k, KI_GT, vy, cst(k, 2));                 // 0 or 1
  int outs[KI_NUM_OPS];
  outs[KI_LOAD] = vx;
  outs[KI_LOADI] = instr(k, (KInstr){.op = KI_LOADI, .buf = kbuf(k, lab), .idx = index_of(k, lab)});
  outs[KI_CONST] = cst(k, 2.5f);
  outs[KI_INDEX] = op2(k, KI_ADD, op2(k, KI_MUL, instr(k, (KInstr){.op = KI_INDEX, .dim = 0}), cst(k, 100)),
                       instr(k, (KInstr){.op = KI_INDEX, .dim = 1}));
  outs[KI_ADD] = op2(k, KI_ADD, vx, vy);
  outs[KI_SUB] = op2(k, KI_SUB, vx, vy);
  outs[KI_MUL] = op2(k, KI_MUL, vx, vy);
  outs[KI_DIV] = op2(k, KI_DIV, vx, vp);
  outs[KI_MAX] = op2(k, KI_MAX, vx, vy);
  outs[KI_MIN] = op2(k, KI_MIN, vx, vy);
  outs[KI_NEG] = op1(k, KI_NEG, vx);
  outs[KI_EXP] = op1(k, KI_EXP, vx);
  outs[KI_LOG] = op1(k, KI_LOG, vp);
  outs[KI_TANH] = op1(k, KI_TANH, sx);
  outs[KI_SIGMOID] = op1(k, KI_SIGMOID, op2(k, KI_MUL, sx, cst(k, 0.5f)));
  outs[KI_SQRT] = op1(k, KI_SQRT, vp);
  outs[KI_ABS] = op1(k, KI_ABS, vx);
  outs[KI_SIGN] = op1(k, KI_SIGN, op2(k, KI_MUL, vx, sel));   // 0 where y <= 2
  outs[KI_GT] = op2(k, KI_GT, vx, vy);
  outs[KI_EQ] = op2(k, KI_EQ, vx, vy);
  outs[KI_SELECT] = instr(k, (KInstr){.op = KI_SELECT, .a = sel, .b = vx, .c = vy});
  outs[KI_FMA] = instr(k, (KInstr){.op = KI_FMA, .a = vx, .b = vy, .c = vp});
  outs[KI_ERF] = op1(k, KI_ERF, op2(k, KI_MUL, sx, cst(k, 0.05f)));   // both of its branches, and 1
  for (int op = 0; op < KI_NUM_OPS; op++)
    st(k, out[op], outs[op], KR_NONE);
  add(&t, k);

  Mem m = run_both(&t, 7, 1e-5, 1e-30);
  // Spot checks against the math written out.
  const float *xv = F(&t, &m, x), *yv = F(&t, &m, y);
  const int32_t *lv = (const int32_t *)F(&t, &m, lab);
  int ties = 0;
  for (int64_t i = 0; i < 7 * 37; i++) {
    CHECK(F(&t, &m, out[KI_INDEX])[i] == (float)(i / 37 * 100 + i % 37));
    CHECK(F(&t, &m, out[KI_LOADI])[i] == (float)lv[i / 37]);
    CHECK(F(&t, &m, out[KI_EQ])[i] == (xv[i] == yv[i] ? 1.0f : 0.0f));
    CHECK(F(&t, &m, out[KI_CONST])[i] == 2.5f);
    CHECK(F(&t, &m, out[KI_SELECT])[i] == (yv[i] > 2 ? xv[i] : yv[i]));
    ties += xv[i] == yv[i];
  }
  CHECK_INT(7 * 13, ties);
  mem_free(&m);
  t_free(&t);
}

// One instruction over n points: fill sets x, the compiled loop computes
// y = op(x), check judges y against x.
static void unary_range(const char *name, KInstrOp op, int n, void (*fill)(float *x),
                        void (*check)(const float *x, const float *y)) {
  T t;
  t_init(&t, name);
  IrNode *x = tensor(&t, KB_ARENA, "x", SHAPE(n), -1, 1);
  IrNode *y = ARENA(&t, "y", n);
  Kernel *k = LOOP(&t, name, n);
  st(k, y, op1(k, op, ld(k, x)), KR_NONE);
  add(&t, k);
  Mem m = mem_new(&t, 1);
  fill(F(&t, &m, x));
  CgModule *cm = compile_with(&t, 2, NULL);
  if (cm) {
    cg_entry(cm)(m.arena, m.state, 1, &rt);
    cg_free(cm);
  }
  check(F(&t, &m, x), F(&t, &m, y));
  mem_free(&m);
  t_free(&t);
}

enum { EXP_POINTS = 4096 };

// KI_EXP (a polynomial, not libm's expf) against double exp over its whole
// float range: within 2.5 ulp where the result is normal, to the nearest
// denormals below, inf above 88.72, 0 below -103.97, NaN for NaN.
static void exp_points(float *xv) {
  for (int i = 0; i < EXP_POINTS; i++)   // -110 to 95, and around 0
    xv[i] = i < EXP_POINTS / 2 ? -110.0f + 205.0f * i / (EXP_POINTS / 2)
                               : (i & 1 ? -1.0f : 1.0f) * powf(10.0f, -8 + 9.0f * i / EXP_POINTS);
  float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.72f, 88.73f, -87.33f, -103.9f, -104.0f, 1e-30f};
  for (int i = 0; i < countof(special); i++)
    xv[EXP_POINTS - 1 - i] = special[i];
}

static void exp_check(const float *xv, const float *got) {
  int bad = 0;
  for (int i = 0; i < EXP_POINTS; i++) {
    double e = exp((double)xv[i]);
    bool ok = isnan(xv[i]) ? isnan(got[i])
              : e >= FLT_MIN ? fabs(got[i] - e) <= 2.5 * e * FLT_EPSILON / 2 || (isinf((float)e) && isinf(got[i]))
                             : fabs(got[i] - e) <= 2 * 1.401298464e-45;   // denormal: to a unit or two
    if (!ok && bad++ < 5)
      printf("  exp(%.9g): got %.9g, want %.9g\n", xv[i], got[i], e);
  }
  CHECK(bad == 0, "exp: %d of %d points outside 2.5 ulp", bad, EXP_POINTS);
}

// KI_SIGMOID against double 1 / (1 + exp(-x)) from -100 to 100: within 3
// ulp where the result is normal; 0 from -88.38 down, where it would be a
// denormal below 4.6e-39 (codegen/llvm.c); NaN for NaN.
static void sigmoid_points(float *xv) {
  for (int i = 0; i < EXP_POINTS; i++)
    xv[i] = i < EXP_POINTS / 2 ? -100.0f + 200.0f * i / (EXP_POINTS / 2)
                               : (i & 1 ? -1.0f : 1.0f) * powf(10.0f, -8 + 9.0f * i / EXP_POINTS);
  float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 87.0f, 88.72f, -87.0f, -88.0f, -88.38f, -88.4f, 1e-30f};
  for (int i = 0; i < countof(special); i++)
    xv[EXP_POINTS - 1 - i] = special[i];
}

static void sigmoid_check(const float *xv, const float *got) {
  int bad = 0;
  for (int i = 0; i < EXP_POINTS; i++) {
    double e = 1 / (1 + exp(-(double)xv[i]));
    bool ok = isnan(xv[i]) ? isnan(got[i])
              : e >= FLT_MIN ? fabs(got[i] - e) <= 3 * e * FLT_EPSILON / 2
                             : got[i] <= FLT_MIN && (got[i] == 0 || fabs(got[i] - e) <= 2 * 1.401298464e-45);
    if (!ok && bad++ < 5)
      printf("  sigmoid(%.9g): got %.9g, want %.9g\n", xv[i], got[i], e);
  }
  CHECK(bad == 0, "sigmoid: %d of %d points outside 3 ulp", bad, EXP_POINTS);
}

// KI_ERF and KI_TANH against double erf and tanh (rational_check.h).
static void erf_result(const float *xv, const float *y) { erf_check("erf (llvm)", xv, y); }
static void tanh_result(const float *xv, const float *y) { tanh_check("tanh (llvm)", xv, y); }

static void test_unary_ranges(void) {
  unary_range("tanh_range", KI_TANH, TANH_POINTS, tanh_points, tanh_result);
  unary_range("exp_range", KI_EXP, EXP_POINTS, exp_points, exp_check);
  unary_range("sigmoid_range", KI_SIGMOID, EXP_POINTS, sigmoid_points, sigmoid_check);
  unary_range("erf_range", KI_ERF, ERF_POINTS, erf_points, erf_result);
}

// Sums: over the batch (a bias gradient), over an inner dimension (a row
// sum, which vectorizes only when the adds may be reassociated), to a
// scalar, two stores into one buffer, and a kernel of no dimensions.
static void test_sums(void) {
  T t;
  t_init(&t, "sums");
  IrNode *x = ARENA(&t, "x", N, 64);
  IrNode *s = STATE(&t, "s", 64);
  Kernel *k1 = LOOP(&t, "sum over the batch", N, 64);
  st(k1, s, ld(k1, x), KR_SUM);
  add(&t, k1);
  IrNode *w = ARENA(&t, "w", N, 300);
  IrNode *r = ARENA(&t, "r", N, 1);
  IrNode *tot = tensor(&t, KB_ARENA, "tot", 0, NULL, -1, 1);
  Kernel *k2 = LOOP(&t, "sum over rows", N, 300);
  int v = ld(k2, w);
  st(k2, r, op2(k2, KI_MUL, v, cst(k2, 0.5f)), KR_SUM);
  st(k2, tot, v, KR_SUM);
  st(k2, tot, op2(k2, KI_MUL, v, v), KR_SUM);
  add(&t, k2);
  IrNode *sc = tensor(&t, KB_ARENA, "scalar", 0, NULL, -1, 1);
  Kernel *k3 = loop(&t, "scalar", 0, NULL);
  st(k3, sc, op2(k3, KI_ADD, ld(k3, tot), cst(k3, 3)), KR_NONE);
  add(&t, k3);
  for (int64_t B = MAXB; B >= 1; B -= 3) {
    Mem m = run_both(&t, B, 1e-5, 1e-4);
    const float *xv = F(&t, &m, x), *wv = F(&t, &m, w);
    for (int j = 0; j < 64; j++) {
      double want = 0, mag = 0;
      for (int64_t n = 0; n < B; n++) {
        want += xv[n * 64 + j];
        mag += fabs(xv[n * 64 + j]);
      }
      if (fabs(F(&t, &m, s)[j] - want) > 1e-5 * mag + 1e-7)
        FAIL("sum over the batch [%d]: got %g, want %g\n", j, F(&t, &m, s)[j], want);
    }
    double all = 0, allmag = 0;
    for (int64_t n = 0; n < B; n++) {
      double want = 0, mag = 0;
      for (int j = 0; j < 300; j++) {
        double e = wv[n * 300 + j];
        want += 0.5 * e;
        mag += fabs(0.5 * e);
        all += e + e * e;
        allmag += fabs(e) + e * e;
      }
      if (fabs(F(&t, &m, r)[n] - want) > 1e-5 * mag + 1e-7)
        FAIL("row sum [%lld]: got %g, want %g\n", (long long)n, F(&t, &m, r)[n], want);
    }
    if (fabs(F(&t, &m, tot)[0] - all) > 1e-5 * allmag)
      FAIL("total: got %g, want %g\n", F(&t, &m, tot)[0], all);
    if (fabs(F(&t, &m, sc)[0] - (all + 3)) > 1e-5 * allmag)
      FAIL("scalar: got %g, want %g\n", F(&t, &m, sc)[0], all + 3);
    mem_free(&m);
  }
  t_free(&t);
}

// A parallel kernel runs through rt->parallel (which calls it on two
// halves) when it loops over 32768 elements or more at the batch at hand,
// else on the calling thread; its row sums stay within a row, so splitting
// rows is safe.
static void test_parallel(void) {
  T t;
  t_init(&t, "parallel");
  IrNode *x = ARENA(&t, "x", N, 5000);
  IrNode *y = ARENA(&t, "y", N, 5000);
  IrNode *r = ARENA(&t, "r", N, 1);
  Kernel *k = LOOP(&t, "scale + row sum", N, 5000);
  int v = op2(k, KI_ADD, op2(k, KI_MUL, ld(k, x), cst(k, 3)), cst(k, 1));
  st(k, y, v, KR_NONE);
  st(k, r, v, KR_SUM);
  k->parallel = true;
  add(&t, k);
  IrNode *c = STATE(&t, "c", 10, 20);
  IrNode *d = STATE(&t, "d", 10, 20);
  Kernel *k2 = LOOP(&t, "fixed rows", 10, 20);
  st(k2, d, op1(k2, KI_EXP, ld(k2, c)), KR_NONE);
  k2->parallel = true;
  add(&t, k2);
  reset_calls();
  Mem m = run_both(&t, 7, 1e-5, 1e-5);
  CHECK_INT(1, calls.parallel);   // 7 x 5000 elements split; "fixed rows" (200) inline
  CHECK_INT(2, calls.splits);
  CHECK_INT(7, calls.par_extent[0]);
  mem_free(&m);
  reset_calls();
  m = run_both(&t, 6, 1e-5, 1e-5);   // 30000 elements: inline
  CHECK_INT(0, calls.parallel);
  const float *xv = F(&t, &m, x), *yv = F(&t, &m, y);
  for (int i = 0; i < 6 * 5000; i++)
    if (yv[i] != xv[i] * 3 + 1)
      FAIL("parallel y[%d]: got %g, want %g\n", i, yv[i], xv[i] * 3 + 1);
  mem_free(&m);
  t_free(&t);
}

// GEMMs: every ta/tb with M, N or K batched (K batched: a weight gradient,
// accumulated into C), and epilogues (bias + relu, one of them parallel).
static void test_gemm(void) {
  T t;
  t_init(&t, "gemm");
  struct {
    int64_t m, n, k;
    bool bm, bn, bk;
    IrNode *a, *b, *c;
  } g[12];
  int ng = 0;
  for (int which = 0; which < 3; which++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int64_t m = 6, n = 5, kk = 7;
        bool bm = which == 0, bn = which == 1, bk = which == 2;
        int64_t M = bm ? N : m, Nn = bn ? N : n, K = bk ? N : kk;
        // A stored [M, K] or, transposed, [K, M]; B as [K, N] or [N, K].
        IrNode *a = ta ? ARENA(&t, "a", K, M) : ARENA(&t, "a", M, K);
        IrNode *b = tb ? STATE(&t, "b", Nn, K) : STATE(&t, "b", K, Nn);
        IrNode *c = ARENA(&t, "c", M, Nn);
        Kernel *gk = gemm(&t, "matmul", a, b, c, ta, tb, (KExtent){bm ? 1 : m, bm}, (KExtent){bn ? 1 : n, bn},
                          (KExtent){bk ? 1 : kk, bk});
        gk->accumulate = bk;
        if (ta == 1 && tb == 1 && which == 0) {   // C[N, 5] + bias, relu, into y
          IrNode *bias = STATE(&t, "bias", 5);
          IrNode *y = ARENA(&t, "y", N, 5);
          Kernel *e = LOOP(&t, "epilogue", N, 5);
          st(e, y, op2(e, KI_MAX, op2(e, KI_ADD, ld(e, c), ld(e, bias)), cst(e, 0)), KR_NONE);
          e->parallel = true;
          gk->epilogue = e;
        }
        if (ta == 0 && tb == 1 && which == 0) {   // in place: C += bias
          IrNode *bias = STATE(&t, "bias", 5);
          Kernel *e = LOOP(&t, "epilogue", N, 5);
          st(e, c, op2(e, KI_ADD, ld(e, c), ld(e, bias)), KR_NONE);
          gk->epilogue = e;
        }
        add(&t, gk);
        g[ng].m = m, g[ng].n = n, g[ng].k = kk, g[ng].bm = bm, g[ng].bn = bn, g[ng].bk = bk;
        g[ng].a = a, g[ng].b = b, g[ng].c = c;
        ng++;
      }
  for (int64_t B = MAXB; B >= 1; B -= 3) {
    reset_calls();
    Mem before = mem_new(&t, 42);
    Mem m = run_both(&t, B, 1e-6, 1e-6);
    CHECK_INT(ng, calls.sgemm);
    CHECK_INT(0, calls.parallel);   // the parallel epilogue is small: inline
    for (int i = 0; i < ng; i++) {
      int64_t M = g[i].bm ? B : g[i].m, Nn = g[i].bn ? B : g[i].n, K = g[i].bk ? B : g[i].k;
      CHECK_INT(M, calls.mnk[i][0]);
      CHECK_INT(Nn, calls.mnk[i][1]);
      CHECK_INT(K, calls.mnk[i][2]);
      // The plain GEMMs (no epilogue) against the product in double.
      if (t.p.kernels[i]->epilogue)
        continue;
      bool ta = t.p.kernels[i]->ta, tb = t.p.kernels[i]->tb;
      const float *A = F(&t, &m, g[i].a), *Bm = F(&t, &m, g[i].b), *C = F(&t, &m, g[i].c);
      const float *C0 = F(&t, &before, g[i].c);
      for (int64_t r = 0; r < M; r++)
        for (int64_t c = 0; c < Nn; c++) {
          double s = g[i].bk ? C0[r * Nn + c] : 0;
          for (int64_t l = 0; l < K; l++)
            s += (double)(ta ? A[l * M + r] : A[r * K + l]) * (tb ? Bm[c * K + l] : Bm[l * Nn + c]);
          if (fabs(C[r * Nn + c] - s) > 1e-5 * fabs(s) + 1e-6)
            FAIL("gemm %d (ta=%d tb=%d) C[%lld,%lld]: got %g, want %g\n", i, ta, tb, (long long)r,
                 (long long)c, C[r * Nn + c], s);
        }
    }
    mem_free(&m);
    mem_free(&before);
  }
  t_free(&t);
}

static char *print_text(const T *t, bool assembly);

// The GEMM micro-kernels the codegen makes, through the runtime's driver,
// on ragged shapes: a tile over two blocks of K whose epilogue adds a bias
// and a residual and applies relu in place; dot products along a long K
// (one row of them at B = 1) with tanh into another buffer; an accumulating
// product over the batch with its epilogue into another buffer; an
// epilogue that reads C across the row, which must run as a loop after
// the product instead; and a product of one row (the row kernel). Vectors of 16 floats (the host's) and of 8
// (-mcpu=haswell).
static void test_gemm_tiles(void) {
  T t;
  t_init(&t, "gemm_tiles");
  IrNode *a1 = ARENA(&t, "a1", 19, 300), *w1 = STATE(&t, "w1", 37, 300), *c1 = ARENA(&t, "c1", 19, 37);
  IrNode *bias1 = STATE(&t, "bias1", 37), *res1 = ARENA(&t, "res1", 19, 37), *y1 = alias(&t, c1, "y1");
  Kernel *g1 = gemm(&t, "g1", a1, w1, c1, false, true, (KExtent){19, false}, (KExtent){37, false},
                    (KExtent){300, false});
  Kernel *e1 = LOOP(&t, "epilogue", 19, 37);
  int v1 = op2(e1, KI_ADD, op2(e1, KI_ADD, ld(e1, c1), ld(e1, bias1)), ld(e1, res1));
  st(e1, y1, op2(e1, KI_MAX, v1, cst(e1, 0)), KR_NONE);
  g1->epilogue = e1;
  add(&t, g1);

  IrNode *x2 = ARENA(&t, "x2", N, 523), *w2 = STATE(&t, "w2", 13, 523), *c2 = ARENA(&t, "c2", N, 13);
  IrNode *bias2 = STATE(&t, "bias2", 13), *y2 = ARENA(&t, "y2", N, 13);
  Kernel *g2 = gemm(&t, "g2", x2, w2, c2, false, true, (KExtent){1, true}, (KExtent){13, false},
                    (KExtent){523, false});
  Kernel *e2 = LOOP(&t, "epilogue", N, 13);
  st(e2, y2, op1(e2, KI_TANH, op2(e2, KI_ADD, ld(e2, c2), ld(e2, bias2))), KR_NONE);
  g2->epilogue = e2;
  add(&t, g2);

  IrNode *a3 = ARENA(&t, "a3", N, 21), *b3 = ARENA(&t, "b3", N, 45), *c3 = STATE(&t, "c3", 21, 45);
  IrNode *y3 = ARENA(&t, "y3", 21, 45);
  Kernel *g3 = gemm(&t, "g3", a3, b3, c3, true, false, (KExtent){21, false}, (KExtent){45, false},
                    (KExtent){1, true});
  g3->accumulate = true;
  Kernel *e3 = LOOP(&t, "epilogue", 21, 45);
  st(e3, y3, op2(e3, KI_MUL, ld(e3, c3), cst(e3, 2)), KR_NONE);
  g3->epilogue = e3;
  add(&t, g3);

  IrNode *a4 = ARENA(&t, "a4", N, 33), *b4 = STATE(&t, "b4", 33, 70), *c4 = ARENA(&t, "c4", N, 70);
  IrNode *y4 = ARENA(&t, "y4", N, 70);
  Kernel *g4 = gemm(&t, "g4", a4, b4, c4, false, false, (KExtent){1, true}, (KExtent){70, false},
                    (KExtent){33, false});
  Kernel *e4 = LOOP(&t, "epilogue", N, 70);
  int first = instr(e4, (KInstr){.op = KI_LOAD, .buf = kbuf(e4, c4), .idx = {.stride = {70, 0}}});   // C[i][0]
  st(e4, y4, op2(e4, KI_ADD, ld(e4, c4), first), KR_NONE);
  g4->epilogue = e4;
  add(&t, g4);

  IrNode *x5 = ARENA(&t, "x5", 1, 600), *w5 = STATE(&t, "w5", 9, 600), *c5 = ARENA(&t, "c5", 1, 9);
  IrNode *bias5 = STATE(&t, "bias5", 9), *y5 = alias(&t, c5, "y5");
  Kernel *g5 = gemm(&t, "g5", x5, w5, c5, false, true, (KExtent){1, false}, (KExtent){9, false},
                    (KExtent){600, false});
  Kernel *e5 = LOOP(&t, "epilogue", 1, 9);
  st(e5, y5, op2(e5, KI_MAX, op2(e5, KI_ADD, ld(e5, c5), ld(e5, bias5)), cst(e5, 0)), KR_NONE);
  g5->epilogue = e5;
  add(&t, g5);

  const char *cpus[2] = {NULL, "haswell"};
  for (int c = 0; c < 2; c++)
    for (int64_t B = MAXB; B >= 1; B = B > 5 ? 5 : B - 4) {
      reset_calls();
      Mem m = run_both_with(&t, B, 1e-5, 1e-5, 2, cpus[c]);
      CHECK_INT(5, calls.sgemm);
      CHECK_INT(0, calls.parallel);
      mem_free(&m);
    }
  // Which epilogues ran on the tile: g1-g3's and g5's have micro-kernels of
  // their own (g2 only dot products: K is long and M at most 8, which at B
  // = 1 run with one row; g5, of one row, a row kernel and no tile); g4 has
  // the plain tile, and its epilogue a loop (inlined into the entry).
  char *ir = print_text(&t, false);
  CHECK_HAS(ir, "@k0_g1_tile(");
  CHECK_HAS(ir, "@k1_g2_dot(");
  CHECK_HAS(ir, "@k2_g3_tile(");
  CHECK_HAS(ir, "@gemm_tile(");
  CHECK_HAS(ir, "@k4_g5_row(");
  CHECK(!strstr(ir, "@k1_g2_tile(") && !strstr(ir, "@k1_g2_row(") && !strstr(ir, "@k0_g1_epilogue(") &&
        !strstr(ir, "@k3_g4_tile(") && !strstr(ir, "@k4_g5_tile("));
  free(ir);
  t_free(&t);
}

// A library kernel between two loops: z = 2 y, done by the callback.
static IrNode *lib_y, *lib_z;

static void lib_double(const KProgram *p, int node, char *arena, char *state, int64_t B) {
  if (node != lib_z->id)
    return;
  const float *y = (const float *)place(p, lib_y, arena, state);
  float *z = (float *)place(p, lib_z, arena, state);
  for (int64_t i = 0; i < B * 16; i++)
    z[i] = 2 * y[i];
}

static void test_lib(void) {
  T t;
  t_init(&t, "lib");
  IrNode *x = ARENA(&t, "x", N, 16);
  lib_y = ARENA(&t, "y", N, 16);
  lib_z = ARENA(&t, "z", N, 16);
  IrNode *w = ARENA(&t, "w", N, 16);
  Kernel *k1 = LOOP(&t, "y = x + 1", N, 16);
  st(k1, lib_y, op2(k1, KI_ADD, ld(k1, x), cst(k1, 1)), KR_NONE);
  add(&t, k1);
  add(&t, lib(&t, "softmax", lib_z));
  Kernel *k3 = LOOP(&t, "w = z + 1", N, 16);
  st(k3, w, op2(k3, KI_ADD, ld(k3, lib_z), cst(k3, 1)), KR_NONE);
  add(&t, k3);
  reset_calls();
  calls.lib_fn = lib_double;
  Mem m = run_both(&t, 5, 0, 0);
  CHECK_INT(1, calls.lib);
  CHECK_INT(lib_z->id, calls.lib_node[0]);
  CHECK_INT(5, calls.lib_B[0]);
  CHECK_INT(4, calls.ticks);   // as kernels 0, 1, 2 start, and at the end
  for (int i = 0; i < 4; i++)
    CHECK_INT(i, calls.tick[i]);
  const float *xv = F(&t, &m, x), *wv = F(&t, &m, w);
  for (int i = 0; i < 5 * 16; i++)
    if (wv[i] != (xv[i] + 1) * 2 + 1)
      FAIL("lib chain w[%d]: got %g, want %g\n", i, wv[i], (xv[i] + 1) * 2 + 1);
  reset_calls();
  mem_free(&m);
  t_free(&t);
}

// Buffers shared in place: two nodes at one offset (one pointer, not two
// noalias ones), and an update of a parameter by its gradient.
static void test_in_place(void) {
  T t;
  t_init(&t, "in_place");
  IrNode *x = ARENA(&t, "x", N, 64);
  IrNode *y = alias(&t, x, "y");
  Kernel *k1 = LOOP(&t, "y = 2 x + x", N, 64);
  int v = ld(k1, x);
  st(k1, y, op2(k1, KI_ADD, op2(k1, KI_MUL, v, cst(k1, 2)), ld(k1, y)), KR_NONE);
  add(&t, k1);
  IrNode *p = STATE(&t, "p", 64);
  IrNode *gr = ARENA(&t, "g", 64);
  Kernel *k2 = LOOP(&t, "sgd", 64);
  st(k2, p, op2(k2, KI_SUB, ld(k2, p), op2(k2, KI_MUL, ld(k2, gr), cst(k2, 0.1f))), KR_NONE);
  add(&t, k2);
  Mem before = mem_new(&t, 42);
  Mem m = run_both(&t, 4, 0, 0);
  for (int i = 0; i < 4 * 64; i++)
    CHECK(F(&t, &m, y)[i] == F(&t, &before, x)[i] * 2 + F(&t, &before, x)[i]);
  mem_free(&m);
  mem_free(&before);
  t_free(&t);
}

// Bad kernels are refused with a message, not compiled into bad code.
static void expect_error(T *t, const char *msg) {
  char err[512] = "";
  CgOptions o = {2, NULL, NULL};
  CgModule *m = cg_compile(&t->p, &o, err, sizeof err);
  if (m) {
    FAIL("cg_compile accepted a bad program; expected \"%s\"\n", msg);
    cg_free(m);
  }
  CHECK_HAS(err, msg);
}

// The first instruction of k with op (and, for loads, reading buffer node n).
static KInstr *find(Kernel *k, KInstrOp op, const IrNode *n) {
  for (int i = 0; i < k->nbody; i++)
    if (k->body[i].op == op && (!n || k->bufs[k->body[i].buf] == n))
      return &k->body[i];
  unreachable();
}

static void test_errors(void) {
  T t;
  IrNode *x, *b, *y;
  build_relu(&t, &x, &b, &y);
  Kernel *k = t.p.kernels[0];
  KInstr *sum = find(k, KI_ADD, NULL), *lx = find(k, KI_LOAD, x), *lb = find(k, KI_LOAD, b);
  int a = sum->a;
  sum->a = (int)(sum - k->body) + 1;             // reads a later instruction
  expect_error(&t, "not an earlier instruction");
  sum->a = a;
  lx->idx.offset = 1;                            // one past the end of x
  expect_error(&t, "reaches elements 1..4096 of 4096");
  lx->idx.offset = 0;
  lb->idx.stride[0] = -1;                        // before the start of b
  expect_error(&t, "reaches elements -7..511 of 512");
  lb->idx.stride[0] = 0;
  k->dims[1] = N;                                // the batch, not in dimension 0
  expect_error(&t, "only dimension 0 can be");
  k->dims[1] = 512;
  k->stores[0].idx.stride[0] = 0;
  k->stores[0].reduce = KR_SUM;
  k->parallel = true;                            // threads would race on the sum
  expect_error(&t, "sums over dimension 0 of a parallel kernel");
  k->stores[0].idx.stride[0] = 512;
  k->stores[0].reduce = KR_NONE;
  t.p.buf[y->id].bytes = 0;                      // not materialized
  expect_error(&t, "has no place in memory");
  t.p.buf[y->id].bytes = MAXB * 512 * 4;
  char err[256] = "";
  CgOptions bad = {7, NULL, NULL};
  CHECK(!cg_compile(&t.p, &bad, err, sizeof err));
  CHECK_HAS(err, "optimization level");
  CgModule *m = compile_with(&t, 2, NULL);       // whole again
  cg_free(m);
  t_free(&t);
}

// Text from cg_print_llvm or cg_print_asm.
static char *print_text(const T *t, bool assembly) {
  char *buf = NULL, err[512] = "";
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  bool ok = assembly ? cg_print_asm(f, &t->p, NULL, err, sizeof err) : cg_print_llvm(f, &t->p, NULL, err, sizeof err);
  fclose(f);
  if (!ok)
    FAIL("cg_print_%s: %s\n", assembly ? "asm" : "llvm", err);
  return buf;
}

// Lines of text that contain both a and b, printed (the first few);
// returns how many.
static int grep2(const char *text, const char *a, const char *b, int print) {
  int found = 0;
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    int len = end ? (int)(end - line) : (int)strlen(line);
    char l[256];
    snprintf(l, sizeof l, "%.*s", len < 255 ? len : 255, line);
    if (strstr(l, a) && strstr(l, b) && found++ < print)
      printf("  %s\n", l);
    line = end ? end + 1 : NULL;
  }
  return found;
}

// Lines with packed op on the host's widest registers: ymm or zmm with
// AVX (LLVM prefers 256-bit vectors on many AVX-512 CPUs), else xmm.
static int packed(const char *as, const char *op) {
  if (cg_vector_width() < 8)
    return grep2(as, op, "%xmm", 2);
  return grep2(as, op, "%ymm", 2) + grep2(as, op, "%zmm", 2);
}

// The bias + relu loop must be vectorized: packed single-precision adds
// and maxes. And a row sum, whose adds LLVM may reorder, too.
static void test_print(void) {
  T t;
  IrNode *x, *b, *y;
  build_relu(&t, &x, &b, &y);
  char *ir = print_text(&t, false);
  CHECK_HAS(ir, "define void @nnc_forward(");
  CHECK_HAS(ir, " x float>");
  char *as = print_text(&t, true);
  CHECK_HAS(as, "nnc_forward:");
  printf("vectorized bias + relu (%s, %d floats a vector):\n", cg_host_cpu(), cg_vector_width());
  int adds = packed(as, "addps\t"), maxes = packed(as, "maxps\t");
  if (!adds || !maxes)
    FAIL("no packed addps and maxps in the bias + relu assembly:\n%s\n", as);
  free(ir);
  free(as);
  t_free(&t);

  t_init(&t, "row_sum");
  IrNode *w = ARENA(&t, "w", N, 300);
  IrNode *r = ARENA(&t, "r", N, 1);
  Kernel *k = LOOP(&t, "row sum", N, 300);
  st(k, r, ld(k, w), KR_SUM);
  add(&t, k);
  ir = print_text(&t, false);
  printf("vectorized row sum:\n");
  if (!grep2(ir, "fadd ", " x float>", 2))
    FAIL("the row sum was not vectorized:\n%s\n", ir);
  free(ir);
  t_free(&t);
}

// 30 kernels of a model's size and kinds (bias + activation chains, row
// sums, softmax-like, gradient sums over the batch, GEMMs, a library call):
// the compile is timed and printed, and the program must still agree with
// the C evaluation.
static void test_compile_time(void) {
  T t;
  t_init(&t, "train_step");
  IrNode *h = ARENA(&t, "h0", N, 128);
  int nk = 0;
  for (int i = 0; nk < 30; i++) {
    char name[32];
    snprintf(name, sizeof name, "layer_%d", i);
    IrNode *bias = STATE(&t, "bias", 128);
    IrNode *out = ARENA(&t, "h", N, 128);
    Kernel *k = LOOP(&t, arena_strdup(t.a, name), N, 128);
    int v = op2(k, KI_ADD, ld(k, h), ld(k, bias));
    switch (i % 5) {
    case 0: v = op2(k, KI_MAX, v, cst(k, 0)); break;
    case 1: v = op1(k, KI_TANH, v); break;
    case 2: v = op1(k, KI_SIGMOID, v); break;
    case 3: v = op2(k, KI_MUL, v, op1(k, KI_EXP, op1(k, KI_NEG, op2(k, KI_MUL, v, v)))); break;
    case 4: v = instr(k, (KInstr){.op = KI_SELECT, .a = op2(k, KI_GT, v, cst(k, 0)), .b = v,
                                  .c = op2(k, KI_MUL, v, cst(k, 0.01f))}); break;
    }
    st(k, out, v, KR_NONE);
    k->parallel = i % 2;
    add(&t, k);
    nk++;
    if (i % 4 == 3) {   // a gradient-like sum over the batch and a row sum
      IrNode *gs = STATE(&t, "gsum", 128);
      IrNode *rs = ARENA(&t, "rsum", N, 1);
      Kernel *r = LOOP(&t, "sums", N, 128);
      int e = op2(r, KI_MUL, ld(r, out), ld(r, h));
      st(r, gs, e, KR_SUM);
      st(r, rs, op1(r, KI_EXP, e), KR_SUM);
      add(&t, r);
      nk++;
    }
    if (i % 6 == 5) {   // out @ w^T, with a bias + relu epilogue in place
      IrNode *wt = STATE(&t, "w", 128, 128);
      IrNode *o2 = ARENA(&t, "mm", N, 128);
      Kernel *gk = gemm(&t, "linear", out, wt, o2, false, true, (KExtent){1, true}, (KExtent){128, false},
                        (KExtent){128, false});
      Kernel *e = LOOP(&t, "epilogue", N, 128);
      st(e, o2, op2(e, KI_MAX, op2(e, KI_ADD, ld(e, o2), ld(e, bias)), cst(e, 0)), KR_NONE);
      gk->epilogue = e;
      add(&t, gk);
      nk++;
      out = o2;
    }
    h = out;
  }
  add(&t, lib(&t, "cross_entropy", h));
  reset_calls();
  double t0 = now_seconds();
  CgModule *m = compile_with(&t, 2, NULL);
  double wall = now_seconds() - t0;
  if (m) {
    CgTimes ct = cg_times(m);
    printf("compile of %d kernels (%d loop functions): %.1f ms (build %.1f, optimize %.1f, machine code %.1f)\n",
           t.p.nkernels, nk, wall * 1e3, ct.build * 1e3, ct.optimize * 1e3, ct.codegen * 1e3);
    CHECK(ct.build > 0 && ct.optimize > 0 && ct.codegen > 0);
    cg_free(m);
  }
  Mem r = run_both(&t, 6, 1e-5, 1e-4);
  mem_free(&r);
  t_free(&t);
}

static void test_host(void) {
  const char *cpu = cg_host_cpu();
  int w = cg_vector_width();
  printf("host: %s, %d floats a vector\n", cpu, w);
  CHECK(cpu && *cpu);
  CHECK(w == 4 || w == 8 || w == 16);
}

int main(void) {
  test_host();
  test_relu_bias();
  test_every_op();
  test_unary_ranges();
  test_sums();
  test_parallel();
  test_gemm();
  test_gemm_tiles();
  test_lib();
  test_in_place();
  test_errors();
  test_print();
  test_compile_time();
  return t_finish("test_codegen");
}
