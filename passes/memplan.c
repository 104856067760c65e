// memplan.c: where every value of a program lives.
//
// Persistent tensors (parameters, buffers, optimizer state) are laid out in
// one state block, the same for every entry point of a model: the updated
// parameters first, then each kind of their optimizer state in the same
// order, so that one loop can update every parameter; with that loop, the
// gradients too lie alike, in one block of the arena. Everything else a
// kernel writes gets a slot in the entry point's arena for as long as
// someone still reads it: slots are handed out in kernel order, first fit,
// and a slot is free again after its value's last reader has run. A loop whose result has the same size and index as one
// of its inputs that dies there writes in place over it; the epilogue of a
// GEMM or a convolution writes over the product; a reshape shares its
// input's slot. A value that lives only inside one batch-blocked region
// gets no arena slot but a place in that region's local rows, where each
// thread holds one block's rows of it (local_slots).
#include "passes.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64
// A thread's local rows stay under this where a block of one row allows:
// the region's blocks get fewer rows (KRegion.block). Every thread holds
// its own, whatever the batch, so they must stay small beside the arena.
#define LOCAL_MAX_BYTES (16 << 20)

static int64_t align_up(int64_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

// A value's storage: values that alias share one.
typedef struct Slot {
  int64_t bytes;         // size for the largest batch, aligned
  int first, last;       // kernels that write it first and read it last
  int64_t offset;        // in the arena, once placed (-1 before)
} Slot;

typedef struct Plan {
  KProgram *p;
  const IrGraph *g;
  int *slot;             // slot[id]: the storage of node id, or -1
  Slot *slots;
  int nslots;
  int64_t *row;          // row[slot]: the elements of a sample's row of each of its values, or -1 (no
                         // batch dimension, or values of different rows)
  const int *region;     // region[kernel]: the region kernel i is in, or -1
  int64_t *sub;          // sub[id]: the node's offset within its slot (a gradient in the block)
  const IrNode **grad_of;   // grad_of[id]: with blocks, the parameter whose gradient node id is
  int grads_slot;        // the gradients' block, once its first gradient is written; -1 before
  int grads_last;        // the kernel that reads the gradients' block (the update)
} Plan;

static int64_t node_bytes(const IrNode *n, int64_t batch) { return align_up(ir_numel(n, batch) * 4); }

int64_t pass_state_bytes(const IrNode *n) { return node_bytes(n, 1); }

// The elements of a sample's row of n, or -1 where n has no batch dimension first.
static int64_t row_elems(const IrNode *n) { return n->ndim >= 1 && n->shape[0] == IR_N ? ir_numel(n, 1) : -1; }

static int new_slot(Plan *pl, const IrNode *n, int first, int last) {
  pl->slots[pl->nslots] = (Slot){node_bytes(n, pl->p->max_batch), first, last > first ? last : first, -1};
  pl->row[pl->nslots] = row_elems(n);
  pl->slot[n->id] = pl->nslots;
  return pl->nslots++;
}

// Joins node n to slot s (in place, or as the epilogue over its product).
static void share_slot(Plan *pl, const IrNode *n, int s, int last) {
  pl->slot[n->id] = s;
  if (pl->slots[s].last < last)
    pl->slots[s].last = last;
  if (pl->row[s] != row_elems(n))
    pl->row[s] = -1;
}

// A slot that value n, written by kernel i of a region, may take over: one
// whose values died inside the region before i, as large and of the same
// row length as n, so that each block of rows finds its own rows of the
// dead value under its rows of n. -1 if none. (Slots that die before the
// region are free for the placement below anyway.)
static int region_slot(Plan *pl, const IrNode *n, int i) {
  int r = pl->region ? pl->region[i] : -1;
  if (r < 0 || row_elems(n) < 0 || pl->p->regions[r].products)   // (shared products run all at once)
    return -1;
  const KRegion *reg = &pl->p->regions[r];
  int64_t bytes = node_bytes(n, pl->p->max_batch);
  for (int s = pl->nslots - 1; s >= 0; s--) {
    const Slot *t = &pl->slots[s];
    if (t->last < i && t->last >= reg->first && t->bytes == bytes &&
        pl->row[s] == row_elems(n))
      return s;
  }
  return -1;
}

// The node a reshape (or identity dropout or noise) reads: follow aliases down.
static const IrNode *storage_node(const IrNode *n, const bool *materialized) {
  while (!materialized[n->id] && n->nsrc == 1 &&
         (n->op == IR_RESHAPE || n->op == IR_DROPOUT || n->op == IR_GAUSSIAN_NOISE))
    n = n->src[0];
  return n;
}

// Whether kernel k reads buffer b only at the index it stores root at, so
// the root may overwrite b in place.
static bool same_access(const Kernel *k, int b, int root_buf) {
  const KStore *st = NULL;
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].buf == root_buf)
      st = &k->stores[i];
  if (!st || st->reduce != KR_NONE)
    return false;
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    if ((in->op == KI_LOAD || in->op == KI_LOADI) && in->buf == b && memcmp(&in->idx, &st->idx, sizeof in->idx))
      return false;
  }
  return true;
}

// The product of a GEMM (C) or of a library kernel with an epilogue (its
// node's value), which the epilogue reads; NULL for other kernels.
static const IrNode *kernel_product(const Kernel *k) {
  if (k->kind == KN_GEMM)
    return k->bufs[2];
  return k->kind == KN_LIB && k->epilogue ? k->node : NULL;
}

// The node a kernel writes (its result).
static const IrNode *kernel_result(const Kernel *k) {
  if (k->epilogue)
    return k->epilogue->bufs[k->epilogue->stores[0].buf];
  if (k->kind == KN_LIB)
    return k->node;
  if (k->kind == KN_GEMM)
    return k->bufs[2];
  return k->bufs[k->stores[0].buf];
}

// Whether store j of loop k writes a value fuse computed in the loop of
// another node and stores beside it, for its other readers (not an
// optimizer update's parameter or state).
static bool stored_beside(const Kernel *k, int j) {
  return ir_op_kind(k->bufs[k->stores[j].buf]->op) == IR_KIND_ELEMENTWISE;
}

// Marks a read of node n by kernel i.
static void read_at(int *last, const IrNode *n, int i) {
  if (last[n->id] < i)
    last[n->id] = i;
}

// Places persistent tensor n next in the state block.
static void place_state(KProgram *p, const IrNode *n, int64_t *state, bool *mat) {
  if (mat[n->id])
    return;
  p->buf[n->id] = (KBufInfo){KB_STATE, *state, node_bytes(n, 1)};
  *state += node_bytes(n, 1);
  mat[n->id] = true;
}

const bool *pass_updates_in_blocks(const IrGraph *g) {
  bool *in = arena_alloc(g->arena, g->nnodes + 1);
  bool *grad_taken = xcalloc(g->nnodes + 1, 1);   // by the gradient's id: an update reads it
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (ir_op_kind(n->op) != IR_KIND_UPDATE)
      continue;
    in[n->id] = n->src[0]->op == IR_PARAM && !grad_taken[n->src[1]->id];
    grad_taken[n->src[1]->id] = true;
  }
  free(grad_taken);
  return in;
}

// The state block: the parameters whose updates lie in the blocks, in the
// updates' order; then their optimizer state, one kind after another in the
// same order (so that every kind lies like the parameters); then every
// other persistent tensor, in graph order. The same for every entry point
// of a model.
static void plan_state(KProgram *p, const bool *in_blocks, bool *mat) {
  const IrGraph *g = p->g;
  int64_t state = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (in_blocks[i])
      place_state(p, n->src[0], &state, mat);
  }
  for (int j = 2; j < KP_MAX_BLOCKS; j++)   // an update's state: inputs 2 and 3
    for (int i = 0; i < g->nnodes; i++) {
      const IrNode *n = g->nodes[i];
      if (in_blocks[i] && j < n->nsrc && n->src[j]->op == IR_BUFFER)
        place_state(p, n->src[j], &state, mat);
    }
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == IR_PARAM || g->nodes[i]->op == IR_BUFFER)
      place_state(p, g->nodes[i], &state, mat);
  p->state_bytes = state;
}

// Where kernel i puts its result res, live until last: with update blocks,
// a parameter's gradient goes to its place in the gradients' block.
static int result_slot(Plan *pl, const IrNode *res, int i, int last) {
  const IrNode *param = pl->grad_of ? pl->grad_of[res->id] : NULL;
  if (!param) {
    int s = region_slot(pl, res, i);
    if (s < 0)
      return new_slot(pl, res, i, last);
    share_slot(pl, res, s, last > i ? last : i);
    return s;
  }
  (void)last;   // the block lives until the update reads it
  if (pl->grads_slot < 0)
    pl->grads_slot = new_slot(pl, pl->p->blocks[KP_GRADS], i, pl->grads_last);
  share_slot(pl, res, pl->grads_slot, last);
  pl->sub[res->id] = pl->p->buf[param->id].offset - pl->p->buf[pl->p->blocks[KP_PARAMS]->id].offset;
  return pl->grads_slot;
}

// local[s]: the batch-blocked region whose values alone slot s holds,
// written and last read inside it (so no kernel outside, and no caller,
// reads them), rows of one length, touched by no product (codegen gives a
// product's micro-kernels the arena's base, not a block's local rows);
// else -1. Such a value needs only a block of rows in each thread's local
// rows: a block writes and reads its rows there, in L2, and none of it
// goes to memory. Sized for every slot there may be (ids).
static int *local_slots(Plan *pl, const bool *mat, int ids) {
  int *local = xmalloc(sizeof(int) * ids);
  bool *product = xcalloc(ids, 1);   // by slot: a product or its epilogue touches one of its values
  for (int i = 0; i < pl->p->nkernels; i++)
    for (const Kernel *e = pl->p->kernels[i]; pl->p->kernels[i]->kind == KN_GEMM && e; e = e->epilogue)
      for (int b = 0; b < e->nbufs; b++) {
        int s = pl->slot[storage_node(e->bufs[b], mat)->id];
        if (s >= 0)
          product[s] = true;
      }
  for (int s = 0; s < ids; s++) {
    local[s] = -1;
    if (s >= pl->nslots || product[s] || s == pl->grads_slot || pl->row[s] <= 0)
      continue;
    const Slot *t = &pl->slots[s];
    int r = pl->region && t->first >= 0 ? pl->region[t->first] : -1;
    if (r >= 0 && !pl->p->regions[r].products && t->last <= pl->p->regions[r].last)
      local[s] = r;
  }
  free(product);
  return local;
}

// First fit among the slots live at the same time: the slots of list, in
// order of birth, each at the lowest offset that overlaps no live slot
// already placed: one sweep over those slots by offset (an unrolled
// recurrence keeps thousands of values live at once, where moving past
// one overlap at a time and scanning again grew as n^3). The peak.
static int64_t place_slots(Slot **list, int n) {
  const Slot **placed = xmalloc(sizeof(Slot *) * (n + 1));   // by offset
  int64_t peak = 0;
  for (int a = 0; a < n; a++) {
    Slot *s = list[a];
    int64_t off = 0;
    for (int b = 0; b < a && placed[b]->offset < off + s->bytes; b++) {
      const Slot *t = placed[b];
      if (t->first <= s->last && s->first <= t->last && off < t->offset + t->bytes)
        off = t->offset + t->bytes;
    }
    s->offset = off;
    int at = a;
    while (at > 0 && placed[at - 1]->offset > off)
      at--;
    memmove(placed + at + 1, placed + at, sizeof(Slot *) * (a - at));
    placed[at] = s;
    if (off + s->bytes > peak)
      peak = off + s->bytes;
  }
  free(placed);
  return peak;
}

void pass_memplan(KProgram *p, const bool *keep) {
  const IrGraph *g = p->g;
  int nn = g->nnodes, ids = nn + 1 + KP_MAX_BLOCKS;   // the graph's nodes, the scalars, the blocks
  int *region = NULL;
  if (p->nregions) {
    region = xmalloc(sizeof(int) * (p->nkernels + 1));
    for (int i = 0; i < p->nkernels; i++)
      region[i] = -1;
    for (int r = 0; r < p->nregions; r++)
      for (int i = p->regions[r].first; i <= p->regions[r].last; i++)
        region[i] = r;
  }
  Plan pl = {p, g, xmalloc(sizeof(int) * ids), xmalloc(sizeof(Slot) * ids), 0, xmalloc(sizeof(int64_t) * ids),
             region, xcalloc(ids, sizeof(int64_t)), NULL, -1, -1};
  p->buf = arena_alloc(g->arena, sizeof(KBufInfo) * ids);
  memset(p->buf, 0, sizeof(KBufInfo) * ids);
  bool *mat = xcalloc(ids, 1);   // materialized: written by a kernel, or a leaf ([nn]: the step scalars)
  for (int i = 0; i < ids; i++)
    pl.slot[i] = -1;
  const bool *in_blocks = pass_updates_in_blocks(g);
  plan_state(p, in_blocks, mat);
  if (p->nblocks) {   // the parameters' and their state's blocks lie in the state block
    pl.grad_of = xcalloc(ids, sizeof(IrNode *));
    const IrNode *first = NULL;
    for (int i = 0; i < nn; i++) {
      const IrNode *n = g->nodes[i];
      if (!in_blocks[i])
        continue;
      pl.grad_of[n->src[1]->id] = n->src[0];
      first = first ? first : n;
    }
    for (int b = 0; b < p->nblocks; b++) {
      const IrNode *blk = p->blocks[b];
      mat[blk->id] = true;
      if (b == KP_GRADS)
        continue;   // in the arena, below
      const IrNode *at = b == KP_PARAMS ? first->src[0] : first->src[b - KP_STATE1 + 2];
      p->buf[blk->id] = (KBufInfo){KB_STATE, p->buf[at->id].offset, node_bytes(blk, 1)};
    }
  }
  for (int i = 0; i < p->nkernels; i++) {
    const Kernel *k = p->kernels[i];
    const IrNode *r = kernel_result(k);
    mat[r->id] = mat[r->id] || ir_op_kind(r->op) != IR_KIND_UPDATE;
    if (kernel_product(k))
      mat[kernel_product(k)->id] = true;
    for (int j = 1; k->kind == KN_LOOP && j < k->nstores; j++)
      if (stored_beside(k, j))
        mat[k->bufs[k->stores[j].buf]->id] = true;
  }
  // Every value's last reader, through aliases; kept values live to the end.
  int *last = xmalloc(sizeof(int) * ids);
  for (int i = 0; i < ids; i++)
    last[i] = -1;
  for (int i = 0; i < p->nkernels; i++) {
    const Kernel *k = p->kernels[i];
    const Kernel *reads[2] = {k, k->epilogue};
    for (int r = 0; r < 2 && reads[r]; r++)
      for (int b = 0; b < reads[r]->nbufs; b++)
        read_at(last, storage_node(reads[r]->bufs[b], mat), i);
    if (k->kind == KN_LIB)
      for (int s = 0; s < k->node->nsrc; s++)
        read_at(last, storage_node(k->node->src[s], mat), i);
  }
  for (int i = 0; i < nn; i++)
    if (keep[i])
      last[storage_node(g->nodes[i], mat)->id] = p->nkernels;
  if (p->nblocks)
    pl.grads_last = last[p->blocks[KP_GRADS]->id];
  p->naive_bytes = 0;
  // Inputs live from the start; kernels' results from their kernel. A
  // loop's result may take the slot of an input that dies in that loop.
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op == IR_INPUT || n->op == IR_TARGET) {
      new_slot(&pl, n, -1, p->nkernels);   // the caller's data: never overwritten
      mat[i] = true;
      p->naive_bytes += node_bytes(n, p->max_batch);
    }
  }
  for (int i = 0; i < p->nkernels; i++) {
    Kernel *k = p->kernels[i];
    const IrNode *res = kernel_result(k);
    bool res_pinned = pl.grad_of && pl.grad_of[res->id];
    if (kernel_product(k) && !k->epilogue && pl.slot[kernel_product(k)->id] >= 0) {
      share_slot(&pl, kernel_product(k), pl.slot[kernel_product(k)->id], last[kernel_product(k)->id]);
      continue;   // a product that adds to what an earlier one wrote (pass_regions' sums)
    }
    if (kernel_product(k)) {
      const IrNode *c = kernel_product(k);
      bool c_pinned = pl.grad_of && pl.grad_of[c->id];
      int s = result_slot(&pl, c, i, last[c->id]);
      p->naive_bytes += node_bytes(c, p->max_batch);
      if (res != c) {   // the epilogue overwrites the product, unless one of them has its own place
        if (c_pinned || res_pinned)
          result_slot(&pl, res, i, last[res->id]);
        else
          share_slot(&pl, res, s, last[res->id]);
        p->naive_bytes += node_bytes(res, p->max_batch);
      }
      continue;
    }
    if (ir_op_kind(res->op) == IR_KIND_UPDATE || res->op == IR_PARAM || res->op == IR_BUFFER)
      continue;   // updates write the parameters and their state in place
    for (int j = 1; k->kind == KN_LOOP && j < k->nstores; j++) {
      const IrNode *x = k->bufs[k->stores[j].buf];   // a slot of its own, from this kernel on
      if (stored_beside(k, j) && pl.slot[x->id] < 0) {
        result_slot(&pl, x, i, last[x->id]);
        p->naive_bytes += node_bytes(x, p->max_batch);
      }
    }
    if (pl.slot[res->id] >= 0)
      continue;   // a concat's later parts: the first placed it
    bool parts = res->op == IR_CONCAT;   // each part writes only its share: never in place
    p->naive_bytes += node_bytes(res, p->max_batch);
    int in_place = -1;
    if (k->kind == KN_LOOP && !res_pinned && !parts) {
      int root_buf = k->stores[0].buf;
      for (int b = 0; b < k->nbufs && in_place < 0; b++) {
        const IrNode *x = k->bufs[b];
        int s = pl.slot[x->id];
        if (x == res || s < 0 || pl.slots[s].first < 0 || pl.slots[s].first == i || pl.slots[s].last != i ||
            node_bytes(x, p->max_batch) != node_bytes(res, p->max_batch) || !same_access(k, b, root_buf))
          continue;
        in_place = s;
      }
    }
    if (in_place >= 0)
      share_slot(&pl, res, in_place, last[res->id]);
    else
      result_slot(&pl, res, i, last[res->id]);
  }
  // Aliases share their source's slot.
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    if (pl.slot[i] < 0 && !mat[i] && n->nsrc == 1 &&
        (n->op == IR_RESHAPE || n->op == IR_DROPOUT || n->op == IR_GAUSSIAN_NOISE))
      pl.slot[i] = pl.slot[storage_node(n, mat)->id];
  }
  free(last);
  int *local = local_slots(&pl, mat, ids);
  // A region runs its kernels on blocks of rows, each block at its own
  // time: every slot that lives during a part of a region lives through
  // all of it (a slot taken over above keeps the rows of its values apart).
  for (int r = 0; r < p->nregions; r++) {
    const KRegion *reg = &p->regions[r];
    for (int s = 0; s < pl.nslots; s++) {
      Slot *t = &pl.slots[s];
      if (local[s] < 0 && t->first <= reg->last && t->last >= reg->first) {
        t->first = t->first < reg->first ? t->first : reg->first;
        t->last = t->last > reg->last ? t->last : reg->last;
      }
    }
  }
  free(region);
  int scalar_slot = -1;
  if (p->scalars) {
    mat[nn] = true;   // written by the caller before the step: like an input
    pl.slots[pl.nslots] = (Slot){ALIGN, -1, p->nkernels, -1};
    p->naive_bytes += ALIGN;
    scalar_slot = pl.nslots++;
  }
  // The arena's slots, then each region's local ones (in the region's
  // local rows, sized for a block).
  Slot **list = xmalloc(sizeof(Slot *) * (pl.nslots + 1));
  int n = 0;
  for (int s = 0; s < pl.nslots; s++)
    if (s == scalar_slot || local[s] < 0)
      list[n++] = &pl.slots[s];
  p->arena_bytes = place_slots(list, n);
  for (int r = 0; r < p->nregions; r++) {
    KRegion *reg = &p->regions[r];
    for (;;) {   // fewer rows a block where a thread's local rows would pass LOCAL_MAX_BYTES
      n = 0;
      for (int s = 0; s < pl.nslots; s++)
        if (local[s] == r) {
          pl.slots[s].bytes = align_up(4 * pl.row[s] * reg->block);
          list[n++] = &pl.slots[s];
        }
      reg->local_bytes = place_slots(list, n);
      if (reg->local_bytes <= LOCAL_MAX_BYTES || reg->block == 1)
        break;
      int64_t fit = (int64_t)((double)reg->block * LOCAL_MAX_BYTES / (double)reg->local_bytes);
      reg->block = fit > 1 && fit < reg->block ? fit : 1;
    }
  }
  free(list);
  if (scalar_slot >= 0)
    p->buf[nn] = (KBufInfo){KB_ARENA, pl.slots[scalar_slot].offset, ALIGN};
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    const IrNode *src = storage_node(n, mat);
    if (pl.slot[i] < 0 && src != n && p->buf[src->id].space == KB_STATE)   // a reshaped parameter: its place
      p->buf[i] = (KBufInfo){KB_STATE, p->buf[src->id].offset, node_bytes(n, p->max_batch)};
    if (pl.slot[i] < 0)
      continue;
    const Slot *s = &pl.slots[pl.slot[i]];
    if (local[pl.slot[i]] >= 0)
      p->buf[i] = (KBufInfo){KB_LOCAL, s->offset, s->bytes};
    else
      p->buf[i] = (KBufInfo){n->op == IR_INPUT || n->op == IR_TARGET ? KB_INPUT : KB_ARENA, s->offset + pl.sub[i],
                             node_bytes(n, p->max_batch)};
  }
  if (p->nblocks) {
    const IrNode *gb = p->blocks[KP_GRADS];
    if (pl.grads_slot < 0)
      unreachable();   // fuse made the block only for gradients that kernels write
    p->buf[gb->id] = (KBufInfo){KB_ARENA, pl.slots[pl.grads_slot].offset, node_bytes(gb, 1)};
  }
  free(local);
  free(mat);
  free(pl.slot);
  free(pl.slots);
  free(pl.row);
  free(pl.sub);
  free(pl.grad_of);
}

// "3,136,040,000 bytes (2.9 GiB)"
static const char *bytes_str(int64_t n, char *buf, size_t size) {
  char digits[32], grouped[48];
  int len = snprintf(digits, sizeof digits, "%lld", (long long)n), j = 0;
  for (int i = 0; i < len; i++) {
    grouped[j++] = digits[i];
    if ((len - i - 1) % 3 == 0 && i < len - 1)
      grouped[j++] = ',';
  }
  grouped[j] = 0;
  static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%s bytes", grouped);
  else
    snprintf(buf, size, "%s bytes (%.1f %s)", grouped, v, units[u]);
  return buf;
}

static const char *who(const IrNode *n) {
  return n->scope ? n->scope : n->name ? n->name : ir_op_info(n->op)->mnem;
}

#define MEMORY_HINT "the limit is NNC_MAX_MEMORY when set (e.g. NNC_MAX_MEMORY=64G), else the machine's physical memory"

bool pass_check_memory(const Model *m, int64_t batch, int64_t limit, Diag *d) {
  const IrGraph *g = m->g;
  char b1[96], b2[96], b3[96], shape[128];
  int64_t state = 0;
  bool *trained = xcalloc(g->nnodes + 1, 1);   // by id: the parameter has a gradient
  for (int k = 0; k < m->nparams && m->grads; k++)
    trained[m->params[k]->id] = true;
  for (int i = 0; i < g->nnodes; i++) {   // persistent tensors, in the order the layers made them
    const IrNode *n = g->nodes[i];
    if (n->op != IR_PARAM && n->op != IR_BUFFER)
      continue;
    state += 4 * ir_numel(n, 1) * (trained[n->id] ? 2 : 1);
    if (state > limit) {
      free(trained);
      diag_error(d, n->loc, "use smaller layers; " MEMORY_HINT,
                 "%s: the model's parameters%s reach %s with %s %s, more than the memory limit of %s", who(n),
                 m->grads ? ", gradients and optimizer state" : "", bytes_str(state, b1, sizeof b1),
                 n->name ? n->name : who(n), ir_shape_str(n->ndim, n->shape, shape, sizeof shape),
                 bytes_str(limit, b2, sizeof b2));
      return false;
    }
  }
  free(trained);
  for (int i = 0; i < g->nnodes; i++) {   // a convolution's im2col scratch, for one image at least
    const IrNode *n = g->nodes[i];
    if (n->op != IR_CONV2D && n->op != IR_CONV2D_GRAD_INPUT && n->op != IR_CONV2D_GRAD_WEIGHT)
      continue;   // (a pooled weight gradient's scratch is an image's copy and dw's size)
    const IrNode *w = n->op == IR_CONV2D_GRAD_WEIGHT ? n : n->src[1];   // [O, C, KH, KW]
    const IrNode *y = n->op == IR_CONV2D ? n : n->src[0];               // [N, O, OH, OW]
    if (w->ndim != 4 || y->ndim != 4)
      continue;
    int64_t bytes = 4 * (w->shape[1] * w->shape[2] * w->shape[3] + w->shape[0]) * y->shape[2] * y->shape[3];
    if (bytes > limit - state) {
      diag_error(d, n->loc, "use a smaller kernel, fewer channels or a stride; " MEMORY_HINT,
                 "%s: the convolution's scratch (im2col) takes %s for one image: more than the memory limit "
                 "of %s", who(n), bytes_str(bytes, b1, sizeof b1), bytes_str(limit, b2, sizeof b2));
      return false;
    }
  }
  for (int i = 0; i < g->nnodes; i++) {   // the first value that does not fit beside them
    const IrNode *n = g->nodes[i];
    if (n->op == IR_PARAM || n->op == IR_BUFFER || n->op == IR_CONST || n->ndim < 0)
      continue;
    int64_t bytes = 4 * ir_numel(n, batch);
    if (bytes > limit - state) {
      char with[128] = "";
      if (state > 0)
        snprintf(with, sizeof with, ", and the parameters %s", bytes_str(state, b1, sizeof b1));
      diag_error(d, n->loc, "use a smaller batch or a smaller layer; " MEMORY_HINT,
                 "%s: %s %s takes %s at batch %lld%s: more than the memory limit of %s", who(n),
                 n->op == IR_INPUT ? "the input" : n->op == IR_TARGET ? "the target" : "its result",
                 ir_shape_str(n->ndim, n->shape, shape, sizeof shape), bytes_str(bytes, b2, sizeof b2),
                 (long long)batch, with, bytes_str(limit, b3, sizeof b3));
      return false;
    }
  }
  return true;
}
