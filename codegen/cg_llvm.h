// cg_llvm.h: what codegen's two LLVM files share; not part of codegen's
// interface (that is codegen.h). llvm.c turns a KProgram into LLVM IR;
// jit.c owns the target, the pass pipeline and the JIT, and implements
// codegen.h on top of cg_build_module().
#ifndef NNC_CG_LLVM_H
#define NNC_CG_LLVM_H

#include "codegen.h"

#include <llvm-c/Core.h>

// Builds p into the empty module m (in m's context): a RtLoopFn per loop
// kernel and per epilogue run as a loop, each GEMM's micro-kernels
// (RtGemmKernels, for vectors of vw floats), and the RtEntryFn, whose name
// it writes into entry (size bytes). cpu and features become every
// function's "target-cpu" and "target-features". Checks the kernels first (operands,
// buffers, every index within its buffer for the largest batch) and
// verifies each function once built; on failure returns false with a
// message in err.
//
// With nparts > 1 the program is split across nparts modules, compiled
// separately (on separate threads) and linked: module `part` gets a share
// of the loop functions, and module 0 also the entry, which declares the
// loop functions the other modules define. nparts = 1: one whole module.
bool cg_build_module(LLVMModuleRef m, const KProgram *p, const char *cpu, const char *features, int vw, int part,
                     int nparts, char *entry, size_t size, char *err, size_t errsz);

#endif
