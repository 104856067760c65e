// test_cuda_exec.c: the cuda executor's own work, apart from the kernels:
// on cuda-emu, and on the cuda backend against tests/runtime/fake_cuda.c (a
// stand-in libcuda whose device memory is host memory and whose kernels do
// nothing; argv[1]), with and without graphs. Values written come back;
// each step's batch reaches the arena, whether it was announced
// (exec_prefetch: staged and copied while the step before ran), announced
// and then not run (a different batch came), or not announced at all;
// training steps count. Where a GPU is, two runs of one seed on it give
// the same bytes.
#include "../test.h"
#include "../load_model.h"
#include "exec.h"

static void check_backend(const char *backend, const char *label) {
  Arena *a = arena_new();
  Model *m = t_load_model("models/mlp.nn", a);
  char err[2048];
  ExecOptions o = {.max_batch = 8, .threads = 1, .fuse = true};
  Exec *ex = exec_new(backend, m, &o, err, sizeof err);
  if (!CHECK(ex, "%s: %s", label, err)) {
    arena_free(a);
    return;
  }
  exec_init_params(ex, 5);
  // State through the device and back.
  int n = exec_num_state(ex);
  for (int i = 0; i < n; i++) {
    int64_t k = ir_numel(exec_state_node(ex, i), 1);
    float *v = xmalloc(sizeof(float) * k), *w = xmalloc(sizeof(float) * k);
    for (int64_t j = 0; j < k; j++)
      v[j] = (float)(i + 1) * 0.001f * (float)(j % 97);
    exec_write_state(ex, i, v);
    exec_read_state(ex, i, w);
    CHECK(!memcmp(v, w, sizeof(float) * k), "%s: state %s does not read back", label, exec_state_node(ex, i)->name);
    free(v);
    free(w);
  }
  // Batches: announced, announced but replaced, not announced.
  int64_t d = exec_sample_dim(m);
  float *x[4];
  int32_t *y[4];
  for (int b = 0; b < 4; b++) {
    x[b] = xmalloc(sizeof(float) * 8 * d);
    y[b] = xmalloc(sizeof(int32_t) * 8);
    for (int64_t j = 0; j < 8 * d; j++)
      x[b][j] = (float)(b * 1000 + j % 1000);
    for (int j = 0; j < 8; j++)
      y[b][j] = (b + j) % 10;
  }
  const IrNode *in = m->inputs[0];
  float *got = xmalloc(sizeof(float) * 8 * d);
  // Each step: the batch it runs (x[b], B rows) and the batch it announces
  // for the next (x[next], next_B rows; -1: none).
  struct { int b; int64_t B; int next; int64_t next_B; const char *what; } steps[] = {
      {0, 8, 1, 5, "a batch not announced"},
      {1, 5, 2, 8, "an announced batch"},
      {0, 3, 3, 7, "a batch other than the one announced"},
      {3, 7, -1, 0, "an announced batch, after one that was dropped"},
      {2, 8, -1, 0, "the dropped batch, fed again"},
  };
  int64_t steps_before = exec_steps(ex);
  for (int s = 0; s < countof(steps); s++) {
    if (steps[s].next >= 0)
      exec_prefetch(ex, ENTRY_TRAIN, steps[s].next_B, x[steps[s].next], y[steps[s].next]);
    double loss = exec_run(ex, ENTRY_TRAIN, steps[s].B, x[steps[s].b], y[steps[s].b], 0.01);
    CHECK(loss == loss, "%s: step %d's loss is NaN", label, s);
    if (CHECK(exec_read_value(ex, in, got), "%s: the input is not readable", label))
      CHECK(!memcmp(got, x[steps[s].b], sizeof(float) * steps[s].B * d), "%s: step %d, %s: the arena holds another batch",
            label, s, steps[s].what);
  }
  CHECK_INT(steps_before + countof(steps), exec_steps(ex));
  exec_run(ex, ENTRY_FORWARD, 2, x[1], NULL, 0);
  CHECK(exec_read_value(ex, in, got) && !memcmp(got, x[1], sizeof(float) * 2 * d), "%s: forward's input", label);
  printf("%s: checked\n", label);
  free(got);
  for (int b = 0; b < 4; b++) {
    free(x[b]);
    free(y[b]);
  }
  exec_free(ex);
  arena_free(a);
}

// The same seed, the same bytes: cnn (dropout, sums of every kind)
// trained 3 steps twice from one initialization, every state tensor equal
// bit for bit (no atomics, fixed-order sums). On a GPU this is the claim
// that matters; on cuda-emu it holds trivially.
static void check_determinism(const char *backend) {
  Arena *a = arena_new();
  Model *m = t_load_model("models/cnn.nn", a);
  char err[2048];
  ExecOptions o = {.max_batch = 13, .threads = 1, .fuse = true};
  float *state[2] = {NULL, NULL};
  int64_t total = 0;
  for (int run = 0; run < 2; run++) {
    Exec *ex = exec_new(backend, m, &o, err, sizeof err);
    if (!CHECK(ex, "%s: %s", backend, err))
      break;
    exec_init_params(ex, 11);
    int64_t d = exec_sample_dim(m);
    float *x = xmalloc(sizeof(float) * 13 * d);
    int32_t y[13];
    for (int64_t j = 0; j < 13 * d; j++)
      x[j] = (float)((j * 2654435761u) % 1000) / 1000.0f;
    for (int j = 0; j < 13; j++)
      y[j] = j % 10;
    for (int step = 0; step < 3; step++)
      exec_run(ex, ENTRY_TRAIN, 13, x, y, 0.05);
    total = 0;
    for (int i = 0; i < exec_num_state(ex); i++)
      total += ir_numel(exec_state_node(ex, i), 1);
    state[run] = xmalloc(sizeof(float) * total);
    for (int i = 0, at = 0; i < exec_num_state(ex); i++) {
      exec_read_state(ex, i, state[run] + at);
      at += (int)ir_numel(exec_state_node(ex, i), 1);
    }
    free(x);
    exec_free(ex);
  }
  if (state[0] && state[1])
    CHECK(!memcmp(state[0], state[1], sizeof(float) * total), "%s: two runs of one seed differ", backend);
  printf("%s: the same seed gave the same bytes\n", backend);
  free(state[0]);
  free(state[1]);
  arena_free(a);
}

int main(int argc, char **argv) {
  char why[1024];
  if (exec_backend_available("cuda", why, sizeof why))   // a GPU: determinism on the device itself
    check_determinism("cuda");
  else
    printf("cuda determinism skipped: %s\n", why);
  if (exec_backend_available("cuda-emu", why, sizeof why)) {
    check_backend("cuda-emu", "cuda-emu");
    check_determinism("cuda-emu");
  }
  else
    printf("cuda-emu skipped: %s\n", why);
  if (argc > 1) {   // the fake driver: the executor's device path, kernels aside
    setenv("NNC_LIBCUDA", argv[1], 1);
    t_tmpdir("cuda_exec");
    setenv("NNC_CACHE_DIR", t_path("cache"), 1);
    if (!exec_backend_available("cuda", why, sizeof why)) {
      printf("cuda on the fake driver skipped: %s\n", why);
    } else {
      check_backend("cuda", "cuda (fake driver, graphs)");
      setenv("NNC_CUDA_NO_GRAPHS", "1", 1);
      check_backend("cuda", "cuda (fake driver, launch by launch)");
      unsetenv("NNC_CUDA_NO_GRAPHS");
    }
  }
  return t_finish("test_cuda_exec");
}
