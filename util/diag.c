// diag.c: diagnostics in the GNU format, with the source line and a caret.
//
//   models/mlp.nn:14:7: error: matmul: inner dimensions differ ([N,784] x [128,10])
//     h = matmul(x, w1) + b1
//         ^~~~~~
//     hint: ...
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void diag_init(Diag *d, FILE *out) {
  *d = (Diag){.out = out ? out : stderr, .max_errors = 50};
  d->color = isatty(fileno(d->out)) && getenv("NO_COLOR") == NULL;
}

// Prints line `line` of file, and a caret under columns col..col+len-1.
// Tabs in the prefix are kept so the caret lines up.
static void print_source_line(Diag *d, SrcLoc loc) {
  const char *text = loc.file->text;
  if (d->lines_of != text) {   // index the file's lines once
    free(d->line_starts);
    d->nlines = 1;
    for (const char *q = text; *q; q++)
      d->nlines += *q == '\n';
    d->line_starts = xmalloc(sizeof(int) * d->nlines);
    d->line_starts[0] = 0;
    int l = 1;
    for (const char *q = text; *q; q++)
      if (*q == '\n')
        d->line_starts[l++] = (int)(q + 1 - text);
    d->lines_of = text;
  }
  const char *p = text + d->line_starts[loc.line >= 1 && loc.line <= d->nlines ? loc.line - 1 : d->nlines - 1];
  if (loc.line > d->nlines)
    p += strlen(p);
  const char *end = strchr(p, '\n');
  if (!end)
    end = p + strlen(p);
  if (end > p && end[-1] == '\r')
    end--;
  if (loc.line < 1 || (p == end && !*p && loc.col > 1))
    return;
  fprintf(d->out, "  %.*s\n  ", (int)(end - p), p);
  int col = 1;
  for (const char *q = p; q < end && col < loc.col; q++, col++)
    fputc(*q == '\t' ? '\t' : ' ', d->out);
  if (d->color)
    fputs("\033[1;32m", d->out);
  fputc('^', d->out);
  int avail = (int)(end - p) - loc.col;   // characters after the caret on this line
  for (int i = 1; i < loc.len && i <= avail; i++)
    fputc('~', d->out);
  if (d->color)
    fputs("\033[0m", d->out);
  fputc('\n', d->out);
}

// FNV-1a over the location and the message: the same error reached twice
// (a block expanded several times, say) is reported once.
static bool seen_before(Diag *d, SrcLoc loc, const char *fmt, va_list ap) {
  char msg[1024];
  va_list ap2;
  va_copy(ap2, ap);
  vsnprintf(msg, sizeof msg, fmt, ap2);
  va_end(ap2);
  uint64_t h = 1469598103934665603ULL;
  const uintptr_t file = (uintptr_t)loc.file;
  uint64_t parts[3] = {file, (uint64_t)loc.line, (uint64_t)loc.col};
  for (int i = 0; i < 3; i++)
    h = (h ^ parts[i]) * 1099511628211ULL;
  for (const char *p = msg; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  h += !h;   // 0 marks an empty slot
  if (2 * (d->nseen + 1) > d->capseen) {   // grow: rehash into twice the slots
    int old = d->capseen;
    uint64_t *was = d->seen;
    d->capseen = old ? 2 * old : 64;
    d->seen = xcalloc(d->capseen, sizeof(uint64_t));
    for (int i = 0; i < old; i++)
      for (uint64_t j = was[i] & (d->capseen - 1); was[i]; j = (j + 1) & (d->capseen - 1))
        if (!d->seen[j]) {
          d->seen[j] = was[i];
          break;
        }
    free(was);
  }
  uint64_t j = h & (d->capseen - 1);
  for (; d->seen[j]; j = (j + 1) & (d->capseen - 1))
    if (d->seen[j] == h)
      return true;
  d->seen[j] = h;
  d->nseen++;
  return false;
}

void diag_free(Diag *d) {
  free(d->seen);
  d->seen = NULL;
  d->nseen = d->capseen = 0;
  free(d->line_starts);
  d->line_starts = NULL;
  d->lines_of = NULL;
  d->nlines = 0;
}

void diag_vreport(Diag *d, DiagKind kind, SrcLoc loc, const char *hint,
                  const char *fmt, va_list ap) {
  if (kind != DIAG_NOTE && loc.line > 0 && seen_before(d, loc, fmt, ap)) {
    d->suppressed = true;
    return;
  }
  if (kind == DIAG_NOTE && d->suppressed)
    return;
  d->suppressed = false;
  if (kind == DIAG_ERROR) {
    d->nerrors++;
    if (d->max_errors && d->nerrors > d->max_errors) {
      if (d->nerrors == d->max_errors + 1)
        fprintf(d->out, "nnc: too many errors; stopping after %d\n", d->max_errors);
      return;
    }
  } else if (kind == DIAG_WARNING) {
    d->nwarnings++;
  }
  static const char *const names[] = {"error", "warning", "note"};
  static const char *const colors[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};
  if (d->color)
    fputs("\033[1m", d->out);
  if (loc.file && loc.line > 0)
    fprintf(d->out, "%s:%d:%d: ", loc.file->name, loc.line, loc.col);
  else if (loc.file)
    fprintf(d->out, "%s: ", loc.file->name);
  else
    fputs("nnc: ", d->out);
  if (d->color)
    fprintf(d->out, "%s%s:\033[0m\033[1m ", colors[kind], names[kind]);
  else
    fprintf(d->out, "%s: ", names[kind]);
  vfprintf(d->out, fmt, ap);
  if (d->color)
    fputs("\033[0m", d->out);
  fputc('\n', d->out);
  if (loc.file && loc.file->text && loc.line > 0)
    print_source_line(d, loc);
  if (hint)
    fprintf(d->out, "  hint: %s\n", hint);
}

void diag_report(Diag *d, DiagKind kind, SrcLoc loc, const char *hint,
                 const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vreport(d, kind, loc, hint, fmt, ap);
  va_end(ap);
}

// Levenshtein distance; names here are short.
int edit_distance(const char *a, const char *b) {
  int n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64)
    return 1000;
  int prev[65], cur[65];
  for (int j = 0; j <= m; j++)
    prev[j] = j;
  for (int i = 1; i <= n; i++) {
    cur[0] = i;
    for (int j = 1; j <= m; j++) {
      int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, sizeof(int) * (m + 1));
  }
  return prev[m];
}

const char *suggest_name(const char *name, const char *const *cands, int n) {
  const char *best = NULL;
  int best_d = 1000;
  int len = strlen(name);
  int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
  for (int i = 0; i < n; i++) {
    if (!cands[i])
      continue;
    int dist = edit_distance(name, cands[i]);
    if (dist < best_d && dist <= limit && dist < (int)strlen(cands[i])) {
      best_d = dist;
      best = cands[i];
    }
  }
  return best;
}
