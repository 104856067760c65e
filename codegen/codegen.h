// codegen.h: compiling kernel IR to native code through LLVM.
//
// cg_compile() turns a KProgram (one entry point) into one LLVM module:
// a function per KN_LOOP kernel (and per GEMM epilogue), vectorized for the
// host CPU, and an entry function that runs the program's kernels in order
// with no dispatch: loop kernels through the runtime's parallel-for, GEMMs
// through its sgemm, KN_LIB kernels through its library call. The module is
// optimized and JIT-compiled with ORC (LLJIT).
//
// Buffers are addressed as base + offset: KB_ARENA and KB_INPUT buffers
// from the arena pointer, KB_STATE buffers from the state pointer, at the
// offsets of p->buf[node id]. Dimension 0 of a loop may be the batch
// (IR_N): its extent is the B the entry function is called with.
#ifndef NNC_CODEGEN_H
#define NNC_CODEGEN_H

#include "ir.h"

// A compiled loop kernel: runs rows lo..hi-1 of dimension 0 (all of every
// other dimension) for batch B.
typedef void (*CgLoopFn)(char *arena, char *state, int64_t B, int64_t lo, int64_t hi);

// A GEMM's micro-kernels, generated for it (with its epilogue inside, where
// the epilogue can run on the tile), for the runtime's blocked driver
// (k_gemm_micro in gemm.c), which packs, blocks and splits the product and
// calls them on each tile:
//
//   tile(kc, a, ars, acs, b, brs, c, ldc, mr, nr, flags, row, col, arena, state, B)
//     C[mr <= tile_m, nr <= tile_n] (+)= A @ B over kc: A[i][k] at
//     a[i*ars + k*acs], B[k][j] at b[k*brs + j], C[i][j] at c[i*ldc + j]
//   dot(K, a, lda, 1, b, ldb, ...)   the same for B stored (N, K), as dot
//     products along K: A[i][k] at a[i*lda + k], B[j][k] at b[j*ldb + k],
//     mr <= dot_m rows by nr <= dot_n columns
//   row(...)                         dot of one row by nr <= row_n columns
//
// Each may be NULL where no call needs it: tile where every call takes the
// dot products, row where no call has fewer rows than dot_m (a batch of
// one then runs on dot); the driver takes row for dot where dot is NULL.
//
// The driver takes dot (row for M = 1) where there is one and the product
// is a linear layer's forward with few rows against a long K (or one row):
// op(A) = A (M, K), B stored (N, K), and M <= CG_DOT_MAX_M with K >=
// CG_DOT_MIN_K, or M = 1, or no tile (the codegen makes none where every
// call is such).
//
// flags: CG_ACCUMULATE adds the product to C's old contents; CG_LAST marks
// the last block of K, when the epilogue runs (on C[row + i][col + j] of
// the whole product; arena, state and B are the entry point's).
enum { CG_ACCUMULATE = 1, CG_LAST = 2 };
#define CG_DOT_MAX_M 128
#define CG_DOT_MIN_K 512

typedef void (*CgTileFn)(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs,
                         float *c, int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col,
                         char *arena, char *state, int64_t B);

typedef struct CgGemmKernels {
  CgTileFn tile, dot, row;   // NULL: none
  int32_t tile_m, tile_n, dot_m, dot_n, row_n, unused;
  char *arena, *state;   // the epilogue's
  int64_t B;
} CgGemmKernels;

// What compiled code calls back into; the runtime fills it in.
typedef struct CgRuntime {
  void *ctx;             // passed back to parallel, sgemm, lib and tick
  // Runs fn over rows [0, extent) of dimension 0, split across threads.
  void (*parallel)(void *ctx, CgLoopFn fn, char *arena, char *state, int64_t B, int64_t extent);
  // Row-major C[M, N] = op(A) op(B) + beta C (cblas_sgemm with lda, ldb,
  // ldc of contiguous matrices, beta 0 or 1) through the GEMM's own
  // micro-kernels uk, which run its epilogue when they have one.
  void (*sgemm)(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *Bm, float beta,
                float *C, const CgGemmKernels *uk);
  // Runs the KN_LIB kernel of graph node `node` for batch B, then its
  // epilogue (NULL: none) over rows [0, the node's dimension 0) of the
  // result, or over each share of rows as soon as it is computed.
  void (*lib)(void *ctx, int node, char *arena, char *state, int64_t B, CgLoopFn epilogue);
  // Called with i as kernel i of the program starts, and with nkernels
  // when the program ends (per-kernel timing for `nnc bench`); NULL: never.
  void (*tick)(void *ctx, int kernel);
} CgRuntime;

// The compiled entry point: runs the whole program for batch B (1 <= B <=
// the program's max_batch). The caller has put the input and target into
// the arena at their offsets.
typedef void (*CgEntryFn)(char *arena, char *state, int64_t B, const CgRuntime *rt);

typedef struct CgOptions {
  int opt_level;         // 0..3 (default 2)
  const char *cpu;       // NULL: the host's CPU name and features
} CgOptions;

// Seconds spent in each phase of a compilation, for `nnc bench`.
typedef struct CgTimes {
  double build;          // kernel IR -> LLVM IR
  double optimize;       // the LLVM pass pipeline
  double codegen;        // machine code (JIT materialization)
} CgTimes;

typedef struct CgModule CgModule;

// Compiles p; on failure returns NULL with a message in err.
CgModule *cg_compile(const KProgram *p, const CgOptions *o, char *err, size_t errsz);
CgEntryFn cg_entry(CgModule *m);
CgTimes cg_times(const CgModule *m);
void cg_free(CgModule *m);

// The optimized LLVM IR, or the host assembly, of p (`nnc emit --stage llvm|asm`).
bool cg_print_llvm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz);
bool cg_print_asm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz);

// The host's CPU name and its vector width in floats (16 with AVX-512, 8
// with AVX2, 4 otherwise).
const char *cg_host_cpu(void);
int cg_vector_width(void);

#endif
