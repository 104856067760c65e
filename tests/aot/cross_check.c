// cross_check.c: a compiled model (--name model) run the same way on any
// machine: weights from CKPT, a forward pass over a fixed batch, whose
// outputs it prints one per line (%.9g), then training steps on that batch,
// which must lower the loss. tests/cross/aot.sh builds it for the host and
// for aarch64 (run under qemu) and compares the two outputs.
//
//   cross_check CKPT
#include "model.h"

#include <math.h>
#include <stdio.h>

enum { B = 8 };

int main(int argc, char **argv) {
  char err[2048];
  if (argc != 2) {
    fprintf(stderr, "usage: cross_check CKPT\n");
    return 2;
  }
  model_context *ctx = model_create(2, err, sizeof err);
  if (!ctx || model_load(ctx, argv[1], err, sizeof err)) {
    fprintf(stderr, "cross_check: %s\n", err);
    return 1;
  }
  static float x[B * MODEL_INPUT_SIZE], out[B * MODEL_OUTPUT_SIZE];
  static model_target y[B * MODEL_TARGET_SIZE];
  for (int i = 0; i < B * MODEL_INPUT_SIZE; i++)   // a fixed batch: the same on every machine
    x[i] = (float)((i * 2654435761u) >> 24) / 255.0f;
  for (int i = 0; i < B * MODEL_TARGET_SIZE; i++)
    y[i] = (model_target)(i % MODEL_OUTPUT_SIZE);
  if (model_forward(ctx, B, x, out)) {
    fprintf(stderr, "cross_check: %s\n", model_error(ctx));
    return 1;
  }
  for (int i = 0; i < B * MODEL_OUTPUT_SIZE; i++)
    printf("%.9g\n", out[i]);
  double first = model_eval(ctx, B, x, y, NULL), loss = first;
  for (int s = 0; s < 5 && isfinite(loss); s++)
    loss = model_train_step(ctx, B, x, y, MODEL_LR);
  double last = model_eval(ctx, B, x, y, NULL);
  fprintf(stderr, "loss %.6f -> %.6f after 5 steps\n", first, last);
  model_free(ctx);
  return isfinite(last) && last < first ? 0 : 1;
}
