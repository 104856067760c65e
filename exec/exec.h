// exec.h: running a model: the executors (backends) behind one interface.
//
// A backend is chosen by name (exec_backend_names lists them: ref, the
// oracle, one plain C kernel per graph node; cpu, fused kernels compiled by
// LLVM). Everything above exec/ talks to an Exec through these calls; no
// call hands out a backend's memory: values are copied in and out, so that a
// backend whose memory is a device's fits the same interface.
#ifndef NNC_EXEC_H
#define NNC_EXEC_H

#include "codegen.h"
#include "passes.h"
#include "runtime.h"

typedef struct Exec Exec;

// How to build an executor.
typedef struct ExecOptions {
  int64_t max_batch;     // batches of 1 to max_batch samples
  int threads;           // cpu: the thread pool's threads; ref: OpenBLAS's (0: 1). The cpu
                         // backend keeps OpenBLAS on one thread: its idle threads spin
                         // (sched_yield) after each GEMM and would take cores from the pool
  bool fuse;             // cpu: simplify and fuse (false: one kernel per graph node)
  bool no_regions;       // cpu: every kernel over the whole batch, on its own (no batch-blocked
                         // regions, no shared products: nnc bench --no-regions)
  unsigned entries;      // the entry points it will run (bits 1 << ENTRY_*); 0: every one m has
} ExecOptions;

// The backends' names, in the registry's order ("ref", "cpu"), NULL after
// the last, and a line of help for each.
extern const char *const exec_backend_names[];
#define EXEC_DEFAULT_BACKEND "cpu"
const char *exec_backend_help(const char *name);
bool exec_backend_exists(const char *name);
// Whether backend `name` can run on this machine: false with what is
// missing in err (cuda: the NVIDIA driver, NVRTC or a device; cuda-emu: a
// C compiler).
bool exec_backend_available(const char *name, char *err, size_t errsz);

// Prepares to run m (after pass_autodiff when it is to be trained) on
// backend: the cpu backend compiles each entry point now (on a copy of m:
// m is not changed), so no step compiles or fails later. m must outlive the
// executor. Parameters start uninitialized: call exec_init_params or load
// a checkpoint. Returns NULL with a message in err when it cannot (LLVM
// fails, say).
Exec *exec_new(const char *backend, const Model *m, const ExecOptions *o, char *err, size_t errsz);
void exec_free(Exec *ex);
const char *exec_backend(const Exec *ex);

// The compiled program of an entry point and the times its compilation
// took, for `nnc bench`; NULL for a backend without one (ref) or an entry
// point it was not built to run.
const KProgram *exec_program(const Exec *ex, EntryKind entry, CgTimes *times);

// Fills every parameter and buffer from its initializer, drawing from a
// generator seeded with seed (PyTorch's distributions, not its numbers),
// and seeds the dropout generator with seed: a new run's every random
// draw follows its --seed. Step 0.
void exec_init_params(Exec *ex, uint64_t seed);

// Floats per sample a model reads: every input's values, one input after
// another in declaration order (a data set's row).
int64_t exec_sample_dim(const Model *m);

// Values per sample of the model's targets: every target's, one after
// another in declaration order (4 bytes each: int32 class indexes, floats).
int64_t exec_target_dim(const Model *m);

// Runs one entry point on a batch of B samples: x holds B rows of
// exec_sample_dim floats (each split over the model's inputs; an integer
// input's slots hold int32 values, copied as they are), y B rows of
// exec_target_dim targets (int32 class indexes or floats; may be NULL for
// ENTRY_FORWARD or a model without targets). For
// ENTRY_TRAIN, lr is the learning rate of this step. Returns the loss (0
// for ENTRY_FORWARD). A training step whose loss is not finite stops there:
// no gradients, no update, and the step does not count.
double exec_run(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr);

// Says which batch the next exec_run of entry will get: B, x and y as
// that call will pass them (their contents unchanged until then). A
// backend with memory of its own (cuda) copies it there while the step
// before runs, so that the step never waits for its batch; the others do
// nothing. A run with another batch than the one announced feeds its own.
void exec_prefetch(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y);

// Copies the outputs of the last run into out: B rows of exec_output_dim
// floats, each row every output's values, one output after another.
void exec_read_output(const Exec *ex, float *out);
int64_t exec_output_dim(const Exec *ex);

// A classifier among the model's outputs: the output a cross_entropy or nll
// of the loss compares with a class target.
typedef struct ExecClassHead {
  int64_t at, k;         // its columns in exec_read_output's rows: [at, at + k), k classes
  int64_t label;         // where the target's label lies in a sample's row of targets
  int64_t trow;          // values in that row (exec_target_dim)
  const char *target;    // the class target's name
} ExecClassHead;
// The model's classifiers, one per class target that a loss compares an
// output with, in the loss's order (at most max); returns how many.
int exec_class_heads(const Exec *ex, ExecClassHead *h, int max);

// After an eval or train step of a model whose loss is a weighted sum of
// several losses: each one's value, in ir_loss_terms' order, into v (at
// most IR_MAX_LOSS_TERMS); returns how many, 0 when the loss is one loss.
int exec_loss_values(const Exec *ex, double *v);

// Copies the value of node n of the caller's model after the last run (a
// gradient, say; B rows for a batched node) into out; false, copying
// nothing, when the run did not compute it or compiling simplified it away.
bool exec_read_value(const Exec *ex, const IrNode *n, float *out);

// Whether the backend keeps every value a run computes (ref), so that
// exec_read_value and exec_first_nonfinite see every node; a fused backend
// keeps only those it materializes.
bool exec_keeps_values(const Exec *ex);

// After a run whose loss is not finite: the first node (in graph order)
// whose output holds a NaN or an infinity, or NULL. Its location and scope
// are the .nn file's; it lives as long as ex.
const IrNode *exec_first_nonfinite(const Exec *ex);

// Persistent tensors (parameters, buffers, optimizer state) by index, in
// graph order, for checkpoints: the node of the caller's model, and
// copies of its ir_numel(n, 1) floats out of and into the executor.
int exec_num_state(const Exec *ex);
const IrNode *exec_state_node(const Exec *ex, int i);
int exec_find_state(const Exec *ex, const char *name);   // its index, or -1
void exec_read_state(const Exec *ex, int i, float *out);
void exec_write_state(Exec *ex, int i, const float *in);

// Training steps taken (the optimizer's t), and the dropout generator:
// both part of a checkpoint.
int64_t exec_steps(const Exec *ex);
void exec_set_steps(Exec *ex, int64_t steps);
Rng *exec_rng(Exec *ex);

// Dropout (and gaussian_noise) off: a training step then is deterministic
// whatever the generator (tests compare with frameworks whose masks differ).
void exec_set_dropout(Exec *ex, bool enabled);

// Data-parallel training (train/dist.c): each process runs its share of a
// batch, and the processes sum their gradients between the step's backward
// pass and its updates. A training step calls these from inside, between
// the kernels of its program:
typedef struct ExecGradHook {
  // Gradient i (of m->params[i]; one two parameters share comes once, at
  // the first) is final: its n floats at g may be read and replaced until
  // need(i) returns; no kernel touches them before that.
  void (*ready)(void *arg, int i, float *g, int64_t n);
  // The next kernel reads gradient i: its values must be in place on return.
  void (*need)(void *arg, int i);
  // After the calls of each boundary between kernels, and at the end of
  // the step (communication may progress there).
  void (*between)(void *arg);
  void *arg;
} ExecGradHook;

// Installs h (copied; NULL removes it) for ex's training steps. False, with
// the reason in err, where the backend has no point at which a gradient is
// final and unread (ref, cuda), or the program computes a gradient inside
// the kernel that reads it (a fused one: fuse off makes every gradient a
// kernel's result). A gradient the program folded into a constant is the
// same in every process and is not given. *ngrads: the gradients given.
bool exec_set_grad_hook(Exec *ex, const ExecGradHook *h, int *ngrads, char *err, size_t errsz);

// Dropout and gaussian_noise draw what samples [first, first + B) of a
// larger batch would (0: the batch is the whole): a process's share of a
// data-parallel step gets the masks of the whole batch's single step.
void exec_set_first_sample(Exec *ex, int64_t first);

// Calls tick(arg, i) as kernel i of a step's program starts, and tick(arg,
// nkernels) when the step ends (NULL: no calls); for `nnc bench`. A backend
// without a program never calls it.
void exec_set_tick(Exec *ex, void (*tick)(void *arg, int kernel), void *arg);

#endif
