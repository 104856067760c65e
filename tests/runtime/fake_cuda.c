// fake_cuda.c: a stand-in for libcuda.so.1, so that runtime/cuda.c's use
// of the driver is tested on machines without a GPU (NNC_LIBCUDA points at
// it). Device memory is host memory; a "module" is either the text
// "FAKE name name ..." or a CUBIN (an ELF file, whose symbol names it
// looks its functions up in). Kernels it runs:
//   add1(float *x, int n)   x[i] += 1 for i < n
//   fault()                 an illegal address: CUDA_ERROR_ILLEGAL_ADDRESS at the next wait, and after
// Any other kernel does nothing. FAKE_CUDA_REFUSE_ELF makes it refuse CUBINs. Built three ways: whole; -DFAKE_NO_GRAPHS
// (a driver without graphs); -DFAKE_OLD (without cuMemAlloc_v2, as before
// CUDA 3.2). FAKE_CUDA_DEVICES sets the device count (default 1).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
#define API __attribute__((visibility("default")))

enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_IMAGE = 200, NOT_FOUND = 500, ILLEGAL_ADDRESS = 700 };

typedef struct Module {
  char *image;               // the text or ELF bytes
  size_t len;
} Module;

typedef struct Fn {
  char name[64];
} Fn;

typedef struct Call {        // a captured launch of add1
  float *x;
  int n;
} Call;

typedef struct Graph {
  Call *calls;
  int n;
} Graph;

static CUresult sticky;      // the error every wait returns after a fault
static Graph *capture;       // the launches captured so far, or NULL

API CUresult cuGetErrorName(CUresult r, const char **s) {
  switch (r) {
  case OK: *s = "CUDA_SUCCESS"; return OK;
  case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return OK;
  case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return OK;
  case INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; return OK;
  case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return OK;
  case ILLEGAL_ADDRESS: *s = "CUDA_ERROR_ILLEGAL_ADDRESS"; return OK;
  }
  *s = NULL;
  return INVALID_VALUE;
}

API CUresult cuGetErrorString(CUresult r, const char **s) {
  switch (r) {
  case OK: *s = "no error"; return OK;
  case INVALID_VALUE: *s = "invalid argument"; return OK;
  case OUT_OF_MEMORY: *s = "out of memory"; return OK;
  case INVALID_IMAGE: *s = "device kernel image is invalid"; return OK;
  case NOT_FOUND: *s = "named symbol not found"; return OK;
  case ILLEGAL_ADDRESS: *s = "an illegal memory access was encountered"; return OK;
  }
  *s = NULL;
  return INVALID_VALUE;
}

API CUresult cuInit(unsigned flags) { return flags ? INVALID_VALUE : OK; }
API CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
API CUresult cuDeviceGetCount(int *n) {
  const char *e = getenv("FAKE_CUDA_DEVICES");
  *n = e ? atoi(e) : 1;
  return OK;
}
API CUresult cuDeviceGet(int *d, int i) { *d = i; return OK; }
API CUresult cuDeviceGetName(char *name, int len, int d) {
  snprintf(name, (size_t)len, "nnc fake GPU %d", d);
  return OK;
}
API CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
  (void)d;
  *v = attr == 75 ? 8 : attr == 76 ? 6 : 0;   // compute capability 8.6
  return OK;
}
API CUresult cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)1 << 30; return OK; }
static int ctx_token;
API CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) { (void)d; *ctx = &ctx_token; return OK; }
API CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return OK; }
API CUresult cuCtxSetCurrent(void *ctx) { return ctx == &ctx_token ? OK : INVALID_VALUE; }
API CUresult cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = malloc(1); return OK; }
API CUresult cuStreamDestroy_v2(void *s) { free(s); return OK; }
API CUresult cuStreamSynchronize(void *s) { (void)s; return sticky; }
API CUresult cuStreamWaitEvent(void *s, void *e, unsigned f) { (void)s, (void)e, (void)f; return sticky; }
API CUresult cuEventCreate(void **e, unsigned flags) { (void)flags; *e = malloc(1); return OK; }
API CUresult cuEventDestroy_v2(void *e) { free(e); return OK; }
API CUresult cuEventRecord(void *e, void *s) { (void)e, (void)s; return sticky; }
API CUresult cuEventSynchronize(void *e) { (void)e; return sticky; }
API CUresult cuEventElapsedTime(float *ms, void *a, void *b) { (void)a, (void)b; *ms = 1.5f; return OK; }
#ifndef FAKE_OLD
API CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  if (n > ((size_t)1 << 30))
    return OUT_OF_MEMORY;
  *p = (CUdeviceptr)(uintptr_t)calloc(1, n);
  return *p ? OK : OUT_OF_MEMORY;
}
#endif
API CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return OK; }
API CUresult cuMemAllocHost_v2(void **p, size_t n) { *p = malloc(n); return *p ? OK : OUT_OF_MEMORY; }
API CUresult cuMemFreeHost(void *p) { free(p); return OK; }
API CUresult cuMemGetInfo_v2(size_t *avail, size_t *total) { *avail = (size_t)1 << 29, *total = (size_t)1 << 30; return OK; }
API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) {
  (void)st;
  memcpy((void *)(uintptr_t)d, s, n);
  return OK;
}
API CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) {
  (void)st;
  memcpy(d, (const void *)(uintptr_t)s, n);
  return OK;
}
API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st) {
  (void)st;
  memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n);
  return OK;
}
API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *st) {
  (void)st;
  memset((void *)(uintptr_t)d, v, n);
  return OK;
}

// The bytes of a 64-bit ELF file: where its section headers end.
static size_t elf_size(const unsigned char *p) {
  uint64_t shoff;
  uint16_t entsize, num;
  memcpy(&shoff, p + 0x28, 8);
  memcpy(&entsize, p + 0x3a, 2);
  memcpy(&num, p + 0x3c, 2);
  return (size_t)shoff + (size_t)entsize * num;
}

API CUresult cuModuleLoadDataEx(void **mod, const void *image, unsigned nopt, int *opt, void **val) {
  const char *s = image;
  size_t len;
  if (!strncmp(s, "FAKE ", 5))
    len = strlen(s);
  else if (!memcmp(s, "\177ELF", 4) && s[4] == 2 && !getenv("FAKE_CUDA_REFUSE_ELF"))
    len = elf_size(image);
  else {
    for (unsigned i = 0; i < nopt; i++)   // the JIT's error log, as the driver writes it
      if (opt[i] == 5)
        snprintf(val[i], 64, "ptxas fatal   : not an image the fake driver knows");
    return INVALID_IMAGE;
  }
  Module *m = malloc(sizeof *m);
  m->image = malloc(len);
  memcpy(m->image, image, len);
  m->len = len;
  *mod = m;
  return OK;
}

API CUresult cuModuleUnload(void *mod) {
  Module *m = mod;
  free(m->image);
  free(m);
  return OK;
}

// Functions are leaked (as a real driver keeps them until the module is unloaded).
API CUresult cuModuleGetFunction(void **fn, void *mod, const char *name) {
  Module *m = mod;
  size_t n = strlen(name);
  for (size_t i = 0; i + n <= m->len; i++)
    if (!memcmp(m->image + i, name, n) && (i + n == m->len || m->image[i + n] <= ' ')) {
      static Fn fns[64];
      static int nfns;
      for (int j = 0; j < nfns; j++)
        if (!strcmp(fns[j].name, name))
          return *fn = &fns[j], OK;
      if (nfns == 64 || n >= sizeof fns[0].name)
        return OUT_OF_MEMORY;
      snprintf(fns[nfns].name, sizeof fns[nfns].name, "%s", name);
      *fn = &fns[nfns++];
      return OK;
    }
  return NOT_FOUND;
}

static void run_add1(float *x, int n) {
  for (int i = 0; i < n; i++)
    x[i] += 1;
}

API CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned shared, void *stream, void **args, void **extra) {
  (void)gy, (void)gz, (void)by, (void)bz, (void)shared, (void)stream, (void)extra;
  const Fn *f = fn;
  if (sticky)
    return sticky;
  if (bx > 1024 || gx == 0)
    return INVALID_VALUE;
  if (!strcmp(f->name, "fault")) {
    sticky = ILLEGAL_ADDRESS;
  } else if (!strcmp(f->name, "add1")) {
    float *x = (float *)(uintptr_t)*(CUdeviceptr *)args[0];
    int n = *(int *)args[1];
    if (capture) {
      capture->calls = realloc(capture->calls, (size_t)(capture->n + 1) * sizeof *capture->calls);
      capture->calls[capture->n++] = (Call){x, n};
    } else {
      run_add1(x, n);
    }
  }
  return OK;
}

#ifndef FAKE_NO_GRAPHS
API CUresult cuStreamBeginCapture_v2(void *s, int mode) {
  (void)s, (void)mode;
  if (capture)
    return INVALID_VALUE;
  capture = calloc(1, sizeof *capture);
  return OK;
}
API CUresult cuStreamEndCapture(void *s, void **graph) {
  (void)s;
  if (!capture)
    return INVALID_VALUE;
  *graph = capture;
  capture = NULL;
  return OK;
}
API CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
  (void)flags;
  *exec = graph;   // the executable graph is the graph itself
  return OK;
}
API CUresult cuGraphLaunch(void *exec, void *s) {
  (void)s;
  Graph *g = exec;
  for (int i = 0; i < g->n; i++)
    run_add1(g->calls[i].x, g->calls[i].n);
  return sticky;
}
API CUresult cuGraphExecDestroy(void *exec) { (void)exec; return OK; }
API CUresult cuGraphDestroy(void *graph) {
  Graph *g = graph;
  free(g->calls);
  free(g);
  return OK;
}
#endif
