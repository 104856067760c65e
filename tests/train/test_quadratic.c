// test_quadratic.c: models/quadratic.nn fitted by gradient descent to data
// this test makes, speed = 2 t^2 - 3 t + 0.5, must recover the coefficients.
// Goes through the whole path `nnc train` takes: parse, lower, autodiff,
// the CSV loader for real-valued targets, the training loop, the checkpoint.
#include "../test.h"
#include "frontend.h"
#include "train.h"

int main(void) {
  t_tmpdir("quadratic");
  const char *csv = t_path("data.csv"), *out = t_path("run"), *ckpt = t_path("run/checkpoint.safetensors");
  FILE *f = fopen(csv, "w");
  fprintf(f, "t,speed\n");
  Rng r;
  rng_seed(&r, 3, 0);
  for (int i = 0; i < 512; i++) {
    double t = rng_uniform(&r) * 4 - 2;
    fprintf(f, "%.9g,%.9g\n", t, 2 * t * t - 3 * t + 0.5);
  }
  fclose(f);

  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  Program *p = fe_parse_file("models/quadratic.nn", a, &d);
  Model *m = p ? pass_lower(p, a, &d) : NULL;
  if (!m || !pass_autodiff(m, &d)) {
    FAIL("models/quadratic.nn does not compile\n");
    return t_finish("test_quadratic");
  }
  // The model's own lr (1e-5) suits data with t in the hundreds; this data
  // is in [-2, 2], so a larger rate converges in a few hundred epochs.
  TrainOpts o = {.data = csv, .out = out, .epochs = 300, .batch = 32, .lr = 0.05, .seed = 1,
                   .threads = 1, .shuffle = true, .progress = -1, .quiet = true, .backend = "ref"};
  TrainResult res;
  if (!train_run(m, &o, stdout, &res)) {
    FAIL("training failed\n");
    return t_finish("test_quadratic");
  }
  StFile st;
  char err[1024];
  if (!data_st_read(ckpt, &st, err, sizeof err)) {
    FAIL("%s\n", err);
    return t_finish("test_quadratic");
  }
  const char *names[] = {"a", "b", "c"};
  double want[] = {2, -3, 0.5};
  for (int i = 0; i < 3; i++) {
    const StTensor *t = data_st_find(&st, names[i]);
    double got = t ? ((const float *)t->data)[0] : NAN;
    CHECK(fabs(got - want[i]) < 1e-3, "%s = %.6f, expected %g", names[i], got, want[i]);
  }
  printf("final train loss %.3g after %lld steps\n", res.train_loss, (long long)res.steps);
  data_st_free(&st);
  diag_free(&d);
  arena_free(a);
  return t_finish("test_quadratic");
}
