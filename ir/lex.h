// lex.h: what ir/parse.c and ir/kparse.c share (ir/lex.c): the lexer, the
// error reporting that abandons a parse, and readers of the values both
// texts hold. Private to ir/.
#ifndef NNC_IR_LEX_H
#define NNC_IR_LEX_H

#include "ir.h"

#include <setjmp.h>

typedef enum {
  TK_EOF,
  TK_IDENT,     // graph, f32, N, matmul, stride_h
  TK_STR,       // "linear_1.weight"
  TK_INT,       // 784, -3
  TK_FLOAT,     // 0.1, 1e-08, inf
  TK_REF,       // %12
  TK_PUNCT,     // one byte of Parser.punct: = , { } [ ] ( ) : @ ? (and * + ^ in kernel IR)
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
  Token loss_at;        // graph IR: the loss line's keyword
  const char *punct;    // the punctuation bytes of this text
  jmp_buf fail;         // where lx_error_at() jumps
} Parser;

// A parser at the start of file's text (call lx_next for the first token).
#define LX_PARSER(file_, arena_, d_, punct_)                                                          \
  {.file = (file_), .arena = (arena_), .d = (d_), .p = (file_)->text, .end = (file_)->text + (file_)->len, \
   .line = 1, .col = 1, .last_line = 1, .last_col = 1, .punct = (punct_)}

// Reports at line:col of the text and abandons the parse (longjmp to P->fail).
_Noreturn void lx_error_at(Parser *P, int line, int col, int len, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
#define lx_error_tok(P, t, hint, ...) lx_error_at((P), (t)->line, (t)->col, (t)->len, (hint), __VA_ARGS__)
// "expected WHAT" at the current token (just past the last one at the end).
_Noreturn void lx_expected(Parser *P, const char *what);
// "did you mean 'matmul'?" in buf, or NULL when no candidate is close.
const char *lx_did_you_mean(const Token *t, const char *const *cands, int n, char *buf, size_t size);
// How much of a token to quote in a message.
static inline int lx_show_len(const Token *t) { return t->len > 40 ? 40 : t->len; }

void lx_next(Parser *P);                     // reads the next token into P->tok
void lx_skip_newlines(Parser *P);
bool lx_is_punct(Parser *P, char c);
bool lx_is_word(Parser *P, const char *w);
void lx_expect(Parser *P, char c);           // consumes c or reports "expected 'c'"
void lx_end_line(Parser *P);                 // the statement must end here

double lx_number(Parser *P);
int64_t lx_int(Parser *P, const char *what); // what names it for errors ("attribute 'tb'")
int lx_small(Parser *P, int lo, const char *what);   // from lo to INT_MAX
const char *lx_string(Parser *P, const char *what);
int64_t lx_dim(Parser *P);                   // dim = "N" | INT
void lx_type(Parser *P, IrNode *n);          // type = "?" | IDENT "[" (dim ("," dim)*)? "]"

#endif
