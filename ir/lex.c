// lex.c: the lexer and the value readers that the graph IR parser
// (parse.c) and the kernel IR parser (kparse.c) share.
//
// Both texts are written by a program, so a parser stops at the first
// error, as LLVM's .ll parser does: lx_error_at() reports it at the text's
// line:col and longjmps back to the parser's entry, which returns NULL (Lua's
// parser unwinds the same way). Everything a parser allocates comes from the
// caller's arena, so the jump leaks nothing.
//
// Tokens: REF is %12; numbers are C's (-0.0357, 1e-08, inf, -nan); strings
// are C string literals; `#` starts a comment that runs to the end of the
// line; punctuation is one byte of Parser.punct. A newline is a token too,
// since each line holds one statement: a line cut short is reported at its
// end, not at the next line's start.
#include "lex.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

//
// Errors
//

// Reports at line:col of the text and abandons the parse.
_Noreturn void lx_error_at(Parser *P, int line, int col, int len, const char *hint, const char *fmt, ...) {
  SrcLoc loc = {.file = P->file, .line = line, .col = col, .len = len > 0 ? len : 1};
  va_list ap;
  va_start(ap, fmt);
  diag_vreport(P->d, DIAG_ERROR, loc, hint, fmt, ap);
  va_end(ap);
  longjmp(P->fail, 1);
}


/*
** "expected ']'" at the current token. A newline token sits at the end of
** its line, so a line cut short is reported where it ends; at the end of
** the text the report goes just past the last token.
*/
_Noreturn void lx_expected(Parser *P, const char *what) {
  if (P->tok.kind == TK_EOF)
    lx_error_at(P, P->last_line, P->last_col, 1, NULL, "expected %s", what);
  lx_error_tok(P, &P->tok, NULL, "expected %s", what);
}

// "did you mean 'matmul'?" in buf, or NULL when no candidate is close.
const char *lx_did_you_mean(const Token *t, const char *const *cands, int n, char *buf, size_t size) {
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
      lx_error_at(P, line, col, r - *rp, NULL, "octal escape out of range");
  } else if (*r == 'x') {
    r++;
    int i = 0;
    for (; i < 2 && (is_digit(*r) || ((*r | 32) >= 'a' && (*r | 32) <= 'f')); i++, r++)
      c = c * 16 + (is_digit(*r) ? *r - '0' : (*r | 32) - 'a' + 10);
    if (i == 0)
      lx_error_at(P, line, col, 2, NULL, "\\x needs hexadecimal digits");
  } else {
    lx_error_at(P, line, col, 2, NULL, "unknown escape sequence '\\%c'",
                *r > 0x20 && *r < 0x7f ? *r : '?');
  }
  if (c == 0)
    lx_error_at(P, line, col, r - *rp, NULL, "a string cannot hold a NUL byte");
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
      lx_error_at(P, t->line, t->col, 1, NULL, "unterminated string");
  }
  char *out = arena_alloc(P->arena, q - start + 1);
  int n = 0;
  for (const char *r = start; r < q;) {
    int col = t->col + (int)(r - P->p);
    if (*r == '\\')
      out[n++] = (char)read_escape(P, &r, t->line, col);
    else if ((unsigned char)*r < 0x20)
      lx_error_at(P, t->line, col, 1, NULL, "control character in a string; write it as an escape");
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
    lx_error_at(P, t->line, t->col, 1, NULL, "expected a node number after '%%'");
  int64_t v = 0;
  while (is_digit(*P->p)) {
    v = v * 10 + (*P->p - '0');
    if (v > INT_MAX)
      lx_error_at(P, t->line, t->col, P->col - t->col + 1, NULL, "node number too large");
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
    lx_error_at(P, t->line, t->col, len, NULL, "bad number '%.*s'", len > 40 ? 40 : len, s);
  char buf[64];
  if (len >= (int)sizeof buf)
    lx_error_at(P, t->line, t->col, len, NULL, "number too long");
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
      lx_error_at(P, t->line, t->col, 1, NULL, "unexpected NUL byte");
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
  else if (strchr(P->punct, c)) {
    advance(P);
    t->kind = TK_PUNCT;
  } else if (c > 0x20 && c < 0x7f)
    lx_error_at(P, t->line, t->col, 1, NULL, "unexpected character '%c'", c);
  else
    lx_error_at(P, t->line, t->col, 1, NULL, "unexpected byte 0x%02x", c);
  t->len = (int)(P->p - t->p);
}

void lx_next(Parser *P) {
  if (P->tok.kind != TK_NL) {
    P->last_line = P->line;
    P->last_col = P->col;
  }
  lex(P);
}

void lx_skip_newlines(Parser *P) {
  while (P->tok.kind == TK_NL)
    lx_next(P);
}

bool lx_is_punct(Parser *P, char c) {
  return P->tok.kind == TK_PUNCT && *P->tok.p == c;
}

bool lx_is_word(Parser *P, const char *w) {
  return P->tok.kind == TK_IDENT && P->tok.len == (int)strlen(w) &&
         strncmp(P->tok.p, w, P->tok.len) == 0;
}

// Consumes the punctuation c, or reports "expected 'c'".
void lx_expect(Parser *P, char c) {
  if (!lx_is_punct(P, c)) {
    char what[4] = {'\'', c, '\'', 0};
    lx_expected(P, what);
  }
  lx_next(P);
}

//
// Values
//

double lx_number(Parser *P) {
  if (P->tok.kind != TK_INT && P->tok.kind != TK_FLOAT)
    lx_expected(P, "a number");
  double v = P->tok.fval;
  lx_next(P);
  return v;
}

// An integer in int64_t; what names it for errors ("attribute 'tb'").
int64_t lx_int(Parser *P, const char *what) {
  Token *t = &P->tok;
  if (t->kind == TK_FLOAT)
    lx_error_tok(P, t, NULL, "%s takes an integer, found '%.*s'", what, lx_show_len(t), t->p);
  if (t->kind != TK_INT)
    lx_expected(P, "an integer");
  if (t->big)
    lx_error_tok(P, t, NULL, "integer '%.*s' is out of range", lx_show_len(t), t->p);
  int64_t v = t->ival;
  lx_next(P);
  return v;
}

// An integer from lo to INT_MAX (a line or column number).
int lx_small(Parser *P, int lo, const char *what) {
  Token t = P->tok;
  int64_t v = lx_int(P, what);
  if (v < lo || v > INT_MAX)
    lx_error_tok(P, &t, NULL, "%s out of range", what);
  return (int)v;
}


const char *lx_string(Parser *P, const char *what) {
  if (P->tok.kind != TK_STR)
    lx_expected(P, what);
  const char *s = P->tok.str;
  lx_next(P);
  return s;
}

// dim = "N" | INT
int64_t lx_dim(Parser *P) {
  if (lx_is_word(P, "N")) {
    lx_next(P);
    return IR_N;
  }
  if (P->tok.kind != TK_INT)
    lx_expected(P, "a dimension (a number or N)");
  return lx_int(P, "a dimension");
}

// type = "?" | IDENT "[" (dim ("," dim)*)? "]"
void lx_type(Parser *P, IrNode *n) {
  n->ndim = -1;
  if (lx_is_punct(P, '?')) {
    lx_next(P);
    return;
  }
  Token t = P->tok;
  if (t.kind != TK_IDENT)
    lx_expected(P, "a type (f32[...], i32[...] or ?)");
  if (lx_is_word(P, "f32"))
    n->dtype = DT_F32;
  else if (lx_is_word(P, "i32"))
    n->dtype = DT_I32;
  else
    lx_error_tok(P, &t, "the types are f32 and i32", "unknown type '%.*s'", lx_show_len(&t), t.p);
  lx_next(P);
  lx_expect(P, '[');
  int nd = 0;
  while (!lx_is_punct(P, ']')) {
    if (nd == IR_MAX_DIMS)
      lx_error_tok(P, &P->tok, NULL, "too many dimensions (at most %d)", IR_MAX_DIMS);
    n->shape[nd++] = lx_dim(P);
    if (!lx_is_punct(P, ','))
      break;
    lx_next(P);
    if (lx_is_punct(P, ']'))
      lx_expected(P, "a dimension (a number or N)");
  }
  lx_expect(P, ']');
  n->ndim = nd;
}

// A statement ends its line.
void lx_end_line(Parser *P) {
  if (P->tok.kind != TK_NL && P->tok.kind != TK_EOF)
    lx_error_tok(P, &P->tok, NULL, "expected the end of the line, found '%.*s'", lx_show_len(&P->tok),
                 P->tok.p);
}
