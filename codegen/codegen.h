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
#include "runtime.h"

typedef struct CgOptions {
  int opt_level;         // 0..3 (default 2)
  const char *cpu;       // NULL: the host's CPU name and features (or "generic" for another triple)
  const char *triple;    // NULL: the host's; else a 64-bit little-endian target ("aarch64-linux-gnu")
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
RtEntryFn cg_entry(CgModule *m);
CgTimes cg_times(const CgModule *m);
void cg_free(CgModule *m);

// The optimized LLVM IR, or the host assembly, of p (`nnc emit --stage llvm|asm`).
bool cg_print_llvm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz);
bool cg_print_asm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz);
// p as a relocatable (PIC) object file for the host: one module whose only
// global symbol is the entry function, "nnc_forward", "nnc_eval_step" or
// "nnc_train_step" (an RtEntryFn); everything it calls at run time comes
// through the RtCalls it is given, so it links with libm alone.
bool cg_emit_object(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz);

// A model compiled ahead of time (`nnc compile`): one relocatable (PIC)
// object file holding the program of each entry point (prog[e], NULL where
// absent; each compiled exactly as the JIT compiles it), the model's
// description info (an RtModelInfo of info_size bytes), the embedded
// weights (the state block, weights_size bytes; NULL: none), and the
// model's API: PREFIX_create, PREFIX_forward, ... (nncrt/nncrt.h lists
// them), each calling its nncrt5_* namesake with the artifact's RtArtifact.
// Those are its only global symbols, so two artifacts of other prefixes
// link into one program.
typedef struct CgArtifact {
  const char *prefix;
  const KProgram *prog[ENTRY_COUNT];
  const void *info;
  size_t info_size;
  const void *weights;
  size_t weights_size;
} CgArtifact;
bool cg_emit_artifact(FILE *out, const CgArtifact *a, const CgOptions *o, char *err, size_t errsz);
// The API's functions, PREFIX_name for each name (NULL after the last), and
// their C types, as cg_emit_artifact makes them.
typedef struct CgApiFunction {
  const char *name, *sig;   // sig: the return type, then the parameters: v void, p pointer, i int32, l int64, d double
} CgApiFunction;
extern const CgApiFunction cg_api[];

// Whether o names a target and CPU LLVM can make code for; false with what
// is wrong (an unknown triple or CPU, a 32-bit or big-endian target) in err.
bool cg_check_target(const CgOptions *o, char *err, size_t errsz);

// The host's CPU name and its vector width in floats (16 with AVX-512, 8
// with AVX2, 4 otherwise).
const char *cg_host_cpu(void);
const char *cg_host_triple(void);   // LLVM's default target triple ("x86_64-pc-linux-gnu")
int cg_vector_width(void);

//
// The cuda backend's code (cuda.c, cuda_lib.c, cuda_conv.c)
//
// cg_cuda_generate() writes a KProgram as CUDA C: a __global__ function
// per loop kernel (and per part of a library kernel), GEMMs as tiled
// kernels with their epilogue fused, every one of one signature (cuda_gen.h:
// arena, state, aux slots, step block, batch), and the launches that run
// the program in order. NVRTC compiles the source for a device; the host
// shim (cuda_shim.c) compiles the very same text with the host's C
// compiler and runs it on the CPU.

// One launch of the plan: function `name`, a grid of ceil(work / per_block)
// blocks in x (work: coef, times B when batched) by grid_y by grid_z, of
// `block` threads; barrier: it calls __syncthreads.
typedef struct CgCudaLaunch {
  char name[64];
  int kernel;            // the program's kernel it belongs to
  KExtent work;
  int64_t per_block;
  int64_t grid_y, grid_z;
  int block;
  bool barrier;
} CgCudaLaunch;

typedef struct CgCuda {
  char *source;          // the whole program's CUDA C
  CgCudaLaunch *launch;
  int nlaunch;
  int nkeys;             // dropout keys the step block holds, in program order:
  float *key_p;          // key j is drawn for a dropout of probability key_p[j] (k_dropout_key)
} CgCuda;

// The CUDA C of p and its launch plan; NULL with a message in err when a
// kernel cannot be generated (a compiler bug, or a shape CUDA's grid limits
// cannot run).
CgCuda *cg_cuda_generate(const KProgram *p, char *err, size_t errsz);
void cg_cuda_free(CgCuda *c);
// Launch l's grid at batch B; grid[0] is 0 when there is nothing to run.
void cg_cuda_grid(const CgCudaLaunch *l, int64_t B, unsigned grid[3]);

// ptx with the comment lines above each kernel of its source src (what it
// computes, its .nn lines) above each `.entry` (`nnc emit --stage ptx`).
// The caller frees the result.
char *cg_cuda_annotate_ptx(const char *src, const char *ptx);

// What a compiler's log (NVRTC's, or the host compiler's for the shim) of
// source src means: the kernel of the first error's line named, then the
// log, into out.
void cg_cuda_explain(const char *src, const char *log, char *out, size_t size);

// The step block, which the host writes before each step: bytes at these
// offsets (the prelude's NNC_* macros read them).
enum {
  CUDA_STEP_LOSS = 0,       // double: the step's loss (the loss kernel writes it)
  CUDA_STEP_LR = 8,         // float: this step's learning rate
  CUDA_STEP_APPLY = 12,     // int: 1: the updates apply; the loss kernel writes 0 when the loss is not finite
  CUDA_STEP_T = 16,         // long long: the optimizer's step count t, this step included
  CUDA_STEP_TRAINING = 24,  // int: 1 in a training step
  CUDA_STEP_DROPOUT = 28,   // int: 1: dropout applies (training, and not turned off)
  CUDA_STEP_LR64 = 32,      // double: the learning rate as the host has it (Adam's step size from it)
  CUDA_STEP_KEYS = 64,      // unsigned long long key[j]: the dropout mask key of the program's j-th dropout
};
#define CUDA_MAX_KEYS 1024
#define CUDA_STEP_BYTES (CUDA_STEP_KEYS + 8 * CUDA_MAX_KEYS)

// The signature of every generated kernel (NNC_ARGS in cuda_gen.h).
typedef void (*CgCudaFn)(char *arena, char *state, char *const *aux, char *step, long long B);

// The host shim (cuda_shim.c): CUDA C run on the CPU. cg_cuda_host_load
// compiles src with the host's C compiler ($NNC_CC, else cc) behind a
// header that defines CUDA's built-ins (threadIdx, blockIdx, blockDim,
// gridDim, __shared__, __syncthreads as a real barrier across the block's
// threads, run as fibers) and loads it; NULL with the compiler's messages
// in err.
typedef struct CgCudaHost CgCudaHost;
CgCudaHost *cg_cuda_host_load(const char *src, char *err, size_t errsz);
CgCudaFn cg_cuda_host_fn(CgCudaHost *h, const char *name);   // NULL: no such kernel
// Runs fn (named name, for messages) on grid[0] x grid[1] x grid[2] blocks
// of `block` threads; false with a message naming the kernel when the
// launch is not one CUDA would run (more than 1024 threads, a barrier some
// threads of a block never reach, __syncthreads in a launch without
// barrier).
bool cg_cuda_host_launch(CgCudaHost *h, const char *name, CgCudaFn fn, const unsigned grid[3], unsigned block,
                         bool barrier, char *arena, char *state, char *const *aux, char *step, long long B,
                         char *err, size_t errsz);
void cg_cuda_host_free(CgCudaHost *h);

#endif
