// two_models.c: two models compiled ahead of time in one program, mlp
// (models/mlp.nn) and cnn (models/cnn.nn). Each compiled model's functions
// and types carry its own prefix (mlp_, cnn_; `nnc compile --name` picks
// another), so any number of them link together with one runtime library.
// Both are trained on the same first training samples, one pass, and then
// classify the same test images; the program prints each one's accuracy
// and how often they agree.
//
//   two_models DATA_DIR [TRAIN_SAMPLES [TEST_SAMPLES]]
//
// Built by hand:
//
//   nnc compile models/mlp.nn -o mlp          # mlp.o, mlp.h
//   nnc compile models/cnn.nn -o cnn          # cnn.o, cnn.h
//   cc -O2 -I. two_models.c mlp.o cnn.o $(pkg-config --cflags --libs nncrt) -o two_models
//   ./two_models /usr/share/datasets/fashion-mnist
#include "cnn.h"
#include "mlp.h"
#include "nncrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

_Static_assert(MLP_INPUT_SIZE == CNN_INPUT_SIZE && MLP_NUM_CLASSES == CNN_NUM_CLASSES,
               "both models take the same images and give the same classes");
enum { INPUT = MLP_INPUT_SIZE, CLASSES = MLP_NUM_CLASSES };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int argmax(const float *out) {   // logits (mlp) or log-probabilities (cnn) alike
  int best = 0;
  for (int c = 1; c < CLASSES; c++)
    if (out[c] > out[best])
      best = c;
  return best;
}

static int read_set(const char *dir, const char *prefix, float **x, int32_t **y, int64_t *n) {
  char images[4096], labels[4096], err[2048];
  int64_t dim;
  snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  if (nncrt_read_idx(images, labels, x, y, n, &dim, err, sizeof err)) {
    fprintf(stderr, "two_models: %s\n", err);
    return -1;
  }
  if (dim != INPUT) {
    fprintf(stderr, "two_models: %s: images of %lld pixels, but the models take %d\n", images, (long long)dim, INPUT);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int64_t want_train = argc > 2 ? atoll(argv[2]) : 4000, want_test = argc > 3 ? atoll(argv[3]) : 2000;
  if (argc < 2 || argc > 4 || want_train < 1 || want_test < 1) {
    fprintf(stderr, "usage: two_models DATA_DIR [TRAIN_SAMPLES [TEST_SAMPLES]] (counts from 1 up)\n");
    return 2;
  }
  // Everything below is freed at done, whatever fails.
  int status = 1;
  float *train_x = NULL, *test_x = NULL;
  int32_t *train_y = NULL, *test_y = NULL;
  int64_t train_n, test_n;
  mlp_context *mlp = NULL;
  cnn_context *cnn = NULL;
  if (read_set(argv[1], "train", &train_x, &train_y, &train_n) || read_set(argv[1], "t10k", &test_x, &test_y, &test_n))
    goto done;
  train_n = min64(train_n, want_train);
  test_n = min64(test_n, want_test);

  char err[2048];
  if (!(mlp = mlp_create(0, err, sizeof err)) || !(cnn = cnn_create(0, err, sizeof err))) {
    fprintf(stderr, "two_models: %s\n", err);
    goto done;
  }
  mlp_init(mlp, MLP_SEED);
  cnn_init(cnn, CNN_SEED);

  // One pass over the training samples in file order, each model at its
  // own batch and learning rate. A NaN loss: the step failed and changed
  // nothing (the model's error says why).
  double mlp_loss = 0, cnn_loss = 0;
  for (int64_t at = 0; at < train_n; at += MLP_MAX_BATCH) {
    int64_t B = min64(train_n - at, MLP_MAX_BATCH);
    double loss = mlp_train_step(mlp, B, train_x + at * INPUT, train_y + at, MLP_LR);
    if (isnan(loss)) {
      fprintf(stderr, "two_models: %s\n", mlp_error(mlp));
      goto done;
    }
    mlp_loss += loss * B;
  }
  for (int64_t at = 0; at < train_n; at += CNN_MAX_BATCH) {
    int64_t B = min64(train_n - at, CNN_MAX_BATCH);
    double loss = cnn_train_step(cnn, B, train_x + at * INPUT, train_y + at, CNN_LR);
    if (isnan(loss)) {
      fprintf(stderr, "two_models: %s\n", cnn_error(cnn));
      goto done;
    }
    cnn_loss += loss * B;
  }
  printf("trained on %lld samples: mlp loss %.4f, cnn loss %.4f\n", (long long)train_n, mlp_loss / train_n,
         cnn_loss / train_n);

  // Both classify the same test images, a batch at a time.
  enum { BATCH = MLP_MAX_BATCH < CNN_MAX_BATCH ? MLP_MAX_BATCH : CNN_MAX_BATCH };
  float mlp_out[BATCH * CLASSES], cnn_out[BATCH * CLASSES];
  int64_t mlp_right = 0, cnn_right = 0, agree = 0;
  for (int64_t at = 0; at < test_n; at += BATCH) {
    int64_t B = min64(test_n - at, BATCH);
    if (mlp_forward(mlp, B, test_x + at * INPUT, mlp_out)) {
      fprintf(stderr, "two_models: %s\n", mlp_error(mlp));
      goto done;
    }
    if (cnn_forward(cnn, B, test_x + at * INPUT, cnn_out)) {
      fprintf(stderr, "two_models: %s\n", cnn_error(cnn));
      goto done;
    }
    for (int64_t b = 0; b < B; b++) {
      int m = argmax(mlp_out + b * CLASSES), c = argmax(cnn_out + b * CLASSES);
      mlp_right += m == test_y[at + b];
      cnn_right += c == test_y[at + b];
      agree += m == c;
    }
  }
  printf("on %lld test images: mlp accuracy %.4f, cnn accuracy %.4f, they agree on %.4f\n", (long long)test_n,
         (double)mlp_right / test_n, (double)cnn_right / test_n, (double)agree / test_n);
  status = 0;

done:
  mlp_free(mlp);
  cnn_free(cnn);
  nncrt_free(train_x);
  nncrt_free(train_y);
  nncrt_free(test_x);
  nncrt_free(test_y);
  return status;
}
