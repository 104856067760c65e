// check.h: what the kernel tests share: random data, comparisons that
// print the first few differing elements and the largest difference, and
// gradient checks by central differences in double precision.
//
// Each test program compares the float kernels against naive versions
// written in double. A gradient check defines a scalar objective
// L = sum(w * f(inputs)) in double for a fixed random weight w, perturbs
// one input element at a time by +-h (h = 1e-6), and compares
// (L(x+h) - L(x-h)) / 2h with what the float backward kernel accumulated,
// given w as the output gradient, into a gradient buffer that held random
// values before (so that the test also checks "+=").
//
// Tolerances, unless a test states its own:
//   forward:  |got - want| <= 1e-5 + 1e-4 * |want|
//   gradient: |got - want| <= 1e-4 + 1e-3 * |want|
#ifndef NNC_TEST_CHECK_H
#define NNC_TEST_CHECK_H

#include "runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-4
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-3
#define FD_STEP 1e-6

static int t_failures;     // failed checks so far
static int t_checks;       // checks run so far
static Rng t_rng;          // the tests' own random numbers

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

// Reports one check; returns whether it passed.
static inline bool t_report(const char *what, bool ok, double maxdiff, int64_t n) {
  t_checks++;
  if (!ok)
    t_failures++;
  printf("%s %s: max diff %.3g over %lld values\n", ok ? "ok     " : "NOT OK ", what, maxdiff,
         (long long)n);
  return ok;
}

// got (float) against want (double), element by element, within
// atol + rtol*|want|. NaN matches only NaN. Prints the first 5 mismatches.
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

static inline bool t_check(const char *what, bool ok) {
  t_checks++;
  if (!ok)
    t_failures++;
  printf("%s %s\n", ok ? "ok     " : "NOT OK ", what);
  return ok;
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

// Runs fn(ctx) in a child process and checks that it exits with status 1
// after printing a message to stderr that contains `expect`.
static inline bool t_exits_with_error(const char *what, void (*fn)(void *), void *ctx,
                                      const char *expect) {
  int fds[2];
  if (pipe(fds) != 0)
    return t_check(what, false);
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
  if (!ok)
    printf("  status %d, stderr: %s\n", status, msg);
  return t_check(what, ok);
}

// The closing line and exit status of every test program.
static inline int t_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, t_checks - t_failures, t_failures);
  return t_failures ? 1 : 0;
}

#endif
