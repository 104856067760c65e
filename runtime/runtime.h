// runtime.h: the runtime: executing a compiled model (the ref backend),
// training, data, checkpoints.
//
// RtExec runs a model's graph op by op with the plain C kernels of
// kernels.h: the ref backend, slow and obviously right, the oracle every
// faster backend is tested against. Parameters, batchnorm statistics and
// optimizer state live in persistent buffers that outlast a step; every
// other node gets a buffer of its own, sized for the largest batch.
#ifndef NNC_RUNTIME_H
#define NNC_RUNTIME_H

#include "codegen.h"
#include "data.h"
#include "passes.h"

//
// runtime/pool.c
//

// Threads that split loops: the caller's and nthreads - 1 workers.
typedef struct RtPool RtPool;
RtPool *rt_pool_new(int nthreads);
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
// runtime/exec.c
//

// The three entry points of a compiled model.
typedef enum {
  RT_FORWARD,   // the output, in inference mode (running statistics, no dropout)
  RT_EVAL,      // the output and the loss, in inference mode
  RT_TRAIN,     // output, loss, gradients and the optimizer update, in training mode
} RtMode;

typedef struct RtExec RtExec;

// The backends.
typedef enum {
  RT_BACKEND_REF,   // one plain C kernel per graph node: the oracle
  RT_BACKEND_CPU,   // fused kernels compiled by LLVM, memory planned, one call per step
} RtBackend;

// Prepares to run m (after pass_autodiff when it is to be trained) on
// batches of up to max_batch samples with the ref backend. Parameters start
// uninitialized: call rt_exec_init_params or load a checkpoint.
RtExec *rt_exec_new(const Model *m, int64_t max_batch);

// The same with the cpu backend: each entry point is fused (unless fuse is
// false), memory-planned and compiled by LLVM when first run, on threads
// threads. Returns NULL with a message in err when LLVM fails.
RtExec *rt_exec_new_cpu(Model *m, int64_t max_batch, bool fuse, int threads, char *err, size_t errsz);
RtBackend rt_exec_backend(const RtExec *ex);

// The program and compile times of an entry point of a cpu executor
// (compiling it now if it was not yet), for `nnc bench`; NULL for ref.
const KProgram *rt_exec_program(RtExec *ex, RtMode mode, CgTimes *times);
void rt_exec_free(RtExec *ex);

// Fills every parameter and buffer from its initializer, drawing from a
// generator seeded with seed (PyTorch's distributions, not its numbers).
void rt_exec_init_params(RtExec *ex, uint64_t seed);

// Floats per sample a model reads: every input's values, one input after
// another in declaration order (a data set's row).
int64_t rt_sample_dim(const Model *m);

// Runs one entry point on a batch of B samples: x holds B rows of
// rt_sample_dim floats (each split over the model's inputs), y B targets
// (int32 class indexes or floats; may be NULL for RT_FORWARD). For RT_TRAIN,
// lr is the learning rate of this step. Returns the loss (0 for
// RT_FORWARD). A training step whose loss is not finite stops there: no
// gradients, no update, and the step does not count.
double rt_exec_run(RtExec *ex, RtMode mode, int64_t B, const float *x, const void *y, double lr);

// The output of the last run: B rows of rt_exec_output_dim floats.
const float *rt_exec_output(const RtExec *ex);
int64_t rt_exec_output_dim(const RtExec *ex);

// After a run whose loss is not finite: the first node (in graph order)
// whose output holds a NaN or an infinity, or NULL.
const IrNode *rt_exec_first_nonfinite(const RtExec *ex);

// Persistent tensors (parameters, buffers, optimizer state) by index, for
// checkpoints. The data is the executor's; writes change the model.
int rt_exec_num_state(const RtExec *ex);
const IrNode *rt_exec_state_node(const RtExec *ex, int i);
float *rt_exec_state_data(RtExec *ex, int i, int64_t *numel);
float *rt_exec_find_state(RtExec *ex, const char *name, int64_t *numel);

// Training steps taken (the optimizer's t), and the dropout generator:
// both part of a checkpoint.
int64_t rt_exec_steps(const RtExec *ex);
void rt_exec_set_steps(RtExec *ex, int64_t steps);
Rng *rt_exec_rng(RtExec *ex);

// Dropout off: a training step then is deterministic whatever the
// generator (tests compare with frameworks whose masks differ).
void rt_exec_set_dropout(RtExec *ex, bool enabled);

// cpu backend: calls tick(arg, i) as kernel i of a step starts, and
// tick(arg, nkernels) when the step ends (NULL: no calls); for `nnc bench`.
void rt_exec_set_tick(RtExec *ex, void (*tick)(void *arg, int kernel), void *arg);

// The value of node n after the last run (a gradient, say): B rows for a
// batched node. NULL when the last run did not compute n.
const float *rt_exec_value(const RtExec *ex, const IrNode *n);

//
// runtime/feed.c
//

// Loads the data at path for m, as train, eval and predict all read it: a
// directory of IDX files in the MNIST layout (split "train" or "test"), a
// CSV file in the label,pixel0,... layout (pixels scaled by 1/255), or a
// table CSV whose columns are named after the inputs and the target (values
// kept as they are; see rt_load_table_csv). Models with a real-valued
// target or several inputs read tables only. labeled: read the target too
// (train, eval); else the inputs alone (predict). Then rt_data_fits.
bool rt_load_model_data(const Model *m, const char *path, const char *split, bool labeled, RtDataset *ds,
                        char *err, size_t errsz);

// Whether ds's samples fit m's inputs: rt_sample_dim values, and for a
// model of one input, the input's shape up to dimensions of 1 (28x28 fits
// f32[1, 28, 28]; 16x49 does not), unless the data is flat (a CSV row) or
// the input is (an MLP takes images of its size). Frees ds when not.
bool rt_data_fits(const Model *m, RtDataset *ds, char *err, size_t errsz);

//
// runtime/checkpoint.c
//

// Bounds on the counters a checkpoint stores: --epochs' largest value, and
// the largest step a double (the optimizer's bias correction) holds exactly.
#define RT_MAX_EPOCHS 1000000
#define RT_MAX_STEPS ((int64_t)1 << 53)
#define RT_MAX_BATCH (1 << 20)   // --batch's largest value

// One row of the metrics log: an epoch's results.
typedef struct RtMetrics {
  int64_t epoch;         // epochs finished, from 1
  int64_t step;          // optimizer steps taken
  double lr;             // the learning rate of the epoch's last step
  double train_loss, train_acc;  // over the epoch; acc -1 for real-valued targets
  double val_loss, val_acc;      // -1 without a validation set
  double seconds;        // the epoch's time; -1: unknown (a row restored from a checkpoint)
} RtMetrics;

// The settings that decide a run's steps and the order of its data: a
// checkpoint keeps them, and --resume continues with them.
typedef struct RtRunSettings {
  int batch;
  double lr;             // the base learning rate
  uint64_t seed;
  double val_split;
  int64_t limit;         // 0: all the data
  bool shuffle;
  int64_t samples;       // training samples after --limit and the split
  char id[20];           // drawn when the run starts, kept by its resumes: a
                         // resume may replace only its own run's checkpoint
} RtRunSettings;

// Where training stood when a checkpoint was written.
typedef struct RtCkptInfo {
  int64_t epoch;         // epochs finished
  int64_t step;          // optimizer steps taken
  RtCursor cursor;       // the training batcher's position
  bool has_cursor;       // false in a checkpoint written without one
  bool normalized;       // inputs were standardized: x = (x - mean) / std
  double mean, std;
  RtMetrics last;        // the metrics row of the epoch it ends (without seconds)
  bool has_last;         // false at epoch 0 and in files without one
  bool plain;            // loaded from weights without nnc's metadata (a PyTorch
                         // state_dict): nothing above is set
  RtRunSettings run;     // the settings the run trained with
  bool has_run;          // false in files written before checkpoints kept them
} RtCkptInfo;

// Writes every persistent tensor of ex (parameters, batchnorm statistics,
// optimizer state) to path as safetensors, with the metadata a resume needs
// (model name and hash, epoch, step, data cursor, dropout generator, the
// last metrics row), atomically: a crash never leaves a torn file.
bool rt_checkpoint_save(RtExec *ex, const char *path, const RtCkptInfo *info, char *err, size_t errsz);

// Loads a checkpoint into ex. Every tensor ex has must be in the file with
// its shape, except optimizer state when weights_only (eval, predict,
// train --init); a file from another model is refused, naming the first
// tensor that differs, and so is one whose optimizer state is another
// optimizer's, or that holds a NaN or an infinity. Fills info (may be
// NULL) from the metadata, whose numbers are checked against their bounds.
// With weights_only, a safetensors file without nnc's metadata (PyTorch's
// save_file(model.state_dict())) is taken as plain weights: info->plain is
// set, and its integer num_batches_tracked buffers are ignored.
bool rt_checkpoint_load(RtExec *ex, const char *path, bool weights_only, RtCkptInfo *info,
                        char *err, size_t errsz);

// The settings the run that wrote the checkpoint at path trained with, for
// a resume to take before it builds the executor (*has false in a file
// without them); false names what is wrong with the file in err.
bool rt_checkpoint_run(const char *path, RtRunSettings *run, bool *has, char *err, size_t errsz);

//
// runtime/rundir.c
//

// The files of a training run. --out names a directory, which holds
// checkpoint.safetensors, metrics.csv (or .jsonl) and train.lock; or, when
// it ends in ".safetensors", the checkpoint itself, beside which go
// NAME.metrics.csv and NAME.lock (NAME: the path without ".safetensors").
typedef struct RtRunDir {
  char *dir;             // the directory that holds the files
  char *ckpt;            // the checkpoint
  char *metrics;         // the metrics log
  char *lock;            // the lock file, locked while the run lasts
  int lock_fd;           // -1 when not held
  FILE *log;             // the metrics log, open for appending
  bool json;             // JSON lines, else CSV
} RtRunDir;

// Resolves out into the run's paths, creating the directory; refuses a
// link at any of the paths; takes the lock (failing with the pid of the
// run holding it); removes the temporary files dead processes left.
bool rt_rundir_open(RtRunDir *d, const char *out, bool json, char *err, size_t errsz);
// Starts the metrics log: rewrites it (atomically) with the rows of
// epochs 1..epoch it holds, the last one taken from *last when the log
// lacks it (a crash between the checkpoint and its row), and opens it for
// appending. epoch 0: a log of just the header.
bool rt_rundir_start_metrics(RtRunDir *d, int64_t epoch, const RtMetrics *last, char *err, size_t errsz);
// Appends one row and flushes it; false when the write failed.
bool rt_rundir_log(RtRunDir *d, const RtMetrics *row, char *err, size_t errsz);
// Closes the log (reporting a failed close) and lets go of the lock.
bool rt_rundir_close(RtRunDir *d, char *err, size_t errsz);

//
// runtime/train.c
//

// What `nnc train` was asked to do; the defaults come from the model's
// train declaration.
typedef struct RtTrainOpts {
  const char *data;      // a directory of IDX files or a CSV file
  const char *test;      // the test set (a CSV file), or NULL: the data directory's t10k files
  const char *out;       // where checkpoints and the metrics log go
  const char *resume;    // a checkpoint to continue from, or NULL
  const char *init;      // weights to start a new run from (optimizer state fresh), or NULL
  bool overwrite;        // a new run may replace the checkpoint in out
  bool no_test;          // skip the test set
  int epochs;            // total epochs, counting those before a resume; 0 writes
                         // the initial weights
  int batch;
  double lr;             // the base learning rate
  uint64_t seed;
  int threads;           // BLAS threads (0: leave as it is)
  double val_split;
  int64_t limit;         // use the first limit training samples (0: all)
  int64_t test_limit;    // likewise for the test set
  bool normalize;        // standardize inputs with the training set's mean and std
  bool shuffle;
  int progress;          // within an epoch: 1 a live bar, 0 plain periodic lines, -1 nothing
  bool quiet;            // print nothing but errors (no epoch or test summaries either)
  bool json;             // metrics log as JSON lines (else CSV)
  RtBackend backend;     // ref or cpu
  bool fuse;             // cpu: fuse kernels (false: one kernel per node)
  unsigned given;        // the settings the command line gave (RT_GIVEN_*): with
                         // resume, the others are the run's, and a given one
                         // other than the run's is refused (but for lr)
} RtTrainOpts;

enum { RT_GIVEN_BATCH = 1, RT_GIVEN_LR = 2, RT_GIVEN_SEED = 4, RT_GIVEN_VAL_SPLIT = 8, RT_GIVEN_LIMIT = 16,
       RT_GIVEN_SHUFFLE = 32 };

// What a run reached.
typedef struct RtTrainResult {
  double train_loss;     // mean over the last epoch
  double train_acc;      // accuracy over the last epoch (class targets), else -1
  double val_loss, val_acc;    // -1 without a validation set
  double test_loss, test_acc;  // -1 without a test set
  int64_t steps;
  double seconds;
} RtTrainResult;

// Trains m (after pass_autodiff) as opts says, printing progress to out.
// Returns false after printing why (bad data, a non-finite loss, ...).
bool rt_train(Model *m, const RtTrainOpts *opts, FILE *out, RtTrainResult *res);

// Evaluation over a whole data set in batches: the mean loss, accuracy,
// and the confusion matrix (conf[true * nclasses + predicted], may be
// NULL) for class targets.
typedef struct RtEvalResult {
  double loss;
  double acc;            // -1 for real-valued targets
  int64_t n;
} RtEvalResult;
RtEvalResult rt_evaluate(RtExec *ex, const RtDataset *ds, int64_t batch, int64_t *conf);

// The learning rate of a step: the schedule over epochs, after warmup.
double rt_schedule_lr(const Model *m, double base_lr, int64_t epoch, int64_t step, int epochs);

// Sets the number of threads the ref backend lets the BLAS library use
// (n >= 1; the cpu backend splits its work over its own thread pool).
void rt_set_threads(int n);
// Puts the BLAS library on rt_set_threads' count again (the cpu backend
// keeps it on one thread while it runs).
void blas_threads_default(void);

// The median seconds of reps calls of cblas_sgemm alone on C[M, N] =
// op(A) op(B) with K inner, on random matrices (`nnc bench` compares the
// step's GEMMs with it).
double rt_time_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int reps);

#endif
