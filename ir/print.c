// print.c: the graph IR as text, one node a line (the format is in ir.h).
//
// The text is both a dump for people and an input: ir/parse.c reads it back
// into an equal graph, so every printed value must survive the trip. Strings
// are quoted with C escapes, floats use the fewest digits that read back to
// the same double, and attributes are printed in full, in ops.def order.
#include "ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Writes s as a C string literal: \" \\ \n \t \r, and octal escapes for
// every other byte outside printable ASCII.
void ir_print_str(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\n': fputs("\\n", out); break;
    case '\t': fputs("\\t", out); break;
    case '\r': fputs("\\r", out); break;
    default:
      if (*p < 0x20 || *p >= 0x7f)
        fprintf(out, "\\%03o", *p);
      else
        fputc(*p, out);
    }
  }
  fputc('"', out);
}

// True if s can be printed bare as a graph name: an identifier that the
// parser will not read as a number.
static bool is_ident(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_'))
      return false;
  return strcmp(s, "inf") != 0 && strcmp(s, "nan") != 0;
}

/*
** Prints v with the fewest significant digits (6 to 17) that strtod reads
** back as exactly v: 0.1 stays "0.1", 1/784.0 needs all 17. NaN has no
** equal, so it is written by hand, with its sign.
*/
void ir_print_float(FILE *out, double v) {
  if (isnan(v)) {
    fputs(signbit(v) ? "-nan" : "nan", out);
    return;
  }
  char buf[40];
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  fputs(buf, out);
}

// " init uniform(-0.0357, 0.0357)"
static void print_init(FILE *out, const IrInit *init) {
  switch (init->kind) {
  case INIT_ZEROS: fputs(" init zeros", out); return;
  case INIT_ONES: fputs(" init ones", out); return;
  case INIT_CONSTANT: fputs(" init constant(", out); break;
  case INIT_NORMAL: fputs(" init normal(", out); break;
  case INIT_UNIFORM: fputs(" init uniform(", out); break;
  default: fprintf(out, " init ?%d", (int)init->kind); return;
  }
  ir_print_float(out, init->a);
  if (init->kind != INIT_CONSTANT) {
    fputs(", ", out);
    ir_print_float(out, init->b);
  }
  fputc(')', out);
}

// " {stride_h=1, stride_w=1, ...}": every attribute the op declares, the
// integer ones first; nothing when it declares none.
static void print_attrs(FILE *out, const IrNode *n) {
  const IrOpInfo *info = ir_op_info(n->op);
  if (info->niattr + info->nfattr == 0)
    return;
  fputs(" {", out);
  for (int i = 0; i < info->niattr; i++)
    fprintf(out, "%s%s=%lld", i ? ", " : "", info->iattr[i], (long long)n->attr.i[i]);
  for (int i = 0; i < info->nfattr; i++) {
    fprintf(out, "%s%s=", i + info->niattr ? ", " : "", info->fattr[i]);
    ir_print_float(out, n->attr.f[i]);
  }
  fputc('}', out);
}

/*
** Prints one node as one line, newline included, without the indentation
** ir_print adds. A graph that fails ir_verify still prints (a missing input
** as %?) so that the dump can show what went wrong.
*/
void ir_print_node(FILE *out, const IrNode *n) {
  if ((unsigned)n->op >= IR_NUM_OPS) {
    fprintf(out, "%%%d = ?op%d\n", n->id, (int)n->op);
    return;
  }
  fprintf(out, "%%%d = %s", n->id, ir_op_info(n->op)->mnem);
  for (int i = 0; i < n->nsrc && i < IR_MAX_SRC; i++) {
    fputs(i ? ", " : " ", out);
    if (n->src[i])
      fprintf(out, "%%%d", n->src[i]->id);
    else
      fputs("%?", out);
  }
  if (n->name) {
    fputc(' ', out);
    ir_print_str(out, n->name);
  }
  if (n->op == IR_PARAM || n->op == IR_BUFFER)
    print_init(out, &n->init);
  print_attrs(out, n);
  char type[IR_MAX_DIMS * 22 + 8];
  fprintf(out, " : %s", ir_type_str(n, type, sizeof type));
  if (n->loc.line > 0)
    fprintf(out, " @%d:%d", n->loc.line, n->loc.col);
  if (n->scope) {
    fputs(" scope ", out);
    ir_print_str(out, n->scope);
  }
  fputc('\n', out);
}

void ir_print(FILE *out, const IrGraph *g) {
  fputs("graph ", out);
  const char *name = g->name ? g->name : "";
  if (is_ident(name))
    fputs(name, out);
  else
    ir_print_str(out, name);
  if (g->file) {
    fputc(' ', out);
    ir_print_str(out, g->file);
  }
  fputs(" {\n", out);
  for (int i = 0; i < g->nnodes; i++) {
    fputs("  ", out);
    if (g->nodes[i])
      ir_print_node(out, g->nodes[i]);
    else
      fputs("%? = ?\n", out);
  }
  if (g->output && !g->noutputs)   // (a graph built by hand: its one output)
    fprintf(out, "  output %%%d\n", g->output->id);
  for (int i = 0; i < g->noutputs; i++) {
    fprintf(out, "  output %%%d", g->outputs[i]->id);
    if (strcmp(g->output_names[i], "output")) {
      fputc(' ', out);
      ir_print_str(out, g->output_names[i]);
    }
    fputc('\n', out);
  }
  if (g->loss)
    fprintf(out, "  loss %%%d\n", g->loss->id);
  fputs("}\n", out);
}
