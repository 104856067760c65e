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
#define MAX_ARGS 8
#define MAX_BATCH (1 << 20)      // samples per batch, as the command line's --batch
#define MAX_EXPAND_DEPTH 64      // nested block expansions
#define MAX_EXPANDED 250000      // graph nodes plus block calls a model may expand to (about 200 MB)

typedef enum {
  V_ERR,     // an error was reported; uses pass it along silently
  V_NUM,     // num: a compile-time number (is_bool for true / false)
  V_TENSOR,  // t: a node of the graph
} ValueKind;

typedef struct Value {
  ValueKind kind;
  double num;
  bool is_bool;
  IrNode *t;
} Value;

static const Value ERR = {V_ERR, 0, false, NULL};

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
} Lower;

static Value eval(Lower *L, Env *e, const AstNode *n);

static Value num_value(double x) { return (Value){V_NUM, x, false, NULL}; }
static Value tensor_value(IrNode *t) { return t ? (Value){V_TENSOR, 0, false, t} : ERR; }

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
  A_TENSORS,   // the positional arguments (and the piped value), tensors (concat)
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
  SrcLoc call;                 // the function's name
} Args;

static double arg_num(const Args *a, int i) { return a->v[i].num; }
static int64_t arg_int(const Args *a, int i) { return (int64_t)a->v[i].num; }
static IrNode *arg_tensor(const Args *a, int i) { return a->v[i].t; }

// Checks that v is what spec asks for; reports and returns false if not.
static bool check_arg(Lower *L, const Signature *sig, const ArgSpec *spec, Value v, SrcLoc loc) {
  if (v.kind == V_ERR)
    return false;
  const char *fn = sig->name, *an = spec->name;
  char hint[200];
  snprintf(hint, sizeof hint, "%s takes %s", fn, sig->usage);
  switch (spec->kind) {
  case A_TENSOR:
  case A_TENSORS:
    if (v.kind != V_TENSOR) {
      diag_error(L->d, loc, hint, "%s: '%s' must be a tensor, found the number %g", fn, an, v.num);
      return false;
    }
    return true;
  case A_BOOL:
    if (v.kind != V_NUM || !v.is_bool) {
      diag_error(L->d, loc, hint, "%s: '%s' must be true or false", fn, an);
      return false;
    }
    return true;
  case A_NUM:
  case A_INT:
  case A_INTS:
    if (v.kind != V_NUM || v.is_bool) {
      diag_error(L->d, loc, hint, "%s: '%s' must be a number, found %s", fn, an,
                 v.kind == V_TENSOR ? "a tensor" : "true or false");
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
      else if (spec->lo == 1)
        diag_error(L->d, loc, hint, "%s: '%s' must be at least 1, found %g", fn, an, v.num);
      else
        diag_error(L->d, loc, hint, "%s: '%s' must not be negative, found %g", fn, an, v.num);
      return false;
    }
    return true;
  }
  unreachable();
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
      Value v = eval(L, e, arg->lhs);
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
        ok &= check_arg(L, sig, &sig->args[k], v, arg->loc);
      }
      continue;
    }
    Value v = eval(L, e, arg);
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
  IrNode *(*build)(Lower *L, Env *e, const Args *a);
} Builtin;

static const char *tshape(const IrNode *n, char *buf) {
  return ir_shape_str(n->ndim, n->shape, buf, 96);
}

static IrNode *build_linear(Lower *L, Env *e, const Args *a) {
  IrNode *x = arg_tensor(a, 0);
  char b[96];
  if (x->ndim != 2) {
    const char *hint = x->ndim > 2 ? "add 'flatten' before 'linear'"
                                   : "linear needs a feature dimension: declare the input as f32[features]";
    diag_error(L->d, a->call, hint, "linear: expects an input [N, features], found %s", tshape(x, b));
    return NULL;
  }
  int64_t in = x->shape[1], out = arg_int(a, 1);
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
  const char *scope = next_scope(L, e, "linear");
  IrNode *w = new_param(L, IR_PARAM, scope, "weight", 2, (int64_t[]){out, in}, fan_in_uniform(in), a->call);
  IrNode *y = node(L, IR_MATMUL, (IrNode *[]){x, w}, 2, a->call);
  y->attr.i[1] = 1;   // tb: weights are [out, in], as PyTorch stores them
  if (!(y = finish(L, y, scope)))
    return NULL;
  if (arg_num(a, 2) == 0)
    return y;
  IrNode *bias = new_param(L, IR_PARAM, scope, "bias", 1, (int64_t[]){out}, fan_in_uniform(in), a->call);
  return finish(L, node(L, IR_ADD, (IrNode *[]){y, bias}, 2, a->call), scope);
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
  int64_t c = x->shape[1], o = arg_int(a, 1), k = arg_int(a, 2);
  double wsize = (double)o * (double)c * (double)k * (double)k;
  if (wsize > MAX_ELEMS) {
    diag_error(L->d, a->call, NULL, "conv2d: the weight [%lld,%lld,%lld,%lld] would have more than %lld elements",
               (long long)o, (long long)c, (long long)k, (long long)k, MAX_ELEMS);
    return NULL;
  }
  const char *scope = next_scope(L, e, "conv2d");
  IrInit init = fan_in_uniform(c * k * k);
  IrNode *src[3] = {x, new_param(L, IR_PARAM, scope, "weight", 4, (int64_t[]){o, c, k, k}, init, a->call)};
  int nsrc = 2;
  if (arg_num(a, 6) != 0)
    src[nsrc++] = new_param(L, IR_PARAM, scope, "bias", 1, (int64_t[]){o}, init, a->call);
  IrNode *y = node(L, IR_CONV2D, src, nsrc, a->call);
  int64_t s = arg_int(a, 3), p = arg_int(a, 4), dil = arg_int(a, 5);
  int64_t attrs[6] = {s, s, p, p, dil, dil};
  memcpy(y->attr.i, attrs, sizeof attrs);
  return finish(L, y, scope);
}

// maxpool(kernel, stride = kernel, pad = 0, dilation = 1) and avgpool.
static IrNode *build_pool(Lower *L, Env *e, const Args *a, IrOp op, const char *kind) {
  IrNode *y = node(L, op, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  int64_t k = arg_int(a, 1), s = a->given[2] ? arg_int(a, 2) : k, p = arg_int(a, 3);
  int64_t attrs[8] = {k, k, s, s, p, p, 1, 1};
  if (op == IR_MAXPOOL)
    attrs[6] = attrs[7] = arg_int(a, 4);
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

static IrNode *build_softmax_impl(Lower *L, Env *e, const Args *a, IrOp op, const char *kind) {
  IrNode *y = node(L, op, (IrNode *[]){arg_tensor(a, 0)}, 1, a->call);
  y->attr.i[0] = 1;   // over the class (channel) dimension, as PyTorch's dim=1
  return finish(L, y, next_scope(L, e, kind));
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

static IrNode *reshape_to(Lower *L, IrNode *x, int ndim, const int64_t *shape, SrcLoc loc,
                          const char *scope) {
  IrNode *y = node(L, IR_RESHAPE, (IrNode *[]){x}, 1, loc);
  y->ndim = ndim;
  memcpy(y->shape, shape, sizeof(int64_t) * ndim);
  return finish(L, y, scope);
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

// An axis of x as a call gives it (negative: from the end), in range and
// not the batch dimension; -1 after a report.
static int tensor_axis(Lower *L, const char *fn, const IrNode *x, double v, SrcLoc loc, const char *doing) {
  char b[96], hint[160];
  if (v != floor(v) || v < -x->ndim || v >= x->ndim) {
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

static IrNode *build_matmul(Lower *L, Env *e, const Args *a) {
  IrNode *y = node(L, IR_MATMUL, (IrNode *[]){arg_tensor(a, 0), arg_tensor(a, 1)}, 2, a->call);
  return finish(L, y, next_scope(L, e, "matmul"));
}

//
// Recurrent layers, unrolled: one GEMM projects every step's input at once,
// then each step is a GEMM of the previous hidden state whose epilogue adds
// that step's projection, slices of the gates, and the gate arithmetic as
// elementwise nodes (which fuse into one loop per step). Autodiff and the
// memory planner see plain nodes, so backpropagation through time comes
// with them. Every node has the layer's scope: `nnc check` shows one row.
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

  // Every step's input projection at once: [N, T, G]. The LSTM adds both
  // biases here; the GRU keeps b_hh for the step, where r scales its n part.
  IrNode *xp = rnn_bin(&r, IR_ADD, rnn_matmul(&r, x, w_ih), b_ih);
  if (lstm)
    xp = rnn_bin(&r, IR_ADD, xp, b_hh);
  // As [N, T * G], so that a step's slice is [N, G] with no reshape after
  // it (which would copy it): a load at an offset in the step's loop.
  if (xp)
    xp = reshape_to(L, xp, 2, (int64_t[]){IR_N, T * G}, r.loc, r.scope);
  IrNode *h = NULL, *c = NULL;
  IrNode **seq = arg_num(a, 2) ? arena_alloc(L->a, sizeof(IrNode *) * T) : NULL;
  for (int64_t t = 0; t < T; t++) {
    if (lstm) {
      // gates = x_t W_ih^T + b_ih + b_hh + h W_hh^T, in order i, f, g, o;
      // at step 0 (h = 0) the gates are slices of the projection itself.
      IrNode *gates = xp;
      int64_t at = t * G;
      if (t) {
        gates = rnn_bin(&r, IR_ADD, rnn_matmul(&r, h, w_hh), rnn_slice(&r, xp, 1, at, at + G));
        at = 0;
      }
      IrNode *i = rnn_un(&r, IR_SIGMOID, rnn_slice(&r, gates, 1, at, at + H));
      IrNode *g = rnn_un(&r, IR_TANH, rnn_slice(&r, gates, 1, at + 2 * H, at + 3 * H));
      IrNode *o = rnn_un(&r, IR_SIGMOID, rnn_slice(&r, gates, 1, at + 3 * H, at + 4 * H));
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
#define N(n, def) {n, A_NUM, false, def, 0}
#define B(n, def) {n, A_BOOL, false, def, 0}
#define SIG(name, usage, ...) \
  {name, (const ArgSpec[]){__VA_ARGS__}, sizeof((ArgSpec[]){__VA_ARGS__}) / sizeof(ArgSpec), usage}

static const Builtin builtins[] = {
    {SIG("linear", "(x, out, bias = true)", T("x"), I("out", true, 0, 1), B("bias", 1)), build_linear},
    {SIG("conv2d", "(x, out, kernel, stride = 1, pad = 0, dilation = 1, bias = true)", T("x"),
         I("out", true, 0, 1), I("kernel", true, 0, 1), I("stride", false, 1, 1), I("pad", false, 0, 0),
         I("dilation", false, 1, 1), B("bias", 1)), build_conv2d},
    {SIG("maxpool", "(x, kernel, stride = kernel, pad = 0, dilation = 1)", T("x"), I("kernel", true, 0, 1),
         I("stride", false, 0, 1), I("pad", false, 0, 0), I("dilation", false, 1, 1)), build_maxpool},
    {SIG("avgpool", "(x, kernel, stride = kernel, pad = 0)", T("x"), I("kernel", true, 0, 1),
         I("stride", false, 0, 1), I("pad", false, 0, 0)), build_avgpool},
    {SIG("global_avgpool", "(x)", T("x")), build_global_avgpool},
    {SIG("batchnorm", "(x, eps = 1e-5, momentum = 0.1)", T("x"), N("eps", 1e-5), N("momentum", 0.1)), build_batchnorm},
    {SIG("dropout", "(x, p = 0.5)", T("x"), N("p", 0.5)), build_dropout},
    {SIG("flatten", "(x)", T("x")), build_flatten},
    {SIG("reshape", "(x, d1, d2, ...)", T("x"), {"dims", A_INTS, false, 0, 1}), build_reshape},
    {SIG("relu", "(x)", T("x")), build_relu},
    {SIG("sigmoid", "(x)", T("x")), build_sigmoid},
    {SIG("tanh", "(x)", T("x")), build_tanh},
    {SIG("exp", "(x)", T("x")), build_exp},
    {SIG("log", "(x)", T("x")), build_log},
    {SIG("softmax", "(x)", T("x")), build_softmax},
    {SIG("log_softmax", "(x)", T("x")), build_log_softmax},
    {SIG("matmul", "(a, b)", T("a"), T("b")), build_matmul},
    {SIG("concat", "(a, b, ..., axis = k)", {"tensors", A_TENSORS, true, 0, 0}, {"axis", A_NUM, true, 0, 0}),
     build_concat},
    {SIG("lstm", "(x, hidden, sequence = false)", T("x"), I("hidden", true, 0, 1), B("sequence", 0)), build_lstm},
    {SIG("gru", "(x, hidden, sequence = false)", T("x"), I("hidden", true, 0, 1), B("sequence", 0)), build_gru},
};

// Names that mean something else where a layer is expected.
static const char *const loss_names[] = {"cross_entropy", "nll", "mse", "l1", "bce_with_logits"};
static const char *const optim_names[] = {"sgd", "adam", "adamw"};
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
  if (b->nparams + 1 > MAX_ARGS) {
    diag_error(L->d, b->loc, NULL, "block '%s' has more than %d parameters", b->name, MAX_ARGS - 1);
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
  return tensor_value(bi->build(L, e, &a));
}

// `lhs -> stage`: the stage is called with lhs as its first argument.
static Value eval_pipe(Lower *L, Env *e, const AstNode *n) {
  Value lhs = eval(L, e, n->lhs);
  if (lhs.kind == V_NUM) {
    diag_error(L->d, n->lhs->loc, "a pipeline starts from a tensor: an input or a value",
               "the left side of '->' is a number, not a tensor");
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
  const char *scope = next_scope(L, e, op_kind(n->op));
  IrNode *x = a.kind == V_TENSOR ? a.t : const_node(L, a.num, n->lhs->loc, scope);
  IrNode *y = b.kind == V_TENSOR ? b.t : const_node(L, b.num, n->rhs->loc, scope);
  static const IrOp ops[128] = {['+'] = IR_ADD, ['-'] = IR_SUB, ['*'] = IR_MUL, ['/'] = IR_DIV, ['@'] = IR_MATMUL};
  return tensor_value(finish(L, node(L, ops[(int)n->op], (IrNode *[]){x, y}, 2, n->loc), scope));
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

static Value eval(Lower *L, Env *e, const AstNode *n) {
  switch (n->kind) {
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
      return ERR;
    }
    return tensor_value(finish(L, node(L, IR_NEG, (IrNode *[]){v.t}, 1, n->loc), next_scope(L, e, "neg")));
  }
  case AST_KWARG:
    diag_error(L->d, n->loc, NULL, "a keyword argument '%s = ...' outside a call", n->name);
    return ERR;
  default:
    break;
  }
  unreachable();
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

// Reads a type f32[d1, ...] into shape (after a leading IR_N when batched).
// Returns ndim, or -1 after a report.
static int eval_type(Lower *L, Env *e, const AstType *t, bool batched, int64_t *shape, const char *whose) {
  if (strcmp(t->dtype, "f32")) {
    const char *names[] = {"f32"};
    const char *s = suggest_name(t->dtype, names, 1);
    diag_error(L->d, t->loc, s ? "did you mean 'f32'?" : "tensors hold 32-bit floats: write f32[...]",
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
    int nd = eval_type(L, e, t, true, shape, s->name);
    if (nd < 0) {
      bind(L, e, s->name, s->loc, ERR, s->kind == AST_INPUT ? "input" : "target");
      return;
    }
    n = ir_leaf(L->g, s->kind == AST_INPUT ? IR_INPUT : IR_TARGET, s->name, DT_F32, nd, shape, s->loc);
  }
  if (!bind(L, e, s->name, s->loc, tensor_value(n), s->kind == AST_INPUT ? "input" : "target"))
    return;
  if (s->kind == AST_INPUT) {
    if (!L->m->input)
      L->m->input = n;
  } else if (L->m->target) {
    diag_error(L->d, s->loc, "the loss compares the output with one target",
               "a second target '%s' (the first is '%s')", s->name, L->m->target->name);
  } else {
    L->m->target = n;
  }
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

// Initializers: zeros, ones, constant(v), normal(mean, std), uniform(low, high),
// or a plain number (constant).
static bool eval_init(Lower *L, Env *e, const AstNode *n, IrInit *out) {
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
      diag_error(L->d, n->loc, "initializers are zeros, ones, constant(v), normal(mean, std), uniform(low, high)",
                 "a parameter's initializer must be a number or an initializer");
    return false;
  }
  int k = lookup_name(L, init_names, countof(init_names), n, "initializer",
                      "initializers are zeros, ones, constant(v), normal(mean, std), uniform(low, high)");
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
  if (!s->lhs || !eval_init(L, e, s->lhs, &init) || nd < 0) {
    bind(L, e, s->name, s->loc, ERR, "parameter");
    return;
  }
  const char *name = arena_printf(L->a, "%s%s", e->prefix, s->name);
  IrNode *p = ir_leaf(L->g, IR_PARAM, name, DT_F32, nd, shape, s->loc);
  p->init = init;
  bind(L, e, s->name, s->loc, tensor_value(p), "parameter");
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
    case AST_EXPR: {
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
  if (result.kind == V_NUM) {
    diag_error(L->d, body[n - 1]->loc, NULL, "the result of %s '%s' is a number, not a tensor", what, e->decl->name);
    return ERR;
  }
  for (Binding *b = e->names; b && L->d->nerrors == errors; b = b->next)
    if (!b->used && b->v.kind != V_ERR && strcmp(b->what, "target"))
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

static void lower_loss(Lower *L, const Decl *d) {
  static const IrOp ops[] = {IR_CROSS_ENTROPY, IR_NLL, IR_MSE, IR_L1, IR_BCE_WITH_LOGITS};
  const AstNode *c = d->call;
  int k = lookup_name(L, loss_names, countof(loss_names), c, "loss",
                      "losses are cross_entropy, nll, mse, l1, bce_with_logits");
  if (k < 0)
    return;
  if (c->kind == AST_CALL && c->nargs > 0) {
    diag_error(L->d, c->args[0]->loc, "losses take the mean over the batch and have no options",
               "%s takes no arguments", c->name);
    return;
  }
  Model *m = L->m;
  m->has_loss = true;
  if (!m->target && L->saw_target)
    return;   // the target's own error was reported
  if (!m->target) {
    diag_error(L->d, c->loc, k < 2 ? "declare one in the model: `target label: class(10)`"
                                   : "declare one in the model: `target y: f32[...]`",
               "loss %s needs a target, and model '%s' has none", c->name, m->g->name);
    return;
  }
  if (!m->g->output)
    return;
  IrNode *out = m->g->output;
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
  IrNode *loss = node(L, ops[k], (IrNode *[]){out, m->target}, 2, c->loc);
  if (finish(L, loss, "loss"))
    m->g->loss = loss;
}

static void lower_optimizer(Lower *L, const Decl *d) {
  static const ArgSpec sgd[] = {N("lr", 1e-3), N("momentum", 0), N("dampening", 0), B("nesterov", 0),
                                N("weight_decay", 0)};
  static const ArgSpec adam[] = {N("lr", 1e-3), N("beta1", 0.9), N("beta2", 0.999), N("eps", 1e-8),
                                 N("weight_decay", 0)};
  static const ArgSpec adamw[] = {N("lr", 1e-3), N("beta1", 0.9), N("beta2", 0.999), N("eps", 1e-8),
                                  N("weight_decay", 0.01)};
  static const Signature sigs[] = {
      {"sgd", sgd, 5, "(lr = 0.001, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0)"},
      {"adam", adam, 5, "(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0)"},
      {"adamw", adamw, 5, "(lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01)"},
  };
  const AstNode *c = d->call;
  int k = lookup_name(L, optim_names, countof(optim_names), c, "optimizer", "optimizers are sgd, adam, adamw");
  if (k < 0)
    return;
  Args a;
  if (!decl_args(L, &sigs[k], c, &a))
    return;
  OptimConfig *o = &L->m->opt;
  *o = (OptimConfig){.kind = (OptimKind)k, .lr = arg_num(&a, 0), .weight_decay = arg_num(&a, 4)};
  if (k == OPT_SGD) {
    o->momentum = arg_num(&a, 1);
    o->dampening = arg_num(&a, 2);
    o->nesterov = arg_num(&a, 3) != 0;
  } else {
    o->beta1 = arg_num(&a, 1);
    o->beta2 = arg_num(&a, 2);
    o->eps = arg_num(&a, 3);
  }
  L->m->has_optimizer = true;
  struct { bool bad; int arg; const char *msg; } checks[] = {
      {!(o->lr > 0), 0, "the learning rate must be positive"},
      {!(o->weight_decay >= 0), 4, "weight_decay must not be negative"},
      {k == OPT_SGD && !(o->momentum >= 0 && o->momentum < 1), 1, "momentum must be in [0, 1)"},
      {k == OPT_SGD && !(o->dampening >= 0 && o->dampening <= 1), 2, "dampening must be in [0, 1]"},
      {k == OPT_SGD && o->nesterov && (o->momentum <= 0 || o->dampening != 0), 3,
       "nesterov needs a positive momentum and zero dampening (as in PyTorch)"},
      {k != OPT_SGD && !(o->beta1 >= 0 && o->beta1 < 1), 1, "beta1 must be in [0, 1)"},
      {k != OPT_SGD && !(o->beta2 >= 0 && o->beta2 < 1), 2, "beta2 must be in [0, 1)"},
      {k != OPT_SGD && !(o->eps > 0), 3, "eps must be positive"},
  };
  for (int i = 0; i < countof(checks); i++)
    if (checks[i].bad)
      diag_error(L->d, a.loc[checks[i].arg], NULL, "%s: %s", c->name, checks[i].msg);
}

static void lower_schedule(Lower *L, const Decl *d) {
  static const ArgSpec cst[] = {I("warmup", false, 0, 0)};
  static const ArgSpec step[] = {I("step_size", true, 0, 1), N("gamma", 0.1), I("warmup", false, 0, 0)};
  static const ArgSpec cos[] = {I("t_max", false, 0, 0), N("min_lr", 0), I("warmup", false, 0, 0)};
  static const Signature sigs[] = {
      {"constant", cst, 1, "(warmup = 0)"},
      {"step", step, 3, "(step_size, gamma = 0.1, warmup = 0)"},
      {"cosine", cos, 3, "(t_max = epochs, min_lr = 0, warmup = 0)"},
  };
  static const char *const names[] = {"constant", "step", "cosine"};
  const AstNode *c = d->call;
  int k = lookup_name(L, names, countof(names), c, "schedule",
                      "schedules are constant, step(step_size, gamma), cosine(t_max, min_lr)");
  if (k < 0)
    return;
  Args a;
  if (!decl_args(L, &sigs[k], c, &a))
    return;
  ScheduleConfig *s = &L->m->sched;
  *s = (ScheduleConfig){.kind = (SchedKind)k, .gamma = 1};
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
  }
}

static void lower_train(Lower *L, const Decl *d) {
  static const ArgSpec specs[] = {I("batch", false, 64, 1), I("epochs", false, 1, 1), B("shuffle", 1),
                                  I("seed", false, 1, 0), N("val_split", 0)};
  static const Signature sig = {"train", specs, 5,
                                "{ batch = 64, epochs = 1, shuffle = true, seed = 1, val_split = 0 }"};
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
  if (!(t->val_split >= 0 && t->val_split < 1))
    diag_error(L->d, a.loc[4], "the fraction of the training data held out for validation",
               "train: val_split must be in [0, 1), found %g", t->val_split);
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
  if (out.kind == V_TENSOR)
    m->g->output = out.t;
  if (!L.saw_input && md->nbody > 0)
    diag_error(d, md->name_loc, "declare what the model reads: `input image: f32[28, 28]`",
               "model '%s' has no input", md->name);
  if (once[DECL_LOSS])
    lower_loss(&L, once[DECL_LOSS]);
  if (once[DECL_OPTIMIZER])
    lower_optimizer(&L, once[DECL_OPTIMIZER]);
  if (once[DECL_SCHEDULE])
    lower_schedule(&L, once[DECL_SCHEDULE]);
  if (once[DECL_TRAIN])
    lower_train(&L, once[DECL_TRAIN]);
  collect_inputs(m, a);
  return d->nerrors > before ? NULL : m;
}
