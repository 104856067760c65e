// test.h: the harness of the C unit tests. Every check counts, and a failed
// one prints file:line and what it saw, then the program goes on, so that
// one run shows every failure. main ends with `return t_finish("test_x")`:
// 0 when every check passed, 1 when one failed or none ran; a test that
// cannot run here returns t_skip() (77, CTest's SKIP_RETURN_CODE).
//
// Checks (a failure prints file:line):
//   CHECK(cond)   CHECK(cond, fmt, ...)   cond holds; else cond and the
//                                         message (a printf format literal)
//   CHECK_INT(want, got)                  equal integers
//   CHECK_STR(want, got)                  equal strings; got NULL fails
//   CHECK_HAS(hay, needle)                needle occurs in hay
//   CHECK_ERR(ok, err, needle, ...)       a call failed (ok is false) and
//                                         its message err holds each needle
//   FAIL(fmt, ...)                        a failed check, saying why
//
// Float arrays, one line "ok"/"NOT OK" per check with the largest
// difference, and the first 5 mismatches when it fails:
//   t_close(what, got, want, n, atol, rtol)   float against double
//   t_close_fwd(what, got, want, n)           with FWD_ATOL, FWD_RTOL
//   t_equal(what, got, want, n)               bit for bit (NaN = NaN)
//   t_grad(what, got, before, f, ctx, x, n)   a gradient against central
//                                             differences of f
// Random data: t_seed, t_uniform, t_randf, t_randf_away0; t_copyf, t_tod,
// t_dot. A call that must exit with an error: t_exits_with_error.
// Files: t_tmpdir(tag) makes a scratch directory that t_finish removes,
// t_path(name) a path in it, t_write(path, data, n) a file.
//
// Everything goes to stdout, flushed at once, so that it keeps its place
// among the messages of the code under test (stderr) and survives a crash.
#ifndef NNC_TEST_H
#define NNC_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static int t_checks;       // checks run so far
static int t_failures;     // checks that failed so far

// Counts a check; a failed one prints "file:line: " and the message.
__attribute__((format(printf, 4, 5)))
static inline bool t_record(const char *file, int line, bool ok, const char *fmt, ...) {
  t_checks++;
  if (ok)
    return true;
  t_failures++;
  printf("%s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
  return false;
}

// The message is optional: " " __VA_ARGS__ is " " alone without one, and
// joins the format literal otherwise (" " and "%s" make " %s").
#define CHECK(cond, ...) t_check_at(__FILE__, __LINE__, (cond) != 0, #cond, " " __VA_ARGS__)

__attribute__((format(printf, 5, 6)))
static inline bool t_check_at(const char *file, int line, bool ok, const char *cond,
                              const char *fmt, ...) {
  if (!t_record(file, line, ok, "check failed: %s\n", cond)) {
    if (fmt[1]) {
      va_list ap;
      va_start(ap, fmt);
      printf(" ");
      vprintf(fmt, ap);
      printf("\n");
      va_end(ap);
      fflush(stdout);
    }
  }
  return ok;
}

#define FAIL(...) t_record(__FILE__, __LINE__, false, __VA_ARGS__)

#define CHECK_INT(want, got)                                                          \
  do {                                                                                \
    long long w_ = (want), g_ = (got);                                                \
    t_record(__FILE__, __LINE__, w_ == g_, "%s: expected %lld, got %lld\n", #got, w_, g_); \
  } while (0)

#define CHECK_STR(want, got)                                                          \
  do {                                                                                \
    const char *w_ = (want), *g_ = (got);                                             \
    t_record(__FILE__, __LINE__, g_ && strcmp(w_, g_) == 0,                           \
             "%s:\n--- expected:\n%s\n--- got:\n%s\n", #got, w_, g_ ? g_ : "(null)"); \
  } while (0)

// Prints the first 2000 characters of hay where the needle is missing.
#define CHECK_HAS(hay, needle)                                                        \
  do {                                                                                \
    const char *h_ = (hay), *n_ = (needle);                                           \
    t_record(__FILE__, __LINE__, h_ && strstr(h_, n_),                                \
             "expected to find \"%s\" in:\n%.2000s\n", n_, h_ ? h_ : "(null)");       \
  } while (0)

// A call failed, and its message holds every string given (a NULL ends the list).
#define CHECK_ERR(ok, err, ...) t_check_err(__FILE__, __LINE__, (ok), (err), __VA_ARGS__, (const char *)NULL)

static inline void t_check_err(const char *file, int line, bool ok, const char *err, ...) {
  if (!t_record(file, line, !ok, "expected a failure, but the call succeeded\n"))
    return;
  va_list ap;
  va_start(ap, err);
  for (const char *s; (s = va_arg(ap, const char *));)
    t_record(file, line, strstr(err, s) != NULL, "the message lacks \"%s\":\n  %s\n", s, err);
  va_end(ap);
}

//
// Float arrays
//
// The kernel tests compare float kernels with naive versions written in
// double. A gradient check defines a scalar objective L = sum(w * f(inputs))
// in double for a fixed random weight w, perturbs one input element at a
// time by +-h (h = FD_STEP), and compares (L(x+h) - L(x-h)) / 2h with what
// the float backward kernel accumulated, given w as the output gradient,
// into a gradient buffer that held random values before (so that the test
// also checks "+=").
//
// Tolerances, unless a test states its own:
//   forward:  |got - want| <= 1e-5 + 1e-4 * |want|
//   gradient: |got - want| <= 1e-4 + 1e-3 * |want|
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3
#define FD_STEP 1e-6

// Counts one named check and prints its line; returns whether it passed.
static inline bool t_report(const char *what, bool ok, double maxdiff, int64_t n) {
  t_checks++;
  if (!ok)
    t_failures++;
  printf("%s %s: max diff %.3g over %lld values\n", ok ? "ok     " : "NOT OK ", what, maxdiff,
         (long long)n);
  fflush(stdout);
  return ok;
}

// got (float) against want (double), element by element, within
// atol + rtol*|want|. NaN matches only NaN.
static inline bool t_close(const char *what, const float *got, const double *want, int64_t n,
                           double atol, double rtol) {
  int64_t bad = 0;
  double maxdiff = 0;
  for (int64_t i = 0; i < n; i++) {
    bool both_nan = isnan(got[i]) && isnan(want[i]);
    double d = both_nan ? 0 : fabs(got[i] - want[i]);
    if (got[i] == want[i])   // equal infinities
      d = 0;
    bool ok = d <= atol + rtol * fabs(want[i]);
    if (!ok && bad++ < 5)
      printf("  %s[%lld]: got %.9g, want %.9g\n", what, (long long)i, got[i], want[i]);
    if (!ok && isnan(d))
      maxdiff = NAN;
    else if (d > maxdiff)
      maxdiff = d;
  }
  if (bad > 5)
    printf("  ... %lld mismatches in all\n", (long long)bad);
  return t_report(what, bad == 0, maxdiff, n);
}

static inline bool t_close_fwd(const char *what, const float *got, const double *want,
                               int64_t n) {
  return t_close(what, got, want, n, FWD_ATOL, FWD_RTOL);
}

// Exact equality of two float arrays (NaN equal to NaN).
static inline bool t_equal(const char *what, const float *got, const float *want, int64_t n) {
  int64_t bad = 0;
  double maxdiff = 0;
  for (int64_t i = 0; i < n; i++) {
    bool same = got[i] == want[i] || (isnan(got[i]) && isnan(want[i]));
    if (!same) {
      double d = fabs((double)got[i] - want[i]);
      if (bad++ < 5)
        printf("  %s[%lld]: got %.9g, want %.9g\n", what, (long long)i, got[i], want[i]);
      maxdiff = d > maxdiff || isnan(d) ? d : maxdiff;
    }
  }
  return t_report(what, bad == 0, maxdiff, n);
}

// The objective of a gradient check: a double function of whatever ctx
// points at, which includes the input being perturbed.
typedef double (*LossFn)(void *ctx);

// Central differences of f with respect to x[0..n-1], perturbing x in place.
static inline double *t_numgrad(LossFn f, void *ctx, double *x, int64_t n) {
  double *g = xmalloc(n * sizeof(double));
  for (int64_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + FD_STEP;
    double fp = f(ctx);
    x[i] = x0 - FD_STEP;
    double fm = f(ctx);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * FD_STEP);
  }
  return g;
}

// Checks an accumulated analytic gradient: got - before (what the backward
// added; exact in double) against the numerical gradient of f with respect
// to x, within atol + rtol*|numerical|.
static inline bool t_grad_tol(const char *what, const float *got, const float *before,
                              LossFn f, void *ctx, double *x, int64_t n, double atol,
                              double rtol) {
  double *num = t_numgrad(f, ctx, x, n);
  int64_t bad = 0;
  double maxdiff = 0;
  for (int64_t i = 0; i < n; i++) {
    double added = (double)got[i] - before[i];
    double d = fabs(added - num[i]);
    bool ok = d <= atol + rtol * fabs(num[i]);
    if (!ok && bad++ < 5)
      printf("  %s[%lld]: analytic %.9g, numeric %.9g\n", what, (long long)i, added, num[i]);
    if (!(d <= maxdiff))
      maxdiff = d;
  }
  if (bad > 5)
    printf("  ... %lld mismatches in all\n", (long long)bad);
  free(num);
  return t_report(what, bad == 0, maxdiff, n);
}

static inline bool t_grad(const char *what, const float *got, const float *before, LossFn f,
                          void *ctx, double *x, int64_t n) {
  return t_grad_tol(what, got, before, f, ctx, x, n, GRAD_ATOL, GRAD_RTOL);
}

// sum(w * y) in double: the weighted output that gradient checks differentiate.
static inline double t_dot(const float *w, const double *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += w[i] * y[i];
  return s;
}

//
// Random data, from the tests' own generator
//

static Rng t_rng;

static inline void t_seed(uint64_t seed) { rng_seed(&t_rng, seed, 7); }

// Uniform in [lo, hi).
static inline double t_uniform(double lo, double hi) {
  return lo + (hi - lo) * rng_uniform(&t_rng);
}

static inline float *t_randf(int64_t n, double lo, double hi) {
  float *x = xmalloc(n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)t_uniform(lo, hi);
  return x;
}

// Uniform values at least `gap` away from 0: |x| in [gap, hi).
static inline float *t_randf_away0(int64_t n, double gap, double hi) {
  float *x = xmalloc(n * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    double v = t_uniform(gap, hi);
    x[i] = (float)(rng_u32(&t_rng) & 1 ? v : -v);
  }
  return x;
}

static inline float *t_copyf(const float *x, int64_t n) {
  float *y = xmalloc(n * sizeof(float));
  memcpy(y, x, n * sizeof(float));
  return y;
}

static inline double *t_tod(const float *x, int64_t n) {
  double *y = xmalloc(n * sizeof(double));
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

//
// Calls that must exit
//

// Runs fn(ctx) in a child process and checks that it exits with status 1
// after printing a message to stderr that contains `expect`.
#define t_exits_with_error(what, fn, ctx, expect) t_exits_at(__FILE__, __LINE__, (what), (fn), (ctx), (expect))

static inline bool t_exits_at(const char *file, int line, const char *what, void (*fn)(void *),
                              void *ctx, const char *expect) {
  int fds[2];
  if (pipe(fds) != 0)
    return t_record(file, line, false, "%s: pipe failed\n", what);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn(ctx);
    _exit(0);   // fn returned: not what the test wants
  }
  close(fds[1]);
  char msg[2048];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fds[0], msg + len, sizeof msg - 1 - len)) > 0)
    len += (size_t)r;
  msg[len] = 0;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(msg, expect);
  return t_record(file, line, ok, "%s: expected exit status 1 and \"%s\"; status %d, stderr: %s\n",
                  what, expect, status, msg);
}

//
// Files
//

static char t_dir[256];   // the scratch directory; empty until t_tmpdir()

// Makes the scratch directory $TMPDIR/nnc-TAG-XXXXXX.
static inline void t_tmpdir(const char *tag) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(t_dir, sizeof t_dir, "%s/nnc-%s-XXXXXX", base, tag);
  if (!mkdtemp(t_dir)) {
    perror(t_dir);
    exit(1);
  }
}

// A path in the scratch directory, in one of 8 rotating buffers.
static inline const char *t_path(const char *name) {
  static char bufs[8][512];
  static int next;
  char *b = bufs[next++ & 7];
  snprintf(b, 512, "%s/%s", t_dir, name);
  return b;
}

static inline void t_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
    perror(path);
    exit(1);
  }
}

static inline int t_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

//
// The end
//

static inline void t_cleanup(void) {
  if (t_dir[0])
    nftw(t_dir, t_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

// Removes the scratch directory and turns the counts into an exit status.
// A run without a single check is a failure: it tested nothing.
static inline int t_finish(const char *name) {
  t_cleanup();
  if (t_checks == 0) {
    printf("%s: no checks ran\n", name);
    return 1;
  }
  printf("%s: %d passed, %d failed\n", name, t_checks - t_failures, t_failures);
  return t_failures ? 1 : 0;
}

// A test that cannot run here: why, then CTest's skip status.
static inline int t_skip(const char *name, const char *why) {
  t_cleanup();
  printf("%s: skipped: %s\n", name, why);
  return 77;
}

#endif
