// compile.c: the compile driver: one entry point of a checked model to a
// finished, verified program, as plain calls (QBE's func()): simplify,
// fuse, plan memory, describe the library kernels, verify. It works on a
// copy, so that the caller's model stays as it was lowered: the ref
// backend, a second compilation and the checkpoint names all read it.
#include "passes.h"

#include <stdlib.h>

// A deep copy of m in a; map[id] receives the copy of m's node id.
static Model *model_clone(const Model *m, Arena *a, IrNode **map) {
  Model *c = arena_alloc(a, sizeof *c);
  *c = *m;
  c->g = ir_graph_clone(m->g, a, map);
  c->input = m->input ? map[m->input->id] : NULL;
  c->target = m->target ? map[m->target->id] : NULL;
  c->targets = arena_alloc(a, sizeof(IrNode *) * (m->ntargets + 1));
  for (int i = 0; i < m->ntargets; i++)
    c->targets[i] = map[m->targets[i]->id];
  c->inputs = arena_alloc(a, sizeof(IrNode *) * (m->ninputs + 1));
  for (int i = 0; i < m->ninputs; i++)
    c->inputs[i] = map[m->inputs[i]->id];
  IrNode ***lists[] = {&c->params, &c->grads, &c->steps};
  IrNode **from[] = {m->params, m->grads, m->steps};
  for (int l = 0; l < 3; l++) {
    *lists[l] = arena_alloc(a, sizeof(IrNode *) * (m->nparams + 1));
    for (int i = 0; i < m->nparams; i++)
      (*lists[l])[i] = map[from[l][i]->id];
  }
  return c;
}

// What a step's caller reads after it: the outputs, and the loss and its
// terms but in inference.
static bool *kept(const Model *m, EntryKind entry, Arena *a) {
  bool *keep = arena_alloc(a, m->g->nnodes + 1);
  pass_kept(m, entry, keep);
  return keep;
}

Compilation *pass_compile(const Model *m, EntryKind entry, const CompileOptions *o) {
  if (entry != ENTRY_FORWARD && !m->g->loss)
    nnc_bug(__FILE__, __LINE__, "pass_compile: an eval or train step of a model without a loss");
  Arena *a = arena_new();
  Compilation *c = arena_alloc(a, sizeof *c);
  c->arena = a;
  c->where = arena_alloc(a, sizeof(IrNode *) * (m->g->nnodes + 1));
  c->model = model_clone(m, a, c->where);
  if (o->fuse)
    pass_simplify(c->model, o->report, c->where);   // the clone's ids are m's: where maps m's too
  c->prog = pass_fuse(c->model, entry, o->max_batch, o->fuse, o->report);
  if (o->fuse && o->regions)
    pass_regions(c->prog);
  pass_memplan(c->prog, kept(c->model, entry, a));
  pass_describe_libs(c->prog);
  char err[512];
  if (!ir_verify_program(c->prog, err, sizeof err)) {
    char msg[640];
    snprintf(msg, sizeof msg, "the %s program of model '%s' is inconsistent: %s", ir_entry_name(entry),
             m->g->name, err);
    nnc_bug(__FILE__, __LINE__, msg);
  }
  return c;
}

void pass_compilation_free(Compilation *c) {
  if (c)
    arena_free(c->arena);   // c is in it
}
