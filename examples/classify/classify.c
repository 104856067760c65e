// classify.c: Fashion-MNIST classes of PNG or PGM images, by the cnn model
// (models/cnn.nn) compiled ahead of time and weights from a checkpoint that
// `nnc train` wrote. Shows loading a checkpoint, reading images as
// `nnc predict` reads them, and turning the model's output into
// probabilities.
//
//   classify CHECKPOINT FILE.png...
//
// prints, for each file, its three likeliest classes with their
// probabilities; a file that cannot be read is reported and skipped, and
// the exit status is then 1. Built by hand:
//
//   nnc train models/cnn.nn --out run        # or any checkpoint of cnn
//   nnc compile models/cnn.nn -o cnn         # writes cnn.o and cnn.h
//   cc -O2 -I. classify.c cnn.o $(pkg-config --cflags --libs nncrt) -o classify
//   ./classify run/checkpoint.safetensors shirt.png
#include "cnn.h"
#include "nncrt.h"

#include <math.h>
#include <stdio.h>

// cnn's input is image: f32[1, 28, 28], one gray 28 x 28 picture.
enum { WIDTH = 28, HEIGHT = 28, TOP = 3 };
_Static_assert(WIDTH * HEIGHT == CNN_INPUT_SIZE, "cnn takes one 28 x 28 image");
_Static_assert(CNN_OUTPUT_SIZE == CNN_NUM_CLASSES, "cnn gives one value per class");

static const char *class_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};
_Static_assert(CNN_NUM_CLASSES == sizeof class_names / sizeof class_names[0], "one name per class");

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: classify CHECKPOINT FILE.png...\n");
    return 2;
  }
  char err[2048];
  cnn_context *ctx = cnn_create(0, err, sizeof err);   // 0: one thread per core
  if (!ctx || cnn_load(ctx, argv[1], err, sizeof err)) {
    fprintf(stderr, "classify: %s\n", err);
    cnn_free(ctx);
    return 1;
  }
  int status = 0;
  for (int f = 2; f < argc; f++) {
    float x[CNN_INPUT_SIZE], out[CNN_OUTPUT_SIZE];
    if (nncrt_read_image(argv[f], WIDTH, HEIGHT, x, err, sizeof err)) {
      fprintf(stderr, "classify: %s\n", err);
      status = 1;
      continue;
    }
    if (cnn_forward(ctx, 1, x, out)) {   // a batch of one image
      fprintf(stderr, "classify: %s\n", cnn_error(ctx));
      status = 1;
      break;
    }
    // cnn ends in log_softmax: its outputs are log-probabilities.
    double p[CNN_NUM_CLASSES];
    for (int c = 0; c < CNN_NUM_CLASSES; c++)
      p[c] = exp(out[c]);
    printf("%s:", argv[f]);
    for (int t = 0; t < TOP; t++) {   // the likeliest class not yet printed, and again
      int best = 0;
      for (int c = 1; c < CNN_NUM_CLASSES; c++)
        if (p[c] > p[best])
          best = c;
      printf("  %d %s (%.4f)", best, class_names[best], p[best]);
      p[best] = -1;
    }
    printf("\n");
  }
  cnn_free(ctx);
  return status;
}
