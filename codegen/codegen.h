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
// them), each calling its nncrt1_* namesake with the artifact's RtArtifact.
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

#endif
