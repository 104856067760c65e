// kernel.c: builders and the printer of the kernel IR (see ir.h).
//
// Kernels grow by appending: instructions, stores, buffers, and the graph
// nodes they compute. Everything is allocated from the graph's arena;
// arrays double in size as they grow.
#include "ir.h"

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
};

const char *ir_kinstr_name(KInstrOp op) { return op < KI_NUM_OPS ? instr_names[op] : "?"; }

// A buffer's name: the tensor's name for leaves, else %id.
static void buf_name(const IrNode *n, char *b, size_t size) {
  if (n->name)
    snprintf(b, size, "%%%d(%s)", n->id, n->name);
  else
    snprintf(b, size, "%%%d", n->id);
}

static void print_index(FILE *out, const KIndex *ix, int ndim) {
  fprintf(out, "[");
  bool first = true;
  for (int d = 0; d < ndim; d++) {
    if (!ix->stride[d])
      continue;
    fprintf(out, "%s%s%lld*i%d", first ? "" : " + ", "", (long long)ix->stride[d], d);
    first = false;
  }
  if (ix->offset || first)
    fprintf(out, "%s%lld", first ? "" : " + ", (long long)ix->offset);
  fprintf(out, "]");
}

static void print_dims(FILE *out, int ndim, const int64_t *dims) {
  char b[128];
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

// The .nn lines a kernel came from: "6:25 7:14".
static void print_sources(FILE *out, const Kernel *k) {
  int lines[64], n = 0;
  for (int i = 0; i < k->nnodes && n < 64; i++) {
    int l = k->nodes[i]->loc.line;
    bool seen = l == 0;
    for (int j = 0; j < n && !seen; j++)
      seen = lines[j] == l;
    if (!seen)
      lines[n++] = l;
  }
  fprintf(out, "  # from");
  for (int i = 0; i < n; i++)
    fprintf(out, " %s%d", i ? "" : "line ", lines[i]);
  if (!n)
    fprintf(out, " no source line");
  fprintf(out, ":");
  for (int i = 0; i < k->nnodes; i++)
    fprintf(out, " %%%d", k->nodes[i]->id);
  fprintf(out, "\n");
}

static void print_loop(FILE *out, const Kernel *k, const char *indent) {
  char b[160];
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    fprintf(out, "%s  v%d = %s", indent, i, ir_kinstr_name(in->op));
    switch (in->op) {
    case KI_LOAD: case KI_LOADI:
      buf_name(k->bufs[in->buf], b, sizeof b);
      fprintf(out, " %s", b);
      print_index(out, &in->idx, k->ndim);
      break;
    case KI_CONST: fprintf(out, " %.9g", in->imm); break;
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
    buf_name(k->bufs[st->buf], b, sizeof b);
    fprintf(out, "%s  %s %s", indent, st->reduce == KR_SUM ? "sum into" : "store", b);
    print_index(out, &st->idx, k->ndim);
    fprintf(out, " = v%d\n", st->value);
  }
}

static void print_epilogue(FILE *out, const Kernel *k) {
  if (!k->epilogue)
    return;
  fprintf(out, "  epilogue over ");
  print_dims(out, k->epilogue->ndim, k->epilogue->dims);
  fprintf(out, "\n");
  print_loop(out, k->epilogue, "  ");
}

static void print_kernel(FILE *out, const KProgram *p, int i) {
  const Kernel *k = p->kernels[i];
  char b[3][160];
  switch (k->kind) {
  case KN_LOOP:
    fprintf(out, "kernel %d loop %s over ", i, k->name);
    print_dims(out, k->ndim, k->dims);
    fprintf(out, "%s\n", k->parallel ? " parallel" : "");
    print_sources(out, k);
    print_loop(out, k, "");
    break;
  case KN_GEMM:
    for (int j = 0; j < 3; j++)
      buf_name(k->bufs[j], b[j], sizeof b[j]);
    fprintf(out, "kernel %d gemm %s: %s[", i, k->name, b[2]);
    print_extent(out, k->m);
    fprintf(out, ", ");
    print_extent(out, k->n);
    fprintf(out, "] %s= %s%s @ %s%s, K = ", k->accumulate ? "+" : "", b[0], k->ta ? "^T" : "", b[1],
            k->tb ? "^T" : "");
    print_extent(out, k->k);
    fprintf(out, "\n");
    print_sources(out, k);
    print_epilogue(out, k);
    break;
  case KN_LIB:
    buf_name(k->node, b[0], sizeof b[0]);
    fprintf(out, "kernel %d lib %s: %s = %s", i, k->name, b[0], ir_op_info(k->node->op)->mnem);
    for (int j = 0; j < k->node->nsrc; j++) {
      buf_name(k->node->src[j], b[1], sizeof b[1]);
      fprintf(out, "%s %s", j ? "," : "", b[1]);
    }
    fprintf(out, "\n");
    print_sources(out, k);
    print_epilogue(out, k);
    break;
  }
}

void ir_print_program(FILE *out, const KProgram *p) {
  fprintf(out, "program %s of %s: %d kernels; arena %lld bytes (one buffer per value: %lld), state %lld bytes, "
          "batch %lld\n", ir_entry_name(p->entry), p->g->name, p->nkernels, (long long)p->arena_bytes,
          (long long)p->naive_bytes, (long long)p->state_bytes, (long long)p->max_batch);
  for (int i = 0; i < p->nkernels; i++)
    print_kernel(out, p, i);
  fprintf(out, "memory plan (byte offsets for batch %lld):\n", (long long)p->max_batch);
  static const char *const spaces[] = {"arena", "state", "input"};
  for (int i = 0; i < p->g->nnodes; i++) {
    const KBufInfo *b = &p->buf[i];
    if (!b->bytes)
      continue;
    char name[160];
    buf_name(p->g->nodes[i], name, sizeof name);
    fprintf(out, "  %-24s %s %lld + %lld\n", name, spaces[b->space], (long long)b->offset, (long long)b->bytes);
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
