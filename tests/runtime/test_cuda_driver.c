// test_cuda_driver.c: the runtime's use of the CUDA driver (runtime/cuda.c).
//
//   test_cuda_driver FAKE FAKE_NO_GRAPHS FAKE_OLD
//
// Without a driver, opening says so; NNC_LIBCUDA names another library.
// Then against fake_cuda.c's stand-ins for libcuda.so.1 (the three builds
// of it): devices that do not exist, memory and copies, modules, launches,
// a kernel's fault at the next wait, graphs, a driver without graphs, one
// too old to open, and rt_cuda_build with NVRTC (where it is installed)
// through the cache. Where a real driver and a GPU are present, a kernel
// compiled by rt_cuda_build runs on the GPU, one launch at a time and as a
// graph.
#include "../test.h"

#include <dlfcn.h>

#include "runtime.h"

static char err[2048];

static RtCuda *open_with(const char *lib, int ordinal) {
  setenv("NNC_LIBCUDA", lib, 1);
  err[0] = 0;
  RtCuda *c = rt_cuda_open(ordinal, err, sizeof err);
  unsetenv("NNC_LIBCUDA");
  return c;
}

static void check_missing(void) {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h) {
    printf("this machine has libcuda.so.1: its absence is not checked\n");
  } else {
    unsetenv("NNC_LIBCUDA");
    CHECK(rt_cuda_open(0, err, sizeof err) == NULL);
    CHECK_HAS(err, "libcuda.so.1 not found: the NVIDIA driver is not installed");
  }
  CHECK(open_with("/nonexistent", 0) == NULL);
  CHECK_HAS(err, "NNC_LIBCUDA=/nonexistent cannot be loaded");
}

static void check_devices(const char *fake) {
  CHECK(open_with(fake, 1) == NULL);
  CHECK_STR("device 1 does not exist (this machine has 1)", err);
  setenv("FAKE_CUDA_DEVICES", "0", 1);
  CHECK(open_with(fake, 0) == NULL);
  CHECK_STR("no CUDA device (cuDeviceGetCount: 0)", err);
  unsetenv("FAKE_CUDA_DEVICES");
}

// add1(x, n) adds 1 to x[0..n) (in fake_cuda.c, or in CUDA C for a GPU).
static bool launch_add1(RtCuda *c, void *fn, uint64_t x, int n) {
  void *args[] = {&x, &n};
  unsigned grid[3] = {(unsigned)(n + 255) / 256, 1, 1};
  bool ok = rt_cuda_launch(c, fn, grid, 256, args, "add1", err, sizeof err);
  CHECK(ok, "%s", err);
  return ok;
}

// x (n floats on the device) holds want + i at i.
static void check_values(RtCuda *c, uint64_t x, int n, float want, const char *what) {
  float *h = xmalloc((size_t)n * sizeof *h);
  bool ok = rt_cuda_download(c, h, x, n * (int64_t)sizeof *h, err, sizeof err);
  CHECK(ok, "%s: %s", what, err);
  int bad = 0;
  for (int i = 0; ok && i < n; i++)
    bad += h[i] != want + (float)i;
  CHECK(bad == 0, "%s: %d of %d values wrong (x[0] = %g, want %g)", what, bad, n, h[0], want);
  free(h);
}

// Memory, copies, launches and graphs on c, with add1 from m.
static void check_runs(RtCuda *c, void *add1) {
  enum { N = 1000 };
  uint64_t x = rt_cuda_alloc(c, N * sizeof(float), err, sizeof err);
  CHECK(x != 0, "%s", err);
  float *h = rt_cuda_host_alloc(c, N * sizeof(float), err, sizeof err);
  CHECK(h != NULL, "%s", err);
  if (!x || !h)
    return;
  for (int i = 0; i < N; i++)
    h[i] = (float)i;
  CHECK(rt_cuda_upload(c, x, h, N * sizeof(float), err, sizeof err), "%s", err);
  check_values(c, x, N, 0, "upload");
  CHECK(rt_cuda_memset(c, x, 4 * sizeof(float), err, sizeof err), "%s", err);
  float four[4];
  CHECK(rt_cuda_download(c, four, x, sizeof four, err, sizeof err), "%s", err);
  CHECK(four[0] == 0 && four[3] == 0 && four[1] == 0, "memset: %g %g %g %g", four[0], four[1], four[2], four[3]);
  CHECK(rt_cuda_upload_copy(c, x, h, N * sizeof(float), err, sizeof err), "%s", err);
  CHECK(rt_cuda_copies_join(c, err, sizeof err), "%s", err);
  CHECK(rt_cuda_time_begin(c, err, sizeof err), "%s", err);
  launch_add1(c, add1, x, N);
  double t = rt_cuda_time_end(c, err, sizeof err);
  CHECK(t >= 0, "%s", err);
  CHECK(rt_cuda_sync(c, err, sizeof err), "%s", err);
  check_values(c, x, N, 1, "add1 once");
  if (rt_cuda_has_graphs(c)) {
    CHECK(rt_cuda_capture_begin(c, err, sizeof err), "%s", err);
    launch_add1(c, add1, x, N);
    launch_add1(c, add1, x, N);
    RtCudaGraph *g = rt_cuda_capture_end(c, err, sizeof err);
    CHECK(g != NULL, "%s", err);
    if (g) {
      for (int i = 0; i < 3; i++)
        CHECK(rt_cuda_graph_launch(c, g, err, sizeof err), "%s", err);
      check_values(c, x, N, 7, "a graph of two add1, launched 3 times");
      rt_cuda_graph_free(c, g);
    }
  }
  CHECK(rt_cuda_capture_end(c, err, sizeof err) == NULL);
  CHECK_HAS(err, "without rt_cuda_capture_begin");
  rt_cuda_host_free(c, h);
  rt_cuda_free(c, x);
  CHECK(rt_cuda_alloc(c, (int64_t)1 << 50, err, sizeof err) == 0);
  CHECK_HAS(err, "cuMemAlloc_v2 of 1125899906842624 bytes on");
  CHECK_HAS(err, "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
}

static void check_fake(const char *fake) {
  RtCuda *c = open_with(fake, 0);
  CHECK(c != NULL, "%s", err);
  if (!c)
    return;
  CHECK_STR("nnc fake GPU 0", rt_cuda_device_name(c));
  CHECK_INT(86, rt_cuda_arch(c));
  CHECK_INT((long long)1 << 30, (long long)rt_cuda_total_memory(c));
  CHECK_INT((long long)1 << 29, (long long)rt_cuda_free_memory(c));
  CHECK_INT(13000, rt_cuda_driver_version(c));
  CHECK(rt_cuda_has_graphs(c));
  // Modules: one the driver takes, one it refuses with its JIT log.
  RtCudaModule *m = rt_cuda_load(c, "FAKE add1 fault", err, sizeof err);
  CHECK(m != NULL, "%s", err);
  CHECK(rt_cuda_load(c, "garbage", err, sizeof err) == NULL);
  CHECK_HAS(err, "cuModuleLoadDataEx: CUDA_ERROR_INVALID_IMAGE (device kernel image is invalid)\nptxas fatal");
  if (!m)
    goto out;
  CHECK(rt_cuda_function(m, "nope") == NULL);
  void *add1 = rt_cuda_function(m, "add1"), *fault = rt_cuda_function(m, "fault");
  CHECK(add1 && fault);
  check_runs(c, add1);
  // A launch the driver refuses at once, and a kernel's fault, seen at the next wait.
  uint64_t dummy = 0;
  void *args[] = {&dummy};
  CHECK_ERR(rt_cuda_launch(c, add1, (unsigned[3]){1, 1, 1}, 2048, args, "too_wide", err, sizeof err), err,
            "cuLaunchKernel of too_wide (grid 1 x 1 x 1, 2048 threads): CUDA_ERROR_INVALID_VALUE (invalid argument)");
  CHECK(rt_cuda_launch(c, fault, (unsigned[3]){1, 1, 1}, 32, args, "fault", err, sizeof err), "%s", err);
  CHECK_ERR(rt_cuda_sync(c, err, sizeof err), err,
            "cuStreamSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered), after 1 "
            "launch since the last wait, the last of them fault");
  rt_cuda_unload(m);
out:
  rt_cuda_close(c);
}

static void check_no_graphs(const char *fake) {
  RtCuda *c = open_with(fake, 0);
  CHECK(c != NULL, "%s", err);
  if (!c)
    return;
  CHECK(!rt_cuda_has_graphs(c));
  RtCudaModule *m = rt_cuda_load(c, "FAKE add1", err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (m)
    check_runs(c, rt_cuda_function(m, "add1"));
  CHECK_ERR(rt_cuda_capture_begin(c, err, sizeof err), err, "this NVIDIA driver (CUDA 13.0) has no graphs");
  rt_cuda_unload(m);
  rt_cuda_close(c);
}

static void check_old(const char *fake) {
  CHECK(open_with(fake, 0) == NULL);
  CHECK_HAS(err, "has no cuMemAlloc_v2: the NVIDIA driver is too old");
}

static const char *add1_src =
  "extern \"C\" __global__ void add1(float *x, int n) {\n"
  "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
  "  if (i < n)\n"
  "    x[i] += 1.0f;\n"
  "}\n";

// rt_cuda_build: compiled once for the device's arch, then from the cache;
// a program NVRTC refuses gives its log and where the source was kept.
static void check_build(RtCuda *c, RtNvrtc *n, bool real) {
  int before = rt_nvrtc_compiles(n);
  RtCudaModule *m = rt_cuda_build(c, n, add1_src, "add1.cu", err, sizeof err);
  CHECK(m != NULL, "%s", err);
  void *add1 = m ? rt_cuda_function(m, "add1") : NULL;
  CHECK(add1 != NULL);
  int once = rt_nvrtc_compiles(n);
  CHECK(once <= before + 1);
  RtCudaModule *m2 = rt_cuda_build(c, n, add1_src, "add1.cu", err, sizeof err);
  CHECK(m2 != NULL, "%s", err);
  CHECK_INT(once, rt_nvrtc_compiles(n));
  rt_cuda_unload(m2);
  if (!real) {
    // A cached CUBIN the driver refuses is compiled once more, then the driver's error.
    setenv("FAKE_CUDA_REFUSE_ELF", "1", 1);
    CHECK(rt_cuda_build(c, n, add1_src, "add1.cu", err, sizeof err) == NULL);
    CHECK_HAS(err, "cuModuleLoadDataEx: CUDA_ERROR_INVALID_IMAGE");
    CHECK_INT(once + 1, rt_nvrtc_compiles(n));
    unsetenv("FAKE_CUDA_REFUSE_ELF");
  }
  if (real && add1)
    check_runs(c, add1);
  rt_cuda_unload(m);
  CHECK(rt_cuda_build(c, n, "extern \"C\" __global__ void k() { undeclared(); }\n", "bad.cu", err,
                      sizeof err) == NULL);
  CHECK_HAS(err, "could not compile bad.cu");
  CHECK_HAS(err, "bad.cu(1): error");
  CHECK_HAS(err, "---> HINT: the source and the log are in ");
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: test_cuda_driver FAKE FAKE_NO_GRAPHS FAKE_OLD\n");
    return 2;
  }
  t_tmpdir("cuda");
  setenv("NNC_CACHE_DIR", t_path("cache"), 1);
  check_missing();
  check_devices(argv[1]);
  check_fake(argv[1]);
  check_no_graphs(argv[2]);
  check_old(argv[3]);
  RtNvrtc *n = rt_nvrtc_open(err, sizeof err);
  if (!n) {
    printf("skipped rt_cuda_build: %s\n", err);
  } else {
    RtCuda *c = open_with(argv[1], 0);
    if (c) {
      check_build(c, n, false);
      rt_cuda_close(c);
    }
  }
  // A real GPU, where there is one.
  RtCuda *gpu = rt_cuda_open(0, err, sizeof err);
  if (!gpu) {
    printf("no GPU: %s\n", err);
  } else if (!n) {
    printf("a GPU, but no NVRTC: kernels are not run\n");
    rt_cuda_close(gpu);
  } else {
    printf("GPU: %s, sm_%d, %.1f GiB, driver %d, NVRTC %s\n", rt_cuda_device_name(gpu), rt_cuda_arch(gpu),
           (double)rt_cuda_total_memory(gpu) / (1 << 30), rt_cuda_driver_version(gpu), rt_nvrtc_version(n));
    check_build(gpu, n, true);
    rt_cuda_close(gpu);
  }
  if (n)
    rt_nvrtc_close(n);
  return t_finish("test_cuda_driver");
}
