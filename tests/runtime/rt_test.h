// rt_test.h: helpers shared by the runtime tests: checks that count
// failures, a scratch directory made with mkdtemp and removed at the end,
// and checks on the text of error messages.
//
// Each test is a program whose main returns 0 when every check passed, 1
// when one failed (after printing file:line and what differed) and 77 when
// it was skipped (CTest's SKIP_RETURN_CODE).
#ifndef NNC_RT_TEST_H
#define NNC_RT_TEST_H

#define _GNU_SOURCE
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

static int rt_failures;   // checks that failed so far

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n  ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fputc('\n', stderr);                                            \
      rt_failures++;                                                  \
    }                                                                 \
  } while (0)

// Checks that a call failed and that its message holds every string given
// (a NULL ends the list).
#define CHECK_ERR(ok, err, ...) check_err_impl(__FILE__, __LINE__, (ok), (err), __VA_ARGS__, (const char *)NULL)

static inline void check_err_impl(const char *file, int line, bool ok, const char *err, ...) {
  if (ok) {
    fprintf(stderr, "%s:%d: expected a failure, but the call succeeded\n", file, line);
    rt_failures++;
    return;
  }
  va_list ap;
  va_start(ap, err);
  for (const char *s; (s = va_arg(ap, const char *));)
    if (!strstr(err, s)) {
      fprintf(stderr, "%s:%d: the message lacks \"%s\":\n  %s\n", file, line, s, err);
      rt_failures++;
    }
  va_end(ap);
}

static char rt_tmpdir[256];   // the scratch directory

static inline void make_tmpdir(const char *tag) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(rt_tmpdir, sizeof rt_tmpdir, "%s/nnc-%s-XXXXXX", base, tag);
  if (!mkdtemp(rt_tmpdir)) {
    perror(rt_tmpdir);
    exit(1);
  }
}

// A path in the scratch directory, in one of a few rotating buffers.
static inline const char *tmp_path(const char *name) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ & 7];
  snprintf(b, 512, "%s/%s", rt_tmpdir, name);
  return b;
}

static inline void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
    perror(path);
    exit(1);
  }
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static inline void remove_tmpdir(void) { nftw(rt_tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

// Removes the scratch directory and turns the failure count into an exit code.
static inline int finish(const char *name) {
  remove_tmpdir();
  if (rt_failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, rt_failures);
    return 1;
  }
  printf("%s: ok\n", name);
  return 0;
}

#endif
