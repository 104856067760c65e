// aot_start.c: the start-up of a program that runs a model compiled ahead
// of time: a context on one thread, the weights from a checkpoint (or, given
// "-", those compiled into the object with --embed), one PNG or PGM image,
// one forward pass; prints the most likely class. bench/aot.sh times the
// whole process, start to exit; with --stages it prints to stderr the
// microseconds each step took in main (create, load, read, forward).
//
//   aot_start CKPT|- IMAGE [--stages]
#include "model.h"
#include "nncrt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--stages"))) {
    fprintf(stderr, "usage: aot_start CKPT|- IMAGE [--stages]\n");
    return 2;
  }
  char err[2048];
  double t[5];
  t[0] = now_us();
  model_context *ctx = model_create(1, err, sizeof err);
  t[1] = now_us();
  if (!ctx || (strcmp(argv[1], "-") && model_load(ctx, argv[1], err, sizeof err))) {
    fprintf(stderr, "aot_start: %s\n", err);
    return 1;
  }
  t[2] = now_us();
  static float x[MODEL_INPUT_SIZE], out[MODEL_OUTPUT_SIZE];
  if (MODEL_INPUT_SIZE != 28 * 28 || nncrt_read_image(argv[2], 28, 28, x, err, sizeof err)) {
    fprintf(stderr, "aot_start: %s\n", MODEL_INPUT_SIZE != 28 * 28 ? "the model does not take 28x28 images" : err);
    return 1;
  }
  t[3] = now_us();
  if (model_forward(ctx, 1, x, out)) {
    fprintf(stderr, "aot_start: %s\n", model_error(ctx));
    return 1;
  }
  int best = 0;
  for (int k = 1; k < MODEL_OUTPUT_SIZE; k++)
    if (out[k] > out[best])
      best = k;
  t[4] = now_us();
  printf("%d\n", best);
  if (argc == 4)
    fprintf(stderr, "create %.0f load %.0f read %.0f forward %.0f\n", t[1] - t[0], t[2] - t[1], t[3] - t[2],
            t[4] - t[3]);
  model_free(ctx);
  return 0;
}
