// test_thread_pool.c: rt_pool_run on 1 to 5 threads. Every element of
// [0, n) is visited exactly once; the chunks fn sees depend only on n and
// the thread count (the same list, run after run, whichever thread claimed
// which), and on rt_pool_run_grain's grain; many jobs in a row, with
// threads woken from sleep between some of them, lose no chunk and run
// none twice. Run with NNC_POOL_JITTER too, so that chunks land on other
// threads than they would.
#include "../test.h"
#include "runtime.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define MAX_N 5000
#define MAX_CALLS 64

typedef struct Job {
  atomic_int seen[MAX_N];          // how many times each element was visited
  atomic_int ncalls;
  int64_t lo[MAX_CALLS], hi[MAX_CALLS];
  atomic_uintptr_t thread[MAX_CALLS];
} Job;

static void visit(void *arg, int64_t lo, int64_t hi) {
  Job *j = arg;
  int c = atomic_fetch_add(&j->ncalls, 1);
  if (c < MAX_CALLS) {
    j->lo[c] = lo;
    j->hi[c] = hi;
    atomic_store(&j->thread[c], (uintptr_t)pthread_self());
  }
  for (int64_t i = lo; i < hi; i++)
    atomic_fetch_add(&j->seen[i], 1);
}

// The calls' ranges, sorted by lo, as "lo-hi lo-hi ...".
static void ranges(const Job *j, char *out, size_t cap) {
  int n = atomic_load(&j->ncalls) < MAX_CALLS ? atomic_load(&j->ncalls) : MAX_CALLS;
  int64_t lo[MAX_CALLS], hi[MAX_CALLS];
  for (int i = 0; i < n; i++)
    lo[i] = j->lo[i], hi[i] = j->hi[i];
  for (int i = 1; i < n; i++)
    for (int k = i; k > 0 && lo[k - 1] > lo[k]; k--) {
      int64_t t = lo[k]; lo[k] = lo[k - 1]; lo[k - 1] = t;
      t = hi[k]; hi[k] = hi[k - 1]; hi[k - 1] = t;
    }
  size_t at = 0;
  out[0] = 0;
  for (int i = 0; i < n && at < cap; i++)
    at += (size_t)snprintf(out + at, cap - at, "%lld-%lld ", (long long)lo[i], (long long)hi[i]);
}

static Job job;

// Runs n elements once (in chunks of grain or more, see rt_pool_run_grain)
// and checks the cover; returns the ranges in out.
static void run_grain(RtPool *p, int64_t n, int64_t grain, char *out, size_t cap, int *threads_used) {
  memset(&job, 0, sizeof job);
  if (grain > 1)
    rt_pool_run_grain(p, visit, &job, n, grain);
  else
    rt_pool_run(p, visit, &job, n);
  int bad = 0;
  for (int64_t i = 0; i < n; i++)
    bad += atomic_load(&job.seen[i]) != 1;
  CHECK(bad == 0, "%d threads, n %lld: %d elements not visited exactly once", rt_pool_threads(p), (long long)n,
        bad);
  ranges(&job, out, cap);
  int calls = atomic_load(&job.ncalls) < MAX_CALLS ? atomic_load(&job.ncalls) : MAX_CALLS, used = 0;
  for (int i = 0; i < calls; i++) {
    int k = 0;
    while (k < i && atomic_load(&job.thread[k]) != atomic_load(&job.thread[i]))
      k++;
    used += k == i;
  }
  if (threads_used)
    *threads_used = used;
}

static void run_once(RtPool *p, int64_t n, char *out, size_t cap, int *threads_used) {
  run_grain(p, n, 1, out, cap, threads_used);
}

int main(void) {
  static const int64_t sizes[] = {0, 1, 2, 3, 5, 7, 8, 9, 16, 17, 64, 100, 1000, 4999};
  char first[4096], again[4096];
  for (int T = 1; T <= 5; T++) {
    RtPool *p = rt_pool_new(T);
    CHECK(rt_pool_threads(p) == T, "rt_pool_threads: %d, expected %d", rt_pool_threads(p), T);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      int64_t n = sizes[s];
      run_once(p, n, first, sizeof first, NULL);
      int chunks = atomic_load(&job.ncalls);
      int64_t want = T == 1 || n < 2 ? (n > 0) : n < 4 * T ? n : 4 * T;
      CHECK(chunks == want, "%d threads, n %lld: %d calls of fn, expected %lld", T, (long long)n, chunks,
            (long long)want);
      // The same chunks every time, however the work was shared out.
      for (int rep = 0; rep < 200; rep++) {
        run_once(p, n, again, sizeof again, NULL);
        if (strcmp(first, again)) {
          CHECK(0, "%d threads, n %lld: chunks changed from [%s] to [%s]", T, (long long)n, first, again);
          break;
        }
      }
    }
    // A grain: fewer chunks, but one per thread.
    static const struct { int64_t n, grain; int chunks[6]; } grains[] = {   // chunks on 1..5 threads
      {1000, 300, {0, 1, 3, 3, 4, 5}}, {1000, 100, {0, 1, 8, 10, 10, 10}}, {1000, 1000, {0, 1, 2, 3, 4, 5}},
      {3, 1000, {0, 1, 2, 3, 3, 3}}, {4999, 1, {0, 1, 8, 12, 16, 20}},
    };
    for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++) {
      run_grain(p, grains[g].n, grains[g].grain, first, sizeof first, NULL);
      CHECK(atomic_load(&job.ncalls) == grains[g].chunks[T], "%d threads, n %lld, grain %lld: %d chunks, expected %d",
            T, (long long)grains[g].n, (long long)grains[g].grain, atomic_load(&job.ncalls), grains[g].chunks[T]);
    }
    // The workers take part (on a busy machine they may get no core for a
    // while: up to 20 s of jobs).
    int used = 1;
    for (time_t end = time(NULL) + 20; T > 1 && used < 2 && time(NULL) < end;)
      run_once(p, MAX_N, first, sizeof first, &used);
    CHECK(T == 1 || used > 1, "%d threads: the workers ran no chunk of 20 s of jobs", T);
    // Jobs right after one another, and after the workers fell asleep.
    for (int rep = 0; rep < 2000; rep++) {
      if (rep % 500 == 499)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
      run_once(p, 1 + rep % 97, first, sizeof first, NULL);
    }
    rt_pool_free(p);
  }
  rt_pool_free(NULL);
  return t_finish("test_thread_pool");
}
