// api_errors.c: the ways a program can misuse a compiled model's API, each
// answered with -1 or NaN and a message, never a crash: a context of
// another model, batches out of range, NULL pointers, a label outside the
// classes, a bad learning rate, an entry point compiled out, checkpoints
// that are not this model's, paths that cannot be read or written. Links
// four artifacts: `a` (mlp, --entry forward --batch 4), `b` (logreg),
// `c` (quadratic: a real-valued target) and `d` (tests/cpu/embedding: an
// integer input, whose indexes must lie inside the table).
#include "a.h"
#include "b.h"
#include "c.h"
#include "d.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int failures;

static void expect(const char *what, int failed, const char *msg, const char *needle) {
  if (!failed || !msg || !strstr(msg, needle)) {
    printf("FAIL %s: %s (wanted a failure saying '%s')\n", what, msg ? msg : "(no message)", needle);
    failures++;
  } else {
    printf("ok   %s: %.*s\n", what, (int)strcspn(msg, "\n"), msg);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: api_errors B_CHECKPOINT TMPDIR\n");
    return 2;
  }
  char err[2048] = "", path[1024];
  static float x[8 * A_INPUT_SIZE], out[8 * A_OUTPUT_SIZE];
  static int32_t y[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  a_context *a = a_create(1, err, sizeof err);
  b_context *b = b_create(2, err, sizeof err);
  if (!a || !b) {
    printf("FAIL create: %s\n", err);
    return 1;
  }
  expect("threads -1", b_create(-1, err, sizeof err) == NULL, err, "b_create: threads is -1, not from 1 to 1024");
  setenv("NNC_POOL_JITTER", "abc", 1);   // a pool that cannot start: NULL and why, the program goes on
  expect("a pool that cannot start", b_create(2, err, sizeof err) == NULL, err, "NNC_POOL_JITTER is 'abc'");
  unsetenv("NNC_POOL_JITTER");
  expect("a context of another model", a_forward((a_context *)b, 1, x, out) == -1, a_error((a_context *)b),
         "a context made by b_create (model 'logreg') was passed to a function of a_* (model 'mlp')");
  expect("batch 0", a_forward(a, 0, x, out) == -1, a_error(a), "a_forward: batch 0 is outside [1, 4]");
  expect("batch 5 > max", a_forward(a, 5, x, out) == -1, a_error(a), "compile with a larger --batch");
  expect("x NULL", a_forward(a, 1, NULL, out) == -1, a_error(a), "the input pointer is NULL");
  expect("out NULL", a_forward(a, 1, x, NULL) == -1, a_error(a), "the output pointer is NULL");
  expect("train_step compiled out", isnan(a_train_step(a, 1, x, y, 0.1)), a_error(a),
         "compiled without its train entry point");
  expect("NULL context", a_forward(NULL, 1, x, out) == -1, a_error(NULL), "no context");
  int32_t bad[2] = {3, 10};
  expect("label 10 of 10 classes", isnan(b_train_step(b, 2, x, bad, 0.1)), b_error(b),
         "sample 1 has label 10, outside [0, 10)");
  expect("lr NaN", isnan(b_train_step(b, 2, x, y, NAN)), b_error(b), "the learning rate is nan");
  expect("y NULL", isnan(b_eval(b, 2, x, NULL, NULL)), b_error(b), "the target pointer is NULL");
  expect("b's checkpoint into a", a_load(a, argv[1], err, sizeof err) == -1, err, "from another model");
  snprintf(path, sizeof path, "%s/none.safetensors", argv[2]);
  expect("a missing checkpoint", b_load(b, path, err, sizeof err) == -1, err, "none.safetensors");
  expect("a directory as checkpoint", b_load(b, argv[2], err, sizeof err) == -1, err, "is a directory");
  snprintf(path, sizeof path, "%s/no/such/dir/w.safetensors", argv[2]);
  expect("save where there is no directory", b_save(b, path, err, sizeof err) == -1, err, "w.safetensors");
  expect("tensor -1", a_read_tensor(a, -1, out) == -1 && a_tensor_name(-1) == NULL, "index out of range", "range");
  expect("output before any run", a_output(a, out) == -1, a_error(a), "nothing has run yet");
  static float w[C_STATE_BYTES / 4 + 1];
  w[0] = NAN;
  c_context *c = c_create(1, err, sizeof err);
  if (!c) {
    printf("FAIL create c: %s\n", err);
    return 1;
  }
  expect("a NaN weight", c_write_tensor(c, 0, w) == -1, c_error(c), "is nan; the tensor was left as it was");
  float cx[4] = {1, 2, 3, 4}, cy[4] = {1, 2, NAN, 4};
  expect("a NaN real target", isnan(c_eval(c, 4, cx, cy, NULL)), c_error(c), "sample 2, value 0 of its target is nan");
  snprintf(path, sizeof path, "%s/fifo", argv[2]);
  mkfifo(path, 0600);
  expect("save over a FIFO", c_save(c, path, err, sizeof err) == -1, err, "is a pipe, a socket or a device");
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    printf("FAIL the FIFO was replaced\n");
    failures++;
  }
  c_free(c);
  d_context *dc = d_create(1, err, sizeof err);
  if (dc) {
    static float dx[2 * D_INPUT_SIZE], dout[2 * D_OUTPUT_SIZE];
    int32_t tok = 3, far = D_INPUT_TOKENS_VOCAB;
    for (int i = 0; i < 2 * D_INPUT_SIZE; i++)
      memcpy(&dx[i], &tok, sizeof tok);   // (the float input's slots too: a small finite number)
    d_init(dc, 1);
    if (d_forward(dc, 2, dx, dout) != 0) {
      printf("FAIL indexes inside the table: %s\n", d_error(dc));
      failures++;
    }
    memcpy(&dx[D_INPUT_SIZE + 4], &far, sizeof far);
    expect("an index outside the table", d_forward(dc, 2, dx, dout) == -1, d_error(dc),
           "d_forward: sample 1, value 4 of input 'tokens' is the index 11, outside [0, 11)");
    d_free(dc);
  } else {
    printf("FAIL d_create: %s\n", err);
    failures++;
  }
  // Still usable after all that.
  if (b_load(b, argv[1], err, sizeof err) || isnan(b_train_step(b, 8, x, y, 0.1)) || a_forward(a, 4, x, out)) {
    printf("FAIL the contexts after the errors: %s %s\n", err, b_error(b));
    failures++;
  } else {
    printf("ok   both contexts still work\n");
  }
  a_free(a);
  b_free(b);
  b_free(NULL);
  return failures != 0;
}
