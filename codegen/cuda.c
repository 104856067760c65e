// cuda.c: a KProgram as CUDA C (codegen.h): loop kernels, the program's
// GEMMs with their epilogue fused (through cuda_gen.c's tiled GEMM), the
// library kernels (cuda_lib.c), in the program's order, and its launch
// plan; PTX annotated with the source's comments, compiler logs explained.
//
// A loop kernel becomes one __global__ function over its index space: one
// thread per point when nothing reduces; when its stores sum, one block
// per point of the dimensions kept, whose threads share the summed
// dimensions in a fixed pattern and add their parts in a fixed tree (no
// atomics: the same bytes on every run). Addresses are the memory plan's
// offsets, constants of the code; the batch is the one argument that
// varies.
#include "cg_kernel.h"
#include "cuda_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//
// Loop kernels
//


static const char *dim_extent(char *buf, size_t size, int64_t d) {
  if (d == IR_N)
    snprintf(buf, size, "B");
  else
    snprintf(buf, size, "%lldLL", (long long)d);
  return buf;
}

// An affine index over the loop variables i0, i1, ...
static void put_index(StrBuf *s, const KIndex *ix, int ndim) {
  sb_printf(s, "%lldLL", (long long)ix->offset);
  for (int d = 0; d < ndim; d++)
    if (ix->stride[d])
      sb_printf(s, " + %lldLL * i%d", (long long)ix->stride[d], d);
}

// The base pointer of each of k's buffers: char *bJ = arena + offset.
static void put_bases(CudaGen *g, const Kernel *k) {
  for (int j = 0; j < k->nbufs; j++) {
    const KBufInfo *b = &g->p->buf[k->bufs[j]->id];
    sb_printf(&g->src, "  char *b%d = %s + %lldLL;\n  (void)b%d;\n", j, b->space == KB_STATE ? "state" : "arena",
              (long long)b->offset, j);
  }
}

// Splits linear index var over the dimensions in dims[] (listed in
// order, the last varying fastest) into i<d> variables.
static void put_split(StrBuf *s, const Kernel *k, const int *dims, int n, const char *var, const char *indent) {
  if (n == 0)
    return;
  sb_printf(s, "%slong long rest_%s = %s;\n", indent, var, var);
  char ext[32];
  for (int j = n - 1; j >= 1; j--) {
    int d = dims[j];
    dim_extent(ext, sizeof ext, k->dims[d]);
    sb_printf(s, "%sconst long long i%d = rest_%s %% %s;\n%srest_%s /= %s;\n", indent, d, var, ext, indent, var, ext);
  }
  sb_printf(s, "%sconst long long i%d = rest_%s;\n", indent, dims[0], var);
}

static void put_count(StrBuf *s, const Kernel *k, const int *dims, int n) {
  int64_t fixed = 1;
  bool batched = false;
  for (int j = 0; j < n; j++) {
    if (k->dims[dims[j]] == IR_N)
      batched = true;
    else
      fixed *= k->dims[dims[j]];
  }
  sb_printf(s, batched ? "B * %lldLL" : "%lldLL", (long long)fixed);
}

static KExtent count_extent(const Kernel *k, const int *dims, int n) {
  KExtent e = {1, false};
  for (int j = 0; j < n; j++) {
    if (k->dims[dims[j]] == IR_N)
      e.batched = true;
    else
      e.coef *= k->dims[dims[j]];
  }
  return e;
}

// The body's instructions, each a float vJ. `c_value` (or NULL) replaces
// loads of C at the point (a GEMM's epilogue on its element): c_buf is
// C's buffer slot in k.
static void put_body(CudaGen *g, const Kernel *k, const char *indent, int c_buf, const char *c_value) {
  StrBuf *s = &g->src;
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    sb_printf(s, "%sconst float v%d = ", indent, i);
    int a = in->a, b = in->b, c = in->c;
    switch (in->op) {
    case KI_LOAD:
      if (c_value && c_buf >= 0 && cg_same_place(g->p, k->bufs[in->buf], k->bufs[c_buf]) &&
          cg_is_c_index(k, &in->idx)) {
        sb_puts(s, c_value);
        break;
      }
      sb_printf(s, "((const float *)b%d)[", in->buf);
      put_index(s, &in->idx, k->ndim);
      sb_puts(s, "]");
      break;
    case KI_LOADI:
      sb_printf(s, "(float)((const int *)b%d)[", in->buf);
      put_index(s, &in->idx, k->ndim);
      sb_puts(s, "]");
      break;
    case KI_CONST: cuda_put_float(s, in->imm); break;
    case KI_INDEX: sb_printf(s, "(float)i%d", in->dim); break;
    case KI_ADD: sb_printf(s, "v%d + v%d", a, b); break;
    case KI_SUB: sb_printf(s, "v%d - v%d", a, b); break;
    case KI_MUL: sb_printf(s, "v%d * v%d", a, b); break;
    case KI_DIV: sb_printf(s, "v%d / v%d", a, b); break;
    case KI_MAX: sb_printf(s, "nnc_max(v%d, v%d)", a, b); break;
    case KI_MIN: sb_printf(s, "nnc_min(v%d, v%d)", a, b); break;
    case KI_NEG: sb_printf(s, "-v%d", a); break;
    case KI_EXP: sb_printf(s, "expf(v%d)", a); break;
    case KI_LOG: sb_printf(s, "logf(v%d)", a); break;
    case KI_TANH: sb_printf(s, "nnc_tanh(v%d)", a); break;
    case KI_SIGMOID: sb_printf(s, "nnc_sigmoid(v%d)", a); break;
    case KI_SQRT: sb_printf(s, "sqrtf(v%d)", a); break;
    case KI_ABS: sb_printf(s, "fabsf(v%d)", a); break;
    case KI_SIGN: sb_printf(s, "nnc_sign(v%d)", a); break;
    case KI_GT: sb_printf(s, "v%d > v%d ? 1.0f : 0.0f", a, b); break;
    case KI_EQ: sb_printf(s, "v%d == v%d ? 1.0f : 0.0f", a, b); break;
    case KI_SELECT: sb_printf(s, "v%d != 0.0f ? v%d : v%d", a, b, c); break;
    case KI_FMA: sb_printf(s, "fmaf(v%d, v%d, v%d)", a, b, c); break;
    case KI_ERF: sb_printf(s, "nnc_erf(v%d)", a); break;
    default: cuda_fail(g, "kernel '%s': instruction %d has no op (%d)", k->name, i, (int)in->op); break;
    }
    sb_puts(s, ";\n");
  }
}

static void put_store(StrBuf *s, const KStore *st, int ndim, const char *indent, const char *op, const char *value) {
  if (st->reduce == KR_MAX) {   // op is the sum's "+=": a max keeps the larger instead
    sb_printf(s, "%s{ float *m = &((float *)b%d)[", indent, st->buf);
    put_index(s, &st->idx, ndim);
    sb_printf(s, "]; *m = nnc_max_nan(*m, %s); }\n", value);
    return;
  }
  sb_printf(s, "%s((float *)b%d)[", indent, st->buf);
  put_index(s, &st->idx, ndim);
  sb_printf(s, "] %s %s;\n", op, value);
}

// A kernel that zeroes the buffers loop k sums into (the elements of each
// buffer's node at batch B), before k runs; NULL name: none needed.
static void emit_zero(CudaGen *g, int ki, const Kernel *k) {
  StrBuf *s = &g->src;
  char name[64];
  int nz = 0;
  KExtent most = {0, false}, e;
  for (int i = 0; i < k->nstores; i++) {
    if (!cg_first_sum(k, i, &e))
      continue;
    if (nz++ == 0) {
      cuda_fn_name(name, sizeof name, ki, "zero");
      cuda_begin_kernel(g, k, name, "the sums of the next kernel, zeroed");
    }
    const KBufInfo *b = &g->p->buf[k->bufs[k->stores[i].buf]->id];
    sb_printf(s, "  NNC_FOR_EACH(e, %s%lldLL) NNC_F(%s, %lldLL)[e] = %s;\n", e.batched ? "B * " : "",
              (long long)e.coef, b->space == KB_STATE ? "state" : "arena", (long long)b->offset,
              k->stores[i].reduce == KR_MAX ? "NNC_NEG_INF" : "0.0f");
    if (cuda_at_max(g, e) > cuda_at_max(g, most))
      most = e;
  }
  if (nz) {
    sb_puts(s, "}\n");
    cuda_launch_elems(g, ki, name, most);
  }
}

// Which dimensions of k its sums run over: dims where some summing store
// has stride 0 (and the extent is not 1). *tree: every summing store's
// element depends on the other dimensions alone.
static int sum_dims(const Kernel *k, bool *is_sum, bool *tree) {
  int n = 0;
  *tree = true;
  for (int d = 0; d < k->ndim; d++) {
    is_sum[d] = false;
    if (k->dims[d] == 1)
      continue;
    for (int i = 0; i < k->nstores; i++)
      if (k->stores[i].reduce != KR_NONE && k->stores[i].idx.stride[d] == 0)
        is_sum[d] = true;
    n += is_sum[d];
  }
  for (int d = 0; d < k->ndim; d++)
    for (int i = 0; i < k->nstores && is_sum[d]; i++)
      if (k->stores[i].reduce != KR_NONE && k->stores[i].idx.stride[d] != 0)
        *tree = false;
  return n;
}

static int pow2_at_least(int64_t n, int lo, int hi) {
  int t = lo;
  while (t < n && t < hi)
    t *= 2;
  return t;
}

// Loop kernel ki (or the epilogue of kernel owner): elementwise, one thread per point; or with sums, one
// block per point of the dimensions kept.
// Whether loop or GEMM k can be written (cg_check_loop, cg_check_gemm);
// otherwise g fails with why.
static bool checked(CudaGen *g, const Kernel *k) {
  char why[1024];
  if (k->kind == KN_GEMM ? cg_check_gemm(g->p, k, why, sizeof why) : cg_check_loop(g->p, k, why, sizeof why))
    return true;
  return cuda_fail(g, "%s", why);
}

static void emit_loop(CudaGen *g, int ki, const Kernel *k, const Kernel *owner, const char *suffix) {
  StrBuf *s = &g->src;
  if (!checked(g, k))
    return;
  char name[64], what[64];
  const Kernel *named = owner ? owner : k;   // (an epilogue is named after its GEMM or library kernel)
  // (the name cut short before the suffix, which cuda_fn_name's limit must not cut off: a
  // long GEMM name would name its epilogue the same)
  snprintf(what, sizeof what, "%.32s%s", named->name ? named->name : "loop", suffix ? suffix : "");
  cuda_fn_name(name, sizeof name, ki, what);
  bool is_sum[IR_MAX_DIMS], tree;
  int nsum = sum_dims(k, is_sum, &tree);
  int keep[IR_MAX_DIMS], sum[IR_MAX_DIMS], nkeep = 0, ns = 0;
  for (int d = 0; d < k->ndim; d++) {
    if (is_sum[d])
      sum[ns++] = d;
    else
      keep[nkeep++] = d;
  }
  bool sums = false;
  for (int i = 0; i < k->nstores; i++)
    sums |= k->stores[i].reduce != KR_NONE;
  if (sums)
    emit_zero(g, ki, k);
  cuda_begin_kernel(g, k, name, NULL);
  put_bases(g, k);
  if (!nsum || !tree) {   // a thread per point kept (every point, without sums)
    int all[IR_MAX_DIMS];
    for (int d = 0; d < k->ndim; d++)
      all[d] = d;
    sb_puts(s, "  NNC_FOR_EACH(e, ");
    put_count(s, k, nsum ? keep : all, nsum ? nkeep : k->ndim);
    sb_puts(s, ") {\n");
    put_split(s, k, nsum ? keep : all, nsum ? nkeep : k->ndim, "e", "    ");
    const char *ind = "    ";
    if (nsum) {   // the summed points in order, on this thread
      sb_puts(s, "    for (long long r = 0; r < ");
      put_count(s, k, sum, ns);
      sb_puts(s, "; r++) {\n");
      put_split(s, k, sum, ns, "r", "      ");
      ind = "      ";
    }
    put_body(g, k, ind, -1, NULL);
    for (int i = 0; i < k->nstores; i++) {
      char v[16];
      snprintf(v, sizeof v, "v%d", k->stores[i].value);
      put_store(s, &k->stores[i], k->ndim, ind, k->stores[i].reduce != KR_NONE ? "+=" : "=", v);
    }
    if (nsum)
      sb_puts(s, "    }\n");
    sb_puts(s, "  }\n}\n");
    if (nsum)
      cuda_launch_elems(g, ki, name, count_extent(k, keep, nkeep));
    else
      cuda_launch_elems(g, ki, name, count_extent(k, (int[IR_MAX_DIMS]){0, 1, 2, 3, 4, 5}, k->ndim));
    return;
  }
  // A block per point kept: its threads take the summed points t, t +
  // blockDim.x, ..., each summing its part; the parts meet in a fixed tree.
  KExtent nr = count_extent(k, sum, ns);
  int T = pow2_at_least(cuda_at_max(g, nr), 32, CUDA_BLOCK);
  sb_printf(s, "  __shared__ float nnc_sh[%d];\n", T);
  sb_puts(s, "  for (long long e = blockIdx.x; e < ");
  put_count(s, k, keep, nkeep);
  sb_puts(s, "; e += gridDim.x) {\n");
  put_split(s, k, keep, nkeep, "e", "    ");
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].reduce != KR_NONE)
      sb_printf(s, "    float part%d = %s;\n", i, k->stores[i].reduce == KR_MAX ? "NNC_NEG_INF" : "0.0f");
  sb_puts(s, "    for (long long r = threadIdx.x; r < ");
  put_count(s, k, sum, ns);
  sb_puts(s, "; r += blockDim.x) {\n");
  put_split(s, k, sum, ns, "r", "      ");
  put_body(g, k, "      ", -1, NULL);
  for (int i = 0; i < k->nstores; i++) {
    const KStore *st = &k->stores[i];
    if (st->reduce == KR_MAX) {
      sb_printf(s, "      part%d = nnc_max_nan(part%d, v%d);\n", i, i, st->value);
    } else if (st->reduce == KR_SUM) {
      sb_printf(s, "      part%d += v%d;\n", i, st->value);
    } else {
      char v[16];
      snprintf(v, sizeof v, "v%d", st->value);
      put_store(s, st, k->ndim, "      ", "=", v);
    }
  }
  sb_puts(s, "    }\n");
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].reduce != KR_NONE)
      sb_printf(s, "    part%d = nnc_block_%s(part%d, nnc_sh);\n", i, k->stores[i].reduce == KR_MAX ? "max" : "sum", i);
  sb_puts(s, "    if (threadIdx.x == 0) {\n");
  for (int i = 0; i < k->nstores; i++) {
    // (the summed dimensions' loop variables are out of scope: their strides are 0)
    const KStore *st = &k->stores[i];
    if (st->reduce == KR_NONE)
      continue;
    char v[16];
    snprintf(v, sizeof v, "part%d", i);
    put_store(s, st, k->ndim, "      ", "+=", v);
  }
  sb_puts(s, "    }\n  }\n}\n");
  KExtent np = count_extent(k, keep, nkeep);
  int64_t per = 1;
  while ((cuda_at_max(g, np) + per - 1) / per > CUDA_MAX_ELEM_BLOCKS)
    per *= 2;
  cuda_launch(g, ki, name, np, per, 1, 1, T, true);
}

//
// GEMMs of the program
//

// What put_body and put_bases write, as a string of its own (the caller frees it).
static char *captured(CudaGen *g, StrBuf *saved) {
  char *text = g->src.data ? g->src.data : xcalloc(1, 1);
  g->src = *saved;
  return text;
}

static void capture(CudaGen *g, StrBuf *saved) {
  *saved = g->src;
  g->src = (StrBuf){0};
}

static const char *place(const KProgram *p, const IrNode *n, char *buf, size_t size) {
  const KBufInfo *b = &p->buf[n->id];
  snprintf(buf, size, "NNC_F(%s, %lldLL)", b->space == KB_STATE ? "state" : "arena", (long long)b->offset);
  return buf;
}

static void emit_gemm(CudaGen *g, int ki, const Kernel *k) {
  if (!checked(g, k) || (k->epilogue && !checked(g, k->epilogue)))
    return;
  char name[64], pa[64], pb[64], pc[64], a_at[96], b_at[96];
  cuda_fn_name(name, sizeof name, ki, k->name ? k->name : "gemm");
  place(g->p, k->bufs[0], pa, sizeof pa);
  place(g->p, k->bufs[1], pb, sizeof pb);
  place(g->p, k->bufs[2], pc, sizeof pc);
  snprintf(a_at, sizeof a_at, k->ta ? "ga[kk * M + r]" : "ga[r * K + kk]");
  snprintf(b_at, sizeof b_at, k->tb ? "gb[c * K + kk]" : "gb[kk * N + c]");
  bool on_elem = k->epilogue && cg_epilogue_on_tile(g->p, k);
  StrBuf saved, pro = {0};
  sb_printf(&pro, "  const float *ga = %s, *gb = %s;\n  float *gc = %s;\n  (void)gc;\n", pa, pb, pc);
  char *store;
  const char *value = k->accumulate ? "gc[r * N + c] + v" : "v";
  if (!on_elem) {
    StrBuf st = {0};
    sb_printf(&st, "gc[r * N + c] = %s;", value);
    store = st.data;
  } else {   // the epilogue on the element, C's value in a register
    const Kernel *e = k->epilogue;
    capture(g, &saved);
    put_bases(g, e);
    char *bases = captured(g, &saved);
    sb_puts(&pro, bases);
    free(bases);
    capture(g, &saved);
    sb_printf(&g->src, "const float cv = %s;\n", value);
    if (e->ndim == 3)   // [N, T, n]: C's row n*T + t
      sb_printf(&g->src, "        const long long i0 = r / %lldLL, i1 = r %% %lldLL, i2 = c;\n", (long long)e->dims[1],
                (long long)e->dims[1]);
    else
      sb_puts(&g->src, "        const long long i0 = r, i1 = c;\n");
    int cbuf = -1;
    bool c_replaced = false;
    for (int j = 0; j < e->nbufs; j++)
      if (cg_same_place(g->p, e->bufs[j], k->bufs[2]))
        cbuf = j;
    put_body(g, e, "        ", cbuf, "cv");
    for (int i = 0; i < e->nstores; i++) {
      const KStore *st = &e->stores[i];
      c_replaced |= cg_same_place(g->p, e->bufs[st->buf], k->bufs[2]) && cg_is_c_index(e, &st->idx);
    }
    if (!c_replaced)
      sb_puts(&g->src, "        gc[r * N + c] = cv;\n");
    for (int i = 0; i < e->nstores; i++) {
      char v[16];
      snprintf(v, sizeof v, "v%d", e->stores[i].value);
      put_store(&g->src, &e->stores[i], e->ndim, "        ", "=", v);
    }
    store = captured(g, &saved);
  }
  char what[160];
  snprintf(what, sizeof what, "%s: C[%lld%s, %lld%s] %s= %sA %sB%s", k->name ? k->name : "gemm", (long long)k->m.coef,
           k->m.batched ? "B" : "", (long long)k->n.coef, k->n.batched ? "B" : "", k->accumulate ? "+" : "",
           k->ta ? "T" : "", k->tb ? "T" : "", on_elem ? ", then the epilogue on each element" : "");
  CudaGemm m = {.kernel = ki, .k = k, .name = name, .what = what, .m = k->m, .n = k->n, .kdim = k->k,
                .prologue = pro.data, .a_at = a_at, .b_at = b_at, .store = store, .a_along_r = k->ta,
                .b_along_k = k->tb};
  cuda_emit_gemm(g, &m);
  free(store);
  sb_free(&pro);
  if (k->epilogue && !on_elem)
    emit_loop(g, ki, k->epilogue, k, "_epilogue");
}

//
// The program
//

// The kernel before kernel ki of p that keeps the slot a gradient reads,
// or NULL.
static const RtLib *saved_before(const KProgram *p, int ki, int slot) {
  for (int i = 0; i < ki && slot >= 0; i++) {
    const Kernel *k = p->kernels[i];
    if (k->kind == KN_LIB && k->lib && k->lib->aux == slot)
      return k->lib;
  }
  return NULL;
}


CgCuda *cg_cuda_generate(const KProgram *p, char *err, size_t errsz) {
  if (!p || !p->g || !p->buf || p->nkernels < 0 || (p->nkernels && !p->kernels)) {
    errorf(err, errsz, "the program has no graph, buffers or kernels");
    return NULL;
  }
  for (int r = 0; r < p->nregions; r++)
    if (p->regions[r].local_bytes) {   // (the kernels run in order here: every value needs its whole batch)
      errorf(err, errsz, "region %d keeps values in each thread's local rows, which only the cpu backend has: "
             "compile the program for cuda without regions", r);
      return NULL;
    }
  CudaGen g;
  cuda_gen_init(&g, p, p->max_batch, err, errsz);
  float *key_p = NULL;
  for (int i = 0; i < p->nkernels && !g.failed; i++) {
    const Kernel *k = p->kernels[i];
    switch (k->kind) {
    case KN_LOOP: emit_loop(&g, i, k, NULL, NULL); break;
    case KN_GEMM: emit_gemm(&g, i, k); break;
    case KN_LIB: {
      const RtLib *d = k->lib;
      if (!d) {
        cuda_fail(&g, "kernel '%s': a library kernel without its descriptor", k->name ? k->name : "?");
        break;
      }
      const RtLib *from = saved_before(p, i, d->aux_from);
      CudaLibCtx x = {.training = p->entry == ENTRY_TRAIN, .saved = from != NULL, .from = from, .key = -1};
      if (d->kind == RL_DROPOUT || (d->kind == RL_GAUSSIAN_NOISE && x.training)) {
        if (g.nkeys == CUDA_MAX_KEYS) {
          cuda_fail(&g, "more than %d dropout and gaussian_noise layers in one program", CUDA_MAX_KEYS);
          break;
        }
        key_p = xrealloc(key_p, sizeof(float) * (g.nkeys + 1));
        // A noise's key is drawn as a dropout's of p = 0.5 (two rng_u32, as
        // k_noise_key), or not at all for std = 0, as p = 0's.
        key_p[g.nkeys] = d->kind == RL_DROPOUT ? (float)d->f[0] : d->f[0] > 0 ? 0.5f : 0.0f;
        x.key = g.nkeys++;
      }
      if (cuda_emit_lib(&g, i, k, d, &x))
        if (k->epilogue)
          emit_loop(&g, i, k->epilogue, k, "_epilogue");
      break;
    }
    default: cuda_fail(&g, "kernel %d has no kind (%d)", i, (int)k->kind); break;
    }
  }
  if (g.failed) {
    free(key_p);
    cuda_gen_free(&g);
    return NULL;
  }
  CgCuda *c = xcalloc(1, sizeof *c);
  c->source = g.src.data;
  c->launch = g.launch;
  c->nlaunch = g.nlaunch;
  c->nkeys = g.nkeys;
  c->key_p = key_p;
  return c;
}

void cg_cuda_free(CgCuda *c) {
  if (!c)
    return;
  free(c->source);
  free(c->launch);
  free(c->key_p);
  free(c);
}

//
// PTX with the source's comments
//

// The comment lines right above `NNC_KERNEL void name(` in src, for each
// kernel, put above `.entry name(` in ptx: each kernel's part of the .nn
// file. The caller frees the result.
char *cg_cuda_annotate_ptx(const char *src, const char *ptx) {
  StrBuf out = {0};
  for (const char *line = ptx; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
    const char *entry = strstr(line, ".entry ");
    if (entry && entry < line + len) {
      const char *name = entry + 7;
      size_t n = strcspn(name, "( \n");
      char pat[96];
      snprintf(pat, sizeof pat, "NNC_KERNEL void %.*s(", (int)(n < 64 ? n : 64), name);
      const char *at = strstr(src, pat);
      if (at && at > src) {   // back over the comment lines above it
        const char *first = at;
        while (first > src) {
          const char *prev = first - 1;
          while (prev > src && prev[-1] != '\n')
            prev--;
          if (strncmp(prev, "//", 2))
            break;
          first = prev;
        }
        for (const char *c = first; c < at; c++)
          sb_putc(&out, *c);
      }
    }
    for (size_t i = 0; i < len; i++)
      sb_putc(&out, line[i]);
    line += len;
  }
  return out.data ? out.data : xcalloc(1, 1);
}

// The kernel of src that holds line `line` (counted from 1): the name of
// the last `NNC_KERNEL void name(` at or above it, into buf; false if none.
static bool kernel_at_line(const char *src, long line, char *buf, size_t size) {
  bool found = false;
  long at = 1;
  for (const char *s = src; *s && at <= line; at++) {
    if (!strncmp(s, "NNC_KERNEL void ", 16)) {
      size_t n = strcspn(s + 16, "(\n");
      snprintf(buf, size, "%.*s", (int)(n < 63 ? n : 63), s + 16);
      found = true;
    }
    const char *nl = strchr(s, '\n');
    if (!nl)
      break;
    s = nl + 1;
  }
  return found;
}

void cg_cuda_explain(const char *src, const char *log, char *out, size_t size) {
  const char *e = log ? strstr(log, "): error") : NULL;
  char name[64];
  if (e) {
    const char *p = e;
    while (p > log && p[-1] >= '0' && p[-1] <= '9')
      p--;
    long line = strtol(p, NULL, 10);
    if (p > log && p[-1] == '(' && kernel_at_line(src, line, name, sizeof name)) {
      snprintf(out, size, "kernel '%s' does not compile (a bug of nnc's CUDA code generator; please report it):\n%s",
               name, log);
      return;
    }
  }
  snprintf(out, size, "the generated CUDA C does not compile (a bug of nnc's CUDA code generator; please report it):\n%s",
           log ? log : "(no log)");
}
