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
    ex->buf[i] = b->bytes ? ex->arena + b->offset : NULL;
  }
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
  ex->ctx->tick = ex->tick;
  ex->ctx->tick_arg = ex->tick_arg;
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
};
