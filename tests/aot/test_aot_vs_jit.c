// test_aot_vs_jit.c: every model in models/ (and those of tests/cpu: two
// inputs, a tied weight, a batched matmul, an embedding of integer inputs,
// gradient clipping; of tests/heads: several outputs, losses and targets) compiled ahead of time (`nnc
// compile --shared --name model`, run here) against the cpu backend (the
// JIT) on the same model, bit for bit: the initial weights from the same
// seed, the forward output at two batch sizes, the eval loss and output,
// and three training steps (dropout on: the same masks) with every
// persistent tensor after them, and a checkpoint each side reads from the
// other. The artifact is a shared object with the runtime library inside,
// loaded with dlopen, so the test links nnc's libraries and the artifact
// brings its own copy of the runtime.
//
//   test_aot_vs_jit NNC ROOT
#include "../test.h"
#include "../load_model.h"
#include "train.h"

#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Api {
  void *(*create)(int, char *, size_t);
  void (*free)(void *);
  void (*init)(void *, uint64_t);
  int (*load)(void *, const char *, char *, size_t);
  int (*save)(void *, const char *, char *, size_t);
  int (*forward)(void *, int64_t, const float *, float *);
  double (*eval)(void *, int64_t, const float *, const void *, float *);
  double (*train_step)(void *, int64_t, const float *, const void *, double);
  const char *(*error)(const void *);
  int (*num_tensors)(void);
  const char *(*tensor_name)(int);
  int64_t (*tensor_numel)(int);
  int (*read_tensor)(const void *, int, float *);
  int64_t (*steps)(const void *);
} Api;

static bool load_api(void *so, Api *a) {
  void **slots[] = {(void **)&a->create, (void **)&a->free, (void **)&a->init, (void **)&a->load,
                    (void **)&a->save, (void **)&a->forward, (void **)&a->eval, (void **)&a->train_step,
                    (void **)&a->error, (void **)&a->num_tensors, (void **)&a->tensor_name,
                    (void **)&a->tensor_numel, (void **)&a->read_tensor, (void **)&a->steps};
  static const char *const names[] = {"create", "free", "init", "load", "save", "forward", "eval", "train_step",
                                      "error", "num_tensors", "tensor_name", "tensor_numel", "read_tensor", "steps"};
  for (int i = 0; i < countof(names); i++) {
    char sym[64];
    snprintf(sym, sizeof sym, "model_%s", names[i]);
    if (!(*slots[i] = dlsym(so, sym))) {
      FAIL("the artifact has no %s\n", sym);
      return false;
    }
  }
  return true;
}

// Every persistent tensor of the context against the executor's.
static void same_state(const char *label, const Api *api, void *ctx, const Exec *ex) {
  CHECK_INT(exec_num_state(ex), api->num_tensors());
  int bad = 0;
  for (int i = 0; i < api->num_tensors(); i++) {
    int k = exec_find_state(ex, api->tensor_name(i));
    int64_t n = api->tensor_numel(i);
    if (k < 0 || ir_numel(exec_state_node(ex, k), 1) != n) {
      FAIL("%s: tensor %s is not the executor's\n", label, api->tensor_name(i));
      continue;
    }
    float *a = xmalloc(sizeof(float) * (n ? n : 1)), *b = xmalloc(sizeof(float) * (n ? n : 1));
    api->read_tensor(ctx, i, a);
    exec_read_state(ex, k, b);
    if (memcmp(a, b, sizeof(float) * n)) {
      FAIL("%s: tensor %s differs from the JIT's\n", label, api->tensor_name(i));
      bad++;
    }
    free(a);
    free(b);
  }
  CHECK(bad == 0, "%s: %d tensors differ", label, bad);
}

static void check_model(const char *nnc, const char *name, int64_t B) {
  char path[256], cmd[2048], out[512], err[1024];
  snprintf(path, sizeof path, strchr(name, '/') ? "%s.nn" : "models/%s.nn", name);
  name = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
  snprintf(out, sizeof out, "%s", t_path(name));
  snprintf(cmd, sizeof cmd, "%s compile %s -o %s --name model --shared --batch %lld", nnc, path, out, (long long)B);
  if (system(cmd) != 0) {
    FAIL("%s: nnc compile failed\n", name);
    return;
  }
  strcat(out, ".so");
  void *so = dlopen(out, RTLD_NOW | RTLD_LOCAL);
  Api api;
  if (!so) {
    FAIL("%s: dlopen: %s\n", name, dlerror());
    return;
  }
  if (!load_api(so, &api))
    return;
  Arena *a = arena_new();
  Model *m = t_load_model(path, a);
  ExecOptions eo = {.max_batch = B, .threads = 2, .fuse = true};
  Exec *ex = m ? exec_new("cpu", m, &eo, err, sizeof err) : NULL;
  void *ctx = api.create(2, err, sizeof err);
  if (!ex || !ctx) {
    FAIL("%s: %s\n", name, err);
    return;
  }
  // Initializers: the .nn file's seed, as a context starts, and another.
  exec_init_params(ex, m->train.seed);
  same_state(name, &api, ctx, ex);
  exec_init_params(ex, 7);
  api.init(ctx, 7);
  same_state(name, &api, ctx, ex);

  Rng r;
  rng_seed(&r, 5, 0);
  int64_t row = exec_sample_dim(m), od = exec_output_dim(ex), ty = exec_target_dim(m);
  float *x = xmalloc(sizeof(float) * B * row), *o1 = xmalloc(sizeof(float) * B * od),
        *o2 = xmalloc(sizeof(float) * B * od);
  void *y = xmalloc(4 * (B * ty + 1));
  for (int64_t i = 0; i < B * row; i++)
    x[i] = (float)rng_uniform(&r);
  t_fill_indexes(m, x, B, &r, 5);
  for (int64_t i = 0; i < B * ty; i++) {   // a row of every target's values, one after another
    int64_t k = i % ty, t = 0;
    while (k >= ir_numel(m->targets[t], 1))
      k -= ir_numel(m->targets[t++], 1);
    if (m->targets[t]->dtype == DT_I32)
      ((int32_t *)y)[i] = (int32_t)rng_below(&r, (uint32_t)m->targets[t]->attr.i[0]);
    else
      ((float *)y)[i] = (float)(rng_uniform(&r) * 4 - 2);
  }
  int64_t sizes[2] = {B, B > 1 ? B - 1 : 1};
  for (int s = 0; s < 2; s++) {
    int64_t b = sizes[s];
    exec_run(ex, ENTRY_FORWARD, b, x, NULL, 0);
    exec_read_output(ex, o1);
    CHECK_INT(0, api.forward(ctx, b, x, o2));
    char what[96];
    snprintf(what, sizeof what, "%s forward at batch %lld", name, (long long)b);
    t_equal(what, o2, o1, b * od);
  }
  if (m->g->loss) {
    void *yt = y;
    if (!ty)   // the loss compares outputs with inputs: no targets to pass
      y = NULL;
    double l1 = exec_run(ex, ENTRY_EVAL, B, x, y, 0), l2 = api.eval(ctx, B, x, y, o2);
    exec_read_output(ex, o1);
    CHECK(memcmp(&l1, &l2, sizeof l1) == 0, "%s eval loss: JIT %.17g, artifact %.17g", name, l1, l2);
    t_equal("eval output", o2, o1, B * od);
    for (int step = 0; step < 3; step++) {
      double lr = 0.01 * (step + 1);
      l1 = exec_run(ex, ENTRY_TRAIN, B, x, y, lr);
      l2 = api.train_step(ctx, B, x, y, lr);
      CHECK(memcmp(&l1, &l2, sizeof l1) == 0, "%s train step %d loss: JIT %.17g, artifact %.17g", name, step, l1, l2);
    }
    CHECK(api.steps(ctx) == exec_steps(ex), "%s: %lld steps, the JIT %lld", name, (long long)api.steps(ctx),
          (long long)exec_steps(ex));
    same_state(name, &api, ctx, ex);
    // Checkpoints both ways: the artifact's read by the trainer, the trainer's by the artifact.
    char ck1[512], ck2[512];
    snprintf(ck1, sizeof ck1, "%s.aot.safetensors", t_path(name));
    snprintf(ck2, sizeof ck2, "%s.jit.safetensors", t_path(name));
    CHECK_INT(0, api.save(ctx, ck1, err, sizeof err));
    CkptInfo info = {.step = exec_steps(ex)};
    bool ok = train_checkpoint_save(ex, ck2, &info, err, sizeof err);
    CHECK(ok, "%s", err);
    exec_init_params(ex, 99);
    api.init(ctx, 99);
    ok = train_checkpoint_load(ex, ck1, false, &info, err, sizeof err);
    CHECK(ok, "%s: the trainer cannot read the artifact's checkpoint: %s", name, err);
    CHECK_INT(0, api.load(ctx, ck2, err, sizeof err));
    same_state(name, &api, ctx, ex);
    CHECK(api.steps(ctx) == 3 && exec_steps(ex) == 3, "%s: the steps after loading", name);
    y = yt;
  }
  free(x);
  free(y);
  free(o1);
  free(o2);
  api.free(ctx);
  exec_free(ex);
  arena_free(a);
  dlclose(so);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_aot_vs_jit NNC ROOT\n");
    return 2;
  }
  if (chdir(argv[2]) != 0) {
    FAIL("cannot enter %s\n", argv[2]);
    return t_finish("test_aot_vs_jit");
  }
  t_tmpdir("aot");
  static const struct {
    const char *name;
    int64_t B;
  } models[] = {{"mlp", 8}, {"cnn", 6}, {"logreg", 5}, {"logreg_by_hand", 5}, {"mlp100", 4}, {"quadratic", 9},
                {"resnet18", 4}, {"tests/cpu/two_inputs", 4}, {"tests/cpu/matmul3d", 3}, {"tests/cpu/tied", 3},
                {"tests/cpu/scaled", 3}, {"tests/cpu/reshaped_param", 3}, {"tests/cpu/embedding", 4},
                {"tests/heads/twohead", 4}, {"tests/heads/autoencoder", 3}, {"tests/heads/threeloss", 5},
                {"tests/heads/denoise", 4}, {"tests/heads/detect", 4}, {"tests/heads/twoclass", 3},
                {"tests/cpu/clipped", 3}};
  for (int i = 0; i < countof(models); i++)
    check_model(argv[1], models[i].name, models[i].B);
  return t_finish("test_aot_vs_jit");
}
