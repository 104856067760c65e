// runtime.h: the runtime library: what compiled programs call when they run.
//
// Four parts, and nothing else: the calling convention between generated
// code and the runtime (the entry function's arguments and the table of
// calls it makes back), the thread pool that splits loops, the kernels
// (the reference kernels, plain C, and the fast paths tested against them,
// the GEMM driver among them), and the access to CUDA (NVRTC and the
// driver, opened at run time). It needs neither LLVM nor the compiler's
// passes nor its frontend: a model compiled ahead of time links this and
// util alone (without the CUDA part, which nncrt leaves out).
#ifndef NNC_RUNTIME_H
#define NNC_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

//
// The calling convention of compiled code
//

// A compiled loop kernel: runs rows lo..hi-1 of dimension 0 (all of every
// other dimension) for batch B. local: inside a batch-blocked region, the
// calling thread's local rows, where the region's values that live only
// inside it (KB_LOCAL) hold rows lo..hi-1 (the block); else NULL.
typedef void (*RtLoopFn)(char *arena, char *state, int64_t B, int64_t lo, int64_t hi, char *local);

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
// op(A) = A (M, K), B stored (N, K), and M <= RT_DOT_MAX_M with K >=
// RT_DOT_MIN_K, or M = 1, or no tile (the codegen makes none where every
// call is such).
//
// flags: RT_ACCUMULATE adds the product to C's old contents; RT_LAST marks
// the last block of K, when the epilogue runs (on C[row + i][col + j] of
// the whole product; arena, state and B are the entry point's).
enum { RT_ACCUMULATE = 1, RT_LAST = 2 };
#define RT_DOT_MAX_M 128
#define RT_DOT_MIN_K 512

typedef void (*RtTileFn)(int64_t kc, const float *a, int64_t ars, int64_t acs, const float *b, int64_t brs,
                         float *c, int64_t ldc, int64_t mr, int64_t nr, int64_t flags, int64_t row, int64_t col,
                         char *arena, char *state, int64_t B);

typedef struct RtGemmKernels {
  RtTileFn tile, dot, row;   // NULL: none
  int32_t tile_m, tile_n, dot_m, dot_n, row_n, unused;
  char *arena, *state;   // the epilogue's
  int64_t B;
} RtGemmKernels;

// A library kernel, as data: what it computes (kind), on which buffers
// (where each lies and its shape) and with which settings (the graph op's
// attributes). Compiled code holds one as a constant and hands it to
// RtCalls.lib; nothing at run time needs the graph it came from.
#define RT_MAX_DIMS 6
#define RT_BATCH (-1)          // in a shape: the batch the program runs at
#define RT_LIB_MAX_BUFS 6

typedef enum {
  RL_CONV2D,                   // x, w[, bias] -> y; i: stride_h stride_w pad_h pad_w dil_h dil_w groups
  RL_CONV2D_GRAD_INPUT,        // dy, w -> dx; i as conv2d
  RL_CONV2D_GRAD_WEIGHT,       // dy, x -> dw; i as conv2d
  RL_MAXPOOL,                  // x -> y; i: k_h k_w stride_h stride_w pad_h pad_w dil_h dil_w
  RL_MAXPOOL_GRAD,             // dy, x -> dx; i as maxpool
  RL_AVGPOOL,                  // x -> y; i: k_h k_w stride_h stride_w pad_h pad_w
  RL_AVGPOOL_GRAD,             // dy -> dx; i as avgpool
  RL_GLOBAL_AVGPOOL,           // x -> y
  RL_GLOBAL_AVGPOOL_GRAD,      // dy -> dx
  RL_BATCHNORM,                // x, gamma, beta, running_mean, running_var -> y; f: eps momentum
  RL_BATCHNORM_GRAD,           // dy, x, gamma -> dx; f: eps
  RL_BATCHNORM_GRAD_GAMMA,     // dy, x -> dgamma; f: eps
  RL_DROPOUT,                  // x -> y; f: p
  RL_DROPOUT_GRAD,             // dy -> dx; f: p
  RL_SOFTMAX,                  // x -> y; i: axis
  RL_LOG_SOFTMAX,              // x -> y; i: axis
  RL_SOFTMAX_GRAD,             // dy, y -> dx; i: axis
  RL_LOG_SOFTMAX_GRAD,         // dy, y -> dx; i: axis
  RL_EMBEDDING,                // x (int32 indexes), w[vocab, dim] -> y
  RL_EMBEDDING_GRAD,           // dy, x (int32 indexes) -> dw[vocab, dim]
  RL_CROSS_ENTROPY,            // losses: output, target -> the mean loss, an f32[]
  RL_NLL,
  RL_MSE,
  RL_L1,
  RL_BCE_WITH_LOGITS,
  RL_CROSS_ENTROPY_GRAD,       // loss gradients: output, target -> d loss / d output
  RL_NLL_GRAD,
  RL_MSE_GRAD,
  RL_L1_GRAD,
  RL_BCE_WITH_LOGITS_GRAD,
  // Updates, in place (no result buffer), with the context's lr and steps:
  RL_SGD_STEP,                 // param, grad[, momentum_buffer]; i: nesterov; f: lr momentum dampening weight_decay
  RL_ADAM_STEP,                // param, grad, exp_avg, exp_avg_sq; i: decoupled; f: lr beta1 beta2 eps weight_decay
  RL_RMSPROP_STEP,             // param, grad, square_avg[, momentum_buffer][, grad_avg]; i: centered;
                               // f: lr alpha eps weight_decay momentum
  RL_ADAGRAD_STEP,             // param, grad, sum; f: lr lr_decay weight_decay initial_accumulator_value eps
  RL_LAYERNORM,                // x -> y; i: dims; f: eps
  RL_LAYERNORM_GRAD,           // dy, x -> dx; i: dims; f: eps
  RL_GAUSSIAN_NOISE,           // x -> y; f: std
  RL_CONV2D_GRAD_WEIGHT_POOLED, // dy (a max pooling's output's gradient), x -> dw, through the
                               // pooling's argmax (aux_from); i as conv2d
  RL_CONV2D_GRAD_INPUT_POOLED, // dy (the same), w -> dx, through the pooling's argmax; i as conv2d
  RL_COUNT
} RtLibKind;

// RT_SPACE_LOCAL: a value of a batch-blocked region that lives in each
// thread's local rows (a block of them), not the arena: only
// rt_lib_rows, given those rows, runs a kernel with such a buffer.
enum { RT_SPACE_ARENA, RT_SPACE_STATE, RT_SPACE_LOCAL };

// One buffer of a library kernel: bytes from the start of the arena or
// the state, and its shape (RT_BATCH for the batch dimension).
typedef struct RtLibBuf {
  int32_t space;               // RT_SPACE_*
  int32_t ndim;
  int64_t offset;
  int64_t shape[RT_MAX_DIMS];
} RtLibBuf;

typedef struct RtLib {
  int32_t kind;                // RtLibKind
  int32_t nbufs;               // the operands, then the result: buf[nbufs - 1] (an update's last
                               // buffer is an operand: it has no result)
  RtLibBuf buf[RT_LIB_MAX_BUFS];
  int64_t i[8];                // integer settings, by kind (above)
  double f[6];                 // real settings, by kind
  int32_t aux;                 // the slot of run-time state it keeps for a gradient (a max
                               // pooling's argmax, a batchnorm's batch statistics, a dropout's
                               // mask), or -1
  int32_t aux_from;            // a gradient's: the slot its forward keeps, or -1 (recompute)
  int64_t aux_bytes;           // the slot's size at the program's largest batch
  int32_t loss;                // 1: the result is a term of the step's loss (the loss, or one of
                               // the losses whose weighted sum it is)
  double loss_weight;          // the term's weight in the step's loss (loss: 1)
  int32_t node;                // the graph node it computes (for messages only)
} RtLib;

// The name of a kind: "conv2d", "maxpool_grad", ... (the graph op's).
const char *rt_lib_name(int kind);
// Whether library kernel k may run on a block of the batch's rows
// (RtCalls.lib_rows): a softmax, log-softmax or layer normalization, or
// their input's gradient, over dimensions of one sample each; a
// convolution's forward; max pooling that keeps no argmax (outside
// training programs), average pooling, global average pooling.
bool rt_lib_rowwise(const RtLib *k);
// Elements of buffer b at batch B.
int64_t rt_lib_numel(const RtLibBuf *b, int64_t B);

// The slots of a training program's per-step scalars (KProgram.scalars),
// which the runtime writes before each step.
enum {
  KS_NEG_LR,         // -lr of this step
  KS_FIRST,          // 1 on the first step, else 0 (SGD's momentum buffer starts as g)
  KS_NEG_STEP_SIZE,  // Adam: -lr / (1 - beta1^t)
  KS_BC2_SQRT,       // Adam: sqrt(1 - beta2^t)
  KS_DECAY,          // AdamW: 1 - lr * weight_decay
  KS_APPLY,          // 1: apply the updates; 0: keep everything as it was (the loss is not finite)
  KS_NEG_CLR,        // Adagrad: -lr / (1 + (t - 1) * lr_decay)
  KS_COUNT
};

struct RtCalls;
// A batch-blocked region's function: its kernels, in order, on the batch's
// rows [lo, hi), with the calling thread's local rows (KRegion.local_bytes
// of them; NULL for a region of shared products).
typedef void (*RtRegionFn)(char *arena, char *state, int64_t B, int64_t lo, int64_t hi, const struct RtCalls *rt,
                           char *local);

// What compiled code calls back into; the runtime fills it in.
typedef struct RtCalls {
  void *ctx;             // passed back to parallel, sgemm, lib and tick
  // Runs fn over rows [0, extent) of dimension 0, split across threads.
  void (*parallel)(void *ctx, RtLoopFn fn, char *arena, char *state, int64_t B, int64_t extent);
  // Row-major C[M, N] = op(A) op(B) + beta C (cblas_sgemm with lda, ldb,
  // ldc of contiguous matrices, beta 0 or 1) through the GEMM's own
  // micro-kernels uk, which run its epilogue when they have one.
  void (*sgemm)(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *Bm, float beta,
                float *C, const RtGemmKernels *uk);
  // Runs library kernel k (a constant of the program) for batch B, then
  // its epilogue (NULL: none) over rows [0, the result's dimension 0), or
  // over each share of rows as soon as it is computed.
  void (*lib)(void *ctx, const struct RtLib *k, char *arena, char *state, int64_t B, RtLoopFn epilogue);
  // Called with i as kernel i of the program starts, and with nkernels
  // when the program ends (per-kernel timing for `nnc bench`); NULL: never.
  void (*tick)(void *ctx, int kernel);
  // Runs a batch-blocked region: fn over blocks of the batch's rows [lo,
  // hi) of at most `block` rows, split across threads, each block through
  // every kernel of the region in turn, with local_bytes of the thread's
  // own local rows. row_bytes: the most bytes one of its kernels touches
  // per row (a region of little work runs on one thread); rt: the calls
  // fn's kernels make (gemm_rows).
  void (*region)(void *ctx, RtRegionFn fn, char *arena, char *state, int64_t B, int64_t row_bytes, int64_t block,
                 int64_t local_bytes, const struct RtCalls *rt);
  // Rows [row0, row0 + rows) of C[M, N] = A op(B) + beta C, on the calling
  // thread (a product inside a region's block), through uk; A (M, K) and C
  // row-major, B (K, N), or (N, K) when tb.
  void (*gemm_rows)(void *ctx, int tb, int64_t N, int64_t K, const float *A, const float *Bm, float beta, float *C,
                    const RtGemmKernels *uk, int64_t row0, int64_t rows);
  // Library kernel k (one rt_lib_rowwise allows) on the batch's rows [lo,
  // hi), on the calling thread (inside a region's block, whose local rows
  // are local).
  void (*lib_rows)(void *ctx, const struct RtLib *k, char *arena, char *state, int64_t B, int64_t lo, int64_t hi,
                   char *local);
  // Runs a region of shared products: fn(arena, state, B, share, shares,
  // rt) for each share of [0, shares), one thread each; shares is 1 when
  // work (the products' multiply-adds) is too little to split.
  void (*shared)(void *ctx, RtRegionFn fn, char *arena, char *state, int64_t B, int64_t work,
                 const struct RtCalls *rt);
  // Share `share` of `shares` of sgemm's product, on the calling thread:
  // blocks of C's rows when it has more rows than columns, else of its
  // columns, the same for every product of this shape.
  void (*gemm_share)(void *ctx, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *Bm,
                     float beta, float *C, const RtGemmKernels *uk, int64_t share, int64_t shares);
} RtCalls;

// The compiled entry point: runs the whole program for batch B (1 <= B <=
// the program's max_batch). The caller has put the input and target into
// the arena at their offsets.
typedef void (*RtEntryFn)(char *arena, char *state, int64_t B, const RtCalls *rt);


//
// A compiled model as an artifact holds it (`nnc compile`)
//
// An artifact is one object file: each entry point's RtEntryFn, an
// RtArtifact that points at them, and the model's description, an
// RtModelInfo, stored as bytes (the layout is the same on every LP64
// little-endian target: x86-64 and aarch64). Names and arrays inside the
// description are offsets from its first byte. The runtime library
// (nncrt/) runs an artifact from these alone.

#define RT_ABI 5                       // bumped whenever anything below, or RtLib and its kinds, changes
#define RT_MODEL_MAGIC 0x4d434e4eu     // "NNCM"
#define RT_MAX_INPUTS 16
#define RT_MAX_TARGETS 8               // IR_MAX_TARGETS

enum { RT_ENTRY_FORWARD, RT_ENTRY_EVAL, RT_ENTRY_TRAIN, RT_ENTRY_COUNT };   // EntryKind's order
enum { RT_TARGET_NONE, RT_TARGET_CLASS, RT_TARGET_REAL };                  // int32 labels, floats
enum { RT_OPT_SGD, RT_OPT_ADAM, RT_OPT_ADAMW, RT_OPT_RMSPROP, RT_OPT_ADAGRAD };                            // OptimKind's order
enum { RT_INIT_ZEROS, RT_INIT_ONES, RT_INIT_CONSTANT, RT_INIT_NORMAL, RT_INIT_UNIFORM };   // InitKind's

// One persistent tensor (a parameter, a buffer, optimizer state), in the
// order of the model's graph, which is the order initializers draw in.
typedef struct RtTensorInfo {
  int64_t name;                // offset of its name ("linear_1.weight")
  int64_t offset;              // bytes from the start of the state
  int64_t numel;
  int64_t shape[RT_MAX_DIMS];
  int32_t ndim;
  int32_t init;                // RT_INIT_*
  double init_a, init_b;       // the initializer's settings (k_init_fill)
  int32_t optim_state;         // 1: optimizer state (momentum_buffer, exp_avg, exp_avg_sq)
  int32_t unused;
} RtTensorInfo;

// One entry point's program: where its inputs, target and output lie in
// its arena (-1: it has none there), and the run-time state slots its
// library kernels keep.
typedef struct RtEntryInfo {
  int32_t present;             // 0: the artifact has no such entry point
  int32_t naux;                // slots (RtLib.aux)
  int64_t min_batch;           // 2 where a training batchnorm has one value per channel and sample
  int64_t arena_bytes;
  int64_t input[RT_MAX_INPUTS];
  int64_t target[RT_MAX_TARGETS];   // each target's place, in declaration order
  int64_t output, scalars;     // output: the first output's
  int64_t aux_bytes;           // offset of int64_t[naux]: each slot's bytes at max_batch
  int64_t outputs;             // offset of int64_t[noutputs]: where each output lies in the arena (or -1)
} RtEntryInfo;

// One of a model's targets: what it holds, its values per sample, its name.
typedef struct RtTargetInfo {
  int32_t kind;                // RT_TARGET_CLASS or RT_TARGET_REAL
  int32_t nclasses;            // RT_TARGET_CLASS: labels in [0, nclasses)
  int64_t numel;               // values per sample (4 bytes each: int32 labels or floats)
  int64_t name;                // offset of its name
} RtTargetInfo;

// One of a model's outputs: its floats per sample and its name.
typedef struct RtOutputInfo {
  int64_t numel;
  int64_t name;                // offset of its name ("output" for a single unnamed one)
} RtOutputInfo;

typedef struct RtModelInfo {
  uint32_t magic;              // RT_MODEL_MAGIC
  uint32_t abi;                // RT_ABI
  int64_t size;                // bytes of the whole description
  int64_t name;                // offset of the model's name
  int64_t prefix;              // offset of its API's prefix (PREFIX_forward)
  int64_t version;             // offset of the nnc version that compiled it
  int64_t max_batch;
  int64_t state_bytes;
  int32_t ninputs, ntensors;
  int64_t input_numel[RT_MAX_INPUTS];   // floats per sample of each input, in declaration order
  int64_t input_name[RT_MAX_INPUTS];    // offsets of their names
  int64_t output_numel;        // floats per sample of every output, one after another
  int32_t noutputs;            // the model's outputs
  int32_t unused;
  int64_t outputs;             // offset of RtOutputInfo[noutputs], in the order of a sample's row
  int32_t target_kind;         // RT_TARGET_* of the first target (NONE: the model has none)
  int32_t nclasses;            // its RT_TARGET_CLASS labels lie in [0, nclasses)
  int64_t target_numel;        // values per sample of every target, one after another
  int64_t tensors;             // offset of RtTensorInfo[ntensors]
  RtEntryInfo entry[RT_ENTRY_COUNT];
  int32_t optimizer;           // RT_OPT_*
  int32_t normalized;          // 1: the embedded weights were trained on inputs standardized
  double mean, std;            // as (x - mean) / std, which the runtime then applies
  double beta1, beta2, weight_decay;   // the per-step scalars' settings (KS_*); with
                                       // RT_OPT_ADAGRAD, beta1 is its lr_decay
  uint64_t seed;               // the model's training seed
  uint64_t model_hash;         // of its weights' names and shapes, as checkpoints store it
  int64_t weights_bytes;       // the embedded weights' bytes: every tensor but optimizer state, in order
  int64_t input_bound[RT_MAX_INPUTS];   // an integer (i32) input's: its int32 values lie in [0, bound)
                                        // (an embedding's vocab); 0 for a float input
  int32_t ntargets;            // the model's targets: a sample's row of targets holds each one's
  int32_t unused2;             // values after the one before's
  RtTargetInfo targets[RT_MAX_TARGETS];
} RtModelInfo;

// What the object file exports to the runtime library: the description,
// the entry functions (NULL where absent) and the embedded weights (each
// tensor but optimizer state, which starts at zero, one after another in
// the tensors' order: weights_bytes; NULL when none were embedded).
typedef struct RtArtifact {
  const RtModelInfo *info;
  RtEntryFn entry[RT_ENTRY_COUNT];
  const void *weights;
} RtArtifact;

// Fills n floats in place by initializer kind (RT_INIT_*) with settings a
// and b, drawing from rng as k_init_* do: what `nnc train` and an
// artifact's init both call.
void k_init_fill(float *p, int64_t n, int kind, double a, double b, Rng *rng);


//
// runtime/pool.c
//

// Threads that split loops: the caller's and nthreads - 1 workers.
typedef struct RtPool RtPool;
RtPool *rt_pool_new(int nthreads);   // a thread that cannot start ends the process (nnc_fatal)
// The same, but NULL with the reason in err where a thread cannot start (or
// NNC_POOL_JITTER is malformed): for a library, which must not end its host.
RtPool *rt_pool_try_new(int nthreads, char *err, size_t errsz);
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
// Runs fn over [0, n) and returns when all of it is done: fn(arg, lo, hi)
// once per chunk, on whichever thread claimed the chunk. The chunks are
// fixed by n and the thread count alone (4 per thread; one element each
// when n <= 4 * threads), so a caller that keeps per-chunk results gets the
// same ones however the threads ran; scratch is the running thread's, or
// the chunk's own.
void rt_pool_run(RtPool *p, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg, int64_t n);
// The same in fewer chunks, but one per thread, where 4 per thread would
// have under grain elements each (for chunks so short that claiming them
// would cost more than the balance saves).
void rt_pool_run_grain(RtPool *p, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg, int64_t n,
                       int64_t grain);


//
// runtime/lib.c: the calls compiled code makes, and the library kernels
//

// What one executor keeps for the programs it runs: the pool, the scratch
// of library kernels split across it, the slots of run-time state library
// kernels keep (RtLib.aux), and the step's settings and results.
typedef struct RtContext {
  RtPool *pool;
  void **aux;                  // aux[slot], sized by the programs' aux_bytes
  int64_t *aux_cap;
  bool *aux_set;               // aux[slot] was written this step
  int naux;
  float **ws;                  // ws[s]: share s's buffer
  int64_t *ws_cap;
  int nws;
  float *dyt;                  // a convolution's dy with images moved inside
  int64_t dyt_cap;
  float *wu;                   // a convolution's weights unrolled (k_conv2d_unrolled)
  int64_t wu_cap;
  // The step (set by the executor before each run):
  bool training;               // training mode: batch statistics, dropout
  bool dropout;                // dropout and gaussian_noise apply in training
  Rng *rng;                    // dropout and gaussian_noise keys
  double lr;                   // the step's learning rate (updates run as library kernels)
  int64_t steps;               // the optimizer's t, this step included
  float *scalars;              // the program's per-step scalars (KS_*), or NULL
  int64_t first_sample;        // dropout and gaussian_noise draw as samples [first_sample,
                               // first_sample + B) of a larger batch would (one process's
                               // share of a data-parallel step; 0 otherwise)
  // What the step found:
  double loss;
  bool skip_updates;           // the loss is not finite: no updates this step
  void (*tick)(void *arg, int kernel);   // per-kernel timing, or NULL
  void *tick_arg;
  uint64_t region;             // the region running (a number no other region run has had): B's panels
                               // packed for one hold for it alone
} RtContext;

// A context on threads threads (its pool); free with rt_context_free.
RtContext *rt_context_new(int threads);
// The same, but NULL with the reason in err where its pool cannot start.
RtContext *rt_context_try_new(int threads, char *err, size_t errsz);
void rt_context_free(RtContext *c);
// Makes room for slot and its bytes (slots grow as programs need them).
void rt_context_reserve(RtContext *c, int slot, int64_t bytes);
// Resets what a step records: the slots written, the loss.
void rt_context_begin_step(RtContext *c);

// One step's settings, for rt_context_run.
typedef struct RtStep {
  bool training;                       // training mode (batch statistics, dropout, updates): a step of t
  bool dropout;                        // dropout applies in training
  double lr;                           // the step's learning rate
  double beta1, beta2, weight_decay;   // the optimizer's, for its per-step scalars
  double lr_decay;                     // Adagrad's
  float *scalars;                      // where the program reads its per-step scalars (KS_*), or NULL
} RtStep;

// Runs a compiled entry point once on c, as every executor of compiled
// code does: the step's settings set, *steps (the optimizer's t) counted
// up for a training step, the per-step scalars written (in double, rounded
// to float, as k_sgd_step and k_adam_step compute them), OpenBLAS kept on
// one thread, fn called; a training step whose loss is not finite made no
// update (the updates check it) and is not counted. Returns the loss.
double rt_context_run(RtContext *c, RtEntryFn fn, const RtCalls *calls, char *arena, char *state, int64_t B,
                      const RtStep *s, int64_t *steps);
// The per-step scalars k[KS_COUNT] of step `steps` (the optimizer's t) with
// s's settings, as rt_context_run writes them (the cuda backend writes
// them into device memory).
void rt_step_scalars(float *k, const RtStep *s, int64_t steps);
// The calls compiled code makes, bound to c.
RtCalls rt_context_calls(RtContext *c);
// Runs library kernel k for batch B on c's pool (what RtCalls.lib does).
void rt_lib_run(RtContext *c, const RtLib *k, char *arena, char *state, int64_t B, RtLoopFn epilogue);
// The same on rows [lo, hi) of the batch, on the calling thread, for a
// kernel rt_lib_rowwise allows (what RtCalls.lib_rows does).
void rt_lib_rows(RtContext *c, const RtLib *k, char *arena, char *state, int64_t B, int64_t lo, int64_t hi,
                 char *local);

//
// The kernels
//
// the reference kernels, one plain C function per graph op and
// direction. They run training directly in the `ref` backend and are the
// numeric oracle every faster backend is tested against, so each one is
// written to be obviously right first and reasonably fast second.
//
// Conventions, for every function below:
// - Data are float32, contiguous, row-major; images are NCHW. The comment
//   beside each argument gives its shape, as in `// (N,C,H,W)`.
// - A *_forward function overwrites its outputs.
// - A *_backward function ACCUMULATES (+=) into every gradient buffer it is
//   given, so a tensor used by several ops can sum the contributions of all
//   of them. Zero the gradient buffers once before the backward pass.
//   Passing NULL for a gradient means "not needed"; it is skipped.
// - Semantics are PyTorch's (torch.nn.functional and torch.optim with their
//   default arguments unless an argument says otherwise).
// - Reductions (sums, means, batch statistics, losses) accumulate in double.
// - Everything is single-threaded, except that OpenBLAS may use its threads
//   (a build without OpenBLAS has none: k_blas_sgemm).
// - Bad shapes or geometry are bugs in the caller: the kernel stops with
//   nnc_bug() (a message and abort()). Two errors can come from the user's
//   data or settings instead, and nnc_fatal() reports them with a hint and
//   exits with status 1: a class label outside [0, C) (naming the sample
//   and the label), and a training batchnorm with one value per channel.


//
// kernels.c: broadcasting elementwise ops, unary ops, matmul, softmax
//

#define K_MAX_DIMS 6

// A tensor's shape; outermost dimension first. ndim 0 is a scalar.
typedef struct KShape {
  int ndim;                  // 0..K_MAX_DIMS
  int64_t dim[K_MAX_DIMS];   // dim[0..ndim-1]; each >= 0
} KShape;

KShape k_shape(int ndim, const int64_t *dim);   // copies dim[0..ndim-1]
int64_t k_numel(const KShape *s);               // 1 for a scalar

// The numpy broadcast of a and b (shapes aligned at the right; a dimension
// of 1 stretches). Returns false, leaving *out unspecified, if they do not
// broadcast.
bool k_broadcast_shape(KShape *out, const KShape *a, const KShape *b);

typedef enum { K_ADD, K_SUB, K_MUL, K_DIV } KBinary;

// y = a op b, broadcasting a and b to y's shape, broadcast(as, bs).
// y may alias a or b only when that operand already has y's shape.
void k_binary_forward(KBinary op, float *y,         // broadcast(as, bs)
                      const float *a, const KShape *as,
                      const float *b, const KShape *bs);

// da += d(a op b)/da * dy summed down to a's shape; db likewise.
//   add: da += dy          db += dy
//   sub: da += dy          db += -dy
//   mul: da += dy * b      db += dy * a
//   div: da += dy / b      db += -dy * ((a / b) / b)   (PyTorch's form)
// dy has the broadcast shape of as and bs. da or db may be NULL.
void k_binary_backward(KBinary op, float *da, float *db,
                       const float *dy,             // broadcast(as, bs)
                       const float *a, const KShape *as,
                       const float *b, const KShape *bs);

// dst += src summed over the dimensions that broadcasting stretched, so
// the result has dst's shape. ds must broadcast to ss (ss = broadcast(ds, ss)).
void k_sum_to_shape(float *dst, const KShape *ds, const float *src, const KShape *ss);

// Indexing, on tensors seen as [outer, C, inner] around one axis.
// slice:   y[o, j, i] = x[o, start + j * step, i] for j < yc
// slice backward: dx[o, start + j * step, i] += dy[o, j, i] (dx zeroed: the rest stays 0)
// concat part: y[o, at + j, i] = x[o % xouter, j, i] for j < xc: one input of
//   a concat (xouter < outer: x lacks the batch dimension and repeats along it)
void k_slice_forward(float *y, const float *x, int64_t outer, int64_t xc, int64_t yc, int64_t inner,
                     int64_t start, int64_t step);
void k_slice_backward(float *dx, const float *dy, int64_t outer, int64_t xc, int64_t yc, int64_t inner,
                      int64_t start, int64_t step);
void k_concat_part(float *y, const float *x, int64_t outer, int64_t xouter, int64_t yc, int64_t xc,
                   int64_t inner, int64_t at);
// y[kept] += x[i] * scale over the axes of the bit mask axes, element by
// element in x's order (y zeroed; y holds x's shape without those axes).
void k_sum_axes(float *y, const float *x, const KShape *xs, unsigned axes, float scale);
// The max over the axes (y filled with -inf; v replaces y where v > y or v
// is NaN); first: -p for the first position p over the axes (row-major)
// where x equals y (first filled with -inf); max_grad: dx = g at each
// first maximum, 0 elsewhere (dx zeroed). y, first and g are shaped as x
// without those axes (or with them as 1: the same layout).
void k_max_axes(float *y, const float *x, const KShape *xs, unsigned axes);
void k_max_first(float *first, const float *x, const float *y, const KShape *xs, unsigned axes);
void k_max_grad(float *dx, const float *g, const float *first, const KShape *xs, unsigned axes);

// Unary elementwise ops over n elements; y may alias x. The backward rules:
//   neg:     dx += -dy
//   relu:    dx += dy where x > 0 (pass x or y = relu(x): x > 0 iff y > 0)
//   sigmoid: dx += dy * (1 - y) * y         from the output y
//   tanh:    dx += dy * (1 - y * y)         from the output y
//   exp:     dx += dy * y                   from the output y
//   log:     dx += dy / x                   from the input x
void k_neg_forward(float *y, const float *x, int64_t n);
void k_neg_backward(float *dx, const float *dy, int64_t n);
void k_relu_forward(float *y, const float *x, int64_t n);
void k_relu_backward(float *dx, const float *dy, const float *x_or_y, int64_t n);
void k_sigmoid_forward(float *y, const float *x, int64_t n);
void k_sigmoid_backward(float *dx, const float *dy, const float *y, int64_t n);
void k_tanh_forward(float *y, const float *x, int64_t n);
void k_tanh_backward(float *dx, const float *dy, const float *y, int64_t n);
void k_exp_forward(float *y, const float *x, int64_t n);
void k_exp_backward(float *dx, const float *dy, const float *y, int64_t n);
void k_log_forward(float *y, const float *x, int64_t n);
void k_log_backward(float *dx, const float *dy, const float *x, int64_t n);

// The activations (kernels_act.c), PyTorch's formulas, one kernel each way
// with the op in KAct. The backward kernels read the input x, but sqrt's
// reads its output y; dx += dy * f'(x), with PyTorch's values at the kinks:
// abs'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha, and clamp's 1 only
// strictly between the bounds (0 at a bound: torch 2.15's clamp_backward).
typedef enum {
  K_GELU,         // x (1 + erf(x / sqrt 2)) / 2
  K_GELU_TANH,    // x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
  K_LEAKY_RELU,   // x > 0 ? x : x * p0 (the slope)
  K_SILU,         // x / (1 + exp(-x))
  K_ELU,          // x > 0 ? x : p0 (exp(x) - 1) (p0 the alpha)
  K_SOFTPLUS,     // x p0 > p1 ? x : log1p(exp(x p0)) / p0 (beta, threshold)
  K_SQRT,
  K_ABS,
  K_CLAMP,        // min(max(x, p0), p1); a missing bound is an infinity
} KActKind;

typedef struct KAct {
  KActKind kind;
  float p0, p1;
} KAct;

#define K_SQRT1_2 0.70710678118654752440f     // 1 / sqrt(2)
#define K_GELU_BETA 0.79788456080286535588f   // sqrt(2 / pi)
#define K_GELU_KAPPA 0.044715f
#define K_GELU_PDF 0.39894228040143267794f    // 1 / sqrt(2 pi)

void k_act_forward(const KAct *a, float *y, const float *x, int64_t n);
void k_act_backward(const KAct *a, float *dx, const float *dy, const float *x_or_y, int64_t n);

// C = alpha * op(A) @ op(B) + beta * C through k_blas_sgemm, row-major.
// op(A) is (M,K): A is stored (M,K), or (K,M) when ta. op(B) is (K,N): B is
// stored (K,N), or (N,K) when tb. C is (M,N). With beta = 0, C's old
// contents are ignored (NaN included); beta = 1 accumulates.
void k_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
             float alpha, const float *A, const float *B, float beta, float *C);

// The BLAS (blas.c): C = alpha op(A) op(B) + beta C as cblas_sgemm has it,
// row-major, with leading dimensions lda, ldb, ldc (row strides as
// stored); beta = 0 ignores C's old contents. k_blas_sgemm is cblas_sgemm
// in a build with OpenBLAS (sizes must fit an int) and k_portable_sgemm
// in one without (NNC_NO_BLAS: CMake's -DNNC_BLAS=OFF); every caller in
// the runtime goes through it. k_portable_sgemm, plain C blocked for the
// caches and vectorized by the compiler, on the calling thread, is in
// every build, and is checked against cblas_sgemm where there is one.
void k_blas_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void k_portable_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// dst (cols, rows) = src (rows, cols) transposed.
void k_transpose(float *dst, const float *src, int64_t rows, int64_t cols);
// Rows [r0, r1) of src into columns [r0, r1) of dst: a share of
// k_transpose, whose shares may run on several threads at once.
void k_transpose_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t r0, int64_t r1);

// The same product through the cpu backend's GEMM (gemm.c): register tiles
// of AVX-512 (k_avx512_gemm) where the host has it and alpha = 1, beta = 0
// or 1; else k_blas_sgemm. Runs on the calling thread (OpenBLAS's own threads aside).
void k_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
            float alpha, const float *A, const float *B, float beta, float *C);
// With explicit leading dimensions (row strides) of A, B and C; alpha = 1.
void k_gemm_ld(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// The same blocked product over a set of micro-kernels: a GEMM's own,
// generated by the codegen (codegen.h) with its epilogue inside, or the
// runtime's. C is the block at row row0, column col0 of the whole product,
// which the epilogue indexes by. beta is 0 or 1 (accumulate).
void k_gemm_micro(const RtGemmKernels *uk, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t lda, const float *B, int64_t ldb, bool accumulate, float *C, int64_t ldc,
                  int64_t row0, int64_t col0);
// op(B) (K, N) packed in panels of tn columns: panel j is rows 0..K-1 of
// columns [j tn, j tn + tn), tn floats a row, zeros past column N; (N + tn
// - 1) / tn * tn * K floats in all. B is (K, N) row-major with row stride
// ldb, or (N, K) when tb.
void k_pack_panels(float *P, const float *B, bool tb, int64_t ldb, int64_t K, int64_t N, int64_t tn);
// k_gemm_micro's product for A not transposed and B packed by
// k_pack_panels with uk's tile_n: each tile reads its panel from one run of
// memory (B read in place, with rows 2 KB apart, keeps few of a tile's
// rows in L1).
void k_gemm_micro_panels(const RtGemmKernels *uk, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *P, bool accumulate, float *C, int64_t ldc, int64_t row0, int64_t col0);
// *buf, grown to at least n floats (its contents are not kept); *cap is
// its size. The kernels' scratch memory, reused from call to call.
float *k_grow(float **buf, int64_t *cap, int64_t n);

// The calling thread's scratch of one kind, at least n floats (contents
// not kept), freed when the thread exits: the GEMM's packing space, a
// convolution's weights of one tap, the im2col columns of the cpu
// backend's convolutions split across the pool, k_portable_sgemm's
// packed blocks of A and B, and the products of a convolution's taps.
// A region's products' B packed in panels, per thread: as many as a
// region has distinct B (vit's forward: 17; an LSTM's: 2), so that each is
// packed once per region run rather than once per block of rows.
#define K_PANEL_SETS 32
enum {
  K_SCRATCH_PACK, K_SCRATCH_BT, K_SCRATCH_CONV, K_SCRATCH_COLS, K_SCRATCH_BLAS_A, K_SCRATCH_BLAS_B, K_SCRATCH_TAPS,
  K_SCRATCH_LOCAL,             // a region's local rows (RtCalls.region)
  K_SCRATCH_PANELS,            // K_SCRATCH_PANELS + i, i < K_PANEL_SETS: a region's B packed in panels
  K_SCRATCH_KINDS = K_SCRATCH_PANELS + K_PANEL_SETS
};
float *k_thread_scratch(int kind, int64_t n);

// y = a @ b for each of `batch` matrices a, with one b shared by all: the
// IR's a[..., M, K] @ b[K, N] with the leading dims of a folded into batch.
//   a: (batch,M,K), or (batch,K,M) when ta (each matrix transposed)
//   b: (K,N), or (N,K) when tb
//   y: (batch,M,N)
void k_matmul_forward(float *y, const float *a, const float *b,
                      int64_t batch, int64_t M, int64_t K, int64_t N, bool ta, bool tb);
// da (a's layout) += dy @ op(b)^T; db (b's layout) += sum over the batch of
// op(a)^T @ dy. dy: (batch,M,N). da or db may be NULL.
void k_matmul_backward(float *da, float *db, const float *dy,
                       const float *a, const float *b,
                       int64_t batch, int64_t M, int64_t K, int64_t N, bool ta, bool tb);

// softmax and log_softmax over one axis of a tensor viewed as
// (outer, C, inner): PyTorch's dim=1 of (N,C) is (N, C, 1) and of (N,C,H,W)
// is (N, C, H*W); any other axis folds the same way. Numerically stable
// (the maximum is subtracted first). y may alias x.
void k_softmax_forward(float *y, const float *x, int64_t outer, int64_t C, int64_t inner);
// dx += y * (dy - sum_c(dy * y)), from the output y.
void k_softmax_backward(float *dx, const float *dy, const float *y,
                        int64_t outer, int64_t C, int64_t inner);
void k_log_softmax_forward(float *y, const float *x, int64_t outer, int64_t C, int64_t inner);
// dx += dy - exp(y) * sum_c(dy), from the output y.
void k_log_softmax_backward(float *dx, const float *dy, const float *y,
                            int64_t outer, int64_t C, int64_t inner);

// Embedding (PyTorch's nn.Embedding): n indexes into a table w (vocab,dim).
// The index of the first element outside [0, vocab), or -1 when every one
// is inside: nothing is read or written for a batch that holds one.
int64_t k_embedding_check(const int32_t *idx, int64_t n, int64_t vocab);
// y (n,dim) = the rows of w the indexes name; every index in [0, vocab).
void k_embedding_forward(float *y, const float *w, const int32_t *idx, int64_t n, int64_t dim);
// dw (vocab,dim) += each row of dy (n,dim) at its index, columns [j0, j1)
// only, the indexes taken in order: the same sums in the same order however
// the columns are split.
void k_embedding_backward(float *dw, const float *dy, const int32_t *idx, int64_t n, int64_t dim,
                          int64_t j0, int64_t j1);
// Layer normalization of `rows` rows of D values each: y = (x - mean) /
// sqrt(var + eps) with the biased variance, as PyTorch's F.layer_norm
// without weight and bias; the statistics in double, over each row in
// order. y may alias x.
void k_layernorm_forward(float *y, const float *x, int64_t rows, int64_t D, double eps);
// dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = the
// normalized x, its statistics recomputed from x (dx is written, not added to).
void k_layernorm_backward(float *dx, const float *dy, const float *x, int64_t rows, int64_t D, double eps);
// softmax and the layer normalization (forward and backward) in float, in
// vectors (kernels_fast.c): the cpu backend's. (softmax's gradient stays
// the reference's: its difference dy - dot cancels, and the dot in double
// is cheap beside the exps.)
void k_softmax_fast(float *y, const float *x, int64_t outer, int64_t C, int64_t inner);
void k_layernorm_fast(float *y, const float *x, int64_t rows, int64_t D, double eps);
void k_layernorm_backward_fast(float *dx, const float *dy, const float *x, int64_t rows, int64_t D, double eps);

// y = x with its dimensions reordered: dimension i of y is dimension
// order[i] of x (xs: x's shape; y's is xs permuted).
void k_permute(float *y, const float *x, const KShape *xs, const int64_t *order);

// y[..., M, N] = op(a) @ op(b) for each of the broadcast leading dimensions
// (numpy's rule, shapes aligned at the right; a dimension of 1 or one that
// is absent stretches). as, bs: the operands' shapes as stored, a (..., M, K)
// or (..., K, M) when ta, b (..., K, N) or (..., N, K) when tb; ys: y's
// shape. Sums in double, in order of K.
void k_batch_matmul(float *y, const KShape *ys, const float *a, const KShape *as, bool ta,
                    const float *b, const KShape *bs, bool tb);

//
// kernels_conv.c: convolution and pooling
//

// The output size along one axis for a window of k taps `dil` apart, moved
// `stride` at a time over the input padded by `pad` on both sides (floor
// mode, as PyTorch by default): (in + 2*pad - dil*(k-1) - 1) / stride + 1.
// Returns a value < 1 when the window does not fit.
int64_t k_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil);

// The geometry of a 2-D convolution. Output size: OH = k_out_size(H, KH,
// sh, ph, dh), OW = k_out_size(W, KW, sw, pw, dw).
typedef struct KConv2d {
  int64_t N, C, H, W;   // input x: (N,C,H,W)
  int64_t O, KH, KW;    // weight w: (O,C,KH,KW); bias (O)
  int64_t sh, sw;       // stride, >= 1
  int64_t ph, pw;       // zero padding on each side, >= 0
  int64_t dh, dw;       // dilation, >= 1
  int64_t G;            // groups of C/G inputs and O/G outputs, w (O,C/G,KH,KW); 0 or 1: one
} KConv2d;

// y = conv2d(x, w) + bias, as torch.nn.functional.conv2d (cross-correlation,
// with groups). bias may be NULL. Computed as im2col + sgemm per image (per
// group: one product of each group's cols).
void k_conv2d_forward(float *y,          // (N,O,OH,OW)
                      const float *x,    // (N,C,H,W)
                      const float *w,    // (O,C/G,KH,KW)
                      const float *bias, // (O) or NULL
                      const KConv2d *g);
// dx += d/dx, dw += d/dw, dbias += d/dbias; any of them may be NULL.
void k_conv2d_backward(float *dx,        // (N,C,H,W)
                       float *dw,        // (O,C/G,KH,KW)
                       float *dbias,     // (O)
                       const float *dy,  // (N,O,OH,OW)
                       const float *x,   // (N,C,H,W)
                       const float *w,   // (O,C/G,KH,KW)
                       const KConv2d *g);
// The cpu backend's: the same with the caller's scratch, ws:
// k_conv2d_scratch(g) floats, the caller's GEMM (NULL: the cpu backend's
// k_gemm), and im2col and col2im by AVX-512 rows for stride 1 where the
// host has them (the same bytes as the plain loops). The two above are the
// reference, plain C with k_sgemm and one buffer of their own, reused
// from call to call, so they must not run on two threads at once; these
// may.
typedef void (*KGemmFn)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        const float *B, float beta, float *C);
int64_t k_conv2d_scratch(const KConv2d *g);
// Whether the cpu backend's convolution of g is one product with its
// weights unrolled over planes smaller than the window (each call builds
// them, however few its images).
bool k_conv2d_unrolled(const KConv2d *g);
// Its pieces, for callers that unroll the weights once for many images or
// across threads: wu (O*OH*OW, C*H*W), k_conv2d_unrolled_size(g) floats,
// wu[(o, p), (c, q)] = w[o, c, the tap by which output p reads input q]
// or 0; k_conv2d_unroll_weights writes the rows of output channels [o0,
// o1). The forward y = x @ wu^T (+ bias), the input gradient dx += dy @ wu
// (x, y, dx, dy as (N, C*H*W) and (N, O*OH*OW) matrices).
int64_t k_conv2d_unrolled_size(const KConv2d *g);
void k_conv2d_unroll_weights(float *wu, const float *w, const KConv2d *g, int64_t o0, int64_t o1);
void k_conv2d_forward_unrolled(float *y, const float *x, const float *wu, const float *bias, const KConv2d *g,
                               KGemmFn gemm);
void k_conv2d_grad_input_unrolled(float *dx, const float *dy, const float *wu, const KConv2d *g, KGemmFn gemm);
void k_conv2d_forward_ws(float *y, const float *x, const float *w, const float *bias, const KConv2d *g, float *ws,
                         KGemmFn gemm);
void k_conv2d_backward_ws(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w,
                          const KConv2d *g, float *ws, KGemmFn gemm);
// Whether pass (0 the forward, 1 dx, 2 dw) of g, as k_conv2d_forward_ws
// and k_conv2d_backward_ws run it without a GEMM of the caller's, goes
// image by image through scratch that does not grow with g.N (the row
// tiles of conv_avx512.c, which pack the weights once a call): callers
// then pass many images at once.
bool k_conv2d_by_image(const KConv2d *g, int pass);
// A weight gradient split by input channel rather than by image, for when
// there are few output positions (deep layers) and so little to sum per
// image: k_conv2d_dy_t writes dy (N,O,OH,OW) into dyt (N*OH*OW, O) (for an
// unrolled g, k_conv2d_unrolled, into (O*OH*OW, N)); then
// dw[:, c0*KH*KW .. c1*KH*KW) = that block of the gradient (overwritten,
// not accumulated), with ws (c1-c0)*KH*KW*N*OH*OW floats of scratch. Disjoint channel ranges may run on separate threads.
// The cpu backend's, as the _ws functions (with k_gemm); one group only (G <= 1).
void k_conv2d_dy_t(float *dyt, const float *dy, const KConv2d *g);
void k_conv2d_grad_weight_channels(float *dw, const float *dyt, const float *x, const KConv2d *g, int64_t c0,
                                   int64_t c1, float *ws);
// The weight gradient of a convolution whose output's gradient is dy
// (N,O,PP) routed through the argmax (N,O,PP) of a max pooling of the
// output (indexes into its OH*OW plane; -1: none): dw += sum over (n, o, q)
// of dy[n,o,q] times the window of x that output argmax[n,o,q] reads. The
// dense gradient is zero wherever no window chose an output, so this is
// the dense weight gradient of the pooling's gradient, with a quarter of
// its products for 2x2 windows (fewer still where dy is zero: those are
// skipped). ws: k_conv2d_pooled_scratch(g, PP) floats.
int64_t k_conv2d_pooled_scratch(const KConv2d *g, int64_t PP);
void k_conv2d_grad_weight_pooled(float *dw,              // (O,C/G,KH,KW), added to
                                 const float *dy,        // (N,O,PP)
                                 const int32_t *argmax,  // (N,O,PP)
                                 int64_t PP, const float *x, const KConv2d *g, float *ws);
// The input gradient the same way: dx += col2im of each nonzero pooled
// gradient times its output channel's weights, at the window of the output
// its argmax names (the dense input gradient of the pooling's gradient).
// ws: k_conv2d_pooled_input_scratch(g, PP) floats.
int64_t k_conv2d_pooled_input_scratch(const KConv2d *g, int64_t PP);
void k_conv2d_grad_input_pooled(float *dx,              // (N,C,H,W), added to
                                const float *dy,        // (N,O,PP)
                                const int32_t *argmax,  // (N,O,PP)
                                int64_t PP, const float *w, const KConv2d *g, float *ws);
// The outputs ow in [*lo, *hi) whose tap kw reads inside an input row: 0 <=
// ow*sw - pw + kw*dw < W, for OW outputs (im2col's, the reference's and the
// fast path's).
static inline void k_conv_tap_span(const KConv2d *g, int64_t kw, int64_t OW, int64_t *lo, int64_t *hi) {
  int64_t off = kw * g->dw - g->pw;   // iw = ow*sw + off
  int64_t a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
  int64_t b = g->W - off <= 0 ? 0 : (g->W - off + g->sw - 1) / g->sw;
  *lo = a < OW ? a : OW;
  *hi = b < *lo ? *lo : b > OW ? OW : b;
}

// The geometry of a 2-D pooling window. Output size as for KConv2d.
typedef struct KPool2d {
  int64_t N, C, H, W;   // input x: (N,C,H,W)
  int64_t kh, kw;       // window size, >= 1
  int64_t sh, sw;       // stride, >= 1
  int64_t ph, pw;       // padding on each side, >= 0
  int64_t dh, dw;       // dilation, >= 1; avgpool requires 1 (as PyTorch has none)
} KPool2d;

// Max pooling; padding counts as -inf. The first maximum in the window (in
// row-major order) wins a tie, and a NaN wins over any number, as in
// PyTorch. argmax (may be NULL, e.g. for inference) receives the index of
// the chosen element within its (H,W) plane, ih*W + iw; a window that holds
// no input element at all gives y = -inf and argmax = -1.
void k_maxpool2d_forward(float *y,         // (N,C,OH,OW)
                         int32_t *argmax,  // (N,C,OH,OW) or NULL
                         const float *x,   // (N,C,H,W)
                         const KPool2d *g);
// The cpu backend's: the same bytes, through AVX-512 kernels where the host
// has them, else AVX2 ones (2x2 windows; planes of up to 1024 values, 16 or
// 8 at a time).
void k_maxpool2d_forward_fast(float *y, int32_t *argmax, const float *x, const KPool2d *g);
// dx[argmax] += dy: the gradient goes to the element the forward chose.
void k_maxpool2d_backward(float *dx,            // (N,C,H,W)
                          const float *dy,      // (N,C,OH,OW)
                          const int32_t *argmax,// (N,C,OH,OW), from the forward
                          const KPool2d *g);
// dx = the gradient through argmax (all of dx written: zeros where no
// window's argmax lies), on AVX-512 hosts by whole rows for 2x2 windows
// of stride 2, 8 outputs a row or more; elsewhere dx zeroed, then
// k_maxpool2d_backward. The
// reference's bytes (tests/kernels/test_pool.c).
void k_maxpool2d_backward_fast(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g);

// Average pooling with count_include_pad = true (PyTorch's default): the
// divisor is the window's size including padded positions.
void k_avgpool2d_forward(float *y,         // (N,C,OH,OW)
                         const float *x,   // (N,C,H,W)
                         const KPool2d *g);
void k_avgpool2d_backward(float *dx,        // (N,C,H,W)
                          const float *dy,  // (N,C,OH,OW)
                          const KPool2d *g);
// The cpu backend's: windows that tile the plane (stride = window, no
// padding or dilation: LeNet's avgpool(2)) row by row, else the
// reference's loop; the same bytes.
void k_avgpool2d_backward_fast(float *dx, const float *dy, const KPool2d *g);

// Global average pooling: the mean over each (H,W) plane; HW = H*W.
void k_global_avgpool_forward(float *y,        // (N,C), same as (N,C,1,1)
                              const float *x,  // (N,C,H,W)
                              int64_t N, int64_t C, int64_t HW);
void k_global_avgpool_backward(float *dx,       // (N,C,H,W)
                               const float *dy, // (N,C)
                               int64_t N, int64_t C, int64_t HW);

//
// kernels_bn.c: batchnorm; kernels_train.c: dropout, losses, optimizers, initializers
//

// Batch normalization over (N,C) (pass HW = 1) or (N,C,H,W) (HW = H*W);
// statistics are per channel over n = N*HW values. gamma and beta may be
// NULL, meaning 1 and 0 (affine = false).
//
// Training: normalizes with the batch mean and the biased variance, saves
// mean and invstd = 1/sqrt(var + eps) for the backward, and updates the
// running statistics in place: running = (1-momentum)*running +
// momentum*batch_stat, with the unbiased variance var*n/(n-1) for
// running_var, as PyTorch. n must be > 1: like PyTorch, n = 1 is refused
// (with nnc_fatal(), since a batch of one sample is the usual cause).
void k_batchnorm_forward(float *y,               // (N,C,HW)
                         float *mean,            // (C) out: batch mean
                         float *invstd,          // (C) out: 1/sqrt(var+eps)
                         float *running_mean,    // (C) in/out
                         float *running_var,     // (C) in/out
                         const float *x,         // (N,C,HW)
                         const float *gamma,     // (C) or NULL
                         const float *beta,      // (C) or NULL
                         int64_t N, int64_t C, int64_t HW, float eps, float momentum);
// The batch mean and invstd of x, exactly as k_batchnorm_forward computes
// them, and nothing else: what a gradient needs when its forward's were not
// kept.
void k_batchnorm_batch_stats(float *mean, float *invstd, const float *x, int64_t N, int64_t C, int64_t HW,
                             float eps);
// Evaluation: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
void k_batchnorm_forward_eval(float *y,             // (N,C,HW)
                              const float *x,       // (N,C,HW)
                              const float *gamma,   // (C) or NULL
                              const float *beta,    // (C) or NULL
                              const float *running_mean, // (C)
                              const float *running_var,  // (C)
                              int64_t N, int64_t C, int64_t HW, float eps);
// The training-mode gradient, with xhat = (x - mean) * invstd:
//   dbeta += sum(dy), dgamma += sum(dy * xhat),
//   dx += gamma * invstd / n * (n*dy - sum(dy) - xhat * sum(dy * xhat)).
void k_batchnorm_backward(float *dx,            // (N,C,HW) or NULL
                          float *dgamma,        // (C) or NULL
                          float *dbeta,         // (C) or NULL
                          const float *dy,      // (N,C,HW)
                          const float *x,       // (N,C,HW)
                          const float *mean,    // (C), from the forward
                          const float *invstd,  // (C), from the forward
                          const float *gamma,   // (C) or NULL
                          int64_t N, int64_t C, int64_t HW);
// The three above on channels [c0, c1) only (the same arguments; each
// channel's work is independent of the others', so threads may take
// disjoint ranges).
void k_batchnorm_forward_range(float *y, float *mean, float *invstd, float *running_mean, float *running_var,
                               const float *x, const float *gamma, const float *beta, int64_t N, int64_t C,
                               int64_t HW, float eps, float momentum, int64_t c0, int64_t c1);
void k_batchnorm_forward_eval_range(float *y, const float *x, const float *gamma, const float *beta,
                                    const float *running_mean, const float *running_var, int64_t N, int64_t C,
                                    int64_t HW, float eps, int64_t c0, int64_t c1);
void k_batchnorm_backward_range(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                const float *mean, const float *invstd, const float *gamma, int64_t N, int64_t C,
                                int64_t HW, int64_t c0, int64_t c1);

// Inverted dropout: keeps each element with probability 1-p and scales the
// kept ones by k_dropout_scale(p) = 1/(1-p). The mask of one call is a
// function of a 64-bit key and each element's index: element i (counted
// from the call's first, at `first` of the whole tensor) is kept iff
// u >= p, with u = k_dropout_uniform(key, first + i) in [0, 1) (24 bits of
// a hash), so elements need no order and any share of a tensor can be
// drawn on its own, on any thread, with the same result. k_dropout_key
// draws the key of one call from rng (two rng_u32), except for p = 0 (the
// identity) and p >= 1 (zeros), which draw nothing and need no key.
// mask[i] is 1 if kept. y may alias x.
float k_dropout_scale(float p);     // 1/(1-p); 0 for p >= 1
uint64_t k_dropout_key(float p, Rng *rng);
float k_dropout_uniform(uint64_t key, int64_t index);
void k_dropout_forward(float *y,            // (n)
                       uint8_t *mask,       // (n) out: 1 kept, 0 dropped
                       const float *x,      // (n)
                       int64_t n, float p, uint64_t key, int64_t first);
// Dropout's hash of index i under key: splitmix64's output function on
// z = key + (i + 1) * K_DROPOUT_GOLDEN, then z ^= z >> 30, z *= K_DROPOUT_MIX1,
// z ^= z >> 27, z *= K_DROPOUT_MIX2, z ^= z >> 31 (kernels_train.c, and in
// vectors k_avx512_dropout and k_avx2_dropout).
#define K_DROPOUT_GOLDEN 0x9e3779b97f4a7c15ULL
#define K_DROPOUT_MIX1 0xbf58476d1ce4e5b9ULL
#define K_DROPOUT_MIX2 0x94d049bb133111ebULL
// The cpu backend's: k_avx512_dropout on AVX-512 hosts (about five times
// faster: the hash's 64-bit products in vectors), k_avx2_dropout on AVX2
// ones, the same bytes.
void k_dropout_forward_fast(float *y, uint8_t *mask, const float *x, int64_t n, float p, uint64_t key,
                            int64_t first);
// k_dropout_forward's loop for 0 < p, with scale k_dropout_scale(p) and
// least the smallest 24-bit draw that keeps an element, ceil(p * 2^24).
void k_dropout_forward_tail(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                            uint64_t key, int64_t first);
// dx += dy * mask * k_dropout_scale(p).
void k_dropout_backward(float *dx, const float *dy, const uint8_t *mask, int64_t n, float p);
// Gaussian noise: y = x + std * z, z ~ N(0, 1) by Box-Muller from two
// uniforms of dropout's hash, u1 = (24 bits + 1) / 2^24 in (0, 1] and u2
// in [0, 1), of indexes 2 (first + i) and 2 (first + i) + 1:
// z = sqrtf(-2 logf(u1)) * cosf(2 pi u2), in float (codegen/cuda_lib.c
// writes the same formula). k_noise_key draws the key of one call (two
// rng_u32) for std > 0; std = 0 is the identity and draws nothing. y may
// alias x.
uint64_t k_noise_key(float std, Rng *rng);
float k_noise_normal(uint64_t key, int64_t index);
void k_noise_forward(float *y, const float *x, int64_t n, float std, uint64_t key, int64_t first);

// Losses with mean reduction (PyTorch's default). Each forward returns the
// scalar loss, accumulated in double. Each backward takes g, the gradient
// of the final objective with respect to that scalar (1 when the loss is
// the objective), and accumulates into the input gradients.
//
// Class labels are int32 in [0, C); any other value is reported with
// nnc_fatal() (exit status 1), naming the sample and the label.

// cross_entropy = mean_i(logsumexp(logits[i,:]) - logits[i, label_i]).
float k_cross_entropy_forward(const float *logits,    // (N,C)
                              const int32_t *labels,  // (N)
                              int64_t N, int64_t C);
// dlogits += g/N * (softmax(logits) - onehot(labels)).
void k_cross_entropy_backward(float *dlogits,         // (N,C)
                              float g,
                              const float *logits,    // (N,C)
                              const int32_t *labels,  // (N)
                              int64_t N, int64_t C);
// With label smoothing e in [0, 1), as PyTorch's
// cross_entropy(label_smoothing = e): each sample's target is
// (1 - e)·onehot + e/C, so its loss is
// (1 - e)·(lse - logits[label]) + e·(lse - mean_c logits[c]) and its
// gradient softmax - (1 - e)·onehot - e/C. e = 0 is the functions above.
float k_cross_entropy_smooth_forward(const float *logits, const int32_t *labels, int64_t N, int64_t C,
                                     double smoothing);
void k_cross_entropy_smooth_backward(float *dlogits, float g, const float *logits, const int32_t *labels,
                                     int64_t N, int64_t C, double smoothing);
// nll = -mean_i(logp[i, label_i]).
float k_nll_forward(const float *logp, const int32_t *labels, int64_t N, int64_t C);
// dlogp[i, label_i] += -g/N.
void k_nll_backward(float *dlogp, float g, const int32_t *labels, int64_t N, int64_t C);

// For the losses of two same-shaped tensors (n elements each) the backward
// also gives the gradient for the target, which may be NULL (it usually is).
// mse = mean((x - t)^2);  dx += g * 2/n * (x - t), dt -= the same.
float k_mse_forward(const float *x, const float *t, int64_t n);
void k_mse_backward(float *dx, float *dt, float g, const float *x, const float *t, int64_t n);
// l1 = mean(|x - t|);  dx += g/n * sign(x - t), with sign(0) = 0; dt -= the same.
float k_l1_forward(const float *x, const float *t, int64_t n);
void k_l1_backward(float *dx, float *dt, float g, const float *x, const float *t, int64_t n);
// bce_with_logits = mean(max(x,0) - x*t + log(1 + exp(-|x|))), t in [0, 1];
// dx += g/n * (sigmoid(x) - t), dt += g/n * -x.
float k_bce_with_logits_forward(const float *x, const float *t, int64_t n);
void k_bce_with_logits_backward(float *dx, float *dt, float g, const float *x, const float *t,
                                int64_t n);

// Optimizers update one parameter tensor of n elements in place, with the
// formulas and the float operation order of torch.optim's single-tensor
// code, so results agree with PyTorch's CPU float results to the last bits
// as far as possible. Where PyTorch's vectorized CPU code fuses a multiply
// and an add (Tensor.add(other, alpha=...), lerp) the kernels call fmaf();
// elsewhere kernels_train.c tells the compiler not to fuse on its own.
// Hyperparameters are double, as Python floats are. t is the step number,
// counting from 1 on the first update.

// torch.optim.SGD. With weight decay g' = g + weight_decay*p (coupled). With
// momentum, buf = g' on the first step (t == 1, PyTorch's "buffer is None";
// not (1-dampening)*g') and buf = momentum*buf + (1-dampening)*g' after;
// then the step direction is g' + momentum*buf with nesterov, else buf.
// p -= lr * direction. buf (n) may be NULL when momentum == 0. PyTorch
// allows nesterov only with momentum > 0 and dampening == 0.
typedef struct KSgd {
  double lr;
  double momentum;       // 0: plain SGD
  double dampening;
  double weight_decay;   // L2 penalty added to the gradient
  bool nesterov;
} KSgd;
void k_sgd_step(float *p,          // (n) in/out
                float *buf,        // (n) in/out momentum buffer, or NULL
                const float *g,    // (n)
                int64_t n, const KSgd *o, int64_t t);

// torch.optim.Adam (decoupled = false) and torch.optim.AdamW (decoupled =
// true), amsgrad = false. Per step t:
//   AdamW only: p *= 1 - lr*weight_decay
//   Adam only:  g' = g + weight_decay*p      (else g' = g)
//   m = lerp(m, g', 1-beta1);  v = v*beta2 + (1-beta2)*g'*g'
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p += (-lr / (1 - beta1^t)) * m / denom
// m and v (n each) start at zero.
typedef struct KAdam {
  double lr;
  double beta1, beta2;
  double eps;
  double weight_decay;   // Adam: L2 added to g; AdamW: decoupled decay of p
  bool decoupled;        // true: AdamW
} KAdam;
void k_adam_step(float *p,         // (n) in/out
                 float *m,         // (n) in/out first moment
                 float *v,         // (n) in/out second moment
                 const float *g,   // (n)
                 int64_t n, const KAdam *o, int64_t t);

// torch.optim.RMSprop. Per step:
//   g' = g + weight_decay*p
//   sq = sq*alpha + (1-alpha)*g'*g'
//   centered: ga = lerp(ga, g', 1-alpha); avg = sqrt(sq - ga*ga) + eps
//   else:     avg = sqrt(sq) + eps
//   momentum > 0: buf = buf*momentum + g'/avg; p -= lr*buf
//   else:         p += -lr*g'/avg
// sq, buf and ga (n each) start at zero; buf is NULL unless momentum > 0,
// ga unless centered.
typedef struct KRmsprop {
  double lr;
  double alpha;
  double eps;
  double weight_decay;
  double momentum;
  bool centered;
} KRmsprop;
void k_rmsprop_step(float *p,           // (n) in/out
                    float *sq,          // (n) in/out square_avg
                    float *buf,         // (n) in/out momentum_buffer, or NULL
                    float *ga,          // (n) in/out grad_avg, or NULL
                    const float *g,     // (n)
                    int64_t n, const KRmsprop *o);

// torch.optim.Adagrad. Per step t:
//   g' = g + weight_decay*p;  clr = lr / (1 + (t-1)*lr_decay)
//   sum = sum + g'*g';  p += -clr*g' / (sqrt(sum) + eps)
// sum (n) starts at initial_accumulator_value.
typedef struct KAdagrad {
  double lr;
  double lr_decay;
  double weight_decay;
  double eps;
} KAdagrad;
void k_adagrad_step(float *p,          // (n) in/out
                    float *sum,        // (n) in/out
                    const float *g,    // (n)
                    int64_t n, const KAdagrad *o, int64_t t);
// Adagrad's -clr of step t, in double as Python computes it, rounded.
float k_adagrad_neg_clr(double lr, double lr_decay, int64_t t);

// Initializers fill n floats in place; the random ones draw one number per
// element, in order, from rng.
void k_init_zeros(float *p, int64_t n);
void k_init_ones(float *p, int64_t n);
void k_init_constant(float *p, int64_t n, float value);
// U(lo, hi): lo + (hi - lo) * rng_uniformf(rng).
void k_init_uniform(float *p, int64_t n, float lo, float hi, Rng *rng);
// N(mean, std^2): mean + std * rng_normal(rng).
void k_init_normal(float *p, int64_t n, float mean, float std, Rng *rng);

// PyTorch's default bounds. fan_in is the number of inputs each output
// sums over: in_features for a linear layer, C*KH*KW for a convolution.
// kaiming_uniform(a) draws U(-bound, bound) with bound = gain * sqrt(3/fan_in),
// gain = sqrt(2 / (1 + a^2)); nn.Linear and nn.Conv2d use a = sqrt(5), which
// makes the bound 1/sqrt(fan_in). Their bias bound is 1/sqrt(fan_in) (0 when
// fan_in is 0).
double k_kaiming_uniform_bound(int64_t fan_in, double a);
double k_default_weight_bound(int64_t fan_in);   // kaiming_uniform with a = sqrt(5)
double k_default_bias_bound(int64_t fan_in);

//
// fast_avx512.c: the cpu backend's AVX-512 fast paths
//
// Faster versions of parts of the kernels above, for the cpu backend
// alone: the GEMM driver (gemm.c) and the cpu backend's variants in
// kernels_conv.c call them where k_avx512() says the host has AVX-512;
// the reference kernels never do. Each is checked against the reference
// beside it (tests/kernels/test_avx512.c, skipped on other hosts): the
// same bytes where the work is copies and comparisons, within rounding for
// the GEMM. They exist on every build; where the compiler cannot emit
// AVX-512, k_avx512() is false and they stop with nnc_bug().

// The host runs AVX-512 (F, VL, BW, DQ) and NNC_NO_AVX512 is not set.
bool k_avx512(void);
// k_avx512(), on units 256 bits wide that run a 512-bit instruction in two
// halves (AMD Zen 4): there AVX2 code does as many FLOPs a cycle.
bool k_avx512_halves(void);
// Micro-kernels for k_gemm_micro (tile 8 x 32, dot 4 x 4, row 1 x 8), as
// k_gemm takes them. Reference: k_sgemm.
extern const RtGemmKernels k_avx512_gemm;
// dst (16 rows, ldd apart) = the transpose of src (16 rows of 16, lds
// apart): packing B for k_gemm_micro. Reference: the plain copy.
void k_avx512_transpose16(float *dst, int64_t ldd, const float *src, int64_t lds);
// im2col and col2im of a stride-1 convolution with OH x OW outputs, one
// image, rows of col ld floats apart (k_conv2d_forward_ws and
// k_conv2d_backward_ws take them). Reference: the same convolutions'
// plain loops, which k_conv2d_forward and k_conv2d_backward take.
void k_avx512_im2col_s1(float *col,           // (C*KH*KW, ld)
                        const float *x,       // (C,H,W)
                        const KConv2d *g, int64_t OH, int64_t OW, int64_t ld);
void k_avx512_col2im_add_s1(float *dx,        // (C,H,W)
                            const float *col, // (C*KH*KW, ld)
                            const KConv2d *g, int64_t OH, int64_t OW, int64_t ld);
// Max pooling with 2x2 windows, stride 2, no padding; and of the 16 planes
// nc..nc+15 of x at once (planes of H*W values; xt: 16*H*W floats of
// scratch). Output sizes OH x OW. k_maxpool2d_forward_fast takes them.
// Reference: k_maxpool2d_forward.
void k_avx512_maxpool2x2(float *y,         // (N,C,OH,OW)
                         int32_t *argmax,  // (N,C,OH,OW) or NULL
                         const float *x,   // (N,C,H,W)
                         const KPool2d *g, int64_t OH, int64_t OW);
void k_avx512_maxpool_planes16(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH,
                               int64_t OW, int64_t nc, float *xt);
// The gradient of max pooling with 2x2 windows, stride 2, no padding,
// through the forward's argmax: writes all of dx (no zeroing first).
// k_maxpool2d_backward_fast takes it. Reference: k_maxpool2d_backward
// into a zeroed dx.
void k_avx512_maxpool2x2_backward(float *dx, const float *dy, const int32_t *argmax, const KPool2d *g,
                                  int64_t OH, int64_t OW);
// Dropout's forward for 0 < p, with scale k_dropout_scale(p) and least the
// smallest 24-bit draw that keeps an element (ceil(p * 2^24)).
// Reference: k_dropout_forward, the same bytes.
void k_avx512_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                      uint64_t key, int64_t first);

//
// conv_avx512.c: the cpu backend's stride-1 convolutions by output rows
//
// A stride-1 convolution's forward and input gradient as tiles of up to
// 14 outputs of one output row by 32 channels (the input gradient adding
// each tap's products where they land), its weight gradient by tiles of 6
// taps by 32 channels, on hosts with AVX-512, for
// k_conv2d_forward_ws and k_conv2d_backward_ws where AVX-512 runs in
// halves (there in place of conv_avx2.c's). Reference: k_conv2d_forward
// and k_conv2d_backward, within rounding (tests/kernels/test_conv.c).

// Whether they take g on this host: stride 1, one group, a window of 2
// taps or more, output rows of 4 or more; the forward's output channels
// and the input gradient's input channels a multiple of 16.
bool k_avx512_conv_rows_fits(const KConv2d *g);
bool k_avx512_conv_rows_grad_input_fits(const KConv2d *g);
// The weight gradient's, by 6 x 32 tiles of dw^T over the real outputs:
// 64 taps (C*KH*KW) or more, output channels a multiple of 16, planes of
// 16 outputs or more.
bool k_avx512_conv_rows_grad_weight_fits(const KConv2d *g);
// Floats of scratch the three need for g (0 where none fits).
int64_t k_avx512_conv_rows_scratch(const KConv2d *g);
// k_conv2d_grad_weight_pooled's sums on AVX-512: acc's T segments of L
// floats (acc + t*L) += sum over i < nz of val[i] * img[off[i] + toff[t] ..
// + L], in the order of i within each lane (chains of even and odd i for
// short rows, added at the end).
void k_avx512_pooled_sums(float *acc, int64_t T, int64_t L, const int32_t *toff, const float *img,
                          const int32_t *off, const float *val, int64_t nz);
// Where the window of the convolution's output a starts in the image's
// layout: a / OW * ystep + a % OW * xstep + add floats in; an argmax
// outside [0, P) has none.
typedef struct KPooledAt {
  int32_t OW, P, ystep, xstep, add;
} KPooledAt;
// Its list of the nonzero gradients d[0..PP) whose argmax at[] has a
// window: each window's start in off, its value in val (16 floats of room
// past PP each); returns how many. P < 2^24 (argmaxes exact in floats).
int64_t k_avx512_pooled_list(int32_t *off, float *val, const float *d, const int32_t *at, int64_t PP,
                             const KPooledAt *w);
// The input gradient's scatter (k_conv2d_grad_input_pooled): for each
// window i, img's T segments of L floats at off[i] + toff[t] += val[i] *
// wrow[t*L ..], in order of i (wrow in registers).
void k_avx512_pooled_scatter(float *img, int64_t T, int64_t L, const int32_t *toff, const float *wrow,
                             const int32_t *off, const float *val, int64_t nz);
// y = conv2d(x, w) (+ bias, where not NULL); dx += d/dx; dw += d/dw.
void k_avx512_conv_rows_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g,
                                float *ws);
void k_avx512_conv_rows_grad_input(float *dx, const float *dy, const float *w, const KConv2d *g, float *ws);
void k_avx512_conv_rows_grad_weight(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws);

//
// conv_avx2.c: the cpu backend's stride-1 convolutions on AVX2 hosts
//
// A stride-1 convolution and its gradients read in place from a padded
// copy of each image (no im2col), for the cpu backend's convolutions
// (k_conv2d_forward_ws, k_conv2d_backward_ws) on hosts with AVX2 and FMA
// but not AVX-512, or with AVX-512 in halves (k_avx512_halves).
// Reference: k_conv2d_forward and k_conv2d_backward, within rounding
// (tests/kernels/test_conv.c).

// The host runs AVX2 and FMA and NNC_NO_AVX2 is not set.
bool k_avx2(void);
// Whether these kernels take g, on this host: stride 1, one group, a
// window of 2 taps or more, planes of 32 outputs or more (the forward:
// with 60 % or more of its padded width real; the input gradient: planes
// of 32 inputs or more, 60 % of its wide columns real, padding no wider
// than the window).
bool k_avx2_conv_fits(const KConv2d *g);
bool k_avx2_conv_grad_weight_fits(const KConv2d *g);
bool k_avx2_conv_grad_input_fits(const KConv2d *g);
// Floats of scratch the three need for g, at its g.N images (0 where g
// does not fit).
int64_t k_avx2_conv_scratch(const KConv2d *g);
// y = conv2d(x, w) (+ bias, where not NULL); dx += d/dx; dw += d/dw.
void k_avx2_conv_forward(float *y, const float *x, const float *w, const float *bias, const KConv2d *g, float *ws);
void k_avx2_conv_grad_input(float *dx, const float *dy, const float *w, const KConv2d *g, float *ws);
void k_avx2_conv_grad_weight(float *dw, const float *dy, const float *x, const KConv2d *g, float *ws);
// Shared by these and conv_avx512.c's: off[r] for the taps r = (c, kh,
// kw) of a window over planes Hp x Wp, where tap r of output 0 lies; and
// the taps k in [*lo, *hi] (none: *hi < *lo) whose row t + k*d lies in
// the rows of data [Z, Z + D) for some output row t in [h0, h1].
void k_tap_starts(int32_t *off, int64_t C, int64_t KH, int64_t KW, int64_t Hp, int64_t Wp, int64_t dh, int64_t dw);
void k_rows_on_data(int64_t h0, int64_t h1, int64_t Z, int64_t D, int64_t d, int64_t K, int64_t *lo, int64_t *hi);
// Max pooling for k_maxpool2d_forward_fast, as the AVX-512 pair above:
// 2x2 windows, and 8 small planes at a time (xt: 8*(H*W + 2*OH*OW)
// floats of scratch). The reference's bytes (tests/kernels/test_pool.c).
void k_avx2_maxpool2x2(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW);
void k_avx2_maxpool_planes8(float *y, int32_t *argmax, const float *x, const KPool2d *g, int64_t OH, int64_t OW,
                            int64_t nc, float *xt);
// Dropout's forward, as k_avx512_dropout. Reference: k_dropout_forward,
// the same bytes.
void k_avx2_dropout(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                    uint64_t key, int64_t first);


// Sets OpenBLAS's thread count (n >= 1), calling it only when the count
// changes. Without OpenBLAS (NNC_NO_BLAS) it does nothing: k_blas_sgemm
// then runs on the calling thread alone.
void rt_blas_threads(int n);

// The median seconds of reps calls of k_blas_sgemm alone, on threads
// threads, on C[M, N] = op(A) op(B) with K inner, on random matrices
// (`nnc bench` compares the step's GEMMs with it).
double rt_time_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int reps, int threads);

//
// runtime/cuda.c: the CUDA driver and NVRTC, opened with dlopen
//
// Neither library is linked: each opens at run time and every function is
// looked up as it opens, so nnc builds and runs where CUDA is absent, and a
// missing library or function is a message, never a crash. Errors name the
// failing call and the driver's error (cuGetErrorName, cuGetErrorString).
// Every call may come from any thread (each makes the device's context the
// thread's own); one RtCuda is used by one thread at a time.

// NVRTC, which compiles CUDA C. Opens $NNC_NVRTC if set, else the first of
// libnvrtc.so, .so.13, .so.12, .so.11.2 that loads from the library path,
// from /usr/local/cuda/lib64 or from $CUDA_HOME/lib64. NULL with what is
// missing in err.
typedef struct RtNvrtc RtNvrtc;
RtNvrtc *rt_nvrtc_open(char *err, size_t errsz);
void rt_nvrtc_close(RtNvrtc *n);
const char *rt_nvrtc_version(const RtNvrtc *n);     // "13.0"
// Compiles CUDA C src (name: its file name in messages) for compute
// capability arch (80 = sm_80): *out (malloc'd, NUL-terminated) and *size
// (without the NUL); cubin asks for a CUBIN (-arch=sm_XX), else PTX
// (-arch=compute_XX). Options: --fmad=false (the generator writes fmaf
// where it wants a fused multiply-add, so results stay close to the CPU's),
// -default-device, --std=c++17, then extra (NULL-terminated, or NULL). On
// failure false, err says what failed and *log (malloc'd, or NULL) holds
// NVRTC's program log ("name(LINE): error: ..."); on success *log may hold
// warnings.
bool rt_nvrtc_compile(RtNvrtc *n, const char *src, const char *name, int arch, bool cubin, const char *const *extra,
                      char **out, size_t *size, char **log, char *err, size_t errsz);
// Whether NVRTC compiles for arch (true where it cannot say: before 11.2).
bool rt_nvrtc_supports(const RtNvrtc *n, int arch);
// The arch rt_cuda_build compiles for a device of arch: arch itself as a
// CUBIN where NVRTC supports it, else the newest one below it as PTX
// (*cubin false; the driver compiles PTX for newer GPUs), else 0.
int rt_nvrtc_arch_for(const RtNvrtc *n, int arch, bool *cubin);
// Programs n has compiled so far (cache hits do not count).
int rt_nvrtc_compiles(const RtNvrtc *n);

// The cache of compiled programs: $NNC_CACHE_DIR/cuda, else
// $XDG_CACHE_HOME/nnc/cuda, else $HOME/.cache/nnc/cuda, into buf; false
// when none of them is set. A program's file there is
// <key>-sm_<arch>.cubin (or <key>-compute_<arch>.ptx), key a hash of the
// source, target, options and NVRTC version; the file holds a line that
// says what it is, the source and the code (so a collision of keys or a
// damaged file is seen, and recompiled).
bool rt_cuda_cache_dir(char *buf, size_t bufsz);
void rt_cuda_cache_path(const RtNvrtc *n, const char *dir, const char *src, int arch, bool cubin, char *buf,
                        size_t bufsz);
// The code of src for arch from the cache in cachedir (NULL: rt_cuda_cache_dir's),
// else compiled by rt_nvrtc_compile (no extra options) and written there
// (to a temporary name, then renamed). A cache that cannot be written is
// not an error; a damaged file is compiled again. Results as rt_nvrtc_compile's.
bool rt_nvrtc_cached(RtNvrtc *n, const char *src, const char *name, int arch, bool cubin, const char *cachedir,
                     char **out, size_t *size, char **log, char *err, size_t errsz);

// The driver: libcuda.so.1 ($NNC_LIBCUDA overrides), cuInit, device
// ordinal, its primary context, one stream (non-blocking) for the steps
// and one for copies. NULL with what is missing in err: the library, a
// function of it (an old driver), the device, or the driver's error.
typedef struct RtCuda RtCuda;
RtCuda *rt_cuda_open(int ordinal, char *err, size_t errsz);
void rt_cuda_close(RtCuda *c);                      // waits for both streams first
int rt_cuda_arch(const RtCuda *c);                  // 80, 86, 90, ...
const char *rt_cuda_device_name(const RtCuda *c);
int64_t rt_cuda_total_memory(const RtCuda *c);
int64_t rt_cuda_free_memory(RtCuda *c);             // bytes free on the device now; -1 on error
int rt_cuda_driver_version(const RtCuda *c);        // cuDriverGetVersion: 13000 for CUDA 13.0
bool rt_cuda_has_graphs(const RtCuda *c);           // rt_cuda_capture_begin can succeed
// A module from PTX or CUBIN (cuModuleLoadDataEx; the JIT's error log goes into err).
typedef struct RtCudaModule RtCudaModule;
RtCudaModule *rt_cuda_load(RtCuda *c, const void *image, char *err, size_t errsz);
void *rt_cuda_function(RtCudaModule *m, const char *name);     // a CUfunction, NULL if absent
void rt_cuda_unload(RtCudaModule *m);
// The module of CUDA C src for this device: from the cache or compiled by
// rt_nvrtc_cached (rt_nvrtc_arch_for's target). A cached program the
// driver refuses is compiled again. When NVRTC fails, err holds its log
// and where the source and the log were written (beside the cache).
RtCudaModule *rt_cuda_build(RtCuda *c, RtNvrtc *n, const char *src, const char *name, char *err, size_t errsz);

// Memory and copies. Device addresses are uint64_t; 0 is never a valid one.
uint64_t rt_cuda_alloc(RtCuda *c, int64_t bytes, char *err, size_t errsz);
void rt_cuda_free(RtCuda *c, uint64_t p);
void *rt_cuda_host_alloc(RtCuda *c, int64_t bytes, char *err, size_t errsz);   // page-locked
void rt_cuda_host_free(RtCuda *c, void *p);
// Queued on the step stream. From page-locked memory (rt_cuda_host_alloc)
// the copy is truly asynchronous: src must stay as it is until the stream
// is waited for; from other memory it is staged before the call returns
// (and cannot be captured into a graph).
bool rt_cuda_upload(RtCuda *c, uint64_t dst, const void *src, int64_t bytes, char *err, size_t errsz);
// The same on the copy stream, to overlap the steps (the next batch);
// rt_cuda_copies_join then makes the step stream's later work wait for
// every copy queued so far (on the device; the host does not wait).
bool rt_cuda_upload_copy(RtCuda *c, uint64_t dst, const void *src, int64_t bytes, char *err, size_t errsz);
bool rt_cuda_copies_join(RtCuda *c, char *err, size_t errsz);
// Device to device, queued on the step stream.
bool rt_cuda_copy(RtCuda *c, uint64_t dst, uint64_t src, int64_t bytes, char *err, size_t errsz);
// Queued on the step stream, then waits for it (rt_cuda_sync's errors).
bool rt_cuda_download(RtCuda *c, void *dst, uint64_t src, int64_t bytes, char *err, size_t errsz);
// Zeroes bytes at dst, queued on the step stream.
bool rt_cuda_memset(RtCuda *c, uint64_t dst, int64_t bytes, char *err, size_t errsz);

// A launch on the step stream: fn with grid[3] blocks of block threads,
// args pointing at each argument (cuLaunchKernel's kernelParams); name is
// the kernel's, for messages. A kernel's own failure shows at the next wait.
bool rt_cuda_launch(RtCuda *c, void *fn, const unsigned grid[3], unsigned block, void **args, const char *name,
                    char *err, size_t errsz);
// Graphs: the step stream's work between begin and end, captured
// (cuStreamBeginCapture_v2 ... cuStreamEndCapture) and instantiated; begin
// is false where the driver has no graphs (the caller then launches one by
// one). Launching a graph queues it on the step stream.
typedef struct RtCudaGraph RtCudaGraph;
bool rt_cuda_capture_begin(RtCuda *c, char *err, size_t errsz);
RtCudaGraph *rt_cuda_capture_end(RtCuda *c, char *err, size_t errsz);
bool rt_cuda_graph_launch(RtCuda *c, RtCudaGraph *g, char *err, size_t errsz);
void rt_cuda_graph_free(RtCuda *c, RtCudaGraph *g);
// Waits for the step stream; false with the first error of any launch since
// the last wait (the count of launches and the last one's name with it).
bool rt_cuda_sync(RtCuda *c, char *err, size_t errsz);
// Device time on the step stream between begin and end (events), in
// seconds; end waits for the stream and is negative on error.
bool rt_cuda_time_begin(RtCuda *c, char *err, size_t errsz);
double rt_cuda_time_end(RtCuda *c, char *err, size_t errsz);

#endif
