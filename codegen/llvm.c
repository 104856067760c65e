// llvm.c: kernel IR to LLVM IR.
//
// Each KN_LOOP kernel (and each epilogue run as a loop) becomes two functions:
//
//   kI_name.body(float *noalias b0, ..., i64 lo, i64 hi)   internal, alwaysinline
//     the loop nest: dimension 0 from lo to hi, every other one from 0 to
//     its extent, the last dimension innermost. The body is scalar float
//     code, one LLVM value per KInstr, then the stores (and sums).
//   kI_name(i8 *arena, i8 *state, i64 B, i64 lo, i64 hi, i8 *local)   a RtLoopFn
//     computes each distinct buffer's base pointer and calls the body.
//
// Buffers at the same space and offset are one pointer. Distinct ones are
// `noalias` parameters of the body (unless their bytes overlap), so once
// the body is inlined LLVM knows that loads from one buffer never see the
// stores to another, and the innermost loop can be reordered and
// vectorized.
//
// Each GEMM gets micro-kernels (RtTileFn, codegen.h) written directly as
// vector IR: a register tile, or dot products along K, whose accumulators
// at the end of K go to a small scratch tile; a loop over its rows adds
// C's old values when accumulating and stores them, or on the last block
// of K runs the GEMM's epilogue on each row's vectors (the same body
// emitter as the loops', on vectors: loads along a row are masked vector
// loads, loads of one element a row are broadcasts, and a load of C at the
// point is the tile's value). GEMMs without such an epilogue share one
// plain set.
//
// The entry function (nnc_forward, ...) runs the kernels in order: loops
// directly or through rt->parallel, GEMMs through rt->sgemm with their
// micro-kernels, library kernels through rt->lib; rt->tick, when set, as
// each starts.
//
// Pointer types come from LLVMPointerType(elem, 0): typed pointers in
// LLVM 14, hence the bitcasts, which fold away where every pointer is the
// one opaque `ptr` (LLVM 15 and later).
#include "cg_kernel.h"
#include "cg_llvm.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm/Config/llvm-config.h>

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct Cg {
  const KProgram *p;
  LLVMContextRef ctx;          // the module's
  LLVMModuleRef mod;
  LLVMBuilderRef b;            // ours: disposed when the module is built
  const char *cpu;             // every function's "target-cpu"
  const char *features;        // and "target-features"
  LLVMTypeRef f32, i8, i32, i64, vd;
  LLVMTypeRef i8p, i32p, f32p; // i8*, i32*, float* (each `ptr` with opaque pointers)
  LLVMTypeRef loop_ty;         // RtLoopFn: void (i8 *arena, i8 *state, i64 B, i64 lo, i64 hi, i8 *local)
  LLVMTypeRef entry_ty;        // RtEntryFn: void (i8 *arena, i8 *state, i64 B, i8 *rt)
  LLVMTypeRef rt_ty;           // RtCalls: {i8 *ctx, i8 *parallel, i8 *sgemm, i8 *lib, i8 *tick, i8 *region,
                               //           i8 *gemm_rows, i8 *lib_rows, i8 *shared, i8 *gemm_share}
  LLVMTypeRef parallel_ty;     // void (i8 *ctx, i8 *fn, i8 *arena, i8 *state, i64 B, i64 extent)
  LLVMTypeRef sgemm_ty;        // void (i8 *ctx, i32 ta, i32 tb, i64 M, i64 N, i64 K, float *A, float *B, float beta, float *C, RtGemmKernels *)
  LLVMTypeRef lib_ty;          // void (i8 *ctx, i8 *RtLib, i8 *arena, i8 *state, i64 B, i8 *epilogue)
  LLVMTypeRef tick_ty;         // void (i8 *ctx, i32 kernel)
  LLVMTypeRef region_fn_ty;    // RtRegionFn: void (i8 *arena, i8 *state, i64 B, i64 lo, i64 hi, i8 *rt, i8 *local)
  LLVMTypeRef region_ty;       // void (i8 *ctx, i8 *fn, i8 *arena, i8 *state, i64 B, i64 row_bytes, i64 block,
                               //       i64 local_bytes, i8 *rt)
  LLVMTypeRef gemm_rows_ty;    // void (i8 *ctx, i32 tb, i64 N, i64 K, float *A, float *B, float beta, float *C,
                               //       RtGemmKernels *, i64 row0, i64 rows)
  LLVMTypeRef lib_rows_ty;     // void (i8 *ctx, i8 *RtLib, i8 *arena, i8 *state, i64 B, i64 lo, i64 hi, i8 *local)
  LLVMTypeRef shared_ty;       // void (i8 *ctx, i8 *fn, i8 *arena, i8 *state, i64 B, i64 work, i8 *rt)
  LLVMTypeRef gemm_share_ty;   // sgemm_ty's parameters, then i64 share, i64 shares
  LLVMTypeRef tile_ty;         // RtTileFn
  LLVMTypeRef uk_ty;           // RtGemmKernels
  int vw;                      // the target's vector width in floats
  LLVMValueRef plain[3];       // the plain tile, dot and row micro-kernels, once built
  int part, nparts;            // this module builds functions j with part_of(j, nparts) == part
  int nloops;                  // functions shared out so far
  char *err;
  size_t errsz;
} Cg;

// Writes the message into err; returns false for `return fail(...)`.
static bool fail(Cg *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Cg *c, const char *fmt, ...) {
  if (c->err && c->errsz) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errsz, fmt, ap);
    va_end(ap);
  }
  return false;
}

static LLVMValueRef i64c(Cg *c, int64_t v) { return LLVMConstInt(c->i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(Cg *c, int v) { return LLVMConstInt(c->i32, (unsigned long long)v, 1); }
static LLVMValueRef f32c(Cg *c, double v) { return LLVMConstReal(c->f32, v); }

static bool is_vector(LLVMTypeRef ty) { return LLVMGetTypeKind(ty) == LLVMVectorTypeKind; }

// v as a constant of type ty: a float, or a vector of floats all v.
static LLVMValueRef fconst(Cg *c, LLVMTypeRef ty, double v) {
  if (!is_vector(ty))
    return f32c(c, v);
  LLVMValueRef e[64];
  unsigned n = LLVMGetVectorSize(ty);
  for (unsigned i = 0; i < n; i++)
    e[i] = f32c(c, v);
  return LLVMConstVector(e, n);
}

// The element count a dimension has for the largest batch.
static const char *kname(const Kernel *k) { return k->name ? k->name : "?"; }

// Every operand, buffer and index of a kernel (codegen/check.c).
static bool check_loop(Cg *c, const Kernel *k) { return cg_check_loop(c->p, k, c->err, c->errsz); }

//
// Distinct buffers of a kernel
//

// A kernel's buffers grouped by address: bufs at the same space and offset
// share one slot, one pointer parameter of the body.
typedef struct Slots {
  int n;                 // distinct pointers
  int *of;               // of[i]: the slot of k->bufs[i]
  KBufSpace *space;      // space[j]: slot j's block: the arena (inputs too), the state or local rows
  int64_t *offset;       // offset[j]: bytes from the start of its block
  int64_t *row;          // row[j]: local rows: the bytes of a row of its values
  int64_t *end;          // end[j]: offset[j] + the largest of its buffers' bytes
  bool *noalias;         // noalias[j]: no other slot's bytes overlap slot j's
} Slots;

static void slots_free(Slots *s) {
  free(s->of);
  free(s->space);
  free(s->row);
  free(s->offset);
  free(s->end);
  free(s->noalias);
}

static void slots_init(Cg *c, const Kernel *k, Slots *s) {
  int cap = k->nbufs > 0 ? k->nbufs : 1;
  s->n = 0;
  s->of = xcalloc(cap, sizeof *s->of);
  s->space = xcalloc(cap, sizeof *s->space);
  s->row = xcalloc(cap, sizeof *s->row);
  s->offset = xcalloc(cap, sizeof *s->offset);
  s->end = xcalloc(cap, sizeof *s->end);
  s->noalias = xcalloc(cap, sizeof *s->noalias);
  for (int i = 0; i < k->nbufs; i++) {
    const KBufInfo *info = &c->p->buf[k->bufs[i]->id];
    KBufSpace st = info->space == KB_INPUT ? KB_ARENA : info->space;
    int j = 0;
    while (j < s->n && !(s->space[j] == st && s->offset[j] == info->offset))
      j++;
    if (j == s->n) {
      s->space[j] = st;
      s->offset[j] = info->offset;
      s->row[j] = 4 * ir_numel(k->bufs[i], 1);   // (a local value's rows are the batch's: memplan)
      s->end[j] = info->offset;
      s->n++;
    }
    if (info->offset + info->bytes > s->end[j])
      s->end[j] = info->offset + info->bytes;
    s->of[i] = j;
  }
  for (int j = 0; j < s->n; j++) {
    s->noalias[j] = true;
    for (int o = 0; o < s->n; o++)
      if (o != j && s->space[o] == s->space[j] && s->offset[o] < s->end[j] && s->offset[j] < s->end[o])
        s->noalias[j] = false;
  }
}

//
// Functions and attributes
//

static void add_attr(Cg *c, LLVMValueRef fn, LLVMAttributeIndex at, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, at, LLVMCreateEnumAttribute(c->ctx, kind, 0));
}

static void add_str_attr(Cg *c, LLVMValueRef fn, const char *key, const char *val) {
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(c->ctx, key, (unsigned)strlen(key), val, (unsigned)strlen(val)));
}

// A function defined here: code for the target CPU (so the vectorizer uses
// its widest vectors), no exceptions, and FP ops that never trap (so they
// may be speculated).
static LLVMValueRef define_fn(Cg *c, const char *name, LLVMTypeRef ty, bool internal) {
  LLVMValueRef fn = LLVMAddFunction(c->mod, name, ty);
  if (internal)
    LLVMSetLinkage(fn, LLVMInternalLinkage);
  add_attr(c, fn, LLVMAttributeFunctionIndex, "nounwind");
  add_str_attr(c, fn, "target-cpu", c->cpu);
  add_str_attr(c, fn, "target-features", c->features);
  add_str_attr(c, fn, "no-trapping-math", "true");
  return fn;
}

// Verifies fn right after it was built. The module verifier then says
// what is wrong in words.
static bool verify_fn(Cg *c, LLVMValueRef fn) {
  if (!LLVMVerifyFunction(fn, LLVMReturnStatusAction))
    return true;
  char *msg = NULL;
  LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg);   // msg is ours to dispose
  size_t len;
  const char *name = LLVMGetValueName2(fn, &len);
  fail(c, "LLVM function %s is invalid: %s", name, msg ? msg : "");
  LLVMDisposeMessage(msg);
  return false;
}

// "k3_linear_1_matmul_add_relu" from kernel 3's name: letters, digits
// and single underscores, so that the assembly stays readable.
static void fn_name(char *buf, size_t size, int i, const Kernel *k, const char *suffix) {
  int n = snprintf(buf, size, "k%d_", i);
  size_t len = n > 0 && (size_t)n < size ? (size_t)n : 0;
  for (const char *s = k->name ? k->name : "loop"; *s && len + 1 < size && len < 48; s++) {
    if (isalnum((unsigned char)*s))
      buf[len++] = *s;
    else if (len && buf[len - 1] != '_')
      buf[len++] = '_';
  }
  while (len > 0 && buf[len - 1] == '_')
    len--;
  buf[len] = 0;
  if (suffix)
    snprintf(buf + len, size - len, "%s", suffix);
}

// The declaration of an LLVM intrinsic over floats or vectors of them, of
// type t ("llvm.exp" with a <16 x float> is llvm.exp.v16f32).
static LLVMValueRef intrinsic(Cg *c, const char *base, LLVMTypeRef t, int nparams, LLVMTypeRef *ty) {
  char name[64];
  if (is_vector(t))
    snprintf(name, sizeof name, "%s.v%uf32", base, LLVMGetVectorSize(t));
  else
    snprintf(name, sizeof name, "%s.f32", base);
  LLVMTypeRef params[3] = {t, t, t};
  *ty = LLVMFunctionType(t, params, nparams, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
  return fn ? fn : LLVMAddFunction(c->mod, name, *ty);
}

static LLVMValueRef calln(Cg *c, const char *base, int n, LLVMValueRef *args) {
  LLVMTypeRef ty;
  LLVMValueRef fn = intrinsic(c, base, LLVMTypeOf(args[0]), n, &ty);
  return LLVMBuildCall2(c->b, ty, fn, args, (unsigned)n, "");
}

static LLVMValueRef call1(Cg *c, const char *base, LLVMValueRef x) { return calln(c, base, 1, &x); }

// a * b + d, fused where the target has a fast FMA (llvm.fmuladd), else a
// multiply and an add: half the instructions and half the latency in the
// polynomials below, with no libm call on a machine without FMA.
static LLVMValueRef muladd(Cg *c, LLVMValueRef a, LLVMValueRef b, LLVMValueRef d) {
  LLVMValueRef args[3] = {a, b, d};
  return calln(c, "llvm.fmuladd", 3, args);
}

// coef[0] x^(n-1) + ... + coef[n-1] by Horner's rule.
static LLVMValueRef poly(Cg *c, LLVMValueRef x, const double *coef, int n) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef p = fconst(c, t, coef[0]);
  for (int i = 1; i < n; i++)
    p = muladd(c, p, x, fconst(c, t, coef[i]));
  return p;
}

//
// The loop body: scalar code for one point of the index space
//

// Where the body is being built.
typedef struct Nest {
  const Kernel *k;
  const Slots *s;
  LLVMValueRef fn;               // the body function
  LLVMValueRef *base;            // base[slot]: its pointer parameters (float *)
  LLVMValueRef lo, hi;           // rows of dimension 0
  LLVMValueRef iv[IR_MAX_DIMS];  // the loop indexes (i64), outermost first
  LLVMTypeRef ty;                // a value's type: float, or a vector of floats on a GEMM's tile
  struct TileEpi *tile;          // the tile a GEMM's epilogue runs on, or NULL
} Nest;

// &buffer[offset + sum stride[d] * i_d] as a pointer to elem (f32 or i32).
static LLVMValueRef address(Cg *c, Nest *n, int buf, const KIndex *ix, LLVMTypeRef elem) {
  LLVMValueRef i = i64c(c, ix->offset);
  for (int d = 0; d < n->k->ndim; d++)
    if (ix->stride[d] != 0)
      i = LLVMBuildNSWAdd(c->b, i, LLVMBuildNSWMul(c->b, n->iv[d], i64c(c, ix->stride[d]), ""), "");
  LLVMValueRef base = n->base[n->s->of[buf]];
  if (elem == c->i32)
    base = LLVMBuildBitCast(c->b, base, c->i32p, "");
  return LLVMBuildInBoundsGEP2(c->b, elem, base, &i, 1, "");
}

static LLVMValueRef load(Cg *c, LLVMTypeRef ty, LLVMValueRef ptr) {
  LLVMValueRef v = LLVMBuildLoad2(c->b, ty, ptr, "");
  LLVMSetAlignment(v, 4);
  return v;
}

static void store(Cg *c, LLVMValueRef v, LLVMValueRef ptr) {
  LLVMValueRef st = LLVMBuildStore(c->b, v, ptr);
  LLVMSetAlignment(st, 4);
}

//
// Vectors, for the GEMM micro-kernels and the epilogues they run
//

static LLVMTypeRef vec(LLVMTypeRef elem, int w) { return LLVMVectorType(elem, (unsigned)w); }

// x (a scalar) in every lane of a vector of w.
static LLVMValueRef splat(Cg *c, LLVMValueRef x, int w) {
  LLVMValueRef v = LLVMBuildInsertElement(c->b, LLVMGetUndef(vec(LLVMTypeOf(x), w)), x, i32c(c, 0), "");
  return LLVMBuildShuffleVector(c->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstNull(vec(c->i32, w)), "splat");
}

// Lanes first, first + 1, ... of a vector of w that lie below n (i64): the
// columns of a ragged tile.
static LLVMValueRef lanes_below(Cg *c, int first, int w, LLVMValueRef n) {
  LLVMValueRef e[64];
  for (int i = 0; i < w; i++)
    e[i] = i32c(c, first + i);
  LLVMValueRef n32 = LLVMBuildTrunc(c->b, n, c->i32, "");
  return LLVMBuildICmp(c->b, LLVMIntSLT, LLVMConstVector(e, (unsigned)w), splat(c, n32, w), "lanes");
}

// llvm.masked.load / llvm.masked.store of the vector type ty at ptr (a
// pointer to its elements), lanes where mask is set (loads: 0 elsewhere).
static LLVMValueRef masked_fn(Cg *c, const char *name, LLVMTypeRef ty, LLVMTypeRef *fty) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef over[2] = {ty, LLVMPointerType(ty, 0)};
  *fty = LLVMIntrinsicGetType(c->ctx, id, over, 2);
  return LLVMGetIntrinsicDeclaration(c->mod, id, over, 2);
}

// A load or store of the lanes under mask; with no mask (NULL), of them all,
// a plain load or store (AMD's masked stores take many cycles, and a
// masked load after one waits for it).
static LLVMValueRef masked_load(Cg *c, LLVMTypeRef ty, LLVMValueRef ptr, LLVMValueRef mask) {
  if (!mask)
    return load(c, ty, LLVMBuildBitCast(c->b, ptr, LLVMPointerType(ty, 0), ""));
  LLVMTypeRef fty;
  LLVMValueRef fn = masked_fn(c, "llvm.masked.load", ty, &fty);
  LLVMValueRef args[4] = {LLVMBuildBitCast(c->b, ptr, LLVMPointerType(ty, 0), ""), i32c(c, 4), mask,
                          LLVMConstNull(ty)};
  return LLVMBuildCall2(c->b, fty, fn, args, 4, "");
}

static void masked_store(Cg *c, LLVMValueRef v, LLVMValueRef ptr, LLVMValueRef mask) {
  if (!mask) {
    store(c, v, LLVMBuildBitCast(c->b, ptr, LLVMPointerType(LLVMTypeOf(v), 0), ""));
    return;
  }
  LLVMTypeRef fty, ty = LLVMTypeOf(v);
  LLVMValueRef fn = masked_fn(c, "llvm.masked.store", ty, &fty);
  LLVMValueRef args[4] = {v, LLVMBuildBitCast(c->b, ptr, LLVMPointerType(ty, 0), ""), i32c(c, 4), mask};
  LLVMBuildCall2(c->b, fty, fn, args, 4, "");
}

// A GEMM epilogue on one vector of a register tile: its loop space [M, N]
// at row `row`, columns col, col + 1, ... of the product; lanes past N
// masked off. A load of C at the point is the tile's value.
typedef struct TileEpi {
  int w;                 // lanes
  int cslot;             // the slot of C among the epilogue's (-1: none)
  LLVMValueRef row[2], col; // i64: the loop's indices of the row (i0, or i0 and i1 of [N, T, n]), the column's
  LLVMValueRef mask;     // <w x i1>
  LLVMValueRef value;    // C[row][col..], the product (with C's old values when accumulating)
} TileEpi;

// &buffer[offset + stride[0] * i0 (+ stride[1] * i1) + stride[last] * col]
// (stride[last] is 0 or 1).
static LLVMValueRef tile_address(Cg *c, Nest *n, int buf, const KIndex *ix, LLVMTypeRef elem) {
  TileEpi *t = n->tile;
  int last = n->k->ndim - 1;
  LLVMValueRef i = i64c(c, ix->offset);
  for (int d = 0; d < last; d++)
    if (ix->stride[d])
      i = LLVMBuildNSWAdd(c->b, i, LLVMBuildNSWMul(c->b, t->row[d], i64c(c, ix->stride[d]), ""), "");
  if (ix->stride[last])
    i = LLVMBuildNSWAdd(c->b, i, t->col, "");
  LLVMValueRef base = n->base[n->s->of[buf]];
  if (elem == c->i32)
    base = LLVMBuildBitCast(c->b, base, c->i32p, "");
  return LLVMBuildInBoundsGEP2(c->b, elem, base, &i, 1, "");
}

static LLVMValueRef tile_load(Cg *c, Nest *n, const KInstr *in) {
  TileEpi *t = n->tile;
  if (in->op == KI_LOAD && n->s->of[in->buf] == t->cslot && cg_is_c_index(n->k, &in->idx))
    return t->value;
  LLVMTypeRef elem = in->op == KI_LOADI ? c->i32 : c->f32;
  LLVMValueRef ptr = tile_address(c, n, in->buf, &in->idx, elem), v;
  if (in->idx.stride[n->k->ndim - 1] == 0)
    v = splat(c, load(c, elem, ptr), t->w);
  else
    v = masked_load(c, vec(elem, t->w), ptr, t->mask);
  return in->op == KI_LOADI ? LLVMBuildSIToFP(c->b, v, vec(c->f32, t->w), "") : v;
}

// 1.0 where the comparison holds, else 0.0.
static LLVMValueRef bool_to_f32(Cg *c, Nest *n, LLVMValueRef cond) {
  return LLVMBuildSelect(c->b, cond, fconst(c, n->ty, 1), fconst(c, n->ty, 0), "");
}

// v as an i32 constant of type it: a scalar, or a vector of them all v.
static LLVMValueRef iconst(Cg *c, LLVMTypeRef it, int v) {
  LLVMValueRef one = LLVMConstInt(c->i32, (unsigned long long)(long long)v, 1);
  if (!is_vector(it))
    return one;
  LLVMValueRef e[64];
  unsigned n = LLVMGetVectorSize(it);
  for (unsigned i = 0; i < n; i++)
    e[i] = one;
  return LLVMConstVector(e, n);
}

// 2^n as a float of type t, for integers n (of type it) in [-126, 127]:
// the exponent field built directly.
static LLVMValueRef pow2i(Cg *c, LLVMTypeRef it, LLVMTypeRef t, LLVMValueRef n) {
  LLVMValueRef bits = LLVMBuildShl(c->b, LLVMBuildAdd(c->b, n, iconst(c, it, 127), ""), iconst(c, it, 23), "");
  return LLVMBuildBitCast(c->b, bits, t, "");
}

// x held in [lo, hi]; NaN stays NaN (both comparisons fail).
static LLVMValueRef hold(Cg *c, LLVMValueRef x, double lo, double hi) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef h = fconst(c, t, hi), l = fconst(c, t, lo);
  x = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, h, ""), h, x, "");
  return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOLT, x, l, ""), l, x, "");
}

// x P(x^2) / Q(x^2) on x held in [-lim, lim], P and Q highest power first:
// the odd rational functions tanh and erf are computed as.
static LLVMValueRef odd_rational(Cg *c, LLVMValueRef x, double lim, const double *num, int nnum, const double *den,
                                 int nden) {
  LLVMValueRef xc = hold(c, x, -lim, lim), x2 = LLVMBuildFMul(c->b, xc, xc, "");
  LLVMValueRef p = LLVMBuildFMul(c->b, xc, poly(c, x2, num, nnum), "");
  return LLVMBuildFDiv(c->b, p, poly(c, x2, den, nden), "");
}

// exp(x) in float, inline and branch-free, so that vector loops stay vector
// (llvm.exp becomes one libm expf call per lane). Cephes' expf: x = n ln2 + r
// with |r| <= ln2 / 2 (ln2 split in two for an exact reduction), e^r a
// degree-7 polynomial, within 2 ulp of expf over the float range; x is held
// in [lo, hi] first. n is rounded by adding 1.5 * 2^23, which leaves it in
// the low bits of the sum: no conversion to integer, which LLVM would make
// poison for NaN, so NaN passes through as NaN with no test for it. With
// split, 2^n is put in as 2^(n/2) 2^(n - n/2), two normal numbers for every
// n in [-150, 128], so that on x held in [-104, 89] (emit_exp) results
// underflow gradually to 0 below -87.3 and overflow to inf above 88.72 as
// expf's do. Without, 2^n is one factor, for n in [-126, 128] (x held in
// [-87, 89]): no denormal results (0 below -87.3, inf from 88.38 on), for
// four instructions fewer.
static LLVMValueRef exp_held(Cg *c, LLVMValueRef x, double lo_x, double hi_x, bool split) {
  static const double coef[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
  const double magic = 12582912;   // 1.5 * 2^23: floats near it are whole numbers
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMTypeRef it = is_vector(t) ? LLVMVectorType(c->i32, LLVMGetVectorSize(t)) : c->i32;
  LLVMValueRef xc = hold(c, x, lo_x, hi_x);
  LLVMValueRef sum = muladd(c, xc, fconst(c, t, 1.44269504088896341), fconst(c, t, magic));
  LLVMValueRef fn = LLVMBuildFSub(c->b, sum, fconst(c, t, magic), "");
  LLVMValueRef r = muladd(c, fn, fconst(c, t, -0.693359375), xc);
  r = muladd(c, fn, fconst(c, t, 2.12194440e-4), r);
  LLVMValueRef p = poly(c, r, coef, countof(coef));
  p = muladd(c, p, LLVMBuildFMul(c->b, r, r, ""), r);
  p = LLVMBuildFAdd(c->b, p, fconst(c, t, 1), "");
  LLVMValueRef bits = LLVMBuildBitCast(c->b, sum, it, "");
  LLVMValueRef n = LLVMBuildSub(c->b, bits, iconst(c, it, 0x4B400000), "");   // less magic's bits
  if (!split)
    return LLVMBuildFMul(c->b, p, pow2i(c, it, t, n), "exp");
  LLVMValueRef n1 = LLVMBuildAShr(c->b, n, iconst(c, it, 1), "");
  LLVMValueRef e1 = pow2i(c, it, t, n1), e2 = pow2i(c, it, t, LLVMBuildSub(c->b, n, n1, ""));
  return LLVMBuildFMul(c->b, LLVMBuildFMul(c->b, p, e1, ""), e2, "exp");
}

static LLVMValueRef emit_exp(Cg *c, LLVMValueRef x) { return exp_held(c, x, -104, 89, true); }

// tanh(x) with no library call, so that loops over it vectorize (LLVM 14
// has no tanh intrinsic): x P(x^2) / Q(x^2). The rational function of
// degrees 11 and 6 was fitted for the least worst relative error on [0, 9]
// with P(0) = Q(0) = 1 (so tanh(x) = x for tiny x, and -0 stays -0), and
// its coefficients rounded to float. x is held in [-c, c], c = 7.75607491
// the least float where it evaluates to 1 in float with FMA (it would pass
// 1 by two ulp further on): within 3.7e-7 of tanh relative to it (6.2
// ulp), never past +-1 (tests/codegen checks both against double tanh).
// Thirteen instructions and one division, where exp(-2|x|) and (1 - e) /
// (1 + e) took forty: an LSTM's step computes two for every hidden unit.
// NaN stays NaN (both comparisons fail).
static LLVMValueRef emit_tanh(Cg *c, LLVMValueRef x) {
  static const double num[] = {1.78866123e-11, -1.27038611e-08, 9.26636949e-06, 0.00292285765, 0.129221156, 1};
  static const double den[] = {0.000228252902, 0.0237745047, 0.462554604, 1};
  return odd_rational(c, x, 7.75607491, num, countof(num), den, countof(den));
}

// 1 / (1 + exp(-x)), as the ref kernel computes it, but with exp's 2^n in
// one factor (exp_held): 1 for x above 87, and 0 from -88.38 down, where
// the result would be a denormal (below 4.6e-39; from -88.72 it was 0).
static LLVMValueRef emit_sigmoid(Cg *c, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef e = exp_held(c, LLVMBuildFNeg(c->b, x, ""), -87, 89, false);
  return LLVMBuildFDiv(c->b, fconst(c, t, 1), LLVMBuildFAdd(c->b, fconst(c, t, 1), e, ""), "sigmoid");
}

// erf(x) in float, within 4e-7 of the exact value relative to it
// everywhere (tests/codegen checks it against double erf): x P(x^2) /
// Q(x^2), the rational approximation Eigen and XLA use, on x held in
// [-4, 4] (beyond, erf rounds to +-1). Sixteen instructions with one
// division, where a polynomial and an exp per branch took three times as
// many, which a GELU in a GEMM's epilogue paid for every element. NaN
// stays NaN (both comparisons fail). The CUDA prelude (codegen/cuda_gen.c,
// nnc_erf) computes the same: keep the coefficients equal.
static LLVMValueRef emit_erf(Cg *c, LLVMValueRef x) {
  static const double num[] = {(float)-2.72614225801306e-10, (float)2.77068142495902e-08,
                               (float)-2.10102402082508e-06, (float)-5.69250639462346e-05,
                               (float)-7.34990630326855e-04, (float)-2.95459980854025e-03,
                               (float)-1.60960333262415e-02};
  static const double den[] = {(float)-1.45660718464996e-05, (float)-2.13374055278905e-04,
                               (float)-1.68282697438203e-03, (float)-7.37332916720468e-03,
                               (float)-1.42647390514189e-02};
  return odd_rational(c, x, 4, num, countof(num), den, countof(den));
}

// x > 0 ? 1 : x < 0 ? -1 : 0 (0 for NaN).
static LLVMValueRef emit_sign(Cg *c, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef neg = LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOLT, x, fconst(c, t, 0), ""), fconst(c, t, -1), fconst(c, t, 0), "");
  return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, x, fconst(c, t, 0), ""), fconst(c, t, 1), neg, "sign");
}

// One instruction; v[] holds the values of the earlier ones. MAX and MIN
// are a > b ? a : b and a < b ? a : b, as the ref relu is (NaN gives b);
// x86's maxps and minps compute exactly that.
static LLVMValueRef emit_instr(Cg *c, Nest *n, const KInstr *in, LLVMValueRef *v) {
  LLVMValueRef a = cg_instr_args(in->op) > 0 ? v[in->a] : NULL;
  LLVMValueRef b = cg_instr_args(in->op) > 1 ? v[in->b] : NULL;
  switch (in->op) {
  case KI_LOAD:
  case KI_LOADI:
    if (n->tile)
      return tile_load(c, n, in);
    if (in->op == KI_LOADI)
      return LLVMBuildSIToFP(c->b, load(c, c->i32, address(c, n, in->buf, &in->idx, c->i32)), c->f32, "");
    return load(c, c->f32, address(c, n, in->buf, &in->idx, c->f32));
  case KI_CONST: return fconst(c, n->ty, in->imm);
  case KI_INDEX: return LLVMBuildSIToFP(c->b, n->iv[in->dim], c->f32, "");
  case KI_ADD: return LLVMBuildFAdd(c->b, a, b, "");
  case KI_SUB: return LLVMBuildFSub(c->b, a, b, "");
  case KI_MUL: return LLVMBuildFMul(c->b, a, b, "");
  case KI_DIV: return LLVMBuildFDiv(c->b, a, b, "");
  case KI_MAX: return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, a, b, ""), a, b, "max");
  case KI_MIN: return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealOLT, a, b, ""), a, b, "min");
  case KI_NEG: return LLVMBuildFNeg(c->b, a, "");
  case KI_EXP: return emit_exp(c, a);
  case KI_LOG: return call1(c, "llvm.log", a);
  case KI_TANH: return emit_tanh(c, a);
  case KI_SIGMOID: return emit_sigmoid(c, a);
  case KI_SQRT: return call1(c, "llvm.sqrt", a);
  case KI_ABS: return call1(c, "llvm.fabs", a);
  case KI_SIGN: return emit_sign(c, a);
  case KI_ERF: return emit_erf(c, a);
  case KI_GT: return bool_to_f32(c, n, LLVMBuildFCmp(c->b, LLVMRealOGT, a, b, ""));
  case KI_EQ: return bool_to_f32(c, n, LLVMBuildFCmp(c->b, LLVMRealOEQ, a, b, ""));
  case KI_SELECT:
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, LLVMRealUNE, a, fconst(c, n->ty, 0), ""), b, v[in->c], "select");
  case KI_FMA: {
    LLVMValueRef args[3] = {a, b, v[in->c]};
    return calln(c, "llvm.fma", 3, args);
  }
  case KI_NUM_OPS: break;
  }
  unreachable();
}

// A store, or for KR_SUM a load, an add and a store. The add may be
// reassociated (from LLVM 18 its `reassoc` flag says so; before, the loop's
// metadata: innermost_loop), so that a sum along the innermost
// dimension, which LLVM turns into a running value, vectorizes. The result
// then differs from the sequential sum within rounding, as any parallel
// reduction's does. Nothing else gets fast-math flags: exp, log and
// comparisons keep IEEE semantics for infinities and NaNs.
static void emit_store(Cg *c, Nest *n, const KStore *st, LLVMValueRef v) {
  if (n->tile) {   // elementwise: no sums
    masked_store(c, v, tile_address(c, n, st->buf, &st->idx, c->f32), n->tile->mask);
    return;
  }
  LLVMValueRef ptr = address(c, n, st->buf, &st->idx, c->f32);
  if (st->reduce == KR_MAX) {   // v if v > old or v is NaN, else old (as k_max_axes)
    LLVMValueRef old = load(c, c->f32, ptr);
    LLVMValueRef take = LLVMBuildOr(c->b, LLVMBuildFCmp(c->b, LLVMRealOGT, v, old, ""),
                                    LLVMBuildFCmp(c->b, LLVMRealUNO, v, v, ""), "");
    v = LLVMBuildSelect(c->b, take, v, old, "max");
  }
  if (st->reduce == KR_SUM) {
    v = LLVMBuildFAdd(c->b, load(c, c->f32, ptr), v, "sum");
#if LLVM_VERSION_MAJOR >= 18
    LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc);
#endif
  }
  store(c, v, ptr);
}

#if LLVM_VERSION_MAJOR < 18
// Whether k sums along its innermost dimension (a store with stride 0
// there): LLVM keeps the sum in a register across that loop, and only
// vectorizes the loop if it may reorder the adds.
static bool sums_innermost(const Kernel *k) {
  if (k->ndim == 0 || k->dims[k->ndim - 1] <= 1)
    return false;
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].reduce == KR_SUM && k->stores[i].idx.stride[k->ndim - 1] == 0)
      return true;
  return false;
}
#endif

// Gives the loop whose latch branch is br the loop properties props[0..n)
// (each a metadata node). A loop ID refers to itself: a temporary node
// stands in for it until it exists.
static void loop_properties(Cg *c, LLVMValueRef br, LLVMMetadataRef *props, int n) {
  LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);   // ours until replaced below
  LLVMMetadataRef ops[4] = {self};
  for (int i = 0; i < n; i++)
    ops[i + 1] = props[i];
  LLVMMetadataRef id = LLVMMDNodeInContext2(c->ctx, ops, (size_t)n + 1);
  LLVMMetadataReplaceAllUsesWith(self, id);                      // deletes the temporary node
  static const char kind[] = "llvm.loop";
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(c->ctx, kind, sizeof kind - 1), LLVMMetadataAsValue(c->ctx, id));
}

// !{!"name"} or !{!"name", i1 on}.
static LLVMMetadataRef loop_flag(Cg *c, const char *name, int on) {
  LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(c->ctx, name, strlen(name)),
                            LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(c->ctx), (unsigned)on, 0))};
  return LLVMMDNodeInContext2(c->ctx, ops, on < 0 ? 1 : 2);
}


// !{!"name", i32 v}.
static LLVMMetadataRef loop_count(Cg *c, const char *name, int v) {
  LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(c->ctx, name, strlen(name)),
                            LLVMValueAsMetadata(LLVMConstInt(c->i32, (unsigned)v, 0))};
  return LLVMMDNodeInContext2(c->ctx, ops, 2);
}

// Whether k's body has a long chain of dependent steps per element: exp,
// tanh, sigmoid, erf are 15 to 30 instructions each, and a division waits
// on its operands for 10 cycles and more.
static bool long_chains(const Kernel *k) {
  for (int i = 0; i < k->nbody; i++)
    switch (k->body[i].op) {
    case KI_EXP: case KI_TANH: case KI_SIGMOID: case KI_ERF: case KI_DIV: return true;
    default: break;
    }
  return false;
}

// The innermost loop of a plain kernel, which LLVM vectorizes: a body of
// long dependent chains (an LSTM's gates: three sigmoids and two tanh per
// element) is interleaved twice, so that two vectors' chains overlap; with
// one at a time the out-of-order window holds too little of the next to
// hide their latency. Before LLVM 18 the C API cannot mark an add
// reassociable; a loop that sums gets llvm.loop.vectorize.enable instead,
// which lets the vectorizer reorder its sums.
static void innermost_loop(Cg *c, const Kernel *k, LLVMValueRef br) {
  LLVMMetadataRef props[2];
  int n = 0;
  if (long_chains(k))
    props[n++] = loop_count(c, "llvm.loop.interleave.count", 2);
#if LLVM_VERSION_MAJOR < 18
  if (sums_innermost(k))
    props[n++] = loop_flag(c, "llvm.loop.vectorize.enable", 1);
#endif
  if (n)
    loop_properties(c, br, props, n);
}

// A loop over vectors already: neither unrolled (its registers are all
// spoken for) nor vectorized again.
static void keep_loop(Cg *c, LLVMValueRef br) {
  LLVMMetadataRef props[2] = {loop_flag(c, "llvm.loop.unroll.disable", -1),
                              loop_flag(c, "llvm.loop.vectorize.enable", 0)};
  loop_properties(c, br, props, 2);
}

// Every instruction, then every store: loads see the buffers as they were
// before this point's stores.
static void emit_body(Cg *c, Nest *n) {
  const Kernel *k = n->k;
  LLVMValueRef *v = xcalloc(k->nbody > 0 ? k->nbody : 1, sizeof *v);
  for (int i = 0; i < k->nbody; i++)
    v[i] = emit_instr(c, n, &k->body[i], v);
  for (int i = 0; i < k->nstores; i++)
    emit_store(c, n, &k->stores[i], v[k->stores[i].value]);
  free(v);
}

static LLVMBasicBlockRef block(Cg *c, LLVMValueRef fn, const char *name) {
  return LLVMAppendBasicBlockInContext(c->ctx, fn, name);
}

static LLVMValueRef gep(Cg *c, LLVMValueRef ptr, LLVMValueRef i) { return LLVMBuildInBoundsGEP2(c->b, c->f32, ptr, &i, 1, ""); }

// phi = [init, from] on entry to a loop; its value at the latch is added
// by loop_back.
static LLVMValueRef loop_phi(Cg *c, LLVMTypeRef ty, LLVMValueRef init, LLVMBasicBlockRef from) {
  LLVMValueRef phi = LLVMBuildPhi(c->b, ty, "");
  LLVMAddIncoming(phi, &init, &from, 1);
  return phi;
}

static void loop_back(LLVMValueRef *phi, LLVMValueRef *next, int n, LLVMBasicBlockRef latch) {
  for (int i = 0; i < n; i++)
    LLVMAddIncoming(phi[i], &next[i], &latch, 1);
}

// A batched product's loop in its [..., M, K, P] form (fuse.c,
// batch_matmul_kernel): C[.., m, p] summed over k of A[.., m, k] *
// B[.., k, p], with B and C contiguous along P, A constant along it, and C
// constant along K; P at most 4 vectors. Its last two loops are then one
// row of C in registers (emit_product_row) instead of a load and a store
// of C for every k.
// Whether k is a batched product's loop at all (batch_matmul_kernel's
// body: two loads, their product summed into one store, at least one
// leading dimension) with its innermost dimension at most 4 vectors.
static bool is_product(const Cg *c, const Kernel *k) {
  return k->ndim >= 3 && k->nbody == 3 && k->nstores == 1 && k->body[0].op == KI_LOAD &&
         k->body[1].op == KI_LOAD && k->body[2].op == KI_MUL && k->body[2].a != k->body[2].b &&
         k->stores[0].reduce == KR_SUM && k->stores[0].value == 2 && k->dims[k->ndim - 1] <= 4 * c->vw;
}

static bool is_product_row(const Cg *c, const Kernel *k) {
  int nd = k->ndim, kd = nd - 2, p = nd - 1;
  if (!is_product(c, k) || k->dims[kd] < 1)
    return false;
  const KIndex *x = &k->body[0].idx, *y = &k->body[1].idx, *st = &k->stores[0].idx;
  bool ab = x->stride[p] == 0 && y->stride[p] == 1, ba = y->stride[p] == 0 && x->stride[p] == 1;
  return (ab || ba) && st->stride[p] == 1 && st->stride[kd] == 0;
}

// One k of emit_product_row, at iv[kd] = kv: out[v] = acc[v] + A[m, k] *
// B[k, v-th vector of the row], for the nv vectors (the last under mask).
static void product_row_step(Cg *c, Nest *n, LLVMValueRef kv, const LLVMValueRef *acc, LLVMValueRef *out,
                             LLVMValueRef mask) {
  const Kernel *k = n->k;
  int nd = k->ndim, kd = nd - 2, p = nd - 1, w = c->vw, nv = (int)((k->dims[p] + w - 1) / w);
  bool a_first = k->body[0].idx.stride[p] == 0;
  const KInstr *la = &k->body[a_first ? 0 : 1], *lb = &k->body[a_first ? 1 : 0];
  LLVMTypeRef vt = vec(c->f32, w);
  n->iv[kd] = kv;
  LLVMValueRef a = splat(c, load(c, c->f32, address(c, n, la->buf, &la->idx, c->f32)), w);
  LLVMValueRef brow = address(c, n, lb->buf, &lb->idx, c->f32);
  for (int v = 0; v < nv; v++) {
    LLVMValueRef b = masked_load(c, vt, gep(c, brow, i64c(c, v * w)), v == nv - 1 ? mask : NULL);
    LLVMValueRef args[3] = {a, b, acc[v]};
    out[v] = calln(c, "llvm.fma", 3, args);
  }
}

// The loops over K and P of is_product_row's kernel, at the point of the
// outer loops: the row of C in nv vectors of accumulators, a broadcast of
// A[m, k] times B's row k added to them for each k (each product and sum
// one fused multiply-add), then C's row plus them stored; the row's last
// vector masked when P is not a multiple of the vector width. The k are
// dealt to u chains of accumulators in turn (k, k + u, ... in each, the
// last K % u in the first), so that u * nv multiply-adds are in flight
// instead of nv each waiting for the last; the chains are added in order.
static void emit_product_row(Cg *c, Nest *n) {
  const Kernel *k = n->k;
  int nd = k->ndim, kd = nd - 2, p = nd - 1, w = c->vw, P = (int)k->dims[p], nv = (P + w - 1) / w;
  int u = 8 / nv < 1 ? 1 : 8 / nv > 4 ? 4 : 8 / nv;
  int64_t K = k->dims[kd], main = K / u * u;
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef mask = P % w ? lanes_below(c, 0, w, i64c(c, P % w)) : NULL, acc[16], next[16];
  n->iv[p] = i64c(c, 0);
  for (int i = 0; i < u * nv; i++)
    next[i] = LLVMConstNull(vt);
  if (main > 0) {
    LLVMBasicBlockRef guard = LLVMGetInsertBlock(c->b), loop = block(c, n->fn, "k"), exit = block(c, n->fn, "row");
    LLVMBuildBr(c->b, loop);
    LLVMPositionBuilderAtEnd(c->b, loop);
    LLVMValueRef kv = loop_phi(c, c->i64, i64c(c, 0), guard);
    for (int i = 0; i < u * nv; i++)
      acc[i] = loop_phi(c, vt, LLVMConstNull(vt), guard);
    for (int ch = 0; ch < u; ch++)
      product_row_step(c, n, LLVMBuildNSWAdd(c->b, kv, i64c(c, ch), ""), acc + ch * nv, next + ch * nv, mask);
    LLVMValueRef k1 = LLVMBuildNSWAdd(c->b, kv, i64c(c, u), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, k1, i64c(c, main), ""), loop, exit);
    loop_back(&kv, &k1, 1, latch);
    loop_back(acc, next, u * nv, latch);
    LLVMPositionBuilderAtEnd(c->b, exit);
  }
  for (int64_t r = main; r < K; r++) {   // the last K % u, into the first chain
    memcpy(acc, next, sizeof(LLVMValueRef) * nv);
    product_row_step(c, n, i64c(c, r), acc, next, mask);
  }
  n->iv[kd] = i64c(c, 0);
  LLVMValueRef crow = address(c, n, k->stores[0].buf, &k->stores[0].idx, c->f32);
  for (int v = 0; v < nv; v++) {
    LLVMValueRef m = v == nv - 1 ? mask : NULL, cp = gep(c, crow, i64c(c, v * w)), sum = next[v];
    for (int ch = 1; ch < u; ch++)
      sum = LLVMBuildFAdd(c->b, sum, next[ch * nv + v], "");
    masked_store(c, LLVMBuildFAdd(c->b, masked_load(c, vt, cp, m), sum, ""), cp, m);
  }
}

static LLVMValueRef hsums(Cg *c, const LLVMValueRef *in, int n, int w);

// A batched product's loop in its [..., M, P, K] form (dot products: both
// operands contiguous along K, as q @ transpose(k)): A constant along P, C
// along K; K at most 4 vectors.
static bool is_product_dots(const Cg *c, const Kernel *k) {
  int nd = k->ndim, pd = nd - 2, kd = nd - 1;
  if (!is_product(c, k))
    return false;
  const KIndex *x = &k->body[0].idx, *y = &k->body[1].idx, *st = &k->stores[0].idx;
  return x->stride[kd] == 1 && y->stride[kd] == 1 && (x->stride[pd] == 0 || y->stride[pd] == 0) &&
         st->stride[kd] == 0;
}

// The loops over P and K of is_product_dots's kernel: A's row in vectors
// (loaded once), then for w columns p at a time (then 4, then 1) the
// products with B's rows p summed in vector lanes, the lane sums folded
// into one vector (hsums) and added to C[m, p..] (one vector load and
// store where C is contiguous along P).
static void emit_product_dots(Cg *c, Nest *n) {
  const Kernel *k = n->k;
  int nd = k->ndim, pd = nd - 2, kd = nd - 1, w = c->vw, K = (int)k->dims[kd], nv = (K + w - 1) / w;
  int64_t P = k->dims[pd];
  bool a_first = k->body[0].idx.stride[pd] == 0;
  const KInstr *la = &k->body[a_first ? 0 : 1], *lb = &k->body[a_first ? 1 : 0];
  const KStore *st = &k->stores[0];
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef mask = K % w ? lanes_below(c, 0, w, i64c(c, K % w)) : NULL, av[4];
  n->iv[pd] = n->iv[kd] = i64c(c, 0);
  LLVMValueRef arow = address(c, n, la->buf, &la->idx, c->f32);
  for (int v = 0; v < nv; v++)
    av[v] = masked_load(c, vt, gep(c, arow, i64c(c, v * w)), v == nv - 1 ? mask : NULL);
  int groups[3] = {w, w > 4 ? 4 : 1, 1};
  int64_t from = 0;
  for (int pass = 0; pass < 3; pass++) {   // blocks of g columns: w, then 4, then one by one
    int g = groups[pass];
    if (pass > 0 && g == groups[pass - 1])
      continue;
    int64_t to = from + (P - from) / g * g;
    if (from >= to)
      continue;
    LLVMBasicBlockRef guard = LLVMGetInsertBlock(c->b), loop = block(c, n->fn, "p"), exit = block(c, n->fn, "cols");
    LLVMBuildBr(c->b, loop);
    LLVMPositionBuilderAtEnd(c->b, loop);
    LLVMValueRef pv = loop_phi(c, c->i64, i64c(c, from), guard), sums[16];
    for (int j = 0; j < g; j++) {
      n->iv[pd] = LLVMBuildNSWAdd(c->b, pv, i64c(c, j), "");
      LLVMValueRef brow = address(c, n, lb->buf, &lb->idx, c->f32), s = LLVMConstNull(vt);
      for (int v = 0; v < nv; v++) {
        LLVMValueRef args[3] = {av[v], masked_load(c, vt, gep(c, brow, i64c(c, v * w)), v == nv - 1 ? mask : NULL), s};
        s = calln(c, "llvm.fma", 3, args);
      }
      sums[j] = s;
    }
    LLVMValueRef folded = hsums(c, sums, g, w);
    n->iv[pd] = pv;
    if (g > 1 && st->idx.stride[pd] == 1) {   // C[m, p..p+g) in one vector
      LLVMValueRef cp = address(c, n, st->buf, &st->idx, c->f32);
      masked_store(c, LLVMBuildFAdd(c->b, masked_load(c, vec(c->f32, g), cp, NULL), folded, ""), cp, NULL);
    } else
      for (int j = 0; j < g; j++) {
        n->iv[pd] = LLVMBuildNSWAdd(c->b, pv, i64c(c, j), "");
        LLVMValueRef cp = address(c, n, st->buf, &st->idx, c->f32);
        LLVMValueRef sum = LLVMBuildExtractElement(c->b, folded, i32c(c, j), "");
        store(c, LLVMBuildFAdd(c->b, load(c, c->f32, cp), sum, ""), cp);
      }
    LLVMValueRef p1 = LLVMBuildNSWAdd(c->b, pv, i64c(c, g), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, p1, i64c(c, to), ""), loop, exit);
    loop_back(&pv, &p1, 1, latch);
    LLVMPositionBuilderAtEnd(c->b, exit);
    from = to;
  }
}

// The loops of dimensions d.. around the body, each in rotated form:
//   guard: lo < hi ? loop : end
//   loop:  i = phi [lo, guard], [i + 1, latch]; the inner loops; latch:
//          i + 1 < hi ? loop : end
// A kernel of no dimensions runs its body once, as one of extent 1.
static void emit_nest(Cg *c, Nest *n, int d) {
  int nd = n->k->ndim > 0 ? n->k->ndim : 1;
  if (d == nd) {
    emit_body(c, n);
    return;
  }
  if (d == nd - 2 && d > 0 && !n->tile && is_product_row(c, n->k)) {
    emit_product_row(c, n);
    return;
  }
  if (d == nd - 2 && d > 0 && !n->tile && is_product_dots(c, n->k)) {
    emit_product_dots(c, n);
    return;
  }
  LLVMValueRef lo = d == 0 ? n->lo : i64c(c, 0);
  LLVMValueRef hi = d == 0 ? n->hi : i64c(c, n->k->dims[d]);
  LLVMBasicBlockRef guard = LLVMGetInsertBlock(c->b);
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, n->fn, "loop");
  LLVMBasicBlockRef end = LLVMAppendBasicBlockInContext(c->ctx, n->fn, "end");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, lo, hi, ""), loop, end);
  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef i = LLVMBuildPhi(c->b, c->i64, "i");
  n->iv[d] = i;
  emit_nest(c, n, d + 1);
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  LLVMValueRef next = LLVMBuildNSWAdd(c->b, i, i64c(c, 1), "");
  LLVMValueRef br = LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, next, hi, ""), loop, end);
  if (d == nd - 1)
    innermost_loop(c, n->k, br);
  LLVMValueRef in_v[2] = {lo, next};
  LLVMBasicBlockRef in_b[2] = {guard, latch};
  LLVMAddIncoming(i, in_v, in_b, 2);
  LLVMMoveBasicBlockAfter(end, latch);
  LLVMPositionBuilderAtEnd(c->b, end);
}

// The body function: void name(float *noalias b0, ..., i64 lo, i64 hi),
// inlined into its RtLoopFn, where each noalias becomes alias scopes.
static LLVMValueRef build_body(Cg *c, const Kernel *k, const Slots *s, const char *name) {
  LLVMTypeRef *params = xcalloc(s->n + 2, sizeof *params);
  for (int j = 0; j < s->n; j++)
    params[j] = c->f32p;
  params[s->n] = params[s->n + 1] = c->i64;
  LLVMValueRef fn = define_fn(c, name, LLVMFunctionType(c->vd, params, s->n + 2, 0), true);
  free(params);
  add_attr(c, fn, LLVMAttributeFunctionIndex, "alwaysinline");
  Nest n = {.k = k, .s = s, .fn = fn, .base = xcalloc(s->n > 0 ? s->n : 1, sizeof(LLVMValueRef)), .ty = c->f32};
  for (int j = 0; j < s->n; j++) {
    n.base[j] = LLVMGetParam(fn, j);
    if (s->noalias[j])
      add_attr(c, fn, (LLVMAttributeIndex)(j + 1), "noalias");
  }
  n.lo = LLVMGetParam(fn, s->n);
  n.hi = LLVMGetParam(fn, s->n + 1);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  emit_nest(c, &n, 0);
  LLVMBuildRetVoid(c->b);
  free(n.base);
  return verify_fn(c, fn) ? fn : NULL;
}

// Whether dimensions d and d+1 of k walk every buffer as one dimension
// would: each index steps by stride[d+1] along d+1 and by dims[d+1] times
// that along d, and no instruction reads either index.
static bool mergeable(const Kernel *k, int d) {
  for (int i = 0; i < k->nbody; i++) {
    const KInstr *in = &k->body[i];
    if (in->op == KI_INDEX && (in->dim == d || in->dim == d + 1))
      return false;
    if ((in->op == KI_LOAD || in->op == KI_LOADI) && in->idx.stride[d] != in->idx.stride[d + 1] * k->dims[d + 1])
      return false;
  }
  for (int i = 0; i < k->nstores; i++)
    if (k->stores[i].idx.stride[d] != k->stores[i].idx.stride[d + 1] * k->dims[d + 1])
      return false;
  return true;
}

static void drop_dim(KIndex *ix, int d, int ndim) {
  memmove(&ix->stride[d], &ix->stride[d + 1], sizeof(int64_t) * (ndim - d - 1));
}

// k with adjacent dimensions merged where they are one run of memory for
// every buffer ([N,32,26,26] elementwise becomes [N,21632]; a sum over
// [N,C,H,W] into [C] becomes one over [N,C,H*W]), so that the innermost
// loop is long and contiguous and LLVM vectorizes it rather than an outer
// one. Dimension 0 stays: the batch and the threads' split are along it.
// The copy owns its body and stores (free them with free()).
static Kernel collapse(const Kernel *k) {
  Kernel m = *k;
  m.body = xmalloc(sizeof(KInstr) * (k->nbody > 0 ? k->nbody : 1));
  m.stores = xmalloc(sizeof(KStore) * (k->nstores > 0 ? k->nstores : 1));
  memcpy(m.body, k->body, sizeof(KInstr) * k->nbody);
  memcpy(m.stores, k->stores, sizeof(KStore) * k->nstores);
  for (int d = m.ndim - 2; d >= 1; d--) {
    if (!mergeable(&m, d))
      continue;
    for (int i = 0; i < m.nbody; i++) {
      m.body[i].idx.stride[d] = m.body[i].idx.stride[d + 1];
      drop_dim(&m.body[i].idx, d + 1, m.ndim);
      if (m.body[i].op == KI_INDEX && m.body[i].dim > d)
        m.body[i].dim--;
    }
    for (int i = 0; i < m.nstores; i++) {
      m.stores[i].idx.stride[d] = m.stores[i].idx.stride[d + 1];
      drop_dim(&m.stores[i].idx, d + 1, m.ndim);
    }
    m.dims[d] *= m.dims[d + 1];
    memmove(&m.dims[d + 1], &m.dims[d + 2], sizeof(int64_t) * (m.ndim - d - 2));
    m.ndim--;
  }
  return m;
}

// The module that builds loop function j. Module 0 also builds the entry,
// into which it inlines its own loops called in line: with two modules it
// takes 2 of every 5 loop functions, which balances the two on resnet18.
static int part_of(int j, int nparts) {
  if (nparts == 2)
    return j % 5 < 2 ? 0 : 1;
  return j % nparts;
}

// A RtLoopFn for loop kernel k: the base pointer of each distinct buffer
// (its block's start + its offset), then the body. When the program is
// split into several modules, one that another module builds is only
// declared here (the entry calls it across modules), and those built here
// are visible to the others.
// Whether this module builds the program's next function to share out,
// `name` of type ty; if another one does, *decl is its declaration here
// (in module 0, whose entry calls it) or a null pointer.
static bool own_fn(Cg *c, const char *name, LLVMTypeRef ty, LLVMValueRef *decl) {
  int owner = c->nparts == 1 ? 0 : part_of(c->nloops++, c->nparts);
  if (owner == c->part)
    return true;
  *decl = c->part == 0 ? LLVMAddFunction(c->mod, name, ty) : LLVMConstNull(c->i8p);
  return false;
}

// Where a slot's value starts (i8 *): its block's start + its offset; in
// local rows (which hold rows lo.. of it), where row 0 would lie: a plain
// GEP, since that address may lie outside them (only rows lo.. are read).
static LLVMValueRef slot_base(Cg *c, KBufSpace space, int64_t offset, int64_t row, LLVMValueRef arena,
                              LLVMValueRef state, LLVMValueRef local, LLVMValueRef lo) {
  LLVMValueRef off = i64c(c, offset);
  if (space != KB_LOCAL)
    return LLVMBuildInBoundsGEP2(c->b, c->i8, space == KB_STATE ? state : arena, &off, 1, "");
  off = LLVMBuildSub(c->b, off, LLVMBuildMul(c->b, lo, i64c(c, row), ""), "");
  return LLVMBuildGEP2(c->b, c->i8, local, &off, 1, "");
}

static LLVMValueRef build_loop(Cg *c, const Kernel *orig, const char *name) {
  if (!check_loop(c, orig))
    return NULL;
  LLVMValueRef decl;
  if (!own_fn(c, name, c->loop_ty, &decl))
    return decl;
  Kernel merged = collapse(orig);
  const Kernel *k = &merged;
  Slots s;
  slots_init(c, k, &s);
  LLVMValueRef fn = NULL;
  char body_name[96];
  snprintf(body_name, sizeof body_name, "%s.body", name);
  LLVMValueRef body = build_body(c, k, &s, body_name);
  if (!body)
    goto done;
  fn = define_fn(c, name, c->loop_ty, c->nparts == 1);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  LLVMValueRef *args = xcalloc(s.n + 2, sizeof *args);
  for (int j = 0; j < s.n; j++)
    args[j] = LLVMBuildBitCast(c->b, slot_base(c, s.space[j], s.offset[j], s.row[j], LLVMGetParam(fn, 0),
                                                LLVMGetParam(fn, 1), LLVMGetParam(fn, 5), LLVMGetParam(fn, 3)),
                               c->f32p, "");
  args[s.n] = LLVMGetParam(fn, 3);
  args[s.n + 1] = LLVMGetParam(fn, 4);
  LLVMBuildCall2(c->b, LLVMGlobalGetValueType(body), body, args, s.n + 2, "");
  LLVMBuildRetVoid(c->b);
  free(args);
  if (!verify_fn(c, fn))
    fn = NULL;
done:
  slots_free(&s);
  free(merged.body);
  free(merged.stores);
  return fn;
}

//
// GEMM micro-kernels
//

// The shapes of the micro-kernels for vectors of w floats (codegen.h): with
// AVX-512's 32 vector registers a tile of 8 rows by two vectors (16
// accumulators, 2 of B, 1 of A) and 4 x 4 dot products; with 16 registers
// 6 rows (12 + 3) and 2 x 4 (8 + 6); one row by 8 (by 4 with 4-float
// vectors, as the lane sums put one column in each lane).
static RtGemmKernels uk_shape(int w) {
  if (w >= 16)
    return (RtGemmKernels){.tile_m = 8, .tile_n = 2 * w, .dot_m = 4, .dot_n = 4, .row_n = 8};
  return (RtGemmKernels){.tile_m = 6, .tile_n = 2 * w, .dot_m = 2, .dot_n = 4, .row_n = w < 8 ? w : 8};
}

// What a GEMM's micro-kernels do at the end of K.
typedef struct UkPlan {
  const Kernel *g;       // the GEMM whose epilogue they run, or NULL (plain)
  const Kernel *e;       // the epilogue they run, or NULL
  Slots s;               // e's buffers
  int cslot;             // the slot at C's place (-1: none)
  bool c_replaced;       // an epilogue store writes C's elements: C itself is not stored
} UkPlan;

static void uk_plan(Cg *c, const Kernel *g, const Kernel *e, UkPlan *u) {
  *u = (UkPlan){.g = e ? g : NULL, .e = e, .cslot = -1};
  if (!e)
    return;
  slots_init(c, e, &u->s);
  const KBufInfo *cb = &c->p->buf[g->bufs[2]->id];
  for (int j = 0; j < u->s.n; j++)
    if (ir_rt_space(u->s.space[j]) == ir_rt_space(cb->space) && u->s.offset[j] == cb->offset)
      u->cslot = j;
  for (int i = 0; i < e->nstores; i++)
    if (cg_same_place(c->p, e->bufs[e->stores[i].buf], g->bufs[2]) && cg_is_c_index(e, &e->stores[i].idx))
      u->c_replaced = true;
}

// Where a micro-kernel is being built: its parameters (RtTileFn's order).
enum { UK_K, UK_A, UK_ARS, UK_ACS, UK_B, UK_BRS, UK_C, UK_LDC, UK_MR, UK_NR, UK_FLAGS, UK_ROW, UK_COL, UK_ARENA,
       UK_STATE, UK_BATCH, UK_NPARAMS };

typedef struct Uk {
  const UkPlan *plan;
  LLVMValueRef fn, p[UK_NPARAMS];
  LLVMValueRef *base;               // the epilogue's slots (float *)
  LLVMValueRef accumulate, last;    // i1, from flags
} Uk;

// min(i, n - 1) for a row i of a ragged tile of n rows: rows past the
// tile repeat its last one.
static LLVMValueRef clamp_row(Cg *c, int i, LLVMValueRef n) {
  LLVMValueRef in = LLVMBuildICmp(c->b, LLVMIntSLT, i64c(c, i), n, "");
  return LLVMBuildSelect(c->b, in, i64c(c, i), LLVMBuildNSWSub(c->b, n, i64c(c, 1), ""), "");
}

// The function and its entry: flags decoded, the epilogue's buffers found.
static void uk_begin(Cg *c, Uk *u, const UkPlan *plan, LLVMValueRef fn) {
  *u = (Uk){.plan = plan, .fn = fn};
  for (int i = 0; i < UK_NPARAMS; i++)
    u->p[i] = LLVMGetParam(fn, (unsigned)i);
  LLVMPositionBuilderAtEnd(c->b, block(c, fn, "entry"));
  LLVMValueRef flags = u->p[UK_FLAGS];
  u->accumulate = LLVMBuildICmp(c->b, LLVMIntNE, LLVMBuildAnd(c->b, flags, i64c(c, RT_ACCUMULATE), ""), i64c(c, 0), "acc");
  u->last = LLVMBuildICmp(c->b, LLVMIntNE, LLVMBuildAnd(c->b, flags, i64c(c, RT_LAST), ""), i64c(c, 0), "last");
  if (!plan->e)
    return;
  u->base = xcalloc(plan->s.n > 0 ? plan->s.n : 1, sizeof *u->base);
  for (int j = 0; j < plan->s.n; j++) {
    LLVMValueRef off = i64c(c, plan->s.offset[j]);
    if (plan->s.space[j] == KB_LOCAL)
      unreachable();   // memplan keeps what a product touches in the arena
    LLVMValueRef blk = u->p[plan->s.space[j] == KB_STATE ? UK_STATE : UK_ARENA];
    u->base[j] = LLVMBuildBitCast(c->b, LLVMBuildInBoundsGEP2(c->b, c->i8, blk, &off, 1, ""), c->f32p, "");
  }
}

// Where two paths join: a[i] becomes [a[i], from ab], [b[i], from bb].
static void merge(Cg *c, LLVMTypeRef ty, LLVMValueRef *a, LLVMBasicBlockRef ab, LLVMValueRef *b, LLVMBasicBlockRef bb,
                  int n) {
  for (int i = 0; i < n; i++) {
    LLVMValueRef phi = LLVMBuildPhi(c->b, ty, ""), in_v[2] = {a[i], b[i]};
    LLVMBasicBlockRef in_b[2] = {ab, bb};
    LLVMAddIncoming(phi, in_v, in_b, 2);
    a[i] = phi;
  }
}

// a's w lanes, then b's, as one vector of 2w.
static LLVMValueRef concat2(Cg *c, LLVMValueRef a, LLVMValueRef b, int w) {
  LLVMValueRef e[128];
  for (int i = 0; i < 2 * w; i++)
    e[i] = i32c(c, i);
  return LLVMBuildShuffleVector(c->b, a, b, LLVMConstVector(e, (unsigned)(2 * w)), "");
}

// Row r (i64) of the tile, nv vectors of w lanes (x[v]: columns v*w..):
// plus C's old values when accumulating, then stored, or on the last block
// of K run through the epilogue.
static void finish_row(Cg *c, Uk *u, LLVMValueRef r, int nv, int w, LLVMValueRef *x, const LLVMValueRef *mask) {
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef crow = gep(c, u->p[UK_C], LLVMBuildNSWMul(c->b, r, u->p[UK_LDC], "")), cp[2], y[2];
  for (int v = 0; v < nv; v++)
    cp[v] = gep(c, crow, i64c(c, v * w));
  LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b), add = block(c, u->fn, "accumulate"), join = block(c, u->fn, "sum");
  LLVMBuildCondBr(c->b, u->accumulate, add, join);
  LLVMPositionBuilderAtEnd(c->b, add);
  for (int v = 0; v < nv; v++)
    y[v] = LLVMBuildFAdd(c->b, x[v], masked_load(c, vt, cp[v], mask ? mask[v] : NULL), "");
  LLVMBuildBr(c->b, join);
  LLVMPositionBuilderAtEnd(c->b, join);
  merge(c, vt, x, from, y, add, nv);
  const UkPlan *plan = u->plan;
  LLVMBasicBlockRef epi = NULL, next = NULL;
  if (plan->e) {
    LLVMBasicBlockRef plain = block(c, u->fn, "store");
    epi = block(c, u->fn, "epilogue");
    next = block(c, u->fn, "next");
    LLVMBuildCondBr(c->b, u->last, epi, plain);
    LLVMPositionBuilderAtEnd(c->b, plain);
  }
  for (int v = 0; v < nv; v++)
    masked_store(c, x[v], cp[v], mask ? mask[v] : NULL);
  if (!plan->e)
    return;
  LLVMBuildBr(c->b, next);
  LLVMPositionBuilderAtEnd(c->b, epi);
  LLVMValueRef row = LLVMBuildNSWAdd(c->b, u->p[UK_ROW], r, "row"), at[2] = {row, NULL};
  if (plan->e->ndim == 3) {   // [N, T, n]: C's row n*T + t
    LLVMValueRef T = i64c(c, plan->e->dims[1]);
    at[0] = LLVMBuildSDiv(c->b, row, T, "");
    at[1] = LLVMBuildSRem(c->b, row, T, "");
  }
  for (int v = 0; v < nv; v++)
    if (!plan->c_replaced)
      masked_store(c, x[v], cp[v], mask ? mask[v] : NULL);
  // The row's nv vectors are adjacent columns: the epilogue runs once on
  // all of them as one vector of nv * w lanes, which LLVM splits into
  // nv interleaved chains. Transcendental epilogues (GELU's erf, tanh)
  // are long chains of dependent steps; one chain at a time leaves the
  // FMA units waiting on latency.
  LLVMValueRef whole = x[0], wmask = mask ? mask[0] : NULL;
  if (nv == 2) {
    whole = concat2(c, x[0], x[1], w);
    wmask = mask ? concat2(c, mask[0], mask[1], w) : NULL;
  }
  TileEpi t = {.w = nv * w, .cslot = plan->cslot, .mask = wmask, .value = whole, .row = {at[0], at[1]},
               .col = u->p[UK_COL]};
  Nest n = {.k = plan->e, .s = &plan->s, .fn = u->fn, .base = u->base, .ty = vec(c->f32, nv * w), .tile = &t};
  emit_body(c, &n);
  LLVMBuildBr(c->b, next);
  LLVMPositionBuilderAtEnd(c->b, next);
}

// The tile's rows r < mr, each nv vectors read back from the scratch tile
// (vectors r*nv + v), through finish_row: one copy of the epilogue serves
// every row, in two versions: plain loads and stores where the tile has
// all its columns (nr = nv * w), masked ones for a ragged tile. Then the
// function returns.
static void rows_loop(Cg *c, Uk *u, int nv, int w, LLVMValueRef tile, const LLVMValueRef *mask, LLVMBasicBlockRef done) {
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMBasicBlockRef entry = LLVMGetInsertBlock(c->b), loop = block(c, u->fn, mask ? "rows.ragged" : "rows");
  LLVMBuildBr(c->b, loop);
  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef r = loop_phi(c, c->i64, i64c(c, 0), entry), x[2];
  for (int v = 0; v < nv; v++) {
    LLVMValueRef i = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, r, i64c(c, nv), ""), i64c(c, v), "");
    x[v] = load(c, vt, LLVMBuildInBoundsGEP2(c->b, vt, tile, &i, 1, ""));
  }
  finish_row(c, u, r, nv, w, x, mask);
  LLVMValueRef r1 = LLVMBuildNSWAdd(c->b, r, i64c(c, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  keep_loop(c, LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, r1, u->p[UK_MR], ""), loop, done));
  loop_back(&r, &r1, 1, latch);
}

static void finish_rows(Cg *c, Uk *u, int nv, int w, LLVMValueRef tile, const LLVMValueRef *mask) {
  LLVMBasicBlockRef full = block(c, u->fn, "full"), ragged = block(c, u->fn, "ragged"), done = block(c, u->fn, "done");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, u->p[UK_NR], i64c(c, nv * w), ""), full, ragged);
  LLVMPositionBuilderAtEnd(c->b, full);
  rows_loop(c, u, nv, w, tile, NULL, done);
  LLVMPositionBuilderAtEnd(c->b, ragged);
  rows_loop(c, u, nv, w, tile, mask, done);
  LLVMPositionBuilderAtEnd(c->b, done);
  LLVMBuildRetVoid(c->b);
}

// A scratch tile of n vectors in the function's entry block (so that it
// is a fixed slot of the stack frame).
static LLVMValueRef scratch_tile(Cg *c, Uk *u, LLVMTypeRef vt, int n) {
  LLVMBasicBlockRef here = LLVMGetInsertBlock(c->b);
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(u->fn);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first)
    LLVMPositionBuilderBefore(c->b, first);
  else
    LLVMPositionBuilderAtEnd(c->b, entry);
  LLVMValueRef t = LLVMBuildAlloca(c->b, LLVMArrayType(vt, (unsigned)n), "tile");
  LLVMSetAlignment(t, 16);   // not the vector's 64: a realigned stack would take a register from the loops
  LLVMPositionBuilderAtEnd(c->b, here);
  return t;
}

static LLVMValueRef uk_end(Cg *c, Uk *u) {
  free(u->base);
  return verify_fn(c, u->fn) ? u->fn : NULL;
}

#define UK_MAX_ACC 16

// The K loop of the register tile, from block `from` (where K > 0) to
// `exit`: R x NV accumulators, per k NV vectors of B's row (masked where
// mask is given) and one broadcast of A's per row. out[] gets the sums,
// *latch_out the block that leaves to exit.
static void tile_k_loop(Cg *c, Uk *u, int R, int NV, int w, const LLVMValueRef *arow, const LLVMValueRef *mask,
                        LLVMBasicBlockRef exit, LLVMValueRef *out, LLVMBasicBlockRef *latch_out) {
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef acc[UK_MAX_ACC], zero = LLVMConstNull(vt);
  LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b), loop = block(c, u->fn, mask ? "k.ragged" : "k");
  LLVMBuildBr(c->b, loop);
  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef k = loop_phi(c, c->i64, i64c(c, 0), from);
  for (int i = 0; i < R * NV; i++)
    acc[i] = loop_phi(c, vt, zero, from);
  LLVMValueRef brow = gep(c, u->p[UK_B], LLVMBuildNSWMul(c->b, k, u->p[UK_BRS], "")), bv[2];
  for (int v = 0; v < NV; v++)
    bv[v] = masked_load(c, vt, gep(c, brow, i64c(c, v * w)), mask ? mask[v] : NULL);
  LLVMValueRef ak = LLVMBuildNSWMul(c->b, k, u->p[UK_ACS], "");
  for (int r = 0; r < R; r++) {
    LLVMValueRef a = splat(c, load(c, c->f32, gep(c, arow[r], ak)), w);
    for (int v = 0; v < NV; v++) {
      LLVMValueRef args[3] = {a, bv[v], acc[r * NV + v]};
      out[r * NV + v] = calln(c, "llvm.fma", 3, args);
    }
  }
  LLVMValueRef k1 = LLVMBuildNSWAdd(c->b, k, i64c(c, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  keep_loop(c, LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, k1, u->p[UK_K], ""), loop, exit));
  loop_back(&k, &k1, 1, latch);
  loop_back(acc, out, R * NV, latch);
  *latch_out = latch;
}

// The register tile (RtTileFn): tile_m x 2 vectors of accumulators over K,
// in two versions: plain loads of B where the tile has all its columns,
// masked ones for a ragged tile (masked loads are slower, and their masks
// take two of the sixteen vector registers); then the accumulators go to
// the scratch tile, whose rows finish_rows ends.
static LLVMValueRef build_tile(Cg *c, const UkPlan *plan, LLVMValueRef fn) {
  int w = c->vw, R = uk_shape(w).tile_m, NV = 2;
  Uk u;
  uk_begin(c, &u, plan, fn);
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef mask[2], arow[8], zero = LLVMConstNull(vt);
  for (int v = 0; v < NV; v++)
    mask[v] = lanes_below(c, v * w, w, u.p[UK_NR]);
  for (int r = 0; r < R; r++)
    arow[r] = gep(c, u.p[UK_A], LLVMBuildNSWMul(c->b, clamp_row(c, r, u.p[UK_MR]), u.p[UK_ARS], ""));
  LLVMBasicBlockRef guard = LLVMGetInsertBlock(c->b), exit = block(c, fn, "tile");
  LLVMBasicBlockRef some = block(c, fn, "k.some"), full = block(c, fn, "k.full"), ragged = block(c, fn, "k.part");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, u.p[UK_K], i64c(c, 0), ""), some, exit);
  LLVMPositionBuilderAtEnd(c->b, some);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGE, u.p[UK_NR], i64c(c, NV * w), ""), full, ragged);
  LLVMValueRef sums[2][UK_MAX_ACC];
  LLVMBasicBlockRef latch[2];
  LLVMPositionBuilderAtEnd(c->b, full);
  tile_k_loop(c, &u, R, NV, w, arow, NULL, exit, sums[0], &latch[0]);
  LLVMPositionBuilderAtEnd(c->b, ragged);
  tile_k_loop(c, &u, R, NV, w, arow, mask, exit, sums[1], &latch[1]);
  LLVMPositionBuilderAtEnd(c->b, exit);
  LLVMValueRef out[UK_MAX_ACC];
  for (int i = 0; i < R * NV; i++) {
    LLVMValueRef phi = LLVMBuildPhi(c->b, vt, ""), in_v[3] = {zero, sums[0][i], sums[1][i]};
    LLVMBasicBlockRef in_b[3] = {guard, latch[0], latch[1]};
    LLVMAddIncoming(phi, in_v, in_b, 3);
    out[i] = phi;
  }
  LLVMValueRef tile = scratch_tile(c, &u, vt, R * NV);
  for (int i = 0; i < R * NV; i++) {
    LLVMValueRef ix[2] = {i64c(c, 0), i64c(c, i)};
    store(c, out[i], LLVMBuildInBoundsGEP2(c->b, LLVMArrayType(vt, (unsigned)(R * NV)), tile, ix, 2, ""));
  }
  finish_rows(c, &u, NV, w, tile, mask);
  return uk_end(c, &u);
}

// The lane sums of n vectors of w lanes (n a power of two, n <= w), as one
// vector of n: pairs of vectors fold into one that holds the halves' sums
// of both side by side, until one vector holds n runs of lanes; then each
// run folds in halves down to one lane.
static LLVMValueRef hsums(Cg *c, const LLVMValueRef *in, int n, int w) {
  LLVMValueRef v[16], lo[64], hi[64];
  memcpy(v, in, sizeof(LLVMValueRef) * n);
  int runs = 1;
  for (; n > 1; n /= 2, runs *= 2) {
    int len = w / runs, m = 0;   // each run's lanes
    for (int src = 0; src < 2; src++)
      for (int r = 0; r < runs; r++)
        for (int l = 0; l < len / 2; l++, m++) {
          lo[m] = i32c(c, src * w + r * len + l);
          hi[m] = i32c(c, src * w + r * len + len / 2 + l);
        }
    LLVMValueRef mlo = LLVMConstVector(lo, (unsigned)w), mhi = LLVMConstVector(hi, (unsigned)w);
    for (int i = 0; i < n / 2; i++)
      v[i] = LLVMBuildFAdd(c->b, LLVMBuildShuffleVector(c->b, v[2 * i], v[2 * i + 1], mlo, ""),
                           LLVMBuildShuffleVector(c->b, v[2 * i], v[2 * i + 1], mhi, ""), "");
  }
  LLVMValueRef x = v[0];
  for (int len = w / runs; len > 1; len /= 2) {
    int m = 0;
    for (int r = 0; r < runs; r++)
      for (int l = 0; l < len / 2; l++, m++) {
        lo[m] = i32c(c, r * len + l);
        hi[m] = i32c(c, r * len + len / 2 + l);
      }
    LLVMValueRef undef = LLVMGetUndef(LLVMTypeOf(x));
    x = LLVMBuildFAdd(c->b, LLVMBuildShuffleVector(c->b, x, undef, LLVMConstVector(lo, (unsigned)m), ""),
                      LLVMBuildShuffleVector(c->b, x, undef, LLVMConstVector(hi, (unsigned)m), ""), "");
  }
  return x;
}

// One step of dm x dn dot products over w elements of K from k: s[i*dn + j]
// += a_i[k..] * b_j[k..], lanes under mask (NULL: all).
static void dot_step(Cg *c, int dm, int dn, int w, LLVMValueRef *arow, LLVMValueRef *brow, LLVMValueRef k,
                     LLVMValueRef mask, const LLVMValueRef *s, LLVMValueRef *out) {
  LLVMTypeRef vt = vec(c->f32, w), vp = LLVMPointerType(vt, 0);
  LLVMValueRef av[4], bv[16];
  for (int i = 0; i < dm + dn; i++) {
    LLVMValueRef ptr = gep(c, i < dm ? arow[i] : brow[i - dm], k);
    LLVMValueRef v = mask ? masked_load(c, vt, ptr, mask) : load(c, vt, LLVMBuildBitCast(c->b, ptr, vp, ""));
    if (i < dm)
      av[i] = v;
    else
      bv[i - dm] = v;
  }
  for (int i = 0; i < dm; i++)
    for (int j = 0; j < dn; j++) {
      LLVMValueRef args[3] = {av[i], bv[j], s[i * dn + j]};
      out[i * dn + j] = calln(c, "llvm.fma", 3, args);
    }
}

// dm x dn dot products along K (RtTileFn, as dot or row): whole vectors of K
// in the loop, the rest in one masked step; each row's sums, one vector
// of dot_n, go to the scratch tile, whose rows finish_rows ends.
static LLVMValueRef build_dot(Cg *c, const UkPlan *plan, LLVMValueRef fn, int dm, int dn) {
  int w = c->vw;
  Uk u;
  uk_begin(c, &u, plan, fn);
  LLVMTypeRef vt = vec(c->f32, w);
  LLVMValueRef arow[4], brow[16], s[UK_MAX_ACC], next[UK_MAX_ACC], out[UK_MAX_ACC], zero = LLVMConstNull(vt);
  for (int i = 0; i < dm; i++)
    arow[i] = gep(c, u.p[UK_A], LLVMBuildNSWMul(c->b, clamp_row(c, i, u.p[UK_MR]), u.p[UK_ARS], ""));
  for (int j = 0; j < dn; j++)
    brow[j] = gep(c, u.p[UK_B], LLVMBuildNSWMul(c->b, clamp_row(c, j, u.p[UK_NR]), u.p[UK_BRS], ""));
  LLVMValueRef K = u.p[UK_K], kmain = LLVMBuildAnd(c->b, K, i64c(c, -w), "kmain");
  LLVMBasicBlockRef guard = LLVMGetInsertBlock(c->b), loop = block(c, fn, "k"), rest = block(c, fn, "rest");
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSGT, kmain, i64c(c, 0), ""), loop, rest);
  LLVMPositionBuilderAtEnd(c->b, loop);
  LLVMValueRef k = loop_phi(c, c->i64, i64c(c, 0), guard);
  for (int i = 0; i < dm * dn; i++)
    s[i] = loop_phi(c, vt, zero, guard);
  dot_step(c, dm, dn, w, arow, brow, k, NULL, s, next);
  LLVMValueRef k1 = LLVMBuildNSWAdd(c->b, k, i64c(c, w), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
  keep_loop(c, LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, k1, kmain, ""), loop, rest));
  loop_back(&k, &k1, 1, latch);
  loop_back(s, next, dm * dn, latch);
  LLVMPositionBuilderAtEnd(c->b, rest);
  for (int i = 0; i < dm * dn; i++)
    out[i] = zero;
  merge(c, vt, out, guard, next, latch, dm * dn);
  LLVMBasicBlockRef tail = block(c, fn, "tail"), sums = block(c, fn, "sums");
  LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
  LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, kmain, K, ""), tail, sums);
  LLVMPositionBuilderAtEnd(c->b, tail);
  LLVMValueRef mask = lanes_below(c, 0, w, LLVMBuildNSWSub(c->b, K, kmain, ""));
  dot_step(c, dm, dn, w, arow, brow, kmain, mask, out, next);
  LLVMBuildBr(c->b, sums);
  LLVMPositionBuilderAtEnd(c->b, sums);
  merge(c, vt, out, from, next, tail, dm * dn);
  LLVMValueRef cmask = lanes_below(c, 0, dn, u.p[UK_NR]);
  if (dm == 1) {   // one row, finished from the registers
    LLVMValueRef row = hsums(c, out, dn, w);
    finish_row(c, &u, i64c(c, 0), 1, dn, &row, &cmask);
    LLVMBuildRetVoid(c->b);
    return uk_end(c, &u);
  }
  LLVMTypeRef rt = vec(c->f32, dn);
  LLVMValueRef tile = scratch_tile(c, &u, rt, dm);
  for (int i = 0; i < dm; i++) {
    LLVMValueRef ix[2] = {i64c(c, 0), i64c(c, i)};
    store(c, hsums(c, out + i * dn, dn, w), LLVMBuildInBoundsGEP2(c->b, LLVMArrayType(rt, (unsigned)dm), tile, ix, 2, ""));
  }
  finish_rows(c, &u, 1, dn, tile, &cmask);
  return uk_end(c, &u);
}

// A micro-kernel: GEMM kernel i's own ("k3_linear_1_tile"), with its
// epilogue, or (plan->g NULL) the program's plain one, which every GEMM
// without an epilogue on its tile shares; or its declaration where
// another module builds it.
static LLVMValueRef build_uk(Cg *c, int i, const UkPlan *plan, int kind) {
  static const char *const kinds[] = {"tile", "dot", "row"};
  char name[96];
  if (plan->g)
    fn_name(name, sizeof name, i, plan->g, kind == 0 ? "_tile" : kind == 1 ? "_dot" : "_row");
  else
    snprintf(name, sizeof name, "gemm_%s", kinds[kind]);
  LLVMValueRef decl;
  if (!own_fn(c, name, c->tile_ty, &decl))
    return decl;
  LLVMValueRef fn = define_fn(c, name, c->tile_ty, c->nparts == 1);
  RtGemmKernels sh = uk_shape(c->vw);
  return kind == 0 ? build_tile(c, plan, fn) : kind == 1 ? build_dot(c, plan, fn, sh.dot_m, sh.dot_n)
                                                         : build_dot(c, plan, fn, 1, sh.row_n);
}

//
// The entry function
//

// What the entry function has at hand while it calls the kernels.
typedef struct Entry {
  LLVMValueRef arena, state, B;  // its parameters
  LLVMValueRef local, lo;        // a region's function: the thread's local rows and the block's first row
  LLVMValueRef ctx;              // rt->ctx
  LLVMValueRef parallel, sgemm, lib, tick;   // rt's function pointers, each cast to its type
  LLVMValueRef region, gemm_rows, lib_rows, shared, gemm_share;
  LLVMValueRef rt;               // rt itself
  LLVMValueRef uk;               // a RtGemmKernels, filled in for each GEMM
} Entry;

// What was built for a kernel.
typedef struct Built {
  LLVMValueRef loop;             // a loop kernel's RtLoopFn
  LLVMValueRef epilogue;         // a GEMM's or library kernel's epilogue, as a loop run after it, or NULL
  LLVMValueRef uk[3];            // a GEMM's micro-kernels: tile, dot, row (NULL: none)
} Built;

// Where node n's value starts (i8 *).
static LLVMValueRef buf_ptr(Cg *c, Entry *e, const IrNode *n) {
  const KBufInfo *info = &c->p->buf[n->id];
  if (info->space == KB_LOCAL && !e->local)
    unreachable();   // ir_verify_program: local rows only inside a region
  return slot_base(c, info->space, info->offset, 4 * ir_numel(n, 1), e->arena, e->state, e->local, e->lo);
}

// coef, times B where the extent is batched.
static LLVMValueRef extent(Cg *c, Entry *e, int64_t coef, bool batched) {
  return batched ? LLVMBuildNSWMul(c->b, i64c(c, coef), e->B, "") : i64c(c, coef);
}

// Zeroes the buffers k sums into: the elements of the buffer's node for
// batch B, 4 bytes each, or only those of rows [lo, hi) of a buffer with a
// batch dimension when lo is not NULL (a region's block). Each buffer once.
// A max's buffer gets -inf (its bytes 00 00 80 ff: memset cannot, so a
// loop).
static void zero_rows(Cg *c, Entry *e, const Kernel *k, LLVMValueRef lo, LLVMValueRef hi) {
  KExtent n;
  for (int i = 0; i < k->nstores; i++) {
    if (!cg_first_sum(k, i, &n))
      continue;
    LLVMValueRef ptr = buf_ptr(c, e, k->bufs[k->stores[i].buf]), count = extent(c, e, n.coef, n.batched);
    if (lo && n.batched) {
      LLVMValueRef first = LLVMBuildNSWMul(c->b, lo, i64c(c, n.coef), "");
      ptr = LLVMBuildGEP2(c->b, c->f32, LLVMBuildBitCast(c->b, ptr, c->f32p, ""), &first, 1, "");
      ptr = LLVMBuildBitCast(c->b, ptr, c->i8p, "");
      count = LLVMBuildNSWMul(c->b, LLVMBuildNSWSub(c->b, hi, lo, ""), i64c(c, n.coef), "");
    }
    if (k->stores[i].reduce == KR_SUM) {
      LLVMBuildMemSet(c->b, ptr, LLVMConstInt(c->i8, 0, 0), LLVMBuildNSWMul(c->b, count, i64c(c, 4), ""), 4);
      continue;
    }
    LLVMValueRef f = LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b));
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, f, "fill");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, f, "filled");
    LLVMBuildBr(c->b, body);
    LLVMPositionBuilderAtEnd(c->b, body);
    LLVMValueRef i = LLVMBuildPhi(c->b, c->i64, "i");
    LLVMValueRef at = LLVMBuildGEP2(c->b, c->f32, LLVMBuildBitCast(c->b, ptr, c->f32p, ""), &i, 1, "");
    store(c, LLVMConstReal(c->f32, -INFINITY), at);
    LLVMValueRef next = LLVMBuildAdd(c->b, i, i64c(c, 1), "");
    LLVMValueRef zero = i64c(c, 0);
    LLVMAddIncoming(i, &zero, &pre, 1);
    LLVMAddIncoming(i, &next, &body, 1);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, next, count, ""), body, done);
    LLVMPositionBuilderAtEnd(c->b, done);
  }
}

static void zero_sums(Cg *c, Entry *e, const Kernel *k) { zero_rows(c, e, k, NULL, NULL); }

// Loops over fewer elements than this run on the calling thread: waking the
// pool's threads costs more than they would save.
#define PARALLEL_MIN_ELEMS 32768

// A loop kernel's run: its sums zeroed, then fn over dimension 0, through
// rt->parallel when the kernel may be split across threads and is large
// enough at this batch.
static void run_loop(Cg *c, Entry *e, const Kernel *k, LLVMValueRef fn) {
  zero_sums(c, e, k);
  LLVMValueRef n = k->ndim == 0 ? i64c(c, 1) : k->dims[0] == IR_N ? e->B : i64c(c, k->dims[0]);
  LLVMValueRef direct[6] = {e->arena, e->state, e->B, i64c(c, 0), n, LLVMConstNull(c->i8p)};
  if (!k->parallel) {
    LLVMBuildCall2(c->b, c->loop_ty, fn, direct, 6, "");
    return;
  }
  int64_t inner = 1;
  for (int d = 1; d < k->ndim; d++)
    inner *= k->dims[d];
  LLVMValueRef big = LLVMBuildICmp(c->b, LLVMIntSGE, LLVMBuildMul(c->b, n, i64c(c, inner), ""),
                                   i64c(c, PARALLEL_MIN_ELEMS), "big");
  LLVMValueRef f = LLVMGetBasicBlockParent(LLVMGetInsertBlock(c->b));
  LLVMBasicBlockRef split = LLVMAppendBasicBlockInContext(c->ctx, f, "split");
  LLVMBasicBlockRef here = LLVMAppendBasicBlockInContext(c->ctx, f, "inline");
  LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, f, "next");
  LLVMBuildCondBr(c->b, big, split, here);
  LLVMPositionBuilderAtEnd(c->b, split);
  LLVMValueRef args[6] = {e->ctx, LLVMBuildBitCast(c->b, fn, c->i8p, ""), e->arena, e->state, e->B, n};
  LLVMBuildCall2(c->b, c->parallel_ty, e->parallel, args, 6, "");
  LLVMBuildBr(c->b, next);
  LLVMPositionBuilderAtEnd(c->b, here);
  LLVMBuildCall2(c->b, c->loop_ty, fn, direct, 6, "");
  LLVMBuildBr(c->b, next);
  LLVMPositionBuilderAtEnd(c->b, next);
}

static bool check_gemm(Cg *c, const Kernel *k) { return cg_check_gemm(c->p, k, c->err, c->errsz); }

// Field i of the RtGemmKernels at e->uk = v.
static void set_uk(Cg *c, Entry *e, unsigned i, LLVMValueRef v) {
  LLVMBuildStore(c->b, v, LLVMBuildStructGEP2(c->b, c->uk_ty, e->uk, i, ""));
}

// The GEMM's micro-kernels and their shape into e->uk.
static void set_uks(Cg *c, Entry *e, const Built *bt) {
  for (unsigned i = 0; i < 3; i++)
    set_uk(c, e, i, bt->uk[i] ? LLVMBuildBitCast(c->b, bt->uk[i], c->i8p, "") : LLVMConstNull(c->i8p));
  RtGemmKernels sh = uk_shape(c->vw);
  int32_t shape[6] = {sh.tile_m, sh.tile_n, sh.dot_m, sh.dot_n, sh.row_n, 0};
  for (unsigned i = 0; i < 6; i++)
    set_uk(c, e, 3 + i, i32c(c, shape[i]));
  set_uk(c, e, 9, e->arena);
  set_uk(c, e, 10, e->state);
  set_uk(c, e, 11, e->B);
}

// The GEMM's micro-kernels into e->uk, and rt->sgemm's arguments (ctx,
// ta, tb, M, N, K, A, B, beta, C, uk) into args.
static void gemm_args(Cg *c, Entry *e, const Kernel *k, const Built *bt, LLVMValueRef args[11]) {
  set_uks(c, e, bt);
  LLVMValueRef a[11] = {
    e->ctx, i32c(c, k->ta), i32c(c, k->tb),
    extent(c, e, k->m.coef, k->m.batched), extent(c, e, k->n.coef, k->n.batched),
    extent(c, e, k->k.coef, k->k.batched),
    LLVMBuildBitCast(c->b, buf_ptr(c, e, k->bufs[0]), c->f32p, ""),
    LLVMBuildBitCast(c->b, buf_ptr(c, e, k->bufs[1]), c->f32p, ""),
    f32c(c, k->accumulate ? 1 : 0),
    LLVMBuildBitCast(c->b, buf_ptr(c, e, k->bufs[2]), c->f32p, ""),
    e->uk,
  };
  memcpy(args, a, sizeof a);
}

// rt->sgemm(rt->ctx, ta, tb, M, N, K, A, B, beta, C, uk), then the
// epilogue when it runs as a loop.
static void run_gemm(Cg *c, Entry *e, const Kernel *k, const Built *bt) {
  LLVMValueRef args[11];
  gemm_args(c, e, k, bt, args);
  LLVMBuildCall2(c->b, c->sgemm_ty, e->sgemm, args, 11, "");
  if (bt->epilogue)
    run_loop(c, e, k->epilogue, bt->epilogue);
}

// The kernel's RtLib as a constant of the module (an i8 *), its bytes as
// the runtime lays the struct out (the module is for this host).
static LLVMValueRef lib_desc(Cg *c, const Kernel *k) {
  LLVMValueRef bytes = LLVMConstStringInContext(c->ctx, (const char *)k->lib, sizeof(RtLib), 1);
  char name[32];
  snprintf(name, sizeof name, "lib.%d", k->lib->node);
  LLVMValueRef desc = LLVMAddGlobal(c->mod, LLVMTypeOf(bytes), name);
  LLVMSetInitializer(desc, bytes);
  LLVMSetGlobalConstant(desc, 1);
  LLVMSetLinkage(desc, LLVMPrivateLinkage);
  LLVMSetAlignment(desc, _Alignof(RtLib));
  return LLVMBuildBitCast(c->b, desc, c->i8p, "");
}

// rt->lib(rt->ctx, &descriptor, arena, state, B, epilogue or null).
static void run_lib(Cg *c, Entry *e, const Kernel *k, LLVMValueRef epilogue) {
  LLVMValueRef epi = epilogue ? LLVMBuildBitCast(c->b, epilogue, c->i8p, "") : LLVMConstNull(c->i8p);
  LLVMValueRef args[6] = {e->ctx, lib_desc(c, k), e->arena, e->state, e->B, epi};
  LLVMBuildCall2(c->b, c->lib_ty, e->lib, args, 6, "");
}

// if (rt->tick) rt->tick(rt->ctx, i), in entry function fn.
static void run_tick(Cg *c, Entry *e, LLVMValueRef fn, int i) {
  LLVMBasicBlockRef call = LLVMAppendBasicBlockInContext(c->ctx, fn, "tick");
  LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(c->ctx, fn, "kernel");
  LLVMBuildCondBr(c->b, LLVMBuildIsNotNull(c->b, e->tick, ""), call, next);
  LLVMPositionBuilderAtEnd(c->b, call);
  LLVMValueRef args[2] = {e->ctx, i32c(c, i)};
  LLVMBuildCall2(c->b, c->tick_ty, e->tick, args, 2, "");
  LLVMBuildBr(c->b, next);
  LLVMPositionBuilderAtEnd(c->b, next);
}

// rt's field i, a pointer cast to ty *.
static LLVMValueRef rt_field(Cg *c, LLVMValueRef rt, int i, LLVMTypeRef ty) {
  LLVMValueRef v = LLVMBuildLoad2(c->b, c->i8p, LLVMBuildStructGEP2(c->b, c->rt_ty, rt, (unsigned)i, ""), "");
  return ty ? LLVMBuildBitCast(c->b, v, LLVMPointerType(ty, 0), "") : v;
}

// What a function has at hand from its RtCalls *rt (an i8 *).
static Entry entry_of(Cg *c, LLVMValueRef arena, LLVMValueRef state, LLVMValueRef B, LLVMValueRef rt_i8) {
  LLVMValueRef uk = LLVMBuildAlloca(c->b, c->uk_ty, "uk");
  LLVMValueRef rt = LLVMBuildBitCast(c->b, rt_i8, LLVMPointerType(c->rt_ty, 0), "rt");
  return (Entry){
    .arena = arena, .state = state, .B = B, .ctx = rt_field(c, rt, 0, NULL),
    .parallel = rt_field(c, rt, 1, c->parallel_ty), .sgemm = rt_field(c, rt, 2, c->sgemm_ty),
    .lib = rt_field(c, rt, 3, c->lib_ty), .tick = rt_field(c, rt, 4, c->tick_ty),
    .region = rt_field(c, rt, 5, c->region_ty), .gemm_rows = rt_field(c, rt, 6, c->gemm_rows_ty),
    .lib_rows = rt_field(c, rt, 7, c->lib_rows_ty), .shared = rt_field(c, rt, 8, c->shared_ty),
    .gemm_share = rt_field(c, rt, 9, c->gemm_share_ty), .rt = rt_i8,
    .uk = uk,
  };
}

// A RtRegionFn for region r: each of its kernels on the batch's rows [lo,
// hi), in order: a loop over those rows (its sums' rows zeroed first), a
// product over their rows of C through rt->gemm_rows or a softmax or layer
// normalization through rt->lib_rows, then its epilogue when that runs as
// a loop. For a region of shared products, [lo, hi) is share lo of hi:
// each product's share through rt->gemm_share.
static LLVMValueRef build_region(Cg *c, int r, const Built *built) {
  const KRegion *reg = &c->p->regions[r];
  char name[64];
  snprintf(name, sizeof name, "region%d_%d_%d", r, reg->first, reg->last);
  LLVMValueRef fn = define_fn(c, name, c->region_fn_ty, true);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  Entry e = entry_of(c, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), LLVMGetParam(fn, 5));
  LLVMValueRef lo = LLVMGetParam(fn, 3), hi = LLVMGetParam(fn, 4);
  e.local = LLVMGetParam(fn, 6);
  e.lo = lo;
  LLVMValueRef rows[6] = {e.arena, e.state, e.B, lo, hi, e.local};
  for (int i = reg->first; i <= reg->last; i++) {
    const Kernel *k = c->p->kernels[i];
    const Built *bt = &built[i];
    if (reg->products) {   // share lo of hi: rt->gemm_share
      LLVMValueRef args[13];
      gemm_args(c, &e, k, bt, args);
      args[11] = lo;
      args[12] = hi;
      LLVMBuildCall2(c->b, c->gemm_share_ty, e.gemm_share, args, 13, "");
      continue;
    }
    if (k->kind == KN_LOOP) {
      zero_rows(c, &e, k, lo, hi);
      LLVMBuildCall2(c->b, c->loop_ty, bt->loop, rows, 6, "");
      continue;
    }
    if (k->kind == KN_LIB) {
      LLVMValueRef args[8] = {e.ctx, lib_desc(c, k), e.arena, e.state, e.B, lo, hi, e.local};
      LLVMBuildCall2(c->b, c->lib_rows_ty, e.lib_rows, args, 8, "");
    } else {
      set_uks(c, &e, bt);
      LLVMValueRef m = i64c(c, k->m.coef);
      LLVMValueRef args[11] = {
        e.ctx, i32c(c, k->tb), i64c(c, k->n.coef), i64c(c, k->k.coef),
        LLVMBuildBitCast(c->b, buf_ptr(c, &e, k->bufs[0]), c->f32p, ""),
        LLVMBuildBitCast(c->b, buf_ptr(c, &e, k->bufs[1]), c->f32p, ""),
        f32c(c, k->accumulate ? 1 : 0),
        LLVMBuildBitCast(c->b, buf_ptr(c, &e, k->bufs[2]), c->f32p, ""),
        e.uk, LLVMBuildNSWMul(c->b, lo, m, ""), LLVMBuildNSWMul(c->b, LLVMBuildNSWSub(c->b, hi, lo, ""), m, ""),
      };
      LLVMBuildCall2(c->b, c->gemm_rows_ty, e.gemm_rows, args, 11, "");
    }
    if (bt->epilogue) {   // a product's or a layer normalization's, as a loop over the block's rows
      zero_rows(c, &e, k->epilogue, lo, hi);
      LLVMBuildCall2(c->b, c->loop_ty, bt->epilogue, rows, 6, "");
    }
  }
  LLVMBuildRetVoid(c->b);
  return verify_fn(c, fn) ? fn : NULL;
}

// rt->region(rt->ctx, fn, arena, state, B, row_bytes, unit, rt) for region
// r, or rt->shared(rt->ctx, fn, arena, state, B, work, rt) for shared
// products.
static void run_region(Cg *c, Entry *e, int r, LLVMValueRef fn) {
  const KRegion *reg = &c->p->regions[r];
  if (reg->products) {
    LLVMValueRef work = i64c(c, 0);
    for (int i = reg->first; i <= reg->last; i++) {
      const Kernel *k = c->p->kernels[i];
      LLVMValueRef mn = LLVMBuildMul(c->b, extent(c, e, k->m.coef, k->m.batched),
                                     extent(c, e, k->n.coef, k->n.batched), "");
      work = LLVMBuildAdd(c->b, work, LLVMBuildMul(c->b, mn, extent(c, e, k->k.coef, k->k.batched), ""), "");
    }
    LLVMValueRef args[7] = {e->ctx, LLVMBuildBitCast(c->b, fn, c->i8p, ""), e->arena, e->state, e->B, work, e->rt};
    LLVMBuildCall2(c->b, c->shared_ty, e->shared, args, 7, "");
    return;
  }
  LLVMValueRef args[9] = {
    e->ctx, LLVMBuildBitCast(c->b, fn, c->i8p, ""), e->arena, e->state, e->B, i64c(c, reg->row_bytes),
    i64c(c, reg->block), i64c(c, reg->local_bytes), e->rt,
  };
  LLVMBuildCall2(c->b, c->region_ty, e->region, args, 9, "");
}

// void name(i8 *arena, i8 *state, i64 B, RtCalls *rt): every kernel in
// order; built[i] is what was built for kernel i.
static bool build_entry(Cg *c, const char *name, const Built *built) {
  LLVMValueRef *regions = xcalloc(c->p->nregions + 1, sizeof *regions);
  for (int r = 0; r < c->p->nregions; r++)
    if (!(regions[r] = build_region(c, r, built))) {
      free(regions);
      return false;
    }
  LLVMValueRef fn = define_fn(c, name, c->entry_ty, false);
  LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
  Entry e = entry_of(c, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), LLVMGetParam(fn, 3));
  for (int i = 0, r = 0; i < c->p->nkernels; i++) {
    const Kernel *k = c->p->kernels[i];
    run_tick(c, &e, fn, i);
    if (r < c->p->nregions && c->p->regions[r].first == i) {   // its kernels' times count as its first's
      run_region(c, &e, r, regions[r]);
      i = c->p->regions[r++].last;
      continue;
    }
    switch (k->kind) {
    case KN_LOOP: run_loop(c, &e, k, built[i].loop); break;
    case KN_GEMM: run_gemm(c, &e, k, &built[i]); break;
    case KN_LIB: run_lib(c, &e, k, built[i].epilogue); break;
    }
  }
  run_tick(c, &e, fn, c->p->nkernels);
  LLVMBuildRetVoid(c->b);
  free(regions);
  return verify_fn(c, fn);
}

//
// The module
//

static void init_types(Cg *c) {
  c->f32 = LLVMFloatTypeInContext(c->ctx);
  c->i8 = LLVMInt8TypeInContext(c->ctx);
  c->i32 = LLVMInt32TypeInContext(c->ctx);
  c->i64 = LLVMInt64TypeInContext(c->ctx);
  c->vd = LLVMVoidTypeInContext(c->ctx);
  c->i8p = LLVMPointerType(c->i8, 0);
  c->i32p = LLVMPointerType(c->i32, 0);
  c->f32p = LLVMPointerType(c->f32, 0);
  LLVMTypeRef loop[6] = {c->i8p, c->i8p, c->i64, c->i64, c->i64, c->i8p};
  c->loop_ty = LLVMFunctionType(c->vd, loop, 6, 0);
  LLVMTypeRef entry[4] = {c->i8p, c->i8p, c->i64, c->i8p};
  c->entry_ty = LLVMFunctionType(c->vd, entry, 4, 0);
  LLVMTypeRef rt[10] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i8p, c->i8p, c->i8p, c->i8p, c->i8p, c->i8p};
  c->rt_ty = LLVMStructTypeInContext(c->ctx, rt, 10, 0);
  LLVMTypeRef par[6] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i64, c->i64};
  c->parallel_ty = LLVMFunctionType(c->vd, par, 6, 0);
  LLVMTypeRef uk[12] = {c->i8p, c->i8p, c->i8p, c->i32, c->i32, c->i32, c->i32, c->i32, c->i32, c->i8p, c->i8p, c->i64};
  c->uk_ty = LLVMStructTypeInContext(c->ctx, uk, 12, 0);
  LLVMTypeRef gemm[11] = {c->i8p, c->i32, c->i32, c->i64, c->i64, c->i64, c->f32p, c->f32p, c->f32, c->f32p,
                          LLVMPointerType(c->uk_ty, 0)};
  c->sgemm_ty = LLVMFunctionType(c->vd, gemm, 11, 0);
  LLVMTypeRef share[13] = {c->i8p, c->i32, c->i32, c->i64, c->i64, c->i64, c->f32p, c->f32p, c->f32, c->f32p,
                           LLVMPointerType(c->uk_ty, 0), c->i64, c->i64};
  c->gemm_share_ty = LLVMFunctionType(c->vd, share, 13, 0);
  LLVMTypeRef tile[UK_NPARAMS];
  for (int i = 0; i < UK_NPARAMS; i++)
    tile[i] = i == UK_A || i == UK_B || i == UK_C ? c->f32p : i == UK_ARENA || i == UK_STATE ? c->i8p : c->i64;
  c->tile_ty = LLVMFunctionType(c->vd, tile, UK_NPARAMS, 0);
  LLVMTypeRef lib[6] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i64, c->i8p};
  c->lib_ty = LLVMFunctionType(c->vd, lib, 6, 0);
  LLVMTypeRef tick[2] = {c->i8p, c->i32};
  c->tick_ty = LLVMFunctionType(c->vd, tick, 2, 0);
  LLVMTypeRef rfn[7] = {c->i8p, c->i8p, c->i64, c->i64, c->i64, c->i8p, c->i8p};
  c->region_fn_ty = LLVMFunctionType(c->vd, rfn, 7, 0);
  LLVMTypeRef reg[9] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i64, c->i64, c->i64, c->i64, c->i8p};
  c->region_ty = LLVMFunctionType(c->vd, reg, 9, 0);
  LLVMTypeRef rows[11] = {c->i8p, c->i32, c->i64, c->i64, c->f32p, c->f32p, c->f32, c->f32p,
                          LLVMPointerType(c->uk_ty, 0), c->i64, c->i64};
  c->gemm_rows_ty = LLVMFunctionType(c->vd, rows, 11, 0);
  LLVMTypeRef lrows[8] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i64, c->i64, c->i64, c->i8p};
  c->lib_rows_ty = LLVMFunctionType(c->vd, lrows, 8, 0);
  LLVMTypeRef shared[7] = {c->i8p, c->i8p, c->i8p, c->i8p, c->i64, c->i64, c->i8p};
  c->shared_ty = LLVMFunctionType(c->vd, shared, 7, 0);
}

// "nnc_train_step" from the program's entry name.
static void entry_name(char *buf, size_t size, const KProgram *p) {
  snprintf(buf, size, "nnc_%s", ir_entry_name(p->entry));
  for (char *s = buf; *s; s++)
    if (!isalnum((unsigned char)*s))
      *s = '_';
}

// A GEMM's micro-kernels, with its epilogue inside where it can run on the
// register tile, else as a loop after the product.
static bool build_gemm(Cg *c, int i, const Kernel *k, Built *bt) {
  if (!check_gemm(c, k) || (k->epilogue && !check_loop(c, k->epilogue)))
    return false;
  bool on_tile = k->epilogue && cg_epilogue_on_tile(c->p, k);
  char name[96];
  if (k->epilogue && !on_tile) {
    fn_name(name, sizeof name, i, k, "_epilogue");
    if (!(bt->epilogue = build_loop(c, k->epilogue, name)))
      return false;
  }
  // B stored (N, K) and A (M, K): dot products, a row kernel where a call
  // can have fewer rows than a dot kernel takes (the driver runs a batch of
  // one on the dot kernel otherwise), and no tile where every call takes
  // those (M <= RT_DOT_MAX_M for any batch and K >= RT_DOT_MIN_K, or one
  // row). (Programs of one row without their unused dot kernels ran their
  // batch-one GEMMs at 14 or, in some processes, 40 us; with them, 14.)
  bool dot = !k->ta && k->tb;
  int64_t max_m = k->m.coef * (k->m.batched ? c->p->max_batch : 1);
  bool every_dot = dot && ((!k->k.batched && k->k.coef >= RT_DOT_MIN_K && max_m <= RT_DOT_MAX_M) || max_m == 1);
  UkPlan plan;
  uk_plan(c, k, on_tile ? k->epilogue : NULL, &plan);
  bool ok = true, want[3] = {!every_dot, dot, dot && max_m < uk_shape(c->vw).dot_m};
  for (int d = 0; d < 3 && ok; d++) {
    LLVMValueRef *fn = &bt->uk[d], *plain = &c->plain[d];
    if (!want[d])
      continue;
    if (on_tile)
      ok = (*fn = build_uk(c, i, &plan, d)) != NULL;
    else
      ok = (*fn = *plain ? *plain : (*plain = build_uk(c, i, &plan, d))) != NULL;
  }
  if (plan.e)
    slots_free(&plan.s);
  return ok;
}

// What every kernel needs built (built[i] for kernel i).
static bool build_kernels(Cg *c, Built *built) {
  char name[96];
  for (int i = 0; i < c->p->nkernels; i++) {
    const Kernel *k = c->p->kernels[i];
    if (!k)
      return fail(c, "kernel %d is missing", i);
    switch (k->kind) {
    case KN_LOOP:
      fn_name(name, sizeof name, i, k, NULL);
      if (!(built[i].loop = build_loop(c, k, name)))
        return false;
      break;
    case KN_GEMM:
      if (!build_gemm(c, i, k, &built[i]))
        return false;
      break;
    case KN_LIB:
      if (!k->lib || !rt_lib_name(k->lib->kind) || k->lib->nbufs < 1 || k->lib->nbufs > RT_LIB_MAX_BUFS)
        return fail(c, "kernel '%s': a library kernel without its descriptor", kname(k));
      if (k->epilogue) {
        const RtLibBuf *r = &k->lib->buf[k->lib->nbufs - 1];
        if (k->epilogue->ndim < 1 || r->ndim < 1 || k->epilogue->dims[0] != (r->shape[0] == RT_BATCH ? IR_N : r->shape[0]))
          return fail(c, "kernel '%s': an epilogue must run over the rows of the library kernel's result",
                      kname(k));
        fn_name(name, sizeof name, i, k, "_epilogue");
        if (!(built[i].epilogue = build_loop(c, k->epilogue, name)))
          return false;
      }
      break;
    default:
      return fail(c, "kernel %d has no kind (%d)", i, (int)k->kind);
    }
  }
  return true;
}

bool cg_build_module(LLVMModuleRef m, const KProgram *p, const char *cpu, const char *features, int vw, int part,
                     int nparts, char *entry, size_t size, char *err, size_t errsz) {
  Cg c = {.p = p, .mod = m, .ctx = LLVMGetModuleContext(m), .cpu = cpu, .features = features,
          .vw = vw >= 16 ? 16 : vw >= 8 ? 8 : 4, .part = part, .nparts = nparts < 1 ? 1 : nparts, .err = err,
          .errsz = errsz};
  if (!p || !p->g || !p->buf || p->nkernels < 0 || (p->nkernels && !p->kernels))
    return fail(&c, "the program has no graph, buffers or kernels");
  init_types(&c);
  entry_name(entry, size, p);
  c.b = LLVMCreateBuilderInContext(c.ctx);   // ours: disposed below
  int nk = p->nkernels > 0 ? p->nkernels : 1;
  Built *built = xcalloc(nk, sizeof *built);
  bool ok = build_kernels(&c, built) && (part != 0 || build_entry(&c, entry, built));
  free(built);
  LLVMDisposeBuilder(c.b);
  return ok;
}
