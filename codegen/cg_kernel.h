// cg_kernel.h: what codegen's two generators (llvm.c, cuda.c) share about
// kernels; not part of codegen's interface (that is codegen.h).
#ifndef NNC_CG_KERNEL_H
#define NNC_CG_KERNEL_H

#include "codegen.h"

// Whether ix is C's element at the point of epilogue e, a loop over
// [M, n] or [N, T, n] (C's rows are N*T): i0 * n + i1, or (i0 * T + i1) * n + i2.
bool cg_is_c_index(const Kernel *e, const KIndex *ix);
// Whether nodes a and b start at the same place of the same block.
bool cg_same_place(const KProgram *p, const IrNode *a, const IrNode *b);
// Whether GEMM g's epilogue (checked) can run on each element of C as its
// sum is done: an elementwise loop over [M, N] (or [N, T, N'], C's rows
// being N*T: a linear layer over a sequence) that reads C at the point,
// other buffers along a row (or one element a row), writes one element per
// point, and writes nothing another tile reads: not A, not B, and where it
// writes it reads only the element it writes.
bool cg_epilogue_on_tile(const KProgram *p, const Kernel *g);
// Operands an instruction reads: a, then b, then c.
int cg_instr_args(KInstrOp op);
// Whether loop k (or GEMM k, its epilogue aside) of p can be built: its
// operands, buffers and every index within its buffer for the largest
// batch (check.c); false with what is wrong in err (a compiler bug, or a
// kernel IR text that was edited).
bool cg_check_loop(const KProgram *p, const Kernel *k, char *err, size_t errsz);
bool cg_check_gemm(const KProgram *p, const Kernel *k, char *err, size_t errsz);

// Whether store i of loop k is the first that sums into its buffer (which
// the code zeroes before the loop runs, once); *elems then gets the
// elements of the buffer's node (coef, times the batch when batched).
bool cg_first_sum(const Kernel *k, int i, KExtent *elems);   // a sum's or a max's (KR_MAX: filled with -inf)

#endif
