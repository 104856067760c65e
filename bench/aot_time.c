// aot_time.c: model_forward of a model compiled ahead of time, timed in a
// loop as `nnc bench --entry forward` times the JIT's step: random inputs,
// warm-up runs, then REPS timed calls; prints the median and the spread in
// milliseconds a call.
//
//   aot_time THREADS BATCH REPS
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: aot_time THREADS BATCH REPS\n");
    return 2;
  }
  int threads = atoi(argv[1]), reps = atoi(argv[3]);
  int64_t B = atoll(argv[2]);
  if (B < 1 || B > MODEL_MAX_BATCH || reps < 1) {
    fprintf(stderr, "aot_time: BATCH lies in [1, %d] and REPS is at least 1\n", MODEL_MAX_BATCH);
    return 2;
  }
  char err[2048];
  model_context *ctx = model_create(threads, err, sizeof err);
  if (!ctx) {
    fprintf(stderr, "aot_time: %s\n", err);
    return 1;
  }
  float *x = malloc(sizeof(float) * (size_t)(B * MODEL_INPUT_SIZE));
  float *out = malloc(sizeof(float) * (size_t)(B * MODEL_OUTPUT_SIZE));
  double *ms = malloc(sizeof(double) * (size_t)reps);
  srand(1);
  for (int64_t i = 0; i < B * MODEL_INPUT_SIZE; i++)
    x[i] = (float)rand() / RAND_MAX;
  for (int r = 0; r < 3; r++)   // warm-up: caches, pages, the thread pool
    model_forward(ctx, B, x, out);
  for (int r = 0; r < reps; r++) {
    double t0 = now_ms();
    if (model_forward(ctx, B, x, out)) {
      fprintf(stderr, "aot_time: %s\n", model_error(ctx));
      return 1;
    }
    ms[r] = now_ms() - t0;
  }
  qsort(ms, (size_t)reps, sizeof *ms, by_value);
  printf("median_ms %.6f min_ms %.6f max_ms %.6f\n", ms[reps / 2], ms[0], ms[reps - 1]);
  model_free(ctx);
  free(x);
  free(out);
  free(ms);
  return 0;
}
