// cuda.c: the cuda backends: each entry point simplified, fused and
// memory planned (pass_compile) as for the cpu backend, written as CUDA C
// (cg_cuda_generate), and run as its launch plan:
//
//   cuda      on a GPU: NVRTC compiles the source for the device (cached
//             per architecture), parameters, optimizer state, the arena and
//             the slots live in device memory, a step is one CUDA graph
//   cuda-emu  the very same source compiled by the host's C compiler behind
//             the host shim (codegen/cuda_shim.c) and run on the CPU: how
//             the tests check the CUDA C on machines without a GPU
//
// Both run a step alike: the batch and the step block (learning rate, t,
// dropout keys drawn from the executor's generator in the order the cpu
// backend draws them) copied in, the per-step scalars written, every
// launch in order, the loss copied out.
#include "backend.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// One entry point, compiled.
typedef struct CudaProg {
  Compilation *comp;
  CgCuda *code;
  CgCudaHost *host;        // cuda-emu: the source, compiled for the CPU
  RtCudaModule *mod;       // cuda: the module on the device
  void **fn;               // per launch: a CgCudaFn (cuda-emu) or a CUfunction (cuda)
  bool has_loss;           // a kernel's result is the step's loss
  RtCudaGraph *graph[4];   // cuda: the step captured, per batch (graph_b[i])
  int64_t graph_b[4];
  int ngraphs;
  // Where its inputs and targets lie in the arena: in_off[i] bytes from its
  // start, in_row[i] bytes per sample (the model's inputs, then its targets).
  int nin;
  int64_t in_off[RT_MAX_INPUTS + IR_MAX_TARGETS], in_row[RT_MAX_INPUTS + IR_MAX_TARGETS];
} CudaProg;

// A batch exec_prefetch announced.
typedef struct Pending {
  bool set;
  EntryKind entry;
  int64_t B;
  const float *x;
  const void *y;
  int slot;                // ready: the staging slot it was copied to
} Pending;

typedef struct CudaExec {
  bool emu;
  CudaProg prog[ENTRY_COUNT];
  int naux;
  int64_t *aux_bytes;
  // cuda-emu: host memory
  char *arena, *state, *step, **aux;
  // cuda: device memory, and the host's copies of what crosses
  RtCuda *dev;
  RtNvrtc *nvrtc;
  uint64_t d_arena, d_state, d_step, d_aux;   // d_aux: the slots' addresses, an array on the device
  uint64_t *d_slot;
  char *h_step;            // the step block as the host writes it (pinned)
  char *h_in;              // the inputs and target (pinned): arena bytes [in_lo, in_hi)
  int64_t in_lo, in_hi;    // (of every program: each has its inputs within)
  bool graphs;             // the driver captures graphs
  // The next batch, announced by exec_prefetch (announced): fed into a
  // staging slot's h_pre (cuda-emu: pre) while the step before runs and
  // copied to its d_pre on the copy stream (then it is ready), and from
  // there into the arena by the step that takes it. Two slots: one being
  // filled while the other's batch goes into the arena.
  Pending announced, ready;
  int next_slot;
  char *h_pre[2], *pre[2];
  uint64_t d_pre[2];
} CudaExec;

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

// A non-NULL marker for ex->buf[] of values that live on the device (read
// and write copy through the plan's places; only the inputs are fed from
// host memory).
static char on_device;


static CudaExec *cx(const Exec *ex) { return ex->cuda; }

// What dev_available opened, kept for the next executor: a command checks
// --backend cuda first and builds its executor after, and the driver's
// context, started twice, would cost start-up time twice.
static RtNvrtc *probed_nvrtc;
static RtCuda *probed_dev;

// The running program's place of node n: its block's base (host) or
// address (device) plus its offset.
static const KBufInfo *place(const Exec *ex, const IrNode *n) {
  for (int e = 0; e < ENTRY_COUNT; e++) {
    const CudaProg *cp = &cx(ex)->prog[e];
    if (cp->comp && cp->comp->prog->g == ex->g)
      return &cp->comp->prog->buf[n->id];
  }
  return NULL;
}

//
// Building
//

// The slots' sizes: the largest any program's descriptor asks for.
static void size_slots(CudaExec *c) {
  for (int e = 0; e < ENTRY_COUNT; e++) {
    const KProgram *q = c->prog[e].comp ? c->prog[e].comp->prog : NULL;
    for (int i = 0; q && i < q->nkernels; i++) {
      const RtLib *d = q->kernels[i]->lib;
      if (!d || d->aux < 0)
        continue;
      if (d->aux >= c->naux) {
        c->aux_bytes = xrealloc(c->aux_bytes, sizeof(int64_t) * (d->aux + 1));
        for (int j = c->naux; j <= d->aux; j++)
          c->aux_bytes[j] = 0;
        c->naux = d->aux + 1;
      }
      if (d->aux_bytes > c->aux_bytes[d->aux])
        c->aux_bytes[d->aux] = d->aux_bytes;
    }
  }
}

static bool has_loss(const KProgram *p) {
  for (int i = 0; i < p->nkernels; i++)
    if (p->kernels[i]->kind == KN_LIB && p->kernels[i]->lib && p->kernels[i]->lib->loss)
      return true;
  return false;
}

// "cuda-emu: kernel 'k3_linear_1': ..." style messages come from below.
static bool load_emu(Exec *ex, CudaProg *cp, char *err, size_t errsz) {
  (void)ex;
  cp->host = cg_cuda_host_load(cp->code->source, err, errsz);
  if (!cp->host)
    return false;
  cp->fn = xcalloc(cp->code->nlaunch + 1, sizeof(void *));
  for (int i = 0; i < cp->code->nlaunch; i++)
    if (!(cp->fn[i] = (void *)cg_cuda_host_fn(cp->host, cp->code->launch[i].name))) {
      errorf(err, errsz, "the compiled CUDA C has no kernel '%s'", cp->code->launch[i].name);
      return false;
    }
  return true;
}

static bool load_device(Exec *ex, CudaProg *cp, int entry, char *err, size_t errsz) {
  CudaExec *c = cx(ex);
  char name[64];
  snprintf(name, sizeof name, "%s.cu", ir_entry_name(entry));
  cp->mod = rt_cuda_build(c->dev, c->nvrtc, cp->code->source, name, err, errsz);
  if (!cp->mod)
    return false;
  cp->fn = xcalloc(cp->code->nlaunch + 1, sizeof(void *));
  for (int i = 0; i < cp->code->nlaunch; i++)
    if (!(cp->fn[i] = rt_cuda_function(cp->mod, cp->code->launch[i].name))) {
      errorf(err, errsz, "the compiled module has no kernel '%s'", cp->code->launch[i].name);
      return false;
    }
  return true;
}

// The arena bytes the inputs and target take in every program: what each
// step copies to the device.
static void input_span(Exec *ex, CudaExec *c) {
  c->in_lo = INT64_MAX;
  c->in_hi = 0;
  const Model *m = ex->m;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    CudaProg *cp = &c->prog[e];
    const KProgram *p = cp->comp ? cp->comp->prog : NULL;
    for (int i = 0; p && i < m->ninputs + m->ntargets; i++) {
      const IrNode *n = i < m->ninputs ? m->inputs[i] : m->targets[i - m->ninputs];
      if (!n || !p->buf[n->id].bytes)
        continue;
      const KBufInfo *b = &p->buf[n->id];
      c->in_lo = b->offset < c->in_lo ? b->offset : c->in_lo;
      c->in_hi = b->offset + b->bytes > c->in_hi ? b->offset + b->bytes : c->in_hi;
      cp->in_off[cp->nin] = b->offset;
      cp->in_row[cp->nin++] = 4 * ir_numel(n, 1);
    }
  }
  if (c->in_hi <= c->in_lo)
    c->in_lo = c->in_hi = 0;
}

// Copies a program's inputs and target for batch B: from host bytes laid
// out as the arena's [in_lo, in_hi) (src) into the arena (dst; on the
// device: dev, else host memory).
static bool copy_inputs(CudaExec *c, const CudaProg *cp, int64_t B, const char *src, uint64_t dev, char *host,
                        char *err, size_t errsz) {
  for (int i = 0; i < cp->nin; i++) {
    int64_t at = cp->in_off[i], n = cp->in_row[i] * B;
    if (host)
      memcpy(host + at, src + (at - c->in_lo), n);
    else if (!rt_cuda_upload(c->dev, dev + at, src + (at - c->in_lo), n, err, errsz))
      return false;
  }
  return true;
}

static bool alloc_device(Exec *ex, CudaExec *c, int64_t arena_bytes, int64_t state_bytes, char *err, size_t errsz) {
  (void)ex;
  if (!(c->d_arena = rt_cuda_alloc(c->dev, arena_bytes > 0 ? arena_bytes : 4, err, errsz)) ||
      !(c->d_state = rt_cuda_alloc(c->dev, state_bytes > 0 ? state_bytes : 4, err, errsz)) ||
      !(c->d_step = rt_cuda_alloc(c->dev, CUDA_STEP_BYTES, err, errsz)) ||
      !(c->h_step = rt_cuda_host_alloc(c->dev, CUDA_STEP_BYTES, err, errsz)))
    return false;
  int64_t span = c->in_hi - c->in_lo;
  if (span > 0 && !(c->h_in = rt_cuda_host_alloc(c->dev, span, err, errsz)))
    return false;
  for (int s = 0; s < 2 && span > 0; s++)
    if (!(c->h_pre[s] = rt_cuda_host_alloc(c->dev, span, err, errsz)) ||
        !(c->d_pre[s] = rt_cuda_alloc(c->dev, span, err, errsz)))
      return false;
  c->d_slot = xcalloc(c->naux + 1, sizeof(uint64_t));
  for (int i = 0; i < c->naux; i++)
    if (!(c->d_slot[i] = rt_cuda_alloc(c->dev, c->aux_bytes[i] > 0 ? c->aux_bytes[i] : 4, err, errsz)))
      return false;
  if (!(c->d_aux = rt_cuda_alloc(c->dev, sizeof(uint64_t) * (c->naux + 1), err, errsz)))
    return false;
  return rt_cuda_upload(c->dev, c->d_aux, c->d_slot, sizeof(uint64_t) * (c->naux + 1), err, errsz) &&
         rt_cuda_memset(c->dev, c->d_state, state_bytes > 0 ? state_bytes : 4, err, errsz) &&
         rt_cuda_memset(c->dev, c->d_arena, arena_bytes > 0 ? arena_bytes : 4, err, errsz) &&
         rt_cuda_sync(c->dev, err, errsz);
}

static bool cuda_init_common(Exec *ex, const Model *m, const ExecOptions *o, bool emu, char *err, size_t errsz) {
  CudaExec *c = ex->cuda = xcalloc(1, sizeof *c);
  c->emu = emu;
  if (!emu && probed_dev) {   // (opened by dev_available)
    c->nvrtc = probed_nvrtc;
    c->dev = probed_dev;
    probed_nvrtc = NULL;
    probed_dev = NULL;
  } else if (!emu) {   // what is missing first, before compiling anything
    if (!(c->nvrtc = rt_nvrtc_open(err, errsz)) || !(c->dev = rt_cuda_open(0, err, errsz)))
      return false;
  }
  CompileOptions co = {ex->max_batch, o->fuse, NULL, false};
  const Compilation *first = NULL;
  int64_t arena_bytes = 0;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    if (!(ex->entries & (1u << e)))
      continue;
    CudaProg *cp = &c->prog[e];
    Compilation *comp = cp->comp = pass_compile(m, e, &co);
    if (!first)
      first = comp;
    else if (!exec_same_layout(first->prog, comp->prog))
      nnc_bug(__FILE__, __LINE__, "two entry points of one model compiled to different state layouts");
    char why[1024];
    if (!(cp->code = cg_cuda_generate(comp->prog, why, sizeof why))) {
      errorf(err, errsz, "the %s entry point cannot be written as CUDA C: %s", ir_entry_name(e), why);
      return false;
    }
    cp->has_loss = has_loss(comp->prog);
    arena_bytes = comp->prog->arena_bytes > arena_bytes ? comp->prog->arena_bytes : arena_bytes;
  }
  ex->where = first->where;
  exec_tables(ex, first->model);
  size_slots(c);
  int64_t state_bytes = first->prog->state_bytes;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    CudaProg *cp = &c->prog[e];
    if (cp->comp && !(emu ? load_emu(ex, cp, err, errsz) : load_device(ex, cp, e, err, errsz)))
      return false;
  }
  input_span(ex, c);
  if (emu) {
    for (int s = 0; s < 2; s++)
      c->pre[s] = xcalloc(1, c->in_hi > c->in_lo ? c->in_hi - c->in_lo : 1);
    c->arena = xcalloc(1, arena_bytes > 0 ? arena_bytes : 1);
    c->state = xcalloc(1, state_bytes > 0 ? state_bytes : 1);
    c->step = xcalloc(1, CUDA_STEP_BYTES);
    c->aux = xcalloc(c->naux + 1, sizeof(char *));
    for (int i = 0; i < c->naux; i++)
      c->aux[i] = xcalloc(1, c->aux_bytes[i] > 0 ? c->aux_bytes[i] : 1);
  } else {
    if (!alloc_device(ex, c, arena_bytes, state_bytes, err, errsz))
      return false;
    c->graphs = !getenv("NNC_CUDA_NO_GRAPHS") && rt_cuda_has_graphs(c->dev);
  }
  const KProgram *p = first->prog;
  for (int i = 0; i < ex->g->nnodes; i++)
    if (p->buf[i].space == KB_STATE && is_state(ex->g->nodes[i]))
      ex->buf[i] = emu ? c->state + p->buf[i].offset : &on_device;
  return true;
}

static bool emu_init(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  return cuda_init_common(ex, m, o, true, err, errsz);
}

static bool dev_init(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  return cuda_init_common(ex, m, o, false, err, errsz);
}

static void cuda_free(Exec *ex) {
  CudaExec *c = cx(ex);
  if (!c)
    return;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    CudaProg *cp = &c->prog[e];
    if (c->dev)
      for (int j = 0; j < cp->ngraphs; j++)
        rt_cuda_graph_free(c->dev, cp->graph[j]);
    if (cp->mod)
      rt_cuda_unload(cp->mod);
    cg_cuda_host_free(cp->host);
    free(cp->fn);
    cg_cuda_free(cp->code);
    pass_compilation_free(cp->comp);
  }
  if (c->dev) {
    rt_cuda_free(c->dev, c->d_arena);
    rt_cuda_free(c->dev, c->d_state);
    rt_cuda_free(c->dev, c->d_step);
    rt_cuda_free(c->dev, c->d_aux);
    for (int i = 0; c->d_slot && i < c->naux; i++)
      rt_cuda_free(c->dev, c->d_slot[i]);
    rt_cuda_host_free(c->dev, c->h_step);
    rt_cuda_host_free(c->dev, c->h_in);
    for (int s = 0; s < 2; s++) {
      rt_cuda_host_free(c->dev, c->h_pre[s]);
      rt_cuda_free(c->dev, c->d_pre[s]);
    }
    rt_cuda_close(c->dev);
  }
  rt_nvrtc_close(c->nvrtc);
  free(c->d_slot);
  free(c->pre[0]);
  free(c->pre[1]);
  free(c->arena);
  free(c->state);
  free(c->step);
  for (int i = 0; c->aux && i < c->naux; i++)
    free(c->aux[i]);
  free(c->aux);
  free(c->aux_bytes);
  free(c);
}

static const KProgram *cuda_program(const Exec *ex, EntryKind entry, CgTimes *times) {
  if ((unsigned)entry >= ENTRY_COUNT || !cx(ex)->prog[entry].comp)
    return NULL;
  if (times)
    *times = (CgTimes){0};
  return cx(ex)->prog[entry].comp->prog;
}

//
// A step
//

// Points buf[] at the running program's places: host memory for cuda-emu;
// for cuda the inputs' pinned copy, and the marker for the rest.
static void bind_program(Exec *ex, const KProgram *p) {
  CudaExec *c = cx(ex);
  for (int i = 0; i < ex->g->nnodes; i++) {
    const KBufInfo *b = &p->buf[i];
    if (b->space == KB_STATE)
      continue;
    if (!b->bytes)
      ex->buf[i] = NULL;
    else if (c->emu)
      ex->buf[i] = c->arena + b->offset;
    else if (c->h_in && b->offset >= c->in_lo && b->offset + b->bytes <= c->in_hi)
      ex->buf[i] = c->h_in + (b->offset - c->in_lo);
    else
      ex->buf[i] = &on_device;
  }
}

// The step block of a step of program cp.
static void write_step(Exec *ex, const CudaProg *cp, char *blk, bool training, double lr) {
  memset(blk, 0, CUDA_STEP_KEYS);
  float lrf = (float)lr;
  int one = 1, tr = training, drop = training && ex->dropout;
  long long t = ex->steps;
  memcpy(blk + CUDA_STEP_LR, &lrf, sizeof lrf);
  memcpy(blk + CUDA_STEP_LR64, &lr, sizeof lr);
  memcpy(blk + CUDA_STEP_APPLY, &one, sizeof one);
  memcpy(blk + CUDA_STEP_T, &t, sizeof t);
  memcpy(blk + CUDA_STEP_TRAINING, &tr, sizeof tr);
  memcpy(blk + CUDA_STEP_DROPOUT, &drop, sizeof drop);
  for (int j = 0; j < cp->code->nkeys; j++) {   // in program order, as the cpu backend draws them
    uint64_t key = drop ? k_dropout_key(cp->code->key_p[j], &ex->rng) : 0;
    memcpy(blk + CUDA_STEP_KEYS + 8 * j, &key, sizeof key);
  }
}

static void fatal_launch(const char *err) { nnc_fatal("cuda: %s", err); }

static void emu_launches(Exec *ex, const CudaProg *cp, int64_t B) {
  CudaExec *c = cx(ex);
  char err[1024];
  int kernel = -1;
  for (int i = 0; i < cp->code->nlaunch; i++) {
    const CgCudaLaunch *l = &cp->code->launch[i];
    if (ex->tick && l->kernel != kernel)
      ex->tick(ex->tick_arg, kernel = l->kernel);
    unsigned grid[3];
    cg_cuda_grid(l, B, grid);
    if (!grid[0])
      continue;
    if (!cg_cuda_host_launch(cp->host, l->name, (CgCudaFn)cp->fn[i], grid, (unsigned)l->block, l->barrier, c->arena,
                             c->state, c->aux, c->step, B, err, sizeof err))
      fatal_launch(err);
  }
  if (ex->tick)
    ex->tick(ex->tick_arg, cp->comp->prog->nkernels);
}

// Every launch of cp at batch B on the step stream; with ticks (nnc
// bench), one kernel at a time, waiting for each.
static bool dev_launches(Exec *ex, const CudaProg *cp, int64_t B, char *err, size_t errsz) {
  CudaExec *c = cx(ex);
  long long b = B;
  void *args[5] = {&c->d_arena, &c->d_state, &c->d_aux, &c->d_step, &b};
  int kernel = -1;
  for (int i = 0; i < cp->code->nlaunch; i++) {
    const CgCudaLaunch *l = &cp->code->launch[i];
    if (ex->tick && l->kernel != kernel) {
      if (!rt_cuda_sync(c->dev, err, errsz))
        return false;
      ex->tick(ex->tick_arg, kernel = l->kernel);
    }
    unsigned grid[3];
    cg_cuda_grid(l, B, grid);
    if (grid[0] && !rt_cuda_launch(c->dev, cp->fn[i], grid, (unsigned)l->block, args, l->name, err, errsz))
      return false;
  }
  if (ex->tick) {
    if (!rt_cuda_sync(c->dev, err, errsz))
      return false;
    ex->tick(ex->tick_arg, cp->comp->prog->nkernels);
  }
  return true;
}

// The step as one CUDA graph, captured the first time a batch runs.
static bool dev_graph(Exec *ex, CudaProg *cp, int64_t B, char *err, size_t errsz) {
  CudaExec *c = cx(ex);
  for (int j = 0; j < cp->ngraphs; j++)
    if (cp->graph_b[j] == B)
      return rt_cuda_graph_launch(c->dev, cp->graph[j], err, errsz);
  if (!rt_cuda_capture_begin(c->dev, err, errsz))
    return false;
  bool ok = dev_launches(ex, cp, B, err, errsz);
  RtCudaGraph *gr = rt_cuda_capture_end(c->dev, err, errsz);
  if (!ok || !gr)
    return false;
  if (cp->ngraphs == countof(cp->graph)) {   // the oldest batch's graph makes room
    rt_cuda_graph_free(c->dev, cp->graph[0]);
    memmove(cp->graph, cp->graph + 1, sizeof(cp->graph[0]) * (countof(cp->graph) - 1));
    memmove(cp->graph_b, cp->graph_b + 1, sizeof(cp->graph_b[0]) * (countof(cp->graph) - 1));
    cp->ngraphs--;
  }
  cp->graph[cp->ngraphs] = gr;
  cp->graph_b[cp->ngraphs++] = B;
  return rt_cuda_graph_launch(c->dev, gr, err, errsz);
}

// Feeds the announced batch into host bytes laid out as the arena's
// [in_lo, in_hi) (dst), at its program's places.
static void feed_announced(Exec *ex, char *dst) {
  CudaExec *c = cx(ex);
  const Pending *n = &c->announced;
  const KProgram *p = c->prog[n->entry].comp->prog;
  const Model *m = ex->m;   // (every program's copy has the same node ids)
  int nfed = m->ninputs + m->ntargets;
  void **saved = xcalloc(nfed + 1, sizeof(void *));
  for (int i = 0; i < nfed; i++) {
    const IrNode *t = i < m->ninputs ? m->inputs[i] : m->targets[i - m->ninputs];
    saved[i] = ex->buf[t->id];
    ex->buf[t->id] = p->buf[t->id].bytes ? dst + (p->buf[t->id].offset - c->in_lo) : NULL;
  }
  exec_feed(ex, n->B, n->x, n->y);
  for (int i = 0; i < nfed; i++) {
    const IrNode *t = i < m->ninputs ? m->inputs[i] : m->targets[i - m->ninputs];
    ex->buf[t->id] = saved[i];
  }
  free(saved);
}

// While a step runs: the announced batch fed into the free staging slot
// and, on a GPU, queued on the copy stream to the device's copy of it.
static bool stage_announced(Exec *ex, char *err, size_t errsz) {
  CudaExec *c = cx(ex);
  if (!c->announced.set)
    return true;
  int slot = c->next_slot;   // not the slot the running step reads from
  c->next_slot ^= 1;
  const CudaProg *cp = &c->prog[c->announced.entry];
  char *h = c->emu ? c->pre[slot] : c->h_pre[slot];
  feed_announced(ex, h);
  for (int i = 0; !c->emu && i < cp->nin; i++) {
    int64_t at = cp->in_off[i] - c->in_lo;
    if (!rt_cuda_upload_copy(c->dev, c->d_pre[slot] + at, h + at, cp->in_row[i] * c->announced.B, err, errsz))
      return false;
  }
  c->ready = c->announced;
  c->ready.slot = slot;
  c->announced.set = false;
  return true;
}

static void cuda_prefetch(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y) {
  cx(ex)->announced = (Pending){.set = true, .entry = entry, .B = B, .x = x, .y = y};
}

// The batch of this step into the arena: from the staging slot it was
// copied to while the step before ran (the copy stream joined first), or
// from the host now.
static bool put_inputs(Exec *ex, const CudaProg *cp, int64_t B, bool staged, char *err, size_t errsz) {
  CudaExec *c = cx(ex);
  int slot = c->ready.slot;
  if (c->emu)   // (unstaged, exec_feed wrote into the arena itself)
    return !staged || copy_inputs(c, cp, B, c->pre[slot], 0, c->arena, err, errsz);
  if (!staged)
    return copy_inputs(c, cp, B, c->h_in, c->d_arena, NULL, err, errsz);
  if (!rt_cuda_copies_join(c->dev, err, errsz))
    return false;
  for (int i = 0; i < cp->nin; i++)
    if (!rt_cuda_copy(c->dev, c->d_arena + cp->in_off[i], c->d_pre[slot] + (cp->in_off[i] - c->in_lo),
                      cp->in_row[i] * B, err, errsz))
      return false;
  return true;
}

static double cuda_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr) {
  CudaExec *c = cx(ex);
  CudaProg *cp = &c->prog[entry];
  const KProgram *p = cp->comp->prog;
  Pending *r = &c->ready;
  bool staged = r->set && r->entry == entry && r->B == B && r->x == x && r->y == y;
  ex->m = cp->comp->model;
  ex->g = p->g;
  bind_program(ex, p);
  if (!staged)
    exec_feed(ex, B, x, y);
  for (int i = 0; i < ex->g->nnodes; i++)
    ex->done[i] = ex->need[entry][i] && ex->buf[i] != NULL;
  bool training = entry == ENTRY_TRAIN;
  if (training)
    ++ex->steps;
  const OptimConfig *o = &ex->m->opt;
  RtStep s = {.training = training, .dropout = ex->dropout, .lr = lr, .beta1 = o->beta1, .beta2 = o->beta2,
              .weight_decay = o->weight_decay, .lr_decay = o->lr_decay};
  float scalars[KS_COUNT];
  rt_step_scalars(scalars, &s, ex->steps);
  int64_t at = p->scalars ? p->buf[ex->g->nnodes].offset : -1;
  double loss;
  char err[1024];
  bool ok;
  if (c->emu) {
    put_inputs(ex, cp, B, staged, err, sizeof err);
    r->set = false;   // taken, or another batch came: the staged one is dropped
    write_step(ex, cp, c->step, training, lr);
    if (at >= 0)
      memcpy(c->arena + at, scalars, sizeof scalars);
    emu_launches(ex, cp, B);
    ok = stage_announced(ex, err, sizeof err);
    memcpy(&loss, c->step + CUDA_STEP_LOSS, sizeof loss);
  } else {
    write_step(ex, cp, c->h_step, training, lr);
    ok = rt_cuda_upload(c->dev, c->d_step, c->h_step, CUDA_STEP_BYTES, err, sizeof err) &&
         (at < 0 || rt_cuda_upload(c->dev, c->d_arena + at, scalars, sizeof scalars, err, sizeof err)) &&
         put_inputs(ex, cp, B, staged, err, sizeof err) &&
         (c->graphs && !ex->tick ? dev_graph(ex, cp, B, err, sizeof err) : dev_launches(ex, cp, B, err, sizeof err));
    r->set = false;
    ok = ok && stage_announced(ex, err, sizeof err) &&   // while the step runs
         rt_cuda_download(c->dev, &loss, c->d_step + CUDA_STEP_LOSS, sizeof loss, err, sizeof err);
  }
  if (!ok)
    fatal_launch(err);
  if (training && cp->has_loss && !isfinite(loss))
    --ex->steps;   // the step made no update and does not count
  return loss;
}

//
// Copies in and out
//

static void cuda_read(const Exec *ex, const IrNode *n, int64_t count, float *out) {
  CudaExec *c = cx(ex);
  if (c->emu) {
    exec_host_read(ex, n, count, out);
    return;
  }
  const KBufInfo *b = place(ex, n);
  if (!b || !b->bytes)
    nnc_bug(__FILE__, __LINE__, "a value the running program does not place");
  char err[1024];
  if (!rt_cuda_download(c->dev, out, (b->space == KB_STATE ? c->d_state : c->d_arena) + b->offset,
                        sizeof(float) * count, err, sizeof err))
    fatal_launch(err);
}

static void cuda_write(Exec *ex, const IrNode *n, int64_t count, const float *in) {
  CudaExec *c = cx(ex);
  if (c->emu) {
    exec_host_write(ex, n, count, in);
    return;
  }
  const KBufInfo *b = place(ex, n);
  if (!b || !b->bytes)
    nnc_bug(__FILE__, __LINE__, "a value the running program does not place");
  char err[1024];
  if (!rt_cuda_upload(c->dev, (b->space == KB_STATE ? c->d_state : c->d_arena) + b->offset, in, sizeof(float) * count,
                      err, sizeof err) ||
      !rt_cuda_sync(c->dev, err, sizeof err))
    fatal_launch(err);
}

// The driver, a device and NVRTC, opened and kept for the executor built
// next (cuda_init_common takes them).
static bool dev_available(char *err, size_t errsz) {
  if (probed_dev)
    return true;
  RtNvrtc *n = rt_nvrtc_open(err, errsz);
  RtCuda *d = n ? rt_cuda_open(0, err, errsz) : NULL;
  if (!d) {
    rt_nvrtc_close(n);
    return false;
  }
  probed_nvrtc = n;
  probed_dev = d;
  return true;
}

// A C compiler the shim can use.
static bool emu_available(char *err, size_t errsz) {
  CgCudaHost *h = cg_cuda_host_load("NNC_KERNEL void nnc_probe(void) {}\n", err, errsz);
  cg_cuda_host_free(h);
  return h != NULL;
}

const ExecBackend exec_cuda = {
    .name = "cuda",
    .help = "fused kernels as CUDA C, compiled by NVRTC, run on the GPU",
    .keeps_values = false,
    .init = dev_init,
    .free = cuda_free,
    .run = cuda_run,
    .program = cuda_program,
    .read = cuda_read,
    .write = cuda_write,
    .prefetch = cuda_prefetch,
    .available = dev_available,
};

const ExecBackend exec_cuda_emu = {
    .name = "cuda-emu",
    .help = "the cuda backend's CUDA C run on the CPU through a host shim (for testing; slow)",
    .keeps_values = false,
    .init = emu_init,
    .free = cuda_free,
    .run = cuda_run,
    .program = cuda_program,
    .read = cuda_read,
    .write = cuda_write,
    .prefetch = cuda_prefetch,
    .available = emu_available,
};
