// checkpoint.c: saving and restoring a model's persistent tensors.
//
// A checkpoint is a safetensors file: every parameter, batchnorm statistic
// and optimizer state tensor under its structural name (conv2d_1.weight,
// conv2d_1.weight.momentum_buffer), plus metadata: the model's name and a
// hash of its tensors' names and shapes, the epoch and step, the data
// cursor and the dropout generator, so that a resumed run continues bit for
// bit. Writes go through rt_st_write, which is atomic.
#include "runtime.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_FORMAT "nnc-checkpoint-1"

// Optimizer state: tensors named after a parameter with one of these.
static bool is_optimizer_state(const char *name) {
  static const char *const suffixes[] = {".momentum_buffer", ".exp_avg", ".exp_avg_sq"};
  size_t n = strlen(name);
  for (int i = 0; i < countof(suffixes); i++) {
    size_t k = strlen(suffixes[i]);
    if (n > k && !strcmp(name + n - k, suffixes[i]))
      return true;
  }
  return false;
}

// FNV-1a over the names and shapes of the tensors that are not optimizer
// state: two models with the same hash store the same weights.
static uint64_t model_hash(const RtExec *ex) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < rt_exec_num_state(ex); i++) {
    const IrNode *n = rt_exec_state_node(ex, i);
    if (is_optimizer_state(n->name))
      continue;
    for (const char *p = n->name; *p; p++)
      h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (int d = 0; d < n->ndim; d++)
      h = (h ^ (uint64_t)n->shape[d]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  return h;
}

bool rt_checkpoint_save(RtExec *ex, const char *path, const RtCkptInfo *info, char *err, size_t errsz) {
  int nt = rt_exec_num_state(ex);
  RtTensor *t = xcalloc(nt ? nt : 1, sizeof *t);
  for (int i = 0; i < nt; i++) {
    const IrNode *n = rt_exec_state_node(ex, i);
    t[i].name = n->name;
    t[i].dtype = RT_F32;
    t[i].ndim = n->ndim;
    memcpy(t[i].shape, n->shape, sizeof(int64_t) * n->ndim);
    t[i].data = rt_exec_state_data(ex, i, NULL);
  }
  char hash[32], epoch[32], step[32], cursor[128], rng[64], norm[64];
  snprintf(hash, sizeof hash, "%016" PRIx64, model_hash(ex));
  snprintf(epoch, sizeof epoch, "%" PRId64, info->epoch);
  snprintf(step, sizeof step, "%" PRId64, info->step);
  const Rng *r = rt_exec_rng(ex);
  snprintf(rng, sizeof rng, "%016" PRIx64 ":%016" PRIx64, r->state, r->inc);
  norm[0] = cursor[0] = 0;
  if (info->normalized)
    snprintf(norm, sizeof norm, "%.17g %.17g", info->mean, info->std);
  if (info->has_cursor)
    rt_cursor_format(info->cursor, cursor, sizeof cursor);
  const RtMeta meta[] = {
      {"format", CKPT_FORMAT}, {"nnc_version", NNC_VERSION}, {"model_hash", hash}, {"epoch", epoch},
      {"step", step},          {"dropout_rng", rng},        {"cursor", cursor},
      {"normalize", norm},
  };
  bool ok = rt_st_write(path, t, nt, meta, countof(meta), err, errsz);
  free(t);
  return ok;
}

static bool parse_i64(const char *s, int64_t *out) {
  char *end;
  if (!s || !*s)
    return false;
  long long v = strtoll(s, &end, 10);
  if (*end || v < 0)
    return false;
  *out = v;
  return true;
}

// Reads the metadata a resume needs; false names the bad key in err.
static bool read_info(const RtStFile *f, RtExec *ex, RtCkptInfo *info, char *err, size_t errsz) {
  const char *fmt = rt_st_meta(f, "format");
  if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
    rt_errorf(err, errsz, "%s: not an nnc checkpoint (metadata 'format' is %s%s%s)\n"
              "---> HINT: nnc reads the checkpoints `nnc train` writes (safetensors with nnc metadata)",
              f->path, fmt ? "'" : "missing", fmt ? fmt : "", fmt ? "'" : "");
    return false;
  }
  *info = (RtCkptInfo){0};
  if (!parse_i64(rt_st_meta(f, "epoch"), &info->epoch) || !parse_i64(rt_st_meta(f, "step"), &info->step)) {
    rt_errorf(err, errsz, "%s: the checkpoint's metadata has no valid 'epoch' or 'step'", f->path);
    return false;
  }
  const char *c = rt_st_meta(f, "cursor");
  info->has_cursor = c && *c && rt_cursor_parse(c, &info->cursor);
  const char *nm = rt_st_meta(f, "normalize");
  info->normalized = nm && sscanf(nm, "%lf %lf", &info->mean, &info->std) == 2;
  if (info->normalized && !(isfinite(info->mean) && isfinite(info->std) && info->std >= 0)) {
    rt_errorf(err, errsz, "%s: the checkpoint's metadata 'normalize' is '%.60s'; expected a finite mean "
              "and a standard deviation of 0 or more\n---> HINT: the file is damaged", f->path, nm);
    return false;
  }
  const char *r = rt_st_meta(f, "dropout_rng");
  uint64_t st, inc;
  if (r && sscanf(r, "%" SCNx64 ":%" SCNx64, &st, &inc) == 2)
    *rt_exec_rng(ex) = (Rng){st, inc};
  return true;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
  ir_shape_str(ndim, shape, buf, n);
}

bool rt_checkpoint_load(RtExec *ex, const char *path, bool weights_only, RtCkptInfo *info,
                        char *err, size_t errsz) {
  RtStFile f;
  if (!rt_st_read(path, &f, err, errsz))
    return false;
  bool ok = false;
  RtCkptInfo tmp;
  if (!read_info(&f, ex, info ? info : &tmp, err, errsz))
    goto done;
  // The model's tensors, in order: each must be there with its shape.
  for (int i = 0; i < rt_exec_num_state(ex); i++) {
    const IrNode *n = rt_exec_state_node(ex, i);
    if (weights_only && is_optimizer_state(n->name))
      continue;
    const RtTensor *t = rt_st_find(&f, n->name);
    char a[96], b[96];
    if (!t) {
      rt_errorf(err, errsz, "%s: the checkpoint has no tensor '%s' %s, so it is not from this model\n"
                "---> HINT: give the checkpoint that training this model wrote", path, n->name,
                ir_type_str(n, a, sizeof a));
      goto done;
    }
    bool same = t->dtype == RT_F32 && t->ndim == n->ndim &&
                !memcmp(t->shape, n->shape, sizeof(int64_t) * n->ndim);
    if (!same) {
      shape_text(t->ndim, t->shape, b, sizeof b);
      rt_errorf(err, errsz, "%s: tensor '%s' is %s %s in the checkpoint but f32%s in this model, so the "
                "checkpoint is from another model\n---> HINT: give the checkpoint that training this model wrote",
                path, n->name, rt_dtype_name(t->dtype), b, ir_shape_str(n->ndim, n->shape, a, sizeof a));
      goto done;
    }
    const float *v = t->data;
    for (int64_t j = 0; j < (int64_t)(t->nbytes / sizeof(float)); j++)
      if (!isfinite(v[j])) {
        rt_errorf(err, errsz, "%s: tensor '%s' holds %g at index %lld\n---> HINT: the run that wrote "
                  "the checkpoint diverged, or the file is damaged; use an earlier checkpoint", path,
                  n->name, v[j], (long long)j);
        goto done;
      }
  }
  // Weights the model does not have mean another model too.
  for (int i = 0; i < f.ntensors; i++) {
    const char *name = f.tensors[i].name;
    if (!rt_exec_find_state(ex, name, NULL) && !(weights_only && is_optimizer_state(name))) {
      rt_errorf(err, errsz, "%s: the checkpoint has a tensor '%s' this model does not have, so it is from "
                "another model\n---> HINT: give the checkpoint that training this model wrote", path, name);
      goto done;
    }
  }
  for (int i = 0; i < rt_exec_num_state(ex); i++) {
    const IrNode *n = rt_exec_state_node(ex, i);
    const RtTensor *t = rt_st_find(&f, n->name);
    if (t) {
      int64_t k;
      float *dst = rt_exec_state_data(ex, i, &k);
      memcpy(dst, t->data, sizeof(float) * k);
    }
  }
  if (info)
    rt_exec_set_steps(ex, info->step);
  ok = true;
done:
  rt_st_free(&f);
  return ok;
}
