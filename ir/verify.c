// verify.c: the checker that runs between passes (QBE's ssacheck()).
//
// A violation is a bug in whichever pass built or rewrote the graph, not in
// the user's model. Each one is still reported at the node's .nn location,
// as "ir: %ID (op): what is wrong", so the model that shows it is easy to
// find. The checker reads only what it has checked: a NULL node, an input
// outside the graph or a bad op number never makes it crash.
#include "ir.h"

#include <stdlib.h>
#include <string.h>

typedef struct Verifier {
  const IrGraph *g;
  Diag *d;
  bool ok;           // no violation so far
} Verifier;

static const char *op_name(IrOp op) {
  return (unsigned)op < IR_NUM_OPS ? ir_op_info(op)->mnem : "?";
}

// Reports "ir: %ID (op): message" at n's location.
static void fail(Verifier *v, const IrNode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(Verifier *v, const IrNode *n, const char *fmt, ...) {
  StrBuf b = {0};
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(&b, fmt, ap);
  va_end(ap);
  diag_error(v->d, n->loc, NULL, "ir: %%%d (%s): %s", n->id, op_name(n->op),
             b.data ? b.data : "");
  sb_free(&b);
  v->ok = false;
}

static bool in_graph(const IrGraph *g, const IrNode *n) {
  return n && n->id >= 0 && n->id < g->nnodes && g->nodes[n->id] == n;
}

// Inputs: nsrc in range and as ops.def says, src[0..nsrc) nodes of this
// graph that come before n (at position pos), and NULL after.
static void check_srcs(Verifier *v, const IrNode *n, int pos) {
  if (n->nsrc < 0 || n->nsrc > IR_MAX_SRC) {
    fail(v, n, "nsrc is %d, outside 0..%d", n->nsrc, IR_MAX_SRC);
    return;
  }
  if ((unsigned)n->op < IR_NUM_OPS) {
    const IrOpInfo *info = ir_op_info(n->op);
    if (info->min_in == info->max_in && n->nsrc != info->min_in)
      fail(v, n, "has %d inputs; %s takes %d", n->nsrc, info->mnem, info->min_in);
    else if (n->nsrc < info->min_in || n->nsrc > info->max_in)
      fail(v, n, "has %d inputs; %s takes %d to %d", n->nsrc, info->mnem, info->min_in,
           info->max_in);
  }
  for (int i = 0; i < ir_src_slots(n->nsrc); i++) {
    const IrNode *s = n->src[i];
    if (i >= n->nsrc) {
      if (s)
        fail(v, n, "src[%d] is set, but the node has only %d inputs", i, n->nsrc);
    } else if (!s) {
      fail(v, n, "input %d is NULL", i);
    } else if (!in_graph(v->g, s)) {
      fail(v, n, "input %d (%%%d) is not a node of this graph", i, s->id);
    } else if (s->id >= pos) {
      fail(v, n, "input %d (%%%d) does not come before its user", i, s->id);
    }
  }
}

// The type: a known dtype, a known shape, dimensions > 0 or IR_N.
static void check_type(Verifier *v, const IrNode *n) {
  if (n->dtype != DT_F32 && n->dtype != DT_I32)
    fail(v, n, "bad dtype %d", (int)n->dtype);
  if (n->ndim < 0 || n->ndim > IR_MAX_DIMS) {
    fail(v, n, "shape is not known (ndim %d)", n->ndim);
    return;
  }
  for (int i = 0; i < n->ndim; i++)
    if (n->shape[i] <= 0 && n->shape[i] != IR_N)
      fail(v, n, "dimension %d is %lld", i, (long long)n->shape[i]);
}

// The leaves that hold named tensors, and so need a name no other one has:
// every leaf but a constant. An op out of range is reported on its own.
static bool is_named_leaf(IrOp op) {
  return (unsigned)op < IR_NUM_OPS && ir_op_is_leaf(op) && op != IR_CONST;
}

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;   // FNV-1a
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/*
** Every named leaf has a name, and no two share one. An open-addressing
** table of the names seen so far finds each clash in node order, and the
** report names the node that had it first.
*/
static void check_names(Verifier *v) {
  const IrGraph *g = v->g;
  int cap = 16;
  while (cap < 2 * g->nnodes)
    cap *= 2;
  const IrNode **seen = xcalloc(cap, sizeof *seen);
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (!n || !is_named_leaf(n->op))
      continue;
    if (!n->name || !*n->name) {
      fail(v, n, "%s nodes need a name", op_name(n->op));
      continue;
    }
    uint32_t h = hash_str(n->name) & (cap - 1);
    while (seen[h] && strcmp(seen[h]->name, n->name) != 0)
      h = (h + 1) & (cap - 1);
    if (seen[h])
      fail(v, n, "name \"%s\" is already used by %%%d", n->name, seen[h]->id);
    else
      seen[h] = n;
  }
  free(seen);
}

// The outputs and the loss are nodes of the graph; the loss is the f32[]
// result of a loss op, or a weighted sum of them.
static void check_ends(Verifier *v) {
  const IrGraph *g = v->g;
  if (g->output && !in_graph(g, g->output))
    fail(v, g->output, "the output is not a node of this graph");
  for (int i = 0; i < g->noutputs; i++)
    if (!in_graph(g, g->outputs[i]))
      fail(v, g->outputs[i], "output \"%s\" is not a node of this graph", g->output_names[i]);
  if (!g->loss)
    return;
  if (!in_graph(g, g->loss)) {
    fail(v, g->loss, "the loss is not a node of this graph");
    return;
  }
  IrNode *term;
  double w;
  if ((unsigned)g->loss->op >= IR_NUM_OPS || ir_loss_terms(g, &term, &w, 1) < 1)
    fail(v, g->loss, "the loss must come from a loss op, or be a weighted sum of loss ops");
  if (g->loss->dtype != DT_F32 || g->loss->ndim != 0) {
    char type[IR_MAX_DIMS * 22 + 8];
    fail(v, g->loss, "the loss must be f32[], not %s", ir_type_str(g->loss, type, sizeof type));
  }
}

bool ir_verify(const IrGraph *g, Diag *d) {
  Verifier v = {.g = g, .d = d, .ok = true};
  if (g->nnodes < 0 || (g->nnodes > 0 && !g->nodes)) {
    diag_error(d, (SrcLoc){0}, NULL, "ir: graph has %d nodes but no node array", g->nnodes);
    return false;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (!n) {
      diag_error(d, (SrcLoc){0}, NULL, "ir: node %d is NULL", i);
      v.ok = false;
      continue;
    }
    if (n->id != i)
      fail(&v, n, "id does not match its position %d", i);
    if ((unsigned)n->op >= IR_NUM_OPS)
      fail(&v, n, "op %d is not an op", (int)n->op);
    check_srcs(&v, n, i);
    check_type(&v, n);
  }
  check_names(&v);
  check_ends(&v);
  return v.ok;
}

// Where buffer n of p lives, checked: a graph node, the step scalars or a
// block, with a place of at least its elements' bytes inside its space.
static bool check_place(const KProgram *p, const IrNode *n, char *err, size_t errsz) {
  const IrGraph *g = p->g;
  int nn = g->nnodes;
  bool known = in_graph(g, n) || (n && n == p->scalars && n->id == nn) ||
               (n && n->id > nn && n->id <= nn + p->nblocks && p->blocks[n->id - nn - 1] == n);
  if (!known) {
    errorf(err, errsz, "a kernel touches a buffer (%%%d) that is neither a graph node, the scalars nor a block",
           n ? n->id : -1);
    return false;
  }
  const KBufInfo *b = &p->buf[n->id];
  if (b->space == KB_LOCAL)
    return true;   // check_local
  int64_t need = n->id < nn ? ir_numel(n, p->max_batch) * 4 : 1;
  int64_t limit = b->space == KB_STATE ? p->state_bytes : p->arena_bytes;
  if (b->bytes < need || b->offset < 0 || b->offset + b->bytes > limit) {
    errorf(err, errsz, "%%%d (%s) has %lld bytes at %lld in the %s (%lld bytes), but needs %lld", n->id,
           op_name(n->op), (long long)b->bytes, (long long)b->offset, b->space == KB_STATE ? "state" : "arena",
           (long long)limit, (long long)need);
    return false;
  }
  return true;
}

// The buffers a library kernel of each kind has (operands, then the
// result; an update has none) and the rank of its first one (0: any).
static const struct { int8_t min, max, rank; } lib_form[RL_COUNT] = {
    [RL_CONV2D] = {3, 4, 4}, [RL_CONV2D_GRAD_INPUT] = {3, 3, 4}, [RL_CONV2D_GRAD_WEIGHT] = {3, 3, 4},
    [RL_MAXPOOL] = {2, 2, 4}, [RL_MAXPOOL_GRAD] = {3, 3, 4}, [RL_AVGPOOL] = {2, 2, 4},
    [RL_AVGPOOL_GRAD] = {2, 2, 4}, [RL_GLOBAL_AVGPOOL] = {2, 2, 4}, [RL_GLOBAL_AVGPOOL_GRAD] = {2, 2, 4},
    [RL_BATCHNORM] = {6, 6, 0}, [RL_BATCHNORM_GRAD] = {4, 4, 0}, [RL_BATCHNORM_GRAD_GAMMA] = {3, 3, 0},
    [RL_DROPOUT] = {2, 2, 0}, [RL_DROPOUT_GRAD] = {2, 2, 0}, [RL_SOFTMAX] = {2, 2, 0},
    [RL_LOG_SOFTMAX] = {2, 2, 0}, [RL_SOFTMAX_GRAD] = {3, 3, 0}, [RL_LOG_SOFTMAX_GRAD] = {3, 3, 0},
    [RL_CROSS_ENTROPY] = {3, 3, 2}, [RL_NLL] = {3, 3, 2}, [RL_MSE] = {3, 3, 0}, [RL_L1] = {3, 3, 0},
    [RL_BCE_WITH_LOGITS] = {3, 3, 0}, [RL_CROSS_ENTROPY_GRAD] = {3, 3, 2}, [RL_NLL_GRAD] = {3, 3, 2},
    [RL_MSE_GRAD] = {3, 3, 0}, [RL_L1_GRAD] = {3, 3, 0}, [RL_BCE_WITH_LOGITS_GRAD] = {3, 3, 0},
    [RL_SGD_STEP] = {2, 3, 0}, [RL_ADAM_STEP] = {4, 4, 0},
    [RL_EMBEDDING] = {3, 3, 0}, [RL_EMBEDDING_GRAD] = {3, 3, 0},
    [RL_RMSPROP_STEP] = {3, 5, 0}, [RL_ADAGRAD_STEP] = {3, 3, 0},
    [RL_LAYERNORM] = {2, 2, 0}, [RL_LAYERNORM_GRAD] = {3, 3, 0},
    [RL_GAUSSIAN_NOISE] = {2, 2, 0}, [RL_CONV2D_GRAD_WEIGHT_POOLED] = {3, 3, 4},
    [RL_CONV2D_GRAD_INPUT_POOLED] = {3, 3, 4},
};

// The bytes of run-time state a kind keeps for its gradient (aux), or
// reads of its forward's (aux_from), at the program's largest batch.
static int64_t lib_aux_bytes(const RtLib *d, int64_t B) {
  const RtLibBuf *r = &d->buf[d->nbufs - 1], *b0 = &d->buf[0];
  switch (d->kind) {
  case RL_MAXPOOL: return 4 * rt_lib_numel(r, B);                  // an int32 argmax per window
  case RL_MAXPOOL_GRAD: case RL_CONV2D_GRAD_WEIGHT_POOLED: case RL_CONV2D_GRAD_INPUT_POOLED:
    return 4 * rt_lib_numel(b0, B);                                  // the forward's, one per dy element
  case RL_BATCHNORM: return 8 * (r->ndim > 1 ? r->shape[1] : 0);  // mean and 1/std
  case RL_BATCHNORM_GRAD: case RL_BATCHNORM_GRAD_GAMMA: return 8 * (d->buf[1].ndim > 1 ? d->buf[1].shape[1] : 0);
  case RL_DROPOUT: return rt_lib_numel(r, B);                      // a byte of mask per element
  case RL_DROPOUT_GRAD: return rt_lib_numel(b0, B);
  default: return -1;                                              // keeps and reads nothing
  }
}

static bool pooled(const RtLib *d) {
  return d->kind == RL_CONV2D_GRAD_WEIGHT_POOLED || d->kind == RL_CONV2D_GRAD_INPUT_POOLED;
}

// A pooled weight or input gradient (dy, x -> dw or dy, w -> dx) against
// the max pooling (y -> p) whose argmax it reads: dy has p's shape, y is
// [N, O, OH, OW] with the convolution's output plane, which the argmax
// indexes (the runtime reads or writes x's windows there), and the
// weight's [O, C/groups, KH, KW] fits x.
static bool pooled_fits(const RtLib *d, const RtLib *pool) {
  bool input = d->kind == RL_CONV2D_GRAD_INPUT_POOLED;
  const RtLibBuf *dy = &d->buf[0], *x = &d->buf[input ? 2 : 1], *w = &d->buf[input ? 1 : 2];
  const RtLibBuf *y = &pool->buf[0], *p = &pool->buf[1];
  if (dy->ndim != 4 || x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || p->ndim != 4 ||
      memcmp(dy->shape, p->shape, sizeof dy->shape) || dy->shape[0] != x->shape[0] || y->shape[0] != x->shape[0])
    return false;
  const int64_t *a = d->i;   // stride_h stride_w pad_h pad_w dil_h dil_w groups
  int64_t G = a[6] > 1 ? a[6] : 1;
  if (a[0] < 1 || a[1] < 1 || a[2] < 0 || a[3] < 0 || a[4] < 1 || a[5] < 1 || a[6] < 0 || x->shape[1] % G ||
      w->shape[0] % G || w->shape[1] * G != x->shape[1] || y->shape[1] != w->shape[0])
    return false;
  int64_t sh = x->shape[2] + 2 * a[2] - a[4] * (w->shape[2] - 1) - 1, sw = x->shape[3] + 2 * a[3] - a[5] * (w->shape[3] - 1) - 1;
  return sh >= 0 && sw >= 0 && y->shape[2] == sh / a[0] + 1 && y->shape[3] == sw / a[1] + 1 &&
         (double)x->shape[1] * (double)(x->shape[2] + 2 * a[2]) * (double)(x->shape[3] + 2 * a[3]) <= INT32_MAX;
}

// A library kernel's descriptor, which the runtime trusts: a kind with
// its count of buffers, each inside its space at the program's largest
// batch, and slots of run-time state as large as the kind needs.
static bool check_lib(const KProgram *p, const Kernel *k, char *err, size_t errsz) {
  const RtLib *d = k->lib;
  if (!d || !rt_lib_name(d->kind)) {
    errorf(err, errsz, "library kernel '%s' has no descriptor of a known kind", k->name);
    return false;
  }
  if (d->nbufs < lib_form[d->kind].min || d->nbufs > lib_form[d->kind].max ||
      (lib_form[d->kind].rank && d->buf[0].ndim != lib_form[d->kind].rank)) {
    errorf(err, errsz, "library kernel '%s' (%s) has %d buffers, the first of rank %d", k->name,
           rt_lib_name(d->kind), d->nbufs, d->buf[0].ndim);
    return false;
  }
  for (int i = 0; i < d->nbufs; i++) {
    const RtLibBuf *b = &d->buf[i];
    bool dims_ok = b->ndim >= 0 && b->ndim <= RT_MAX_DIMS;
    for (int j = 0; dims_ok && j < b->ndim; j++)
      dims_ok = b->shape[j] >= 1 || (j == 0 && b->shape[j] == RT_BATCH);
    int64_t bytes = dims_ok ? 4 * rt_lib_numel(b, p->max_batch) : 0,
            limit = b->space == RT_SPACE_STATE ? p->state_bytes : p->arena_bytes;
    if (dims_ok && b->space == RT_SPACE_LOCAL)
      continue;   // check_local
    if (!dims_ok || (b->space != RT_SPACE_ARENA && b->space != RT_SPACE_STATE) || b->offset < 0 ||
        b->offset > limit - bytes) {
      errorf(err, errsz, "library kernel '%s': buffer %d (%lld bytes at %lld) is not inside the %s (%lld bytes)",
             k->name, i, (long long)bytes, (long long)b->offset, b->space == RT_SPACE_STATE ? "state" : "arena",
             (long long)limit);
      return false;
    }
  }
  int64_t need = lib_aux_bytes(d, p->max_batch);
  bool keeps = d->kind == RL_MAXPOOL || d->kind == RL_BATCHNORM || d->kind == RL_DROPOUT;
  if (d->aux >= 0 && (!keeps || d->aux >= p->naux || d->aux_bytes < need)) {
    errorf(err, errsz, "library kernel '%s': slot %d of %lld bytes, where %s", k->name, d->aux,
           (long long)d->aux_bytes, keeps ? "its state needs more or the program has fewer slots"
                                          : "the kind keeps nothing");
    return false;
  }
  if (d->aux_from >= 0) {   // the forward that keeps the slot, with room for what this reads
    int fwd = d->kind == RL_MAXPOOL_GRAD || pooled(d) ? RL_MAXPOOL
              : d->kind == RL_DROPOUT_GRAD                                          ? RL_DROPOUT
                                                                                    : RL_BATCHNORM;
    const RtLib *from = NULL;
    for (int i = 0; i < p->nkernels && !from; i++)
      if (p->kernels[i]->kind == KN_LIB && p->kernels[i]->lib && p->kernels[i]->lib->aux == d->aux_from)
        from = p->kernels[i]->lib;
    if (keeps || need < 0 || !from || from->kind != fwd || from->aux_bytes < need) {
      errorf(err, errsz, "library kernel '%s' reads slot %d, which no %s keeps with %lld bytes", k->name,
             d->aux_from, need < 0 ? "kernel" : rt_lib_name(fwd), (long long)need);
      return false;
    }
    if (pooled(d) && !pooled_fits(d, from)) {
      errorf(err, errsz, "library kernel '%s' reads the argmax of a max pooling that is not one of this "
             "convolution's output (its input must have the output's shape, its output dy's)", k->name);
      return false;
    }
  } else if (pooled(d)) {
    errorf(err, errsz, "library kernel '%s' (%s) reads no max pooling's argmax", k->name, rt_lib_name(d->kind));
    return false;
  }
  return true;
}

static bool check_kernel(const KProgram *p, const Kernel *k, char *err, size_t errsz) {
  for (int i = 0; i < k->nnodes; i++)
    if (!in_graph(p->g, k->nodes[i])) {
      errorf(err, errsz, "kernel '%s' computes a node outside the graph", k->name);
      return false;
    }
  // A library kernel runs its descriptor; its node (a program read from
  // text may have none: an update, a result given by place) is for messages.
  if (k->kind == KN_LIB && k->node && !in_graph(p->g, k->node)) {
    errorf(err, errsz, "library kernel '%s' runs a node outside the graph", k->name);
    return false;
  }
  if (k->kind == KN_LIB && !check_lib(p, k, err, errsz))
    return false;
  // A library kernel's buffers that its routine reads or writes: its
  // node's inputs, and its result but for an update's (which writes its
  // parameter and state in place); every buffer of a loop or a GEMM.
  for (int i = 0; i < k->nbufs; i++) {
    const IrNode *b = k->bufs[i];
    bool update = b && ir_op_kind(b->op) == IR_KIND_UPDATE;
    if (k->kind == KN_LIB && b && b == k->node && update && p->buf[b->id].bytes == 0)
      continue;
    if (!check_place(p, b, err, errsz))
      return false;
  }
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    if ((in->op == KI_LOAD || in->op == KI_LOADI) && (in->buf < 0 || in->buf >= k->nbufs)) {
      errorf(err, errsz, "kernel '%s': instruction %d loads buffer %d of %d", k->name, i, in->buf, k->nbufs);
      return false;
    }
  }
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].buf < 0 || k->stores[i].buf >= k->nbufs || k->stores[i].value < 0 ||
        k->stores[i].value >= k->nbody) {
      errorf(err, errsz, "kernel '%s': store %d is out of its buffers or body", k->name, i);
      return false;
    }
  return !k->epilogue || check_kernel(p, k->epilogue, err, errsz);
}

// Whether k can run on a block of the batch's rows: a loop split along
// the batch, or a product whose rows are the batch's (with such a loop for
// its epilogue). What a region's kernels compute row by row is the
// compiler's to check (passes/region.c); this keeps every block inside
// its buffers.
static bool region_kernel(const Kernel *k) {
  if (k->kind == KN_LOOP)
    return k->ndim >= 1 && k->dims[0] == IR_N && k->parallel;
  if (k->kind == KN_LIB)
    return k->lib && rt_lib_rowwise(k->lib) && (!k->epilogue || region_kernel(k->epilogue));
  return k->kind == KN_GEMM && !k->ta && k->m.batched && !k->n.batched && !k->k.batched &&
         (!k->epilogue || region_kernel(k->epilogue));
}

// Whether k can run as a share of a region of shared products: a product
// with no batch dimension in C (each thread's share is rows or columns of
// C) and no epilogue.
static bool shared_kernel(const Kernel *k) {
  return k->kind == KN_GEMM && !k->m.batched && !k->n.batched && !k->epilogue;
}

// Whether a block's rows of a value in local rows, touched by kernel i,
// lie inside region r's (-1: i is in none): at offset, bytes of them (-1:
// exactly a block's), rows of row_bytes.
static bool local_fits(const KProgram *p, int i, int r, int64_t offset, int64_t bytes, int64_t row_bytes, char *err,
                       size_t errsz) {
  const KRegion *reg = r >= 0 ? &p->regions[r] : NULL;
  if (!reg || reg->products) {
    errorf(err, errsz, "kernel %d touches a value in local rows outside a batch-blocked region (only such a "
           "region's blocks have local rows)", i);
    return false;
  }
  int64_t need = row_bytes > 0 && reg->block > 0 && row_bytes <= INT64_MAX / reg->block ? row_bytes * reg->block : -1;
  bytes = bytes < 0 ? need : bytes;
  if (need < 0 || bytes < need || offset < 0 || offset > reg->local_bytes - need) {
    errorf(err, errsz, "kernel %d: a value in local rows (%lld bytes at %lld) does not hold a block of its rows "
           "(%lld rows of %lld bytes) inside region %d's %lld local bytes", i, (long long)bytes, (long long)offset,
           (long long)reg->block, (long long)row_bytes, r, (long long)reg->local_bytes);
    return false;
  }
  return true;
}

// Values in local rows (KB_LOCAL): each is touched by the kernels of one
// batch-blocked region only, and each block of its rows lies inside that
// region's local rows.
static bool check_local(const KProgram *p, char *err, size_t errsz) {
  int nids = p->g->nnodes + 1 + p->nblocks, *owner = xmalloc(sizeof(int) * (nids + 1));
  for (int i = 0; i < nids; i++)
    owner[i] = -2;
  bool ok = true;
  for (int i = 0, r = 0; i < p->nkernels && ok; i++) {
    while (r < p->nregions && p->regions[r].last < i)
      r++;
    int in = r < p->nregions && p->regions[r].first <= i ? r : -1;
    for (const Kernel *k = p->kernels[i]; k && ok; k = k->epilogue) {
      for (int j = 0; j < k->nbufs && ok; j++) {
        const IrNode *n = k->bufs[j];
        if (n->id < 0 || n->id >= nids || p->buf[n->id].space != KB_LOCAL)
          continue;
        if (p->kernels[i]->kind == KN_GEMM) {   // its micro-kernels address the arena and the state alone
          errorf(err, errsz, "product %d touches %%%d, which lies in local rows", i, n->id);
          ok = false;
          break;
        }
        ok = local_fits(p, i, in, p->buf[n->id].offset, p->buf[n->id].bytes, 4 * ir_numel(n, 1), err, errsz);
        if (ok && owner[n->id] != -2 && owner[n->id] != in) {
          errorf(err, errsz, "%%%d lies in local rows of two regions (%d and %d)", n->id, owner[n->id], in);
          ok = false;
        }
        owner[n->id] = in;
      }
      for (int j = 0; k->kind == KN_LIB && k->lib && j < k->lib->nbufs && ok; j++) {
        const RtLibBuf *b = &k->lib->buf[j];
        if (b->space != RT_SPACE_LOCAL)
          continue;
        if (b->ndim < 1 || b->shape[0] != RT_BATCH) {
          errorf(err, errsz, "library kernel '%s': buffer %d in local rows has no batch dimension", k->name, j);
          ok = false;
        } else
          ok = local_fits(p, i, in, b->offset, -1, 4 * rt_lib_numel(b, 1), err, errsz);
      }
    }
  }
  free(owner);
  return ok;
}

bool ir_verify_program(const KProgram *p, char *err, size_t errsz) {
  if (!p->g || !p->buf || p->nkernels < 0 || (p->nkernels > 0 && !p->kernels) || p->max_batch < 1) {
    errorf(err, errsz, "the program has no graph, no plan or no kernels");
    return false;
  }
  for (int i = 0; i < p->nkernels; i++)
    if (!p->kernels[i] || !check_kernel(p, p->kernels[i], err, errsz))
      return false;
  for (int r = 0, end = -1; r < p->nregions; r++) {
    const KRegion *reg = &p->regions[r];
    if (reg->first <= end || reg->last <= reg->first || reg->last >= p->nkernels || reg->row_bytes < 0 ||
        reg->local_bytes < 0 || (!reg->products && reg->block < 1) || (reg->products && reg->local_bytes)) {
      errorf(err, errsz, "region %d (kernels %d to %d) is out of order, too short, past the last kernel or "
             "without rows for its blocks", r, reg->first, reg->last);
      return false;
    }
    end = reg->last;
    for (int i = reg->first; i <= reg->last; i++)
      if (reg->products && !shared_kernel(p->kernels[i])) {
        errorf(err, errsz, "kernel %d of region %d is not a product whose C has no batch dimension and no "
               "epilogue", i, r);
        return false;
      } else if (!reg->products && !region_kernel(p->kernels[i])) {
        errorf(err, errsz, "kernel %d of region %d is not a loop over the batch, a product of the batch's rows "
               "or a softmax or layer normalization of each sample", i, r);
        return false;
      }
  }
  return check_local(p, err, errsz);
}
