// kparse.c: reads the text that ir_print_program writes back into a
// program (`nnc emit --stage kernels FILE.kir`).
//
// A recursive-descent parser over the lexer of lex.c, one function per
// rule with the rule above it; the first error ends the parse. The text
// holds everything codegen and the runtime read: the program's sizes, where
// each buffer lies, and each kernel in full. The graph the program came
// from is not in it: the parser makes a fresh one with a placeholder node
// (op, inputs and attributes unset) for each node the text names, with the
// name, type and .nn line the text gives; nodes it does not name stay NULL
// in g->nodes.
//
//   program = header graph buffers (region? kernel)*
//   header  = "program" IDENT "of" (IDENT | STRING) ":" INT "kernels" ";"
//             "arena" INT "bytes" "(" "one" "buffer" "per" "value" ":" INT ")" ","
//             "state" INT "bytes" "," "batch" INT ("," INT "aux" "slots")?
//   graph   = "graph" STRING? "of" INT "nodes" (";" "output" REF)? (";" "loss" REF)?
//   buffers = "buffers" "(" "byte" "offsets" "for" "batch" INT ")" ":" (buf type space INT "+" INT)*
//   buf     = REF ("(" name ")")?            (no blank after the REF; name: any text
//                                             without parentheses, or a STRING)
//   space   = "arena" | "state" | "input"
//   kernel  = "kernel" INT ( "loop" STRING "over" dims "parallel"? from? body
//                          | "gemm" STRING ":" buf "[" ext "," ext "]" "+"? "=" buf ("^" "T")?
//                            "@" buf ("^" "T")? "," "K" "=" ext from? epilogue?
//                          | "lib" STRING ":" (lbuf "=")? IDENT lbuf ("," lbuf)* settings?
//                            ("aux" INT "(" INT "bytes" ")")? ("aux_from" INT)? "loss"?
//                            ("node" REF)? from? epilogue? )
//   from    = "from" run (";" run)*     run = ("line" INT | "no" "line") ":" REF+
//   body    = (VREG "=" IDENT operands | ("store" | ("sum" | "max") "into") buf index "=" VREG)*
//   index   = "[" term ("+" term)* "]"  term = INT "*" IDX | INT
//   epilogue = "epilogue" "over" dims "parallel"? body
//   region  = "region" INT "to" INT "," (INT "bytes" "a" "row" "," "blocks" "of" INT "rows" ","
//             INT "local" "bytes" | "shared" "products")   (before its first kernel)
//   ext     = "N" | INT ("*" "N")?
//   lbuf    = buf | ("arena" | "state" | "local") INT dims
//   settings = "{" (IDENT "=" number ("," IDENT "=" number)*)? "}"
//
// Each rule but a run of lines ends its line. VREG is v0, v1, ...; IDX is
// i0, i1, ...; dims is [N,512]. Buffer %K for K = the node count is the
// step scalars (KProgram.scalars), and those after it are the blocks, in
// order (KProgram.blocks).
#include "lex.h"

#include <limits.h>
#include <string.h>

typedef struct KParser {
  Parser P;             // first, so that a Parser * is a KParser *
  KProgram *p;
  int nn;               // the graph's nodes
  int nids;             // nn, the scalars, the blocks: the ids a buffer may have
  IrNode **ids;         // ids[id]: its placeholder, or NULL
  bool *placed;         // placed[id]: the buffers section gave it a place
  int nkernels;         // the header's count
} KParser;

#define K(P) ((KParser *)(P))

//
// Nodes and buffers
//

// The placeholder of node id, made at its first mention.
static IrNode *node_at(Parser *P, const Token *t, int64_t id, bool buffer) {
  KParser *kp = K(P);
  int64_t lim = buffer ? kp->nids : kp->nn;
  if (id < 0 || id >= lim)
    lx_error_tok(P, t, NULL, "%%%lld is not a %s of this program (it has %d nodes%s)", (long long)id,
                 buffer ? "buffer" : "node", kp->nn, buffer ? ", then the step scalars and the blocks" : "");
  if (!kp->ids[id]) {
    IrNode *n = arena_alloc(P->arena, sizeof *n);
    n->op = IR_BUFFER;
    n->ndim = -1;
    n->id = (int)id;
    kp->ids[id] = n;
    if (id < kp->nn)
      P->g->nodes[id] = n;
  }
  return kp->ids[id];
}

// "(name)" right after a REF: the text up to ")", or a string literal.
static const char *buf_name(Parser *P) {
  const Token at = P->tok;
  P->p++, P->col++;   // the "("
  const char *name;
  if (*P->p == '"') {
    lx_next(P);
    name = P->tok.str;
  } else {
    const char *s = P->p;
    while (*P->p && *P->p != ')' && *P->p != '(' && *P->p != '\n')
      P->p++, P->col++;
    name = arena_strndup(P->arena, s, P->p - s);
  }
  if (!*P->p && P->p < P->end)
    lx_error_at(P, P->line, P->col, 1, NULL, "unexpected NUL byte");
  if (*P->p != ')')
    lx_error_at(P, P->line, P->col, 1, NULL, "expected ')' after the name of %%%lld", (long long)at.ival);
  P->p++, P->col++;
  if (!*name)
    lx_error_tok(P, &at, NULL, "an empty name; leave out the parentheses");
  return name;
}

// buf = REF ("(" name ")")?: a buffer the buffers section placed, unless
// declaring (that section itself), which sets the name.
static IrNode *parse_buf(Parser *P, bool declaring) {
  if (P->tok.kind != TK_REF)
    lx_expected(P, "a buffer (%N)");
  Token t = P->tok;
  IrNode *n = node_at(P, &t, t.ival, true);
  const char *name = *P->p == '(' ? buf_name(P) : NULL;
  if (declaring)
    n->name = name;
  else if (!K(P)->placed[n->id])
    lx_error_tok(P, &t, "every buffer a kernel touches has a line under 'buffers'",
                 "%%%d has no place in memory", n->id);
  else if (name && (!n->name || strcmp(name, n->name)))
    lx_error_tok(P, &t, NULL, "%%%d is named '%s' here but '%s' under 'buffers'", n->id, name,
                 n->name ? n->name : "");
  lx_next(P);
  return n;
}

// A word the text must have here.
static void expect_word(Parser *P, const char *w) {
  if (!lx_is_word(P, w)) {
    char what[64];
    snprintf(what, sizeof what, "'%s'", w);
    lx_expected(P, what);
  }
  lx_next(P);
}

// An integer from lo to hi.
static int64_t parse_range(Parser *P, int64_t lo, int64_t hi, const char *what) {
  Token t = P->tok;
  int64_t v = lx_int(P, what);
  if (v < lo || v > hi)
    lx_error_tok(P, &t, NULL, "%s %lld is out of range (%lld to %lld)", what, (long long)v, (long long)lo,
                 (long long)hi);
  return v;
}

// dims = "[" (dim ("," dim)*)? "]", at most IR_MAX_DIMS; N only first.
static int parse_dims(Parser *P, int64_t *dims) {
  IrNode tmp = {0};
  Token t = P->tok;
  lx_expect(P, '[');
  int nd = 0;
  while (!lx_is_punct(P, ']')) {
    if (nd == IR_MAX_DIMS)
      lx_error_tok(P, &P->tok, NULL, "too many dimensions (at most %d)", IR_MAX_DIMS);
    Token dt = P->tok;
    tmp.shape[nd] = lx_dim(P);
    if (tmp.shape[nd] < 0 && tmp.shape[nd] != IR_N)
      lx_error_tok(P, &dt, NULL, "a negative dimension");
    nd++;
    if (!lx_is_punct(P, ','))
      break;
    lx_next(P);
  }
  lx_expect(P, ']');
  for (int d = 1; d < nd; d++)
    if (tmp.shape[d] == IR_N)
      lx_error_tok(P, &t, NULL, "only dimension 0 of a loop can be the batch N");
  memcpy(dims, tmp.shape, sizeof(int64_t) * nd);
  return nd;
}

//
// The header, the graph line and the buffers
//

// header (see the top of the file)
static void parse_header(Parser *P) {
  KProgram *p = K(P)->p;
  lx_skip_newlines(P);
  expect_word(P, "program");
  Token et = P->tok;
  char entry[32];
  snprintf(entry, sizeof entry, "%.*s", et.len < 31 ? et.len : 31, et.p);
  if (et.kind != TK_IDENT || !ir_entry_parse(entry, &p->entry))
    lx_error_tok(P, &et, "the entry points are forward, eval_step and train_step", "unknown entry point '%.*s'",
                 lx_show_len(&et), et.p);
  lx_next(P);
  expect_word(P, "of");
  const char *name;
  if (P->tok.kind == TK_IDENT)
    name = arena_strndup(P->arena, P->tok.p, P->tok.len);
  else if (P->tok.kind == TK_STR)
    name = P->tok.str;
  else
    lx_expected(P, "the model's name");
  lx_next(P);
  P->g = ir_graph_new(P->arena, name);
  p->g = P->g;
  lx_expect(P, ':');
  int64_t limit = (int64_t)P->file->len;   // every kernel takes a line of text
  K(P)->nkernels = (int)parse_range(P, 0, limit < INT_MAX ? limit : INT_MAX, "the kernel count");
  expect_word(P, "kernels");
  lx_expect(P, ';');
  expect_word(P, "arena");
  p->arena_bytes = parse_range(P, 0, INT64_MAX, "the arena's size");
  expect_word(P, "bytes");
  lx_expect(P, '(');
  expect_word(P, "one");
  expect_word(P, "buffer");
  expect_word(P, "per");
  expect_word(P, "value");
  lx_expect(P, ':');
  p->naive_bytes = parse_range(P, 0, INT64_MAX, "a size");
  lx_expect(P, ')');
  lx_expect(P, ',');
  expect_word(P, "state");
  p->state_bytes = parse_range(P, 0, INT64_MAX, "the state's size");
  expect_word(P, "bytes");
  lx_expect(P, ',');
  expect_word(P, "batch");
  p->max_batch = parse_range(P, 1, INT32_MAX, "the batch");
  if (lx_is_punct(P, ',')) {
    lx_next(P);
    p->naux = (int)parse_range(P, 0, limit < INT_MAX ? limit : INT_MAX, "the aux slot count");
    expect_word(P, "aux");
    expect_word(P, "slots");
  }
  lx_end_line(P);
  lx_next(P);
}

// graph = "graph" STRING? "of" INT "nodes" (";" "output" REF)? (";" "loss" REF)?
static void parse_graph_line(Parser *P) {
  KParser *kp = K(P);
  IrGraph *g = P->g;
  lx_skip_newlines(P);
  expect_word(P, "graph");
  if (P->tok.kind == TK_STR) {
    SrcFile *nn = arena_alloc(P->arena, sizeof *nn);
    nn->name = g->file = P->tok.str;
    P->nn = nn;
    lx_next(P);
  }
  expect_word(P, "of");
  // The nodes the text does not name cost a pointer and a place each: keep
  // them in proportion to the text.
  int64_t limit = 64 + (int64_t)P->file->len;
  Token t = P->tok;
  int64_t nn = lx_int(P, "the node count");
  if (nn < 0 || nn > limit || nn > INT_MAX / 2)
    lx_error_tok(P, &t, "a program's text names most of its graph's nodes; is the count right?",
                 "%lld nodes: more than a text of %zu bytes can describe", (long long)nn, P->file->len);
  kp->nn = (int)nn;
  expect_word(P, "nodes");
  kp->nids = kp->nn + 1 + KP_MAX_BLOCKS;
  g->nnodes = g->cap = kp->nn;
  g->nodes = arena_alloc(P->arena, sizeof(IrNode *) * (kp->nn ? kp->nn : 1));
  kp->ids = arena_alloc(P->arena, sizeof(IrNode *) * kp->nids);
  kp->placed = arena_alloc(P->arena, kp->nids);
  kp->p->buf = arena_alloc(P->arena, sizeof(KBufInfo) * kp->nids);
  while (lx_is_punct(P, ';')) {
    lx_next(P);
    bool out = lx_is_word(P, "output") && !g->output;
    if (!out && !(lx_is_word(P, "loss") && !g->loss))
      lx_expected(P, g->output ? "'loss'" : "'output' or 'loss'");
    lx_next(P);
    if (P->tok.kind != TK_REF)
      lx_expected(P, "a node (%N)");
    *(out ? &g->output : &g->loss) = node_at(P, &P->tok, P->tok.ival, false);
    lx_next(P);
  }
  lx_end_line(P);
  lx_next(P);
}

// One line under "buffers": buf type space INT "+" INT.
static void parse_buffer(Parser *P) {
  KParser *kp = K(P);
  KProgram *p = kp->p;
  Token t = P->tok;
  IrNode *n = parse_buf(P, true);
  if (kp->placed[n->id])
    lx_error_tok(P, &t, NULL, "%%%d has two lines under 'buffers'", n->id);
  kp->placed[n->id] = true;
  Token tt = P->tok;
  lx_type(P, n);
  if (n->ndim < 0)
    lx_error_tok(P, &tt, NULL, "%%%d needs a type with a shape", n->id);
  int64_t need = 4;   // bytes at the largest batch
  for (int d = 0; d < n->ndim; d++) {
    int64_t e = n->shape[d] == IR_N ? p->max_batch : n->shape[d];
    if (e < 0)
      lx_error_tok(P, &tt, NULL, "a negative dimension");
    need = e && need > INT64_MAX / e ? INT64_MAX : need * e;
  }
  static const char *const spaces[] = {"arena", "state", "input", "local"};
  int s = 3;
  while (s >= 0 && !lx_is_word(P, spaces[s]))
    s--;
  if (s < 0)
    lx_expected(P, "where the buffer lies: arena, state, input or local");
  lx_next(P);
  KBufInfo *b = &p->buf[n->id];
  b->space = (KBufSpace)s;
  Token ot = P->tok;
  b->offset = parse_range(P, 0, INT64_MAX, "an offset");
  lx_expect(P, '+');
  Token bt = P->tok;
  b->bytes = parse_range(P, 0, INT64_MAX - b->offset, "a size");
  if (b->bytes && b->bytes < need && s != KB_LOCAL)   // (local rows hold a block: ir_verify_program)
    lx_error_tok(P, &bt, NULL, "%%%d's %lld bytes do not hold its %lld at batch %lld", n->id,
                 (long long)b->bytes, (long long)need, (long long)p->max_batch);
  int64_t room = s == KB_STATE ? p->state_bytes : s == KB_LOCAL ? INT64_MAX : p->arena_bytes;
  if (b->offset + b->bytes > room)
    lx_error_tok(P, &ot, NULL, "%%%d's bytes %lld to %lld lie outside the %s's %lld", n->id, (long long)b->offset,
                 (long long)(b->offset + b->bytes), s == KB_STATE ? "state" : "arena", (long long)room);
  if (n->id == kp->nn)
    p->scalars = n;
  else if (n->id > kp->nn) {
    int j = n->id - kp->nn - 1;
    p->blocks[j] = n;
    if (j + 1 > p->nblocks)
      p->nblocks = j + 1;
  }
}

// buffers = "buffers" "(" "byte" "offsets" "for" "batch" INT ")" ":" line*
static void parse_buffers(Parser *P) {
  lx_skip_newlines(P);
  expect_word(P, "buffers");
  lx_expect(P, '(');
  expect_word(P, "byte");
  expect_word(P, "offsets");
  expect_word(P, "for");
  expect_word(P, "batch");
  Token t = P->tok;
  if (parse_range(P, 1, INT32_MAX, "the batch") != K(P)->p->max_batch)
    lx_error_tok(P, &t, NULL, "the batch differs from the header's, %lld", (long long)K(P)->p->max_batch);
  lx_expect(P, ')');
  lx_expect(P, ':');
  lx_end_line(P);
  for (lx_skip_newlines(P); P->tok.kind == TK_REF; lx_skip_newlines(P)) {
    parse_buffer(P);
    lx_end_line(P);
  }
  KProgram *p = K(P)->p;
  for (int j = 0; j < p->nblocks; j++)
    if (!p->blocks[j])
      lx_error_tok(P, &P->tok, NULL, "block %%%d is missing under 'buffers' (blocks %%%d to %%%d come in order)",
                   K(P)->nn + 1 + j, K(P)->nn + 1, K(P)->nn + p->nblocks);
}

//
// Loop bodies
//

// The number n of an identifier "v<n>" or "i<n>", or -1.
static int numbered(const Token *t, char c) {
  if (t->kind != TK_IDENT || t->len < 2 || t->len > 9 || t->p[0] != c)
    return -1;
  int v = 0;
  for (int i = 1; i < t->len; i++) {
    if (t->p[i] < '0' || t->p[i] > '9')
      return -1;
    v = v * 10 + (t->p[i] - '0');
  }
  return v;
}

// VREG: an earlier instruction of the body.
static int parse_vreg(Parser *P, const Kernel *k) {
  int v = numbered(&P->tok, 'v');
  if (v < 0)
    lx_expected(P, "an instruction (v0, v1, ...)");
  if (v >= k->nbody)
    lx_error_tok(P, &P->tok, NULL, "v%d is not an earlier instruction", v);
  lx_next(P);
  return v;
}

// index = "[" term ("+" term)* "]", term = INT "*" IDX | INT
static KIndex parse_index(Parser *P, const Kernel *k) {
  KIndex ix = {0};
  bool seen[IR_MAX_DIMS] = {0}, offset = false;
  lx_expect(P, '[');
  for (;;) {
    Token t = P->tok;
    int64_t v = lx_int(P, "an index term");
    if (lx_is_punct(P, '*')) {
      lx_next(P);
      int d = numbered(&P->tok, 'i');
      if (d < 0)
        lx_expected(P, "a loop index (i0, i1, ...)");
      if (d >= k->ndim)
        lx_error_tok(P, &P->tok, NULL, "i%d: the loop has %d dimensions", d, k->ndim);
      if (seen[d])
        lx_error_tok(P, &P->tok, NULL, "i%d appears twice in the index", d);
      seen[d] = true;
      ix.stride[d] = v;
      lx_next(P);
    } else {
      if (offset)
        lx_error_tok(P, &t, NULL, "the index has two offsets");
      offset = true;
      ix.offset = v;
    }
    if (!lx_is_punct(P, '+'))
      break;
    lx_next(P);
  }
  lx_expect(P, ']');
  return ix;
}

// Operands an instruction reads: a, then b, then c.
static int operands(KInstrOp op) {
  switch (op) {
  case KI_LOAD: case KI_LOADI: case KI_CONST: case KI_INDEX: return 0;
  case KI_SELECT: case KI_FMA: return 3;
  case KI_ADD: case KI_SUB: case KI_MUL: case KI_DIV: case KI_MAX: case KI_MIN: case KI_GT: case KI_EQ: return 2;
  default: return 1;
  }
}

// VREG "=" IDENT operands
static void parse_instr(Parser *P, Kernel *k) {
  if (numbered(&P->tok, 'v') != k->nbody)
    lx_error_tok(P, &P->tok, NULL, "instructions are numbered in order: expected v%d", k->nbody);
  lx_next(P);
  lx_expect(P, '=');
  Token ot = P->tok;
  int op = 0;
  const char *names[KI_NUM_OPS];
  for (int i = 0; i < KI_NUM_OPS; i++)
    names[i] = ir_kinstr_name(i);
  while (op < KI_NUM_OPS && !lx_is_word(P, names[op]))
    op++;
  char hint[96];
  if (op == KI_NUM_OPS)
    lx_error_tok(P, &ot, ot.kind == TK_IDENT ? lx_did_you_mean(&ot, names, KI_NUM_OPS, hint, sizeof hint) : NULL,
                 "unknown instruction '%.*s'", lx_show_len(&ot), ot.p);
  lx_next(P);
  KInstr in = {.op = (KInstrOp)op};
  switch (in.op) {
  case KI_LOAD: case KI_LOADI:
    in.buf = ir_kernel_buf(P->g, k, parse_buf(P, false));
    in.idx = parse_index(P, k);
    break;
  case KI_CONST: in.imm = (float)lx_number(P); break;
  case KI_INDEX:
    in.dim = numbered(&P->tok, 'i');
    if (in.dim < 0)
      lx_expected(P, "a loop index (i0, i1, ...)");
    if (in.dim >= k->ndim)
      lx_error_tok(P, &P->tok, NULL, "i%d: the loop has %d dimensions", in.dim, k->ndim);
    lx_next(P);
    break;
  default: {
    int *args[3] = {&in.a, &in.b, &in.c};
    for (int j = 0; j < operands(in.op); j++) {
      if (j)
        lx_expect(P, ',');
      *args[j] = parse_vreg(P, k);
    }
  }
  }
  ir_kernel_instr(P->g, k, in);
}

// ("store" | ("sum" | "max") "into") buf index "=" VREG
static void parse_store(Parser *P, Kernel *k) {
  KStore st = {.reduce = lx_is_word(P, "sum") ? KR_SUM : lx_is_word(P, "max") ? KR_MAX : KR_NONE};
  lx_next(P);
  if (st.reduce != KR_NONE)
    expect_word(P, "into");
  st.buf = ir_kernel_buf(P->g, k, parse_buf(P, false));
  st.idx = parse_index(P, k);
  lx_expect(P, '=');
  st.value = parse_vreg(P, k);
  ir_kernel_store(P->g, k, st);
}

// body: instructions, then stores, a line each.
static void parse_body(Parser *P, Kernel *k) {
  for (lx_skip_newlines(P);; lx_skip_newlines(P)) {
    if (numbered(&P->tok, 'v') >= 0) {
      if (k->nstores)
        lx_error_tok(P, &P->tok, NULL, "instructions come before the stores");
      parse_instr(P, k);
    } else if (lx_is_word(P, "store") || lx_is_word(P, "sum") || lx_is_word(P, "max"))
      parse_store(P, k);
    else
      return;
    lx_end_line(P);
  }
}

// "over" dims "parallel"? body, after the kernel's header.
static void parse_loop(Parser *P, Kernel *k) {
  expect_word(P, "over");
  k->ndim = parse_dims(P, k->dims);
  if (lx_is_word(P, "parallel")) {
    k->parallel = true;
    lx_next(P);
  }
}

//
// Kernels
//

// from = "from" run (";" run)*, run = ("line" INT | "no" "line") ":" REF+
static void parse_from(Parser *P, Kernel *k) {
  for (bool first = true; first || lx_is_punct(P, ';'); first = false) {
    lx_next(P);   // "from" or ";"
    int line = 0;
    if (lx_is_word(P, "no")) {
      lx_next(P);
      expect_word(P, "line");
    } else {
      expect_word(P, "line");
      line = lx_small(P, 1, "a line number");
    }
    lx_expect(P, ':');
    if (P->tok.kind != TK_REF)
      lx_expected(P, "a node (%N)");
    while (P->tok.kind == TK_REF) {
      IrNode *n = node_at(P, &P->tok, P->tok.ival, false);
      if (n->loc.line && n->loc.line != line)
        lx_error_tok(P, &P->tok, NULL, "%%%d came from line %d before", n->id, n->loc.line);
      n->loc = (SrcLoc){.file = P->nn, .line = line, .col = 1, .len = 1};
      ir_kernel_add_node(P->g, k, n);
      lx_next(P);
    }
  }
}

// What follows a kernel's first line: its nodes, then an epilogue or a body.
static void parse_kernel_rest(Parser *P, Kernel *k) {
  lx_end_line(P);
  lx_skip_newlines(P);
  if (lx_is_word(P, "from")) {
    parse_from(P, k);
    lx_end_line(P);
    lx_skip_newlines(P);
  }
  if (k->kind == KN_LOOP) {
    parse_body(P, k);
    return;
  }
  if (!lx_is_word(P, "epilogue"))
    return;
  lx_next(P);
  k->epilogue = ir_kernel_new(P->g, KN_LOOP, k->name);
  parse_loop(P, k->epilogue);
  lx_end_line(P);
  parse_body(P, k->epilogue);
}

// ext = "N" | INT ("*" "N")?
static KExtent parse_extent(Parser *P) {
  if (lx_is_word(P, "N")) {
    lx_next(P);
    return (KExtent){1, true};
  }
  KExtent e = {parse_range(P, 0, INT64_MAX, "an extent"), false};
  if (lx_is_punct(P, '*')) {
    lx_next(P);
    expect_word(P, "N");
    e.batched = true;
  }
  return e;
}

// A GEMM operand's "^T".
static bool parse_transpose(Parser *P) {
  if (!lx_is_punct(P, '^'))
    return false;
  lx_next(P);
  expect_word(P, "T");
  return true;
}

// buf "[" ext "," ext "]" "+"? "=" buf ("^" "T")? "@" buf ("^" "T")? "," "K" "=" ext
static void parse_gemm(Parser *P, Kernel *k) {
  const IrNode *c = parse_buf(P, false);
  lx_expect(P, '[');
  k->m = parse_extent(P);
  lx_expect(P, ',');
  k->n = parse_extent(P);
  lx_expect(P, ']');
  if (lx_is_punct(P, '+')) {
    k->accumulate = true;
    lx_next(P);
  }
  lx_expect(P, '=');
  const IrNode *a = parse_buf(P, false);
  k->ta = parse_transpose(P);
  lx_expect(P, '@');
  const IrNode *b = parse_buf(P, false);
  k->tb = parse_transpose(P);
  lx_expect(P, ',');
  expect_word(P, "K");
  lx_expect(P, '=');
  k->k = parse_extent(P);
  // A, B and C are buffers 0, 1 and 2, even where two are one node.
  k->bufs = arena_alloc(P->arena, 4 * sizeof *k->bufs);
  k->bufs[0] = a, k->bufs[1] = b, k->bufs[2] = c;
  k->nbufs = 3;
}

// lbuf = buf | ("arena" | "state") INT dims: buffer d->buf[d->nbufs].
static const IrNode *parse_lib_buf(Parser *P, RtLib *d) {
  if (d->nbufs == RT_LIB_MAX_BUFS)
    lx_error_tok(P, &P->tok, NULL, "a library kernel has at most %d buffers", RT_LIB_MAX_BUFS);
  RtLibBuf *r = &d->buf[d->nbufs++];
  int64_t dims[IR_MAX_DIMS];
  if (lx_is_word(P, "arena") || lx_is_word(P, "state") || lx_is_word(P, "local")) {
    r->space = lx_is_word(P, "state") ? RT_SPACE_STATE : lx_is_word(P, "local") ? RT_SPACE_LOCAL : RT_SPACE_ARENA;
    lx_next(P);
    r->offset = parse_range(P, 0, INT64_MAX, "an offset");
    r->ndim = parse_dims(P, dims);
    for (int i = 0; i < r->ndim; i++)
      r->shape[i] = dims[i] == IR_N ? RT_BATCH : dims[i];
    return NULL;
  }
  const IrNode *n = parse_buf(P, false);
  const KBufInfo *b = &K(P)->p->buf[n->id];
  r->space = ir_rt_space(b->space);
  r->offset = b->offset;
  r->ndim = n->ndim;
  for (int i = 0; i < n->ndim; i++)
    r->shape[i] = n->shape[i] == IR_N ? RT_BATCH : n->shape[i];
  return n;
}

// settings = "{" (IDENT "=" number ("," IDENT "=" number)*)? "}": the op's
// attribute names, or i0..i7 and f0..f5.
static void parse_settings(Parser *P, RtLib *d) {
  const char *name = rt_lib_name(d->kind);
  IrOp op = ir_op_lookup(name);
  const IrOpInfo *info = op < IR_NUM_OPS ? ir_op_info(op) : NULL;
  const char *names[IR_MAX_IATTR + IR_MAX_FATTR];
  int ni = info ? info->niattr : 0, nf = info ? info->nfattr : 0;
  for (int i = 0; i < ni; i++)
    names[i] = info->iattr[i];
  for (int i = 0; i < nf; i++)
    names[ni + i] = info->fattr[i];
  bool set[IR_MAX_IATTR + IR_MAX_FATTR] = {0};
  lx_next(P);
  while (!lx_is_punct(P, '}')) {
    Token t = P->tok;
    int slot = -1;   // 0..7: i[slot]; 8..13: f[slot - 8]
    for (int i = 0; i < ni + nf && slot < 0; i++)
      if (lx_is_word(P, names[i]))
        slot = i < ni ? i : IR_MAX_IATTR + i - ni;
    if (slot < 0 && numbered(&t, 'i') >= 0 && numbered(&t, 'i') < IR_MAX_IATTR)
      slot = numbered(&t, 'i');
    if (slot < 0 && numbered(&t, 'f') >= 0 && numbered(&t, 'f') < IR_MAX_FATTR)
      slot = IR_MAX_IATTR + numbered(&t, 'f');
    char hint[96];
    if (slot < 0)
      lx_error_tok(P, &t, t.kind == TK_IDENT ? lx_did_you_mean(&t, names, ni + nf, hint, sizeof hint) : NULL,
                   "unknown setting '%.*s' for %s", lx_show_len(&t), t.p, name);
    if (set[slot])
      lx_error_tok(P, &t, NULL, "setting '%.*s' appears twice", lx_show_len(&t), t.p);
    set[slot] = true;
    lx_next(P);
    lx_expect(P, '=');
    if (slot < IR_MAX_IATTR)
      d->i[slot] = lx_int(P, "an integer setting");
    else
      d->f[slot - IR_MAX_IATTR] = lx_number(P);
    if (lx_is_punct(P, '}'))
      break;
    lx_expect(P, ',');
  }
  lx_next(P);
}

// (lbuf "=")? IDENT lbuf ("," lbuf)* settings? ("aux" INT "(" INT "bytes" ")")?
// ("aux_from" INT)? ("loss" NUMBER?)? ("node" REF)?
static void parse_lib(Parser *P, Kernel *k) {
  KProgram *p = K(P)->p;
  RtLib *d = arena_alloc(P->arena, sizeof *d);
  RtLib res = {0};   // the result, read before the kind
  const IrNode *rn = NULL;
  bool has_res = !(P->tok.kind == TK_IDENT && !lx_is_word(P, "arena") && !lx_is_word(P, "state"));
  if (has_res) {
    rn = parse_lib_buf(P, &res);
    lx_expect(P, '=');
  }
  Token kt = P->tok;
  const char *kinds[RL_COUNT];
  int kind = 0;
  for (int i = 0; i < RL_COUNT; i++)
    kinds[i] = rt_lib_name(i);
  while (kind < RL_COUNT && !lx_is_word(P, kinds[kind]))
    kind++;
  char hint[96];
  if (kind == RL_COUNT)
    lx_error_tok(P, &kt, kt.kind == TK_IDENT ? lx_did_you_mean(&kt, kinds, RL_COUNT, hint, sizeof hint) : NULL,
                 "unknown library kernel '%.*s'", lx_show_len(&kt), kt.p);
  bool update = kind == RL_SGD_STEP || kind == RL_ADAM_STEP || kind == RL_RMSPROP_STEP || kind == RL_ADAGRAD_STEP;
  if (update == has_res)
    lx_error_tok(P, &kt, NULL, update ? "%s updates in place: it has no result" : "%s needs a result: %%K = %s ...",
                 kinds[kind], kinds[kind]);
  d->kind = kind;
  d->aux = d->aux_from = -1;
  d->node = rn ? rn->id : -1;
  lx_next(P);
  for (;;) {
    const IrNode *n = parse_lib_buf(P, d);
    if (n)
      ir_kernel_buf(P->g, k, n);
    if (!lx_is_punct(P, ','))
      break;
    lx_next(P);
  }
  if (has_res) {
    if (d->nbufs == RT_LIB_MAX_BUFS)
      lx_error_tok(P, &kt, NULL, "a library kernel has at most %d buffers", RT_LIB_MAX_BUFS);
    d->buf[d->nbufs++] = res.buf[0];
    if (rn)
      ir_kernel_buf(P->g, k, rn);
  }
  if (lx_is_punct(P, '{'))
    parse_settings(P, d);
  if (lx_is_word(P, "aux")) {
    lx_next(P);
    d->aux = (int32_t)parse_range(P, 0, p->naux - 1, "an aux slot");
    lx_expect(P, '(');
    d->aux_bytes = parse_range(P, 0, INT64_MAX, "the aux slot's size");
    expect_word(P, "bytes");
    lx_expect(P, ')');
  }
  if (lx_is_word(P, "aux_from")) {
    lx_next(P);
    d->aux_from = (int32_t)parse_range(P, 0, p->naux - 1, "an aux slot");
  }
  if (lx_is_word(P, "loss")) {
    d->loss = 1;
    d->loss_weight = 1;
    lx_next(P);
    if (P->tok.kind == TK_INT || P->tok.kind == TK_FLOAT)
      d->loss_weight = lx_number(P);
  }
  if (lx_is_word(P, "node")) {
    lx_next(P);
    if (P->tok.kind != TK_REF)
      lx_expected(P, "a node (%N)");
    d->node = node_at(P, &P->tok, P->tok.ival, false)->id;
    lx_next(P);
  }
  k->node = rn;
  k->lib = d;
}

// kernel = "kernel" INT ("loop" | "gemm" | "lib") STRING ...
static void parse_kernel(Parser *P) {
  KProgram *p = K(P)->p;
  Token t = P->tok;
  lx_next(P);
  if (P->tok.kind != TK_INT || P->tok.ival != p->nkernels)
    lx_error_tok(P, &P->tok, NULL, "kernels are numbered in order: expected kernel %d", p->nkernels);
  if (p->nkernels == K(P)->nkernels)
    lx_error_tok(P, &t, NULL, "more kernels than the header's %d", K(P)->nkernels);
  lx_next(P);
  static const char *const kinds[] = {"loop", "gemm", "lib"};
  int kind = 0;
  while (kind < 3 && !lx_is_word(P, kinds[kind]))
    kind++;
  if (kind == 3)
    lx_expected(P, "a kernel kind: loop, gemm or lib");
  lx_next(P);
  Kernel *k = ir_kernel_new(P->g, (KernelKind)kind, lx_string(P, "the kernel's name (a string)"));
  p->kernels[p->nkernels++] = k;
  if (k->kind == KN_LOOP)
    parse_loop(P, k);
  else {
    lx_expect(P, ':');
    if (k->kind == KN_GEMM)
      parse_gemm(P, k);
    else
      parse_lib(P, k);
  }
  parse_kernel_rest(P, k);
}

// region = "region" INT "to" INT "," (INT "bytes" "a" "row" "," "blocks"
// "of" INT "rows" "," INT "local" "bytes" | "shared" "products"), before
// the region's first kernel: kernels in order, at least two, disjoint.
static void parse_region(Parser *P) {
  KProgram *p = K(P)->p;
  int n = K(P)->nkernels;
  lx_next(P);
  Token t = P->tok;
  int first = (int)parse_range(P, 0, n > 0 ? n - 1 : 0, "a region's first kernel");
  if (first != p->nkernels)
    lx_error_tok(P, &t, NULL, "a region line comes right before its first kernel: expected region %d",
                 p->nkernels);
  expect_word(P, "to");
  int last = (int)parse_range(P, first + 1, n > 0 ? n - 1 : 0, "a region's last kernel");
  lx_expect(P, ',');
  if (lx_is_word(P, "shared")) {
    lx_next(P);
    expect_word(P, "products");
    p->regions[p->nregions++] = (KRegion){first, last, 0, true, 0, 0};
    return;
  }
  int64_t bytes = parse_range(P, 0, INT64_MAX, "a region's bytes a row");
  expect_word(P, "bytes");
  expect_word(P, "a");
  expect_word(P, "row");
  lx_expect(P, ',');
  expect_word(P, "blocks");
  expect_word(P, "of");
  int64_t block = parse_range(P, 1, INT32_MAX, "the most rows of a region's block");
  expect_word(P, "rows");
  lx_expect(P, ',');
  int64_t local = parse_range(P, 0, INT64_MAX, "a region's local bytes");
  expect_word(P, "local");
  expect_word(P, "bytes");
  p->regions[p->nregions++] = (KRegion){first, last, bytes, false, block, local};
}

static KProgram *parse_program(Parser *P) {
  KProgram *p = K(P)->p;
  lx_next(P);
  parse_header(P);
  parse_graph_line(P);
  parse_buffers(P);
  p->kernels = arena_alloc(P->arena, sizeof(Kernel *) * (K(P)->nkernels ? K(P)->nkernels : 1));
  p->regions = arena_alloc(P->arena, sizeof(KRegion) * (K(P)->nkernels ? K(P)->nkernels : 1));
  for (lx_skip_newlines(P); P->tok.kind != TK_EOF; lx_skip_newlines(P)) {
    if (lx_is_word(P, "region")) {
      parse_region(P);
      continue;
    }
    if (!lx_is_word(P, "kernel"))
      lx_error_tok(P, &P->tok, NULL, "expected 'kernel', found '%.*s'", lx_show_len(&P->tok), P->tok.p);
    parse_kernel(P);
  }
  if (p->nkernels != K(P)->nkernels)
    lx_error_at(P, P->last_line, P->last_col, 1, NULL, "the header says %d kernels, but the text has %d",
                K(P)->nkernels, p->nkernels);
  return p;
}

KProgram *ir_parse_program(const SrcFile *file, Arena *a, Diag *d) {
  if (!file || !file->text)
    unreachable();
  KParser kp = {.P = LX_PARSER(file, a, d, "=,{}[]():@?*+^;")};
  kp.p = arena_alloc(a, sizeof *kp.p);
  if (setjmp(kp.P.fail))
    return NULL;
  KProgram *p = parse_program(&kp.P);
  // What reads well may still not run: the program is held to what the
  // compiler's own programs are (every buffer in its space, library kernels'
  // descriptors whole), since codegen and the runtime trust it.
  char err[512];
  if (p && !ir_verify_program(p, err, sizeof err)) {
    diag_error(d, ((SrcLoc){.file = file, .line = 1, .col = 1, .len = 1}),
               "a kernel program's buffers and descriptors must lie inside its arena and state",
               "the program does not hold together: %s", err);
    return NULL;
  }
  return p;
}
