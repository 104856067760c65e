// train_mlp.c: a complete training loop in plain C for the mlp model
// (models/mlp.nn) compiled ahead of time: Fashion-MNIST read from its IDX
// files, shuffled every epoch, trained at the .nn file's learning rate and
// batch, evaluated on the test set, and saved as a checkpoint that
// `nnc eval` and `nnc predict` read.
//
//   train_mlp DATA_DIR OUT.safetensors [THREADS]
//
// DATA_DIR holds train-images-idx3-ubyte.gz and the other three files
// (Debian's dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist).
// Built by hand:
//
//   nnc compile models/mlp.nn -o mlp          # writes mlp.o and mlp.h
//   cc -O2 -I. train_mlp.c mlp.o $(pkg-config --cflags --libs nncrt) -o train_mlp
//   ./train_mlp /usr/share/datasets/fashion-mnist mlp.safetensors
#include "mlp.h"
#include "nncrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EPOCHS = 3 };   // models/mlp.nn: train { epochs = 3 }

// The IDX pair DIR/PREFIX-images-idx3-ubyte.gz and its labels, checked
// against the model's input size.
static int read_set(const char *dir, const char *prefix, float **x, int32_t **y, int64_t *n) {
  char images[4096], labels[4096], err[2048];
  int64_t dim;
  snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  if (nncrt_read_idx(images, labels, x, y, n, &dim, err, sizeof err)) {
    fprintf(stderr, "train_mlp: %s\n", err);
    return -1;
  }
  if (dim != MLP_INPUT_SIZE) {
    fprintf(stderr, "train_mlp: %s: images of %lld pixels, but mlp takes %d\n", images, (long long)dim,
            MLP_INPUT_SIZE);
    return -1;
  }
  return 0;
}

// splitmix64: a small, good generator, enough to shuffle with.
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fisher-Yates: every order of the n indices equally likely (the modulo's
// bias is negligible for n far below 2^64).
static void shuffle(int64_t *order, int64_t n, uint64_t *state) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(next_random(state) % (uint64_t)(i + 1));
    int64_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

// The class with the largest output (mlp's outputs are logits).
static int argmax(const float *out) {
  int best = 0;
  for (int c = 1; c < MLP_NUM_CLASSES; c++)
    if (out[c] > out[best])
      best = c;
  return best;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: train_mlp DATA_DIR OUT.safetensors [THREADS]\n");
    return 2;
  }
  // Everything below is freed at done, whatever fails.
  int status = 1;
  float *train_x = NULL, *test_x = NULL, *x = NULL;
  int32_t *train_y = NULL, *test_y = NULL, *y = NULL;
  int64_t train_n, test_n, *order = NULL;
  mlp_context *ctx = NULL;
  if (read_set(argv[1], "train", &train_x, &train_y, &train_n) || read_set(argv[1], "t10k", &test_x, &test_y, &test_n))
    goto done;

  char err[2048];
  if (!(ctx = mlp_create(argc > 3 ? atoi(argv[3]) : 0, err, sizeof err))) {
    fprintf(stderr, "train_mlp: %s\n", err);
    goto done;
  }
  mlp_init(ctx, MLP_SEED);

  // A batch is gathered from the shuffled order into x and y.
  order = malloc(sizeof(int64_t) * train_n);
  x = malloc(sizeof(float) * MLP_MAX_BATCH * MLP_INPUT_SIZE);
  y = malloc(sizeof(int32_t) * MLP_MAX_BATCH);
  if (!order || !x || !y) {
    fprintf(stderr, "train_mlp: out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < train_n; i++)
    order[i] = i;
  uint64_t rng = MLP_SEED;
  for (int epoch = 1; epoch <= EPOCHS; epoch++) {
    shuffle(order, train_n, &rng);
    double sum = 0;
    for (int64_t at = 0; at < train_n; at += MLP_MAX_BATCH) {
      int64_t B = train_n - at < MLP_MAX_BATCH ? train_n - at : MLP_MAX_BATCH;   // the last batch may be short
      for (int64_t b = 0; b < B; b++) {
        memcpy(x + b * MLP_INPUT_SIZE, train_x + order[at + b] * MLP_INPUT_SIZE, sizeof(float) * MLP_INPUT_SIZE);
        y[b] = train_y[order[at + b]];
      }
      double loss = mlp_train_step(ctx, B, x, y, MLP_LR);
      if (isnan(loss)) {   // the step failed or diverged, and changed nothing
        fprintf(stderr, "train_mlp: epoch %d, sample %lld: %s\n", epoch, (long long)at, mlp_error(ctx));
        goto done;
      }
      sum += loss * B;
    }
    printf("epoch %d/%d: train loss %.4f\n", epoch, EPOCHS, sum / train_n);
  }

  // The test set in batches, in inference mode; a sample is right when its
  // largest output is its label's.
  int64_t right = 0;
  float out[MLP_MAX_BATCH * MLP_OUTPUT_SIZE];
  for (int64_t at = 0; at < test_n; at += MLP_MAX_BATCH) {
    int64_t B = test_n - at < MLP_MAX_BATCH ? test_n - at : MLP_MAX_BATCH;
    if (mlp_forward(ctx, B, test_x + at * MLP_INPUT_SIZE, out)) {
      fprintf(stderr, "train_mlp: %s\n", mlp_error(ctx));
      goto done;
    }
    for (int64_t b = 0; b < B; b++)
      right += argmax(out + b * MLP_OUTPUT_SIZE) == test_y[at + b];
  }
  printf("test accuracy %.4f (%lld of %lld)\n", (double)right / test_n, (long long)right, (long long)test_n);

  if (mlp_save(ctx, argv[2], err, sizeof err)) {
    fprintf(stderr, "train_mlp: %s\n", err);
    goto done;
  }
  printf("checkpoint %s (%lld steps)\n", argv[2], (long long)mlp_steps(ctx));
  status = 0;

done:
  mlp_free(ctx);
  free(order);
  free(x);
  free(y);
  nncrt_free(train_x);
  nncrt_free(train_y);
  nncrt_free(test_x);
  nncrt_free(test_y);
  return status;
}
