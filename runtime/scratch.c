// scratch.c: the kernels' scratch memory: buffers that grow to the
// largest request and are reused from call to call (k_grow), and one set
// of them per thread, freed when the thread exits (k_thread_scratch).
#include "runtime.h"

#include <pthread.h>
#include <stdlib.h>

// Scratch of each kind per thread, freed when the thread exits.
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

typedef struct Scratch {
  float *p[K_SCRATCH_KINDS];
  int64_t cap[K_SCRATCH_KINDS];
} Scratch;

static void scratch_free(void *v) {
  Scratch *sc = v;
  for (int i = 0; i < K_SCRATCH_KINDS; i++)
    free(sc->p[i]);
  free(sc);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

float *k_thread_scratch(int kind, int64_t n) {
  pthread_once(&scratch_once, scratch_init);
  Scratch *sc = pthread_getspecific(scratch_key);
  if (!sc) {
    sc = xcalloc(1, sizeof *sc);
    pthread_setspecific(scratch_key, sc);
  }
  return k_grow(&sc->p[kind], &sc->cap[kind], n);
}

float *k_grow(float **buf, int64_t *cap, int64_t n) {
  if (n > *cap) {
    free(*buf);
    *buf = xmalloc(sizeof(float) * n);
    *cap = n;
  }
  return *buf;
}
