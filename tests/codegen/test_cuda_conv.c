// test_cuda_conv.c: the CUDA C of the convolutions, poolings and
// batchnorms (codegen/cuda_conv.c) run on the CPU through the host shim,
// against runtime/lib.c's rt_lib_run on the same random memory.
//
// Each case builds RtLib descriptors by hand, as pass_describe_libs fills
// them, at shapes that are multiples of no tile (C 5, 11 x 11 planes, O 7,
// a batch of 1, windows with stride, padding and dilation, 1x1), and runs
// both ways: the forward and each gradient; max pooling's argmax kept and
// routed through (saved) or found again; batchnorm in training (batch
// statistics kept, running ones updated) and in eval, its gradients with
// the statistics saved and recomputed. Results agree to 1e-5 relative
// (sums in another order), bit for bit where the order is the reference's
// (poolings). Also the refusals of descriptors that cannot run. Where
// nvcc is at hand ($NNC_NVCC, /usr/local/cuda/bin/nvcc or on the PATH),
// every kernel generated here must compile for a device too, without a
// warning (nvcc -ptx -Werror all-warnings).
//
// Skips (77) where there is no C compiler for the shim.
#include "../test.h"
#include "codegen.h"
#include "cuda_gen.h"
#include "runtime.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BYTES (1 << 22)
#define MAX_SLOTS 4

// Two copies of the same memory: the reference's and the shim's.
typedef struct Mem {
  char *arena[2], *state[2];
  int64_t top[2];                 // next free byte of the arena [0] and the state [1]
  char *aux[2][MAX_SLOTS];        // slots: the context's (the reference's) and the shim's
  RtContext *ctx;
  char step[CUDA_STEP_BYTES];
} Mem;

static void mem_init(Mem *m) {
  memset(m, 0, sizeof *m);
  for (int i = 0; i < 2; i++) {
    m->arena[i] = xcalloc(1, ARENA_BYTES);
    m->state[i] = xcalloc(1, ARENA_BYTES);
  }
  m->ctx = rt_context_new(2);
}

static void mem_free(Mem *m) {
  for (int i = 0; i < 2; i++) {
    free(m->arena[i]);
    free(m->state[i]);
  }
  for (int s = 0; s < MAX_SLOTS; s++)
    free(m->aux[1][s]);   // (the context frees its own)
  rt_context_free(m->ctx);
}

// A buffer of shape (d0, d1, ...) (RT_BATCH for the batch) in the arena or
// the state, filled with the same random values in both copies.
static RtLibBuf buf(Mem *m, int space, int64_t B, float lo, float hi, int ndim, ...) {
  RtLibBuf b = {.space = space, .ndim = ndim};
  va_list ap;
  va_start(ap, ndim);
  for (int i = 0; i < ndim; i++)
    b.shape[i] = va_arg(ap, int64_t);
  va_end(ap);
  int64_t bytes = 4 * rt_lib_numel(&b, B);
  b.offset = m->top[space];
  m->top[space] += (bytes + 63) / 64 * 64;
  if (m->top[space] > ARENA_BYTES)
    nnc_fatal("test_cuda_conv: the arena is too small");
  for (int i = 0; i < 2; i++) {
    float *p = (float *)((space == RT_SPACE_STATE ? m->state[i] : m->arena[i]) + b.offset);
    t_seed((uint64_t)b.offset * 2 + space);
    for (int64_t j = 0; j < bytes / 4; j++)
      p[j] = (float)t_uniform(lo, hi);
  }
  return b;
}

static float *at(Mem *m, int i, const RtLibBuf *b) {
  return (float *)((b->space == RT_SPACE_STATE ? m->state[i] : m->arena[i]) + b->offset);
}

// The slot of kernel d, in the context and in the shim's copy.
static void reserve(Mem *m, int slot, int64_t bytes) {
  rt_context_reserve(m->ctx, slot, bytes);
  m->aux[0][slot] = m->ctx->aux[slot];
  if (!m->aux[1][slot])
    m->aux[1][slot] = xcalloc(1, (size_t)bytes);
}

static RtLib lib(int kind, int nbufs, const RtLibBuf *bufs) {
  RtLib d = {.kind = kind, .nbufs = nbufs, .aux = -1, .aux_from = -1, .node = 1};
  memcpy(d.buf, bufs, sizeof(RtLibBuf) * nbufs);
  return d;
}

static StrBuf every;       // every kernel run here, for nvcc
static int next_kernel;    // their program indexes: names apart

// Runs descriptor d at batch B through the shim: generated for a larger
// batch (the grids cover more than B needs), compiled, each launch in order. False (and a failed check) where any step fails.
static bool run_cuda(Mem *m, const RtLib *d, int64_t B, const CudaLibCtx *x) {
  char err[4096] = "";
  CudaGen g;
  cuda_gen_init(&g, NULL, B + 2, err, sizeof err);
  bool conv = d->kind == RL_CONV2D || d->kind == RL_CONV2D_GRAD_INPUT || d->kind == RL_CONV2D_GRAD_WEIGHT;
  int kernel = next_kernel++;
  bool ok = conv ? cuda_emit_conv(&g, kernel, NULL, d, x) : cuda_emit_pool_bn(&g, kernel, NULL, d, x);
  if (!CHECK(ok, "%s: %s", rt_lib_name(d->kind), err)) {
    cuda_gen_free(&g);
    return false;
  }
  sb_puts(&every, g.src.data + strlen(cuda_prelude));
  CgCudaHost *h = cg_cuda_host_load(g.src.data, err, sizeof err);
  if (!CHECK(h, "%s: %s\n%s", rt_lib_name(d->kind), err, g.src.data)) {
    cuda_gen_free(&g);
    return false;
  }
  for (int i = 0; i < g.nlaunch && ok; i++) {
    const CgCudaLaunch *l = &g.launch[i];
    unsigned grid[3];
    cg_cuda_grid(l, B, grid);
    CgCudaFn fn = cg_cuda_host_fn(h, l->name);
    ok = CHECK(fn, "%s: no function %s", rt_lib_name(d->kind), l->name);
    if (ok && grid[0])
      ok = CHECK(cg_cuda_host_launch(h, l->name, fn, grid, (unsigned)l->block, l->barrier, m->arena[1], m->state[1],
                                     m->aux[1], m->step, B, err, sizeof err),
                 "%s: %s", l->name, err);
  }
  cg_cuda_host_free(h);
  cuda_gen_free(&g);
  return ok;
}

// Runs d at batch B both ways.
static bool run_both(Mem *m, const RtLib *d, int64_t B, const CudaLibCtx *x) {
  m->ctx->training = x->training;
  rt_lib_run(m->ctx, d, m->arena[0], m->state[0], B, NULL);
  return run_cuda(m, d, B, x);
}

// Within rtol, or an absolute atol (sums of many terms in another order).
static void close_to(const char *what, Mem *m, const RtLibBuf *b, int64_t B, double atol, double rtol) {
  int64_t n = rt_lib_numel(b, B);
  double *want = t_tod(at(m, 0, b), n);
  t_close(what, at(m, 1, b), want, n, atol, rtol);
  free(want);
}

static void equal(const char *what, Mem *m, const RtLibBuf *b, int64_t B) {
  t_equal(what, at(m, 1, b), at(m, 0, b), rt_lib_numel(b, B));
}

#define RTOL 1e-5

// The absolute tolerance of a sum of n products of values in [-1, 1], each
// element summed in another order than the reference's.
static double sum_atol(int64_t n) { return 1e-5 + 1e-7 * (double)n; }

//
// Convolutions
//

typedef struct ConvCase {
  const char *name;
  int64_t N, C, H, W, O, KH, KW, sh, sw, ph, pw, dh, dw, G;
  bool bias;
} ConvCase;

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static void test_conv(const ConvCase *c) {
  Mem m;
  mem_init(&m);
  int64_t OH = out_size(c->H, c->KH, c->sh, c->ph, c->dh), OW = out_size(c->W, c->KW, c->sw, c->pw, c->dw);
  int64_t n = RT_BATCH, B = c->N;   // (the reference's convolutions take images along the batch only)
  RtLibBuf x = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, n, c->C, c->H, c->W);
  RtLibBuf w = buf(&m, RT_SPACE_STATE, B, -1, 1, 4, c->O, c->C / c->G, c->KH, c->KW);
  RtLibBuf bias = buf(&m, RT_SPACE_STATE, B, -1, 1, 1, c->O);
  RtLibBuf y = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, n, c->O, OH, OW);   // (garbage: overwritten)
  RtLibBuf dy = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, n, c->O, OH, OW);
  RtLibBuf dx = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, n, c->C, c->H, c->W);
  RtLibBuf dw = buf(&m, RT_SPACE_STATE, B, -9, 9, 4, c->O, c->C / c->G, c->KH, c->KW);
  int64_t geo[7] = {c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->G};
  CudaLibCtx ctx = {.training = true, .key = -1};
  char what[160];

  RtLib fwd = c->bias ? lib(RL_CONV2D, 4, (RtLibBuf[]){x, w, bias, y}) : lib(RL_CONV2D, 3, (RtLibBuf[]){x, w, y});
  memcpy(fwd.i, geo, sizeof geo);
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: conv2d", c->name);
    close_to(what, &m, &y, B, sum_atol(c->C * c->KH * c->KW), RTOL);
  }
  RtLib gi = lib(RL_CONV2D_GRAD_INPUT, 3, (RtLibBuf[]){dy, w, dx});
  memcpy(gi.i, geo, sizeof geo);
  if (run_both(&m, &gi, B, &ctx)) {
    snprintf(what, sizeof what, "%s: conv2d_grad_input", c->name);
    close_to(what, &m, &dx, B, sum_atol(c->O * c->KH * c->KW), RTOL);
  }
  RtLib gw = lib(RL_CONV2D_GRAD_WEIGHT, 3, (RtLibBuf[]){dy, x, dw});
  memcpy(gw.i, geo, sizeof geo);
  if (run_both(&m, &gw, B, &ctx)) {
    snprintf(what, sizeof what, "%s: conv2d_grad_weight", c->name);
    close_to(what, &m, &dw, B, sum_atol(c->N * OH * OW), RTOL);
  }
  mem_free(&m);
}

//
// Pooling
//

typedef struct PoolCase {
  const char *name;
  int64_t N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
  bool ties;         // small integers: equal maxima in most windows
  bool nans;         // a few NaNs and -infs among them
} PoolCase;

static void special_values(Mem *m, const RtLibBuf *x, int64_t B, const PoolCase *c) {
  int64_t n = rt_lib_numel(x, B);
  for (int i = 0; i < 2; i++) {
    float *p = at(m, i, x);
    for (int64_t j = 0; j < n; j++) {
      if (c->ties)
        p[j] = (float)((j * 7 + j / 5) % 3);
      if (c->nans && j % 17 == 3)
        p[j] = NAN;
      if (c->nans && j % 13 == 5)
        p[j] = -INFINITY;
    }
  }
}

static void test_maxpool(const PoolCase *c) {
  Mem m;
  mem_init(&m);
  int64_t OH = out_size(c->H, c->kh, c->sh, c->ph, c->dh), OW = out_size(c->W, c->kw, c->sw, c->pw, c->dw);
  int64_t B = c->N;
  RtLibBuf x = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, (int64_t)RT_BATCH, c->C, c->H, c->W);
  RtLibBuf y = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, (int64_t)RT_BATCH, c->C, OH, OW);
  RtLibBuf dy = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, (int64_t)RT_BATCH, c->C, OH, OW);
  RtLibBuf dx = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, (int64_t)RT_BATCH, c->C, c->H, c->W);
  special_values(&m, &x, B, c);
  int64_t geo[8] = {c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw};
  char what[160];

  // Training: the argmax kept in slot 0; the gradient through it.
  RtLib fwd = lib(RL_MAXPOOL, 2, (RtLibBuf[]){x, y});
  memcpy(fwd.i, geo, sizeof geo);
  fwd.aux = 0;
  fwd.aux_bytes = 4 * rt_lib_numel(&y, B);
  reserve(&m, 0, fwd.aux_bytes);
  memset(m.aux[1][0], 0x55, (size_t)fwd.aux_bytes);
  rt_context_begin_step(m.ctx);
  CudaLibCtx ctx = {.training = true, .key = -1};
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: maxpool", c->name);
    equal(what, &m, &y, B);
    int64_t n = rt_lib_numel(&y, B), bad = 0;
    const int32_t *want = (const int32_t *)m.aux[0][0], *got = (const int32_t *)m.aux[1][0];
    for (int64_t i = 0; i < n; i++)
      bad += want[i] != got[i];
    CHECK(bad == 0, "%s: %lld of %lld argmax differ", what, (long long)bad, (long long)n);
  }
  RtLib grad = lib(RL_MAXPOOL_GRAD, 3, (RtLibBuf[]){dy, x, dx});
  memcpy(grad.i, geo, sizeof geo);
  grad.aux_from = 0;
  ctx.saved = true;
  if (run_both(&m, &grad, B, &ctx)) {
    snprintf(what, sizeof what, "%s: maxpool_grad through the saved argmax", c->name);
    equal(what, &m, &dx, B);
  }
  // The argmax found again: no forward this step (the shim's slot spoiled,
  // so that reading it would show).
  rt_context_begin_step(m.ctx);
  memset(m.aux[1][0], 0x7f, (size_t)fwd.aux_bytes);
  for (int i = 0; i < 2; i++)
    memset(at(&m, i, &dx), 0x7f, 4 * rt_lib_numel(&dx, B));
  ctx.saved = false;
  if (run_both(&m, &grad, B, &ctx)) {
    snprintf(what, sizeof what, "%s: maxpool_grad, the argmax found again", c->name);
    equal(what, &m, &dx, B);
  }
  // Eval: no slot written.
  ctx = (CudaLibCtx){.training = false, .key = -1};
  memset(m.aux[1][0], 0x7f, (size_t)fwd.aux_bytes);
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: maxpool (eval)", c->name);
    equal(what, &m, &y, B);
    CHECK(((int32_t *)m.aux[1][0])[0] == 0x7f7f7f7f, "%s: wrote the slot", what);
  }
  mem_free(&m);
}

static void test_avgpool(const PoolCase *c) {
  Mem m;
  mem_init(&m);
  int64_t OH = out_size(c->H, c->kh, c->sh, c->ph, 1), OW = out_size(c->W, c->kw, c->sw, c->pw, 1);
  int64_t B = c->N;
  RtLibBuf x = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, (int64_t)RT_BATCH, c->C, c->H, c->W);
  RtLibBuf y = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, (int64_t)RT_BATCH, c->C, OH, OW);
  RtLibBuf dy = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, (int64_t)RT_BATCH, c->C, OH, OW);
  RtLibBuf dx = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, (int64_t)RT_BATCH, c->C, c->H, c->W);
  RtLibBuf gy = buf(&m, RT_SPACE_ARENA, B, -9, 9, 4, (int64_t)RT_BATCH, c->C, (int64_t)1, (int64_t)1);
  RtLibBuf gdy = buf(&m, RT_SPACE_ARENA, B, -1, 1, 4, (int64_t)RT_BATCH, c->C, (int64_t)1, (int64_t)1);
  int64_t geo[8] = {c->kh, c->kw, c->sh, c->sw, c->ph, c->pw, 7, 7};   // (no dilation: ignored)
  CudaLibCtx ctx = {.training = true, .key = -1};
  char what[160];
  RtLib fwd = lib(RL_AVGPOOL, 2, (RtLibBuf[]){x, y});
  memcpy(fwd.i, geo, sizeof geo);
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: avgpool", c->name);
    equal(what, &m, &y, B);
  }
  RtLib grad = lib(RL_AVGPOOL_GRAD, 2, (RtLibBuf[]){dy, dx});
  memcpy(grad.i, geo, sizeof geo);
  if (run_both(&m, &grad, B, &ctx)) {
    snprintf(what, sizeof what, "%s: avgpool_grad", c->name);
    equal(what, &m, &dx, B);
  }
  RtLib gfwd = lib(RL_GLOBAL_AVGPOOL, 2, (RtLibBuf[]){x, gy});
  if (run_both(&m, &gfwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: global_avgpool", c->name);
    equal(what, &m, &gy, B);
  }
  RtLib ggrad = lib(RL_GLOBAL_AVGPOOL_GRAD, 2, (RtLibBuf[]){gdy, dx});
  if (run_both(&m, &ggrad, B, &ctx)) {
    snprintf(what, sizeof what, "%s: global_avgpool_grad", c->name);
    equal(what, &m, &dx, B);
  }
  mem_free(&m);
}

//
// Batchnorm
//

typedef struct BnCase {
  const char *name;
  int64_t N, C, H, W;   // H = 0: x is (N, C)
  bool batched;
} BnCase;

static RtLibBuf bn_x(Mem *m, const BnCase *c, float lo, float hi) {
  int64_t n = c->batched ? RT_BATCH : c->N;
  return c->H ? buf(m, RT_SPACE_ARENA, c->N, lo, hi, 4, n, c->C, c->H, c->W)
              : buf(m, RT_SPACE_ARENA, c->N, lo, hi, 2, n, c->C);
}

static void test_batchnorm(const BnCase *c) {
  Mem m;
  mem_init(&m);
  int64_t B = c->N;
  RtLibBuf x = bn_x(&m, c, -2, 3);
  RtLibBuf gamma = buf(&m, RT_SPACE_STATE, B, 0.5f, 1.5f, 1, c->C);
  RtLibBuf beta = buf(&m, RT_SPACE_STATE, B, -1, 1, 1, c->C);
  RtLibBuf rm = buf(&m, RT_SPACE_STATE, B, -0.5f, 0.5f, 1, c->C);
  RtLibBuf rv = buf(&m, RT_SPACE_STATE, B, 0.5f, 2, 1, c->C);
  RtLibBuf y = bn_x(&m, c, -9, 9);
  RtLibBuf dy = bn_x(&m, c, -1, 1);
  RtLibBuf dx = bn_x(&m, c, -9, 9);
  RtLibBuf dgamma = buf(&m, RT_SPACE_STATE, B, -9, 9, 1, c->C);
  char what[160];

  RtLib fwd = lib(RL_BATCHNORM, 6, (RtLibBuf[]){x, gamma, beta, rm, rv, y});
  fwd.f[0] = 1e-5, fwd.f[1] = 0.1;
  fwd.aux = 1;
  fwd.aux_bytes = 2 * 4 * c->C;
  reserve(&m, 1, fwd.aux_bytes);
  // Eval: the running statistics.
  CudaLibCtx ctx = {.training = false, .key = -1};
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: batchnorm (eval)", c->name);
    close_to(what, &m, &y, B, RTOL, RTOL);
  }
  // Training: the batch statistics kept, the running ones updated.
  rt_context_begin_step(m.ctx);
  ctx.training = true;
  if (run_both(&m, &fwd, B, &ctx)) {
    snprintf(what, sizeof what, "%s: batchnorm (training)", c->name);
    close_to(what, &m, &y, B, RTOL, RTOL);
    snprintf(what, sizeof what, "%s: batchnorm's running mean", c->name);
    close_to(what, &m, &rm, B, RTOL, RTOL);
    snprintf(what, sizeof what, "%s: batchnorm's running variance", c->name);
    close_to(what, &m, &rv, B, RTOL, RTOL);
    snprintf(what, sizeof what, "%s: batchnorm's kept statistics", c->name);
    double *want = t_tod((const float *)m.aux[0][1], 2 * c->C);
    t_close(what, (const float *)m.aux[1][1], want, 2 * c->C, RTOL, RTOL);
    free(want);
  }
  RtLib grad = lib(RL_BATCHNORM_GRAD, 4, (RtLibBuf[]){dy, x, gamma, dx});
  RtLib ggamma = lib(RL_BATCHNORM_GRAD_GAMMA, 3, (RtLibBuf[]){dy, x, dgamma});
  grad.f[0] = ggamma.f[0] = 1e-5;
  grad.aux_from = ggamma.aux_from = 1;
  for (int saved = 1; saved >= 0; saved--) {
    if (!saved) {   // no forward this step: both find the statistics again
      rt_context_begin_step(m.ctx);
      memset(m.aux[1][1], 0x7f, (size_t)fwd.aux_bytes);
    }
    ctx.saved = saved;
    if (run_both(&m, &grad, B, &ctx)) {
      snprintf(what, sizeof what, "%s: batchnorm_grad, %s", c->name, saved ? "saved" : "recomputed");
      close_to(what, &m, &dx, B, RTOL, RTOL);
    }
    if (run_both(&m, &ggamma, B, &ctx)) {
      snprintf(what, sizeof what, "%s: batchnorm_grad_gamma, %s", c->name, saved ? "saved" : "recomputed");
      close_to(what, &m, &dgamma, B, RTOL, RTOL);
    }
  }
  mem_free(&m);
}

//
// Descriptors the generator refuses
//

static void test_refusals(void) {
  Mem m;
  mem_init(&m);
  RtLibBuf x = buf(&m, RT_SPACE_ARENA, 2, -1, 1, 4, (int64_t)RT_BATCH, (int64_t)3, (int64_t)8, (int64_t)8);
  RtLibBuf w = buf(&m, RT_SPACE_STATE, 2, -1, 1, 4, (int64_t)4, (int64_t)2, (int64_t)3, (int64_t)3);
  RtLibBuf y = buf(&m, RT_SPACE_ARENA, 2, -1, 1, 4, (int64_t)RT_BATCH, (int64_t)4, (int64_t)6, (int64_t)6);
  char err[512];
  CudaGen g;
  CudaLibCtx ctx = {.training = true, .key = -1};
  RtLib d = lib(RL_CONV2D, 3, (RtLibBuf[]){x, w, y});   // w has 2 input channels, x 3
  d.i[0] = d.i[1] = 1, d.i[4] = d.i[5] = 1, d.i[6] = 1;
  cuda_gen_init(&g, NULL, 2, err, sizeof err);
  CHECK_ERR(cuda_emit_conv(&g, 0, NULL, &d, &ctx), err, "conv2d", "do not agree");
  cuda_gen_free(&g);
  RtLib p = lib(RL_MAXPOOL, 2, (RtLibBuf[]){x, x});   // a window of 0
  p.i[2] = p.i[3] = 1, p.i[6] = p.i[7] = 1;
  cuda_gen_init(&g, NULL, 2, err, sizeof err);
  CHECK_ERR(cuda_emit_pool_bn(&g, 0, NULL, &p, &ctx), err, "maxpool", "window 0 x 0");
  cuda_gen_free(&g);
  p.kind = RL_SOFTMAX;
  cuda_gen_init(&g, NULL, 2, err, sizeof err);
  CHECK_ERR(cuda_emit_pool_bn(&g, 0, NULL, &p, &ctx), err, "not a pooling or a batchnorm");
  cuda_gen_free(&g);
  RtLibBuf x1 = buf(&m, RT_SPACE_ARENA, 1, -1, 1, 2, (int64_t)1, (int64_t)3);
  RtLibBuf c3 = buf(&m, RT_SPACE_STATE, 1, -1, 1, 1, (int64_t)3);
  RtLib bn = lib(RL_BATCHNORM, 6, (RtLibBuf[]){x1, c3, c3, c3, c3, x1});   // one value per channel
  cuda_gen_init(&g, NULL, 1, err, sizeof err);
  CHECK_ERR(cuda_emit_pool_bn(&g, 0, NULL, &bn, &ctx), err, "more than one value per channel");
  cuda_gen_free(&g);
  bn.buf[0].shape[0] = bn.buf[5].shape[0] = RT_BATCH;
  bn.f[0] = NAN;   // (it would print as no C constant)
  cuda_gen_init(&g, NULL, 1, err, sizeof err);
  CHECK_ERR(cuda_emit_pool_bn(&g, 0, NULL, &bn, &ctx), err, "batchnorm", "eps nan", "must be finite");
  cuda_gen_free(&g);
  mem_free(&m);
}

// Whether the shim has a C compiler: the prelude alone loads.
static bool have_cc(char *err, size_t errsz) {
  CgCudaHost *h = cg_cuda_host_load(cuda_prelude, err, errsz);
  cg_cuda_host_free(h);
  return h || !strstr(err, "cannot run the C compiler");
}

// nvcc on every kernel generated above (a device's C++, not the shim's C).
static void test_nvcc(void) {
  const char *nvcc = getenv("NNC_NVCC");
  char cmd[1024];
  if (!nvcc || !*nvcc)
    nvcc = access("/usr/local/cuda/bin/nvcc", X_OK) == 0 ? "/usr/local/cuda/bin/nvcc"
           : system("command -v nvcc >/dev/null 2>&1") == 0 ? "nvcc"
                                                            : NULL;
  if (!nvcc) {
    printf("skipped: nvcc on the generated kernels (no nvcc)\n");
    return;
  }
  t_tmpdir("cuda-conv");
  StrBuf src = {0};
  sb_puts(&src, cuda_prelude);
  sb_puts(&src, every.data ? every.data : "");
  t_write(t_path("kernels.cu"), src.data, src.len);
  snprintf(cmd, sizeof cmd, "'%s' -arch=sm_80 -ptx -Werror all-warnings '%s' -o '%s' 2>&1", nvcc,
           t_path("kernels.cu"), t_path("kernels.ptx"));
  FILE *f = popen(cmd, "r");
  char out[4096] = "";
  size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
  out[n] = 0;
  int rc = f ? pclose(f) : -1;
  CHECK(rc == 0, "%s: exit status %d\n%s", cmd, rc, out);
  printf("%s  nvcc on %d kernels\n", rc == 0 ? "ok    " : "NOT OK", next_kernel);
  sb_free(&src);
}

int main(void) {
  char err[1024] = "";
  if (!have_cc(err, sizeof err))
    return t_skip("test_cuda_conv", err);
  static const ConvCase convs[] = {
      {"3x3 stride 2 pad 1 dilation 2", 3, 5, 11, 11, 7, 3, 3, 2, 2, 1, 1, 2, 2, 1, true},
      {"1x1", 2, 3, 4, 5, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, false},
      {"3x2 stride (1, 2) pad (2, 0), a batch of 1", 1, 2, 7, 6, 3, 3, 2, 1, 2, 2, 0, 1, 1, 1, true},
      {"5x5 pad 2, O 70", 2, 5, 9, 13, 70, 5, 5, 1, 1, 2, 2, 1, 1, 1, true},
      {"3x3 pad 1, C 16, O 70", 2, 16, 13, 9, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, false},
      {"3x3 pad 1, 2 groups", 2, 6, 7, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
      {"3x2 stride 2, depthwise, O 2C", 3, 5, 11, 10, 10, 3, 2, 2, 2, 1, 0, 1, 2, 5, true},
      {"1x1, 3 groups", 2, 6, 5, 5, 9, 1, 1, 1, 1, 0, 0, 1, 1, 3, false},
  };
  for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
    test_conv(&convs[i]);
  static const PoolCase pools[] = {
      {"3x3 stride 2 pad 1 dilation 2", 3, 5, 11, 11, 3, 3, 2, 2, 1, 1, 2, 2, false, false},
      {"2x2 stride 2, ties", 2, 3, 8, 7, 2, 2, 2, 2, 0, 0, 1, 1, true, false},
      {"3x3 stride 2 pad 1, NaN and -inf", 2, 4, 9, 10, 3, 3, 2, 2, 1, 1, 1, 1, false, true},
      {"2x2 stride 2 pad 2: windows all padding, a batch of 1", 1, 2, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, false, false},
      {"3x3 stride 3 pad 1, ties", 2, 3, 10, 11, 3, 3, 3, 3, 1, 1, 1, 1, true, false},
  };
  for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++)
    test_maxpool(&pools[i]);
  for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++)
    if (pools[i].dh == 1 && pools[i].ph * 2 <= pools[i].kh)
      test_avgpool(&pools[i]);
  static const BnCase bns[] = {
      {"(3, 5, 11, 11)", 3, 5, 11, 11, true},
      {"(4, 7)", 4, 7, 0, 0, true},
      {"(2, 6, 3, 3), fixed", 2, 6, 3, 3, false},
      {"(1, 3, 20, 20), a batch of 1", 1, 3, 20, 20, true},
  };
  for (size_t i = 0; i < sizeof bns / sizeof bns[0]; i++)
    test_batchnorm(&bns[i]);
  test_refusals();
  test_nvcc();
  sb_free(&every);
  return t_finish("test_cuda_conv");
}
