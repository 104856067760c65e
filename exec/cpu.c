// cpu.c: the cpu backend: each entry point simplified, fused, memory
// planned (pass_compile) and compiled by LLVM when the executor is built;
// a step is one call of the compiled entry function, which calls back here
// for parallel loops, GEMMs and library kernels (RtCalls).
//
// Every program of one executor shares the state block: memplan lays the
// persistent tensors out alike for every entry point, and cpu_init checks
// it. Each program is compiled from a copy of the caller's model; the
// copies are alike node for node, so the per-node tables are shared too.
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

// Elements of n for batch B.
static int64_t numel(const IrNode *n, int64_t B) { return ir_numel(n, B); }

static float *F(const Exec *ex, const IrNode *n) { return ex->buf[n->id]; }

static void cpu_tick(void *ctx, int kernel) {
  Exec *ex = ctx;
  if (ex->tick)
    ex->tick(ex->tick_arg, kernel);
}

//
// The library kernels: the parallel loops, the GEMMs and the library
// routines compiled code calls, split across the pool.
//

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
  ref_maxpool_rows(c->ex, c->n, c->B, lo, hi);
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
    KConv2d geo = ref_conv_geometry(n->src[1], n, &n->attr, c->B);
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
      geo = ref_conv_geometry(a, b, &n->attr, c->B);
    else if (n->op == IR_CONV2D_GRAD_INPUT)
      geo = ref_conv_geometry(n, b, &n->attr, c->B);
    else
      geo = ref_conv_geometry(b, n, &n->attr, c->B);
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
    KConv2d geo = ref_conv_geometry(n->src[1], n, &n->attr, B);
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
  ref_batchnorm_channels(c->ex, c->n, c->B, c->ex->training, c->aux, c0, c1);
}

static void run_batchnorm_split(Exec *ex, const IrNode *n, int64_t B) {
  float *fresh = NULL, *stats;
  if (n->op == IR_BATCHNORM)
    stats = ex->training ? ex->bn[n->id] : NULL;
  else
    stats = ref_bn_grad_stats(ex, n, B, &fresh);
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
  double l = ref_run_node(ex, n, B, ex->training, ex->lr);
  if (epi)
    epi(arena, state, B, 0, n->shape[0] == IR_N ? B : n->shape[0]);
  if (n == ex->g->loss) {
    ex->loss = l;
    ex->skip_updates = ex->training && !isfinite(l);
    if (ex->skip_updates && ex->scalars)
      ex->scalars[KS_APPLY] = 0;   // the compiled updates keep every value as it was
  }
}

//
// The backend
//

// Points buf[] at where the plan of p puts each value.
static void bind_program(Exec *ex, const KProgram *p) {
  for (int i = 0; i < ex->g->nnodes; i++) {
    const KBufInfo *b = &p->buf[i];
    if (b->space == KB_STATE)
      continue;
    ex->buf[i] = b->bytes ? ex->arena + b->offset : NULL;
  }
}

// Whether program q may share the executor's tables and state block with
// p: the same nodes, and every persistent tensor at the same place.
static bool same_layout(const KProgram *p, const KProgram *q) {
  if (p->g->nnodes != q->g->nnodes || p->state_bytes != q->state_bytes)
    return false;
  for (int i = 0; i < p->g->nnodes; i++) {
    const IrNode *a = p->g->nodes[i], *b = q->g->nodes[i];
    if (a->op != b->op || (is_state(a) && (p->buf[i].space != q->buf[i].space ||
                                           p->buf[i].offset != q->buf[i].offset)))
      return false;
  }
  return true;
}

static bool cpu_init(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  CompileOptions co = {ex->max_batch, o->fuse, NULL};
  const Compilation *first = NULL;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    if (!(ex->entries & (1u << e)))
      continue;
    Compilation *c = ex->prog[e] = pass_compile(m, e, &co);
    if (!first)
      first = c;
    else if (!same_layout(first->prog, c->prog))
      nnc_bug(__FILE__, __LINE__, "two entry points of one model compiled to different state layouts");
    ex->mod[e] = cg_compile(c->prog, NULL, err, errsz);
    if (!ex->mod[e])
      return false;
    ex->arena_bytes = c->prog->arena_bytes > ex->arena_bytes ? c->prog->arena_bytes : ex->arena_bytes;
  }
  ex->where = first->where;
  exec_tables(ex, first->model);
  ex->arena = xcalloc(1, ex->arena_bytes ? ex->arena_bytes : 1);
  ex->pool = rt_pool_new(o->threads > 0 ? o->threads : 1);
  ex->nws = rt_pool_threads(ex->pool) * CONV_SHARES_PER_THREAD;
  ex->ws = xcalloc(ex->nws, sizeof(float *));
  ex->ws_cap = xcalloc(ex->nws, sizeof(int64_t));
  ex->rt = (RtCalls){ex, cpu_parallel, cpu_sgemm, cpu_lib, cpu_tick};
  const KProgram *p = first->prog;
  ex->state = xcalloc(1, p->state_bytes ? p->state_bytes : 1);
  for (int i = 0; i < ex->g->nnodes; i++)
    if (p->buf[i].space == KB_STATE && is_state(ex->g->nodes[i]))
      ex->buf[i] = ex->state + p->buf[i].offset;
  return true;
}

static void cpu_free(Exec *ex) {
  for (int e = 0; e < ENTRY_COUNT; e++) {
    cg_free(ex->mod[e]);
    pass_compilation_free(ex->prog[e]);
  }
  free(ex->arena);
  free(ex->state);
  for (int t = 0; t < ex->nws; t++)
    free(ex->ws[t]);
  free(ex->ws);
  free(ex->ws_cap);
  free(ex->dyt);
  rt_pool_free(ex->pool);
}

static const KProgram *cpu_program(const Exec *ex, EntryKind entry, CgTimes *times) {
  if ((unsigned)entry >= ENTRY_COUNT || !ex->mod[entry])
    return NULL;
  if (times)
    *times = cg_times(ex->mod[entry]);
  return ex->prog[entry]->prog;
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

static double cpu_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr) {
  const Compilation *c = ex->prog[entry];
  const KProgram *p = c->prog;
  ex->m = c->model;   // the copy alike node for node that this program was compiled from
  ex->g = p->g;
  const IrGraph *g = ex->g;
  bind_program(ex, p);
  exec_feed(ex, B, x, y);
  ex->training = entry == ENTRY_TRAIN;
  ex->lr = lr;
  ex->loss = 0;
  ex->skip_updates = false;
  if (ex->training)
    ex->steps++;
  for (int i = 0; i < g->nnodes; i++)
    ex->done[i] = ex->need[entry][i] && ex->buf[i] != NULL;
  ex->scalars = p->scalars ? (float *)(ex->arena + p->buf[g->nnodes].offset) : NULL;
  if (ex->scalars)
    write_scalars(ex, ex->scalars, lr);
  rt_blas_threads(1);
  cg_entry(ex->mod[entry])(ex->arena, ex->state, B, &ex->rt);
  if (ex->skip_updates)
    ex->steps--;
  return ex->loss;
}

const ExecBackend exec_cpu = {
    .name = "cpu",
    .help = "fused kernels compiled by LLVM, memory planned",
    .keeps_values = false,
    .init = cpu_init,
    .free = cpu_free,
    .run = cpu_run,
    .program = cpu_program,
    .read = exec_host_read,
    .write = exec_host_write,
};
