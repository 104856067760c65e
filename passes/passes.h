// passes.h: the passes over the graph IR, each with a one-line contract.
//
// pass_lower() turns a parsed Program into a Model: the graph (with shapes,
// inferred node by node as the layers are built, since a layer's parameter
// shapes depend on its input's) and the training settings from the loss,
// optimizer, schedule and train declarations.
#ifndef NNC_PASSES_H
#define NNC_PASSES_H

#include "ir.h"
#include "util.h"

typedef struct Program Program;   // a parsed .nn file (frontend.h); only pass_lower reads one

typedef enum {
  OPT_SGD = RT_OPT_SGD, OPT_ADAM = RT_OPT_ADAM, OPT_ADAMW = RT_OPT_ADAMW, OPT_RMSPROP = RT_OPT_RMSPROP,
  OPT_ADAGRAD = RT_OPT_ADAGRAD
} OptimKind;

// Optimizer hyper-parameters, with PyTorch's names and defaults.
typedef struct OptimConfig {
  OptimKind kind;
  double lr;
  double momentum;       // sgd, rmsprop
  double dampening;      // sgd
  bool nesterov;         // sgd
  double weight_decay;   // all (adamw: decoupled)
  double beta1, beta2;   // adam, adamw
  double eps;            // adam, adamw, rmsprop, adagrad
  double alpha;          // rmsprop: smoothing of square_avg
  bool centered;         // rmsprop: divide by the variance's estimate (keeps grad_avg)
  double lr_decay;       // adagrad
  double initial_accumulator_value;   // adagrad: sum's first value
  double clip_norm;      // all: scale the gradients to this global L2 norm when above it
                         // (torch.nn.utils.clip_grad_norm_); 0: no clipping
} OptimConfig;

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE, SCHED_ONECYCLE, SCHED_PLATEAU } SchedKind;

// Learning-rate schedule, applied per epoch, after an optional linear
// warmup measured in steps; onecycle per step; plateau after each epoch's
// validation.
typedef struct ScheduleConfig {
  SchedKind kind;
  int step_size;         // step: epochs between decays
  double gamma;          // step: factor per decay
  int t_max;             // cosine: epochs to reach min_lr (0: the training length)
  double min_lr;         // cosine, plateau
  int warmup;            // steps of linear warmup from 0 (0: none)
  double max_lr;         // onecycle (0: the base rate)
  double pct_start;      // onecycle: fraction of the steps rising to max_lr
  double div_factor;     // onecycle: the first rate is max_lr / div_factor
  double final_div_factor;   // onecycle: the last is that / final_div_factor
  bool anneal_linear;    // onecycle: anneal_strategy 'linear' (else 'cos')
  double factor;         // plateau: the rate's factor on a plateau
  int patience;          // plateau: epochs without improvement before a reduction
  double threshold;      // plateau: how much better counts as better
  bool threshold_abs;    // plateau: threshold_mode 'abs' (else 'rel')
  int cooldown;          // plateau: epochs after a reduction before counting again
  double eps;            // plateau: smaller reductions are skipped
} ScheduleConfig;

// Data augmentation of the training batches (never validation, eval or
// predict), sample by sample: see data/data.h's DataAugment.
typedef struct AugmentConfig {
  int shift;             // random translation by up to shift pixels each way (0: none)
  int crop;              // PyTorch's RandomCrop(size, padding = crop) (0: none)
  bool hflip;            // a horizontal flip with probability 0.5
  double rotate;         // a random rotation in [-rotate, rotate] degrees (0: none)
  double noise;          // Gaussian noise of this standard deviation on the input (0: none)
} AugmentConfig;

// Defaults for `nnc train`; each can be overridden on the command line.
typedef struct TrainConfig {
  int batch;             // 64
  int epochs;            // 1
  bool shuffle;          // true
  uint64_t seed;         // 1
  double val_split;      // fraction held out for validation (0)
  AugmentConfig augment; // none
  bool drop_last;        // false: an epoch's last batch may be smaller; true: it is dropped
  int patience;          // early stopping: epochs without a better validation metric (0: off)
} TrainConfig;

// A compiled-to-IR model and its training settings.
typedef struct Model {
  IrGraph *g;            // output in g->output, loss in g->loss
  IrNode *input;         // the (first) input
  IrNode **inputs;       // [ninputs] every input, in declaration order; inputs[0] == input
  int ninputs;
  IrNode *target;        // the (first) target, or NULL
  IrNode **targets;      // [ntargets] every target, in declaration order; targets[0] == target
  int ntargets;
  OptimConfig opt;
  ScheduleConfig sched;
  TrainConfig train;
  bool has_loss, has_optimizer;  // declared in the file (else defaults)
  // Filled by pass_autodiff:
  IrNode **params;       // the trainable parameters the loss depends on, in graph order
  IrNode **grads;        // grads[i]: d loss / d params[i]
  IrNode **steps;        // steps[i]: the optimizer update of params[i]
  int nparams;
} Model;

// lower.c: needs a parsed program without syntax errors; builds the graph of
// its one model, expanding blocks and resolving names, with shapes; reports
// every error to d and returns NULL if there were any.
Model *pass_lower(const Program *p, Arena *a, Diag *d);

// The values an integer (i32) input of g may hold are [0, bound): bound
// is the row count of the smallest embedding table it indexes; 0 when no
// embedding reads it.
int64_t pass_index_bound(const IrGraph *g, const IrNode *in);

// The first loss of m that compares an output with a float input (a
// denoiser's clean image), or NULL. Training noise (train's noise, --noise)
// goes on every float input, so it would reach that loss's target too, and
// the model would learn to give back its noisy input: such a loss is refused
// with noise on (the gaussian_noise layer, inside the model, is the way).
const IrNode *pass_noisy_loss(const Model *m);

// autodiff.c: needs a lowered model with a loss; appends the reverse-mode
// gradient of the loss with respect to every parameter it depends on (one
// rule per op), with clip_norm the gradients scaled together to that
// global norm, then the optimizer's update of each one (SGD_STEP,
// ADAM_STEP, RMSPROP_STEP or ADAGRAD_STEP, with state buffers named after the
// parameter, as PyTorch's optimizer state: momentum_buffer, exp_avg,
// exp_avg_sq, square_avg, grad_avg, sum). Reports and returns
// false if the model cannot be trained.
bool pass_autodiff(Model *m, Diag *d);

// Marks in keep[] (one flag per node of m->g) what the caller of entry reads
// after a step: every output, and but in ENTRY_FORWARD the loss and each
// loss of its weighted sum.
void pass_kept(const Model *m, EntryKind entry, bool *keep);
// Marks in need[] (one flag per node of m->g) the nodes entry computes.
void pass_needed(const Model *m, EntryKind entry, bool *need);
// The entry points m can run (bits 1 << ENTRY_*): forward; eval with a
// loss; train with a loss after autodiff.
unsigned pass_entries(const Model *m);
// The factor of a mean (IR_MEAN) over its axes: 1 / the elements each result element averages.
float pass_mean_scale(const IrNode *n);

// simplify.c: rewrites m's graph in place: algebraic identities (x * 1,
// x + 0, -(-x), reshapes of reshapes), constants folded, common
// subexpressions merged, dead nodes dropped (ids renumbered); keeps m's
// output, loss, gradients and updates pointing at what computes them.
// Reports counts to report (may be NULL); true if anything changed. where
// (may be NULL, else one entry per node before) receives, for each node by
// its id before, the node that now computes its value, or NULL if dropped.
bool pass_simplify(Model *m, FILE *report, IrNode **where);

// fuse.c: needs a checked graph (after pass_autodiff for ENTRY_TRAIN);
// lowers the nodes entry needs to kernels: chains of elementwise ops fuse
// into one loop, a matrix product's elementwise consumers into its
// epilogue, a reduction with the elementwise ops that feed it; the rest
// become library kernels. With fuse false, every node is a kernel of its
// own. Allocates from m's arena; memory is pass_memplan's. why (may be
// NULL) receives one line per producer/consumer pair left unfused, saying
// why.
KProgram *pass_fuse(const Model *m, EntryKind entry, int64_t max_batch, bool fuse, FILE *why);

// region.c: needs p from pass_fuse, before pass_memplan. Finds the runs
// of kernels that are row-wise over the batch (p->regions), moving a
// kernel that is not (a weight's gradient) past the row-wise ones after it
// where no data flows between them, and makes the products of a weight's
// gradient summed over several readers accumulate into one buffer.
void pass_regions(KProgram *p);

// memplan.c: needs p from pass_fuse; keep[id]: the caller reads node id
// after the step (the output; the loss but in ENTRY_FORWARD). Gives every
// value p's kernels materialize an offset: one arena for the activations,
// reusing a buffer once its last reader has run (in place where a loop reads
// and writes the same elements), and the persistent state: the updated
// parameters, then each kind of their optimizer state laid out like them,
// then the other buffers, the same for every entry point. With p->blocks
// (one update over every parameter) each parameter's gradient goes to its
// place in the gradients' block. Fills p->buf, arena_bytes, state_bytes.
void pass_memplan(KProgram *p, const bool *keep);

// fuse.c: needs p after pass_memplan; gives each library kernel its
// descriptor (Kernel.lib, runtime.h's RtLib): its buffers' places and
// shapes, the op's settings, and the slots of run-time state the training
// program's max poolings, batchnorms and dropouts keep for their gradients
// (p->naux).
void pass_describe_libs(KProgram *p);

// fuse.c: the forward node whose saved state gradient n reads (a max
// pooling's argmax: the one over the same x with the same window; a
// batchnorm's batch statistics: the one over the same x and gamma; a
// dropout's mask: its own input; a pooled weight gradient's argmax: the
// pooling it names), or NULL when none or several match and
// the gradient computes it again. Both backends pair them by this.
const IrNode *pass_saved_forward(const IrGraph *g, const IrNode *n);

// For each node of g (by id), whether it is an update (sgd_step, adam_step)
// of a parameter that shares its gradient with no earlier update (two
// parameters whose gradients are one value, as the biases of two batchnorms
// added together, share it). The updates that do not lie, with their
// parameters and state, in the blocks one update over every parameter
// reads (KProgram.blocks). Allocated in g's arena.
const bool *pass_updates_in_blocks(const IrGraph *g);

// compile.c: the compile driver. The options of pass_compile.
typedef struct CompileOptions {
  int64_t max_batch;     // the arena is sized for batches up to this
  bool fuse;             // simplify and fuse (false: one kernel per node, the graph as it is)
  FILE *report;          // simplify's counts and the unfused pairs, or NULL
  bool regions;          // batch-blocked regions (pass_regions), for the cpu backend
} CompileOptions;

// A finished program and the copy of the model it was compiled from, all in
// its own arena (free it with pass_compilation_free).
typedef struct Compilation {
  KProgram *prog;        // prog->g is model->g
  Model *model;          // the copy, simplified
  IrNode **where;        // where[id]: the copy's node that computes node id of the model compiled, or NULL
                         // (simplified away)
  Arena *arena;
} Compilation;

// compile.c: needs a checked model (after pass_autodiff for ENTRY_TRAIN, a
// loss for ENTRY_EVAL); compiles entry on a copy (m is not changed):
// simplify, fuse, plan memory, verify; an inconsistent program is a bug.
Compilation *pass_compile(const Model *m, EntryKind entry, const CompileOptions *o);
void pass_compilation_free(Compilation *c);

// memplan.c: whether m can run at batch in limit bytes, before anything is
// allocated: its persistent tensors (parameters, buffers and, after
// autodiff, optimizer state and one gradient per parameter), and then its
// largest value at batch, and a convolution's im2col scratch for one
// image, must fit. These bytes any run needs at least;
// the runtime's arena reuses memory, so the whole is not summed. Reports at
// the layer whose parameter or result goes over, with the bytes.
bool pass_check_memory(const Model *m, int64_t batch, int64_t limit, Diag *d);

// The bytes persistent tensor n takes in the state block (padded to the
// planner's alignment): the blocks of one update are sums of these.
int64_t pass_state_bytes(const IrNode *n);

// shapes.c: infers n's dtype and shape from its inputs' and attributes;
// reports a mismatch at n->loc and returns false (n->ndim stays -1).
// Inputs with unknown shape (ndim -1) make n unknown without a report.
bool pass_infer_node(IrNode *n, Diag *d);
// shapes.c: infers every node of g in order; false if any failed.
bool pass_shapes(IrGraph *g, Diag *d);

#endif
