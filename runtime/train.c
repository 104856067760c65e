// train.c: the training loop behind `nnc train`, and evaluation.
//
// Loads the data, splits off a validation set, then runs epochs of
// batches through the model's train_step with the learning rate the
// schedule gives, showing progress; after each epoch it evaluates, appends
// a line to the metrics log and writes a checkpoint (atomically, so the
// last good one survives anything). A non-finite loss stops training with
// the first op whose output went non-finite, pointed at in the .nn source.
#include "runtime.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double rt_time_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int reps) {
  float *a = xmalloc(sizeof(float) * M * K), *b = xmalloc(sizeof(float) * K * N), *c = xmalloc(sizeof(float) * M * N);
  Rng r;
  rng_seed(&r, 1, 2);
  for (int64_t i = 0; i < M * K; i++)
    a[i] = rng_uniformf(&r);
  for (int64_t i = 0; i < K * N; i++)
    b[i] = rng_uniformf(&r);
  double *t = xmalloc(sizeof(double) * (reps + 3));
  blas_threads_default();
  for (int i = 0; i < reps + 3; i++) {   // 3 warm-up calls
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, 1.0f, a, ta ? (int)M : (int)K, b, tb ? (int)K : (int)N, 0.0f, c, (int)N);
    t[i] = now_seconds() - t0;
  }
  sort_doubles(t + 3, (size_t)reps);
  double median = t[3 + reps / 2];
  free(a);
  free(b);
  free(c);
  free(t);
  return median;
}


double rt_schedule_lr(const Model *m, double base, int64_t epoch, int64_t step, int epochs) {
  const ScheduleConfig *s = &m->sched;
  double lr = base;
  switch (s->kind) {
  case SCHED_CONSTANT:
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

// Counts correct predictions of a batch (class targets only).
static int64_t count_correct(const RtExec *ex, const int32_t *y, int64_t B) {
  const float *out = rt_exec_output(ex);
  int64_t k = rt_exec_output_dim(ex), c = 0;
  for (int64_t i = 0; i < B; i++)
    c += argmax(out + i * k, k) == y[i];
  return c;
}

// Copies samples [i, i + B) of ds into x and y (targets as the model takes them).
static void slice(const RtDataset *ds, int64_t i, int64_t B, float *x, void *y) {
  rt_dataset_rows(ds, NULL, i, B, x);
  if (ds->y)
    memcpy(y, ds->y + i, sizeof(int32_t) * B);
  else if (ds->t)
    memcpy(y, ds->t + i * ds->tdim, sizeof(float) * B * ds->tdim);
}

RtEvalResult rt_evaluate(RtExec *ex, const RtDataset *ds, int64_t batch, int64_t *conf) {
  RtEvalResult r = {0, ds->y ? 0 : -1, ds->n};
  int64_t tdim = ds->y ? 1 : ds->tdim;
  float *x = xmalloc(sizeof(float) * batch * ds->dim);
  void *y = xmalloc(4 * batch * (tdim > 0 ? tdim : 1));
  double loss = 0;
  int64_t correct = 0, k = rt_exec_output_dim(ex);
  for (int64_t i = 0; i < ds->n; i += batch) {
    int64_t B = ds->n - i < batch ? ds->n - i : batch;
    slice(ds, i, B, x, y);
    loss += rt_exec_run(ex, RT_EVAL, B, x, y, 0) * B;
    if (ds->y) {
      correct += count_correct(ex, y, B);
      if (conf)
        for (int64_t j = 0; j < B; j++)
          conf[ds->y[i + j] * k + argmax(rt_exec_output(ex) + j * k, k)]++;
    }
  }
  if (ds->n > 0) {
    r.loss = loss / ds->n;
    if (ds->y)
      r.acc = (double)correct / ds->n;
  }
  free(x);
  free(y);
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
static bool load_data(const Model *m, const char *path, const char *split, RtDataset *ds, char *err,
                      size_t errsz) {
  const IrNode *t = m->target;
  int nclasses = t && t->dtype == DT_I32 ? (int)t->attr.i[0] : 0;
  struct stat st;
  if (stat(path, &st) != 0) {
    rt_errorf(err, errsz, "%s: %s\n---> HINT: give a directory of IDX files (MNIST layout) or a CSV file "
              "with --data", path, strerror(errno));
    return false;
  }
  bool ok;
  if (!t || t->dtype == DT_I32)
    ok = S_ISDIR(st.st_mode) ? rt_load_idx_dir(path, split, nclasses, ds, err, errsz)
                             : rt_load_csv(path, nclasses, ds, err, errsz);
  else if (S_ISDIR(st.st_mode)) {
    rt_errorf(err, errsz, "%s is a directory of images, but model '%s' has the real-valued target '%s'\n"
              "---> HINT: give a CSV file with a column for each value of '%s' and '%s' (for example %s,%s)",
              path, m->g->name, t->name, m->input->name, t->name, m->input->name, t->name);
    ok = false;
  } else
    ok = rt_load_table_csv(path, m->input->name, ir_numel(m->input, 1), t->name, ir_numel(t, 1), ds,
                           err, errsz);
  if (!ok)
    return false;
  int64_t want = ir_numel(m->input, 1);
  if (ds->dim != want) {
    char b[96];
    rt_errorf(err, errsz, "%s: samples have %lld values, but the model's input '%s' is %s (%lld values)\n"
              "---> HINT: declare the input with the data's shape", ds->source, (long long)ds->dim,
              m->input->name, ir_type_str(m->input, b, sizeof b), (long long)want);
    rt_dataset_free(ds);
    return false;
  }
  if (t && t->dtype == DT_I32 && !ds->y) {
    rt_errorf(err, errsz, "%s: the data has no labels, but the model trains against class target '%s'",
              ds->source, t->name);
    rt_dataset_free(ds);
    return false;
  }
  return true;
}

// Keeps the first k samples of ds (all when k is 0 or more than there are).
static void limit_dataset(RtDataset *ds, int64_t k) {
  if (k <= 0 || k >= ds->n)
    return;
  int64_t *idx = xmalloc(sizeof(int64_t) * k);
  for (int64_t i = 0; i < k; i++)
    idx[i] = i;
  RtDataset sub;
  rt_dataset_subset(ds, idx, k, &sub);
  free(idx);
  rt_dataset_free(ds);
  *ds = sub;
}

// mkdir -p
static bool make_dirs(const char *path, char *err, size_t errsz) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || !*p) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        rt_errorf(err, errsz, "cannot create the directory '%s': %s", buf, strerror(errno));
        return false;
      }
      *p = c;
      if (!c)
        return true;
    }
  }
}

// The first op whose output is not finite in a step of the cpu backend,
// whose fused loops keep no intermediate values: the same step again on the
// ref backend, from the same state, which keeps every value.
static const IrNode *replay_on_ref(RtExec *ex, Model *m, int64_t B, const float *x, const void *y, double lr) {
  RtExec *ref = rt_exec_new(m, B);
  for (int i = 0; i < rt_exec_num_state(ref); i++) {
    int64_t n;
    float *dst = rt_exec_state_data(ref, i, &n);
    const float *src = rt_exec_find_state(ex, rt_exec_state_node(ref, i)->name, NULL);
    memcpy(dst, src, sizeof(float) * n);
  }
  *rt_exec_rng(ref) = *rt_exec_rng(ex);
  rt_exec_set_steps(ref, rt_exec_steps(ex));
  rt_exec_run(ref, RT_TRAIN, B, x, y, lr);
  const IrNode *n = rt_exec_first_nonfinite(ref);
  rt_exec_free(ref);
  return n;
}

// Reports a non-finite loss at the first op that produced a non-finite value.
static void report_nonfinite(const IrNode *n, double loss, int64_t epoch, int64_t step, double lr) {
  Diag d;
  diag_init(&d, stderr);
  char hint[256];
  snprintf(hint, sizeof hint, "lower the learning rate (it was %g), or check the data for extreme values; "
           "the last good checkpoint is kept", lr);
  if (n && (n->op == IR_PARAM || n->op == IR_BUFFER))
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
  const RtTrainOpts *o;
  FILE *out;
  RtExec *ex;
  RtDataset train, val, test;
  bool have_val, have_test;
  RtBatcher batcher;
  FILE *metrics;
  char ckpt[4096];
  RtCkptInfo info;       // normalization and, when resuming, where the run stood
} Run;

static void free_run(Run *r) {
  rt_exec_free(r->ex);
  rt_dataset_free(&r->train);
  if (r->have_val)
    rt_dataset_free(&r->val);
  if (r->have_test)
    rt_dataset_free(&r->test);
  rt_batcher_free(&r->batcher);
  if (r->metrics)
    fclose(r->metrics);
}

static bool prepare_data(Run *r, char *err, size_t errsz) {
  const RtTrainOpts *o = r->o;
  RtDataset all;
  if (!load_data(r->m, o->data, "train", &all, err, errsz))
    return false;
  limit_dataset(&all, o->limit);
  if (o->val_split > 0) {
    if (!rt_split(&all, o->val_split, o->seed, &r->train, &r->val, err, errsz)) {
      rt_dataset_free(&all);
      return false;
    }
    rt_dataset_free(&all);
    r->have_val = r->val.n > 0;
    if (!r->have_val)
      rt_dataset_free(&r->val);
  } else {
    r->train = all;
  }
  struct stat st;
  const char *test = o->test ? o->test : stat(o->data, &st) == 0 && S_ISDIR(st.st_mode) ? o->data : NULL;
  if (test) {
    char terr[1024];
    r->have_test = load_data(r->m, test, "test", &r->test, terr, sizeof terr);
    if (!r->have_test && o->test) {
      rt_errorf(err, errsz, "%s", terr);
      return false;
    }
    if (r->have_test)
      limit_dataset(&r->test, o->test_limit);
  }
  if (r->train.n == 0) {
    rt_errorf(err, errsz, "%s: no training samples left", o->data);
    return false;
  }
  if (o->normalize && !r->info.normalized) {
    rt_dataset_stats(&r->train, &r->info.mean, &r->info.std);
    r->info.normalized = true;
  }
  if (r->info.normalized) {
    rt_dataset_normalize(&r->train, r->info.mean, r->info.std);
    if (r->have_val)
      rt_dataset_normalize(&r->val, r->info.mean, r->info.std);
    if (r->have_test)
      rt_dataset_normalize(&r->test, r->info.mean, r->info.std);
  }
  return true;
}

static void print_header(Run *r) {
  const RtTrainOpts *o = r->o;
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
          (long long)rt_batcher_nbatches(&r->batcher), o->epochs, o->epochs == 1 ? "" : "s", o->lr,
          (unsigned long long)o->seed);
  fflush(r->out);
}

static bool open_outputs(Run *r, bool resuming, char *err, size_t errsz) {
  const RtTrainOpts *o = r->o;
  if (!make_dirs(o->out, err, errsz))
    return false;
  snprintf(r->ckpt, sizeof r->ckpt, "%s/checkpoint.safetensors", o->out);
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.%s", o->out, o->json ? "jsonl" : "csv");
  struct stat st;
  bool fresh = !resuming || stat(path, &st) != 0;
  r->metrics = fopen(path, fresh ? "w" : "a");
  if (!r->metrics) {
    rt_errorf(err, errsz, "cannot write the metrics log '%s': %s", path, strerror(errno));
    return false;
  }
  if (fresh && !o->json)
    fputs("epoch,step,lr,train_loss,train_acc,val_loss,val_acc,seconds\n", r->metrics);
  return true;
}

static void log_metrics(Run *r, int64_t epoch, int64_t step, double lr, double tl, double ta,
                        RtEvalResult v, double secs) {
  if (r->o->json)
    fprintf(r->metrics, "{\"epoch\": %lld, \"step\": %lld, \"lr\": %.9g, \"train_loss\": %.9g, "
            "\"train_acc\": %.9g, \"val_loss\": %.9g, \"val_acc\": %.9g, \"seconds\": %.3f}\n",
            (long long)epoch, (long long)step, lr, tl, ta, v.loss, v.acc, secs);
  else
    fprintf(r->metrics, "%lld,%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%.3f\n", (long long)epoch, (long long)step,
            lr, tl, ta, v.loss, v.acc, secs);
  fflush(r->metrics);
}

// One epoch; false on a non-finite loss.
static bool run_epoch(Run *r, int64_t epoch, float *x, void *y, Progress *p, double *loss_out,
                      double *acc_out, double *lr_out) {
  RtExec *ex = r->ex;
  bool classes = r->train.y != NULL;
  int64_t nb = rt_batcher_nbatches(&r->batcher), k = 0, seen = 0, correct = 0;
  double sum = 0, lr = 0;
  p->start = now_seconds();
  p->last = 0;
  for (;;) {
    int64_t B = rt_batcher_next(&r->batcher, x, y);
    if (B == 0)
      break;
    lr = rt_schedule_lr(r->m, r->o->lr, epoch, rt_exec_steps(ex), r->o->epochs);
    Rng before = *rt_exec_rng(ex);
    double loss = rt_exec_run(ex, RT_TRAIN, B, x, y, lr);
    if (!isfinite(loss)) {
      if (p->mode == 1)
        fputc('\n', p->out);
      *rt_exec_rng(ex) = before;
      const IrNode *n = rt_exec_backend(ex) == RT_BACKEND_REF ? rt_exec_first_nonfinite(ex)
                                                             : replay_on_ref(ex, r->m, B, x, y, lr);
      report_nonfinite(n, loss, epoch, rt_exec_steps(ex) + 1, lr);
      return false;
    }
    k++;
    seen += B;
    sum += loss * B;
    if (classes)
      correct += count_correct(ex, y, B);
    progress(p, epoch, k, nb, seen, sum / seen, classes ? (double)correct / seen : -1, false);
  }
  progress(p, epoch, k, nb, seen, seen ? sum / seen : 0, -1, true);
  *loss_out = seen ? sum / seen : 0;
  *acc_out = classes && seen ? (double)correct / seen : -1;
  *lr_out = lr;
  return true;
}

bool rt_train(Model *m, const RtTrainOpts *o, FILE *out, RtTrainResult *res) {
  Run r = {.m = m, .o = o, .out = out};
  char err[2048];
  bool ok = false;
  double t0 = now_seconds();
  *res = (RtTrainResult){.val_loss = -1, .val_acc = -1, .test_loss = -1, .test_acc = -1};
  if (o->threads > 0)
    rt_set_threads(o->threads);
  if (o->backend == RT_BACKEND_CPU) {
    r.ex = rt_exec_new_cpu(m, o->batch, o->fuse, o->threads > 0 ? o->threads : 1, err, sizeof err);
    if (!r.ex)
      goto fail;
  } else {
    r.ex = rt_exec_new(m, o->batch);
  }
  int64_t start_epoch = 0;
  if (o->resume) {
    if (!rt_checkpoint_load(r.ex, o->resume, false, &r.info, err, sizeof err))
      goto fail;
    start_epoch = r.info.epoch;
  } else {
    rt_exec_init_params(r.ex, o->seed);
  }
  if (!prepare_data(&r, err, sizeof err))
    goto fail;
  if (!rt_batcher_init(&r.batcher, &r.train, o->batch, o->shuffle, o->seed, err, sizeof err))
    goto fail;
  if (o->resume && r.info.has_cursor && !rt_batcher_set_cursor(&r.batcher, r.info.cursor, err, sizeof err))
    goto fail;
  if (!open_outputs(&r, o->resume != NULL, err, sizeof err))
    goto fail;
  if (!o->quiet)
    print_header(&r);
  if (start_epoch >= o->epochs && !o->quiet)
    fprintf(out, "the checkpoint has already trained %lld epochs of %d; nothing to do\n",
            (long long)start_epoch, o->epochs);
  int64_t tdim = r.train.y ? 1 : r.train.tdim;
  float *x = xmalloc(sizeof(float) * o->batch * r.train.dim);
  void *y = xmalloc(4 * o->batch * (tdim > 0 ? tdim : 1));
  Progress p = {out, o->quiet ? -1 : o->progress, 0, 0, o->epochs};
  for (int64_t epoch = start_epoch; epoch < o->epochs; epoch++) {
    double tl, ta, lr, es = now_seconds();
    if (!run_epoch(&r, epoch, x, y, &p, &tl, &ta, &lr)) {
      free(x);
      free(y);
      free_run(&r);
      return false;
    }
    RtEvalResult v = {-1, -1, 0};
    if (r.have_val)
      v = rt_evaluate(r.ex, &r.val, o->batch, NULL);
    double secs = now_seconds() - es;
    log_metrics(&r, epoch + 1, rt_exec_steps(r.ex), lr, tl, ta, v, secs);
    r.info.epoch = epoch + 1;
    r.info.step = rt_exec_steps(r.ex);
    r.info.cursor = rt_batcher_cursor(&r.batcher);
    r.info.has_cursor = true;
    if (!rt_checkpoint_save(r.ex, r.ckpt, &r.info, err, sizeof err)) {
      free(x);
      free(y);
      goto fail;
    }
    if (!o->quiet) {
      fprintf(out, "epoch %lld/%d: train loss %.4f", (long long)epoch + 1, o->epochs, tl);
      if (ta >= 0)
        fprintf(out, " acc %.4f", ta);
      if (r.have_val)
        fprintf(out, v.acc >= 0 ? " | val loss %.4f acc %.4f" : " | val loss %.4f", v.loss, v.acc);
      fprintf(out, " | %.1f s, %.0f samples/s\n", secs, r.train.n / secs);
    }
    res->train_loss = tl;
    res->train_acc = ta;
    res->val_loss = v.loss;
    res->val_acc = v.acc;
  }
  free(x);
  free(y);
  if (r.have_test) {
    RtEvalResult t = rt_evaluate(r.ex, &r.test, o->batch, NULL);
    res->test_loss = t.loss;
    res->test_acc = t.acc;
    if (!o->quiet) {
      fprintf(out, "test: loss %.4f", t.loss);
      if (t.acc >= 0)
        fprintf(out, " accuracy %.4f", t.acc);
      fprintf(out, " (%lld samples)\n", (long long)t.n);
    }
  }
  res->steps = rt_exec_steps(r.ex);
  res->seconds = now_seconds() - t0;
  if (!o->quiet)
    fprintf(out, "checkpoint %s, metrics %s/metrics.%s (%.1f s)\n", r.ckpt, o->out, o->json ? "jsonl" : "csv",
            res->seconds);
  ok = true;
  free_run(&r);
  return ok;
fail:
  fprintf(stderr, "nnc: error: %s\n", err);
  free_run(&r);
  return false;
}
