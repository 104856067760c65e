// kernel.c: builders and the printer of the kernel IR (see ir.h).
//
// Kernels grow by appending: instructions, stores, buffers, and the graph
// nodes they compute. Everything is allocated from the graph's arena;
// arrays double in size as they grow.
#include "ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Makes room for item n of an arena array whose capacity is the next
// power of two at or above its length.
static void *grow(Arena *a, void *data, int n, size_t elem) {
  if (n & (n - 1))
    return data;   // not a power of two: there is room
  void *fresh = arena_alloc(a, elem * (n ? 2 * n : 1));
  if (n)
    memcpy(fresh, data, elem * n);
  return fresh;
}

Kernel *ir_kernel_new(IrGraph *g, KernelKind kind, const char *name) {
  Kernel *k = arena_alloc(g->arena, sizeof *k);
  k->kind = kind;
  k->name = arena_strdup(g->arena, name);
  return k;
}

int ir_kernel_buf(IrGraph *g, Kernel *k, const IrNode *n) {
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i] == n)
      return i;
  k->bufs = grow(g->arena, k->bufs, k->nbufs, sizeof *k->bufs);
  k->bufs[k->nbufs] = n;
  return k->nbufs++;
}

int ir_kernel_instr(IrGraph *g, Kernel *k, KInstr in) {
  k->body = grow(g->arena, k->body, k->nbody, sizeof *k->body);
  k->body[k->nbody] = in;
  return k->nbody++;
}

void ir_kernel_store(IrGraph *g, Kernel *k, KStore st) {
  k->stores = grow(g->arena, k->stores, k->nstores, sizeof *k->stores);
  k->stores[k->nstores++] = st;
}

void ir_kernel_add_node(IrGraph *g, Kernel *k, const IrNode *n) {
  for (int i = 0; i < k->nnodes; i++)
    if (k->nodes[i] == n)
      return;
  ir_kernel_add_new_node(g, k, n);
}

void ir_kernel_add_new_node(IrGraph *g, Kernel *k, const IrNode *n) {
  k->nodes = grow(g->arena, k->nodes, k->nnodes, sizeof *k->nodes);
  k->nodes[k->nnodes++] = n;
}

KIndex ir_kernel_index(const IrNode *n, int ndim, const int64_t *dims) {
  KIndex ix = {0};
  int64_t stride = 1;
  for (int i = n->ndim - 1; i >= 0; i--) {
    int d = ndim - n->ndim + i;   // aligned at the right
    if (d >= 0 && (n->shape[i] == dims[d] || n->shape[i] != 1))
      ix.stride[d] = stride;
    if (n->shape[i] != IR_N)
      stride *= n->shape[i];
  }
  return ix;
}

//
// The printer
//

static const char *const instr_names[KI_NUM_OPS] = {
    [KI_LOAD] = "load", [KI_LOADI] = "loadi", [KI_CONST] = "const", [KI_INDEX] = "index",
    [KI_ADD] = "add", [KI_SUB] = "sub", [KI_MUL] = "mul", [KI_DIV] = "div", [KI_MAX] = "max",
    [KI_MIN] = "min", [KI_NEG] = "neg", [KI_EXP] = "exp", [KI_LOG] = "log", [KI_TANH] = "tanh",
    [KI_SIGMOID] = "sigmoid", [KI_SQRT] = "sqrt", [KI_ABS] = "abs", [KI_SIGN] = "sign",
    [KI_GT] = "gt", [KI_EQ] = "eq", [KI_SELECT] = "select", [KI_FMA] = "fma",
    [KI_ERF] = "erf",
};

const char *ir_kinstr_name(KInstrOp op) { return op < KI_NUM_OPS ? instr_names[op] : "?"; }

// Whether s can stand bare between the parentheses of "%3(name)": printable,
// no parenthesis, no quote first.
static bool plain_name(const char *s) {
  if (!*s || *s == '"')
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p >= 0x7f || *p == '(' || *p == ')')
      return false;
  return true;
}

// Whether s reads back as an identifier (not a number: inf, nan).
static bool is_ident(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return false;
  for (const char *c = s; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
      return false;
  return strcmp(s, "inf") && strcmp(s, "nan");
}

// A buffer: %id, then the tensor's name in parentheses when it has one.
static void print_buf(FILE *out, const IrNode *n) {
  fprintf(out, "%%%d", n->id);
  if (!n->name)
    return;
  fputc('(', out);
  if (plain_name(n->name))
    fputs(n->name, out);
  else
    ir_print_str(out, n->name);
  fputc(')', out);
}

static void print_index(FILE *out, const KIndex *ix, int ndim) {
  fprintf(out, "[");
  bool first = true;
  for (int d = 0; d < ndim; d++) {
    if (!ix->stride[d])
      continue;
    fprintf(out, "%s%lld*i%d", first ? "" : " + ", (long long)ix->stride[d], d);
    first = false;
  }
  if (ix->offset || first)
    fprintf(out, "%s%lld", first ? "" : " + ", (long long)ix->offset);
  fprintf(out, "]");
}

static void print_dims(FILE *out, int ndim, const int64_t *dims) {
  char b[256];   // IR_MAX_DIMS numbers of 20 digits, and the brackets
  fputs(ir_shape_str(ndim, dims, b, sizeof b), out);
}

static void print_extent(FILE *out, KExtent e) {
  if (e.batched && e.coef == 1)
    fprintf(out, "N");
  else if (e.batched)
    fprintf(out, "%lld*N", (long long)e.coef);
  else
    fprintf(out, "%lld", (long long)e.coef);
}

// The graph nodes a kernel computes, with their .nn lines: "from line 6:
// %4 %7 %6; line 7: %9" (a run of nodes per line, in the kernel's order).
static void print_sources(FILE *out, const Kernel *k) {
  if (!k->nnodes)
    return;
  fprintf(out, "  from");
  for (int i = 0; i < k->nnodes; i++) {
    int l = k->nodes[i]->loc.line;
    if (i == 0 || l != k->nodes[i - 1]->loc.line) {
      if (l > 0)
        fprintf(out, "%s line %d:", i ? ";" : "", l);
      else
        fprintf(out, "%s no line:", i ? ";" : "");
    }
    fprintf(out, " %%%d", k->nodes[i]->id);
  }
  fprintf(out, "\n");
}

static void print_loop(FILE *out, const Kernel *k, const char *indent) {
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    fprintf(out, "%s  v%d = %s", indent, i, ir_kinstr_name(in->op));
    switch (in->op) {
    case KI_LOAD: case KI_LOADI:
      fputc(' ', out);
      print_buf(out, k->bufs[in->buf]);
      print_index(out, &in->idx, k->ndim);
      break;
    case KI_CONST: fprintf(out, " %.9g", in->imm); break;   // 9 digits: the same float back
    case KI_INDEX: fprintf(out, " i%d", in->dim); break;
    case KI_SELECT: case KI_FMA: fprintf(out, " v%d, v%d, v%d", in->a, in->b, in->c); break;
    case KI_ADD: case KI_SUB: case KI_MUL: case KI_DIV: case KI_MAX: case KI_MIN: case KI_GT: case KI_EQ:
      fprintf(out, " v%d, v%d", in->a, in->b);
      break;
    default: fprintf(out, " v%d", in->a); break;
    }
    fprintf(out, "\n");
  }
  for (int i = 0; i < k->nstores; i++) {
    const KStore *st = &k->stores[i];
    fprintf(out, "%s  %s ", indent, st->reduce == KR_SUM ? "sum into" : st->reduce == KR_MAX ? "max into" : "store");
    print_buf(out, k->bufs[st->buf]);
    print_index(out, &st->idx, k->ndim);
    fprintf(out, " = v%d\n", st->value);
  }
}

static void print_epilogue(FILE *out, const Kernel *k) {
  if (!k->epilogue)
    return;
  fprintf(out, "  epilogue over ");
  print_dims(out, k->epilogue->ndim, k->epilogue->dims);
  fprintf(out, "%s\n", k->epilogue->parallel ? " parallel" : "");
  print_loop(out, k->epilogue, "  ");
}

// The node whose place and shape library buffer r has: one of the
// kernel's buffers, else any placed node; NULL when none.
static const IrNode *lib_buf_node(const KProgram *p, const Kernel *k, const RtLibBuf *r) {
  int nn = p->g->nnodes + 1 + p->nblocks;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < (pass ? nn : k->nbufs); i++) {
      const IrNode *n = pass ? (i < p->g->nnodes ? p->g->nodes[i] : i == p->g->nnodes ? p->scalars
                                                                                      : p->blocks[i - p->g->nnodes - 1])
                             : k->bufs[i];
      if (!n || n->ndim != r->ndim)
        continue;
      const KBufInfo *b = &p->buf[n->id];
      bool same = b->bytes > 0 && ir_rt_space(b->space) == r->space && b->offset == r->offset;
      for (int d = 0; d < r->ndim && same; d++)
        same = (n->shape[d] == IR_N ? RT_BATCH : n->shape[d]) == r->shape[d];
      if (same)
        return n;
    }
  return NULL;
}

static void print_lib_buf(FILE *out, const KProgram *p, const Kernel *k, const RtLibBuf *r) {
  const IrNode *n = lib_buf_node(p, k, r);
  if (n) {
    print_buf(out, n);
    return;
  }
  int64_t dims[RT_MAX_DIMS];
  for (int d = 0; d < r->ndim && d < RT_MAX_DIMS; d++)
    dims[d] = r->shape[d] == RT_BATCH ? IR_N : r->shape[d];
  fprintf(out, "%s %lld ", r->space == RT_SPACE_STATE ? "state" : r->space == RT_SPACE_LOCAL ? "local" : "arena",
          (long long)r->offset);
  print_dims(out, r->ndim < RT_MAX_DIMS ? r->ndim : RT_MAX_DIMS, dims);
}

// The names of a library kind's settings: its graph op's attributes.
static void lib_setting_names(int kind, const char **iname, const char **fname) {
  const char *name = rt_lib_name(kind);
  IrOp op = name ? ir_op_lookup(name) : IR_NUM_OPS;
  const IrOpInfo *info = op < IR_NUM_OPS ? ir_op_info(op) : NULL;
  for (int i = 0; i < IR_MAX_IATTR; i++)
    iname[i] = info && i < info->niattr ? info->iattr[i] : NULL;
  for (int i = 0; i < IR_MAX_FATTR; i++)
    fname[i] = info && i < info->nfattr ? info->fattr[i] : NULL;
}

/*
** A library kernel's descriptor: "%4 = conv2d %0(image), %2, %3 {stride_h=1,
** ...}" and its slot of run-time state, "aux 0 (8192 bytes)", "aux_from 0",
** "loss" and "node %K" where the node is not the result. The settings are
** the op's attributes by name; a slot the op does not name prints as i6=
** or f2= where it is not 0.
*/
static void print_lib(FILE *out, const KProgram *p, const Kernel *k) {
  const RtLib *d = k->lib;
  bool update = d->kind == RL_SGD_STEP || d->kind == RL_ADAM_STEP || d->kind == RL_RMSPROP_STEP ||
                d->kind == RL_ADAGRAD_STEP;
  int nops = update ? d->nbufs : d->nbufs - 1;
  const IrNode *res = NULL;
  if (!update && d->nbufs > 0) {
    res = lib_buf_node(p, k, &d->buf[d->nbufs - 1]);
    print_lib_buf(out, p, k, &d->buf[d->nbufs - 1]);
    fprintf(out, " = ");
  }
  const char *kind = rt_lib_name(d->kind);
  if (kind)
    fputs(kind, out);
  else
    fprintf(out, "kind%d", (int)d->kind);
  for (int j = 0; j < nops && j < RT_LIB_MAX_BUFS; j++) {
    fprintf(out, "%s ", j ? "," : "");
    print_lib_buf(out, p, k, &d->buf[j]);
  }
  const char *iname[IR_MAX_IATTR], *fname[IR_MAX_FATTR];
  lib_setting_names(d->kind, iname, fname);
  bool any = false;
  for (int i = 0; i < IR_MAX_IATTR; i++)
    if (iname[i] || d->i[i]) {
      fprintf(out, "%s", any ? ", " : " {");
      if (iname[i])
        fprintf(out, "%s=%lld", iname[i], (long long)d->i[i]);
      else
        fprintf(out, "i%d=%lld", i, (long long)d->i[i]);
      any = true;
    }
  for (int i = 0; i < IR_MAX_FATTR; i++)
    if (fname[i] || d->f[i] != 0 || signbit(d->f[i])) {
      fprintf(out, "%s", any ? ", " : " {");
      if (fname[i])
        fprintf(out, "%s=", fname[i]);
      else
        fprintf(out, "f%d=", i);
      ir_print_float(out, d->f[i]);
      any = true;
    }
  if (any)
    fputc('}', out);
  if (d->aux >= 0 || d->aux_bytes)
    fprintf(out, " aux %d (%lld bytes)", (int)d->aux, (long long)d->aux_bytes);
  if (d->aux_from >= 0)
    fprintf(out, " aux_from %d", (int)d->aux_from);
  if (d->loss)
    fprintf(out, " loss");
  if (d->loss && d->loss_weight != 1) {
    fputc(' ', out);
    ir_print_float(out, d->loss_weight);
  }
  if (!res || res->id != d->node)
    fprintf(out, " node %%%d", (int)d->node);
}

static void print_kernel(FILE *out, const KProgram *p, int i) {
  const Kernel *k = p->kernels[i];
  fprintf(out, "kernel %d %s ", i, k->kind == KN_LOOP ? "loop" : k->kind == KN_GEMM ? "gemm" : "lib");
  ir_print_str(out, k->name ? k->name : "");
  switch (k->kind) {
  case KN_LOOP:
    fprintf(out, " over ");
    print_dims(out, k->ndim, k->dims);
    fprintf(out, "%s\n", k->parallel ? " parallel" : "");
    print_sources(out, k);
    print_loop(out, k, "");
    break;
  case KN_GEMM:
    if (k->nbufs < 3) {
      fprintf(out, ": a GEMM of %d buffers\n", k->nbufs);
      break;
    }
    fprintf(out, ": ");
    print_buf(out, k->bufs[2]);
    fprintf(out, "[");
    print_extent(out, k->m);
    fprintf(out, ", ");
    print_extent(out, k->n);
    fprintf(out, "] %s= ", k->accumulate ? "+" : "");
    print_buf(out, k->bufs[0]);
    fprintf(out, "%s @ ", k->ta ? "^T" : "");
    print_buf(out, k->bufs[1]);
    fprintf(out, "%s, K = ", k->tb ? "^T" : "");
    print_extent(out, k->k);
    fprintf(out, "\n");
    print_sources(out, k);
    print_epilogue(out, k);
    break;
  case KN_LIB:
    fprintf(out, ": ");
    if (k->lib)
      print_lib(out, p, k);
    else
      fprintf(out, "no descriptor");
    fprintf(out, "\n");
    print_sources(out, k);
    print_epilogue(out, k);
    break;
  }
}

// The node of buffer id: a graph node, the step scalars or a block.
static const IrNode *buf_node(const KProgram *p, int id) {
  int nn = p->g->nnodes;
  if (id < nn)
    return p->g->nodes[id];
  if (id == nn)
    return p->scalars;
  return id - nn - 1 < p->nblocks ? p->blocks[id - nn - 1] : NULL;
}

/*
** The whole program, as kernel IR text (`nnc emit --stage kernels`; the
** grammar is in kparse.c): the header, the buffers (every placed node and
** every node a kernel touches: its type and where it lies), then the
** kernels in order.
*/
void ir_print_program(FILE *out, const KProgram *p) {
  const IrGraph *g = p->g;
  fprintf(out, "program %s of ", ir_entry_name(p->entry));
  if (g->name && is_ident(g->name))
    fputs(g->name, out);
  else
    ir_print_str(out, g->name ? g->name : "");
  fprintf(out, ": %d kernels; arena %lld bytes (one buffer per value: %lld), state %lld bytes, batch %lld",
          p->nkernels, (long long)p->arena_bytes, (long long)p->naive_bytes, (long long)p->state_bytes,
          (long long)p->max_batch);
  if (p->naux)
    fprintf(out, ", %d aux slots", p->naux);
  fprintf(out, "\ngraph ");
  if (g->file) {
    ir_print_str(out, g->file);
    fputc(' ', out);
  }
  fprintf(out, "of %d nodes", g->nnodes);
  if (g->output)
    fprintf(out, "; output %%%d", g->output->id);
  if (g->loss)
    fprintf(out, "; loss %%%d", g->loss->id);
  fprintf(out, "\nbuffers (byte offsets for batch %lld):\n", (long long)p->max_batch);
  int nids = g->nnodes + 1 + p->nblocks;
  bool *touched = xcalloc(nids, 1);
  for (int i = 0; i < p->nkernels; i++)   // a library kernel's buffers are its descriptor's
    for (const Kernel *k = p->kernels[i]; k; k = k->epilogue)
      for (int j = 0; j < k->nbufs && k->kind != KN_LIB; j++)
        if (k->bufs[j]->id >= 0 && k->bufs[j]->id < nids)
          touched[k->bufs[j]->id] = true;
  static const char *const spaces[] = {"arena", "state", "input", "local"};
  for (int i = 0; i < nids; i++) {
    const IrNode *n = buf_node(p, i);
    const KBufInfo *b = &p->buf[i];
    if (!n || (!b->bytes && !touched[i]))
      continue;
    char *name = NULL, type[256];   // a name is as long as it is (a block's scope, a tensor's name)
    size_t len = 0;
    FILE *s = open_memstream(&name, &len);
    print_buf(s, n);
    fclose(s);
    fprintf(out, "  %-24s %-16s %s %lld + %lld", name, ir_type_str(n, type, sizeof type),
            b->space <= KB_LOCAL ? spaces[b->space] : "?", (long long)b->offset, (long long)b->bytes);
    free(name);
    if (i == g->nnodes)
      fprintf(out, "  # the step scalars");
    else if (i > g->nnodes)
      fprintf(out, "  # block %d", i - g->nnodes - 1);
    fputc('\n', out);
  }
  free(touched);
  for (int i = 0, r = 0; i < p->nkernels; i++) {
    if (r < p->nregions && p->regions[r].first == i) {
      if (p->regions[r].products)
        fprintf(out, "region %d to %d, shared products\n", p->regions[r].first, p->regions[r].last);
      else
        fprintf(out, "region %d to %d, %lld bytes a row, blocks of %lld rows, %lld local bytes\n",
                p->regions[r].first, p->regions[r].last, (long long)p->regions[r].row_bytes,
                (long long)p->regions[r].block, (long long)p->regions[r].local_bytes);
      r++;
    }
    print_kernel(out, p, i);
  }
}

static const char *const entry_names[ENTRY_COUNT] = {"forward", "eval_step", "train_step"};

const char *ir_entry_name(EntryKind e) { return e >= 0 && e < ENTRY_COUNT ? entry_names[e] : "?"; }

bool ir_entry_parse(const char *s, EntryKind *e) {
  static const char *const short_names[ENTRY_COUNT] = {"forward", "eval", "train"};
  for (int i = 0; i < ENTRY_COUNT; i++)
    if (!strcmp(s, short_names[i]) || !strcmp(s, entry_names[i])) {
      *e = (EntryKind)i;
      return true;
    }
  return false;
}
