// train.c: the training loop behind `nnc train`, and evaluation.
//
// Loads the data, splits off a validation set, then runs epochs of
// batches through the model's train_step with the learning rate the
// schedule gives, showing progress; after each epoch it evaluates, writes a
// checkpoint (atomically, so the last good one survives anything) and then
// appends a row to the metrics log (rundir.c keeps the run's files). A
// non-finite loss stops training with the first op whose output went
// non-finite, pointed at in the .nn source.
#include "train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>



// torch.optim.lr_scheduler.OneCycleLR (no momentum cycling, two phases) at
// step t of total: from max_lr / div_factor up to max_lr over the first
// pct_start of the steps, then down to the first rate / final_div_factor,
// each half of a cosine (anneal_strategy 'cos') or a line ('linear').
static double onecycle_lr(const ScheduleConfig *s, double max_lr, int64_t t, int64_t total) {
  double initial = max_lr / s->div_factor, last = initial / s->final_div_factor;
  double end1 = s->pct_start * (double)total - 1, end2 = (double)total - 1;
  double start = 0, end = end1, from = initial, to = max_lr;
  if ((double)t > end1) {
    start = end1, end = end2, from = max_lr, to = last;
  }
  double pct = end > start ? ((double)t - start) / (end - start) : 1;   // (PyTorch divides by zero there)
  if (s->anneal_linear)
    return (to - from) * pct + from;
  return to + (from - to) / 2.0 * (cos(M_PI * pct) + 1);
}

Plateau train_plateau_start(double lr) { return (Plateau){lr, INFINITY, 0, 0}; }

void train_plateau_step(const ScheduleConfig *s, Plateau *p, double loss) {
  double bar = s->threshold_abs ? p->best - s->threshold : p->best * (1 - s->threshold);
  if (loss < bar) {   // (a NaN loss is never better)
    p->best = loss;
    p->bad = 0;
  } else {
    p->bad++;
  }
  if (p->cooldown > 0) {
    p->cooldown--;
    p->bad = 0;
  }
  if (p->bad > s->patience) {
    double lr = fmax(p->lr * s->factor, s->min_lr);
    if (p->lr - lr > s->eps)
      p->lr = lr;
    p->cooldown = s->cooldown;
    p->bad = 0;
  }
}

double train_schedule_lr(const Model *m, double base, int64_t epoch, int64_t step, int epochs, int64_t epoch_steps) {
  const ScheduleConfig *s = &m->sched;
  double lr = base;
  switch (s->kind) {
  case SCHED_ONECYCLE:
    lr = onecycle_lr(s, s->max_lr > 0 ? s->max_lr : base, step, (int64_t)epochs * epoch_steps);
    break;
  case SCHED_CONSTANT: case SCHED_PLATEAU:
    break;
  case SCHED_STEP:
    lr = base * pow(s->gamma, (double)(epoch / s->step_size));
    break;
  case SCHED_COSINE: {
    // PyTorch's closed form, which goes on past t_max: the rate climbs back
    // to base over the next t_max epochs, a period of 2 * t_max.
    int64_t t_max = s->t_max > 0 ? s->t_max : epochs;
    lr = s->min_lr + (base - s->min_lr) * (1 + cos(M_PI * (double)epoch / (double)t_max)) / 2;
    break;
  }
  }
  if (s->warmup > 0 && step < s->warmup)
    lr *= (double)(step + 1) / s->warmup;
  return lr;
}

// The index of the largest of k values.
static int64_t argmax(const float *v, int64_t k) {
  int64_t best = 0;
  for (int64_t i = 1; i < k; i++)
    if (v[i] > v[best])
      best = i;
  return best;
}

// Adds the correct predictions of the last run's batch to correct[h], for
// each of the nh classifiers, and into conf (may be NULL) the first one's,
// as train_evaluate says.
static void count_correct(const Exec *ex, const ExecClassHead *heads, int nh, const int32_t *y, int64_t B,
                          int64_t *correct, int64_t *conf) {
  int64_t row = exec_output_dim(ex);
  float *out = xmalloc(sizeof(float) * B * row);
  exec_read_output(ex, out);
  for (int h = 0; h < nh; h++) {
    const ExecClassHead *c = &heads[h];
    for (int64_t i = 0; i < B; i++) {
      int64_t best = argmax(out + i * row + c->at, c->k);
      int32_t label = y[i * c->trow + c->label];
      correct[h] += best == label;
      if (conf && h == 0)
        conf[label * c->k + best]++;
    }
  }
  free(out);
}

// The classifiers whose accuracy a data set can give: none without labels.
static int class_heads(const Exec *ex, const Dataset *ds, ExecClassHead *heads) {
  return ds->y || ds->t ? exec_class_heads(ex, heads, IR_MAX_TARGETS) : 0;
}

// Copies samples [i, i + B) of ds into x and y (targets as the model takes them).
static void slice(const Dataset *ds, int64_t i, int64_t B, float *x, void *y) {
  data_rows(ds, NULL, i, B, x);
  if (ds->y)
    memcpy(y, ds->y + i, sizeof(int32_t) * B);
  else if (ds->t)
    memcpy(y, ds->t + i * ds->tdim, sizeof(float) * B * ds->tdim);
}

EvalResult train_evaluate(Exec *ex, const Dataset *ds, int64_t batch, int64_t *conf) {
  ExecClassHead heads[IR_MAX_TARGETS];
  int nh = class_heads(ex, ds, heads);
  EvalResult r = {.acc = nh ? 0 : -1, .n = ds->n, .nheads = nh};
  int64_t tdim = ds->y ? 1 : ds->tdim;
  float *x[2];
  void *y[2];
  for (int j = 0; j < 2; j++) {
    x[j] = xmalloc(sizeof(float) * batch * ds->dim);
    y[j] = xmalloc(4 * batch * (tdim > 0 ? tdim : 1));
  }
  double loss = 0;
  int64_t correct[IR_MAX_TARGETS] = {0};
  if (ds->n > 0)
    slice(ds, 0, ds->n < batch ? ds->n : batch, x[0], y[0]);
  for (int64_t i = 0, cur = 0; i < ds->n; i += batch, cur = !cur) {   // (the next batch announced, as in training)
    int64_t B = ds->n - i < batch ? ds->n - i : batch, j = i + batch;
    if (j < ds->n) {
      int64_t Bn = ds->n - j < batch ? ds->n - j : batch;
      slice(ds, j, Bn, x[!cur], y[!cur]);
      exec_prefetch(ex, ENTRY_EVAL, Bn, x[!cur], y[!cur]);
    }
    loss += exec_run(ex, ENTRY_EVAL, B, x[cur], y[cur], 0) * B;
    double v[IR_MAX_LOSS_TERMS];
    r.nterms = exec_loss_values(ex, v);
    for (int t = 0; t < r.nterms; t++)
      r.terms[t] += v[t] * B;
    if (nh)
      count_correct(ex, heads, nh, y[cur], B, correct, conf);
  }
  if (ds->n > 0) {
    r.loss = loss / ds->n;
    for (int t = 0; t < r.nterms; t++)
      r.terms[t] /= ds->n;
    for (int h = 0; h < nh; h++) {
      r.head_acc[h] = (double)correct[h] / ds->n;
      r.head_target[h] = heads[h].target;
    }
    if (nh)
      r.acc = r.head_acc[0];
  }
  for (int j = 0; j < 2; j++) {
    free(x[j]);
    free(y[j]);
  }
  return r;
}

//
// Progress
//

typedef struct Progress {
  FILE *out;
  int mode;              // 1: a live bar (terminal), 0: periodic lines, -1: quiet
  double start;          // when the epoch began
  double last;           // when the last line was printed
  int epochs;
} Progress;

static void fmt_time(double s, char *buf, size_t n) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void progress(Progress *p, int64_t epoch, int64_t k, int64_t nb, int64_t samples, double loss,
                     double acc, bool final) {
  if (p->mode < 0)
    return;
  double t = now_seconds(), el = t - p->start;
  if (p->mode == 0 && !final && t - p->last < 10 && k != 1)
    return;   // plain output: a line every ten seconds
  if (p->mode == 1 && !final && t - p->last < 0.1)
    return;
  p->last = t;
  char eta[32], accs[32] = "";
  fmt_time(k > 0 ? el / k * (nb - k) : 0, eta, sizeof eta);
  if (acc >= 0)
    snprintf(accs, sizeof accs, "  acc %.4f", acc);
  double rate = el > 0 ? samples / el : 0;
  if (p->mode == 1) {
    int width = 24, fill = nb ? (int)(width * k / nb) : width;
    char bar[32];
    for (int i = 0; i < width; i++)
      bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[width] = 0;
    fprintf(p->out, "\r\033[Kepoch %lld/%d [%s] %lld/%lld  loss %.4f%s  %.0f samples/s  eta %s",
            (long long)epoch + 1, p->epochs, bar, (long long)k, (long long)nb, loss, accs, rate, eta);
    if (final)
      fputs("\r\033[K", p->out);
  } else if (!final) {
    fprintf(p->out, "epoch %lld/%d  batch %lld/%lld  loss %.4f%s  %.0f samples/s  eta %s\n",
            (long long)epoch + 1, p->epochs, (long long)k, (long long)nb, loss, accs, rate, eta);
  }
  fflush(p->out);
}

//
// Data
//

// Loads the training (split "train") or test ("test") data for m.
static bool load_data(const Model *m, const char *path, const char *split, Dataset *ds, char *err,
                      size_t errsz) {
  return train_load_data(m, path, split, true, ds, err, errsz);
}

// Keeps the first k samples of ds (all when k is 0 or more than there are).
static void limit_dataset(Dataset *ds, int64_t k) {
  if (k <= 0 || k >= ds->n)
    return;
  int64_t *idx = xmalloc(sizeof(int64_t) * k);
  for (int64_t i = 0; i < k; i++)
    idx[i] = i;
  Dataset sub;
  data_subset(ds, idx, k, &sub);
  free(idx);
  data_free(ds);
  *ds = sub;
}

// The first op whose output is not finite in a step of a backend that does
// not keep every value (the cpu backend's fused loops keep no intermediate
// ones): the same step again on the ref backend, from the same state.
static const IrNode *replay_on_ref(Exec *ex, const Model *m, int threads, int64_t B, const float *x, const void *y,
                                   double lr) {
  char err[256];
  ExecOptions ro = {.max_batch = B, .threads = threads, .entries = 1u << ENTRY_TRAIN};
  Exec *ref = exec_new("ref", m, &ro, err, sizeof err);
  if (!ref)
    return NULL;
  float *v = NULL;
  int64_t cap = 0;
  for (int i = 0; i < exec_num_state(ref); i++) {
    const IrNode *n = exec_state_node(ref, i);
    k_grow(&v, &cap, ir_numel(n, 1));
    exec_read_state(ex, exec_find_state(ex, n->name), v);
    exec_write_state(ref, i, v);
  }
  free(v);
  *exec_rng(ref) = *exec_rng(ex);
  exec_set_steps(ref, exec_steps(ex));
  exec_run(ref, ENTRY_TRAIN, B, x, y, lr);
  const IrNode *n = exec_first_nonfinite(ref);   // a node of m: it outlives ref
  exec_free(ref);
  return n;
}

// Reports a non-finite loss at the first op that produced a non-finite value.
// step is the failing one; first the step count this process began at, so
// a parameter not finite before its first update is not blamed on one.
static void report_nonfinite(const IrNode *n, double loss, int64_t epoch, int64_t step, int64_t first, double lr) {
  Diag d;
  diag_init(&d, stderr);
  char hint[256];
  snprintf(hint, sizeof hint, "lower the learning rate (it was %g), or check the data for extreme values; "
           "the last good checkpoint is kept", lr);
  if (n && (n->op == IR_PARAM || n->op == IR_BUFFER) && step - 1 <= first) {
    snprintf(hint, sizeof hint, "check the initializer of '%s': it gives values float32 cannot hold", n->name);
    diag_error(&d, n->loc, hint, "training stopped at epoch %lld, step %lld: the loss "
               "is %g; '%s' was not finite before the first update of this run", (long long)epoch + 1,
               (long long)step, loss, n->name);
  } else if (n && (n->op == IR_PARAM || n->op == IR_BUFFER))
    diag_error(&d, n->loc, hint, "training stopped at epoch %lld, step %lld: the loss is %g; '%s' is no longer "
               "finite: the update of step %lld overflowed it", (long long)epoch + 1, (long long)step, loss,
               n->name, (long long)step - 1);
  else if (n)
    diag_error(&d, n->loc, hint, "training stopped at epoch %lld, step %lld: the loss is %g; the first op "
               "whose output is not finite is %s%s%s%s", (long long)epoch + 1, (long long)step, loss,
               ir_op_info(n->op)->mnem, n->scope ? " in '" : "", n->scope ? n->scope : "", n->scope ? "'" : "");
  else
    diag_error(&d, ((SrcLoc){0}), hint, "training stopped at epoch %lld, step %lld: the loss is %g",
               (long long)epoch + 1, (long long)step, loss);
  diag_free(&d);
}

//
// The loop
//

typedef struct Run {
  Model *m;
  const TrainOpts *o;
  FILE *out;
  Exec *ex;
  Dataset train, val, test;
  bool have_val, have_test;
  Batcher batcher;
  RunDir dir;          // checkpoint, metrics log, lock
  CkptInfo info;       // normalization and, when resuming, where the run stood
  int64_t first_step;    // the step this process started at
  // A loss that is a weighted sum: its terms, and each one's mean over the
  // epoch's samples (summed as the epoch runs), reported beside the total
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double weights[IR_MAX_LOSS_TERMS], term_sum[IR_MAX_LOSS_TERMS];
  int nterms;            // 0: the loss is one loss
  float *scratch;        // an image's floats, for augmentation
  // Several classifiers: each one's accuracy in the last epoch
  double head_acc[IR_MAX_TARGETS];
  const char *head_target[IR_MAX_TARGETS];
  int nheads;            // 0: one classifier or none
} Run;

static void free_run(Run *r) {
  exec_free(r->ex);
  data_free(&r->train);
  if (r->have_val)
    data_free(&r->val);
  if (r->have_test)
    data_free(&r->test);
  data_batcher_free(&r->batcher);
  free(r->scratch);
  char err[1024];
  train_rundir_close(&r->dir, err, sizeof err);   // on an error path: a second error would say nothing new
}

// The test set's path: --test, or the IDX directory --data names; NULL
// with --no-test or none.
static const char *test_path(const TrainOpts *o) {
  struct stat st;
  return o->no_test ? NULL : o->test ? o->test : stat(o->data, &st) == 0 && S_ISDIR(st.st_mode) ? o->data : NULL;
}

// Loads the training set (split into training and validation) and the
// test set.
static bool load_sets(Run *r, char *err, size_t errsz) {
  const TrainOpts *o = r->o;
  Dataset all;
  if (!load_data(r->m, o->data, "train", &all, err, errsz))
    return false;
  limit_dataset(&all, o->limit);
  if (o->val_split > 0) {
    if (!data_split(&all, o->val_split, o->seed, &r->train, &r->val, err, errsz)) {
      data_free(&all);
      return false;
    }
    data_free(&all);
    r->have_val = r->val.n > 0;
    if (!r->have_val)
      data_free(&r->val);
  } else {
    r->train = all;
  }
  const char *test = test_path(o);
  if (test) {   // a test set that does not load is an error, not a run without one
    char terr[1024];
    r->have_test = load_data(r->m, test, "test", &r->test, terr, sizeof terr);
    if (!r->have_test) {
      errorf(err, errsz, "the test set: %s\n---> HINT: give the test set with --test PATH, or train without "
                "one with --no-test", terr);
      return false;
    }
    limit_dataset(&r->test, o->test_limit);
  }
  if (r->train.n == 0) {   // a split that holds out every sample
    errorf(err, errsz, "%s: --val-split %g holds out all %lld samples for validation, leaving none to train on\n"
              "---> HINT: lower --val-split, or give more data", o->data, o->val_split, (long long)r->val.n);
    return false;
  }
  return true;
}

// Standardizes the sets with the training set's mean and std, or with
// those of the run a checkpoint continues (r->info).
static void normalize_sets(Run *r) {
  const TrainOpts *o = r->o;
  if (o->normalize && !r->info.normalized) {
    data_stats(&r->train, &r->info.mean, &r->info.std);
    r->info.normalized = true;
  }
  if (r->info.normalized) {
    data_normalize(&r->train, r->info.mean, r->info.std);
    if (r->have_val)
      data_normalize(&r->val, r->info.mean, r->info.std);
    if (r->have_test)
      data_normalize(&r->test, r->info.mean, r->info.std);
  }
}

static void print_header(Run *r) {
  const TrainOpts *o = r->o;
  const Model *m = r->m;
  int64_t params = 0;
  for (int i = 0; i < m->g->nnodes; i++)
    if (m->g->nodes[i]->op == IR_PARAM)
      params += ir_numel(m->g->nodes[i], 1);
  fprintf(r->out, "model %s (%s): %lld parameters\n", m->g->name, m->g->file ? m->g->file : "?",
          (long long)params);
  fprintf(r->out, "data %s: %lld training samples", o->data, (long long)r->train.n);
  if (r->have_val)
    fprintf(r->out, ", %lld validation", (long long)r->val.n);
  if (r->have_test)
    fprintf(r->out, ", %lld test", (long long)r->test.n);
  fprintf(r->out, "; batch %d, %lld steps per epoch, %d epoch%s, lr %g, seed %llu\n", o->batch,
          (long long)data_batcher_nbatches(&r->batcher), o->epochs, o->epochs == 1 ? "" : "s", o->lr,
          (unsigned long long)o->seed);
  fflush(r->out);
}

// One epoch; false on a non-finite loss. Batches alternate between the
// buffers x[0], y[0] and x[1], y[1]: the next is read and announced
// (exec_prefetch) before a step runs, so that a backend with memory of its
// own copies it there while the step runs.
// Augments a batch of B samples in x (rows of every input's values) as
// the run says: geometric transforms on each image input [C, H, W] in
// place, then noise on every float input into a copy, noisy, so that x
// keeps the clean values. Each sample draws from its own generator (its
// place in the epoch's order). Returns what the step reads: noisy or x.
static float *augment_batch(Run *r, int64_t epoch, int64_t B, float *x, float *noisy) {
  const DataAugment *a = &r->o->augment;
  bool geometric = data_augment_geometric(a);
  if (!geometric && a->noise == 0)
    return x;
  const Model *m = r->m;
  int64_t row = exec_sample_dim(m), first = r->batcher.pos - B;
  if (a->noise > 0)
    memcpy(noisy, x, sizeof(float) * B * row);
  for (int64_t b = 0; b < B; b++) {
    Rng rng;
    data_augment_seed(&rng, r->o->seed, epoch, first + b);
    for (int i = 0, at = 0; i < m->ninputs; at += (int)ir_numel(m->inputs[i], 1), i++) {
      const IrNode *in = m->inputs[i];
      if (geometric && in->dtype == DT_F32 && in->ndim == 4)
        data_augment_image(x + b * row + at, in->shape[1], in->shape[2], in->shape[3], a, &rng, r->scratch);
    }
    if (a->noise == 0)
      continue;
    memcpy(noisy + b * row, x + b * row, sizeof(float) * row);
    for (int i = 0, at = 0; i < m->ninputs; at += (int)ir_numel(m->inputs[i], 1), i++)
      if (m->inputs[i]->dtype == DT_F32)
        data_augment_noise(noisy + b * row + at, ir_numel(m->inputs[i], 1), a->noise, &rng);
  }
  return a->noise > 0 ? noisy : x;
}

// Whether the run's augmentation fits the model: noise reaches no loss's
// target (pass_noisy_loss), and the geometric transforms
// need an image input [C, H, W] no smaller than the translations.
static bool check_augment(const Model *m, const DataAugment *a, char *err, size_t errsz) {
  const IrNode *loss = a->noise > 0 ? pass_noisy_loss(m) : NULL;
  if (loss) {
    const char *in = loss->src[1]->name;
    errorf(err, errsz, "noise %g would reach input '%s', which loss %s compares with: the model would learn to "
           "give back the noisy input\n---> HINT: put the noise in the model instead, where the loss does not see "
           "it: `%s -> gaussian_noise(%g) -> ...`, and train without --noise", a->noise, in,
           ir_op_info(loss->op)->mnem, in, a->noise);
    return false;
  }
  if (!data_augment_geometric(a))
    return true;
  const char *what = a->shift > 0 ? "shift" : a->crop > 0 ? "crop" : a->hflip ? "hflip" : "rotate";
  int64_t least = 0;
  for (int i = 0; i < m->ninputs; i++) {
    const IrNode *in = m->inputs[i];
    for (int k = 2; in->dtype == DT_F32 && in->ndim == 4 && k < 4; k++)
      least = least == 0 || in->shape[k] < least ? in->shape[k] : least;
  }
  char buf[96];
  if (least == 0) {
    errorf(err, errsz, "%s augments images [C, H, W], but model '%s' has no image input ('%s' is %s)\n---> HINT: "
           "declare image inputs with their channels, such as f32[1, 28, 28] (a flatten in the model makes them "
           "flat again)", what, m->g->name, m->input->name, ir_type_str(m->input, buf, sizeof buf));
    return false;
  }
  int big = a->shift >= least ? a->shift : a->crop >= least ? a->crop : 0;
  if (big) {
    errorf(err, errsz, "%s %d: a translation as large as the image (%lld pixels) leaves only zeros\n---> HINT: "
           "use a few pixels, such as 2 or 4", a->shift >= least ? "shift" : "crop", big, (long long)least);
    return false;
  }
  return true;
}

static bool run_epoch(Run *r, int64_t epoch, float *x2[2], void *y2[2], float *n2[2], Progress *p,
                      double *loss_out, double *acc_out, double *lr_out) {
  Exec *ex = r->ex;
  ExecClassHead heads[IR_MAX_TARGETS];
  int nh = class_heads(ex, &r->train, heads);
  for (int t = 0; t < r->nterms; t++)
    r->term_sum[t] = 0;
  int64_t nb = data_batcher_nbatches(&r->batcher), k = 0, seen = 0, correct[IR_MAX_TARGETS] = {0};
  double sum = 0, lr = 0;
  p->start = now_seconds();
  p->last = 0;
  int cur = 0;
  int64_t B = data_batcher_next(&r->batcher, x2[0], y2[0]), next;
  float *feed[2] = {B > 0 ? augment_batch(r, epoch, B, x2[0], n2[0]) : x2[0], NULL};
  for (; B > 0; B = next, cur = !cur) {
    float *x = feed[cur];
    void *y = y2[cur];
    if ((next = data_batcher_next(&r->batcher, x2[!cur], y2[!cur])) > 0) {
      feed[!cur] = augment_batch(r, epoch, next, x2[!cur], n2[!cur]);
      exec_prefetch(ex, ENTRY_TRAIN, next, feed[!cur], y2[!cur]);
    }
    double base = r->m->sched.kind == SCHED_PLATEAU ? r->info.plateau.lr : r->o->lr;
    lr = train_schedule_lr(r->m, base, epoch, exec_steps(ex), r->o->epochs, nb);
    Rng before = *exec_rng(ex);
    double loss = exec_run(ex, ENTRY_TRAIN, B, x, y, lr);
    if (!isfinite(loss)) {
      if (p->mode == 1)
        fputc('\n', p->out);
      *exec_rng(ex) = before;
      const IrNode *n = exec_keeps_values(ex) ? exec_first_nonfinite(ex)
                                              : replay_on_ref(ex, r->m, r->o->threads, B, x, y, lr);
      report_nonfinite(n, loss, epoch, exec_steps(ex) + 1, r->first_step, lr);
      return false;
    }
    k++;
    seen += B;
    sum += loss * B;
    double v[IR_MAX_LOSS_TERMS];
    int nv = exec_loss_values(ex, v);
    for (int t = 0; t < r->nterms && t < nv; t++)
      r->term_sum[t] += v[t] * B;
    if (nh)
      count_correct(ex, heads, nh, y, B, correct, NULL);
    progress(p, epoch, k, nb, seen, sum / seen, nh ? (double)correct[0] / seen : -1, false);
  }
  progress(p, epoch, k, nb, seen, seen ? sum / seen : 0, -1, true);
  *loss_out = seen ? sum / seen : 0;
  for (int t = 0; t < r->nterms; t++)   // now the epoch's mean
    r->term_sum[t] = seen ? r->term_sum[t] / seen : 0;
  *acc_out = nh && seen ? (double)correct[0] / seen : -1;
  r->nheads = nh > 1 ? nh : 0;   // several classifiers: each one's accuracy, reported beside the first's
  for (int h = 0; h < r->nheads; h++) {
    r->head_acc[h] = seen ? (double)correct[h] / seen : 0;
    r->head_target[h] = heads[h].target;
  }
  *lr_out = lr;
  return true;
}

// Where the weights come from: a checkpoint to resume, weights to start
// from (--init), or the initializers.
static bool start_weights(Run *r, char *err, size_t errsz) {
  const TrainOpts *o = r->o;
  if (o->resume)
    return train_checkpoint_load(r->ex, o->resume, false, &r->info, err, errsz);
  exec_init_params(r->ex, o->seed);
  if (!o->init)
    return true;
  Rng rng = *exec_rng(r->ex);   // a new run: its own dropout stream, step 0
  CkptInfo in;
  if (!train_checkpoint_load(r->ex, o->init, true, &in, err, errsz))
    return false;
  *exec_rng(r->ex) = rng;
  exec_set_steps(r->ex, 0);
  r->info = (CkptInfo){.normalized = in.normalized, .mean = in.mean, .std = in.std};
  if (!o->quiet)
    fprintf(r->out, "starting from the weights of %s%s; optimizer state starts fresh\n", o->init,
            in.plain ? " (plain weights, no nnc metadata)" : "");
  return true;
}

// A resume continues with the run's settings: those the command line left
// out are taken from the checkpoint, and one given otherwise is refused,
// since the run would not go on as it began (a new --lr only changes the
// steps to come). Files written before checkpoints kept settings pass.
static bool resume_settings(const TrainOpts *o, TrainOpts *eff, char *err, size_t errsz) {
  RunSettings u;
  bool has;
  *eff = *o;
  if (!o->resume)
    return true;
  if (!train_checkpoint_run(o->resume, &u, &has, err, errsz))
    return false;
  if (!has)
    return true;
  char run[64] = "", now[64] = "";
  const char *flag = NULL;
  if ((o->given & TRAIN_GIVEN_BATCH) && o->batch != u.batch) {
    flag = "--batch";
    snprintf(run, sizeof run, "--batch %d", u.batch);
    snprintf(now, sizeof now, "--batch %d", o->batch);
  } else if ((o->given & TRAIN_GIVEN_SEED) && o->seed != u.seed) {
    flag = "--seed";
    snprintf(run, sizeof run, "--seed %llu", (unsigned long long)u.seed);
    snprintf(now, sizeof now, "--seed %llu", (unsigned long long)o->seed);
  } else if ((o->given & TRAIN_GIVEN_VAL_SPLIT) && o->val_split != u.val_split) {
    flag = "--val-split";
    snprintf(run, sizeof run, "--val-split %g", u.val_split);
    snprintf(now, sizeof now, "--val-split %g", o->val_split);
  } else if ((o->given & TRAIN_GIVEN_LIMIT) && o->limit != u.limit) {
    flag = "--limit";
    snprintf(run, sizeof run, u.limit ? "--limit %lld" : "no --limit", (long long)u.limit);
    snprintf(now, sizeof now, "--limit %lld", (long long)o->limit);
  } else if ((o->given & TRAIN_GIVEN_SHUFFLE) && o->shuffle != u.shuffle) {
    flag = "--no-shuffle";
    snprintf(run, sizeof run, "the data shuffled");
    snprintf(now, sizeof now, "--no-shuffle");
  } else if ((o->given & TRAIN_GIVEN_DROP_LAST) && o->drop_last != u.drop_last) {
    flag = "--drop-last";
    snprintf(run, sizeof run, "every epoch's last batch kept");
    snprintf(now, sizeof now, "--drop-last");
  }
  if (flag) {
    errorf(err, errsz, "%s: the run was trained with %s; resuming it with %s would not continue it\n"
              "---> HINT: leave %s out (a resume takes the run's), or start a new run from these weights with "
              "--init %s", o->resume, run, now, flag, o->resume);
    return false;
  }
  eff->batch = u.batch;
  eff->seed = u.seed;
  eff->val_split = u.val_split;
  eff->limit = u.limit;
  eff->shuffle = u.shuffle;
  eff->drop_last = u.drop_last;
  if (!(o->given & TRAIN_GIVEN_LR))
    eff->lr = u.lr;
  return true;
}

// FNV-1a over n bytes, eight at a time.
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (; n >= 8; b += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  for (; n > 0; b++, n--)
    h = (h ^ *b) * 1099511628211ULL;
  return h;
}

// A new run's id: a hash of all that decides its course (the initial
// weights, the settings, the training data), so that two runs share one
// only when they compute the same thing, and the same command gives the
// same checkpoint, bit for bit.
static void new_run_id(const Run *r, char *id, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  float *v = NULL;
  int64_t cap = 0;
  for (int i = 0; i < exec_num_state(r->ex); i++) {
    int64_t k = ir_numel(exec_state_node(r->ex, i), 1);
    k_grow(&v, &cap, k);
    exec_read_state(r->ex, i, v);
    h = hash_bytes(h, v, sizeof(float) * k);
  }
  free(v);
  const RunSettings *u = &r->info.run;
  int64_t nums[] = {u->batch, (int64_t)u->seed, u->limit, u->shuffle, u->samples};
  double reals[] = {u->lr, u->val_split};
  h = hash_bytes(hash_bytes(h, nums, sizeof nums), reals, sizeof reals);
  if (u->drop_last)   // (only then: runs without it keep their ids)
    h = hash_bytes(h, "drop_last", 9);
  const Dataset *d = &r->train;
  h = d->x ? hash_bytes(h, d->x, sizeof(float) * d->n * d->dim) : hash_bytes(h, d->x8, d->n * d->dim);
  if (d->y)
    h = hash_bytes(h, d->y, sizeof(int32_t) * d->n);
  if (d->t)
    h = hash_bytes(h, d->t, sizeof(float) * d->n * d->tdim);
  snprintf(id, n, "%016" PRIx64, h);
}

// A run into a place that holds another run's checkpoint would lose it: a
// new run unless --overwrite says so, a resume unless the checkpoint there
// is of the run it continues (an earlier copy of it rolls the run back).
static bool check_fresh(const Run *r, char *err, size_t errsz) {
  struct stat st;
  if (r->o->overwrite || lstat(r->dir.ckpt, &st) != 0)
    return true;
  if (r->o->resume) {
    RunSettings here, there;
    bool has_here, has_there;
    char ignored[512];
    struct stat rs;
    if (stat(r->o->resume, &rs) == 0 && rs.st_dev == st.st_dev && rs.st_ino == st.st_ino)
      return true;   // the checkpoint there is the one resumed
    if (!train_checkpoint_run(r->dir.ckpt, &here, &has_here, ignored, sizeof ignored) || !has_here ||
        !train_checkpoint_run(r->o->resume, &there, &has_there, ignored, sizeof ignored) || !has_there ||
        !strcmp(here.id, there.id))
      return true;   // the same run, or files that do not say (written before runs had ids)
    errorf(err, errsz, "%s belongs to another run than %s; resuming that run there would replace it\n"
              "---> HINT: leave --out out to continue in the checkpoint's own run, or give another --out",
              r->dir.ckpt, r->o->resume);
    return false;
  }
  errorf(err, errsz, "%s is an earlier run's checkpoint; a new run would replace it\n---> HINT: continue that "
            "run with --resume %s, start over with --overwrite, or give another --out", r->dir.ckpt, r->dir.ckpt);
  return false;
}

// The checkpoint, then, once it is durable, the metrics row: a crash
// between the two leaves a checkpoint that still has the row.
static bool save_epoch(Run *r, const Metrics *row, char *err, size_t errsz) {
  r->info.epoch = row->epoch;
  r->info.step = row->step;
  r->info.cursor = data_batcher_cursor(&r->batcher);
  r->info.has_cursor = true;
  r->info.last = *row;
  r->info.has_last = true;
  return train_checkpoint_save(r->ex, r->dir.ckpt, &r->info, err, errsz) && train_rundir_log(&r->dir, row, err, errsz);
}

// Names the metrics log's columns of a weighted sum's terms after the loss,
// its output and its target (`mse_recon_image`), numbered (`_2`) where two
// terms would share a name.
static void term_columns(Run *r) {
  char names[IR_MAX_LOSS_TERMS][256];
  const char *list[IR_MAX_LOSS_TERMS];
  for (int t = 0; t < r->nterms; t++) {
    const IrNode *l = r->terms[t];
    const char *o = ir_output_name(r->m->g, l->src[0]);
    snprintf(names[t], sizeof names[t], "%s_%s_%s", ir_op_info(l->op)->mnem, o ? o : "output", l->src[1]->name);
    for (int u = 0; u < t; u++)
      if (!strcmp(names[u], names[t])) {
        size_t n = strlen(names[t]);
        snprintf(names[t] + n, sizeof names[t] - n, "_%d", t + 1);
        break;
      }
    list[t] = names[t];
  }
  train_rundir_terms(&r->dir, list, r->nterms);
}

static void print_epoch(Run *r, const Metrics *row) {
  fprintf(r->out, "epoch %lld/%d: train loss %.4f", (long long)row->epoch, r->o->epochs, row->train_loss);
  if (row->train_acc >= 0)
    fprintf(r->out, " acc %.4f", row->train_acc);
  if (r->nterms) {   // " (cross_entropy(logits, label) 0.4312, ...)"
    fputs(" (", r->out);
    train_print_losses(r->out, r->m, r->term_sum, r->nterms);
    fputc(')', r->out);
  }
  if (r->nheads) {   // " (acc label 0.5200, kind 0.3100)"
    fputs(" (acc", r->out);
    train_print_accuracies(r->out, r->head_target, r->head_acc, r->nheads);
    fputc(')', r->out);
  }
  if (r->have_val)
    fprintf(r->out, row->val_acc >= 0 ? " | val loss %.4f acc %.4f" : " | val loss %.4f", row->val_loss,
            row->val_acc);
  fprintf(r->out, " | %.1f s, %.0f samples/s\n", row->seconds, r->train.n / row->seconds);
}

void train_print_accuracies(FILE *out, const char *const *target, const double *acc, int n) {
  for (int h = 0; h < n; h++)
    fprintf(out, "%s %s %.4f", h ? "," : "", target[h], acc[h]);
}

void train_print_losses(FILE *out, const Model *m, const double *v, int n) {
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int nt = ir_loss_terms(m->g, terms, w, IR_MAX_LOSS_TERMS);
  for (int t = 0; t < n && t < nt && t < IR_MAX_LOSS_TERMS; t++) {
    const IrNode *l = terms[t];
    const char *o = ir_output_name(m->g, l->src[0]);
    fprintf(out, "%s%s(%s, %s) %.4f", t ? ", " : "", ir_op_info(l->op)->mnem, o ? o : "?", l->src[1]->name, v[t]);
  }
}

void train_print_loss(FILE *out, double v) { fprintf(out, v != 0 && fabs(v) < 0.01 ? "%.3e" : "%.4f", v); }

static void print_test(Run *r, TrainResult *res) {
  if (!r->have_test) {
    if (!r->o->quiet)
      fprintf(r->out, "test: %s\n", r->o->no_test ? "skipped (--no-test)" : "none (give one with --test FILE)");
    return;
  }
  EvalResult t = train_evaluate(r->ex, &r->test, r->o->batch, NULL);
  res->test_loss = t.loss;
  res->test_acc = t.acc;
  if (!r->o->quiet) {
    fputs("test: loss ", r->out);
    train_print_loss(r->out, t.loss);
    if (t.acc >= 0)
      fprintf(r->out, " accuracy %.4f", t.acc);
    if (t.nterms) {
      fputs(" (", r->out);
      train_print_losses(r->out, r->m, t.terms, t.nterms);
      fputc(')', r->out);
    }
    if (t.nheads > 1) {
      fputs(" (accuracy", r->out);
      train_print_accuracies(r->out, t.head_target, t.head_acc, t.nheads);
      fputc(')', r->out);
    }
    fprintf(r->out, " (%lld samples)\n", (long long)t.n);
  }
}

// The epochs from start to the last; false on a non-finite loss or a
// failed write.
static bool run_epochs(Run *r, int64_t start, TrainResult *res, char *err, size_t errsz, bool *reported) {
  const TrainOpts *o = r->o;
  int64_t tdim = r->train.y ? 1 : r->train.tdim;
  float *x[2], *noisy[2];
  void *y[2];
  for (int i = 0; i < 2; i++) {
    x[i] = xmalloc(sizeof(float) * o->batch * r->train.dim);
    y[i] = xmalloc(4 * o->batch * (tdim > 0 ? tdim : 1));
    noisy[i] = o->augment.noise > 0 ? xmalloc(sizeof(float) * o->batch * r->train.dim) : NULL;
  }
  r->scratch = xmalloc(sizeof(float) * (r->train.dim > 0 ? r->train.dim : 1));   // (an image is at most a row)
  Progress p = {r->out, o->quiet ? -1 : o->progress, 0, 0, o->epochs};
  bool ok = true;
  // Early stopping: the best validation metric (accuracy for class
  // targets, else the loss), its epoch, and where its weights go.
  double best = 0;
  int64_t best_epoch = -1;
  char *best_path = NULL;
  if (o->patience > 0) {
    size_t n = strlen(r->dir.ckpt), k = strlen(".safetensors");
    best_path = xmalloc(n + 6);
    snprintf(best_path, n + 6, "%.*s.best%s", (int)(n >= k ? n - k : n), r->dir.ckpt, n >= k ? r->dir.ckpt + n - k : "");
  }
  for (int64_t epoch = start; ok && epoch < o->epochs; epoch++) {
    double es = now_seconds();
    Metrics row = {.epoch = epoch + 1};
    if (!run_epoch(r, epoch, x, y, noisy, &p, &row.train_loss, &row.train_acc, &row.lr)) {
      *reported = true;
      ok = false;
      break;
    }
    EvalResult v = {.loss = -1, .acc = -1};
    if (r->have_val)
      v = train_evaluate(r->ex, &r->val, o->batch, NULL);
    if (r->m->sched.kind == SCHED_PLATEAU)   // the next epoch's rate, in the checkpoint
      train_plateau_step(&r->m->sched, &r->info.plateau, v.loss);
    row.step = exec_steps(r->ex);
    row.val_loss = v.loss;
    row.val_acc = v.acc;
    row.nterms = r->nterms;
    for (int t = 0; t < r->nterms; t++) {
      row.train_terms[t] = r->term_sum[t];
      row.val_terms[t] = r->have_val && t < v.nterms ? v.terms[t] : -1;
    }
    row.seconds = now_seconds() - es;
    ok = save_epoch(r, &row, err, errsz);
    if (ok && !o->quiet)
      print_epoch(r, &row);
    res->train_loss = row.train_loss;
    res->train_acc = row.train_acc;
    res->val_loss = v.loss;
    res->val_acc = v.acc;
    if (ok && best_path) {
      double metric = v.acc >= 0 ? v.acc : -v.loss;   // larger is better
      if (best_epoch < 0 || metric > best) {
        best = metric;
        best_epoch = row.epoch;
        ok = train_checkpoint_save(r->ex, best_path, &r->info, err, errsz);
      } else if (row.epoch - best_epoch >= o->patience) {
        if (!o->quiet)
          fprintf(r->out, "early stop after epoch %lld: no better validation %s for %d epoch%s; the best, epoch "
                  "%lld (%s %.4f), is in %s\n", (long long)row.epoch, v.acc >= 0 ? "accuracy" : "loss",
                  o->patience, o->patience == 1 ? "" : "s", (long long)best_epoch, v.acc >= 0 ? "accuracy" : "loss",
                  v.acc >= 0 ? best : -best, best_path);
        break;
      }
    }
  }
  free(best_path);
  for (int i = 0; i < 2; i++) {
    free(x[i]);
    free(y[i]);
    free(noisy[i]);
  }
  return ok;
}

// A batchnorm of one value per channel and sample (over [N, C], or planes
// of 1x1) cannot train on a batch of one sample, as in PyTorch; refuses a
// run whose batches would include one before it starts, with the numbers.
static bool check_batch_of_one(const Run *r, char *err, size_t errsz) {
  int64_t n = r->train.n, b = r->o->batch;
  int64_t last = n < b ? n : n % b;
  if (r->o->drop_last && n < b) {
    errorf(err, errsz, "drop_last: the %lld training samples make no whole batch of %lld, so an epoch would "
              "have no step\n---> HINT: use --batch %lld or less, or leave drop_last out", (long long)n, (long long)b,
              (long long)(n > 0 ? n : 1));
    return false;
  }
  if ((b > 1 && last != 1) || (r->o->drop_last && b > 1))
    return true;   // (drop_last drops a last batch of one)
  for (int i = 0; i < r->m->g->nnodes; i++) {
    const IrNode *nd = r->m->g->nodes[i];
    if (nd->op != IR_BATCHNORM)
      continue;
    int64_t hw = 1;
    for (int d = 2; d < nd->ndim; d++)
      hw *= nd->shape[d];
    if (hw > 1)
      continue;
    const char *name = nd->scope ? nd->scope : "batchnorm";
    int64_t fit = 0;   // the batch size nearest b that leaves no batch of one
    for (int64_t k = 1; !fit && n > 1 && k <= n; k++) {
      if (b - k >= 2 && (n - 1) % (b - k) != 0)
        fit = b - k;
      else if (b + k <= n && (n - 1) % (b + k) != 0)
        fit = b + k;
    }
    if (n <= 1)
      errorf(err, errsz, "%s: training needs more than one value per channel, but there is %lld training "
                "sample\n---> HINT: give more training data", name, (long long)n);
    else if (b == 1)
      errorf(err, errsz, "%s: training needs more than one value per channel, but batches of 1 sample give it "
                "one\n---> HINT: use --batch %lld, or another size from 2", name, (long long)(fit ? fit : 2));
    else
      errorf(err, errsz, "%s: training needs more than one value per channel, but %lld training samples in "
                "batches of %lld leave a last batch of 1 sample\n---> HINT: use --batch %lld (no batch of one), "
                "or --limit %lld", name, (long long)n, (long long)b, (long long)fit, (long long)(n - 1));
    return false;
  }
  return true;
}

bool train_run(Model *m, const TrainOpts *o, FILE *out, TrainResult *res) {
  Run r = {.m = m, .out = out, .dir = {.lock_fd = -1}};
  char err[2048];
  TrainOpts eff;
  bool reported = false;
  double t0 = now_seconds();
  *res = (TrainResult){.val_loss = -1, .val_acc = -1, .test_loss = -1, .test_acc = -1};
  if (!resume_settings(o, &eff, err, sizeof err))
    goto fail;
  r.o = o = &eff;
  if (!check_augment(m, &o->augment, err, sizeof err))
    goto fail;
  if (!train_rundir_open(&r.dir, o->out, o->json, err, sizeof err) || !check_fresh(&r, err, sizeof err))
    goto fail;
  // The data first: a data set that does not load is reported before any
  // compiling, and the compiler's working memory comes and goes after the
  // loaders' (the peak is the larger of the two, not their sum).
  if (!load_sets(&r, err, sizeof err))
    goto fail;
  if (o->patience > 0 && !r.have_val) {
    errorf(err, sizeof err, "patience = %d stops training on the validation metric, but this run has no "
              "validation set\n---> HINT: hold out some training data with val_split in train {} or "
              "--val-split 0.1", o->patience);
    goto fail;
  }
  if (m->sched.kind == SCHED_PLATEAU && !r.have_val) {
    errorf(err, sizeof err, "schedule plateau lowers the learning rate when the validation loss stops "
              "improving, but this run has no validation set\n---> HINT: hold out some training data with "
              "val_split in train {} or --val-split 0.1");
    goto fail;
  }
  // Compiled now (the cpu backend), before the first epoch's clock starts:
  // the training step, and the evaluation one when there is a validation
  // or a test set to evaluate.
  ExecOptions eo = {.max_batch = o->batch, .threads = o->threads > 0 ? o->threads : 1, .fuse = o->fuse,
                    .entries = 1u << ENTRY_TRAIN | (o->val_split > 0 || test_path(o) ? 1u << ENTRY_EVAL : 0)};
  if (!(r.ex = exec_new(o->backend, m, &eo, err, sizeof err)))
    goto fail;
  if (!start_weights(&r, err, sizeof err))
    goto fail;
  if (m->sched.kind == SCHED_PLATEAU) {   // a resume goes on from its state, at --lr when given
    if (!(o->resume && r.info.has_plateau))
      r.info.plateau = train_plateau_start(o->lr);
    else if (o->given & TRAIN_GIVEN_LR)
      r.info.plateau.lr = o->lr;
    r.info.has_plateau = true;
  }
  int64_t start_epoch = r.info.epoch;
  r.first_step = exec_steps(r.ex);
  r.nterms = ir_loss_terms(m->g, r.terms, r.weights, IR_MAX_LOSS_TERMS);
  if (r.nterms < 2 || r.nterms > IR_MAX_LOSS_TERMS)
    r.nterms = 0;
  term_columns(&r);
  if (o->resume && o->normalize && !r.info.normalized) {
    errorf(err, sizeof err, "%s: the run was trained without --normalize; normalizing its data now would "
              "change what its weights were trained on\n---> HINT: leave --normalize out, or start a new run "
              "from these weights with --init %s", o->resume, o->resume);
    goto fail;
  }
  for (int i = 0; i < m->ninputs && (o->normalize || r.info.normalized); i++)
    if (m->inputs[i]->dtype == DT_I32) {   // (its values are indexes: (x - mean) / std would garble them)
      errorf(err, sizeof err, "--normalize: input '%s' holds integers (i32), which standardizing would change "
             "into other numbers\n---> HINT: leave --normalize out, and scale the float inputs in the data",
             m->inputs[i]->name);
      goto fail;
    }
  normalize_sets(&r);
  if (o->resume && r.info.has_run && r.info.run.samples != r.train.n) {
    errorf(err, sizeof err, "%s: the run trained on %lld samples, but %s gives %lld\n---> HINT: resume with "
              "the run's data, or start a new run from these weights with --init %s", o->resume,
              (long long)r.info.run.samples, o->data, (long long)r.train.n, o->resume);
    goto fail;
  }
  char id[20];
  memcpy(id, r.info.run.id, sizeof id);
  r.info.run = (RunSettings){o->batch, o->lr, o->seed, o->val_split, o->limit, o->shuffle, r.train.n, "", o->drop_last};
  if (o->resume && r.info.has_run)
    memcpy(r.info.run.id, id, sizeof id);
  else
    new_run_id(&r, r.info.run.id, sizeof r.info.run.id);
  r.info.has_run = true;
  if (!check_batch_of_one(&r, err, sizeof err))
    goto fail;
  if (!data_batcher_init(&r.batcher, &r.train, o->batch, o->shuffle, o->seed, err, sizeof err))
    goto fail;
  r.batcher.drop_last = o->drop_last;
  if (o->resume && r.info.has_cursor && !data_batcher_set_cursor(&r.batcher, r.info.cursor, err, sizeof err))
    goto fail;
  struct stat st;
  if (o->overwrite && start_epoch == 0 && lstat(r.dir.ckpt, &st) == 0 &&
      !train_checkpoint_save(r.ex, r.dir.ckpt, &r.info, err, sizeof err))
    goto fail;   // the replaced run's checkpoint goes with its metrics: a crash leaves the two in agreement
  if (!train_rundir_start_metrics(&r.dir, start_epoch, r.info.has_last ? &r.info.last : NULL, err, sizeof err))
    goto fail;
  if (!o->quiet)
    print_header(&r);
  if (start_epoch >= o->epochs) {
    // Nothing to train: the checkpoint as it stands (--epochs 0: the initial weights).
    if (o->resume && !o->quiet)
      fprintf(out, "the checkpoint has already trained %lld epochs of %d; nothing to do\n",
              (long long)start_epoch, o->epochs);
    if (!train_checkpoint_save(r.ex, r.dir.ckpt, &r.info, err, sizeof err))
      goto fail;
  } else if (!run_epochs(&r, start_epoch, res, err, sizeof err, &reported)) {
    goto fail;
  }
  print_test(&r, res);
  res->steps = exec_steps(r.ex);
  res->seconds = now_seconds() - t0;
  if (!o->quiet)
    fprintf(out, "checkpoint %s, metrics %s (%.1f s)\n", r.dir.ckpt, r.dir.metrics, res->seconds);
  if (!train_rundir_close(&r.dir, err, sizeof err))
    goto fail;
  free_run(&r);
  return true;
fail:
  if (!reported)
    fprintf(stderr, "nnc: error: %s\n", err);
  free_run(&r);
  return false;
}
