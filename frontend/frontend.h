// frontend.h: the .nn language: lexer (flex), parser (bison), and the AST.
//
// fe_parse() turns a source file into a Program: a list of declarations
// (model, block, loss, optimizer, train, schedule). Pipelines are kept as
// AST_PIPE nodes so dumps read like the source; the lowering pass treats
// `a -> f(args)` exactly as `f(a, args)`.
#ifndef NNC_FRONTEND_H
#define NNC_FRONTEND_H

#include "util.h"

typedef enum {
  AST_NUM,      // num: a number literal (integers too)
  AST_BOOL,     // num: 1 or 0 (true / false)
  AST_IDENT,    // name: a reference to a value, a block parameter, or a layer
  AST_CALL,     // name, args: f(a, b, k = v); args are AST_KWARG or expressions
  AST_KWARG,    // name, lhs: a keyword argument `name = lhs` inside a call
  AST_PIPE,     // lhs, rhs: `lhs -> rhs`; rhs is AST_IDENT or AST_CALL
  AST_BINOP,    // op, lhs, rhs: + - * / @
  AST_NEG,      // lhs: unary minus
  AST_ASSIGN,   // name, lhs: `name = lhs` as a statement
  AST_INPUT,    // name, type: `input name: type`
  AST_TARGET,   // name, type: `target name: type`
  AST_PARAM,    // name, type, lhs, frozen: `param name: type = init [frozen]` (lhs: init call or NULL)
  AST_EXPR,     // lhs: an expression statement (the last one is the result); a list `a, b`
                //   (a model's outputs): args, nargs every one, lhs the first
  AST_TUPLE,    // args: `(a, b, ...)`, two or more expressions (numbers only, for now)
  AST_INDEX,    // lhs, args, close: `lhs[a, b:c, ...]`; args are expressions, AST_RANGE or AST_ELLIPSIS
  AST_RANGE,    // args: start, stop, step (each NULL when left out): `start:stop:step` in an index
  AST_ELLIPSIS, // `...` in an index: every dimension not indexed otherwise
  AST_UNPACK,   // args, lhs: `a, b, c = lhs` as a statement; args are AST_IDENT
} AstKind;

// A tensor type as written: f32[1, 28, 28] or class(10).
typedef struct AstType {
  const char *dtype;     // "f32", or "class" for a class-index target
  struct AstNode **dims; // f32: dimension expressions; class: one, the count
  int ndims;
  SrcLoc loc;
} AstType;

typedef struct AstNode {
  AstKind kind;
  SrcLoc loc;            // the representative token: the operator, the name
  const char *name;      // IDENT, CALL, KWARG, ASSIGN, INPUT, TARGET, PARAM
  double num;            // NUM, BOOL
  const char *text;      // NUM: the literal as written (for dumps)
  char op;               // BINOP: '+', '-', '*', '/', '@'
  struct AstNode *lhs;   // PIPE, BINOP, NEG, KWARG, ASSIGN, PARAM (init), EXPR
  struct AstNode *rhs;   // PIPE, BINOP
  struct AstNode **args; // CALL: positional and keyword arguments, in order; TUPLE: its items;
                         //   EXPR: a list's items; INDEX, RANGE, UNPACK
  int nargs;
  SrcLoc close;          // CALL: the ')' (for "expected ')'" notes); INDEX: the ']'; PIPE unused
  AstType *type;         // INPUT, TARGET, PARAM
  bool frozen;           // PARAM: declared `frozen` (kept as initialized, not trained)
} AstNode;

typedef enum {
  DECL_MODEL,      // name, params (none), body
  DECL_BLOCK,      // name, params, body
  DECL_LOSS,       // call: the loss (AST_IDENT or AST_CALL, or a weighted sum of them)
  DECL_OPTIMIZER,  // call: the optimizer (AST_IDENT or AST_CALL)
  DECL_SCHEDULE,   // call: the learning-rate schedule (AST_IDENT or AST_CALL)
  DECL_TRAIN,      // settings: AST_KWARG list
} DeclKind;

typedef struct Decl {
  DeclKind kind;
  SrcLoc loc;            // the keyword
  const char *name;      // MODEL, BLOCK
  SrcLoc name_loc;
  const char **params;   // BLOCK: parameter names
  SrcLoc *param_locs;
  int nparams;
  AstNode **body;        // MODEL, BLOCK: statements in order
  int nbody;
  AstNode *call;         // LOSS, OPTIMIZER, SCHEDULE
  AstNode **settings;    // TRAIN: AST_KWARG nodes
  int nsettings;
} Decl;

typedef struct Program {
  const SrcFile *file;
  Decl **decls;
  int ndecls;
} Program;

// Parses file. Syntax errors go to d (several per run where the parser can
// recover); returns the program, possibly partial when d->nerrors > 0.
// Everything is allocated from a.
Program *fe_parse(const SrcFile *file, Arena *a, Diag *d);

// Reads path and parses it. On an unreadable file, reports and returns NULL.
Program *fe_parse_file(const char *path, Arena *a, Diag *d);

// Prints the AST as an indented S-expression-like tree (`nnc emit --stage ast`).
void fe_print_ast(FILE *out, const Program *p);

#endif
