// check.c: the summary table `nnc check` prints for each model.
//
// One row per layer, in the order the layers were built: the nodes a layer
// made share a scope (linear_1, down_1.conv2d_2), so a row sums its nodes'
// FLOPs and its trainable parameters, and shows the shape of its last node.
// Explicitly declared parameters and inputs get rows of their own.
#include "cli.h"

#include <string.h>

typedef struct Row {
  const char *name;      // scope, or the input's / parameter's name
  const char *kind;      // linear, conv2d, input, param, ...
  const IrNode *last;    // the node whose shape the row shows
  int64_t params;        // trainable elements
  int64_t flops;         // per sample
} Row;

// "1,234,567"
static const char *commas(int64_t v, char *buf) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v), j = 0;
  for (int i = 0; i < n; i++) {
    buf[j++] = tmp[i];
    if (tmp[i] != '-' && (n - i - 1) % 3 == 0 && i < n - 1)
      buf[j++] = ',';
  }
  buf[j] = 0;
  return buf;
}

// The layer kind of a scope: "down_1.conv2d_2" -> "conv2d".
static const char *scope_kind(Arena *a, const char *scope) {
  const char *last = strrchr(scope, '.');
  last = last ? last + 1 : scope;
  const char *u = strrchr(last, '_');
  return u ? arena_strndup(a, last, u - last) : last;
}

// Groups g's nodes into rows; returns the count.
static int collect_rows(const IrGraph *g, Arena *a, Row *rows) {
  int n = 0;
  StrMap index = {0};   // name -> Row *
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *x = g->nodes[i];
    if ((x->scope && !strcmp(x->scope, "loss")) || x->op == IR_TARGET)
      continue;   // the loss and its terms, the targets: no rows
    const char *key = x->scope;
    if (!key && (x->op == IR_INPUT || x->op == IR_PARAM || (x->op == IR_BUFFER && x->frozen)))
      key = x->name;
    if (!key)
      continue;
    Row *r = strmap_get(&index, key);
    if (!r) {
      r = &rows[n++];
      *r = (Row){key, x->scope ? scope_kind(a, x->scope) : x->op == IR_INPUT ? "input" : "param", x, 0, 0};
      strmap_put(a, &index, key, r);
    }
    if (x->op == IR_PARAM)
      r->params += ir_numel(x, 1);
    if (!ir_op_is_leaf(x->op) || !x->scope)
      r->last = x;
    r->flops += ir_flops(x);
  }
  return n;
}

static void print_optimizer(FILE *out, const OptimConfig *o) {
  static const char *const names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
  fprintf(out, "%s(lr = %g", names[o->kind], o->lr);
  if (o->kind == OPT_SGD) {
    if (o->momentum)
      fprintf(out, ", momentum = %g", o->momentum);
    if (o->dampening)
      fprintf(out, ", dampening = %g", o->dampening);
    if (o->nesterov)
      fprintf(out, ", nesterov = true");
  } else if (o->kind == OPT_RMSPROP) {
    fprintf(out, ", alpha = %g, eps = %g", o->alpha, o->eps);
    if (o->momentum)
      fprintf(out, ", momentum = %g", o->momentum);
    if (o->centered)
      fprintf(out, ", centered = true");
  } else if (o->kind == OPT_ADAGRAD) {
    if (o->lr_decay)
      fprintf(out, ", lr_decay = %g", o->lr_decay);
    if (o->initial_accumulator_value)
      fprintf(out, ", initial_accumulator_value = %g", o->initial_accumulator_value);
    fprintf(out, ", eps = %g", o->eps);
  } else {
    fprintf(out, ", beta1 = %g, beta2 = %g, eps = %g", o->beta1, o->beta2, o->eps);
  }
  if (o->weight_decay)
    fprintf(out, ", weight_decay = %g", o->weight_decay);
  if (o->clip_norm)
    fprintf(out, ", clip_norm = %g", o->clip_norm);
  fprintf(out, ")");
}

// One loss: "cross_entropy(output [N,10], target label: class(10))"; an
// output other than a single unnamed one by its name, a target that is an
// input as one.
static void print_loss_term(FILE *out, const IrGraph *g, const IrNode *loss) {
  char b1[96], b2[96];
  const IrNode *o = loss->src[0], *t = loss->src[1];
  if (t->dtype == DT_I32)
    snprintf(b2, sizeof b2, "class(%lld)", (long long)t->attr.i[0]);
  else   // as declared: the shape of one sample
    snprintf(b2, sizeof b2, "f32%s", ir_shape_str(t->ndim - 1, t->shape + 1, b1, sizeof b1));
  const char *name = ir_output_name(g, o);
  fprintf(out, "%s(%s %s, %s %s: %s", ir_op_info(loss->op)->mnem, g->noutputs > 1 ? name : "output",
          ir_shape_str(o->ndim, o->shape, b1, sizeof b1), t->op == IR_INPUT ? "input" : "target", t->name, b2);
  if (loss->op == IR_CROSS_ENTROPY && loss->attr.f[0] != 0)
    fprintf(out, ", label_smoothing = %g", loss->attr.f[0]);
  fputc(')', out);
}

static void print_settings(FILE *out, const Model *m) {
  char b1[96];
  const IrGraph *g = m->g;
  if (g->noutputs > 1) {
    fprintf(out, "  outputs    ");
    for (int i = 0; i < g->noutputs; i++)
      fprintf(out, "%s%s %s", i ? ", " : "", g->output_names[i],
              ir_shape_str(g->outputs[i]->ndim, g->outputs[i]->shape, b1, sizeof b1));
    fputc('\n', out);
  }
  IrNode *terms[IR_MAX_LOSS_TERMS];
  double w[IR_MAX_LOSS_TERMS];
  int nterms = ir_loss_terms(g, terms, w, IR_MAX_LOSS_TERMS);
  if (g->loss && nterms == 1 && w[0] == 1) {
    fprintf(out, "  loss       ");
    print_loss_term(out, g, terms[0]);
    fputc('\n', out);
  } else if (g->loss) {   // the weighted sum, term by term
    fprintf(out, "  loss       ");
    for (int i = 0; i < nterms && i < IR_MAX_LOSS_TERMS; i++) {
      fprintf(out, "%s%g * ", i ? " + " : "", w[i]);
      print_loss_term(out, g, terms[i]);
    }
    fputc('\n', out);
  } else {
    fprintf(out, "  loss       none declared (add `loss cross_entropy` or another to train)\n");
  }
  fprintf(out, "  optimizer  ");
  print_optimizer(out, &m->opt);
  fprintf(out, "%s\n", m->has_optimizer ? "" : "  (default)");
  if (m->sched.kind != SCHED_CONSTANT || m->sched.warmup) {
    static const char *const names[] = {"constant", "step", "cosine", "onecycle", "plateau"};
    fprintf(out, "  schedule   %s", names[m->sched.kind]);
    if (m->sched.kind == SCHED_STEP)
      fprintf(out, "(step_size = %d, gamma = %g)", m->sched.step_size, m->sched.gamma);
    if (m->sched.kind == SCHED_COSINE)
      fprintf(out, "(t_max = %d, min_lr = %g)", m->sched.t_max, m->sched.min_lr);
    if (m->sched.kind == SCHED_ONECYCLE)
      fprintf(out, "(max_lr = %g, pct_start = %g, div_factor = %g, final_div_factor = %g, anneal_strategy = %s), "
              "per step", m->sched.max_lr > 0 ? m->sched.max_lr : m->opt.lr, m->sched.pct_start,
              m->sched.div_factor, m->sched.final_div_factor, m->sched.anneal_linear ? "linear" : "cos");
    if (m->sched.kind == SCHED_PLATEAU)
      fprintf(out, "(factor = %g, patience = %d, threshold = %g, threshold_mode = %s, cooldown = %d, min_lr = %g, "
              "eps = %g), on the validation loss", m->sched.factor, m->sched.patience, m->sched.threshold,
              m->sched.threshold_abs ? "abs" : "rel", m->sched.cooldown, m->sched.min_lr, m->sched.eps);
    if (m->sched.warmup)
      fprintf(out, ", warmup %d steps", m->sched.warmup);
    fprintf(out, "\n");
  }
  const TrainConfig *t = &m->train;
  fprintf(out, "  train      batch = %d, epochs = %d, shuffle = %s, seed = %llu", t->batch, t->epochs,
          t->shuffle ? "true" : "false", (unsigned long long)t->seed);
  if (t->val_split)
    fprintf(out, ", val_split = %g", t->val_split);
  const AugmentConfig *g2 = &t->augment;
  if (g2->shift)
    fprintf(out, ", shift = %d", g2->shift);
  if (g2->crop)
    fprintf(out, ", crop = %d", g2->crop);
  if (g2->hflip)
    fprintf(out, ", hflip = true");
  if (g2->rotate)
    fprintf(out, ", rotate = %g", g2->rotate);
  if (g2->noise)
    fprintf(out, ", noise = %g", g2->noise);
  fprintf(out, "\n");
}

void cli_print_summary(FILE *out, const Model *m) {
  const IrGraph *g = m->g;
  Arena *a = arena_new();
  Row *rows = arena_alloc(a, sizeof(Row) * (g->nnodes + 1));
  int n = collect_rows(g, a, rows);
  int wname = 5, wkind = 4, wshape = 6, wparams = 6, wflops = 13;
  char buf[96];
  int64_t tparams = 0, tflops = 0;
  for (int i = 0; i < n; i++) {
    int l;
    if ((l = strlen(rows[i].name)) > wname) wname = l;
    if ((l = strlen(rows[i].kind)) > wkind) wkind = l;
    if ((l = strlen(ir_shape_str(rows[i].last->ndim, rows[i].last->shape, buf, sizeof buf))) > wshape) wshape = l;
    if ((l = strlen(commas(rows[i].params, buf))) > wparams) wparams = l;
    if ((l = strlen(commas(rows[i].flops, buf))) > wflops) wflops = l;
    tparams += rows[i].params;
    tflops += rows[i].flops;
  }
  if ((int)strlen(commas(tparams, buf)) > wparams) wparams = strlen(buf);
  if ((int)strlen(commas(tflops, buf)) > wflops) wflops = strlen(buf);
  fprintf(out, "model %s (%s)\n", g->name, g->file ? g->file : "?");
  fprintf(out, "  %-*s  %-*s  %-*s  %*s  %*s\n", wname, "layer", wkind, "kind", wshape, "output",
          wparams, "params", wflops, "FLOPs/sample");
  fprintf(out, "  %.*s\n", wname + wkind + wshape + wparams + wflops + 8,
          "------------------------------------------------------------------------------------------"
          "------------------------------------------------------------------------------------------");
  for (int i = 0; i < n; i++) {
    char p[32], f[32];
    fprintf(out, "  %-*s  %-*s  %-*s  %*s  %*s\n", wname, rows[i].name, wkind, rows[i].kind, wshape,
            ir_shape_str(rows[i].last->ndim, rows[i].last->shape, buf, sizeof buf), wparams,
            commas(rows[i].params, p), wflops, commas(rows[i].flops, f));
  }
  char p[32], f[32];
  fprintf(out, "  %-*s  %*s  %*s\n", wname + wkind + wshape + 4, "total", wparams, commas(tparams, p),
          wflops, commas(tflops, f));
  int64_t frozen = 0;   // frozen parameters are buffers (no gradient, no update)
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i]->op == IR_BUFFER && g->nodes[i]->frozen)
      frozen += ir_numel(g->nodes[i], 1);
  if (frozen)
    fprintf(out, "  trainable  %s params; frozen %s (saved, not trained)\n", commas(tparams, p), commas(frozen, f));
  print_settings(out, m);
  arena_free(a);
}
