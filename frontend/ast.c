// ast.c: the frontend's entry points: parsing a file into a Program, and
// printing the tree.
//
// The dump has one node per line, two spaces of indent per level:
//   (kind details @line:col
//     (child ...)
//     (child ...))
// Numbers print as written and every node has its location, so the dump is
// a stable golden file for tests.
#define _POSIX_C_SOURCE 200809L

#include "frontend.h"
#include "parser.h"
#include "lexer.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Runs the parser over file. Numbers are read in the "C" locale, so a
// program that set another one (with ',' for the decimal point) still reads
// 0.05 right.
Program *fe_parse(const SrcFile *file, Arena *a, Diag *d) {
  Program *p = arena_alloc(a, sizeof(Program));
  p->file = file;
  if (file->len > INT_MAX) {
    diag_error(d, ((SrcLoc){file, 0, 0, 0}), NULL, "file too large (%zu bytes)", file->len);
    return p;
  }
  ParseState ps = {.arena = a, .diag = d, .file = file};
  for (int i = 0; i < countof(ps.tok); i++)
    ps.tok[i].kind = TK_YYEMPTY;
  LexState ls = {.line = 1, .col = 1, .last = TK_YYEMPTY, .end = {file, 1, 1, 1}};
  yyscan_t scanner;
  if (fe_yylex_init_extra(&ls, &scanner))
    nnc_fatal("cannot start the scanner: %s", strerror(errno));
  YY_BUFFER_STATE buf = fe_yy_scan_bytes(file->text, (int)file->len, scanner);
  locale_t c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  locale_t old = c_numeric ? uselocale(c_numeric) : (locale_t)0;
  fe_yyparse(scanner, &ps);
  if (c_numeric) {
    uselocale(old);
    freelocale(c_numeric);
  }
  fe_yy_delete_buffer(buf, scanner);
  fe_yylex_destroy(scanner);
  p->decls = (Decl **)ps.decls.data;
  p->ndecls = ps.decls.len;
  return p;
}

Program *fe_parse_file(const char *path, Arena *a, Diag *d) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    int err = errno;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
      err = EISDIR;                        // read_file says only EIO for it
    diag_error(d, ((SrcLoc){0}), NULL, "cannot read '%s': %s", path, strerror(err));
    return NULL;
  }
  SrcFile *f = arena_alloc(a, sizeof(SrcFile));
  f->name = arena_strdup(a, path);
  f->text = arena_strndup(a, text, len);   // the AST outlives text: diagnostics quote it
  f->len = len;
  free(text);
  return fe_parse(f, a, d);
}

//
// Printing
//

static void print_node(FILE *out, const AstNode *n, int depth);

// Binding strength in the source, for printing dimensions with few parens.
static int strength(const AstNode *n) {
  switch (n->kind) {
  case AST_PIPE: return 1;
  case AST_BINOP: return n->op == '+' || n->op == '-' ? 2 : 3;
  case AST_NEG: return 4;
  default: return 5;
  }
}

// Prints an expression as source text (for the dimensions of a type).
static void print_source(FILE *out, const AstNode *n, int min);

// A call's arguments or a tuple's items: "(a, b, k = 3)".
static void print_items(FILE *out, const AstNode *n) {
  fputc('(', out);
  for (int i = 0; i < n->nargs; i++) {
    if (i)
      fputs(", ", out);
    print_source(out, n->args[i], 0);
  }
  fputc(')', out);
}

static void print_source(FILE *out, const AstNode *n, int min) {
  bool paren = strength(n) < min;
  if (paren)
    fputc('(', out);
  switch (n->kind) {
  case AST_NUM: fputs(n->text ? n->text : "?", out); break;
  case AST_BOOL: fputs(n->num ? "true" : "false", out); break;
  case AST_IDENT: fputs(n->name, out); break;
  case AST_KWARG:
    fprintf(out, "%s = ", n->name);
    print_source(out, n->lhs, 0);
    break;
  case AST_CALL:
    fputs(n->name, out);
    print_items(out, n);
    break;
  case AST_PIPE:
    print_source(out, n->lhs, 1);
    fputs(" -> ", out);
    print_source(out, n->rhs, 5);
    break;
  case AST_BINOP:
    print_source(out, n->lhs, strength(n));
    fprintf(out, " %c ", n->op);
    print_source(out, n->rhs, strength(n) + 1);
    break;
  case AST_NEG:
    fputc('-', out);
    print_source(out, n->lhs, 4);
    break;
  case AST_TUPLE:
    print_items(out, n);
    break;
  default: fputs("?", out); break;
  }
  if (paren)
    fputc(')', out);
}

// f32[28, 28], f32[] or class(10).
static void print_type(FILE *out, const AstType *t) {
  bool cls = !strcmp(t->dtype, "class");
  fprintf(out, "%s%c", t->dtype, cls ? '(' : '[');
  for (int i = 0; i < t->ndims; i++) {
    if (i)
      fputs(", ", out);
    print_source(out, t->dims[i], 0);
  }
  fputc(cls ? ')' : ']', out);
}

static void print_loc(FILE *out, SrcLoc loc) {
  fprintf(out, " @%d:%d", loc.line, loc.col);
}

static void print_children(FILE *out, AstNode *const *kids, int n, int depth) {
  for (int i = 0; i < n; i++)
    print_node(out, kids[i], depth);
}

// Prints n on a new line at the given depth, its children below it.
static void print_node(FILE *out, const AstNode *n, int depth) {
  fprintf(out, "\n%*s(", 2 * depth, "");
  switch (n->kind) {
  case AST_NUM: fprintf(out, "num %s", n->text ? n->text : "?"); break;
  case AST_BOOL: fprintf(out, "bool %s", n->num ? "true" : "false"); break;
  case AST_IDENT: fprintf(out, "ident %s", n->name); break;
  case AST_CALL: fprintf(out, "call %s", n->name); break;
  case AST_KWARG: fprintf(out, "kwarg %s", n->name); break;
  case AST_PIPE:
    // The stage's name; a call stage's arguments follow the piped value.
    fprintf(out, "pipe %s%s", n->rhs->name,
            n->rhs->kind == AST_CALL && n->rhs->nargs == 0 ? "()" : "");
    break;
  case AST_BINOP: fprintf(out, "binop %c", n->op); break;
  case AST_NEG: fputs("neg", out); break;
  case AST_ASSIGN: fprintf(out, "assign %s", n->name); break;
  case AST_INPUT: fprintf(out, "input %s ", n->name); break;
  case AST_TARGET: fprintf(out, "target %s ", n->name); break;
  case AST_PARAM: fprintf(out, "param %s%s ", n->frozen ? "frozen " : "", n->name); break;
  case AST_EXPR: fputs("expr", out); break;
  case AST_TUPLE: fputs("tuple", out); break;
  case AST_INDEX: fputs("index", out); break;
  case AST_RANGE: fputs("range", out); break;
  case AST_ELLIPSIS: fputs("ellipsis", out); break;
  case AST_UNPACK: fputs("unpack", out); break;
  }
  if (n->type)
    print_type(out, n->type);
  print_loc(out, n->loc);
  if (n->kind == AST_CALL || n->kind == AST_TUPLE || n->kind == AST_UNPACK)
    print_children(out, n->args, n->nargs, depth + 1);
  for (int i = 0; n->kind == AST_RANGE && i < n->nargs; i++) {   // a part left out prints as (none)
    if (n->args[i])
      print_node(out, n->args[i], depth + 1);
    else
      fprintf(out, "\n%*s(none)", 2 * depth + 2, "");
  }
  if (n->kind == AST_EXPR && n->nargs > 1)
    print_children(out, n->args, n->nargs, depth + 1);
  else if (n->lhs)
    print_node(out, n->lhs, depth + 1);
  if (n->kind == AST_BINOP)
    print_node(out, n->rhs, depth + 1);
  if (n->kind == AST_PIPE && n->rhs->kind == AST_CALL)
    print_children(out, n->rhs->args, n->rhs->nargs, depth + 1);
  if (n->kind == AST_INDEX)
    print_children(out, n->args, n->nargs, depth + 1);
  fputc(')', out);
}

static void print_decl(FILE *out, const Decl *d) {
  static const char *const kinds[] = {"model", "block", "loss", "optimizer", "schedule", "train"};
  fprintf(out, "(%s", kinds[d->kind]);
  if (d->name)
    fprintf(out, " %s", d->name);
  if (d->kind == DECL_BLOCK) {
    fputc('(', out);
    for (int i = 0; i < d->nparams; i++)
      fprintf(out, "%s%s", i ? ", " : "", d->params[i]);
    fputc(')', out);
  }
  print_loc(out, d->name ? d->name_loc : d->loc);
  print_children(out, d->body, d->nbody, 1);
  print_children(out, d->settings, d->nsettings, 1);
  if (d->call)
    print_node(out, d->call, 1);
  fputs(")\n", out);
}

void fe_print_ast(FILE *out, const Program *p) {
  for (int i = 0; i < p->ndecls; i++)
    print_decl(out, p->decls[i]);
}
