// fuzz_frontend.c: feeds thousands of truncated and mutated versions of the
// models to the parser, the lowering and the shape checker, and checks that
// each ends in a result or in diagnostics: never a crash, a hang, a leak
// (under ASan) or a graph that fails the verifier. Every graph that lowers
// is also printed, read back and printed again, which must give the same
// text.
//
//   fuzz_frontend [-n MUTATIONS] [-s SEED] FILE.nn...
//
// Before each run the input is written to fuzz-last-input.nn, so a crash
// leaves the input that caused it behind.
#include "frontend.h"
#include "passes.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *devnull;
static int last_fd = -1;   // fuzz-last-input.nn, rewritten before each run
static long runs, lowered, roundtrips;

// Fragments that make mutations likely to reach deep into the grammar.
static const char *const tokens[] = {
    "->", "(", ")", "[", "]", "{", "}", ",", "=", ":", "@", "+", "-", "*", "/", "\n", ";", "#",
    "model", "block", "input", "target", "param", "loss", "optimizer", "train", "schedule", "class",
    "true", "false", "x", "linear(10)", "conv2d(8, 3)", "relu", "flatten", "maxpool(2)", "batchnorm",
    "1e309", "0", "-1", "2147483648", "0.5", "f32[", "f32[]", "class(10)", "1e-3", "\t", "\r\n",
    "basic(64)", "reshape(-1)", "x -> x", "((((", "))))", "\xff", "\x01", "cross_entropy", "mse",
    "i32[", "gelu", "leaky_relu(slope = 0.2)", "silu", "clamp(min = 0)", "sum(1, keepdim = true)",
    "mean", "max(axis = -1)", "transpose", "permute(0, 2, 1)", "[:, 0]", "[..., 1:]", "[::2]", "...",
    "a, b = ", "split(2, axis = 1)", "concat(x, x, axis = 1)", "@ transpose(x)", "softmax(axis = 1)",
    "layernorm", "embedding(10, 4)", "groups = 2", "(3, 5)", "conv_transpose2d(4, 3, stride = 2)",
    "upsample", "lstm(8)", "gru(8, sequence = true)", "gaussian_noise(0.3)", "0.5 * mse(x, y) + ",
    "hflip = true", "rotate = 15", "noise = 0.1",
};

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "fuzz_frontend: an input took more than 10 s (a hang); see fuzz-last-input.nn\n";
  if (write(2, msg, sizeof msg - 1) < 0) {}
  _exit(1);
}

// Prints g, parses the text back, prints again: the two texts must match.
static int check_roundtrip(const IrGraph *g) {
  char *t1 = NULL, *t2 = NULL;
  size_t n1 = 0, n2 = 0;
  FILE *f = open_memstream(&t1, &n1);
  ir_print(f, g);
  fclose(f);
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  SrcFile file = {"<printed ir>", t1, n1};
  IrGraph *back = ir_parse(&file, a, &d);
  int bad = 0;
  if (!back) {
    bad = 1;
  } else {
    f = open_memstream(&t2, &n2);
    ir_print(f, back);
    fclose(f);
    bad = n1 != n2 || memcmp(t1, t2, n1) != 0;
  }
  if (bad)
    fprintf(stderr, "fuzz_frontend: printed IR does not read back identically:\n%s\n", t1);
  diag_free(&d);
  arena_free(a);
  free(t1);
  free(t2);
  return bad;
}

static int run_one(const char *text, size_t len) {
  if (last_fd >= 0 && (pwrite(last_fd, text, len, 0) != (ssize_t)len || ftruncate(last_fd, len) != 0))
    perror("fuzz_frontend: fuzz-last-input.nn");
  runs++;
  alarm(10);
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, devnull);
  d.max_errors = 0;
  char *copy = arena_strndup(a, text, len);
  SrcFile file = {"fuzz.nn", copy, len};
  Program *p = fe_parse(&file, a, &d);
  int bad = 0;
  if (p && d.nerrors == 0) {
    Model *m = pass_lower(p, a, &d);
    if (m) {
      lowered++;
      Diag vd;
      diag_init(&vd, stderr);
      if (!ir_verify(m->g, &vd)) {
        fprintf(stderr, "fuzz_frontend: a lowered graph fails the verifier\n");
        bad = 1;
      }
      diag_free(&vd);
      roundtrips++;
      bad |= check_roundtrip(m->g);
      fe_print_ast(devnull, p);
      ir_print_dot(devnull, m->g);
    }
  }
  diag_free(&d);
  arena_free(a);
  alarm(0);
  return bad;
}

// One random edit of buf (in place, within cap): delete, duplicate or
// overwrite a span, or insert a token.
static size_t mutate(Rng *r, char *buf, size_t len, size_t cap) {
  size_t pos = len ? rng_below(r, (uint32_t)len) : 0;
  size_t span = 1 + rng_below(r, 16);
  if (pos + span > len)
    span = len - pos;
  switch (rng_below(r, 5)) {
  case 0:   // delete
    memmove(buf + pos, buf + pos + span, len - pos - span);
    return len - span;
  case 1:   // duplicate
    if (len + span >= cap)
      return len;
    memmove(buf + pos + span, buf + pos, len - pos);
    return len + span;
  case 2:   // random bytes
    for (size_t i = 0; i < span; i++)
      buf[pos + i] = (char)rng_below(r, 256);
    return len;
  case 3:   // swap two bytes
    if (len > 1) {
      size_t q = rng_below(r, (uint32_t)len);
      char t = buf[pos];
      buf[pos] = buf[q];
      buf[q] = t;
    }
    return len;
  default: {   // insert a token
    const char *t = tokens[rng_below(r, countof(tokens))];
    size_t k = strlen(t);
    if (len + k >= cap)
      return len;
    memmove(buf + pos + k, buf + pos, len - pos);
    memcpy(buf + pos, t, k);
    return len + k;
  }
  }
}

int main(int argc, char **argv) {
  long mutations = 2000;
  uint64_t seed = 1;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i += 2) {
    if (i + 1 >= argc) {
      fprintf(stderr, "usage: fuzz_frontend [-n MUTATIONS] [-s SEED] FILE.nn...\n");
      return 2;
    }
    if (!strcmp(argv[i], "-n"))
      mutations = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "-s"))
      seed = strtoull(argv[i + 1], NULL, 10);
  }
  if (i >= argc) {
    fprintf(stderr, "usage: fuzz_frontend [-n MUTATIONS] [-s SEED] FILE.nn...\n");
    return 2;
  }
  devnull = fopen("/dev/null", "w");
  last_fd = open("fuzz-last-input.nn", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  signal(SIGALRM, on_alarm);
  int failures = 0, nfiles = argc - i;
  Rng r;
  rng_seed(&r, seed, 7);
  for (; i < argc; i++) {
    size_t len;
    char *text = read_file(argv[i], &len);
    if (!text) {
      fprintf(stderr, "fuzz_frontend: cannot read %s\n", argv[i]);
      return 1;
    }
    failures += run_one(text, len);
    // Every truncation: the parser must handle input ending anywhere.
    for (size_t k = 0; k < len; k++)
      failures += run_one(text, k);
    // Random edits, one to four at a time.
    size_t cap = 2 * len + 256;
    char *buf = xmalloc(cap);
    for (long m = 0; m < mutations / nfiles; m++) {
      memcpy(buf, text, len);
      size_t n = len;
      for (uint32_t e = 1 + rng_below(&r, 4); e > 0; e--)
        n = mutate(&r, buf, n, cap);
      failures += run_one(buf, n);
    }
    free(buf);
    free(text);
  }
  fclose(devnull);
  close(last_fd);
  printf("fuzz_frontend: %ld inputs, %ld lowered to a graph, %ld round trips, %d failures\n", runs,
         lowered, roundtrips, failures);
  if (!failures)
    unlink("fuzz-last-input.nn");
  return failures ? 1 : 0;
}
