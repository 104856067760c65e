// targets.c: a compiled model of several targets (tests/heads/detect: a
// class label and a box) through its header alone: each sample's row of
// targets written with the PREFIX_TARGET_NAME_OFFSET macros and the union
// type, twenty training steps that lower the loss, and a label outside its
// target's classes or a NaN in the box refused with a message naming the
// target.
#include "det.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define B 8

static int failures;

static void check(const char *what, int ok, const char *msg) {
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, msg ? ": " : "", msg ? msg : "");
  failures += !ok;
}

int main(void) {
  char err[1024] = "";
  static float x[B * DET_INPUT_SIZE];
  static det_target y[B * DET_TARGET_SIZE];
  det_context *c = det_create(1, err, sizeof err);
  if (!c) {
    printf("FAIL create: %s\n", err);
    return 1;
  }
  for (int b = 0; b < B; b++) {   // the label is the largest of the first three inputs; the box, four of them
    for (int j = 0; j < DET_INPUT_SIZE; j++)
      x[b * DET_INPUT_SIZE + j] = (float)((b * 7 + j * 3) % 11) / 11.0f;
    det_target *row = y + b * DET_TARGET_SIZE;
    int k = 0;
    for (int j = 1; j < 3; j++)
      k = x[b * DET_INPUT_SIZE + j] > x[b * DET_INPUT_SIZE + k] ? j : k;
    row[DET_TARGET_LABEL_OFFSET].label = k;
    for (int j = 0; j < DET_TARGET_BOX_SIZE; j++)
      row[DET_TARGET_BOX_OFFSET + j].value = x[b * DET_INPUT_SIZE + 4 + j];
  }
  check("a row holds both targets", DET_TARGET_SIZE == DET_TARGET_LABEL_SIZE + DET_TARGET_BOX_SIZE &&
        DET_TARGET_LABEL_NUM_CLASSES == 3 && sizeof(det_target) == 4, NULL);
  double first = det_eval(c, B, x, y, NULL), last = first;
  for (int s = 0; s < 20; s++)
    last = det_train_step(c, B, x, y, 0.05);
  last = det_eval(c, B, x, y, NULL);
  char msg[128];
  snprintf(msg, sizeof msg, "%.4f -> %.4f", first, last);
  check("twenty steps lower the loss", isfinite(first) && last < first, msg);
  y[3 * DET_TARGET_SIZE + DET_TARGET_LABEL_OFFSET].label = 3;
  const char *e = isnan(det_train_step(c, B, x, y, 0.05)) ? det_error(c) : "no error";
  check("a label outside its classes", strstr(e, "sample 3 has label 3 of target 'label', outside [0, 3)") != NULL, e);
  y[3 * DET_TARGET_SIZE + DET_TARGET_LABEL_OFFSET].label = 2;
  y[5 * DET_TARGET_SIZE + DET_TARGET_BOX_OFFSET + 2].value = NAN;
  e = isnan(det_eval(c, B, x, y, NULL)) ? det_error(c) : "no error";
  check("a NaN in the box", strstr(e, "sample 5, value 2 of target 'box' is nan") != NULL, e);
  det_free(c);
  return failures != 0;
}
