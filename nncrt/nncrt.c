// nncrt.c: the runtime library's side of an artifact (`nnc compile`): a
// context holds a compiled model's state, arena and thread pool, and runs
// its entry functions exactly as the cpu backend runs the same code (one
// rt_context_run: the same calls into runtime/, the same per-step scalars;
// the same dropout generator), so an artifact's numbers are the JIT's to
// the bit.
//
// Everything comes from the artifact (RtArtifact, runtime.h): no graph, no
// compiler. Checkpoints are read and written through data/, with the checks
// `nnc train` applies (data/ckpt.c).
#include "nncrt.h"

#include "data.h"
#include "runtime.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(NNCRT_ABI == RT_ABI, "nncrt.h and runtime.h disagree on the ABI");

#define MAX_THREADS 1024
#define RNG_INIT 0x696e6974ULL   // "init": the initializers' stream, as exec_init_params
#define RNG_DROP 0x64726f70ULL   // "drop": dropout's, as exec_new

struct nncrt_context {
  const RtArtifact *a;
  const RtModelInfo *info;
  RtContext *rt;
  RtCalls calls;
  char *arena, *state;
  Rng rng;                     // dropout keys
  int64_t steps;               // the optimizer's t
  int64_t batch;               // the last run's B (0: none yet)
  int last;                    // the last run's entry point
  bool normalized;             // inputs are standardized: (x - mean) / std
  double mean, std;
  bool undrawn;                // the initializers have yet to run, from seed: they run on first
  uint64_t seed;               // use, so that a context that loads a checkpoint never draws
  char error[1024];
};

static const char *str(const RtModelInfo *in, int64_t off) { return (const char *)in + off; }

static const RtTensorInfo *tensor(const RtModelInfo *in, int i) {
  return (const RtTensorInfo *)((const char *)in + in->tensors) + i;
}

static int fail(nncrt_context *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->error, sizeof c->error, fmt, ap);
  va_end(ap);
  return -1;
}

// Whether c is a context of this model: a context of another model passed
// to this one's functions would run one model's code on the other's memory.
static bool same_model(const void *model, const nncrt_context *c) {
  if (!c)
    return false;
  if (c->a == model)
    return true;
  const RtModelInfo *in = ((const RtArtifact *)model)->info;
  fail((nncrt_context *)c, "a context made by %s_create (model '%s') was passed to a function of %s_* (model '%s')\n"
       "---> HINT: call each model's functions with the contexts its own create made", str(c->info, c->info->prefix),
       str(c->info, c->info->name), str(in, in->prefix), str(in, in->name));
  return false;
}

// Optimizer state t as a run starts it: zero, or Adagrad's
// initial_accumulator_value (constants: no random numbers drawn).
static void fresh_optimizer_state(const RtTensorInfo *t, char *state) {
  float v = t->init == RT_INIT_CONSTANT ? (float)t->init_a : t->init == RT_INIT_ONES ? 1.0f : 0.0f;
  for (int64_t i = 0; i < t->numel; i++)
    memcpy(state + t->offset + sizeof(float) * (size_t)i, &v, sizeof v);
}

const char *nncrt_version(void) { return NNC_VERSION; }

void nncrt_free(void *p) { free(p); }

//
// Contexts
//

nncrt_context *nncrt5_create(const void *model, int threads, char *err, size_t errsz) {
  const RtArtifact *a = model;
  const RtModelInfo *in = a ? a->info : NULL;
  if (!in || in->magic != RT_MODEL_MAGIC || in->abi != RT_ABI) {
    errorf(err, errsz, "the compiled model's description is %s (ABI %u), but this runtime library (nnc %s) runs "
              "ABI %d\n---> HINT: compile the model with the nnc this library came from",
              !in || in->magic != RT_MODEL_MAGIC ? "not nnc's" : "of another ABI", in ? in->abi : 0, NNC_VERSION,
              RT_ABI);
    return NULL;
  }
  if (threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
  }
  if (threads < 1 || threads > MAX_THREADS) {
    errorf(err, errsz, "%s_create: threads is %d, not from 1 to %d\n---> HINT: 0 takes one thread per core",
           str(in, in->prefix), threads, MAX_THREADS);
    return NULL;
  }
  RtContext *rt = rt_context_try_new(threads, err, errsz);
  if (!rt)
    return NULL;
  nncrt_context *c = xcalloc(1, sizeof *c);
  c->rt = rt;
  c->a = a;
  c->info = in;
  int64_t arena = 1;
  for (int e = 0; e < RT_ENTRY_COUNT; e++)
    if (in->entry[e].present && in->entry[e].arena_bytes > arena)
      arena = in->entry[e].arena_bytes;
  c->arena = xcalloc(1, (size_t)arena);
  c->state = xcalloc(1, (size_t)(in->state_bytes > 0 ? in->state_bytes : 1));
  c->rt->rng = &c->rng;
  c->calls = rt_context_calls(c->rt);
  for (int e = 0; e < RT_ENTRY_COUNT; e++) {   // the slots the library kernels keep state in
    const RtEntryInfo *en = &in->entry[e];
    const int64_t *bytes = (const int64_t *)((const char *)in + en->aux_bytes);
    for (int s = 0; en->present && s < en->naux; s++)
      if (bytes[s] > 0)
        rt_context_reserve(c->rt, s, bytes[s]);
  }
  nncrt5_init(model, c, in->seed);
  if (a->weights) {
    c->undrawn = false;
    const char *w = a->weights;   // optimizer state starts fresh
    for (int i = 0; i < in->ntensors; i++) {
      const RtTensorInfo *t = tensor(in, i);
      if (t->optim_state) {
        fresh_optimizer_state(t, c->state);
      } else {
        memcpy(c->state + t->offset, w, sizeof(float) * (size_t)t->numel);
        w += sizeof(float) * (size_t)t->numel;
      }
    }
    c->normalized = in->normalized;
    c->mean = in->mean;
    c->std = in->std;
  }
  return c;
}

void nncrt5_free(const void *model, nncrt_context *c) {
  if (!c || c->a != model)   // another model's context is its own free's to free
    return;
  rt_context_free(c->rt);
  free(c->arena);
  free(c->state);
  free(c);
}

void nncrt5_init(const void *model, nncrt_context *c, uint64_t seed) {
  if (!same_model(model, c))
    return;
  c->undrawn = true;
  c->seed = seed;
  rng_seed(&c->rng, seed, RNG_DROP);
  c->steps = 0;
  c->normalized = false;
  c->batch = 0;
}

// Draws every tensor from its initializer as exec_init_params does, if
// nothing has set them since create or init.
static void settle(const nncrt_context *cc) {
  nncrt_context *c = (nncrt_context *)cc;   // the weights are the context's whether drawn yet or not
  if (!c->undrawn)
    return;
  const RtModelInfo *in = c->info;
  Rng r;
  rng_seed(&r, c->seed, RNG_INIT);
  for (int i = 0; i < in->ntensors; i++) {
    const RtTensorInfo *t = tensor(in, i);
    float *p = xmalloc(sizeof(float) * (t->numel > 0 ? t->numel : 1));   // the state may be unaligned for floats
    k_init_fill(p, t->numel, t->init, t->init_a, t->init_b, &r);
    memcpy(c->state + t->offset, p, sizeof(float) * t->numel);
    free(p);
  }
  c->undrawn = false;
}

const char *nncrt5_error(const void *model, const nncrt_context *c) {
  (void)model;
  return c ? c->error : "no context (NULL)";
}

int64_t nncrt5_steps(const void *model, const nncrt_context *c) {
  return same_model(model, c) ? c->steps : -1;
}

//
// Running
//

static const char *const entry_names[] = {"forward", "eval", "train_step"};

static const char *const entry_flags[] = {"forward", "eval", "train"};

// Checks a run's arguments; false with the context's error set.
// Whether value k of a row lies in an integer input's slots.
static bool is_index(const RtModelInfo *in, int64_t k) {
  for (int i = 0; i < in->ninputs; k -= in->input_numel[i], i++)
    if (k < in->input_numel[i])
      return in->input_bound[i] > 0;
  return false;
}

static bool check_run(nncrt_context *c, int e, int64_t B, const float *x, const void *y, bool need_y) {
  const RtModelInfo *in = c->info;
  const char *name = str(in, in->prefix);
  const RtEntryInfo *en = &in->entry[e];
  if (!en->present && e != RT_ENTRY_FORWARD && in->target_kind == RT_TARGET_NONE) {
    fail(c, "%s_%s: model '%s' has no loss, so it has no %s entry point\n---> HINT: add a loss to the .nn file to "
         "evaluate or train it", name, entry_names[e], str(in, in->name), entry_flags[e]);
    return false;
  }
  if (!en->present) {
    fail(c, "%s_%s: the model was compiled without its %s entry point\n---> HINT: compile it again with "
         "--entry %s (or without --entry: every entry point)", name, entry_names[e], entry_flags[e], entry_flags[e]);
    return false;
  }
  int64_t lo = en->min_batch > 1 ? en->min_batch : 1;
  if (B < lo || B > in->max_batch) {
    fail(c, "%s_%s: batch %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]%s\n---> HINT: %s", name,
         entry_names[e], B, lo, in->max_batch, lo > 1 ? " (a batchnorm needs two samples to train)" : "",
         B > in->max_batch ? "split the batch, or compile with a larger --batch" : "pass at least that many samples");
    return false;
  }
  if (!x || (need_y && !y)) {
    fail(c, "%s_%s: the %s pointer is NULL", name, entry_names[e], !x ? "input" : "target");
    return false;
  }
  // A NaN or infinite input would reach the weights through the gradients
  // even where the loss stays finite (relu takes NaN to 0), so no run takes
  // one, as nnc's readers take none.
  // The same for an input the checkpoint's standardization takes past a
  // float's range.
  // An integer input's slots hold int32 indexes, each inside its table.
  int64_t row = 0;
  for (int i = 0; i < in->ninputs; i++)
    row += in->input_numel[i];
  for (int i = 0, at = 0; i < in->ninputs; at += (int)in->input_numel[i], i++)
    for (int64_t b = 0; in->input_bound[i] > 0 && b < B; b++)
      for (int64_t j = 0; j < in->input_numel[i]; j++) {
        int32_t v;
        memcpy(&v, x + b * row + at + j, sizeof v);
        if (v < 0 || v >= in->input_bound[i]) {
          fail(c, "%s_%s: sample %" PRId64 ", value %" PRId64 " of input '%s' is the index %d, outside [0, %"
               PRId64 ")\n---> HINT: indexes count from 0 and must be less than the embedding's vocab; write "
               "them as int32", name, entry_names[e], b, j, str(in, in->input_name[i]), v, in->input_bound[i]);
          return false;
        }
      }
  double inv = c->normalized ? 1 / c->std : 1;
  for (int64_t i = 0; i < B * row; i++)
    if (!is_index(in, i % row) &&
        (!isfinite(x[i]) || (c->normalized && !isfinite((float)((x[i] - c->mean) * inv))))) {
      fail(c, "%s_%s: sample %" PRId64 ", value %" PRId64 " of its input is %g%s\n---> HINT: replace missing or "
           "infinite values before the call", name, entry_names[e], i / row, i % row, x[i],
           isfinite(x[i]) ? ", which standardizing with the checkpoint's mean and std takes past a float's range" : "");
      return false;
    }
  // Each target's values: finite floats, or labels of its classes (k_*
  // would stop the process on a bad label).
  for (int k = 0, at = 0; need_y && k < in->ntargets; at += (int)in->targets[k].numel, k++) {
    const RtTargetInfo *t = &in->targets[k];
    char which[160] = "its target";
    if (in->ntargets > 1)
      snprintf(which, sizeof which, "target '%s'", str(in, t->name));
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < t->numel; j++) {
        const char *v = (const char *)y + 4 * (b * in->target_numel + at + j);
        float f;
        int32_t lab;
        memcpy(&f, v, 4);
        memcpy(&lab, v, 4);
        if (t->kind == RT_TARGET_REAL && !isfinite(f)) {
          fail(c, "%s_%s: sample %" PRId64 ", value %" PRId64 " of %s is %g\n---> HINT: replace missing or "
               "infinite values before the call", name, entry_names[e], b, j, which, f);
          return false;
        }
        if (t->kind == RT_TARGET_CLASS && (lab < 0 || lab >= t->nclasses)) {
          fail(c, "%s_%s: sample %" PRId64 " has label %d%s%s, outside [0, %d)\n---> HINT: class labels count from 0",
               name, entry_names[e], b, lab, in->ntargets > 1 ? " of " : "", in->ntargets > 1 ? which : "",
               t->nclasses);
          return false;
        }
      }
  }
  return true;
}

// Puts the batch into the arena where entry e reads it: each input's share
// of a sample's row, standardized when the weights were trained so (as
// data_normalize computes it), and the targets.
static void feed(nncrt_context *c, int e, int64_t B, const float *x, const void *y) {
  const RtModelInfo *in = c->info;
  const RtEntryInfo *en = &in->entry[e];
  int64_t row = 0, at = 0;
  for (int i = 0; i < in->ninputs; i++)
    row += in->input_numel[i];
  double inv = c->normalized ? 1 / c->std : 1;
  for (int i = 0; i < in->ninputs; i++) {
    int64_t d = in->input_numel[i];
    if (en->input[i] >= 0) {
      float *dst = (float *)(c->arena + en->input[i]);
      for (int64_t b = 0; b < B; b++) {
        const float *src = x + b * row + at;
        if (c->normalized && !in->input_bound[i])
          for (int64_t j = 0; j < d; j++)
            dst[b * d + j] = (float)((src[j] - c->mean) * inv);
        else
          memcpy(dst + b * d, src, sizeof(float) * d);
      }
    }
    at += d;
  }
  at = 0;
  for (int k = 0; y && k < in->ntargets; at += in->targets[k].numel, k++) {   // each target's share of a row
    int64_t d = in->targets[k].numel;
    if (en->target[k] >= 0)
      for (int64_t b = 0; b < B; b++)
        memcpy(c->arena + en->target[k] + 4 * b * d, (const char *)y + 4 * (b * in->target_numel + at), 4 * (size_t)d);
  }
}

static double run(nncrt_context *c, int e, int64_t B, const float *x, const void *y, double lr) {
  const RtEntryInfo *en = &c->info->entry[e];
  settle(c);
  feed(c, e, B, x, y);
  const RtModelInfo *in = c->info;
  RtStep s = {.training = e == RT_ENTRY_TRAIN, .dropout = true, .lr = lr, .beta1 = in->beta1, .beta2 = in->beta2,
              .weight_decay = in->weight_decay, .lr_decay = in->optimizer == RT_OPT_ADAGRAD ? in->beta1 : 0, .scalars = en->scalars >= 0 ? (float *)(c->arena + en->scalars) : NULL};
  double loss = rt_context_run(c->rt, c->a->entry[e], &c->calls, c->arena, c->state, B, &s, &c->steps);
  c->batch = B;
  c->last = e;
  return loss;
}

// The outputs of the last run: B rows of every output's values, one output
// after another.
static int copy_output(const nncrt_context *c, float *out) {
  const RtModelInfo *in = c->info;
  const int64_t *off = (const int64_t *)((const char *)in + in->entry[c->last].outputs);
  const RtOutputInfo *o = (const RtOutputInfo *)((const char *)in + in->outputs);
  int64_t row = in->output_numel, at = 0, B = c->batch;
  for (int i = 0; i < in->noutputs; i++) {
    if (off[i] < 0)
      return -1;
    const float *src = (const float *)(c->arena + off[i]);
    int64_t d = o[i].numel;
    if (d == row)
      memcpy(out, src, sizeof(float) * (size_t)(B * d));
    else
      for (int64_t b = 0; b < B; b++)
        memcpy(out + b * row + at, src + b * d, sizeof(float) * (size_t)d);
    at += d;
  }
  return 0;
}

int nncrt5_forward(const void *model, nncrt_context *c, int64_t B, const float *x, float *out) {
  if (!same_model(model, c) || !check_run(c, RT_ENTRY_FORWARD, B, x, NULL, false))
    return -1;
  if (!out)
    return fail(c, "%s_forward: the output pointer is NULL", str(c->info, c->info->prefix));
  run(c, RT_ENTRY_FORWARD, B, x, NULL, 0);
  return copy_output(c, out);
}

double nncrt5_eval(const void *model, nncrt_context *c, int64_t B, const float *x, const void *y, float *out) {
  if (!same_model(model, c) || !check_run(c, RT_ENTRY_EVAL, B, x, y, c->info->target_kind != RT_TARGET_NONE))
    return NAN;
  double loss = run(c, RT_ENTRY_EVAL, B, x, y, 0);
  if (out)
    copy_output(c, out);
  return loss;
}

double nncrt5_train_step(const void *model, nncrt_context *c, int64_t B, const float *x, const void *y, double lr) {
  if (!same_model(model, c) || !check_run(c, RT_ENTRY_TRAIN, B, x, y, c->info->target_kind != RT_TARGET_NONE))
    return NAN;
  if (!isfinite(lr) || lr < 0) {
    fail(c, "%s_train_step: the learning rate is %g\n---> HINT: pass a finite rate of 0 or more",
         str(c->info, c->info->prefix), lr);
    return NAN;
  }
  double loss = run(c, RT_ENTRY_TRAIN, B, x, y, lr);
  if (!isfinite(loss))
    fail(c, "%s_train_step: the loss is %g, so the step changed nothing (no update, and the step does not "
         "count)\n---> HINT: lower the learning rate, or check the inputs for NaN or huge values",
         str(c->info, c->info->prefix), loss);
  return loss;
}

int nncrt5_output(const void *model, const nncrt_context *c, float *out) {
  if (!same_model(model, c))
    return -1;
  if (!c->batch || !out)
    return fail((nncrt_context *)c, "%s_output: %s", str(c->info, c->info->prefix),
                !out ? "the output pointer is NULL" : "nothing has run yet, so there is no output");
  return copy_output(c, out);
}

//
// Tensors
//

int nncrt5_num_tensors(const void *model) { return ((const RtArtifact *)model)->info->ntensors; }

static const RtTensorInfo *find_tensor(const void *model, int i) {
  const RtModelInfo *in = ((const RtArtifact *)model)->info;
  return i >= 0 && i < in->ntensors ? tensor(in, i) : NULL;
}

const char *nncrt5_tensor_name(const void *model, int i) {
  const RtTensorInfo *t = find_tensor(model, i);
  return t ? str(((const RtArtifact *)model)->info, t->name) : NULL;
}

int64_t nncrt5_tensor_numel(const void *model, int i) {
  const RtTensorInfo *t = find_tensor(model, i);
  return t ? t->numel : -1;
}

int nncrt5_read_tensor(const void *model, const nncrt_context *c, int i, float *out) {
  const RtTensorInfo *t = find_tensor(model, i);
  if (!same_model(model, c) || !t || !out)
    return -1;
  settle(c);
  memcpy(out, c->state + t->offset, sizeof(float) * (size_t)t->numel);
  return 0;
}

int nncrt5_write_tensor(const void *model, nncrt_context *c, int i, const float *in) {
  const RtTensorInfo *t = find_tensor(model, i);
  if (!same_model(model, c) || !t || !in)
    return -1;
  for (int64_t j = 0; j < t->numel; j++)
    if (!isfinite(in[j]))
      return fail(c, "%s_write_tensor: value %" PRId64 " for '%s' is %g; the tensor was left as it was\n---> HINT: "
                  "weights must be finite", str(c->info, c->info->prefix), j, str(c->info, t->name), in[j]);
  settle(c);
  memcpy(c->state + t->offset, in, sizeof(float) * (size_t)t->numel);
  return 0;
}

//
// Checkpoints
//

// The model's tensors as a checkpoint holds them (caller frees).
static CkptTensor *want_list(const RtModelInfo *in) {
  CkptTensor *w = xcalloc(in->ntensors ? in->ntensors : 1, sizeof *w);
  for (int i = 0; i < in->ntensors; i++) {
    const RtTensorInfo *t = tensor(in, i);
    w[i] = (CkptTensor){str(in, t->name), t->ndim, t->shape};
  }
  return w;
}

// Whether f holds every optimizer state tensor of the model (true for a
// model that keeps none); *n gets how many the model keeps.
static bool has_optimizer_state(const RtModelInfo *in, const StFile *f, int *n) {
  bool all = true;
  *n = 0;
  for (int i = 0; i < in->ntensors; i++) {
    const RtTensorInfo *t = tensor(in, i);
    if (!t->optim_state)
      continue;
    all = all && data_st_find(f, str(in, t->name));
    ++*n;
  }
  return all;
}

int nncrt5_load(const void *model, nncrt_context *c, const char *path, char *err, size_t errsz) {
  if (!same_model(model, c)) {
    errorf(err, errsz, "%s", c ? c->error : "no context (NULL)");
    return -1;
  }
  const RtModelInfo *in = c->info;
  StFile f;
  if (!path) {
    errorf(err, errsz, "%s_load: the path is NULL", str(in, in->prefix));
    return -1;
  }
  // The header first, then each tensor the context takes, read straight
  // into a new state block that replaces the context's only when all of it
  // is in and finite: a failed load changes nothing, and optimizer state
  // the context does not take is never read.
  if (!data_ckpt_file(path, err, errsz) || !data_st_read_header(path, &f, err, errsz))
    return -1;
  // A checkpoint of nnc's that holds this model's optimizer state (if it
  // keeps any) continues training where it stopped: that state, the step,
  // the dropout stream. Anything else gives weights, and a fresh optimizer.
  bool plain = true, normalized = false;
  int nopt;
  bool all_opt = has_optimizer_state(in, &f, &nopt);
  int64_t step = 0;
  double mean = 0, std = 1;
  CkptTensor *want = want_list(in);
  bool ok = data_ckpt_format(&f, &plain, err, errsz) &&
            (plain || (data_ckpt_meta_i64(&f, "step", (int64_t)1 << 53, &step, err, errsz) &&
                       data_ckpt_normalize(&f, &normalized, &mean, &std, err, errsz)));
  bool resume = ok && !plain && all_opt;
  ok = ok && data_ckpt_check(&f, want, in->ntensors, !(resume && nopt > 0), plain, err, errsz);
  free(want);
  char *state = ok ? xcalloc(1, (size_t)(in->state_bytes > 0 ? in->state_bytes : 1)) : NULL;
  for (int i = 0; ok && i < in->ntensors; i++) {
    const RtTensorInfo *t = tensor(in, i);
    const StTensor *s = data_st_find(&f, str(in, t->name));
    if (t->optim_state && !resume)
      fresh_optimizer_state(t, state);
    if (!s || (t->optim_state && !resume))
      continue;
    ok = data_st_read_tensor(&f, s, state + t->offset, err, errsz) &&
         data_ckpt_finite(path, s->name, state + t->offset, t->numel, err, errsz);
  }
  if (ok) {
    free(c->state);
    c->state = state;
    c->undrawn = false;   // every tensor was set above
    c->steps = resume ? step : 0;
    c->normalized = normalized;
    c->mean = mean;
    c->std = std;
    const char *r = data_st_meta(&f, "dropout_rng");
    uint64_t st, inc;
    if (resume && r && sscanf(r, "%" SCNx64 ":%" SCNx64, &st, &inc) == 2)
      c->rng = (Rng){st, inc | 1};
  } else {
    free(state);
  }
  data_st_free(&f);
  return ok ? 0 : -1;
}

int nncrt5_save(const void *model, nncrt_context *c, const char *path, char *err, size_t errsz) {
  if (!same_model(model, c)) {
    errorf(err, errsz, "%s", c ? c->error : "no context (NULL)");
    return -1;
  }
  const RtModelInfo *in = c->info;
  if (!path) {
    errorf(err, errsz, "%s_save: the path is NULL", str(in, in->prefix));
    return -1;
  }
  settle(c);
  StTensor *t = xcalloc(in->ntensors ? in->ntensors : 1, sizeof *t);
  for (int i = 0; i < in->ntensors; i++) {
    const RtTensorInfo *ti = tensor(in, i);
    t[i] = (StTensor){.name = str(in, ti->name), .dtype = ST_F32, .ndim = ti->ndim,
                      .data = c->state + ti->offset};
    memcpy(t[i].shape, ti->shape, sizeof(int64_t) * (size_t)ti->ndim);
  }
  char hash[32], step[32], rng[64], norm[64] = "";
  snprintf(hash, sizeof hash, "%016" PRIx64, in->model_hash);
  snprintf(step, sizeof step, "%" PRId64, c->steps);
  snprintf(rng, sizeof rng, "%016" PRIx64 ":%016" PRIx64, c->rng.state, c->rng.inc);
  if (c->normalized)
    snprintf(norm, sizeof norm, "%.17g %.17g", c->mean, c->std);
  const StMeta meta[] = {
      {"format", DATA_CKPT_FORMAT}, {"nnc_version", str(in, in->version)}, {"model_hash", hash},
      {"epoch", "0"},              {"step", step},                        {"dropout_rng", rng},
      {"normalize", norm},
  };
  bool ok = data_st_write(path, t, in->ntensors, meta, countof(meta), err, errsz);
  free(t);
  return ok ? 0 : -1;
}

//
// Data
//

int nncrt_read_idx(const char *images, const char *labels, float **x, int32_t **y, int64_t *n, int64_t *dim,
                   char *err, size_t errsz) {
  Dataset ds;
  if (!images || !x || !n || !dim || (labels && !y)) {
    errorf(err, errsz, "nncrt_read_idx: a NULL argument");
    return -1;
  }
  if (!data_load_idx(images, labels, 0, &ds, err, errsz))
    return -1;
  float *v = xmalloc(sizeof(float) * (size_t)(ds.n * ds.dim > 0 ? ds.n * ds.dim : 1));
  data_rows(&ds, NULL, 0, ds.n, v);
  *x = v;
  *n = ds.n;
  *dim = ds.dim;
  if (labels) {
    *y = ds.y;
    ds.y = NULL;
  }
  data_free(&ds);
  return 0;
}

int nncrt_read_image(const char *path, int width, int height, float *out, char *err, size_t errsz) {
  if (!path || !out || width < 1 || height < 1) {
    errorf(err, errsz, "nncrt_read_image: %s", !path || !out ? "a NULL argument" : "width and height must be 1 or more");
    return -1;
  }
  Image img, r;
  if (!data_image_load(path, &img, err, errsz))
    return -1;
  data_image_resize(&img, width, height, &r);
  data_image_free(&img);
  memcpy(out, r.px, sizeof(float) * (size_t)width * (size_t)height);
  data_image_free(&r);
  return 0;
}
