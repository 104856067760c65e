// cuda_shim.c: the host shim, which runs the cuda backend's CUDA C on the
// CPU, so that the very text NVRTC compiles for a device is checked against
// the reference backend on machines without one.
//
// cg_cuda_host_load writes a header (shim_header below) and the source into
// a private temporary directory, compiles them as C with the host's C
// compiler ($NNC_CC, else cc) into a shared object, loads it and removes the
// files. The header defines CUDA's built-ins for C, and the scheduler that
// runs a launch: blocks one after another (x fastest), and in each block
// its threads either as plain calls, one after another (a kernel that never
// calls __syncthreads), or as fibers on stacks of their own, which
// __syncthreads switches between so that no thread passes a barrier before
// every thread of its block has reached it. The scheduler lives in the
// shared object beside the kernels (nnc_shim_launch): the code that runs on
// fiber stacks is all compiled there, none of it instrumented by the
// sanitizers the rest of nnc may be built with, and threadIdx, blockIdx and
// __shared__ memory are plain statics of that object.
#define _GNU_SOURCE   // dladdr
#include "codegen.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

// What the shared object exports besides the kernels.
typedef int (*ShimLaunchFn)(const char *name, CgCudaFn fn, const unsigned grid[3], unsigned block, int barrier,
                            char *arena, char *state, char *const *aux, char *step, long long B, char *err,
                            unsigned long errsz);
typedef void (*ShimReleaseFn)(void);

struct CgCudaHost {
  void *so;                    // ours: dlclose'd by cg_cuda_host_free
  ShimLaunchFn launch;         // in so
  ShimReleaseFn release;       // in so: unmaps the fiber stacks
  void *base;                  // where so is mapped (dladdr), to tell its functions from others'
  pthread_mutex_t lock;        // one launch at a time: the statics in so are the running block's
};

// CUDA's built-ins for C, and the scheduler. Everything but the kernels
// (NNC_KERNEL) and nnc_shim_* is static: each loaded program is an object of
// its own. The x86-64 and aarch64 context switches save the callee-saved
// registers on the stack being left and swap stack pointers; elsewhere
// ucontext does it (a system call per switch for the signal mask: slower).
static const char shim_header[] =
  "#include <math.h>\n"
  "#include <setjmp.h>\n"
  "#include <stdbool.h>\n"
  "#include <stddef.h>\n"
  "#include <stdint.h>\n"
  "#include <stdlib.h>\n"
  "#include <sys/mman.h>\n"
  "int snprintf(char *, size_t, const char *, ...);\n"
  "#define __global__\n"
  "#define __device__ static\n"
  "#define __host__\n"
  "#define __forceinline__ inline __attribute__((always_inline))\n"
  "#define __noinline__ __attribute__((noinline))\n"
  "#define __restrict__ restrict\n"
  "#define __shared__ static\n"
  "#define __constant__ static\n"
  "#define __launch_bounds__(...)\n"
  "#define __ldg(p) (*(p))\n"
  "#define NNC_KERNEL __attribute__((visibility(\"default\")))\n"
  "#define NNC_SHIM_EXPORT __attribute__((visibility(\"default\")))\n"
  "typedef struct uint3 { unsigned x, y, z; } uint3;\n"
  "typedef uint3 dim3;\n"
  "static uint3 threadIdx, blockIdx, blockDim, gridDim;\n"
  "typedef void (*nnc_shim_kernel_fn)(char *, char *, char *const *, char *, long long);\n"
  "enum { NNC_SHIM_STACK = 64 << 10, NNC_SHIM_GUARD = 4096 };\n"
  "enum { NNC_SHIM_RUNS, NNC_SHIM_WAITS, NNC_SHIM_DONE };\n"
  "#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(NNC_SHIM_UCONTEXT)\n"
  "typedef struct nnc_shim_fiber { void *sp; int state; } nnc_shim_fiber;\n"
  "__attribute__((visibility(\"hidden\"))) void nnc_shim_switch(void **save, void *to);\n"
  "#if defined(__x86_64__)\n"
  "__asm__(\".text\\n.globl nnc_shim_switch\\n.hidden nnc_shim_switch\\n\"\n"
  "        \".type nnc_shim_switch,@function\\nnnc_shim_switch:\\n\"\n"
  "        \"pushq %rbp\\npushq %rbx\\npushq %r12\\npushq %r13\\npushq %r14\\npushq %r15\\n\"\n"
  "        \"movq %rsp, (%rdi)\\nmovq %rsi, %rsp\\n\"\n"
  "        \"popq %r15\\npopq %r14\\npopq %r13\\npopq %r12\\npopq %rbx\\npopq %rbp\\nret\\n\"\n"
  "        \".size nnc_shim_switch, .-nnc_shim_switch\\n\");\n"
  // 6 registers, then the entry (as a return address), then a 0 above it
  "enum { NNC_SHIM_FRAME = 64, NNC_SHIM_ENTRY = 48 };\n"
  "#else\n"
  "__asm__(\".text\\n.globl nnc_shim_switch\\n.hidden nnc_shim_switch\\n\"\n"
  "        \".type nnc_shim_switch,%function\\nnnc_shim_switch:\\n\"\n"
  "        \"sub sp, sp, #160\\nstp x19, x20, [sp, #0]\\nstp x21, x22, [sp, #16]\\nstp x23, x24, [sp, #32]\\n\"\n"
  "        \"stp x25, x26, [sp, #48]\\nstp x27, x28, [sp, #64]\\nstp x29, x30, [sp, #80]\\n\"\n"
  "        \"stp d8, d9, [sp, #96]\\nstp d10, d11, [sp, #112]\\n\"\n"
  "        \"stp d12, d13, [sp, #128]\\nstp d14, d15, [sp, #144]\\n\"\n"
  "        \"mov x2, sp\\nstr x2, [x0]\\nmov sp, x1\\n\"\n"
  "        \"ldp x19, x20, [sp, #0]\\nldp x21, x22, [sp, #16]\\nldp x23, x24, [sp, #32]\\n\"\n"
  "        \"ldp x25, x26, [sp, #48]\\nldp x27, x28, [sp, #64]\\nldp x29, x30, [sp, #80]\\n\"\n"
  "        \"ldp d8, d9, [sp, #96]\\nldp d10, d11, [sp, #112]\\n\"\n"
  "        \"ldp d12, d13, [sp, #128]\\nldp d14, d15, [sp, #144]\\n\"\n"
  "        \"add sp, sp, #160\\nret\\n.size nnc_shim_switch, .-nnc_shim_switch\\n\");\n"
  "enum { NNC_SHIM_FRAME = 160, NNC_SHIM_ENTRY = 88 };\n"   // x30, which ret jumps to
  "#endif\n"
  "#define NNC_SHIM_HAND_SWITCH 1\n"
  "#else\n"
  "#include <ucontext.h>\n"
  "typedef struct nnc_shim_fiber { ucontext_t uc; int state; } nnc_shim_fiber;\n"
  "#endif\n"
  "static struct {\n"
  "  nnc_shim_kernel_fn fn;\n"
  "  char *arena, *state, *const *aux, *step;\n"
  "  long long B;\n"
  "  int fibers;\n"                   // 1: the threads run as fibers; 0: as plain calls
  "  unsigned self;\n"                // the running fiber
  "  nnc_shim_fiber *fiber;\n"        // [cap], at the start of the mapping
  "  char *map;\n"                    // the fibers, then cap stacks, each above a guard page
  "  size_t map_size;\n"
  "  unsigned cap;\n"
  "#ifdef NNC_SHIM_HAND_SWITCH\n"
  "  void *sched_sp;\n"
  "#else\n"
  "  ucontext_t sched;\n"
  "#endif\n"
  "  jmp_buf plain_exit;\n"           // where __syncthreads in a plain call goes
  "} nnc_shim;\n"
  "static void nnc_shim_yield(int state) {\n"
  "  nnc_shim_fiber *f = &nnc_shim.fiber[nnc_shim.self];\n"
  "  f->state = state;\n"
  "#ifdef NNC_SHIM_HAND_SWITCH\n"
  "  nnc_shim_switch(&f->sp, nnc_shim.sched_sp);\n"
  "#else\n"
  "  swapcontext(&f->uc, &nnc_shim.sched);\n"
  "#endif\n"
  "}\n"
  "static void __syncthreads(void) {\n"
  "  if (!nnc_shim.fibers)\n"
  "    longjmp(nnc_shim.plain_exit, 1);\n"
  "  nnc_shim_yield(NNC_SHIM_WAITS);\n"
  "}\n"
  "static void nnc_shim_fiber_main(void) {\n"
  "  nnc_shim.fn(nnc_shim.arena, nnc_shim.state, nnc_shim.aux, nnc_shim.step, nnc_shim.B);\n"
  "  nnc_shim_yield(NNC_SHIM_DONE);\n"
  "  __builtin_trap();\n"             // a finished fiber is never resumed
  "}\n"
  "static int nnc_shim_fibers_for(unsigned n) {\n"
  "  if (n <= nnc_shim.cap)\n"
  "    return 1;\n"
  "  if (nnc_shim.map)\n"
  "    munmap(nnc_shim.map, nnc_shim.map_size);\n"
  "  nnc_shim.map = NULL, nnc_shim.cap = 0;\n"
  "  size_t head = (n * sizeof(nnc_shim_fiber) + NNC_SHIM_GUARD - 1) / NNC_SHIM_GUARD * NNC_SHIM_GUARD;\n"
  "  size_t size = head + (size_t)n * (NNC_SHIM_GUARD + NNC_SHIM_STACK);\n"
  "  char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);\n"
  "  if (m == MAP_FAILED)\n"
  "    return 0;\n"
  "  for (unsigned t = 0; t < n; t++)\n"
  "    mprotect(m + head + (size_t)t * (NNC_SHIM_GUARD + NNC_SHIM_STACK), NNC_SHIM_GUARD, PROT_NONE);\n"
  "  nnc_shim.map = m, nnc_shim.map_size = size, nnc_shim.cap = n;\n"
  "  nnc_shim.fiber = (nnc_shim_fiber *)m;\n"
  "  return 1;\n"
  "}\n"
  "static char *nnc_shim_stack(unsigned t) {\n"   // the lowest address of fiber t's stack
  "  size_t head = (nnc_shim.cap * sizeof(nnc_shim_fiber) + NNC_SHIM_GUARD - 1) / NNC_SHIM_GUARD * NNC_SHIM_GUARD;\n"
  "  return nnc_shim.map + head + (size_t)t * (NNC_SHIM_GUARD + NNC_SHIM_STACK) + NNC_SHIM_GUARD;\n"
  "}\n"
  "static void nnc_shim_fiber_start(unsigned t) {\n"
  "  nnc_shim_fiber *f = &nnc_shim.fiber[t];\n"
  "  f->state = NNC_SHIM_RUNS;\n"
  "#ifdef NNC_SHIM_HAND_SWITCH\n"
  "  char *sp = nnc_shim_stack(t) + NNC_SHIM_STACK - NNC_SHIM_FRAME;\n"
  "  __builtin_memset(sp, 0, NNC_SHIM_FRAME);\n"
  "  void (*entry)(void) = nnc_shim_fiber_main;\n"
  "  __builtin_memcpy(sp + NNC_SHIM_ENTRY, &entry, sizeof entry);\n"
  "  f->sp = sp;\n"
  "#else\n"
  "  getcontext(&f->uc);\n"
  "  f->uc.uc_stack.ss_sp = nnc_shim_stack(t);\n"
  "  f->uc.uc_stack.ss_size = NNC_SHIM_STACK;\n"
  "  f->uc.uc_link = NULL;\n"
  "  makecontext(&f->uc, nnc_shim_fiber_main, 0);\n"
  "#endif\n"
  "}\n"
  "static void nnc_shim_resume(unsigned t) {\n"
  "  nnc_shim.self = t;\n"
  "  threadIdx.x = t;\n"
  "#ifdef NNC_SHIM_HAND_SWITCH\n"
  "  nnc_shim_switch(&nnc_shim.sched_sp, nnc_shim.fiber[t].sp);\n"
  "#else\n"
  "  swapcontext(&nnc_shim.sched, &nnc_shim.fiber[t].uc);\n"
  "#endif\n"
  "}\n"
  // One block's threads as fibers, in rounds: each round runs every thread
  // up to its next barrier or its end. A round where some reach a barrier
  // and others end is a barrier they never all reach.
  "static int nnc_shim_run_fibers(const char *name, char *err, unsigned long errsz) {\n"
  "  unsigned n = blockDim.x;\n"
  "  for (unsigned t = 0; t < n; t++)\n"
  "    nnc_shim_fiber_start(t);\n"
  "  for (;;) {\n"
  "    unsigned waits = 0, done = 0;\n"
  "    for (unsigned t = 0; t < n; t++) {\n"
  "      nnc_shim_resume(t);\n"
  "      if (nnc_shim.fiber[t].state == NNC_SHIM_WAITS)\n"
  "        waits++;\n"
  "      else\n"
  "        done++;\n"
  "    }\n"
  "    if (!waits)\n"
  "      return 1;\n"
  "    if (done) {\n"
  "      snprintf(err, errsz, \"kernel '%s': in block (%u, %u, %u), %u of its %u threads returned while the \"\n"
  "               \"others wait at __syncthreads(), which every thread of a block must reach (CUDA leaves this \"\n"
  "               \"undefined)\", name, blockIdx.x, blockIdx.y, blockIdx.z, done, n);\n"
  "      return 0;\n"
  "    }\n"
  "  }\n"
  "}\n"
  "NNC_SHIM_EXPORT int nnc_shim_launch(const char *name, nnc_shim_kernel_fn fn, const unsigned grid[3],\n"
  "                                    unsigned block, int barrier, char *arena, char *state, char *const *aux,\n"
  "                                    char *step, long long B, char *err, unsigned long errsz) {\n"
  "  nnc_shim.fn = fn, nnc_shim.arena = arena, nnc_shim.state = state, nnc_shim.aux = aux;\n"
  "  nnc_shim.step = step, nnc_shim.B = B, nnc_shim.fibers = barrier;\n"
  "  gridDim = (uint3){grid[0], grid[1], grid[2]};\n"
  "  blockDim = (uint3){block, 1, 1};\n"
  "  threadIdx = (uint3){0, 0, 0};\n"
  "  if (barrier && !nnc_shim_fibers_for(block)) {\n"
  "    snprintf(err, errsz, \"kernel '%s': no memory for the stacks of %u threads\", name, block);\n"
  "    return 0;\n"
  "  }\n"
  "  if (!barrier && setjmp(nnc_shim.plain_exit)) {\n"
  "    snprintf(err, errsz, \"kernel '%s': thread %u of block (%u, %u, %u) called __syncthreads(), but the \"\n"
  "             \"launch says the kernel has no barrier (the host shim ran its threads one after another)\",\n"
  "             name, threadIdx.x, blockIdx.x, blockIdx.y, blockIdx.z);\n"
  "    return 0;\n"
  "  }\n"
  "  for (unsigned z = 0; z < grid[2]; z++)\n"
  "    for (unsigned y = 0; y < grid[1]; y++)\n"
  "      for (unsigned x = 0; x < grid[0]; x++) {\n"
  "        blockIdx = (uint3){x, y, z};\n"
  "        if (barrier) {\n"
  "          if (!nnc_shim_run_fibers(name, err, errsz))\n"
  "            return 0;\n"
  "          continue;\n"
  "        }\n"
  "        for (unsigned t = 0; t < block; t++) {\n"
  "          threadIdx.x = t;\n"
  "          fn(arena, state, aux, step, B);\n"
  "        }\n"
  "      }\n"
  "  return 1;\n"
  "}\n"
  "NNC_SHIM_EXPORT void nnc_shim_release(void) {\n"
  "  if (nnc_shim.map)\n"
  "    munmap(nnc_shim.map, nnc_shim.map_size);\n"
  "  nnc_shim.map = NULL, nnc_shim.cap = 0;\n"
  "}\n"
  "#line 1 \"cuda.cu\"\n";

//
// The compiler
//

// Removes the temporary directory and whatever the compiler left in it.
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  char path[4096];
  for (struct dirent *e; d && (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      unlink(path);
    }
  if (d)
    closedir(d);
  rmdir(dir);
}

static bool write_source(const char *path, const char *src) {
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  bool ok = fputs(shim_header, f) >= 0 && fputs(src, f) >= 0;
  return fclose(f) == 0 && ok;
}

// The first errsz - 1 bytes of the compiler's messages, without trailing blank lines.
static void read_log(const char *path, char *buf, size_t size) {
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    n--;
  buf[n] = 0;
}

// Runs the C compiler on dir/cuda.c into dir/cuda.so, its messages into
// dir/cc.log; no shell: $NNC_CC is split at blanks ("ccache gcc" works) and
// each argument goes as it is.
static bool run_compiler(const char *dir, const char *so, char *err, size_t errsz) {
  const char *cc = getenv("NNC_CC") && *getenv("NNC_CC") ? getenv("NNC_CC") : "cc";
  char words[1024], src[4096], log[4096];
  char *argv[64];
  int n = 0;
  snprintf(words, sizeof words, "%s", cc);
  char *save;
  for (char *s = strtok_r(words, " \t", &save); s && n < 32; s = strtok_r(NULL, " \t", &save))
    argv[n++] = s;
  if (n == 0)
    argv[n++] = "cc";
  snprintf(src, sizeof src, "%s/cuda.c", dir);
  snprintf(log, sizeof log, "%s/cc.log", dir);
  // -z defs: a call of a function nobody defines fails here, with the compiler's messages, not at dlopen.
  // -O2: twice -O1's speed on a tiled GEMM (it vectorizes), for half again the compile time (docs/design.md).
  const char *flags[] = {"-std=gnu11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-ffp-contract=off",
                         "-fno-strict-aliasing", "-fno-math-errno", "-fstack-usage", "-w", "-Wl,-z,defs",
                         "-o", so, src, "-lm", NULL};
  for (int i = 0; flags[i]; i++)
    argv[n++] = (char *)flags[i];
  argv[n] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  fflush(NULL);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errorf(err, errsz, "the host shim cannot run the C compiler '%s' (from %s): %s\n---> HINT: install gcc "
           "(apt-get install build-essential), or name a C compiler in NNC_CC", argv[0],
           getenv("NNC_CC") && *getenv("NNC_CC") ? "NNC_CC" : "the default, cc", strerror(rc));
    return false;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      errorf(err, errsz, "the host shim lost its C compiler '%s': %s", argv[0], strerror(errno));
      return false;
    }
  char msg[8192];
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    // A program that succeeds without writing a shared object is not a C
    // compiler; dlopen would blame the file system.
    char magic[4] = {0};
    FILE *f = fopen(so, "rb");
    bool elf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "\177ELF", 4);
    if (f)
      fclose(f);
    if (elf)
      return true;
    read_log(log, msg, sizeof msg);
    errorf(err, errsz, "the C compiler '%s' (from %s) succeeded but wrote no shared object%s%s\n---> HINT: NNC_CC "
           "must name a C compiler such as gcc or clang, with any options after it", argv[0],
           getenv("NNC_CC") && *getenv("NNC_CC") ? "NNC_CC" : "the default, cc", msg[0] ? "; it printed:\n" : "",
           msg);
    return false;
  }
  read_log(log, msg, sizeof msg);
  if (!msg[0])
    snprintf(msg, sizeof msg, "(it printed nothing: is %s a C compiler?)", argv[0]);
  if (WIFEXITED(status))
    errorf(err, errsz, "the host C compiler rejected the generated CUDA C ('%s' exited with status %d; cuda.cu is "
           "the source, line for line):\n%s", argv[0], WEXITSTATUS(status), msg);
  else
    errorf(err, errsz, "the host C compiler '%s' died of signal %d on the generated CUDA C:\n%s", argv[0],
           WTERMSIG(status), msg);
  return false;
}

// The frames the compiler reported (-fstack-usage: "cuda.cu:12:6:name\t
// bytes\tstatic"): a thread of a block runs on a fiber stack of 64 KB
// (NNC_SHIM_STACK), so a function may keep at most a quarter of it, and none
// may grow its frame at run time (a variable-length array, which CUDA does
// not have either). A frame too large would hit the stack's guard page.
enum { SHIM_MAX_FRAME = 16 << 10 };

static bool check_frames(const char *dir, char *err, size_t errsz) {
  DIR *d = opendir(dir);
  bool ok = true;
  for (struct dirent *e; ok && d && (e = readdir(d));) {
    size_t n = strlen(e->d_name);
    if (n < 3 || strcmp(e->d_name + n - 3, ".su"))
      continue;
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "r");
    while (ok && f && fgets(line, sizeof line, f)) {
      char *tab = strchr(line, '\t');
      if (!tab)
        continue;
      *tab = 0;
      char *end;
      long bytes = strtol(tab + 1, &end, 10);
      bool dynamic = strstr(end, "dynamic") && !strstr(end, "bounded");
      if (bytes <= SHIM_MAX_FRAME && !dynamic)
        continue;
      char *name = strrchr(line, ':'), what[64];
      if (name)
        *name++ = 0;   // line: "cuda.cu:12:6"
      else
        name = line, line[0] = 0;
      if (dynamic)
        snprintf(what, sizeof what, "sizes its stack frame at run time");
      else
        snprintf(what, sizeof what, "keeps a stack frame of %ld bytes", bytes);
      errorf(err, errsz, "function '%s' (%s) %s; the host shim runs each thread of a block on a stack of 64 KB and "
             "allows a function %d bytes\n---> HINT: keep large per-thread arrays in __shared__ or global memory",
             name, line, what, SHIM_MAX_FRAME);
      ok = false;
    }
    if (f)
      fclose(f);
  }
  if (d)
    closedir(d);
  return ok;
}

CgCudaHost *cg_cuda_host_load(const char *src, char *err, size_t errsz) {
  static int loads;   // each load gets a file name of its own: dlopen would hand back an object of the same name
  const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char dir[2048], so[4096], name[64];
  snprintf(dir, sizeof dir, "%s/nnc-cuda-XXXXXX", tmp);
  if (!mkdtemp(dir)) {
    errorf(err, errsz, "the host shim cannot make a temporary directory in %s: %s\n---> HINT: set TMPDIR to a "
           "writable directory", tmp, strerror(errno));
    return NULL;
  }
  snprintf(name, sizeof name, "cuda-%d-%d.so", (int)getpid(), __atomic_add_fetch(&loads, 1, __ATOMIC_RELAXED));
  snprintf(so, sizeof so, "%s/%s", dir, name);
  char path[4096];
  snprintf(path, sizeof path, "%s/cuda.c", dir);
  if (!write_source(path, src)) {
    errorf(err, errsz, "the host shim cannot write %s: %s", path, strerror(errno));
    remove_dir(dir);
    return NULL;
  }
  if (!run_compiler(dir, so, err, errsz) || !check_frames(dir, err, errsz)) {
    remove_dir(dir);
    return NULL;
  }
  void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  remove_dir(dir);   // a loaded object needs no file
  if (!lib) {
    errorf(err, errsz, "the host shim cannot load the compiled CUDA C: %s\n---> HINT: if %s is on a file system "
           "mounted noexec, set TMPDIR to another directory", dlerror(), tmp);
    return NULL;
  }
  CgCudaHost *h = xcalloc(1, sizeof *h);
  h->so = lib;
  h->launch = (ShimLaunchFn)dlsym(lib, "nnc_shim_launch");
  h->release = (ShimReleaseFn)dlsym(lib, "nnc_shim_release");
  Dl_info info;
  if (!h->launch || !h->release || !dladdr((void *)h->launch, &info)) {
    errorf(err, errsz, "the compiled CUDA C lacks the host shim's functions (was NNC_CC a C compiler?)");
    dlclose(lib);
    free(h);
    return NULL;
  }
  h->base = info.dli_fbase;
  pthread_mutex_init(&h->lock, NULL);
  return h;
}

// A kernel of the program: not the shim's own functions, nor one of the C
// library's, which dlsym finds among the object's dependencies.
CgCudaFn cg_cuda_host_fn(CgCudaHost *h, const char *name) {
  void *f = dlsym(h->so, name);
  Dl_info info;
  if (!f || !strncmp(name, "nnc_shim_", 9) || !dladdr(f, &info) || info.dli_fbase != h->base)
    return NULL;
  return (CgCudaFn)f;
}

bool cg_cuda_host_launch(CgCudaHost *h, const char *name, CgCudaFn fn, const unsigned grid[3], unsigned block,
                         bool barrier, char *arena, char *state, char *const *aux, char *step, long long B,
                         char *err, size_t errsz) {
  if (block < 1 || block > 1024) {
    errorf(err, errsz, "kernel '%s': a launch of %u threads per block; CUDA allows 1 to 1024", name, block);
    return false;
  }
  if (grid[0] < 1 || grid[1] < 1 || grid[2] < 1 || grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535) {
    errorf(err, errsz, "kernel '%s': a grid of %u x %u x %u blocks; CUDA allows 1 to 2147483647 x 65535 x 65535",
           name, grid[0], grid[1], grid[2]);
    return false;
  }
  Dl_info info;
  if (!fn || !dladdr((void *)fn, &info) || info.dli_fbase != h->base) {
    errorf(err, errsz, "kernel '%s': its function is not one of the program this host shim loaded", name);
    return false;
  }
  pthread_mutex_lock(&h->lock);
  int ok = h->launch(name, fn, grid, block, barrier, arena, state, aux, step, B, err, errsz);
  pthread_mutex_unlock(&h->lock);
  return ok;
}

void cg_cuda_host_free(CgCudaHost *h) {
  if (!h)
    return;
  h->release();
  dlclose(h->so);
  pthread_mutex_destroy(&h->lock);
  free(h);
}
