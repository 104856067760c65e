// test_quadratic.c: models/quadratic.nn fitted by gradient descent to data
// this test makes, speed = 2 t^2 - 3 t + 0.5, must recover the coefficients.
// Goes through the whole path `nnc train` takes: parse, lower, autodiff,
// the CSV loader for real-valued targets, the training loop, the checkpoint.
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  char dir[] = "/tmp/nnc-quadratic-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char csv[256], out[256], ckpt[300];
  snprintf(csv, sizeof csv, "%s/data.csv", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out);
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
    fprintf(stderr, "test_quadratic: models/quadratic.nn does not compile\n");
    return 1;
  }
  // The model's own lr (1e-5) suits data with t in the hundreds; this data
  // is in [-2, 2], so a larger rate converges in a few hundred epochs.
  TrainOpts o = {.data = csv, .out = out, .epochs = 300, .batch = 32, .lr = 0.05, .seed = 1,
                   .threads = 1, .shuffle = true, .progress = -1, .quiet = true, .backend = "ref"};
  TrainResult res;
  if (!train_run(m, &o, stdout, &res)) {
    fprintf(stderr, "test_quadratic: training failed\n");
    return 1;
  }
  StFile st;
  char err[1024];
  if (!data_st_read(ckpt, &st, err, sizeof err)) {
    fprintf(stderr, "test_quadratic: %s\n", err);
    return 1;
  }
  const char *names[] = {"a", "b", "c"};
  double want[] = {2, -3, 0.5};
  int fails = 0;
  for (int i = 0; i < 3; i++) {
    const StTensor *t = data_st_find(&st, names[i]);
    double got = t ? ((const float *)t->data)[0] : NAN;
    bool ok = fabs(got - want[i]) < 1e-3;
    printf("%s %s = %.6f (expected %g)\n", ok ? "ok  " : "FAIL", names[i], got, want[i]);
    fails += !ok;
  }
  printf("final train loss %.3g after %lld steps\n", res.train_loss, (long long)res.steps);
  data_st_free(&st);
  diag_free(&d);
  arena_free(a);
  unlink(ckpt);
  char metrics[300];
  snprintf(metrics, sizeof metrics, "%s/metrics.csv", out);
  unlink(metrics);
  rmdir(out);
  unlink(csv);
  rmdir(dir);
  printf("test_quadratic: %d passed, %d failed\n", 3 - fails, fails);
  return fails ? 1 : 0;
}
