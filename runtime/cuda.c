// cuda.c: the runtime's access to CUDA: NVRTC, which compiles CUDA C into
// PTX or CUBIN, and the driver API, which loads it and runs it on a GPU.
//
// Both libraries are opened with dlopen and every function is looked up
// with dlsym when they open, never linked: nnc builds, runs and passes its
// tests where CUDA is absent, and an old driver that lacks a function fails
// open() with that function's name instead of crashing at the first call.
// No CUDA header is included (it may be absent): the few types and values
// used are declared here as the official headers have them (cuda.h and
// nvrtc.h of CUDA 13; none of them has changed since CUDA 11).
//
// Compiled programs are cached on disk, keyed by a hash of the source, the
// target and the NVRTC version; each cache file carries the source it was
// compiled from and a checksum of the code, so a collision or a damaged
// file is recompiled, never run.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

//
// The driver API and NVRTC, as their headers declare them
//
typedef int CUresult;                 // CUDA_SUCCESS = 0
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_NO_DEVICE = 100,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_STREAM_NON_BLOCKING = 1,
  CU_EVENT_DEFAULT = 0,
  CU_EVENT_DISABLE_TIMING = 2,
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
  CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
};

typedef struct _nvrtcProgram *nvrtcProgram;
typedef int nvrtcResult;              // NVRTC_SUCCESS = 0

//
// Small helpers
//

// s with at most max bytes written to buf (NUL-terminated), for paths in messages.
static void copy_str(char *buf, size_t bufsz, const char *s) {
  snprintf(buf, bufsz, "%s", s);
}

// Appends the formatted text to err (after what it already holds).
__attribute__((format(printf, 3, 4)))
static void err_append(char *err, size_t errsz, const char *fmt, ...) {
  if (!err || !errsz)
    return;
  size_t n = strlen(err);
  if (n + 1 >= errsz)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + n, errsz - n, fmt, ap);
  va_end(ap);
}

// FNV-1a, 64 bits, continued from h over n bytes.
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 0x100000001b3ull;
  return h;
}
#define FNV_START 0xcbf29ce484222325ull

//
// NVRTC
//

struct RtNvrtc {
  void *lib;                 // the dlopen handle (never closed: see rt_nvrtc_close)
  char path[256];            // the name it was opened by
  char version[16];          // "13.0"
  int narchs;
  int archs[64];             // the compute capabilities it compiles for (75, 80, ...), increasing; 0: unknown
  int compiles;              // programs compiled so far (the cache's tests count them)
  nvrtcResult (*Version)(int *major, int *minor);
  nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *src, const char *name, int nheaders,
                               const char *const *headers, const char *const *include_names);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *);
  nvrtcResult (*CompileProgram)(nvrtcProgram, int nopts, const char *const *opts);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetPTX)(nvrtcProgram, char *);
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
  const char *(*GetErrorString)(nvrtcResult);
  // optional (NVRTC 11.2 and later)
  nvrtcResult (*GetNumSupportedArchs)(int *);
  nvrtcResult (*GetSupportedArchs)(int *);
};

// The names libnvrtc goes by, newest first: the unversioned link, then each
// soname (CUDA 11's is libnvrtc.so.11.2).
static const char *const nvrtc_names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"};

// Opens the first of the names in dir (NULL: the loader's search path).
static void *open_nvrtc_in(const char *dir, char *path, size_t pathsz) {
  for (int i = 0; i < countof(nvrtc_names); i++) {
    if (dir)
      snprintf(path, pathsz, "%s/%s", dir, nvrtc_names[i]);
    else
      copy_str(path, pathsz, nvrtc_names[i]);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h)
      return h;
  }
  return NULL;
}

// The symbol name from lib into *fn; false when absent.
static bool sym(void *lib, const char *name, void *fn) {
  void *p = dlsym(lib, name);
  memcpy(fn, &p, sizeof p);   // a data pointer to a function pointer, as POSIX's dlsym intends
  return p != NULL;
}

RtNvrtc *rt_nvrtc_open(char *err, size_t errsz) {
  char path[256];
  void *lib = NULL;
  const char *env = getenv("NNC_NVRTC"), *home = getenv("CUDA_HOME");
  if (env && *env) {
    copy_str(path, sizeof path, env);
    if (!(lib = dlopen(env, RTLD_NOW | RTLD_LOCAL))) {
      errorf(err, errsz, "NNC_NVRTC=%s cannot be loaded: %s\n---> HINT: set NNC_NVRTC to the path of "
             "libnvrtc.so (in the CUDA toolkit's lib64), or unset it to search the usual places", env, dlerror());
      return NULL;
    }
  } else {
    lib = open_nvrtc_in(NULL, path, sizeof path);
    if (!lib)
      lib = open_nvrtc_in("/usr/local/cuda/lib64", path, sizeof path);
    if (!lib && home && *home) {
      char dir[200];
      snprintf(dir, sizeof dir, "%s/lib64", home);
      lib = open_nvrtc_in(dir, path, sizeof path);
    }
    if (!lib) {
      errorf(err, errsz, "libnvrtc.so not found (tried: libnvrtc.so, .so.13, .so.12, .so.11.2 on the library "
             "path, in /usr/local/cuda/lib64 and in $CUDA_HOME/lib64%s); install the CUDA toolkit or set "
             "NNC_NVRTC=/path/libnvrtc.so", home && *home ? "" : " (CUDA_HOME is not set)");
      return NULL;
    }
  }
  RtNvrtc *n = xcalloc(1, sizeof *n);
  n->lib = lib;
  copy_str(n->path, sizeof n->path, path);
  struct {
    const char *name;
    void *fn;
  } need[] = {
    {"nvrtcVersion", &n->Version},
    {"nvrtcCreateProgram", &n->CreateProgram},
    {"nvrtcDestroyProgram", &n->DestroyProgram},
    {"nvrtcCompileProgram", &n->CompileProgram},
    {"nvrtcGetProgramLogSize", &n->GetProgramLogSize},
    {"nvrtcGetProgramLog", &n->GetProgramLog},
    {"nvrtcGetPTXSize", &n->GetPTXSize},
    {"nvrtcGetPTX", &n->GetPTX},
    {"nvrtcGetCUBINSize", &n->GetCUBINSize},
    {"nvrtcGetCUBIN", &n->GetCUBIN},
    {"nvrtcGetErrorString", &n->GetErrorString},
  };
  for (int i = 0; i < countof(need); i++)
    if (!sym(lib, need[i].name, need[i].fn)) {
      if (i == 0)   // every NVRTC has nvrtcVersion
        errorf(err, errsz, "%s is not NVRTC (it has no nvrtcVersion)\n---> HINT: set NNC_NVRTC to the path of "
               "libnvrtc.so (in the CUDA toolkit's lib64), or unset it to search the usual places", path);
      else
        errorf(err, errsz, "%s has no %s: NVRTC older than CUDA 11.1\n---> HINT: install CUDA 11.1 or newer, or "
               "set NNC_NVRTC to a newer libnvrtc.so", path, need[i].name);
      dlclose(lib);
      free(n);
      return NULL;
    }
  sym(lib, "nvrtcGetNumSupportedArchs", &n->GetNumSupportedArchs);
  sym(lib, "nvrtcGetSupportedArchs", &n->GetSupportedArchs);
  int major = 0, minor = 0;
  n->Version(&major, &minor);
  snprintf(n->version, sizeof n->version, "%d.%d", major, minor);
  int na = 0;
  if (n->GetNumSupportedArchs && n->GetSupportedArchs && n->GetNumSupportedArchs(&na) == 0 && na > 0 &&
      na <= countof(n->archs) && n->GetSupportedArchs(n->archs) == 0)
    n->narchs = na;
  return n;
}

// NVRTC stays loaded (dlclose is not called): it keeps threads and
// handlers of its own that must not outlive its code, and a second open
// finds it loaded.
void rt_nvrtc_close(RtNvrtc *n) {
  free(n);
}

const char *rt_nvrtc_version(const RtNvrtc *n) {
  return n->version;
}

int rt_nvrtc_compiles(const RtNvrtc *n) {
  return __atomic_load_n(&n->compiles, __ATOMIC_RELAXED);
}

bool rt_nvrtc_supports(const RtNvrtc *n, int arch) {
  if (n->narchs == 0)
    return true;   // an NVRTC that cannot say: let it try
  for (int i = 0; i < n->narchs; i++)
    if (n->archs[i] == arch)
      return true;
  return false;
}

int rt_nvrtc_arch_for(const RtNvrtc *n, int arch, bool *cubin) {
  *cubin = true;
  if (rt_nvrtc_supports(n, arch))
    return arch;
  *cubin = false;
  int best = 0;
  for (int i = 0; i < n->narchs; i++)
    if (n->archs[i] <= arch && n->archs[i] > best)
      best = n->archs[i];
  return best;
}

// "NVRTC_ERROR_COMPILATION" and the like, for messages.
static const char *nvrtc_error(RtNvrtc *n, nvrtcResult r) {
  const char *s = n->GetErrorString(r);
  return s ? s : "unknown NVRTC error";
}

// The options every program is compiled with (they are part of the cache key).
static const char *const nvrtc_options[] = {"--fmad=false", "-default-device", "--std=c++17"};

// NVRTC's log of prog, malloc'd; NULL when empty.
static char *program_log(RtNvrtc *n, nvrtcProgram prog) {
  size_t len = 0;
  if (n->GetProgramLogSize(prog, &len) != 0 || len <= 1)
    return NULL;
  char *log = xmalloc(len + 1);
  if (n->GetProgramLog(prog, log) != 0) {
    free(log);
    return NULL;
  }
  log[len] = 0;
  return log;
}

bool rt_nvrtc_compile(RtNvrtc *n, const char *src, const char *name, int arch, bool cubin, const char *const *extra,
                      char **out, size_t *size, char **log, char *err, size_t errsz) {
  *out = NULL, *size = 0, *log = NULL;
  if (!rt_nvrtc_supports(n, arch)) {
    errorf(err, errsz, "NVRTC %s cannot compile for sm_%d (it knows sm_%d to sm_%d)\n---> HINT: a GPU newer "
           "than the CUDA toolkit needs a newer toolkit; one older needs an older toolkit", n->version, arch,
           n->archs[0], n->archs[n->narchs - 1]);
    return false;
  }
  const char *opts[40];
  int nopts = 0;
  char archopt[32];
  snprintf(archopt, sizeof archopt, "-arch=%s_%d", cubin ? "sm" : "compute", arch);
  opts[nopts++] = archopt;
  for (int i = 0; i < countof(nvrtc_options); i++)
    opts[nopts++] = nvrtc_options[i];
  for (int i = 0; extra && extra[i]; i++) {
    if (nopts == countof(opts)) {
      errorf(err, errsz, "rt_nvrtc_compile: more than %d extra options", countof(opts) - 4);
      return false;
    }
    opts[nopts++] = extra[i];
  }
  nvrtcProgram prog = NULL;
  nvrtcResult r = n->CreateProgram(&prog, src, name, 0, NULL, NULL);
  if (r != 0) {
    errorf(err, errsz, "nvrtcCreateProgram for %s: %s", name, nvrtc_error(n, r));
    return false;
  }
  __atomic_fetch_add(&n->compiles, 1, __ATOMIC_RELAXED);   // NVRTC compiles on several threads at once
  r = n->CompileProgram(prog, nopts, opts);
  *log = program_log(n, prog);
  if (r != 0) {
    errorf(err, errsz, "NVRTC %s could not compile %s for %s_%d: nvrtcCompileProgram: %s", n->version, name,
           cubin ? "sm" : "compute", arch, nvrtc_error(n, r));
    n->DestroyProgram(&prog);
    return false;
  }
  size_t len = 0;
  r = cubin ? n->GetCUBINSize(prog, &len) : n->GetPTXSize(prog, &len);
  char *code = NULL;
  if (r == 0) {
    code = xmalloc(len + 1);
    r = cubin ? n->GetCUBIN(prog, code) : n->GetPTX(prog, code);
  }
  n->DestroyProgram(&prog);
  if (r != 0 || len == 0) {
    free(code);
    errorf(err, errsz, "%s of %s: %s", cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX", name,
           r ? nvrtc_error(n, r) : "empty");
    return false;
  }
  code[len] = 0;   // PTX comes with its NUL; a CUBIN gets one, harmless
  *out = code;
  *size = cubin ? len : strlen(code);
  return true;
}

//
// The cache of compiled programs
//

bool rt_cuda_cache_dir(char *buf, size_t bufsz) {
  const char *d = getenv("NNC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int len;
  if (d && *d)
    len = snprintf(buf, bufsz, "%s/cuda", d);
  else if (xdg && *xdg)
    len = snprintf(buf, bufsz, "%s/nnc/cuda", xdg);
  else if (home && *home)
    len = snprintf(buf, bufsz, "%s/.cache/nnc/cuda", home);
  else
    return false;
  return len > 0 && (size_t)len < bufsz;
}

// The cache key of a program: its source, the target and the compiler.
static uint64_t cache_key(const RtNvrtc *n, const char *src, int arch, bool cubin) {
  char target[64];
  snprintf(target, sizeof target, "nvrtc %s %s_%d", n->version, cubin ? "sm" : "compute", arch);
  uint64_t h = fnv1a(FNV_START, target, strlen(target) + 1);
  for (int i = 0; i < countof(nvrtc_options); i++)
    h = fnv1a(h, nvrtc_options[i], strlen(nvrtc_options[i]) + 1);
  return fnv1a(h, src, strlen(src));
}

void rt_cuda_cache_path(const RtNvrtc *n, const char *dir, const char *src, int arch, bool cubin, char *buf,
                        size_t bufsz) {
  snprintf(buf, bufsz, "%s/%016llx-%s_%d.%s", dir, (unsigned long long)cache_key(n, src, arch, cubin),
           cubin ? "sm" : "compute", arch, cubin ? "cubin" : "ptx");
}

// A cache file: one line that says what it holds, then the source it was
// compiled from, then the code:
//   nnc-cuda-cache 1 nvrtc=13.0 target=sm_90 src=BYTES code=BYTES sum=FNV1A-OF-CODE\n
static void cache_header(char *buf, size_t bufsz, const RtNvrtc *n, int arch, bool cubin, size_t srclen,
                         const char *code, size_t len) {
  snprintf(buf, bufsz, "nnc-cuda-cache 1 nvrtc=%s target=%s_%d src=%zu code=%zu sum=%016llx\n", n->version,
           cubin ? "sm" : "compute", arch, srclen, len, (unsigned long long)fnv1a(FNV_START, code, len));
}

// The code of src from the cache file at path (malloc'd, NUL-terminated),
// or NULL when it is absent, or holds another source or target, or is damaged.
static char *cache_read(const RtNvrtc *n, const char *path, const char *src, int arch, bool cubin, size_t *size) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))   // a FIFO there would block the read for ever
    return NULL;
  size_t flen = 0;
  char *f = read_file(path, &flen);
  if (!f)
    return NULL;
  char *nl = memchr(f, '\n', flen < 256 ? flen : 256);
  size_t srclen = strlen(src), len = 0;
  unsigned long long sum = 0;
  const char *p = nl ? strstr(f, " code=") : NULL;
  if (!p || p > nl || sscanf(p, " code=%zu sum=%llx", &len, &sum) != 2)
    goto bad;
  size_t hlen = (size_t)(nl - f) + 1;
  if (len == 0 || len > flen || flen != hlen + srclen + len || memcmp(f + hlen, src, srclen) != 0)
    goto bad;
  char want[256];
  cache_header(want, sizeof want, n, arch, cubin, srclen, f + hlen + srclen, len);
  if (strlen(want) != hlen || memcmp(want, f, hlen) != 0)   // another compiler or target, or a wrong sum
    goto bad;
  char *code = xmalloc(len + 1);
  memcpy(code, f + hlen + srclen, len);
  code[len] = 0;
  free(f);
  *size = len;
  return code;
bad:
  free(f);
  return NULL;
}

// Makes dir and its parents (mode 0755); false when one cannot be made.
static bool make_dirs(const char *dir) {
  char p[1024];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
    return false;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || !*s) {
      char c = *s;
      *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return false;
      *s = c;
      if (!c)
        break;
    }
  }
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// Writes the cache file at path under a temporary name and renames it into
// place, so that a reader never sees half of one; any failure leaves no file.
static void cache_write(const RtNvrtc *n, const char *dir, const char *path, const char *src, int arch, bool cubin,
                        const char *code, size_t len) {
  if (!make_dirs(dir))
    return;
  static int serial;   // threads of one process writing the same file use different temporaries
  char tmp[1160], head[256];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld-%d", path, (long)getpid(), __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED));
  cache_header(head, sizeof head, n, arch, cubin, strlen(src), code, len);
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return;
  bool ok = fputs(head, f) >= 0 && fwrite(src, 1, strlen(src), f) == strlen(src) && fwrite(code, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0)
    unlink(tmp);
}

// rt_nvrtc_cached, which can also skip the cache's copy (refresh) and says whether it was used (*hit).
static bool cached_impl(RtNvrtc *n, const char *src, const char *name, int arch, bool cubin, const char *cachedir,
                        bool refresh, bool *hit, char **out, size_t *size, char **log, char *err, size_t errsz) {
  char dir[1024], path[1100];
  *hit = false, *log = NULL;
  bool have_dir = cachedir ? (copy_str(dir, sizeof dir, cachedir), true) : rt_cuda_cache_dir(dir, sizeof dir);
  if (have_dir) {
    rt_cuda_cache_path(n, dir, src, arch, cubin, path, sizeof path);
    if (!refresh && (*out = cache_read(n, path, src, arch, cubin, size))) {
      *hit = true;
      return true;
    }
  }
  if (!rt_nvrtc_compile(n, src, name, arch, cubin, NULL, out, size, log, err, errsz))
    return false;
  if (have_dir)
    cache_write(n, dir, path, src, arch, cubin, *out, *size);
  return true;
}

bool rt_nvrtc_cached(RtNvrtc *n, const char *src, const char *name, int arch, bool cubin, const char *cachedir,
                     char **out, size_t *size, char **log, char *err, size_t errsz) {
  bool hit;
  return cached_impl(n, src, name, arch, cubin, cachedir, false, &hit, out, size, log, err, errsz);
}

//
// The driver
//

struct RtCuda {
  void *lib;                 // libcuda's dlopen handle (never closed: see rt_cuda_close)
  int ordinal;
  CUdevice dev;
  CUcontext ctx;             // the device's primary context, retained
  CUstream step;             // the steps' launches, uploads and downloads
  CUstream copy;             // copies that overlap the steps (rt_cuda_upload_copy)
  CUevent copied;            // recorded on copy, waited for by step (rt_cuda_copies_join)
  CUevent t0, t1;            // rt_cuda_time_begin / _end
  int arch;                  // compute capability, major * 10 + minor
  int driver_version;        // cuDriverGetVersion: 13000 for CUDA 13.0
  char name[256];
  int64_t total_memory;
  bool graphs;               // the driver has stream capture and graphs
  bool capturing;
  int launches;              // launches since the last rt_cuda_sync
  char last_kernel[64];      // the name of the last of them
  CUresult (*Init)(unsigned);
  CUresult (*DriverGetVersion)(int *);
  CUresult (*GetErrorName)(CUresult, const char **);
  CUresult (*GetErrorString)(CUresult, const char **);
  CUresult (*DeviceGetCount)(int *);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetName)(char *, int, CUdevice);
  CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*DeviceTotalMem)(size_t *, CUdevice);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*DevicePrimaryCtxRelease)(CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*StreamCreate)(CUstream *, unsigned);
  CUresult (*StreamDestroy)(CUstream);
  CUresult (*StreamSynchronize)(CUstream);
  CUresult (*StreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*EventCreate)(CUevent *, unsigned);
  CUresult (*EventDestroy)(CUevent);
  CUresult (*EventRecord)(CUevent, CUstream);
  CUresult (*EventSynchronize)(CUevent);
  CUresult (*EventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*MemAlloc)(CUdeviceptr *, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemAllocHost)(void **, size_t);
  CUresult (*MemFreeHost)(void *);
  CUresult (*MemGetInfo)(size_t *, size_t *);
  CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
  CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
  CUresult (*MemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*ModuleUnload)(CUmodule);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           CUstream, void **, void **);
  // optional: graphs (CUDA 11.4 and later)
  CUresult (*StreamBeginCapture)(CUstream, int);
  CUresult (*StreamEndCapture)(CUstream, CUgraph *);
  CUresult (*GraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
  CUresult (*GraphLaunch)(CUgraphExec, CUstream);
  CUresult (*GraphExecDestroy)(CUgraphExec);
  CUresult (*GraphDestroy)(CUgraph);
};

struct RtCudaModule {
  RtCuda *c;
  CUmodule mod;
};

struct RtCudaGraph {
  CUgraph graph;
  CUgraphExec exec;
};

// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for r, into buf.
static const char *cu_error(const RtCuda *c, CUresult r, char *buf, size_t bufsz) {
  const char *name = NULL, *desc = NULL;
  if (c->GetErrorName(r, &name) != CUDA_SUCCESS || !name)
    name = NULL;
  if (c->GetErrorString(r, &desc) != CUDA_SUCCESS || !desc)
    desc = NULL;
  if (name && desc)
    snprintf(buf, bufsz, "%s (%s)", name, desc);
  else
    snprintf(buf, bufsz, "CUDA error %d", r);
  return buf;
}

// err = "call: the driver's error"; false, so that `return fail(...)` reads.
static bool fail(const RtCuda *c, CUresult r, const char *call, char *err, size_t errsz) {
  char e[200];
  errorf(err, errsz, "%s: %s", call, cu_error(c, r, e, sizeof e));
  return false;
}

// Makes c's context the calling thread's, where another was (the driver
// keeps one per thread; a thread of the executor's may not have made it its
// own yet).
static __thread CUcontext bound;   // the context bind made the calling thread's

static bool bind(RtCuda *c, char *err, size_t errsz) {
  if (bound == c->ctx)
    return true;
  CUresult r = c->CtxSetCurrent(c->ctx);
  if (r != CUDA_SUCCESS)
    return fail(c, r, "cuCtxSetCurrent", err, errsz);
  bound = c->ctx;
  return true;
}

// Looks up every driver function; false naming the first one missing.
static bool driver_symbols(RtCuda *c, const char *path, char *err, size_t errsz) {
  struct {
    const char *name;
    void *fn;
  } need[] = {
    {"cuInit", &c->Init},
    {"cuDriverGetVersion", &c->DriverGetVersion},
    {"cuGetErrorName", &c->GetErrorName},
    {"cuGetErrorString", &c->GetErrorString},
    {"cuDeviceGetCount", &c->DeviceGetCount},
    {"cuDeviceGet", &c->DeviceGet},
    {"cuDeviceGetName", &c->DeviceGetName},
    {"cuDeviceGetAttribute", &c->DeviceGetAttribute},
    {"cuDeviceTotalMem_v2", &c->DeviceTotalMem},
    {"cuDevicePrimaryCtxRetain", &c->DevicePrimaryCtxRetain},
    {"cuDevicePrimaryCtxRelease_v2", &c->DevicePrimaryCtxRelease},
    {"cuCtxSetCurrent", &c->CtxSetCurrent},
    {"cuStreamCreate", &c->StreamCreate},
    {"cuStreamDestroy_v2", &c->StreamDestroy},
    {"cuStreamSynchronize", &c->StreamSynchronize},
    {"cuStreamWaitEvent", &c->StreamWaitEvent},
    {"cuEventCreate", &c->EventCreate},
    {"cuEventDestroy_v2", &c->EventDestroy},
    {"cuEventRecord", &c->EventRecord},
    {"cuEventSynchronize", &c->EventSynchronize},
    {"cuMemAlloc_v2", &c->MemAlloc},
    {"cuMemFree_v2", &c->MemFree},
    {"cuMemAllocHost_v2", &c->MemAllocHost},
    {"cuMemFreeHost", &c->MemFreeHost},
    {"cuMemGetInfo_v2", &c->MemGetInfo},
    {"cuMemcpyHtoDAsync_v2", &c->MemcpyHtoDAsync},
    {"cuMemcpyDtoHAsync_v2", &c->MemcpyDtoHAsync},
    {"cuMemcpyDtoDAsync_v2", &c->MemcpyDtoDAsync},
    {"cuMemsetD8Async", &c->MemsetD8Async},
    {"cuModuleLoadDataEx", &c->ModuleLoadDataEx},
    {"cuModuleUnload", &c->ModuleUnload},
    {"cuModuleGetFunction", &c->ModuleGetFunction},
    {"cuLaunchKernel", &c->LaunchKernel},
  };
  for (int i = 0; i < countof(need); i++)
    if (!sym(c->lib, need[i].name, need[i].fn)) {
      if (i == 0)   // every driver has cuInit
        errorf(err, errsz, "%s is not the NVIDIA driver's libcuda (it has no cuInit)\n---> HINT: set NNC_LIBCUDA to "
               "the path of the driver's libcuda.so.1, or unset it", path);
      else
        errorf(err, errsz, "%s has no %s: the NVIDIA driver is too old\n---> HINT: install a driver for CUDA "
               "11.4 or newer", path, need[i].name);
      return false;
    }
  // CUDA 12.8 added cuEventElapsedTime_v2 and CUDA 13's header names only it.
  if (!sym(c->lib, "cuEventElapsedTime_v2", &c->EventElapsedTime) &&
      !sym(c->lib, "cuEventElapsedTime", &c->EventElapsedTime)) {
    errorf(err, errsz, "%s has no cuEventElapsedTime: the NVIDIA driver is too old", path);
    return false;
  }
  c->graphs = sym(c->lib, "cuStreamBeginCapture_v2", &c->StreamBeginCapture) &&
              sym(c->lib, "cuStreamEndCapture", &c->StreamEndCapture) &&
              sym(c->lib, "cuGraphInstantiateWithFlags", &c->GraphInstantiateWithFlags) &&
              sym(c->lib, "cuGraphLaunch", &c->GraphLaunch) &&
              sym(c->lib, "cuGraphExecDestroy", &c->GraphExecDestroy) &&
              sym(c->lib, "cuGraphDestroy", &c->GraphDestroy);
  return true;
}

// The device, its context, streams and events; false with the reason.
static bool open_device(RtCuda *c, int ordinal, char *err, size_t errsz) {
  CUresult r;
  int count = 0, major = 0, minor = 0;
  size_t total = 0;
  if ((r = c->Init(0)) == CUDA_ERROR_NO_DEVICE)
    return errorf(err, errsz, "no CUDA device (cuInit: %s)", cu_error(c, r, (char[200]){0}, 200)), false;
  if (r != CUDA_SUCCESS)
    return fail(c, r, "cuInit", err, errsz);
  c->DriverGetVersion(&c->driver_version);
  if ((r = c->DeviceGetCount(&count)) != CUDA_SUCCESS)
    return fail(c, r, "cuDeviceGetCount", err, errsz);
  if (count == 0)
    return errorf(err, errsz, "no CUDA device (cuDeviceGetCount: 0)"), false;
  if (ordinal < 0 || ordinal >= count)
    return errorf(err, errsz, "device %d does not exist (this machine has %d)", ordinal, count), false;
  if ((r = c->DeviceGet(&c->dev, ordinal)) != CUDA_SUCCESS)
    return fail(c, r, "cuDeviceGet", err, errsz);
  if ((r = c->DeviceGetName(c->name, sizeof c->name - 1, c->dev)) != CUDA_SUCCESS)
    return fail(c, r, "cuDeviceGetName", err, errsz);
  if ((r = c->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev)) != CUDA_SUCCESS ||
      (r = c->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev)) != CUDA_SUCCESS)
    return fail(c, r, "cuDeviceGetAttribute (compute capability)", err, errsz);
  c->arch = major * 10 + minor;
  if ((r = c->DeviceTotalMem(&total, c->dev)) != CUDA_SUCCESS)
    return fail(c, r, "cuDeviceTotalMem_v2", err, errsz);
  c->total_memory = (int64_t)total;
  if ((r = c->DevicePrimaryCtxRetain(&c->ctx, c->dev)) != CUDA_SUCCESS)
    return fail(c, r, "cuDevicePrimaryCtxRetain", err, errsz);
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->StreamCreate(&c->step, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS ||
      (r = c->StreamCreate(&c->copy, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS)
    return fail(c, r, "cuStreamCreate", err, errsz);
  if ((r = c->EventCreate(&c->copied, CU_EVENT_DISABLE_TIMING)) != CUDA_SUCCESS ||
      (r = c->EventCreate(&c->t0, CU_EVENT_DEFAULT)) != CUDA_SUCCESS ||
      (r = c->EventCreate(&c->t1, CU_EVENT_DEFAULT)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventCreate", err, errsz);
  return true;
}

RtCuda *rt_cuda_open(int ordinal, char *err, size_t errsz) {
  const char *env = getenv("NNC_LIBCUDA");
  const char *path = env && *env ? env : "libcuda.so.1";
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    if (env && *env)
      errorf(err, errsz, "NNC_LIBCUDA=%s cannot be loaded: %s\n---> HINT: set NNC_LIBCUDA to the path of the "
             "driver's libcuda.so.1, or unset it", env, dlerror());
    else
      errorf(err, errsz, "libcuda.so.1 not found: the NVIDIA driver is not installed\n---> HINT: install the "
             "NVIDIA driver (nvidia-smi lists the GPUs when it works), or set NNC_LIBCUDA=/path/libcuda.so.1");
    return NULL;
  }
  RtCuda *c = xcalloc(1, sizeof *c);
  c->lib = lib;
  c->ordinal = ordinal;
  if (!driver_symbols(c, path, err, errsz) || !open_device(c, ordinal, err, errsz)) {
    rt_cuda_close(c);
    return NULL;
  }
  return c;
}

// libcuda stays loaded (no dlclose): the driver does not support being
// unloaded from a process that used it.
void rt_cuda_close(RtCuda *c) {
  if (!c)
    return;
  if (c->ctx && bind(c, NULL, 0)) {
    if (c->step)
      c->StreamSynchronize(c->step);
    if (c->copy)
      c->StreamSynchronize(c->copy);
    CUevent ev[] = {c->copied, c->t0, c->t1};
    for (int i = 0; i < countof(ev); i++)
      if (ev[i])
        c->EventDestroy(ev[i]);
    if (c->step)
      c->StreamDestroy(c->step);
    if (c->copy)
      c->StreamDestroy(c->copy);
  }
  if (c->ctx)
    c->DevicePrimaryCtxRelease(c->dev);
  bound = NULL;   // a context opened later may have the same handle
  free(c);
}

int rt_cuda_arch(const RtCuda *c) {
  return c->arch;
}

const char *rt_cuda_device_name(const RtCuda *c) {
  return c->name;
}

int64_t rt_cuda_total_memory(const RtCuda *c) {
  return c->total_memory;
}

int rt_cuda_driver_version(const RtCuda *c) {
  return c->driver_version;
}

bool rt_cuda_has_graphs(const RtCuda *c) {
  return c->graphs;
}

int64_t rt_cuda_free_memory(RtCuda *c) {
  size_t avail = 0, total = 0;
  if (!bind(c, NULL, 0) || c->MemGetInfo(&avail, &total) != CUDA_SUCCESS)
    return -1;
  return (int64_t)avail;
}

//
// Modules
//

RtCudaModule *rt_cuda_load(RtCuda *c, const void *image, char *err, size_t errsz) {
  if (!bind(c, err, errsz))
    return NULL;
  char log[4096] = "";
  int opt[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *val[] = {log, (void *)(uintptr_t)sizeof log};
  CUmodule mod = NULL;
  CUresult r = c->ModuleLoadDataEx(&mod, image, countof(opt), opt, val);
  if (r != CUDA_SUCCESS) {
    fail(c, r, "cuModuleLoadDataEx", err, errsz);
    log[sizeof log - 1] = 0;
    if (log[0])
      err_append(err, errsz, "\n%s", log);
    return NULL;
  }
  RtCudaModule *m = xcalloc(1, sizeof *m);
  m->c = c;
  m->mod = mod;
  return m;
}

void *rt_cuda_function(RtCudaModule *m, const char *name) {
  CUfunction f = NULL;
  if (!bind(m->c, NULL, 0) || m->c->ModuleGetFunction(&f, m->mod, name) != CUDA_SUCCESS)
    return NULL;
  return f;
}

void rt_cuda_unload(RtCudaModule *m) {
  if (!m)
    return;
  if (bind(m->c, NULL, 0))
    m->c->ModuleUnload(m->mod);
  free(m);
}

// Writes src and NVRTC's log where the user can read them, beside the cache
// (dir/<key>-failed.cu, the log as a comment at its end); the path in path,
// or false.
static bool keep_failed(const RtNvrtc *n, const char *src, int arch, bool cubin, const char *log, char *path,
                        size_t pathsz) {
  char dir[1024];
  if (!rt_cuda_cache_dir(dir, sizeof dir) || !make_dirs(dir))
    return false;
  snprintf(path, pathsz, "%s/%016llx-failed.cu", dir, (unsigned long long)cache_key(n, src, arch, cubin));
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  fprintf(f, "%s\n/* NVRTC %s's log:\n%s*/\n", src, n->version, log ? log : "(empty)\n");
  return fclose(f) == 0;
}

RtCudaModule *rt_cuda_build(RtCuda *c, RtNvrtc *n, const char *src, const char *name, char *err, size_t errsz) {
  bool cubin, hit;
  int arch = rt_nvrtc_arch_for(n, c->arch, &cubin);
  if (arch == 0) {
    errorf(err, errsz, "NVRTC %s cannot compile for %s's sm_%d (it knows sm_%d and newer)\n---> HINT: install "
           "an older CUDA toolkit, one that still supports this GPU", n->version, c->name, c->arch, n->archs[0]);
    return NULL;
  }
  for (int tries = 0; tries < 2; tries++) {
    char *code = NULL, *log = NULL, path[1100];
    size_t size = 0;
    if (!cached_impl(n, src, name, arch, cubin, NULL, tries > 0, &hit, &code, &size, &log, err, errsz)) {
      if (log) {
        err_append(err, errsz, "\n%s", log);
        if (keep_failed(n, src, arch, cubin, log, path, sizeof path))
          err_append(err, errsz, "---> HINT: the source and the log are in %s", path);
      }
      free(log);
      return NULL;
    }
    free(log);
    RtCudaModule *m = rt_cuda_load(c, code, err, errsz);
    free(code);
    if (m || !hit)
      return m;   // a cached program the driver refused is compiled once more
  }
  return NULL;
}

//
// Memory and copies
//

uint64_t rt_cuda_alloc(RtCuda *c, int64_t bytes, char *err, size_t errsz) {
  if (!bind(c, err, errsz))
    return 0;
  CUdeviceptr p = 0;
  CUresult r = c->MemAlloc(&p, (size_t)(bytes > 0 ? bytes : 1));
  if (r != CUDA_SUCCESS) {
    char e[200];
    errorf(err, errsz, "cuMemAlloc_v2 of %lld bytes on %s: %s", (long long)bytes, c->name, cu_error(c, r, e, sizeof e));
    return 0;
  }
  return p;
}

void rt_cuda_free(RtCuda *c, uint64_t p) {
  if (p && bind(c, NULL, 0))
    c->MemFree(p);
}

void *rt_cuda_host_alloc(RtCuda *c, int64_t bytes, char *err, size_t errsz) {
  if (!bind(c, err, errsz))
    return NULL;
  void *p = NULL;
  CUresult r = c->MemAllocHost(&p, (size_t)(bytes > 0 ? bytes : 1));
  if (r != CUDA_SUCCESS) {
    char e[200];
    errorf(err, errsz, "cuMemAllocHost_v2 of %lld bytes: %s", (long long)bytes, cu_error(c, r, e, sizeof e));
    return NULL;
  }
  return p;
}

void rt_cuda_host_free(RtCuda *c, void *p) {
  if (p && bind(c, NULL, 0))
    c->MemFreeHost(p);
}

bool rt_cuda_upload(RtCuda *c, uint64_t dst, const void *src, int64_t bytes, char *err, size_t errsz) {
  if (bytes == 0)
    return true;
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->MemcpyHtoDAsync(dst, src, (size_t)bytes, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuMemcpyHtoDAsync_v2", err, errsz);
  return true;
}

bool rt_cuda_upload_copy(RtCuda *c, uint64_t dst, const void *src, int64_t bytes, char *err, size_t errsz) {
  if (bytes == 0)
    return true;
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->MemcpyHtoDAsync(dst, src, (size_t)bytes, c->copy)) != CUDA_SUCCESS)
    return fail(c, r, "cuMemcpyHtoDAsync_v2 (copy stream)", err, errsz);
  return true;
}

bool rt_cuda_copies_join(RtCuda *c, char *err, size_t errsz) {
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->EventRecord(c->copied, c->copy)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventRecord (copy stream)", err, errsz);
  if ((r = c->StreamWaitEvent(c->step, c->copied, 0)) != CUDA_SUCCESS)
    return fail(c, r, "cuStreamWaitEvent", err, errsz);
  return true;
}

bool rt_cuda_copy(RtCuda *c, uint64_t dst, uint64_t src, int64_t bytes, char *err, size_t errsz) {
  CUresult r;
  if (bytes == 0)
    return true;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->MemcpyDtoDAsync(dst, src, (size_t)bytes, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuMemcpyDtoDAsync_v2", err, errsz);
  return true;
}

bool rt_cuda_download(RtCuda *c, void *dst, uint64_t src, int64_t bytes, char *err, size_t errsz) {
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if (bytes > 0 && (r = c->MemcpyDtoHAsync(dst, src, (size_t)bytes, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuMemcpyDtoHAsync_v2", err, errsz);
  return rt_cuda_sync(c, err, errsz);
}

bool rt_cuda_memset(RtCuda *c, uint64_t dst, int64_t bytes, char *err, size_t errsz) {
  CUresult r;
  if (bytes == 0)
    return true;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->MemsetD8Async(dst, 0, (size_t)bytes, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuMemsetD8Async", err, errsz);
  return true;
}

//
// Launches, graphs and waiting
//

bool rt_cuda_launch(RtCuda *c, void *fn, const unsigned grid[3], unsigned block, void **args, const char *name,
                    char *err, size_t errsz) {
  if (!bind(c, err, errsz))
    return false;
  CUresult r = c->LaunchKernel(fn, grid[0], grid[1], grid[2], block, 1, 1, 0, c->step, args, NULL);
  if (r != CUDA_SUCCESS) {
    char e[200];
    errorf(err, errsz, "cuLaunchKernel of %s (grid %u x %u x %u, %u threads): %s", name, grid[0], grid[1], grid[2],
           block, cu_error(c, r, e, sizeof e));
    return false;
  }
  c->launches++;
  copy_str(c->last_kernel, sizeof c->last_kernel, name);
  return true;
}

bool rt_cuda_capture_begin(RtCuda *c, char *err, size_t errsz) {
  if (!c->graphs) {
    errorf(err, errsz, "this NVIDIA driver (CUDA %d.%d) has no graphs (cuStreamBeginCapture_v2 and "
           "cuGraphInstantiateWithFlags)", c->driver_version / 1000, c->driver_version % 1000 / 10);
    return false;
  }
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  // Thread-local: another thread's driver calls (allocation by a data
  // loader, say) do not break this capture.
  if ((r = c->StreamBeginCapture(c->step, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)) != CUDA_SUCCESS)
    return fail(c, r, "cuStreamBeginCapture_v2", err, errsz);
  c->capturing = true;
  return true;
}

RtCudaGraph *rt_cuda_capture_end(RtCuda *c, char *err, size_t errsz) {
  if (!c->capturing) {
    errorf(err, errsz, "rt_cuda_capture_end without rt_cuda_capture_begin");
    return NULL;
  }
  c->capturing = false;
  if (!bind(c, err, errsz))
    return NULL;
  CUgraph graph = NULL;
  CUgraphExec exec = NULL;
  CUresult r = c->StreamEndCapture(c->step, &graph);
  if (r != CUDA_SUCCESS) {
    if (graph)
      c->GraphDestroy(graph);
    fail(c, r, "cuStreamEndCapture", err, errsz);
    return NULL;
  }
  if ((r = c->GraphInstantiateWithFlags(&exec, graph, 0)) != CUDA_SUCCESS) {
    c->GraphDestroy(graph);
    fail(c, r, "cuGraphInstantiateWithFlags", err, errsz);
    return NULL;
  }
  RtCudaGraph *g = xmalloc(sizeof *g);
  g->graph = graph;   // the graph is ours until rt_cuda_graph_free; exec was made from it
  g->exec = exec;
  return g;
}

bool rt_cuda_graph_launch(RtCuda *c, RtCudaGraph *g, char *err, size_t errsz) {
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->GraphLaunch(g->exec, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuGraphLaunch", err, errsz);
  c->launches++;
  copy_str(c->last_kernel, sizeof c->last_kernel, "a graph");
  return true;
}

void rt_cuda_graph_free(RtCuda *c, RtCudaGraph *g) {
  if (!g)
    return;
  if (bind(c, NULL, 0)) {
    c->GraphExecDestroy(g->exec);
    c->GraphDestroy(g->graph);
  }
  free(g);
}

bool rt_cuda_sync(RtCuda *c, char *err, size_t errsz) {
  if (!bind(c, err, errsz))
    return false;
  CUresult r = c->StreamSynchronize(c->step);
  int n = c->launches;
  c->launches = 0;
  if (r != CUDA_SUCCESS) {
    char e[200];
    if (n > 0)
      errorf(err, errsz, "cuStreamSynchronize: %s, after %d launch%s since the last wait, the last of them %s",
             cu_error(c, r, e, sizeof e), n, n == 1 ? "" : "es", c->last_kernel);
    else
      fail(c, r, "cuStreamSynchronize", err, errsz);
    return false;
  }
  return true;
}

bool rt_cuda_time_begin(RtCuda *c, char *err, size_t errsz) {
  CUresult r;
  if (!bind(c, err, errsz))
    return false;
  if ((r = c->EventRecord(c->t0, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventRecord", err, errsz);
  return true;
}

double rt_cuda_time_end(RtCuda *c, char *err, size_t errsz) {
  CUresult r;
  float ms = 0;
  if (!bind(c, err, errsz))
    return -1;
  if ((r = c->EventRecord(c->t1, c->step)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventRecord", err, errsz), -1;
  if ((r = c->EventSynchronize(c->t1)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventSynchronize", err, errsz), -1;
  if ((r = c->EventElapsedTime(&ms, c->t0, c->t1)) != CUDA_SUCCESS)
    return fail(c, r, "cuEventElapsedTime", err, errsz), -1;
  return ms / 1000.0;
}
