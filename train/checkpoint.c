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

// The tensors ex keeps, as a checkpoint holds them (caller frees).
static CkptTensor *state_list(const Exec *ex) {
  int n = exec_num_state(ex);
  CkptTensor *t = xcalloc(n ? n : 1, sizeof *t);
  for (int i = 0; i < n; i++) {
    const IrNode *k = exec_state_node(ex, i);
    t[i] = (CkptTensor){k->name, k->ndim, k->shape};
  }
  return t;
}

static uint64_t model_hash(const Exec *ex) {
  CkptTensor *t = state_list(ex);
  uint64_t h = data_ckpt_hash(t, exec_num_state(ex));
  free(t);
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
  char row[256 + 2 * IR_MAX_LOSS_TERMS * 20] = "", run[256] = "", plateau[160] = "";
  if (info->has_plateau)
    snprintf(plateau, sizeof plateau, "lr=%.17g best=%.17g bad=%" PRId64 " cooldown=%" PRId64, info->plateau.lr,
             info->plateau.best, info->plateau.bad, info->plateau.cooldown);
  norm[0] = cursor[0] = 0;
  if (info->has_run) {
    const RunSettings *u = &info->run;
    snprintf(run, sizeof run, "batch=%d lr=%.17g seed=%" PRIu64 " val_split=%.17g limit=%" PRId64 " shuffle=%d "
             "samples=%" PRId64 " id=%s%s", u->batch, u->lr, u->seed, u->val_split, u->limit, u->shuffle, u->samples,
             u->id, u->drop_last ? " drop_last=1" : "");   // (absent: a run without, as before drop_last existed)
  }
  if (info->has_last) {   // then a weighted sum's terms, train's and val's
    const Metrics *l = &info->last;
    int n = snprintf(row, sizeof row, "%" PRId64 ",%" PRId64 ",%.9g,%.9g,%.9g,%.9g,%.9g", l->epoch, l->step, l->lr,
                     l->train_loss, l->train_acc, l->val_loss, l->val_acc);
    for (int t = 0; t < 2 * l->nterms && n < (int)sizeof row; t++)
      n += snprintf(row + n, sizeof row - n, ",%.9g", t < l->nterms ? l->train_terms[t] : l->val_terms[t - l->nterms]);
  }
  if (info->normalized)
    snprintf(norm, sizeof norm, "%.17g %.17g", info->mean, info->std);
  if (info->has_cursor)
    data_cursor_format(info->cursor, cursor, sizeof cursor);
  const StMeta meta[] = {
      {"format", DATA_CKPT_FORMAT}, {"nnc_version", NNC_VERSION}, {"model_hash", hash}, {"epoch", epoch},
      {"step", step},          {"dropout_rng", rng},        {"cursor", cursor},
      {"normalize", norm},     {"metrics", row},            {"run", run},
      {"plateau", plateau},
  };
  bool ok = data_st_write(path, t, nt, meta, countof(meta), err, errsz);
  for (int i = 0; i < nt; i++)
    free((void *)t[i].data);
  free(t);
  return ok;
}

// The metrics row a checkpoint keeps for the epoch it ends; a row that does
// not parse, or is for another epoch, is no row.
static void read_last(const StFile *f, CkptInfo *info) {
  const char *s = data_st_meta(f, "metrics");
  Metrics *l = &info->last;
  long long e, st;
  int end = -1;
  double v[2 * IR_MAX_LOSS_TERMS];
  int nv = 0, more = 0;
  info->has_last = s && sscanf(s, "%lld,%lld,%lf,%lf,%lf,%lf,%lf%n", &e, &st, &l->lr, &l->train_loss,
                               &l->train_acc, &l->val_loss, &l->val_acc, &end) == 7 &&
                   e == info->epoch && st == info->step;
  while (info->has_last && s[end] && nv < 2 * IR_MAX_LOSS_TERMS && sscanf(s + end, ",%lf%n", &v[nv], &more) == 1) {
    nv++;   // a weighted sum's terms: train's, then val's
    end += more;
  }
  info->has_last = info->has_last && s[end] == 0 && nv % 2 == 0;
  l->nterms = nv / 2;
  for (int t = 0; t < l->nterms; t++) {
    l->train_terms[t] = v[t];
    l->val_terms[t] = v[l->nterms + t];
  }
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
                   &batch, &u->lr, &seed, &u->val_split, &limit, &shuffle, &samples, id, &end) == 8;
  bool drop_last = ok && !strcmp(s + end, " drop_last=1");
  ok = ok && (s[end] == 0 || drop_last) &&
            batch >= 1 && batch <= TRAIN_MAX_BATCH && isfinite(u->lr) && u->lr > 0 && u->val_split >= 0 &&
            u->val_split < 1 && limit >= 0 && (shuffle == 0 || shuffle == 1) && samples >= 1;
  if (!ok) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'run' is '%.200s', not 'batch=B lr=X seed=S val_split=F "
              "limit=L shuffle=0|1 samples=N id=HEX[ drop_last=1]'\n---> HINT: the file is damaged or was not written by `nnc train`",
              f->path, s);
    return false;
  }
  *u = (RunSettings){batch, u->lr, seed, u->val_split, limit, shuffle, samples, "", drop_last};
  memcpy(u->id, id, sizeof id);
  *has = true;
  return true;
}

// The plateau schedule's state from the metadata "plateau" (none: not
// has_plateau); false when it is there but does not parse or is out of bounds.
static bool read_plateau(const StFile *f, CkptInfo *info, char *err, size_t errsz) {
  const char *s = data_st_meta(f, "plateau");
  if (!s || !*s)
    return true;
  Plateau *p = &info->plateau;
  long long bad = -1, cooldown = -1;
  int end = -1;
  bool ok = sscanf(s, "lr=%lf best=%lf bad=%lld cooldown=%lld%n", &p->lr, &p->best, &bad, &cooldown, &end) == 4 &&
            s[end] == 0 && isfinite(p->lr) && p->lr > 0 && !isnan(p->best) && bad >= 0 && bad <= TRAIN_MAX_EPOCHS &&
            cooldown >= 0 && cooldown <= INT32_MAX;
  if (!ok) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'plateau' is '%.200s', not 'lr=X best=Y bad=B cooldown=C'\n"
              "---> HINT: the file is damaged or was not written by `nnc train`", f->path, s);
    return false;
  }
  p->bad = bad;
  p->cooldown = cooldown;
  info->has_plateau = true;
  return true;
}

bool train_checkpoint_run(const char *path, RunSettings *run, bool *has, char *err, size_t errsz) {
  StFile f;
  *has = false;
  if (!data_ckpt_file(path, err, errsz) || !data_st_read(path, &f, err, errsz))
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
  *info = (CkptInfo){0};
  if (!data_ckpt_format(f, &info->plain, err, errsz))
    return false;
  if (info->plain) {
    if (weights_only)
      return true;
    errorf(err, errsz, "%s: holds weights but no training state (no nnc metadata: epoch, step, optimizer "
              "state), so a run cannot resume from it\n---> HINT: start a new run from these weights with "
              "--init %s", f->path, f->path);
    return false;
  }
  if (!data_ckpt_meta_i64(f, "epoch", TRAIN_MAX_EPOCHS, &info->epoch, err, errsz) ||
      !data_ckpt_meta_i64(f, "step", TRAIN_MAX_STEPS, &info->step, err, errsz))
    return false;
  const char *c = data_st_meta(f, "cursor");
  info->has_cursor = c && *c && data_cursor_parse(c, &info->cursor);
  if (c && *c && (!info->has_cursor || info->cursor.epoch > TRAIN_MAX_EPOCHS)) {
    errorf(err, errsz, "%s: the checkpoint's metadata 'cursor' is '%s', not 'epoch=E pos=P rng=S:I' with "
              "E from 0 to %d\n---> HINT: the file is damaged or was not written by `nnc train`", f->path, c,
              TRAIN_MAX_EPOCHS);
    return false;
  }
  if (!data_ckpt_normalize(f, &info->normalized, &info->mean, &info->std, err, errsz))
    return false;
  read_last(f, info);
  if (!read_run(f, &info->run, &info->has_run, err, errsz) || !read_plateau(f, info, err, errsz))
    return false;
  const char *r = data_st_meta(f, "dropout_rng");
  uint64_t st, inc;
  if (r && sscanf(r, "%" SCNx64 ":%" SCNx64, &st, &inc) == 2)
    *exec_rng(ex) = (Rng){st, inc | 1};
  return true;
}

bool train_checkpoint_load(Exec *ex, const char *path, bool weights_only, CkptInfo *info,
                        char *err, size_t errsz) {
  StFile f;
  if (!data_ckpt_file(path, err, errsz) || !data_st_read(path, &f, err, errsz))
    return false;
  bool ok = false;
  CkptInfo tmp;
  CkptInfo *in = info ? info : &tmp;
  CkptTensor *want = state_list(ex);
  bool fits = read_info(&f, ex, weights_only, in, err, errsz) &&
              data_ckpt_check(&f, want, exec_num_state(ex), weights_only, in->plain, err, errsz);
  free(want);
  if (!fits)
    goto done;
  for (int i = 0; i < exec_num_state(ex); i++) {
    const IrNode *n = exec_state_node(ex, i);
    const StTensor *t = data_st_find(&f, n->name);
    if (t && !(weights_only && data_ckpt_optimizer_state(n->name))) {   // through an aligned copy: the
                                                                       // file's data may be unaligned
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
