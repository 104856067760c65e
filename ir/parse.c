// parse.c: reads the text that ir_print writes back into a graph.
//
// A recursive-descent parser, one function per rule with the rule above
// it, over the lexer of lex.c (which also says how errors unwind: the
// first one ends the parse, and ir_parse() returns NULL).
//
//   graph = "graph" (IDENT | STRING) STRING? "{" stmt* "}"
//   stmt  = node | "output" REF | "loss" REF           (one per line)
//   node  = REF "=" IDENT operands STRING? ("init" init)? attrs? ":" type
//           ("@" INT ":" INT)? ("scope" STRING)?
//
// Node locations refer to the .nn file the header names, whose text the
// parser does not have: their SrcFile has only a name.
#include "lex.h"

#include <limits.h>
#include <string.h>

// A use of a node: %K, which must be defined already.
static IrNode *parse_use(Parser *P) {
  if (P->tok.kind != TK_REF)
    lx_expected(P, "a node (%N)");
  if (P->tok.ival >= P->g->nnodes)
    lx_error_tok(P, &P->tok, NULL, "%%%lld used before it is defined", (long long)P->tok.ival);
  IrNode *n = P->g->nodes[P->tok.ival];
  lx_next(P);
  return n;
}

//
// Nodes
//

// The op after "%K =".
static IrOp parse_op(Parser *P) {
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    lx_expected(P, "an op name");
  char name[65];
  snprintf(name, sizeof name, "%.*s", t.len < 64 ? t.len : 64, t.p);
  IrOp op = t.len < 64 ? ir_op_lookup(name) : IR_NUM_OPS;
  if (op == IR_NUM_OPS) {
    const char *mnems[IR_NUM_OPS];
    for (int i = 0; i < IR_NUM_OPS; i++)
      mnems[i] = ir_op_info(i)->mnem;
    char hint[96];
    lx_error_tok(P, &t, lx_did_you_mean(&t, mnems, IR_NUM_OPS, hint, sizeof hint),
                 "unknown op '%.*s'", lx_show_len(&t), t.p);
  }
  lx_next(P);
  return op;
}

// operands = (REF ("," REF)*)?
// Keeps the first IR_MAX_SRC in src and returns how many there were.
static int parse_operands(Parser *P, IrNode **src) {
  int n = 0;
  if (P->tok.kind != TK_REF)
    return 0;
  for (;;) {
    IrNode *s = parse_use(P);
    if (n < IR_MAX_SRC)
      src[n] = s;
    if (n < INT_MAX)
      n++;
    if (!lx_is_punct(P, ','))
      return n;
    lx_next(P);
    if (P->tok.kind != TK_REF)
      lx_expected(P, "a node (%N) after ','");
  }
}

// "conv2d takes 2 to 3 inputs, found 1", at the op.
static void check_arity(Parser *P, const Token *at, IrOp op, int n) {
  const IrOpInfo *info = ir_op_info(op);
  if (n >= info->min_in && n <= info->max_in)
    return;
  if (info->max_in == 0)
    lx_error_tok(P, at, NULL, "%s takes no inputs, found %d", info->mnem, n);
  if (info->min_in == info->max_in)
    lx_error_tok(P, at, NULL, "%s takes %d input%s, found %d", info->mnem, info->min_in,
                 info->min_in == 1 ? "" : "s", n);
  lx_error_tok(P, at, NULL, "%s takes %d to %d inputs, found %d", info->mnem, info->min_in,
               info->max_in, n);
}

// init = IDENT ("(" number ("," number)* ")")?
// zeros and ones take no numbers, constant one, normal and uniform two.
static void parse_init(Parser *P, IrNode *n) {
  static const char *const kinds[] = {"zeros", "ones", "constant", "normal", "uniform"};
  static const int nargs[] = {0, 0, 1, 2, 2};
  if (n->op != IR_PARAM && n->op != IR_BUFFER)
    lx_error_tok(P, &P->tok, NULL, "only param and buffer nodes have an init");
  lx_next(P);
  Token kt = P->tok;
  if (kt.kind != TK_IDENT)
    lx_expected(P, "an init kind (zeros, ones, constant, normal or uniform)");
  int k = countof(kinds) - 1;
  while (k >= 0 && !lx_is_word(P, kinds[k]))
    k--;
  char hint[96];
  if (k < 0)
    lx_error_tok(P, &kt, lx_did_you_mean(&kt, kinds, countof(kinds), hint, sizeof hint),
                 "unknown init '%.*s'", lx_show_len(&kt), kt.p);
  lx_next(P);
  n->init.kind = (InitKind)k;
  if (nargs[k] == 0) {
    if (lx_is_punct(P, '('))
      lx_error_tok(P, &kt, NULL, "init %s takes no arguments", kinds[k]);
    return;
  }
  double v[2] = {0, 0};
  lx_expect(P, '(');
  for (int i = 0; i < nargs[k]; i++) {
    if (i > 0 && !lx_is_punct(P, ','))
      lx_error_tok(P, &kt, NULL, "init %s takes %d arguments", kinds[k], nargs[k]);
    if (i > 0)
      lx_next(P);
    v[i] = lx_number(P);
  }
  if (lx_is_punct(P, ','))
    lx_error_tok(P, &kt, NULL, "init %s takes %d argument%s", kinds[k], nargs[k],
                 nargs[k] == 1 ? "" : "s");
  lx_expect(P, ')');
  n->init.a = v[0];
  n->init.b = v[1];
}

// attr = IDENT "=" number, for one of the attributes n's op declares.
// set[] marks the slots seen (integer ones first, then float ones).
static void parse_attr(Parser *P, IrNode *n, bool *set) {
  const IrOpInfo *info = ir_op_info(n->op);
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    lx_expected(P, "an attribute name");
  const char *names[IR_MAX_IATTR + IR_MAX_FATTR];
  int nnames = 0, slot = -1;
  for (int i = 0; i < info->niattr; i++)
    names[nnames++] = info->iattr[i];
  for (int i = 0; i < info->nfattr; i++)
    names[nnames++] = info->fattr[i];
  for (int i = 0; i < nnames && slot < 0; i++)
    if (lx_is_word(P, names[i]))
      slot = i;
  char hint[96];
  if (slot < 0)
    lx_error_tok(P, &t, lx_did_you_mean(&t, names, nnames, hint, sizeof hint),
                 "unknown attribute '%.*s' for %s", lx_show_len(&t), t.p, info->mnem);
  if (set[slot])
    lx_error_tok(P, &t, NULL, "duplicate attribute '%s'", names[slot]);
  set[slot] = true;
  lx_next(P);
  lx_expect(P, '=');
  char what[64];
  snprintf(what, sizeof what, "attribute '%s'", names[slot]);
  if (slot < info->niattr)
    n->attr.i[slot] = lx_int(P, what);
  else
    n->attr.f[slot - info->niattr] = lx_number(P);
}

// attrs = "{" (attr ("," attr)*)? "}"
static void parse_attrs(Parser *P, IrNode *n) {
  bool set[IR_MAX_IATTR + IR_MAX_FATTR] = {0};
  lx_next(P);
  while (!lx_is_punct(P, '}')) {
    parse_attr(P, n, set);
    if (lx_is_punct(P, '}'))
      break;
    if (!lx_is_punct(P, ','))
      lx_expected(P, "',' or '}'");
    lx_next(P);
  }
  lx_next(P);
}

/*
** node = REF "=" IDENT operands STRING? ("init" init)? attrs? ":" type
**        ("@" INT ":" INT)? ("scope" STRING)?
** Nodes are numbered from 0 in order, so %K is always the next index.
*/
static void parse_node(Parser *P) {
  IrGraph *g = P->g;
  if (P->tok.ival != g->nnodes)
    lx_error_tok(P, &P->tok, NULL, "node ids must be consecutive: expected %%%d, found %%%lld",
                 g->nnodes, (long long)P->tok.ival);
  lx_next(P);
  lx_expect(P, '=');
  Token op_tok = P->tok;
  IrOp op = parse_op(P);
  IrNode *src[IR_MAX_SRC];
  int nsrc = parse_operands(P, src);
  check_arity(P, &op_tok, op, nsrc);
  IrNode *n = ir_add(g, op, src, nsrc, (SrcLoc){0});
  if (P->tok.kind == TK_STR)
    n->name = lx_string(P, "a name");
  if (lx_is_word(P, "init"))
    parse_init(P, n);
  if (lx_is_punct(P, '{'))
    parse_attrs(P, n);
  lx_expect(P, ':');
  lx_type(P, n);
  if (lx_is_punct(P, '@')) {
    lx_next(P);
    int line = lx_small(P, 1, "line number");
    lx_expect(P, ':');
    int col = lx_small(P, 0, "column number");
    n->loc = (SrcLoc){.file = P->nn, .line = line, .col = col, .len = 1};
  }
  if (lx_is_word(P, "scope")) {
    lx_next(P);
    n->scope = lx_string(P, "a string after 'scope'");
  }
}

// "output %K" or "loss %K"; *first remembers the line, to refuse a second.
static void parse_result(Parser *P, IrNode **slot, Token *first, const char *what) {
  if (first->kind != TK_EOF)
    lx_error_tok(P, &P->tok, NULL, "duplicate %s line (the first is at %d:%d)", what, first->line,
                 first->col);
  *first = P->tok;
  lx_next(P);
  *slot = parse_use(P);
}

// "output %K STRING?": one line per output, in order; the name is
// "output" when none is given.
static void parse_output(Parser *P) {
  Token at = P->tok;
  lx_next(P);
  IrNode *n = parse_use(P);
  const char *name = P->tok.kind == TK_STR ? lx_string(P, "an output's name") : "output";
  for (int i = 0; i < P->g->noutputs; i++)
    if (!strcmp(P->g->output_names[i], name))
      lx_error_tok(P, &at, NULL, "a second output named \"%s\"", name);
  if (n)
    ir_add_output(P->g, n, name);
}

// stmt = node | "output" REF STRING? | "loss" REF; each on a line of its own.
static void parse_stmt(Parser *P) {
  if (P->tok.kind == TK_REF)
    parse_node(P);
  else if (lx_is_word(P, "output"))
    parse_output(P);
  else if (lx_is_word(P, "loss"))
    parse_result(P, &P->g->loss, &P->loss_at, "loss");
  else
    lx_error_tok(P, &P->tok, NULL, "expected a node, 'output', 'loss' or '}'");
}

// graph = "graph" (IDENT | STRING) STRING? "{" stmt* "}"
static IrGraph *parse_graph(Parser *P) {
  lx_next(P);
  lx_skip_newlines(P);
  if (!lx_is_word(P, "graph"))
    lx_expected(P, "'graph'");
  lx_next(P);
  const char *name = NULL;
  if (P->tok.kind == TK_IDENT)
    name = arena_strndup(P->arena, P->tok.p, P->tok.len);
  else if (P->tok.kind == TK_STR)
    name = P->tok.str;
  else
    lx_expected(P, "the graph's name");
  lx_next(P);
  P->g = ir_graph_new(P->arena, name);
  if (P->tok.kind == TK_STR) {
    SrcFile *nn = arena_alloc(P->arena, sizeof *nn);
    nn->name = P->g->file = lx_string(P, "a file name");
    P->nn = nn;
  }
  lx_expect(P, '{');
  lx_end_line(P);
  for (lx_skip_newlines(P); !lx_is_punct(P, '}'); lx_skip_newlines(P)) {
    if (P->tok.kind == TK_EOF)
      lx_expected(P, "'}' at the end of the graph");
    parse_stmt(P);
    lx_end_line(P);
  }
  lx_next(P);
  lx_skip_newlines(P);
  if (P->tok.kind != TK_EOF)
    lx_error_tok(P, &P->tok, NULL, "unexpected text after the graph");
  return P->g;
}

IrGraph *ir_parse(const SrcFile *file, Arena *a, Diag *d) {
  if (!file || !file->text)
    unreachable();
  Parser P = LX_PARSER(file, a, d, "=,{}[]():@?");
  if (setjmp(P.fail))
    return NULL;
  return parse_graph(&P);
}
