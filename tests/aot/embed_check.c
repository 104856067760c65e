// embed_check.c: a model compiled with `--weights CKPT --embed --name
// model`: a new context starts from the checkpoint's weights (every tensor
// but optimizer state equal to the checkpoint's, loaded into a second
// context; optimizer state starts at zero), and its forward output on a few samples equals the loaded
// context's.
//
//   embed_check CKPT
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  char err[2048];
  if (argc != 2) {
    fprintf(stderr, "usage: embed_check CKPT\n");
    return 2;
  }
  model_context *a = model_create(1, err, sizeof err), *b = a ? model_create(1, err, sizeof err) : NULL;
  if (!a || !b || model_load(b, argv[1], err, sizeof err)) {
    fprintf(stderr, "embed_check: %s\n", err);
    return 1;
  }
  int status = 0;
  for (int i = 0; i < model_num_tensors(); i++) {
    const char *name = model_tensor_name(i);
    int64_t n = model_tensor_numel(i);
    if (strstr(name, ".momentum_buffer") || strstr(name, ".exp_avg"))   // optimizer state starts at zero
      continue;
    float *p = malloc(sizeof(float) * n), *q = malloc(sizeof(float) * n);
    model_read_tensor(a, i, p);
    model_read_tensor(b, i, q);
    if (memcmp(p, q, sizeof(float) * n)) {
      printf("%s: the embedded weights differ from the checkpoint's\n", name);
      status = 1;
    }
    free(p);
    free(q);
  }
  enum { B = 3 };
  static float x[B * MODEL_INPUT_SIZE], o1[B * MODEL_OUTPUT_SIZE], o2[B * MODEL_OUTPUT_SIZE];
  for (int i = 0; i < B * MODEL_INPUT_SIZE; i++)
    x[i] = (float)((i * 7919) % 256) / 255.0f;
  if (model_forward(a, B, x, o1) || model_forward(b, B, x, o2) || memcmp(o1, o2, sizeof o1)) {
    printf("forward: the embedded weights give another output than the loaded ones\n");
    status = 1;
  }
  if (!status)
    printf("embedded weights: %d tensors as the checkpoint's, forward the same\n", model_num_tensors());
  model_free(a);
  model_free(b);
  return status;
}
