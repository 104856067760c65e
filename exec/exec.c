// exec.c: the backends' one interface: the registry, argument checks, and
// what every backend shares: the per-node tables, the state list, splitting
// a data row over the inputs, copies in and out (backend.h says what a
// backend implements).
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// The registry: --backend's names, in this order; the first is the oracle
// the others are tested against.
static const ExecBackend *const backends[] = {&exec_ref, &exec_cpu, &exec_cuda, &exec_cuda_emu};
const char *const exec_backend_names[] = {"ref", "cpu", "cuda", "cuda-emu", NULL};

static const ExecBackend *find_backend(const char *name) {
  for (int i = 0; i < countof(backends); i++)
    if (!strcmp(backends[i]->name, name))
      return backends[i];
  return NULL;
}

bool exec_backend_exists(const char *name) { return find_backend(name) != NULL; }

const char *exec_backend_help(const char *name) {
  const ExecBackend *be = find_backend(name);
  return be ? be->help : NULL;
}

const char *exec_backend(const Exec *ex) { return ex->be->name; }

bool exec_backend_available(const char *name, char *err, size_t errsz) {
  const ExecBackend *be = find_backend(name);
  if (!be) {
    errorf(err, errsz, "unknown backend '%s'", name);
    return false;
  }
  return !be->available || be->available(err, errsz);
}

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

static int64_t numel(const IrNode *n, int64_t B) { return ir_numel(n, B); }

void exec_tables(Exec *ex, const Model *m) {
  const IrGraph *g = m->g;
  ex->m = m;
  ex->g = g;
  ex->nnodes = g->nnodes;
  ex->buf = xcalloc(g->nnodes, sizeof(void *));
  ex->done = xcalloc(g->nnodes, sizeof(bool));
  for (int e = 0; e < ENTRY_COUNT; e++) {
    ex->need[e] = xcalloc(g->nnodes, sizeof(bool));
    pass_needed(m, e, ex->need[e]);
  }
}

void exec_free_tables(Exec *ex) {
  for (int e = 0; e < ENTRY_COUNT; e++)
    free(ex->need[e]);
  free(ex->buf);
  free(ex->done);
}

// The node of the graph that runs which computes the caller's node n, or
// NULL (not the caller's, or simplified away).
static const IrNode *running_node(const Exec *ex, const IrNode *n) {
  const IrGraph *ug = ex->user->g;
  if (!n || n->id < 0 || n->id >= ug->nnodes || ug->nodes[n->id] != n)
    return NULL;
  return ex->where ? ex->where[n->id] : n;
}

// The persistent tensors, in the caller's graph order.
static void list_state(Exec *ex) {
  const IrGraph *ug = ex->user->g;
  ex->state_ids = xcalloc(ug->nnodes + 1, sizeof(int));
  ex->state_user = xcalloc(ug->nnodes + 1, sizeof(IrNode *));
  for (int i = 0; i < ug->nnodes; i++) {
    const IrNode *n = ug->nodes[i], *k = running_node(ex, n);
    if (!is_state(n))
      continue;
    if (!k || !is_state(k))
      nnc_bug(__FILE__, __LINE__, "a parameter or buffer has no persistent place in the compiled model");
    ex->state_user[ex->nstate] = n;
    ex->state_ids[ex->nstate++] = k->id;
  }
}

Exec *exec_new(const char *backend, const Model *m, const ExecOptions *o, char *err, size_t errsz) {
  const ExecBackend *be = backend ? find_backend(backend) : NULL;
  if (!be) {
    errorf(err, errsz, "unknown backend '%s'", backend ? backend : "(none)");
    return NULL;
  }
  if (o->max_batch < 1)
    nnc_bug(__FILE__, __LINE__, "exec_new: max_batch under 1");
  unsigned all = pass_entries(m);
  if (o->entries & ~all)
    nnc_bug(__FILE__, __LINE__, "exec_new: an entry point the model cannot run (no loss, or no autodiff)");
  Exec *ex = xcalloc(1, sizeof *ex);
  ex->be = be;
  ex->user = m;
  ex->max_batch = o->max_batch;
  ex->threads = o->threads > 0 ? o->threads : 1;
  ex->entries = o->entries ? o->entries : all;
  ex->dropout = true;
  rng_seed(&ex->rng, m->train.seed, 0x64726f70ULL);   // "drop"
  if (!be->init(ex, m, o, err, errsz)) {
    exec_free(ex);
    return NULL;
  }
  list_state(ex);
  return ex;
}

void exec_free(Exec *ex) {
  if (!ex)
    return;
  ex->be->free(ex);
  exec_free_tables(ex);
  free(ex->state_ids);
  free(ex->state_user);
  free(ex->points);
  free(ex);
}

const KProgram *exec_program(const Exec *ex, EntryKind entry, CgTimes *times) {
  return ex->be->program ? ex->be->program(ex, entry, times) : NULL;
}

bool exec_same_layout(const KProgram *p, const KProgram *q) {
  if (p->g->nnodes != q->g->nnodes || p->state_bytes != q->state_bytes)
    return false;
  for (int i = 0; i < p->g->nnodes; i++) {
    const IrNode *a = p->g->nodes[i], *b = q->g->nodes[i];
    if (a->op != b->op ||
        (is_state(a) && (p->buf[i].space != q->buf[i].space || p->buf[i].offset != q->buf[i].offset)))
      return false;
  }
  return true;
}

void exec_host_read(const Exec *ex, const IrNode *n, int64_t count, float *out) {
  memcpy(out, ex->buf[n->id], sizeof(float) * count);
}

void exec_host_write(Exec *ex, const IrNode *n, int64_t count, const float *in) {
  memcpy(ex->buf[n->id], in, sizeof(float) * count);
}

void exec_init_params(Exec *ex, uint64_t seed) {
  Rng r;
  rng_seed(&r, seed, 0x696e6974ULL);   // "init"
  for (int i = 0; i < ex->nstate; i++) {
    const IrNode *n = ex->g->nodes[ex->state_ids[i]];
    int64_t k = numel(n, 1);
    float *p = xmalloc(sizeof(float) * (k > 0 ? k : 1));
    k_init_fill(p, k, n->init.kind, n->init.a, n->init.b, &r);
    ex->be->write(ex, n, k, p);
    free(p);
  }
  rng_seed(&ex->rng, seed, 0x64726f70ULL);   // "drop": a run's dropout masks follow its seed too
  ex->steps = 0;
}


int64_t exec_sample_dim(const Model *m) {
  int64_t d = 0;
  for (int i = 0; i < m->ninputs; i++)
    d += numel(m->inputs[i], 1);
  return d;
}

void exec_feed(Exec *ex, int64_t B, const float *x, const void *y) {
  const Model *m = ex->m;
  int64_t row = exec_sample_dim(m), at = 0;
  for (int i = 0; i < m->ninputs; i++) {
    const IrNode *in = m->inputs[i];
    int64_t d = numel(in, 1);
    float *dst = ex->buf[in->id];
    if (dst && d == row)
      memcpy(dst, x, sizeof(float) * B * d);
    else if (dst)
      for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * d, x + b * row + at, sizeof(float) * d);
    at += d;
  }
  // y: B rows of every target's values (4 bytes each: int32 class
  // indexes, floats), one target after another in declaration order.
  int64_t trow = exec_target_dim(m);
  at = 0;
  for (int i = 0; y && i < m->ntargets; i++) {
    const IrNode *t = m->targets[i];
    int64_t d = numel(t, 1);
    char *dst = ex->buf[t->id];
    if (dst && d == trow)
      memcpy(dst, y, 4 * B * d);
    else if (dst)
      for (int64_t b = 0; b < B; b++)
        memcpy(dst + 4 * b * d, (const char *)y + 4 * (b * trow + at), 4 * d);
    at += d;
  }
}

int64_t exec_target_dim(const Model *m) {
  int64_t d = 0;
  for (int i = 0; i < m->ntargets; i++)
    d += numel(m->targets[i], 1);
  return d;
}

double exec_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr) {
  if (B < 1 || B > ex->max_batch)
    nnc_bug(__FILE__, __LINE__, "batch out of range for this executor");
  if ((unsigned)entry >= ENTRY_COUNT || !(ex->entries & (1u << entry)))
    nnc_bug(__FILE__, __LINE__, "exec_run: an entry point this executor was not built to run");
  ex->batch = B;
  return ex->be->run(ex, entry, B, x, y, lr);
}

void exec_prefetch(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y) {
  if (B < 1 || B > ex->max_batch || (unsigned)entry >= ENTRY_COUNT || !(ex->entries & (1u << entry)))
    nnc_bug(__FILE__, __LINE__, "exec_prefetch: a batch or entry point this executor cannot run");
  if (ex->be->prefetch)
    ex->be->prefetch(ex, entry, B, x, y);
}

int64_t exec_output_dim(const Exec *ex) {
  if (ex->g->noutputs <= 1)
    return numel(ex->g->output, 1);
  int64_t d = 0;
  for (int i = 0; i < ex->g->noutputs; i++)
    d += numel(ex->g->outputs[i], 1);
  return d;
}

void exec_read_output(const Exec *ex, float *out) {
  const IrGraph *g = ex->g;
  if (g->noutputs <= 1) {
    ex->be->read(ex, g->output, numel(g->output, ex->batch), out);
    return;
  }
  int64_t row = exec_output_dim(ex), at = 0, B = ex->batch;
  for (int i = 0; i < g->noutputs; i++) {   // each output's rows into its columns
    int64_t d = numel(g->outputs[i], 1);
    float *v = xmalloc(sizeof(float) * B * d);
    ex->be->read(ex, g->outputs[i], B * d, v);
    for (int64_t b = 0; b < B; b++)
      memcpy(out + b * row + at, v + b * d, sizeof(float) * d);
    free(v);
    at += d;
  }
}

int exec_class_heads(const Exec *ex, ExecClassHead *h, int max) {
  const Model *m = ex->user;
  const IrGraph *g = m->g;
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int nt = ir_loss_terms(g, terms, w, IR_MAX_LOSS_TERMS), n = 0;
  for (int t = 0; t < nt && t < IR_MAX_LOSS_TERMS && n < max; t++) {
    const IrNode *o = terms[t]->src[0], *y = terms[t]->src[1];
    if (y->op != IR_TARGET || y->dtype != DT_I32)
      continue;
    bool seen = false;
    for (int i = 0; i < n; i++)
      seen |= !strcmp(h[i].target, y->name);
    int64_t at = 0, label = 0;
    bool found = g->noutputs == 0 && o == g->output;   // (a graph with its one output alone)
    for (int i = 0; i < g->noutputs && !found; i++) {
      found = g->outputs[i] == o;
      at += found ? 0 : numel(g->outputs[i], 1);
    }
    for (int i = 0; i < m->ntargets && m->targets[i] != y; i++)
      label += numel(m->targets[i], 1);
    if (!seen && found)
      h[n++] = (ExecClassHead){at, numel(o, 1), label, exec_target_dim(m), y->name};
  }
  return n;
}

int exec_loss_values(const Exec *ex, double *v) {
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int n = ir_loss_terms(ex->user->g, terms, w, IR_MAX_LOSS_TERMS);
  if (n < 2 || n > IR_MAX_LOSS_TERMS)
    return 0;
  for (int t = 0; t < n; t++) {
    float f = NAN;
    exec_read_value(ex, terms[t], &f);
    v[t] = f;
  }
  return n;
}

bool exec_read_value(const Exec *ex, const IrNode *n, float *out) {
  const IrNode *k = running_node(ex, n);
  if (!k || !(ex->done[k->id] || is_state(k)) || !ex->buf[k->id])
    return false;
  ex->be->read(ex, k, numel(k, ex->batch), out);
  return true;
}

bool exec_keeps_values(const Exec *ex) { return ex->be->keeps_values; }

const IrNode *exec_first_nonfinite(const Exec *ex) {
  const IrNode *found = NULL;
  float *v = NULL;
  int64_t cap = 0;
  for (int i = 0; i < ex->g->nnodes && !found; i++) {
    const IrNode *n = ex->g->nodes[i];
    if (!ex->done[i] || n->dtype != DT_F32 || !ex->buf[i])
      continue;
    int64_t k = numel(n, ex->batch);
    k_grow(&v, &cap, k > 0 ? k : 1);
    ex->be->read(ex, n, k, v);
    for (int64_t j = 0; j < k && !found; j++)
      if (!isfinite(v[j]))
        found = n;
  }
  free(v);
  return found;
}

int exec_num_state(const Exec *ex) { return ex->nstate; }

const IrNode *exec_state_node(const Exec *ex, int i) { return ex->state_user[i]; }

int exec_find_state(const Exec *ex, const char *name) {
  for (int i = 0; i < ex->nstate; i++)
    if (!strcmp(ex->state_user[i]->name, name))
      return i;
  return -1;
}

void exec_read_state(const Exec *ex, int i, float *out) {
  const IrNode *n = ex->g->nodes[ex->state_ids[i]];
  ex->be->read(ex, n, numel(n, 1), out);
}

void exec_write_state(Exec *ex, int i, const float *in) {
  const IrNode *n = ex->g->nodes[ex->state_ids[i]];
  ex->be->write(ex, n, numel(n, 1), in);
}

int64_t exec_steps(const Exec *ex) { return ex->steps; }
void exec_set_steps(Exec *ex, int64_t steps) { ex->steps = steps; }
Rng *exec_rng(Exec *ex) { return &ex->rng; }
void exec_set_dropout(Exec *ex, bool enabled) { ex->dropout = enabled; }

void exec_set_first_sample(Exec *ex, int64_t first) { ex->first_sample = first; }

bool exec_set_grad_hook(Exec *ex, const ExecGradHook *h, int *ngrads, char *err, size_t errsz) {
  ex->hook = (ExecGradHook){0};
  *ngrads = 0;
  if (!h)
    return true;
  if (!ex->be->grad_points || !(ex->entries & (1u << ENTRY_TRAIN))) {
    errorf(err, errsz, "the %s backend runs a training step as a whole: it has no point at which the gradients "
           "are final and the updates have not read them\n---> HINT: train with --backend cpu", ex->be->name);
    return false;
  }
  if (!ex->be->grad_points(ex, ngrads, err, errsz))
    return false;
  ex->hook = *h;
  return true;
}

void exec_set_tick(Exec *ex, void (*tick)(void *arg, int kernel), void *arg) {
  ex->tick = tick;
  ex->tick_arg = arg;
}
