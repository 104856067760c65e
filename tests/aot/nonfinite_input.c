// nonfinite_input.c: a NaN or infinite input is refused by every entry
// point of a compiled model (mlp, compiled as `model`), with the sample and
// value named, and a refused training step changes nothing. Before the
// check, a NaN input trained to a finite loss (relu takes NaN to 0), counted
// the step and left NaN in linear_1.weight, which mlp_save then wrote and
// nnc eval refused to load. (The messages name the model's functions by
// the model's name, mlp_, not by the --name prefix: hence the suffixes.)
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;

static void expect(int cond, const char *what, const char *detail) {
  printf("%s %s%s%s\n", cond ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
  fails += !cond;
}

int main(void) {
  char err[2048];
  model_context *ctx = model_create(1, err, sizeof err);
  if (!ctx) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  enum { B = 2 };
  static float x[B * MODEL_INPUT_SIZE], out[B * MODEL_OUTPUT_SIZE];
  model_target y[B] = {3, 7};
  for (int i = 0; i < B * MODEL_INPUT_SIZE; i++)
    x[i] = (float)(i % 17) / 16;
  int64_t n = model_tensor_numel(0);
  float *before = malloc(sizeof(float) * n), *after = malloc(sizeof(float) * n);
  model_read_tensor(ctx, 0, before);

  x[MODEL_INPUT_SIZE + 3] = NAN;   // sample 1, value 3
  double loss = model_train_step(ctx, B, x, y, MODEL_LR);
  expect(isnan(loss) && strstr(model_error(ctx), "_train_step: sample 1, value 3 of its input is nan"),
         "train_step refuses a NaN input", model_error(ctx));
  model_read_tensor(ctx, 0, after);
  expect(model_steps(ctx) == 0 && memcmp(before, after, sizeof(float) * n) == 0,
         "the refused step changed nothing", NULL);

  x[MODEL_INPUT_SIZE + 3] = 0;
  x[5] = -INFINITY;
  expect(model_forward(ctx, B, x, out) == -1 && strstr(model_error(ctx), "sample 0, value 5 of its input is -inf"),
         "forward refuses an infinite input", model_error(ctx));
  expect(isnan(model_eval(ctx, B, x, y, out)) && strstr(model_error(ctx), "_eval: sample 0, value 5"),
         "eval refuses it", model_error(ctx));

  x[5] = 0;
  loss = model_train_step(ctx, B, x, y, MODEL_LR);
  model_read_tensor(ctx, 0, after);
  int finite = 1;
  for (int64_t i = 0; i < n; i++)
    finite &= isfinite(after[i]) != 0;
  expect(isfinite(loss) && model_steps(ctx) == 1 && finite, "finite inputs train as before", NULL);
  free(before);
  free(after);
  model_free(ctx);
  return fails != 0;
}
