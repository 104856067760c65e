// check.c: a kernel checked before either generator (LLVM, CUDA) builds
// it: every operand an earlier instruction, every buffer a placed node of
// the program, every load and store within its buffer for the largest
// batch, every GEMM operand as large as its extents. A program read back
// from kernel IR text (`nnc emit FILE.kir`) meets these checks, so no
// generator writes code that would touch memory outside its buffers.
#include "cg_kernel.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct Chk {
  const KProgram *p;
  char *err;
  size_t errsz;
} Chk;

// Writes the message into err; returns false for `return fail(...)`.
static bool fail(Chk *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Chk *c, const char *fmt, ...) {
  if (c->err && c->errsz) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errsz, fmt, ap);
    va_end(ap);
  }
  return false;
}

static const char *kname(const Kernel *k) { return k->name ? k->name : "?"; }

static int64_t max_extent(const Chk *c, int64_t d) { return d == IR_N ? c->p->max_batch : d; }

// Operands an instruction reads: a, then b, then c.
int cg_instr_args(KInstrOp op) {
  switch (op) {
  case KI_LOAD: case KI_LOADI: case KI_CONST: case KI_INDEX:
    return 0;
  case KI_NEG: case KI_EXP: case KI_LOG: case KI_TANH: case KI_SIGMOID: case KI_SQRT: case KI_ABS:
  case KI_SIGN: case KI_ERF:
    return 1;
  case KI_SELECT: case KI_FMA:
    return 3;
  default:
    return 2;
  }
}

// Whether n is one of the program's own buffers outside the graph.
static bool program_buffer(const KProgram *p, const IrNode *n) {
  if (n == p->scalars)
    return true;
  for (int b = 0; b < p->nblocks; b++)
    if (n == p->blocks[b])
      return true;
  return false;
}

// The buffer node k->bufs[i], which the program must have placed.
static bool check_buf(Chk *c, const Kernel *k, int i) {
  const IrNode *n = k->bufs[i];
  if (!n || n->id < 0 || (n->id >= c->p->g->nnodes && !program_buffer(c->p, n)))
    return fail(c, "kernel '%s': buffer %d is not a node of the graph", kname(k), i);
  if (c->p->buf[n->id].bytes <= 0)
    return fail(c, "kernel '%s': buffer %d (%%%d) has no place in memory", kname(k), i, n->id);
  if (c->p->buf[n->id].offset < 0)
    return fail(c, "kernel '%s': buffer %d (%%%d) has a negative offset", kname(k), i, n->id);
  return true;
}

// Checks that ix, over k's loop space for the largest batch, stays within
// the elements of buffer buf.
static bool check_index(Chk *c, const Kernel *k, int buf, const KIndex *ix, const char *what) {
  if (buf < 0 || buf >= k->nbufs)
    return fail(c, "kernel '%s': %s of buffer %d, which the kernel does not have", kname(k), what, buf);
  const IrNode *node = k->bufs[buf];
  int64_t lo = ix->offset, hi = ix->offset, row = ir_numel(node, 1);
  // A value in local rows holds a block's rows (ir_verify_program): row i0
  // of the loop must be row i0 of it, the rest inside that row.
  bool local = c->p->buf[node->id].space == KB_LOCAL;
  if (local && (k->ndim < 1 || k->dims[0] != IR_N || node->ndim < 1 || node->shape[0] != IR_N ||
                ix->stride[0] != row))
    return fail(c, "kernel '%s': %s of %%%d, which lies in local rows, is not by its rows", kname(k), what,
                node->id);
  for (int d = local ? 1 : 0; d < k->ndim; d++) {
    int64_t n = max_extent(c, k->dims[d]);
    if (n <= 0)
      return true;       // an empty loop space touches nothing
    int64_t s = ix->stride[d] * (n - 1);
    if (s < 0)
      lo += s;
    else
      hi += s;
  }
  int64_t have = local ? row : c->p->buf[node->id].bytes / 4;
  if (lo < 0 || hi >= have)
    return fail(c, "kernel '%s': %s of %%%d reaches elements %lld..%lld of %lld", kname(k), what, node->id,
                (long long)lo, (long long)hi, (long long)have);
  return true;
}

static bool check_instr(Chk *c, const Kernel *k, int i) {
  const KInstr *in = &k->body[i];
  if ((int)in->op < 0 || in->op >= KI_NUM_OPS)
    return fail(c, "kernel '%s': instruction %d has no op (%d)", kname(k), i, (int)in->op);
  int args[3] = {in->a, in->b, in->c};
  for (int j = 0; j < cg_instr_args(in->op); j++)
    if (args[j] < 0 || args[j] >= i)
      return fail(c, "kernel '%s': instruction %d (op %d) reads %d, not an earlier instruction", kname(k), i,
                  (int)in->op, args[j]);
  if (in->op == KI_INDEX && (in->dim < 0 || in->dim >= k->ndim))
    return fail(c, "kernel '%s': instruction %d is the index of dimension %d of %d", kname(k), i, in->dim,
                k->ndim);
  if (in->op == KI_LOAD || in->op == KI_LOADI)
    return check_index(c, k, in->buf, &in->idx, "a load");
  return true;
}

static bool check_store(Chk *c, const Kernel *k, int i) {
  const KStore *st = &k->stores[i];
  if (st->value < 0 || st->value >= k->nbody)
    return fail(c, "kernel '%s': store %d stores instruction %d of %d", kname(k), i, st->value, k->nbody);
  if (st->reduce != KR_NONE && st->reduce != KR_SUM && st->reduce != KR_MAX)
    return fail(c, "kernel '%s': store %d has no reduction kind (%d)", kname(k), i, (int)st->reduce);
  // Threads split dimension 0: a sum over it would race.
  if (k->parallel && st->reduce != KR_NONE && k->ndim > 0 && st->idx.stride[0] == 0 &&
      max_extent(c, k->dims[0]) > 1)
    return fail(c, "kernel '%s': store %d sums over dimension 0 of a parallel kernel", kname(k), i);
  if (!check_index(c, k, st->buf, &st->idx, "a store"))
    return false;
  // The entry function zeroes a sum's whole node before the kernel runs.
  const IrNode *n = k->bufs[st->buf];
  if (st->reduce != KR_NONE && c->p->buf[n->id].space != KB_LOCAL &&   // (local: by rows, above)
      (n->ndim < 0 || ir_numel(n, c->p->max_batch) * 4 > c->p->buf[n->id].bytes))
    return fail(c, "kernel '%s': store %d sums into %%%d, whose %lld elements do not fit its buffer", kname(k),
                i, n->id, (long long)ir_numel(n, c->p->max_batch));
  return true;
}

// Everything about a loop kernel that could make bad code or touch memory
// it should not.
static bool check_loop(Chk *c, const Kernel *k) {
  if (k->kind != KN_LOOP)
    return fail(c, "kernel '%s': expected a loop kernel", kname(k));
  if (k->ndim < 0 || k->ndim > IR_MAX_DIMS)
    return fail(c, "kernel '%s': %d dimensions", kname(k), k->ndim);
  for (int d = 0; d < k->ndim; d++) {
    if (k->dims[d] == IR_N && d > 0)
      return fail(c, "kernel '%s': dimension %d is the batch; only dimension 0 can be", kname(k), d);
    if (k->dims[d] < 0 && k->dims[d] != IR_N)
      return fail(c, "kernel '%s': dimension %d has extent %lld", kname(k), d, (long long)k->dims[d]);
  }
  if (k->ndim > 0 && k->dims[0] == IR_N && c->p->max_batch <= 0)
    return fail(c, "kernel '%s': batched, but the program's max_batch is %lld", kname(k),
                (long long)c->p->max_batch);
  if (k->nbody < 0 || k->nstores < 0 || k->nbufs < 0 || (k->nbody && !k->body) || (k->nstores && !k->stores) ||
      (k->nbufs && !k->bufs))
    return fail(c, "kernel '%s': missing body, stores or buffers", kname(k));
  for (int i = 0; i < k->nbufs; i++)
    if (!check_buf(c, k, i))
      return false;
  for (int i = 0; i < k->nbody; i++)
    if (!check_instr(c, k, i))
      return false;
  for (int i = 0; i < k->nstores; i++)
    if (!check_store(c, k, i))
      return false;
  return true;
}


static bool check_gemm(Chk *c, const Kernel *k) {
  if (k->nbufs < 3 || !k->bufs)
    return fail(c, "kernel '%s': a GEMM needs buffers A, B and C; it has %d", kname(k), k->nbufs);
  for (int i = 0; i < 3; i++)
    if (!check_buf(c, k, i))
      return false;
  const KExtent *ext[3] = {&k->m, &k->n, &k->k};
  int64_t v[3];
  for (int i = 0; i < 3; i++) {
    if (ext[i]->coef < 0 || (ext[i]->batched && c->p->max_batch <= 0))
      return fail(c, "kernel '%s': GEMM extent %c is %lld%s", kname(k), "MNK"[i], (long long)ext[i]->coef,
                  ext[i]->batched ? " x B" : "");
    v[i] = ext[i]->coef * (ext[i]->batched ? c->p->max_batch : 1);
  }
  int64_t need[3] = {v[0] * v[2], v[2] * v[1], v[0] * v[1]};   // A[M,K], B[K,N], C[M,N]
  for (int i = 0; i < 3; i++) {
    int64_t have = c->p->buf[k->bufs[i]->id].bytes / 4;
    if (need[i] > have)
      return fail(c, "kernel '%s': GEMM operand %c needs %lld elements; %%%d has %lld", kname(k), "ABC"[i],
                  (long long)need[i], k->bufs[i]->id, (long long)have);
  }
  return true;
}

bool cg_check_loop(const KProgram *p, const Kernel *k, char *err, size_t errsz) {
  Chk c = {p, err, errsz};
  return check_loop(&c, k);
}

bool cg_check_gemm(const KProgram *p, const Kernel *k, char *err, size_t errsz) {
  Chk c = {p, err, errsz};
  return check_gemm(&c, k);
}
