// parser.y: the grammar of .nn files, as a pure bison parser with locations.
//
// The scanner (lexer.l) turns the ends of lines into statement separators,
// so the grammar reads one statement per line. Every node keeps the location
// of its representative token (the operator, the name), and a rule's location
// is that of its first token. Pipelines stay AST_PIPE nodes.
//
// Syntax errors are worded by yyreport_syntax_error() from the tokens the
// parser could have taken (exact, thanks to LAC), the token it found, the two
// tokens before that, and the brackets still open. `error` rules resume at
// the end of a statement, at the '}' of a declaration, and at the next line
// or declaration keyword at top level, so one run reports several errors;
// bison reports nothing more until three tokens have been shifted after an
// error, and nothing twice at one place. Expressions deeper than FE_MAX_DEPTH
// are refused, so no later recursion over the tree can overflow the stack.
%require "3.8"
%define api.pure full
%define api.prefix {fe_yy}
%define api.token.prefix {TK_}
%define api.location.type {SrcLoc}
%define parse.error custom
%define parse.lac full
%locations
%param {yyscan_t scanner} {ParseState *ps}

%code requires {
#include "frontend.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

#define FE_MAX_DEPTH 200   // deepest expression, and most brackets open at once
#define FE_MAX_OPEN 256    // open brackets whose locations are kept
#define FE_MAX_NAME 255    // longest identifier

// A number as written and its value.
typedef struct FeNumber {
  const char *text;
  double val;
} FeNumber;

// An expression being built, with the depth of its tree (leaves are 0).
typedef struct Expr {
  AstNode *node;
  int depth;
} Expr;

// An argument list being built, with the depth of its deepest argument.
typedef struct ArgList {
  PtrVec args;       // AstNode *: expressions and AST_KWARG nodes
  int depth;
} ArgList;

// A token as the error reporter sees it.
typedef struct FeToken {
  int kind;          // token kind (TK_...); TK_YYEMPTY before the first
  SrcLoc loc;
  const char *text;  // IDENT, NUMBER: as written; NEWLINE: ";" or NULL
} FeToken;

// A bracket not yet closed, for "expected ')' to close '(' at 3:14".
typedef struct FeBracket {
  char kind;         // '(', '[' or '{'; 0: none
  SrcLoc loc;
} FeBracket;

// What the scanner and the parser of one file share.
typedef struct ParseState {
  Arena *arena;             // every node, name and list
  Diag *diag;
  const SrcFile *file;
  PtrVec decls;             // Decl *, in order; kept when the parse aborts
  FeBracket open[FE_MAX_OPEN]; // brackets open, outermost first
  int nopen;                // entries in open[]
  int nlost;                // '(' and '[' open beyond open[] (absurd input)
  int nparens;              // '(' and '[' open, counting nlost
  FeBracket before;         // innermost bracket open before the lookahead
  bool closed;              // the lookahead closed an open bracket
  FeToken tok[3];           // the lookahead, the token before, the one before that
  Decl *braced;             // the model, block or train whose '{' was read last
  SrcLoc brace;             // where that '{' is
  SrcLoc last_error;        // the last syntax error (never two at one place)
} ParseState;

// The scanner's own state (flex's extra data).
typedef struct LexState {
  int line, col;            // where the next character is
  SrcLoc at;                // the text just matched
  int last;                 // kind of the last token returned (TK_YYEMPTY: none)
  SrcLoc end;               // just after the last token returned
  SrcLoc bad_end;           // just after the last unexpected character
  bool too_deep;            // "nested too deeply" reported for these brackets
} LexState;
}

%code provides {
// flex's names for bison's types, for the scanner and its header.
#define YYSTYPE FE_YYSTYPE
#define YYLTYPE FE_YYLTYPE

// Shorter names for the tokens bison spells with the prefix twice.
#define TK_YYEMPTY TK_FE_YYEMPTY   // no token (yet)
#define TK_YYUNDEF TK_FE_YYUNDEF   // an invalid token: the scanner has reported it

// The scanner takes the parse state too (%param).
#define YY_DECL int fe_yylex(FE_YYSTYPE *yylval_param, FE_YYLTYPE *yylloc_param, \
                             yyscan_t yyscanner, ParseState *ps)
YY_DECL;
}

%code {
#include <string.h>

// A rule's location is its first token's; an empty rule's is the one before.
#define YYLLOC_DEFAULT(Cur, Rhs, N) \
  do {                              \
    if (N)                          \
      (Cur) = YYRHSLOC(Rhs, 1);     \
    else                            \
      (Cur) = YYRHSLOC(Rhs, 0);     \
  } while (0)

static void yyerror(SrcLoc *loc, yyscan_t scanner, ParseState *ps, const char *msg);
static AstNode *new_node(ParseState *ps, AstKind kind, SrcLoc loc);
static Expr leaf(ParseState *ps, AstKind kind, SrcLoc loc);
static AstNode *name_node(ParseState *ps, const char *name, SrcLoc loc);
static bool nest(ParseState *ps, Expr *e, AstNode *n, int depth);
static bool binary(ParseState *ps, Expr *e, AstKind kind, char op, SrcLoc loc, Expr l, Expr r);
static bool call(ParseState *ps, Expr *e, const char *name, SrcLoc loc, ArgList args, SrcLoc close);
static ArgList add_arg(ParseState *ps, ArgList list, Expr arg);
static bool tuple(ParseState *ps, Expr *e, SrcLoc loc, ArgList items);
static bool indexing(ParseState *ps, Expr *e, Expr x, SrcLoc loc, ArgList items, SrcLoc close);
static bool range(ParseState *ps, Expr *e, SrcLoc loc, Expr start, Expr stop, Expr step);
static AstNode *assignment(ParseState *ps, PtrVec names, AstNode *value, SrcLoc eq);
static PtrVec push(ParseState *ps, PtrVec v, void *p);
static AstNode *typed(ParseState *ps, AstKind kind, const char *name, SrcLoc loc, AstType *type);
static bool frozen_word(ParseState *ps, const char *word, SrcLoc loc);
static AstType *new_type(ParseState *ps, const char *dtype, SrcLoc loc, PtrVec dims);
static Decl *new_decl(ParseState *ps, DeclKind kind, SrcLoc loc, const char *name, SrcLoc name_loc);
static void set_params(ParseState *ps, Decl *d, PtrVec names);
static void open_decl(ParseState *ps, Decl *d, SrcLoc brace);
static Decl *close_decl(ParseState *ps, Decl *d, PtrVec items);
}

%initial-action { @$ = (SrcLoc){ps->file, 1, 1, 1}; }

%union {
  const char *str;   // IDENT
  FeNumber num;      // NUMBER
  Expr expr;
  ArgList args;
  AstNode *node;
  AstType *type;
  PtrVec list;
  Decl *decl;
}

%token <str> IDENT "name"
%token <num> NUMBER "number"
%token MODEL "model" BLOCK "block" INPUT "input" TARGET "target" PARAM "param"
%token LOSS "loss" OPTIMIZER "optimizer" SCHEDULE "schedule" TRAIN "train"
%token TRUE "true" FALSE "false" CLASS "class"
%token ARROW "->" PLUS "+" MINUS "-" STAR "*" SLASH "/" AT "@"
%token EQ "=" COLON ":" COMMA "," ELLIPSIS "..."
%token LPAREN "(" RPAREN ")" LBRACKET "[" RBRACKET "]" LBRACE "{" RBRACE "}"
%token NEWLINE "end of line"

%type <decl> decl model_head block_head train_head
%type <list> body stmts params param_list dims settings setting_list exprlist
%type <node> stmt setting
%type <type> type
%type <expr> expr pipe sum prod unary primary callee arg index opt_expr
%type <args> args arg_list items indexes

%%

// program = (decl | NEWLINE)*
program
  : %empty
  | program decl              { if ($2) ptrvec_push(ps->arena, &ps->decls, $2); }
  | program NEWLINE
  | program error             // resume at the next line or declaration
  ;

// decl = "model" IDENT "{" body "}"
//      | "block" IDENT "(" [IDENT ("," IDENT)*] ")" "{" body "}"
//      | "loss" expr | "optimizer" callee | "schedule" callee
//      | "train" "{" settings "}"
decl
  : model_head body "}"       { $$ = close_decl(ps, $1, $2); }
  | block_head body "}"       { $$ = close_decl(ps, $1, $2); }
  | train_head settings "}"   { $$ = close_decl(ps, $1, $2); }
  | "loss" expr               { $$ = new_decl(ps, DECL_LOSS, @1, NULL, @1); $$->call = $2.node; }
  | "optimizer" callee        { $$ = new_decl(ps, DECL_OPTIMIZER, @1, NULL, @1); $$->call = $2.node; }
  | "schedule" callee         { $$ = new_decl(ps, DECL_SCHEDULE, @1, NULL, @1); $$->call = $2.node; }
  // A declaration with an error before or in its braces is skipped to its '}'.
  | "model" error "}"         { $$ = NULL; ps->braced = NULL; }
  | "block" error "}"         { $$ = NULL; ps->braced = NULL; }
  | "train" error "}"         { $$ = NULL; ps->braced = NULL; }
  | train_head error "}"      { $$ = NULL; ps->braced = NULL; }
  ;

model_head
  : "model" IDENT "{"         { $$ = new_decl(ps, DECL_MODEL, @1, $2, @2); open_decl(ps, $$, @3); }
  ;

block_head
  : "block" IDENT "(" params ")" "{" {
      $$ = new_decl(ps, DECL_BLOCK, @1, $2, @2);
      set_params(ps, $$, $4);
      open_decl(ps, $$, @6);
    }
  ;

train_head
  : "train" "{"               { $$ = new_decl(ps, DECL_TRAIN, @1, NULL, @1); open_decl(ps, $$, @2); }
  ;

// params = [IDENT ("," IDENT)*]
params
  : %empty                    { $$ = (PtrVec){0}; }
  | param_list
  ;

param_list
  : IDENT                     { $$ = push(ps, (PtrVec){0}, name_node(ps, $1, @1)); }
  | param_list "," IDENT      { $$ = push(ps, $1, name_node(ps, $3, @3)); }
  ;

// body = (stmt NEWLINE | NEWLINE)* [stmt]
body
  : stmts
  | stmts stmt                { $$ = push(ps, $1, $2); }
  ;

stmts
  : %empty                    { $$ = (PtrVec){0}; }
  | stmts NEWLINE
  | stmts stmt NEWLINE        { $$ = push(ps, $1, $2); }
  ;

// stmt = "input" IDENT ":" type | "target" IDENT ":" type
//      | "param" IDENT ":" type ["=" expr ["frozen"]] | exprlist "=" expr | exprlist
// (the names assigned: IDENT "=" expr, or several, IDENT ("," IDENT)+ "=" expr;
// several expressions: a model's outputs)
stmt
  : "input" IDENT ":" type    { $$ = typed(ps, AST_INPUT, $2, @2, $4); }
  | "target" IDENT ":" type   { $$ = typed(ps, AST_TARGET, $2, @2, $4); }
  | "param" IDENT ":" type    { $$ = typed(ps, AST_PARAM, $2, @2, $4); }
  | "param" IDENT ":" type "=" expr { $$ = typed(ps, AST_PARAM, $2, @2, $4); $$->lhs = $6.node; }
  | "param" IDENT ":" type "=" expr IDENT {   // `frozen`: a name, not a keyword
      $$ = typed(ps, AST_PARAM, $2, @2, $4);
      $$->lhs = $6.node;
      $$->frozen = frozen_word(ps, $7, @7);
    }
  | exprlist "=" expr         { $$ = assignment(ps, $1, $3.node, @2); }
  | exprlist {
      $$ = new_node(ps, AST_EXPR, @1);
      $$->lhs = $1.data[0];
      if ($1.len > 1) {   // several results: a model's outputs
        $$->args = (AstNode **)$1.data;
        $$->nargs = $1.len;
      }
    }
  | error                     { $$ = NULL; }   // skipped to the end of its line or the '}'
  ;

// exprlist = expr ("," expr)*
exprlist
  : expr                      { $$ = push(ps, (PtrVec){0}, $1.node); }
  | exprlist "," expr         { $$ = push(ps, $1, $3.node); }
  ;

// type = IDENT "[" [expr ("," expr)*] "]" | "class" "(" expr ")"
type
  : IDENT "[" "]"             { $$ = new_type(ps, $1, @1, (PtrVec){0}); }
  | IDENT "[" dims "]"        { $$ = new_type(ps, $1, @1, $3); }
  | "class" "(" expr ")"      { $$ = new_type(ps, "class", @1, push(ps, (PtrVec){0}, $3.node)); }
  ;

dims
  : expr                      { $$ = push(ps, (PtrVec){0}, $1.node); }
  | dims "," expr             { $$ = push(ps, $1, $3.node); }
  ;

// settings = [kwarg (("," | NEWLINE) kwarg)*] ["," | NEWLINE]
settings
  : opt_newline               { $$ = (PtrVec){0}; }
  | opt_newline setting_list opt_separator { $$ = $2; }
  ;

setting_list
  : setting                   { $$ = push(ps, (PtrVec){0}, $1); }
  | setting_list separator setting { $$ = push(ps, $1, $3); }
  ;

separator
  : ","
  | "," NEWLINE
  | NEWLINE
  ;

opt_separator
  : %empty
  | separator
  ;

opt_newline
  : %empty
  | NEWLINE
  ;

// kwarg = IDENT "=" expr
setting
  : IDENT "=" expr            { $$ = new_node(ps, AST_KWARG, @1); $$->name = $1; $$->lhs = $3.node; }
  ;

// expr = pipe
expr
  : pipe
  ;

// pipe = sum ("->" stage)*
pipe
  : sum
  | pipe "->" callee          { if (!binary(ps, &$$, AST_PIPE, 0, $3.node->loc, $1, $3)) YYERROR; }
  ;

// stage = callee; callee = IDENT | IDENT "(" args ")"
callee
  : IDENT                     { $$ = (Expr){name_node(ps, $1, @1), 0}; }
  | IDENT "(" args ")"        { if (!call(ps, &$$, $1, @1, $3, @4)) YYERROR; }
  ;

// sum = prod (("+" | "-") prod)*
sum
  : prod
  | sum "+" prod              { if (!binary(ps, &$$, AST_BINOP, '+', @2, $1, $3)) YYERROR; }
  | sum "-" prod              { if (!binary(ps, &$$, AST_BINOP, '-', @2, $1, $3)) YYERROR; }
  ;

// prod = unary (("*" | "/" | "@") unary)*
prod
  : unary
  | prod "*" unary            { if (!binary(ps, &$$, AST_BINOP, '*', @2, $1, $3)) YYERROR; }
  | prod "/" unary            { if (!binary(ps, &$$, AST_BINOP, '/', @2, $1, $3)) YYERROR; }
  | prod "@" unary            { if (!binary(ps, &$$, AST_BINOP, '@', @2, $1, $3)) YYERROR; }
  ;

// unary = "-" unary | primary
unary
  : primary
  | "-" unary {
      AstNode *n = new_node(ps, AST_NEG, @1);
      n->lhs = $2.node;
      if (!nest(ps, &$$, n, $2.depth + 1))
        YYERROR;
    }
  ;

// primary = NUMBER | "true" | "false" | callee | "(" expr ")" | "(" expr ("," expr)+ ")"
//         | primary "[" index ("," index)* "]"
primary
  : NUMBER                    { $$ = leaf(ps, AST_NUM, @1); $$.node->num = $1.val; $$.node->text = $1.text; }
  | "true"                    { $$ = leaf(ps, AST_BOOL, @1); $$.node->num = 1; }
  | "false"                   { $$ = leaf(ps, AST_BOOL, @1); $$.node->num = 0; }
  | callee
  | "(" expr ")"              { $$ = $2; }
  | "(" expr "," items ")"    { if (!tuple(ps, &$$, @1, add_arg(ps, $4, $2))) YYERROR; }
  | primary "[" indexes "]"   { if (!indexing(ps, &$$, $1, @2, $3, @4)) YYERROR; }
  ;

// items = expr ("," expr)*, kept in order after the tuple's first item
items
  : expr                      { $$ = add_arg(ps, (ArgList){{0}, 0}, $1); }
  | items "," expr            { $$ = add_arg(ps, $1, $3); }
  ;

indexes
  : index                     { $$ = add_arg(ps, (ArgList){{0}, 0}, $1); }
  | indexes "," index         { $$ = add_arg(ps, $1, $3); }
  ;

// index = expr | [expr] ":" [expr] [":" [expr]] | "..."
index
  : expr
  | "..."                     { $$ = leaf(ps, AST_ELLIPSIS, @1); }
  | opt_expr ":" opt_expr     { if (!range(ps, &$$, @2, $1, $3, (Expr){0})) YYERROR; }
  | opt_expr ":" opt_expr ":" opt_expr { if (!range(ps, &$$, @2, $1, $3, $5)) YYERROR; }
  ;

opt_expr
  : %empty                    { $$ = (Expr){0}; }
  | expr
  ;

// args = [arg ("," arg)*] [","]
args
  : %empty                    { $$ = (ArgList){{0}, 0}; }
  | arg_list
  | arg_list ","
  ;

arg_list
  : arg                       { $$ = add_arg(ps, (ArgList){{0}, 0}, $1); }
  | arg_list "," arg          { $$ = add_arg(ps, $1, $3); }
  ;

// arg = IDENT "=" expr | expr
arg
  : IDENT "=" expr {
      AstNode *n = new_node(ps, AST_KWARG, @1);
      n->name = $1;
      n->lhs = $3.node;
      if (!nest(ps, &$$, n, $3.depth + 1))
        YYERROR;
    }
  | expr
  ;

%%

//
// Building the tree
//

static AstNode *new_node(ParseState *ps, AstKind kind, SrcLoc loc) {
  AstNode *n = arena_alloc(ps->arena, sizeof(AstNode));
  n->kind = kind;
  n->loc = loc;
  return n;
}

static Expr leaf(ParseState *ps, AstKind kind, SrcLoc loc) {
  return (Expr){new_node(ps, kind, loc), 0};
}

static AstNode *name_node(ParseState *ps, const char *name, SrcLoc loc) {
  AstNode *n = new_node(ps, AST_IDENT, loc);
  n->name = name;
  return n;
}

// Makes n an expression of the given depth, or reports that it is too deep:
// passes recurse over expressions, so their depth must stay bounded.
static bool nest(ParseState *ps, Expr *e, AstNode *n, int depth) {
  *e = (Expr){n, depth};
  if (depth <= FE_MAX_DEPTH)
    return true;
  diag_error(ps->diag, n->loc, "split it into steps with names, like h = ...",
             "expression nested too deeply (more than %d levels)", FE_MAX_DEPTH);
  return false;
}

// A PIPE or BINOP node over l and r, located at loc.
static bool binary(ParseState *ps, Expr *e, AstKind kind, char op, SrcLoc loc, Expr l, Expr r) {
  AstNode *n = new_node(ps, kind, loc);
  n->op = op;
  n->lhs = l.node;
  n->rhs = r.node;
  return nest(ps, e, n, (l.depth > r.depth ? l.depth : r.depth) + 1);
}

static bool call(ParseState *ps, Expr *e, const char *name, SrcLoc loc, ArgList args, SrcLoc close) {
  AstNode *n = new_node(ps, AST_CALL, loc);
  n->name = name;
  n->args = (AstNode **)args.args.data;
  n->nargs = args.args.len;
  n->close = close;
  return nest(ps, e, n, args.depth + 1);
}

// A tuple (a, b, ...) located at its '('. items holds the first item last
// (the grammar reads it before the rest): it moves to the front.
static bool tuple(ParseState *ps, Expr *e, SrcLoc loc, ArgList items) {
  AstNode *n = new_node(ps, AST_TUPLE, loc);
  void **v = items.args.data;
  void *first = v[items.args.len - 1];
  memmove(v + 1, v, sizeof(void *) * (items.args.len - 1));
  v[0] = first;
  n->args = (AstNode **)v;
  n->nargs = items.args.len;
  return nest(ps, e, n, items.depth + 1);
}

// x[items], located at the '['.
static bool indexing(ParseState *ps, Expr *e, Expr x, SrcLoc loc, ArgList items, SrcLoc close) {
  AstNode *n = new_node(ps, AST_INDEX, loc);
  n->lhs = x.node;
  n->args = (AstNode **)items.args.data;
  n->nargs = items.args.len;
  n->close = close;
  return nest(ps, e, n, (x.depth > items.depth ? x.depth : items.depth) + 1);
}

// start:stop:step in an index, located at the first ':'; parts left out are NULL.
static bool range(ParseState *ps, Expr *e, SrcLoc loc, Expr start, Expr stop, Expr step) {
  AstNode *n = new_node(ps, AST_RANGE, loc);
  n->args = arena_alloc(ps->arena, 3 * sizeof(AstNode *));
  n->args[0] = start.node;
  n->args[1] = stop.node;
  n->args[2] = step.node;
  n->nargs = 3;
  int depth = start.depth > stop.depth ? start.depth : stop.depth;
  return nest(ps, e, n, (depth > step.depth ? depth : step.depth) + 1);
}

// `names = value`: one name is an AST_ASSIGN, several an AST_UNPACK. Only
// plain names may stand left of '='; anything else is reported (NULL).
static AstNode *assignment(ParseState *ps, PtrVec names, AstNode *value, SrcLoc eq) {
  for (int i = 0; i < names.len; i++) {
    AstNode *n = names.data[i];
    if (n->kind != AST_IDENT) {
      diag_error(ps->diag, n->loc, "only names can be assigned: h = ..., or a, b = ... for several values",
                 "cannot assign to this expression");
      return NULL;
    }
  }
  AstNode *first = names.data[0];
  if (names.len == 1) {
    AstNode *n = new_node(ps, AST_ASSIGN, first->loc);
    n->name = first->name;
    n->lhs = value;
    return n;
  }
  AstNode *n = new_node(ps, AST_UNPACK, first->loc);
  n->args = (AstNode **)names.data;
  n->nargs = names.len;
  n->lhs = value;
  n->close = eq;
  return n;
}

static ArgList add_arg(ParseState *ps, ArgList list, Expr arg) {
  ptrvec_push(ps->arena, &list.args, arg.node);
  if (arg.depth > list.depth)
    list.depth = arg.depth;
  return list;
}

// Appends p to v (nothing for the NULL of a statement that had an error).
static PtrVec push(ParseState *ps, PtrVec v, void *p) {
  if (p)
    ptrvec_push(ps->arena, &v, p);
  return v;
}

// The word after a parameter's initializer, which only `frozen` may be.
static bool frozen_word(ParseState *ps, const char *word, SrcLoc loc) {
  if (!strcmp(word, "frozen"))
    return true;
  diag_error(ps->diag, loc, "write `frozen` after the initializer to keep the parameter as it is: "
             "param w: f32[4] = zeros frozen", "unexpected '%s' after the parameter's initializer", word);
  return false;
}

// An INPUT, TARGET or PARAM statement, located at its name.
static AstNode *typed(ParseState *ps, AstKind kind, const char *name, SrcLoc loc, AstType *type) {
  AstNode *n = new_node(ps, kind, loc);
  n->name = name;
  n->type = type;
  return n;
}

static AstType *new_type(ParseState *ps, const char *dtype, SrcLoc loc, PtrVec dims) {
  AstType *t = arena_alloc(ps->arena, sizeof(AstType));
  t->dtype = dtype;
  t->dims = (AstNode **)dims.data;
  t->ndims = dims.len;
  t->loc = loc;
  return t;
}

static Decl *new_decl(ParseState *ps, DeclKind kind, SrcLoc loc, const char *name, SrcLoc name_loc) {
  Decl *d = arena_alloc(ps->arena, sizeof(Decl));
  d->kind = kind;
  d->loc = loc;
  d->name = name;
  d->name_loc = name_loc;
  return d;
}

// Gives a block its parameters, from a list of AST_IDENT nodes.
static void set_params(ParseState *ps, Decl *d, PtrVec names) {
  d->nparams = names.len;
  d->params = arena_alloc(ps->arena, names.len * sizeof(char *));
  d->param_locs = arena_alloc(ps->arena, names.len * sizeof(SrcLoc));
  for (int i = 0; i < names.len; i++) {
    AstNode *p = names.data[i];
    d->params[i] = p->name;
    d->param_locs[i] = p->loc;
  }
}

// Remembers the declaration whose body is open, for the hint when its '}'
// never comes.
static void open_decl(ParseState *ps, Decl *d, SrcLoc brace) {
  ps->braced = d;
  ps->brace = brace;
}

// Gives a model or block its statements, or a train its settings.
static Decl *close_decl(ParseState *ps, Decl *d, PtrVec items) {
  if (d->kind == DECL_TRAIN) {
    d->settings = (AstNode **)items.data;
    d->nsettings = items.len;
  } else {
    d->body = (AstNode **)items.data;
    d->nbody = items.len;
  }
  ps->braced = NULL;
  return d;
}

//
// Syntax errors
//

// What the error reporter knows about one syntax error.
typedef struct Syntax {
  ParseState *ps;
  bool want[YYNTOKENS];      // the tokens the parser could have taken
  yysymbol_kind_t found;     // the token it found instead
  yysymbol_kind_t prev;      // the token before that (YYSYMBOL_YYEMPTY: none)
  yysymbol_kind_t prev2;     // and the one before
  StrBuf msg;
  const char *hint;
} Syntax;

static yysymbol_kind_t symbol(int token) {
  return token == TK_YYEMPTY ? YYSYMBOL_YYEMPTY : YYTRANSLATE(token);
}

// How a token is written, for punctuation and keywords; NULL for the others.
static const char *spelling(yysymbol_kind_t k) {
  switch (k) {
  case YYSYMBOL_MODEL: return "model";
  case YYSYMBOL_BLOCK: return "block";
  case YYSYMBOL_INPUT: return "input";
  case YYSYMBOL_TARGET: return "target";
  case YYSYMBOL_PARAM: return "param";
  case YYSYMBOL_LOSS: return "loss";
  case YYSYMBOL_OPTIMIZER: return "optimizer";
  case YYSYMBOL_SCHEDULE: return "schedule";
  case YYSYMBOL_TRAIN: return "train";
  case YYSYMBOL_TRUE: return "true";
  case YYSYMBOL_FALSE: return "false";
  case YYSYMBOL_CLASS: return "class";
  case YYSYMBOL_ARROW: return "->";
  case YYSYMBOL_PLUS: return "+";
  case YYSYMBOL_MINUS: return "-";
  case YYSYMBOL_STAR: return "*";
  case YYSYMBOL_SLASH: return "/";
  case YYSYMBOL_AT: return "@";
  case YYSYMBOL_EQ: return "=";
  case YYSYMBOL_COLON: return ":";
  case YYSYMBOL_COMMA: return ",";
  case YYSYMBOL_LPAREN: return "(";
  case YYSYMBOL_RPAREN: return ")";
  case YYSYMBOL_LBRACKET: return "[";
  case YYSYMBOL_RBRACKET: return "]";
  case YYSYMBOL_LBRACE: return "{";
  case YYSYMBOL_RBRACE: return "}";
  default: return NULL;
  }
}

// A token the parser could take, in words: "a name", "')'", "end of line".
static const char *expected_name(ParseState *ps, yysymbol_kind_t k) {
  switch (k) {
  case YYSYMBOL_YYEOF: return "end of file";
  case YYSYMBOL_IDENT: return "a name";
  case YYSYMBOL_NUMBER: return "a number";
  case YYSYMBOL_NEWLINE: return "end of line";
  default: return spelling(k) ? arena_printf(ps->arena, "'%s'", spelling(k)) : "something else";
  }
}

// A token that was found, in words: "'linear'", "'0.5'", "end of line".
static const char *found_name(ParseState *ps, yysymbol_kind_t k, const FeToken *t) {
  if (k == YYSYMBOL_YYEOF)
    return "end of file";
  if (k == YYSYMBOL_NEWLINE)
    return t->text ? "';'" : "end of line";
  if ((k == YYSYMBOL_IDENT || k == YYSYMBOL_NUMBER) && t->text) {
    if (strlen(t->text) > 40)
      return arena_printf(ps->arena, "'%.40s...'", t->text);
    return arena_printf(ps->arena, "'%s'", t->text);
  }
  return spelling(k) ? arena_printf(ps->arena, "'%s'", spelling(k)) : "an invalid token";
}

static bool is_operator(yysymbol_kind_t k) {
  return k == YYSYMBOL_PLUS || k == YYSYMBOL_MINUS || k == YYSYMBOL_STAR ||
         k == YYSYMBOL_SLASH || k == YYSYMBOL_AT;
}

static bool is_decl_keyword(yysymbol_kind_t k) {
  return k == YYSYMBOL_MODEL || k == YYSYMBOL_BLOCK || k == YYSYMBOL_LOSS ||
         k == YYSYMBOL_OPTIMIZER || k == YYSYMBOL_SCHEDULE || k == YYSYMBOL_TRAIN;
}

// Tokens after which a statement goes on to the next line.
static bool continues_line(yysymbol_kind_t k) {
  return is_operator(k) || k == YYSYMBOL_ARROW || k == YYSYMBOL_COMMA ||
         k == YYSYMBOL_EQ || k == YYSYMBOL_COLON;
}

static char closer_of(char open) {
  return open == '(' ? ')' : open == '[' ? ']' : '}';
}

static yysymbol_kind_t closer_symbol(char open) {
  return open == '(' ? YYSYMBOL_RPAREN : open == '[' ? YYSYMBOL_RBRACKET : YYSYMBOL_RBRACE;
}

// The text of the token before the unexpected one, quoted.
static const char *prev_text(Syntax *s) {
  return found_name(s->ps, s->prev, &s->ps->tok[1]);
}

static void found(Syntax *s) {
  sb_printf(&s->msg, ", found %s", found_name(s->ps, s->found, &s->ps->tok[0]));
}

// Whether the unexpected token suggests that a bracket was left open: it
// ends the file, a line or a bracket, or begins a declaration or statement.
static bool ends_early(yysymbol_kind_t k) {
  return k == YYSYMBOL_YYEOF || k == YYSYMBOL_NEWLINE || k == YYSYMBOL_RPAREN ||
         k == YYSYMBOL_RBRACKET || k == YYSYMBOL_RBRACE || is_decl_keyword(k) ||
         k == YYSYMBOL_INPUT || k == YYSYMBOL_TARGET || k == YYSYMBOL_PARAM;
}

// "expected an expression after '+'", and the like after '=' ',' '(' '->'.
static bool after_operator(Syntax *s) {
  yysymbol_kind_t p = s->prev;
  const char *closer = s->want[YYSYMBOL_RPAREN] ? "')'" : s->want[YYSYMBOL_RBRACKET] ? "']'" : NULL;
  if (p == YYSYMBOL_ARROW && s->want[YYSYMBOL_IDENT]) {
    sb_puts(&s->msg, "expected a layer or block name after '->'");
  } else if (!s->want[YYSYMBOL_NUMBER]) {
    return false;
  } else if (is_operator(p) || p == YYSYMBOL_EQ) {
    sb_printf(&s->msg, "expected an expression after '%s'", spelling(p));
  } else if (p != YYSYMBOL_COMMA && p != YYSYMBOL_LPAREN && p != YYSYMBOL_LBRACKET) {
    return false;
  } else if (!closer) {
    sb_printf(&s->msg, "expected an expression after '%s'", spelling(p));
  } else if (!ends_early(s->found)) {
    sb_printf(&s->msg, "expected an expression or %s after '%s'", closer, spelling(p));
  } else {
    return false;
  }
  found(s);
  return true;
}

// "expected ')' to close '(' at 3:14", when the innermost open bracket could
// close here. A '{' only counts at the end of the file or at a declaration:
// elsewhere a stray token is the likelier mistake.
static bool unclosed(Syntax *s) {
  FeBracket b = s->ps->before;
  if (!b.kind || !s->want[closer_symbol(b.kind)])
    return false;
  if (b.kind == '{' && s->found != YYSYMBOL_YYEOF && !is_decl_keyword(s->found))
    return false;
  sb_printf(&s->msg, "expected '%c' to close '%c' at %d:%d", closer_of(b.kind), b.kind,
            b.loc.line, b.loc.col);
  found(s);
  Decl *d = s->ps->braced;
  if (b.kind == '{' && d && s->ps->brace.line == b.loc.line && s->ps->brace.col == b.loc.col) {
    const char *what = d->kind == DECL_MODEL ? "model" : d->kind == DECL_BLOCK ? "block" : "train";
    s->hint = arena_printf(s->ps->arena, "add '}' to close '%s%s%s' opened at %d:%d", what,
                           d->name ? " " : "", d->name ? d->name : "", b.loc.line, b.loc.col);
  }
  return true;
}

// A ')' ']' or '}' with nothing open for it to close.
static bool stray_closer(Syntax *s) {
  yysymbol_kind_t k = s->found;
  if ((k != YYSYMBOL_RPAREN && k != YYSYMBOL_RBRACKET && k != YYSYMBOL_RBRACE) || s->ps->closed)
    return false;
  sb_printf(&s->msg, "unexpected '%s'", spelling(k));
  return true;
}

// What is missing after a keyword.
static bool after_keyword(Syntax *s) {
  yysymbol_kind_t p = s->prev;
  if (s->want[YYSYMBOL_IDENT] && (p == YYSYMBOL_MODEL || p == YYSYMBOL_BLOCK || p == YYSYMBOL_INPUT ||
                                  p == YYSYMBOL_TARGET || p == YYSYMBOL_PARAM)) {
    sb_printf(&s->msg, "expected a name after '%s'", spelling(p));
  } else if (s->want[YYSYMBOL_IDENT] && p == YYSYMBOL_LOSS) {
    sb_puts(&s->msg, "expected a loss function after 'loss'");
    s->hint = "for example: loss cross_entropy";
  } else if (s->want[YYSYMBOL_IDENT] && p == YYSYMBOL_OPTIMIZER) {
    sb_puts(&s->msg, "expected an optimizer after 'optimizer'");
    s->hint = "for example: optimizer sgd(lr = 0.1)";
  } else if (s->want[YYSYMBOL_IDENT] && p == YYSYMBOL_SCHEDULE) {
    sb_puts(&s->msg, "expected a learning-rate schedule after 'schedule'");
  } else if (s->want[YYSYMBOL_LBRACE] && p == YYSYMBOL_TRAIN) {
    sb_puts(&s->msg, "expected '{' after 'train'");
    s->hint = "for example: train { batch = 64, epochs = 3 }";
  } else if (s->want[YYSYMBOL_LPAREN] && p == YYSYMBOL_CLASS) {
    sb_puts(&s->msg, "expected '(' after 'class'");
    s->hint = "write the number of classes in parentheses, like class(10)";
  } else {
    return false;
  }
  found(s);
  return true;
}

// What is missing after the name in a declaration or statement, or after
// the ':' before a type.
static bool after_name(Syntax *s) {
  yysymbol_kind_t p = s->prev, p2 = s->prev2;
  if (s->want[YYSYMBOL_COLON] && p == YYSYMBOL_IDENT &&
             (p2 == YYSYMBOL_INPUT || p2 == YYSYMBOL_TARGET || p2 == YYSYMBOL_PARAM)) {
    sb_printf(&s->msg, "expected ':' and a type after %s %s", spelling(p2), prev_text(s));
  } else if (s->want[YYSYMBOL_CLASS] && p == YYSYMBOL_COLON) {
    sb_puts(&s->msg, "expected a type after ':'");
    s->hint = "a type is a dtype and a shape, like f32[28, 28] (f32[] for a scalar), or class(10)";
  } else if (s->want[YYSYMBOL_LBRACKET] && p == YYSYMBOL_IDENT && p2 == YYSYMBOL_COLON) {
    sb_printf(&s->msg, "expected '[' after %s", prev_text(s));
    s->hint = "write the shape in brackets, like f32[28, 28], or f32[] for a scalar";
  } else if (s->want[YYSYMBOL_LBRACE] && p == YYSYMBOL_IDENT && p2 == YYSYMBOL_MODEL) {
    sb_printf(&s->msg, "expected '{' after model %s", prev_text(s));
    if (s->found == YYSYMBOL_LPAREN)
      s->hint = "a model has no parameters; a block has: block name(c) { ... }";
  } else if (s->want[YYSYMBOL_LPAREN] && p == YYSYMBOL_IDENT && p2 == YYSYMBOL_BLOCK) {
    sb_printf(&s->msg, "expected '(' after block %s", prev_text(s));
    s->hint = "list the block's parameters in parentheses, or write () for none";
  } else {
    return false;
  }
  found(s);
  return true;
}

static const char *const decl_keywords[] = {"model", "block", "loss", "optimizer", "schedule", "train"};
static const char *const stmt_keywords[] = {"input", "target", "param"};

// "did you mean 'model'?" for a name close to one of the keywords.
static const char *did_you_mean(Syntax *s, const FeToken *t, const char *const *words, int n) {
  if (symbol(t->kind) != YYSYMBOL_IDENT || !t->text)
    return NULL;
  const char *w = suggest_name(t->text, words, n);
  return w ? arena_printf(s->ps->arena, "did you mean '%s'?", w) : NULL;
}

static bool at_declaration(Syntax *s) {
  if (!s->want[YYSYMBOL_MODEL] || s->prev == YYSYMBOL_IDENT || s->prev == YYSYMBOL_RPAREN)
    return false;
  sb_puts(&s->msg, "expected a declaration (model, block, loss, optimizer, schedule, train)");
  found(s);
  s->hint = did_you_mean(s, &s->ps->tok[0], decl_keywords, countof(decl_keywords));
  return true;
}

static bool at_statement(Syntax *s) {
  if (!s->want[YYSYMBOL_INPUT])
    return false;
  sb_puts(&s->msg, "expected a statement or '}'");
  found(s);
  if (is_operator(s->found) && s->prev == YYSYMBOL_NEWLINE)
    s->hint = arena_printf(s->ps->arena, "only '->' carries a statement over to a new line; "
                           "end the line before with '%s' instead", spelling(s->found));
  return true;
}

static bool in_train(const Syntax *s) {
  const ParseState *ps = s->ps;
  return ps->braced && ps->braced->kind == DECL_TRAIN && ps->before.kind == '{' &&
         ps->before.loc.line == ps->brace.line && ps->before.loc.col == ps->brace.col;
}

// Inside train { }: a setting is missing, or two lack a separator.
static bool at_setting(Syntax *s) {
  if (!in_train(s))
    return false;
  if (s->want[YYSYMBOL_IDENT] && s->want[YYSYMBOL_RBRACE] && !s->want[YYSYMBOL_NUMBER]) {
    sb_puts(&s->msg, "expected a setting (name = value) or '}'");
    found(s);
    return true;
  }
  if (s->want[YYSYMBOL_COMMA] && s->found == YYSYMBOL_IDENT)
    s->hint = "separate settings with ',' or put each on its own line";
  return false;
}

// The general case: "expected '=', an operator or end of line, found 'x'".
static void expected_list(Syntax *s) {
  static const yysymbol_kind_t order[] = {
      YYSYMBOL_IDENT, YYSYMBOL_NUMBER, YYSYMBOL_EQ, YYSYMBOL_COLON, YYSYMBOL_LPAREN,
      YYSYMBOL_LBRACKET, YYSYMBOL_LBRACE, YYSYMBOL_PLUS, YYSYMBOL_ARROW, YYSYMBOL_COMMA,
      YYSYMBOL_RPAREN, YYSYMBOL_RBRACKET, YYSYMBOL_RBRACE, YYSYMBOL_NEWLINE, YYSYMBOL_YYEOF,
  };
  bool *w = s->want;
  if (w[YYSYMBOL_COMMA] && w[YYSYMBOL_NEWLINE] && s->ps->nparens == 0 && !in_train(s))
    w[YYSYMBOL_COMMA] = false;           // a list of outputs `a, b`: rarely what was meant
  bool ops = w[YYSYMBOL_PLUS] && w[YYSYMBOL_MINUS] && w[YYSYMBOL_STAR] && w[YYSYMBOL_SLASH] && w[YYSYMBOL_AT];
  if (ops) {
    w[YYSYMBOL_LPAREN] = false;          // a call after a name: rarely what was meant
    w[YYSYMBOL_LBRACKET] = false;        // nor an index
  }
  if (w[YYSYMBOL_NEWLINE] && s->ps->before.kind == '{' && !in_train(s)) {
    // `a, b = ...` lets ',' and '=' follow any expression that begins a
    // statement; name '=' only after a lone name, ',' never.
    bool lone = s->prev == YYSYMBOL_IDENT && (s->prev2 == YYSYMBOL_NEWLINE || s->prev2 == YYSYMBOL_LBRACE);
    w[YYSYMBOL_COMMA] = false;
    w[YYSYMBOL_EQ] &= lone;
  }
  if (w[YYSYMBOL_NEWLINE] && !w[YYSYMBOL_COMMA])
    w[YYSYMBOL_RBRACE] = false;          // "end of line" covers the end of a body
  if (w[YYSYMBOL_MODEL])
    w[YYSYMBOL_YYEOF] = false;           // after a declaration: another one may follow
  const char *items[countof(order)];
  int n = 0;
  for (int i = 0; i < countof(order); i++) {
    if (order[i] == YYSYMBOL_PLUS && ops)
      items[n++] = "an operator";
    else if (order[i] != YYSYMBOL_PLUS && w[order[i]])
      items[n++] = expected_name(s->ps, order[i]);
  }
  if (n == 0 || n > 5) {
    sb_printf(&s->msg, "unexpected %s", found_name(s->ps, s->found, &s->ps->tok[0]));
    return;
  }
  sb_puts(&s->msg, "expected ");
  for (int i = 0; i < n; i++)
    sb_printf(&s->msg, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", items[i]);
  if (s->prev == YYSYMBOL_IDENT || s->prev == YYSYMBOL_RPAREN || s->prev == YYSYMBOL_NUMBER)
    sb_printf(&s->msg, " after %s", prev_text(s));
  found(s);
  if (!s->hint && w[YYSYMBOL_ARROW] && !w[YYSYMBOL_COMMA] && s->found == YYSYMBOL_IDENT)
    s->hint = "write '->' between the stages of a pipeline";
}

// A hint for a statement that went on past the end of its line because the
// line ended with an operator, a ',' or the like.
static const char *continued_hint(Syntax *s) {
  const FeToken *p = &s->ps->tok[1], *p2 = &s->ps->tok[2];
  if (s->prev == YYSYMBOL_YYEMPTY || s->prev2 == YYSYMBOL_YYEMPTY || !continues_line(s->prev2) ||
      p2->loc.line >= p->loc.line)
    return NULL;
  return arena_printf(s->ps->arena, "line %d ends with '%s', so the statement goes on to line %d",
                      p2->loc.line, spelling(s->prev2), p->loc.line);
}

// Reports one syntax error in words (bison calls it; parse.error custom).
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, ParseState *ps) {
  (void)scanner;
  SrcLoc loc = *yypcontext_location(ctx);
  Syntax s = {.ps = ps, .found = yypcontext_token(ctx)};
  // An invalid token was reported by the scanner; one error at a place is enough.
  if (s.found == YYSYMBOL_YYUNDEF ||
      (loc.line == ps->last_error.line && loc.col == ps->last_error.col))
    return 0;
  yysymbol_kind_t expected[YYNTOKENS];
  int n = yypcontext_expected_tokens(ctx, expected, YYNTOKENS);
  for (int i = 0; i < n; i++)
    s.want[expected[i]] = true;
  s.prev = symbol(ps->tok[1].kind);
  s.prev2 = symbol(ps->tok[2].kind);
  if (!after_operator(&s) && !unclosed(&s) && !after_keyword(&s) && !after_name(&s) &&
      !stray_closer(&s) && !at_declaration(&s) && !at_statement(&s) && !at_setting(&s))
    expected_list(&s);
  if (s.prev == YYSYMBOL_IDENT && (s.prev2 == YYSYMBOL_NEWLINE || s.prev2 == YYSYMBOL_LBRACE)) {
    const char *typo = did_you_mean(&s, &ps->tok[1], stmt_keywords, countof(stmt_keywords));
    s.hint = typo ? typo : s.hint;     // "inptu image: ..."
  }
  if (s.found == YYSYMBOL_IDENT && ps->tok[0].text && !strcmp(ps->tok[0].text, "frozen") &&
      s.prev == YYSYMBOL_RBRACKET)   // "param w: f32[4] frozen = zeros"
    s.hint = "`frozen` comes after the parameter's initializer: param w: f32[4] = zeros frozen";
  if (!s.hint)
    s.hint = continued_hint(&s);
  diag_error(ps->diag, loc, s.hint, "%s", s.msg.data);
  sb_free(&s.msg);
  ps->last_error = loc;
  return 0;
}

// Bison calls yyerror only when its stack is full ("memory exhausted"),
// which only absurdly deep nesting can do.
static void yyerror(SrcLoc *loc, yyscan_t scanner, ParseState *ps, const char *msg) {
  (void)scanner;
  (void)msg;
  diag_error(ps->diag, *loc, "split it into steps with names, like h = ...",
             "expression nested too deeply (more than %d levels)", FE_MAX_DEPTH);
}
