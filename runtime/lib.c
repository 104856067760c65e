// lib.c: the calls compiled code makes (RtCalls): loops split across the
// pool, GEMMs through their micro-kernels, and the library kernels, each
// run from its RtLib descriptor alone.
//
// A library kernel's buffers are the descriptor's: offsets into the arena
// or the state, shapes with the batch left open. Kernels that keep state
// for a gradient (a max pooling's argmax, a batchnorm's batch statistics,
// a dropout's mask) keep it in the context's slot the descriptor names; a
// gradient reads its forward's slot when the forward wrote it this step,
// and recomputes otherwise, as the ref backend does.
#include "runtime.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

// Dimension d of buffer b at batch B.
static int64_t dim(const RtLibBuf *b, int d, int64_t B) { return b->shape[d] == RT_BATCH ? B : b->shape[d]; }

// Buffer i's data.
static void *ptr(const RtLib *k, int i, char *arena, char *state) {
  const RtLibBuf *b = &k->buf[i];
  return (b->space == RT_SPACE_STATE ? state : arena) + b->offset;
}

//
// The context
//

// Shares per thread of a convolution split across the pool: a thread the
// scheduler stops holds up one share, and the others take the rest.
#define CONV_SHARES_PER_THREAD 4

RtContext *rt_context_new(int threads) {
  char err[512];
  RtContext *c = rt_context_try_new(threads, err, sizeof err);
  if (!c)
    nnc_fatal("%s", err);
  return c;
}

RtContext *rt_context_try_new(int threads, char *err, size_t errsz) {
  RtPool *pool = rt_pool_try_new(threads, err, errsz);
  if (!pool)
    return NULL;
  RtContext *c = xcalloc(1, sizeof *c);
  c->pool = pool;
  c->nws = rt_pool_threads(c->pool) * CONV_SHARES_PER_THREAD;
  c->ws = xcalloc(c->nws, sizeof(float *));
  c->ws_cap = xcalloc(c->nws, sizeof(int64_t));
  c->dropout = true;
  return c;
}

void rt_context_free(RtContext *c) {
  if (!c)
    return;
  for (int i = 0; i < c->naux; i++)
    free(c->aux[i]);
  free(c->aux);
  free(c->aux_cap);
  free(c->aux_set);
  for (int t = 0; t < c->nws; t++)
    free(c->ws[t]);
  free(c->ws);
  free(c->ws_cap);
  free(c->dyt);
  free(c->wu);
  rt_pool_free(c->pool);
  free(c);
}

void rt_context_reserve(RtContext *c, int slot, int64_t bytes) {
  if (slot >= c->naux) {
    int n = slot + 1;
    c->aux = xrealloc(c->aux, sizeof(void *) * n);
    c->aux_cap = xrealloc(c->aux_cap, sizeof(int64_t) * n);
    c->aux_set = xrealloc(c->aux_set, sizeof(bool) * n);
    for (int i = c->naux; i < n; i++) {
      c->aux[i] = NULL;
      c->aux_cap[i] = 0;
      c->aux_set[i] = false;
    }
    c->naux = n;
  }
  if (bytes > c->aux_cap[slot]) {
    free(c->aux[slot]);
    c->aux[slot] = xcalloc(1, bytes);
    c->aux_cap[slot] = bytes;
  }
}

void rt_context_begin_step(RtContext *c) {
  if (c->naux)
    memset(c->aux_set, 0, sizeof(bool) * c->naux);
  c->loss = 0;
  c->skip_updates = false;
}

void rt_step_scalars(float *k, const RtStep *s, int64_t steps) {
  double t = (double)steps, lr = s->lr;
  k[KS_NEG_LR] = (float)-lr;
  k[KS_FIRST] = steps == 1 ? 1.0f : 0.0f;
  k[KS_NEG_STEP_SIZE] = (float)-(lr / (1.0 - pow(s->beta1, t)));
  k[KS_BC2_SQRT] = (float)sqrt(1.0 - pow(s->beta2, t));
  k[KS_DECAY] = (float)(1.0 - lr * s->weight_decay);
  k[KS_APPLY] = 1;
  k[KS_NEG_CLR] = k_adagrad_neg_clr(lr, s->lr_decay, steps);
}

double rt_context_run(RtContext *c, RtEntryFn fn, const RtCalls *calls, char *arena, char *state, int64_t B,
                      const RtStep *s, int64_t *steps) {
  if (s->training)
    ++*steps;
  rt_context_begin_step(c);
  c->training = s->training;
  c->dropout = s->dropout;
  c->lr = s->lr;
  c->steps = *steps;
  c->scalars = s->scalars;
  if (s->scalars)
    rt_step_scalars(s->scalars, s, *steps);
  rt_blas_threads(1);
  fn(arena, state, B, calls);
  if (c->skip_updates)
    --*steps;
  return c->loss;
}

// The slot a kernel keeps its state in, marked written.
static void *aux_out(RtContext *c, const RtLib *k) {
  if (k->aux < 0 || k->aux >= c->naux || c->aux_cap[k->aux] < k->aux_bytes)
    nnc_bug(__FILE__, __LINE__, "a library kernel's slot was not reserved");
  c->aux_set[k->aux] = true;
  return c->aux[k->aux];
}

// The forward's slot a gradient reads, or NULL when the forward did not
// write it this step.
static void *aux_in(const RtContext *c, const RtLib *k) {
  return k->aux_from >= 0 && k->aux_from < c->naux && c->aux_set[k->aux_from] ? c->aux[k->aux_from] : NULL;
}

//
// Loops and GEMMs
//

// Runs a compiled loop over rows [lo, hi) on a pool thread.
typedef struct LoopCall {
  RtLoopFn fn;
  char *arena, *state;
  int64_t B;
} LoopCall;

static void loop_chunk(void *arg, int64_t lo, int64_t hi) {
  LoopCall *c = arg;
  c->fn(c->arena, c->state, c->B, lo, hi, NULL);
}

static void ctx_parallel(void *ctx, RtLoopFn fn, char *arena, char *state, int64_t B, int64_t extent) {
  RtContext *c = ctx;
  LoopCall call = {fn, arena, state, B};
  rt_pool_run(c->pool, loop_chunk, &call, extent);
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

// B (N, K) into bt (K, N), in blocks of 16 rows of B over the pool.
typedef struct TransposeCall {
  float *dst;
  const float *src;
  int64_t rows, cols;
} TransposeCall;

static void transpose_part(void *arg, int64_t lo, int64_t hi) {
  const TransposeCall *t = arg;
  k_transpose_rows(t->dst, t->src, t->rows, t->cols, 16 * lo, 16 * hi < t->rows ? 16 * hi : t->rows);
}

static void ctx_sgemm(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *Bm,
                      float beta, float *C, const RtGemmKernels *uk) {
  RtContext *x = ctx;
  GemmCall c = {ta, tb, M, N, K, A, Bm, beta, C, M > N, uk};
  int64_t blocks = ((c.rows ? M : N) + GEMM_BLOCK - 1) / GEMM_BLOCK;
  if (2.0 * M * N * K < GEMM_SPLIT_FLOPS && 4 * K * N < GEMM_SPLIT_BYTES) {
    gemm_part(&c, 0, blocks);
    return;
  }
  int64_t block_flops = 2 * GEMM_BLOCK * (c.rows ? N : M) * K;
  int64_t grain = block_flops > 0 ? (GEMM_CHUNK_FLOPS + block_flops - 1) / block_flops : blocks;
  if (c.rows && tb && uk && uk->tile && blocks > grain && (K < RT_DOT_MIN_K || !(uk->dot || uk->row))) {
    // B stored (N, K) would be packed into (K, N) rows by every chunk of
    // rows (a linear layer over 28,000 rows: 875 times); transposed once
    // here instead, the chunks read it in place, with the same arithmetic
    TransposeCall t = {k_thread_scratch(K_SCRATCH_BT, K * N), Bm, N, K};
    rt_pool_run(x->pool, transpose_part, &t, (N + 15) / 16);   // (on one thread: 7 % of mlp's forward)
    c.B = t.dst;
    c.tb = 0;
  }
  rt_pool_run_grain(x->pool, gemm_part, &c, blocks, grain);
}

// B of a region's products packed in panels, once per thread and region
// (K_PANEL_SETS of them, the oldest given up first): B has no batch
// dimension, so no kernel of the region writes it.
typedef struct Panels {
  const float *b;
  bool tb;
  int64_t K, N, tn;
  uint64_t region;             // RtContext.region when packed; 0: none
} Panels;
static _Thread_local Panels panels[K_PANEL_SETS];
static _Atomic uint64_t regions_run;   // by every context: each region run has a number of its own
static _Thread_local int panels_next;

static const float *region_panels(RtContext *x, const float *B, bool tb, int64_t K, int64_t N, int64_t tn) {
  for (int i = 0; i < K_PANEL_SETS; i++) {
    const Panels *s = &panels[i];
    if (s->region == x->region && s->b == B && s->tb == tb && s->K == K && s->N == N && s->tn == tn)
      return k_thread_scratch(K_SCRATCH_PANELS + i, 0);
  }
  int i = panels_next;
  panels_next = (panels_next + 1) % K_PANEL_SETS;
  float *p = k_thread_scratch(K_SCRATCH_PANELS + i, (N + tn - 1) / tn * tn * K);
  k_pack_panels(p, B, tb, tb ? K : N, K, N, tn);
  panels[i] = (Panels){B, tb, K, N, tn, x->region};
  return p;
}

// A region's blocks of rows: at most `block` rows each (the compiler's
// choice: passes/region.c), and as many for every thread. A region with
// less than REGION_SPLIT_BYTES to touch runs on the calling thread, block
// after block all the same (an LSTM's forward pass at batch 1000 on one
// thread: 0.7 of the time of one block of all 1000 rows).
#define REGION_SPLIT_BYTES (64 << 10)

typedef struct RegionCall {
  RtRegionFn fn;
  char *arena, *state;
  int64_t B, rows;             // block b: rows [b * rows, (b + 1) * rows) of B
  const RtCalls *rt;
  int64_t shares;              // shared products (rows 0): block b is share b of these
  int64_t local_bytes;         // each thread's local rows
} RegionCall;

static void region_part(void *arg, int64_t lo, int64_t hi) {
  const RegionCall *c = arg;
  char *local = c->local_bytes ? (char *)k_thread_scratch(K_SCRATCH_LOCAL, (c->local_bytes + 3) / 4) : NULL;
  for (int64_t b = lo; b < hi; b++) {
    int64_t r0 = b * c->rows, r1 = r0 + c->rows < c->B ? r0 + c->rows : c->B;
    if (c->shares)
      c->fn(c->arena, c->state, c->B, b, c->shares, c->rt, NULL);
    else
      c->fn(c->arena, c->state, c->B, r0, r1, c->rt, local);
  }
}

static void ctx_region(void *ctx, RtRegionFn fn, char *arena, char *state, int64_t B, int64_t row_bytes,
                       int64_t block, int64_t local_bytes, const RtCalls *rt) {
  RtContext *x = ctx;
  int64_t threads = rt_pool_threads(x->pool);
  if (B <= 0)
    return;
  int64_t most = block > 0 ? block : 1;   // (local rows hold this many)
  bool split = threads > 1 && B >= 2 && B * row_bytes >= REGION_SPLIT_BYTES;
  int64_t ways = split ? threads : 1;
  int64_t blocks = ways * ((B + ways * most - 1) / (ways * most));
  int64_t rows = (B + blocks - 1) / blocks;
  RegionCall c = {fn, arena, state, B, rows, rt, 0, local_bytes};
  // B's panels packed for an earlier region are stale (an update may have
  // come between, or another executor's state at the same address)
  x->region = atomic_fetch_add(&regions_run, 1) + 1;
  if (split)
    rt_pool_run(x->pool, region_part, &c, (B + rows - 1) / rows);
  else
    region_part(&c, 0, (B + rows - 1) / rows);
}

static void ctx_gemm_rows(void *ctx, int tb, int64_t N, int64_t K, const float *A, const float *Bm, float beta,
                          float *C, const RtGemmKernels *uk, int64_t row0, int64_t rows) {
  if (uk->tile && uk->tile_n > 0 && (!tb || K < RT_DOT_MIN_K)) {   // (else dot products read B (N, K) in place)
    const float *p = region_panels(ctx, Bm, tb, K, N, uk->tile_n);
    k_gemm_micro_panels(uk, rows, N, K, A + row0 * K, K, p, beta != 0.0f, C + row0 * N, N, row0, 0);
    return;
  }
  k_gemm_micro(uk, false, tb, rows, N, K, A + row0 * K, K, Bm, tb ? K : N, beta != 0.0f, C + row0 * N, N, row0, 0);
}

static void ctx_shared(void *ctx, RtRegionFn fn, char *arena, char *state, int64_t B, int64_t work,
                       const RtCalls *rt) {
  RtContext *x = ctx;
  int64_t threads = rt_pool_threads(x->pool);
  RegionCall c = {fn, arena, state, B, 0, rt, threads > 1 && 2 * work >= GEMM_SPLIT_FLOPS ? threads : 1, 0};
  if (c.shares > 1)
    rt_pool_run(x->pool, region_part, &c, c.shares);
  else
    region_part(&c, 0, 1);
}

static void ctx_gemm_share(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                           const float *Bm, float beta, float *C, const RtGemmKernels *uk, int64_t share,
                           int64_t shares) {
  (void)ctx;
  GemmCall c = {ta, tb, M, N, K, A, Bm, beta, C, M > N, uk};
  int64_t blocks = ((c.rows ? M : N) + GEMM_BLOCK - 1) / GEMM_BLOCK;
  gemm_part(&c, share * blocks / shares, (share + 1) * blocks / shares);
}

static void ctx_lib_rows(void *ctx, const RtLib *k, char *arena, char *state, int64_t B, int64_t lo, int64_t hi,
                         char *local) {
  rt_lib_rows(ctx, k, arena, state, B, lo, hi, local);
}

static void ctx_tick(void *ctx, int kernel) {
  RtContext *c = ctx;
  if (c->tick)
    c->tick(c->tick_arg, kernel);
}

static void ctx_lib(void *ctx, const RtLib *k, char *arena, char *state, int64_t B, RtLoopFn epi) {
  rt_lib_run(ctx, k, arena, state, B, epi);
}

RtCalls rt_context_calls(RtContext *c) {
  return (RtCalls){c, ctx_parallel, ctx_sgemm, ctx_lib, ctx_tick, ctx_region, ctx_gemm_rows, ctx_lib_rows,
                   ctx_shared, ctx_gemm_share};
}

//
// Geometry, from the descriptor's shapes and settings
//

static KConv2d conv_geometry(const RtLibBuf *x, const RtLibBuf *w, const int64_t *a, int64_t B) {
  return (KConv2d){.N = dim(x, 0, B), .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                   .KH = w->shape[2], .KW = w->shape[3], .sh = a[0], .sw = a[1], .ph = a[2], .pw = a[3],
                   .dh = a[4], .dw = a[5], .G = a[6]};
}

// The geometry of a convolution kernel: x and w are the input and the
// weight, whichever buffers hold them (or whose shapes they have).
static KConv2d conv_of(const RtLib *k, int64_t B) {
  const RtLibBuf *b = k->buf, *r = &k->buf[k->nbufs - 1];
  switch (k->kind) {
  case RL_CONV2D: return conv_geometry(&b[0], &b[1], k->i, B);
  case RL_CONV2D_GRAD_INPUT: case RL_CONV2D_GRAD_INPUT_POOLED: return conv_geometry(r, &b[1], k->i, B);
  default: return conv_geometry(&b[1], r, k->i, B);
  }
}

static KPool2d pool_geometry(const RtLibBuf *x, const RtLib *k, int64_t B) {
  const int64_t *a = k->i;
  bool max = k->kind == RL_MAXPOOL || k->kind == RL_MAXPOOL_GRAD;
  return (KPool2d){.N = dim(x, 0, B), .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .kh = a[0],
                   .kw = a[1], .sh = a[2], .sw = a[3], .ph = a[4], .pw = a[5], .dh = max ? a[6] : 1,
                   .dw = max ? a[7] : 1};
}

// [outer, C, inner] around dimension axis of b.
static void around_axis(const RtLibBuf *b, int axis, int64_t B, int64_t *outer, int64_t *C, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++)
    *outer *= dim(b, i, B);
  *C = dim(b, axis, B);
  for (int i = axis + 1; i < b->ndim; i++)
    *inner *= dim(b, i, B);
}

// Batchnorm sizes: [N, C, HW] for x [N, C] or [N, C, H, W].
static void bn_sizes(const RtLibBuf *x, int64_t B, int64_t *N, int64_t *C, int64_t *HW) {
  *N = dim(x, 0, B);
  *C = x->shape[1];
  *HW = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
}

//
// Library kernels, split across the pool
//

// A library kernel split across the pool: k at batch B, in T shares.
typedef struct SplitCall {
  RtContext *c;
  const RtLib *k;
  char *arena, *state;
  int64_t B;           // the batch
  int64_t N;           // samples of the first operand (B where it is batched)
  int T;
  uint64_t key;        // a dropout mask's
  int64_t first;       // a dropout's or noise's: the index its element 0 draws at
  float *aux;          // a batchnorm's statistics; a weight gradient's dy, transposed
  void *saved;         // a max pooling's argmax, a dropout's mask
  KGemmFn gemm;        // a convolution's GEMM (NULL: k_gemm on the calling thread)
  RtLoopFn epi;        // a convolution's epilogue, run on each share of rows once computed, or NULL
} SplitCall;

#define P(s, i) ((float *)ptr((s)->k, (i), (s)->arena, (s)->state))

// The batch mean and inverse standard deviation of x, exactly as the
// training forward computes them.
static void bn_stats(const RtLibBuf *xb, const float *x, int64_t B, float eps, float *mean, float *invstd) {
  int64_t N, C, HW;
  bn_sizes(xb, B, &N, &C, &HW);
  k_batchnorm_batch_stats(mean, invstd, x, N, C, HW, eps);
}

// Batchnorm (training: with the batch statistics, saved into stats) or one
// of its gradients (with the statistics stats), on channels [c0, c1) only.
// A gradient's part of its output is zeroed first (its kernel accumulates).
static void batchnorm_share(void *arg, int64_t c0, int64_t c1) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  const RtLibBuf *xb = &k->buf[k->kind == RL_BATCHNORM ? 0 : 1];
  int64_t N, C, HW;
  bn_sizes(xb, s->B, &N, &C, &HW);
  float *out = P(s, k->nbufs - 1), *mean = s->aux, *invstd = s->aux ? s->aux + C : NULL;
  if (k->kind == RL_BATCHNORM) {
    float eps = (float)k->f[0];
    if (s->c->training)
      k_batchnorm_forward_range(out, mean, invstd, P(s, 3), P(s, 4), P(s, 0), P(s, 1), P(s, 2), N, C, HW, eps,
                                (float)k->f[1], c0, c1);
    else
      k_batchnorm_forward_eval_range(out, P(s, 0), P(s, 1), P(s, 2), P(s, 3), P(s, 4), N, C, HW, eps, c0, c1);
    return;
  }
  const float *g = P(s, 0);
  if (k->kind == RL_BATCHNORM_GRAD) {
    for (int64_t i = 0; i < N; i++)
      memset(out + (i * C + c0) * HW, 0, sizeof(float) * (c1 - c0) * HW);
    k_batchnorm_backward_range(out, NULL, NULL, g, P(s, 1), mean, invstd, P(s, 2), N, C, HW, c0, c1);
  } else {
    memset(out + c0, 0, sizeof(float) * (c1 - c0));
    k_batchnorm_backward_range(NULL, out, NULL, g, P(s, 1), mean, invstd, NULL, N, C, HW, c0, c1);
  }
}

static void run_batchnorm(SplitCall *s) {
  const RtLib *k = s->k;
  float *fresh = NULL;
  if (k->kind == RL_BATCHNORM) {
    s->aux = s->c->training ? aux_out(s->c, k) : NULL;
  } else if (!(s->aux = aux_in(s->c, k))) {   // the statistics again, as the forward computes them
    int64_t C = k->buf[1].shape[1];
    s->aux = fresh = xmalloc(sizeof(float) * 2 * C);
    bn_stats(&k->buf[1], P(s, 1), s->B, (float)k->f[0], fresh, fresh + C);
  }
  rt_pool_run(s->c->pool, batchnorm_share, s, k->buf[k->kind == RL_BATCHNORM ? 0 : 1].shape[1]);
  free(fresh);
}

// Max pooling, or its gradient, for samples [lo, hi): the forward keeps
// each window's argmax where a gradient reads it; the gradient (into a
// zeroed dx) routes through the forward's argmax, or finds it again.
static void maxpool_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  if (k->kind == RL_MAXPOOL) {
    KPool2d geo = pool_geometry(&k->buf[0], k, s->B);
    geo.N = hi - lo;
    int64_t in = rt_lib_numel(&k->buf[0], 1), out = rt_lib_numel(&k->buf[1], 1);
    k_maxpool2d_forward_fast(P(s, 1) + lo * out, s->saved ? (int32_t *)s->saved + lo * out : NULL, P(s, 0) + lo * in,
                        &geo);
    return;
  }
  KPool2d geo = pool_geometry(&k->buf[1], k, s->B);
  geo.N = hi - lo;
  int64_t in = rt_lib_numel(&k->buf[1], 1), out = rt_lib_numel(&k->buf[0], 1), n = (hi - lo) * out;
  float *dx = P(s, 2) + lo * in;
  if (s->saved) {
    k_maxpool2d_backward_fast(dx, P(s, 0) + lo * out, (const int32_t *)s->saved + lo * out, &geo);
    return;
  }
  memset(dx, 0, sizeof(float) * (hi - lo) * in);
  float *y = xmalloc(sizeof(float) * n);
  int32_t *at = xmalloc(sizeof(int32_t) * n);
  k_maxpool2d_forward_fast(y, at, P(s, 1) + lo * in, &geo);
  k_maxpool2d_backward(dx, P(s, 0) + lo * out, at, &geo);
  free(y);
  free(at);
}

static void run_maxpool(SplitCall *s) {
  const RtLib *k = s->k;
  if (k->kind == RL_MAXPOOL)   // only a gradient reads the argmax
    s->saved = s->c->training && k->aux >= 0 ? aux_out(s->c, k) : NULL;
  else
    s->saved = aux_in(s->c, k);
  rt_pool_run(s->c->pool, maxpool_share, s, s->N);
}

// Share s's buffer, at least n floats.
static float *share_ws(RtContext *c, int s, int64_t n) { return k_grow(&c->ws[s], &c->ws_cap[s], n); }

// A convolution or one of its gradients, on share t of T of the batch:
// images [B*t/T, B*(t+1)/T), a few at a time (their cols within
// CONV_CHUNK_FLOATS, so that they stay in cache between im2col and the
// GEMM) through the running thread's im2col scratch. The weight gradient of
// each share goes to the share's buffer; the caller sums the shares in
// order, so the sum is the same whichever thread ran which share.
#define CONV_CHUNK_FLOATS (256 * 1024)
#define CONV_EPI_FLOATS (64 * 1024)   // a forward by image: outputs of a call, in L2 for the epilogue

// Images [lo, hi) of the batch, on the calling thread; a weight gradient
// adds into dw.
static void conv_images(const SplitCall *s, int64_t lo, int64_t hi, float *dw) {
  const RtLib *k = s->k;
  int r = k->nbufs - 1;
  KConv2d geo = conv_of(k, s->B);
  geo.N = 1;
  int64_t in = geo.C * geo.H * geo.W, out = rt_lib_numel(&k->buf[k->kind == RL_CONV2D ? r : 0], 1);
  int64_t per = k_conv2d_scratch(&geo);   // (none: a product over channels, the images at once)
  int64_t chunk = per == 0 ? (hi - lo > 1 ? hi - lo : 1) : CONV_CHUNK_FLOATS / per > 1 ? CONV_CHUNK_FLOATS / per : 1;
  int pass = k->kind == RL_CONV2D ? 0 : k->kind == RL_CONV2D_GRAD_INPUT ? 1 : 2;
  bool by_image = !s->gemm && k_conv2d_by_image(&geo, pass);
  if (by_image)   // its weights packed once for many images; a forward's output left in cache for its epilogue
    chunk = pass == 0 && s->epi ? (CONV_EPI_FLOATS / out > 1 ? CONV_EPI_FLOATS / out : 1) : hi - lo > 1 ? hi - lo : 1;
  int64_t pieces = (hi - lo + chunk - 1) / chunk;
  chunk = pieces > 0 ? (hi - lo + pieces - 1) / pieces : 1;   // pieces of even size: 4 + 4, not 7 + 1
  geo.N = by_image ? 1 : hi - lo < chunk ? hi - lo : chunk;   // (by image: scratch for one is for any)
  float *ws = k_thread_scratch(K_SCRATCH_COLS, k_conv2d_scratch(&geo));
  for (int64_t i = lo; i < hi; i += chunk) {   // images [i, i + geo.N)
    geo.N = hi - i < chunk ? hi - i : chunk;
    if (k->kind == RL_CONV2D) {
      k_conv2d_forward_ws(P(s, r) + i * out, P(s, 0) + i * in, P(s, 1), k->nbufs == 4 ? P(s, 2) : NULL, &geo, ws,
                          s->gemm);
      if (s->epi)   // while these images are still in cache
        s->epi(s->arena, s->state, s->B, i, i + geo.N, NULL);
    } else if (k->kind == RL_CONV2D_GRAD_INPUT) {
      float *dx = P(s, r) + i * in;
      memset(dx, 0, sizeof(float) * geo.N * in);
      k_conv2d_backward_ws(dx, NULL, NULL, P(s, 0) + i * out, NULL, P(s, 1), &geo, ws, s->gemm);
    } else {
      k_conv2d_backward_ws(NULL, dw, NULL, P(s, 0) + i * out, P(s, 1) + i * in, NULL, &geo, ws, s->gemm);
    }
  }
}

static void conv_share(void *arg, int64_t t, int64_t t_end) {
  const SplitCall *s = arg;
  RtContext *c = s->c;
  const RtLib *k = s->k;
  int r = k->nbufs - 1;
  for (; t < t_end && s->aux; t++) {   // a weight gradient by input channel
    KConv2d geo = conv_of(k, s->B);
    int64_t c0 = geo.C * t / s->T, c1 = geo.C * (t + 1) / s->T;
    int64_t NP = s->N * (rt_lib_numel(&k->buf[0], 1) / geo.O);
    float *ws = share_ws(c, (int)t, (c1 - c0) * geo.KH * geo.KW * NP);
    k_conv2d_grad_weight_channels(P(s, r), s->aux, P(s, 1), &geo, c0, c1, ws);
  }
  for (; t < t_end; t++) {
    float *dw = NULL;
    if (k->kind == RL_CONV2D_GRAD_WEIGHT) {   // the share's gradient
      int64_t wn = rt_lib_numel(&k->buf[r], 1);
      dw = share_ws(c, (int)t, wn);
      memset(dw, 0, sizeof(float) * wn);
    }
    conv_images(s, s->N * t / s->T, s->N * (t + 1) / s->T, dw);
  }
}

// A GEMM split across the pool of the convolution running on the calling
// thread (a batch smaller than the pool: the images cannot be shared out).
static _Thread_local RtContext *gemm_context;

static void pool_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const float *Bm, float beta, float *C) {
  if (alpha != 1.0f) {
    k_gemm(ta, tb, M, N, K, alpha, A, Bm, beta, C);
    return;
  }
  ctx_sgemm(gemm_context, ta, tb, M, N, K, A, Bm, beta, C, NULL);
}

// A weight gradient with few output positions per thread's part of the
// images (P*B/T under this) splits by input channel instead: summing per
// image shares would write and add a whole (O, C*KH*KW) gradient per share
// for a product of little depth, and the channels' product over the whole
// batch runs near the GEMM's peak where the image tiles do not (one core,
// resnet18's 4x4 layers at batch 64: 3.7 against 4.4 ms; its 7x7 layers,
// 1568 positions a thread, stay by image: 2.6 against 3.1 ms).
#define CONV_DW_MIN_DEPTH 1024
#define CONV_SUM_SPLIT 32768   // the shares' sum runs on the calling thread under this many additions

// The shares of a convolution over the pool of T threads, for B images:
// CONV_SHARES_PER_THREAD a thread, fewer for a small batch (a weight
// gradient of a batch under T: T shares, some empty).
static int conv_shares(int T, int64_t B) {
  int S = T * CONV_SHARES_PER_THREAD;
  return T == 1 ? 1 : S <= B ? S : B > T ? (int)B : T;
}

// The weight gradient's elements [lo, hi): the shares' partial sums, added
// in share order.
static void conv_dw_sum(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  float *dw = P(s, s->k->nbufs - 1);
  memset(dw + lo, 0, sizeof(float) * (hi - lo));
  for (int t = 0; t < s->T; t++) {
    const float *part = s->c->ws[t];
    for (int64_t i = lo; i < hi; i++)
      dw[i] += part[i];
  }
}

// The weight gradient, from its s->T shares' partial sums: on the calling
// thread when small, else over the pool.
static void sum_dw_shares(SplitCall *s) {
  int64_t wn = rt_lib_numel(&s->k->buf[s->k->nbufs - 1], 1);
  if (wn * s->T < CONV_SUM_SPLIT)
    conv_dw_sum(s, 0, wn);
  else
    rt_pool_run(s->c->pool, conv_dw_sum, s, wn);
}

// A forward or input gradient whose weights outweigh the columns of its
// whole batch (resnet18's deepest layers: 512 output channels, 64 output
// positions at batch 64) runs as one share whose GEMMs the pool splits,
// where shares of images would each read all the weights again (8 x 4.7 MB
// a step) for a product only as wide as their images: here where the
// output channels are more than CONV_HEAVY times the output positions of
// the batch. (Not at 2x2 planes with 256 channels: there im2col, on one
// thread in one share, would cost more than the weights' reads.)
#define CONV_HEAVY 4

// A forward or input gradient with its weights unrolled over planes
// smaller than its window (k_conv2d_unrolled): the pool unrolls them by
// output channel, then one product over the whole batch, which the pool
// splits.
static void unroll_share(void *arg, int64_t o0, int64_t o1) {
  const SplitCall *s = arg;
  KConv2d geo = conv_of(s->k, s->B);
  k_conv2d_unroll_weights(s->aux, P(s, 1), &geo, o0, o1);
}

static void run_conv_unrolled(SplitCall *s) {
  RtContext *c = s->c;
  const RtLib *k = s->k;
  int r = k->nbufs - 1;
  KConv2d geo = conv_of(k, s->N);
  s->aux = k_grow(&c->wu, &c->wu_cap, k_conv2d_unrolled_size(&geo));
  rt_pool_run(c->pool, unroll_share, s, geo.O);
  gemm_context = c;
  if (k->kind == RL_CONV2D) {
    k_conv2d_forward_unrolled(P(s, r), P(s, 0), s->aux, k->nbufs == 4 ? P(s, 2) : NULL, &geo, pool_gemm);
    if (s->epi)
      s->epi(s->arena, s->state, s->B, 0, s->N, NULL);
  } else {
    memset(P(s, r), 0, sizeof(float) * rt_lib_numel(&k->buf[r], 1) * s->N);
    k_conv2d_grad_input_unrolled(P(s, r), P(s, 0), s->aux, &geo, pool_gemm);
  }
}

// A convolution or one of its gradients over the pool (epi: the forward's
// epilogue, or NULL).
static void run_conv(SplitCall *s) {
  RtContext *c = s->c;
  const RtLib *k = s->k;
  int64_t B = s->N;   // images
  int T = rt_pool_threads(c->pool), S = conv_shares(T, B);
  s->T = S;
  KConv2d whole = conv_of(k, B);
  if (k_conv2d_unrolled(&whole) && k->kind != RL_CONV2D_GRAD_WEIGHT) {
    run_conv_unrolled(s);
    return;
  }
  int64_t planes = rt_lib_numel(&k->buf[k->kind == RL_CONV2D ? k->nbufs - 1 : 0], 1) / whole.O * B;
  // (the output positions of all images, against the weights' rows; NNC_NO_AVX2: the old split)
  bool heavy = CONV_HEAVY * planes < whole.O && k_avx2();
  if ((B < T || heavy) && k->kind != RL_CONV2D_GRAD_WEIGHT) {   // one share, its GEMMs split
    gemm_context = c;
    s->T = 1;
    s->gemm = pool_gemm;
    conv_share(s, 0, 1);
    return;
  }
  if (k->kind == RL_CONV2D_GRAD_WEIGHT && T > 1) {
    KConv2d geo = conv_of(k, B);
    int64_t Pn = rt_lib_numel(&k->buf[0], 1) / geo.O;
    if (Pn * B / T < CONV_DW_MIN_DEPTH && geo.C >= T && geo.G <= 1) {
      s->aux = k_grow(&c->dyt, &c->dyt_cap, geo.O * B * Pn);
      k_conv2d_dy_t(s->aux, P(s, 0), &geo);
      s->T = geo.C < T * CONV_SHARES_PER_THREAD ? (int)geo.C : T * CONV_SHARES_PER_THREAD;
      rt_pool_run(c->pool, conv_share, s, s->T);
      return;
    }
    int64_t deep = Pn * B / CONV_DW_MIN_DEPTH;
    S = S <= deep ? S : deep > T ? (int)deep : T;
    s->T = S;
  }
  rt_pool_run(c->pool, conv_share, s, S);
  if (k->kind == RL_CONV2D_GRAD_WEIGHT)
    sum_dw_shares(s);
}

// An input gradient through a max pooling's argmax: images [lo, hi).
static void pooled_input_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  KConv2d geo = conv_of(k, s->B);
  int64_t PP = rt_lib_numel(&k->buf[0], 1) / geo.O, CHW = geo.C * geo.H * geo.W;
  geo.N = hi - lo;
  float *dx = P(s, 2) + lo * CHW;
  memset(dx, 0, sizeof(float) * geo.N * CHW);
  float *ws = k_thread_scratch(K_SCRATCH_COLS, k_conv2d_pooled_input_scratch(&geo, PP));
  k_conv2d_grad_input_pooled(dx, P(s, 0) + lo * geo.O * PP, (const int32_t *)s->saved + lo * geo.O * PP, PP, P(s, 1),
                             &geo, ws);
}

// A weight gradient through a max pooling's argmax, share t of T: its
// images into the share's buffer (summed in share order by conv_dw_sum).
static void pooled_share(void *arg, int64_t t, int64_t t_end) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  int64_t wn = rt_lib_numel(&k->buf[2], 1), PP = rt_lib_numel(&k->buf[0], 1);
  KConv2d geo = conv_of(k, s->B);
  PP /= geo.O;   // a plane of the pooled gradient
  for (; t < t_end; t++) {
    int64_t lo = s->N * t / s->T, hi = s->N * (t + 1) / s->T;
    float *dw = share_ws(s->c, (int)t, wn);
    memset(dw, 0, sizeof(float) * wn);
    if (hi <= lo)
      continue;
    geo.N = hi - lo;
    float *ws = k_thread_scratch(K_SCRATCH_COLS, k_conv2d_pooled_scratch(&geo, PP));
    k_conv2d_grad_weight_pooled(dw, P(s, 0) + lo * geo.O * PP, (const int32_t *)s->saved + lo * geo.O * PP, PP,
                                P(s, 1) + lo * geo.C * geo.H * geo.W, &geo, ws);
  }
}

static void run_conv_pooled(SplitCall *s) {
  RtContext *c = s->c;
  s->saved = aux_in(c, s->k);
  if (!s->saved)
    nnc_bug(__FILE__, __LINE__, "a pooled gradient ran before its max pooling kept the argmax");
  if (s->k->kind == RL_CONV2D_GRAD_INPUT_POOLED) {   // each image's dx its own
    rt_pool_run(c->pool, pooled_input_share, s, s->N);
    return;
  }
  s->T = conv_shares(rt_pool_threads(c->pool), s->N);
  rt_pool_run(c->pool, pooled_share, s, s->T);
  sum_dw_shares(s);
}

// The index that element 0 of a random layer's result b has in the larger
// batch whose draws this one shares (RtContext.first_sample); 0 for a
// result without the batch dimension.
static int64_t first_element(const RtContext *c, const RtLibBuf *b) {
  return b->ndim > 0 && b->shape[0] == RT_BATCH ? c->first_sample * rt_lib_numel(b, 1) : 0;
}

// Dropout, or its gradient, on elements [lo, hi) of the batch (the mask of
// an element depends only on the call's key and the element's index).
static void dropout_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  float p = (float)s->k->f[0];
  if (s->k->kind == RL_DROPOUT) {
    k_dropout_forward_fast(P(s, 1) + lo, (uint8_t *)s->saved + lo, P(s, 0) + lo, hi - lo, p, s->key, s->first + lo);
    return;
  }
  float *dx = P(s, 1) + lo;
  memset(dx, 0, sizeof(float) * (hi - lo));
  k_dropout_backward(dx, P(s, 0) + lo, (const uint8_t *)s->saved + lo, hi - lo, p);
}

static void run_dropout(SplitCall *s) {
  const RtLib *k = s->k;
  int64_t n = rt_lib_numel(&k->buf[1], s->B);
  if (k->kind == RL_DROPOUT)
    s->saved = s->c->training && s->c->dropout ? aux_out(s->c, k) : NULL;
  else
    s->saved = aux_in(s->c, k);
  if (!s->saved) {   // no mask this step: the identity
    memcpy(P(s, 1), P(s, 0), sizeof(float) * n);
    return;
  }
  if (k->kind == RL_DROPOUT)
    s->key = k_dropout_key((float)k->f[0], s->c->rng);
  s->first = first_element(s->c, &k->buf[1]);
  rt_pool_run(s->c->pool, dropout_share, s, n);
}

// The rows of a layer normalization: D values of the last i[0] dimensions each.
static int64_t layernorm_row(const RtLib *k) {
  const RtLibBuf *x = &k->buf[k->nbufs - 1];
  int64_t D = 1;
  for (int i = x->ndim - (int)k->i[0]; i < x->ndim; i++)
    D *= x->shape[i];
  return D;
}

// Layer normalization, or its gradient, on rows [lo, hi): each row's sums
// are its own, in order, so any split gives the same bytes.
static void layernorm_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  int64_t D = layernorm_row(k);
  if (k->kind == RL_LAYERNORM)
    k_layernorm_fast(P(s, 1) + lo * D, P(s, 0) + lo * D, hi - lo, D, k->f[0]);
  else
    k_layernorm_backward_fast(P(s, 2) + lo * D, P(s, 0) + lo * D, P(s, 1) + lo * D, hi - lo, D, k->f[0]);
}

static void run_layernorm(SplitCall *s) {
  const RtLib *k = s->k;
  int64_t D = layernorm_row(k);
  rt_pool_run_grain(s->c->pool, layernorm_share, s, rt_lib_numel(&k->buf[0], s->B) / D, 64);
}

// Softmax, log-softmax or a gradient on rows [lo, hi) of (outer, C, inner):
// each row's sums are its own, so any split gives the same bytes.
static void softmax_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  int r = k->nbufs - 1;
  int64_t outer, C, inner;
  around_axis(&k->buf[r], (int)k->i[0], s->B, &outer, &C, &inner);
  int64_t at = lo * C * inner, n = hi - lo;
  float *out = P(s, r) + at;
  const float *a = P(s, 0) + at, *b = k->nbufs == 3 ? P(s, 1) + at : NULL;
  switch (k->kind) {
  case RL_SOFTMAX: k_softmax_fast(out, a, n, C, inner); return;
  case RL_LOG_SOFTMAX: k_log_softmax_forward(out, a, n, C, inner); return;
  default: break;
  }
  memset(out, 0, sizeof(float) * n * C * inner);
  if (k->kind == RL_SOFTMAX_GRAD)
    k_softmax_backward(out, a, b, n, C, inner);
  else
    k_log_softmax_backward(out, a, b, n, C, inner);
}

static void run_softmax(SplitCall *s) {
  const RtLib *k = s->k;
  int64_t outer, C, inner;
  around_axis(&k->buf[k->nbufs - 1], (int)k->i[0], s->B, &outer, &C, &inner);
  rt_pool_run_grain(s->c->pool, softmax_share, s, outer, 16);
}

// Gaussian noise on elements [lo, hi) of the batch (each element's draw
// depends only on the call's key and its index).
static void noise_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  k_noise_forward(P(s, 1) + lo, P(s, 0) + lo, hi - lo, (float)s->k->f[0], s->key, s->first + lo);
}

// The noise in a training step with the random layers on; else the identity.
static void run_noise(SplitCall *s) {
  int64_t n = rt_lib_numel(&s->k->buf[1], s->B);
  if (!(s->c->training && s->c->dropout && s->k->f[0] > 0)) {
    memmove(P(s, 1), P(s, 0), sizeof(float) * n);
    return;
  }
  s->key = k_noise_key((float)s->k->f[0], s->c->rng);
  s->first = first_element(s->c, &s->k->buf[1]);
  rt_pool_run(s->c->pool, noise_share, s, n);
}

//
// Library kernels on the calling thread
//

// A loss or its gradient: (output, target). Returns the loss.
static double run_loss(SplitCall *s) {
  const RtLib *k = s->k;
  const RtLibBuf *yb = &k->buf[0];
  int64_t B = s->B, n = rt_lib_numel(yb, B), C = yb->ndim == 2 ? yb->shape[1] : 1;
  const float *y = P(s, 0);
  const void *t = ptr(k, 1, s->arena, s->state);
  float *out = P(s, 2);
  if (k->kind >= RL_CROSS_ENTROPY_GRAD)
    memset(out, 0, sizeof(float) * n);
  double loss = 0;
  switch (k->kind) {
  case RL_CROSS_ENTROPY: loss = k_cross_entropy_smooth_forward(y, t, B, C, k->f[0]); break;
  case RL_NLL: loss = k_nll_forward(y, t, B, C); break;
  case RL_MSE: loss = k_mse_forward(y, t, n); break;
  case RL_L1: loss = k_l1_forward(y, t, n); break;
  case RL_BCE_WITH_LOGITS: loss = k_bce_with_logits_forward(y, t, n); break;
  case RL_CROSS_ENTROPY_GRAD: k_cross_entropy_smooth_backward(out, 1.0f, y, t, B, C, k->f[0]); return 0;
  case RL_NLL_GRAD: k_nll_backward(out, 1.0f, t, B, C); return 0;
  case RL_MSE_GRAD: k_mse_backward(out, NULL, 1.0f, y, t, n); return 0;
  case RL_L1_GRAD: k_l1_backward(out, NULL, 1.0f, y, t, n); return 0;
  case RL_BCE_WITH_LOGITS_GRAD: k_bce_with_logits_backward(out, NULL, 1.0f, y, t, n); return 0;
  default: unreachable();
  }
  out[0] = (float)loss;
  return loss;
}

static void run_step(SplitCall *s) {
  const RtLib *k = s->k;
  const double *f = k->f;
  int64_t n = rt_lib_numel(&k->buf[0], 1);
  if (k->kind == RL_SGD_STEP) {
    KSgd o = {.lr = s->c->lr, .momentum = f[1], .dampening = f[2], .weight_decay = f[3], .nesterov = k->i[0]};
    k_sgd_step(P(s, 0), k->nbufs == 3 ? P(s, 2) : NULL, P(s, 1), n, &o, s->c->steps);
  } else if (k->kind == RL_RMSPROP_STEP) {
    KRmsprop o = {.lr = s->c->lr, .alpha = f[1], .eps = f[2], .weight_decay = f[3], .momentum = f[4],
                  .centered = k->i[0]};
    int b = 3;
    float *buf = o.momentum > 0 ? P(s, b++) : NULL;
    float *ga = o.centered ? P(s, b++) : NULL;
    k_rmsprop_step(P(s, 0), P(s, 2), buf, ga, P(s, 1), n, &o);
  } else if (k->kind == RL_ADAGRAD_STEP) {
    KAdagrad o = {.lr = s->c->lr, .lr_decay = f[1], .weight_decay = f[2], .eps = f[4]};
    k_adagrad_step(P(s, 0), P(s, 2), P(s, 1), n, &o, s->c->steps);
  } else {
    KAdam o = {.lr = s->c->lr, .beta1 = f[1], .beta2 = f[2], .eps = f[3], .weight_decay = f[4], .decoupled = k->i[0]};
    k_adam_step(P(s, 0), P(s, 2), P(s, 3), P(s, 1), n, &o, s->c->steps);
  }
}

// Average pooling's or global average pooling's forward, samples [lo, hi).
static void avgpool_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  const RtLibBuf *x = &k->buf[0];
  int64_t in = rt_lib_numel(x, 1), out = rt_lib_numel(&k->buf[1], 1);
  if (k->kind == RL_GLOBAL_AVGPOOL) {
    k_global_avgpool_forward(P(s, 1) + lo * out, P(s, 0) + lo * in, hi - lo, x->shape[1], x->shape[2] * x->shape[3]);
    return;
  }
  KPool2d geo = pool_geometry(x, k, s->B);
  geo.N = hi - lo;
  k_avgpool2d_forward(P(s, 1) + lo * out, P(s, 0) + lo * in, &geo);
}

// Average pooling's or global average pooling's gradient, samples [lo, hi).
static void avgpool_grad_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  const RtLibBuf *r = &k->buf[k->nbufs - 1];
  int64_t in = rt_lib_numel(r, 1), out = rt_lib_numel(&k->buf[0], 1);
  float *dx = P(s, k->nbufs - 1) + lo * in;
  memset(dx, 0, sizeof(float) * (hi - lo) * in);
  if (k->kind == RL_GLOBAL_AVGPOOL_GRAD) {
    k_global_avgpool_backward(dx, P(s, 0) + lo * out, hi - lo, r->shape[1], r->shape[2] * r->shape[3]);
    return;
  }
  KPool2d geo = pool_geometry(r, k, s->B);
  geo.N = hi - lo;
  k_avgpool2d_backward_fast(dx, P(s, 0) + lo * out, &geo);
}

// Average pooling, global average pooling or a gradient, samples over the pool.
static void run_avgpool(SplitCall *s) {
  bool forward = s->k->kind == RL_AVGPOOL || s->k->kind == RL_GLOBAL_AVGPOOL;
  rt_pool_run(s->c->pool, forward ? avgpool_share : avgpool_grad_share, s, s->N);
}

// Embedding: the forward gathers rows for tokens [lo, hi); the weight's
// gradient takes columns [lo, hi) of every row, each walking the tokens
// in order, so the sums are the reference's whatever the split.
static void embedding_share(void *arg, int64_t lo, int64_t hi) {
  const SplitCall *s = arg;
  const RtLib *k = s->k;
  const int32_t *idx = ptr(k, k->kind == RL_EMBEDDING ? 0 : 1, s->arena, s->state);
  if (k->kind == RL_EMBEDDING) {
    int64_t dim = k->buf[1].shape[1];
    k_embedding_forward(P(s, 2) + lo * dim, P(s, 1), idx + lo, hi - lo, dim);
    return;
  }
  const RtLibBuf *dw = &k->buf[2];
  int64_t vocab = dw->shape[0], dim = dw->shape[1];
  float *out = P(s, 2);
  for (int64_t v = 0; v < vocab; v++)
    memset(out + v * dim + lo, 0, sizeof(float) * (hi - lo));
  k_embedding_backward(out, P(s, 0), idx, rt_lib_numel(&k->buf[1], s->B), dim, lo, hi);
}

// An index outside the table is the data's fault and stops the run, as a
// label outside the classes does; nothing is read or written before.
static void run_embedding(SplitCall *s) {
  const RtLib *k = s->k;
  int xi = k->kind == RL_EMBEDDING ? 0 : 1;
  const RtLibBuf *xb = &k->buf[xi];
  int64_t n = rt_lib_numel(xb, s->B), per = rt_lib_numel(xb, 1);
  int64_t vocab = k->kind == RL_EMBEDDING ? k->buf[1].shape[0] : k->buf[2].shape[0];
  const int32_t *idx = ptr(k, xi, s->arena, s->state);
  int64_t bad = k_embedding_check(idx, n, vocab);
  if (bad >= 0)
    nnc_fatal("%s: index %d of sample %lld (value %lld of the sample) is outside [0, %lld)\n"
              "---> HINT: indexes count from 0 and must be less than the embedding's vocab; check the data "
              "or make vocab larger", rt_lib_name(k->kind), (int)idx[bad], (long long)(bad / per),
              (long long)(bad % per), (long long)vocab);
  rt_pool_run(s->c->pool, embedding_share, s, k->kind == RL_EMBEDDING ? n : k->buf[2].shape[1]);
}

// A buffer in the local rows (RT_SPACE_LOCAL) holds rows [lo, hi) from
// its offset there: k runs on a copy of its descriptor that places it
// where row 0 would lie, as an arena buffer, the arena being the local
// rows' offset from it (addresses as integers: the rows below lo are
// never touched).
void rt_lib_rows(RtContext *c, const RtLib *k, char *arena, char *state, int64_t B, int64_t lo, int64_t hi,
                 char *local) {
  if (!rt_lib_rowwise(k) || lo < 0 || hi > B)   // (ir_verify_program allows no other in a region)
    nnc_bug(__FILE__, __LINE__, "rt_lib_rows: a library kernel that does not go by rows, or rows past the batch");
  if (lo >= hi)
    return;
  RtLib placed;
  for (int i = 0; i < k->nbufs; i++) {
    if (k->buf[i].space != RT_SPACE_LOCAL)
      continue;
    if (!local)
      nnc_bug(__FILE__, __LINE__, "rt_lib_rows: a buffer in local rows, outside a region");
    if (k != &placed) {
      placed = *k;
      k = &placed;
    }
    RtLibBuf *b = &placed.buf[i];
    b->space = RT_SPACE_ARENA;
    b->offset = (int64_t)((uintptr_t)local - (uintptr_t)arena) + b->offset - lo * 4 * rt_lib_numel(b, 1);
  }
  SplitCall s = {.c = c, .k = k, .arena = arena, .state = state, .B = B, .N = B, .T = 1};
  const RtLibBuf *r = &k->buf[k->nbufs - 1];
  switch (k->kind) {   // (a region runs the convolution's epilogue after it)
  case RL_CONV2D: conv_images(&s, lo, hi, NULL); return;
  case RL_MAXPOOL: maxpool_share(&s, lo, hi); return;   // (no argmax: rt_lib_rowwise)
  case RL_AVGPOOL: case RL_GLOBAL_AVGPOOL: avgpool_share(&s, lo, hi); return;
  default: break;
  }
  if (k->kind == RL_LAYERNORM || k->kind == RL_LAYERNORM_GRAD) {
    int64_t per = rt_lib_numel(r, 1) / layernorm_row(k);   // rows of a sample
    layernorm_share(&s, lo * per, hi * per);
    return;
  }
  int64_t outer, C, inner;
  around_axis(r, (int)k->i[0], 1, &outer, &C, &inner);   // outer: a sample's
  softmax_share(&s, lo * outer, hi * outer);
}

void rt_lib_run(RtContext *c, const RtLib *k, char *arena, char *state, int64_t B, RtLoopFn epi) {
  SplitCall s = {.c = c, .k = k, .arena = arena, .state = state, .B = B, .N = dim(&k->buf[0], 0, B),
                 .T = rt_pool_threads(c->pool), .epi = epi};
  switch (k->kind) {
  case RL_CONV2D: case RL_CONV2D_GRAD_INPUT: case RL_CONV2D_GRAD_WEIGHT:
    run_conv(&s);
    return;   // the epilogue ran on each share
  case RL_MAXPOOL: case RL_MAXPOOL_GRAD: run_maxpool(&s); break;
  case RL_CONV2D_GRAD_WEIGHT_POOLED: case RL_CONV2D_GRAD_INPUT_POOLED: run_conv_pooled(&s); break;
  case RL_BATCHNORM: case RL_BATCHNORM_GRAD: case RL_BATCHNORM_GRAD_GAMMA: run_batchnorm(&s); break;
  case RL_DROPOUT: case RL_DROPOUT_GRAD: run_dropout(&s); break;
  case RL_GAUSSIAN_NOISE: run_noise(&s); break;
  case RL_AVGPOOL: case RL_AVGPOOL_GRAD: case RL_GLOBAL_AVGPOOL: case RL_GLOBAL_AVGPOOL_GRAD: run_avgpool(&s); break;
  case RL_SOFTMAX: case RL_LOG_SOFTMAX: case RL_SOFTMAX_GRAD: case RL_LOG_SOFTMAX_GRAD: run_softmax(&s); break;
  case RL_EMBEDDING: case RL_EMBEDDING_GRAD: run_embedding(&s); break;
  case RL_LAYERNORM: case RL_LAYERNORM_GRAD: run_layernorm(&s); break;
  case RL_SGD_STEP: case RL_ADAM_STEP: case RL_RMSPROP_STEP: case RL_ADAGRAD_STEP:
    if (!c->skip_updates)   // a step whose loss is not finite makes no updates
      run_step(&s);
    break;
  default: {
    double l = run_loss(&s);
    if (k->loss) {   // each term of a weighted sum adds its part
      c->loss += k->loss_weight * l;
      c->skip_updates = c->training && !isfinite(c->loss);
      if (c->skip_updates && c->scalars)
        c->scalars[KS_APPLY] = 0;   // the compiled updates keep every value as it was
    }
    break;
  }
  }
  if (epi) {   // (a convolution's or a GEMM's only, in the programs pass_fuse makes)
    const RtLibBuf *r = &k->buf[k->nbufs - 1];
    epi(arena, state, B, 0, dim(r, 0, B), NULL);
  }
}
