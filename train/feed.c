// feed.c: which data a model reads. train, eval and predict load their
// data sets here, so that each reads a file the same way: the same layout,
// the same scaling, and the same checks of the samples against the model's
// inputs.
//
// A sample is every input's values, one input after another in declaration
// order (exec_sample_dim floats); exec_run splits it over the inputs. A
// table CSV names its columns after the inputs and can hold any number of
// them; IDX files and the label,pixel0,... CSV hold one input, so a model
// with several gets a clear error for them.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// The input's declared type without the batch dimension: "f32[1, 28, 28]".
static const char *input_type(const IrNode *in, char *buf, size_t n) {
  size_t len = snprintf(buf, n, "%s[", in->dtype == DT_I32 ? "i32" : "f32");
  bool first = true;
  for (int i = 0; i < in->ndim && len < n; i++) {
    if (in->shape[i] == IR_N)
      continue;
    len += snprintf(buf + len, n - len, "%s%lld", first ? "" : ", ", (long long)in->shape[i]);
    first = false;
  }
  if (len < n)
    snprintf(buf + len, n - len, "]");
  return buf;
}

// The model's inputs by name for messages: "'a', 'b'".
static const char *input_names(const Model *m, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < m->ninputs && len < n; i++)
    len += snprintf(buf + len, n - len, "%s'%s'", i ? ", " : "", m->inputs[i]->name);
  return buf;
}

// A sample's shape with sep between dimensions: "28x28" or "28, 28".
static const char *data_shape(const Dataset *ds, const char *sep, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ds->ndim && len < n; i++)
    len += snprintf(buf + len, n - len, "%s%lld", i ? sep : "", (long long)ds->shape[i]);
  return buf;
}

// The dimensions of a shape other than 1 (and the batch): [1, 28, 28] and
// 28x28 both give 28, 28.
static int squeeze(const int64_t *shape, int ndim, int64_t *out) {
  int k = 0;
  for (int i = 0; i < ndim; i++)
    if (shape[i] != 1 && shape[i] != IR_N)
      out[k++] = shape[i];
  return k;
}

bool train_data_fits(const Model *m, Dataset *ds, char *err, size_t errsz) {
  char want[160], have[160];
  int64_t dim = exec_sample_dim(m);
  if (m->ninputs != 1) {
    if (ds->dim == dim)
      return true;   // a table: its columns were matched to the inputs by name
    errorf(err, errsz, "%s: samples have %lld values, but model '%s' reads %lld (inputs %s)", ds->source,
              (long long)ds->dim, m->g->name, (long long)dim, input_names(m, want, sizeof want));
    data_free(ds);
    return false;
  }
  const IrNode *in = m->input;
  int64_t a[IR_MAX_DIMS + RT_MAX_SAMPLE_DIMS], b[IR_MAX_DIMS];
  int na = squeeze(ds->shape, ds->ndim, a), nb = squeeze(in->shape, in->ndim, b);
  // Data with one dimension (a CSV row) has no shape to disagree with, and
  // a flat input takes any sample of its size (images for an MLP).
  bool same = ds->dim == dim && (na <= 1 || nb <= 1 || (na == nb && !memcmp(a, b, sizeof(int64_t) * na)));
  if (same)
    return true;
  char decl[160];
  input_type(in, want, sizeof want);
  data_shape(ds, "x", have, sizeof have);
  data_shape(ds, ", ", decl, sizeof decl);
  if (ds->dim != dim && ds->ndim > 1)
    errorf(err, errsz, "%s: samples have %lld values (%s), but the model's input '%s' is %s (%lld value%s)\n"
              "---> HINT: declare the input with the data's shape, f32[%s]", ds->source, (long long)ds->dim,
              have, in->name, want, (long long)dim, dim == 1 ? "" : "s", decl);
  else if (ds->dim != dim)
    errorf(err, errsz, "%s: samples have %lld value%s, but the model's input '%s' is %s (%lld value%s)\n"
              "---> HINT: declare the input with the data's shape, f32[%s]", ds->source, (long long)ds->dim,
              ds->dim == 1 ? "" : "s", in->name, want, (long long)dim, dim == 1 ? "" : "s", decl);
  else
    errorf(err, errsz, "%s: samples are %s, but the model's input '%s' is %s: as many values, in another "
              "shape\n---> HINT: declare the input as f32[%s] (a reshape in the model can change it)",
              ds->source, have, in->name, want, decl);
  data_free(ds);
  return false;
}

// The header is "label,pixel0,pixel1,...,pixelK" or "pixel0,...,pixelK",
// the pixels numbered in order and nothing else: the Kaggle
// digit-recognizer layout, whose pixels are scaled by 1/255. Any other
// header is a table's, read unscaled, whatever the order of its columns
// (a model whose input is named pixel gets "pixel1,pixel0,label" as a
// table, not half as pixels).
static bool pixel_layout(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return false;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, f);
  fclose(f);
  bool ok = n > 0;
  const char *p = ok && n >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3) ? line + 3 : line;
  if (ok && !strncmp(p, "label,", 6))
    p += 6;
  for (long k = 0; ok; k++) {
    char *end = NULL;
    ok = !strncmp(p, "pixel", 5) && p[5] >= '0' && p[5] <= '9' && strtol(p + 5, &end, 10) == k &&
         (p[5] != '0' || end == p + 6);   // pixel01 is no pixel1
    if (ok && *end != ',') {
      ok = *end == '\n' || *end == '\r' || *end == 0;
      break;
    }
    p = ok ? end + 1 : p;
  }
  free(line);
  return ok;
}

// "a0,a1,a2,b" for hints: one column per value of each input (long ones
// elided), then the target's.
static const char *table_columns(const Model *m, bool labeled, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i <= m->ninputs && len < n; i++) {
    const IrNode *v = i < m->ninputs ? m->inputs[i] : labeled ? m->target : NULL;
    if (!v)
      break;
    int64_t d = v->op == IR_TARGET && v->dtype == DT_I32 ? 1 : ir_numel(v, 1);
    const char *sep = i ? "," : "";
    if (d == 1)
      len += snprintf(buf + len, n - len, "%s%s", sep, v->name);
    else if (d <= 3)
      for (int64_t k = 0; k < d && len < n; k++)
        len += snprintf(buf + len, n - len, "%s%s%lld", k ? "," : sep, v->name, (long long)k);
    else
      len += snprintf(buf + len, n - len, "%s%s0,...,%s%lld", sep, v->name, v->name, (long long)d - 1);
  }
  return buf;
}

// Reads a table CSV for m: columns named after its inputs (and, when
// labeled, its target).
static bool load_table(const Model *m, const char *path, bool labeled, Dataset *ds, char *err,
                       size_t errsz) {
  Columns *in = xmalloc(sizeof(Columns) * m->ninputs);
  for (int i = 0; i < m->ninputs; i++) {
    const IrNode *v = m->inputs[i];
    in[i] = (Columns){v->name, ir_numel(v, 1), 0, v->dtype == DT_I32, pass_index_bound(m->g, v)};
  }
  const IrNode *t = m->target;
  Columns target = {0};
  if (t)
    target = (Columns){t->name, t->dtype == DT_I32 ? 1 : ir_numel(t, 1), t->dtype == DT_I32 ? (int)t->attr.i[0] : 0,
                       false, 0};
  bool ok = data_load_table_csv(path, in, m->ninputs, labeled && t ? &target : NULL, ds, err, errsz);
  free(in);
  return ok;
}

// The samples of an IDX file as the indexes of m's one integer input:
// ubyte pixels as they are stored (0..255, not scaled), other element
// types when every value is a whole number; each in [0, the vocab of the
// embedding that reads it), stored as int32 in its float's bytes.
static bool idx_indexes(const Model *m, Dataset *ds, char *err, size_t errsz) {
  const IrNode *in = m->input;
  int64_t n = ds->n * ds->dim, bound = pass_index_bound(m->g, in);
  float *x = ds->x ? ds->x : xmalloc(sizeof(float) * (n > 0 ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    double v = ds->x8 ? ds->x8[i] : ds->x[i];
    const char *why = v != floor(v) || fabs(v) > INT32_MAX ? "is not a whole number"
                      : bound > 0 && (v < 0 || v >= (double)bound) ? "is outside [0, vocab)" : NULL;
    if (why) {
      errorf(err, errsz, "%s: sample %lld, value %lld: %g %s, but input '%s' holds the indexes of an "
             "embedding of vocab %lld\n---> HINT: indexes count from 0 and must be less than the vocab",
             ds->source, (long long)(i / ds->dim), (long long)(i % ds->dim), v, why, in->name, (long long)bound);
      if (x != ds->x)
        free(x);
      data_free(ds);
      return false;
    }
    int32_t k = (int32_t)v;
    memcpy(x + i, &k, sizeof k);
  }
  if (ds->x8) {
    free(ds->x8);
    ds->x8 = NULL;
    ds->x = x;
  }
  return true;
}

// Reads a table CSV for a model of several targets: every target's columns
// are read after the inputs' as values, then moved into the rows of t, one
// target after another (exec_target_dim 4-byte values a sample): a class
// target's as an int32 label, checked whole and in [0, K), the others as
// floats.
static bool load_table_targets(const Model *m, const char *path, Dataset *ds, char *err, size_t errsz) {
  int nc = m->ninputs + m->ntargets;
  Columns *c = xmalloc(sizeof(Columns) * nc);
  for (int i = 0; i < m->ninputs; i++)
    c[i] = (Columns){m->inputs[i]->name, ir_numel(m->inputs[i], 1), 0, m->inputs[i]->dtype == DT_I32,
                     pass_index_bound(m->g, m->inputs[i])};
  for (int j = 0; j < m->ntargets; j++) {
    const IrNode *t = m->targets[j];
    c[m->ninputs + j] = (Columns){t->name, t->dtype == DT_I32 ? 1 : ir_numel(t, 1), 0, false, 0};
  }
  bool ok = data_load_table_csv(path, c, nc, NULL, ds, err, errsz);
  free(c);
  if (!ok)
    return false;
  int64_t xin = exec_sample_dim(m), tdim = exec_target_dim(m), row = ds->dim;
  float *x = xmalloc(sizeof(float) * (ds->n * xin + 1)), *tv = xmalloc(sizeof(float) * (ds->n * tdim + 1));
  for (int64_t s = 0; s < ds->n; s++) {
    const float *src = ds->x + s * row;
    memcpy(x + s * xin, src, sizeof(float) * xin);
    for (int j = 0, at = 0; j < m->ntargets; j++) {
      const IrNode *t = m->targets[j];
      int64_t d = t->dtype == DT_I32 ? 1 : ir_numel(t, 1);
      for (int64_t k = 0; k < d; k++, at++) {
        float v = src[xin + at];
        if (t->dtype != DT_I32) {
          tv[s * tdim + at] = v;
          continue;
        }
        if (!(v >= 0 && v < t->attr.i[0] && v == floorf(v))) {
          errorf(err, errsz, "%s: sample %lld: label %g of target '%s' is not a class in [0, %lld)", path,
                 (long long)s, v, t->name, (long long)t->attr.i[0]);
          free(x);
          free(tv);
          data_free(ds);
          return false;
        }
        int32_t label = (int32_t)v;
        memcpy(&tv[s * tdim + at], &label, 4);
      }
    }
  }
  free(ds->x);
  ds->x = x;
  ds->dim = xin;
  ds->ndim = 1;
  ds->shape[0] = xin;
  ds->t = tv;
  ds->tdim = tdim;
  return true;
}

bool train_load_data(const Model *m, const char *path, const char *split, bool labeled, Dataset *ds,
                        char *err, size_t errsz) {
  *ds = (Dataset){0};
  const IrNode *t = m->target;
  bool several = m->ntargets > 1 && labeled;   // read from a table alone
  bool classes = !t || t->dtype == DT_I32;
  int nclasses = t && t->dtype == DT_I32 ? (int)t->attr.i[0] : 0;
  char names[512], cols[512];
  struct stat st;
  if (stat(path, &st) != 0) {
    errorf(err, errsz, "%s: %s\n---> HINT: give a directory of IDX files (MNIST layout) or a CSV file",
              path, strerror(errno));
    return false;
  }
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {   // read twice (its layout, then its rows); a FIFO blocks
    errorf(err, errsz, "%s: is not a regular file (a pipe or a device)\n---> HINT: save the data to a file "
              "and give its path", path);
    return false;
  }
  bool dir = S_ISDIR(st.st_mode), pixels = !dir && pixel_layout(path);
  if ((dir || pixels) && m->ninputs > 1) {
    errorf(err, errsz, "%s: %s holds one input, but model '%s' has %d (%s)\n---> HINT: give a CSV file with "
              "a column for each value of every input%s, named after them (%s)", path,
              dir ? "a directory of IDX files" : "a CSV file in the label,pixel0,... layout", m->g->name,
              m->ninputs, input_names(m, names, sizeof names), labeled && t ? " and the target" : "",
              table_columns(m, labeled, cols, sizeof cols));
    return false;
  }
  bool ok;
  if (pixels && m->input->dtype == DT_I32) {
    errorf(err, errsz, "%s holds pixels scaled to [0, 1], but input '%s' holds integers (i32)\n---> HINT: give a "
           "CSV file with a column for each value of '%s' and the target, named after them (%s)", path,
           m->input->name, m->input->name, table_columns(m, labeled, cols, sizeof cols));
    return false;
  }
  if ((dir || pixels) && several) {
    errorf(err, errsz, "%s: %s holds one target, but model '%s' has %d\n---> HINT: give a CSV file with a column for "
              "each value of every input and target, named after them", path, dir ? "a directory of IDX files" :
              "a CSV file in the label,pixel0,... layout", m->g->name, m->ntargets);
    return false;
  } else if (several) {
    if (!load_table_targets(m, path, ds, err, errsz))
      return false;
    return train_data_fits(m, ds, err, errsz);
  } else if (dir && !classes) {
    errorf(err, errsz, "%s is a directory of images, but model '%s' has the real-valued target '%s'\n"
              "---> HINT: give a CSV file with a column for each value of '%s' and '%s' (for example %s)",
              path, m->g->name, t->name, m->input->name, t->name, table_columns(m, true, cols, sizeof cols));
    return false;
  } else if (dir && !m->ntargets)   // the loss compares outputs with inputs: no labels needed
    ok = data_load_idx_dir_images(path, split, ds, err, errsz);
  else if (dir)
    ok = data_load_idx_dir(path, split, nclasses, ds, err, errsz);
  else if (pixels && classes)
    ok = data_load_csv(path, nclasses, ds, err, errsz);
  else
    ok = load_table(m, path, labeled, ds, err, errsz);
  if (!ok)
    return false;
  if (dir && m->input->dtype == DT_I32 && !idx_indexes(m, ds, err, errsz))
    return false;
  if (labeled && t && t->dtype == DT_I32 && !ds->y) {
    errorf(err, errsz, "%s: the data has no labels, but the model trains against class target '%s'",
              ds->source, t->name);
    data_free(ds);
    return false;
  }
  return train_data_fits(m, ds, err, errsz);
}
