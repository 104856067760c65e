// pool.c: a small thread pool for splitting a loop across cores.
//
// rt_pool_run() cuts [0, n) into a fixed list of chunks (their number and
// bounds depend only on n and the pool's thread count: see pool_chunks) and
// hands them out one at a time: each thread claims a chunk with a
// compare-and-swap on one word (the job's generation, so that a thread
// that wakes late cannot claim a chunk of a job that is over, and the
// first and last chunks not yet claimed) until none is left, so a thread
// the scheduler has taken off its core holds up at most the chunk it is
// running, and the others take the rest. The caller claims from the front,
// the workers from the back: on two threads that both run, each gets the
// half of the loop it would get from a fixed split, the same half from
// step to step, and its data stays in its core's cache.
//
// So any thread may run any chunk, and the result must not depend on which:
// fn keys per-thread scratch by the running thread (k_thread_scratch), and
// anything summed across chunks is kept per chunk and added in chunk order
// (a convolution's weight gradient, exec.c). Then the same thread count
// gives the same bytes however the threads were scheduled.
//
// Waiting threads (workers between jobs, the caller for the chunks still
// running) poll for SPIN_NS, then block on a futex. The poll keeps a step's
// next loop from paying a wake-up (a compiled step issues many short loops
// in a row); the bound keeps a waiting thread from holding a core that a
// working one, or another process, needs. Sleeping is also what lets the
// scheduler place threads: a thread woken from a futex goes to an idle core,
// whereas two threads that never block can stay stacked on one core.
//
// NNC_POOL_JITTER (in microseconds, for tests) makes every thread wait a
// random time up to that before each chunk it claims, so that chunks land on
// different threads from run to run.
#include "runtime.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// How long a waiting thread polls before it sleeps: longer than most of the
// serial stretches of a training step between its split loops (a worker
// that slept costs the next loop a wake-up, tens of microseconds on a
// virtual machine), and short against the scheduler's time slices
// (milliseconds), so that a thread left waiting on a core another thread
// needs gives it back soon.
#define SPIN_NS 200000
#define CHUNKS_PER_THREAD 4    // chunks of a loop, per thread, when it has that many elements

// The claim word: generation (32 bits) | first unclaimed chunk (16) | one
// past the last (16).
#define CLAIM(gen, front, back) ((uint64_t)(gen) << 32 | (uint64_t)(front) << 16 | (uint64_t)(back))
#define CLAIM_GEN(w) ((uint32_t)((w) >> 32))
#define CLAIM_FRONT(w) ((int)((w) >> 16 & 0xffff))
#define CLAIM_BACK(w) ((int)((w) & 0xffff))
#define MAX_CHUNKS 0xffff

struct RtPool {
  int nthreads;                  // workers + the caller
  pthread_t *workers;
  int jitter_us;                 // NNC_POOL_JITTER, or 0
  // The job: written by the caller before it publishes the claim word, read
  // by a thread only once it has claimed one of the job's chunks.
  void (*fn)(void *arg, int64_t lo, int64_t hi);
  void *arg;
  int64_t n;
  int count;                     // chunks
  _Alignas(64) _Atomic uint64_t claim;
  _Alignas(64) atomic_uint gen;  // the job's generation once published: workers sleep on it
  atomic_int sleepers;           // workers asleep (or about to be) on gen
  atomic_bool stop;
  _Alignas(64) atomic_uint left; // chunks of the job not yet finished: the caller sleeps on it
  atomic_int caller_asleep;
};

static long futex(atomic_uint *word, int op, unsigned val) {
  return syscall(SYS_futex, (unsigned *)word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Polls *word for up to SPIN_NS until whether it equals val is want;
// returns whether that came.
static bool spin_until(atomic_uint *word, unsigned val, bool want) {
  int64_t start = 0;
  for (int i = 0; (atomic_load_explicit(word, memory_order_acquire) == val) != want; i++) {
    cpu_relax();
    if ((i & 63) == 63) {   // the clock every 64 polls
      int64_t t = now_ns();
      if (!start)
        start = t;
      else if (t - start > SPIN_NS)
        return false;
    }
  }
  return true;
}

// The number of chunks of [0, n) on T threads: CHUNKS_PER_THREAD per
// thread, fewer when n has fewer elements or chunks would have under grain
// elements, but one per thread where n has that many (the caller judged the
// loop worth splitting). Chunk i is [n*i/count, n*(i+1)/count).
static int pool_chunks(int64_t n, int T, int64_t grain) {
  int64_t most = (int64_t)T * CHUNKS_PER_THREAD, least = T;
  most = most < MAX_CHUNKS ? most : MAX_CHUNKS;
  most = most < n ? most : n;
  least = least < most ? least : most;
  int64_t count = grain > 1 ? n / grain : n;
  return (int)(count < least ? least : count > most ? most : count);
}

static void jitter(RtPool *p, uint64_t *rng) {
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  int64_t until = now_ns() + (int64_t)(*rng % ((uint64_t)p->jitter_us * 1000 + 1));
  while (now_ns() < until)
    cpu_relax();
}

// Claims and runs chunks of the current job, from the front or from the
// back, until none is left, then counts them finished.
static void run_chunks(RtPool *p, bool front, uint64_t *rng) {
  uint64_t w = atomic_load_explicit(&p->claim, memory_order_acquire);
  unsigned ran = 0;
  while (CLAIM_FRONT(w) < CLAIM_BACK(w)) {
    uint64_t rest = front ? w + (1 << 16) : w - 1;
    if (!atomic_compare_exchange_weak_explicit(&p->claim, &w, rest, memory_order_acq_rel, memory_order_acquire))
      continue;
    // Chunk i is ours, so the job cannot end (nor p->fn change) before we
    // count it finished below.
    int i = front ? CLAIM_FRONT(w) : CLAIM_BACK(w) - 1;
    if (p->jitter_us)
      jitter(p, rng);
    int64_t lo = p->n * i / p->count, hi = p->n * (i + 1) / p->count;
    if (lo < hi)
      p->fn(p->arg, lo, hi);
    ran++;
    w = atomic_load_explicit(&p->claim, memory_order_acquire);
  }
  if (ran && atomic_fetch_sub(&p->left, ran) == ran && atomic_load(&p->caller_asleep))
    futex(&p->left, FUTEX_WAKE, 1);
}

typedef struct Worker {
  RtPool *pool;
  uint64_t rng;                  // NNC_POOL_JITTER's
} Worker;

static void *worker_main(void *argp) {
  Worker *wk = argp;
  RtPool *p = wk->pool;
  unsigned seen = 0;
  for (;;) {
    if (!spin_until(&p->gen, seen, false)) {
      atomic_fetch_add(&p->sleepers, 1);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
        futex(&p->gen, FUTEX_WAIT, seen);
      atomic_fetch_sub(&p->sleepers, 1);
    }
    if (atomic_load(&p->stop))
      break;
    seen = atomic_load(&p->gen);
    run_chunks(p, false, &wk->rng);
  }
  free(wk);
  return NULL;
}

RtPool *rt_pool_try_new(int nthreads, char *err, size_t errsz) {
  RtPool *p = xcalloc(1, sizeof *p);
  p->nthreads = nthreads < 1 ? 1 : nthreads;
  const char *j = getenv("NNC_POOL_JITTER");
  if (j && *j) {
    char *end;
    long us = strtol(j, &end, 10);
    if (*end || us < 0 || us > 1000000) {
      errorf(err, errsz, "NNC_POOL_JITTER is '%s', not a whole number of microseconds from 0 to 1000000\n"
             "---> HINT: unset it (it is for tests), or set it to e.g. 50", j);
      free(p);
      return NULL;
    }
    p->jitter_us = (int)us;
  }
  p->workers = xcalloc(p->nthreads, sizeof(pthread_t));
  for (int i = 1; i < p->nthreads; i++) {
    Worker *w = xmalloc(sizeof *w);
    *w = (Worker){p, 0x9e3779b97f4a7c15u * (uint64_t)i ^ (uint64_t)now_ns()};
    int e = pthread_create(&p->workers[i], NULL, worker_main, w);
    if (e != 0) {   // the workers started so far stop, and nothing is left running
      free(w);
      errorf(err, errsz, "cannot start worker thread %d of %d: %s\n---> HINT: use fewer threads", i + 1,
             p->nthreads, strerror(e));
      p->nthreads = i;
      rt_pool_free(p);
      return NULL;
    }
  }
  return p;
}

RtPool *rt_pool_new(int nthreads) {
  char err[512];
  RtPool *p = rt_pool_try_new(nthreads, err, sizeof err);
  if (!p)
    nnc_fatal("%s", err);
  return p;
}

void rt_pool_free(RtPool *p) {
  if (!p)
    return;
  atomic_store(&p->stop, true);
  atomic_fetch_add(&p->gen, 1);
  futex(&p->gen, FUTEX_WAKE, INT_MAX);
  for (int i = 1; i < p->nthreads; i++)
    pthread_join(p->workers[i], NULL);
  free(p->workers);
  free(p);
}

int rt_pool_threads(const RtPool *p) { return p ? p->nthreads : 1; }

void rt_pool_run(RtPool *p, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg, int64_t n) {
  rt_pool_run_grain(p, fn, arg, n, 1);
}

void rt_pool_run_grain(RtPool *p, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg, int64_t n,
                       int64_t grain) {
  int count = p ? pool_chunks(n, p->nthreads, grain) : 1;
  if (!p || p->nthreads == 1 || count < 2) {
    if (n > 0)
      fn(arg, 0, n);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  p->n = n;
  p->count = count;
  atomic_store_explicit(&p->left, (unsigned)count, memory_order_relaxed);
  unsigned gen = CLAIM_GEN(atomic_load_explicit(&p->claim, memory_order_relaxed)) + 1;
  atomic_store_explicit(&p->claim, CLAIM(gen, 0, count), memory_order_release);
  atomic_store(&p->gen, gen);
  int asleep = atomic_load(&p->sleepers);
  if (asleep > 0)
    futex(&p->gen, FUTEX_WAKE, (unsigned)(asleep < count - 1 ? asleep : count - 1));
  static _Thread_local uint64_t rng = 0x2545f4914f6cdd1du;
  run_chunks(p, true, &rng);
  if (!spin_until(&p->left, 0, true)) {   // chunks other threads are still running
    atomic_store(&p->caller_asleep, 1);
    unsigned v;
    while ((v = atomic_load(&p->left)) != 0)
      futex(&p->left, FUTEX_WAIT, v);
    atomic_store(&p->caller_asleep, 0);
  }
}
