// train.c: the verbs that run a model: train, eval and predict.
//
// Each reads its options, compiles the model (parse, lower, and autodiff
// for training), and hands over to the runtime.
#include "cli.h"
#include "train.h"

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
    "epoch it evaluates on the validation set (if any), writes a checkpoint and then\n"
    "appends to the metrics log; at the end it evaluates on the test set. Defaults\n"
    "come from the model's `train { ... }` declaration.\n"
    "\n"
    "The run's files: --out DIR holds checkpoint.safetensors, metrics.csv (or\n"
    "metrics.jsonl) and train.lock; --out PATH.safetensors is the checkpoint itself,\n"
    "with PATH.metrics.csv and PATH.lock beside it. A run locks them while it lasts\n"
    "(a second run into the same place fails, naming the first one's pid). A new\n"
    "run does not replace another run's checkpoint unless --overwrite says so; with\n"
    "--resume, the metrics log is cut back to the checkpoint's epoch. Files are\n"
    "written to a new temporary and renamed, never through a link; temporaries\n"
    "that killed runs left are removed when the next run starts.\n"
    "\n"
    "options:\n"
    "  -d, --data PATH       training data: a directory of IDX or IDX.gz files in the\n"
    "                        MNIST layout (its t10k files are the test set), or a CSV\n"
    "                        file (default: " RT_FASHION_MNIST_DIR ")\n"
    "      --test PATH       the test set, when --data is a file (one that does not\n"
    "                        load is an error)\n"
    "      --no-test         train without a test set\n"
    "  -e, --epochs N        total epochs, counting those before --resume; 0 writes\n"
    "                        the initial weights as the checkpoint\n"
    "  -b, --batch N         samples per step\n"
    "      --lr X            the base learning rate (default: the optimizer's)\n"
    "  -s, --seed N          initial weights, data order, dropout (same seed and\n"
    "                        threads: the same weights, bit for bit)\n"
    "  -j, --threads N       threads (default: the number of cores)\n"
    "      --val-split F     hold out this fraction of the training data for validation\n"
    "  -o, --out DIR         the run's files, as above (default: runs/MODELNAME, or\n"
    "                        with --resume, the run the checkpoint belongs to)\n"
    "      --resume CKPT     continue from a checkpoint `nnc train` wrote, with the\n"
    "                        run's --batch, --lr, --seed, --val-split, --limit,\n"
    "                        --no-shuffle and --drop-last (another --lr may be given)\n"
    "      --init WEIGHTS    start a new run from these weights, with fresh optimizer\n"
    "                        state: an nnc checkpoint, or a PyTorch state_dict saved\n"
    "                        with safetensors under nnc's names\n"
    "      --overwrite       let a new run replace the checkpoint in --out\n"
    "      --limit N         train on the first N samples only\n"
    "      --test-limit N    evaluate on the first N test samples only\n"
    "      --normalize       standardize inputs with the training data's mean and std\n"
    "      --no-shuffle      keep the data's order\n"
    "      --shift N         augment training images: a random translation by up to\n"
    "                        N pixels each way (zero fill)\n"
    "      --crop N          PyTorch's RandomCrop(size, padding = N)\n"
    "      --hflip, --no-hflip  a random horizontal flip (probability 0.5), or none\n"
    "      --rotate DEG      a random rotation in [-DEG, DEG] degrees (bilinear)\n"
    "      --noise STD       Gaussian noise of standard deviation STD on the inputs\n"
    "                        (not for a loss that compares with an input: put\n"
    "                        gaussian_noise(STD) in the model)\n"
    "                        (the defaults of these five: the train declaration's)\n"
    "      --drop-last       drop each epoch's last batch when it is smaller than --batch\n"
    "      --metrics FORMAT  the metrics log: csv (default) or json (JSON lines)\n"
    "      --backend NAME    the backend, listed below (default " EXEC_DEFAULT_BACKEND ")\n"
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
    "      --backend NAME    the backend, listed below (default " EXEC_DEFAULT_BACKEND ")\n"
    "      --no-fuse         cpu: one kernel per graph node\n"
    "  -h, --help            show this help\n";

static const char *const usage_predict =
    "usage: nnc predict MODEL.nn --weights CKPT [options] FILE...\n"
    "\n"
    "Prints the most likely classes with their probabilities (class targets), or\n"
    "the model's output, for each sample: a PNG or PGM image (resized to the\n"
    "model's input), every image of an IDX file, or every row of a CSV file, read\n"
    "as `nnc train` reads it (columns named after the inputs, or label,pixel0,...).\n"
    "A model of several outputs prints a CSV table: a header naming each output's\n"
    "columns (logits0,...,recon0,...), then a row per sample.\n"
    "\n"
    "options:\n"
    "  -w, --weights CKPT    the checkpoint (required)\n"
    "  -k, --top K           how many classes to show (default 3)\n"
    "      --limit N         at most N samples from each IDX or CSV file\n"
    "  -j, --threads N       threads (default: the number of cores)\n"
    "      --backend NAME    the backend, listed below (default " EXEC_DEFAULT_BACKEND ")\n"
    "      --no-fuse         cpu: one kernel per graph node\n"
    "  -h, --help            show this help\n";

// An executor of the chosen backend for one entry point; NULL after
// reporting why.
static Exec *make_exec(Model *m, int64_t batch, const char *backend, bool fuse, int threads, EntryKind entry) {
  if (!cli_check_memory(m, batch, NULL))
    return NULL;
  char err[1024];
  ExecOptions o = {.max_batch = batch, .threads = threads, .fuse = fuse, .entries = 1u << entry};
  Exec *ex = exec_new(backend, m, &o, err, sizeof err);
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

// The run a checkpoint belongs to, where --resume continues by default:
// the directory of DIR/checkpoint.safetensors, else the file itself.
static const char *resume_dir(const char *ckpt, char *buf, size_t n) {
  const char *name = "checkpoint.safetensors", *slash = strrchr(ckpt, '/');
  const char *base = slash ? slash + 1 : ckpt;
  if (strcmp(base, name))
    return ckpt;
  if (!slash)
    return ".";
  snprintf(buf, n, "%.*s", (int)(slash == ckpt ? 1 : slash - ckpt), ckpt);
  return buf;
}

int cli_train(int argc, char **argv) {
  enum { O_TEST = 256, O_LR, O_VAL, O_RESUME, O_LIMIT, O_TLIMIT, O_NORM, O_NOSHUF, O_METRICS, O_PROGRESS,
         O_BACKEND, O_NOFUSE, O_INIT, O_OVERWRITE, O_NOTEST, O_SHIFT, O_CROP, O_HFLIP, O_NOHFLIP, O_ROTATE,
         O_NOISE, O_DROPLAST };
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
      {"init", required_argument, 0, O_INIT}, {"overwrite", no_argument, 0, O_OVERWRITE},
      {"no-test", no_argument, 0, O_NOTEST},
      {"shift", required_argument, 0, O_SHIFT}, {"crop", required_argument, 0, O_CROP},
      {"hflip", no_argument, 0, O_HFLIP},    {"no-hflip", no_argument, 0, O_NOHFLIP},
      {"rotate", required_argument, 0, O_ROTATE}, {"noise", required_argument, 0, O_NOISE},
      {"drop-last", no_argument, 0, O_DROPLAST},
      {0, 0, 0, 0},
  };
  const char *data = RT_FASHION_MNIST_DIR, *test = NULL, *out = NULL, *resume = NULL, *metrics = "csv",
             *prog = "auto", *init = NULL;
  bool overwrite = false, notest = false;
  int64_t epochs = -1, batch = -1, seed = -1, threads = cores(), limit = 0, tlimit = 0;
  double lr = -1, val = -1;
  int64_t shift = -1, crop = -1;
  double rotate = -1, noise = -1;
  int hflip = -1;   // -1: the train declaration's
  bool normalize = false, noshuffle = false, quiet = false, nofuse = false, droplast = false;
  const char *backend = EXEC_DEFAULT_BACKEND;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "d:e:b:s:j:o:qh", opts, NULL)) != -1) {
    switch (ch) {
    case 'q': quiet = true; break;
    case O_NOFUSE: nofuse = true; break;
    case O_BACKEND:
      if (cli_backend(usage_train, optarg, &backend))
        return EXIT_USAGE;
      break;
    case 'd': data = optarg; break;
    case O_TEST: test = optarg; break;
    case 'o': out = optarg; break;
    case O_RESUME: resume = optarg; break;
    case O_INIT: init = optarg; break;
    case O_OVERWRITE: overwrite = true; break;
    case O_NOTEST: notest = true; break;
    case O_NORM: normalize = true; break;
    case O_NOSHUF: noshuffle = true; break;
    case O_DROPLAST: droplast = true; break;
    case O_METRICS: metrics = optarg; break;
    case O_PROGRESS: prog = optarg; break;
    case 'e': if (!cli_int(optarg, 0, TRAIN_MAX_EPOCHS, &epochs)) return cli_usage_error(usage_train, "--epochs needs a whole number from 0 to 1000000, found '%s'", optarg); break;
    case 'b': if (!cli_int(optarg, 1, TRAIN_MAX_BATCH, &batch)) return cli_usage_error(usage_train, "--batch needs a whole number from 1 to 1048576, found '%s'", optarg); break;
    case 's': if (!cli_int(optarg, 0, INT64_MAX, &seed)) return cli_usage_error(usage_train, "--seed needs a whole number from 0, found '%s'", optarg); break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_train, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_train, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case O_TLIMIT: if (!cli_int(optarg, 1, INT64_MAX, &tlimit)) return cli_usage_error(usage_train, "--test-limit needs a whole number from 1, found '%s'", optarg); break;
    case O_LR: if (!cli_num(optarg, 1e-300, 1e6, &lr)) return cli_usage_error(usage_train, "--lr needs a positive number, found '%s'", optarg); break;
    case O_VAL: if (!cli_num(optarg, 0, 0.99, &val)) return cli_usage_error(usage_train, "--val-split needs a fraction in [0, 0.99], found '%s'", optarg); break;
    case O_SHIFT: if (!cli_int(optarg, 0, 1 << 20, &shift)) return cli_usage_error(usage_train, "--shift needs a whole number of pixels from 0, found '%s'", optarg); break;
    case O_CROP: if (!cli_int(optarg, 0, 1 << 20, &crop)) return cli_usage_error(usage_train, "--crop needs a whole number of pixels from 0, found '%s'", optarg); break;
    case O_HFLIP: hflip = 1; break;
    case O_NOHFLIP: hflip = 0; break;
    case O_ROTATE: if (!cli_num(optarg, 0, 180, &rotate)) return cli_usage_error(usage_train, "--rotate needs an angle in [0, 180] degrees, found '%s'", optarg); break;
    case O_NOISE: if (!cli_num(optarg, 0, 1e6, &noise)) return cli_usage_error(usage_train, "--noise needs a standard deviation in [0, 1e6], found '%s'", optarg); break;
    case 'h': cli_print_usage(stdout, usage_train); return 0;
    default: fputs("\n", stderr); cli_print_usage(stderr, usage_train); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(usage_train, "train needs exactly one model file%s", "");
  const char *empty = !*data ? "--data" : test && !*test ? "--test" : out && !*out ? "--out" :
                      resume && !*resume ? "--resume" : init && !*init ? "--init" : NULL;
  if (empty)
    return cli_usage_error(usage_train, "%s needs a path, found ''", empty);
  if (resume && (init || overwrite))
    return cli_usage_error(usage_train, "--resume continues a run; %s starts a new one: give one of them",
                           init ? "--init" : "--overwrite");
  if (test && notest)
    return cli_usage_error(usage_train, "--test and --no-test contradict each other%s", "");
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
  if (!out && resume)
    out = resume_dir(resume, outdir, sizeof outdir);
  const AugmentConfig *g = &m->train.augment;
  TrainOpts o = {
      .data = data, .test = test, .out = out ? out : outdir, .resume = resume, .init = init,
      .overwrite = overwrite, .no_test = notest, .epochs = epochs >= 0 ? (int)epochs : m->train.epochs, .batch = batch > 0 ? (int)batch : m->train.batch,
      .lr = lr > 0 ? lr : m->opt.lr, .seed = seed >= 0 ? (uint64_t)seed : m->train.seed,
      .threads = (int)threads, .val_split = val >= 0 ? val : m->train.val_split, .limit = limit,
      .test_limit = tlimit, .normalize = normalize, .shuffle = m->train.shuffle && !noshuffle,
      .drop_last = m->train.drop_last || droplast, .patience = m->train.patience,
      .progress = progress, .quiet = quiet, .json = !strcmp(metrics, "json"), .backend = backend,
      .fuse = !nofuse,
      .augment = {shift >= 0 ? (int)shift : g->shift, crop >= 0 ? (int)crop : g->crop,
                  hflip >= 0 ? hflip != 0 : g->hflip, rotate >= 0 ? rotate : g->rotate, noise >= 0 ? noise : g->noise},
      .given = (batch > 0 ? TRAIN_GIVEN_BATCH : 0) | (lr > 0 ? TRAIN_GIVEN_LR : 0) | (seed >= 0 ? TRAIN_GIVEN_SEED : 0) |
               (val >= 0 ? TRAIN_GIVEN_VAL_SPLIT : 0) | (limit > 0 ? TRAIN_GIVEN_LIMIT : 0) |
               (noshuffle ? TRAIN_GIVEN_SHUFFLE : 0) | (droplast ? TRAIN_GIVEN_DROP_LAST : 0),
  };
  TrainResult res;
  bool ok = train_run(m, &o, stdout, &res);
  arena_free(a);
  return ok ? 0 : EXIT_USER;
}

// Loads a test (or train) set for eval.
static bool eval_data(const Model *m, const char *path, const char *split, Dataset *ds) {
  char err[2048];
  if (!train_load_data(m, path, split, true, ds, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
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
  const char *backend = EXEC_DEFAULT_BACKEND;
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
      if (cli_backend(usage_eval, optarg, &backend))
        return EXIT_USAGE;
      break;
    case 'b': if (!cli_int(optarg, 1, TRAIN_MAX_BATCH, &batch)) return cli_usage_error(usage_eval, "--batch needs a whole number from 1 to 1048576, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_eval, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_eval, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case 'h': cli_print_usage(stdout, usage_eval); return 0;
    default: fputs("\n", stderr); cli_print_usage(stderr, usage_eval); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(usage_eval, "eval needs exactly one model file%s", "");
  if (!*data || (weights && !*weights))
    return cli_usage_error(usage_eval, "%s needs a path, found ''", !*data ? "--data" : "--weights");
  if (!weights)
    return cli_usage_error(usage_eval, "eval needs --weights CKPT%s", "");
  if (strcmp(split, "test") && strcmp(split, "train"))
    return cli_usage_error(usage_eval, "--split is test or train, found '%s'", split);
  struct stat st;
  if (!strcmp(split, "train") && stat(data, &st) == 0 && !S_ISDIR(st.st_mode))   // a file has one split
    return cli_usage_error(usage_eval, "--split picks the train-* or t10k-* files of an IDX directory, but "
                           "'%s' is a file: evaluate another file with --data", data);
  Arena *a = arena_new();
  Model *m = compile(argv[optind], a, false);
  int status = EXIT_USER;
  Dataset ds = {0};
  Exec *ex = NULL;
  char err[2048];
  if (!m || !m->g->loss) {
    if (m)
      fprintf(stderr, "nnc: error: model '%s' has no loss to evaluate with\n", m->g->name);
    goto done;
  }
  if (!eval_data(m, data, split, &ds))
    goto done;
  if (!(ex = make_exec(m, batch, backend, !nofuse, (int)threads, ENTRY_EVAL)))
    goto done;
  CkptInfo info;
  if (!train_checkpoint_load(ex, weights, true, &info, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
    goto done;
  }
  if (limit > 0 && limit < ds.n)
    ds.n = limit;
  if (info.normalized)
    data_normalize(&ds, info.mean, info.std);
  // k * k counts: for class(100000) that would be 80 GB, and no one reads
  // a table that wide; more classes get the loss and accuracy only.
  enum { MAX_CONFUSION_CLASSES = 100 };
  ExecClassHead heads[IR_MAX_TARGETS];
  int k = exec_class_heads(ex, heads, IR_MAX_TARGETS) ? (int)heads[0].k : 0;   // the first classifier's
  int64_t *conf = k && k <= MAX_CONFUSION_CLASSES ? xcalloc((size_t)k * k, sizeof(int64_t)) : NULL;
  EvalResult r = train_evaluate(ex, &ds, batch, conf);
  if (info.plain)
    printf("model %s, weights %s (plain weights, no training metadata)\n", m->g->name, weights);
  else
    printf("model %s, weights %s (epoch %lld, step %lld)\n", m->g->name, weights, (long long)info.epoch,
           (long long)info.step);
  printf("data %s: %lld samples\n", ds.source, (long long)r.n);
  fputs("loss ", stdout);
  train_print_loss(stdout, r.loss);
  if (r.acc >= 0)
    printf("  accuracy %.4f (%lld of %lld)", r.acc, (long long)llround(r.acc * r.n), (long long)r.n);
  printf("\n");
  if (r.nterms) {
    printf("losses ");
    train_print_losses(stdout, m, r.terms, r.nterms);
    printf("\n");
  }
  if (r.nheads > 1) {   // the confusion matrix below is the first's
    printf("accuracies");
    train_print_accuracies(stdout, r.head_target, r.head_acc, r.nheads);
    printf("\n");
  }
  if (conf)
    print_confusion(conf, k);
  else if (k)
    printf("(per-class accuracy and the confusion matrix: shown for at most %d classes, not %d)\n",
           MAX_CONFUSION_CLASSES, k);
  free(conf);
  status = 0;
done:
  exec_free(ex);
  data_free(&ds);
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

// v with the fewest digits (at least 6) that read back as the same float.
static const char *float_text(float v, char *buf, size_t n) {
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(buf, n, "%.*g", digits, v);
    if (strtof(buf, NULL) == v)
      break;
  }
  return buf;
}

// A CSV field: quoted when it holds a comma, a quote or a line break.
static void print_field(const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, stdout);
    return;
  }
  putchar('"');
  for (; *s; s++) {
    if (*s == '"')
      putchar('"');
    putchar(*s);
  }
  putchar('"');
}

// A model of several outputs: its predictions are a CSV table whose header
// names every output's columns as a table's are named (`logits0,...`, a
// single value by the output's name alone).
static void print_outputs_header(const Model *m) {
  printf("sample");
  for (int i = 0; i < m->g->noutputs; i++) {
    int64_t d = ir_numel(m->g->outputs[i], 1);
    for (int64_t j = 0; j < d; j++) {
      putchar(',');
      print_field(m->g->output_names[i]);
      if (d > 1)
        printf("%lld", (long long)j);
    }
  }
  printf("\n");
}

static void print_outputs_row(const char *what, const float *out, int64_t k) {
  char buf[32];
  print_field(what);
  for (int64_t i = 0; i < k; i++)
    printf(",%s", float_text(out[i], buf, sizeof buf));
  printf("\n");
}

static void print_prediction(const Model *m, const char *what, const float *out, int64_t k, int top) {
  if (m->g->noutputs > 1) {
    print_outputs_row(what, out, k);
    return;
  }
  printf("%s:", what);
  if (!m->target || m->target->dtype != DT_I32) {
    char buf[32];
    for (int64_t i = 0; i < k; i++)
      printf(" %s", float_text(out[i], buf, sizeof buf));
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

// What a file to predict on holds, told by its first bytes.
typedef enum { FILE_IMAGE, FILE_IDX, FILE_CSV } FileKind;

static FileKind file_kind(const char *path) {
  if (data_image_file(path))   // a damaged image too, so that its decoder says what is wrong
    return FILE_IMAGE;
  unsigned char b[4] = {0};
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(b, 1, sizeof b, f) : 0;
  if (f)
    fclose(f);
  if ((n >= 2 && b[0] == 0x1f && b[1] == 0x8b) || (n >= 4 && b[0] == 0 && b[1] == 0))
    return FILE_IDX;   // gzip (IDX.gz) or an IDX header: two zero bytes, the type, the rank
  return FILE_CSV;
}

// An image as one sample, resized to the input's height and width.
static bool predict_image(const Model *m, const char *path, Dataset *ds, char *err, size_t errsz) {
  const IrNode *in = m->input;
  int64_t dim = ir_numel(in, 1);
  int64_t h = in->ndim >= 3 ? in->shape[in->ndim - 2] : 28, w = in->ndim >= 3 ? in->shape[in->ndim - 1] : 28;
  if (h * w != dim) {
    h = w = (int64_t)llround(sqrt((double)dim));
    if (h * w != dim) {
      errorf(err, errsz, "%s: the model's input '%s' has %lld values, which is not a grayscale image", path,
                in->name, (long long)dim);
      return false;
    }
  }
  Image img, r;
  if (!data_image_load(path, &img, err, errsz))
    return false;
  data_image_resize(&img, (int)w, (int)h, &r);
  data_image_free(&img);
  *ds = (Dataset){.n = 1, .ndim = 2, .shape = {h, w}, .dim = dim, .x = r.px, .source = xstrdup(path)};
  return true;
}

// The samples of one file, read as train reads its data: a PNG or PGM
// image, an IDX file of images (both scaled to [0, 1], as IDX training
// data is), or a CSV file (train_load_data, without the target).
// Images and IDX files hold one input and are scaled as no table is, so a
// model with several inputs or a real-valued target reads CSV files only.
static bool predict_inputs(const Model *m, const char *path, Dataset *ds, char *err, size_t errsz) {
  struct stat st;
  if (stat(path, &st) != 0) {
    errorf(err, errsz, "%s: %s", path, strerror(errno));
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    errorf(err, errsz, "%s: is a directory\n---> HINT: predict reads files: PNG or PGM images, IDX files "
              "of images, or CSV files; give the files inside (%s/*.png)", path, path);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {   // read twice (its kind, then its samples); a FIFO blocks
    errorf(err, errsz, "%s: is not a regular file (a pipe or a device)\n---> HINT: save the data to a file "
              "and give its path", path);
    return false;
  }
  FileKind kind = file_kind(path);
  const IrNode *t = m->target;
  if (kind != FILE_CSV && (m->ninputs > 1 || (t && t->dtype != DT_I32))) {
    if (m->ninputs > 1)
      errorf(err, errsz, "%s: %s holds one input, but model '%s' has %d\n---> HINT: give a CSV file with "
                "columns named after the inputs, as for training", path, kind == FILE_IMAGE ? "an image" :
                "an IDX file", m->g->name, m->ninputs);
    else
      errorf(err, errsz, "%s: model '%s' has the real-valued target '%s' and trains on CSV tables, whose "
                "values are not scaled as %s are\n---> HINT: give a CSV file with columns named after '%s', as "
                "for training", path, m->g->name, t->name, kind == FILE_IMAGE ? "an image's pixels" :
                "IDX images", m->input->name);
    return false;
  }
  if (kind != FILE_CSV && m->input->dtype == DT_I32) {
    errorf(err, errsz, "%s: input '%s' holds integers (i32), not %s\n---> HINT: give a CSV file with columns "
           "named after '%s', as for training", path, m->input->name, kind == FILE_IMAGE ? "an image's pixels" :
           "IDX images", m->input->name);
    return false;
  }
  if (kind == FILE_IMAGE)
    return predict_image(m, path, ds, err, errsz);
  if (kind == FILE_IDX)
    return data_load_idx(path, NULL, 0, ds, err, errsz) && train_data_fits(m, ds, err, errsz);
  return train_load_data(m, path, "test", false, ds, err, errsz);
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
  const char *backend = EXEC_DEFAULT_BACKEND;
  bool nofuse = false;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "w:k:j:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'w': weights = optarg; break;
    case 'j': if (!cli_int(optarg, 1, 1024, &threads)) return cli_usage_error(usage_predict, "--threads needs a whole number from 1 to 1024, found '%s'", optarg); break;
    case O_NOFUSE: nofuse = true; break;
    case O_BACKEND:
      if (cli_backend(usage_predict, optarg, &backend))
        return EXIT_USAGE;
      break;
    case 'k': if (!cli_int(optarg, 1, 1000, &top)) return cli_usage_error(usage_predict, "--top needs a whole number from 1 to 1000, found '%s'", optarg); break;
    case O_LIMIT: if (!cli_int(optarg, 1, INT64_MAX, &limit)) return cli_usage_error(usage_predict, "--limit needs a whole number from 1, found '%s'", optarg); break;
    case 'h': cli_print_usage(stdout, usage_predict); return 0;
    default: fputs("\n", stderr); cli_print_usage(stderr, usage_predict); return EXIT_USAGE;
    }
  }
  if (argc - optind < 2)
    return cli_usage_error(usage_predict, "predict needs a model file and at least one input file%s", "");
  if (!weights)
    return cli_usage_error(usage_predict, "predict needs --weights CKPT%s", "");
  if (!*weights)
    return cli_usage_error(usage_predict, "--weights needs a path, found ''%s", "");
  Arena *a = arena_new();
  Model *m = compile(argv[optind], a, false);
  int status = m ? 0 : EXIT_USER;
  Exec *ex = m ? make_exec(m, 1, backend, !nofuse, (int)threads, ENTRY_FORWARD) : NULL;
  if (m && !ex)
    status = EXIT_USER;
  char err[2048];
  CkptInfo info = {0};
  if (ex && !train_checkpoint_load(ex, weights, true, &info, err, sizeof err)) {
    fprintf(stderr, "nnc: error: %s\n", err);
    status = EXIT_USER;
  }
  if (status == 0 && m->g->noutputs > 1)
    print_outputs_header(m);
  for (int i = optind + 1; status == 0 && i < argc; i++) {
    Dataset ds;
    if (!predict_inputs(m, argv[i], &ds, err, sizeof err)) {
      fprintf(stderr, "nnc: error: %s\n", err);
      status = EXIT_USER;
      break;
    }
    if (info.normalized)
      data_normalize(&ds, info.mean, info.std);
    int64_t n = limit > 0 && limit < ds.n ? limit : ds.n;
    float *x = xmalloc(sizeof(float) * ds.dim), *out = xmalloc(sizeof(float) * exec_output_dim(ex));
    for (int64_t j = 0; j < n; j++) {
      data_rows(&ds, NULL, j, 1, x);
      exec_run(ex, ENTRY_FORWARD, 1, x, NULL, 0);
      char what[4200];
      if (ds.n == 1)
        snprintf(what, sizeof what, "%s", argv[i]);
      else
        snprintf(what, sizeof what, "%s[%lld]", argv[i], (long long)j);
      exec_read_output(ex, out);
      print_prediction(m, what, out, exec_output_dim(ex), (int)top);
    }
    free(x);
    free(out);
    data_free(&ds);
  }
  exec_free(ex);
  arena_free(a);
  return status;
}
