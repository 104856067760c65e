// lower.c: from the AST to the graph IR.
//
// The lowering walks the model's body statement by statement, evaluating
// each expression to a Value: a number known at compile time (a layer's
// width, `4 * c` in a block) or a tensor (an IrNode). Layers and blocks are
// expanded as they are called; a layer's parameters get their shapes from
// the shape of its input, so each new node's shape is inferred at once
// (pass_infer_node). Names resolve in the innermost model or block only:
// blocks see their input `x`, their parameters and their own values.
//
// Every error is reported at the .nn location responsible, and lowering
// goes on: a value whose shape could not be worked out becomes an error
// value that later uses pass along silently, so one mistake gives one
// message.
#include "frontend.h"
#include "passes.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define MAX_ELEMS 2147483647LL   // elements in one tensor (32-bit indexes)
#define MAX_ARGS 12              // a call's arguments (conv_transpose2d has 9)
#define MAX_BLOCK_PARAMS 7       // a block's parameters
#define MAX_BATCH (1 << 20)      // samples per batch, as the command line's --batch
#define MAX_EXPAND_DEPTH 64      // nested block expansions
#define MAX_EXPANDED 250000      // graph nodes plus block calls a model may expand to (about 200 MB)

typedef enum {
  V_ERR,     // an error was reported; uses pass it along silently
  V_NUM,     // num: a compile-time number (is_bool for true / false)
  V_TENSOR,  // t: a node of the graph
  V_TUPLE,   // nums[0..n): compile-time numbers written (a, b, ...)
  V_PARTS,   // parts, nparts: several tensors (split), for `a, b = ...` only
} ValueKind;

typedef struct Value {
  ValueKind kind;
  double num;
  bool is_bool;
  IrNode *t;
  const double *nums;
  int n;
  IrNode **parts;
  int nparts;
} Value;

static const Value ERR = {.kind = V_ERR};

// A name bound in a model or block body.
typedef struct Binding {
  const char *name;
  Value v;
  SrcLoc loc;            // where it was defined
  const char *what;      // "input", "target", "parameter", "value", "block parameter"
  bool used;
  struct Binding *next;
} Binding;

// How many layers of each kind a scope has made, for names like conv2d_2.
typedef struct Counter {
  const char *kind;
  int n;
  struct Counter *next;
} Counter;

// One model body, or one expansion of a block.
typedef struct Env {
  const char *prefix;    // "" for the model, "down_1." inside that block
  Binding *names;        // newest first
  int nnames;            // bindings in names while index is empty
  StrMap index;         // name -> Binding *, once there are more than NAMES_LISTED
  Counter *counters;
  const Decl *decl;      // the model or block being lowered
  struct Env *caller;    // the expansion that called this one
  SrcLoc call_loc;       // where the caller called it
  int depth;
} Env;

typedef struct Lower {
  Arena *a;
  Diag *d;
  const Program *p;
  IrGraph *g;
  Model *m;
  PtrVec blocks;         // Decl *: every block in the file
  StrMap block_index;   // name -> Decl *
  bool saw_input;        // the model declares an input (even a bad one)
  bool saw_target;       // ... and a target (even a bad one, already reported)
  int block_calls;       // blocks expanded so far
  bool too_big;          // MAX_EXPANDED was reported: no more block expansions
  bool typing_input;     // eval_type reads an input's type, which may be i32
} Lower;

static Value eval(Lower *L, Env *e, const AstNode *n);
static Value eval_parts(Lower *L, Env *e, const AstNode *n);

static Value num_value(double x) { return (Value){.kind = V_NUM, .num = x}; }
static Value tensor_value(IrNode *t) { return t ? (Value){.kind = V_TENSOR, .t = t} : ERR; }

// What v is, for messages: "a tensor", "true or false", "the tuple (3, 5)".
static const char *value_what(Lower *L, Value v) {
  if (v.kind == V_TENSOR)
    return "a tensor";
  if (v.kind == V_NUM)
    return v.is_bool ? "true or false" : arena_printf(L->a, "the number %g", v.num);
  StrBuf b = {0};
  for (int i = 0; i < v.n; i++)
    sb_printf(&b, "%s%g", i ? ", " : "the tuple (", v.nums[i]);
  sb_puts(&b, ")");
  const char *s = arena_strdup(L->a, b.data);
  sb_free(&b);
  return s;
}

//
// Names
//

// A body's names: a list while it is short (most blocks bind a handful),
// then also a hash map.
#define NAMES_LISTED 8

static Binding *lookup(Env *e, const char *name) {
  if (e->index.cap)
    return strmap_get(&e->index, name);
  for (Binding *b = e->names; b; b = b->next)
    if (!strcmp(b->name, name))
      return b;
  return NULL;
}

static void add_binding(Lower *L, Env *e, Binding *b) {
  b->next = e->names;
  e->names = b;
  if (e->index.cap)
    strmap_put(L->a, &e->index, b->name, b);
  else if (++e->nnames > NAMES_LISTED)
    for (Binding *o = e->names; o; o = o->next)
      strmap_put(L->a, &e->index, o->name, o);
}

static bool is_builtin_name(const char *name);
static const Decl *find_block(Lower *L, const char *name);

// Binds name in e, refusing duplicates and names that would hide a layer.
static bool bind(Lower *L, Env *e, const char *name, SrcLoc loc, Value v, const char *what) {
  Binding *old = lookup(e, name);
  if (old) {
    char hint[160];
    snprintf(hint, sizeof hint, "'%s' is the %s defined at %d:%d; choose another name", name,
             old->what, old->loc.line, old->loc.col);
    diag_error(L->d, loc, hint, "'%s' is already defined", name);
    return false;
  }
  if (is_builtin_name(name) || find_block(L, name)) {
    diag_error(L->d, loc, "choose another name for this value",
               "'%s' is the name of a %s", name, is_builtin_name(name) ? "built-in layer" : "block");
    return false;
  }
  Binding *b = arena_alloc(L->a, sizeof *b);
  *b = (Binding){name, v, loc, what, false, NULL};
  add_binding(L, e, b);
  return true;
}

// Returns "conv2d_2": the next name for a layer of this kind in e.
static const char *next_scope(Lower *L, Env *e, const char *kind) {
  Counter *c = e->counters;
  while (c && strcmp(c->kind, kind))
    c = c->next;
  if (!c) {
    c = arena_alloc(L->a, sizeof *c);
    *c = (Counter){kind, 0, e->counters};
    e->counters = c;
  }
  return arena_printf(L->a, "%s%s_%d", e->prefix, kind, ++c->n);
}

//
// Nodes
//

// Appends a node, sets its scope and infers its shape. Returns NULL (after
// a report) if the shape check failed.
static IrNode *finish(Lower *L, IrNode *n, const char *scope) {
  n->scope = scope;
  if (!pass_infer_node(n, L->d))
    return NULL;
  if (ir_numel(n, 1) > MAX_ELEMS) {
    char buf[96];
    diag_error(L->d, n->loc, "make the layers narrower or the input smaller",
               "%s: the result %s has more than %lld elements per sample",
               ir_op_info(n->op)->mnem, ir_type_str(n, buf, sizeof buf), MAX_ELEMS);
    return NULL;
  }
  return n;
}

static IrNode *node(Lower *L, IrOp op, IrNode **src, int nsrc, SrcLoc loc) {
  return ir_add(L->g, op, src, nsrc, loc);
}

// A trainable parameter (or a buffer) named scope.pname.
static IrNode *new_param(Lower *L, IrOp op, const char *scope, const char *pname, int ndim,
                         const int64_t *shape, IrInit init, SrcLoc loc) {
  const char *name = arena_printf(L->a, "%s.%s", scope, pname);
  IrNode *p = ir_leaf(L->g, op, name, DT_F32, ndim, shape, loc);
  p->init = init;
  p->scope = scope;
  return p;
}

// PyTorch's default for linear and conv weights and biases:
// kaiming_uniform(a = sqrt(5)), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
static IrInit fan_in_uniform(int64_t fan_in) {
  double bound = 1.0 / sqrt((double)fan_in);
  return (IrInit){INIT_UNIFORM, -bound, bound};
}

//
// Arguments
//

typedef enum {
  A_TENSOR,    // a tensor
  A_INT,       // a whole number >= lo
  A_NUM,       // any number
  A_BOOL,      // true or false
  A_INTS,      // the remaining positional arguments, whole numbers (reshape)
  A_PAIR,      // a whole number >= lo, or a pair of them (height, width): kernel, stride, ...
  A_TENSORS,   // the positional arguments (and the piped value), tensors (concat)
  A_INIT,      // an initializer, kept unevaluated (Args.node): its names are not values
} ArgKind;

typedef struct ArgSpec {
  const char *name;
  ArgKind kind;
  bool required;
  double def;          // the default when not required
  double lo;           // A_INT: the smallest value allowed
} ArgSpec;

// A function's signature: what a call must supply.
typedef struct Signature {
  const char *name;    // for messages
  const ArgSpec *args;
  int nargs;
  const char *usage;   // "linear(out, bias = true)"
} Signature;

// The evaluated arguments of one call, by position in the signature.
typedef struct Args {
  Value v[MAX_ARGS];
  SrcLoc loc[MAX_ARGS];
  bool given[MAX_ARGS];
  int64_t ints[IR_MAX_DIMS];   // A_INTS
  SrcLoc ints_loc[IR_MAX_DIMS];
  int nints;
  IrNode **tensors;            // A_TENSORS
  int ntensors;
  const AstNode *node[MAX_ARGS];   // A_INIT: the expression given, or NULL
  SrcLoc call;                 // the function's name
} Args;

static double arg_num(const Args *a, int i) { return a->v[i].num; }
static int64_t arg_int(const Args *a, int i) { return (int64_t)a->v[i].num; }
static IrNode *arg_tensor(const Args *a, int i) { return a->v[i].t; }
// An A_PAIR argument as (height, width): a number n is (n, n).
static void arg_pair(const Args *a, int i, int64_t out[2]) {
  const Value *v = &a->v[i];
  out[0] = (int64_t)(v->kind == V_TUPLE ? v->nums[0] : v->num);
  out[1] = (int64_t)(v->kind == V_TUPLE ? v->nums[1] : v->num);
}

// Checks that v is what spec asks for; reports and returns false if not.
static bool check_arg(Lower *L, const Signature *sig, const ArgSpec *spec, Value v, SrcLoc loc) {
  if (v.kind == V_ERR)
    return false;
  const char *fn = sig->name, *an = spec->name;
  char hint[200];
  snprintf(hint, sizeof hint, "%s takes %s", fn, sig->usage);
  switch (spec->kind) {
  case A_INIT:
    return true;   // checked by the layer, which knows the weight's fans
  case A_TENSOR:
  case A_TENSORS:
    if (v.kind != V_TENSOR) {
      diag_error(L->d, loc, hint, "%s: '%s' must be a tensor, found %s", fn, an, value_what(L, v));
      return false;
    }
    return true;
  case A_PAIR:
    if (v.kind == V_TUPLE) {
      if (v.n != 2) {
        diag_error(L->d, loc, hint, "%s: '%s' must be a number or a pair (height, width), found %d numbers",
                   fn, an, v.n);
        return false;
      }
      ArgSpec one = *spec;
      one.kind = A_INT;
      return check_arg(L, sig, &one, num_value(v.nums[0]), loc) && check_arg(L, sig, &one, num_value(v.nums[1]), loc);
    }
    break;
  case A_BOOL:
    if (v.kind != V_NUM || !v.is_bool) {
      diag_error(L->d, loc, hint, "%s: '%s' must be true or false", fn, an);
      return false;
    }
    return true;
  case A_NUM:
  case A_INT:
  case A_INTS:
    break;
  }
  if (v.kind != V_NUM || v.is_bool) {
    diag_error(L->d, loc, hint, "%s: '%s' must be a number%s, found %s", fn, an,
               spec->kind == A_PAIR ? " or a pair (height, width)" : "", value_what(L, v));
    return false;
  }
  if (!isfinite(v.num)) {
    diag_error(L->d, loc, NULL, "%s: '%s' must be finite", fn, an);
    return false;
  }
  if (spec->kind == A_NUM)
    return true;
  if (v.num != floor(v.num)) {
    diag_error(L->d, loc, hint, "%s: '%s' must be a whole number, found %g", fn, an, v.num);
    return false;
  }
  if (v.num < spec->lo || v.num > MAX_ELEMS) {
    if (v.num > MAX_ELEMS)
      diag_error(L->d, loc, NULL, "%s: '%s' is too large (%.17g; at most %lld)", fn, an, v.num, MAX_ELEMS);
    else if (spec->lo < 0)   // an axis counted from the end
      diag_error(L->d, loc, "a negative axis counts from the end: -1 is the last",
                 "%s: '%s' is too small (%.17g; at least %.17g)", fn, an, v.num, spec->lo);
    else if (spec->lo == 1)
      diag_error(L->d, loc, hint, "%s: '%s' must be at least 1, found %g", fn, an, v.num);
    else
      diag_error(L->d, loc, hint, "%s: '%s' must not be negative, found %g", fn, an, v.num);
    return false;
  }
  return true;
}

static int find_spec(const Signature *sig, const char *name) {
  for (int i = 0; i < sig->nargs; i++)
    if (!strcmp(sig->args[i].name, name))
      return i;
  return -1;
}

// Evaluates a call's arguments and matches them to sig: positional ones in
// order (after the piped value, if any), then keywords by name. Every
// problem is reported; returns false if there was any.
static bool bind_args(Lower *L, Env *e, const Signature *sig, const AstNode *call,
                      const Value *piped, SrcLoc piped_loc, Args *out) {
  memset(out, 0, sizeof *out);
  out->call = call->loc;
  bool ok = true;
  int pos = 0;
  char hint[200];
  snprintf(hint, sizeof hint, "%s takes %s", sig->name, sig->usage);
  int nargs = call->kind == AST_CALL ? call->nargs : 0;
  if (sig->nargs && sig->args[0].kind == A_TENSORS)
    out->tensors = arena_alloc(L->a, sizeof(IrNode *) * (nargs + 1));
  if (piped && out->tensors) {
    out->tensors[out->ntensors++] = piped->t;
    out->given[0] = true;
  } else if (piped) {
    out->v[0] = *piped;
    out->loc[0] = piped_loc;
    out->given[0] = true;
    pos = 1;
  }
  for (int i = 0; i < nargs; i++) {
    const AstNode *arg = call->args[i];
    if (arg->kind == AST_KWARG) {
      int k = find_spec(sig, arg->name);
      bool lazy = k >= 0 && sig->args[k].kind == A_INIT;
      Value v = lazy ? num_value(0) : eval(L, e, arg->lhs);
      if (k < 0 || sig->args[k].kind == A_INTS || sig->args[k].kind == A_TENSORS) {
        const char *names[MAX_ARGS];
        for (int j = 0; j < sig->nargs; j++)
          names[j] = sig->args[j].name;
        const char *s = suggest_name(arg->name, names, sig->nargs);
        char h[240];
        if (s)
          snprintf(h, sizeof h, "did you mean '%s'? %s takes %s", s, sig->name, sig->usage);
        diag_error(L->d, arg->loc, s ? h : hint, "%s has no argument named '%s'", sig->name, arg->name);
        ok = false;
      } else if (out->given[k]) {
        diag_error(L->d, arg->loc, hint, "%s: '%s' is given twice", sig->name, arg->name);
        ok = false;
      } else {
        out->v[k] = v;
        out->loc[k] = arg->loc;
        out->given[k] = true;
        out->node[k] = lazy ? arg->lhs : NULL;
        ok &= check_arg(L, sig, &sig->args[k], v, arg->loc);
      }
      continue;
    }
    bool lazy = pos < sig->nargs && sig->args[pos].kind == A_INIT;
    Value v = lazy ? num_value(0) : eval(L, e, arg);
    if (pos < sig->nargs && sig->args[pos].kind == A_TENSORS) {
      if (check_arg(L, sig, &sig->args[pos], v, arg->loc))
        out->tensors[out->ntensors++] = v.t;
      else
        ok = false;
      out->given[pos] = true;
      continue;
    }
    if (pos < sig->nargs && sig->args[pos].kind == A_INTS) {
      if (out->nints == IR_MAX_DIMS - 1) {
        diag_error(L->d, arg->loc, NULL, "%s: at most %d dimensions per sample", sig->name, IR_MAX_DIMS - 1);
        ok = false;
      } else if (v.kind == V_NUM && !v.is_bool && v.num == -1) {
        out->ints_loc[out->nints] = arg->loc;
        out->ints[out->nints++] = -1;
      } else if (check_arg(L, sig, &sig->args[pos], v, arg->loc)) {
        out->ints_loc[out->nints] = arg->loc;
        out->ints[out->nints++] = (int64_t)v.num;
      } else {
        ok = false;
      }
      out->given[pos] = true;
      continue;
    }
    if (pos < sig->nargs && out->given[pos]) {
      diag_error(L->d, arg->loc, "write positional arguments before keyword arguments",
                 "%s: '%s' is given twice", sig->name, sig->args[pos].name);
      ok = false;
      pos++;
      continue;
    }
    if (pos >= sig->nargs) {
      int shown = sig->nargs - (piped ? 1 : 0);
      diag_error(L->d, arg->loc, hint, "%s takes %d argument%s%s, found %d", sig->name, shown,
                 shown == 1 ? "" : "s", piped ? " after the piped input" : "", nargs);
      ok = false;
      break;
    }
    out->v[pos] = v;
    out->loc[pos] = arg->loc;
    out->given[pos] = true;
    out->node[pos] = lazy ? arg : NULL;
    ok &= check_arg(L, sig, &sig->args[pos], v, arg->loc);
    pos++;
  }
  for (int k = 0; k < sig->nargs; k++) {
    if (out->given[k])
      continue;
    const ArgSpec *s = &sig->args[k];
    if (s->required) {
      SrcLoc at = call->kind == AST_CALL ? call->close : call->loc;
      if (k == 0 && s->kind == A_TENSOR && !piped)
        diag_error(L->d, call->loc, hint, "%s needs an input tensor: write x -> %s(...) or %s(x, ...)",
                   sig->name, sig->name, sig->name);
      else
        diag_error(L->d, at, hint, "%s: missing argument '%s'", sig->name, s->name);
      ok = false;
    } else if (s->kind != A_INTS && s->kind != A_TENSORS) {
      out->v[k] = num_value(s->def);
      out->v[k].is_bool = s->kind == A_BOOL;
      out->loc[k] = call->loc;
    }
  }
  return ok;
}

//
// Built-in layers. Each gets its arguments checked by its signature; the
// input tensor is argument 0.
//

typedef struct Builtin {
  Signature sig;
  IrNode *(*build)(Lower *L, Env *e, const Args *a);   // NULL: split, which gives several tensors
} Builtin;

static const char *tshape(const IrNode *n, char *buf) {
  return ir_shape_str(n->ndim, n->shape, buf, 96);
}

static IrNode *reshape_to(Lower *L, IrNode *x, int ndim, const int64_t *shape, SrcLoc loc,
                          const char *scope) {
  IrNode *y = node(L, IR_RESHAPE, (IrNode *[]){x}, 1, loc);
  y->ndim = ndim;
  memcpy(y->shape, shape, sizeof(int64_t) * ndim);
  return finish(L, y, scope);
}

static bool eval_init(Lower *L, Env *e, const AstNode *n, int ndim, const int64_t *shape, const IrInit *def,
                      IrInit *out);

// A layer's `init` (argument i, for its weight of shape [ndim]) and
// `bias_init` (argument i + 1, for its bias [shape[0]]); `default`, or left
// out, is def, PyTorch's initializer for the layer.
static bool layer_inits(Lower *L, Env *e, const Args *a, int i, int ndim, const int64_t *shape, IrInit def,
                        IrInit *w, IrInit *b) {
  *w = *b = def;
  bool ok = !a->node[i] || eval_init(L, e, a->node[i], ndim, shape, &def, w);
  return (!a->node[i + 1] || eval_init(L, e, a->node[i + 1], 1, shape, &def, b)) && ok;
}

static IrNode *build_linear(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  // [N, features], or [N, T, features] for a sequence of tokens (applied at
  // each position, as PyTorch's nn.Linear is). An image takes a flatten
  // first: applied to its last dimension, a linear layer is almost always a
  // forgotten flatten.
  if (x->ndim != 2 && x->ndim != 3) {
    const char *hint = x->ndim > 3 ? "add 'flatten' before 'linear'"
                                   : "linear needs a feature dimension: declare the input as f32[features]";
    diag_error(L->d, a->call, hint, "linear: expects an input [N, features] or [N, T, features], found %s",
               tshape(x, b));
    return NULL;
  }
  int64_t in = x->shape[x->ndim - 1], out = arg_int(a, 1);
  if (in == IR_N) {
    diag_error(L->d, a->call, NULL, "linear: the input %s has the batch dimension last", tshape(x, b));
    return NULL;
  }
  if ((double)in * (double)out > MAX_ELEMS) {
    diag_error(L->d, a->loc[1], "use fewer output features, or reduce the input with pooling first",
               "linear: the weight [%lld,%lld] would have more than %lld elements",
               (long long)out, (long long)in, MAX_ELEMS);
    return NULL;
  }
  IrInit winit, binit, def = fan_in_uniform(in);
  if (!layer_inits(L, e, a, 3, 2, (int64_t[]){out, in}, def, &winit, &binit))
    return NULL;
  const char *scope = next_scope(L, e, "linear");
  IrOp kind = arg_num(a, 5) != 0 ? IR_BUFFER : IR_PARAM;   // frozen: state, not trained
  IrNode *w = new_param(L, kind, scope, "weight", 2, (int64_t[]){out, in}, winit, a->call);
  w->frozen = kind == IR_BUFFER;
  IrNode *y = node(L, IR_MATMUL, (IrNode *[]){x, w}, 2, a->call);
  y->attr.i[1] = 1;   // tb: weights are [out, in], as PyTorch stores them
  if (!(y = finish(L, y, scope)))
    return NULL;
  if (arg_num(a, 2) == 0)
    return y;
  IrNode *bias = new_param(L, kind, scope, "bias", 1, (int64_t[]){out}, binit, a->call);
  bias->frozen = kind == IR_BUFFER;
  return finish(L, node(L, IR_ADD, (IrNode *[]){y, bias}, 2, a->call), scope);
}

// Whether groups (argument gi of a) divides the input channels c and the
// output channels o; reports if not.
static bool check_groups(Lower *L, const Args *a, int gi, const char *fn, int64_t c, int64_t o) {
  int64_t groups = arg_int(a, gi);
  if (c % groups == 0 && o % groups == 0)
    return true;
  char hint[160];
  snprintf(hint, sizeof hint, "each group takes C/groups input channels to out/groups outputs: "
           "choose groups that divide %lld and %lld", (long long)c, (long long)o);
  diag_error(L->d, a->loc[gi], hint, "%s: groups %lld does not divide the %s channels (%lld)", fn,
             (long long)groups, c % groups ? "input" : "output", (long long)(c % groups ? c : o));
  return false;
}

static IrNode *build_conv2d(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 4) {
    const char *hint = x->ndim == 3 ? "declare image inputs as f32[channels, height, width], e.g. f32[1, 28, 28]"
                                    : "conv2d works on images [N, C, H, W]";
    diag_error(L->d, a->call, hint, "conv2d: expects an input [N, C, H, W], found %s", tshape(x, b));
    return NULL;
  }
  int64_t c = x->shape[1], o = arg_int(a, 1), k[2], s[2], p[2], dil[2], groups = arg_int(a, 6);
  arg_pair(a, 2, k);
  arg_pair(a, 3, s);
  arg_pair(a, 4, p);
  arg_pair(a, 5, dil);
  if (!check_groups(L, a, 6, "conv2d", c, o))
    return NULL;
  int64_t cg = c / groups;
  double wsize = (double)o * (double)cg * (double)k[0] * (double)k[1];
  if (wsize > MAX_ELEMS) {
    diag_error(L->d, a->call, NULL, "conv2d: the weight [%lld,%lld,%lld,%lld] would have more than %lld elements",
               (long long)o, (long long)cg, (long long)k[0], (long long)k[1], MAX_ELEMS);
    return NULL;
  }
  IrInit winit, binit;
  if (!layer_inits(L, e, a, 8, 4, (int64_t[]){o, cg, k[0], k[1]}, fan_in_uniform(cg * k[0] * k[1]), &winit,
                   &binit))
    return NULL;
  const char *scope = next_scope(L, e, "conv2d");
  IrOp kind = arg_num(a, 10) != 0 ? IR_BUFFER : IR_PARAM;   // frozen: state, not trained
  IrNode *src[3] = {x, new_param(L, kind, scope, "weight", 4, (int64_t[]){o, cg, k[0], k[1]}, winit, a->call)};
  int nsrc = 2;
  if (arg_num(a, 7) != 0)
    src[nsrc++] = new_param(L, kind, scope, "bias", 1, (int64_t[]){o}, binit, a->call);
  for (int i = 1; i < nsrc; i++)
    src[i]->frozen = kind == IR_BUFFER;
  IrNode *y = node(L, IR_CONV2D, src, nsrc, a->call);
  int64_t attrs[7] = {s[0], s[1], p[0], p[1], dil[0], dil[1], groups};
  memcpy(y->attr.i, attrs, sizeof attrs);
  return finish(L, y, scope);
}

// conv_transpose2d(out, kernel, stride, pad, output_pad, dilation, groups,
// bias): nn.ConvTranspose2d, which is the input gradient of the conv2d that
// takes its output's shape to its input's: a CONV2D_GRAD_INPUT node of x
// and the weight [C, out/groups, KH, KW] (the conv2d's [O, C/groups, KH,
// KW] with O = C), whose preset shape is the transposed convolution's
// output. output_pad adds rows and columns that no input reaches through
// the stride (only the bias).
static IrNode *build_conv_transpose2d(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 4) {
    const char *hint = x->ndim == 3 ? "declare image inputs as f32[channels, height, width], e.g. f32[1, 28, 28]"
                                    : "conv_transpose2d works on images [N, C, H, W]";
    diag_error(L->d, a->call, hint, "conv_transpose2d: expects an input [N, C, H, W], found %s", tshape(x, b));
    return NULL;
  }
  int64_t c = x->shape[1], o = arg_int(a, 1), k[2], s[2], p[2], op[2], dil[2], out[2], groups = arg_int(a, 7);
  if (!check_groups(L, a, 7, "conv_transpose2d", c, o))
    return NULL;
  arg_pair(a, 2, k);
  arg_pair(a, 3, s);
  arg_pair(a, 4, p);
  arg_pair(a, 5, op);
  arg_pair(a, 6, dil);
  for (int i = 0; i < 2; i++) {
    if (op[i] >= s[i]) {
      diag_error(L->d, a->loc[5], "output_pad adds at most stride - 1 rows or columns (PyTorch's larger output_pad below the "
                 "dilation is not supported)",
                 "conv_transpose2d: output_pad %lld must be smaller than the stride %lld (along %s)",
                 (long long)op[i], (long long)s[i], i ? "the width" : "the height");
      return NULL;
    }
    double len = (double)(x->shape[2 + i] - 1) * s[i] - 2.0 * p[i] + (double)dil[i] * (k[i] - 1) + op[i] + 1;
    if (len < 1) {
      diag_error(L->d, a->loc[4], "use less padding or a larger kernel",
                 "conv_transpose2d: the output's %s would be %.0f: the padding %lld removes more than the input gives",
                 i ? "width" : "height", len, (long long)p[i]);
      return NULL;
    }
    if (len > MAX_ELEMS) {
      diag_error(L->d, a->call, NULL, "conv_transpose2d: the output's %s would be %.0f", i ? "width" : "height", len);
      return NULL;
    }
    out[i] = (int64_t)len;
  }
  int64_t og = o / groups;
  if ((double)og * (double)c * (double)k[0] * (double)k[1] > MAX_ELEMS) {
    diag_error(L->d, a->call, NULL,
               "conv_transpose2d: the weight [%lld,%lld,%lld,%lld] would have more than %lld elements",
               (long long)c, (long long)og, (long long)k[0], (long long)k[1], MAX_ELEMS);
    return NULL;
  }
  const char *scope = next_scope(L, e, "conv_transpose2d");
  IrInit init = fan_in_uniform(og * k[0] * k[1]);   // PyTorch's fan-in: the weight's dimension 1 times KH*KW
  IrNode *w = new_param(L, IR_PARAM, scope, "weight", 4, (int64_t[]){c, og, k[0], k[1]}, init, a->call);
  IrNode *y = node(L, IR_CONV2D_GRAD_INPUT, (IrNode *[]){x, w}, 2, a->call);
  int64_t attrs[7] = {s[0], s[1], p[0], p[1], dil[0], dil[1], groups};
  memcpy(y->attr.i, attrs, sizeof attrs);
  y->ndim = 4;
  memcpy(y->shape, (int64_t[]){x->shape[0], o, out[0], out[1]}, sizeof(int64_t) * 4);
  if (!(y = finish(L, y, scope)) || arg_num(a, 8) == 0)
    return y;
  IrNode *bias = new_param(L, IR_PARAM, scope, "bias", 1, (int64_t[]){o}, init, a->call);
  IrNode *b3 = reshape_to(L, bias, 3, (int64_t[]){o, 1, 1}, a->call, scope);
  return b3 ? finish(L, node(L, IR_ADD, (IrNode *[]){y, b3}, 2, a->call), scope) : NULL;
}

// maxpool(kernel, stride = kernel, pad = 0, dilation = 1) and avgpool.
static IrNode *build_pool(Lower *L, Env *e, const Args *a, IrOp op, const char *kind) {
  IrNode *y = node(L, op, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  int64_t k[2], s[2], p[2], dil[2] = {1, 1};
  arg_pair(a, 1, k);
  arg_pair(a, a->given[2] ? 2 : 1, s);
  arg_pair(a, 3, p);
  if (op == IR_MAXPOOL)
    arg_pair(a, 4, dil);
  int64_t attrs[8] = {k[0], k[1], s[0], s[1], p[0], p[1], dil[0], dil[1]};
  memcpy(y->attr.i, attrs, sizeof(int64_t) * (op == IR_MAXPOOL ? 8 : 6));
  return finish(L, y, next_scope(L, e, kind));
}

static IrNode *build_maxpool(Lower *L, Env *e, const Args *a) { return build_pool(L, e, a, IR_MAXPOOL, "maxpool"); }
static IrNode *build_avgpool(Lower *L, Env *e, const Args *a) { return build_pool(L, e, a, IR_AVGPOOL, "avgpool"); }

static IrNode *build_simple(Lower *L, Env *e, const Args *a, IrOp op, const char *kind) {
  return finish(L, node(L, op, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call), next_scope(L, e, kind));
}

static IrNode *build_global_avgpool(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_GLOBAL_AVGPOOL, "global_avgpool"); }
static IrNode *build_relu(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_RELU, "relu"); }
static IrNode *build_sigmoid(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_SIGMOID, "sigmoid"); }
static IrNode *build_tanh(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_TANH, "tanh"); }
static IrNode *build_exp(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_EXP, "exp"); }
static IrNode *build_log(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_LOG, "log"); }

// The activations of PyTorch's torch.nn beyond relu, sigmoid and tanh: one
// elementwise node each, its parameters as attributes.
static IrNode *build_gelu(Lower *L, Env *e, const Args *a) {
  IrNode *y = node(L, IR_GELU, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.i[0] = arg_num(a, 1) != 0;
  return finish(L, y, next_scope(L, e, "gelu"));
}

static IrNode *build_leaky_relu(Lower *L, Env *e, const Args *a) {
  IrNode *y = node(L, IR_LEAKY_RELU, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.f[0] = arg_num(a, 1);
  return finish(L, y, next_scope(L, e, "leaky_relu"));
}

static IrNode *build_elu(Lower *L, Env *e, const Args *a) {
  IrNode *y = node(L, IR_ELU, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.f[0] = arg_num(a, 1);
  return finish(L, y, next_scope(L, e, "elu"));
}

static IrNode *build_softplus(Lower *L, Env *e, const Args *a) {
  double beta = arg_num(a, 1);
  if (!(beta > 0)) {
    diag_error(L->d, a->loc[1], "softplus computes log(1 + exp(beta * x)) / beta: give a beta above 0, e.g. beta = 1",
               "softplus: beta must be positive, found %g", beta);
    return NULL;
  }
  IrNode *y = node(L, IR_SOFTPLUS, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.f[0] = beta;
  y->attr.f[1] = arg_num(a, 2);
  return finish(L, y, next_scope(L, e, "softplus"));
}

// clamp(x, min, max): either bound may be left out, not both.
static IrNode *build_clamp(Lower *L, Env *e, const Args *a) {
  if (!a->given[1] && !a->given[2]) {
    diag_error(L->d, a->call, "give min, max or both, e.g. clamp(min = 0) or clamp(-1, 1)",
               "clamp: needs at least one bound");
    return NULL;
  }
  if (a->given[1] && a->given[2] && arg_num(a, 1) > arg_num(a, 2)) {
    diag_error(L->d, a->loc[1], "swap the bounds: min comes first",
               "clamp: min (%g) is greater than max (%g)", arg_num(a, 1), arg_num(a, 2));
    return NULL;
  }
  IrNode *y = node(L, IR_CLAMP, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  for (int i = 0; i < 2; i++) {
    y->attr.i[i] = a->given[1 + i];
    y->attr.f[i] = a->given[1 + i] ? arg_num(a, 1 + i) : 0;
  }
  return finish(L, y, next_scope(L, e, "clamp"));
}

static IrNode *build_silu(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_SILU, "silu"); }
static IrNode *build_sqrt(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_SQRT, "sqrt"); }
static IrNode *build_abs(Lower *L, Env *e, const Args *a) { return build_simple(L, e, a, IR_ABS, "abs"); }

// An axis of x given as a number (negative counts from the end, as in
// PyTorch), in [0, ndim); -1 after reporting one out of range at loc.
static int axis_of(Lower *L, const char *fn, const IrNode *x, int64_t axis, SrcLoc loc) {
  int64_t k = axis < 0 ? axis + x->ndim : axis;
  if (k < 0 || k >= x->ndim) {
    char b[96], hint[160];
    snprintf(hint, sizeof hint, "%s has %d dimensions: axes 0 to %d, or -1 to -%d counting from the end",
             tshape(x, b), x->ndim, x->ndim - 1, x->ndim);
    diag_error(L->d, loc, hint, "%s: axis %lld is out of range for %s", fn, (long long)axis, b);
    return -1;
  }
  return (int)k;
}

// softmax(x, axis = -1): over the last dimension, the classes of [N, C].
static IrNode *build_softmax_impl(Lower *L, Env *e, const Args *a, IrOp op, const char *kind) {
  IrNode *x = arg_tensor(a, 0);
  int axis = axis_of(L, kind, x, arg_int(a, 1), a->given[1] ? a->loc[1] : a->call);
  if (axis < 0)
    return NULL;
  if (axis == 0 && ir_is_batched(x)) {
    diag_error(L->d, a->given[1] ? a->loc[1] : a->call, "normalize over the dimensions of one sample, e.g. axis = -1",
               "%s: cannot normalize over the batch dimension", kind);
    return NULL;
  }
  IrNode *y = node(L, op, (IrNode *[]){x}, 1, a->call);
  y->attr.i[0] = axis;
  return finish(L, y, next_scope(L, e, kind));
}

// x with its dimensions in the order order[0..n) (dimension i of the result
// is dimension order[i] of x); the batch dimension must stay first.
static IrNode *permute_to(Lower *L, Env *e, const Args *a, const char *fn, const int64_t *order, const SrcLoc *loc) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (ir_is_batched(x) && order[0] != 0) {
    int from = 0;
    while (order[from] != 0)
      from++;
    diag_error(L->d, loc[from], "the batch dimension N stays first; reorder the dimensions of one sample",
               "%s: cannot move the batch dimension of %s", fn, tshape(x, b));
    return NULL;
  }
  IrNode *y = node(L, IR_PERMUTE, (IrNode *[]){x}, 1, a->call);
  memcpy(y->attr.i, order, sizeof(int64_t) * x->ndim);
  return finish(L, y, next_scope(L, e, fn));
}

// transpose(x, a = -2, b = -1): dimensions a and b swapped.
static IrNode *build_transpose(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  if (x->ndim < 2) {
    char b[96];
    diag_error(L->d, a->call, NULL, "transpose: %s has fewer than 2 dimensions", tshape(x, b));
    return NULL;
  }
  SrcLoc at1 = a->given[1] ? a->loc[1] : a->call, at2 = a->given[2] ? a->loc[2] : a->call;
  int d1 = axis_of(L, "transpose", x, arg_int(a, 1), at1), d2 = axis_of(L, "transpose", x, arg_int(a, 2), at2);
  if (d1 < 0 || d2 < 0)
    return NULL;
  int64_t order[IR_MAX_DIMS];
  SrcLoc loc[IR_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) {
    order[i] = i;
    loc[i] = a->call;
  }
  order[d1] = d2;
  order[d2] = d1;
  loc[d1] = at2;
  loc[d2] = at1;
  return permute_to(L, e, a, "transpose", order, loc);
}

// permute(x, d0, d1, ...): every dimension of x once, as PyTorch's x.permute.
static IrNode *build_permute(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (a->nints != x->ndim) {
    diag_error(L->d, a->call, "give every dimension once, in the new order, e.g. permute(x, 0, 2, 1, 3)",
               "permute: %s has %d dimensions, but the order lists %d", tshape(x, b), x->ndim, a->nints);
    return NULL;
  }
  int64_t order[IR_MAX_DIMS];
  bool seen[IR_MAX_DIMS] = {0};
  for (int i = 0; i < a->nints; i++) {
    int d = axis_of(L, "permute", x, a->ints[i], a->ints_loc[i]);
    if (d < 0)
      return NULL;
    if (seen[d]) {
      diag_error(L->d, a->ints_loc[i], "give every dimension once, in the new order",
                 "permute: dimension %d is given twice", d);
      return NULL;
    }
    seen[d] = true;
    order[i] = d;
  }
  return permute_to(L, e, a, "permute", order, a->ints_loc);
}

static IrNode *build_softmax(Lower *L, Env *e, const Args *a) { return build_softmax_impl(L, e, a, IR_SOFTMAX, "softmax"); }
static IrNode *build_log_softmax(Lower *L, Env *e, const Args *a) { return build_softmax_impl(L, e, a, IR_LOG_SOFTMAX, "log_softmax"); }

static IrNode *build_dropout(Lower *L, Env *e, const Args *a) {
  double p = arg_num(a, 1);
  if (!(p >= 0 && p < 1)) {
    diag_error(L->d, a->loc[1], "p is the probability of zeroing an element, from 0 up to (not including) 1",
               "dropout: p must be in [0, 1), found %g", p);
    return NULL;
  }
  IrNode *y = node(L, IR_DROPOUT, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.f[0] = p;
  return finish(L, y, next_scope(L, e, "dropout"));
}

static IrNode *build_gaussian_noise(Lower *L, Env *e, const Args *a) {
  double std = arg_num(a, 1);
  if (!(std >= 0 && std <= 1e6)) {
    diag_error(L->d, a->loc[1], "std is the standard deviation of the noise added in training (0: none)",
               "gaussian_noise: std must be in [0, 1e6], found %g", std);
    return NULL;
  }
  IrNode *y = node(L, IR_GAUSSIAN_NOISE, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.f[0] = std;
  return finish(L, y, next_scope(L, e, "gaussian_noise"));
}

static IrNode *build_batchnorm(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 2 && x->ndim != 4) {
    diag_error(L->d, a->call, "batchnorm normalizes [N, C] features or [N, C, H, W] feature maps",
               "batchnorm: expects an input [N, C] or [N, C, H, W], found %s", tshape(x, b));
    return NULL;
  }
  double eps = arg_num(a, 1), mom = arg_num(a, 2);
  if (!(eps > 0)) {
    diag_error(L->d, a->loc[1], NULL, "batchnorm: eps must be positive, found %g", eps);
    return NULL;
  }
  if (!(mom >= 0 && mom <= 1)) {
    diag_error(L->d, a->loc[2], NULL, "batchnorm: momentum must be in [0, 1], found %g", mom);
    return NULL;
  }
  const char *scope = next_scope(L, e, "batchnorm");
  int64_t c = x->shape[1];
  IrNode *src[5] = {
      x,
      new_param(L, IR_PARAM, scope, "weight", 1, &c, (IrInit){INIT_ONES, 0, 0}, a->call),
      new_param(L, IR_PARAM, scope, "bias", 1, &c, (IrInit){INIT_ZEROS, 0, 0}, a->call),
      new_param(L, IR_BUFFER, scope, "running_mean", 1, &c, (IrInit){INIT_ZEROS, 0, 0}, a->call),
      new_param(L, IR_BUFFER, scope, "running_var", 1, &c, (IrInit){INIT_ONES, 0, 0}, a->call),
  };
  IrNode *y = node(L, IR_BATCHNORM, src, 5, a->call);
  y->attr.f[0] = eps;
  y->attr.f[1] = mom;
  return finish(L, y, scope);
}

// layernorm(x, eps = 1e-5, affine = true, dims = 1): PyTorch's
// nn.LayerNorm over the last dims dimensions; with affine, a weight (ones)
// and a bias (zeros) of those dimensions' shape, applied after the
// normalization as a mul and an add (which run in its epilogue).
static IrNode *build_layernorm(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  double eps = arg_num(a, 1);
  int64_t k = arg_int(a, 3);
  int per_sample = x->ndim - ir_is_batched(x);
  if (k > per_sample) {
    char hint[160];
    snprintf(hint, sizeof hint, "dims counts the last dimensions of one sample: at most %d for %s", per_sample,
             tshape(x, b));
    diag_error(L->d, a->given[3] ? a->loc[3] : a->call, hint, "layernorm: dims = %lld is more than the %d dimensions of a sample of %s",
               (long long)k, per_sample, b);
    return NULL;
  }
  if (!(eps > 0)) {
    diag_error(L->d, a->loc[1], NULL, "layernorm: eps must be positive, found %g", eps);
    return NULL;
  }
  const char *scope = next_scope(L, e, "layernorm");
  IrNode *y = node(L, IR_LAYERNORM, (IrNode *[]){x}, 1, a->call);
  y->attr.i[0] = k;
  y->attr.f[0] = eps;
  if (!(y = finish(L, y, scope)) || arg_num(a, 2) == 0)
    return y;
  const int64_t *shape = x->shape + x->ndim - k;
  IrNode *w = new_param(L, IR_PARAM, scope, "weight", (int)k, shape, (IrInit){INIT_ONES, 0, 0}, a->call);
  IrNode *bias = new_param(L, IR_PARAM, scope, "bias", (int)k, shape, (IrInit){INIT_ZEROS, 0, 0}, a->call);
  if (!(y = finish(L, node(L, IR_MUL, (IrNode *[]){y, w}, 2, a->call), scope)))
    return NULL;
  return finish(L, node(L, IR_ADD, (IrNode *[]){y, bias}, 2, a->call), scope);
}

// flatten: [N, d1, d2, ...] -> [N, d1*d2*...].
static IrNode *build_flatten(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  int64_t k = 1;
  bool batched = ir_is_batched(x);
  for (int i = batched ? 1 : 0; i < x->ndim; i++)
    k *= x->shape[i];
  int64_t shape[2] = {IR_N, k};
  return batched ? reshape_to(L, x, 2, shape, a->call, next_scope(L, e, "flatten"))
                 : reshape_to(L, x, 1, &k, a->call, next_scope(L, e, "flatten"));
}

// reshape(d1, d2, ...): the shape of one sample; one dimension may be -1.
static IrNode *build_reshape(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  bool batched = ir_is_batched(x);
  int64_t shape[IR_MAX_DIMS], known = 1, have = 1;
  int nd = 0, infer = -1;
  if (a->nints == 0) {
    diag_error(L->d, a->call, "give the shape of one sample, e.g. reshape(1, 28, 28)",
               "reshape: missing the new shape");
    return NULL;
  }
  if (batched)
    shape[nd++] = IR_N;
  for (int i = batched ? 1 : 0; i < x->ndim; i++)
    have *= x->shape[i];
  for (int i = 0; i < a->nints; i++) {
    if (a->ints[i] == -1) {
      if (infer >= 0) {
        diag_error(L->d, a->ints_loc[i], NULL, "reshape: only one dimension can be -1");
        return NULL;
      }
      infer = nd;
    } else {
      known *= a->ints[i];
    }
    shape[nd++] = a->ints[i];
  }
  if (infer >= 0) {
    if (have % known) {
      char b[96];
      diag_error(L->d, a->call, NULL, "reshape: %lld elements per sample of %s do not divide into %lld",
                 (long long)have, tshape(x, b), (long long)known);
      return NULL;
    }
    shape[infer] = have / known;
  }
  return reshape_to(L, x, nd, shape, a->call, next_scope(L, e, "reshape"));
}

// upsample(scale = 2): nearest, as nn.Upsample(scale_factor, mode='nearest')
// with whole factors. Each pixel x[n, c, h, w] is repeated over an sh x sw
// block: x viewed as [N, C, H, 1, W, 1] times ones [sh, 1, sw] broadcasts to
// [N, C, H, sh, W, sw], viewed as [N, C, H*sh, W*sw]. One fused loop (a
// multiply by 1, exact); its gradient sums each block's sh x sw taps.
static IrNode *build_upsample(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 4) {
    diag_error(L->d, a->call, "upsample works on images [N, C, H, W]",
               "upsample: expects an input [N, C, H, W], found %s", tshape(x, b));
    return NULL;
  }
  int64_t s[2];
  arg_pair(a, 1, s);
  const char *scope = next_scope(L, e, "upsample");
  int64_t *d = x->shape;
  if ((double)d[1] * d[2] * d[3] * s[0] * s[1] > MAX_ELEMS) {
    diag_error(L->d, a->loc[1], "use a smaller scale, or upsample a smaller input",
               "upsample: the result [N,%lld,%.0f,%.0f] has more than %lld elements per sample", (long long)d[1],
               (double)d[2] * s[0], (double)d[3] * s[1], MAX_ELEMS);
    return NULL;
  }
  IrNode *x6 = reshape_to(L, x, 6, (int64_t[]){d[0], d[1], d[2], 1, d[3], 1}, a->call, scope);
  if (!x6)
    return NULL;
  IrNode *ones = ir_leaf(L->g, IR_CONST, NULL, DT_F32, 3, (int64_t[]){s[0], 1, s[1]}, a->call);
  ones->attr.f[0] = 1;
  ones->scope = scope;
  IrNode *y = finish(L, node(L, IR_MUL, (IrNode *[]){x6, ones}, 2, a->call), scope);
  if (!y)
    return NULL;
  return reshape_to(L, y, 4, (int64_t[]){d[0], d[1], d[2] * s[0], d[3] * s[1]}, a->call, scope);
}

// An axis of x as a call gives it (negative: from the end), in range and
// not the batch dimension; -1 after a report.
static int tensor_axis(Lower *L, const char *fn, const IrNode *x, double v, SrcLoc loc, const char *doing) {
  char b[96], hint[160];
  if (v != floor(v)) {
    diag_error(L->d, loc, "axes are whole numbers: 1 is the first after N, -1 the last", "%s: axis must be a whole number, found %g", fn, v);
    return -1;
  }
  if (v < -x->ndim || v >= x->ndim) {
    snprintf(hint, sizeof hint, "%s has %d dimensions: axes 0 to %d, or -1 to -%d from the end", tshape(x, b),
             x->ndim, x->ndim - 1, x->ndim);
    diag_error(L->d, loc, hint, "%s: axis %g is out of range for %s", fn, v, tshape(x, b));
    return -1;
  }
  int axis = v < 0 ? (int)v + x->ndim : (int)v;
  if (x->shape[axis] == IR_N) {
    diag_error(L->d, loc, "axis 0 is the batch dimension N, whose samples stay apart; choose an axis from 1",
               "%s: cannot %s along the batch dimension N of %s", fn, doing, tshape(x, b));
    return -1;
  }
  return axis;
}

// x sliced along axis: the elements start, start + step, ... below stop,
// all three already in range (0 <= start < stop <= size, step >= 1).
static IrNode *slice_node(Lower *L, IrNode *x, int axis, int64_t start, int64_t stop, int64_t step, SrcLoc loc,
                          const char *scope) {
  IrNode *y = node(L, IR_SLICE, (IrNode *[]){x}, 1, loc);
  y->attr.i[0] = axis;
  y->attr.i[1] = start;
  y->attr.i[2] = stop;
  y->attr.i[3] = step;
  return finish(L, y, scope);
}

// concat(a, b, ..., axis): axis counts in the rank of the largest input;
// an input of one dimension fewer has no batch dimension and repeats along N.
static IrNode *build_concat(Lower *L, Env *e, const Args *a) {
  if (a->ntensors == 0) {
    diag_error(L->d, a->call, "concat(a, b, ..., axis = 1)", "concat: no tensors to concatenate");
    return NULL;
  }
  if (a->ntensors > IR_MAX_SRC) {
    diag_error(L->d, a->call, "concatenate in groups: concat(concat(a, b), concat(c, d), axis = 1)",
               "concat: %d tensors; at most %d in one concat", a->ntensors, IR_MAX_SRC);
    return NULL;
  }
  const IrNode *big = a->tensors[0];
  for (int i = 1; i < a->ntensors; i++)
    if (a->tensors[i]->ndim > big->ndim)
      big = a->tensors[i];
  int axis = tensor_axis(L, "concat", big, arg_num(a, 1), a->loc[1], "concatenate");
  if (axis < 0)
    return NULL;
  IrNode *y = node(L, IR_CONCAT, a->tensors, a->ntensors, a->call);
  y->attr.i[0] = axis;
  return finish(L, y, next_scope(L, e, "concat"));
}

// sum(x, a, b, ..., keepdim = false) and mean: over the axes given by
// position (or one as axis = k), or every axis but N when none is given.
static IrNode *build_reduce(Lower *L, Env *e, const Args *a, IrOp op, const char *fn) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  double axes[IR_MAX_DIMS];
  SrcLoc locs[IR_MAX_DIMS];
  int n = a->nints;
  for (int i = 0; i < n; i++) {
    axes[i] = (double)a->ints[i];
    locs[i] = a->ints_loc[i];
  }
  if (a->given[2]) {
    if (n) {
      diag_error(L->d, a->loc[2], "give the axes by position, sum(x, 1, 2), or one as axis = 1",
                 "%s: axes given both by position and as 'axis'", fn);
      return NULL;
    }
    axes[n] = arg_num(a, 2);
    locs[n++] = a->loc[2];
  }
  int64_t mask = 0;
  for (int i = 0; i < x->ndim && !n; i++)
    if (x->shape[i] != IR_N)
      mask |= (int64_t)1 << i;
  if (!n && !mask) {
    diag_error(L->d, a->call, "the samples of a batch stay apart", "%s: %s has no axis but N to reduce", fn,
               tshape(x, b));
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    int axis = tensor_axis(L, fn, x, axes[i], locs[i], "reduce");
    if (axis < 0)
      return NULL;
    if (mask >> axis & 1) {
      diag_error(L->d, locs[i], "name each axis once", "%s: axis %d is given twice", fn, axis);
      return NULL;
    }
    mask |= (int64_t)1 << axis;
  }
  int64_t count = 1;
  for (int i = 0; i < x->ndim; i++)
    if (mask >> i & 1)
      count *= x->shape[i];
  if (op == IR_MAX && count > (1 << 24)) {   // its gradient finds the first maximum by its position, a float
    diag_error(L->d, a->call, "take the max in steps, over fewer axes at a time",
               "max: %lld elements per result; at most 16777216", (long long)count);
    return NULL;
  }
  IrNode *y = node(L, op, (IrNode *[]){x}, 1, a->call);
  y->attr.i[0] = mask;
  y->attr.i[1] = arg_num(a, 3) != 0;
  return finish(L, y, next_scope(L, e, fn));
}

static IrNode *build_sum(Lower *L, Env *e, const Args *a) { return build_reduce(L, e, a, IR_SUM, "sum"); }
static IrNode *build_max(Lower *L, Env *e, const Args *a) { return build_reduce(L, e, a, IR_MAX, "max"); }
static IrNode *build_mean(Lower *L, Env *e, const Args *a) { return build_reduce(L, e, a, IR_MEAN, "mean"); }

// split(x, parts, axis = -1): x cut along axis into `parts` equal pieces.
static Value build_split(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  int axis = tensor_axis(L, "split", x, arg_num(a, 2), a->loc[2], "split");
  if (axis < 0)
    return ERR;
  int64_t parts = arg_int(a, 1), size = x->shape[axis];
  if (size % parts) {
    char b[96];
    diag_error(L->d, a->loc[1], "split cuts an axis into equal parts: choose a count that divides its size",
               "split: %lld parts do not divide axis %d of %s (size %lld)", (long long)parts, axis, tshape(x, b),
               (long long)size);
    return ERR;
  }
  if (parts > IR_MAX_SRC) {
    diag_error(L->d, a->loc[1], NULL, "split: %lld parts; at most %d", (long long)parts, IR_MAX_SRC);
    return ERR;
  }
  if (parts == 1)
    return tensor_value(x);   // one part: x itself, a single tensor
  const char *scope = next_scope(L, e, "split");
  Value v = {.kind = V_PARTS, .parts = arena_alloc(L->a, sizeof(IrNode *) * parts), .nparts = (int)parts};
  int64_t w = size / parts;
  for (int64_t i = 0; i < parts; i++)
    if (!(v.parts[i] = slice_node(L, x, axis, i * w, (i + 1) * w, 1, a->call, scope)))
      return ERR;
  return v;
}
// The product a @ b: a GEMM with a matrix b (a's leading dimensions fold
// into its rows), a batch of products when b has leading dimensions too.
static IrOp matmul_op(const IrNode *b) { return b->ndim > 2 ? IR_BATCH_MATMUL : IR_MATMUL; }

static IrNode *build_matmul(Lower *L, Env *e, const Args *a) {
  IrNode *y = node(L, matmul_op(arg_tensor(a, 1)), (IrNode *[]){arg_tensor(a, 0), arg_tensor(a, 1)}, 2, a->call);
  return finish(L, y, next_scope(L, e, "matmul"));
}

// embedding(vocab, dim): PyTorch's nn.Embedding, a table weight[vocab, dim]
// drawn from N(0, 1) whose rows the integer input x names.
static IrNode *build_embedding(Lower *L, Env *e, const Args *a) {
  int64_t vocab = arg_int(a, 1), dim = arg_int(a, 2);
  if ((double)vocab * (double)dim > MAX_ELEMS) {
    diag_error(L->d, a->call, NULL, "embedding: the weight [%lld,%lld] would have more than %lld elements",
               (long long)vocab, (long long)dim, MAX_ELEMS);
    return NULL;
  }
  const char *scope = next_scope(L, e, "embedding");
  IrNode *w = new_param(L, IR_PARAM, scope, "weight", 2, (int64_t[]){vocab, dim}, (IrInit){INIT_NORMAL, 0, 1},
                        a->call);
  return finish(L, node(L, IR_EMBEDDING, (IrNode *[]){arg_tensor(a, 0), w}, 2, a->call), scope);
}

//
// Recurrent layers, unrolled: each step is a GEMM of the previous hidden
// state (the LSTM's with the step's input beside it; the GRU's epilogue
// adds the step's part of one projection of every step's input), slices of
// the gates, and the gate arithmetic as elementwise nodes (which fuse into
// a loop or two per step). Autodiff and the memory planner see plain
// nodes, so backpropagation through time comes with them. Every node has
// the layer's scope: `nnc check` shows one row.
//

#define MAX_RNN_STEPS 1024   // steps of one recurrent layer (a concat's inputs; the graph's size)
#define RNN_STEP_NODES 24    // graph nodes one step adds, at most

typedef struct Rnn {
  Lower *L;
  SrcLoc loc;
  const char *scope;
} Rnn;

static IrNode *rnn_node(Rnn *r, IrOp op, IrNode *a, IrNode *b) {
  IrNode *src[2] = {a, b};
  return finish(r->L, node(r->L, op, src, b ? 2 : 1, r->loc), r->scope);
}

// x[..., k*h : (k+1)*h] along axis: gate k of a row of gates.
static IrNode *rnn_slice(Rnn *r, IrNode *x, int axis, int64_t start, int64_t stop) {
  if (!x)
    return NULL;
  IrNode *y = node(r->L, IR_SLICE, (IrNode *[]){x}, 1, r->loc);
  y->attr.i[0] = axis;
  y->attr.i[1] = start;
  y->attr.i[2] = stop;
  y->attr.i[3] = 1;
  return finish(r->L, y, r->scope);
}

// a (op) b, NULL when either is (an error was reported).
static IrNode *rnn_bin(Rnn *r, IrOp op, IrNode *a, IrNode *b) {
  return a && b ? rnn_node(r, op, a, b) : NULL;
}

static IrNode *rnn_un(Rnn *r, IrOp op, IrNode *a) { return a ? rnn_node(r, op, a, NULL) : NULL; }

// [a, b] along the last axis of two matrices, NULL when either is.
static IrNode *rnn_concat(Rnn *r, IrNode *a, IrNode *b) {
  if (!a || !b)
    return NULL;
  IrNode *y = node(r->L, IR_CONCAT, (IrNode *[]){a, b}, 2, r->loc);
  y->attr.i[0] = 1;
  return finish(r->L, y, r->scope);
}

// a @ w^T, w stored [out, in] as PyTorch's.
static IrNode *rnn_matmul(Rnn *r, IrNode *a, IrNode *w) {
  if (!a)
    return NULL;
  IrNode *y = node(r->L, IR_MATMUL, (IrNode *[]){a, w}, 2, r->loc);
  y->attr.i[1] = 1;
  return finish(r->L, y, r->scope);
}

// lstm(x, hidden, sequence = false) and gru(...): x[N, T, I] -> the last
// hidden state [N, H], or every step's [N, T, H].
static IrNode *build_rnn(Lower *L, Env *e, const Args *a, bool lstm) {
  const char *fn = lstm ? "lstm" : "gru";
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 3 || x->shape[0] != IR_N || x->shape[1] == IR_N || x->shape[2] == IR_N) {
    const char *hint = x->ndim == 2 ? "make a sequence of one feature per step with reshape(steps, 1), or "
                                      "declare the input as f32[steps, features]"
                                    : "reshape the input to [steps, features] first, e.g. image -> reshape(28, 28)";
    diag_error(L->d, a->call, hint, "%s: expects an input [N, steps, features], found %s", fn, tshape(x, b));
    return NULL;
  }
  int64_t T = x->shape[1], I = x->shape[2], H = arg_int(a, 1), G = (lstm ? 4 : 3) * H;
  if ((double)G * (double)(I > H ? I : H) > MAX_ELEMS) {
    diag_error(L->d, a->loc[1], "use a smaller hidden size", "%s: the weights [%lld,%lld] would have more than %lld elements",
               fn, (long long)G, (long long)(I > H ? I : H), MAX_ELEMS);
    return NULL;
  }
  if (T > MAX_RNN_STEPS || L->g->nnodes + T * RNN_STEP_NODES > MAX_EXPANDED) {
    char hint[160];
    snprintf(hint, sizeof hint, "the layer is unrolled into graph nodes for every step; "
             "split the sequence into chunks of at most %d steps, or pool it first", MAX_RNN_STEPS);
    diag_error(L->d, a->call, hint, "%s: %lld steps are too many to unroll%s", fn, (long long)T,
               T > MAX_RNN_STEPS ? "" : " in what is left of the graph");
    return NULL;
  }
  Rnn r = {L, a->call, next_scope(L, e, fn)};
  IrInit init = fan_in_uniform(H);   // U(-1/sqrt(H), 1/sqrt(H)), PyTorch's for every tensor
  IrNode *w_ih = new_param(L, IR_PARAM, r.scope, "weight_ih", 2, (int64_t[]){G, I}, init, a->call);
  IrNode *w_hh = new_param(L, IR_PARAM, r.scope, "weight_hh", 2, (int64_t[]){G, H}, init, a->call);
  IrNode *b_ih = new_param(L, IR_PARAM, r.scope, "bias_ih", 1, &G, init, a->call);
  IrNode *b_hh = new_param(L, IR_PARAM, r.scope, "bias_hh", 1, &G, init, a->call);

  // The GRU projects every step's input at once, [N, T, G] viewed as [N,
  // T * G], so that a step's slice is [N, G] with no reshape after it
  // (which would copy it): a load at an offset in the step's loop. It
  // keeps b_hh for the step, where r scales its n part. The LSTM's step is
  // one product, [x_t, h] [W_ih, W_hh]^T + (b_ih + b_hh), K = I + H: a
  // projection of all steps at once (57 MB at batch 1000) came back from
  // memory slice by slice, and one of x_t alone (K = 28 for lstm.nn) ran
  // at 0.85 of the step's product's speed, its result stored and read
  // back. The step's loop writes h into [x_t, h] directly, and the
  // gradient of h takes the product with W_hh alone (pass_simplify's
  // slice_product), not x_t's columns too.
  IrNode *xp = NULL, *bias = NULL, *w_cat = NULL;
  if (lstm) {
    bias = rnn_bin(&r, IR_ADD, b_ih, b_hh);
    w_cat = rnn_concat(&r, w_ih, w_hh);
  } else {
    xp = rnn_bin(&r, IR_ADD, rnn_matmul(&r, x, w_ih), b_ih);
    if (xp)
      xp = reshape_to(L, xp, 2, (int64_t[]){IR_N, T * G}, r.loc, r.scope);
  }
  IrNode *h = NULL, *c = NULL;
  IrNode **seq = arg_num(a, 2) ? arena_alloc(L->a, sizeof(IrNode *) * T) : NULL;
  for (int64_t t = 0; t < T; t++) {
    if (lstm) {
      // gates = [x_t, h] [W_ih, W_hh]^T + b_ih + b_hh, in order i, f, g, o;
      // at step 0 (h = 0) x_t W_ih^T + b_ih + b_hh.
      IrNode *xt = rnn_slice(&r, x, 1, t, t + 1);
      if (xt)
        xt = reshape_to(L, xt, 2, (int64_t[]){IR_N, I}, r.loc, r.scope);
      IrNode *gates = t ? rnn_bin(&r, IR_ADD, rnn_matmul(&r, rnn_concat(&r, xt, h), w_cat), bias)
                        : rnn_bin(&r, IR_ADD, rnn_matmul(&r, xt, w_ih), bias);
      IrNode *i = rnn_un(&r, IR_SIGMOID, rnn_slice(&r, gates, 1, 0, H));
      IrNode *g = rnn_un(&r, IR_TANH, rnn_slice(&r, gates, 1, 2 * H, 3 * H));
      IrNode *o = rnn_un(&r, IR_SIGMOID, rnn_slice(&r, gates, 1, 3 * H, 4 * H));
      IrNode *ig = rnn_bin(&r, IR_MUL, i, g);
      if (t) {
        IrNode *f = rnn_un(&r, IR_SIGMOID, rnn_slice(&r, gates, 1, H, 2 * H));
        c = rnn_bin(&r, IR_ADD, rnn_bin(&r, IR_MUL, f, c), ig);
      } else {
        c = ig;
      }
      h = rnn_bin(&r, IR_MUL, o, rnn_un(&r, IR_TANH, c));
    } else {
      // r, z, n: r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z),
      // n = tanh(x_n + r * h_n), h' = (1 - z) n + z h = n + z (h - n),
      // with h_k = h W_hk^T + b_hk (just b_hk at step 0).
      // The step's parts of the projection are slices of it at x0.
      IrNode *hp = t ? rnn_bin(&r, IR_ADD, rnn_matmul(&r, h, w_hh), b_hh) : b_hh;
      int ax = t ? 1 : 0;
      int64_t x0 = t * G;
      IrNode *rg = rnn_un(&r, IR_SIGMOID, rnn_bin(&r, IR_ADD, rnn_slice(&r, xp, 1, x0, x0 + H),
                                                   rnn_slice(&r, hp, ax, 0, H)));
      IrNode *z = rnn_un(&r, IR_SIGMOID, rnn_bin(&r, IR_ADD, rnn_slice(&r, xp, 1, x0 + H, x0 + 2 * H),
                                                  rnn_slice(&r, hp, ax, H, 2 * H)));
      IrNode *n = rnn_un(&r, IR_TANH, rnn_bin(&r, IR_ADD, rnn_slice(&r, xp, 1, x0 + 2 * H, x0 + 3 * H),
                                               rnn_bin(&r, IR_MUL, rg, rnn_slice(&r, hp, ax, 2 * H, 3 * H))));
      if (t)
        h = rnn_bin(&r, IR_ADD, n, rnn_bin(&r, IR_MUL, z, rnn_bin(&r, IR_SUB, h, n)));
      else   // (1 - z) n = n - z n
        h = rnn_bin(&r, IR_SUB, n, rnn_bin(&r, IR_MUL, z, n));
    }
    if (!h)
      return NULL;
    if (seq && !(seq[t] = reshape_to(L, h, 3, (int64_t[]){IR_N, 1, H}, r.loc, r.scope)))
      return NULL;
  }
  if (!seq)
    return h;
  IrNode *y = node(L, IR_CONCAT, seq, (int)T, r.loc);
  y->attr.i[0] = 1;
  return finish(L, y, r.scope);
}

static IrNode *build_lstm(Lower *L, Env *e, const Args *a) { return build_rnn(L, e, a, true); }
static IrNode *build_gru(Lower *L, Env *e, const Args *a) { return build_rnn(L, e, a, false); }

#define T(n) {n, A_TENSOR, true, 0, 0}
#define I(n, req, def, lo) {n, A_INT, req, def, lo}
#define P(n, req, def, lo) {n, A_PAIR, req, def, lo}
#define N(n, def) {n, A_NUM, false, def, 0}
#define B(n, def) {n, A_BOOL, false, def, 0}
#define INIT(n) {n, A_INIT, false, 0, 0}
#define SIG(name, usage, ...) \
  {name, (const ArgSpec[]){__VA_ARGS__}, sizeof((ArgSpec[]){__VA_ARGS__}) / sizeof(ArgSpec), usage}

static const Builtin builtins[] = {
    {SIG("linear", "(x, out, bias = true, init = default, bias_init = default, frozen = false)", T("x"),
         I("out", true, 0, 1), B("bias", 1), INIT("init"), INIT("bias_init"), B("frozen", 0)), build_linear},
    {SIG("conv2d", "(x, out, kernel, stride = 1, pad = 0, dilation = 1, groups = 1, bias = true, init = default, "
                   "bias_init = default, frozen = false)", T("x"),
         I("out", true, 0, 1), P("kernel", true, 0, 1), P("stride", false, 1, 1), P("pad", false, 0, 0),
         P("dilation", false, 1, 1), I("groups", false, 1, 1), B("bias", 1), INIT("init"), INIT("bias_init"),
         B("frozen", 0)), build_conv2d},
    {SIG("conv_transpose2d",
         "(x, out, kernel, stride = 1, pad = 0, output_pad = 0, dilation = 1, groups = 1, bias = true)", T("x"),
         I("out", true, 0, 1), P("kernel", true, 0, 1), P("stride", false, 1, 1), P("pad", false, 0, 0),
         P("output_pad", false, 0, 0), P("dilation", false, 1, 1), I("groups", false, 1, 1), B("bias", 1)),
     build_conv_transpose2d},
    {SIG("maxpool", "(x, kernel, stride = kernel, pad = 0, dilation = 1)", T("x"), P("kernel", true, 0, 1),
         P("stride", false, 0, 1), P("pad", false, 0, 0), P("dilation", false, 1, 1)), build_maxpool},
    {SIG("avgpool", "(x, kernel, stride = kernel, pad = 0)", T("x"), P("kernel", true, 0, 1),
         P("stride", false, 0, 1), P("pad", false, 0, 0)), build_avgpool},
    {SIG("global_avgpool", "(x)", T("x")), build_global_avgpool},
    {SIG("upsample", "(x, scale = 2)", T("x"), P("scale", false, 2, 1)), build_upsample},
    {SIG("batchnorm", "(x, eps = 1e-5, momentum = 0.1)", T("x"), N("eps", 1e-5), N("momentum", 0.1)), build_batchnorm},
    {SIG("dropout", "(x, p = 0.5)", T("x"), N("p", 0.5)), build_dropout},
    {SIG("layernorm", "(x, eps = 1e-5, affine = true, dims = 1)", T("x"), N("eps", 1e-5), B("affine", 1),
         I("dims", false, 1, 1)), build_layernorm},
    {SIG("gaussian_noise", "(x, std)", T("x"), {"std", A_NUM, true, 0, 0}), build_gaussian_noise},
    {SIG("flatten", "(x)", T("x")), build_flatten},
    {SIG("reshape", "(x, d1, d2, ...)", T("x"), {"dims", A_INTS, false, 0, 1}), build_reshape},
    {SIG("relu", "(x)", T("x")), build_relu},
    {SIG("sigmoid", "(x)", T("x")), build_sigmoid},
    {SIG("tanh", "(x)", T("x")), build_tanh},
    {SIG("exp", "(x)", T("x")), build_exp},
    {SIG("log", "(x)", T("x")), build_log},
    {SIG("softmax", "(x, axis = -1)", T("x"), I("axis", false, -1, -MAX_ELEMS)), build_softmax},
    {SIG("log_softmax", "(x, axis = -1)", T("x"), I("axis", false, -1, -MAX_ELEMS)), build_log_softmax},
    {SIG("matmul", "(a, b)", T("a"), T("b")), build_matmul},
    {SIG("embedding", "(x, vocab, dim)", T("x"), I("vocab", true, 0, 1), I("dim", true, 0, 1)), build_embedding},
    // activations with parameters, and sqrt, abs
    {SIG("gelu", "(x, tanh = false)", T("x"), B("tanh", 0)), build_gelu},
    {SIG("leaky_relu", "(x, slope = 0.01)", T("x"), N("slope", 0.01)), build_leaky_relu},
    {SIG("silu", "(x)", T("x")), build_silu},
    {SIG("elu", "(x, alpha = 1)", T("x"), N("alpha", 1)), build_elu},
    {SIG("softplus", "(x, beta = 1, threshold = 20)", T("x"), N("beta", 1), N("threshold", 20)), build_softplus},
    {SIG("sqrt", "(x)", T("x")), build_sqrt},
    {SIG("abs", "(x)", T("x")), build_abs},
    {SIG("clamp", "(x, min, max)", T("x"), N("min", 0), N("max", 0)), build_clamp},
    {SIG("concat", "(a, b, ..., axis = k)", {"tensors", A_TENSORS, true, 0, 0}, {"axis", A_NUM, true, 0, 0}),
     build_concat},
    {SIG("split", "(x, parts, axis = -1)", T("x"), I("parts", true, 0, 1), N("axis", -1)), NULL},
    {SIG("sum", "(x, axis, ..., keepdim = false)", T("x"), {"axes", A_INTS, false, 0, -MAX_ELEMS}, N("axis", 0),
         B("keepdim", 0)), build_sum},
    {SIG("mean", "(x, axis, ..., keepdim = false)", T("x"), {"axes", A_INTS, false, 0, -MAX_ELEMS}, N("axis", 0),
         B("keepdim", 0)), build_mean},
    {SIG("max", "(x, axis, ..., keepdim = false)", T("x"), {"axes", A_INTS, false, 0, -MAX_ELEMS}, N("axis", 0),
         B("keepdim", 0)), build_max},
    {SIG("transpose", "(x, a = -2, b = -1)", T("x"), I("a", false, -2, -MAX_ELEMS), I("b", false, -1, -MAX_ELEMS)),
     build_transpose},
    {SIG("permute", "(x, d0, d1, ...)", T("x"), {"dims", A_INTS, false, 0, -MAX_ELEMS}), build_permute},
    {SIG("lstm", "(x, hidden, sequence = false)", T("x"), I("hidden", true, 0, 1), B("sequence", 0)), build_lstm},
    {SIG("gru", "(x, hidden, sequence = false)", T("x"), I("hidden", true, 0, 1), B("sequence", 0)), build_gru},
};

// Names that mean something else where a layer is expected.
static const char *const loss_names[] = {"cross_entropy", "nll", "mse", "l1", "bce_with_logits"};
static const char *const optim_names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
static const char *const init_names[] = {"zeros", "ones", "constant", "normal", "uniform"};

static const Builtin *find_builtin(const char *name) {
  for (int i = 0; i < countof(builtins); i++)
    if (!strcmp(builtins[i].sig.name, name))
      return &builtins[i];
  return NULL;
}

static bool in_list(const char *name, const char *const *list, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i], name))
      return true;
  return false;
}

static bool is_builtin_name(const char *name) { return find_builtin(name) != NULL; }

static const Decl *find_block(Lower *L, const char *name) { return strmap_get(&L->block_index, name); }

// Suggests a layer, block or value name close to name, or NULL.
static const char *suggest(Lower *L, Env *e, const char *name, bool values) {
  PtrVec c = {0};
  for (int i = 0; i < countof(builtins); i++)
    ptrvec_push(L->a, &c, (void *)builtins[i].sig.name);
  for (int i = 0; i < L->blocks.len; i++)
    ptrvec_push(L->a, &c, (void *)((const Decl *)L->blocks.data[i])->name);
  if (values)
    for (Binding *b = e->names; b; b = b->next)
      ptrvec_push(L->a, &c, (void *)b->name);
  return suggest_name(name, (const char *const *)c.data, c.len);
}

//
// Blocks
//

static Value lower_body(Lower *L, Env *e, AstNode **body, int n, const char *what);

// Expands a call of block b: a new scope "b_k." where `x` is the input
// tensor and the block's parameters are the call's numbers.
static Value expand_block(Lower *L, Env *e, const Decl *b, const AstNode *call, const Value *piped,
                          SrcLoc piped_loc) {
  for (Env *c = e; c; c = c->caller)
    if (c->decl == b) {
      StrBuf chain = {0};
      sb_puts(&chain, b->name);
      for (Env *c2 = e; c2 && c2->decl; c2 = c2->caller) {
        sb_printf(&chain, " <- %s", c2->decl->name);
        if (c2->decl == b)
          break;
      }
      diag_error(L->d, call->loc, "blocks cannot call themselves, directly or through other blocks",
                 "block '%s' is recursive (%s)", b->name, chain.data);
      sb_free(&chain);
      return ERR;
    }
  if (e->depth >= MAX_EXPAND_DEPTH) {
    diag_error(L->d, call->loc, NULL, "blocks are nested more than %d deep", MAX_EXPAND_DEPTH);
    return ERR;
  }
  // Each call copies the block's body, so blocks that call the next one
  // twice grow the graph exponentially: stop at a bound, before memory runs out.
  if (L->too_big)
    return ERR;
  if (L->g->nnodes + ++L->block_calls > MAX_EXPANDED) {
    L->too_big = true;
    diag_error(L->d, call->loc, "each block call copies the block's body; a block that calls another twice doubles it",
               "the model expands to more than %d graph nodes and block calls", MAX_EXPANDED);
    return ERR;
  }
  ArgSpec *specs = arena_alloc(L->a, sizeof(ArgSpec) * (b->nparams + 1));
  StrBuf usage = {0};
  sb_puts(&usage, "(x");
  specs[0] = (ArgSpec)T("x");
  for (int i = 0; i < b->nparams; i++) {
    specs[i + 1] = (ArgSpec){b->params[i], A_NUM, true, 0, 0};
    sb_printf(&usage, ", %s", b->params[i]);
  }
  sb_puts(&usage, ")");
  Signature sig = {b->name, specs, b->nparams + 1, arena_strdup(L->a, usage.data)};
  sb_free(&usage);
  if (b->nparams > MAX_BLOCK_PARAMS) {
    diag_error(L->d, b->loc, NULL, "block '%s' has more than %d parameters", b->name, MAX_BLOCK_PARAMS);
    return ERR;
  }
  Args a;
  if (!bind_args(L, e, &sig, call, piped, piped_loc, &a))
    return ERR;
  Env inner = {.prefix = arena_printf(L->a, "%s.", next_scope(L, e, b->name)),
               .decl = b, .caller = e, .call_loc = call->loc, .depth = e->depth + 1};
  Binding *xb = arena_alloc(L->a, sizeof *xb);
  *xb = (Binding){"x", a.v[0], b->loc, "block input", true, NULL};
  add_binding(L, &inner, xb);
  for (int i = 0; i < b->nparams; i++)
    if (strcmp(b->params[i], "x") && !lookup(&inner, b->params[i]))   // else collect() reported it
      bind(L, &inner, b->params[i], b->param_locs[i], a.v[i + 1], "block parameter");
  for (Binding *p = inner.names; p; p = p->next)
    p->used = true;   // unused block parameters are not worth a warning
  int before = L->d->nerrors;
  Value v = lower_body(L, &inner, b->body, b->nbody, "block");
  if (L->d->nerrors > before)
    diag_note(L->d, call->loc, "in block '%s' called here", b->name);
  return v;
}

//
// Expressions
//

// A call f(args), or the stage of a pipeline with the piped value.
static Value eval_call(Lower *L, Env *e, const AstNode *call, const Value *piped, SrcLoc piped_loc) {
  const char *name = call->name;
  const Builtin *bi = find_builtin(name);
  const Decl *blk = find_block(L, name);
  if (!bi && !blk) {
    char hint[200];
    const char *s = suggest(L, e, name, false);
    Binding *v = lookup(e, name);
    if (v)
      snprintf(hint, sizeof hint, "'%s' is a %s, not a layer", name, v->what);
    else if (in_list(name, loss_names, countof(loss_names)))
      snprintf(hint, sizeof hint, "'%s' is a loss: declare it after the model with `loss %s`", name, name);
    else if (in_list(name, optim_names, countof(optim_names)))
      snprintf(hint, sizeof hint, "'%s' is an optimizer: declare it with `optimizer %s(...)`", name, name);
    else if (s)
      snprintf(hint, sizeof hint, "did you mean '%s'?", s);
    else
      snprintf(hint, sizeof hint, "layers are linear, conv2d, maxpool, avgpool, global_avgpool, batchnorm, "
               "dropout, flatten, reshape, relu, sigmoid, tanh, softmax, log_softmax, ...");
    diag_error(L->d, call->loc, hint, "unknown layer '%s'", name);
    return ERR;
  }
  if (piped && piped->kind == V_ERR)
    return ERR;
  if (blk)
    return expand_block(L, e, blk, call, piped, piped_loc);
  Args a;
  if (!bind_args(L, e, &bi->sig, call, piped, piped_loc, &a))
    return ERR;
  if (!bi->build)
    return build_split(L, e, &a);
  return tensor_value(bi->build(L, e, &a));
}

// `lhs -> stage`: the stage is called with lhs as its first argument.
static Value eval_pipe(Lower *L, Env *e, const AstNode *n) {
  Value lhs = eval(L, e, n->lhs);
  if (lhs.kind == V_NUM || lhs.kind == V_TUPLE) {
    diag_error(L->d, n->lhs->loc, "a pipeline starts from a tensor: an input or a value",
               "the left side of '->' is %s, not a tensor", lhs.kind == V_NUM ? "a number" : "a tuple");
    return ERR;
  }
  const AstNode *stage = n->rhs;
  if (stage->kind != AST_IDENT && stage->kind != AST_CALL) {
    diag_error(L->d, stage->loc, "write a layer such as relu or linear(10) after '->'",
               "expected a layer after '->'");
    return ERR;
  }
  return eval_call(L, e, stage, &lhs, n->lhs->loc);
}

static const char *op_kind(char op) {
  switch (op) {
  case '+': return "add";
  case '-': return "sub";
  case '*': return "mul";
  case '/': return "div";
  case '@': return "matmul";
  }
  unreachable();
}

// A constant scalar tensor, so that `2 * x` is a broadcast multiply.
static IrNode *const_node(Lower *L, double v, SrcLoc loc, const char *scope) {
  IrNode *c = ir_leaf(L->g, IR_CONST, NULL, DT_F32, 0, NULL, loc);
  c->attr.f[0] = v;
  c->scope = scope;
  return c;
}

static Value eval_binop(Lower *L, Env *e, const AstNode *n) {
  Value a = eval(L, e, n->lhs), b = eval(L, e, n->rhs);
  if (a.kind == V_ERR || b.kind == V_ERR)
    return ERR;
  if (a.kind == V_TUPLE || b.kind == V_TUPLE) {
    diag_error(L->d, n->loc, "a tuple (a, b) is only an argument, such as kernel = (3, 5)",
               "'%c' cannot take a tuple", n->op);
    return ERR;
  }
  if ((a.kind == V_NUM && a.is_bool) || (b.kind == V_NUM && b.is_bool)) {
    diag_error(L->d, n->loc, NULL, "'%c' cannot take true or false", n->op);
    return ERR;
  }
  if (a.kind == V_NUM && b.kind == V_NUM) {
    switch (n->op) {
    case '+': return num_value(a.num + b.num);
    case '-': return num_value(a.num - b.num);
    case '*': return num_value(a.num * b.num);
    case '/':
      if (b.num == 0) {
        diag_error(L->d, n->loc, NULL, "division by zero");
        return ERR;
      }
      return num_value(a.num / b.num);
    case '@':
      diag_error(L->d, n->loc, "'@' is the matrix product of two tensors", "'@' between two numbers");
      return ERR;
    }
    unreachable();
  }
  if (n->op == '@' && (a.kind != V_TENSOR || b.kind != V_TENSOR)) {
    diag_error(L->d, n->loc, "use '*' to scale a tensor by a number", "'@' needs a tensor on each side");
    return ERR;
  }
  const Value *num = a.kind == V_NUM ? &a : b.kind == V_NUM ? &b : NULL;
  if (num && fabs(num->num) > FLT_MAX) {   // a constant tensor of infinity, found only when training diverges
    diag_error(L->d, num == &a ? n->lhs->loc : n->rhs->loc, "tensors are float32: use a smaller number",
               "'%c': the number %g is beyond the range of float32 (about 3.4e38)", n->op, num->num);
    return ERR;
  }
  const char *scope = next_scope(L, e, op_kind(n->op));
  IrNode *x = a.kind == V_TENSOR ? a.t : const_node(L, a.num, n->lhs->loc, scope);
  IrNode *y = b.kind == V_TENSOR ? b.t : const_node(L, b.num, n->rhs->loc, scope);
  static const IrOp ops[128] = {['+'] = IR_ADD, ['-'] = IR_SUB, ['*'] = IR_MUL, ['/'] = IR_DIV, ['@'] = IR_MATMUL};
  IrOp op = n->op == '@' ? matmul_op(y) : ops[(int)n->op];
  return tensor_value(finish(L, node(L, op, (IrNode *[]){x, y}, 2, n->loc), scope));
}

static Value eval_ident(Lower *L, Env *e, const AstNode *n) {
  Binding *b = lookup(e, n->name);
  if (b) {
    b->used = true;
    if (b->v.kind == V_TENSOR && b->v.t->op == IR_TARGET) {
      diag_error(L->d, n->loc, "the target is only for the loss; the model computes its output from its inputs",
                 "'%s' is the target; the model cannot use it", n->name);
      return ERR;
    }
    return b->v;
  }
  if (find_builtin(n->name) || find_block(L, n->name)) {
    char hint[160];
    snprintf(hint, sizeof hint, "call it on a tensor: x -> %s%s or %s(x%s)", n->name,
             find_builtin(n->name) && find_builtin(n->name)->sig.nargs == 1 ? "" : "(...)",
             n->name, find_builtin(n->name) && find_builtin(n->name)->sig.nargs == 1 ? "" : ", ...");
    diag_error(L->d, n->loc, hint, "'%s' is a %s, not a value", n->name, find_builtin(n->name) ? "layer" : "block");
    return ERR;
  }
  // Defined further down the body?
  const Decl *decl = e->decl;
  for (int i = 0; decl && i < decl->nbody; i++) {
    const AstNode *s = decl->body[i];
    if (s->name && s->kind != AST_EXPR && !strcmp(s->name, n->name) && (s->loc.line > n->loc.line || (s->loc.line == n->loc.line && s->loc.col > n->loc.col))) {
      char hint[120];
      snprintf(hint, sizeof hint, "'%s' is defined at %d:%d; define values before using them",
               n->name, s->loc.line, s->loc.col);
      diag_error(L->d, n->loc, hint, "'%s' is used before it is defined", n->name);
      return ERR;
    }
  }
  const char *s = suggest(L, e, n->name, true);
  char hint[160];
  if (s)
    snprintf(hint, sizeof hint, "did you mean '%s'?", s);
  else if (e->decl && e->decl->kind == DECL_BLOCK)
    snprintf(hint, sizeof hint, "a block sees only its input x, its parameters and its own values");
  else
    snprintf(hint, sizeof hint, "declare it with `input`, `param`, or `name = ...` before this line");
  diag_error(L->d, n->loc, hint, "unknown name '%s'", n->name);
  return ERR;
}

// (a, b, ...): numbers known at compile time. Tensors are refused for now.
static Value eval_tuple(Lower *L, Env *e, const AstNode *n) {
  double *nums = arena_alloc(L->a, sizeof(double) * n->nargs);
  bool ok = true;
  for (int i = 0; i < n->nargs; i++) {
    Value v = eval(L, e, n->args[i]);
    if (v.kind == V_ERR) {
      ok = false;
    } else if (v.kind != V_NUM || v.is_bool) {
      diag_error(L->d, n->args[i]->loc, "a tuple holds numbers, such as kernel = (3, 5)",
                 "a tuple of numbers cannot hold %s", value_what(L, v));
      ok = false;
    } else {
      nums[i] = v.num;
    }
  }
  return ok ? (Value){.kind = V_TUPLE, .nums = nums, .n = n->nargs} : ERR;
}

// An index or a part of a range: a whole number, or NULL (left out) as
// dflt. False after a report.
static bool index_number(Lower *L, Env *e, const AstNode *n, const char *what, int64_t dflt, int64_t *out) {
  *out = dflt;
  if (!n)
    return true;
  Value v = eval(L, e, n);
  if (v.kind == V_ERR)
    return false;
  if (v.kind != V_NUM || v.is_bool || !isfinite(v.num) || v.num != floor(v.num)) {
    diag_error(L->d, n->loc, "indexes are whole numbers known when the model is compiled",
               "%s must be a whole number, found %s", what,
               v.kind == V_TENSOR ? "a tensor" : v.kind == V_TUPLE ? "a tuple" : v.is_bool ? "true or false"
                                                                          : "a fraction");
    return false;
  }
  if (fabs(v.num) > MAX_ELEMS) {
    diag_error(L->d, n->loc, NULL, "%s is out of range (%.17g; at most %lld either way)", what, v.num, MAX_ELEMS);
    return false;
  }
  *out = (int64_t)v.num;
  return true;
}

// x[i, a:b:c, ..., ...]: each index picks along one axis, from the first (N
// too: only `:` may index it). An integer drops its axis; a range keeps it,
// with PyTorch's rules: negative indexes count from the end, and start and
// stop are clamped to the axis. `...` stands for every axis not indexed.
static Value eval_index(Lower *L, Env *e, const AstNode *n) {
  Value v = eval(L, e, n->lhs);
  if (v.kind == V_ERR)
    return ERR;
  if (v.kind != V_TENSOR) {
    diag_error(L->d, n->loc, "only tensors have elements to index", "cannot index %s",
               v.is_bool ? "true or false" : "a number");
    return ERR;
  }
  IrNode *x = v.t;
  char b[96];
  int ellipsis = -1, given = 0;
  for (int i = 0; i < n->nargs; i++) {
    if (n->args[i]->kind != AST_ELLIPSIS) {
      given++;
    } else if (ellipsis >= 0) {
      diag_error(L->d, n->args[i]->loc, NULL, "an index can have only one '...'");
      return ERR;
    } else {
      ellipsis = i;
    }
  }
  if (given > x->ndim) {
    diag_error(L->d, n->args[x->ndim + (ellipsis >= 0 && ellipsis <= x->ndim)]->loc,
               "give at most one index per dimension (the first is N's, always ':')",
               "too many indexes: %d for %s, which has %d dimensions", given, tshape(x, b), x->ndim);
    return ERR;
  }
  const char *scope = next_scope(L, e, "slice");
  int64_t keep[IR_MAX_DIMS];   // the result's shape, without the axes an integer drops
  int nkeep = 0, axis = 0;
  bool dropped = false;
  IrNode *y = x;
  for (int i = 0; i < n->nargs; i++) {
    const AstNode *it = n->args[i];
    if (it->kind == AST_ELLIPSIS) {
      for (int k = 0; k < x->ndim - given; k++, axis++)
        keep[nkeep++] = x->shape[axis];
      continue;
    }
    int64_t size = x->shape[axis], start, stop, step = 1;
    if (size == IR_N) {
      bool all = it->kind == AST_RANGE && !it->args[0] && !it->args[1] && !it->args[2];
      if (!all) {
        diag_error(L->d, it->loc, "axis 0 is the batch dimension N, whose samples stay apart: index it with ':'",
                   "cannot index the batch dimension N of %s", tshape(x, b));
        return ERR;
      }
      keep[nkeep++] = IR_N;
      axis++;
      continue;
    }
    if (it->kind != AST_RANGE) {   // an integer: one element, and the axis goes
      if (!index_number(L, e, it, "an index", 0, &start))
        return ERR;
      int64_t at = start < 0 ? start + size : start;
      if (at < 0 || at >= size) {
        diag_error(L->d, it->loc, "indexes run from 0 to size - 1, or from -size to -1 counting from the end",
                   "slice past the end: index %lld on axis %d of size %lld", (long long)start, axis,
                   (long long)size);
        return ERR;
      }
      stop = at + 1;
      start = at;
      dropped = true;
    } else {
      if (!index_number(L, e, it->args[2], "a step", 1, &step))
        return ERR;
      if (step < 1) {
        diag_error(L->d, it->args[2]->loc, "a step is at least 1; reversing (a negative step) is not supported",
                   "the step must be at least 1, found %lld", (long long)step);
        return ERR;
      }
      if (!index_number(L, e, it->args[0], "a start", 0, &start) ||
          !index_number(L, e, it->args[1], "a stop", size, &stop))
        return ERR;
      int64_t from = start < 0 ? start + size : start, to = stop < 0 ? stop + size : stop;
      from = from < 0 ? 0 : from > size ? size : from;
      to = to < 0 ? 0 : to > size ? size : to;
      if (from >= to) {
        char r[96], a0[32] = "", a1[32] = "";
        if (it->args[0])
          snprintf(a0, sizeof a0, "%lld", (long long)start);
        if (it->args[1])
          snprintf(a1, sizeof a1, "%lld", (long long)stop);
        snprintf(r, sizeof r, "%s:%s", a0, a1);
        diag_error(L->d, it->loc, "a range selects start, start + step, ... below stop; it must select something",
                   "slice past the end: the range %s on axis %d of size %lld is empty", r, axis, (long long)size);
        return ERR;
      }
      start = from;
      stop = to;
      keep[nkeep++] = (stop - start + step - 1) / step;
    }
    if (start != 0 || stop != size || step != 1) {
      y = slice_node(L, y, axis, start, stop, step, it->loc, scope);
      if (!y)
        return ERR;
    }
    axis++;
  }
  for (; axis < x->ndim; axis++)   // axes after the last index stay whole
    keep[nkeep++] = x->shape[axis];
  if (dropped)
    y = reshape_to(L, y, nkeep, keep, n->loc, scope);
  return tensor_value(y);
}

// Any expression's value: several tensors (a split) too, which only `a, b,
// ... = ` takes apart; everywhere else (eval) they are an error.
static Value eval_parts(Lower *L, Env *e, const AstNode *n) {
  switch (n->kind) {
  case AST_INDEX:
    return eval_index(L, e, n);
  case AST_NUM:
    return num_value(n->num);
  case AST_BOOL: {
    Value v = num_value(n->num);
    v.is_bool = true;
    return v;
  }
  case AST_IDENT:
    return eval_ident(L, e, n);
  case AST_CALL:
    return eval_call(L, e, n, NULL, n->loc);
  case AST_PIPE:
    return eval_pipe(L, e, n);
  case AST_BINOP:
    return eval_binop(L, e, n);
  case AST_NEG: {
    Value v = eval(L, e, n->lhs);
    if (v.kind == V_NUM && !v.is_bool)
      return num_value(-v.num);
    if (v.kind != V_TENSOR) {
      if (v.kind == V_NUM)
        diag_error(L->d, n->loc, NULL, "'-' cannot take true or false");
      else if (v.kind == V_TUPLE)
        diag_error(L->d, n->loc, "negate each number: (-a, -b)", "'-' cannot take a tuple");
      return ERR;
    }
    return tensor_value(finish(L, node(L, IR_NEG, (IrNode *[]){v.t}, 1, n->loc), next_scope(L, e, "neg")));
  }
  case AST_KWARG:
    diag_error(L->d, n->loc, NULL, "a keyword argument '%s = ...' outside a call", n->name);
    return ERR;
  case AST_TUPLE:
    return eval_tuple(L, e, n);
  default:
    break;
  }
  unreachable();
}

static Value eval(Lower *L, Env *e, const AstNode *n) {
  Value v = eval_parts(L, e, n);
  if (v.kind != V_PARTS)
    return v;
  char hint[160];
  snprintf(hint, sizeof hint, "name each part: %s = ...", v.nparts == 2 ? "a, b" : v.nparts == 3 ? "a, b, c" : "a, b, c, ...");
  diag_error(L->d, n->loc, hint, "this gives %d tensors, where one is expected", v.nparts);
  return ERR;
}

// `a, b, c = value`: value gives as many tensors (a split), one per name.
static void lower_unpack(Lower *L, Env *e, const AstNode *s) {
  Value v = eval_parts(L, e, s->lhs);
  if (v.kind != V_ERR && (v.kind != V_PARTS || v.nparts != s->nargs)) {
    int have = v.kind == V_PARTS ? v.nparts : 1;
    diag_error(L->d, s->close, "give one name per part: split(x, k) gives k tensors",
               "%d names for %d %s", s->nargs, have, have == 1 ? "value" : "tensors");
    v = ERR;
  }
  for (int i = 0; i < s->nargs; i++)
    bind(L, e, s->args[i]->name, s->args[i]->loc, v.kind == V_PARTS ? tensor_value(v.parts[i]) : ERR, "value");
}

//
// Declarations in a body
//

// Evaluates a dimension or class count: a whole number in [1, MAX_ELEMS].
static int64_t eval_size(Lower *L, Env *e, const AstNode *n, const char *what) {
  Value v = eval(L, e, n);
  if (v.kind == V_ERR)
    return -1;
  if (v.kind != V_NUM || v.is_bool || v.num != floor(v.num) || !isfinite(v.num)) {
    diag_error(L->d, n->loc, NULL, "%s must be a whole number", what);
    return -1;
  }
  if (v.num < 1) {
    diag_error(L->d, n->loc, "sizes are at least 1", "%s must be at least 1, found %g", what, v.num);
    return -1;
  }
  if (v.num > MAX_ELEMS) {
    diag_error(L->d, n->loc, NULL, "%s is too large (%.17g; at most %lld)", what, v.num, MAX_ELEMS);
    return -1;
  }
  return (int64_t)v.num;
}

// Reads a type f32[d1, ...] (or, for an input, i32[d1, ...]) into shape
// (after a leading IR_N when batched). Returns ndim, or -1 after a report.
static int eval_type(Lower *L, Env *e, const AstType *t, bool batched, int64_t *shape, const char *whose) {
  if (!strcmp(t->dtype, "i32") && !(batched && L->typing_input)) {
    diag_error(L->d, t->loc, "integers are indexes that embedding looks up, declared as inputs; a class "
               "target is class(K), other tensors f32[...]", "'%s' cannot hold integers (i32); only an input can",
               whose);
    return -1;
  }
  if (strcmp(t->dtype, "f32") && strcmp(t->dtype, "i32")) {
    const char *names[] = {"f32", "i32"};
    const char *s = suggest_name(t->dtype, names, 2);
    char hint[64];
    snprintf(hint, sizeof hint, "did you mean '%s'?", s ? s : "");
    diag_error(L->d, t->loc, s ? hint : "tensors hold 32-bit floats (f32[...]); inputs may hold integers (i32[...])",
               "unknown element type '%s' for %s", t->dtype, whose);
    return -1;
  }
  int nd = 0;
  if (batched)
    shape[nd++] = IR_N;
  if (nd + t->ndims > IR_MAX_DIMS) {
    diag_error(L->d, t->loc, NULL, "%s has %d dimensions; at most %d", whose, t->ndims, IR_MAX_DIMS - nd);
    return -1;
  }
  double total = 1;
  for (int i = 0; i < t->ndims; i++) {
    int64_t k = eval_size(L, e, t->dims[i], "a dimension");
    if (k < 0)
      return -1;
    total *= k;
    shape[nd++] = k;
  }
  if (total > MAX_ELEMS) {
    diag_error(L->d, t->loc, NULL, "%s has more than %lld elements", whose, MAX_ELEMS);
    return -1;
  }
  return nd;
}

static void lower_input(Lower *L, Env *e, const AstNode *s) {
  if (e->decl->kind == DECL_BLOCK) {
    diag_error(L->d, s->loc, "a block's input is x; declare inputs in the model",
               "'%s' declared inside block '%s'", s->kind == AST_INPUT ? "input" : "target", e->decl->name);
    return;
  }
  const AstType *t = s->type;
  IrNode *n;
  if (s->kind == AST_INPUT)
    L->saw_input = true;
  else
    L->saw_target = true;
  if (!strcmp(t->dtype, "class")) {
    if (s->kind == AST_INPUT) {
      diag_error(L->d, t->loc, "inputs are tensors of numbers such as f32[28, 28]; class(K) is for targets",
                 "input '%s' cannot be a class index", s->name);
      bind(L, e, s->name, s->loc, ERR, "input");
      return;
    }
    if (t->ndims != 1)
      diag_error(L->d, t->loc, "write class(K) with the number of classes K", "class takes one argument, found %d",
                 t->ndims);
    int64_t k = t->ndims == 1 ? eval_size(L, e, t->dims[0], "the number of classes") : -1;
    if (k >= 0 && k < 2)
      diag_error(L->d, t->dims[0]->loc, NULL, "a class target needs at least 2 classes, found %lld", (long long)k);
    if (k < 2) {
      bind(L, e, s->name, s->loc, ERR, "target");
      return;
    }
    n = ir_leaf(L->g, IR_TARGET, s->name, DT_I32, 1, (int64_t[]){IR_N}, s->loc);
    n->attr.i[0] = k;
  } else {
    int64_t shape[IR_MAX_DIMS];
    L->typing_input = s->kind == AST_INPUT;
    int nd = eval_type(L, e, t, true, shape, s->name);
    L->typing_input = false;
    if (nd < 0) {
      bind(L, e, s->name, s->loc, ERR, s->kind == AST_INPUT ? "input" : "target");
      return;
    }
    n = ir_leaf(L->g, s->kind == AST_INPUT ? IR_INPUT : IR_TARGET, s->name,
                !strcmp(t->dtype, "i32") ? DT_I32 : DT_F32, nd, shape, s->loc);
  }
  if (!bind(L, e, s->name, s->loc, tensor_value(n), s->kind == AST_INPUT ? "input" : "target"))
    return;
  if (s->kind == AST_INPUT) {
    if (!L->m->input)
      L->m->input = n;
    return;
  }
  Model *m = L->m;
  if (m->ntargets == IR_MAX_TARGETS) {
    diag_error(L->d, s->loc, NULL, "a model has at most %d targets", IR_MAX_TARGETS);
    return;
  }
  IrNode **ts = arena_alloc(L->a, sizeof(IrNode *) * (m->ntargets + 1));
  for (int i = 0; i < m->ntargets; i++)
    ts[i] = m->targets[i];
  ts[m->ntargets++] = n;
  m->targets = ts;
  m->target = ts[0];
}

// The index of c's name among names; else reports "unknown WHAT" with a
// suggestion and the list of what there is, and returns -1.
static int lookup_name(Lower *L, const char *const *names, int n, const AstNode *c, const char *what,
                       const char *list) {
  for (int k = 0; k < n; k++)
    if (!strcmp(names[k], c->name))
      return k;
  const char *s = suggest_name(c->name, names, n);
  char hint[256];
  snprintf(hint, sizeof hint, "%s%s%s%s", s ? "did you mean '" : "", s ? s : "", s ? "'? " : "", list);
  diag_error(L->d, c->loc, hint, "unknown %s '%s'", what, c->name);
  return -1;
}

// torch.nn.init's initializers that depend on a weight's fans (fan_in =
// shape[1]·receptive field, fan_out = shape[0]·receptive field): xavier with
// gain 1, kaiming (fan_in) with relu's gain √2. `xavier` and `kaiming` are
// the uniform ones.
static const char *const fan_init_names[] = {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                                             "xavier", "kaiming"};

static bool fan_init(Lower *L, const AstNode *n, int k, int ndim, const int64_t *shape, IrInit *out) {
  const char *name = fan_init_names[k];
  if (n->kind == AST_CALL && n->nargs > 0) {
    diag_error(L->d, n->args[0]->loc, NULL, "%s takes no arguments (its gain is PyTorch's default: %s)", name,
               k == 0 || k == 1 || k == 4 ? "1" : "sqrt(2), for relu");
    return false;
  }
  if (ndim < 0)
    return false;   // the shape's own error was reported
  if (ndim < 2) {
    char b[96];
    diag_error(L->d, n->loc, "use it for a weight; a bias takes default, zeros, normal(...) or uniform(...)",
               "%s needs a tensor of at least 2 dimensions for its fans, found f32%s", name,
               ir_shape_str(ndim, shape, b, sizeof b));
    return false;
  }
  double rec = 1;
  for (int i = 2; i < ndim; i++)
    rec *= (double)shape[i];
  double fan_in = (double)shape[1] * rec, fan_out = (double)shape[0] * rec;
  bool xavier = k == 0 || k == 1 || k == 4, uniform = k == 0 || k == 2 || k >= 4;
  double std = xavier ? sqrt(2.0 / (fan_in + fan_out)) : sqrt(2.0) / sqrt(fan_in);
  double bound = sqrt(3.0) * std;   // a uniform with this std
  *out = uniform ? (IrInit){INIT_UNIFORM, -bound, bound} : (IrInit){INIT_NORMAL, 0, std};
  return true;
}

// Initializers: zeros, ones, constant(v), normal(mean, std), uniform(low, high),
// a plain number (constant), or one of fan_init_names for a tensor of shape
// [ndim] (ndim -1: unknown); with def (a layer's), `default` is def.
static bool eval_init(Lower *L, Env *e, const AstNode *n, int ndim, const int64_t *shape, const IrInit *def,
                      IrInit *out) {
  if ((n->kind == AST_IDENT && !lookup(e, n->name)) || n->kind == AST_CALL) {
    for (int k = 0; k < countof(fan_init_names); k++)
      if (!strcmp(n->name, fan_init_names[k]))
        return fan_init(L, n, k, ndim, shape, out);
    if (!strcmp(n->name, "default") && n->kind == AST_IDENT) {
      if (!def) {
        diag_error(L->d, n->loc, "give the parameter an initializer, e.g. xavier_uniform or normal(0, 0.02)",
                   "'default' is a layer's own initializer; a parameter has none");
        return false;
      }
      *out = *def;
      return true;
    }
  }
  static const ArgSpec cargs[] = {{"value", A_NUM, true, 0, 0}};
  static const ArgSpec nargs[] = {{"mean", A_NUM, false, 0, 0}, {"std", A_NUM, false, 1, 0}};
  static const ArgSpec uargs[] = {{"low", A_NUM, false, 0, 0}, {"high", A_NUM, false, 1, 0}};
  static const Signature sigs[] = {
      {"zeros", NULL, 0, "no arguments"},
      {"ones", NULL, 0, "no arguments"},
      {"constant", cargs, 1, "(value)"},
      {"normal", nargs, 2, "(mean = 0, std = 1)"},
      {"uniform", uargs, 2, "(low = 0, high = 1)"},
  };
  if ((n->kind != AST_IDENT && n->kind != AST_CALL) || (n->kind == AST_IDENT && lookup(e, n->name))) {
    Value v = eval(L, e, n);
    if (v.kind == V_NUM && !v.is_bool && fabs(v.num) > FLT_MAX) {
      diag_error(L->d, n->loc, "parameters are float32: use a smaller value",
                 "the initial value %g is beyond the range of float32 (about 3.4e38)", v.num);
      return false;
    }
    if (v.kind == V_NUM && !v.is_bool && isfinite(v.num)) {
      *out = (IrInit){INIT_CONSTANT, v.num, 0};
      return true;
    }
    if (v.kind != V_ERR)
      diag_error(L->d, n->loc, "initializers are zeros, ones, constant(v), normal(mean, std), uniform(low, high), "
                 "xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal",
                 "a parameter's initializer must be a number or an initializer");
    return false;
  }
  int k = lookup_name(L, init_names, countof(init_names), n, "initializer",
                      "initializers are zeros, ones, constant(v), normal(mean, std), uniform(low, high), "
                      "xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal");
  if (k < 0)
    return false;
  Args a;
  if (!bind_args(L, e, &sigs[k], n, NULL, n->loc, &a))
    return false;
  *out = (IrInit){(InitKind)k, arg_num(&a, 0), arg_num(&a, 1)};
  for (int i = 0; i < sigs[k].nargs; i++)
    if (a.given[i] && fabs(arg_num(&a, i)) > FLT_MAX) {   // an infinite weight, found only when training diverges
      diag_error(L->d, a.loc[i], "parameters are float32: use a smaller value",
                 "%s: %s %g is beyond the range of float32 (about 3.4e38)", sigs[k].name, sigs[k].args[i].name,
                 arg_num(&a, i));
      return false;
    }
  if (k == INIT_NORMAL && arg_num(&a, 1) < 0) {
    diag_error(L->d, a.loc[1], NULL, "normal: std must not be negative, found %g", arg_num(&a, 1));
    return false;
  }
  if (k == INIT_UNIFORM && arg_num(&a, 0) > arg_num(&a, 1)) {
    diag_error(L->d, n->loc, NULL, "uniform: low (%g) is greater than high (%g)", arg_num(&a, 0), arg_num(&a, 1));
    return false;
  }
  return true;
}

static void lower_param(Lower *L, Env *e, const AstNode *s) {
  int64_t shape[IR_MAX_DIMS];
  int nd = eval_type(L, e, s->type, false, shape, s->name);
  IrInit init;
  if (!s->lhs)
    diag_error(L->d, s->loc, "add an initializer: = zeros, = normal(0, 0.01), = uniform(-0.1, 0.1), ...",
               "parameter '%s' has no initializer", s->name);
  if (!s->lhs || !eval_init(L, e, s->lhs, nd, shape, NULL, &init) || nd < 0) {
    bind(L, e, s->name, s->loc, ERR, "parameter");
    return;
  }
  const char *name = arena_printf(L->a, "%s%s", e->prefix, s->name);
  IrNode *p = ir_leaf(L->g, s->frozen ? IR_BUFFER : IR_PARAM, name, DT_F32, nd, shape, s->loc);   // frozen: state
  p->init = init;
  p->frozen = s->frozen;
  bind(L, e, s->name, s->loc, tensor_value(p), "parameter");
}

// Whether the loss declaration names name as an argument of a loss.
static bool names_arg(const AstNode *n, const char *name) {
  if (!n)
    return false;
  if (n->kind == AST_CALL)
    for (int i = 0; i < n->nargs; i++)
      if (n->args[i]->kind == AST_IDENT && !strcmp(n->args[i]->name, name))
        return true;
  return n->kind == AST_BINOP && (names_arg(n->lhs, name) || names_arg(n->rhs, name));
}

static bool in_loss(Lower *L, const char *name) {
  for (int i = 0; i < L->p->ndecls; i++)
    if (L->p->decls[i]->kind == DECL_LOSS && names_arg(L->p->decls[i]->call, name))
      return true;
  return false;
}

// A list `logits, recon` as the model's last statement: its outputs, each
// named after its value. Returns the first.
static Value lower_outputs(Lower *L, Env *e, const AstNode *s, bool last) {
  if (e->decl->kind != DECL_MODEL || !last) {
    diag_error(L->d, s->loc, e->decl->kind != DECL_MODEL ? "a block's result is one value" :
               "only the model's last statement lists its outputs",
               "a list of %d values where one is expected", s->nargs);
    return ERR;
  }
  Value first = ERR;
  bool ok = true;
  for (int i = 0; i < s->nargs; i++) {
    const AstNode *a = s->args[i];
    if (a->kind != AST_IDENT) {
      diag_error(L->d, a->loc, "name it first (`recon = ...`), then list its name", "each output must be a name");
      ok = false;
      continue;
    }
    for (int j = 0; j < i; j++)
      if (s->args[j]->kind == AST_IDENT && !strcmp(s->args[j]->name, a->name)) {
        diag_error(L->d, a->loc, NULL, "the output '%s' is listed twice", a->name);
        ok = false;
      }
    Value v = eval(L, e, a);
    if (v.kind == V_NUM) {
      diag_error(L->d, a->loc, NULL, "the output '%s' is a number, not a tensor", a->name);
      v = ERR;
    }
    if (v.kind == V_TENSOR && !ir_is_batched(v.t)) {
      diag_error(L->d, a->loc, "an output holds values per sample: compute it from an input",
                 "the output '%s' has no batch dimension N", a->name);
      v = ERR;
    }
    if (v.kind != V_TENSOR) {
      ok = false;
      continue;
    }
    if (i == 0)
      first = v;
    if (ok)
      ir_add_output(L->g, v.t, a->name);
  }
  return ok ? first : ERR;
}

// Lowers a body; returns the value of its last statement (the result).
static Value lower_body(Lower *L, Env *e, AstNode **body, int n, const char *what) {
  int errors = L->d->nerrors;
  Value result = ERR;
  bool have_result = false;
  for (int i = 0; i < n; i++) {
    const AstNode *s = body[i];
    bool last = i == n - 1;
    switch (s->kind) {
    case AST_INPUT:
    case AST_TARGET:
      lower_input(L, e, s);
      break;
    case AST_PARAM:
      lower_param(L, e, s);
      break;
    case AST_ASSIGN: {
      Value v = eval(L, e, s->lhs);
      bind(L, e, s->name, s->loc, v, "value");
      if (last) {
        result = v;
        have_result = true;
        Binding *b = lookup(e, s->name);
        if (b)
          b->used = true;
      }
      break;
    }
    case AST_UNPACK:
      lower_unpack(L, e, s);
      if (last) {
        diag_error(L->d, s->loc, "end the body with the tensor it gives, e.g. one of the names",
                   "the last statement gives several tensors; a body's result is one");
        return ERR;
      }
      break;
    case AST_EXPR: {
      if (s->nargs > 1) {
        result = lower_outputs(L, e, s, last);
        have_result = last;
        break;
      }
      Value v = eval(L, e, s->lhs);
      if (last) {
        result = v;
        have_result = true;
      } else if (v.kind != V_ERR) {
        diag_report(L->d, DIAG_WARNING, s->lhs->loc, "only the last expression of a body is its result; "
                    "name this one (h = ...) to use it later", "this value is never used");
      }
      break;
    }
    default:
      unreachable();
    }
  }
  if (!have_result) {
    diag_error(L->d, e->decl->name_loc, "end the body with an expression, e.g. `x -> relu`",
               "%s '%s' has no result: its last statement must be an expression", what, e->decl->name);
    return ERR;
  }
  if (result.kind == V_NUM || result.kind == V_TUPLE) {
    diag_error(L->d, body[n - 1]->loc, NULL, "the result of %s '%s' is a %s, not a tensor", what, e->decl->name,
               result.kind == V_NUM ? "number" : "tuple");
    return ERR;
  }
  for (Binding *b = e->names; b && L->d->nerrors == errors; b = b->next)
    if (!b->used && b->v.kind != V_ERR && strcmp(b->what, "target") &&
        !(!strcmp(b->what, "input") && in_loss(L, b->name)))   // a denoiser's clean input: the loss's
      diag_report(L->d, DIAG_WARNING, b->loc, NULL, "%s '%s' is never used", b->what, b->name);
  return result;
}

//
// Loss, optimizer, schedule and train declarations
//

// Evaluates a declaration's call against sig; constant expressions only.
static bool decl_args(Lower *L, const Signature *sig, const AstNode *call, Args *a) {
  Env env = {.prefix = ""};
  return bind_args(L, &env, sig, call, NULL, call->loc, a);
}

// The outputs' names for hints: "logits, recon".
static const char *output_list(const IrGraph *g, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < g->noutputs && len < n; i++)
    len += snprintf(buf + len, n - len, "%s%s", i ? ", " : "", g->output_names[i]);
  return buf;
}

// A loss's first argument: an output, by its name in the result list, as
// `output` for a single one, or by the name bound to it.
static IrNode *loss_output(Lower *L, Env *e, const AstNode *a, const char *loss) {
  IrGraph *g = L->g;
  char list[256];
  if (a->kind != AST_IDENT) {
    diag_error(L->d, a->loc, "name the output: the model lists its outputs by name as its last statement",
               "%s: the first argument must be an output's name", loss);
    return NULL;
  }
  for (int i = 0; i < g->noutputs; i++)
    if (!strcmp(g->output_names[i], a->name))
      return g->outputs[i];
  Binding *b = lookup(e, a->name);
  if (b && b->v.kind == V_TENSOR && ir_output_name(g, b->v.t))
    return b->v.t;
  char hint[400];
  const char *s = suggest_name(a->name, g->output_names, g->noutputs);
  if (s)
    snprintf(hint, sizeof hint, "did you mean '%s'? the outputs of model '%s' are %s", s, g->name,
             output_list(g, list, sizeof list));
  else if (b && b->v.kind == V_TENSOR)
    snprintf(hint, sizeof hint, "list it in the model's result to make it an output: `%s, %s`",
             output_list(g, list, sizeof list), a->name);
  else
    snprintf(hint, sizeof hint, "the outputs of model '%s' are %s", g->name, output_list(g, list, sizeof list));
  diag_error(L->d, a->loc, hint, "%s: '%s' is not an output of model '%s'", loss, a->name, g->name);
  return NULL;
}

// A loss's second argument: a target, or an input (an autoencoder's loss
// compares its output with its input).
static IrNode *loss_target(Lower *L, Env *e, const AstNode *a, const char *loss) {
  if (a->kind == AST_IDENT) {
    Binding *b = lookup(e, a->name);
    if (b && b->v.kind == V_TENSOR && (b->v.t->op == IR_TARGET || b->v.t->op == IR_INPUT)) {
      b->used = true;
      return b->v.t;
    }
    if (b && b->v.kind == V_ERR)
      return NULL;   // its declaration's error was reported
  }
  const char *names[64];
  int n = 0;
  for (Binding *b = e->names; b && n < 64; b = b->next)
    if (b->v.kind == V_TENSOR && (b->v.t->op == IR_TARGET || b->v.t->op == IR_INPUT))
      names[n++] = b->name;
  const char *s = a->kind == AST_IDENT ? suggest_name(a->name, names, n) : NULL;
  char hint[200];
  if (s)
    snprintf(hint, sizeof hint, "did you mean '%s'?", s);
  else
    snprintf(hint, sizeof hint, "declare it in the model (`target label: class(10)`), or compare with an input");
  if (a->kind == AST_IDENT)
    diag_error(L->d, a->loc, hint, "%s: '%s' is neither a target nor an input of model '%s'", loss, a->name,
               L->g->name);
  else
    diag_error(L->d, a->loc, hint, "%s: the second argument must be the name of a target or an input", loss);
  return NULL;
}

// One loss: `cross_entropy` (the model's one output against its one target)
// or `cross_entropy(logits, label)`. Returns its node, NULL after an error.
static IrNode *lower_loss_call(Lower *L, Env *e, const AstNode *c) {
  static const IrOp ops[] = {IR_CROSS_ENTROPY, IR_NLL, IR_MSE, IR_L1, IR_BCE_WITH_LOGITS};
  int k = lookup_name(L, loss_names, countof(loss_names), c, "loss",
                      "losses are cross_entropy, nll, mse, l1, bce_with_logits");
  if (k < 0)
    return NULL;
  double smoothing = 0;
  int nargs = c->kind == AST_CALL ? c->nargs : 0;
  const AstNode *last = nargs > 0 ? c->args[nargs - 1] : NULL;
  if (last && last->kind == AST_KWARG && ops[k] == IR_CROSS_ENTROPY && !strcmp(last->name, "label_smoothing")) {
    Value v = eval(L, e, last->lhs);
    if (v.kind == V_ERR)
      return NULL;
    if (v.kind != V_NUM || v.is_bool) {
      diag_error(L->d, last->loc, "0.1 is usual; 0 turns it off", "cross_entropy: label_smoothing must be a number");
      return NULL;
    }
    smoothing = v.num;
    if (!(smoothing >= 0 && smoothing < 1)) {
      diag_error(L->d, last->loc, "0.1 is usual; 0 turns it off",
                 "cross_entropy: label_smoothing must be in [0, 1), found %g", smoothing);
      return NULL;
    }
    nargs--;
  } else if (last && last->kind == AST_KWARG) {   // the only option is cross_entropy's
    diag_error(L->d, last->loc,
               ops[k] == IR_CROSS_ENTROPY ? "cross_entropy takes (output, target, label_smoothing = 0)"
                                          : "losses take the mean over the batch and have no options",
               "%s has no argument named '%s'", c->name, last->name);
    return NULL;
  }
  Model *m = L->m;
  IrGraph *g = m->g;
  bool named = nargs == 2 && c->args[0]->kind != AST_KWARG && c->args[1]->kind != AST_KWARG;
  if (nargs > 0 && !named) {
    diag_error(L->d, c->args[0]->loc, "losses take the mean over the batch and have no options; name the "
               "output and the target, as in cross_entropy(logits, label), or neither",
               "%s takes an output and a target, or no arguments", c->name);
    return NULL;
  }
  if (!g->noutputs)
    return NULL;   // the model's own error was reported
  IrNode *out, *target;
  char list[256];
  if (named) {
    out = loss_output(L, e, c->args[0], c->name);
    target = loss_target(L, e, c->args[1], c->name);
    if (!out || !target)
      return NULL;
  } else {
    if (g->noutputs > 1) {
      char hint[400];
      snprintf(hint, sizeof hint, "name the output and its target: %s(%s, ...)", c->name, g->output_names[0]);
      diag_error(L->d, c->loc, hint, "loss %s: model '%s' has %d outputs (%s); which one does it compare?",
                 c->name, g->name, g->noutputs, output_list(g, list, sizeof list));
      return NULL;
    }
    if (!m->target && L->saw_target)
      return NULL;   // the target's own error was reported
    if (!m->target) {
      diag_error(L->d, c->loc, k < 2 ? "declare one in the model: `target label: class(10)`"
                                     : "declare one in the model: `target y: f32[...]`",
                 "loss %s needs a target, and model '%s' has none", c->name, g->name);
      return NULL;
    }
    if (m->ntargets > 1) {
      char hint[200];
      snprintf(hint, sizeof hint, "name the output and the target: %s(output, %s)", c->name, m->target->name);
      diag_error(L->d, c->loc, hint, "loss %s: model '%s' has %d targets; which one does it compare with?",
                 c->name, g->name, m->ntargets);
      return NULL;
    }
    out = g->output;
    target = m->target;
  }
  // log_softmax, or log of softmax: log-probabilities.
  bool log_probs = out->op == IR_LOG_SOFTMAX || (out->op == IR_LOG && out->src[0]->op == IR_SOFTMAX);
  if (ops[k] == IR_CROSS_ENTROPY && log_probs)
    diag_report(L->d, DIAG_WARNING, c->loc, "end the model with its logits, or use `loss nll`",
                "cross_entropy applies log_softmax itself, and the model's output is already %s",
                out->op == IR_LOG ? "log of softmax" : "log_softmax");
  if (ops[k] == IR_CROSS_ENTROPY && out->op == IR_SOFTMAX)
    diag_report(L->d, DIAG_WARNING, c->loc, "end the model with its logits: drop the softmax",
                "cross_entropy applies log_softmax itself, and the model's output is already softmax");
  if (ops[k] == IR_NLL && !log_probs)
    diag_report(L->d, DIAG_WARNING, c->loc, "end the model with log_softmax, or use `loss cross_entropy`",
                "nll expects log-probabilities, and the model's output is not log_softmax");
  IrNode *loss = node(L, ops[k], (IrNode *[]){out, target}, 2, c->loc);
  loss->attr.f[0] = ops[k] == IR_CROSS_ENTROPY ? smoothing : 0;   // cross_entropy's label_smoothing
  return finish(L, loss, "loss");
}

// A call or name of a loss: `mse(recon, image)`, `nll`.
static bool is_loss_call(const AstNode *n) {
  return (n->kind == AST_CALL || n->kind == AST_IDENT) && in_list(n->name, loss_names, countof(loss_names));
}

// A loss weight: a number (`0.1`, `-0.5`, `1e-3`).
static bool loss_weight(Lower *L, const AstNode *n, double *w) {
  if (n->kind == AST_NUM) {
    *w = n->num;
    return true;
  }
  if (n->kind == AST_NEG && n->lhs->kind == AST_NUM) {
    *w = -n->lhs->num;
    return true;
  }
  diag_error(L->d, n->loc, "write the weight as a number: 0.1 * mse(recon, image)",
             "a loss's weight must be a number");
  return false;
}

// The loss declaration: one loss, or a weighted sum `1.0 * a(...) + 0.1 *
// b(...)`. Appends each term's node (times its weight) to the sum *total.
static bool lower_loss_expr(Lower *L, Env *e, const AstNode *n, IrNode **total) {
  if (n->kind == AST_BINOP && n->op == '+') {
    bool left = lower_loss_expr(L, e, n->lhs, total);   // both sides, so that each reports its errors
    bool right = lower_loss_expr(L, e, n->rhs, total);
    return left && right;
  }
  if (n->kind == AST_BINOP && n->op == '-') {
    diag_error(L->d, n->loc, "add it with a negative weight: + -0.5 * mse(recon, image)",
               "losses are added: a loss's weight may be negative, but a loss is not subtracted");
    lower_loss_expr(L, e, n->lhs, total);
    return false;
  }
  double w = 1;
  const AstNode *call = n, *weight = n;
  if (n->kind == AST_BINOP && n->op == '*') {   // the weight on either side
    bool left = !is_loss_call(n->rhs) && is_loss_call(n->lhs);
    call = left ? n->lhs : n->rhs;
    weight = left ? n->rhs : n->lhs;
    if (!loss_weight(L, weight, &w))
      return false;
  }
  if (call->kind != AST_CALL && call->kind != AST_IDENT) {
    diag_error(L->d, call->loc, "write a loss, or a weighted sum of losses: `loss 1.0 * cross_entropy(logits, "
               "label) + 0.1 * mse(recon, image)`", "expected a loss");
    return false;
  }
  if (!(fabs(w) <= FLT_MAX)) {   // the weight is a float32 constant
    diag_error(L->d, weight->loc, "losses are float32: use a smaller weight",
               "a loss's weight %g is beyond the range of float32 (about 3.4e38)", w);
    return false;
  }
  IrNode *t = lower_loss_call(L, e, call);
  if (!t)
    return false;
  if (w != 1 || n != call) {
    IrNode *c = const_node(L, w, n->loc, "loss");
    t = finish(L, node(L, IR_MUL, (IrNode *[]){c, t}, 2, n->loc), "loss");
  }
  *total = *total ? finish(L, node(L, IR_ADD, (IrNode *[]){*total, t}, 2, n->loc), "loss") : t;
  return *total != NULL;
}

static void lower_loss(Lower *L, Env *e, const Decl *d) {
  Model *m = L->m;
  m->has_loss = true;
  IrNode *total = NULL;
  if (!lower_loss_expr(L, e, d->call, &total) || !total)
    return;
  m->g->loss = total;
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int n = ir_loss_terms(m->g, terms, w, IR_MAX_LOSS_TERMS);
  if (n > IR_MAX_LOSS_TERMS) {
    diag_error(L->d, d->call->loc, NULL, "the loss sums %d losses; at most %d are supported", n, IR_MAX_LOSS_TERMS);
    return;
  }
  for (int i = 0; i < m->ntargets; i++) {   // a target no loss reads
    bool used = false;
    for (int t = 0; t < n; t++)
      used |= terms[t]->src[1] == m->targets[i];
    if (!used)
      diag_report(L->d, DIAG_WARNING, m->targets[i]->loc, "compare an output with it in the loss, or drop it",
                  "target '%s' is used by no loss", m->targets[i]->name);
  }
  bool trainable = false, frozen = false;
  for (int i = 0; i < m->g->nnodes; i++) {
    const IrNode *x = m->g->nodes[i];
    trainable |= x->op == IR_PARAM;
    frozen |= x->op == IR_BUFFER && x->frozen;
  }
  if (frozen && !trainable)
    diag_report(L->d, DIAG_WARNING, d->call->loc, "unfreeze a layer (frozen = false) or a parameter (drop "
                "`frozen`) to train this model", "every parameter is frozen, so training has nothing to update");
}

static void lower_optimizer(Lower *L, const Decl *d) {
  static const ArgSpec sgd[] = {N("lr", 1e-3), N("momentum", 0), N("dampening", 0), B("nesterov", 0),
                                N("weight_decay", 0), N("clip_norm", 0)};
  static const ArgSpec adam[] = {N("lr", 1e-3), N("beta1", 0.9), N("beta2", 0.999), N("eps", 1e-8),
                                 N("weight_decay", 0), N("clip_norm", 0)};
  static const ArgSpec adamw[] = {N("lr", 1e-3), N("beta1", 0.9), N("beta2", 0.999), N("eps", 1e-8),
                                  N("weight_decay", 0.01), N("clip_norm", 0)};
  static const ArgSpec rmsprop[] = {N("lr", 0.01), N("alpha", 0.99), N("eps", 1e-8), N("weight_decay", 0),
                                    N("momentum", 0), B("centered", 0), N("clip_norm", 0)};
  static const ArgSpec adagrad[] = {N("lr", 0.01), N("lr_decay", 0), N("weight_decay", 0),
                                    N("initial_accumulator_value", 0), N("eps", 1e-10), N("clip_norm", 0)};
  static const Signature sigs[] = {
      {"sgd", sgd, 6,
       "(lr = 0.001, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0, clip_norm = 0)"},
      {"adam", adam, 6, "(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, clip_norm = 0)"},
      {"adamw", adamw, 6,
       "(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01, clip_norm = 0)"},
      {"rmsprop", rmsprop, 7,
       "(lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, clip_norm = 0)"},
      {"adagrad", adagrad, 6,
       "(lr = 0.01, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0, eps = 1e-10, "
       "clip_norm = 0)"},
  };
  const AstNode *c = d->call;
  int k = lookup_name(L, optim_names, countof(optim_names), c, "optimizer",
                      "optimizers are sgd, adam, adamw, rmsprop, adagrad");
  if (k < 0)
    return;
  Args a;
  if (!decl_args(L, &sigs[k], c, &a))
    return;
  OptimConfig *o = &L->m->opt;
  int wd = k == OPT_RMSPROP ? 3 : k == OPT_ADAGRAD ? 2 : 4;   // weight_decay's place in the signature
  *o = (OptimConfig){.kind = (OptimKind)k, .lr = arg_num(&a, 0), .weight_decay = arg_num(&a, wd)};
  if (k == OPT_SGD) {
    o->momentum = arg_num(&a, 1);
    o->dampening = arg_num(&a, 2);
    o->nesterov = arg_num(&a, 3) != 0;
  } else if (k == OPT_RMSPROP) {
    o->alpha = arg_num(&a, 1);
    o->eps = arg_num(&a, 2);
    o->momentum = arg_num(&a, 4);
    o->centered = arg_num(&a, 5) != 0;
  } else if (k == OPT_ADAGRAD) {
    o->lr_decay = arg_num(&a, 1);
    o->initial_accumulator_value = arg_num(&a, 3);
    o->eps = arg_num(&a, 4);
  } else {
    o->beta1 = arg_num(&a, 1);
    o->beta2 = arg_num(&a, 2);
    o->eps = arg_num(&a, 3);
  }
  int clip = sigs[k].nargs - 1;   // clip_norm, last in every signature
  o->clip_norm = arg_num(&a, clip);
  L->m->has_optimizer = true;
  bool adam_kind = k == OPT_ADAM || k == OPT_ADAMW;
  struct { bool bad; int arg; const char *msg; } checks[] = {
      {!(o->lr > 0), 0, "the learning rate must be positive"},
      {!(o->weight_decay >= 0), wd, "weight_decay must not be negative"},
      {k == OPT_SGD && !(o->momentum >= 0 && o->momentum < 1), 1, "momentum must be in [0, 1)"},
      {k == OPT_SGD && !(o->dampening >= 0 && o->dampening <= 1), 2, "dampening must be in [0, 1]"},
      {k == OPT_SGD && o->nesterov && (o->momentum <= 0 || o->dampening != 0), 3,
       "nesterov needs a positive momentum and zero dampening (as in PyTorch)"},
      {adam_kind && !(o->beta1 >= 0 && o->beta1 < 1), 1, "beta1 must be in [0, 1)"},
      {adam_kind && !(o->beta2 >= 0 && o->beta2 < 1), 2, "beta2 must be in [0, 1)"},
      {adam_kind && !(o->eps > 0), 3, "eps must be positive"},
      {k == OPT_RMSPROP && !(o->alpha >= 0 && o->alpha < 1), 1, "alpha must be in [0, 1)"},
      {k == OPT_RMSPROP && !(o->eps > 0), 2, "eps must be positive"},
      {k == OPT_RMSPROP && !(o->momentum >= 0 && o->momentum < 1), 4, "momentum must be in [0, 1)"},
      {k == OPT_ADAGRAD && !(o->lr_decay >= 0), 1, "lr_decay must not be negative"},
      {k == OPT_ADAGRAD && !(o->initial_accumulator_value >= 0), 3,
       "initial_accumulator_value must not be negative"},
      {k == OPT_ADAGRAD && !(o->eps > 0), 4, "eps must be positive"},
      {!(o->clip_norm >= 0 && o->clip_norm <= FLT_MAX), clip,
       "clip_norm must be a norm in [0, 3.4e38] (0: no clipping)"},
  };
  for (int i = 0; i < countof(checks); i++)
    if (checks[i].bad)
      diag_error(L->d, a.loc[checks[i].arg], checks[i].arg == clip ? "clip_norm is the largest global L2 norm of the "
                 "gradients, e.g. clip_norm = 1.0" : NULL, "%s: %s", c->name, checks[i].msg);
}

// A name argument of a schedule (`anneal_strategy = linear`), argument i
// of a: the index of its name among names[0..2), def when not given, -1
// after reporting anything else.
static int name_arg(Lower *L, const Args *a, int i, const Signature *sig, const char *const *names, int def) {
  const AstNode *v = a->node[i];
  const char *an = sig->args[i].name;
  if (!a->given[i])
    return def;
  for (int k = 0; v && v->kind == AST_IDENT && k < 2; k++)
    if (!strcmp(v->name, names[k]))
      return k;
  diag_error(L->d, a->loc[i], arena_printf(L->a, "write %s = %s or %s = %s (names, not strings)", an, names[0], an,
                                           names[1]),
             "%s: %s must be %s or %s", sig->name, an, names[0], names[1]);
  return -1;
}

static void lower_schedule(Lower *L, const Decl *d) {
  static const ArgSpec cst[] = {I("warmup", false, 0, 0)};
  static const ArgSpec step[] = {I("step_size", true, 0, 1), N("gamma", 0.1), I("warmup", false, 0, 0)};
  static const ArgSpec cos[] = {I("t_max", false, 0, 0), N("min_lr", 0), I("warmup", false, 0, 0)};
  static const ArgSpec one[] = {N("max_lr", 0), N("pct_start", 0.3), N("div_factor", 25),
                                N("final_div_factor", 1e4), INIT("anneal_strategy")};
  static const ArgSpec pla[] = {N("factor", 0.1), I("patience", false, 10, 0), N("threshold", 1e-4),
                                INIT("threshold_mode"), I("cooldown", false, 0, 0), N("min_lr", 0),
                                N("eps", 1e-8), I("warmup", false, 0, 0)};
  static const Signature sigs[] = {
      {"constant", cst, 1, "(warmup = 0)"},
      {"step", step, 3, "(step_size, gamma = 0.1, warmup = 0)"},
      {"cosine", cos, 3, "(t_max = epochs, min_lr = 0, warmup = 0)"},
      {"onecycle", one, 5,
       "(max_lr = lr, pct_start = 0.3, div_factor = 25, final_div_factor = 1e4, anneal_strategy = cos)"},
      {"plateau", pla, 8,
       "(factor = 0.1, patience = 10, threshold = 1e-4, threshold_mode = rel, cooldown = 0, min_lr = 0, "
       "eps = 1e-8, warmup = 0)"},
  };
  static const char *const names[] = {"constant", "step", "cosine", "onecycle", "plateau"};
  const AstNode *c = d->call;
  int k = lookup_name(L, names, countof(names), c, "schedule",
                      "schedules are constant, step(step_size, gamma), cosine(t_max, min_lr), onecycle(max_lr), "
                      "plateau(factor, patience)");
  if (k < 0)
    return;
  Args a;
  if (!decl_args(L, &sigs[k], c, &a))
    return;
  ScheduleConfig *s = &L->m->sched;
  *s = (ScheduleConfig){.kind = (SchedKind)k, .gamma = 1};
  if (k == SCHED_ONECYCLE) {   // (its own warmup: no warmup argument)
    s->max_lr = arg_num(&a, 0);
    s->pct_start = arg_num(&a, 1);
    s->div_factor = arg_num(&a, 2);
    s->final_div_factor = arg_num(&a, 3);
    s->anneal_linear = name_arg(L, &a, 4, &sigs[k], (const char *[]){"cos", "linear"}, 0) == 1;
    struct { bool bad; int arg; const char *msg; } checks[] = {
        {!(s->max_lr >= 0), 0, "max_lr must be positive (0 or left out: the optimizer's lr)"},
        {!(s->pct_start > 0 && s->pct_start < 1), 1, "pct_start must be in (0, 1)"},
        {!(s->div_factor > 0), 2, "div_factor must be positive"},
        {!(s->final_div_factor > 0), 3, "final_div_factor must be positive"},
    };
    for (int i = 0; i < countof(checks); i++)
      if (checks[i].bad)
        diag_error(L->d, a.loc[checks[i].arg], NULL, "onecycle: %s, found %g", checks[i].msg, a.v[checks[i].arg].num);
    return;
  }
  s->warmup = (int)arg_int(&a, sigs[k].nargs - 1);
  if (k == SCHED_STEP) {
    s->step_size = (int)arg_int(&a, 0);
    s->gamma = arg_num(&a, 1);
    if (!(s->gamma > 0 && s->gamma <= 1))
      diag_error(L->d, a.loc[1], NULL, "step: gamma must be in (0, 1], found %g", s->gamma);
  } else if (k == SCHED_COSINE) {
    s->t_max = (int)arg_int(&a, 0);
    s->min_lr = arg_num(&a, 1);
    if (!(s->min_lr >= 0))
      diag_error(L->d, a.loc[1], NULL, "cosine: min_lr must not be negative");
  } else if (k == SCHED_PLATEAU) {
    s->factor = arg_num(&a, 0);
    s->patience = (int)arg_int(&a, 1);
    s->threshold = arg_num(&a, 2);
    s->threshold_abs = name_arg(L, &a, 3, &sigs[k], (const char *[]){"rel", "abs"}, 0) == 1;
    s->cooldown = (int)arg_int(&a, 4);
    s->min_lr = arg_num(&a, 5);
    s->eps = arg_num(&a, 6);
    struct { bool bad; int arg; const char *msg, *hint; } checks[] = {
        {!(s->factor > 0 && s->factor < 1), 0, "factor must be in (0, 1)",
         "a plateau multiplies the rate by factor: 0.1 divides it by 10"},
        {!(s->threshold >= 0 && s->threshold < 1e30), 2, "threshold must be in [0, 1e30]",
         "how much lower a loss must be to count as better (rel: a fraction of the best, e.g. 1e-4)"},
        {!(s->min_lr >= 0 && s->min_lr < 1e30), 5, "min_lr must be in [0, 1e30]", "the rate never falls below min_lr"},
        {!(s->eps >= 0 && s->eps < 1e30), 6, "eps must be in [0, 1e30]", "a reduction smaller than eps is skipped"},
    };
    for (int i = 0; i < countof(checks); i++)
      if (checks[i].bad)
        diag_error(L->d, a.loc[checks[i].arg], checks[i].hint, "plateau: %s, found %g", checks[i].msg,
                   a.v[checks[i].arg].num);
  }
}

// The smallest height or width of the model's image inputs (f32 [C, H, W]),
// or 0 without one.
static int64_t smallest_image(const IrGraph *g) {
  int64_t least = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op == IR_INPUT && n->dtype == DT_F32 && n->ndim == 4)
      for (int k = 2; k < 4; k++)
        least = least == 0 || n->shape[k] < least ? n->shape[k] : least;
  }
  return least;
}

// The augmentation settings (train arguments 5 to 9): in range, and the
// geometric ones only for a model with an image input.
static void lower_augment(Lower *L, const Args *a) {
  AugmentConfig *g = &L->m->train.augment;
  *g = (AugmentConfig){(int)arg_int(a, 5), (int)arg_int(a, 6), arg_num(a, 7) != 0, arg_num(a, 8), arg_num(a, 9)};
  if (!(g->rotate >= 0 && g->rotate <= 180))
    diag_error(L->d, a->loc[8], "rotate is the largest angle of a random rotation, in degrees",
               "train: rotate must be in [0, 180], found %g", g->rotate);
  if (!(g->noise >= 0 && g->noise <= 1e6))
    diag_error(L->d, a->loc[9], "noise is the standard deviation of Gaussian noise added to the input",
               "train: noise must be in [0, 1e6], found %g", g->noise);
  const IrNode *loss = g->noise > 0 ? pass_noisy_loss(L->m) : NULL;
  if (loss)
    diag_error(L->d, a->loc[9],
               arena_printf(L->a, "put the noise in the model instead, where the loss does not see it: `%s -> "
                            "gaussian_noise(%g) -> ...`, and drop noise from train", loss->src[1]->name, g->noise),
               "train: noise = %g would reach input '%s', which loss %s compares with: the model would learn to "
               "give back the noisy input", g->noise, loss->src[1]->name, ir_op_info(loss->op)->mnem);
  int64_t least = smallest_image(L->g);
  static const char *const names[] = {"shift", "crop", "hflip", "rotate"};
  for (int k = 5; k <= 8; k++) {
    if (!a->given[k] || arg_num(a, k) == 0)
      continue;
    if (least == 0) {
      const IrNode *in = L->g->nnodes > 0 && L->g->nodes[0]->op == IR_INPUT ? L->g->nodes[0] : NULL;
      char buf[96];
      diag_error(L->d, a->loc[k], "images are inputs of 3 dimensions, such as f32[1, 28, 28] (a flatten in the "
                 "model makes them flat again)", "train: %s augments images [C, H, W], but the model has no "
                 "image input%s%s%s", names[k - 5], in ? " ('" : "", in ? in->name : "",
                 in ? arena_printf(L->a, "' is %s)", ir_type_str(in, buf, sizeof buf)) : "");
      return;
    }
    if (k <= 6 && arg_num(a, k) >= least)
      diag_error(L->d, a->loc[k], "a translation as large as the image leaves only zeros",
                 "train: %s must be less than the image's height and width (%lld), found %g", names[k - 5],
                 (long long)least, arg_num(a, k));
  }
}

static void lower_train(Lower *L, const Decl *d) {
  static const ArgSpec specs[] = {I("batch", false, 64, 1), I("epochs", false, 1, 1), B("shuffle", 1),
                                  I("seed", false, 1, 0), N("val_split", 0), I("shift", false, 0, 0),
                                  I("crop", false, 0, 0), B("hflip", 0), N("rotate", 0), N("noise", 0),
                                  B("drop_last", 0), I("patience", false, 0, 0)};
  static const Signature sig = {"train", specs, 12,
                                "{ batch = 64, epochs = 1, shuffle = true, seed = 1, val_split = 0, shift = 0, "
                                "crop = 0, hflip = false, rotate = 0, noise = 0, drop_last = false, patience = 0 }"};
  AstNode call = {.kind = AST_CALL, .loc = d->loc, .name = "train", .args = d->settings,
                  .nargs = d->nsettings, .close = d->loc};
  for (int i = 0; i < d->nsettings; i++)
    if (d->settings[i]->kind != AST_KWARG) {
      diag_error(L->d, d->settings[i]->loc, "write settings as name = value", "expected a setting");
      return;
    }
  Args a;
  if (!decl_args(L, &sig, &call, &a))
    return;
  TrainConfig *t = &L->m->train;
  t->batch = (int)arg_int(&a, 0);
  if (t->batch > MAX_BATCH) {
    diag_error(L->d, a.loc[0], "the command line's --batch has the same bound",
               "train: batch must be at most %d, found %d", MAX_BATCH, t->batch);
    t->batch = MAX_BATCH;
  }
  t->epochs = (int)arg_int(&a, 1);
  t->shuffle = arg_num(&a, 2) != 0;
  t->seed = (uint64_t)arg_int(&a, 3);
  t->val_split = arg_num(&a, 4);
  t->drop_last = arg_num(&a, 10) != 0;
  t->patience = (int)arg_int(&a, 11);
  if (t->patience > 0 && t->val_split == 0)
    diag_report(L->d, DIAG_WARNING, a.loc[11], "set val_split (or give --val-split) to hold out validation data",
                "train: patience stops on the validation metric, and val_split is 0");
  if (!(t->val_split >= 0 && t->val_split < 1))
    diag_error(L->d, a.loc[4], "the fraction of the training data held out for validation",
               "train: val_split must be in [0, 1), found %g", t->val_split);
  lower_augment(L, &a);
}

//
// The program
//

// Finds the declarations; reports duplicates. Returns the model or NULL.
static const Decl *collect(Lower *L, const Decl **once) {
  const Decl *model = NULL;
  static const char *const kinds[] = {"model", "block", "loss", "optimizer", "schedule", "train"};
  for (int i = 0; i < L->p->ndecls; i++) {
    const Decl *d = L->p->decls[i];
    if (d->kind == DECL_BLOCK) {
      const Decl *old = find_block(L, d->name);
      if (old) {
        char hint[96];
        snprintf(hint, sizeof hint, "the first is at %d:%d; rename one of them", old->loc.line, old->loc.col);
        diag_error(L->d, d->name_loc, hint, "block '%s' is defined twice", d->name);
      } else if (is_builtin_name(d->name)) {
        diag_error(L->d, d->name_loc, "choose another name for the block", "'%s' is a built-in layer", d->name);
      } else {
        ptrvec_push(L->a, &L->blocks, (void *)d);
        strmap_put(L->a, &L->block_index, d->name, (void *)d);
      }
      for (int j = 0; j < d->nparams; j++) {
        if (!strcmp(d->params[j], "x"))
          diag_error(L->d, d->param_locs[j], "x is the block's input; choose another name",
                     "block parameter named 'x'");
        for (int k = 0; k < j; k++)
          if (!strcmp(d->params[j], d->params[k]))
            diag_error(L->d, d->param_locs[j], NULL, "parameter '%s' appears twice", d->params[j]);
      }
      continue;
    }
    if (d->kind == DECL_MODEL && !model) {
      model = d;
      continue;
    }
    const Decl *first = d->kind == DECL_MODEL ? model : once[d->kind];
    if (first) {
      char hint[120];
      snprintf(hint, sizeof hint, "the first is at %d:%d; a file holds one %s", first->loc.line,
               first->loc.col, kinds[d->kind]);
      diag_error(L->d, d->loc, hint, "a second %s declaration", kinds[d->kind]);
      continue;
    }
    once[d->kind] = d;
  }
  return model;
}

// Lists the model's inputs: in graph order, which is the order of their
// declarations (each is a leaf appended as its statement is lowered).
int64_t pass_index_bound(const IrGraph *g, const IrNode *in) {
  int64_t bound = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op == IR_EMBEDDING && n->src[0] == in && (bound == 0 || n->src[1]->shape[0] < bound))
      bound = n->src[1]->shape[0];
  }
  return bound;
}

const IrNode *pass_noisy_loss(const Model *m) {
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int n = m->g->loss ? ir_loss_terms(m->g, terms, w, IR_MAX_LOSS_TERMS) : 0;
  for (int t = 0; t < n && t < IR_MAX_LOSS_TERMS; t++)
    if (terms[t]->src[1]->op == IR_INPUT && terms[t]->src[1]->dtype == DT_F32)
      return terms[t];
  return NULL;
}

static void collect_inputs(Model *m, Arena *a) {
  const IrGraph *g = m->g;
  m->ninputs = 0;
  for (int i = 0; i < g->nnodes; i++)
    m->ninputs += g->nodes[i]->op == IR_INPUT;
  m->inputs = arena_alloc(a, sizeof(IrNode *) * (m->ninputs ? m->ninputs : 1));
  for (int i = 0, k = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == IR_INPUT)
      m->inputs[k++] = g->nodes[i];
}

Model *pass_lower(const Program *p, Arena *a, Diag *d) {
  Lower L = {.a = a, .d = d, .p = p};
  const Decl *once[DECL_TRAIN + 1] = {0};
  int before = d->nerrors;
  const Decl *md = collect(&L, once);
  if (!md) {
    diag_error(d, ((SrcLoc){p->file, 0, 0, 0}), "declare one: model name { input x: f32[...] ... }",
               "no model in this file");
    return NULL;
  }
  Model *m = arena_alloc(a, sizeof *m);
  L.m = m;
  m->g = L.g = ir_graph_new(a, md->name);
  m->g->file = p->file ? p->file->name : NULL;
  m->opt = (OptimConfig){.kind = OPT_SGD, .lr = 1e-3};
  m->sched = (ScheduleConfig){.kind = SCHED_CONSTANT, .gamma = 1};
  m->train = (TrainConfig){.batch = 64, .epochs = 1, .shuffle = true, .seed = 1};
  Env env = {.prefix = "", .decl = md};
  Value out = lower_body(&L, &env, md->body, md->nbody, "model");
  if (out.kind == V_TENSOR && out.t->dtype != DT_F32)
    diag_error(d, md->name_loc, "end the model with a layer, such as embedding(x, vocab, dim) on the input",
               "model '%s' outputs '%s', which holds integers (i32); an output holds f32", md->name,
               out.t->name ? out.t->name : "an integer tensor");
  else if (out.kind == V_TENSOR && !m->g->noutputs)
    ir_add_output(m->g, out.t, "output");
  if (!L.saw_input && md->nbody > 0)
    diag_error(d, md->name_loc, "declare what the model reads: `input image: f32[28, 28]`",
               "model '%s' has no input", md->name);
  if (once[DECL_LOSS])
    lower_loss(&L, &env, once[DECL_LOSS]);
  if (once[DECL_OPTIMIZER])
    lower_optimizer(&L, once[DECL_OPTIMIZER]);
  if (once[DECL_SCHEDULE])
    lower_schedule(&L, once[DECL_SCHEDULE]);
  if (once[DECL_TRAIN])
    lower_train(&L, once[DECL_TRAIN]);
  if (m->sched.kind == SCHED_PLATEAU && m->train.val_split == 0)   // (--val-split may give one)
    diag_report(d, DIAG_WARNING, once[DECL_SCHEDULE]->call->loc,
                "set val_split in train {} (or give --val-split) to hold out validation data",
                "schedule plateau steps on the validation loss, and val_split is 0");
  collect_inputs(m, a);
  return d->nerrors > before ? NULL : m;
}
