// parse.c: reads the text that ir_print writes back into a graph.
//
// A small hand-written lexer and a recursive-descent parser, one function
// per rule with the rule above it. The text is written by a program, so the
// parser stops at the first error, as LLVM's .ll parser does: error_at()
// reports it at the text's line:col and longjmps back to ir_parse(), which
// returns NULL (Lua's parser unwinds the same way). Everything the parser
// allocates comes from the caller's arena, so the jump leaks nothing.
//
//   graph = "graph" (IDENT | STRING) STRING? "{" stmt* "}"
//   stmt  = node | "output" REF | "loss" REF           (one per line)
//   node  = REF "=" IDENT operands STRING? ("init" init)? attrs? ":" type
//           ("@" INT ":" INT)? ("scope" STRING)?
//
// Tokens: REF is %12; numbers are C's (-0.0357, 1e-08, inf, -nan); strings
// are C string literals; `#` starts a comment that runs to the end of the
// line. A newline is a token too, since each line holds one statement: a
// line cut short is reported at its end, not at the next line's start.
// Node locations refer to the .nn file the header names, whose text the
// parser does not have: their SrcFile has only a name.
#include "ir.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
  TK_EOF,
  TK_IDENT,     // graph, f32, N, matmul, stride_h
  TK_STR,       // "linear_1.weight"
  TK_INT,       // 784, -3
  TK_FLOAT,     // 0.1, 1e-08, inf
  TK_REF,       // %12
  TK_PUNCT,     // one of = , { } [ ] ( ) : @ ?
  TK_NL,        // the end of a line
} TokKind;

typedef struct Token {
  TokKind kind;
  const char *p;     // the token's text (not NUL-terminated)
  int len;           // its length in bytes
  int line, col;     // of its first byte
  int64_t ival;      // INT: the value; REF: the node number
  double fval;       // INT, FLOAT: the value as a double ("-0" keeps its sign)
  bool big;          // INT: outside int64_t's range (fval is still right)
  const char *str;   // STR: the decoded string, in the arena
} Token;

typedef struct Parser {
  const SrcFile *file;  // the text being read
  Arena *arena;
  Diag *d;
  const char *p;        // the next byte to read
  const char *end;      // file->text + file->len: a NUL before it is an error
  int line, col;        // p's position
  Token tok;            // the current token
  int last_line;        // just past the last token other than TK_NL:
  int last_col;         //   errors at the end of the text point here
  IrGraph *g;           // the graph being read
  const SrcFile *nn;    // the .nn file the header names (text NULL), or NULL
  Token output_at;      // the output line's keyword (kind TK_EOF: none yet)
  Token loss_at;        // the loss line's keyword
  jmp_buf fail;         // where error_at() jumps
} Parser;

//
// Errors
//

static _Noreturn void error_at(Parser *P, int line, int col, int len, const char *hint,
                               const char *fmt, ...) __attribute__((format(printf, 6, 7)));

// Reports at line:col of the text and abandons the parse.
static _Noreturn void error_at(Parser *P, int line, int col, int len, const char *hint,
                               const char *fmt, ...) {
  SrcLoc loc = {.file = P->file, .line = line, .col = col, .len = len > 0 ? len : 1};
  va_list ap;
  va_start(ap, fmt);
  diag_vreport(P->d, DIAG_ERROR, loc, hint, fmt, ap);
  va_end(ap);
  longjmp(P->fail, 1);
}

#define error_tok(P, t, hint, ...) error_at((P), (t)->line, (t)->col, (t)->len, (hint), __VA_ARGS__)

// How much of a token to quote in a message.
static int show_len(const Token *t) { return t->len > 40 ? 40 : t->len; }

/*
** "expected ']'" at the current token. A newline token sits at the end of
** its line, so a line cut short is reported where it ends; at the end of
** the text the report goes just past the last token.
*/
static _Noreturn void error_expected(Parser *P, const char *what) {
  if (P->tok.kind == TK_EOF)
    error_at(P, P->last_line, P->last_col, 1, NULL, "expected %s", what);
  error_tok(P, &P->tok, NULL, "expected %s", what);
}

// "did you mean 'matmul'?" in buf, or NULL when no candidate is close.
static const char *did_you_mean(const Token *t, const char *const *cands, int n, char *buf,
                                size_t size) {
  char name[65];
  if (t->len >= (int)sizeof name)
    return NULL;
  memcpy(name, t->p, t->len);
  name[t->len] = 0;
  const char *s = suggest_name(name, cands, n);
  if (!s)
    return NULL;
  snprintf(buf, size, "did you mean '%s'?", s);
  return buf;
}

//
// Lexer
//

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_alnum(int c) { return is_alpha(c) || is_digit(c); }

// Moves past one byte, counting lines and columns from 1.
static void advance(Parser *P) {
  if (*P->p == '\n') {
    P->line++;
    P->col = 1;
  } else {
    P->col++;
  }
  P->p++;
}

// Skips blanks and comments, but not newlines.
static void skip_space(Parser *P) {
  for (;;) {
    char c = *P->p;
    if (c == ' ' || c == '\t' || c == '\r') {
      advance(P);
    } else if (c == '#') {
      while (*P->p && *P->p != '\n')
        advance(P);
    } else {
      return;
    }
  }
}

/*
** Decodes the escape at *rp (the backslash), moves *rp past it and returns
** the byte: C's simple escapes, octal \ooo and hex \xhh. col is the
** backslash's column, for errors; a NUL byte cannot be in a C string.
*/
static int read_escape(Parser *P, const char **rp, int line, int col) {
  const char *r = *rp + 1;
  static const char from[] = "\"\\'?abfnrtv", to[] = "\"\\'?\a\b\f\n\r\t\v";
  int c = 0;
  const char *simple = *r ? strchr(from, *r) : NULL;
  if (simple) {
    c = to[simple - from];
    r++;
  } else if (*r >= '0' && *r <= '7') {
    for (int i = 0; i < 3 && *r >= '0' && *r <= '7'; i++)
      c = c * 8 + (*r++ - '0');
    if (c > 255)
      error_at(P, line, col, r - *rp, NULL, "octal escape out of range");
  } else if (*r == 'x') {
    r++;
    int i = 0;
    for (; i < 2 && (is_digit(*r) || ((*r | 32) >= 'a' && (*r | 32) <= 'f')); i++, r++)
      c = c * 16 + (is_digit(*r) ? *r - '0' : (*r | 32) - 'a' + 10);
    if (i == 0)
      error_at(P, line, col, 2, NULL, "\\x needs hexadecimal digits");
  } else {
    error_at(P, line, col, 2, NULL, "unknown escape sequence '\\%c'",
             *r > 0x20 && *r < 0x7f ? *r : '?');
  }
  if (c == 0)
    error_at(P, line, col, r - *rp, NULL, "a string cannot hold a NUL byte");
  *rp = r;
  return c;
}

// STR: finds the closing quote, then decodes into the arena.
static void lex_string(Parser *P, Token *t) {
  const char *start = P->p + 1, *q = start;
  for (; *q != '"'; q++) {
    if (*q == '\\' && q[1] && q[1] != '\n')
      q++;
    else if (*q == '\n' || *q == 0)
      error_at(P, t->line, t->col, 1, NULL, "unterminated string");
  }
  char *out = arena_alloc(P->arena, q - start + 1);
  int n = 0;
  for (const char *r = start; r < q;) {
    int col = t->col + (int)(r - P->p);
    if (*r == '\\')
      out[n++] = (char)read_escape(P, &r, t->line, col);
    else if ((unsigned char)*r < 0x20)
      error_at(P, t->line, col, 1, NULL, "control character in a string; write it as an escape");
    else
      out[n++] = *r++;
  }
  out[n] = 0;
  t->kind = TK_STR;
  t->str = out;
  P->col += (int)(q + 1 - P->p);
  P->p = q + 1;
}

// REF: % and a node number.
static void lex_ref(Parser *P, Token *t) {
  advance(P);
  if (!is_digit(*P->p))
    error_at(P, t->line, t->col, 1, NULL, "expected a node number after '%%'");
  int64_t v = 0;
  while (is_digit(*P->p)) {
    v = v * 10 + (*P->p - '0');
    if (v > INT_MAX)
      error_at(P, t->line, t->col, P->col - t->col + 1, NULL, "node number too large");
    advance(P);
  }
  t->kind = TK_REF;
  t->ival = v;
}

/*
** INT or FLOAT: -?digits(.digits*)?([eE][+-]?digits)?, or -?inf, -?nan.
** strtod gives the value (so "-0" is -0.0); strtoll the integer, when the
** text has neither point nor exponent.
*/
static void lex_number(Parser *P, Token *t) {
  const char *s = P->p, *q = s + (*s == '-');
  bool is_int = true, bad = false;
  if (is_alpha(*q)) {
    const char *w = q;
    while (is_alnum(*q))
      q++;
    bad = q - w != 3 || (strncmp(w, "inf", 3) != 0 && strncmp(w, "nan", 3) != 0);
    is_int = false;
  } else {
    while (is_digit(*q))
      q++;
    if (*q == '.') {
      is_int = false;
      for (q++; is_digit(*q); q++) {}
    }
    if (*q == 'e' || *q == 'E') {
      is_int = false;
      q += (q[1] == '+' || q[1] == '-') ? 2 : 1;
      bad = !is_digit(*q);
      while (is_digit(*q))
        q++;
    }
    while (is_alnum(*q) || *q == '.')
      bad = true, q++;
  }
  int len = (int)(q - s);
  if (bad)
    error_at(P, t->line, t->col, len, NULL, "bad number '%.*s'", len > 40 ? 40 : len, s);
  char buf[64];
  if (len >= (int)sizeof buf)
    error_at(P, t->line, t->col, len, NULL, "number too long");
  memcpy(buf, s, len);
  buf[len] = 0;
  bool neg = *s == '-';
  t->fval = strstr(buf, "nan") ? copysign(NAN, neg ? -1.0 : 1.0) : strtod(buf, NULL);
  if (is_int) {
    errno = 0;
    t->ival = strtoll(buf, NULL, 10);
    t->big = errno == ERANGE;
  }
  t->kind = is_int ? TK_INT : TK_FLOAT;
  P->p = q;
  P->col += len;
}

// IDENT, except that inf and nan are numbers.
static void lex_ident(Parser *P, Token *t) {
  const char *s = P->p;
  while (is_alnum(*P->p))
    advance(P);
  int len = (int)(P->p - s);
  t->kind = TK_IDENT;
  if (len == 3 && strncmp(s, "inf", 3) == 0) {
    t->kind = TK_FLOAT;
    t->fval = INFINITY;
  } else if (len == 3 && strncmp(s, "nan", 3) == 0) {
    t->kind = TK_FLOAT;
    t->fval = NAN;
  }
}

// Reads the next token into P->tok.
static void lex(Parser *P) {
  skip_space(P);
  Token *t = &P->tok;
  *t = (Token){.p = P->p, .line = P->line, .col = P->col, .len = 1};
  unsigned char c = *P->p;
  if (c == 0) {
    if (P->p < P->end)
      error_at(P, t->line, t->col, 1, NULL, "unexpected NUL byte");
    t->kind = TK_EOF;
    return;
  }
  if (c == '\n') {
    advance(P);
    t->kind = TK_NL;
  } else if (c == '"')
    lex_string(P, t);
  else if (c == '%')
    lex_ref(P, t);
  else if (is_digit(c) || (c == '-' && (is_digit(P->p[1]) || is_alpha(P->p[1]))))
    lex_number(P, t);
  else if (is_alpha(c))
    lex_ident(P, t);
  else if (strchr("=,{}[]():@?", c)) {
    advance(P);
    t->kind = TK_PUNCT;
  } else if (c > 0x20 && c < 0x7f)
    error_at(P, t->line, t->col, 1, NULL, "unexpected character '%c'", c);
  else
    error_at(P, t->line, t->col, 1, NULL, "unexpected byte 0x%02x", c);
  t->len = (int)(P->p - t->p);
}

static void next(Parser *P) {
  if (P->tok.kind != TK_NL) {
    P->last_line = P->line;
    P->last_col = P->col;
  }
  lex(P);
}

static void skip_newlines(Parser *P) {
  while (P->tok.kind == TK_NL)
    next(P);
}

static bool is_punct(Parser *P, char c) {
  return P->tok.kind == TK_PUNCT && *P->tok.p == c;
}

static bool is_word(Parser *P, const char *w) {
  return P->tok.kind == TK_IDENT && P->tok.len == (int)strlen(w) &&
         strncmp(P->tok.p, w, P->tok.len) == 0;
}

// Consumes the punctuation c, or reports "expected 'c'".
static void expect(Parser *P, char c) {
  if (!is_punct(P, c)) {
    char what[4] = {'\'', c, '\'', 0};
    error_expected(P, what);
  }
  next(P);
}

//
// Values
//

static double parse_number(Parser *P) {
  if (P->tok.kind != TK_INT && P->tok.kind != TK_FLOAT)
    error_expected(P, "a number");
  double v = P->tok.fval;
  next(P);
  return v;
}

// An integer in int64_t; what names it for errors ("attribute 'tb'").
static int64_t parse_int(Parser *P, const char *what) {
  Token *t = &P->tok;
  if (t->kind == TK_FLOAT)
    error_tok(P, t, NULL, "%s takes an integer, found '%.*s'", what, show_len(t), t->p);
  if (t->kind != TK_INT)
    error_expected(P, "an integer");
  if (t->big)
    error_tok(P, t, NULL, "integer '%.*s' is out of range", show_len(t), t->p);
  int64_t v = t->ival;
  next(P);
  return v;
}

// An integer from lo to INT_MAX (a line or column number).
static int parse_small(Parser *P, int lo, const char *what) {
  Token t = P->tok;
  int64_t v = parse_int(P, what);
  if (v < lo || v > INT_MAX)
    error_tok(P, &t, NULL, "%s out of range", what);
  return (int)v;
}

// A use of a node: %K, which must be defined already.
static IrNode *parse_use(Parser *P) {
  if (P->tok.kind != TK_REF)
    error_expected(P, "a node (%N)");
  if (P->tok.ival >= P->g->nnodes)
    error_tok(P, &P->tok, NULL, "%%%lld used before it is defined", (long long)P->tok.ival);
  IrNode *n = P->g->nodes[P->tok.ival];
  next(P);
  return n;
}

static const char *parse_string(Parser *P, const char *what) {
  if (P->tok.kind != TK_STR)
    error_expected(P, what);
  const char *s = P->tok.str;
  next(P);
  return s;
}

//
// Nodes
//

// The op after "%K =".
static IrOp parse_op(Parser *P) {
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    error_expected(P, "an op name");
  char name[65];
  snprintf(name, sizeof name, "%.*s", t.len < 64 ? t.len : 64, t.p);
  IrOp op = t.len < 64 ? ir_op_lookup(name) : IR_NUM_OPS;
  if (op == IR_NUM_OPS) {
    const char *mnems[IR_NUM_OPS];
    for (int i = 0; i < IR_NUM_OPS; i++)
      mnems[i] = ir_op_info(i)->mnem;
    char hint[96];
    error_tok(P, &t, did_you_mean(&t, mnems, IR_NUM_OPS, hint, sizeof hint),
              "unknown op '%.*s'", show_len(&t), t.p);
  }
  next(P);
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
    if (!is_punct(P, ','))
      return n;
    next(P);
    if (P->tok.kind != TK_REF)
      error_expected(P, "a node (%N) after ','");
  }
}

// "conv2d takes 2 to 3 inputs, found 1", at the op.
static void check_arity(Parser *P, const Token *at, IrOp op, int n) {
  const IrOpInfo *info = ir_op_info(op);
  if (n >= info->min_in && n <= info->max_in)
    return;
  if (info->max_in == 0)
    error_tok(P, at, NULL, "%s takes no inputs, found %d", info->mnem, n);
  if (info->min_in == info->max_in)
    error_tok(P, at, NULL, "%s takes %d input%s, found %d", info->mnem, info->min_in,
              info->min_in == 1 ? "" : "s", n);
  error_tok(P, at, NULL, "%s takes %d to %d inputs, found %d", info->mnem, info->min_in,
            info->max_in, n);
}

// init = IDENT ("(" number ("," number)* ")")?
// zeros and ones take no numbers, constant one, normal and uniform two.
static void parse_init(Parser *P, IrNode *n) {
  static const char *const kinds[] = {"zeros", "ones", "constant", "normal", "uniform"};
  static const int nargs[] = {0, 0, 1, 2, 2};
  if (n->op != IR_PARAM && n->op != IR_BUFFER)
    error_tok(P, &P->tok, NULL, "only param and buffer nodes have an init");
  next(P);
  Token kt = P->tok;
  if (kt.kind != TK_IDENT)
    error_expected(P, "an init kind (zeros, ones, constant, normal or uniform)");
  int k = countof(kinds) - 1;
  while (k >= 0 && !is_word(P, kinds[k]))
    k--;
  char hint[96];
  if (k < 0)
    error_tok(P, &kt, did_you_mean(&kt, kinds, countof(kinds), hint, sizeof hint),
              "unknown init '%.*s'", show_len(&kt), kt.p);
  next(P);
  n->init.kind = (InitKind)k;
  if (nargs[k] == 0) {
    if (is_punct(P, '('))
      error_tok(P, &kt, NULL, "init %s takes no arguments", kinds[k]);
    return;
  }
  double v[2] = {0, 0};
  expect(P, '(');
  for (int i = 0; i < nargs[k]; i++) {
    if (i > 0 && !is_punct(P, ','))
      error_tok(P, &kt, NULL, "init %s takes %d arguments", kinds[k], nargs[k]);
    if (i > 0)
      next(P);
    v[i] = parse_number(P);
  }
  if (is_punct(P, ','))
    error_tok(P, &kt, NULL, "init %s takes %d argument%s", kinds[k], nargs[k],
              nargs[k] == 1 ? "" : "s");
  expect(P, ')');
  n->init.a = v[0];
  n->init.b = v[1];
}

// attr = IDENT "=" number, for one of the attributes n's op declares.
// set[] marks the slots seen (integer ones first, then float ones).
static void parse_attr(Parser *P, IrNode *n, bool *set) {
  const IrOpInfo *info = ir_op_info(n->op);
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    error_expected(P, "an attribute name");
  const char *names[IR_MAX_IATTR + IR_MAX_FATTR];
  int nnames = 0, slot = -1;
  for (int i = 0; i < info->niattr; i++)
    names[nnames++] = info->iattr[i];
  for (int i = 0; i < info->nfattr; i++)
    names[nnames++] = info->fattr[i];
  for (int i = 0; i < nnames && slot < 0; i++)
    if (is_word(P, names[i]))
      slot = i;
  char hint[96];
  if (slot < 0)
    error_tok(P, &t, did_you_mean(&t, names, nnames, hint, sizeof hint),
              "unknown attribute '%.*s' for %s", show_len(&t), t.p, info->mnem);
  if (set[slot])
    error_tok(P, &t, NULL, "duplicate attribute '%s'", names[slot]);
  set[slot] = true;
  next(P);
  expect(P, '=');
  char what[64];
  snprintf(what, sizeof what, "attribute '%s'", names[slot]);
  if (slot < info->niattr)
    n->attr.i[slot] = parse_int(P, what);
  else
    n->attr.f[slot - info->niattr] = parse_number(P);
}

// attrs = "{" (attr ("," attr)*)? "}"
static void parse_attrs(Parser *P, IrNode *n) {
  bool set[IR_MAX_IATTR + IR_MAX_FATTR] = {0};
  next(P);
  while (!is_punct(P, '}')) {
    parse_attr(P, n, set);
    if (is_punct(P, '}'))
      break;
    if (!is_punct(P, ','))
      error_expected(P, "',' or '}'");
    next(P);
  }
  next(P);
}

// dim = "N" | INT
static int64_t parse_dim(Parser *P) {
  if (is_word(P, "N")) {
    next(P);
    return IR_N;
  }
  if (P->tok.kind != TK_INT)
    error_expected(P, "a dimension (a number or N)");
  return parse_int(P, "a dimension");
}

// type = "?" | IDENT "[" (dim ("," dim)*)? "]"
static void parse_type(Parser *P, IrNode *n) {
  n->ndim = -1;
  if (is_punct(P, '?')) {
    next(P);
    return;
  }
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    error_expected(P, "a type (f32[...], i32[...] or ?)");
  if (is_word(P, "f32"))
    n->dtype = DT_F32;
  else if (is_word(P, "i32"))
    n->dtype = DT_I32;
  else
    error_tok(P, &t, "the types are f32 and i32", "unknown type '%.*s'", show_len(&t), t.p);
  next(P);
  expect(P, '[');
  int nd = 0;
  while (!is_punct(P, ']')) {
    if (nd == IR_MAX_DIMS)
      error_tok(P, &P->tok, NULL, "too many dimensions (at most %d)", IR_MAX_DIMS);
    n->shape[nd++] = parse_dim(P);
    if (!is_punct(P, ','))
      break;
    next(P);
    if (is_punct(P, ']'))
      error_expected(P, "a dimension (a number or N)");
  }
  expect(P, ']');
  n->ndim = nd;
}

/*
** node = REF "=" IDENT operands STRING? ("init" init)? attrs? ":" type
**        ("@" INT ":" INT)? ("scope" STRING)?
** Nodes are numbered from 0 in order, so %K is always the next index.
*/
static void parse_node(Parser *P) {
  IrGraph *g = P->g;
  if (P->tok.ival != g->nnodes)
    error_tok(P, &P->tok, NULL, "node ids must be consecutive: expected %%%d, found %%%lld",
              g->nnodes, (long long)P->tok.ival);
  next(P);
  expect(P, '=');
  Token op_tok = P->tok;
  IrOp op = parse_op(P);
  IrNode *src[IR_MAX_SRC];
  int nsrc = parse_operands(P, src);
  check_arity(P, &op_tok, op, nsrc);
  IrNode *n = ir_add(g, op, src, nsrc, (SrcLoc){0});
  if (P->tok.kind == TK_STR)
    n->name = parse_string(P, "a name");
  if (is_word(P, "init"))
    parse_init(P, n);
  if (is_punct(P, '{'))
    parse_attrs(P, n);
  expect(P, ':');
  parse_type(P, n);
  if (is_punct(P, '@')) {
    next(P);
    int line = parse_small(P, 1, "line number");
    expect(P, ':');
    int col = parse_small(P, 0, "column number");
    n->loc = (SrcLoc){.file = P->nn, .line = line, .col = col, .len = 1};
  }
  if (is_word(P, "scope")) {
    next(P);
    n->scope = parse_string(P, "a string after 'scope'");
  }
}

// "output %K" or "loss %K"; *first remembers the line, to refuse a second.
static void parse_result(Parser *P, IrNode **slot, Token *first, const char *what) {
  if (first->kind != TK_EOF)
    error_tok(P, &P->tok, NULL, "duplicate %s line (the first is at %d:%d)", what, first->line,
              first->col);
  *first = P->tok;
  next(P);
  *slot = parse_use(P);
}

// stmt = node | "output" REF | "loss" REF; each on a line of its own.
static void parse_stmt(Parser *P) {
  if (P->tok.kind == TK_REF)
    parse_node(P);
  else if (is_word(P, "output"))
    parse_result(P, &P->g->output, &P->output_at, "output");
  else if (is_word(P, "loss"))
    parse_result(P, &P->g->loss, &P->loss_at, "loss");
  else
    error_tok(P, &P->tok, NULL, "expected a node, 'output', 'loss' or '}'");
}

// A statement ends its line.
static void end_line(Parser *P) {
  if (P->tok.kind != TK_NL && P->tok.kind != TK_EOF)
    error_tok(P, &P->tok, NULL, "expected the end of the line, found '%.*s'", show_len(&P->tok),
              P->tok.p);
}

// graph = "graph" (IDENT | STRING) STRING? "{" stmt* "}"
static IrGraph *parse_graph(Parser *P) {
  next(P);
  skip_newlines(P);
  if (!is_word(P, "graph"))
    error_expected(P, "'graph'");
  next(P);
  const char *name = NULL;
  if (P->tok.kind == TK_IDENT)
    name = arena_strndup(P->arena, P->tok.p, P->tok.len);
  else if (P->tok.kind == TK_STR)
    name = P->tok.str;
  else
    error_expected(P, "the graph's name");
  next(P);
  P->g = ir_graph_new(P->arena, name);
  if (P->tok.kind == TK_STR) {
    SrcFile *nn = arena_alloc(P->arena, sizeof *nn);
    nn->name = P->g->file = parse_string(P, "a file name");
    P->nn = nn;
  }
  expect(P, '{');
  end_line(P);
  for (skip_newlines(P); !is_punct(P, '}'); skip_newlines(P)) {
    if (P->tok.kind == TK_EOF)
      error_expected(P, "'}' at the end of the graph");
    parse_stmt(P);
    end_line(P);
  }
  next(P);
  skip_newlines(P);
  if (P->tok.kind != TK_EOF)
    error_tok(P, &P->tok, NULL, "unexpected text after the graph");
  return P->g;
}

IrGraph *ir_parse(const SrcFile *file, Arena *a, Diag *d) {
  if (!file || !file->text)
    unreachable();
  Parser P = {
    .file = file, .arena = a, .d = d, .p = file->text, .end = file->text + file->len,
    .line = 1, .col = 1, .last_line = 1, .last_col = 1,
  };
  if (setjmp(P.fail))
    return NULL;
  return parse_graph(&P);
}
