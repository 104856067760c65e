// backend.h: what a backend implements, and what the two backends share;
// for exec/ alone (code above it includes exec.h).
//
// A backend is a table of operations (QBE's Target, ggml's backend
// interface) in the registry of exec.c. exec.c does what every backend
// shares: argument checks, the state list, splitting a data row over the
// inputs, copies in and out. Each backend's file holds the rest: ref.c the
// plain C kernel of every op, cpu.c the compiled programs.
#ifndef NNC_EXEC_BACKEND_H
#define NNC_EXEC_BACKEND_H

#include "exec.h"

typedef struct ExecBackend {
  const char *name;      // as --backend takes it
  const char *help;      // one line for --help
  bool keeps_values;     // every value a run computes stays readable (exec_keeps_values)
  // Fills the backend's part of ex, whose shared part exec_new has filled
  // (graph, per-node tables, state list); false with err set if it cannot.
  bool (*init)(Exec *ex, const Model *m, const ExecOptions *o, char *err, size_t errsz);
  void (*free)(Exec *ex);                      // the backend's part
  // One step of an entry point ex was built to run, at a batch exec_run
  // checked (ex->batch): feeds x and y (exec_feed), sets done[] to what the
  // step computed; returns the loss.
  double (*run)(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y, double lr);
  const KProgram *(*program)(const Exec *ex, EntryKind entry, CgTimes *times);   // may be NULL
  // Copies of count floats of node n's value (a node of ex->g) out of and
  // into the backend's memory.
  void (*read)(const Exec *ex, const IrNode *n, int64_t count, float *out);
  void (*write)(Exec *ex, const IrNode *n, int64_t count, const float *in);
  // The batch the next run of entry will get (exec_prefetch); NULL: the
  // backend has no memory of its own to copy it to ahead of time.
  void (*prefetch)(Exec *ex, EntryKind entry, int64_t B, const float *x, const void *y);
  // Finds where ex's training program makes each gradient final and where
  // it is first read (exec_set_grad_hook); NULL: no such points.
  bool (*grad_points)(Exec *ex, int *ngrads, char *err, size_t errsz);
  // Whether the backend can run on this machine (the libraries or device
  // it needs are there); false with what is missing in err. NULL: always.
  bool (*available)(char *err, size_t errsz);
} ExecBackend;

extern const ExecBackend exec_ref, exec_cpu, exec_cuda, exec_cuda_emu;

struct Exec {
  const ExecBackend *be;
  const Model *user;   // the caller's model
  const Model *m;      // the model that runs: the caller's (ref) or the compiled copy (cpu)
  const IrGraph *g;    // m->g
  int nnodes;          // g->nnodes: the per-node tables' length
  IrNode **where;      // where[id]: the node of g that computes node id of user->g, or NULL; NULL: the same graph
  int64_t max_batch;
  int threads;         // ExecOptions.threads, at least 1
  unsigned entries;    // the entry points it runs (1 << ENTRY_*)
  void **buf;          // buf[id]: the node's values ([max_batch, ...] for batched nodes)
  bool *need[ENTRY_COUNT];   // need[entry][id]: the entry point computes node id (pass_needed)
  bool *done;          // done[id]: the last run computed node id
  int *state_ids;      // ids in g of the persistent nodes (PARAM, BUFFER), in graph order
  const IrNode **state_user;   // state_user[i]: the caller's node of state i
  int nstate;
  int64_t batch;       // the batch of the last run
  int64_t steps;       // training steps taken: the optimizer's t
  bool dropout;        // apply dropout and gaussian_noise in training
  Rng rng;             // dropout masks, gaussian_noise draws
  // The ref backend's (the cpu backend keeps these in its RtContext's slots):
  bool training;       // of the step running now
  uint8_t **mask;      // mask[id]: the dropout mask of a DROPOUT node, or NULL
  float **bn;          // bn[id]: a training BATCHNORM node's batch mean and 1/std ([2, C]), or NULL
  int32_t **argmax;    // argmax[id]: where each window of a MAXPOOL node found its maximum
  int *fwd;            // fwd[id]: for a MAXPOOL_GRAD or BATCHNORM_GRAD(_GAMMA), the id of the forward
                       // whose saved state it reads (pass_saved_forward), or -1
  bool *masked;        // masked[id]: the last run applied dropout at node id
  void (*tick)(void *arg, int kernel);   // per-kernel timing, or NULL
  void *tick_arg;
  int64_t first_sample;  // exec_set_first_sample's
  ExecGradHook hook;     // exec_set_grad_hook's (ready NULL: none)
  struct GradPoint *points;   // the cpu backend's: where the training program calls it, by kernel
  int npoints;
  // The cpu backend: buf[] points into these, per the running program's plan.
  Compilation *prog[ENTRY_COUNT];   // per entry point it runs
  CgModule *mod[ENTRY_COUNT];
  char *arena;         // the activations of the running entry point
  int64_t arena_bytes;
  char *state;         // parameters, buffers and optimizer state
  RtContext *ctx;      // the pool, the library kernels' scratch and slots, the step's settings
  RtCalls calls;       // the calls compiled code makes, bound to ctx
  struct CudaExec *cuda;   // the cuda backends' (cuda.c)
};

// exec.c: sets ex->m and ex->g to the model that runs, and fills the
// per-node tables for it (need[] from pass_needed).
void exec_tables(Exec *ex, const Model *m);
void exec_free_tables(Exec *ex);
// Whether program q may share an executor's tables and state block with
// p: the same nodes, and every persistent tensor at the same place.
bool exec_same_layout(const KProgram *p, const KProgram *q);
// The host copies both backends' read and write are.
void exec_host_read(const Exec *ex, const IrNode *n, int64_t count, float *out);
void exec_host_write(Exec *ex, const IrNode *n, int64_t count, const float *in);
// Splits x's B rows (every input's values, in declaration order) over the
// inputs' buffers, [B, numel] each, and copies y into the target's; an
// input or target the running program has no buffer for is skipped.
void exec_feed(Exec *ex, int64_t B, const float *x, const void *y);

#endif
