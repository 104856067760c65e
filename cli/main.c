// main.c: the nnc command. One function per verb; each reads its options,
// then runs the pipeline as plain calls, one line per stage:
//
//   Program *p = fe_parse_file(path, a, d);     // frontend: text -> AST
//   Model *m = pass_lower(p, a, d);             // AST -> graph IR with shapes
//   ir_verify(m->g, d);                         // invariants between passes
#include "cli.h"
#include "codegen.h"
#include "exec.h"
#include "frontend.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const usage_main =
    "usage: nnc <command> [options] FILE...\n"
    "\n"
    "nnc compiles neural-network models written in .nn files.\n"
    "\n"
    "commands:\n"
    "  check   parse and shape-check models; print a summary table of each\n"
    "  emit    print a stage of the compilation: the AST, the graph IR, or a dot graph\n"
    "  train   train a model on a data set (Fashion-MNIST by default)\n"
    "  eval    evaluate trained weights: loss, accuracy, confusion matrix\n"
    "  predict classify images (PNG, PGM) or the samples of IDX and CSV files\n"
    "  bench   time the compiled step: per kernel, fused against unfused and ref\n"
    "  compile compile a model ahead of time into an object file and a C header\n"
    "\n"
    "options:\n"
    "  -h, --help      show this help (nnc COMMAND --help for a command's)\n"
    "  -V, --version   show the version\n"
    "\n"
    "exit status: 0 success, 1 errors in the input files, 2 bad command-line use,\n"
    "3 out of memory\n";

static const char *const usage_check =
    "usage: nnc check [options] FILE.nn...\n"
    "\n"
    "Parses each model, checks every shape, and prints a table per model: each\n"
    "layer's output shape, trainable parameters and FLOPs per sample, with totals,\n"
    "and the loss, optimizer and training settings.\n"
    "\n"
    "options:\n"
    "  -q, --quiet           print only diagnostics (no tables)\n"
    "      --max-errors N    stop reporting after N errors (default 50; 0: no limit)\n"
    "      --no-color        never color diagnostics (also: NO_COLOR in the environment)\n"
    "  -h, --help            show this help\n";

static const char *const usage_emit =
    "usage: nnc emit --stage STAGE [options] FILE\n"
    "\n"
    "Prints one stage of the compilation of FILE:\n"
    "  ast   the syntax tree, with line:col of every node\n"
    "  ir    the graph IR after lowering and shape inference (text that `nnc emit`\n"
    "        reads back: FILE may be a .ir file)\n"
    "  dot   the graph IR as a Graphviz digraph (dot -Tsvg)\n"
    "  kernels  the kernel IR of an entry point: every buffer's place in memory,\n"
    "        fused loops, GEMMs with their epilogues, library kernels, each with\n"
    "        the .nn lines it came from (text that `nnc emit` reads back: FILE\n"
    "        may be a .kir file, for kernels, llvm and asm)\n"
    "  fused    the same, after the list of producer/consumer pairs left unfused\n"
    "        and why\n"
    "  llvm  the LLVM IR the cpu backend compiles for that entry point, optimized\n"
    "        at -O's level\n"
    "  asm   the host assembly of that LLVM IR\n"
    "  cuda  the CUDA C the cuda backend compiles for that entry point, each\n"
    "        kernel with the .nn lines it came from, and its launches in order\n"
    "  ptx   that CUDA C compiled by NVRTC for --arch (needs the CUDA toolkit's\n"
    "        NVRTC), each kernel's .entry with the same comments\n"
    "\n"
    "options:\n"
    "  -s, --stage STAGE     ast, ir, dot, kernels, fused, llvm, asm, cuda or ptx\n"
    "                        (required)\n"
    "  -t, --train           ir and dot: include the training step: the gradients\n"
    "                        (autodiff) and the optimizer's updates\n"
    "  -e, --entry NAME      kernels to ptx: forward (default), eval or train\n"
    "  -b, --batch N         kernels to ptx: plan memory for batches of N (default:\n"
    "                        the model's train batch)\n"
    "      --no-fuse         kernels to ptx: one kernel per graph node\n"
    "  -O, --opt-level N     llvm and asm: LLVM's optimization level, 0 to 3\n"
    "                        (default 2, what the cpu backend compiles with)\n"
    "      --arch sm_XX      ptx: the GPU architecture (default sm_80)\n"
    "  -o, --output FILE     write to FILE instead of standard output\n"
    "      --max-errors N    stop reporting after N errors (default 50; 0: no limit)\n"
    "      --no-color        never color diagnostics\n"
    "  -h, --help            show this help\n";

static void setup_diag(Diag *d, const CliCommon *c) {
  diag_init(d, stderr);
  if (c->no_color)
    d->color = false;
  d->max_errors = c->max_errors;
}

static int cmd_check(int argc, char **argv) {
  static const struct option opts[] = {
      {"quiet", no_argument, 0, 'q'},      {"max-errors", required_argument, 0, 'E'},
      {"no-color", no_argument, 0, 'C'},   {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0},
  };
  CliCommon c = {.max_errors = 50};
  bool quiet = false;
  int ch;
  int64_t v;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
    switch (ch) {
    case 'q': quiet = true; break;
    case 'C': c.no_color = true; break;
    case 'E':
      if (!cli_int(optarg, 0, 1000000, &v))
        return cli_usage_error(usage_check, "--max-errors needs a count, found '%s'", optarg);
      c.max_errors = (int)v;
      break;
    case 'h': fputs(usage_check, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_check, stderr); return EXIT_USAGE;
    }
  }
  if (optind >= argc)
    return cli_usage_error(usage_check, "check needs at least one .nn file%s", "");
  int status = 0;
  for (int i = optind; i < argc; i++) {
    Arena *a = arena_new();
    Diag d;
    setup_diag(&d, &c);
    Model *m = cli_load_model(argv[i], a, &d);
    if (m && !cli_check_memory(m, m->train.batch, &d))   // as the file would train
      m = NULL;
    if (m && !quiet) {
      if (i > optind)
        fputc('\n', stdout);
      cli_print_summary(stdout, m);
      fflush(stdout);
    }
    if (!m)
      status = EXIT_USER;
    diag_free(&d);
    arena_free(a);
  }
  return status;
}

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

// Reads a printed graph (a .ir file) and checks it like a lowered one.
static IrGraph *load_ir(const char *path, Arena *a, Diag *d) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    diag_error(d, ((SrcLoc){0}), NULL, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  SrcFile *f = arena_alloc(a, sizeof *f);
  *f = (SrcFile){arena_strdup(a, path), arena_strndup(a, text, len), len};
  free(text);
  IrGraph *g = ir_parse(f, a, d);
  if (!g || !ir_verify(g, d))
    return NULL;
  return g;
}

// `--stage cuda` (the CUDA C of p and its launches) or `ptx` (compiled by
// NVRTC for sm_<arch>); false after a message on stderr.
static int print_cuda(FILE *out, const KProgram *p, const char *stage, int arch) {
  char err[4096];
  CgCuda *cu = cg_cuda_generate(p, err, sizeof err);
  if (!cu) {
    fprintf(stderr, "nnc: error: CUDA code generation failed: %s\n", err);
    return EXIT_USER;
  }
  int status = 0;
  if (!strcmp(stage, "cuda")) {
    fputs(cu->source, out);
    fprintf(out, "\n// The launches, in order: grid x = ceil(work / per block) blocks (B: the batch), y, z;\n"
                 "// threads per block; barrier: the kernel calls __syncthreads.\n");
    for (int i = 0; i < cu->nlaunch; i++) {
      const CgCudaLaunch *l = &cu->launch[i];
      fprintf(out, "//   %-40s work %lld%s / %lld, y %lld, z %lld, %d threads%s\n", l->name, (long long)l->work.coef,
              l->work.batched ? " B" : "", (long long)l->per_block, (long long)l->grid_y, (long long)l->grid_z,
              l->block, l->barrier ? ", barrier" : "");
    }
  } else {
    RtNvrtc *n = rt_nvrtc_open(err, sizeof err);
    char *ptx = NULL, *log = NULL, name[64];
    size_t size = 0;
    snprintf(name, sizeof name, "%s.cu", ir_entry_name(p->entry));
    // No NVRTC, or one that does not know --arch, is this machine's or the
    // command line's matter (2); NVRTC rejecting the source is not.
    if (!n || !rt_nvrtc_supports(n, arch))
      status = EXIT_USAGE;
    if (n && rt_nvrtc_compile(n, cu->source, name, arch, false, NULL, &ptx, &size, &log, err, sizeof err)) {
      char *text = cg_cuda_annotate_ptx(cu->source, ptx);
      fputs(text, out);
      free(text);
    } else {
      fprintf(stderr, "nnc: error: %s\n%s", err, log ? log : "");
      status = status ? status : EXIT_USER;
    }
    free(ptx);
    free(log);
    rt_nvrtc_close(n);
  }
  cg_cuda_free(cu);
  return status;
}

// `nnc emit --stage kernels|llvm|asm|cuda|ptx FILE.kir`: a program read back from
// kernel IR text, printed again or compiled.
static int emit_kir(const char *path, const char *stage, int arch, const CgOptions *co, const char *output,
                    const CliCommon *c) {
  bool native = !strcmp(stage, "llvm") || !strcmp(stage, "asm");
  bool device = !strcmp(stage, "cuda") || !strcmp(stage, "ptx");
  if (strcmp(stage, "kernels") && !native && !device)
    return cli_usage_error(usage_emit, "'%s' is kernel IR text; use --stage kernels, llvm, asm, cuda or ptx", path);
  Arena *a = arena_new();
  Diag d;
  setup_diag(&d, c);
  int status = EXIT_USER;
  KProgram *kp = NULL;
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    diag_error(&d, ((SrcLoc){0}), NULL, "cannot read '%s': %s", path, strerror(errno));
  } else {
    SrcFile *f = arena_alloc(a, sizeof *f);
    *f = (SrcFile){arena_strdup(a, path), arena_strndup(a, text, len), len};
    free(text);
    kp = ir_parse_program(f, a, &d);
  }
  FILE *out = !kp ? NULL : output ? fopen(output, "w") : stdout;
  if (kp && !out)
    fprintf(stderr, "nnc: error: cannot write '%s': %s\n", output, strerror(errno));
  if (out) {
    char err[1024];
    bool ok = true;
    int failed = 0;
    if (device) {
      ok = !(failed = print_cuda(out, kp, stage, arch));
    } else if (!native)
      ir_print_program(out, kp);
    else if (!(!strcmp(stage, "llvm") ? cg_print_llvm(out, kp, co, err, sizeof err)
                                      : cg_print_asm(out, kp, co, err, sizeof err))) {
      fprintf(stderr, "nnc: error: code generation failed: %s\n", err);
      ok = false;
    }
    bool bad = ferror(out) != 0;
    if ((out != stdout && fclose(out) != 0) || bad)
      fprintf(stderr, "nnc: error: writing '%s' failed: %s\n", output ? output : "<stdout>", strerror(errno));
    else
      status = ok ? 0 : failed ? failed : EXIT_USER;
  }
  diag_free(&d);
  arena_free(a);
  return status;
}

static int cmd_emit(int argc, char **argv) {
  static const struct option opts[] = {
      {"stage", required_argument, 0, 's'}, {"output", required_argument, 0, 'o'},
      {"train", no_argument, 0, 't'},      {"entry", required_argument, 0, 'e'},
      {"batch", required_argument, 0, 'b'}, {"no-fuse", no_argument, 0, 'F'},
      {"max-errors", required_argument, 0, 'E'}, {"no-color", no_argument, 0, 'C'},
      {"arch", required_argument, 0, 'A'}, {"opt-level", required_argument, 0, 'O'},
      {"help", no_argument, 0, 'h'},      {0, 0, 0, 0},
  };
  CliCommon c = {.max_errors = 50};
  CgOptions cg = {.opt_level = 2};
  bool opt_given = false;
  const char *stage = NULL, *output = NULL;
  bool train = false, nofuse = false;
  int arch = 0;
  const char *entry_name = "forward";
  int batch = 0;
  int ch;
  int64_t v;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "s:o:te:b:O:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'O':
      if (!cli_int(optarg, 0, 3, &v))
        return cli_usage_error(usage_emit, "--opt-level needs 0, 1, 2 or 3, found '%s'", optarg);
      cg.opt_level = (int)v;
      opt_given = true;
      break;
    case 't': train = true; break;
    case 'e': entry_name = optarg; break;
    case 'F': nofuse = true; break;
    case 'b':
      if (!cli_int(optarg, 1, 1 << 20, &v))   // as train's --batch (TRAIN_MAX_BATCH)
        return cli_usage_error(usage_emit, "--batch needs a whole number from 1 to 1048576, found '%s'", optarg);
      batch = (int)v;
      break;
    case 's': stage = optarg; break;
    case 'o': output = optarg; break;
    case 'A':
      if (strncmp(optarg, "sm_", 3) || !cli_int(optarg + 3, 30, 1000, &v))
        return cli_usage_error(usage_emit, "--arch needs a GPU architecture such as sm_80 or sm_90, found '%s'", optarg);
      arch = (int)v;
      break;
    case 'C': c.no_color = true; break;
    case 'E':
      if (!cli_int(optarg, 0, 1000000, &v))
        return cli_usage_error(usage_emit, "--max-errors needs a count, found '%s'", optarg);
      c.max_errors = (int)v;
      break;
    case 'h': fputs(usage_emit, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_emit, stderr); return EXIT_USAGE;
    }
  }
  if (!stage)
    return cli_usage_error(usage_emit, "emit needs --stage (ast, ir, dot, kernels, fused, llvm, asm, cuda or ptx)%s", "");
  bool native = !strcmp(stage, "llvm") || !strcmp(stage, "asm");
  bool device = !strcmp(stage, "cuda") || !strcmp(stage, "ptx");
  bool kstage = !strcmp(stage, "kernels") || !strcmp(stage, "fused") || native || device;
  if (strcmp(stage, "ast") && strcmp(stage, "ir") && strcmp(stage, "dot") && !kstage)
    return cli_usage_error(usage_emit, "unknown stage '%s' (expected ast, ir, dot, kernels, fused, llvm, asm, cuda or ptx)",
                           stage);
  if (arch && strcmp(stage, "ptx"))
    return cli_usage_error(usage_emit, "--arch applies to --stage ptx, not %s", stage);
  if (opt_given && !native)
    return cli_usage_error(usage_emit, "--opt-level applies to --stage llvm and asm, not %s", stage);
  if (!arch)
    arch = 80;
  EntryKind entry;
  if (!ir_entry_parse(entry_name, &entry))
    return cli_usage_error(usage_emit, "--entry is forward, eval or train, found '%s'", entry_name);
  if (optind != argc - 1)
    return cli_usage_error(usage_emit, "emit needs exactly one input file%s", "");
  const char *path = argv[optind];
  bool is_ir = has_suffix(path, ".ir");
  if (has_suffix(path, ".kir")) {
    if (train || batch || nofuse || strcmp(entry_name, "forward"))
      return cli_usage_error(usage_emit, "'%s' is kernel IR text: its entry point, batch and kernels are in it; "
                             "leave out --train, --entry, --batch and --no-fuse", path);
    return emit_kir(path, stage, arch, &cg, output, &c);
  }
  if (train && strcmp(stage, "ir") && strcmp(stage, "dot")) {
    fprintf(stderr, "nnc: --train applies to --stage ir and dot, not %s%s\n\n%s", stage,
            kstage ? "; the training step's kernels are --entry train" : "", usage_emit);
    return EXIT_USAGE;
  }
  if (train && has_suffix(path, ".ir"))
    return cli_usage_error(usage_emit, "--train needs a .nn model; '%s' is graph IR text", path);
  if (kstage && has_suffix(path, ".ir"))
    return cli_usage_error(usage_emit, "--stage kernels and fused need a .nn model; '%s' is graph IR text", path);
  if (is_ir && !strcmp(stage, "ast"))
    return cli_usage_error(usage_emit, "'%s' is graph IR text, which has no AST; use --stage ir or dot", path);

  Arena *a = arena_new();
  Diag d;
  setup_diag(&d, &c);
  int status = EXIT_USER;
  Program *p = NULL;
  IrGraph *g = NULL;
  Model *model = NULL;
  int gen_failed = 0;   // the exit status of a code generator that failed
  if (is_ir)
    g = load_ir(path, a, &d);
  else if (!strcmp(stage, "ast"))
    p = fe_parse_file(path, a, &d);
  else {
    Model *m = cli_load_model(path, a, &d);
    if (m && (train || entry == ENTRY_TRAIN) && (!pass_autodiff(m, &d) || !ir_verify(m->g, &d)))
      m = NULL;
    if (m && entry != ENTRY_FORWARD && !m->g->loss) {
      diag_error(&d, ((SrcLoc){0}), "add a loss after the model", "model '%s' has no loss for --entry %s",
                 m->g->name, entry_name);
      m = NULL;
    }
    g = m ? m->g : NULL;
    model = m;
  }
  if ((p && !d.nerrors) || g) {
    FILE *out = output ? fopen(output, "w") : stdout;
    if (!out) {
      fprintf(stderr, "nnc: error: cannot write '%s': %s\n", output, strerror(errno));
    } else {
      if (p)
        fe_print_ast(out, p);
      else if (kstage) {
        bool why = !strcmp(stage, "fused");
        CompileOptions co = {batch ? batch : model->train.batch, !nofuse, why ? out : NULL, !device};
        Compilation *c = pass_compile(model, entry, &co);
        char err[1024];
        if (device)
          gen_failed = print_cuda(out, c->prog, stage, arch);
        else if (native && !(!strcmp(stage, "llvm") ? cg_print_llvm(out, c->prog, &cg, err, sizeof err)
                                               : cg_print_asm(out, c->prog, &cg, err, sizeof err))) {
          fprintf(stderr, "nnc: error: code generation failed: %s\n", err);
          gen_failed = EXIT_USER;
        }
        if (why)
          fputc('\n', out);
        if (!native && !device)
          ir_print_program(out, c->prog);
        pass_compilation_free(c);
      } else if (!strcmp(stage, "ir"))
        ir_print(out, g);
      else
        ir_print_dot(out, g);
      bool bad = ferror(out) != 0;
      if ((out != stdout && fclose(out) != 0) || bad)
        fprintf(stderr, "nnc: error: writing '%s' failed: %s\n", output ? output : "<stdout>", strerror(errno));
      else
        status = gen_failed;
    }
  }
  diag_free(&d);
  arena_free(a);
  return status;
}

static int run_command(int argc, char **argv) {
  if (argc < 2)
    return cli_usage_error(usage_main, "missing command%s", "");
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("nnc %s (commit %s, LLVM %s)\n", NNC_VERSION, NNC_COMMIT, NNC_LLVM_VERSION);
    return 0;
  }
  if (!strcmp(cmd, "check"))
    return cmd_check(argc - 1, argv + 1);
  if (!strcmp(cmd, "emit"))
    return cmd_emit(argc - 1, argv + 1);
  if (!strcmp(cmd, "train"))
    return cli_train(argc - 1, argv + 1);
  if (!strcmp(cmd, "eval"))
    return cli_eval(argc - 1, argv + 1);
  if (!strcmp(cmd, "predict"))
    return cli_predict(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench"))
    return cli_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "compile"))
    return cli_compile(argc - 1, argv + 1);
  static const char *const cmds[] = {"check", "emit", "train", "eval", "predict", "bench", "compile", "help", "version"};
  const char *s = suggest_name(cmd, cmds, countof(cmds));
  fprintf(stderr, "nnc: unknown command '%s'%s%s%s\n\n%s", cmd, s ? "; did you mean '" : "", s ? s : "",
          s ? "'?" : "", usage_main);
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  int status = run_command(argc, argv);
  // What a command printed must have reached its reader: `nnc predict ... >
  // /dev/full` is a failure, not a silent exit 0.
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "nnc: error: writing to standard output failed: %s\n", strerror(errno));
    return status ? status : 1;
  }
  return status;
}
