// test_grad_hook.c: the executor's points for data-parallel training,
// without MPI. exec_set_grad_hook on the cpu backend, fused and unfused:
// each gradient is given once a step, ready before needed, its values
// untouched by the kernels between the two calls, and what the hook writes
// by need is what the update reads (gradients doubled by the hook double the
// first SGD step). The ref backend is refused. exec_set_first_sample: two
// halves of a batch, each drawn as its part of the whole, give the whole
// batch's dropout masks (and so its outputs).
#include "../test.h"
#include "../load_model.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 8 };

// What the hook saw in one step.
typedef struct Seen {
  int nparams;
  int ready[64], need[64];   // calls per parameter
  float *copy[64];           // the gradient when it was ready
  float *g[64];
  int64_t n[64];
  int order_errors;          // need before ready
  int between;
  bool twice;                // need doubles the gradient
  bool changed;              // a gradient's values changed between ready and need
} Seen;

static void on_ready(void *arg, int i, float *g, int64_t n) {
  Seen *s = arg;
  s->ready[i]++;
  s->g[i] = g;
  s->n[i] = n;
  free(s->copy[i]);
  s->copy[i] = xmalloc(sizeof(float) * n);
  memcpy(s->copy[i], g, sizeof(float) * n);
}

static void on_need(void *arg, int i) {
  Seen *s = arg;
  s->need[i]++;
  if (!s->ready[i]) {
    s->order_errors++;
    return;
  }
  s->changed |= memcmp(s->copy[i], s->g[i], sizeof(float) * s->n[i]) != 0;
  for (int64_t e = 0; s->twice && e < s->n[i]; e++)
    s->g[i][e] *= 2;
}

static void on_between(void *arg) { ((Seen *)arg)->between++; }

static Exec *make(const Model *m, bool fuse, const char *backend) {
  char err[512];
  ExecOptions o = {.max_batch = B, .threads = 2, .fuse = fuse, .entries = 1u << ENTRY_TRAIN};
  Exec *ex = exec_new(backend, m, &o, err, sizeof err);
  CHECK(ex != NULL, "%s", err);
  if (ex)
    exec_init_params(ex, 3);
  return ex;
}

// Parameter i's values (n floats, the caller frees them).
static float *param(const Exec *ex, const Model *m, int i) {
  int k = exec_find_state(ex, m->params[i]->name);
  float *v = xmalloc(sizeof(float) * ir_numel(m->params[i], 1));
  exec_read_state(ex, k, v);
  return v;
}

// One step of model path with the hook (fused or not), against the same
// step without it.
static void hook_step(const char *path, bool fuse) {
  Arena *a = arena_new();
  Model *m = t_load_model(path, a);
  CHECK(m && m->nparams <= 64, "%s", path);
  if (!m || m->nparams > 64) {
    arena_free(a);
    return;
  }
  t_seed(5);
  int64_t row = exec_sample_dim(m);
  float *x = t_randf(B * row, 0, 1);
  int32_t y[B];
  t_fill_targets(m, y, B, &t_rng, 0, 1);
  Exec *plain = make(m, fuse, "cpu"), *hooked = make(m, fuse, "cpu");
  if (!plain || !hooked)
    goto done;
  Seen s = {.nparams = m->nparams, .twice = true};
  ExecGradHook h = {on_ready, on_need, on_between, &s};
  char err[512];
  int ngrads = 0;
  bool ok = exec_set_grad_hook(hooked, &h, &ngrads, err, sizeof err);
  CHECK(ok, "%s%s: %s", path, fuse ? "" : " unfused", err);
  if (!ok)
    goto done;
  CHECK(ngrads > 0 && ngrads <= m->nparams, "%s: %d gradients of %d parameters", path, ngrads, m->nparams);
  float **before = xmalloc(sizeof(float *) * m->nparams);
  for (int i = 0; i < m->nparams; i++)
    before[i] = param(plain, m, i);
  double l1 = exec_run(plain, ENTRY_TRAIN, B, x, y, 0.01);
  double l2 = exec_run(hooked, ENTRY_TRAIN, B, x, y, 0.01);
  CHECK(l1 == l2, "%s: the loss %g with the hook, %g without", path, l2, l1);
  int given = 0;
  for (int i = 0; i < m->nparams; i++) {
    CHECK(s.ready[i] == s.need[i] && s.ready[i] <= 1, "%s: %s ready %d times, needed %d times", path,
          m->params[i]->name, s.ready[i], s.need[i]);
    given += s.ready[i];
  }
  CHECK_INT(ngrads, given);
  CHECK_INT(0, s.order_errors);
  CHECK(!s.changed, "%s: a kernel wrote a gradient between ready and need", path);
  const KProgram *p = exec_program(hooked, ENTRY_TRAIN, NULL);
  int ticks = p ? p->nkernels + 1 : 0;   // once before each kernel and at the end; once for a whole region
  for (int r = 0; p && r < p->nregions; r++)
    ticks -= p->regions[r].last - p->regions[r].first;
  CHECK(p && s.between == ticks, "%s: between called %d times, not %d", path, s.between, ticks);
  // The first SGD step moves each parameter by -lr times its gradient (the
  // momentum buffer starts as the gradient): doubled, twice as far.
  for (int i = 0; i < m->nparams; i++) {
    if (!s.ready[i])
      continue;
    float *p1 = param(plain, m, i), *p2 = param(hooked, m, i);
    double worst = 0, big = 0;
    for (int64_t e = 0; e < ir_numel(m->params[i], 1); e++) {
      double d1 = (double)p1[e] - before[i][e], d2 = (double)p2[e] - before[i][e];
      worst = fmax(worst, fabs(d2 - 2 * d1));
      big = fmax(big, fabs(d1));
    }
    CHECK(worst <= 1e-3 * big + 1e-9, "%s: %s moved by %g off twice the step without the hook (largest step %g)",
          path, m->params[i]->name, worst, big);
    free(p1);
    free(p2);
  }
  for (int i = 0; i < m->nparams; i++) {
    free(before[i]);
    free(s.copy[i]);
  }
  free(before);
done:
  exec_free(plain);
  exec_free(hooked);
  free(x);
  arena_free(a);
}

// The ref backend runs a step as a whole: no points.
static void ref_refused(void) {
  Arena *a = arena_new();
  Model *m = t_load_model("models/mlp.nn", a);
  Exec *ex = m ? make(m, true, "ref") : NULL;
  if (ex) {
    Seen s = {0};
    ExecGradHook h = {on_ready, on_need, on_between, &s};
    char err[512] = "";
    int n;
    CHECK_ERR(exec_set_grad_hook(ex, &h, &n, err, sizeof err), err, "the ref backend runs a training step as a whole",
              "--backend cpu");
  }
  exec_free(ex);
  arena_free(a);
}

// Two halves drawn as parts of the batch give the whole batch's outputs
// (dropout on, learning rate 0: the weights stay).
static void first_sample(void) {
  Arena *a = arena_new();
  Model *m = t_load_model("tests/train/dist.nn", a);
  Exec *ex = m ? make(m, true, "cpu") : NULL;
  if (!ex) {
    arena_free(a);
    return;
  }
  t_seed(9);
  int64_t row = exec_sample_dim(m), out = 0;
  float *x = t_randf(B * row, 0, 1);
  int32_t y[B];
  t_fill_targets(m, y, B, &t_rng, 0, 1);
  Rng rng = *exec_rng(ex);
  exec_run(ex, ENTRY_TRAIN, B, x, y, 0);
  out = exec_output_dim(ex);
  float *whole = xmalloc(sizeof(float) * B * out), *half = xmalloc(sizeof(float) * B * out);
  exec_read_output(ex, whole);
  for (int h = 0; h < 2; h++) {
    *exec_rng(ex) = rng;
    exec_set_first_sample(ex, h * B / 2);
    exec_run(ex, ENTRY_TRAIN, B / 2, x + h * (B / 2) * row, y + h * (B / 2), 0);
    exec_read_output(ex, half + h * (B / 2) * out);
  }
  double worst = 0;
  for (int64_t i = 0; i < B * out; i++)
    worst = fmax(worst, fabs((double)whole[i] - half[i]));
  CHECK(worst <= 1e-5, "halves of the batch with their first samples: outputs %g off the whole batch's", worst);
  // Without it, the second half draws the first half's masks.
  *exec_rng(ex) = rng;
  exec_set_first_sample(ex, 0);
  exec_run(ex, ENTRY_TRAIN, B / 2, x + (B / 2) * row, y + B / 2, 0);
  exec_read_output(ex, half);
  worst = 0;
  for (int64_t i = 0; i < (B / 2) * out; i++)
    worst = fmax(worst, fabs((double)whole[(B / 2) * out + i] - half[i]));
  CHECK(worst > 1e-3, "the second half drawn as a batch of its own has the whole batch's masks (%g)", worst);
  free(whole);
  free(half);
  free(x);
  exec_free(ex);
  arena_free(a);
}

int main(void) {
  const char *models[] = {"models/mlp.nn", "models/cnn.nn", "models/lenet5.nn"};
  for (int i = 0; i < 3; i++) {
    hook_step(models[i], true);
    hook_step(models[i], false);
  }
  ref_refused();
  first_sample();
  return t_finish("test_grad_hook");
}
