// train.h: training, evaluation, checkpoints and the run directory, over
// the executors of exec.h and the readers of data.h.
#ifndef NNC_TRAIN_H
#define NNC_TRAIN_H

#include "data.h"
#include "exec.h"

//
// runtime/feed.c
//

// Loads the data at path for m, as train, eval and predict all read it: a
// directory of IDX files in the MNIST layout (split "train" or "test"), a
// CSV file in the label,pixel0,... layout (pixels scaled by 1/255), or a
// table CSV whose columns are named after the inputs and the target (values
// kept as they are; see data_load_table_csv). Models with a real-valued
// target or several inputs read tables only. labeled: read the target too
// (train, eval); else the inputs alone (predict). Then train_data_fits.
bool train_load_data(const Model *m, const char *path, const char *split, bool labeled, Dataset *ds,
                        char *err, size_t errsz);

// Whether ds's samples fit m's inputs: exec_sample_dim values, and for a
// model of one input, the input's shape up to dimensions of 1 (28x28 fits
// f32[1, 28, 28]; 16x49 does not), unless the data is flat (a CSV row) or
// the input is (an MLP takes images of its size). Frees ds when not.
bool train_data_fits(const Model *m, Dataset *ds, char *err, size_t errsz);

//
// runtime/checkpoint.c
//

// Bounds on the counters a checkpoint stores: --epochs' largest value, and
// the largest step a double (the optimizer's bias correction) holds exactly.
#define TRAIN_MAX_EPOCHS 1000000
#define TRAIN_MAX_STEPS ((int64_t)1 << 53)
#define TRAIN_MAX_BATCH (1 << 20)   // --batch's largest value

// One row of the metrics log: an epoch's results.
typedef struct Metrics {
  int64_t epoch;         // epochs finished, from 1
  int64_t step;          // optimizer steps taken
  double lr;             // the learning rate of the epoch's last step
  double train_loss, train_acc;  // over the epoch; acc -1 for real-valued targets
  double val_loss, val_acc;      // -1 without a validation set
  double seconds;        // the epoch's time; -1: unknown (a row restored from a checkpoint)
  int nterms;            // a loss that is a weighted sum of several: its terms (0: one loss)
  double train_terms[IR_MAX_LOSS_TERMS];   // each term's mean over the epoch
  double val_terms[IR_MAX_LOSS_TERMS];     // and over the validation set (-1 without one)
} Metrics;

// The settings that decide a run's steps and the order of its data: a
// checkpoint keeps them, and --resume continues with them.
typedef struct RunSettings {
  int batch;
  double lr;             // the base learning rate
  uint64_t seed;
  double val_split;
  int64_t limit;         // 0: all the data
  bool shuffle;
  int64_t samples;       // training samples after --limit and the split
  char id[20];           // drawn when the run starts, kept by its resumes: a
                         // resume may replace only its own run's checkpoint
  bool drop_last;        // each epoch drops its last batch when smaller than batch
} RunSettings;

// The state of the plateau schedule (PyTorch's ReduceLROnPlateau), stepped
// once per epoch with the validation loss: a checkpoint keeps it.
typedef struct Plateau {
  double lr;             // the rate of the next epoch (before warmup)
  double best;           // the lowest validation loss so far (+inf: none yet)
  int64_t bad;           // epochs in a row without a better one (num_bad_epochs)
  int64_t cooldown;      // epochs left before bad epochs count again (cooldown_counter)
} Plateau;

// Where training stood when a checkpoint was written.
typedef struct CkptInfo {
  int64_t epoch;         // epochs finished
  int64_t step;          // optimizer steps taken
  Cursor cursor;       // the training batcher's position
  bool has_cursor;       // false in a checkpoint written without one
  bool normalized;       // inputs were standardized: x = (x - mean) / std
  double mean, std;
  Metrics last;        // the metrics row of the epoch it ends (without seconds)
  bool has_last;         // false at epoch 0 and in files without one
  bool plain;            // loaded from weights without nnc's metadata (a PyTorch
                         // state_dict): nothing above is set
  RunSettings run;     // the settings the run trained with
  bool has_run;          // false in files written before checkpoints kept them
  Plateau plateau;       // the plateau schedule's state after the epoch
  bool has_plateau;      // false in files of runs without that schedule
} CkptInfo;

// Writes every persistent tensor of ex (parameters, batchnorm statistics,
// optimizer state) to path as safetensors, with the metadata a resume needs
// (model name and hash, epoch, step, data cursor, dropout generator, the
// last metrics row), atomically: a crash never leaves a torn file.
bool train_checkpoint_save(Exec *ex, const char *path, const CkptInfo *info, char *err, size_t errsz);

// Loads a checkpoint into ex. Every tensor ex has must be in the file with
// its shape, except optimizer state when weights_only (eval, predict,
// train --init); a file from another model is refused, naming the first
// tensor that differs, and so is one whose optimizer state is another
// optimizer's, or that holds a NaN or an infinity. Fills info (may be
// NULL) from the metadata, whose numbers are checked against their bounds.
// With weights_only, a safetensors file without nnc's metadata (PyTorch's
// save_file(model.state_dict())) is taken as plain weights: info->plain is
// set, and its integer num_batches_tracked buffers are ignored.
bool train_checkpoint_load(Exec *ex, const char *path, bool weights_only, CkptInfo *info,
                        char *err, size_t errsz);

// The settings the run that wrote the checkpoint at path trained with, for
// a resume to take before it builds the executor (*has false in a file
// without them); false names what is wrong with the file in err.
bool train_checkpoint_run(const char *path, RunSettings *run, bool *has, char *err, size_t errsz);

//
// runtime/rundir.c
//

// The files of a training run. --out names a directory, which holds
// checkpoint.safetensors, metrics.csv (or .jsonl) and train.lock; or, when
// it ends in ".safetensors", the checkpoint itself, beside which go
// NAME.metrics.csv and NAME.lock (NAME: the path without ".safetensors").
typedef struct RunDir {
  char *dir;             // the directory that holds the files
  char *ckpt;            // the checkpoint
  char *metrics;         // the metrics log
  char *lock;            // the lock file, locked while the run lasts
  int lock_fd;           // -1 when not held
  FILE *log;             // the metrics log, open for appending
  bool json;             // JSON lines, else CSV
  char *terms[IR_MAX_LOSS_TERMS];   // a weighted sum's terms, named for their columns
  int nterms;            // (train_NAME, val_NAME after the others; 0: one loss, no such columns)
} RunDir;

// Resolves out into the run's paths, creating the directory; refuses a
// link at any of the paths; takes the lock (failing with the pid of the
// run holding it); removes the temporary files dead processes left.
bool train_rundir_open(RunDir *d, const char *out, bool json, char *err, size_t errsz);
// Names the columns of a loss's terms, for a loss that is a weighted sum
// of several (n of them; names copied): train_NAME and val_NAME after the
// others, NAME as `cross_entropy_logits_label` (loss, output, target).
void train_rundir_terms(RunDir *d, const char *const *names, int n);
// Starts the metrics log: rewrites it (atomically) with the rows of
// epochs 1..epoch it holds, the last one taken from *last when the log
// lacks it (a crash between the checkpoint and its row), and opens it for
// appending. epoch 0: a log of just the header.
bool train_rundir_start_metrics(RunDir *d, int64_t epoch, const Metrics *last, char *err, size_t errsz);
// Appends one row and flushes it; false when the write failed.
bool train_rundir_log(RunDir *d, const Metrics *row, char *err, size_t errsz);
// Closes the log (reporting a failed close) and lets go of the lock.
bool train_rundir_close(RunDir *d, char *err, size_t errsz);

//
// runtime/train.c
//

// What `nnc train` was asked to do; the defaults come from the model's
// train declaration.
typedef struct TrainOpts {
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
  bool drop_last;        // drop each epoch's last batch when smaller than batch
  int patience;          // stop after this many epochs without a better validation metric (0: never)
  int progress;          // within an epoch: 1 a live bar, 0 plain periodic lines, -1 nothing
  bool quiet;            // print nothing but errors (no epoch or test summaries either)
  bool json;             // metrics log as JSON lines (else CSV)
  const char *backend;   // the backend's name (exec_backend_names)
  bool fuse;             // cpu: fuse kernels (false: one kernel per node)
  DataAugment augment;   // what to do to each training sample (the model's train declaration's,
                         // or the command line's)
  unsigned given;        // the settings the command line gave (TRAIN_GIVEN_*): with
                         // resume, the others are the run's, and a given one
                         // other than the run's is refused (but for lr)
} TrainOpts;

enum { TRAIN_GIVEN_BATCH = 1, TRAIN_GIVEN_LR = 2, TRAIN_GIVEN_SEED = 4, TRAIN_GIVEN_VAL_SPLIT = 8, TRAIN_GIVEN_LIMIT = 16,
       TRAIN_GIVEN_SHUFFLE = 32, TRAIN_GIVEN_DROP_LAST = 64 };

// What a run reached.
typedef struct TrainResult {
  double train_loss;     // mean over the last epoch
  double train_acc;      // accuracy over the last epoch (class targets), else -1
  double val_loss, val_acc;    // -1 without a validation set
  double test_loss, test_acc;  // -1 without a test set
  int64_t steps;
  double seconds;
} TrainResult;

// Trains m (after pass_autodiff) as opts says, printing progress to out.
// Returns false after printing why (bad data, a non-finite loss, ...).
bool train_run(Model *m, const TrainOpts *opts, FILE *out, TrainResult *res);

// Evaluation over a whole data set in batches: the mean loss, accuracy,
// and the confusion matrix (conf[true * nclasses + predicted], may be
// NULL) for class targets.
typedef struct EvalResult {
  double loss;
  double acc;            // -1 for real-valued targets
  int64_t n;
  double terms[IR_MAX_LOSS_TERMS];   // a loss that is a weighted sum: each loss's mean
  int nterms;            // 0: the loss is one loss
  double head_acc[IR_MAX_TARGETS];   // the accuracy of each classifier (exec_class_heads); acc is the first's
  const char *head_target[IR_MAX_TARGETS];   // the class target each one is compared with
  int nheads;
} EvalResult;
EvalResult train_evaluate(Exec *ex, const Dataset *ds, int64_t batch, int64_t *conf);

// A loss as the reports print it: 4 decimals, or 4 significant digits in
// scientific notation below 0.01 (an autoencoder's MSE: 1.034e-03, not 0.0010).
void train_print_loss(FILE *out, double v);

// Prints each classifier's accuracy as " label 0.5200, kind 0.3100".
void train_print_accuracies(FILE *out, const char *const *target, const double *acc, int n);
// Prints the losses of a weighted sum with their means v, as
// "cross_entropy(logits, label) 0.4312, mse(recon, image) 0.0213".
void train_print_losses(FILE *out, const Model *m, const double *v, int n);

// The learning rate of a step: the schedule over epochs, after warmup
// (plateau: base_lr is the rate its state gives, Plateau.lr).
double train_schedule_lr(const Model *m, double base_lr, int64_t epoch, int64_t step, int epochs, int64_t epoch_steps);

// The plateau schedule's state before the first epoch, at rate lr.
Plateau train_plateau_start(double lr);
// One step of ReduceLROnPlateau(mode 'min') with an epoch's validation loss,
// as PyTorch's step(metric): the rate times factor (not below min_lr, and
// only by more than eps) after more than patience epochs without a better
// loss, then cooldown epochs that do not count.
void train_plateau_step(const ScheduleConfig *s, Plateau *p, double loss);

#endif

