// fuzz_kir.c: kernel IR text through ir_parse_program. A program that
// reads (and so passes ir_verify_program) must print and read back to the
// same text; anything else must end in diagnostics, never in a crash, a
// hang or an allocation the text does not justify.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static FILE *devnull;

static char *print_program(const KProgram *p, size_t *n) {
  char *t = NULL;
  FILE *f = open_memstream(&t, n);
  ir_print_program(f, p);
  fclose(f);
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!devnull)
    devnull = fopen("/dev/null", "w");
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, devnull);
  d.max_errors = 0;
  SrcFile file = {"fuzz.kir", arena_strndup(a, (const char *)data, size), size};
  KProgram *p = ir_parse_program(&file, a, &d);
  if (p) {
    size_t n1, n2;
    char *t1 = print_program(p, &n1);
    Arena *b = arena_new();
    Diag d2;
    diag_init(&d2, stderr);
    SrcFile again = {"<printed kir>", t1, n1};
    KProgram *q = ir_parse_program(&again, b, &d2);
    char *t2 = q ? print_program(q, &n2) : NULL;
    if (!q || n1 != n2 || memcmp(t1, t2, n1)) {
      fprintf(stderr, "a printed kernel program does not read back identically:\n%s\n", t1);
      abort();
    }
    diag_free(&d2);
    arena_free(b);
    free(t1);
    free(t2);
  }
  diag_free(&d);
  arena_free(a);
  return 0;
}
