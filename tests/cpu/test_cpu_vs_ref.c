// test_cpu_vs_ref.c: a backend of the registry (the cpu backend: fused
// kernels compiled by LLVM, memory planned; or, with --backend, cuda or
// cuda-emu: the same kernels as CUDA C, on a GPU or through the host
// shim) against the ref
// backend, the oracle, on every model in models/ and
// two in tests/cpu (a tied weight; two inputs, whose second one's weights
// must train): the forward output, the loss, every gradient and every
// parameter, buffer and optimizer state tensor after 3 training steps;
// with fusion on and off, on 2 threads (and cnn on 1 and 3). Both run one
// model, which building an executor must leave as it was.
//
// Dropout is on in both, with the same masks (the cpu backend draws them on
// several threads, from the same stream). The fused loops compute the same
// float operations in the same order, except that LLVM may reassociate the
// sums of reductions, and the cpu backend's GEMM (gemm.c) sums in another
// order than the ref backend's cblas_sgemm. Tolerance: 1e-5 relative (in L2
// over each tensor), or a root-mean-square difference within 1e-5 for
// tensors that are zero up to rounding (resnet18's first conv bias feeds a
// batchnorm, so its gradient is rounding noise around 0); after 3 steps
// 1e-4, as small differences grow through the updates.
#include "../test.h"
#include "../load_model.h"
#include "frontend.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


static void compare(const char *model, const char *what, const float *a, const float *b, int64_t n,
                    double tol) {
  double d2 = 0, b2 = 0, worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    d2 += d * d;
    b2 += (double)b[i] * b[i];
    if (fabs(d) > worst) {
      worst = fabs(d);
      at = i;
    }
  }
  double rel = sqrt(d2) / (sqrt(b2) + 1e-30);
  CHECK(rel <= tol || sqrt(d2 / n) <= 1e-5,
        "%s %s: relative L2 difference %.3g (tolerance %.1g); worst element [%lld]: cpu %.9g ref %.9g", model, what,
        rel, tol, (long long)at, a[at], b[at]);
}

// The graph's text, to see that it did not change (the caller frees it).
static char *graph_text(const IrGraph *g) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ir_print(f, g);
  fclose(f);
  return buf;
}

// A copy of state tensor name of ex (n: its floats), which the caller frees.
static float *state(const Exec *ex, const char *name, int64_t *n) {
  int i = exec_find_state(ex, name);
  int64_t k = ir_numel(exec_state_node(ex, i), 1);
  float *v = xmalloc(sizeof(float) * k);
  exec_read_state(ex, i, v);
  if (n)
    *n = k;
  return v;
}

static Model *compile(const char *path, Arena *a, const OptimConfig *opt) {
  Diag d;
  diag_init(&d, stderr);
  Program *p = fe_parse_file(path, a, &d);
  Model *m = p && !d.nerrors ? pass_lower(p, a, &d) : NULL;
  if (m && opt)
    m->opt = *opt;
  if (m && !pass_autodiff(m, &d))
    m = NULL;
  diag_free(&d);
  return m;
}

// resnet18 trains with SGD here rather than its Adam: conv2d_1's bias
// feeds a batchnorm, so its gradient is zero up to rounding, and Adam turns
// rounding noise of any size into steps of about lr (see tests/torch). It
// runs at batch 16: its last batchnorms normalize over batch x 1 x 1
// values, and over 4 of them they amplify rounding differences (the order
// of sums) far past the tolerances. Even at 16, gradients that agree to
// 1e-5 grow apart to about 2e-3 through 3 steps of momentum SGD (each GEMM
// path sums in its own order), so its state is compared within 5e-3.
// opt: another optimizer than the model's (NULL: its own), named opt_name.
// --batch: the batch of the models named (0: 7), at which the cpu
// backend's programs must have batch-blocked regions; shared: the regions
// of shared products their training steps have among them.
static int64_t blocked;
static int shared;

static void check_model(const char *backend, const char *name, bool fuse, int64_t B, int threads, const OptimConfig *opt,
                        const char *opt_name) {
  static const OptimConfig momentum = {.kind = OPT_SGD, .lr = 0.01, .momentum = 0.9};
  bool sgd = !strcmp(name, "resnet18");
  if (sgd && !opt)
    opt = &momentum;
  char path[256], label[96];
  snprintf(path, sizeof path, strchr(name, '/') ? "%s.nn" : "models/%s.nn", name);
  snprintf(label, sizeof label, "%s %s%s", backend, name, fuse ? "" : " (unfused)");
  if (threads != 2)
    snprintf(label + strlen(label), sizeof label - strlen(label), " (%d thread%s)", threads, threads > 1 ? "s" : "");
  if (opt_name)
    snprintf(label + strlen(label), sizeof label - strlen(label), " (%s)", opt_name);
  Arena *a = arena_new();
  Model *m = compile(path, a, opt);
  if (!m) {
    FAIL("%s: does not compile\n", path);
    return;
  }
  // Both executors run one model: compiling works on a copy of it.
  char *before = graph_text(m->g), err[1024];
  ExecOptions ro = {.max_batch = B}, co = {.max_batch = B, .threads = threads, .fuse = fuse};
  Exec *ref = exec_new(exec_backend_names[0], m, &ro, err, sizeof err), *cpu = exec_new(backend, m, &co, err, sizeof err);
  if (!ref || !cpu) {
    FAIL("%s: %s\n", label, err);
    return;
  }
  char *after = graph_text(m->g);
  CHECK(!strcmp(before, after), "%s: building the executor changed the caller's model", label);
  if (blocked && fuse && !strcmp(backend, "cpu")) {   // what --batch is for: batch-blocked regions
    const KProgram *f = exec_program(cpu, ENTRY_FORWARD, NULL), *t = exec_program(cpu, ENTRY_TRAIN, NULL);
    CHECK(f && t && f->nregions + t->nregions > 0, "%s: no batch-blocked region at batch %lld", label,
          (long long)B);
    for (int r = 0; t && r < t->nregions; r++)
      shared += t->regions[r].products;
  }
  free(before);
  free(after);
  exec_init_params(ref, 3);
  exec_init_params(cpu, 3);
  Rng r;
  rng_seed(&r, 17, 0);
  int64_t nx = exec_sample_dim(m) * B, ny = exec_target_dim(m) * B;
  float *x = xmalloc(sizeof(float) * nx);
  void *y = xmalloc(4 * (ny ? ny : 1));
  for (int64_t i = 0; i < nx; i++)
    x[i] = (float)rng_uniform(&r);
  t_fill_indexes(m, x, B, &r, 5);
  t_fill_targets(m, y, B, &r, -2, 4);
  int64_t od = exec_output_dim(ref);
  int64_t n2 = 0;   // the last input's weights, which must train: every input is fed
  float *w2_start = m->ninputs > 1 ? state(ref, "linear_2.weight", &n2) : NULL;
  float *oc = xmalloc(sizeof(float) * B * od), *orf = xmalloc(sizeof(float) * B * od);
  exec_run(ref, ENTRY_FORWARD, B, x, NULL, 0);
  exec_run(cpu, ENTRY_FORWARD, B, x, NULL, 0);
  exec_read_output(ref, orf);
  exec_read_output(cpu, oc);
  compare(label, "forward output", oc, orf, B * od, 1e-5);
  exec_run(ref, ENTRY_FORWARD, 1, x, NULL, 0);   // a batch smaller than the pool
  exec_run(cpu, ENTRY_FORWARD, 1, x, NULL, 0);
  exec_read_output(ref, orf);
  exec_read_output(cpu, oc);
  compare(label, "forward output at batch 1", oc, orf, od, 1e-5);
  if (B > 16) {   // blocks of rows of another size, one of them short
    exec_run(ref, ENTRY_FORWARD, B - 11, x, NULL, 0);
    exec_run(cpu, ENTRY_FORWARD, B - 11, x, NULL, 0);
    exec_read_output(ref, orf);
    exec_read_output(cpu, oc);
    compare(label, "forward output at a smaller batch", oc, orf, (B - 11) * od, 1e-5);
  }
  free(oc);
  free(orf);
  double le = exec_run(ref, ENTRY_EVAL, B, x, y, 0), lc = exec_run(cpu, ENTRY_EVAL, B, x, y, 0);
  float lef = (float)le, lcf = (float)lc;
  compare(label, "eval loss", &lcf, &lef, 1, 1e-5);
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double weights[IR_MAX_LOSS_TERMS];
  int nterms = ir_loss_terms(m->g, terms, weights, IR_MAX_LOSS_TERMS);
  for (int t = 0; nterms > 1 && t < nterms; t++) {   // each loss of a weighted sum
    float vr, vc;
    char what[64];
    snprintf(what, sizeof what, "eval loss %d (%s)", t, ir_op_info(terms[t]->op)->mnem);
    if (CHECK(exec_read_value(ref, terms[t], &vr) && exec_read_value(cpu, terms[t], &vc), "%s: no value of %s",
              label, what))
      compare(label, what, &vc, &vr, 1, 1e-5);
  }
  for (int step = 1; step <= 3; step++) {
    double lr = 0.01;
    le = exec_run(ref, ENTRY_TRAIN, B, x, y, lr);
    lc = exec_run(cpu, ENTRY_TRAIN, B, x, y, lr);
    lef = (float)le, lcf = (float)lc;
    char what[64];
    snprintf(what, sizeof what, "loss of step %d", step);
    compare(label, what, &lcf, &lef, 1, 1e-4);
    if (step == 1)
      for (int i = 0; i < m->nparams; i++) {
        int64_t n = ir_numel(m->params[i], 1);
        float *gc = xmalloc(sizeof(float) * n), *gr = xmalloc(sizeof(float) * n);
        snprintf(what, sizeof what, "gradient of %s", m->params[i]->name);
        const IrNode *g = m->steps[i]->src[1];   // what the update reads: with clip_norm, the scaled
                                                 // gradient, which may take the raw one's place
        if (CHECK(exec_read_value(cpu, g, gc) && exec_read_value(ref, g, gr),
                  "%s: no value of the %s", label, what))
          compare(label, what, gc, gr, n, 1e-5);
        free(gc);
        free(gr);
      }
  }
  for (int i = 0; i < exec_num_state(ref); i++) {
    int64_t n;
    const IrNode *s = exec_state_node(ref, i);
    float *vr = state(ref, s->name, &n), *vc = state(cpu, s->name, NULL);
    char what[160];
    snprintf(what, sizeof what, "%s after 3 steps", s->name);
    compare(label, what, vc, vr, n, sgd ? 5e-3 : 1e-4);   // (sgd: resnet18)
    free(vr);
    free(vc);
  }
  if (w2_start) {
    float *w2 = state(ref, "linear_2.weight", NULL), *w2_cpu = state(cpu, "linear_2.weight", NULL);
    bool moved_ref = false, moved_cpu = false;
    for (int64_t i = 0; i < n2; i++) {
      moved_ref |= w2[i] != w2_start[i];
      moved_cpu |= w2_cpu[i] != w2_start[i];
    }
    CHECK(moved_ref && moved_cpu, "%s: linear_2.weight (of the second input) did not train: ref %s, %s %s", label,
          moved_ref ? "moved" : "stayed", backend, moved_cpu ? "moved" : "stayed");
    free(w2);
    free(w2_cpu);
    free(w2_start);
  }
  printf("%s: compared\n", label);
  free(x);
  free(y);
  exec_free(ref);
  exec_free(cpu);
  arena_free(a);
}

// An index outside the embedding's table stops a run with the sample and
// the value, before anything is read or written: on the ref backend and
// on the one under test (a CUDA backend gives NaN instead, see cuda_lib.c).
typedef struct BadIndex {
  const char *backend;
  bool train;
} BadIndex;

static void run_bad_index(void *arg) {
  const BadIndex *bi = arg;
  Arena *a = arena_new();
  Model *m = compile("tests/cpu/embedding.nn", a, NULL);
  ExecOptions o = {.max_batch = 2, .threads = 2, .fuse = true};
  char err[512];
  Exec *ex = m ? exec_new(bi->backend, m, &o, err, sizeof err) : NULL;
  if (!ex)
    exit(3);
  exec_init_params(ex, 1);
  float x[18] = {0};   // 2 samples of 6 tokens (all 0, bit for bit) and 3 floats
  int32_t y[2] = {0, 1}, bad = 11;
  memcpy(&x[9 + 4], &bad, sizeof bad);   // sample 1, token 4
  exec_run(ex, bi->train ? ENTRY_TRAIN : ENTRY_FORWARD, 2, x, y, 0.1);
  exit(0);
}

static void check_bad_index(const char *backend) {
  if (strcmp(backend, "cpu") && strcmp(backend, "ref"))
    return;
  for (int train = 0; train < 2; train++) {
    BadIndex bi = {backend, train};
    char what[96];
    snprintf(what, sizeof what, "%s: an index outside the table (%s)", backend, train ? "train" : "forward");
    t_exits_with_error(what, run_bad_index, &bi, "index 11 of sample 1 (value 4 of the sample) is outside [0, 11)");
  }
}

// [--backend NAME] [--batch B] [MODEL...]: the backend to hold to the
// oracle (default: cpu; cuda and cuda-emu skip where they cannot run,
// saying why), and with MODELs, only those: these, or any other .nn file
// (a path without the .nn, at batches 7 and 1; with --batch, at B on 2 and
// 3 threads, fused, where the cpu backend must run batch-blocked regions).
int main(int argc, char **argv) {
  static const char *const models[] = {"logreg", "logreg_by_hand", "mlp100", "mlp", "cnn", "resnet18", "quadratic",
                                       "tests/cpu/tied", "tests/cpu/two_inputs", "tests/cpu/matmul3d", "tests/cpu/scaled",
                                       "tests/cpu/reshaped_param", "tests/cpu/embedding", "tests/cpu/act",
                                       "tests/cpu/smoothed", "tests/cpu/frozen", "tests/cpu/attention",
                                       "tests/cpu/transformer", "tests/cpu/clipped", "tests/cpu/attention_wide"};
  const char *backend = "cpu";
  int64_t other_batch = 7;
  for (;;) {
    if (argc > 2 && !strcmp(argv[1], "--backend"))
      backend = argv[2];
    else if (argc > 2 && !strcmp(argv[1], "--batch"))
      blocked = other_batch = atoll(argv[2]);
    else
      break;
    argv += 2;
    argc -= 2;
  }
  char why[1024];
  if (!exec_backend_exists(backend)) {
    fprintf(stderr, "test_cpu_vs_ref: no backend '%s'\n", backend);
    return 2;
  }
  if (!exec_backend_available(backend, why, sizeof why)) {
    printf("skipped: the %s backend cannot run here: %s\n", backend, why);
    return 77;
  }
  // The host shim runs the CUDA C on one core: resnet18 fused only there.
  bool emulated = !strcmp(backend, "cuda-emu");
  const char *const *list = argc > 1 ? (const char *const *)argv + 1 : models;
  int n = argc > 1 ? argc - 1 : countof(models);
  for (int i = 0; i < n; i++) {
    const char *name = list[i];
    bool listed = false;
    for (int j = 0; j < countof(models) && !listed; j++)
      listed = !strcmp(name, models[j]);
    if (!listed) {   // any other .nn file
      check_model(backend, name, true, other_batch, 2, NULL, NULL);
      if (blocked)   // (unfused programs have no regions)
        check_model(backend, name, true, other_batch, 3, NULL, NULL);
      else {
        check_model(backend, name, false, other_batch, 2, NULL, NULL);
        check_model(backend, name, true, 1, 2, NULL, NULL);
      }
      continue;
    }
    int64_t B = !strcmp(name, "resnet18") ? 16 : 7;   // odd batches exercise partial vectors
    check_model(backend, name, true, B, 2, NULL, NULL);
    if (!(emulated && !strcmp(name, "resnet18")))
      check_model(backend, name, false, B, 2, NULL, NULL);
    if (!strcmp(name, "cnn") && !emulated) {   // library kernels in one share, and in uneven ones
      check_model(backend, name, true, B, 1, NULL, NULL);
      check_model(backend, name, true, B, 3, NULL, NULL);
    }
    if (!strcmp(name, "mlp")) {   // every form of the one update over all parameters
      static const OptimConfig nesterov = {.kind = OPT_SGD, .lr = 0.01, .momentum = 0.9, .nesterov = true,
                                           .weight_decay = 1e-3},
                               dampened = {.kind = OPT_SGD, .lr = 0.01, .momentum = 0.5, .dampening = 0.3},
                               adam_l2 = {.kind = OPT_ADAM, .lr = 1e-3, .weight_decay = 1e-2, .beta1 = 0.9,
                                          .beta2 = 0.999, .eps = 1e-8},
                               adamw = {.kind = OPT_ADAMW, .lr = 1e-3, .weight_decay = 1e-2, .beta1 = 0.9,
                                        .beta2 = 0.999, .eps = 1e-8};
      check_model(backend, name, true, B, 2, &nesterov, "sgd nesterov + weight decay");
      check_model(backend, name, true, B, 2, &dampened, "sgd dampening");
      check_model(backend, name, true, B, 2, &adam_l2, "adam + weight decay");
      check_model(backend, name, true, B, 2, &adamw, "adamw");
      // RMSprop with each kind of state (square_avg, momentum_buffer,
      // grad_avg: five blocks) and Adagrad, fused and as library kernels.
      // RMSprop's first step is about lr / sqrt(1 - alpha) whatever the
      // gradient's size, so with eps 1e-8 a near-zero gradient summed in
      // another order moves its weight by 10 lr: eps 1e-4 keeps this a test
      // of the arithmetic.
      static const OptimConfig rmsprop = {.kind = OPT_RMSPROP, .lr = 1e-3, .alpha = 0.99, .eps = 1e-4},
                               rmsprop_all = {.kind = OPT_RMSPROP, .lr = 1e-3, .alpha = 0.9, .eps = 1e-8,
                                              .momentum = 0.9, .centered = true, .weight_decay = 1e-3},
                               adagrad = {.kind = OPT_ADAGRAD, .lr = 0.01, .lr_decay = 0.1, .weight_decay = 1e-3,
                                          .initial_accumulator_value = 0.1, .eps = 1e-10};
      for (int fused = 1; fused >= 0; fused--) {
        check_model(backend, name, fused, B, 2, &rmsprop, "rmsprop");
        check_model(backend, name, fused, B, 2, &rmsprop_all, "rmsprop momentum centered + weight decay");
        check_model(backend, name, fused, B, 2, &adagrad, "adagrad lr_decay + weight decay");
      }
    }
  }
  if (argc == 1) {
    check_bad_index("ref");
    check_bad_index(backend);
  }
  if (blocked && !strcmp(backend, "cpu"))   // the weight gradients after a backward region
    CHECK(shared > 0, "no training step at batch %lld has a region of shared products", (long long)blocked);
  return t_finish("test_cpu_vs_ref");
}
