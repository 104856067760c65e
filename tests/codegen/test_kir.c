// test_kir.c: a program read back from kernel IR text is the program, and
// so is the program as an object file (cg_emit_object) linked alone.
//
// For each model in models/ (resnet18 only with -a) and each entry point
// (the training step fused and not):
// the program pass_compile makes is printed, read back with ir_parse_program
// and printed again (the same text); both are compiled with cg_compile and
// run once from the same random arena and state (the same dropout keys and
// step scalars), and must leave the same bytes in both and report the same
// loss. Then thousands of cut and mutated versions of each text go to the
// parser, which must end in a program or in diagnostics: never a crash or
// a leak (under ASan); each program it does read prints again.
//
//   test_kir [-a] [-n MUTATIONS]
#include "../test.h"
#include "../load_model.h"
#include "train.h"

#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static FILE *devnull;

// p as kernel IR text (malloc'd).
static char *print(const KProgram *p, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  ir_print_program(f, p);
  fclose(f);
  return text;
}

static KProgram *parse(const char *name, const char *text, size_t len, Arena *a, Diag *d) {
  SrcFile *f = arena_alloc(a, sizeof *f);
  *f = (SrcFile){name, arena_strndup(a, text, len), len};
  return ir_parse_program(f, a, d);
}

// Memory for a run: arena and state of random floats in [-1, 1); int32
// buffers (class labels) 0 or 1; the step scalars as a first SGD step.
typedef struct Mem {
  char *arena, *state;
} Mem;

static Mem random_mem(const KProgram *p, uint64_t seed) {
  Mem m = {xcalloc(1, p->arena_bytes + 4), xcalloc(1, p->state_bytes + 4)};
  Rng r;
  rng_seed(&r, seed, 1);
  for (int64_t i = 0; i + 4 <= p->arena_bytes; i += 4)
    ((float *)m.arena)[i / 4] = 2 * rng_uniform(&r) - 1;
  for (int64_t i = 0; i + 4 <= p->state_bytes; i += 4)
    ((float *)m.state)[i / 4] = 2 * rng_uniform(&r) - 1;
  for (int i = 0; i < p->g->nnodes; i++) {
    const IrNode *n = p->g->nodes[i];
    const KBufInfo *b = &p->buf[i];
    if (n && n->dtype == DT_I32 && b->bytes && b->space != KB_STATE)
      for (int64_t j = 0; j < b->bytes / 4; j++)
        ((int32_t *)(m.arena + b->offset))[j] = (int32_t)(j % 2);
  }
  if (p->scalars) {
    float *s = (float *)(m.arena + p->buf[p->scalars->id].offset);
    s[KS_NEG_LR] = -0.01f, s[KS_FIRST] = 1, s[KS_NEG_STEP_SIZE] = -0.01f, s[KS_BC2_SQRT] = 0.5f;
    s[KS_DECAY] = 1, s[KS_APPLY] = 1;
  }
  return m;
}

// Compiles p and runs it once on m at its largest batch; the loss.
// p as an object file, linked into a shared library and loaded: its entry
// function, or NULL (*handle: the library, for dlclose). NULL too, with
// *skip set, where the machine has no C compiler to link it.
static RtEntryFn object_entry(const KProgram *p, const char *what, void **handle, bool *skip) {
  static int n;
  char obj[512], so[512], cmd[1200], err[1024];
  snprintf(obj, sizeof obj, "%s", t_path("p.o"));
  snprintf(so, sizeof so, "%s/p%d.so", t_dir, n++);
  *handle = NULL;
  *skip = system("cc --version >/dev/null 2>&1") != 0;
  if (*skip)
    return NULL;
  FILE *out = fopen(obj, "wb");
  bool ok = out && cg_emit_object(out, p, NULL, err, sizeof err);
  if (out)
    fclose(out);
  CHECK(ok, "%s: cg_emit_object failed: %s", what, out ? err : "cannot write the object");
  snprintf(cmd, sizeof cmd, "cc -shared -o '%s' '%s' -lm", so, obj);
  if (!ok || !CHECK(system(cmd) == 0, "%s: the object does not link alone: %s", what, cmd))
    return NULL;
  *handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  CHECK(*handle, "%s: dlopen: %s", what, dlerror());
  char sym[64];
  snprintf(sym, sizeof sym, "nnc_%s", ir_entry_name(p->entry));
  void *fn = *handle ? dlsym(*handle, sym) : NULL;
  CHECK(fn, "%s: the object has no %s", what, sym);
  RtEntryFn entry;
  memcpy(&entry, &fn, sizeof entry);
  return fn ? entry : NULL;
}

// Runs p once on m, JIT-compiled, or from an object file (as_object).
static double run(const KProgram *p, Mem m, const char *what, bool as_object) {
  char err[1024];
  CgModule *mod = NULL;
  void *handle = NULL;
  RtEntryFn entry = NULL;
  if (as_object) {
    bool skip;
    entry = object_entry(p, what, &handle, &skip);
  } else {
    mod = cg_compile(p, NULL, err, sizeof err);
    CHECK(mod, "%s: cg_compile failed: %s", what, err);
    entry = mod ? cg_entry(mod) : NULL;
  }
  if (!entry) {
    if (handle)
      dlclose(handle);
    return NAN;
  }
  RtContext *c = rt_context_new(1);
  Rng rng;
  rng_seed(&rng, 7, 0x64726f70ULL);
  c->rng = &rng;
  for (int i = 0; i < p->nkernels; i++) {
    const RtLib *d = p->kernels[i]->lib;
    if (d && d->aux >= 0)
      rt_context_reserve(c, d->aux, d->aux_bytes);
  }
  rt_context_begin_step(c);
  c->training = p->entry == ENTRY_TRAIN;
  c->dropout = true;
  c->lr = 0.01;
  c->steps = 1;
  c->scalars = p->scalars ? (float *)(m.arena + p->buf[p->scalars->id].offset) : NULL;
  RtCalls calls = rt_context_calls(c);
  rt_blas_threads(1);
  entry(m.arena, m.state, p->max_batch, &calls);
  double loss = c->loss;
  rt_context_free(c);
  cg_free(mod);
  if (handle)
    dlclose(handle);
  return loss;
}

// The printed program reads back as itself, and runs as itself.
static void test_program(const char *model, const KProgram *p) {
  char what[128];
  snprintf(what, sizeof what, "%s %s", model, ir_entry_name(p->entry));
  size_t len, len2;
  char *text = print(p, &len);
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  KProgram *q = parse(what, text, len, a, &d);
  CHECK(q, "%s: the text does not read back", what);
  if (q) {
    char *again = print(q, &len2);
    CHECK(len == len2 && !memcmp(text, again, len), "%s: printed again, the text differs", what);
    free(again);
    Mem m1 = random_mem(p, 42), m2 = random_mem(p, 42), m3 = random_mem(p, 42);
    double l1 = run(p, m1, what, false), l2 = run(q, m2, what, false);
    CHECK(!memcmp(m1.arena, m2.arena, p->arena_bytes), "%s: the arenas differ after a run", what);
    CHECK(!memcmp(m1.state, m2.state, p->state_bytes), "%s: the states differ after a run", what);
    CHECK(l1 == l2 || (isnan(l1) && isnan(l2)), "%s: loss %.9g, read back %.9g", what, l1, l2);
    // The same program as an object file, linked alone and loaded, runs
    // as the JIT's code does, bit for bit.
    bool linked = system("cc --version >/dev/null 2>&1") == 0;
    double l3 = linked ? run(p, m3, what, true) : l1;
    if (linked) {
      CHECK(!memcmp(m1.arena, m3.arena, p->arena_bytes), "%s: as an object file, the arena differs", what);
      CHECK(!memcmp(m1.state, m3.state, p->state_bytes), "%s: as an object file, the state differs", what);
      CHECK(l1 == l3 || (isnan(l1) && isnan(l3)), "%s: loss %.9g, as an object file %.9g", what, l1, l3);
    }
    printf("ok   %s: %zu bytes of text; the same bytes after a run (loss %.6g), read back%s\n", what, len, l1,
           linked ? " and as an object file" : " (no C compiler: the object file was not tried)");
    free(m1.arena), free(m1.state), free(m2.arena), free(m2.state), free(m3.arena), free(m3.state);
  }
  diag_free(&d);
  arena_free(a);
  free(text);
}

// Fragments that make mutations reach deep into the grammar.
static const char *const tokens[] = {
    "%", "%0", "%99", "%7(x)", "(", ")", "[", "]", "{", "}", ",", ";", ":", "=", "+", "*", "^T", "@", "\n", "#",
    "N", "0", "-1", "9223372036854775807", "99999999999999999999", "1e309", "nan", "\"", "\"a\\q\"", "v0", "v9",
    "i0", "i7", "kernel", "loop", "gemm", "lib", "over", "parallel", "from", "line", "no line", "epilogue",
    "store", "sum into", "load", "const", "select", "arena", "state", "input", "f32[", "i32[N]", "aux", "aux_from",
    "loss", "node", "conv2d", "sgd_step", "region 0 to 1, 64 bytes a row, blocks of 8 rows, 4096 local bytes\n",
    "region 2 to 9, 0 bytes a row, blocks of 1 rows, 0 local bytes\n", "region 3 to 5, shared products\n", "local",
    "local 0 + 64", "blocks of 0 rows", "99999999999 local bytes",
    "\xff", "\x01", "\0",
};

// Cuts and mutations of text through the parser; every program read
// prints again.
static void fuzz(const char *text, size_t len, int n, uint64_t seed) {
  Rng r;
  rng_seed(&r, seed, 3);
  char *buf = xmalloc(len + 256);
  int parsed = 0;
  for (int i = 0; i < n; i++) {
    size_t at = (size_t)(rng_uniform(&r) * len), m = 0;
    int how = (int)(rng_uniform(&r) * 4);
    if (how == 0) {   // cut
      memcpy(buf, text, at);
      m = at;
    } else {          // replace a byte, insert a token, or delete a span
      memcpy(buf, text, at);
      m = at;
      size_t skip = how == 1 ? 1 : how == 3 ? (size_t)(rng_uniform(&r) * 40) : 0;
      if (how == 1)
        buf[m++] = (char)(rng_uniform(&r) * 256);
      else if (how == 2) {
        const char *t = tokens[(int)(rng_uniform(&r) * countof(tokens))];
        size_t tl = *t ? strlen(t) : 1;
        memcpy(buf + m, t, tl);
        m += tl;
      }
      if (at + skip > len)
        skip = len - at;
      memcpy(buf + m, text + at + skip, len - at - skip);
      m += len - at - skip;
    }
    Arena *a = arena_new();
    Diag d;
    diag_init(&d, devnull);
    KProgram *q = parse("mutant.kir", buf, m, a, &d);
    CHECK(q || d.nerrors, "a mutant was refused without a message");
    if (q) {
      parsed++;
      fprintf(devnull, "%d", q->nkernels);
      ir_print_program(devnull, q);
    }
    diag_free(&d);
    arena_free(a);
  }
  free(buf);
  printf("ok   %d mutants: %d read back\n", n, parsed);
}

int main(int argc, char **argv) {
  bool all = false;
  int mutations = 3000;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-a"))
      all = true;
    else if (!strcmp(argv[i], "-n") && i + 1 < argc)
      mutations = atoi(argv[++i]);
  }
  devnull = fopen("/dev/null", "w");
  t_tmpdir("kir");
  static const char *const models[] = {"logreg", "logreg_by_hand", "mlp", "mlp100", "quadratic", "cnn", "resnet18"};
  for (int i = 0; i < countof(models) - !all; i++) {
    char path[64];
    snprintf(path, sizeof path, "models/%s.nn", models[i]);
    Arena *a = arena_new();
    Model *m = t_load_model(path, a);
    CHECK(m, "%s does not compile", path);
    for (int e = 0; m && e < ENTRY_COUNT; e++) {
      if (e != ENTRY_FORWARD && !m->g->loss)
        continue;
      Compilation *c = pass_compile(m, (EntryKind)e, &(CompileOptions){.max_batch = 4, .fuse = true});
      const KProgram *p = c->prog;
      test_program(models[i], p);
      if (e == ENTRY_TRAIN) {   // unfused: an update per parameter, each a library kernel
        Compilation *u = pass_compile(m, (EntryKind)e, &(CompileOptions){.max_batch = 4, .fuse = false});
        test_program(models[i], u->prog);
        pass_compilation_free(u);
      }
      if (!strcmp(models[i], "mlp100")) {   // batch-blocked regions: read back, and as an object file
        Compilation *r =
            pass_compile(m, (EntryKind)e, &(CompileOptions){.max_batch = 32, .fuse = true, .regions = true});
        CHECK(r->prog->nregions > 0, "mlp100 %s: no region at batch 32", ir_entry_name((EntryKind)e));
        bool shared = false;   // the training step's weight gradients
        for (int g = 0; g < r->prog->nregions; g++)
          shared |= r->prog->regions[g].products;
        CHECK(shared == (e == ENTRY_TRAIN), "mlp100 %s: shared products %s at batch 32",
              ir_entry_name((EntryKind)e), shared ? "where none belong" : "missing");
        test_program("mlp100 (regions)", r->prog);
        pass_compilation_free(r);
      }
      if (!strcmp(models[i], "cnn")) {   // convolutions and pooling in regions, but no max pooling that keeps
                                         // its argmax for a gradient (nor, so, the convolutions between them)
        Compilation *r =
            pass_compile(m, (EntryKind)e, &(CompileOptions){.max_batch = 32, .fuse = true, .regions = true});
        int convs = 0, pools = 0;
        for (int g = 0; g < r->prog->nregions; g++)
          for (int k = r->prog->regions[g].first; k <= r->prog->regions[g].last; k++) {
            const Kernel *kk = r->prog->kernels[k];
            convs += kk->kind == KN_LIB && kk->node->op == IR_CONV2D;
            pools += kk->kind == KN_LIB && kk->node->op == IR_MAXPOOL;
          }
        int want = e == ENTRY_TRAIN ? 0 : 2;
        CHECK(convs == want && pools == want, "cnn %s: %d convolutions and %d max poolings in regions, not %d",
              ir_entry_name((EntryKind)e), convs, pools, want);
        // the convolutions' and poolings' values between them live in each thread's local rows
        int local = 0;
        for (int id = 0; id < m->g->nnodes; id++)
          local += r->prog->buf[id].space == KB_LOCAL;
        CHECK(e == ENTRY_TRAIN || (local >= 6 && r->prog->regions[0].local_bytes > 0),
              "cnn %s: %d values in local rows (%lld bytes)", ir_entry_name((EntryKind)e), local,
              r->prog->nregions ? (long long)r->prog->regions[0].local_bytes : 0LL);
        test_program("cnn (regions)", r->prog);
        if (e == ENTRY_FORWARD) {   // mutants of a program with values in local rows
          size_t len;
          char *text = print(r->prog, &len);
          fuzz(text, len, mutations, 77);
          free(text);
        }
        pass_compilation_free(r);
      }
      if (e == ENTRY_TRAIN && (!strcmp(models[i], "cnn") || !strcmp(models[i], "mlp"))) {
        size_t len;
        char *text = print(p, &len);
        fuzz(text, len, mutations, (uint64_t)i);
        free(text);
      }
      pass_compilation_free(c);
    }
    arena_free(a);
  }
  {   // a thread's local rows stay under 16 MB: fewer images a block
    Arena *a = arena_new();
    Model *m = t_load_model("tests/cpu/wide_planes.nn", a);
    CHECK(m, "tests/cpu/wide_planes.nn does not load");
    if (m) {
      Compilation *r =
          pass_compile(m, ENTRY_FORWARD, &(CompileOptions){.max_batch = 37, .fuse = true, .regions = true});
      const KRegion *reg = r->prog->nregions ? &r->prog->regions[0] : NULL;
      CHECK(reg && reg->block >= 1 && reg->block < 8 && reg->local_bytes > 8 << 20 && reg->local_bytes <= 16 << 20,
            "wide_planes: blocks of %lld images, %lld local bytes", reg ? (long long)reg->block : 0LL,
            reg ? (long long)reg->local_bytes : 0LL);
      test_program("wide_planes (regions)", r->prog);
      pass_compilation_free(r);
    }
    arena_free(a);
  }
  fclose(devnull);
  return t_finish("test_kir");
}
