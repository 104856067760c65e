// region.c: batch-blocked regions of a program's kernels, and shared products.
//
// Most kernels of a forward pass, and the steps of an unrolled recurrence
// in both directions, are row-wise: row n of what they write depends only
// on row n of the activations they read (and on values with no batch
// dimension: weights). Run one after another over the whole batch, each
// kernel reads its input back from L3 or memory and is one split across
// the threads, with a barrier after it: an LSTM's step at batch 64 is two
// products of 16 rows a thread and a few small loops, a wait after each.
// A region is a run of row-wise kernels that the cpu backend runs on
// blocks of rows instead: each thread takes a block through every kernel
// of the region in turn, so the block's values stay in its core's L2, and
// the threads meet once at the end.
//
// pass_regions finds them. A kernel that is not row-wise (a weight's
// gradient, a sum over the batch) moves past the row-wise kernels after it
// when none of them reads what it writes or writes what it reads, so that
// the recurrence of a backward pass is one region and its weight
// gradients run after it. (The runtime packs a region's B once per
// thread and region run, RtCalls.gemm_rows, rather than for every block.)
// Those gradients, products whose C has no batch dimension, then form a
// region of shared products (append_later): each thread computes its share
// of every one, with one wait at the end instead of one per product.
//
// The memory planner keeps every value a region touches live through the
// whole region (blocks of rows run through its kernels at different
// times), except that a value may take over the slot of one as large, of
// the same row length, that dies inside the region: each block's rows of
// the two lie at the same bytes. A value that lives only inside the
// region goes to its local rows instead (KB_LOCAL): each thread holds a
// block's rows of it, so the block size (KRegion.block) is set here, and
// lowered by the planner where a thread's local rows would pass 16 MB.
#include "passes.h"

#include <stdlib.h>
#include <string.h>

// A product joins a region only when its B is this small (it stays in L2
// while every block of rows reads it), and a convolution only when its
// weights are.
#define REGION_MAX_B_BYTES (384 << 10)
// A block's rows: about REGION_BYTES in the kernel of the region that
// touches the most per row, so that a block's values stay in L2 from
// kernel to kernel, and at least REGION_MIN_ROWS; at least
// REGION_GEMM_ROWS where a product runs (4 of AVX-512's micro-kernel
// tiles: fewer rows read all of B for little work).
#define REGION_BYTES (128 << 10)
#define REGION_MIN_ROWS 4
#define REGION_GEMM_ROWS 32
// ... and at least REGION_CONV_IMAGES where a convolution runs: each call
// packs its weights again (cnn's forward at batch 1000 on one Zen 4 core,
// its values in local rows: 73 ms in blocks of 1 image, 61 of 4, 58.5 of
// 8, 16 or 32).
#define REGION_CONV_IMAGES 8
// Programs for smaller batches have no regions: their rows make no blocks
// worth sharing out, and a batch of one reads B in place (dot products).
#define REGION_MIN_BATCH 16

static bool batch_major(const IrNode *n) { return n->ndim >= 1 && n->shape[0] == IR_N; }

// Elements of a sample's row of batch-major n.
static int64_t row_elems(const IrNode *n) { return ir_numel(n, 1); }

// Whether access ix of loop k to buffer b stays in row i0 of b (and in
// nothing else of it); its span of the row in *span. Values with no
// batch dimension must be read the same for every row.
static bool row_access(const Kernel *k, const IrNode *b, const KIndex *ix, bool store, int64_t *span) {
  if (!batch_major(b)) {
    *span = 0;
    return !store && ix->stride[0] == 0;
  }
  int64_t r = row_elems(b), lo = ix->offset, hi = ix->offset;
  if (ix->stride[0] != r)
    return false;
  for (int d = 1; d < k->ndim; d++) {
    int64_t s = ix->stride[d] * (k->dims[d] - 1);
    lo += s < 0 ? s : 0;
    hi += s > 0 ? s : 0;
  }
  *span = hi - lo + 1;
  return lo >= 0 && hi < r;
}

// Whether loop k is row-wise over the batch; its bytes per row in *bytes.
static bool loop_rowwise(const Kernel *k, int64_t *bytes) {
  if (k->kind != KN_LOOP || k->ndim < 1 || k->dims[0] != IR_N || !k->parallel)
    return false;
  int64_t total = 0, span;
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    if (in->op != KI_LOAD && in->op != KI_LOADI)
      continue;
    if (!row_access(k, k->bufs[in->buf], &in->idx, false, &span))
      return false;
    total += span;
  }
  for (int i = 0; i < k->nstores; i++) {
    if (!row_access(k, k->bufs[k->stores[i].buf], &k->stores[i].idx, true, &span))
      return false;
    total += span;
  }
  *bytes = 4 * total;
  return true;
}

// Whether GEMM k is row-wise: C's rows are A's, a sample's rows of each
// together (M = coef * N), and B has no batch dimension and fits in L2.
static bool gemm_rowwise(const Kernel *k, int64_t *bytes) {
  if (k->kind != KN_GEMM || k->nbufs < 3 || k->ta || !k->m.batched || k->n.batched || k->k.batched)
    return false;
  const IrNode *a = k->bufs[0], *b = k->bufs[1], *c = k->bufs[2];
  if (!batch_major(a) || !batch_major(c) || ir_is_batched(b) || row_elems(a) != k->m.coef * k->k.coef ||
      row_elems(c) != k->m.coef * k->n.coef || 4 * k->n.coef * k->k.coef > REGION_MAX_B_BYTES)
    return false;
  int64_t epi = 0;
  if (k->epilogue && !loop_rowwise(k->epilogue, &epi))
    return false;
  *bytes = 4 * (row_elems(a) + row_elems(c)) + epi;
  return true;
}

// Whether library kernel k is row-wise: a softmax or layer normalization
// (or its input's gradient) within each sample (rt_lib_rowwise says the
// same of its descriptor), a convolution's forward, or pooling (max
// pooling only outside training programs, where it keeps no argmax for a
// gradient), with a row-wise epilogue if any (layernorm's affine, a
// convolution's bias and activation).
static bool lib_rowwise(const Kernel *k, bool train, int64_t *bytes) {
  const IrNode *n = k->node;
  int64_t epi = 0;
  if (k->kind != KN_LIB || !n || !batch_major(n) || (k->epilogue && !loop_rowwise(k->epilogue, &epi)))
    return false;
  switch (n->op) {
  case IR_CONV2D: case IR_MAXPOOL: case IR_AVGPOOL: case IR_GLOBAL_AVGPOOL: {
    const IrNode *x = n->src[0];
    if ((n->op == IR_MAXPOOL && train) || !batch_major(x) || x->ndim != 4 || n->ndim != 4)
      return false;
    for (int i = 1; i < n->nsrc; i++)   // a convolution's weights and bias, small enough to stay in L2
      if (ir_is_batched(n->src[i]) || 4 * ir_numel(n->src[i], 1) > REGION_MAX_B_BYTES)
        return false;
    *bytes = 4 * (row_elems(n) + row_elems(x)) + epi;
    return true;
  }
  case IR_SOFTMAX: case IR_LOG_SOFTMAX: case IR_SOFTMAX_GRAD: case IR_LOG_SOFTMAX_GRAD:
  case IR_LAYERNORM: case IR_LAYERNORM_GRAD:
    break;
  default:
    return false;
  }
  if (n->attr.i[0] < 1 || n->attr.i[0] >= n->ndim)
    return false;
  *bytes = 4 * row_elems(n) + epi;
  for (int i = 0; i < n->nsrc; i++) {
    if (!batch_major(n->src[i]) || n->src[i]->ndim != n->ndim)
      return false;
    *bytes += 4 * row_elems(n->src[i]);
  }
  return true;
}

static bool rowwise(const Kernel *k, bool train, int64_t *bytes) {
  switch (k->kind) {
  case KN_LOOP: return loop_rowwise(k, bytes);
  case KN_GEMM: return gemm_rowwise(k, bytes);
  default: return lib_rowwise(k, train, bytes);
  }
}

// The storage a buffer names: reshapes and other aliases share their
// input's, so two names of one storage must count as one.
static const IrNode *storage(const IrNode *n) {
  while (n->nsrc == 1 && (n->op == IR_RESHAPE || n->op == IR_DROPOUT || n->op == IR_GAUSSIAN_NOISE))
    n = n->src[0];
  return n;
}

// Whether kernel k writes buffer b (its stores, C, its epilogue's stores).
static bool kernel_writes(const Kernel *k, int b) {
  if (k->kind == KN_GEMM)
    return b == 2;
  if (k->kind == KN_LIB)
    return k->bufs[b] == k->node;
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].buf == b)
      return true;
  return false;
}

// Marks what kernel k (and its epilogue) reads and writes, by storage id.
static void mark(const Kernel *k, char *rw) {
  for (const Kernel *e = k; e; e = e->epilogue)
    for (int b = 0; b < e->nbufs; b++)
      rw[storage(e->bufs[b])->id] |= kernel_writes(e, b) ? 2 : 1;
}

// Whether k conflicts with the kernels marked in rw: it reads what they
// write, or writes what they read or write.
static bool conflicts(const Kernel *k, const char *rw) {
  for (const Kernel *e = k; e; e = e->epilogue)
    for (int b = 0; b < e->nbufs; b++) {
      char m = rw[storage(e->bufs[b])->id];
      if ((m & 2) || (m && kernel_writes(e, b)))
        return true;
    }
  return false;
}

// Whether kernel k may run later than its place: a loop or a product that
// writes no persistent tensor (not an optimizer's update).
static bool movable(const Kernel *k) {
  if (k->kind == KN_LIB)
    return false;
  for (const Kernel *e = k; e; e = e->epilogue)
    for (int b = 0; b < e->nbufs; b++) {
      const IrNode *n = e->bufs[b];
      if (kernel_writes(e, b) && (n->op == IR_PARAM || n->op == IR_BUFFER || ir_op_kind(n->op) == IR_KIND_UPDATE))
        return false;
    }
  return true;
}

typedef struct Regions {
  Kernel **out;                // the new order
  int nout;
  KRegion *regions;
  int nregions;
} Regions;

// Whether product k may be shared out with others (KRegion.products): C
// has no batch dimension, and no epilogue runs over it.
static bool shared_product(const Kernel *k) {
  return k->kind == KN_GEMM && k->nbufs >= 3 && !k->epilogue && !k->m.batched && !k->n.batched &&
         !ir_is_batched(k->bufs[2]);
}

// Appends the deferred kernels later[0..n), the products among them that
// may be shared out first, as one region of shared products when they are
// two or more: a product joins when it conflicts with none of the other
// kernels it would now run before, reads no C of the group, and writes no
// C the group reads or writes, unless it adds to a C the group writes
// (its threads' shares of that C are the same rows).
static void append_later(Regions *r, Kernel **later, int n, int ids) {
  char *rest = xcalloc(ids, 1), *group = xcalloc(ids, 1);
  bool *in = xcalloc(n + 1, sizeof(bool));
  int count = 0;
  for (int i = 0; i < n; i++) {
    Kernel *k = later[i];
    bool ok = shared_product(k) && !conflicts(k, rest);
    for (int b = 0; b < 2 && ok; b++)
      ok = !(group[storage(k->bufs[b])->id] & 2);
    char c = ok ? group[storage(k->bufs[2])->id] : 0;
    ok = ok && !(c & 1) && (!(c & 2) || k->accumulate);
    if (ok) {
      in[i] = true;
      count++;
      mark(k, group);
    } else
      mark(k, rest);
  }
  if (count < 2) {   // in their order
    count = 0;
    memset(in, 0, sizeof(bool) * n);
  }
  int first = r->nout;
  for (int i = 0; i < n; i++)
    if (in[i])
      r->out[r->nout++] = later[i];
  for (int i = 0; i < n; i++)
    if (!in[i])
      r->out[r->nout++] = later[i];
  if (count)
    r->regions[r->nregions++] = (KRegion){first, first + count - 1, 0, true, 0, 0};
  free(rest);
  free(group);
  free(in);
}

// Closes the region of kernels run[0..n): appends them, and the region
// when it has two or more kernels, then the deferred kernels.
static void flush(Regions *r, Kernel **run, int n, int64_t row_bytes, Kernel **later, int nlater, int ids,
                  int64_t max_batch) {
  int first = r->nout;
  int64_t block = REGION_BYTES / (row_bytes > 0 ? row_bytes : 1);
  block = block > REGION_MIN_ROWS ? block : REGION_MIN_ROWS;
  for (int i = 0; i < n; i++) {
    r->out[r->nout++] = run[i];
    if (run[i]->kind == KN_GEMM && block < REGION_GEMM_ROWS)
      block = REGION_GEMM_ROWS;
    if (run[i]->kind == KN_LIB && run[i]->node->op == IR_CONV2D && block < REGION_CONV_IMAGES)
      block = REGION_CONV_IMAGES;
  }
  block = block < max_batch ? block : max_batch;   // (local rows are sized for a block)
  if (n >= 2)
    r->regions[r->nregions++] = (KRegion){first, r->nout - 1, row_bytes, false, block, 0};
  append_later(r, later, nlater, ids);
}

// Whether epilogue e of a product is a plain sum: loads at the index of
// its one store, which is C's own (row-major over its space), and adds,
// each value used once, the last one stored.
static bool sum_epilogue(const Kernel *e) {
  if (!e || e->nstores != 1 || e->stores[0].reduce != KR_NONE || e->nbody < 3 ||
      e->stores[0].value != e->nbody - 1 || e->stores[0].idx.offset != 0)
    return false;
  int64_t stride = 1;
  for (int d = e->ndim - 1; d >= 0; d--) {
    if (e->stores[0].idx.stride[d] != stride)
      return false;
    stride *= d > 0 ? e->dims[d] : 1;
  }
  int *used = xcalloc(e->nbody, sizeof(int)), loads = 0, adds = 0;
  bool ok = true;
  for (int i = 0; i < e->nbody && ok; i++) {
    const KInstr *in = &e->body[i];
    if (in->op == KI_LOAD) {
      ok = !memcmp(&in->idx, &e->stores[0].idx, sizeof in->idx);
      loads++;
    } else if (in->op == KI_ADD) {
      ok = in->a < i && in->b < i && ++used[in->a] == 1 && ++used[in->b] == 1;
      adds++;
    } else
      ok = false;
  }
  free(used);
  return ok && adds == loads - 1;
}

// Weight gradients of a weight several products read (an unrolled
// recurrence's W_hh, by every step) come out of fusion as one product per
// reader, each into a buffer of its own, and the last product's epilogue
// adding them all (27 buffers of 256 KB for lstm's W_hh). Here they become
// products that accumulate into the sum's buffer, in kernel order, where
// each addend is a product of the same size with no epilogue that nothing
// else reads.
static void accumulate_sums(KProgram *p) {
  int ids = p->g->nnodes + 1 + KP_MAX_BLOCKS;   // the graph's nodes, the step scalars, the blocks
  int *writer = xmalloc(sizeof(int) * ids), *readers = xcalloc(ids, sizeof(int));
  for (int i = 0; i < ids; i++)
    writer[i] = -1;
  for (int i = 0; i < p->nkernels; i++)
    for (const Kernel *e = p->kernels[i]; e; e = e->epilogue)
      for (int b = 0; b < e->nbufs; b++) {
        int id = storage(e->bufs[b])->id;
        if (kernel_writes(e, b))
          writer[id] = writer[id] < 0 ? i : -2;   // -2: several
        else
          readers[id]++;
      }
  for (int i = 0; i < p->nkernels; i++) {
    Kernel *k = p->kernels[i], *e = k->epilogue;
    if (k->kind != KN_GEMM || k->accumulate || !sum_epilogue(e))
      continue;
    const IrNode *sum = e->bufs[e->stores[0].buf];
    bool ok = writer[storage(sum)->id] == i;
    for (int j = 0; j < e->nbody && ok; j++) {
      const KInstr *in = &e->body[j];
      if (in->op != KI_LOAD || e->bufs[in->buf] == k->bufs[2])
        continue;
      const IrNode *part = e->bufs[in->buf];
      int w = writer[storage(part)->id];
      const Kernel *pk = w >= 0 ? p->kernels[w] : NULL;
      ok = pk && w < i && pk->kind == KN_GEMM && !pk->epilogue && !pk->accumulate && pk->bufs[2] == part &&
           readers[storage(part)->id] == 1 && pk->m.coef == k->m.coef && pk->m.batched == k->m.batched &&
           pk->n.coef == k->n.coef && pk->n.batched == k->n.batched;
    }
    if (!ok)
      continue;
    int first = i;
    for (int j = 0; j < e->nbody; j++) {
      const KInstr *in = &e->body[j];
      if (in->op != KI_LOAD || e->bufs[in->buf] == k->bufs[2])
        continue;
      int w = writer[storage(e->bufs[in->buf])->id];
      first = w < first ? w : first;
      p->kernels[w]->bufs[2] = sum;
    }
    for (int j = 0; j < e->nbody; j++) {
      const KInstr *in = &e->body[j];
      if (in->op == KI_LOAD && e->bufs[in->buf] != k->bufs[2])
        p->kernels[writer[storage(e->bufs[in->buf])->id]]->accumulate = true;
    }
    p->kernels[first]->accumulate = false;   // the first in order writes the sum, the others add to it
    k->bufs[2] = sum;
    k->accumulate = first != i;
    k->epilogue = NULL;
  }
  free(writer);
  free(readers);
}

void pass_regions(KProgram *p) {
  if (p->max_batch < REGION_MIN_BATCH)
    return;
  accumulate_sums(p);
  Arena *a = p->g->arena;
  int nk = p->nkernels, nn = p->g->nnodes;
  Regions r = {arena_alloc(a, sizeof(Kernel *) * (nk + 1)), 0, arena_alloc(a, sizeof(KRegion) * (nk + 1)), 0};
  Kernel **run = xmalloc(sizeof(Kernel *) * (nk + 1)), **later = xmalloc(sizeof(Kernel *) * (nk + 1));
  int ids = nn + 1 + KP_MAX_BLOCKS;   // the graph's nodes, the step scalars, the blocks
  char *run_rw = xcalloc(ids, 1), *later_rw = xcalloc(ids, 1);
  int nrun = 0, nlater = 0;
  int64_t row_bytes = 0;
  for (int i = 0; i <= nk; i++) {
    Kernel *k = i < nk ? p->kernels[i] : NULL;
    int64_t bytes = 0;
    bool row = k && rowwise(k, p->entry == ENTRY_TRAIN, &bytes);
    if (row && !conflicts(k, later_rw)) {   // joins the region, ahead of the deferred kernels
      run[nrun++] = k;
      mark(k, run_rw);
      row_bytes = bytes > row_bytes ? bytes : row_bytes;
      continue;
    }
    if (k && !row && nrun > 0 && movable(k)) {   // waits until the region has run
      later[nlater++] = k;
      mark(k, later_rw);
      continue;
    }
    flush(&r, run, nrun, row_bytes, later, nlater, ids, p->max_batch);
    memset(run_rw, 0, ids);
    memset(later_rw, 0, ids);
    nrun = nlater = 0;
    row_bytes = 0;
    if (!k)
      break;
    if (row) {
      run[nrun++] = k;
      mark(k, run_rw);
      row_bytes = bytes;
    } else
      r.out[r.nout++] = k;
  }
  free(run);
  free(later);
  free(run_rw);
  free(later_rw);
  p->kernels = r.out;
  p->nkernels = r.nout;
  p->regions = r.regions;
  p->nregions = r.nregions;
}
