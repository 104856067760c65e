// Hand-written kernels in the style of the cuda backend's CUDA C (its
// prelude's macros, one signature), which test_cuda_shim runs through the
// host shim. Operands come in aux[]; sizes, where a kernel needs them, as
// long longs in the step block.
#if defined(__CUDACC__)
#define NNC_KERNEL extern "C" __global__
#endif
#define NNC_ARGS char *arena, char *state, char *const *aux, char *step, long long B
#define NNC_FOR_EACH(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
__device__ __forceinline__ float nnc_max(float a, float b) { return a > b ? a : b; }

// y[i] = max(2 x[i] + 1, 0) + sqrt(|x[i]|) for i < B, grid-stride.
NNC_KERNEL void k0_elementwise(NNC_ARGS) {
  const float *__restrict__ x = (const float *)aux[0];
  float *__restrict__ y = (float *)aux[1];
  NNC_FOR_EACH(i, B) y[i] = nnc_max(2.0f * x[i] + 1.0f, 0.0f) + sqrtf(fabsf(x[i]));
}

// out[b] = the sum of x[b * n .. b * n + n - 1] in a tree over shared memory (n a power of 2).
NNC_KERNEL void __launch_bounds__(1024) k1_block_sum(NNC_ARGS) {
  __shared__ double red[1024];
  const float *x = (const float *)aux[0];
  double *out = (double *)aux[1];
  unsigned t = threadIdx.x, n = blockDim.x;
  red[t] = x[(long long)blockIdx.x * n + t];
  __syncthreads();
  for (unsigned s = n / 2; s > 0; s /= 2) {
    if (t < s)
      red[t] += red[t + s];
    __syncthreads();
  }
  if (t == 0)
    out[blockIdx.x] = red[0];
}

// Each thread reads its neighbour's value, then writes its own: right only
// when no thread passes a barrier before all have reached it.
// out[b * n + t] = 2 (b * 10000 + t).
NNC_KERNEL void k2_rotate(NNC_ARGS) {
  __shared__ int sh[1024];
  int *out = (int *)aux[0];
  unsigned t = threadIdx.x, n = blockDim.x;
  sh[t] = (int)(blockIdx.x * 10000 + t);
  __syncthreads();
  int v = sh[(t + 1) % n];
  __syncthreads();
  sh[t] = 2 * v;
  __syncthreads();
  out[(long long)blockIdx.x * n + t] = sh[(t + n - 1) % n];
}

// C[M, N] = A[M, K] B[K, N]: 64 x 64 tiles of C (blockIdx.y: rows, x:
// columns), K in slabs of 16 through shared memory, 256 threads of 4 x 4
// accumulators; ragged edges masked. step holds M, N, K.
NNC_KERNEL void k3_gemm(NNC_ARGS) {
  __shared__ float As[16][68];
  __shared__ float Bs[16][68];
  const long long *dims = (const long long *)step;
  long long M = dims[0], N = dims[1], K = dims[2];
  const float *A = (const float *)aux[0], *Bm = (const float *)aux[1];
  float *C = (float *)aux[2];
  int t = threadIdx.x, tr = t / 16, tc = t % 16;
  long long r0 = (long long)blockIdx.y * 64, c0 = (long long)blockIdx.x * 64;
  float acc[4][4] = {{0}};
  for (long long k0 = 0; k0 < K; k0 += 16) {
    for (int i = t; i < 16 * 64; i += 256) {
      int kk = i / 64, j = i % 64;
      long long k = k0 + kk, r = r0 + j, c = c0 + j;
      As[kk][j] = r < M && k < K ? A[r * K + k] : 0.0f;
      Bs[kk][j] = k < K && c < N ? Bm[k * N + c] : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < 16; kk++) {
      float a[4], b[4];
      for (int i = 0; i < 4; i++) {
        a[i] = As[kk][tr * 4 + i];
        b[i] = Bs[kk][tc * 4 + i];
      }
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
          acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      long long r = r0 + tr * 4 + i, c = c0 + tc * 4 + j;
      if (r < M && c < N)
        C[r * N + c] = acc[i][j];
    }
}

// Where each thread ran: 6 ints per thread of the grid, in launch order.
NNC_KERNEL void k4_where(NNC_ARGS) {
  int *out = (int *)aux[0];
  long long b = ((long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  int *o = out + (b * blockDim.x + threadIdx.x) * 6;
  o[0] = blockIdx.x, o[1] = blockIdx.y, o[2] = blockIdx.z, o[3] = threadIdx.x;
  o[4] = blockDim.x * 1000 + blockDim.y * 10 + blockDim.z;
  o[5] = gridDim.x * 10000 + gridDim.y * 100 + gridDim.z;
}

// Odd threads return before the barrier the even ones wait at.
NNC_KERNEL void k5_diverge(NNC_ARGS) {
  if (threadIdx.x % 2)
    return;
  __syncthreads();
}
