// test_checkpoint.c: what train_checkpoint_load accepts and refuses.
//
// A small model with a convolution, a batchnorm and a linear layer, trained
// with sgd and momentum: its checkpoints round-trip; a PyTorch state_dict
// under the same names (no nnc metadata, an I64 num_batches_tracked per
// batchnorm) loads as plain weights but cannot be resumed; NaN and
// infinite weights, metadata numbers out of their bounds, and another
// optimizer's state are refused with messages that say what to do.
#include "../test.h"
#include "frontend.h"
#include "train.h"

#include <math.h>

static const char *const model_src =
    "model small {\n"
    "    input  image: f32[1, 4, 4]\n"
    "    target label: class(3)\n"
    "    image -> conv2d(2, 3) -> batchnorm -> relu -> flatten -> linear(3)\n"
    "}\n"
    "loss cross_entropy\n"
    "optimizer %s\n";

// The model with the given optimizer, through autodiff (so with its state).
static Model *compile(Arena *a, const char *optimizer, const char *name) {
  char src[1024];
  snprintf(src, sizeof src, model_src, optimizer);
  t_write(t_path(name), src, strlen(src));
  Diag d;
  diag_init(&d, stderr);
  Program *p = fe_parse_file(t_path(name), a, &d);
  Model *m = p ? pass_lower(p, a, &d) : NULL;
  if (!m || !pass_autodiff(m, &d)) {
    fprintf(stderr, "test_checkpoint: the model does not compile\n");
    exit(1);
  }
  diag_free(&d);
  return m;
}

static bool is_state(const char *name) {
  return strstr(name, ".momentum_buffer") || strstr(name, ".exp_avg");
}

// A copy of ex's state tensor name (n: its floats), which the caller frees;
// put_state writes one back.
static float *get_state(const Exec *ex, const char *name, int64_t *n) {
  int i = exec_find_state(ex, name);
  if (i < 0)
    return NULL;
  int64_t k = ir_numel(exec_state_node(ex, i), 1);
  float *v = xmalloc(sizeof(float) * k);
  exec_read_state(ex, i, v);
  if (n)
    *n = k;
  return v;
}

static void put_state(Exec *ex, const char *name, const float *v) { exec_write_state(ex, exec_find_state(ex, name), v); }

// Writes ex's tensors (without optimizer state when weights_only) and the
// metadata given; extra adds PyTorch's num_batches_tracked.
static void write_file(Exec *ex, const char *path, bool weights_only, bool extra, const StMeta *meta, int nmeta) {
  StTensor t[32];
  int nt = 0;
  static const int64_t tracked = 7;
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
    if (weights_only && is_state(n->name))
      continue;
    t[nt] = (StTensor){.name = n->name, .dtype = ST_F32, .ndim = n->ndim, .data = get_state(ex, n->name, NULL)};
    memcpy(t[nt].shape, n->shape, sizeof(int64_t) * n->ndim);
    nt++;
  }
  int ncopies = nt;
  if (extra)
    t[nt++] = (StTensor){.name = "batchnorm_1.num_batches_tracked", .dtype = ST_I64, .ndim = 0, .data = &tracked};
  char err[1024];
  if (!data_st_write(path, t, nt, meta, nmeta, err, sizeof err)) {
    fprintf(stderr, "test_checkpoint: %s\n", err);
    exit(1);
  }
  for (int i = 0; i < ncopies; i++)
    free((void *)t[i].data);
}

static Exec *new_exec(const Model *m) {
  ExecOptions o = {.max_batch = 4};
  return exec_new("ref", m, &o, NULL, 0);
}

// Loads path into a fresh executor of m; the message, if any, in err.
static bool load(Model *m, const char *path, bool weights_only, CkptInfo *info, char *err, size_t errsz) {
  Exec *ex = new_exec(m);
  exec_init_params(ex, 99);
  CkptInfo tmp;
  bool ok = train_checkpoint_load(ex, path, weights_only, info ? info : &tmp, err, errsz);
  exec_free(ex);
  return ok;
}

// A checkpoint with the metadata key set to value (the rest as nnc writes it).
static void with_meta(Exec *ex, const char *path, const char *key, const char *value) {
  StMeta meta[] = {{"format", "nnc-checkpoint-1"}, {"epoch", "2"}, {"step", "10"},
                   {"cursor", "epoch=2 pos=0 rng=0000000000000001:0000000000000003"}, {"normalize", ""}, {"plateau", ""}};
  for (int i = 0; i < countof(meta); i++)
    if (!strcmp(meta[i].key, key))
      meta[i].value = value;
  write_file(ex, path, false, false, meta, countof(meta));
}

static void test_roundtrip(Model *m, Exec *ex) {
  CkptInfo info = {.epoch = 2, .step = 10, .normalized = true, .mean = 0.5, .std = 2, .has_last = true,
                     .last = {.epoch = 2, .step = 10, .lr = 0.1, .train_loss = 1.5, .train_acc = 0.25,
                              .val_loss = -1, .val_acc = -1, .seconds = 3}};
  char err[1024];
  bool ok = train_checkpoint_save(ex, t_path("good.safetensors"), &info, err, sizeof err);
  CHECK(ok, "%s", err);
  CkptInfo back;
  ok = load(m, t_path("good.safetensors"), false, &back, err, sizeof err);
  CHECK(ok, "%s", err);
  CHECK(back.epoch == 2 && back.step == 10 && back.normalized && back.mean == 0.5 && back.std == 2 && !back.plain,
        "epoch %lld step %lld", (long long)back.epoch, (long long)back.step);
  CHECK(back.has_last && back.last.train_loss == 1.5 && back.last.lr == 0.1 && back.last.seconds == -1,
        "the metrics row did not come back");
  CHECK(!back.has_plateau && back.last.nterms == 0, "a plateau state or loss terms from nowhere");
  // The plateau schedule's state (best still +inf: no epoch yet), and a
  // weighted sum's terms in the metrics row.
  info.has_plateau = true;
  info.plateau = (Plateau){0.025, INFINITY, 3, 1};
  info.last.nterms = 2;
  memcpy(info.last.train_terms, (double[]){0.5, 0.25}, 2 * sizeof(double));
  memcpy(info.last.val_terms, (double[]){0.75, -1}, 2 * sizeof(double));
  ok = train_checkpoint_save(ex, t_path("plateau.safetensors"), &info, err, sizeof err);
  CHECK(ok, "%s", err);
  ok = load(m, t_path("plateau.safetensors"), false, &back, err, sizeof err);
  CHECK(ok, "%s", err);
  CHECK(back.has_plateau && back.plateau.lr == 0.025 && isinf(back.plateau.best) && back.plateau.bad == 3 &&
        back.plateau.cooldown == 1, "the plateau state did not come back");
  CHECK(back.has_last && back.last.nterms == 2 && back.last.train_terms[1] == 0.25 && back.last.val_terms[0] == 0.75 &&
        back.last.val_terms[1] == -1, "the loss terms of the metrics row did not come back");
}

// A PyTorch state_dict saved with safetensors' save_file: the weights and
// buffers under nnc's names, num_batches_tracked, and no or other metadata.
static void test_plain(Model *m, Exec *ex) {
  char err[1024];
  const StMeta pt[] = {{"format", "pt"}};
  for (int k = 0; k < 2; k++) {
    const char *path = t_path("plain.safetensors");
    write_file(ex, path, true, true, pt, k);
    Exec *in = new_exec(m);
    exec_init_params(in, 99);
    CkptInfo info;
    bool ok = train_checkpoint_load(in, path, true, &info, err, sizeof err);
    CHECK(ok, "a state_dict (metadata %d) is refused: %s", k, err);
    CHECK(info.plain && info.epoch == 0 && exec_steps(in) == 0, "plain %d", info.plain);
    int64_t n;
    float *w = get_state(in, "linear_1.weight", &n), *want = get_state(ex, "linear_1.weight", NULL);
    CHECK(w && !memcmp(w, want, sizeof(float) * n), "the weights were not loaded");
    free(w);
    free(want);
    exec_free(in);
    ok = load(m, path, false, NULL, err, sizeof err);
    CHECK_ERR(ok, err, "plain.safetensors: holds weights but no training state", "a run cannot resume from it",
              "HINT: start a new run from these weights with --init");
  }
  // A state_dict whose names are not nnc's says how nnc names weights.
  StTensor t = {.name = "fc1.weight", .dtype = ST_F32, .ndim = 1, .shape = {3}, .data = (float[]){1, 2, 3}};
  bool ok = data_st_write(t_path("torchnames.safetensors"), &t, 1, NULL, 0, err, sizeof err);
  CHECK(ok, "%s", err);
  ok = load(m, t_path("torchnames.safetensors"), true, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "has no tensor 'conv2d_1.weight'", "nnc emit --stage ir");
  // A state_dict of doubles: the shape is right, the dtype is what to change.
  const IrNode *first = exec_state_node(ex, 0);
  int64_t k = ir_numel(first, 1);
  StTensor d = {.name = first->name, .dtype = ST_F64, .ndim = first->ndim, .data = xcalloc(k, sizeof(double))};
  memcpy(d.shape, first->shape, sizeof(int64_t) * first->ndim);
  ok = data_st_write(t_path("doubles.safetensors"), &d, 1, NULL, 0, err, sizeof err);
  CHECK(ok, "%s", err);
  free((void *)d.data);
  ok = load(m, t_path("doubles.safetensors"), true, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "tensor 'conv2d_1.weight' is F64 in the checkpoint, but nnc's weights are F32",
            "HINT: save the tensors as float32");
}

static void test_nonfinite(Model *m, Exec *ex) {
  char err[1024];
  CkptInfo info = {.epoch = 1, .step = 3};
  float *w = get_state(ex, "linear_1.weight", NULL);
  float *mb = get_state(ex, "linear_1.weight.momentum_buffer", NULL);
  float keep = w[5], keepm = mb[1];
  w[5] = NAN;
  put_state(ex, "linear_1.weight", w);
  train_checkpoint_save(ex, t_path("nan.safetensors"), &info, err, sizeof err);
  w[5] = keep;
  put_state(ex, "linear_1.weight", w);
  bool ok = load(m, t_path("nan.safetensors"), true, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "tensor 'linear_1.weight' holds a NaN at flat index 5", "HINT: ");
  mb[1] = -INFINITY;
  put_state(ex, "linear_1.weight.momentum_buffer", mb);
  train_checkpoint_save(ex, t_path("inf.safetensors"), &info, err, sizeof err);
  mb[1] = keepm;
  put_state(ex, "linear_1.weight.momentum_buffer", mb);
  free(w);
  free(mb);
  ok = load(m, t_path("inf.safetensors"), false, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "tensor 'linear_1.weight.momentum_buffer' holds -inf at flat index 1");
}

// Every number of the metadata within its bounds (a step of INT64_MAX once
// overflowed the optimizer's step counter).
static void test_bounds(Model *m, Exec *ex) {
  static const struct {
    const char *key, *value, *says;
  } cases[] = {
      {"step", "9223372036854775807", "metadata 'step' is '9223372036854775807', not a whole number from 0 to "},
      {"step", "99999999999999999999", "metadata 'step'"},
      {"step", "-1", "metadata 'step'"},
      {"step", "12abc", "metadata 'step'"},
      {"epoch", "1000001", "metadata 'epoch' is '1000001', not a whole number from 0 to 1000000"},
      {"epoch", "", "metadata 'epoch'"},
      {"cursor", "epoch=9223372036854775807 pos=0 rng=1:3", "metadata 'cursor'"},
      {"cursor", "garbage", "metadata 'cursor'"},
      {"normalize", "nan 1", "metadata 'normalize'"},
      {"normalize", "0 0", "metadata 'normalize'"},
      {"normalize", "0 inf", "metadata 'normalize'"},
      {"format", "nnc-checkpoint-9", "the checkpoint's format is 'nnc-checkpoint-9'"},
      {"plateau", "lr=0 best=1 bad=0 cooldown=0", "metadata 'plateau' is 'lr=0 best=1 bad=0 cooldown=0', not 'lr=X best=Y"},
      {"plateau", "lr=0.1 best=nan bad=0 cooldown=0", "metadata 'plateau'"},
      {"plateau", "lr=0.1 best=1 bad=-1 cooldown=0", "metadata 'plateau'"},
      {"plateau", "lr=0.1 best=1 bad=0 cooldown=0 more", "metadata 'plateau'"},
  };
  char err[1024];
  for (int i = 0; i < countof(cases); i++) {
    with_meta(ex, t_path("meta.safetensors"), cases[i].key, cases[i].value);
    bool ok = load(m, t_path("meta.safetensors"), false, NULL, err, sizeof err);
    CHECK_ERR(ok, err, cases[i].says);
  }
  with_meta(ex, t_path("meta.safetensors"), "step", "9007199254740992");   // 2^53: the largest allowed
  bool ok = load(m, t_path("meta.safetensors"), false, NULL, err, sizeof err);
  CHECK(ok, "step 2^53 refused: %s", err);
}

// A resume after only the optimizer changed: not "another model".
static void test_optimizer(Model *momentum, Exec *ex, Arena *a) {
  char err[1024];
  Model *adam = compile(a, "adam(lr = 0.001)", "adam.nn"), *plain = compile(a, "sgd(lr = 0.1)", "sgd.nn");
  const char *path = t_path("good.safetensors");
  bool ok = load(adam, path, false, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "has no optimizer state 'conv2d_1.weight.exp_avg' (adam or adamw)",
            "written with another optimizer (sgd or rmsprop with momentum)", "HINT: resume with the optimizer the run was "
            "trained with", "--init");
  ok = load(plain, path, false, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "holds optimizer state 'conv2d_1.weight.momentum_buffer' (sgd or rmsprop with momentum)", "--init");
  ok = load(adam, path, true, NULL, err, sizeof err);
  CHECK(ok, "weights alone load into another optimizer's model: %s", err);
  Exec *ex2 = new_exec(plain);
  exec_init_params(ex2, 1);
  CkptInfo info = {0};
  train_checkpoint_save(ex2, t_path("sgd.safetensors"), &info, err, sizeof err);
  exec_free(ex2);
  ok = load(momentum, t_path("sgd.safetensors"), false, NULL, err, sizeof err);
  CHECK_ERR(ok, err, "no optimizer state 'conv2d_1.weight.momentum_buffer'", "(sgd without momentum, which keeps none)");
  (void)ex;
}

int main(void) {
  t_tmpdir("checkpoint");
  Arena *a = arena_new();
  Model *m = compile(a, "sgd(lr = 0.1, momentum = 0.9)", "small.nn");
  Exec *ex = new_exec(m);
  exec_init_params(ex, 1);
  int64_t n;
  float *mb = get_state(ex, "linear_1.weight.momentum_buffer", &n);
  for (int64_t i = 0; i < n; i++)
    mb[i] = 0.01f * (float)i;   // state that differs from a fresh one
  put_state(ex, "linear_1.weight.momentum_buffer", mb);
  free(mb);
  test_roundtrip(m, ex);
  test_plain(m, ex);
  test_nonfinite(m, ex);
  test_bounds(m, ex);
  test_optimizer(m, ex, a);
  exec_free(ex);
  arena_free(a);
  return t_finish("test_checkpoint");
}
