// exec.h: running a model: the executors (backends) behind one interface.
#ifndef NNC_EXEC_H
#define NNC_EXEC_H

#include "codegen.h"
#include "passes.h"
#include "runtime.h"


typedef struct Exec Exec;

// The backends.
typedef enum {
  RT_BACKEND_REF,   // one plain C kernel per graph node: the oracle
  RT_BACKEND_CPU,   // fused kernels compiled by LLVM, memory planned, one call per step
} RtBackend;

// Prepares to run m (after pass_autodiff when it is to be trained) on
// batches of up to max_batch samples with the ref backend. Parameters start
// uninitialized: call exec_init_params or load a checkpoint.
Exec *exec_new(const Model *m, int64_t max_batch);

// The same with the cpu backend: each entry point is fused (unless fuse is
// false), memory-planned and compiled by LLVM when first run, on threads
// threads. Returns NULL with a message in err when LLVM fails.
Exec *exec_new_cpu(Model *m, int64_t max_batch, bool fuse, int threads, char *err, size_t errsz);
RtBackend exec_backend(const Exec *ex);

// The program and compile times of an entry point of a cpu executor
// (compiling it now if it was not yet), for `nnc bench`; NULL for ref.
const KProgram *exec_program(Exec *ex, EntryKind mode, CgTimes *times);
void exec_free(Exec *ex);

// Fills every parameter and buffer from its initializer, drawing from a
// generator seeded with seed (PyTorch's distributions, not its numbers).
void exec_init_params(Exec *ex, uint64_t seed);

// Floats per sample a model reads: every input's values, one input after
// another in declaration order (a data set's row).
int64_t exec_sample_dim(const Model *m);

// Runs one entry point on a batch of B samples: x holds B rows of
// exec_sample_dim floats (each split over the model's inputs), y B targets
// (int32 class indexes or floats; may be NULL for ENTRY_FORWARD). For ENTRY_TRAIN,
// lr is the learning rate of this step. Returns the loss (0 for
// ENTRY_FORWARD). A training step whose loss is not finite stops there: no
// gradients, no update, and the step does not count.
double exec_run(Exec *ex, EntryKind mode, int64_t B, const float *x, const void *y, double lr);

// The output of the last run: B rows of exec_output_dim floats.
const float *exec_output(const Exec *ex);
int64_t exec_output_dim(const Exec *ex);

// After a run whose loss is not finite: the first node (in graph order)
// whose output holds a NaN or an infinity, or NULL.
const IrNode *exec_first_nonfinite(const Exec *ex);

// Persistent tensors (parameters, buffers, optimizer state) by index, for
// checkpoints. The data is the executor's; writes change the model.
int exec_num_state(const Exec *ex);
const IrNode *exec_state_node(const Exec *ex, int i);
float *exec_state_data(Exec *ex, int i, int64_t *numel);
float *exec_find_state(Exec *ex, const char *name, int64_t *numel);

// Training steps taken (the optimizer's t), and the dropout generator:
// both part of a checkpoint.
int64_t exec_steps(const Exec *ex);
void exec_set_steps(Exec *ex, int64_t steps);
Rng *exec_rng(Exec *ex);

// Dropout off: a training step then is deterministic whatever the
// generator (tests compare with frameworks whose masks differ).
void exec_set_dropout(Exec *ex, bool enabled);

// cpu backend: calls tick(arg, i) as kernel i of a step starts, and
// tick(arg, nkernels) when the step ends (NULL: no calls); for `nnc bench`.
void exec_set_tick(Exec *ex, void (*tick)(void *arg, int kernel), void *arg);

// The value of node n after the last run (a gradient, say): B rows for a
// batched node. NULL when the last run did not compute n.
const float *exec_value(const Exec *ex, const IrNode *n);

// Sets the number of threads the ref backend lets the BLAS library use
// (n >= 1; the cpu backend splits its work over its own thread pool).
void rt_set_threads(int n);
// Puts the BLAS library on rt_set_threads' count again (the cpu backend
// keeps it on one thread while it runs).
void blas_threads_default(void);

#endif
