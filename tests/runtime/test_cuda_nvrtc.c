// test_cuda_nvrtc.c: NVRTC through the runtime (runtime/cuda.c), without a
// GPU: a kernel compiled to PTX for sm_80 and sm_90, assembled by ptxas
// where it is installed; a CUBIN; a syntax error and its log; the target
// chosen for a device; the cache (a miss, a hit that compiles nothing, a
// damaged file compiled again, a cache that cannot be written). The cache
// directory's name from the environment is checked first, NVRTC or not;
// the rest is skipped where NVRTC is absent.
#include "../test.h"

#include <sys/stat.h>

#include "runtime.h"

// A reduction: shared memory and barriers.
static const char *kernel_src =
  "extern \"C\" __global__ void block_sum(const float *x, float *y, int n) {\n"
  "  __shared__ float s[256];\n"
  "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
  "  s[threadIdx.x] = i < n ? x[i] * SCALE : 0.0f;\n"
  "  __syncthreads();\n"
  "  for (int k = blockDim.x / 2; k > 0; k /= 2) {\n"
  "    if (threadIdx.x < k)\n"
  "      s[threadIdx.x] += s[threadIdx.x + k];\n"
  "    __syncthreads();\n"
  "  }\n"
  "  if (threadIdx.x == 0)\n"
  "    y[blockIdx.x] = s[0];\n"
  "}\n";

// The same without the macro, for the cache (which passes no options).
static const char *cached_src =
  "extern \"C\" __global__ void twice(float *x, int n) {\n"
  "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
  "  if (i < n) x[i] = fmaf(x[i], 2.0f, 1.0f);\n"
  "}\n";

static const char *const scale[] = {"-DSCALE=2.0f", NULL};

static void check_cache_dir(void) {
  char buf[512];
  setenv("NNC_CACHE_DIR", "/c/d", 1);
  setenv("XDG_CACHE_HOME", "/x", 1);
  setenv("HOME", "/h", 1);
  CHECK(rt_cuda_cache_dir(buf, sizeof buf));
  CHECK_STR("/c/d/cuda", buf);
  unsetenv("NNC_CACHE_DIR");
  CHECK(rt_cuda_cache_dir(buf, sizeof buf));
  CHECK_STR("/x/nnc/cuda", buf);
  setenv("XDG_CACHE_HOME", "", 1);
  CHECK(rt_cuda_cache_dir(buf, sizeof buf));
  CHECK_STR("/h/.cache/nnc/cuda", buf);
  unsetenv("HOME");
  unsetenv("XDG_CACHE_HOME");
  CHECK(!rt_cuda_cache_dir(buf, sizeof buf), "no directory without HOME, got %s", buf);
}

// ptxas: $CUDA_HOME/bin, /usr/local/cuda/bin, or PATH's; NULL when none.
static const char *find_ptxas(void) {
  static char path[512];
  const char *home = getenv("CUDA_HOME");
  if (home && (snprintf(path, sizeof path, "%s/bin/ptxas", home), access(path, X_OK) == 0))
    return path;
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
    return "/usr/local/cuda/bin/ptxas";
  if (system("command -v ptxas >/dev/null 2>&1") == 0)
    return "ptxas";
  return NULL;
}

static void check_ptx(RtNvrtc *n, int arch) {
  char *ptx = NULL, *log = NULL, err[1024] = "";
  size_t size = 0;
  bool ok = rt_nvrtc_compile(n, kernel_src, "block_sum.cu", arch, false, scale, &ptx, &size, &log, err, sizeof err);
  CHECK(ok, "sm_%d: %s\n%s", arch, err, log ? log : "");
  if (!ok)
    return;
  CHECK_INT((long long)strlen(ptx), (long long)size);
  CHECK_HAS(ptx, ".visible .entry block_sum(");
  char target[32];
  snprintf(target, sizeof target, ".target sm_%d", arch);
  CHECK_HAS(ptx, target);
  const char *ptxas = find_ptxas();
  if (!ptxas) {
    printf("ptxas not found: the PTX for sm_%d is not assembled\n", arch);
  } else {
    char file[64], cmd[1024];
    snprintf(file, sizeof file, "block_sum_%d.ptx", arch);
    t_write(t_path(file), ptx, size);
    snprintf(cmd, sizeof cmd, "%s -arch=sm_%d -o /dev/null %s", ptxas, arch, t_path(file));
    int rc = system(cmd);
    CHECK(rc == 0, "%s: exit status %d", cmd, rc);
  }
  free(ptx);
  free(log);
}

static void check_cubin(RtNvrtc *n) {
  char *code = NULL, *log = NULL, err[1024] = "";
  size_t size = 0;
  bool ok = rt_nvrtc_compile(n, kernel_src, "block_sum.cu", 80, true, scale, &code, &size, &log, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(size > 64 && !memcmp(code, "\177ELF", 4), "a CUBIN is an ELF file (%zu bytes)", size);
    CHECK(memmem(code, size, "block_sum", 9) != NULL, "the CUBIN names its kernel");
  }
  free(code);
  free(log);
}

// A syntax error on line 3: false, and the log points at the line.
static void check_error(RtNvrtc *n) {
  const char *bad = "extern \"C\" __global__ void k(float *x) {\n"
                    "  int i = threadIdx.x;\n"
                    "  x[i] = ;\n"
                    "}\n";
  char *out = NULL, *log = NULL, err[1024] = "";
  size_t size = 0;
  bool ok = rt_nvrtc_compile(n, bad, "bad.cu", 80, false, NULL, &out, &size, &log, err, sizeof err);
  CHECK_ERR(ok, err, "could not compile bad.cu for compute_80", "nvrtcCompileProgram", "NVRTC_ERROR_COMPILATION");
  CHECK(out == NULL && size == 0);
  CHECK(log != NULL, "no log");
  if (log)
    CHECK_HAS(log, "bad.cu(3): error");
  free(log);
  // The missing macro: the same kernel without its option.
  ok = rt_nvrtc_compile(n, kernel_src, "block_sum.cu", 80, false, NULL, &out, &size, &log, err, sizeof err);
  CHECK_ERR(ok, err, "block_sum.cu");
  CHECK(log && strstr(log, "SCALE"), "the log names the undefined SCALE: %s", log ? log : "(none)");
  free(log);
}

// Targets: a supported arch as itself; one newer than NVRTC knows as PTX of
// the newest it knows; one older than any it knows, refused.
static void check_targets(RtNvrtc *n) {
  bool cubin = false;
  CHECK_INT(80, rt_nvrtc_arch_for(n, 80, &cubin));
  CHECK(cubin);
  CHECK(rt_nvrtc_supports(n, 90));
  int far = rt_nvrtc_arch_for(n, 10000, &cubin);
  if (rt_nvrtc_supports(n, 10000)) {
    printf("this NVRTC cannot say which targets it supports: the choice of target is not checked\n");
    return;
  }
  CHECK(far >= 90 && far < 10000 && !cubin, "sm_10000 gets compute_%d (cubin %d)", far, cubin);
  CHECK_INT(0, rt_nvrtc_arch_for(n, 10, &cubin));
  char *out = NULL, *log = NULL, err[512] = "";
  size_t size = 0;
  bool ok = rt_nvrtc_compile(n, cached_src, "twice.cu", 10, true, NULL, &out, &size, &log, err, sizeof err);
  CHECK_ERR(ok, err, "cannot compile for sm_10");
  free(log);
}

// One rt_nvrtc_cached call; returns the code (the caller frees it).
static char *cached(RtNvrtc *n, const char *dir, size_t *size) {
  char *code = NULL, *log = NULL, err[1024] = "";
  bool ok = rt_nvrtc_cached(n, cached_src, "twice.cu", 80, true, dir, &code, size, &log, err, sizeof err);
  CHECK(ok, "%s", err);
  free(log);
  return code;
}

static void check_cache(RtNvrtc *n) {
  const char *dir = t_path("cache/deeper");
  char path[1200];
  rt_cuda_cache_path(n, dir, cached_src, 80, true, path, sizeof path);
  CHECK(strstr(path, "-sm_80.cubin") != NULL, "%s", path);
  // A miss compiles and writes the file; a hit compiles nothing and gives the same bytes.
  int before = rt_nvrtc_compiles(n);
  size_t size1 = 0, size2 = 0;
  char *a = cached(n, dir, &size1);
  CHECK_INT(before + 1, rt_nvrtc_compiles(n));
  struct stat st;
  CHECK(stat(path, &st) == 0, "no cache file %s", path);
  char *b = cached(n, dir, &size2);
  CHECK_INT(before + 1, rt_nvrtc_compiles(n));
  CHECK(a && b && size1 == size2 && !memcmp(a, b, size1), "the cached CUBIN differs from the compiled one");
  free(b);
  // A damaged file (one byte of the code changed; then cut short) is compiled again and rewritten.
  size_t flen = 0;
  char *f = read_file(path, &flen);
  CHECK(f && flen > size1);
  if (f) {
    f[flen - 10] ^= 0x55;
    t_write(path, f, flen);
    b = cached(n, dir, &size2);
    CHECK_INT(before + 2, rt_nvrtc_compiles(n));
    CHECK(b && size2 == size1 && !memcmp(a, b, size1), "the recompiled CUBIN differs");
    free(b);
    t_write(path, f, flen / 2);
    b = cached(n, dir, &size2);
    CHECK_INT(before + 3, rt_nvrtc_compiles(n));
    free(b);
    b = cached(n, dir, &size2);   // rewritten whole: a hit again
    CHECK_INT(before + 3, rt_nvrtc_compiles(n));
    free(b);
    free(f);
  }
  // Another source's file under this source's name is not taken for it.
  const char *other = "nnc-cuda-cache 1 nvrtc=0.0 target=sm_80 src=1 code=1 sum=0\nxy";
  t_write(path, other, strlen(other));
  b = cached(n, dir, &size2);
  CHECK_INT(before + 4, rt_nvrtc_compiles(n));
  free(b);
  // A FIFO in the file's place is not read (that would wait for a writer for
  // ever): compiled again, and the FIFO replaced by the file.
  unlink(path);
  CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
  alarm(60);
  b = cached(n, dir, &size2);
  alarm(0);
  CHECK_INT(before + 5, rt_nvrtc_compiles(n));
  CHECK(b && size2 == size1 && !memcmp(a, b, size1), "the CUBIN compiled past a FIFO differs");
  free(b);
  CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode), "%s is not a file again", path);
  // No temporary file is left behind.
  char cmd[1300];
  snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) = 1", dir);
  CHECK(system(cmd) == 0, "%s: files other than the cache file", dir);
  // A cache directory that cannot be made (under a file): compiled each time, no error.
  t_write(t_path("file"), "x", 1);
  const char *nodir = t_path("file/cache");
  b = cached(n, nodir, &size2);
  CHECK(b != NULL);
  free(b);
  b = cached(n, nodir, &size2);
  CHECK_INT(before + 7, rt_nvrtc_compiles(n));
  free(b);
  free(a);
}

int main(void) {
  check_cache_dir();
  char err[1024] = "";
  RtNvrtc *n = rt_nvrtc_open(err, sizeof err);
  if (!n) {
    CHECK_HAS(err, "NNC_NVRTC");   // the message says how to point at the library
    return t_failures ? t_finish("test_cuda_nvrtc") : t_skip("test_cuda_nvrtc", err);
  }
  int major = 0, minor = 0;
  CHECK(sscanf(rt_nvrtc_version(n), "%d.%d", &major, &minor) == 2 && major >= 11, "version %s",
        rt_nvrtc_version(n));
  printf("NVRTC %s\n", rt_nvrtc_version(n));
  t_tmpdir("nvrtc");
  check_ptx(n, 80);
  check_ptx(n, 90);
  check_cubin(n);
  check_error(n);
  check_targets(n);
  check_cache(n);
  rt_nvrtc_close(n);
  // NNC_NVRTC names the library, and a wrong one is said to be wrong.
  setenv("NNC_NVRTC", "/nonexistent/libnvrtc.so", 1);
  CHECK(rt_nvrtc_open(err, sizeof err) == NULL);
  CHECK_HAS(err, "NNC_NVRTC=/nonexistent/libnvrtc.so cannot be loaded");
  unsetenv("NNC_NVRTC");
  return t_finish("test_cuda_nvrtc");
}
