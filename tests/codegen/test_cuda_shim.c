// test_cuda_shim: the host shim (codegen/cuda_shim.c) runs hand-written
// CUDA C (shim/kernels.cu, in the style of the cuda backend's code) on the
// CPU: grid-stride elementwise loops, block reductions and a tiled GEMM over
// shared memory, whose __syncthreads must be a real barrier, grids in x, y
// and z; and it refuses, with the kernel's name and without a crash or a
// hang, the launches CUDA would not run, source the C compiler rejects,
// stack frames a fiber's stack cannot hold, and a missing compiler; no
// temporary file stays behind. Skipped where no C compiler runs.
//
//   test_cuda_shim DIR           the tests (DIR: tests/codegen/shim)
//   test_cuda_shim DIR --bench   GEMM GFLOP/s, and the time to compile a
//                                program of many kernels
#include "../test.h"
#include "codegen.h"
#include "cuda_gen.h"
#include "rational_check.h"

#include <dirent.h>

static char err[8192];
static const char *kernels_dir;

static CgCudaHost *load_kernels(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/kernels.cu", kernels_dir);
  char *src = read_file(path, NULL);
  if (!src) {
    perror(path);
    exit(1);
  }
  CgCudaHost *h = cg_cuda_host_load(src, err, sizeof err);
  free(src);
  return h;
}

static bool launch(CgCudaHost *h, const char *name, unsigned gx, unsigned gy, unsigned gz, unsigned block,
                   bool barrier, char *const *aux, char *step, long long B) {
  CgCudaFn fn = cg_cuda_host_fn(h, name);
  if (!fn) {
    FAIL("no kernel %s\n", name);
    return false;
  }
  unsigned grid[3] = {gx, gy, gz};
  err[0] = 0;
  return cg_cuda_host_launch(h, name, fn, grid, block, barrier, NULL, NULL, aux, step, B, err, sizeof err);
}

// 10,000 elements on 8 blocks of 256 threads: each thread strides over several.
static void test_elementwise(CgCudaHost *h) {
  int64_t n = 10000;
  float *x = t_randf(n, -3, 3), *y = xcalloc(n, sizeof(float)), *want = xmalloc(n * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    float v = 2.0f * x[i] + 1.0f;
    want[i] = (v > 0.0f ? v : 0.0f) + sqrtf(fabsf(x[i]));
  }
  char *aux[] = {(char *)x, (char *)y};
  CHECK(launch(h, "k0_elementwise", 8, 1, 1, 256, false, aux, NULL, n), "%s", err);
  t_equal("elementwise, plain calls", y, want, n);
  memset(y, 0, n * sizeof(float));
  CHECK(launch(h, "k0_elementwise", 3, 1, 1, 100, true, aux, NULL, n), "%s", err);
  t_equal("elementwise, fibers", y, want, n);
  free(x), free(y), free(want);
}

// The prelude's nnc_erf and nnc_tanh, which the cuda backend's KI_ERF and
// KI_TANH call, against double erf and tanh (rational_check.h).
static void test_rational(const char *fn, int n, void (*points)(float *),
                          void (*check)(const char *, const float *, const float *)) {
  StrBuf b = {0};
  sb_puts(&b, cuda_prelude);
  sb_printf(&b, "NNC_KERNEL void k0_%s(NNC_ARGS) {\n"
                "  NNC_FOR_EACH(i, B) ((float *)aux[1])[i] = nnc_%s(((const float *)aux[0])[i]);\n"
                "}\n", fn, fn);
  CgCudaHost *h = cg_cuda_host_load(b.data, err, sizeof err);
  sb_free(&b);
  CHECK(h, "%s", err);
  if (!h)
    return;
  float *x = xmalloc(n * sizeof(float)), *y = xcalloc(n, sizeof(float));
  points(x);
  char *aux[] = {(char *)x, (char *)y}, kernel[32], what[64];
  snprintf(kernel, sizeof kernel, "k0_%s", fn);
  snprintf(what, sizeof what, "%s (cuda prelude)", fn);
  CHECK(launch(h, kernel, 64, 1, 1, 256, false, aux, NULL, n), "%s", err);
  check(what, x, y);
  free(x), free(y);
  cg_cuda_host_free(h);
}

// Tree sums of blocks of 1024, 64 and 256 threads (the fiber stacks grow,
// then are reused), and the neighbour exchange, block by block.
static void test_barriers(CgCudaHost *h) {
  int blocks = 5;
  unsigned sizes[] = {1024, 64, 256, 1};
  float *x = t_randf(blocks * 1024, -1, 1);
  double *sum = xcalloc(blocks, sizeof(double));
  int *out = xcalloc(blocks * 1024, sizeof(int));
  for (int s = 0; s < 4; s++) {
    unsigned n = sizes[s];
    char *aux[] = {(char *)x, (char *)sum};
    CHECK(launch(h, "k1_block_sum", blocks, 1, 1, n, true, aux, NULL, 0), "%s", err);
    for (int b = 0; b < blocks; b++) {
      double want = 0;   // the tree's own order: the sums are exact in double for these few floats
      for (unsigned t = 0; t < n; t++)
        want += x[b * n + t];
      CHECK(fabs(sum[b] - want) < 1e-9, "block sum of %u threads, block %d: got %.17g, want %.17g", n, b, sum[b],
            want);
    }
    char *aux2[] = {(char *)out};
    CHECK(launch(h, "k2_rotate", blocks, 1, 1, n, true, aux2, NULL, 0), "%s", err);
    int bad = 0;
    for (int b = 0; b < blocks; b++)
      for (unsigned t = 0; t < n; t++)
        bad += out[b * n + t] != 2 * (b * 10000 + (int)t);
    CHECK(bad == 0, "neighbour exchange in blocks of %u threads: %d values wrong", n, bad);
  }
  free(x), free(sum), free(out);
}

static void naive_gemm(const float *a, const float *b, double *c, int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++)
        s += (double)a[i * k + p] * b[p * n + j];
      c[i * n + j] = s;
    }
}

// C = A B at ragged sizes: a 2D grid of tiles, a loop of barriers per K slab.
// Returns the seconds of the launch.
static double run_gemm(CgCudaHost *h, int64_t m, int64_t n, int64_t k, bool check) {
  float *a = t_randf(m * k, -1, 1), *b = t_randf(k * n, -1, 1), *c = xcalloc(m * n, sizeof(float));
  long long dims[3] = {m, n, k};
  char *aux[] = {(char *)a, (char *)b, (char *)c};
  double t0 = now_seconds();
  bool ok = launch(h, "k3_gemm", (unsigned)((n + 63) / 64), (unsigned)((m + 63) / 64), 1, 256, true, aux,
                   (char *)dims, 0);
  double secs = now_seconds() - t0;
  CHECK(ok, "%s", err);
  if (check) {
    double *want = xmalloc(m * n * sizeof(double));
    naive_gemm(a, b, want, m, n, k);
    char what[64];
    snprintf(what, sizeof what, "gemm %lldx%lldx%lld", (long long)m, (long long)n, (long long)k);
    t_close(what, c, want, m * n, 1e-5, 1e-4);
    free(want);
  }
  free(a), free(b), free(c);
  return secs;
}

// Every thread of a 3 x 2 x 2 grid of 5-thread blocks, in order, with
// plain calls and with fibers.
static void test_grid(CgCudaHost *h) {
  int n = 3 * 2 * 2 * 5;
  int *out = xcalloc(n * 6, sizeof(int));
  char *aux[] = {(char *)out};
  for (int fibers = 0; fibers < 2; fibers++) {
    memset(out, 0xff, n * 6 * sizeof(int));
    CHECK(launch(h, "k4_where", 3, 2, 2, 5, fibers, aux, NULL, 0), "%s", err);
    int bad = 0, i = 0;
    for (int z = 0; z < 2; z++)
      for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
          for (int t = 0; t < 5; t++, i++) {
            int want[6] = {x, y, z, t, 5 * 1000 + 10 + 1, 3 * 10000 + 2 * 100 + 2};
            bad += memcmp(out + i * 6, want, sizeof want) != 0;
          }
    CHECK(bad == 0, "grid 3x2x2, block 5 (%s): %d threads saw the wrong indices", fibers ? "fibers" : "calls", bad);
  }
  free(out);
}

// Launches CUDA would not run, each refused with the kernel's name.
static void test_bad_launches(CgCudaHost *h) {
  float x[4096] = {0};
  double sum[4];
  char *aux[] = {(char *)x, (char *)sum};
  CHECK_ERR(launch(h, "k1_block_sum", 1, 1, 1, 2048, true, aux, NULL, 0), err, "kernel 'k1_block_sum'",
            "2048 threads per block", "1024");
  CHECK_ERR(launch(h, "k1_block_sum", 1, 1, 1, 0, true, aux, NULL, 0), err, "kernel 'k1_block_sum'",
            "0 threads per block");
  CHECK_ERR(launch(h, "k1_block_sum", 0, 1, 1, 64, true, aux, NULL, 0), err, "kernel 'k1_block_sum'",
            "0 x 1 x 1 blocks");
  CHECK_ERR(launch(h, "k1_block_sum", 1, 70000, 1, 64, true, aux, NULL, 0), err, "1 x 70000 x 1 blocks");
  CHECK_ERR(launch(h, "k1_block_sum", 2, 1, 1, 64, false, aux, NULL, 0), err, "kernel 'k1_block_sum'",
            "thread 0 of block (0, 0, 0) called __syncthreads()", "no barrier");
  CHECK_ERR(launch(h, "k5_diverge", 2, 1, 1, 64, true, aux, NULL, 0), err, "kernel 'k5_diverge'",
            "block (0, 0, 0), 32 of its 64 threads returned", "__syncthreads()");
  CHECK_ERR(launch(h, "k5_diverge", 1, 1, 1, 1, false, aux, NULL, 0), err, "kernel 'k5_diverge'",
            "called __syncthreads()");
  // A block of one thread reaches every barrier: it runs.
  CHECK(launch(h, "k5_diverge", 1, 1, 1, 1, true, aux, NULL, 0), "%s", err);
  unsigned grid[3] = {1, 1, 1};
  CHECK_ERR(cg_cuda_host_launch(h, "main", (CgCudaFn)(void (*)(void))test_bad_launches, grid, 1, false, NULL, NULL,
                                aux, NULL, 0, err, sizeof err),
            err, "kernel 'main'", "not one of the program");
  // After all that, the host still runs kernels.
  test_grid(h);
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d)
    return -1;
  for (struct dirent *e; (e = readdir(d));)
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

// Source the compiler rejects: its diagnostic, at the source's own line.
static void test_compile_error(void) {
  const char *src = "#define NNC_ARGS char *arena, char *state, char *const *aux, char *step, long long B\n"
                    "NNC_KERNEL void k0_bad(NNC_ARGS) {\n"
                    "  float x = undeclared_thing;\n"
                    "}\n";
  CgCudaHost *h = cg_cuda_host_load(src, err, sizeof err);
  CHECK(!h);
  CHECK_HAS(err, "the host C compiler rejected the generated CUDA C");
  CHECK_HAS(err, "undeclared_thing");
  CHECK_HAS(err, "cuda.cu:3");
  // A function nobody defines: the link fails, not the load.
  const char *undefined = "#define NNC_ARGS char *arena, char *state, char *const *aux, char *step, long long B\n"
                          "NNC_KERNEL void k0_call(NNC_ARGS) { nnc_no_such_function(aux[0]); }\n";
  CHECK_ERR(cg_cuda_host_load(undefined, err, sizeof err) != NULL, err,
            "the host C compiler rejected the generated CUDA C", "nnc_no_such_function");
  // A message longer than err is cut, not overrun.
  char small[64];
  memset(small, 'x', sizeof small);
  CHECK(!cg_cuda_host_load(src, small, 40));
  CHECK(strlen(small) < 40 && small[63] == 'x');
  cg_cuda_host_free(NULL);
}

// A thread's stack frame that would not fit its fiber's stack, or that
// grows at run time: refused at load, not a crash at the guard page.
static void test_frames(void) {
  const char *big = "#define NNC_ARGS char *arena, char *state, char *const *aux, char *step, long long B\n"
                    "NNC_KERNEL void k0_big(NNC_ARGS) {\n"
                    "  float v[20000];\n"
                    "  for (int i = 0; i < 20000; i++) v[i] = ((float *)aux[0])[i];\n"
                    "  ((float *)aux[1])[0] = v[B];\n"
                    "}\n";
  CgCudaHost *h = cg_cuda_host_load(big, err, sizeof err);
  CHECK_ERR(h != NULL, err, "function 'k0_big' (cuda.cu:2:", "keeps a stack frame of 800", "64 KB", "HINT");
  const char *vla = "#define NNC_ARGS char *arena, char *state, char *const *aux, char *step, long long B\n"
                    "NNC_KERNEL void k0_vla(NNC_ARGS) {\n"
                    "  float v[B];\n"
                    "  for (int i = 0; i < B; i++) v[i] = ((float *)aux[0])[i];\n"
                    "  ((float *)aux[1])[0] = v[B / 2];\n"
                    "}\n";
  h = cg_cuda_host_load(vla, err, sizeof err);
  CHECK_ERR(h != NULL, err, "function 'k0_vla'", "sizes its stack frame at run time");
}

static void test_missing_compiler(void) {
  const char *old = getenv("NNC_CC");
  char *saved = old ? xstrdup(old) : NULL;
  setenv("NNC_CC", "/nonexistent/nnc-no-such-cc -O0", 1);
  CgCudaHost *h = cg_cuda_host_load("int x;\n", err, sizeof err);
  CHECK_ERR(h != NULL, err, "cannot run the C compiler '/nonexistent/nnc-no-such-cc'", "NNC_CC", "HINT");
  if (saved)
    setenv("NNC_CC", saved, 1);
  else
    unsetenv("NNC_CC");
  free(saved);
}

// Compile time of a program of n kernels: n / 2 GEMMs and n / 2 elementwise loops.
static void bench_compile(int n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/kernels.cu", kernels_dir);
  char *one = read_file(path, NULL);
  StrBuf b = {0};
  sb_puts(&b, one);
  for (int i = 0; i < n / 2; i++) {
    sb_printf(&b, "#define k3_gemm k3_gemm_%d\n#define k0_elementwise k0_elementwise_%d\n", i, i);
    const char *g = strstr(one, "NNC_KERNEL void k0_elementwise");
    const char *e = strstr(one, "// out[b] = the sum");
    sb_printf(&b, "%.*s", (int)(e - g), g);
    g = strstr(one, "NNC_KERNEL void k3_gemm");
    e = strstr(one, "// Where each thread ran");
    sb_printf(&b, "%.*s#undef k3_gemm\n#undef k0_elementwise\n", (int)(e - g), g);
  }
  double t0 = now_seconds();
  CgCudaHost *h = cg_cuda_host_load(b.data, err, sizeof err);
  CHECK(h, "%s", err);
  printf("compile: %d kernels (%zu bytes of CUDA C) in %.2f s\n", n, b.len, now_seconds() - t0);
  cg_cuda_host_free(h);
  sb_free(&b);
  free(one);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_cuda_shim DIR [--bench]\n");
    return 2;
  }
  kernels_dir = argv[1];
  bool bench = argc > 2 && !strcmp(argv[2], "--bench");
  t_seed(17);
  t_tmpdir("cuda-shim");
  setenv("TMPDIR", t_dir, 1);   // every temporary file of the shim goes here, and must be gone
  CgCudaHost *h = load_kernels();
  if (!h && strstr(err, "cannot run the C compiler"))
    return t_skip("test_cuda_shim", err);
  CHECK(h, "%s", err);
  if (!h)
    return t_finish("test_cuda_shim");
  CHECK_INT(0, count_entries(t_dir));
  CHECK(!cg_cuda_host_fn(h, "k9_absent"));
  CHECK(!cg_cuda_host_fn(h, "nnc_max"));   // __device__ functions are the program's own
  CHECK(!cg_cuda_host_fn(h, "nnc_shim_launch"));   // and so are the shim's
  CHECK(!cg_cuda_host_fn(h, "memcpy"));   // the C library's, not the program's
  if (bench) {
    for (int s = 256; s <= 1024; s *= 2) {
      run_gemm(h, s, s, s, false);   // warm the fiber stacks
      double secs = run_gemm(h, s, s, s, false);
      printf("gemm %dx%dx%d: %.3f s, %.2f GFLOP/s\n", s, s, s, secs, 2.0 * s * s * s / secs * 1e-9);
    }
    bench_compile(300);
    cg_cuda_host_free(h);
    return t_finish("test_cuda_shim");
  }
  test_elementwise(h);
  test_rational("erf", ERF_POINTS, erf_points, erf_check);
  test_rational("tanh", TANH_POINTS, tanh_points, tanh_check);
  test_barriers(h);
  run_gemm(h, 100, 130, 70, true);
  run_gemm(h, 64, 64, 16, true);
  run_gemm(h, 1, 1, 1, true);
  test_grid(h);
  test_bad_launches(h);
  CgCudaHost *h2 = load_kernels();   // a second program, loaded beside the first, is an object of its own
  CHECK(h2, "%s", err);
  if (h2) {
    unsigned grid[3] = {1, 1, 1};
    CHECK(cg_cuda_host_fn(h2, "k4_where") != cg_cuda_host_fn(h, "k4_where"));
    int out[6];
    char *aux[] = {(char *)out};
    CHECK_ERR(cg_cuda_host_launch(h, "k4_where", cg_cuda_host_fn(h2, "k4_where"), grid, 1, false, NULL, NULL, aux,
                                  NULL, 0, err, sizeof err),
              err, "not one of the program");
    test_grid(h2);
    cg_cuda_host_free(h2);
  }
  cg_cuda_host_free(h);
  test_compile_error();
  test_frames();
  test_missing_compiler();
  CHECK_INT(0, count_entries(t_dir));
  return t_finish("test_cuda_shim");
}
