// runtime_test.c: the runtime library as cross-built for another target
// (tests/cross/runtime.sh builds it for aarch64 without OpenBLAS and zlib,
// and runs this program under qemu): the portable GEMM, the reference and
// the cpu backend's GEMM against a naive triple loop, a convolution's
// forward (reference and cpu backend) against a naive loop, the thread
// pool on 2 threads, no AVX-512, and the data readers' refusal of gzip and
// PNG data in a library without zlib. Exits non-zero on any mismatch.
#include "../test.h"
#include "data.h"
#include "runtime.h"

// op(X)(i, k) of X stored (rows, cols) row-major, or transposed.
static double at(const float *X, bool t, int64_t rows, int64_t cols, int64_t i, int64_t k) {
  return t ? X[k * rows + i] : X[i * cols + k];
}

// The three GEMMs on C = alpha op(A) op(B) + beta C, C full of NaN where
// beta is 0.
static void test_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  float *A = t_randf(M * K, -1, 1), *B = t_randf(K * N, -1, 1), *C0 = t_randf(M * N, -1, 1);
  if (beta == 0.0f)
    for (int64_t i = 0; i < M * N; i++)
      C0[i] = NAN;
  double *want = xmalloc(sizeof(double) * M * N);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++)
        s += at(A, ta, M, K, i, k) * at(B, tb, K, N, k, j);
      want[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : (double)beta * C0[i * N + j]);
    }
  double tol = 1e-6 * (K + 1);
  char what[120];
  for (int f = 0; f < 3; f++) {
    if (f == 2 && alpha != 1.0f)
      break;   // k_gemm_ld takes alpha 1 alone
    float *C = t_copyf(C0, M * N);
    if (f == 0)
      k_portable_sgemm(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N);
    else if (f == 1)
      k_sgemm(ta, tb, M, N, K, alpha, A, B, beta, C);
    else
      k_gemm(ta, tb, M, N, K, alpha, A, B, beta, C);
    snprintf(what, sizeof what, "%s M%lld N%lld K%lld ta%d tb%d alpha %g beta %g",
             (const char *[]){"k_portable_sgemm", "k_sgemm", "k_gemm"}[f], (long long)M, (long long)N,
             (long long)K, ta, tb, alpha, beta);
    t_close(what, C, want, M * N, tol, 1e-5);
    free(C);
  }
  free(A);
  free(B);
  free(C0);
  free(want);
}

// y[n,o,oh,ow] = bias[o] + sum over c, kh, kw of x[n, c, oh*sh - ph +
// kh*dh, ow*sw - pw + kw*dw] * w[o,c,kh,kw] (x is 0 outside the image).
static void naive_conv2d(double *y, const float *x, const float *w, const float *bias, const KConv2d *g,
                         int64_t OH, int64_t OW) {
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t o = 0; o < g->O; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double s = bias[o];
          for (int64_t c = 0; c < g->C; c++)
            for (int64_t kh = 0; kh < g->KH; kh++)
              for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t ih = oh * g->sh - g->ph + kh * g->dh, iw = ow * g->sw - g->pw + kw * g->dw;
                if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
                  s += (double)x[((n * g->C + c) * g->H + ih) * g->W + iw] *
                       w[((o * g->C + c) * g->KH + kh) * g->KW + kw];
              }
          y[((n * g->O + o) * OH + oh) * OW + ow] = s;
        }
}

static void test_conv(const KConv2d *g) {
  int64_t OH = k_out_size(g->H, g->KH, g->sh, g->ph, g->dh), OW = k_out_size(g->W, g->KW, g->sw, g->pw, g->dw);
  int64_t nx = g->N * g->C * g->H * g->W, nw = g->O * g->C * g->KH * g->KW, ny = g->N * g->O * OH * OW;
  float *x = t_randf(nx, -1, 1), *w = t_randf(nw, -1, 1), *bias = t_randf(g->O, -1, 1);
  float *y = t_randf(ny, -1, 1), *yc = t_randf(ny, -1, 1);
  float *ws = xmalloc(sizeof(float) * k_conv2d_scratch(g));
  double *want = xmalloc(sizeof(double) * ny);
  naive_conv2d(want, x, w, bias, g, OH, OW);
  k_conv2d_forward(y, x, w, bias, g);
  k_conv2d_forward_ws(yc, x, w, bias, g, ws, NULL);
  char what[120];
  snprintf(what, sizeof what, "conv2d N%lld C%lld %lldx%lld O%lld k%lldx%lld s%lld p%lld", (long long)g->N,
           (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->O, (long long)g->KH,
           (long long)g->KW, (long long)g->sh, (long long)g->ph);
  t_close(what, y, want, ny, 1e-4, 1e-4);
  strcat(what, " (cpu backend)");
  t_close(what, yc, want, ny, 1e-4, 1e-4);
  free(x), free(w), free(bias), free(y), free(yc), free(ws), free(want);
}

// y[i] = 2 x[i] + 1 over each chunk the pool hands out.
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
  enum { N = 100000 };
  float *x = xmalloc(N * sizeof(float)), *y = xmalloc(N * sizeof(float));
  RtPool *p = rt_pool_new(2);
  CHECK_INT(2, rt_pool_threads(p));
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < N; i++)
      x[i] = (float)((i + round) % 97) - 48, y[i] = NAN;
    rt_pool_run(p, affine_chunk, &(Affine){x, y}, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
      bad += y[i] != 2 * x[i] + 1;
    CHECK(bad == 0, "round %d: %d of %d elements wrong after rt_pool_run on 2 threads", round, bad, N);
  }
  rt_pool_free(p);
  free(x);
  free(y);
}

// A library built without zlib (NNC_ZLIB=OFF) refuses gzip IDX data and
// PNG images with a message that says why and what to do.
static void test_no_zlib(void) {
  static const unsigned char gz[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0};   // empty
  char err[512] = "";
  IdxFile idx;
  bool ok = data_idx_decode(gz, sizeof gz, "labels.idx1-ubyte.gz", &idx, err, sizeof err);
  CHECK_ERR(ok, err, "labels.idx1-ubyte.gz: is gzip-compressed", "built without zlib",
            "HINT: rebuild it with zlib (zlib1g-dev for the target)");
  // a valid 1x1 gray PNG (every chunk's CRC right: only the inflating is refused)
  static const unsigned char png[] = {
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
      0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b,
      0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x68, 0x00, 0x00, 0x00,
      0x82, 0x00, 0x81, 0x77, 0xcd, 0x72, 0xb6, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
      0x42, 0x60, 0x82};
  Image img;
  err[0] = 0;
  ok = data_image_decode(png, sizeof png, "digit.png", &img, err, sizeof err);
  CHECK_ERR(ok, err, "digit.png: cannot decode PNG images", "built without zlib", "zlib1g-dev for the target");
}

int main(void) {
  t_seed(5);
  CHECK(!k_avx512(), "k_avx512() is true on a target without AVX-512");
  static const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {65, 33, 129}, {70, 21, 300}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 4; t++) {
      test_gemm(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], 1, 0);
      test_gemm(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], 1, 1);
      test_gemm(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 2);
    }
  test_conv(&(KConv2d){.N = 2, .C = 3, .H = 9, .W = 8, .O = 5, .KH = 3, .KW = 3, .sh = 1, .sw = 1, .ph = 1,
                       .pw = 1, .dh = 1, .dw = 1});
  test_conv(&(KConv2d){.N = 1, .C = 4, .H = 12, .W = 11, .O = 6, .KH = 5, .KW = 3, .sh = 2, .sw = 2, .ph = 2,
                       .pw = 0, .dh = 1, .dw = 2});
  test_pool();
  test_no_zlib();
  return t_finish("cross/runtime");
}
