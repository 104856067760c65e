// util.c: checked allocation, fatal errors, growable buffers, file reading.
#include "util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Noreturn void nnc_bug(const char *file, int line, const char *what) {
  fprintf(stderr, "nnc: internal error at %s:%d: %s\n"
          "---> HINT: this is a bug in nnc, not in your model; please report it with the input that caused it\n",
          file, line, what);
  abort();
}

// Kernels call this from the pool's threads too, several at once: the first
// caller reports and ends the process; the others wait for it. It flushes
// and leaves with _exit, for exit's destructors (LLVM's) would run while
// other threads still use what they free (a crash, now and then).
_Noreturn void nnc_fatal(const char *fmt, ...) {
  static atomic_flag reported = ATOMIC_FLAG_INIT;
  if (atomic_flag_test_and_set(&reported))
    for (;;)
      pause();
  va_list ap;
  va_start(ap, fmt);
  fputs("nnc: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(NULL);
  _exit(1);
}

static void *check_alloc(void *p, size_t n) {
  if (!p && n) {
    fprintf(stderr, "nnc: out of memory (asked for %zu bytes)\n", n);
    exit(3);   // documented: README.md, docs/language.md, nnc --help
  }
  return p;
}

void *xmalloc(size_t n) { return check_alloc(malloc(n ? n : 1), n); }
void *xcalloc(size_t n, size_t size) { return check_alloc(calloc(n ? n : 1, size ? size : 1), n * size); }
void *xrealloc(void *p, size_t n) { return check_alloc(realloc(p, n ? n : 1), n); }
char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

void sb_putc(StrBuf *b, char c) {
  if (b->len + 2 > b->cap) {
    b->cap = b->cap ? b->cap * 2 : 64;
    b->data = xrealloc(b->data, b->cap);
  }
  b->data[b->len++] = c;
  b->data[b->len] = 0;
}

void sb_puts(StrBuf *b, const char *s) {
  while (*s)
    sb_putc(b, *s++);
}

void sb_vprintf(StrBuf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return;
  if (b->len + (size_t)n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->data = xrealloc(b->data, b->cap);
  }
  vsnprintf(b->data + b->len, n + 1, fmt, ap);
  b->len += n;
}

void sb_printf(StrBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(b, fmt, ap);
  va_end(ap);
}

void sb_free(StrBuf *b) {
  free(b->data);
  *b = (StrBuf){0};
}

char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  StrBuf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (b.len + n + 1 > b.cap) {
      b.cap = (b.len + n + 1) * 2;
      b.data = xrealloc(b.data, b.cap);
    }
    memcpy(b.data + b.len, chunk, n);
    b.len += n;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(b.data);
    errno = EIO;
    return NULL;
  }
  if (!b.data)
    b.data = xcalloc(1, 1);
  b.data[b.len] = 0;
  if (len)
    *len = b.len;
  return b.data;
}

double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }

void errorf(char *err, size_t errsz, const char *fmt, ...) {
  if (!err || !errsz)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errsz, fmt, ap);
  va_end(ap);
}
