// ckpt.c: what every reader and writer of nnc's checkpoints shares (the
// training loop's, over an executor, and an artifact's, in the runtime
// library): the format's name, which tensors are optimizer state, the hash
// of a model's weights, and the checks a file passes before any of its
// tensors is loaded.
#include "data.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool data_ckpt_optimizer_state(const char *name) {
  static const char *const suffixes[] = {".momentum_buffer", ".exp_avg", ".exp_avg_sq", ".square_avg", ".grad_avg",
                                         ".sum"};
  size_t n = strlen(name);
  for (int i = 0; i < countof(suffixes); i++) {
    size_t k = strlen(suffixes[i]);
    if (n > k && !strcmp(name + n - k, suffixes[i]))
      return true;
  }
  return false;
}

uint64_t data_ckpt_hash(const CkptTensor *t, int n) {
  uint64_t h = 1469598103934665603ULL;
  for (int i = 0; i < n; i++) {
    if (data_ckpt_optimizer_state(t[i].name))
      continue;
    for (const char *p = t[i].name; *p; p++)
      h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (int d = 0; d < t[i].ndim; d++)
      h = (h ^ (uint64_t)t[i].shape[d]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  return h;
}

bool data_ckpt_file(const char *path, char *err, size_t errsz) {
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

bool data_ckpt_format(const StFile *f, bool *plain, char *err, size_t errsz) {
  const char *fmt = data_st_meta(f, "format");
  if (fmt && !strncmp(fmt, "nnc-checkpoint-", 15) && strcmp(fmt, DATA_CKPT_FORMAT)) {
    errorf(err, errsz, "%s: the checkpoint's format is '%s', but this nnc reads '%s'\n"
              "---> HINT: read it with the nnc that wrote it", f->path, fmt, DATA_CKPT_FORMAT);
    return false;
  }
  *plain = !fmt || strcmp(fmt, DATA_CKPT_FORMAT);
  return true;
}

bool data_ckpt_meta_i64(const StFile *f, const char *key, int64_t max, int64_t *out, char *err, size_t errsz) {
  const char *s = data_st_meta(f, key);
  char *end;
  errno = 0;
  long long v = s && *s ? strtoll(s, &end, 10) : -1;
  if (!s || !*s || *end || errno || v < 0 || v > max) {
    errorf(err, errsz, "%s: the checkpoint's metadata '%s' is %s%s%s, not a whole number from 0 to %" PRId64
              "\n---> HINT: the file is damaged or was not written by nnc", f->path, key,
              s ? "'" : "missing", s ? s : "", s ? "'" : "", max);
    return false;
  }
  *out = v;
  return true;
}

bool data_ckpt_normalize(const StFile *f, bool *normalized, double *mean, double *std, char *err, size_t errsz) {
  const char *nm = data_st_meta(f, "normalize");
  *normalized = nm && *nm;
  if (*normalized && (sscanf(nm, "%lf %lf", mean, std) != 2 || !isfinite(*mean) || !isfinite(*std) || !(*std >= 1e-30))) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'normalize' is '%s', not a finite mean and a "
              "std from 1e-30\n---> HINT: the file is damaged or was not written by nnc", f->path, nm);
    return false;
  }
  return true;
}

// The optimizer a state tensor belongs to, for messages.
static const char *optimizer_of(const char *name) {
  static const struct { const char *suffix, *optimizer; } kinds[] = {
      {".momentum_buffer", "sgd or rmsprop with momentum"}, {".exp_avg", "adam or adamw"},
      {".exp_avg_sq", "adam or adamw"}, {".square_avg", "rmsprop"}, {".grad_avg", "rmsprop with centered = true"},
      {".sum", "adagrad"}};
  size_t n = strlen(name);
  for (int i = 0; i < countof(kinds); i++) {
    size_t k = strlen(kinds[i].suffix);
    if (n > k && !strcmp(name + n - k, kinds[i].suffix))
      return kinds[i].optimizer;
  }
  return "another optimizer";
}

// The optimizer the file's state was written for.
static const char *file_optimizer(const StFile *f) {
  for (int i = 0; i < f->ntensors; i++)
    if (data_ckpt_optimizer_state(f->tensors[i].name))
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

static const CkptTensor *find(const CkptTensor *t, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(t[i].name, name))
      return &t[i];
  return NULL;
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t len = 0;
  buf[len++] = '[';
  for (int i = 0; i < ndim && len + 24 < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "", (long long)shape[i]);
  snprintf(buf + len, size - len, "]");
  return buf;
}

#define OPT_HINT "---> HINT: resume with the optimizer the run was trained with, or start a new run from " \
                 "these weights (with fresh optimizer state) with --init %s"

// Every tensor of t must be in the file with its shape (optimizer state
// only when !weights_only), and the file must hold nothing else.
static bool check_names(const StFile *f, const CkptTensor *want, int n, bool weights_only, bool plain, char *err,
                        size_t errsz) {
  const char *path = f->path;
  const char *hint = plain ? "---> HINT: nnc names weights after the layers of the .nn file (`nnc emit --stage ir "
                             "MODEL.nn` lists them); save the PyTorch modules under the same names"
                           : "---> HINT: give the checkpoint that training this model wrote";
  char a[RT_ST_MAX_DIMS * 22 + 4], b[RT_ST_MAX_DIMS * 22 + 4];
  for (int i = 0; i < n; i++) {
    const CkptTensor *w = &want[i];
    bool opt = data_ckpt_optimizer_state(w->name);
    if (weights_only && opt)
      continue;
    const StTensor *t = data_st_find(f, w->name);
    if (!t && opt) {
      errorf(err, errsz, "%s: the checkpoint has no optimizer state '%s' (%s): it was written with another "
                "optimizer (%s)\n" OPT_HINT, path, w->name, optimizer_of(w->name), file_optimizer(f), path);
      return false;
    }
    if (!t) {
      errorf(err, errsz, "%s: the checkpoint has no tensor '%s' f32%s, so it is not from this model\n%s", path,
                w->name, shape_str(w->ndim, w->shape, a, sizeof a), hint);
      return false;
    }
    bool same_shape = t->ndim == w->ndim && !memcmp(t->shape, w->shape, sizeof(int64_t) * w->ndim);
    if (same_shape && t->dtype != ST_F32) {
      errorf(err, errsz, "%s: tensor '%s' is %s in the checkpoint, but nnc's weights are F32\n---> HINT: save "
                "the tensors as float32 (from PyTorch: {k: v.float() for k, v in model.state_dict().items()})",
                path, w->name, data_dtype_name(t->dtype));
      return false;
    }
    if (!same_shape) {
      errorf(err, errsz, "%s: tensor '%s' is %s %s in the checkpoint but f32%s in this model, so the "
                "checkpoint is from another model\n%s", path, w->name, data_dtype_name(t->dtype),
                shape_str(t->ndim, t->shape, b, sizeof b), shape_str(w->ndim, w->shape, a, sizeof a), hint);
      return false;
    }
  }
  for (int i = 0; i < f->ntensors; i++) {
    const char *name = f->tensors[i].name;
    bool opt = data_ckpt_optimizer_state(name);
    if (find(want, n, name) || (weights_only && opt) || is_ignored(&f->tensors[i]))
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
bool data_ckpt_finite(const char *path, const char *name, const void *v, int64_t n, char *err, size_t errsz) {
  for (int64_t j = 0; j < n; j++) {
    float x;
    memcpy(&x, (const char *)v + 4 * j, 4);
    if (!isfinite(x)) {
      errorf(err, errsz, "%s: tensor '%s' holds %s at flat index %lld (of %lld values), so the weights "
                "cannot be used\n---> HINT: the run that wrote them diverged, or the file is damaged; use an "
                "earlier checkpoint", path, name, isnan(x) ? "a NaN" : x > 0 ? "+inf" : "-inf", (long long)j,
                (long long)n);
      return false;
    }
  }
  return true;
}

bool data_ckpt_check(const StFile *f, const CkptTensor *want, int n, bool weights_only, bool plain, char *err,
                     size_t errsz) {
  if (!check_names(f, want, n, weights_only, plain, err, errsz))
    return false;
  for (int i = 0; i < n; i++) {
    const StTensor *t = data_st_find(f, want[i].name);
    if (t && t->data && !(weights_only && data_ckpt_optimizer_state(want[i].name)) &&
        !data_ckpt_finite(f->path, t->name, t->data, (int64_t)(t->nbytes / 4), err, errsz))
      return false;
  }
  return true;
}
