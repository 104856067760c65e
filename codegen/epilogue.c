// epilogue.c: what the two code generators (LLVM, CUDA) decide alike
// about a kernel: which buffers a loop's sums zero first, and whether a
// GEMM's epilogue can run on each element of C as soon as that element's
// sum is done, instead of as a loop after the product.
#include "cg_kernel.h"

bool cg_first_sum(const Kernel *k, int i, KExtent *elems) {
  const KStore *st = &k->stores[i];
  if (st->reduce == KR_NONE)
    return false;
  for (int j = 0; j < i; j++)
    if (k->stores[j].reduce != KR_NONE && k->bufs[k->stores[j].buf] == k->bufs[st->buf])
      return false;
  const IrNode *n = k->bufs[st->buf];
  *elems = (KExtent){1, ir_is_batched(n)};
  for (int d = 0; d < n->ndim; d++)
    if (n->shape[d] != IR_N)
      elems->coef *= n->shape[d];
  return true;
}

bool cg_is_c_index(const Kernel *e, const KIndex *ix) {
  int last = e->ndim - 1;
  if (ix->offset != 0 || ix->stride[last] != 1)
    return false;
  for (int d = last - 1; d >= 0; d--)
    if (ix->stride[d] != ix->stride[d + 1] * e->dims[d + 1])
      return false;
  return true;
}

// Whether two buffers lie in the same block (the arena, the state or local
// rows), and whether their bytes overlap, or they start at one place.
static bool same_block(const KBufInfo *x, const KBufInfo *y) { return ir_rt_space(x->space) == ir_rt_space(y->space); }

static bool overlap(const KProgram *p, const IrNode *a, const IrNode *b) {
  const KBufInfo *x = &p->buf[a->id], *y = &p->buf[b->id];
  return same_block(x, y) && x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes;
}

bool cg_same_place(const KProgram *p, const IrNode *a, const IrNode *b) {
  const KBufInfo *x = &p->buf[a->id], *y = &p->buf[b->id];
  return same_block(x, y) && x->offset == y->offset;
}

static bool same_index(const KIndex *a, const KIndex *b, int ndim) {
  for (int d = 0; d < ndim; d++)
    if (a->stride[d] != b->stride[d])
      return false;
  return a->offset == b->offset;
}

// (cg_kernel.h) The LLVM backend runs it on its register tiles, the CUDA
// backend on each thread's elements.
bool cg_epilogue_on_tile(const KProgram *p, const Kernel *g) {
  const Kernel *e = g->epilogue;
  if (g->n.batched || e->dims[e->ndim - 1] != g->n.coef)
    return false;
  if (e->ndim == 2) {
    if ((g->m.batched && g->m.coef != 1) || e->dims[0] != (g->m.batched ? IR_N : g->m.coef))
      return false;
  } else if (e->ndim != 3 || !g->m.batched || e->dims[0] != IR_N || e->dims[1] != g->m.coef) {
    return false;   // [N, T, n]: C's rows are the batch's T rows each
  }
  int col = e->ndim - 1;
  const IrNode *A = g->bufs[0], *Bm = g->bufs[1], *C = g->bufs[2];
  for (int i = 0; i < e->nstores; i++) {
    const KStore *st = &e->stores[i];
    const IrNode *x = e->bufs[st->buf];
    bool rows_apart = true;   // each row of the loop stores to its own elements
    for (int d = 0; d < col; d++)
      rows_apart &= st->idx.stride[d] != 0 || e->dims[d] == 1;
    if (st->reduce != KR_NONE || st->idx.stride[col] != 1 || !rows_apart || overlap(p, x, A) ||
        overlap(p, x, Bm) || (overlap(p, x, C) && !(cg_same_place(p, x, C) && cg_is_c_index(e, &st->idx))))
      return false;
  }
  for (int i = 0; i < e->nbody; i++) {
    const KInstr *in = &e->body[i];
    if (in->op == KI_INDEX)
      return false;
    if (in->op != KI_LOAD && in->op != KI_LOADI)
      continue;
    const IrNode *x = e->bufs[in->buf];
    if ((in->idx.stride[col] != 0 && in->idx.stride[col] != 1) ||
        (overlap(p, x, C) && !(in->op == KI_LOAD && cg_same_place(p, x, C) && cg_is_c_index(e, &in->idx))))
      return false;
    for (int j = 0; j < e->nstores; j++) {
      const IrNode *y = e->bufs[e->stores[j].buf];
      if (overlap(p, x, y) && !(cg_same_place(p, x, y) && same_index(&in->idx, &e->stores[j].idx, e->ndim)))
        return false;
    }
  }
  return true;
}

