// The host shim's scheduler and its aarch64 context switch, cross-compiled
// with kernels.cu (aarch64.sh puts the shim's header and kernels.cu in
// shim.c) and run under qemu: block sums and the neighbour exchange at
// several block sizes, a tiled GEMM, and the refusals.
#include "shim.c"

static int bad;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("NOT OK %s\n", what);
    bad++;
  }
}

int main(void) {
  static float x[5 * 1024];
  static double sum[5];
  static int out[5 * 1024];
  char err[512];
  for (int i = 0; i < 5 * 1024; i++)
    x[i] = (float)((i * 7919) % 1000) / 1000.0f;
  unsigned sizes[] = {1024, 64, 256, 1};
  for (int s = 0; s < 4; s++) {
    unsigned n = sizes[s], grid[3] = {5, 1, 1};
    char *aux[] = {(char *)x, (char *)sum}, *aux2[] = {(char *)out};
    check(nnc_shim_launch("k1_block_sum", k1_block_sum, grid, n, 1, 0, 0, aux, 0, 0, err, sizeof err), err);
    for (int b = 0; b < 5; b++) {
      double w = 0;
      for (unsigned t = 0; t < n; t++)
        w += x[b * n + t];
      check(fabs(w - sum[b]) < 1e-9, "block sum");
    }
    check(nnc_shim_launch("k2_rotate", k2_rotate, grid, n, 1, 0, 0, aux2, 0, 0, err, sizeof err), err);
    for (int b = 0; b < 5; b++)
      for (unsigned t = 0; t < n; t++)
        check(out[b * n + t] == 2 * (b * 10000 + (int)t), "neighbour exchange");
  }
  // Small integers: every sum is exact, in any order.
  int M = 100, N = 130, K = 70;
  float *A = malloc(M * K * 4), *Bm = malloc(K * N * 4), *C = malloc(M * N * 4);
  for (int i = 0; i < M * K; i++)
    A[i] = (float)(i % 13) - 6;
  for (int i = 0; i < K * N; i++)
    Bm[i] = (float)(i % 7) - 3;
  long long dims[3] = {M, N, K};
  unsigned g[3] = {(N + 63) / 64, (M + 63) / 64, 1};
  char *aux3[] = {(char *)A, (char *)Bm, (char *)C};
  check(nnc_shim_launch("k3_gemm", k3_gemm, g, 256, 1, 0, 0, aux3, (char *)dims, 0, err, sizeof err), err);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = 0;
      for (int k = 0; k < K; k++)
        s += A[i * K + k] * Bm[k * N + j];
      check(s == C[i * N + j], "gemm");
    }
  unsigned g1[3] = {2, 1, 1};
  check(!nnc_shim_launch("k5_diverge", k5_diverge, g1, 64, 1, 0, 0, aux3, 0, 0, err, sizeof err) &&
            strstr(err, "32 of its 64 threads returned"), "divergent barrier refused");
  check(!nnc_shim_launch("k1_block_sum", k1_block_sum, g1, 64, 0, 0, 0, aux3, 0, 0, err, sizeof err) &&
            strstr(err, "called __syncthreads()"), "barrier without the barrier flag refused");
  printf("aarch64 shim: %s\n", bad ? "FAILED" : "ok");
  return bad != 0;
}
