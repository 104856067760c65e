// train.c: the verbs that run a model: train, eval and predict.
//
// Each reads its options, compiles the model (parse, lower, and autodiff
// for training), and hands over to the runtime.
#include "cli.h"
#include "runtime.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const usage_train =
    "usage: nnc train MODEL.nn [options]\n"
    "\n"
    "Trains the model with its loss and optimizer, showing progress; after each\n"
    "epoch it evaluates on the validation set (if any), appends to the metrics log\n"
    "and writes a checkpoint; at the end it evaluates on the test set. Defaults come\n"
    "from the model's `train { ... }` declaration.\n"
    "\n"
    "options:\n"
    "  -d, --data PATH       training data: a directory of IDX or IDX.gz files in the\n"
    "                        MNIST layout (its t10k files are the test set), or a CSV\n"
    "                        file (default: " RT_FASHION_MNIST_DIR ")\n"
    "      --test PATH       the test set, when --data is a file\n"
    "  -e, --epochs N        total epochs, counting those before --resume\n"
    "  -b, --batch N         samples per step\n"
    "      --lr X            the base learning rate (default: the optimizer's)\n"
    "  -s, --seed N          initial weights, data order, dropout (same seed and\n"
    "                        threads: the same weights, bit for bit)\n"
    "  -j, --threads N       threads (default: the number of cores)\n"
    "      --val-split F     hold out this fraction of the training data for validation\n"
    "  -o, --out DIR         checkpoint and metrics log (default: runs/MODELNAME)\n"
    "      --resume CKPT     continue from a checkpoint `nnc train` wrote\n"
    "      --limit N         train on the first N samples only\n"
    "      --test-limit N    evaluate on the first N test samples only\n"
    "      --normalize       standardize inputs with the training data's mean and std\n"
    "      --no-shuffle      keep the data's order\n"
    "      --metrics FORMAT  the metrics log: csv (default) or json (JSON lines)\n"
    "      --backend NAME    cpu (fused kernels compiled by LLVM; the default) or ref\n"
    "                        (one plain C kernel per graph node)\n"
    "      --no-fuse         cpu: one kernel per graph node\n"
    "      --progress MODE   within each epoch: bar (a live line), lines (one every\n"
    "                        10 s), none, or auto (bar on a terminal, else lines)\n"
    "  -q, --quiet           print nothing but errors\n"
    "  -h, --help            show this help\n";

static const char *const usage_eval =
    "usage: nnc eval MODEL.nn --weights CKPT [options]\n"
    "\n"
    "Evaluates trained weights: the loss and, for class targets, the accuracy, the\n"
    "accuracy of each class and the confusion matrix (up to 100 classes).\n"
    "\n"
    "options:\n"
    "  -w, --weights CKPT    the checkpoint (required)\n"
    "  -d, --data PATH       IDX directory or CSV file (default: " RT_FASHION_MNIST_DIR ")\n"
    "      --split NAME      test (default) or train, for an IDX directory\n"
    "  -b, --batch N         samples per step (default 256)\n"
    "      --limit N         the first N samples only\n"
    "  -j, --threads N       threads\n"
    "      --backend NAME    cpu (fused kernels compiled by LLVM; the default) or ref\n"
    "                        (one plain C kernel per graph node)\n"
    "      --no-fuse         cpu: one kernel per graph node\n"
    "  -h, --help            show this help\n";

static const char *const usage_predict =
    "usage: nnc predict MODEL.nn --weights CKPT [options] FILE...\n"
    "\n"
    "Prints the most likely classes, with their probabilities, for each input: a\n"
    "PNG or PGM image (resized to the model's input), every image of an IDX file,\n"
    "or every row of a CSV file.\n"
    "\n"
    "options:\n"
    "  -w, --weights CKPT    the checkpoint (required)\n"
    "  -k, --top K           how many classes to show (default 3)\n"
    "      --limit N         at most N samples from each IDX or CSV file\n"
    "  -j, --threads N       threads (default: the number of cores)\n"
    "      --backend NAME    cpu (fused kernels compiled by LLVM; the default) or ref\n"
    "                        (one plain C kernel per graph node)\n"
    "      --no-fuse         cpu: one kernel per graph node\n"
    "  -h, --help            show this help\n";

// --backend NAME: false for an unknown name.
static bool parse_backend(const char *s, RtBackend *b) {
  if (!strcmp(s, "cpu"))
    *b = RT_BACKEND_CPU;
  else if (!strcmp(s, "ref"))
    *b = RT_BACKEND_REF;
  else
    return false;
  return true;
}

// An executor of the chosen backend; NULL after reporting why.
static RtExec *make_exec(Model *m, int64_t batch, RtBackend backend, bool fuse, int threads) {
  if (!cli_check_memory(m, batch, NULL))
    return NULL;
  if (backend == RT_BACKEND_REF)
    return rt_exec_new(m, batch);
  char err[1024];
  RtExec *ex = rt_exec_new_cpu(m, batch, fuse, threads, err, sizeof err);
  if (!ex)
    fprintf(stderr, "nnc: error: %s\n", err);
  return ex;
}

static int cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

// Compiles path for running; with train, through autodiff too.
static Model *compile(const char *path, Arena *a, bool train) {
  Diag d;
  diag_init(&d, stderr);
  Model *m = cli_load_model(path, a, &d);
  if (m && train && (!pass_autodiff(m, &d) || !ir_verify(m->g, &d)))
    m = NULL;
  diag_free(&d);
  return m;
}

int cli_train(int argc, char **argv) {
  enum { O_TEST = 256, O_LR, O_VAL, O_RESUME, O_LIMIT, O_TLIMIT, O_NORM, O_NOSHUF, O_METRICS, O_PROGRESS,
         O_BACKEND, O_NOFUSE };
  static const struct option opts[] = {
      {"data", required_argument, 0, 'd'},   {"test", required_argument, 0, O_TEST},
      {"epochs", required_argument, 0, 'e'}, {"batch", required_argument, 0, 'b'},
      {"lr", required_argument, 0, O_LR},    {"seed", required_argument, 0, 's'},
      {"threads", required_argument, 0, 'j'}, {"val-split", required_argument, 0, O_VAL},
      {"out", required_argument, 0, 'o'},    {"resume", required_argument, 0, O_RESUME},
      {"limit", required_argument, 0, O_LIMIT}, {"test-limit", required_argument, 0, O_TLIMIT},
      {"normalize", no_argument, 0, O_NORM}, {"no-shuffle", no_argument, 0, O_NOSHUF},
      {"metrics", required_argument, 0, O_METRICS}, {"progress", required_argument, 0, O_PROGRESS},
      {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
      {"backend", required_argument, 0, O_BACKEND}, {"no-fuse", no_argument, 0, O_NOFUSE},
      {0, 0, 0, 0},
  };
  const char *data = RT_FASHION_MNIST_DIR, *test = NULL, *out = NULL, *resume = NULL, *metrics = "csv",
             *prog = "auto";
  int64_t epochs = -1, batch = -1, seed = -1, threads = cores(), limit = 0, tlimit = 0;
  double lr = -1, val = -1;
  bool normalize = false, noshuffle = false, quiet = false, nofuse = false;
  RtBackend backend = RT_BACKEND_CPU;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "d:e:b:s:j:o:qh", opts, NULL)) != -1) {
    switch (ch) {
    case 'q': quiet = true; break;
    case O_NOFUSE: nofuse = true; break;
    case O_BACKEND:
      if (!parse_backend(optarg, &backend))
        return cli_usage_error(usage_train, "--backend is cpu or ref, found '%s'", optarg);
      break;
    case 'd': data = optarg; break;
    case O_TEST: test = optarg; break;
    case 'o': out = optarg; break;
    case O_RESUME: resume = optarg; break;
    case O_NORM: normalize = true; break;
    case O_NOSHUF: noshuffle = true; break;
    case O_METRICS: metrics = optarg; break;
    case O_PROGRESS: prog = optarg; break;
    case 'e': if (!cli_int(optarg, 1, 1000000, &epochs)) return cli_usage_error(usage_train, "--epochs needs a whole number from 1, found '%s'", optarg); break;
    case 'b': if (!cli_int(optarg, 1, 1 << 20, &batch)) return cli_usage_error(usage_train, "--batch needs a whole number from 1, found '%s'", optarg); break;
    case 's': if (!cli_int(optarg, 0, INT64_MAX, &seed)) return cli_usage_error(usage_train, "--seed needs a whole number from 0, found '%s'", optarg); break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_train, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_train, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case O_TLIMIT: if (!cli_int(optarg, 1, INT64_MAX, &tlimit)) return cli_usage_error(usage_train, "--test-limit needs a whole number from 1, found '%s'", optarg); break;
    case O_LR: if (!cli_num(optarg, 1e-300, 1e6, &lr)) return cli_usage_error(usage_train, "--lr needs a positive number, found '%s'", optarg); break;
    case O_VAL: if (!cli_num(optarg, 0, 0.99, &val)) return cli_usage_error(usage_train, "--val-split needs a fraction in [0, 0.99], found '%s'", optarg); break;
    case 'h': fputs(usage_train, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_train, stderr); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(usage_train, "train needs exactly one model file%s", "");
  if (strcmp(metrics, "csv") && strcmp(metrics, "json"))
    return cli_usage_error(usage_train, "--metrics is csv or json, found '%s'", metrics);
  int progress;
  if (!strcmp(prog, "auto"))
    progress = isatty(fileno(stdout)) ? 1 : 0;
  else if (!strcmp(prog, "bar") || !strcmp(prog, "lines") || !strcmp(prog, "none"))
    progress = !strcmp(prog, "bar") ? 1 : !strcmp(prog, "lines") ? 0 : -1;
  else
    return cli_usage_error(usage_train, "--progress is auto, bar, lines or none, found '%s'", prog);

  Arena *a = arena_new();
  Model *m = compile(argv[optind], a, true);
  if (!m || !cli_check_memory(m, batch > 0 ? batch : m->train.batch, NULL)) {
    arena_free(a);
    return EXIT_USER;
  }
  char outdir[4096];
  snprintf(outdir, sizeof outdir, "runs/%s", m->g->name);
  RtTrainOpts o = {
      .data = data, .test = test, .out = out ? out : outdir, .resume = resume,
      .epochs = epochs > 0 ? (int)epochs : m->train.epochs, .batch = batch > 0 ? (int)batch : m->train.batch,
      .lr = lr > 0 ? lr : m->opt.lr, .seed = seed >= 0 ? (uint64_t)seed : m->train.seed,
      .threads = (int)threads, .val_split = val >= 0 ? val : m->train.val_split, .limit = limit,
      .test_limit = tlimit, .normalize = normalize, .shuffle = m->train.shuffle && !noshuffle,
      .progress = progress, .quiet = quiet, .json = !strcmp(metrics, "json"), .backend = backend,
      .fuse = !nofuse,
  };
  RtTrainResult res;
  bool ok = rt_train(m, &o, stdout, &res);
  arena_free(a);
  return ok ? 0 : EXIT_USER;
}

// Loads a test (or train) set for eval.
static bool eval_data(const Model *m, const char *path, const char *split, RtDataset *ds) {
  char err[2048];
  struct stat st;
  const IrNode *t = m->target;
  int nclasses = t && t->dtype == DT_I32 ? (int)t->attr.i[0] : 0;
  bool ok;
  bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  if (t && t->dtype == DT_F32 && dir) {
    rt_errorf(err, sizeof err, "%s is a directory of images, but model '%s' has the real-valued target '%s'\n"
              "---> HINT: give a CSV file with columns named after '%s' and '%s' with --data",
              path, m->g->name, t->name, m->input->name, t->name);
    ok = false;
  } else if (t && t->dtype == DT_F32)
    ok = rt_load_table_csv(path, m->input->name, ir_numel(m->input, 1), t->name, ir_numel(t, 1), ds, err,
                           sizeof err);
  else if (dir)
    ok = rt_load_idx_dir(path, split, nclasses, ds, err, sizeof err);
  else
    ok = rt_load_csv(path, nclasses, ds, err, sizeof err);
  if (!ok) {
    fprintf(stderr, "nnc: error: %s\n", err);
    return false;
  }
  if (ds->dim != ir_numel(m->input, 1)) {
    fprintf(stderr, "nnc: error: %s: samples have %lld values, but the model's input '%s' has %lld\n",
            ds->source, (long long)ds->dim, m->input->name, (long long)ir_numel(m->input, 1));
    rt_dataset_free(ds);
    return false;
  }
  return true;
}

static void print_confusion(const int64_t *conf, int k) {
  printf("\nper class:\n  class  samples  accuracy\n");
  for (int c = 0; c < k; c++) {
    int64_t n = 0;
    for (int j = 0; j < k; j++)
      n += conf[c * k + j];
    printf("  %5d  %7lld  %8.4f\n", c, (long long)n, n ? (double)conf[c * k + c] / n : 0.0);
  }
  printf("\nconfusion matrix (rows: true class, columns: predicted):\n       ");
  for (int j = 0; j < k; j++)
    printf(" %6d", j);
  printf("\n");
  for (int c = 0; c < k; c++) {
    printf("  %4d ", c);
    for (int j = 0; j < k; j++)
      printf(" %6lld", (long long)conf[c * k + j]);
    printf("\n");
  }
}

int cli_eval(int argc, char **argv) {
  enum { O_SPLIT = 256, O_LIMIT, O_BACKEND, O_NOFUSE };
  static const struct option opts[] = {
      {"backend", required_argument, 0, O_BACKEND}, {"no-fuse", no_argument, 0, O_NOFUSE},
      {"weights", required_argument, 0, 'w'}, {"data", required_argument, 0, 'd'},
      {"split", required_argument, 0, O_SPLIT}, {"batch", required_argument, 0, 'b'},
      {"limit", required_argument, 0, O_LIMIT}, {"threads", required_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
  };
  const char *weights = NULL, *data = RT_FASHION_MNIST_DIR, *split = "test";
  int64_t batch = 256, limit = 0, threads = cores();
  RtBackend backend = RT_BACKEND_CPU;
  bool nofuse = false;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "w:d:b:j:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'w': weights = optarg; break;
    case 'd': data = optarg; break;
    case O_SPLIT: split = optarg; break;
    case O_NOFUSE: nofuse = true; break;
    case O_BACKEND:
      if (!parse_backend(optarg, &backend))
        return cli_usage_error(usage_eval, "--backend is cpu or ref, found '%s'", optarg);
      break;
    case 'b': if (!cli_int(optarg, 1, 1 << 20, &batch)) return cli_usage_error(usage_eval, "--batch needs a whole number from 1, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_eval, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_eval, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case 'h': fputs(usage_eval, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_eval, stderr); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(usage_eval, "eval needs exactly one model file%s", "");
  if (!weights)
    return cli_usage_error(usage_eval, "eval needs --weights CKPT%s", "");
  if (strcmp(split, "test") && strcmp(split, "train"))
    return cli_usage_error(usage_eval, "--split is test or train, found '%s'", split);
  rt_set_threads((int)threads);
  Arena *a = arena_new();
  Model *m = compile(argv[optind], a, false);
  int status = EXIT_USER;
  RtDataset ds = {0};
  RtExec *ex = NULL;
  char err[2048];
  if (!m || !m->g->loss) {
    if (m)
      fprintf(stderr, "nnc: error: model '%s' has no loss to evaluate with\n", m->g->name);
    goto done;
  }
  if (!eval_data(m, data, split, &ds))
    goto done;
  if (!(ex = make_exec(m, batch, backend, !nofuse, (int)threads)))
    goto done;
  RtCkptInfo info;
  if (!rt_checkpoint_load(ex, weights, true, &info, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
    goto done;
  }
  if (limit > 0 && limit < ds.n)
    ds.n = limit;
  if (info.normalized)
    rt_dataset_normalize(&ds, info.mean, info.std);
  // k * k counts: for class(100000) that would be 80 GB, and no one reads
  // a table that wide; more classes get the loss and accuracy only.
  enum { MAX_CONFUSION_CLASSES = 100 };
  int k = m->target->dtype == DT_I32 ? (int)m->target->attr.i[0] : 0;
  int64_t *conf = k && k <= MAX_CONFUSION_CLASSES ? xcalloc((size_t)k * k, sizeof(int64_t)) : NULL;
  RtEvalResult r = rt_evaluate(ex, &ds, batch, conf);
  printf("model %s, weights %s (epoch %lld, step %lld)\n", m->g->name, weights, (long long)info.epoch,
         (long long)info.step);
  printf("data %s: %lld samples\n", ds.source, (long long)r.n);
  printf("loss %.4f", r.loss);
  if (r.acc >= 0)
    printf("  accuracy %.4f (%lld of %lld)", r.acc, (long long)llround(r.acc * r.n), (long long)r.n);
  printf("\n");
  if (conf)
    print_confusion(conf, k);
  else if (k)
    printf("(per-class accuracy and the confusion matrix: shown for at most %d classes, not %d)\n",
           MAX_CONFUSION_CLASSES, k);
  free(conf);
  status = 0;
done:
  rt_exec_free(ex);
  rt_dataset_free(&ds);
  arena_free(a);
  return status;
}

// Probabilities of the classes from the model's output row.
static void probabilities(const Model *m, const float *out, int64_t k, double *p) {
  IrOp last = m->g->output->op;
  double mx = -INFINITY, sum = 0;
  for (int64_t i = 0; i < k; i++)
    mx = fmax(mx, out[i]);
  for (int64_t i = 0; i < k; i++) {
    p[i] = last == IR_SOFTMAX ? out[i] : last == IR_LOG_SOFTMAX ? exp(out[i]) : exp(out[i] - mx);
    sum += p[i];
  }
  if (last != IR_SOFTMAX && last != IR_LOG_SOFTMAX)
    for (int64_t i = 0; i < k; i++)
      p[i] /= sum;
}

static void print_prediction(const Model *m, const char *what, const float *out, int64_t k, int top) {
  printf("%s:", what);
  if (!m->target || m->target->dtype != DT_I32) {
    for (int64_t i = 0; i < k; i++)
      printf(" %.6g", out[i]);
    printf("\n");
    return;
  }
  double *p = xmalloc(sizeof(double) * k);
  bool *used = xcalloc(k, 1);
  probabilities(m, out, k, p);
  for (int t = 0; t < top && t < k; t++) {
    int64_t best = -1;
    for (int64_t i = 0; i < k; i++)
      if (!used[i] && (best < 0 || p[i] > p[best]))
        best = i;
    used[best] = true;
    printf("  %lld (%.4f)", (long long)best, p[best]);
  }
  printf("\n");
  free(p);
  free(used);
}

// The samples of one file: images are resized to the input's height and width.
static bool predict_inputs(const Model *m, const char *path, RtDataset *ds, char *err, size_t errsz) {
  int64_t dim = ir_numel(m->input, 1);
  RtImage img;
  char ierr[1024];
  if (rt_image_load(path, &img, ierr, sizeof ierr)) {
    const IrNode *in = m->input;
    int64_t h = in->ndim >= 3 ? in->shape[in->ndim - 2] : 28, w = in->ndim >= 3 ? in->shape[in->ndim - 1] : 28;
    if (h * w != dim) {
      h = w = (int64_t)llround(sqrt((double)dim));
      if (h * w != dim) {
        rt_errorf(err, errsz, "%s: the model's input has %lld values, which is not an image", path, (long long)dim);
        rt_image_free(&img);
        return false;
      }
    }
    RtImage r;
    rt_image_resize(&img, (int)w, (int)h, &r);
    rt_image_free(&img);
    *ds = (RtDataset){.n = 1, .ndim = 2, .shape = {h, w}, .dim = dim, .x = r.px, .source = xstrdup(path)};
    return true;
  }
  bool ok = access(path, F_OK) == 0 && (rt_load_idx(path, NULL, 0, ds, err, errsz) || rt_load_csv(path, 0, ds, err, errsz));
  if (!ok) {
    rt_errorf(err, errsz, "%s: not a PNG, PGM, IDX or CSV file the model can read (%s)", path, ierr);
    return false;
  }
  if (ds->dim != dim) {
    rt_errorf(err, errsz, "%s: samples have %lld values, but the model's input has %lld", path,
              (long long)ds->dim, (long long)dim);
    rt_dataset_free(ds);
    return false;
  }
  return true;
}

int cli_predict(int argc, char **argv) {
  enum { O_LIMIT = 256, O_BACKEND, O_NOFUSE };
  static const struct option opts[] = {
      {"backend", required_argument, 0, O_BACKEND}, {"no-fuse", no_argument, 0, O_NOFUSE},
      {"weights", required_argument, 0, 'w'}, {"top", required_argument, 0, 'k'},
      {"limit", required_argument, 0, O_LIMIT}, {"threads", required_argument, 0, 'j'},
      {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
  };
  const char *weights = NULL;
  int64_t top = 3, limit = 0, threads = cores();
  RtBackend backend = RT_BACKEND_CPU;
  bool nofuse = false;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "w:k:j:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'w': weights = optarg; break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_predict, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case O_NOFUSE: nofuse = true; break;
    case O_BACKEND:
      if (!parse_backend(optarg, &backend))
        return cli_usage_error(usage_predict, "--backend is cpu or ref, found '%s'", optarg);
      break;
    case 'k': if (!cli_int(optarg, 1, 1000, &top)) return cli_usage_error(usage_predict, "--top needs a whole number from 1, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_predict, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case 'h': fputs(usage_predict, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_predict, stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind < 2)
    return cli_usage_error(usage_predict, "predict needs a model file and at least one input file%s", "");
  if (!weights)
    return cli_usage_error(usage_predict, "predict needs --weights CKPT%s", "");
  Arena *a = arena_new();
  Model *m = compile(argv[optind], a, false);
  int status = m ? 0 : EXIT_USER;
  rt_set_threads((int)threads);
  RtExec *ex = m ? make_exec(m, 1, backend, !nofuse, (int)threads) : NULL;
  if (m && !ex)
    status = EXIT_USER;
  char err[2048];
  RtCkptInfo info = {0};
  if (ex && !rt_checkpoint_load(ex, weights, true, &info, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = EXIT_USER;
  }
  for (int i = optind + 1; status == 0 && i < argc; i++) {
    RtDataset ds;
    if (!predict_inputs(m, argv[i], &ds, err, sizeof err)) {
      fprintf(stderr, "nnc: error: %s\n", err);
      status = EXIT_USER;
      break;
    }
    if (info.normalized)
      rt_dataset_normalize(&ds, info.mean, info.std);
    int64_t n = limit > 0 && limit < ds.n ? limit : ds.n;
    float *x = xmalloc(sizeof(float) * ds.dim);
    for (int64_t j = 0; j < n; j++) {
      rt_dataset_rows(&ds, NULL, j, 1, x);
      rt_exec_run(ex, RT_FORWARD, 1, x, NULL, 0);
      char what[4200];
      if (ds.n == 1)
        snprintf(what, sizeof what, "%s", argv[i]);
      else
        snprintf(what, sizeof what, "%s[%lld]", argv[i], (long long)j);
      print_prediction(m, what, rt_exec_output(ex), rt_exec_output_dim(ex), (int)top);
    }
    free(x);
    rt_dataset_free(&ds);
  }
  rt_exec_free(ex);
  arena_free(a);
  return status;
}
