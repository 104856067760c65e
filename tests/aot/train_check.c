// train_check.c: a model compiled with `nnc compile --name model`, trained
// in plain C over the first LIMIT training samples of an IDX directory, in
// file order, one epoch at the model's batch, seed and learning rate, as
// `nnc train --no-shuffle --limit LIMIT --epochs 1` trains it; the
// weights are saved, and, given nnc train's checkpoint, compared with its
// tensors byte for byte.
//
//   train_check DATA_DIR LIMIT THREADS OUT.safetensors [NNC_TRAIN.safetensors]
//
// SEED in the environment replaces the model's seed (as nnc train --seed).
#include "model.h"
#include "nncrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: train_check DATA_DIR LIMIT THREADS OUT.safetensors [REFERENCE.safetensors]\n");
    return 2;
  }
  char err[2048], images[1024], labels[1024];
  snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", argv[1]);
  snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", argv[1]);
  float *x;
  int32_t *y;
  int64_t n, dim, limit = atoll(argv[2]);
  if (nncrt_read_idx(images, labels, &x, &y, &n, &dim, err, sizeof err)) {
    fprintf(stderr, "train_check: %s\n", err);
    return 1;
  }
  if (dim != MODEL_INPUT_SIZE || limit > n) {
    fprintf(stderr, "train_check: the data does not fit the model\n");
    return 1;
  }
  model_context *ctx = model_create(atoi(argv[3]), err, sizeof err);
  if (!ctx) {
    fprintf(stderr, "train_check: %s\n", err);
    return 1;
  }
  const char *seed = getenv("SEED");
  model_init(ctx, seed ? strtoull(seed, NULL, 10) : MODEL_SEED);
  double sum = 0;
  for (int64_t at = 0; at < limit; at += MODEL_MAX_BATCH) {
    int64_t B = limit - at < MODEL_MAX_BATCH ? limit - at : MODEL_MAX_BATCH;
    double loss = model_train_step(ctx, B, x + at * dim, y + at, MODEL_LR);
    if (loss != loss) {
      fprintf(stderr, "train_check: %s\n", model_error(ctx));
      return 1;
    }
    sum += loss * B;
  }
  printf("trained %lld samples in %lld steps: mean loss %.6f\n", (long long)limit, (long long)model_steps(ctx),
         sum / limit);
  if (model_save(ctx, argv[4], err, sizeof err)) {
    fprintf(stderr, "train_check: %s\n", err);
    return 1;
  }
  int status = 0;
  if (argc > 5) {   // nnc train's weights, tensor by tensor
    model_context *ref = model_create(1, err, sizeof err);
    if (!ref || model_load(ref, argv[5], err, sizeof err)) {
      fprintf(stderr, "train_check: %s\n", err);
      return 1;
    }
    for (int i = 0; i < model_num_tensors(); i++) {
      int64_t k = model_tensor_numel(i);
      float *a = malloc(sizeof(float) * k), *b = malloc(sizeof(float) * k);
      model_read_tensor(ctx, i, a);
      model_read_tensor(ref, i, b);
      int64_t diff = 0;
      for (int64_t j = 0; j < k; j++)
        diff += memcmp(&a[j], &b[j], 4) != 0;
      printf("%-40s %9lld values: %s\n", model_tensor_name(i), (long long)k, diff ? "DIFFERENT" : "the same bytes");
      if (diff)
        status = 1;
      free(a);
      free(b);
    }
    if (model_steps(ctx) != model_steps(ref)) {
      printf("steps %lld, nnc train's %lld\n", (long long)model_steps(ctx), (long long)model_steps(ref));
      status = 1;
    }
    model_free(ref);
  }
  model_free(ctx);
  nncrt_free(x);
  nncrt_free(y);
  return status;
}
