// cpu.c: the cpu backend: each entry point simplified, fused, memory
// planned (pass_compile) and compiled by LLVM when the executor is built;
// a step is one call of the compiled entry function, which calls the
// runtime library for parallel loops, GEMMs and library kernels (RtCalls,
// bound to the executor's RtContext).
//
// Every program of one executor shares the state block: memplan lays the
// persistent tensors out alike for every entry point, and cpu_init checks
// it. Each program is compiled from a copy of the caller's model; the
// copies are alike node for node, so the per-node tables are shared too.
#include "backend.h"

#include <stdlib.h>
#include <string.h>

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

//
// The backend
//

// Points buf[] at where the plan of p puts each value.
static void bind_program(Exec *ex, const KProgram *p) {
  for (int i = 0; i < ex->g->nnodes; i++) {
    const KBufInfo *b = &p->buf[i];
    if (b->space == KB_STATE)
      continue;
    ex->buf[i] = b->bytes && b->space != KB_LOCAL ? ex->arena + b->offset : NULL;   // (local: inside a region only)
  }
}

static bool cpu_init(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  CompileOptions co = {ex->max_batch, o->fuse, NULL, !o->no_regions};
  const Compilation *first = NULL;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    if (!(ex->entries & (1u << e)))
      continue;
    Compilation *c = ex->prog[e] = pass_compile(m, e, &co);
    if (!first)
      first = c;
    else if (!exec_same_layout(first->prog, c->prog))
      nnc_bug(__FILE__, __LINE__, "two entry points of one model compiled to different state layouts");
    ex->mod[e] = cg_compile(c->prog, NULL, err, errsz);
    if (!ex->mod[e])
      return false;
    ex->arena_bytes = c->prog->arena_bytes > ex->arena_bytes ? c->prog->arena_bytes : ex->arena_bytes;
  }
  ex->where = first->where;
  exec_tables(ex, first->model);
  ex->arena = xcalloc(1, ex->arena_bytes ? ex->arena_bytes : 1);
  ex->ctx = rt_context_new(o->threads > 0 ? o->threads : 1);
  ex->ctx->rng = &ex->rng;
  ex->calls = rt_context_calls(ex->ctx);
  for (int e = 0; e < ENTRY_COUNT; e++) {   // the slots the library kernels keep state in
    const KProgram *q = ex->prog[e] ? ex->prog[e]->prog : NULL;
    for (int i = 0; q && i < q->nkernels; i++) {
      const RtLib *d = q->kernels[i]->lib;
      if (d && d->aux >= 0)
        rt_context_reserve(ex->ctx, d->aux, d->aux_bytes);
    }
  }
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
  rt_context_free(ex->ctx);
}

static const KProgram *cpu_program(const Exec *ex, EntryKind entry, CgTimes *times) {
  if ((unsigned)entry >= ENTRY_COUNT || !ex->mod[entry])
    return NULL;
  if (times)
    *times = cg_times(ex->mod[entry]);
  return ex->prog[entry]->prog;
}

//
// Where a training step's gradients are final (exec_set_grad_hook)
//

// A call of the hook at the start of kernel `kernel` (nkernels: the step's
// end): gradient `param` is ready at g, or needed.
typedef struct GradPoint {
  int kernel;
  bool need;
  int param;
  float *g;
  int64_t n;
} GradPoint;

static bool overlaps(const KBufInfo *a, const KBufInfo *b) {
  return a->space == b->space && a->bytes > 0 && b->bytes > 0 && a->offset < b->offset + b->bytes &&
         b->offset < a->offset + a->bytes;
}

// Whether kernel k reads or writes any of the bytes of r.
static bool touches(const KProgram *p, const Kernel *k, const KBufInfo *r) {
  for (const Kernel *e = k; e; e = e == k ? k->epilogue : NULL)
    for (int b = 0; b < e->nbufs; b++)
      if (overlaps(&p->buf[e->bufs[b]->id], r))
        return true;
  for (int s = 0; k->kind == KN_LIB && s < k->node->nsrc; s++)
    if (overlaps(&p->buf[k->node->src[s]->id], r))
      return true;
  return false;
}

static bool computes(const Kernel *k, const IrNode *n) {
  for (int i = 0; i < k->nnodes; i++)
    if (k->nodes[i] == n)
      return true;
  return false;
}

static int point_order(const void *a, const void *b) {
  const GradPoint *x = a, *y = b;
  if (x->kernel != y->kernel)
    return x->kernel < y->kernel ? -1 : 1;
  if (x->need != y->need)
    return x->need ? 1 : -1;   // at one boundary, what became ready first
  return x->param < y->param ? -1 : x->param > y->param;
}

// For each gradient of the training program: the last kernel that computes
// it (ready at the next boundary) and the first one after that touches its
// bytes (needed before it starts); a gradient no kernel computes apart from
// its readers (fused into its update) cannot be given.
static bool cpu_grad_points(Exec *ex, int *ngrads, char *err, size_t errsz) {
  const Compilation *c = ex->prog[ENTRY_TRAIN];
  const KProgram *p = c->prog;
  const Model *m = c->model;
  free(ex->points);
  ex->points = xmalloc(sizeof(GradPoint) * 2 * (m->nparams + 1));
  ex->npoints = 0;
  *ngrads = 0;
  for (int i = 0; i < m->nparams; i++) {
    const IrNode *gr = m->grads[i];
    bool seen = false;
    for (int j = 0; j < i; j++)
      seen |= m->grads[j] == gr;
    if (seen || gr->op == IR_CONST)
      continue;   // given at the first parameter; the same in every process
    const KBufInfo *r = &p->buf[gr->id];
    int made = -1, read = p->nkernels;
    for (int k = 0; k < p->nkernels; k++)
      if (computes(p->kernels[k], gr))
        made = k;
    for (int k = made + 1; made >= 0 && k < p->nkernels && read == p->nkernels; k++)
      if (touches(p, p->kernels[k], r))
        read = k;
    if (made < 0 || r->bytes == 0 || r->space == KB_INPUT || computes(p->kernels[made], m->steps[i])) {
      errorf(err, errsz, "the compiled training step computes the gradient of '%s' inside the kernel that "
             "reads it, so no process could add the others' to it\n---> HINT: train with --no-fuse (one kernel "
             "per graph node)", m->params[i]->name);
      return false;
    }
    char *base = r->space == KB_STATE ? ex->state : ex->arena;
    int64_t n = ir_numel(gr, 1);
    int ready = made + 1;
    for (int g = 0; g < p->nregions; g++) {   // a region ticks once, at its first kernel
      const KRegion *reg = &p->regions[g];
      ready = ready > reg->first && ready <= reg->last ? reg->last + 1 : ready;
      read = read > reg->first && read <= reg->last ? reg->first : read;
    }
    ex->points[ex->npoints++] = (GradPoint){ready, false, i, (float *)(base + r->offset), n};
    ex->points[ex->npoints++] = (GradPoint){read, true, i, NULL, n};
    ++*ngrads;
  }
  qsort(ex->points, ex->npoints, sizeof(GradPoint), point_order);
  return true;
}

// The tick of a training step with a gradient hook: the hook's calls at
// this boundary, then the caller's tick (nnc bench's).
static void grad_tick(void *arg, int kernel) {
  Exec *ex = arg;
  const GradPoint *pt = ex->points;
  int lo = 0, hi = ex->npoints;
  while (lo < hi) {   // the first point at this kernel
    int mid = (lo + hi) / 2;
    if (pt[mid].kernel < kernel)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (int i = lo; i < ex->npoints && pt[i].kernel == kernel; i++) {
    if (pt[i].need)
      ex->hook.need(ex->hook.arg, pt[i].param);
    else
      ex->hook.ready(ex->hook.arg, pt[i].param, pt[i].g, pt[i].n);
  }
  ex->hook.between(ex->hook.arg);
  if (ex->tick)
    ex->tick(ex->tick_arg, kernel);
}

static double cpu_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr) {
  const Compilation *comp = ex->prog[entry];
  const KProgram *p = comp->prog;
  ex->m = comp->model;   // the copy alike node for node that this program was compiled from
  ex->g = p->g;
  const IrGraph *g = ex->g;
  bind_program(ex, p);
  exec_feed(ex, B, x, y);
  for (int i = 0; i < g->nnodes; i++)
    ex->done[i] = ex->need[entry][i] && ex->buf[i] != NULL;
  const OptimConfig *o = &ex->m->opt;
  RtStep s = {.training = entry == ENTRY_TRAIN, .dropout = ex->dropout, .lr = lr, .beta1 = o->beta1,
              .beta2 = o->beta2, .weight_decay = o->weight_decay, .lr_decay = o->lr_decay,
              .scalars = p->scalars ? (float *)(ex->arena + p->buf[g->nnodes].offset) : NULL};
  bool hooked = entry == ENTRY_TRAIN && ex->hook.ready;
  ex->ctx->tick = hooked ? grad_tick : ex->tick;
  ex->ctx->tick_arg = hooked ? ex : ex->tick_arg;
  ex->ctx->first_sample = ex->first_sample;
  return rt_context_run(ex->ctx, cg_entry(ex->mod[entry]), &ex->calls, ex->arena, ex->state, B, &s, &ex->steps);
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
    .grad_points = cpu_grad_points,
};
