// dot.c: a Graphviz picture of a graph (`nnc emit --stage dot`).
//
// One box per node, labeled "%id op", the tensor's name or the node's
// scope, and its type; leaves are ellipses, colored by kind. Edges run from
// each input to its user, and two plain-text nodes, "output" and "loss",
// point out the graph's results. Render with `dot -Tsvg g.dot -o g.svg`.
#include "ir.h"

// Writes the bytes of s for a DOT double-quoted string: quotes and
// backslashes escaped, a newline as DOT's \n, other control bytes as spaces.
static void dot_escape(FILE *out, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p < 0x20 || *p == 0x7f)
      fputc(' ', out);
    else
      fputc(*p, out);
  }
}

// Fill colors of the leaves; other nodes are plain boxes.
static const char *leaf_color(IrOp op) {
  switch (op) {
  case IR_INPUT: case IR_TARGET: return "lightblue";
  case IR_PARAM: return "lightyellow";
  case IR_BUFFER: return "khaki";
  case IR_CONST: return "lightgrey";
  default: return NULL;
  }
}

// n7 [label="%7 matmul\nlinear_1\nf32[N,512]"]; the output and the loss
// get a thick border.
static void dot_node(FILE *out, const IrGraph *g, const IrNode *n) {
  const char *mnem = (unsigned)n->op < IR_NUM_OPS ? ir_op_info(n->op)->mnem : "?";
  fprintf(out, "  n%d [label=\"%%%d %s\\n", n->id, n->id, mnem);
  const char *what = n->name ? n->name : n->scope;
  if (what) {
    dot_escape(out, what);
    fputs("\\n", out);
  }
  char type[IR_MAX_DIMS * 22 + 8];
  dot_escape(out, ir_type_str(n, type, sizeof type));
  fputc('"', out);
  const char *color = (unsigned)n->op < IR_NUM_OPS ? leaf_color(n->op) : NULL;
  if (color)
    fprintf(out, ", shape=ellipse, style=filled, fillcolor=%s", color);
  if (ir_output_name(g, n) || n == g->loss)
    fputs(", penwidth=2", out);
  fputs("];\n", out);
}

void ir_print_dot(FILE *out, const IrGraph *g) {
  fputs("digraph \"", out);
  dot_escape(out, g->name ? g->name : "graph");
  fputs("\" {\n", out);
  fputs("  node [shape=box, fontname=\"monospace\", fontsize=10];\n", out);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i])
      dot_node(out, g, g->nodes[i]);
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    for (int j = 0; n && j < n->nsrc && j < IR_MAX_SRC; j++)
      if (n->src[j])
        fprintf(out, "  n%d -> n%d;\n", n->src[j]->id, n->id);
  }
  if (g->output && !g->noutputs)   // (a graph built by hand: its one output)
    fprintf(out, "  output [shape=plaintext, label=\"output\"];\n  n%d -> output;\n", g->output->id);
  for (int i = 0; i < g->noutputs; i++) {   // the dot nodes output, output1, output2, ...
    char id[24] = "output";
    if (i)
      snprintf(id, sizeof id, "output%d", i);
    fprintf(out, "  %s [shape=plaintext, label=\"", id);
    dot_escape(out, g->output_names[i]);
    fprintf(out, "\"];\n  n%d -> %s;\n", g->outputs[i]->id, id);
  }
  if (g->loss)
    fprintf(out, "  loss [shape=plaintext, label=\"loss\"];\n  n%d -> loss;\n", g->loss->id);
  fputs("}\n", out);
}
