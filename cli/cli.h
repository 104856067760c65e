// cli.h: the nnc command's verbs, one file each (main.c: check and emit,
// and the dispatch), over what they share (common.c).
#ifndef NNC_CLI_H
#define NNC_CLI_H

#include "passes.h"

// Exit statuses: 0 success, 1 an error in the user's files, 2 bad usage;
// 3 when an allocation fails (xmalloc, util/util.c).
enum { EXIT_USER = 1, EXIT_USAGE = 2 };

// Options every verb shares.
typedef struct CliCommon {
  bool no_color;
  int max_errors;
} CliCommon;

// common.c: what every verb shares.

// Prints "nnc: " and the message (fmt with one %s for arg), then usage, to
// stderr; returns EXIT_USAGE.
int cli_usage_error(const char *usage, const char *fmt, const char *arg);

// Prints usage to f and, for a verb that takes --backend, the backends
// there are, each with its line of help (from exec/'s registry).
void cli_print_usage(FILE *f, const char *usage);

// --backend NAME: 0 with *name set to arg when a backend has that name;
// else reports it (the names there are, and the nearest one) with usage,
// and returns EXIT_USAGE.
int cli_backend(const char *usage, const char *arg, const char **name);

// An option's number: the whole string, within [lo, hi]; false otherwise.
bool cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_num(const char *s, double lo, double hi, double *out);

// Loads, parses and lowers one .nn file into a; NULL after reporting errors.
Model *cli_load_model(const char *path, Arena *a, Diag *d);

// Whether m fits in memory at batch (pass_check_memory), against
// NNC_MAX_MEMORY when set (bytes, or a number with K, M, G or T), else the
// machine's physical memory; reports to d (NULL: to stderr) if not.
bool cli_check_memory(const Model *m, int64_t batch, Diag *d);

// check.c: prints the summary table of a lowered model.
void cli_print_summary(FILE *out, const Model *m);

// train.c: the verbs that run models; each takes its argc/argv from the verb on.
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_predict(int argc, char **argv);

// bench.c: `nnc bench`.
int cli_bench(int argc, char **argv);

// compile.c: `nnc compile`.
int cli_compile(int argc, char **argv);

#endif
