// common.c: what every verb shares: usage errors, option values, the
// backend's name, loading a model and checking that it fits in memory.
#include "cli.h"
#include "exec.h"
#include "frontend.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_usage_error(const char *usage, const char *fmt, const char *arg) {
  fprintf(stderr, "nnc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n\n");
  cli_print_usage(stderr, usage);
  return EXIT_USAGE;
}

void cli_print_usage(FILE *f, const char *usage) {
  fputs(usage, f);
  if (!strstr(usage, "--backend"))
    return;
  fputs("\nbackends:\n", f);
  for (int i = 0; exec_backend_names[i]; i++)
    fprintf(f, "  %-20s  %s\n", exec_backend_names[i], exec_backend_help(exec_backend_names[i]));
}

int cli_backend(const char *usage, const char *arg, const char **name) {
  if (exec_backend_exists(arg)) {
    char err[1024];
    if (!exec_backend_available(arg, err, sizeof err)) {   // the machine lacks what it needs: say what
      fprintf(stderr, "nnc: error: backend '%s' cannot run here: %s\n", arg, err);
      return EXIT_USAGE;
    }
    *name = arg;
    return 0;
  }
  int n = 0;
  while (exec_backend_names[n])
    n++;
  fprintf(stderr, "nnc: unknown backend '%s' (expected ", arg);
  for (int i = 0; i < n; i++)
    fprintf(stderr, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", exec_backend_names[i]);
  const char *s = suggest_name(arg, exec_backend_names, n);
  fprintf(stderr, ")%s%s%s\n\n", s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
  cli_print_usage(stderr, usage);
  return EXIT_USAGE;
}

bool cli_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

bool cli_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

Model *cli_load_model(const char *path, Arena *a, Diag *d) {
  Program *p = fe_parse_file(path, a, d);
  if (!p || d->nerrors)
    return NULL;
  Model *m = pass_lower(p, a, d);
  if (!m)
    return NULL;
  if (!ir_verify(m->g, d))
    return NULL;
  return m;
}

// The memory limit in bytes: NNC_MAX_MEMORY, or physical memory; -1 after
// reporting a malformed NNC_MAX_MEMORY.
static int64_t memory_limit(void) {
  const char *s = getenv("NNC_MAX_MEMORY");
  if (!s || !*s) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : INT64_MAX;
  }
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  double unit = !strcmp(end, "") ? 1 : !strcmp(end, "K") ? 0x1p10 : !strcmp(end, "M") ? 0x1p20
              : !strcmp(end, "G") ? 0x1p30 : !strcmp(end, "T") ? 0x1p40 : 0;
  if (errno || end == s || !unit || !(v >= 1) || v * unit > 0x1p62) {
    fprintf(stderr, "nnc: error: NNC_MAX_MEMORY must be a size such as 512M or 64G, found '%s'\n", s);
    return -1;
  }
  return (int64_t)(v * unit);
}

bool cli_check_memory(const Model *m, int64_t batch, Diag *d) {
  int64_t limit = memory_limit();
  if (limit < 0)
    return false;
  Diag own;
  if (!d)
    diag_init(&own, stderr);
  bool ok = pass_check_memory(m, batch, limit, d ? d : &own);
  if (!d)
    diag_free(&own);
  return ok;
}
