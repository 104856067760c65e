// compile.c: `nnc compile`: a model compiled ahead of time into an object
// file and a C header (aot/), for programs that train and run it without
// nnc.
#include "aot.h"
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const usage_compile =
    "usage: nnc compile MODEL.nn -o PREFIX [options]\n"
    "\n"
    "Compiles the model ahead of time into PREFIX.o (PREFIX.so with --shared) and\n"
    "PREFIX.h, whose functions (MODEL_create, MODEL_forward, MODEL_train_step, ...)\n"
    "a C program calls to run and train the model without nnc. Link it with the\n"
    "runtime library: cc app.c PREFIX.o $(pkg-config --cflags --libs nncrt)\n"
    "(docs/aot.md documents the API).\n"
    "\n"
    "options:\n"
    "  -o, --output PREFIX   where the files go (required)\n"
    "  -e, --entry LIST      the entry points, comma-separated: forward, eval, train\n"
    "                        (default: every one the model has)\n"
    "  -b, --batch N         the largest batch the functions take (default: the\n"
    "                        model's train batch)\n"
    "      --name NAME       begin the functions' names with NAME (default: the\n"
    "                        model's name)\n"
    "      --target TRIPLE   make code for another machine, e.g. aarch64-linux-gnu\n"
    "                        (default: this one)\n"
    "      --cpu NAME        for that CPU, as clang's -mcpu names it, e.g. haswell,\n"
    "                        znver3, neoverse-n1 (default: this machine's, or the\n"
    "                        target's generic CPU)\n"
    "      --weights CKPT    check that the checkpoint fits the model\n"
    "      --embed           with --weights: put the weights into the object, so a\n"
    "                        new context starts from them\n"
    "      --shared          a shared object, with the runtime library linked in\n"
    "      --runtime FILE    with --shared: the runtime library to link (default:\n"
    "                        nnc's own libnncrt.a)\n"
    "  -h, --help            show this help\n";

// --entry's list: bits 1 << ENTRY_*; false names what is wrong.
static bool parse_entries(const char *s, unsigned *out, const char **bad) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  *out = 0;
  size_t n = strlen(s);
  if (!n || s[0] == ',' || s[n - 1] == ',' || strstr(s, ",,")) {   // an empty item
    *bad = s;
    return false;
  }
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    EntryKind e;
    if (!ir_entry_parse(t, &e)) {
      static char word[128];
      snprintf(word, sizeof word, "%s", t);
      *bad = word;
      return false;
    }
    *out |= 1u << e;
  }
  *bad = s;
  return *out != 0 && strlen(s) < sizeof buf;
}

int cli_compile(int argc, char **argv) {
  enum { O_NAME = 256, O_TARGET, O_CPU, O_WEIGHTS, O_EMBED, O_SHARED, O_RUNTIME };
  static const struct option opts[] = {
      {"output", required_argument, 0, 'o'},    {"entry", required_argument, 0, 'e'},
      {"batch", required_argument, 0, 'b'},     {"name", required_argument, 0, O_NAME},
      {"target", required_argument, 0, O_TARGET}, {"cpu", required_argument, 0, O_CPU},
      {"weights", required_argument, 0, O_WEIGHTS}, {"embed", no_argument, 0, O_EMBED},
      {"shared", no_argument, 0, O_SHARED},     {"runtime", required_argument, 0, O_RUNTIME},
      {"help", no_argument, 0, 'h'},            {0, 0, 0, 0},
  };
  AotOptions o = {0};
  char cmd[1024];   // the command as given, for the header (getopt reorders argv)
  size_t at = (size_t)snprintf(cmd, sizeof cmd, "nnc compile");
  for (int i = 1; i < argc && at < sizeof cmd; i++)
    at += (size_t)snprintf(cmd + at, sizeof cmd - at, " %s", argv[i]);
  int64_t batch = 0;
  const char *bad;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "o:e:b:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'o': o.out = optarg; break;
    case 'e':
      if (!parse_entries(optarg, &o.entries, &bad))
        return cli_usage_error(usage_compile, "--entry takes forward, eval and train, comma-separated; found '%s'",
                               bad);
      break;
    case 'b':
      if (!cli_int(optarg, 1, 1 << 20, &batch))
        return cli_usage_error(usage_compile, "--batch needs a whole number from 1 to 1048576, found '%s'", optarg);
      break;
    case O_NAME: o.name = optarg; break;
    case O_TARGET: o.triple = optarg; break;
    case O_CPU: o.cpu = optarg; break;
    case O_WEIGHTS: o.weights = optarg; break;
    case O_EMBED: o.embed = true; break;
    case O_SHARED: o.shared = true; break;
    case O_RUNTIME: o.runtime = optarg; break;
    case 'h': fputs(usage_compile, stdout); return 0;
    default: fputs("\n", stderr); fputs(usage_compile, stderr); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_usage_error(usage_compile, "compile needs exactly one model file%s", "");
  if (!o.out || !*o.out)
    return cli_usage_error(usage_compile, "compile needs -o PREFIX (writes PREFIX.o and PREFIX.h)%s", "");
  size_t n = strlen(o.out);
  if (o.out[n - 1] == '/')
    return cli_usage_error(usage_compile, "-o takes a prefix for the files' names, not a directory: '%s'", o.out);
  if ((n >= 2 && !strcmp(o.out + n - 2, ".o")) || (n >= 2 && !strcmp(o.out + n - 2, ".h")) ||
      (n >= 3 && !strcmp(o.out + n - 3, ".so")))
    return cli_usage_error(usage_compile, "-o takes the files' prefix: '-o mlp' writes mlp.o and mlp.h; found '%s'",
                           o.out);
  if (o.name && !aot_valid_name(o.name))
    return cli_usage_error(usage_compile, "--name needs a C identifier (letters, digits, '_', not first a digit or "
                           "'_', at most 64 characters, not beginning with 'nncrt', the runtime library's), found '%s'", o.name);
  if ((o.triple && !*o.triple) || (o.cpu && !*o.cpu) || (o.weights && !*o.weights) || (o.runtime && !*o.runtime))
    return cli_usage_error(usage_compile, "an option needs a value, found ''%s", "");
  if (o.embed && !o.weights)
    return cli_usage_error(usage_compile, "--embed puts the weights of --weights CKPT into the object; give "
                           "--weights%s", "");
  if (o.runtime && !o.shared)
    return cli_usage_error(usage_compile, "--runtime names the library --shared links in; without --shared, "
                           "link it yourself%s", "");
  const char *path = argv[optind];
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  int status = EXIT_USER;
  Model *m = cli_load_model(path, a, &d);
  // The train entry point needs the gradients and updates; a model with a
  // loss gets them unless --entry leaves train out.
  bool train = m && m->g->loss && (!o.entries || (o.entries & (1u << ENTRY_TRAIN)));
  if (m && train && (!pass_autodiff(m, &d) || !ir_verify(m->g, &d)))
    m = NULL;
  if (m) {
    o.max_batch = batch ? batch : m->train.batch;
    o.source = path;
    o.command = cmd;
    char err[4096];
    bool usage;
    if (!cli_check_memory(m, o.max_batch, &d)) {
      status = EXIT_USER;
    } else if (!aot_compile(m, &o, &usage, err, sizeof err)) {
      fprintf(stderr, "nnc: error: %s\n", err);
      status = usage ? EXIT_USAGE : EXIT_USER;
    } else {
      status = 0;
      char obj[4096];
      struct stat st;
      snprintf(obj, sizeof obj, "%s.%s", o.out, o.shared ? "so" : "o");
      printf("%s (%lld bytes) and %s.h: model %s, prefix %s, batches 1 to %lld, for %s\n", obj,
             stat(obj, &st) == 0 ? (long long)st.st_size : -1LL, o.out, m->g->name, o.name ? o.name : m->g->name,
             (long long)o.max_batch, o.triple ? o.triple : "this machine");
    }
  }
  diag_free(&d);
  arena_free(a);
  return status;
}
