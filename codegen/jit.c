// jit.c: the target, the pass pipeline and the ORC JIT: codegen.h's
// functions on top of llvm.c's cg_build_module().
//
//   cg_compile:  target machine (host CPU and features) -> LLVM IR (llvm.c,
//                every function verified) -> module verified -> default<O2>
//                -> object file in memory -> LLJIT, which links it; a
//                program of many kernels as two modules, each on its own
//                thread up to its object file
//   cg_print_*:  the same module, optimized, printed as IR or as assembly
//
// Each phase is timed for `nnc bench`. Every hand-off of an LLVM or ORC
// object says who owns it afterwards.
#include "cg_llvm.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct CgModule {
  LLVMOrcLLJITRef jit;         // ours; owns the compiled code, the module and its context
  RtEntryFn entry;             // in the JIT's memory
  CgTimes times;
};

//
// LLVM's one-time set-up and the host
//

static pthread_once_t llvm_once = PTHREAD_ONCE_INIT;
static char *host_cpu;         // LLVM's strings, kept for the life of the process
static char *host_features;
static char *host_triple;

static void init_llvm(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
  host_cpu = LLVMGetHostCPUName();
  host_features = LLVMGetHostCPUFeatures();
  host_triple = LLVMGetDefaultTargetTriple();
  // The pass pipeline once on an empty module, here on one thread: LLVM
  // creates its process-wide pass state (timer groups, option tables) on
  // first use, before two compilations run it at once.
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("warm-up", ctx);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(m, "default<O2>", NULL, po);
  if (e)
    LLVMConsumeError(e);
  LLVMDisposePassBuilderOptions(po);
  LLVMDisposeModule(m);
  LLVMContextDispose(ctx);
}

static void init_once(void) { pthread_once(&llvm_once, init_llvm); }

const char *cg_host_cpu(void) {
  init_once();
  return host_cpu;
}

const char *cg_host_triple(void) {
  init_once();
  return host_triple;
}

// Whether "+name" is among the host's features ("+sse2,-avx512f,...").
static bool has_feature(const char *name) {
  size_t n = strlen(name);
  for (const char *s = host_features; s && *s;) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == n + 1 && s[0] == '+' && memcmp(s + 1, name, n) == 0)
      return true;
    s = e ? e + 1 : s + len;
  }
  return false;
}

int cg_vector_width(void) {
  init_once();
  if (has_feature("avx512f"))
    return 16;
  if (has_feature("avx2") || has_feature("avx"))
    return 8;
  return 4;
}

// Puts "what: LLVM's message" into err, consuming e.
static bool fail_llvm(char *err, size_t errsz, LLVMErrorRef e, const char *what) {
  char *msg = LLVMGetErrorMessage(e);   // consumes e; msg is ours
  if (err && errsz)
    snprintf(err, errsz, "%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return false;
}

static bool fail_msg(char *err, size_t errsz, const char *what, const char *msg) {
  if (err && errsz)
    snprintf(err, errsz, "%s%s%s", what, msg ? ": " : "", msg ? msg : "");
  return false;
}

//
// The target
//

// What code is made for: the host (or o->cpu), and a target machine.
typedef struct Target {
  char *triple;                // ours: LLVMDisposeMessage
  const char *cpu;             // host_cpu or o->cpu (borrowed)
  const char *features;        // host_features, or "" (the CPU's own) with o->cpu
  int vw;                      // the vector width the GEMM micro-kernels are shaped for (floats)
  int opt_level;               // 0..3
  LLVMTargetMachineRef tm;     // ours until handed to the JIT
} Target;

static void target_free(Target *t) {
  if (t->tm)
    LLVMDisposeTargetMachine(t->tm);
  LLVMDisposeMessage(t->triple);
  t->tm = NULL;
  t->triple = NULL;
}

static pthread_once_t all_once = PTHREAD_ONCE_INIT;

static void init_all(void) {   // every target LLVM was built with, for --target
  LLVMInitializeAllTargetInfos();
  LLVMInitializeAllTargets();
  LLVMInitializeAllTargetMCs();
  LLVMInitializeAllAsmPrinters();
}

// Creates the target machine with LLVM's stderr caught: LLVM takes a CPU
// name it does not know with a warning on stderr ("'foo' is not a
// recognized processor for this target") and makes generic code, so the
// warning is the only sign; *unknown tells whether it came.
static LLVMTargetMachineRef create_tm(LLVMTargetRef target, const Target *t, LLVMCodeGenOptLevel level, bool jit,
                                      bool *unknown) {
  *unknown = false;
  FILE *tmp = t->cpu != host_cpu ? tmpfile() : NULL;
  int saved = -1;
  if (tmp) {
    fflush(stderr);
    saved = dup(2);
    if (saved < 0 || dup2(fileno(tmp), 2) < 0) {
      if (saved >= 0)
        close(saved);
      saved = -1;
    }
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, level, LLVMRelocPIC,
                                                    jit ? LLVMCodeModelJITDefault : LLVMCodeModelDefault);
  if (saved >= 0) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[512];
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = 0;
    *unknown = strstr(buf, "not a recognized processor") != NULL;
    if (n && !*unknown)
      fputs(buf, stderr);   // anything else LLVM said goes where it was going
  }
  if (tmp)
    fclose(tmp);
  return tm;
}

// A target machine for o (NULL: the host at -O2). The JIT's uses PIC and
// the JIT code model, so calls into libm and the runtime reach from
// wherever the JIT puts the code. A named triple other than the host's
// makes code for that machine's "generic" CPU unless o names one.
static bool target_init(Target *t, const CgOptions *o, bool jit, char *err, size_t errsz) {
  static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess,
                                               LLVMCodeGenLevelDefault, LLVMCodeGenLevelAggressive};
  init_once();
  memset(t, 0, sizeof *t);
  t->opt_level = o ? o->opt_level : 2;
  if (t->opt_level < 0 || t->opt_level > 3)
    return fail_msg(err, errsz, "optimization level must be 0 to 3", NULL);
  char *host = LLVMGetDefaultTargetTriple();   // ours
  bool foreign = false;
  if (o && o->triple) {
    t->triple = LLVMNormalizeTargetTriple(o->triple);   // ours
    char *h = LLVMNormalizeTargetTriple(host);
    foreign = strcmp(t->triple, h) != 0;
    LLVMDisposeMessage(h);
    LLVMDisposeMessage(host);
    pthread_once(&all_once, init_all);
  } else {
    t->triple = host;
  }
  bool arm = !strncmp(t->triple, "aarch64", 7) || !strncmp(t->triple, "arm64", 5);
  t->cpu = o && o->cpu ? o->cpu : foreign ? "generic" : host_cpu;
  t->features = t->cpu == host_cpu ? host_features : "";
  // The GEMM micro-kernels' vector width: the host's; for a named CPU 8,
  // which any x86-64 runs (as pairs on SSE); NEON's 4 on ARM.
  t->vw = t->cpu == host_cpu ? cg_vector_width() : arm ? 4 : 8;
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(t->triple, &target, &msg)) {
    char what[160];
    snprintf(what, sizeof what, "LLVM has no target for '%s'", o && o->triple ? o->triple : t->triple);
    fail_msg(err, errsz, what, msg);
    LLVMDisposeMessage(msg);
    target_free(t);
    return false;
  }
  bool unknown;
  t->tm = create_tm(target, t, levels[t->opt_level], jit, &unknown);
  if (!t->tm) {
    target_free(t);
    return fail_msg(err, errsz, "LLVM cannot make a target machine for", t->cpu);
  }
  if (unknown) {
    char what[256];
    snprintf(what, sizeof what, "'%s' is not a CPU LLVM knows for %s", t->cpu, t->triple);
    target_free(t);
    return fail_msg(err, errsz, what, NULL);
  }
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(t->tm);   // ours
  bool lp64 = LLVMPointerSize(dl) == 8 && LLVMByteOrder(dl) == LLVMLittleEndian;
  LLVMDisposeTargetData(dl);
  if (!lp64) {
    char what[256];
    snprintf(what, sizeof what, "target '%s' is not a 64-bit little-endian machine, which nnc's compiled "
             "code and runtime library assume (x86_64 and aarch64 are)", t->triple);
    target_free(t);
    return fail_msg(err, errsz, what, NULL);
  }
  return true;
}

static void set_target(LLVMModuleRef m, const Target *t);

// Whether LLVM makes code for t: an empty function compiled to an object
// file in a child process, because for some CPUs a triple cannot use (a
// 32-bit i686 for x86_64) LLVM stops the whole process instead of failing
// ("64-bit code requested on a subtarget that doesn't support it"). What
// the child printed becomes the message.
static bool probe_target(const Target *t, char *err, size_t errsz) {
  int fds[2];
  if (pipe(fds) != 0)
    return true;   // no probe: the compilation itself will tell
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef m = LLVMModuleCreateWithNameInContext("probe", ctx);
    set_target(m, t);
    LLVMValueRef fn = LLVMAddFunction(m, "probe", LLVMFunctionType(LLVMVoidTypeInContext(ctx), NULL, 0, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
    LLVMBuildRetVoid(b);
    char *msg = NULL;
    LLVMMemoryBufferRef mb;
    _exit(LLVMTargetMachineEmitToMemoryBuffer(t->tm, m, LLVMObjectFile, &msg, &mb) ? 1 : 0);
  }
  close(fds[1]);
  char buf[512];
  size_t n = 0;
  ssize_t k;
  while (pid > 0 && (k = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
    n += (size_t)k;
  close(fds[0]);
  buf[n] = 0;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
    return true;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = 0;
  char what[256];
  snprintf(what, sizeof what, "LLVM cannot make code for CPU '%s' on %s", t->cpu, t->triple);
  return fail_msg(err, errsz, what, n ? buf : "it stopped");
}

bool cg_check_target(const CgOptions *o, char *err, size_t errsz) {
  Target t;
  if (!target_init(&t, o, false, err, errsz))
    return false;
  bool ok = t.cpu == host_cpu || probe_target(&t, err, errsz);
  target_free(&t);
  return ok;
}

// The module's triple and data layout, from the target machine.
static void set_target(LLVMModuleRef m, const Target *t) {
  LLVMSetTarget(m, t->triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(t->tm);   // ours: the module copies the layout
  LLVMSetModuleDataLayout(m, dl);
  LLVMDisposeTargetData(dl);
}

//
// Build and optimize
//

// Verifies the whole module, then runs default<On>, with the loop and SLP
// vectorizers from -O2 on (as clang does).
static bool optimize(LLVMModuleRef m, const Target *t, char *err, size_t errsz) {
  char *msg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    fail_msg(err, errsz, "invalid LLVM module", msg);
    LLVMDisposeMessage(msg);
    return false;
  }
  LLVMDisposeMessage(msg);   // set even when the module is valid
  char passes[16];
  snprintf(passes, sizeof passes, "default<O%d>", t->opt_level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();   // ours: disposed below
  LLVMPassBuilderOptionsSetLoopVectorization(po, t->opt_level >= 2);
  LLVMPassBuilderOptionsSetSLPVectorization(po, t->opt_level >= 2);
  LLVMPassBuilderOptionsSetLoopInterleaving(po, t->opt_level >= 2);
  LLVMPassBuilderOptionsSetLoopUnrolling(po, t->opt_level >= 1);
  LLVMErrorRef e = LLVMRunPasses(m, passes, t->tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e)
    return fail_llvm(err, errsz, e, "the LLVM pass pipeline failed");
  return true;
}

// Part `part` of nparts of p as an optimized module m, which the caller
// created empty; entry gets the entry function's name. Fills times->build
// and times->optimize.
static bool build_optimized(LLVMModuleRef m, const KProgram *p, const Target *t, int part, int nparts,
                            char *entry, size_t size, CgTimes *times, char *err, size_t errsz) {
  double t0 = now_seconds();
  set_target(m, t);
  if (!cg_build_module(m, p, t->cpu, t->features, t->vw, part, nparts, entry, size, err, errsz))
    return false;
  double t1 = now_seconds();
  times->build = t1 - t0;
  if (!optimize(m, t, err, errsz))
    return false;
  times->optimize = now_seconds() - t1;
  return true;
}

//
// The JIT
//

static void dispose_jit(LLVMOrcLLJITRef jit) {
  LLVMErrorRef e = LLVMOrcDisposeLLJIT(jit);
  if (e)
    LLVMConsumeError(e);   // nothing left to do about it
}

// An LLJIT for t's target machine (which it takes) whose code may call the
// process's functions (libm's expf, memset).
static bool jit_new(LLVMOrcLLJITRef *out, Target *t, char *err, size_t errsz) {
  LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();   // ours until LLVMOrcCreateLLJIT
  LLVMOrcJITTargetMachineBuilderRef jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(t->tm);
  t->tm = NULL;                                              // taken, and disposed, by the call above
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb);   // jb owns jtmb now
  LLVMOrcLLJITRef jit;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&jit, jb);            // consumes jb, whether it fails or not
  if (e)
    return fail_llvm(err, errsz, e, "cannot create the LLVM JIT");
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL);
  if (e) {
    dispose_jit(jit);
    return fail_llvm(err, errsz, e, "cannot give the JIT the process's symbols");
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), gen);   // the JITDylib owns gen now
  *out = jit;
  return true;
}

// One part of a program, compiled to an object file on its own thread,
// with its own context, module and target machine.
typedef struct Part {
  const KProgram *p;
  const CgOptions *o;
  int part, nparts;
  char entry[96];
  CgTimes times;               // build, optimize; codegen: the object file
  LLVMMemoryBufferRef obj;     // ours until handed to the JIT
  bool ok;
  char err[1024];
} Part;

static void *compile_part(void *arg) {
  Part *pt = arg;
  Target t;
  if (!target_init(&t, pt->o, true, pt->err, sizeof pt->err))
    return NULL;
  LLVMContextRef ctx = LLVMContextCreate();                   // ours: disposed below
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("nnc", ctx);   // ours: disposed below
  if (build_optimized(mod, pt->p, &t, pt->part, pt->nparts, pt->entry, sizeof pt->entry, &pt->times, pt->err,
                      sizeof pt->err)) {
    double t0 = now_seconds();
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(t.tm, mod, LLVMObjectFile, &msg, &pt->obj))
      fail_msg(pt->err, sizeof pt->err, "LLVM could not make machine code", msg);
    else
      pt->ok = true;
    LLVMDisposeMessage(msg);
    pt->times.codegen = now_seconds() - t0;
  }
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  target_free(&t);
  return NULL;
}

// Programs with this many kernels or more compile as two modules on two
// threads (when the host has two cores); smaller ones as one.
#define SPLIT_MIN_KERNELS 16

static int compile_parts(const KProgram *p) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  return p && p->nkernels >= SPLIT_MIN_KERNELS && cores >= 2 ? 2 : 1;
}

// The parts compile to object files in parallel; the JIT links them. The
// phases' times are the slowest part's; codegen includes linking.
CgModule *cg_compile(const KProgram *p, const CgOptions *o, char *err, size_t errsz) {
  int n = compile_parts(p);
  Part parts[2];
  pthread_t th[2];
  bool started[2] = {false, false};
  double t0 = now_seconds();
  for (int i = 0; i < n; i++) {
    parts[i] = (Part){.p = p, .o = o, .part = i, .nparts = n};
    if (i > 0)
      started[i] = pthread_create(&th[i], NULL, compile_part, &parts[i]) == 0;
  }
  compile_part(&parts[0]);
  for (int i = 1; i < n; i++) {
    if (started[i])
      pthread_join(th[i], NULL);
    else
      compile_part(&parts[i]);   // no thread: here, after part 0
  }
  double t1 = now_seconds();
  CgModule *cm = NULL;
  CgTimes times = {0};
  LLVMOrcLLJITRef jit = NULL;
  LLVMErrorRef e;
  Target t = {0};
  for (int i = 0; i < n; i++) {
    if (!parts[i].ok) {
      snprintf(err, errsz, "%s", parts[i].err);
      goto cleanup;
    }
    times.build = parts[i].times.build > times.build ? parts[i].times.build : times.build;
    times.optimize = parts[i].times.optimize > times.optimize ? parts[i].times.optimize : times.optimize;
  }
  if (!target_init(&t, o, true, err, errsz) || !jit_new(&jit, &t, err, errsz))
    goto cleanup;
  for (int i = 0; i < n; i++) {
    if ((e = LLVMOrcLLJITAddObjectFile(jit, LLVMOrcLLJITGetMainJITDylib(jit), parts[i].obj))) {
      fail_llvm(err, errsz, e, "the JIT refused the machine code");
      goto cleanup;
    }
    parts[i].obj = NULL;                                      // the JIT owns it now
  }
  LLVMOrcExecutorAddress addr = 0;
  if ((e = LLVMOrcLLJITLookup(jit, &addr, parts[0].entry))) {   // links the parts
    fail_llvm(err, errsz, e, "the JIT could not link the entry point");
    goto cleanup;
  }
  times.codegen = (t1 - t0) - times.build - times.optimize + (now_seconds() - t1);
  cm = xcalloc(1, sizeof *cm);
  cm->jit = jit;                                              // cm owns the JIT now
  jit = NULL;
  cm->entry = (RtEntryFn)(uintptr_t)addr;
  cm->times = times;
cleanup:
  for (int i = 0; i < n; i++)
    if (parts[i].obj)
      LLVMDisposeMemoryBuffer(parts[i].obj);
  if (jit)
    dispose_jit(jit);
  target_free(&t);
  return cm;
}

RtEntryFn cg_entry(CgModule *m) { return m->entry; }

CgTimes cg_times(const CgModule *m) { return m->times; }

void cg_free(CgModule *m) {
  if (!m)
    return;
  dispose_jit(m->jit);   // frees the code, the module and its context
  free(m);
}

//
// Printing
//

// The optimized module as LLVM IR, host assembly, or an object file.
typedef enum { OUT_LLVM, OUT_ASM, OUT_OBJECT } OutKind;

// mod as t's assembly or object file, written to out; false with a message.
static bool write_code(FILE *out, const Target *t, LLVMModuleRef mod, bool assembly, char *err, size_t errsz) {
  char *msg = NULL;
  LLVMMemoryBufferRef mb;
  if (LLVMTargetMachineEmitToMemoryBuffer(t->tm, mod, assembly ? LLVMAssemblyFile : LLVMObjectFile, &msg, &mb)) {
    fail_msg(err, errsz, assembly ? "LLVM could not make assembly" : "LLVM could not make an object file", msg);
    LLVMDisposeMessage(msg);
    return false;
  }
  size_t n = LLVMGetBufferSize(mb);
  bool ok = fwrite(LLVMGetBufferStart(mb), 1, n, out) == n;   // mb is ours
  LLVMDisposeMemoryBuffer(mb);
  return ok || fail_msg(err, errsz, assembly ? "could not write the assembly" : "could not write the object file",
                        NULL);
}

static bool print_module(FILE *out, const KProgram *p, const CgOptions *o, OutKind kind, char *err,
                         size_t errsz) {
  Target t;
  if (!target_init(&t, o, false, err, errsz))
    return false;
  bool ok = false;
  CgTimes times;
  char entry[96];
  LLVMContextRef ctx = LLVMContextCreate();                   // ours: disposed below
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("nnc", ctx);   // ours: disposed below
  if (!build_optimized(mod, p, &t, 0, 1, entry, sizeof entry, &times, err, errsz))
    goto cleanup;
  if (kind != OUT_LLVM) {
    if (!write_code(out, &t, mod, kind == OUT_ASM, err, errsz))
      goto cleanup;
  } else {
    char *text = LLVMPrintModuleToString(mod);                // ours
    fputs(text, out);
    LLVMDisposeMessage(text);
  }
  ok = true;
cleanup:
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  target_free(&t);
  return ok;
}

bool cg_print_llvm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz) {
  return print_module(out, p, o, OUT_LLVM, err, errsz);
}

bool cg_print_asm(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz) {
  return print_module(out, p, o, OUT_ASM, err, errsz);
}

bool cg_emit_object(FILE *out, const KProgram *p, const CgOptions *o, char *err, size_t errsz) {
  return print_module(out, p, o, OUT_OBJECT, err, errsz);
}

//
// Artifacts
//

// The model's API (nncrt/nncrt.h): PREFIX_name(params) calls
// nncrt5_name(artifact, params). sig: the return type, then the
// parameters: v void, p a pointer, i int32, l int64, d double.
const CgApiFunction cg_api[] = {
    {"create", "pipl"},      {"free", "vp"},         {"init", "vpl"},          {"load", "ipppl"},
    {"save", "ipppl"},       {"forward", "iplpp"},   {"eval", "dplppp"},       {"train_step", "dplppd"},
    {"output", "ipp"},       {"steps", "lp"},        {"error", "pp"},          {"num_tensors", "i"},
    {"tensor_name", "pi"},   {"tensor_numel", "li"}, {"read_tensor", "ipip"},  {"write_tensor", "ipip"},
    {NULL, NULL},
};

static LLVMTypeRef api_type(LLVMContextRef ctx, char c) {
  switch (c) {
  case 'v': return LLVMVoidTypeInContext(ctx);
  case 'i': return LLVMInt32TypeInContext(ctx);
  case 'l': return LLVMInt64TypeInContext(ctx);
  case 'd': return LLVMDoubleTypeInContext(ctx);
  default: return LLVMPointerType(LLVMInt8TypeInContext(ctx), 0);
  }
}

// A private constant of n bytes, aligned to align.
static LLVMValueRef blob(LLVMModuleRef mod, LLVMContextRef ctx, const char *name, const void *p, size_t n,
                         unsigned align) {
  LLVMValueRef bytes = LLVMConstStringInContext(ctx, (const char *)p, (unsigned)n, 1);
  LLVMValueRef g = LLVMAddGlobal(mod, LLVMTypeOf(bytes), name);
  LLVMSetInitializer(g, bytes);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetAlignment(g, align);
  return g;
}

// PREFIX_name for each function of the API, forwarding to nncrt5_name.
static void build_api(LLVMModuleRef mod, LLVMContextRef ctx, const char *prefix, LLVMValueRef artifact) {
  LLVMTypeRef i8p = api_type(ctx, 'p');
  LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);   // ours: disposed below
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  for (const CgApiFunction *f = cg_api; f->name; f++) {
    const char *sig = f->sig;
    int np = (int)strlen(sig) - 1;
    LLVMTypeRef params[9];
    params[0] = i8p;
    for (int j = 0; j < np; j++)
      params[j + 1] = api_type(ctx, sig[j + 1]);
    LLVMTypeRef ret = api_type(ctx, sig[0]);
    LLVMTypeRef fty = LLVMFunctionType(ret, params + 1, (unsigned)np, 0);
    LLVMTypeRef cty = LLVMFunctionType(ret, params, (unsigned)np + 1, 0);
    char name[160];
    snprintf(name, sizeof name, "nncrt%d_%s", RT_ABI, f->name);
    LLVMValueRef callee = LLVMAddFunction(mod, name, cty);
    snprintf(name, sizeof name, "%s_%s", prefix, f->name);
    LLVMValueRef fn = LLVMAddFunction(mod, name, fty);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(ctx, nounwind, 0));
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
    LLVMValueRef args[9];
    args[0] = LLVMConstBitCast(artifact, i8p);
    for (int j = 0; j < np; j++)
      args[j + 1] = LLVMGetParam(fn, (unsigned)j);
    LLVMValueRef r = LLVMBuildCall2(b, cty, callee, args, (unsigned)np + 1, "");
    LLVMSetTailCall(r, 1);
    if (sig[0] == 'v')
      LLVMBuildRetVoid(b);
    else
      LLVMBuildRet(b, r);
  }
  LLVMDisposeBuilder(b);
}

bool cg_emit_artifact(FILE *out, const CgArtifact *a, const CgOptions *o, char *err, size_t errsz) {
  if (a->info_size > UINT32_MAX || a->weights_size > UINT32_MAX)
    return fail_msg(err, errsz, "the weights are too large to embed (4 GiB at most); load them at run time instead",
                    NULL);
  Target t;
  if (!target_init(&t, o, false, err, errsz))
    return false;
  bool ok = false;
  char *msg = NULL;
  LLVMContextRef ctx = LLVMContextCreate();                   // ours: disposed below
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(a->prefix, ctx);   // ours: disposed below
  set_target(mod, &t);
  LLVMTypeRef i8p = api_type(ctx, 'p');
  LLVMValueRef entries[ENTRY_COUNT];
  for (int e = 0; e < ENTRY_COUNT; e++) {
    entries[e] = LLVMConstNull(i8p);
    if (!a->prog[e])
      continue;
    // Each program as the JIT builds and optimizes it, then moved into the
    // artifact's module (the linker renames private names that collide).
    LLVMModuleRef pm = LLVMModuleCreateWithNameInContext("nnc", ctx);   // ours until linked
    CgTimes times;
    char entry[96];
    if (!build_optimized(pm, a->prog[e], &t, 0, 1, entry, sizeof entry, &times, err, errsz)) {
      LLVMDisposeModule(pm);
      goto cleanup;
    }
    if (LLVMLinkModules2(mod, pm)) {   // destroys pm
      fail_msg(err, errsz, "LLVM could not link the entry points into one module", NULL);
      goto cleanup;
    }
    LLVMValueRef fn = LLVMGetNamedFunction(mod, entry);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    entries[e] = LLVMConstBitCast(fn, i8p);
  }
  char name[160];
  snprintf(name, sizeof name, "%s.info", a->prefix);
  LLVMValueRef info = blob(mod, ctx, name, a->info, a->info_size, 16);
  LLVMValueRef weights = LLVMConstNull(i8p);
  if (a->weights) {
    snprintf(name, sizeof name, "%s.weights", a->prefix);
    weights = LLVMConstBitCast(blob(mod, ctx, name, a->weights, a->weights_size, 64), i8p);
  }
  LLVMValueRef fields[3] = {LLVMConstBitCast(info, i8p), LLVMConstArray(i8p, entries, ENTRY_COUNT), weights};
  LLVMValueRef init = LLVMConstStructInContext(ctx, fields, 3, 0);
  snprintf(name, sizeof name, "%s.artifact", a->prefix);
  LLVMValueRef artifact = LLVMAddGlobal(mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(artifact, init);
  LLVMSetGlobalConstant(artifact, 1);
  LLVMSetLinkage(artifact, LLVMPrivateLinkage);
  LLVMSetAlignment(artifact, 8);
  build_api(mod, ctx, a->prefix, artifact);
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    fail_msg(err, errsz, "invalid LLVM module", msg);
    goto cleanup;
  }
  LLVMDisposeMessage(msg);
  msg = NULL;
  ok = write_code(out, &t, mod, false, err, errsz);
cleanup:
  LLVMDisposeMessage(msg);
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  target_free(&t);
  return ok;
}
