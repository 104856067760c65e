// fuzz_nn.c: .nn source through the parser, the lowering and the shape
// checker. A graph that lowers must pass the verifier, and print, parse
// back and print again to the same text (as fuzz_frontend.c checks with
// its own mutations).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "passes.h"

static FILE *devnull;

static char *print_graph(const IrGraph *g, size_t *n) {
  char *t = NULL;
  FILE *f = open_memstream(&t, n);
  ir_print(f, g);
  fclose(f);
  return t;
}

static void check_roundtrip(const IrGraph *g) {
  size_t n1, n2;
  char *t1 = print_graph(g, &n1);
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  SrcFile file = {"<printed ir>", t1, n1};
  IrGraph *back = ir_parse(&file, a, &d);
  char *t2 = back ? print_graph(back, &n2) : NULL;
  if (!back || n1 != n2 || memcmp(t1, t2, n1)) {
    fprintf(stderr, "printed IR does not read back identically:\n%s\n", t1);
    abort();
  }
  diag_free(&d);
  arena_free(a);
  free(t1);
  free(t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!devnull)
    devnull = fopen("/dev/null", "w");
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, devnull);
  d.max_errors = 0;
  char *text = arena_strndup(a, (const char *)data, size);
  SrcFile file = {"fuzz.nn", text, size};
  Program *p = fe_parse(&file, a, &d);
  if (p && d.nerrors == 0) {
    Model *m = pass_lower(p, a, &d);
    if (m) {
      Diag vd;
      diag_init(&vd, stderr);
      if (!ir_verify(m->g, &vd)) {
        fprintf(stderr, "a lowered graph fails the verifier\n");
        abort();
      }
      diag_free(&vd);
      check_roundtrip(m->g);
      fe_print_ast(devnull, p);
      ir_print_dot(devnull, m->g);
    }
  }
  diag_free(&d);
  arena_free(a);
  return 0;
}
