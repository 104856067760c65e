// runtime_alone.c: a program that uses runtime.h and nothing above it,
// linked against the runtime library (every object of it, so that each one
// must resolve), util and the system libraries alone: what a model compiled
// ahead of time links. It runs a kernel, the GEMM and a thread-pool loop.
#include "../test.h"
#include "runtime.h"

// y[i] = 2 * x[i] + 1 over each chunk the pool hands out.
typedef struct Affine {
  const float *x;
  float *y;
} Affine;

static void affine_chunk(void *arg, int64_t lo, int64_t hi) {
  Affine *a = arg;
  for (int64_t i = lo; i < hi; i++)
    a->y[i] = 2 * a->x[i] + 1;
}

static void test_pool(void) {
  enum { N = 10000 };
  float *x = xmalloc(N * sizeof(float)), *y = xmalloc(N * sizeof(float));
  for (int i = 0; i < N; i++)
    x[i] = (float)(i % 97) - 48, y[i] = NAN;
  RtPool *p = rt_pool_new(3);
  CHECK_INT(3, rt_pool_threads(p));
  rt_pool_run(p, affine_chunk, &(Affine){x, y}, N);
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += y[i] != 2 * x[i] + 1;
  CHECK(bad == 0, "%d of %d elements wrong after rt_pool_run", bad, N);
  rt_pool_free(p);
  free(x);
  free(y);
}

static void test_kernels(void) {
  float x[4] = {-1, 0, 2, -3}, y[4];
  k_relu_forward(y, x, 4);
  CHECK(y[0] == 0 && y[1] == 0 && y[2] == 2 && y[3] == 0, "relu: %g %g %g %g", y[0], y[1], y[2], y[3]);
  // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]], through the BLAS (k_blas_sgemm) and
  // through the runtime's own GEMM.
  float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4], d[4];
  k_sgemm(false, false, 2, 2, 2, 1, a, b, 0, c);
  k_gemm(false, false, 2, 2, 2, 1, a, b, 0, d);
  for (int i = 0; i < 4; i++) {
    float want = (float[]){19, 22, 43, 50}[i];
    CHECK(c[i] == want, "k_sgemm C[%d] = %g, want %g", i, c[i], want);
    CHECK(d[i] == want, "k_gemm C[%d] = %g, want %g", i, d[i], want);
  }
}

int main(void) {
  test_pool();
  test_kernels();
  return t_finish("runtime_alone");
}
