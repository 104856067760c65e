// test_cuda_models.c: the CUDA C of every entry point of every model in
// models/ (and the tests' own models; cnn and logreg_by_hand unfused
// too, which makes a kernel of every op they have), at a ragged batch,
// compiles with NVRTC for sm_80 (and for sm_90 too where it runs unfused
// as well, cnn and logreg_by_hand: every op's kernel for both, while the
// large unrolled models pay one compile a program), and ptxas assembles it
// (NVRTC's own, into a cubin, where it can: see fast_cubin);
// a kernel with a syntax error is reported by its name with NVRTC's log;
// a launch CUDA cannot run is refused when the code is generated. Skips
// where NVRTC is absent (ptxas alone: that part skips, saying so).
#include "../test.h"
#include "../load_model.h"
#include "cuda_gen.h"

#include <dirent.h>
#include <pthread.h>

static const char *ptxas;   // NULL: none

static const char *find_ptxas(void) {
  static char path[512];
  const char *home = getenv("CUDA_HOME");
  if (home) {
    snprintf(path, sizeof path, "%s/bin/ptxas", home);
    if (access(path, X_OK) == 0)
      return path;
  }
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
    return "/usr/local/cuda/bin/ptxas";
  return system("command -v ptxas >/dev/null 2>&1") == 0 ? "ptxas" : NULL;
}

// ptxas on the PTX text: exit 0.
static bool assemble(const char *ptx, size_t size, int arch, char *why, size_t whysz) {
  char in[64], log[64];
  snprintf(in, sizeof in, "k%d.ptx", arch);
  snprintf(log, sizeof log, "ptxas%d.log", arch);
  snprintf(in, sizeof in, "%s", t_path(in));
  snprintf(log, sizeof log, "%s", t_path(log));
  t_write(in, ptx, size);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' -arch=sm_%d -o /dev/null '%s' >'%s' 2>&1", ptxas, arch, in, log);
  int rc = system(cmd);
  if (rc != 0) {
    size_t n;
    char *text = read_file(log, &n);
    snprintf(why, whysz, "%s", text ? text : "(no output)");
    free(text);
  }
  return rc == 0;
}

// One architecture's compile and assembly, on a thread of its own (the
// two run side by side).
typedef struct Job {
  RtNvrtc *nv;
  const CgCuda *cu;
  const char *file;
  int arch;
  bool compiled, assembled;
  char *ptx, *log;     // the PTX, or with fast_cubin the cubin
  size_t size;
  char err[1024], why[8192];
} Job;

// Where NVRTC has --Ofast-compile (12.8 and later), it is asked for the
// cubin, which its own ptxas assembles, with the least optimization: the
// same checks of the C and of its assembly in a fifth of the time (lstm's
// training step 13.9 -> 2.4 s). Older ones give the PTX, for ptxas.
static bool fast_cubin;

static void *run_job(void *arg) {
  Job *j = arg;
  static const char *const fast[] = {"--Ofast-compile=max", NULL};
  j->compiled = rt_nvrtc_compile(j->nv, j->cu->source, j->file, j->arch, fast_cubin, fast_cubin ? fast : NULL,
                                 &j->ptx, &j->size, &j->log, j->err, sizeof j->err);
  j->assembled = j->compiled && (fast_cubin || !ptxas || assemble(j->ptx, j->size, j->arch, j->why, sizeof j->why));
  return NULL;
}

static int programs;
static bool both_arches;   // sm_90 besides sm_80

static void check_program(RtNvrtc *nv, const char *label, const KProgram *p) {
  char err[4096], file[64];
  CgCuda *cu = cg_cuda_generate(p, err, sizeof err);
  if (!CHECK(cu, "%s: no CUDA C: %s", label, err))
    return;
  snprintf(file, sizeof file, "%s.cu", ir_entry_name(p->entry));
  Job jobs[2] = {{.nv = nv, .cu = cu, .file = file, .arch = 80}, {.nv = nv, .cu = cu, .file = file, .arch = 90}};
  int njobs = both_arches ? 2 : 1;
  pthread_t t;
  bool threaded = njobs == 2 && pthread_create(&t, NULL, run_job, &jobs[1]) == 0;
  run_job(&jobs[0]);
  if (threaded)
    pthread_join(t, NULL);
  else if (njobs == 2)
    run_job(&jobs[1]);
  for (int i = 0; i < njobs; i++) {
    Job *j = &jobs[i];
    if (!j->compiled) {
      char why[8192];
      cg_cuda_explain(cu->source, j->log, why, sizeof why);
      FAIL("%s, sm_%d: NVRTC: %s\n%s\n", label, j->arch, j->err, why);
    } else {
      for (int k = 0; k < cu->nlaunch; k++) {   // every launch's function is in the PTX (the cubin's symbols)
        char entry[96];
        int len = fast_cubin ? snprintf(entry, sizeof entry, "%s", cu->launch[k].name) + 1   // (with its NUL)
                             : snprintf(entry, sizeof entry, ".entry %s(", cu->launch[k].name);
        CHECK(memmem(j->ptx, j->size, entry, (size_t)len), "%s, sm_%d: no %s in the %s", label, j->arch, entry,
              fast_cubin ? "cubin" : "PTX");
      }
      CHECK(j->assembled, "%s, sm_%d: ptxas: %s", label, j->arch, j->why);
    }
    free(j->ptx);
    free(j->log);
  }
  programs++;
  cg_cuda_free(cu);
}

// Every entry point fused (what the backend runs), and with unfused too
// (one kernel per graph node: every op's kernel on its own).
static void check_model(RtNvrtc *nv, const char *path, bool unfused) {
  Arena *a = arena_new();
  Model *m = t_load_model(path, a);
  if (!CHECK(m, "%s does not compile", path)) {
    arena_free(a);
    return;
  }
  unsigned entries = pass_entries(m);
  double t0 = now_seconds();
  for (int fuse = 1; fuse >= !unfused; fuse--)
    for (int e = 0; e < ENTRY_COUNT; e++) {
      if (!(entries & (1u << e)))
        continue;
      CompileOptions co = {7, fuse, NULL, false};   // a batch that is no multiple of any tile
      Compilation *c = pass_compile(m, e, &co);
      char label[600];
      snprintf(label, sizeof label, "%s %s%s", path, ir_entry_name(e), fuse ? "" : " (unfused)");
      check_program(nv, label, c->prog);
      pass_compilation_free(c);
    }
  printf("%s: compiled (%.1f s)\n", path, now_seconds() - t0);
  arena_free(a);
}

// A generated kernel with a syntax error: NVRTC's log, and the kernel
// named.
static void check_bad_kernel(RtNvrtc *nv) {
  Arena *a = arena_new();
  Model *m = t_load_model("models/mlp.nn", a);
  if (!CHECK(m, "models/mlp.nn does not compile (run from the source tree)")) {
    arena_free(a);
    return;
  }
  CompileOptions co = {7, true, NULL, false};
  Compilation *c = pass_compile(m, ENTRY_TRAIN, &co);
  char err[4096];
  CgCuda *cu = cg_cuda_generate(c->prog, err, sizeof err);
  const char *k = cu ? strstr(cu->source, "NNC_KERNEL void k1_") : NULL;
  if (CHECK(k, "no kernel 1 in mlp's train step")) {
    const char *body = strchr(k, '{');
    StrBuf bad = {0};   // a statement that is not C, in kernel 1's body
    sb_printf(&bad, "%.*s\n  float oops = ;\n%s", (int)(body + 1 - cu->source), cu->source, body + 1);
    char *ptx = NULL, *log = NULL, why[8192];
    size_t size;
    bool ok = rt_nvrtc_compile(nv, bad.data, "train_step.cu", 80, false, NULL, &ptx, &size, &log, err, sizeof err);
    CHECK(!ok, "a syntax error compiled");
    cg_cuda_explain(bad.data, log, why, sizeof why);
    char name[80];
    snprintf(name, sizeof name, "kernel '%.*s'", (int)strcspn(k + 16, "("), k + 16);
    CHECK_HAS(why, name);
    CHECK_HAS(why, "error");
    free(ptx);
    free(log);
    sb_free(&bad);
  }
  cg_cuda_free(cu);
  pass_compilation_free(c);
  arena_free(a);
}

// A launch CUDA cannot run fails the generation, naming the kernel.
static void check_bad_launch(void) {
  char err[512];
  CudaGen g;
  cuda_gen_init(&g, NULL, 8, err, sizeof err);
  cuda_launch(&g, 3, "k3_wide", (KExtent){100, true}, 1, 1, 1, 2048, false);
  CHECK(g.failed, "a launch of 2048 threads was accepted");
  CHECK_HAS(err, "k3_wide");
  CHECK_HAS(err, "2048 threads");
  cuda_gen_free(&g);
  cuda_gen_init(&g, NULL, 8, err, sizeof err);
  cuda_launch(&g, 4, "k4_tall", (KExtent){1, false}, 1, 70000, 1, 256, false);
  CHECK(g.failed, "a grid of 70000 blocks in y was accepted");
  CHECK_HAS(err, "k4_tall");
  cuda_gen_free(&g);
}

// With arguments, those .nn files only (CTest runs resnet18 apart, so
// that the two run side by side).
int main(int argc, char **argv) {
  check_bad_launch();
  char err[1024];
  RtNvrtc *nv = rt_nvrtc_open(err, sizeof err);
  if (!nv)
    return t_skip("test_cuda_models", err);
  t_tmpdir("cuda_nvrtc");
  int major = 0, minor = 0;
  sscanf(rt_nvrtc_version(nv), "%d.%d", &major, &minor);
  fast_cubin = major * 100 + minor >= 1208;
  ptxas = fast_cubin ? NULL : find_ptxas();
  if (!fast_cubin && !ptxas)
    printf("ptxas not found: the PTX is compiled but not assembled (install the CUDA toolkit's ptxas)\n");
  printf("NVRTC %s, %s\n", rt_nvrtc_version(nv),
         fast_cubin ? "cubins by its own ptxas (--Ofast-compile=max)" : ptxas ? ptxas : "no ptxas");
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      check_model(nv, argv[i], false);
    printf("%d programs compiled (for sm_80; cnn and logreg_by_hand for sm_90 too)\n", programs);
    rt_nvrtc_close(nv);
    return t_finish("test_cuda_models");
  }
  check_bad_kernel(nv);
  DIR *dir = opendir("models");
  struct dirent *de;
  char *names[64];
  int n = 0;
  while (dir && (de = readdir(dir)) && n < 64)   // (resnet18: the test's second run)
    if (strstr(de->d_name, ".nn") && de->d_name[strlen(de->d_name) - 1] == 'n' && strcmp(de->d_name, "resnet18.nn"))
      names[n++] = xstrdup(de->d_name);
  if (dir)
    closedir(dir);
  CHECK(n >= 6, "models/ has %d models besides resnet18", n);
  for (int i = 0; i < n; i++) {
    char path[512];
    snprintf(path, sizeof path, "models/%s", names[i]);
    both_arches = strstr(path, "/cnn.nn") || strstr(path, "/logreg_by_hand.nn");
    check_model(nv, path, both_arches);
    both_arches = false;
    free(names[i]);
  }
  static const char *const extra[] = {"tests/cpu/tied.nn", "tests/cpu/two_inputs.nn", "tests/cpu/matmul3d.nn",
                                      "tests/cpu/scaled.nn", "tests/cpu/reshaped_param.nn", "tests/cpu/embedding.nn", "tests/cpu/attention.nn",
                                      "tests/cpu/transformer.nn", "tests/cpu/clipped.nn",
                                      "tests/cuda/models/lenet.nn", "tests/cuda/models/ae.nn",
                                      "tests/cuda/models/bce.nn", "tests/heads/twohead.nn",
                                      "tests/heads/threeloss.nn", "tests/heads/detect.nn", "tests/cpu/act.nn"};
  for (int i = 0; i < countof(extra); i++)
    check_model(nv, extra[i], false);
  printf("%d programs compiled (for sm_80; cnn and logreg_by_hand for sm_90 too)\n", programs);
  rt_nvrtc_close(nv);
  return t_finish("test_cuda_models");
}
