// util.h: what every stage shares: arenas, growable buffers, source
// locations and diagnostics, and fatal-error helpers.
//
// The compiler builds everything (tokens, AST, IR, plans) from an Arena that
// belongs to one compilation and is freed once at the end. Diagnostics point
// at a SrcLoc: a file, a line and a column, counted from 1.
#ifndef NNC_UTIL_H
#define NNC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NNC_VERSION "0.1.0"

#define countof(a) ((int)(sizeof(a) / sizeof((a)[0])))

// A compiler bug: never the user's fault.
#define unreachable() nnc_bug(__FILE__, __LINE__, "unreachable")
_Noreturn void nnc_bug(const char *file, int line, const char *what);

// Runtime failure with file:line of the check and a hint for the user.
_Noreturn void nnc_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);             // exits with a message when out of memory
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

//
// util/arena.c
//

// A bump allocator: many small allocations, one free.
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;  // newest block first
  size_t used;       // bytes used in head
} Arena;

Arena *arena_new(void);
void arena_free(Arena *a);           // frees every allocation made from a
void *arena_alloc(Arena *a, size_t n);   // zeroed, 16-byte aligned
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A growable array of pointers, allocated from an arena.
typedef struct PtrVec {
  void **data;
  int len;
  int cap;
} PtrVec;
void ptrvec_push(Arena *a, PtrVec *v, void *p);

// Strings to pointers, hashed (linear probing), allocated from an arena:
// for names by the ten thousand, where a list would make lookups quadratic.
// Keys are not copied.
typedef struct StrMap {
  const char **keys;   // cap slots; NULL where empty
  void **vals;
  int cap;             // 0 or a power of 2
  int count;
} StrMap;
void *strmap_get(const StrMap *m, const char *key);              // NULL when absent
void strmap_put(Arena *a, StrMap *m, const char *key, void *val);   // key must be absent

// A growable string on the heap (xmalloc); the caller frees .data.
typedef struct StrBuf {
  char *data;        // always NUL-terminated once anything was appended
  size_t len;
  size_t cap;
} StrBuf;
void sb_putc(StrBuf *b, char c);
void sb_puts(StrBuf *b, const char *s);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *b, const char *fmt, va_list ap);
void sb_free(StrBuf *b);

// Reads a whole file into memory (NUL-terminated). Returns NULL and sets
// errno on failure. *len gets the size without the NUL.
char *read_file(const char *path, size_t *len);

// Writes a formatted message into err (which may be NULL when errsz is 0):
// how every function with an `err, errsz` contract reports.
void errorf(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Seconds on the monotonic clock (for differences: timings).
double now_seconds(void);
// Sorts v[0..n) in increasing order.
void sort_doubles(double *v, size_t n);

//
// util/diag.c
//

// A source file: its name and its whole text, kept for quoting lines.
typedef struct SrcFile {
  const char *name;  // as given on the command line
  const char *text;  // NUL-terminated contents
  size_t len;
} SrcFile;

// A position in a source file. line and col count from 1; line 0 means
// "no location" (a node built by a pass, say).
typedef struct SrcLoc {
  const SrcFile *file;
  int line;
  int col;
  int len;           // characters to underline (at least 1)
} SrcLoc;

typedef enum { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagKind;

// Collects diagnostics for one compilation and prints each one at once:
//   file:line:col: error: message
//     the source line
//     ^~~~
//     hint: what to do about it
typedef struct Diag {
  FILE *out;         // where messages go (stderr by default)
  int nerrors;
  int nwarnings;
  int max_errors;    // stop reporting after this many (0: no limit)
  bool color;        // ANSI colors (only on a terminal)
  uint64_t *seen;    // hashes of the errors reported so far (no repeats): a set, open addressing, 0 empty
  int nseen, capseen;   // capseen: 0 or a power of 2, at least twice nseen
  bool suppressed;   // the last error was a repeat: drop its notes too
  const char *lines_of;   // the text line_starts indexes (thousands of reports each find their line at once)
  int *line_starts;  // offset of each line of lines_of, from line 1
  int nlines;
} Diag;

void diag_init(Diag *d, FILE *out);
void diag_free(Diag *d);             // frees what diag_init and reports allocated
// Reports at loc; hint (may be NULL) is printed on its own line.
void diag_report(Diag *d, DiagKind kind, SrcLoc loc, const char *hint,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void diag_vreport(Diag *d, DiagKind kind, SrcLoc loc, const char *hint,
                  const char *fmt, va_list ap);
#define diag_error(d, loc, hint, ...) diag_report((d), DIAG_ERROR, (loc), (hint), __VA_ARGS__)
#define diag_note(d, loc, ...) diag_report((d), DIAG_NOTE, (loc), NULL, __VA_ARGS__)

// The closest candidate to name by edit distance, or NULL if none is close
// enough to suggest ("did you mean 'conv2d'?").
const char *suggest_name(const char *name, const char *const *cands, int n);
int edit_distance(const char *a, const char *b);



//
// util/rng.c
//

// A small, fast, seedable generator (PCG32, O'Neill 2014). The whole state
// is two words, so checkpoints save it and a resumed run draws the same
// numbers an uninterrupted one would.
typedef struct Rng {
  uint64_t state;
  uint64_t inc;      // stream selector; always odd
} Rng;

void rng_seed(Rng *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(Rng *r);
uint32_t rng_below(Rng *r, uint32_t n);   // uniform in [0, n), unbiased
double rng_uniform(Rng *r);               // uniform in [0, 1), 53 random bits
float rng_uniformf(Rng *r);               // uniform in [0, 1), 24 random bits
double rng_normal(Rng *r);                // standard normal (Box-Muller, one value per call)
#endif
