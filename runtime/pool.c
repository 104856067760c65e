// pool.c: a small thread pool for splitting a loop across cores.
//
// rt_pool_run() cuts [0, n) into one contiguous chunk per thread; the
// caller's thread takes the first chunk and the workers the rest. Workers
// wait for work by spinning on a generation counter (a compiled step issues
// many short loops in a row, and waking a sleeping thread costs more than
// most of them), yielding the core between polls after a while, then sleep
// on a condition variable.
#include "runtime.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

// Waiting threads poll SPIN_POLLS times, then poll SPIN_YIELDS more times
// giving the core away between polls (sched_yield: at once back when no
// other thread wants the core, so a step's next loop still finds them
// awake; the core goes to the others when there are more threads than
// cores), then sleep.
#define SPIN_POLLS 4096
#define SPIN_YIELDS 20000
#define SPIN_ROUNDS (SPIN_POLLS + SPIN_YIELDS)

// Between two polls of round i.
static inline void spin_pause(int i) {
  if (i >= SPIN_POLLS)
    sched_yield();
}

struct RtPool {
  int nthreads;                  // workers + the caller
  pthread_t *workers;
  pthread_mutex_t mu;
  pthread_cond_t wake;           // a new generation, or shutdown
  pthread_cond_t done;           // the last worker finished its chunk
  atomic_long generation;        // bumped for each rt_pool_run
  atomic_int pending;            // workers still running this generation's chunks
  atomic_bool stop;
  void (*fn)(void *arg, int64_t lo, int64_t hi);
  void *arg;
  int64_t n;
};

typedef struct Worker {
  RtPool *pool;
  int index;                     // 1..nthreads-1: chunk number
} Worker;

static void chunk(const RtPool *p, int i, int64_t *lo, int64_t *hi) {
  *lo = p->n * i / p->nthreads;
  *hi = p->n * (i + 1) / p->nthreads;
}

static void *worker_main(void *argp) {
  Worker *w = argp;
  RtPool *p = w->pool;
  long seen = 0;
  for (;;) {
    long gen = atomic_load(&p->generation);
    for (int spin = 0; gen == seen && spin < SPIN_ROUNDS; spin++) {
      spin_pause(spin);
      gen = atomic_load(&p->generation);
    }
    if (gen == seen) {
      pthread_mutex_lock(&p->mu);
      while ((gen = atomic_load(&p->generation)) == seen && !p->stop)
        pthread_cond_wait(&p->wake, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (p->stop)
      break;
    seen = gen;
    int64_t lo, hi;
    chunk(p, w->index, &lo, &hi);
    if (lo < hi)
      p->fn(p->arg, lo, hi);
    if (atomic_fetch_sub(&p->pending, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  free(w);
  return NULL;
}

RtPool *rt_pool_new(int nthreads) {
  RtPool *p = xcalloc(1, sizeof *p);
  p->nthreads = nthreads < 1 ? 1 : nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  p->workers = xcalloc(p->nthreads, sizeof(pthread_t));
  for (int i = 1; i < p->nthreads; i++) {
    Worker *w = xmalloc(sizeof *w);
    *w = (Worker){p, i};
    if (pthread_create(&p->workers[i], NULL, worker_main, w) != 0)
      nnc_fatal("cannot start a worker thread\n---> HINT: run with --threads 1");
  }
  return p;
}

void rt_pool_free(RtPool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++)
    pthread_join(p->workers[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p->workers);
  free(p);
}

int rt_pool_threads(const RtPool *p) { return p ? p->nthreads : 1; }

void rt_pool_run(RtPool *p, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg, int64_t n) {
  if (!p || p->nthreads == 1 || n < 2) {
    if (n > 0)
      fn(arg, 0, n);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  p->n = n;
  atomic_store(&p->pending, p->nthreads - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  int64_t lo, hi;
  chunk(p, 0, &lo, &hi);
  if (lo < hi)
    fn(arg, lo, hi);
  for (int spin = 0; atomic_load(&p->pending) > 0 && spin < SPIN_ROUNDS; spin++)
    spin_pause(spin);
  if (atomic_load(&p->pending) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0)
      pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
}
