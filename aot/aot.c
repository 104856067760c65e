// aot.c: `nnc compile`: a model's entry points compiled ahead of time into
// one object file, its description and API beside them, and the header
// that declares the API.
//
//   for each entry point: pass_compile (as the cpu backend)
//   describe:             RtModelInfo from the model and the programs
//   --weights:            the checkpoint loaded and checked (train_checkpoint_load
//                         on a ref executor), its tensors but optimizer state
//                         embedded with --embed
//   cg_emit_artifact:     the object file
//   header:               the API, with the model's sizes as constants
//   --shared:             the object and the runtime library linked by cc
//
// Every file goes to a temporary name first and is renamed into place only
// when all of them are complete.
#include "aot.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NAME 64   // the API's prefix: PREFIX_write_tensor and the rest stay readable

bool aot_valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME || s[0] == '_' || isdigit((unsigned char)s[0]) || !strncmp(s, "nncrt", 5))
    return false;   // nncrt*: the runtime library's names
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_')
      return false;
  return true;
}

static bool is_state(const IrNode *n) { return n->op == IR_PARAM || n->op == IR_BUFFER; }

//
// The description (RtModelInfo), built in a growing buffer
//

typedef struct Blob {
  char *p;
  size_t n, cap;
} Blob;

// Appends n bytes (zeros when src is NULL) at an offset aligned to align;
// returns the offset.
static int64_t put(Blob *b, const void *src, size_t n, size_t align) {
  size_t at = (b->n + align - 1) / align * align;
  if (at + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < at + n)
      cap *= 2;
    b->p = xrealloc(b->p, cap);
    memset(b->p + b->cap, 0, cap - b->cap);
    b->cap = cap;
  }
  if (src)
    memcpy(b->p + at, src, n);
  b->n = at + n;
  return (int64_t)at;
}

static int64_t put_str(Blob *b, const char *s) { return put(b, s, strlen(s) + 1, 1); }

_Static_assert(RT_MAX_TARGETS == IR_MAX_TARGETS, "a compiled model describes every target");

// Where node id of program c lies in its arena, or -1.
static int64_t arena_at(const Compilation *c, const IrNode *n) {
  if (!n)
    return -1;
  const KBufInfo *bi = &c->prog->buf[n->id];
  return bi->bytes > 0 && (bi->space == KB_ARENA || bi->space == KB_INPUT) ? bi->offset : -1;
}

// The entry point's part of the description.
static void describe_entry(Blob *b, int e, const Compilation *c) {
  const KProgram *p = c->prog;
  const Model *cm = c->model;   // the copy the program was compiled from
  RtEntryInfo en = {.present = 1, .min_batch = 1, .arena_bytes = p->arena_bytes, .naux = p->naux};
  for (int i = 0; i < RT_MAX_INPUTS; i++)
    en.input[i] = i < cm->ninputs ? arena_at(c, cm->inputs[i]) : -1;
  for (int i = 0; i < RT_MAX_TARGETS; i++)
    en.target[i] = i < cm->ntargets ? arena_at(c, cm->targets[i]) : -1;
  en.output = arena_at(c, cm->g->output);
  int no = cm->g->noutputs > 0 ? cm->g->noutputs : 1;
  int64_t *outs = xmalloc(sizeof(int64_t) * no);
  for (int i = 0; i < no; i++)
    outs[i] = arena_at(c, cm->g->noutputs ? cm->g->outputs[i] : cm->g->output);
  en.outputs = put(b, outs, sizeof(int64_t) * no, 8);
  free(outs);
  en.scalars = p->scalars ? p->buf[p->g->nnodes].offset : -1;
  int64_t *aux = xcalloc(p->naux ? p->naux : 1, sizeof(int64_t));
  for (int k = 0; k < p->nkernels; k++) {
    const RtLib *d = p->kernels[k]->lib;
    if (!d)
      continue;
    if (d->aux >= 0 && d->aux < p->naux && d->aux_bytes > aux[d->aux])
      aux[d->aux] = d->aux_bytes;
    if (e == ENTRY_TRAIN && d->kind == RL_BATCHNORM) {   // one value per channel at B = 1: k_batchnorm refuses it
      int64_t hw = 1;
      for (int j = 2; j < d->buf[0].ndim; j++)
        hw *= d->buf[0].shape[j];
      if (hw == 1)
        en.min_batch = 2;
    }
  }
  en.aux_bytes = put(b, aux, sizeof(int64_t) * (size_t)(p->naux ? p->naux : 1), 8);
  free(aux);
  ((RtModelInfo *)b->p)->entry[e] = en;
}

// The persistent tensors of m in graph order, each at its place in the
// state block of the compiled programs (alike for every entry point).
static RtTensorInfo *list_tensors(const Model *m, const Compilation *c, int *count) {
  const IrGraph *g = m->g;
  RtTensorInfo *t = xcalloc(g->nnodes + 1, sizeof *t);
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *u = g->nodes[i];
    if (!is_state(u))
      continue;
    const IrNode *k = c->where ? c->where[u->id] : u;
    if (!k || !is_state(k) || c->prog->buf[k->id].space != KB_STATE)
      nnc_bug(__FILE__, __LINE__, "a parameter or buffer has no persistent place in the compiled model");
    RtTensorInfo *r = &t[n++];
    r->offset = c->prog->buf[k->id].offset;
    r->numel = ir_numel(u, 1);
    r->ndim = u->ndim;
    memcpy(r->shape, u->shape, sizeof(int64_t) * u->ndim);
    r->init = k->init.kind;
    r->init_a = k->init.a;
    r->init_b = k->init.b;
    r->optim_state = data_ckpt_optimizer_state(u->name);
    r->name = (int64_t)i;   // the node's index until the names are put in
  }
  *count = n;
  return t;
}

// The description of m compiled as comp[] (NULL where an entry point is
// left out), its API named prefix_*: an RtModelInfo and what it points to.
static Blob describe(const Model *m, Compilation *const comp[ENTRY_COUNT], const char *prefix) {
  Blob b = {0};
  put(&b, NULL, sizeof(RtModelInfo), 16);
  const Compilation *first = NULL;
  for (int e = 0; e < ENTRY_COUNT; e++)
    if (comp[e] && !first)
      first = comp[e];
  int nt;
  RtTensorInfo *t = list_tensors(m, first, &nt);
  for (int i = 0; i < nt; i++)
    t[i].name = put_str(&b, m->g->nodes[t[i].name]->name);
  CkptTensor *ck = xcalloc(nt ? nt : 1, sizeof *ck);
  for (int i = 0; i < nt; i++)
    ck[i] = (CkptTensor){b.p + t[i].name, t[i].ndim, t[i].shape};
  uint64_t hash = data_ckpt_hash(ck, nt);
  free(ck);
  int64_t tensors = put(&b, t, sizeof *t * (size_t)(nt ? nt : 1), 8);
  free(t);
  int64_t name = put_str(&b, m->g->name), api = put_str(&b, prefix), version = put_str(&b, NNC_VERSION);
  int64_t input_name[RT_MAX_INPUTS] = {0};
  for (int i = 0; i < m->ninputs; i++)
    input_name[i] = put_str(&b, m->inputs[i]->name);
  int64_t target_name[RT_MAX_TARGETS] = {0};
  for (int i = 0; i < m->ntargets; i++)
    target_name[i] = put_str(&b, m->targets[i]->name);
  int no = m->g->noutputs > 0 ? m->g->noutputs : 1;
  RtOutputInfo *outs = xcalloc(no, sizeof *outs);
  for (int i = 0; i < no; i++) {
    const IrNode *o = m->g->noutputs ? m->g->outputs[i] : m->g->output;
    outs[i] = (RtOutputInfo){ir_numel(o, 1), put_str(&b, m->g->noutputs ? m->g->output_names[i] : "output")};
  }
  int64_t outputs = put(&b, outs, sizeof *outs * (size_t)no, 8);
  free(outs);
  for (int e = 0; e < ENTRY_COUNT; e++)
    if (comp[e])
      describe_entry(&b, e, comp[e]);
  RtModelInfo *in = (RtModelInfo *)b.p;   // b.p does not move from here on
  in->magic = RT_MODEL_MAGIC;
  in->abi = RT_ABI;
  in->name = name;
  in->prefix = api;
  in->version = version;
  in->max_batch = first->prog->max_batch;
  in->state_bytes = first->prog->state_bytes;
  in->ninputs = m->ninputs;
  in->ntensors = nt;
  in->tensors = tensors;
  for (int i = 0; i < m->ninputs; i++) {
    in->input_numel[i] = ir_numel(m->inputs[i], 1);
    in->input_name[i] = input_name[i];
    in->input_bound[i] = m->inputs[i]->dtype == DT_I32 ? pass_index_bound(m->g, m->inputs[i]) : 0;
  }
  in->noutputs = no;
  in->outputs = outputs;
  in->output_numel = 0;
  for (int i = 0; i < no; i++)
    in->output_numel += ir_numel(m->g->noutputs ? m->g->outputs[i] : m->g->output, 1);
  const IrNode *tg = m->target;
  in->target_kind = !tg ? RT_TARGET_NONE : tg->dtype == DT_I32 ? RT_TARGET_CLASS : RT_TARGET_REAL;
  in->nclasses = tg && tg->dtype == DT_I32 ? (int32_t)tg->attr.i[0] : 0;
  in->target_numel = 0;
  in->ntargets = m->ntargets;
  for (int i = 0; i < m->ntargets; i++) {
    const IrNode *t = m->targets[i];
    in->targets[i] = (RtTargetInfo){t->dtype == DT_I32 ? RT_TARGET_CLASS : RT_TARGET_REAL,
                                    t->dtype == DT_I32 ? (int32_t)t->attr.i[0] : 0, ir_numel(t, 1), target_name[i]};
    in->target_numel += ir_numel(t, 1);
  }
  in->optimizer = m->opt.kind;
  in->beta1 = m->opt.beta1;
  in->beta2 = m->opt.beta2;
  in->weight_decay = m->opt.weight_decay;
  if (m->opt.kind == OPT_ADAGRAD)
    in->beta1 = m->opt.lr_decay;   // Adagrad has no beta1 (runtime.h)
  in->seed = m->train.seed;
  in->model_hash = hash;
  in->size = (int64_t)b.n;
  return b;
}

//
// --weights
//

// Loads the checkpoint at path into a ref executor of m (which checks it
// as `nnc eval` does) and, with embed, copies its weights into the state
// block the description lays out (optimizer state zero).
static bool load_weights(const Model *m, const RtModelInfo *in, const char *path, bool embed, char **state,
                         CkptInfo *info, char *err, size_t errsz) {
  ExecOptions eo = {.max_batch = 1, .threads = 1, .fuse = false, .entries = 1u << ENTRY_FORWARD};
  Exec *ex = exec_new("ref", m, &eo, err, errsz);
  if (!ex)
    return false;
  bool ok = train_checkpoint_load(ex, path, true, info, err, errsz);
  if (ok && embed) {
    *state = xcalloc(1, in->state_bytes > 0 ? (size_t)in->state_bytes : 1);
    const RtTensorInfo *t = (const RtTensorInfo *)((const char *)in + in->tensors);
    for (int i = 0; i < in->ntensors; i++) {
      int k = exec_find_state(ex, (const char *)in + t[i].name);
      if (k < 0)
        nnc_bug(__FILE__, __LINE__, "a tensor of the description is not the executor's");
      if (t[i].optim_state)
        continue;
      float *v = xmalloc(sizeof(float) * (size_t)(t[i].numel > 0 ? t[i].numel : 1));
      exec_read_state(ex, k, v);
      memcpy(*state + t[i].offset, v, sizeof(float) * (size_t)t[i].numel);
      free(v);
    }
  }
  exec_free(ex);
  return ok;
}

//
// The header
//

static void upper(char *dst, const char *src, size_t n) {
  size_t i = 0;
  for (; src[i] && i + 1 < n; i++)
    dst[i] = (char)toupper((unsigned char)src[i]);
  dst[i] = 0;
}

// A sample's type: the node's without its batch dimension ("f32[28,28]").
static const char *shape_text(const IrNode *n, char *buf, size_t size) {
  char s[160];
  bool batched = n->ndim > 0 && n->shape[0] == IR_N;
  ir_shape_str(n->ndim - batched, n->shape + batched, s, sizeof s);
  snprintf(buf, size, "%s%s", n->dtype == DT_I32 ? "i32" : "f32", s);
  return buf;
}

// s made safe inside a C comment: "*/" written "*\/", control characters '?'.
static char *comment_text(const char *s) {
  StrBuf b = {0};
  for (; *s; s++) {
    if (s[0] == '*' && s[1] == '/')
      sb_puts(&b, "*\\");
    else
      sb_putc(&b, (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
  }
  if (!b.data)
    sb_puts(&b, "");
  return b.data;
}

// s as the inside of a C string literal: quotes, backslashes and control
// characters escaped.
static char *c_string(const char *s) {
  StrBuf b = {0};
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      sb_printf(&b, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      sb_printf(&b, "\\%03o", c);
    else
      sb_putc(&b, (char)c);
  }
  if (!b.data)
    sb_puts(&b, "");
  return b.data;
}

static void write_header(FILE *f, const Model *m, const RtModelInfo *in, const AotOptions *o, const char *prefix,
                         const char *target, const char *cpu, const char *base) {
  char P[MAX_NAME + 1], buf[256];
  upper(P, prefix, sizeof P);
  const char *p = prefix;
  // What the command line gave goes into comments and strings made safe there.
  char *base_c = comment_text(base), *base_s = c_string(base), *source = o->source ? comment_text(o->source) : NULL,
       *command = o->command ? comment_text(o->command) : NULL, *weights_c = o->weights ? comment_text(o->weights) : NULL,
       *weights_s = o->weights ? c_string(o->weights) : NULL;
  const char *ytype = in->target_kind == RT_TARGET_CLASS ? "int32_t" : "float";
  bool fwd = in->entry[ENTRY_FORWARD].present, ev = in->entry[ENTRY_EVAL].present,
       tr = in->entry[ENTRY_TRAIN].present;
  fprintf(f, "/* %s.h: the model '%s'%s%s%s, compiled ahead of time by nnc %s", base_c, m->g->name,
          source ? " (" : "", source ? source : "", source ? ")" : "", NNC_VERSION);
  if (command)
    fprintf(f, ":\n *     %s\n", command);
  else
    fprintf(f, ".\n");
  fprintf(f, " * for %s (CPU %s), batches of 1 to %" PRId64 ", entry points:%s%s%s.\n", target, cpu, in->max_batch,
          fwd ? " forward" : "", ev ? " eval" : "", tr ? " train_step" : "");
  fprintf(f, " *\n * Link %s%s with the nnc runtime library:\n *     cc app.c %s%s $(pkg-config --cflags --libs "
             "nncrt)\n",
          base_c, o->shared ? ".so" : ".o", base_c, o->shared ? ".so" : ".o");
  fprintf(f, " *\n"
             " * A context holds the model's weights, optimizer state and working memory;\n"
             " * contexts are independent, and each is used by one thread at a time (its\n"
             " * own thread pool runs the work). Functions that can fail return 0 or -1 (a\n"
             " * message in %s_error(ctx), or in err for create, load and save); eval and\n"
             " * train_step return the loss, or NaN with the message set.\n", p);
  fprintf(f, " *\n"
             " *     %s_context *ctx = %s_create(0, err, sizeof err);     // one thread per core\n"
             " *     %s_load(ctx, \"checkpoint.safetensors\", err, sizeof err); // or train from %s_init\n"
             " *     %s_forward(ctx, B, x, out);   // x: B * %s_INPUT_SIZE floats, out: B * %s_OUTPUT_SIZE\n"
             " *     %s_free(ctx);\n"
             " */\n",
          p, p, p, p, p, P, P, p);
  fprintf(f, "#ifndef NNC_MODEL_%s_H\n#define NNC_MODEL_%s_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n", p, p);
  fprintf(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  fprintf(f, "#define %s_NNCRT_ABI %d   /* the runtime library's ABI it links against */\n"
             "#if defined(NNCRT_ABI) && NNCRT_ABI != %d\n"
             "#error \"%s.h was compiled for nncrt ABI %d, but nncrt.h is another ABI: compile the model with the "
             "nnc of that runtime library\"\n#endif\n\n",
          P, RT_ABI, RT_ABI, base_s, RT_ABI);
  int64_t sample = 0;
  for (int i = 0; i < m->ninputs; i++)
    sample += in->input_numel[i];
  fprintf(f, "#define %s_MAX_BATCH %" PRId64 "\n", P, in->max_batch);
  fprintf(f, "#define %s_INPUT_SIZE %" PRId64 "   /* floats per sample:", P, sample);
  for (int i = 0; i < m->ninputs; i++)
    fprintf(f, "%s %s %s", i ? "," : "", m->inputs[i]->name, shape_text(m->inputs[i], buf, sizeof buf));
  fprintf(f, ", one after another */\n");
  for (int i = 0; i < m->ninputs; i++)
    if (m->inputs[i]->dtype == DT_I32) {
      size_t n = strlen(m->inputs[i]->name) + 1;
      char *N = xmalloc(n);
      upper(N, m->inputs[i]->name, n);
      fprintf(f, "#define %s_INPUT_%s_VOCAB %" PRId64 "   /* '%s' holds int32 indexes in [0, %" PRId64 "): "
              "each is written into its 4-byte slot of a row as an int32 (memcpy), not a float */\n",
              P, N, in->input_bound[i], m->inputs[i]->name, in->input_bound[i]);
      free(N);
    }
  if (m->ninputs > 1)
    for (int i = 0; i < m->ninputs; i++) {
      size_t n = strlen(m->inputs[i]->name) + 1;
      char *N = xmalloc(n);
      upper(N, m->inputs[i]->name, n);
      fprintf(f, "#define %s_INPUT_%s_SIZE %" PRId64 "\n", P, N, in->input_numel[i]);
      free(N);
    }
  if (m->g->noutputs > 1) {   // a row of every output's values; each one's size and place in it
    fprintf(f, "#define %s_OUTPUT_SIZE %" PRId64 "   /* floats per sample:", P, in->output_numel);
    for (int i = 0; i < m->g->noutputs; i++)
      fprintf(f, "%s %s %s", i ? "," : "", m->g->output_names[i], shape_text(m->g->outputs[i], buf, sizeof buf));
    fprintf(f, ", one after another */\n");
    int64_t at = 0;
    for (int i = 0; i < m->g->noutputs; i++) {
      size_t n = strlen(m->g->output_names[i]) + 1;
      char *N = xmalloc(n);
      upper(N, m->g->output_names[i], n);
      int64_t d = ir_numel(m->g->outputs[i], 1);
      fprintf(f, "#define %s_OUTPUT_%s_SIZE %" PRId64 "\n#define %s_OUTPUT_%s_OFFSET %" PRId64
                 "   /* its first value in a sample's row */\n", P, N, d, P, N, at);
      at += d;
      free(N);
    }
  } else {
    fprintf(f, "#define %s_OUTPUT_SIZE %" PRId64 "   /* floats per sample of the output %s */\n", P, in->output_numel,
            shape_text(m->g->output, buf, sizeof buf));
  }
  if (m->ntargets == 1) {
    fprintf(f, "#define %s_TARGET_SIZE %" PRId64 "   /* %s per sample of the target %s */\n", P, in->target_numel,
            in->target_kind == RT_TARGET_CLASS ? "int32 class labels" : "floats", m->target->name);
    if (in->target_kind == RT_TARGET_CLASS)
      fprintf(f, "#define %s_NUM_CLASSES %d   /* labels lie in [0, %d) */\n", P, in->nclasses, in->nclasses);
  } else if (m->ntargets > 1) {   // a row of every target's values; each one's size and place in it
    fprintf(f, "#define %s_TARGET_SIZE %" PRId64 "   /* 4-byte values per sample:", P, in->target_numel);
    for (int i = 0; i < m->ntargets; i++)
      fprintf(f, "%s %s %s", i ? "," : "", m->targets[i]->name,
              in->targets[i].kind == RT_TARGET_CLASS ? "(int32 class labels)" : "(floats)");
    fprintf(f, ", one after another */\n");
    int64_t at = 0;
    for (int i = 0; i < m->ntargets; i++) {
      size_t n = strlen(m->targets[i]->name) + 1;
      char *N = xmalloc(n);
      upper(N, m->targets[i]->name, n);
      fprintf(f, "#define %s_TARGET_%s_SIZE %" PRId64 "\n#define %s_TARGET_%s_OFFSET %" PRId64
                 "   /* its first value in a sample's row */\n", P, N, in->targets[i].numel, P, N, at);
      if (in->targets[i].kind == RT_TARGET_CLASS)
        fprintf(f, "#define %s_TARGET_%s_NUM_CLASSES %d   /* its labels lie in [0, %d) */\n", P, N,
                in->targets[i].nclasses, in->targets[i].nclasses);
      at += in->targets[i].numel;
      free(N);
    }
  }
  int64_t arena = 0;
  for (int e = 0; e < ENTRY_COUNT; e++)
    arena = in->entry[e].present && in->entry[e].arena_bytes > arena ? in->entry[e].arena_bytes : arena;
  fprintf(f, "#define %s_ARENA_BYTES %" PRId64 "   /* a context's working memory */\n", P, arena);
  fprintf(f, "#define %s_STATE_BYTES %" PRId64 "   /* its weights, buffers and optimizer state */\n", P,
          in->state_bytes);
  fprintf(f, "#define %s_NUM_TENSORS %d\n", P, in->ntensors);
  fprintf(f, "#define %s_SEED %" PRIu64 "   /* the .nn file's training seed */\n", P, in->seed);
  char lr[32];
  for (int digits = 6; digits <= 17; digits++)   // the shortest text that reads back as the same double
    if (snprintf(lr, sizeof lr, "%.*g", digits, m->opt.lr), strtod(lr, NULL) == m->opt.lr)
      break;
  fprintf(f, "#define %s_LR %s   /* the .nn file's learning rate */\n", P, lr);
  fprintf(f, "#define %s_HAS_FORWARD %d\n#define %s_HAS_EVAL %d\n#define %s_HAS_TRAIN %d\n", P, fwd, P, ev, P, tr);
  fprintf(f, "#define %s_EMBEDDED_WEIGHTS %d   /* 1: a new context starts from %s */\n", P, o->embed && o->weights,
          o->embed && o->weights ? weights_c : "the weights compiled in");
  if (o->weights && !o->embed)
    fprintf(f, "#define %s_WEIGHTS \"%s\"   /* the checkpoint it was checked against */\n", P, weights_s);
  if (m->ntargets > 1) {
    fprintf(f, "\n/* A value of a row of targets: .label for a class target's (int32), .value for\n"
               " * a real-valued one's (float). */\n");
    fprintf(f, "typedef union %s_target {\n  int32_t label;\n  float value;\n} %s_target;\n\n", p, p);
  } else {
    fprintf(f, "\n/* Class labels (int32_t) or real-valued targets (float), as the target is. */\n");
    fprintf(f, "typedef %s %s_target;\n\n", m->target ? ytype : "float", p);
  }
  fprintf(f, "typedef struct %s_context %s_context;\n\n", p, p);
  char from[MAX_NAME + 64];
  if (o->embed && o->weights)
    snprintf(from, sizeof from, "the embedded checkpoint");
  else
    snprintf(from, sizeof from, "the initializers (seed %s_SEED)", P);
  fprintf(f,
          "/* A context on threads threads (0: one per core), its weights from %s.\n"
          " * NULL on failure, with the reason in err (errsz bytes; err may be NULL). */\n"
          "%s_context *%s_create(int threads, char *err, size_t errsz);\n"
          "void %s_free(%s_context *ctx);\n\n",
          from, p, p, p, p);
  fprintf(f,
          "/* Every parameter and buffer from its initializer, as `nnc train --seed seed`\n"
          " * draws them; optimizer state zero, step 0. */\n"
          "void %s_init(%s_context *ctx, uint64_t seed);\n\n",
          p, p);
  fprintf(f,
          "/* Loads a checkpoint (safetensors, nnc's tensor names): one `nnc train` wrote,\n"
          " * one %s_save wrote, or plain weights under the same names. Its optimizer\n"
          " * state and step are loaded when it holds this model's; else they start\n"
          " * fresh. Inputs are standardized as the checkpoint's training did. */\n"
          "int %s_load(%s_context *ctx, const char *path, char *err, size_t errsz);\n"
          "/* Writes every tensor, with the step, as a checkpoint `nnc eval` and\n"
          " * `nnc predict` read; atomically (a temporary file renamed into place). */\n"
          "int %s_save(%s_context *ctx, const char *path, char *err, size_t errsz);\n\n",
          p, p, p, p, p);
  fprintf(f,
          "/* x: batch * %s_INPUT_SIZE floats; out: batch * %s_OUTPUT_SIZE floats.\n"
          " * batch lies in [1, %s_MAX_BATCH]. Inference mode (no dropout, running statistics). */\n"
          "int %s_forward(%s_context *ctx, int64_t batch, const float *x, float *out);\n",
          P, P, P, p, p);
  if (m->target)
    fprintf(f,
            "/* The mean loss over the batch in inference mode; y: batch * %s_TARGET_SIZE\n"
            " * targets; out (may be NULL): the output, as %s_forward gives it. */\n",
            P, p);
  else if (m->g->loss)
    fprintf(f,
            "/* The mean loss over the batch in inference mode; y: NULL (the loss compares\n"
            " * the outputs with the inputs); out (may be NULL): as %s_forward gives it. */\n",
            p);
  else
    fprintf(f, "/* The model has no loss: eval and train_step return NaN, saying so. */\n");
  fprintf(f, "double %s_eval(%s_context *ctx, int64_t batch, const float *x, const %s_target *y, float *out);\n", p, p,
          p);
  if (m->g->loss)
    fprintf(f,
            "/* One optimizer step at learning rate lr on the batch; returns the loss\n"
            " * before the step. A loss that is not finite changes nothing. */\n");
  fprintf(f,
          "double %s_train_step(%s_context *ctx, int64_t batch, const float *x, const %s_target *y, double lr);\n"
          "/* The output of the last run (its batch * %s_OUTPUT_SIZE floats). */\n"
          "int %s_output(const %s_context *ctx, float *out);\n"
          "/* Optimizer steps taken. */\n"
          "int64_t %s_steps(const %s_context *ctx);\n"
          "/* What the last failing call said. */\n"
          "const char *%s_error(const %s_context *ctx);\n\n",
          p, p, p, P, p, p, p, p, p, p);
  fprintf(f,
          "/* The persistent tensors, i in [0, %s_NUM_TENSORS): name, floats, and copies\n"
          " * out of and into a context. */\n"
          "int %s_num_tensors(void);\n"
          "const char *%s_tensor_name(int i);\n"
          "int64_t %s_tensor_numel(int i);\n"
          "int %s_read_tensor(const %s_context *ctx, int i, float *out);\n"
          "int %s_write_tensor(%s_context *ctx, int i, const float *in);\n\n",
          P, p, p, p, p, p, p, p);
  fprintf(f, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
  free(base_c);
  free(base_s);
  free(source);
  free(command);
  free(weights_c);
  free(weights_s);
}

//
// Files
//

// One file being written: a temporary name beside its final path.
typedef struct OutFile {
  const char *path;
  char *tmp;                   // NULL once renamed or removed
  FILE *f;
} OutFile;

static bool out_open(OutFile *o, const char *path, char *err, size_t errsz) {
  *o = (OutFile){.path = path};
  int fd = data_create_temp(path, &o->tmp);
  if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    errorf(err, errsz, "%s: cannot write here: %s\n---> HINT: %s", path, strerror(e), data_errno_hint(e));
    if (o->tmp)
      unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return false;
  }
  return true;
}

// Flushes, syncs and closes the file; false with a message on a failed write.
static bool out_close(OutFile *o, char *err, size_t errsz) {
  bool ok = fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
  int e = errno;
  ok = (fclose(o->f) == 0) && ok;
  o->f = NULL;
  if (!ok)
    errorf(err, errsz, "%s: writing failed: %s\n---> HINT: %s", o->path, strerror(e), data_errno_hint(e));
  return ok;
}

static void out_discard(OutFile *o) {
  if (o->f)
    fclose(o->f);
  o->f = NULL;
  if (o->tmp)
    unlink(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
}

static bool out_commit(OutFile *o, char *err, size_t errsz) {
  if (rename(o->tmp, o->path) != 0) {
    int e = errno;
    errorf(err, errsz, "%s: cannot put the file in place: %s\n---> HINT: %s", o->path, strerror(e),
           data_errno_hint(e));
    return false;
  }
  free(o->tmp);
  o->tmp = NULL;
  data_sync_dir(o->path);
  return true;
}

// Whether a file may be renamed over path: nothing there, a regular file
// or a link (replaced, not followed); not a directory, a pipe or a device.
static bool out_replaceable(const char *path, char *err, size_t errsz) {
  struct stat st;
  if (lstat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
    return true;
  errorf(err, errsz, "%s: is %s, which the compiled model's file would replace; nothing was written\n---> HINT: "
         "choose another -o PREFIX", path, S_ISDIR(st.st_mode) ? "a directory" : "a pipe, a socket or a device");
  return false;
}

// Where nnc's own runtime library is: installed beside this nnc
// (BINDIR/../LIBDIR/libnncrt.a), else in the build tree nnc was built in.
static bool find_runtime(char *buf, size_t n) {
  char exe[2048];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k > 0) {
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      snprintf(buf, n, "%s/../%s/libnncrt.a", exe, NNCRT_INSTALL_LIBDIR);
      if (access(buf, R_OK) == 0)
        return true;
    }
  }
  snprintf(buf, n, "%s", NNCRT_BUILD_LIB);
  return access(buf, R_OK) == 0;
}

// Links object obj and the runtime library into the shared object out
// with the C compiler cc (no shell: each argument as it is).
static bool link_shared(const char *cc, const char *obj, const char *runtime, const char *out, const char *final,
                        char *err, size_t errsz) {
  char libs[] = NNCRT_LIBS, words[256];
  char *argv[96];
  int n = 0;
  snprintf(words, sizeof words, "%s", cc);   // CC may hold arguments ("ccache gcc", "gcc -m64"), as make takes it
  for (char *s = strtok(words, " \t"); s && n < 32; s = strtok(NULL, " \t"))
    argv[n++] = s;
  if (n == 0)
    argv[n++] = "cc";
  const char *prog = argv[0];
  argv[n++] = "-shared";
  argv[n++] = "-o";
  argv[n++] = (char *)out;
  argv[n++] = (char *)obj;
  argv[n++] = (char *)runtime;
  argv[n++] = "-Wl,--exclude-libs,ALL";   // the runtime's own symbols stay inside: two models' objects coexist
  for (char *s = strtok(libs, " "); s && n < 94; s = strtok(NULL, " "))
    argv[n++] = s;
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    execvp(prog, argv);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) {
    errorf(err, errsz, "%s: cannot start the linker '%s': %s", final, cc, strerror(errno));
    return false;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    errorf(err, errsz, "%s: cannot run the linker '%s' (from %s)\n---> HINT: install gcc (apt-get install "
           "build-essential), or name a C compiler in CC", final, prog, getenv("CC") ? "CC" : "the default, cc");
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    errorf(err, errsz, "%s: the linker '%s' failed (its messages are above)\n---> HINT: is %s a runtime "
           "library for this target?", final, cc, runtime);
    return false;
  }
  return true;
}

//
// The command
//

bool aot_compile(const Model *m, const AotOptions *o, bool *usage, char *err, size_t errsz) {
  *usage = true;
  const char *prefix = o->name ? o->name : m->g->name;
  if (!aot_valid_name(prefix)) {
    errorf(err, errsz, "'%s' cannot begin the names of C functions (%s_create, ...)\n---> HINT: give a C "
           "identifier of at most %d characters with --name", prefix, prefix, MAX_NAME);
    return false;
  }
  unsigned all = pass_entries(m), want = o->entries ? o->entries : all;
  for (int e = 0; e < ENTRY_COUNT; e++)
    if (want & ~all & (1u << e)) {
      errorf(err, errsz, "model '%s' has no %s entry point: %s\n---> HINT: leave %s out of --entry", m->g->name,
             e == ENTRY_EVAL ? "eval" : "train", m->g->loss ? "it has no optimizer update" : "it has no loss",
             e == ENTRY_EVAL ? "eval" : "train");
      return false;
    }
  for (int i = 0; i < m->ninputs; i++)   // PREFIX_INPUT_NAME_SIZE, one macro each
    for (int j = 0; j < i && m->ninputs > 1; j++)
      if (!strcasecmp(m->inputs[i]->name, m->inputs[j]->name)) {
        *usage = false;
        errorf(err, errsz, "model '%s': inputs '%s' and '%s' would both be %s_INPUT_%s_SIZE in the header, whose "
               "macros are upper case\n---> HINT: rename one of them", m->g->name, m->inputs[j]->name,
               m->inputs[i]->name, "PREFIX", m->inputs[i]->name);
        return false;
      }
  for (int i = 0; i < m->ntargets && m->ntargets > 1; i++)   // PREFIX_TARGET_NAME_SIZE, one macro each
    for (int j = 0; j < i; j++)
      if (!strcasecmp(m->targets[i]->name, m->targets[j]->name)) {
        *usage = false;
        errorf(err, errsz, "model '%s': targets '%s' and '%s' would both be %s_TARGET_%s_SIZE in the header, "
               "whose macros are upper case\n---> HINT: rename one of them", m->g->name, m->targets[j]->name,
               m->targets[i]->name, "PREFIX", m->targets[i]->name);
        return false;
      }
  for (int i = 0; i < m->g->noutputs && m->g->noutputs > 1; i++)   // PREFIX_OUTPUT_NAME_SIZE, one macro each
    for (int j = 0; j < i; j++)
      if (!strcasecmp(m->g->output_names[i], m->g->output_names[j])) {
        *usage = false;
        errorf(err, errsz, "model '%s': outputs '%s' and '%s' would both be %s_OUTPUT_%s_SIZE in the header, "
               "whose macros are upper case\n---> HINT: rename one of them", m->g->name, m->g->output_names[j],
               m->g->output_names[i], "PREFIX", m->g->output_names[i]);
        return false;
      }
  if (m->ninputs > RT_MAX_INPUTS) {
    errorf(err, errsz, "model '%s' has %d inputs; compiled models take at most %d", m->g->name, m->ninputs,
           RT_MAX_INPUTS);
    return false;
  }
  if (o->shared && o->triple && !o->runtime && strcmp(o->triple, cg_host_triple())) {
    errorf(err, errsz, "--shared links nnc's runtime library, which is this machine's, not %s's\n---> HINT: "
           "give that target's runtime library with --runtime FILE, or leave --shared out and link %s.o there",
           o->triple, o->out);
    return false;
  }
  for (const CgApiFunction *f = cg_api; f->name; f++) {   // pthread_create, timer_create, sem_init, ...
    char name[MAX_NAME + 32];
    snprintf(name, sizeof name, "%s_%s", prefix, f->name);
    if (dlsym(RTLD_DEFAULT, name)) {
      errorf(err, errsz, "the prefix '%s' would define %s, which the C library (or another system library) "
             "already defines: a program would call the model's function in its place\n---> HINT: give another "
             "prefix with --name", prefix, name);
      return false;
    }
  }
  if (o->triple && !strstr(o->triple, "linux")) {
    errorf(err, errsz, "target '%s': the runtime library runs on Linux alone\n---> HINT: a Linux triple, such "
           "as aarch64-linux-gnu or x86_64-linux-gnu", o->triple);
    return false;
  }
  CgOptions co = {.opt_level = 2, .cpu = o->cpu, .triple = o->triple};
  if (!cg_check_target(&co, err, errsz))
    return false;
  char runtime[4096];
  if (o->shared) {
    if (o->runtime)
      snprintf(runtime, sizeof runtime, "%s", o->runtime);
    else if (!find_runtime(runtime, sizeof runtime)) {
      errorf(err, errsz, "--shared needs the runtime library libnncrt.a, which is neither installed beside this nnc "
             "nor in its build tree (%s)\n---> HINT: build it (cmake --build build --target nncrt) or give it with "
             "--runtime FILE", NNCRT_BUILD_LIB);
      return false;
    }
    if (access(runtime, R_OK) != 0) {
      errorf(err, errsz, "%s: cannot read the runtime library: %s", runtime, strerror(errno));
      return false;
    }
  }
  *usage = false;

  Compilation *comp[ENTRY_COUNT] = {0};
  CompileOptions po = {o->max_batch, true, NULL, true};
  const Compilation *first = NULL;
  for (int e = 0; e < ENTRY_COUNT; e++) {
    if (!(want & (1u << e)))
      continue;
    comp[e] = pass_compile(m, e, &po);
    if (!first)
      first = comp[e];
    else if (comp[e]->prog->state_bytes != first->prog->state_bytes)
      nnc_bug(__FILE__, __LINE__, "two entry points of one model compiled to different state layouts");
  }
  bool ok = false;
  char *state = NULL, *packed = NULL;
  CkptInfo info = {0};
  Blob blob = describe(m, comp, prefix);
  RtModelInfo *in = (RtModelInfo *)blob.p;
  OutFile obj = {0}, hdr = {0}, so = {0};
  char obj_path[4096], hdr_path[4096];
  snprintf(obj_path, sizeof obj_path, "%s.%s", o->out, o->shared ? "so" : "o");
  snprintf(hdr_path, sizeof hdr_path, "%s.h", o->out);
  if (in->entry[ENTRY_TRAIN].present && in->entry[ENTRY_TRAIN].min_batch > in->max_batch) {
    *usage = true;
    errorf(err, errsz, "model '%s' cannot train at --batch %" PRId64 ": a batchnorm has one value per channel "
           "and sample, and needs two samples to train\n---> HINT: --batch 2 or more, or --entry forward,eval",
           m->g->name, in->max_batch);
    goto done;
  }
  // Both places must take a file before anything is renamed into either.
  if (!out_replaceable(obj_path, err, errsz) || !out_replaceable(hdr_path, err, errsz))
    goto done;
  if (o->weights) {
    if (!load_weights(m, in, o->weights, o->embed, &state, &info, err, errsz))
      goto done;
    if (o->embed && info.normalized) {
      in->normalized = 1;
      in->mean = info.mean;
      in->std = info.std;
    }
  }
  if (state) {   // every tensor but optimizer state (zero), one after another
    const RtTensorInfo *t = (const RtTensorInfo *)((const char *)in + in->tensors);
    packed = xmalloc(in->state_bytes > 0 ? (size_t)in->state_bytes : 1);
    for (int i = 0; i < in->ntensors; i++)
      if (!t[i].optim_state) {
        memcpy(packed + in->weights_bytes, state + t[i].offset, sizeof(float) * (size_t)t[i].numel);
        in->weights_bytes += (int64_t)sizeof(float) * t[i].numel;
      }
  }
  CgArtifact art = {.prefix = prefix, .info = blob.p, .info_size = blob.n, .weights = packed,
                    .weights_size = packed ? (size_t)in->weights_bytes : 0};
  for (int e = 0; e < ENTRY_COUNT; e++)
    art.prog[e] = comp[e] ? comp[e]->prog : NULL;
  if (!out_open(&obj, obj_path, err, errsz) || !out_open(&hdr, hdr_path, err, errsz))
    goto done;
  if (!cg_emit_artifact(obj.f, &art, &co, err, errsz) || !out_close(&obj, err, errsz))
    goto done;
  const char *base = strrchr(o->out, '/') ? strrchr(o->out, '/') + 1 : o->out;
  write_header(hdr.f, m, in, o, prefix, o->triple ? o->triple : cg_host_triple(),
               o->cpu ? o->cpu : o->triple ? "generic" : cg_host_cpu(), base);
  if (!out_close(&hdr, err, errsz))
    goto done;
  if (o->shared) {   // the object is linked into so's temporary, which is then renamed
    if (!out_open(&so, obj_path, err, errsz))
      goto done;
    fclose(so.f);
    so.f = NULL;
    char cc[256];
    const char *env = getenv("CC");
    if (o->triple && strcmp(o->triple, cg_host_triple()))
      snprintf(cc, sizeof cc, "%s-gcc", o->triple);
    else
      snprintf(cc, sizeof cc, "%s", env && *env ? env : "cc");
    if (!link_shared(cc, obj.tmp, runtime, so.tmp, obj_path, err, errsz))
      goto done;
    out_discard(&obj);
    if (!out_commit(&so, err, errsz))
      goto done;
  } else if (!out_commit(&obj, err, errsz)) {
    goto done;
  }
  ok = out_commit(&hdr, err, errsz);
done:
  out_discard(&obj);
  out_discard(&hdr);
  out_discard(&so);
  free(state);
  free(packed);
  free(blob.p);
  for (int e = 0; e < ENTRY_COUNT; e++)
    pass_compilation_free(comp[e]);
  return ok;
}
