// checkpoint.c: saving and restoring a model's persistent tensors.
//
// A checkpoint is a safetensors file: every parameter, batchnorm statistic
// and optimizer state tensor under its structural name (conv2d_1.weight,
// conv2d_1.weight.momentum_buffer), plus metadata: the model's name and a
// hash of its tensors' names and shapes, the epoch and step, the data
// cursor, the dropout generator and the epoch's metrics row, so that a
// resumed run continues bit for bit. Writes go through data_st_write, which is
// atomic. Reading trusts nothing: every number of the metadata is bounded
// and every weight must be finite. A safetensors file without the metadata
// (a PyTorch state_dict under nnc's names) is accepted as plain weights.
#include "train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
static uint64_t model_hash(const Exec *ex) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
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

bool train_checkpoint_save(Exec *ex, const char *path, const CkptInfo *info, char *err, size_t errsz) {
  int nt = exec_num_state(ex);
  StTensor *t = xcalloc(nt ? nt : 1, sizeof *t);
  for (int i = 0; i < nt; i++) {
    const IrNode *n = exec_state_node(ex, i);
    t[i].name = n->name;
    t[i].dtype = ST_F32;
    t[i].ndim = n->ndim;
    memcpy(t[i].shape, n->shape, sizeof(int64_t) * n->ndim);
    float *v = xmalloc(sizeof(float) * (ir_numel(n, 1) > 0 ? ir_numel(n, 1) : 1));
    exec_read_state(ex, i, v);
    t[i].data = v;
  }
  char hash[32], epoch[32], step[32], cursor[128], rng[64], norm[64];
  snprintf(hash, sizeof hash, "%016" PRIx64, model_hash(ex));
  snprintf(epoch, sizeof epoch, "%" PRId64, info->epoch);
  snprintf(step, sizeof step, "%" PRId64, info->step);
  const Rng *r = exec_rng(ex);
  snprintf(rng, sizeof rng, "%016" PRIx64 ":%016" PRIx64, r->state, r->inc);
  char row[256] = "", run[256] = "";
  norm[0] = cursor[0] = 0;
  if (info->has_run) {
    const RunSettings *u = &info->run;
    snprintf(run, sizeof run, "batch=%d lr=%.17g seed=%" PRIu64 " val_split=%.17g limit=%" PRId64 " shuffle=%d "
             "samples=%" PRId64 " id=%s", u->batch, u->lr, u->seed, u->val_split, u->limit, u->shuffle, u->samples,
             u->id);
  }
  if (info->has_last) {
    const Metrics *l = &info->last;
    snprintf(row, sizeof row, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,%.9g,%.9g,%.9g", l->epoch, l->step, l->lr,
             l->train_loss, l->train_acc, l->val_loss, l->val_acc);
  }
  if (info->normalized)
    snprintf(norm, sizeof norm, "%.17g %.17g", info->mean, info->std);
  if (info->has_cursor)
    data_cursor_format(info->cursor, cursor, sizeof cursor);
  const StMeta meta[] = {
      {"format", CKPT_FORMAT}, {"nnc_version", NNC_VERSION}, {"model_hash", hash}, {"epoch", epoch},
      {"step", step},          {"dropout_rng", rng},        {"cursor", cursor},
      {"normalize", norm},     {"metrics", row},            {"run", run},
  };
  bool ok = data_st_write(path, t, nt, meta, countof(meta), err, errsz);
  for (int i = 0; i < nt; i++)
    free((void *)t[i].data);
  free(t);
  return ok;
}

// A metadata number from 0 to max; false names the key in err.
static bool meta_i64(const StFile *f, const char *key, int64_t max, int64_t *out, char *err, size_t errsz) {
  const char *s = data_st_meta(f, key);
  char *end;
  errno = 0;
  long long v = s && *s ? strtoll(s, &end, 10) : -1;
  if (!s || !*s || *end || errno || v < 0 || v > max) {
    errorf(err, errsz, "%s: the checkpoint's metadata '%s' is %s%s%s, not a whole number from 0 to %" PRId64
              "\n---> HINT: the file is damaged or was not written by `nnc train`", f->path, key,
              s ? "'" : "missing", s ? s : "", s ? "'" : "", max);
    return false;
  }
  *out = v;
  return true;
}

// The metrics row a checkpoint keeps for the epoch it ends; a row that does
// not parse, or is for another epoch, is no row.
static void read_last(const StFile *f, CkptInfo *info) {
  const char *s = data_st_meta(f, "metrics");
  Metrics *l = &info->last;
  long long e, st;
  int end = -1;
  info->has_last = s && sscanf(s, "%lld,%lld,%lf,%lf,%lf,%lf,%lf%n", &e, &st, &l->lr, &l->train_loss,
                               &l->train_acc, &l->val_loss, &l->val_acc, &end) == 7 &&
                   s[end] == 0 && e == info->epoch && st == info->step;
  l->epoch = info->epoch;
  l->step = info->step;
  l->seconds = -1;
}

// The run's settings from the metadata "run" (*has false when there is
// none); false when it is there but does not parse or is out of bounds.
static bool read_run(const StFile *f, RunSettings *u, bool *has, char *err, size_t errsz) {
  const char *s = data_st_meta(f, "run");
  *has = false;
  if (!s || !*s)
    return true;
  int batch = 0, shuffle = -1, end = -1;
  unsigned long long seed;
  long long limit = -1, samples = -1;
  char id[20] = "";
  bool ok = sscanf(s, "batch=%d lr=%lf seed=%llu val_split=%lf limit=%lld shuffle=%d samples=%lld id=%16[0-9a-f]%n",
                   &batch, &u->lr, &seed, &u->val_split, &limit, &shuffle, &samples, id, &end) == 8 && s[end] == 0 &&
            batch >= 1 && batch <= TRAIN_MAX_BATCH && isfinite(u->lr) && u->lr > 0 && u->val_split >= 0 &&
            u->val_split < 1 && limit >= 0 && (shuffle == 0 || shuffle == 1) && samples >= 1;
  if (!ok) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'run' is '%.200s', not 'batch=B lr=X seed=S val_split=F "
              "limit=L shuffle=0|1 samples=N id=HEX'\n---> HINT: the file is damaged or was not written by `nnc train`",
              f->path, s);
    return false;
  }
  *u = (RunSettings){batch, u->lr, seed, u->val_split, limit, shuffle, samples, ""};
  memcpy(u->id, id, sizeof id);
  *has = true;
  return true;
}

// The file a checkpoint is read from must be a regular file: a FIFO
// would block the reader, and a run directory means the checkpoint in it.
static bool check_file(const char *path, char *err, size_t errsz) {
  struct stat st;
  if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
    return true;   // the reader names a missing file
  if (S_ISDIR(st.st_mode))
    errorf(err, errsz, "%s: is a directory, not a checkpoint\n---> HINT: give the checkpoint file, such as "
              "%s%scheckpoint.safetensors for a run directory", path, path, path[strlen(path) - 1] == '/' ? "" : "/");
  else
    errorf(err, errsz, "%s: is not a regular file (a pipe or a device), so it cannot be a checkpoint\n"
              "---> HINT: save the weights to a file and give its path", path);
  return false;
}

bool train_checkpoint_run(const char *path, RunSettings *run, bool *has, char *err, size_t errsz) {
  StFile f;
  *has = false;
  if (!check_file(path, err, errsz) || !data_st_read(path, &f, err, errsz))
    return false;
  bool ok = read_run(&f, run, has, err, errsz);
  data_st_free(&f);
  return ok;
}

// Reads the metadata a resume needs; false names the bad key in err. A
// file without nnc's format key is plain weights, which only weights_only
// accepts.
static bool read_info(const StFile *f, Exec *ex, bool weights_only, CkptInfo *info, char *err,
                      size_t errsz) {
  const char *fmt = data_st_meta(f, "format");
  *info = (CkptInfo){0};
  if (fmt && !strncmp(fmt, "nnc-checkpoint-", 15) && strcmp(fmt, CKPT_FORMAT)) {
    errorf(err, errsz, "%s: the checkpoint's format is '%s', but this nnc reads '%s'\n"
              "---> HINT: read it with the nnc that wrote it", f->path, fmt, CKPT_FORMAT);
    return false;
  }
  if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
    info->plain = true;
    if (weights_only)
      return true;
    errorf(err, errsz, "%s: holds weights but no training state (no nnc metadata: epoch, step, optimizer "
              "state), so a run cannot resume from it\n---> HINT: start a new run from these weights with "
              "--init %s", f->path, f->path);
    return false;
  }
  if (!meta_i64(f, "epoch", TRAIN_MAX_EPOCHS, &info->epoch, err, errsz) ||
      !meta_i64(f, "step", TRAIN_MAX_STEPS, &info->step, err, errsz))
    return false;
  const char *c = data_st_meta(f, "cursor");
  info->has_cursor = c && *c && data_cursor_parse(c, &info->cursor);
  if (c && *c && (!info->has_cursor || info->cursor.epoch > TRAIN_MAX_EPOCHS)) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'cursor' is '%s', not 'epoch=E pos=P rng=S:I' with "
              "E from 0 to %d\n---> HINT: the file is damaged or was not written by `nnc train`", f->path, c,
              TRAIN_MAX_EPOCHS);
    return false;
  }
  const char *nm = data_st_meta(f, "normalize");
  info->normalized = nm && *nm;
  if (info->normalized && (sscanf(nm, "%lf %lf", &info->mean, &info->std) != 2 || !isfinite(info->mean) ||
                           !isfinite(info->std) || !(info->std > 0))) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'normalize' is '%s', not a finite mean and a "
              "positive std\n---> HINT: the file is damaged or was not written by `nnc train`", f->path, nm);
    return false;
  }
  read_last(f, info);
  if (!read_run(f, &info->run, &info->has_run, err, errsz))
    return false;
  const char *r = data_st_meta(f, "dropout_rng");
  uint64_t st, inc;
  if (r && sscanf(r, "%" SCNx64 ":%" SCNx64, &st, &inc) == 2)
    *exec_rng(ex) = (Rng){st, inc | 1};
  return true;
}

// The optimizer a state tensor belongs to, for messages.
static const char *optimizer_of(const char *name) {
  size_t n = strlen(name), k = strlen(".momentum_buffer");
  return n > k && !strcmp(name + n - k, ".momentum_buffer") ? "sgd with momentum" : "adam or adamw";
}

// The optimizer the file's state was written for.
static const char *file_optimizer(const StFile *f) {
  for (int i = 0; i < f->ntensors; i++)
    if (is_optimizer_state(f->tensors[i].name))
      return optimizer_of(f->tensors[i].name);
  return "sgd without momentum, which keeps none";
}

// PyTorch's batchnorm counter num_batches_tracked, an integer nnc has no use for
// (its momentum is fixed): a state_dict saved from PyTorch holds one per batchnorm.
static bool is_ignored(const StTensor *t) {
  const char *suffix = ".num_batches_tracked";
  size_t n = strlen(t->name), k = strlen(suffix);
  return (t->dtype == ST_I64 || t->dtype == ST_I32) && n > k && !strcmp(t->name + n - k, suffix);
}

#define OPT_HINT "---> HINT: resume with the optimizer the run was trained with, or start a new run from " \
                 "these weights (with fresh optimizer state) with --init %s"

// Every tensor ex has must be in the file with its shape (optimizer state
// only when !weights_only), and the file must hold nothing else.
static bool check_tensors(Exec *ex, const StFile *f, bool weights_only, bool plain, char *err, size_t errsz) {
  const char *path = f->path;
  const char *hint = plain ? "---> HINT: nnc names weights after the layers of the .nn file (`nnc emit --stage ir "
                             "MODEL.nn` lists them); save the PyTorch modules under the same names"
                           : "---> HINT: give the checkpoint that training this model wrote";
  char a[96], b[96];
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
    bool opt = is_optimizer_state(n->name);
    if (weights_only && opt)
      continue;
    const StTensor *t = data_st_find(f, n->name);
    if (!t && opt) {
      errorf(err, errsz, "%s: the checkpoint has no optimizer state '%s' (%s): it was written with another "
                "optimizer (%s)\n" OPT_HINT, path, n->name, optimizer_of(n->name), file_optimizer(f), path);
      return false;
    }
    if (!t) {
      errorf(err, errsz, "%s: the checkpoint has no tensor '%s' %s, so it is not from this model\n%s", path,
                n->name, ir_type_str(n, a, sizeof a), hint);
      return false;
    }
    bool same_shape = t->ndim == n->ndim && !memcmp(t->shape, n->shape, sizeof(int64_t) * n->ndim);
    if (same_shape && t->dtype != ST_F32) {
      errorf(err, errsz, "%s: tensor '%s' is %s in the checkpoint, but nnc's weights are F32\n---> HINT: save "
                "the tensors as float32 (from PyTorch: {k: v.float() for k, v in model.state_dict().items()})",
                path, n->name, data_dtype_name(t->dtype));
      return false;
    }
    if (!same_shape) {
      ir_shape_str(t->ndim, t->shape, b, sizeof b);
      errorf(err, errsz, "%s: tensor '%s' is %s %s in the checkpoint but f32%s in this model, so the "
                "checkpoint is from another model\n%s", path, n->name, data_dtype_name(t->dtype), b,
                ir_shape_str(n->ndim, n->shape, a, sizeof a), hint);
      return false;
    }
  }
  for (int i = 0; i < f->ntensors; i++) {
    const char *name = f->tensors[i].name;
    bool opt = is_optimizer_state(name);
    if (exec_find_state(ex, name) >= 0 || (weights_only && opt) || is_ignored(&f->tensors[i]))
      continue;
    if (opt)
      errorf(err, errsz, "%s: the checkpoint holds optimizer state '%s' (%s) that this model's optimizer does "
                "not keep: it was written with another optimizer\n" OPT_HINT, path, name, optimizer_of(name), path);
    else
      errorf(err, errsz, "%s: the checkpoint has a tensor '%s' this model does not have, so it is from "
                "another model\n%s", path, name, hint);
    return false;
  }
  return true;
}

// A NaN or an infinity in a tensor about to be loaded: the weights are
// unusable, and training or predicting with them would only hide where.
static bool check_finite(const StFile *f, const char *name, int64_t k, char *err, size_t errsz) {
  const StTensor *t = data_st_find(f, name);
  for (int64_t j = 0; j < k; j++) {
    float v;
    memcpy(&v, (const char *)t->data + 4 * j, 4);
    if (!isfinite(v)) {
      errorf(err, errsz, "%s: tensor '%s' holds %s at flat index %lld (of %lld values), so the weights "
                "cannot be used\n---> HINT: the run that wrote them diverged, or the file is damaged; use an "
                "earlier checkpoint", f->path, name, isnan(v) ? "a NaN" : v > 0 ? "+inf" : "-inf",
                (long long)j, (long long)k);
      return false;
    }
  }
  return true;
}

bool train_checkpoint_load(Exec *ex, const char *path, bool weights_only, CkptInfo *info,
                        char *err, size_t errsz) {
  StFile f;
  if (!check_file(path, err, errsz) || !data_st_read(path, &f, err, errsz))
    return false;
  bool ok = false;
  CkptInfo tmp;
  CkptInfo *in = info ? info : &tmp;
  if (!read_info(&f, ex, weights_only, in, err, errsz) || !check_tensors(ex, &f, weights_only, in->plain, err, errsz))
    goto done;
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
    int64_t k = ir_numel(n, 1);
    if (data_st_find(&f, n->name) && !check_finite(&f, n->name, k, err, errsz))
      goto done;
  }
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
    const StTensor *t = data_st_find(&f, n->name);
    if (t) {   // the file's data may be unaligned: through an aligned copy
      int64_t k = ir_numel(n, 1);
      float *v = xmalloc(sizeof(float) * (k > 0 ? k : 1));
      memcpy(v, t->data, sizeof(float) * k);
      exec_write_state(ex, i, v);
      free(v);
    }
  }
  exec_set_steps(ex, in->step);
  ok = true;
done:
  data_st_free(&f);
  return ok;
}
