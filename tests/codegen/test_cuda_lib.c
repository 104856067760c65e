// test_cuda_lib: the library kernels of cuda_lib.c (dropout, gaussian_noise,
// softmax and log-softmax, the losses and their gradients, SGD and Adam) as
// CUDA C, run on the CPU through the host shim, against rt_lib_run on the same
// descriptors and random data: dropout's outputs and masks, gaussian_noise's
// outputs and the updates byte for byte, the rest within 1e-6 relative; a loss that is not finite
// turns the step's updates off. Ragged sizes: batches 1, 3 and 7, C of 10
// and 13, every axis. Skipped (77) where the host has no C compiler.
#include "../test.h"

#include "codegen.h"
#include "cuda_gen.h"
#include "runtime.h"

#include <math.h>

#define MAX_BATCH 7
#define ARENA_BYTES (1 << 20)
#define STATE_BYTES (1 << 16)
#define NSLOTS 4

// Two copies of the memory a program runs on: the reference's and the
// shim's, each with its slots and (the shim's) step block.
typedef struct Mem {
  char *arena, *state;
  char *aux[NSLOTS];
  char *step;
} Mem;

static Mem ref, dev;
static RtContext *ctx;
static Rng data_rng;
static int64_t next_arena, next_state;

static void mem_init(Mem *m) {
  m->arena = xcalloc(1, ARENA_BYTES);
  m->state = xcalloc(1, STATE_BYTES);
  for (int i = 0; i < NSLOTS; i++)
    m->aux[i] = xcalloc(1, 4 * MAX_BATCH * 4096);
  m->step = xcalloc(1, CUDA_STEP_BYTES);
}

static void mem_free(Mem *m) {
  free(m->arena);
  free(m->state);
  for (int i = 0; i < NSLOTS; i++)
    free(m->aux[i]);
  free(m->step);
}

// A buffer of the given shape (RT_BATCH: the batch) in the arena or the state.
static RtLibBuf buf(int space, int ndim, const int64_t *shape) {
  RtLibBuf b = {.space = space, .ndim = ndim};
  if (ndim)
    memcpy(b.shape, shape, sizeof(int64_t) * ndim);
  int64_t bytes = 4 * rt_lib_numel(&b, MAX_BATCH);
  int64_t *next = space == RT_SPACE_STATE ? &next_state : &next_arena;
  b.offset = *next;
  *next += (bytes + 63) / 64 * 64 + 64;
  if (*next > (space == RT_SPACE_STATE ? STATE_BYTES : ARENA_BYTES)) {
    fprintf(stderr, "test_cuda_lib: out of test memory\n");
    exit(1);
  }
  return b;
}

static void *at(const Mem *m, const RtLibBuf *b) { return (b->space == RT_SPACE_STATE ? m->state : m->arena) + b->offset; }

// Random floats in [lo, hi) into b (at the largest batch), the same in both copies.
static void fill(const RtLibBuf *b, float lo, float hi) {
  int64_t n = rt_lib_numel(b, MAX_BATCH);
  float *r = at(&ref, b), *d = at(&dev, b);
  for (int64_t i = 0; i < n; i++)
    r[i] = d[i] = lo + (hi - lo) * rng_uniformf(&data_rng);
}

static void fill_labels(const RtLibBuf *b, int C) {
  int64_t n = rt_lib_numel(b, MAX_BATCH);
  int32_t *r = at(&ref, b), *d = at(&dev, b);
  for (int64_t i = 0; i < n; i++)
    r[i] = d[i] = (int32_t)rng_below(&data_rng, (uint32_t)C);
}

static void reset(void) {
  next_arena = next_state = 0;
  memset(ref.arena, 0, ARENA_BYTES);
  memset(dev.arena, 0, ARENA_BYTES);
  memset(ref.state, 0, STATE_BYTES);
  memset(dev.state, 0, STATE_BYTES);
}

static RtLib lib(int kind, int nbufs, const RtLibBuf *bufs) {
  RtLib d = {.kind = kind, .nbufs = nbufs, .aux = -1, .aux_from = -1, .node = 0};
  memcpy(d.buf, bufs, sizeof(RtLibBuf) * nbufs);
  return d;
}

// The step both sides run: the reference's context and the shim's step block.
typedef struct Step {
  bool training, dropout;
  double lr;
  int64_t t;
  uint64_t key;   // the first dropout's (the step block's key 0)
} Step;

static void set_step(const Step *s) {
  rt_context_begin_step(ctx);
  ctx->training = s->training;
  ctx->dropout = s->dropout;
  ctx->lr = s->lr;
  ctx->steps = s->t;
  ctx->scalars = NULL;
  char *st = dev.step;
  memset(st, 0, CUDA_STEP_BYTES);
  float lrf = (float)s->lr;
  memcpy(st + CUDA_STEP_LR, &lrf, 4);
  memcpy(st + CUDA_STEP_LR64, &s->lr, 8);
  int one = 1, training = s->training, dropout = s->training && s->dropout;
  memcpy(st + CUDA_STEP_APPLY, &one, 4);
  memcpy(st + CUDA_STEP_T, &s->t, 8);
  memcpy(st + CUDA_STEP_TRAINING, &training, 4);
  memcpy(st + CUDA_STEP_DROPOUT, &dropout, 4);
  memcpy(st + CUDA_STEP_KEYS, &s->key, 8);
}

static int64_t step_apply(void) {
  int a;
  memcpy(&a, dev.step + CUDA_STEP_APPLY, 4);
  return a;
}

static double step_loss(void) {
  double l;
  memcpy(&l, dev.step + CUDA_STEP_LOSS, 8);
  return l;
}

// The programs loaded so far: the batch is an argument, so each batch
// runs the same source, compiled once.
#define MAX_PROGRAMS 256
static struct {
  char *src;
  CgCudaHost *h;
} programs[MAX_PROGRAMS];
static int nprograms;

static CgCudaHost *load(const char *src, char *err, size_t errsz) {
  for (int i = 0; i < nprograms; i++)
    if (!strcmp(programs[i].src, src))
      return programs[i].h;
  if (!CHECK(nprograms < MAX_PROGRAMS, "more programs than the test keeps")) {
    snprintf(err, errsz, "too many programs");
    return NULL;
  }
  CgCudaHost *h = cg_cuda_host_load(src, err, errsz);
  if (h)
    programs[nprograms++] = (typeof(programs[0])){xstrdup(src), h};
  return h;
}

static void unload_all(void) {
  for (int i = 0; i < nprograms; i++) {
    free(programs[i].src);
    cg_cuda_host_free(programs[i].h);
  }
}

// Kernels d[0..n) (with their contexts) as one program of CUDA C, run on
// the shim at batch B; the same descriptors through rt_lib_run.
static bool run_in(const KProgram *p, const RtLib *d, const CudaLibCtx *x, int n, int64_t B) {
  char err[4096];
  CudaGen g;
  cuda_gen_init(&g, p, MAX_BATCH, err, sizeof err);
  for (int i = 0; i < n && !g.failed; i++)
    cuda_emit_lib(&g, i, NULL, &d[i], &x[i]);
  CHECK(!g.failed, "%s: generation failed: %s", rt_lib_name(d[0].kind), err);
  bool ok = !g.failed;
  CgCudaHost *h = ok ? load(g.src.data, err, sizeof err) : NULL;
  if (ok && !h) {
    FAIL("%s: the shim did not load the source: %s\n%s\n", rt_lib_name(d[0].kind), err, g.src.data);
    ok = false;
  }
  for (int i = 0; ok && i < g.nlaunch; i++) {
    const CgCudaLaunch *l = &g.launch[i];
    CgCudaFn fn = cg_cuda_host_fn(h, l->name);
    unsigned grid[3];
    cg_cuda_grid(l, B, grid);
    CHECK(fn != NULL, "no kernel %s", l->name);
    if (!fn || grid[0] == 0)
      continue;
    ok = cg_cuda_host_launch(h, l->name, fn, grid, (unsigned)l->block, l->barrier, dev.arena, dev.state, dev.aux,
                             dev.step, B, err, sizeof err);
    CHECK(ok, "launch of %s: %s", l->name, err);
  }
  cuda_gen_free(&g);
  for (int i = 0; i < n; i++)
    rt_lib_run(ctx, &d[i], ref.arena, ref.state, B, NULL);
  return ok;
}

static bool run_both(const RtLib *d, const CudaLibCtx *x, int n, int64_t B) { return run_in(NULL, d, x, n, B); }

// Buffer b of both copies at batch B: the same bytes, or within tol
// relative (tol > 0; NaNs where the other has NaN).
static void compare(const char *what, const RtLibBuf *b, int64_t B, double tol) {
  int64_t n = rt_lib_numel(b, B);
  const float *r = at(&ref, b), *d = at(&dev, b);
  if (tol == 0) {
    int64_t i = 0;
    while (i < n && !memcmp(&r[i], &d[i], 4))
      i++;
    CHECK(i == n, "%s (batch %lld): element %lld is %a, the reference's %a", what, (long long)B, (long long)i,
          i < n ? (double)d[i] : 0, i < n ? (double)r[i] : 0);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)r[i] - d[i]), bound = tol * fmax(fabs((double)r[i]), 1e-3);
    bool same = (isnan(r[i]) && isnan(d[i])) || r[i] == d[i] || e <= bound;
    if (!same) {
      FAIL("%s (batch %lld): element %lld is %.9g, the reference's %.9g\n", what, (long long)B, (long long)i,
           (double)d[i], (double)r[i]);
      return;
    }
  }
  CHECK(true);
}

//
// Dropout
//

static void test_dropout(float p, int64_t B, bool training, bool on) {
  reset();
  int64_t shape[3] = {RT_BATCH, 13, 5};
  RtLibBuf x = buf(RT_SPACE_ARENA, 3, shape), y = buf(RT_SPACE_ARENA, 3, shape);
  RtLibBuf dy = buf(RT_SPACE_ARENA, 3, shape), dx = buf(RT_SPACE_ARENA, 3, shape);
  fill(&x, -2, 2);
  fill(&dy, -2, 2);
  ((float *)at(&ref, &x))[3] = ((float *)at(&dev, &x))[3] = INFINITY;   // a dropped inf is NaN, as in PyTorch
  RtLib d[2] = {lib(RL_DROPOUT, 2, (RtLibBuf[]){x, y}), lib(RL_DROPOUT_GRAD, 2, (RtLibBuf[]){dy, dx})};
  d[0].f[0] = d[1].f[0] = p;
  if (training) {
    d[0].aux = 1;
    d[0].aux_bytes = rt_lib_numel(&y, MAX_BATCH);
    d[1].aux_from = 1;
    rt_context_reserve(ctx, 1, d[0].aux_bytes);
    memset(ctx->aux[1], 7, d[0].aux_bytes);
    memset(dev.aux[1], 7, d[0].aux_bytes);
  }
  Rng draw = *ctx->rng;   // the key the reference draws
  Step s = {.training = training, .dropout = on, .lr = 0.1f, .t = 1, .key = k_dropout_key(p, &draw)};
  set_step(&s);
  CudaLibCtx cx[2] = {{.training = training, .key = 0}, {.training = training, .saved = training, .key = -1}};
  if (!run_both(d, cx, training ? 2 : 1, B))
    return;
  char what[96];
  snprintf(what, sizeof what, "dropout p=%g training=%d on=%d", (double)p, training, on);
  compare(what, &y, B, 0);
  if (training) {
    compare(what, &dx, B, 0);
    if (on)
      CHECK(!memcmp(ctx->aux[1], dev.aux[1], rt_lib_numel(&y, B)), "%s: the masks differ", what);
  }
}

//
// Gaussian noise
//

static void test_noise(float std, int64_t B, bool training, bool on) {
  reset();
  int64_t shape[3] = {RT_BATCH, 13, 5};
  RtLibBuf x = buf(RT_SPACE_ARENA, 3, shape), y = buf(RT_SPACE_ARENA, 3, shape);
  fill(&x, -2, 2);
  RtLib d = lib(RL_GAUSSIAN_NOISE, 2, (RtLibBuf[]){x, y});
  d.f[0] = std;
  Rng draw = *ctx->rng;   // the key the reference draws
  Step s = {.training = training, .dropout = on, .lr = 0.1f, .t = 1, .key = k_noise_key(std, &draw)};
  set_step(&s);
  CudaLibCtx cx = {.training = training, .key = training ? 0 : -1};
  if (!run_both(&d, &cx, 1, B))
    return;
  char what[96];
  snprintf(what, sizeof what, "gaussian_noise std=%g training=%d on=%d", (double)std, training, on);
  compare(what, &y, B, 0);
  const float *xs = at(&ref, &x), *ys = at(&ref, &y);
  bool moved = false;
  for (int64_t i = 0; i < rt_lib_numel(&y, B); i++)
    moved |= xs[i] != ys[i];
  CHECK(moved == (training && on && std > 0), "%s: the noise applies exactly in a training step", what);
}

//
// Softmax
//

static void test_softmax(int kind, int ndim, const int64_t *shape, int axis, int64_t B) {
  reset();
  RtLibBuf a = buf(RT_SPACE_ARENA, ndim, shape), b = buf(RT_SPACE_ARENA, ndim, shape),
           c = buf(RT_SPACE_ARENA, ndim, shape);
  bool grad = kind == RL_SOFTMAX_GRAD || kind == RL_LOG_SOFTMAX_GRAD;
  fill(&a, -4, 4);
  fill(&b, kind == RL_LOG_SOFTMAX_GRAD ? -3 : 0, kind == RL_LOG_SOFTMAX_GRAD ? 0 : 1);
  RtLib d = grad ? lib(kind, 3, (RtLibBuf[]){a, b, c}) : lib(kind, 2, (RtLibBuf[]){a, b});
  d.i[0] = axis;
  set_step(&(Step){.training = true, .dropout = true, .t = 1});
  if (!run_both(&d, &(CudaLibCtx){.key = -1}, 1, B))
    return;
  char what[96];
  snprintf(what, sizeof what, "%s of rank %d over axis %d", rt_lib_name(kind), ndim, axis);
  compare(what, grad ? &c : &b, B, 1e-6);
}

//
// Embedding
//

// The gather and the weight's gradient, byte for byte (one thread per
// column walks the tokens in the reference's order), with tokens repeated
// so that rows of the gradient sum several; then, on the device side only,
// an index outside the table: NaN in its row, nothing read outside.
static void test_embedding(int64_t vocab, int64_t dim, int64_t B) {
  reset();
  RtLibBuf x = buf(RT_SPACE_ARENA, 3, (int64_t[]){RT_BATCH, 2, 3}), w = buf(RT_SPACE_STATE, 2, (int64_t[]){vocab, dim});
  RtLibBuf y = buf(RT_SPACE_ARENA, 4, (int64_t[]){RT_BATCH, 2, 3, dim});
  RtLibBuf dy = buf(RT_SPACE_ARENA, 4, (int64_t[]){RT_BATCH, 2, 3, dim}), dw = buf(RT_SPACE_STATE, 2, (int64_t[]){vocab, dim});
  fill_labels(&x, vocab < 4 ? (int)vocab : 4);
  fill(&w, -2, 2);
  fill(&dy, -2, 2);
  fill(&dw, 5, 6);   // stale values the gradient must overwrite
  RtLib d[2] = {lib(RL_EMBEDDING, 3, (RtLibBuf[]){x, w, y}), lib(RL_EMBEDDING_GRAD, 3, (RtLibBuf[]){dy, x, dw})};
  set_step(&(Step){.training = true, .dropout = true, .t = 1});
  CudaLibCtx cx[2] = {{.key = -1}, {.key = -1}};
  if (!run_both(d, cx, 2, B))
    return;
  char what[96];
  snprintf(what, sizeof what, "embedding (%lld x %lld)", (long long)vocab, (long long)dim);
  compare(what, &y, B, 0);
  compare(what, &dw, B, 0);
  int32_t far = (int32_t)vocab;
  memcpy((char *)at(&dev, &x) + 4 * (6 * (B - 1) + 2), &far, 4);   // the last sample's third token
  run_in(NULL, d, cx, 1, B);   // (the reference's copy keeps its indexes inside the table)
  const float *yd = at(&dev, &y);
  int64_t row = 6 * (B - 1) + 2;
  CHECK(isnan(yd[row * dim]) && isnan(yd[row * dim + dim - 1]) && !isnan(yd[0]),
        "%s: an index outside the table gives NaN in its row only", what);
}

//
// Losses
//

static void test_loss(int kind, int64_t C, int64_t B, bool poison) {
  reset();
  bool cls = kind == RL_CROSS_ENTROPY || kind == RL_NLL || kind == RL_CROSS_ENTROPY_GRAD || kind == RL_NLL_GRAD;
  bool grad = kind >= RL_CROSS_ENTROPY_GRAD;
  RtLibBuf y = buf(RT_SPACE_ARENA, 2, (int64_t[]){RT_BATCH, C});
  RtLibBuf t = cls ? buf(RT_SPACE_ARENA, 1, (int64_t[]){RT_BATCH}) : buf(RT_SPACE_ARENA, 2, (int64_t[]){RT_BATCH, C});
  RtLibBuf out = grad ? buf(RT_SPACE_ARENA, 2, (int64_t[]){RT_BATCH, C}) : buf(RT_SPACE_ARENA, 0, NULL);
  fill(&y, kind == RL_NLL || kind == RL_NLL_GRAD ? -5 : -3, kind == RL_NLL || kind == RL_NLL_GRAD ? 0 : 3);
  if (cls)
    fill_labels(&t, (int)C);
  else
    fill(&t, kind == RL_BCE_WITH_LOGITS || kind == RL_BCE_WITH_LOGITS_GRAD ? 0 : -3, 1);
  if (poison) {   // a loss that is not finite: a NaN where sample 0's loss reads it
    int64_t i = cls ? *(int32_t *)at(&ref, &t) : 1;
    ((float *)at(&ref, &y))[i] = ((float *)at(&dev, &y))[i] = NAN;
  }
  RtLib d = lib(kind, 3, (RtLibBuf[]){y, t, out});
  d.loss = !grad;
  d.loss_weight = 1;
  // A training program with per-step scalars (nothing of it but where they
  // lie): the loss turns their KS_APPLY off as the step block's.
  RtLibBuf ks = buf(RT_SPACE_ARENA, 1, (int64_t[]){KS_COUNT});
  IrGraph graph = {.nnodes = 0};
  IrNode scalars = {.op = IR_BUFFER, .dtype = DT_F32, .ndim = 1, .shape = {KS_COUNT}};
  KBufInfo place = {.space = KB_ARENA, .offset = ks.offset, .bytes = 4 * KS_COUNT};
  KProgram prog = {.g = &graph, .entry = ENTRY_TRAIN, .buf = &place, .scalars = &scalars, .max_batch = MAX_BATCH};
  set_step(&(Step){.training = true, .dropout = true, .lr = 0.1f, .t = 3});
  ctx->scalars = at(&ref, &ks);
  ((float *)at(&ref, &ks))[KS_APPLY] = ((float *)at(&dev, &ks))[KS_APPLY] = 1;
  if (!run_in(&prog, &d, &(CudaLibCtx){.training = true, .key = -1}, 1, B))
    return;
  CHECK(((float *)at(&dev, &ks))[KS_APPLY] == (poison && !grad ? 0 : 1) &&
            ((float *)at(&ref, &ks))[KS_APPLY] == ((float *)at(&dev, &ks))[KS_APPLY],
        "%s: the scalars' apply %g, the reference's %g", rt_lib_name(kind), (double)((float *)at(&dev, &ks))[KS_APPLY],
        (double)((float *)at(&ref, &ks))[KS_APPLY]);
  char what[96];
  snprintf(what, sizeof what, "%s (C %lld%s)", rt_lib_name(kind), (long long)C, poison ? ", a NaN" : "");
  compare(what, &out, B, 1e-6);
  if (grad)
    return;
  double l = step_loss();
  CHECK(poison ? isnan(l) : fabs(l - ctx->loss) <= 1e-6 * fabs(ctx->loss), "%s: the step's loss %.17g, the reference's %.17g",
        what, l, ctx->loss);
  CHECK(step_apply() == !poison && ctx->skip_updates == poison, "%s: apply %lld, the reference skips: %d", what,
        (long long)step_apply(), ctx->skip_updates);
}

//
// Updates
//

// An update on the state, several steps t in a row, a NaN loss's step
// (APPLY 0) among them changing nothing.
static void test_update(int kind, const double *f, int flag, int64_t n) {
  reset();
  RtLibBuf p = buf(RT_SPACE_STATE, 2, (int64_t[]){n / 5, 5}), g = buf(RT_SPACE_ARENA, 2, (int64_t[]){n / 5, 5});
  RtLibBuf s1 = buf(RT_SPACE_STATE, 2, (int64_t[]){n / 5, 5}), s2 = buf(RT_SPACE_STATE, 2, (int64_t[]){n / 5, 5});
  RtLibBuf s3 = buf(RT_SPACE_STATE, 2, (int64_t[]){n / 5, 5});
  fill(&p, -1, 1);
  int nbufs = kind == RL_ADAM_STEP      ? 4
              : kind == RL_RMSPROP_STEP ? 3 + (f[4] > 0) + flag
              : kind == RL_ADAGRAD_STEP ? 3
              : f[1] != 0               ? 3
                                        : 2;
  RtLib d = lib(kind, nbufs, (RtLibBuf[]){p, g, s1, s2, s3});
  memcpy(d.f, f, sizeof d.f);
  d.i[0] = flag;
  char what[96];
  snprintf(what, sizeof what, "%s (flag %d, momentum/beta1/alpha/lr_decay %g, f[3] %g)", rt_lib_name(kind), flag,
           f[1], kind == RL_ADAM_STEP ? f[4] : f[3]);
  for (int64_t t = 1; t <= 5; t++) {
    fill(&g, -1, 1);
    set_step(&(Step){.training = true, .lr = t == 2 ? 0.001 : 0.0625, .t = t});
    bool skip = t == 4;
    if (skip) {   // as the loss kernel leaves a step whose loss is not finite
      int zero = 0;
      memcpy(dev.step + CUDA_STEP_APPLY, &zero, 4);
      ctx->skip_updates = true;
    }
    // (rt_lib_run's updates check skip_updates themselves)
    if (!run_both(&d, &(CudaLibCtx){.training = true, .key = -1}, 1, 1))
      return;
    for (int i = 1; i < d.nbufs; i++)
      compare(what, &d.buf[i == 1 ? 0 : i], 1, 0);
  }
}

int main(void) {
  mem_init(&ref);
  mem_init(&dev);
  ctx = rt_context_new(2);
  Rng rng;
  rng_seed(&rng, 42, 1);
  ctx->rng = &rng;
  rng_seed(&data_rng, 7, 3);
  for (int i = 0; i < NSLOTS; i++)
    rt_context_reserve(ctx, i, 4 * MAX_BATCH * 4096);

  t_tmpdir("cuda-lib");
  setenv("TMPDIR", t_dir, 1);   // the shim's temporary files
  char err[4096];
  CgCudaHost *h = cg_cuda_host_load(cuda_prelude, err, sizeof err);
  if (!h && strstr(err, "cannot run the C compiler"))
    return t_skip("test_cuda_lib", err);
  CHECK(h, "%s", err);
  cg_cuda_host_free(h);

  static const int64_t batches[] = {1, 3, 7};
  for (int b = 0; b < 3; b++) {
    int64_t B = batches[b];
    static const float ps[] = {0.0f, 0.3f, 0.5f, 0.9f, 1.0f};
    for (int i = 0; i < 5; i++) {
      test_dropout(ps[i], B, true, true);
      test_dropout(ps[i], B, true, false);
    }
    test_dropout(0.5f, B, false, true);
    static const float stds[] = {0.0f, 0.3f, 2.0f};
    for (int i = 0; i < 3; i++) {
      test_noise(stds[i], B, true, true);
      test_noise(stds[i], B, true, false);
    }
    test_noise(0.5f, B, false, true);
    static const int kinds[] = {RL_SOFTMAX, RL_LOG_SOFTMAX, RL_SOFTMAX_GRAD, RL_LOG_SOFTMAX_GRAD};
    for (int k = 0; k < 4; k++) {
      test_softmax(kinds[k], 2, (int64_t[]){RT_BATCH, 10}, 1, B);
      test_softmax(kinds[k], 2, (int64_t[]){RT_BATCH, 13}, 0, B);
      for (int axis = 0; axis < 4; axis++)
        test_softmax(kinds[k], 4, (int64_t[]){RT_BATCH, 13, 3, 5}, axis, B);
    }
    test_embedding(11, 6, B);
    test_embedding(3, 65, B);
    for (int kind = RL_CROSS_ENTROPY; kind <= RL_BCE_WITH_LOGITS_GRAD; kind++)
      for (int C = 10; C <= 13; C += 3) {
        test_loss(kind, C, B, false);
        if (kind < RL_CROSS_ENTROPY_GRAD)
          test_loss(kind, C, B, true);
      }
  }
  test_update(RL_SGD_STEP, (double[6]){0.0625, 0, 0, 0}, 0, 35);
  test_update(RL_SGD_STEP, (double[6]){0.0625, 0.9, 0, 1e-4}, 0, 35);
  test_update(RL_SGD_STEP, (double[6]){0.0625, 0.9, 0.1, 0}, 0, 35);
  test_update(RL_SGD_STEP, (double[6]){0.0625, 0.9, 0, 0.01}, 1, 65);
  test_update(RL_ADAM_STEP, (double[6]){0.0625, 0.9, 0.999, 1e-8, 0}, 0, 35);
  test_update(RL_ADAM_STEP, (double[6]){0.0625, 0.9, 0.999, 1e-8, 0.01}, 0, 65);
  test_update(RL_ADAM_STEP, (double[6]){0.0625, 0.9, 0.999, 1e-8, 0.01}, 1, 65);
  test_update(RL_ADAM_STEP, (double[6]){0.0625, 0.2, 0.5, 1e-3, 0.1}, 1, 35);   // 1 - beta1 >= 0.5: lerp's other branch
  test_update(RL_RMSPROP_STEP, (double[6]){0.0625, 0.99, 1e-8, 0, 0}, 0, 35);
  test_update(RL_RMSPROP_STEP, (double[6]){0.0625, 0.9, 1e-8, 1e-4, 0.9}, 0, 35);
  test_update(RL_RMSPROP_STEP, (double[6]){0.0625, 0.9, 1e-8, 0, 0}, 1, 35);
  test_update(RL_RMSPROP_STEP, (double[6]){0.0625, 0.3, 1e-3, 0.01, 0.5}, 1, 65);   // lerp's other branch
  test_update(RL_ADAGRAD_STEP, (double[6]){0.0625, 0, 0, 0, 1e-10}, 0, 35);
  test_update(RL_ADAGRAD_STEP, (double[6]){0.0625, 0.1, 0.01, 0.1, 1e-10}, 0, 65);

  // A descriptor it cannot run is refused with a message, not run.
  CudaGen g;
  cuda_gen_init(&g, NULL, MAX_BATCH, err, sizeof err);
  RtLib bad = lib(RL_SOFTMAX, 2, (RtLibBuf[]){{.ndim = 2, .shape = {RT_BATCH, 10}}, {.ndim = 2, .shape = {RT_BATCH, 10}}});
  bad.i[0] = 2;
  CHECK(!cuda_emit_lib(&g, 0, NULL, &bad, &(CudaLibCtx){.key = -1}) && strstr(err, "axis"), "a bad axis: %s", err);
  cuda_gen_free(&g);

  unload_all();
  rt_context_free(ctx);
  mem_free(&ref);
  mem_free(&dev);
  return t_finish("test_cuda_lib");
}
