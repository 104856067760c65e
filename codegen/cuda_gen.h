// cuda_gen.h: what the CUDA C generator's files share; not part of
// codegen's interface (that is codegen.h). cuda.c turns a KProgram into
// CUDA C and a launch plan: loop kernels, GEMMs (cuda_emit_gemm, which the
// convolutions use too) and the program's order; cuda_lib.c and
// cuda_conv.c write the library kernels (RtLib descriptors) as CUDA C.
//
// Every kernel of a program is a __global__ function of one signature,
//
//   NNC_KERNEL void name(NNC_ARGS)
//   NNC_ARGS = char *arena, char *state, char *const *aux, char *step, long long B
//
// arena and state are the program's two blocks (offsets from the memory
// plan are constants of the code), aux[slot] the library kernels' slots of
// run-time state (a max pooling's argmax, a batchnorm's statistics, a
// dropout's mask), step the step block (below), B the batch. One signature
// makes the launch plan data, a CUDA graph of a step trivial to capture, and
// the host shim one function type.
#ifndef NNC_CUDA_GEN_H
#define NNC_CUDA_GEN_H

#include "codegen.h"

// Threads per block of the generated kernels, unless a kernel says otherwise,
// and the most blocks of a grid-stride loop (the kernel loops over the rest).
#define CUDA_BLOCK 256
#define CUDA_MAX_ELEM_BLOCKS 65535

// What is being generated: the source and the launches, in program order.
typedef struct CudaGen {
  StrBuf src;
  CgCudaLaunch *launch;
  int nlaunch, cap;
  const KProgram *p;         // NULL when a test generates a library kernel alone
  int64_t max_batch;         // the largest batch any launch runs at
  int nkeys;                 // dropout keys handed out
  char *err;
  size_t errsz;
  bool failed;
} CudaGen;

// What a library kernel needs to know of the program around it.
typedef struct CudaLibCtx {
  bool training;             // the program is a training step (batch statistics, masks)
  bool saved;                // a gradient: its forward kept its slot (RtLib.aux_from) earlier in this program
  const RtLib *from;         // that forward, or NULL
  int key;                   // a dropout forward's key index in the step block (CUDA_STEP_KEYS)
} CudaLibCtx;

void cuda_gen_init(CudaGen *g, const KProgram *p, int64_t max_batch, char *err, size_t errsz);
void cuda_gen_free(CudaGen *g);            // what the result does not keep
bool cuda_fail(CudaGen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// An extent's count at the largest batch.
int64_t cuda_at_max(const CudaGen *g, KExtent e);

// Appends a launch of __global__ function `name` (kernel: the program's
// kernel it belongs to, for messages and timing): a grid of
// ceil(work / per_block) blocks in x (work = coef, times B when batched),
// y and z as given (1: none), of `block` threads; barrier: the function
// calls __syncthreads (the host shim runs its threads as fibers). A grid
// larger than CUDA allows (x 2^31-1, y and z 65535) at the largest batch
// fails the generation: the kernels below loop over what one grid cannot
// cover themselves (grid-stride loops), so per_block may be raised instead.
void cuda_launch(CudaGen *g, int kernel, const char *name, KExtent work, int64_t per_block, int64_t grid_y,
                 int64_t grid_z, int block, bool barrier);
// The usual launch of an elementwise kernel over `work` items, one thread
// each: CUDA_BLOCK threads per block, at most 65535 blocks (the kernel's
// loop strides over the rest: NNC_FOR_EACH).
void cuda_launch_elems(CudaGen *g, int kernel, const char *name, KExtent work);

// A float constant as CUDA C and C both read it exactly: a hexadecimal
// literal, or the bits of an infinity or a NaN (nnc_bits).
void cuda_put_float(StrBuf *s, float f);

// "k12_conv2d": a kernel's function name from the program's index, a
// suffix and nothing the C identifier cannot hold.
void cuda_fn_name(char *buf, size_t size, int kernel, const char *what);
// The start of `NNC_KERNEL void name(NNC_ARGS) {` with the kernel's
// comment: the .nn lines it computes (k may be NULL).
void cuda_begin_kernel(CudaGen *g, const Kernel *k, const char *name, const char *what);

// C expressions (static buffers, valid until the next call of the same
// function with the same slot): a library buffer's address as float * or
// int *, from its descriptor (arena or state, byte offset), and the
// extent of its dimension d ("B" for the batch).
const char *cuda_lib_ptr(const RtLibBuf *b, const char *type, char *buf, size_t size);
const char *cuda_lib_dim(const RtLibBuf *b, int d, char *buf, size_t size);
// The elements of a library buffer as a C expression ("(B * 784LL)").
const char *cuda_lib_numel(const RtLibBuf *b, char *buf, size_t size);

// A GEMM as a tiled kernel: C[M, N] = sum over k of A(r, k) B(k, c), each
// operand given as a C expression of (long long) r, kk and c in range,
// with M, N, K as extents (coef, times B when batched). Tiles of 64 x 64
// in shared memory, K in slabs of 16, 256 threads of 4 x 4 accumulators;
// ragged edges are masked, never read or written out of range. Each
// element of C is summed by one thread in a fixed order: the same bytes on
// every run. `store` is the statement run for each element, with float v
// (the sum), r and c in scope (for instance "C[r * N + c] = v;"; M, N, K
// are in scope as long long); `prologue` declarations at the kernel's
// start (the operands' pointers), or NULL.
typedef struct CudaGemm {
  int kernel;                // the program's kernel, for messages and timing
  const Kernel *k;           // for the comment (.nn lines), or NULL
  const char *name;          // the __global__ function's name
  const char *what;          // a comment line
  KExtent m, n, kdim;
  const char *prologue;
  const char *a_at, *b_at;   // expressions of r, kk and of kk, c
  const char *store;
  // Which index of an operand consecutive threads load along (coalesced
  // reads where that index is contiguous in memory): false, the default,
  // loads A along kk and B along c (A stored [M, K], B [K, N]); true loads
  // A along r (A stored [K, M]) and B along kk (B stored [N, K]).
  bool a_along_r, b_along_k;
  int64_t grid_z;            // independent products, blockIdx.z in the prologue (0 or 1: one)
} CudaGemm;
void cuda_emit_gemm(CudaGen *g, const CudaGemm *m);

// Library kernels (cuda_lib.c, cuda_conv.c): the CUDA C of descriptor d,
// kernel `kernel` of the program, and its launches. False (and g failed)
// when the descriptor is not one they can run. cuda_emit_lib takes every
// kind (the convolutions, poolings and batchnorms through cuda_conv.c's).
bool cuda_emit_lib(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x);
bool cuda_emit_conv(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x);
// Pooling and batchnorm (cuda_conv.c): RL_MAXPOOL(_GRAD), RL_AVGPOOL(_GRAD), RL_GLOBAL_AVGPOOL(_GRAD), RL_BATCHNORM, RL_BATCHNORM_GRAD, RL_BATCHNORM_GRAD_GAMMA.
bool cuda_emit_pool_bn(CudaGen *g, int kernel, const Kernel *k, const RtLib *d, const CudaLibCtx *x);

// The prelude every program's source starts with (cuda_gen.c): the kernel
// signature, the step block's macros, NNC_FOR_EACH, and the device
// functions the kernels share (tanh, sigmoid, sign as the cpu backend
// computes them; the dropout hash; a block's fixed-order sum).
extern const char cuda_prelude[];

#endif
