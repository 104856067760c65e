// bench.c: `nnc bench`: how fast a model's compiled step runs, and where
// the time goes.
//
// Builds an executor of the chosen backend (cpu by default) for the entry
// point, timing its compilation, runs it on random data after a warm-up,
// and reports the median and spread of the whole step, then, for a backend
// with a compiled program, of every kernel (time, share of the step,
// GFLOP/s, GB/s, the .nn lines it came from), and the same step unfused and
// on the ref backend for comparison.
#include "cli.h"
#include "train.h"
#include "version.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage_bench =
    "usage: nnc bench MODEL.nn [options]\n"
    "\n"
    "Times the compiled step on random data: warm-up, then the median and spread\n"
    "of repeated runs; per kernel: time, share of the step, GFLOP/s, GB/s and the\n"
    "source lines it came from; the whole step fused, unfused and on the ref\n"
    "backend; compile time per phase; the arena's peak bytes.\n"
    "\n"
    "options:\n"
    "  -b, --batch N         samples per step (default: the model's train batch)\n"
    "  -j, --threads N       threads (default: the number of cores)\n"
    "  -r, --reps N          timed runs (default 20)\n"
    "  -e, --entry NAME      train (default), eval or forward\n"
    "  -f, --format FMT      table (default), csv or json\n"
    "      --no-compare      skip the unfused and ref runs\n"
    "      --no-regions      run every kernel over the whole batch on its own, so that each\n"
    "                        gets a row (regions run kernels block of rows by block of rows:\n"
    "                        one row for them all)\n"
    "      --backend NAME    the backend, listed below (default " EXEC_DEFAULT_BACKEND "); the kernels and\n"
    "                        the comparisons are those of a backend that compiles\n"
    "  -h, --help            show this help\n";

// The median, minimum and maximum of v[0..n).
typedef struct Stats {
  double median, min, max;
} Stats;

static Stats stats(double *v, int n) {
  sort_doubles(v, (size_t)n);
  return (Stats){n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1]};
}

// Per-kernel timing through the executor's tick hook.
typedef struct Ticks {
  double last;           // when the current kernel started
  int current;           // the kernel running, or -1
  double **runs;         // [nkernels][reps] seconds per run
  int run;               // the run being timed
} Ticks;

static void tick(void *arg, int kernel) {
  Ticks *t = arg;
  double n = now_seconds();
  if (t->current >= 0)
    t->runs[t->current][t->run] += n - t->last;
  t->current = kernel;
  t->last = n;
}

typedef struct Bench {
  Model *m;
  EntryKind mode;
  int64_t B;
  int threads, reps;
  float *x;
  void *y;
} Bench;

// Times reps runs of ex (after 3 warm-up runs); per-kernel times into t.
static Stats time_steps(Bench *b, Exec *ex, int reps, Ticks *t) {
  double *v = xmalloc(sizeof(double) * reps);
  for (int i = 0; i < 3; i++)
    exec_run(ex, b->mode, b->B, b->x, b->y, 1e-6);
  for (int i = 0; i < reps; i++) {
    if (t) {
      t->run = i;
      t->current = -1;
    }
    double t0 = now_seconds();
    exec_run(ex, b->mode, b->B, b->x, b->y, 1e-6);
    v[i] = now_seconds() - t0;
  }
  Stats s = stats(v, reps);
  free(v);
  return s;
}

static void random_batch(Bench *b) {
  const Model *m = b->m;
  Rng r;
  rng_seed(&r, 1, 9);
  int64_t nx = exec_sample_dim(m) * b->B;
  b->x = xmalloc(sizeof(float) * nx);
  for (int64_t i = 0; i < nx; i++)
    b->x[i] = rng_uniformf(&r);
  int64_t row = exec_sample_dim(m), at = 0;
  for (int i = 0; i < m->ninputs; at += ir_numel(m->inputs[i], 1), i++) {   // an integer input: indexes
    const IrNode *in = m->inputs[i];
    int64_t bound = pass_index_bound(m->g, in);
    for (int64_t s = 0; in->dtype == DT_I32 && s < b->B; s++)
      for (int64_t j = 0; j < ir_numel(in, 1); j++) {
        int32_t v = bound > 0 ? (int32_t)rng_below(&r, (uint32_t)bound) : 0;
        memcpy(b->x + s * row + at + j, &v, sizeof v);
      }
  }
  int64_t ny = exec_target_dim(m) * b->B;
  b->y = xcalloc(ny ? ny : 1, 4);
  for (int64_t i = 0, k = 0; i < b->B; i++)   // each sample's targets, one after another
    for (int t = 0; t < m->ntargets; t++)
      for (int64_t j = 0; j < ir_numel(m->targets[t], 1); j++, k++) {
        if (m->targets[t]->dtype == DT_I32)
          ((int32_t *)b->y)[k] = (int32_t)rng_below(&r, (uint32_t)m->targets[t]->attr.i[0]);
        else
          ((float *)b->y)[k] = rng_uniformf(&r);
      }
}

// The model's FLOPs for a step of entry at batch B, as its graph states
// them before simplification (the count PyTorch's own ops have): what the
// step's GFLOP/s and its fraction of the GEMM ceiling are of. The
// kernels may do less, where simplification found a cheaper form (a
// weight gradient through a max pooling reads the pooled gradient).
static double model_flops(const Model *m, EntryKind entry, int64_t B) {
  bool *need = xcalloc(m->g->nnodes + 1, 1);
  pass_needed(m, entry, need);
  double f = 0;
  for (int i = 0; i < m->g->nnodes; i++)
    if (need[i])
      f += (double)ir_flops(m->g->nodes[i]) * (ir_op_kind(m->g->nodes[i]->op) == IR_KIND_UPDATE ? 1 : B);
  free(need);
  return f;
}

// FLOPs and bytes a kernel moves for batch B.
static void kernel_work(const Kernel *k, int64_t B, double *flops, double *bytes) {
  *flops = *bytes = 0;
  for (int i = 0; i < k->nnodes; i++) {   // FLOPs per sample, except an update's, which is per step
    const IrNode *n = k->nodes[i];
    bool per_step = ir_op_kind(n->op) == IR_KIND_UPDATE;
    *flops += (double)ir_flops(n) * (per_step ? 1 : B);
  }
  for (int i = 0; i < k->nbufs; i++)
    *bytes += 4.0 * ir_numel(k->bufs[i], B);
  if (k->epilogue)
    for (int i = 0; i < k->epilogue->nbufs; i++)
      *bytes += 4.0 * ir_numel(k->epilogue->bufs[i], B);
}

// "6,7": the .nn lines a kernel came from.
static void kernel_lines(const Kernel *k, char *buf, size_t n) {
  int len = 0;
  buf[0] = 0;
  for (int i = 0; i < k->nnodes && len < (int)n - 8; i++) {
    int l = k->nodes[i]->loc.line;
    bool seen = false;
    for (int j = 0; j < i; j++)
      seen |= k->nodes[j]->loc.line == l;
    if (l > 0 && !seen)
      len += snprintf(buf + len, n - len, "%s%d", len ? "," : "", l);
  }
}

int cli_bench(int argc, char **argv) {
  enum { O_NOCMP = 256, O_BACKEND, O_NOREGIONS };
  static const struct option opts[] = {
      {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 'j'},
      {"reps", required_argument, 0, 'r'},  {"entry", required_argument, 0, 'e'},
      {"format", required_argument, 0, 'f'}, {"no-compare", no_argument, 0, O_NOCMP},
      {"backend", required_argument, 0, O_BACKEND}, {"no-regions", no_argument, 0, O_NOREGIONS},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0},
  };
  int batch = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 20;
  const char *entry = "train", *format = "table", *backend = EXEC_DEFAULT_BACKEND;
  bool compare = true, regions = true;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "b:j:r:e:f:h", opts, NULL)) != -1) {
    int64_t v;
    switch (ch) {
    case 'b': case 'j': case 'r':
      if (!cli_int(optarg, 1, ch == 'j' ? 1024 : ch == 'b' ? TRAIN_MAX_BATCH : 1000000, &v))
        return cli_usage_error(usage_bench, ch == 'b'   ? "--batch needs a whole number from 1 to 1048576, found '%s'"
                                            : ch == 'j' ? "--threads needs a whole number from 1 to 1024, found '%s'"
                                                        : "--reps needs a whole number from 1 to 1000000, found '%s'",
                               optarg);
      *(ch == 'b' ? &batch : ch == 'j' ? &threads : &reps) = (int)v;
      break;
    case 'e': entry = optarg; break;
    case 'f': format = optarg; break;
    case O_NOCMP: compare = false; break;
    case O_NOREGIONS: regions = false; break;
    case O_BACKEND:
      if (cli_backend(usage_bench, optarg, &backend))
        return EXIT_USAGE;
      break;
    case 'h': cli_print_usage(stdout, usage_bench); return 0;
    default: fputs("\n", stderr); cli_print_usage(stderr, usage_bench); return EXIT_USAGE;
    }
  }
  EntryKind mode;
  if (!ir_entry_parse(entry, &mode))
    return cli_usage_error(usage_bench, "--entry is train, eval or forward, found '%s'", entry);
  if (strcmp(format, "table") && strcmp(format, "csv") && strcmp(format, "json"))
    return cli_usage_error(usage_bench, "--format is table, csv or json, found '%s'", format);
  if (optind != argc - 1)
    return cli_usage_error(usage_bench, "bench needs exactly one model file%s", "");
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  Model *m = cli_load_model(argv[optind], a, &d);
  if (m && mode != ENTRY_FORWARD && !m->g->loss) {
    fprintf(stderr, "nnc: error: model '%s' has no loss to %s with\n---> HINT: time its inference with "
            "--entry forward, or add a loss after the model (e.g. `loss cross_entropy`)\n", m->g->name,
            mode == ENTRY_TRAIN ? "train" : "evaluate");
    m = NULL;
  }
  if (m && mode == ENTRY_TRAIN && !pass_autodiff(m, &d))
    m = NULL;
  if (m && !cli_check_memory(m, batch ? batch : m->train.batch, &d))
    m = NULL;
  diag_free(&d);
  if (!m) {
    arena_free(a);
    return EXIT_USER;
  }
  Bench b = {m, mode, batch ? batch : m->train.batch, threads, reps, NULL, NULL};
  random_batch(&b);

  // Build (compile), timing each phase.
  char err[1024];
  double t0 = now_seconds();
  ExecOptions eo = {
      .max_batch = b.B, .threads = threads, .fuse = true, .no_regions = !regions, .entries = 1u << mode};
  Exec *ex = exec_new(backend, m, &eo, err, sizeof err);
  if (!ex) {
    fprintf(stderr, "nnc: error: %s\n", err);
    free(b.x);
    free(b.y);
    arena_free(a);
    return EXIT_USER;
  }
  CgTimes ct = {0};
  const KProgram *p = exec_program(ex, mode, &ct);
  double t_compile = ct.build + ct.optimize + ct.codegen;
  double t_setup = now_seconds() - t0 - t_compile;   // the passes (copy, simplify, fuse, plan) and the executor
  int nk = p ? p->nkernels : 0;
  bool on_device = !strncmp(backend, "cuda", 4);   // cuda, cuda-emu: no LLVM phases, no host GEMM ceiling
  exec_init_params(ex, 1);
  double first0 = now_seconds();
  exec_run(ex, mode, b.B, b.x, b.y, 1e-6);
  double t_first = now_seconds() - first0;

  Ticks t = {0, -1, xcalloc(nk + 1, sizeof(double *)), 0};
  for (int i = 0; i <= nk; i++)
    t.runs[i] = xcalloc(reps, sizeof(double));
  exec_set_tick(ex, tick, &t);
  Stats fused_ticked = time_steps(&b, ex, reps, &t);
  exec_set_tick(ex, NULL, NULL);
  Stats fused = time_steps(&b, ex, reps, NULL);

  Stats unfused = {0}, ref = {0};
  compare = compare && p;   // a backend without a program has nothing fused to compare
  if (compare) {
    eo.fuse = false;
    Exec *ux = exec_new(backend, m, &eo, err, sizeof err);
    if (ux) {
      exec_init_params(ux, 1);
      unfused = time_steps(&b, ux, reps, NULL);
      exec_free(ux);
    }
    Exec *rx = exec_new("ref", m, &eo, err, sizeof err);
    if (rx) {
      exec_init_params(rx, 1);
      ref = time_steps(&b, rx, reps / 4 > 3 ? reps / 4 : 3, NULL);
      exec_free(rx);
    }
  }

  // Report.
  double kernel_flops = 0, total_flops = model_flops(m, mode, b.B);
  for (int i = 0; i < nk; i++) {
    double f, by;
    kernel_work(p->kernels[i], b.B, &f, &by);
    kernel_flops += f;
  }
  bool json = !strcmp(format, "json"), csv = !strcmp(format, "csv");
  const char *entry_name = ir_entry_name(mode);
  int64_t arena_bytes = p ? p->arena_bytes : 0, state_bytes = p ? p->state_bytes : 0, local_bytes = 0;
  for (int r = 0; p && r < p->nregions; r++)   // each thread's local rows: the largest region's
    local_bytes = p->regions[r].local_bytes > local_bytes ? p->regions[r].local_bytes : local_bytes;
  if (json)
    printf("{\"nnc\": \"%s\", \"commit\": \"%s\", \"cpu\": \"%s\", \"threads\": %d, \"model\": \"%s\", "
           "\"entry\": \"%s\", \"batch\": %lld, \"reps\": %d, \"step_median_ms\": %.4f, \"step_min_ms\": %.4f, "
           "\"step_max_ms\": %.4f, \"gflops\": %.3f, \"kernel_gflops\": %.3f, \"samples_per_s\": %.1f, \"unfused_median_ms\": %.4f, "
           "\"ref_median_ms\": %.4f, \"compile_ms\": {\"setup\": %.2f, \"plan_and_compile\": %.2f, "
           "\"llvm_build\": %.2f, \"llvm_optimize\": %.2f, \"llvm_codegen\": %.2f}, \"first_step_ms\": %.2f, "
           "\"arena_bytes\": %lld, \"local_bytes_per_thread\": %lld, \"state_bytes\": %lld, \"kernels\": [",
           NNC_VERSION, NNC_COMMIT, cg_host_cpu(), threads, m->g->name, entry_name, (long long)b.B, reps,
           fused.median * 1e3, fused.min * 1e3, fused.max * 1e3, total_flops / fused.median / 1e9,
           kernel_flops / fused.median / 1e9, b.B / fused.median, unfused.median * 1e3, ref.median * 1e3, t_setup * 1e3, t_compile * 1e3,
           ct.build * 1e3, ct.optimize * 1e3, ct.codegen * 1e3, t_first * 1e3, (long long)arena_bytes,
           (long long)local_bytes, (long long)state_bytes);
  else if (csv)
    printf("kernel,kind,name,lines,median_us,share,gflops,gbps\n");
  else {
    printf("nnc %s (commit %s) on %s, %d threads\n", NNC_VERSION, NNC_COMMIT, cg_host_cpu(), threads);
    if (p) {
      char local[64] = "";
      if (local_bytes)
        snprintf(local, sizeof local, ", local rows %.2f MB a thread", local_bytes / 1e6);
      printf("model %s, %s, batch %lld: %d kernels%s, arena %.2f MB (one buffer per value: %.2f MB)%s, state "
             "%.2f MB\n", m->g->name, entry_name, (long long)b.B, p->nkernels, regions ? "" : " (no regions)",
             p->arena_bytes / 1e6, p->naive_bytes / 1e6, local, p->state_bytes / 1e6);
    } else
      printf("model %s, %s, batch %lld, backend %s\n", m->g->name, entry_name, (long long)b.B, backend);
    if (on_device)   // (CUDA C written and compiled, by NVRTC or the host's compiler, in the set-up)
      printf("compile: %.1f ms (simplify + fuse + plan, CUDA C, its compilation and loading); first step %.1f ms\n",
             (t_setup + t_compile) * 1e3, t_first * 1e3);
    else
      printf("compile: %.1f ms (simplify + fuse + plan + set-up %.1f, LLVM %.1f: IR %.1f, optimize %.1f, machine "
             "code %.1f); first step %.1f ms\n",
             (t_setup + t_compile) * 1e3, t_setup * 1e3, t_compile * 1e3, ct.build * 1e3, ct.optimize * 1e3,
             ct.codegen * 1e3, t_first * 1e3);
    char kernels[96] = "";
    if (fabs(kernel_flops - total_flops) > 1e-6 * total_flops)
      snprintf(kernels, sizeof kernels, " (the model's; the kernels do %.1f MFLOP a sample)", kernel_flops / b.B / 1e6);
    printf("step: median %.3f ms (min %.3f, max %.3f) over %d runs; %.1f GFLOP/s%s; %.0f samples/s\n",
           fused.median * 1e3, fused.min * 1e3, fused.max * 1e3, reps, total_flops / fused.median / 1e9, kernels,
           b.B / fused.median);
    if (compare)
      printf("       unfused %.3f ms (%.2fx), ref %.3f ms (%.2fx)\n", unfused.median * 1e3,
             unfused.median / fused.median, ref.median * 1e3, ref.median / fused.median);
    if (p)
      printf("\n  #  kind  %-34s  lines      time us  share  GFLOP/s    GB/s\n", "kernel");
  }
  static const char *const kinds[] = {"loop", "gemm", "lib"};
  for (int i = 0, r = 0; i < nk; i++) {
    const Kernel *k = p->kernels[i];
    Stats s = stats(t.runs[i], reps);
    double f, by;
    kernel_work(k, b.B, &f, &by);
    char lines[64], name[96];
    kernel_lines(k, lines, sizeof lines);
    const char *kind = kinds[k->kind];
    int at = i;
    snprintf(name, sizeof name, "%s", k->name);
    if (r < p->nregions && p->regions[r].first == i) {   // one row: a region's kernels run interleaved
      bool products = p->regions[r].products;
      int last = p->regions[r++].last;
      for (int j = i + 1; j <= last; j++) {
        double fj, bj;
        kernel_work(p->kernels[j], b.B, &fj, &bj);
        f += fj;
        by += bj;
      }
      kind = "rgn";
      snprintf(name, sizeof name, "%d %s to #%d: %s", last - i + 1, products ? "products" : "kernels", last, k->name);
      i = last;
    }
    double share = s.median / fused_ticked.median;
    if (json)
      printf("%s{\"index\": %d, \"kind\": \"%s\", \"name\": \"%s\", \"lines\": \"%s\", \"median_us\": %.2f, "
             "\"share\": %.4f, \"gflops\": %.3f, \"gbps\": %.3f}", at ? ", " : "", at, kind, name,
             lines, s.median * 1e6, share, s.median > 0 ? f / s.median / 1e9 : 0,
             s.median > 0 ? by / s.median / 1e9 : 0);
    else if (csv)
      printf("%d,%s,\"%s\",\"%s\",%.2f,%.4f,%.3f,%.3f\n", at, kind, name, lines, s.median * 1e6,
             share, s.median > 0 ? f / s.median / 1e9 : 0, s.median > 0 ? by / s.median / 1e9 : 0);
    else
      printf("%3d  %-4s  %-34.34s  %-8s %9.1f  %4.1f%%  %7.2f  %6.2f\n", at, kind, name, lines,
             s.median * 1e6, 100 * share, s.median > 0 ? f / s.median / 1e9 : 0,
             s.median > 0 ? by / s.median / 1e9 : 0);
  }
  if (json)
    printf("]");
  // The step's GEMMs alone through cblas_sgemm, for "what share of what
  // BLAS reaches on these shapes does the whole step reach".
  double gemm_flops = 0, gemm_time = 0;
  if (on_device)   // (the host's BLAS says nothing of a GPU's ceiling)
    nk = 0;
  for (int i = 0; i < nk; i++) {
    const Kernel *k = p->kernels[i];
    if (k->kind != KN_GEMM)
      continue;
    int64_t M = k->m.coef * (k->m.batched ? b.B : 1), N = k->n.coef * (k->n.batched ? b.B : 1),
            K = k->k.coef * (k->k.batched ? b.B : 1);
    gemm_flops += 2.0 * M * N * K;
    gemm_time += rt_time_sgemm(k->ta, k->tb, M, N, K, reps, b.threads);
  }
  if (gemm_time > 0) {
    // Only the GEMMs' FLOPs, over the whole step's time: the step's other
    // work counts against it.
    double alone = gemm_flops / gemm_time / 1e9, step = gemm_flops / fused.median / 1e9;
    if (json)
      printf(", \"gemm_alone_gflops\": %.3f, \"step_share_of_gemm_alone\": %.4f", alone, step / alone);
    else if (!csv)
      printf("\ncblas_sgemm alone on the step's GEMM shapes: %.1f GFLOP/s; the step's GEMM FLOPs over the "
             "whole step's time: %.1f GFLOP/s "
             "(%.0f%% of it)\n", alone, step, 100 * step / alone);
  }
  if (json)
    printf("}\n");
  for (int i = 0; i <= nk; i++)
    free(t.runs[i]);
  free(t.runs);
  free(b.x);
  free(b.y);
  exec_free(ex);
  arena_free(a);
  return 0;
}
