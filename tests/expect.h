// expect.h: the checks of the unit tests that count failures and go on
// (test_ir, test_codegen): each failed check prints file:line and what it
// saw; main returns 1 when `failures` is not 0.
#ifndef NNC_TESTS_EXPECT_H
#define NNC_TESTS_EXPECT_H

#include <stdio.h>
#include <string.h>

static int failures;

#define FAIL_AT(...) \
  (fprintf(stderr, "%s:%d: ", __FILE__, __LINE__), fprintf(stderr, __VA_ARGS__), failures++)

#define ASSERT(cond) \
  do { if (!(cond)) FAIL_AT("assertion failed: %s\n", #cond); } while (0)

#define ASSERT_INT(want, got)                                                         \
  do {                                                                                \
    long long w_ = (want), g_ = (got);                                                \
    if (w_ != g_)                                                                     \
      FAIL_AT("%s: expected %lld, got %lld\n", #got, w_, g_);                         \
  } while (0)

#define ASSERT_STR(want, got)                                                         \
  do {                                                                                \
    const char *w_ = (want), *g_ = (got);                                             \
    if (!g_ || strcmp(w_, g_) != 0)                                                   \
      FAIL_AT("%s:\n--- expected:\n%s\n--- got:\n%s\n", #got, w_, g_ ? g_ : "(null)"); \
  } while (0)

// The first 2000 characters of hay where the needle is missing.
#define ASSERT_HAS(hay, needle)                                                       \
  do {                                                                                \
    const char *h_ = (hay), *n_ = (needle);                                           \
    if (!h_ || !strstr(h_, n_))                                                       \
      FAIL_AT("expected to find \"%s\" in:\n%.2000s\n", n_, h_ ? h_ : "(null)");     \
  } while (0)

#endif
