// data.c: training data: IDX and IDX.gz files (MNIST, Fashion-MNIST), the
// Kaggle digit-recognizer CSV, CSV tables whose columns are named after a
// model's inputs and target, normalization, a seeded validation split, and
// a batcher whose shuffled order can be saved in a checkpoint and resumed
// bit for bit.
//
// Loaders check a file completely before they hand anything back, and
// report the first problem as "FILE: what is wrong" plus a hint. IDX files
// may be plain or gzip, told apart by their first bytes, not by the file's
// name. No allocation is larger than the data a file actually holds: sizes
// from headers are checked against the file, and decompressed data goes
// into a buffer that grows as it arrives. A runtime library built without
// zlib (NNC_NO_ZLIB) refuses gzip data with a message saying so.
#include "data.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifndef NNC_NO_ZLIB
#include <zlib.h>
#endif


void data_free(Dataset *ds) {
  free(ds->x);
  free(ds->x8);
  free(ds->y);
  free(ds->t);
  free(ds->source);
  *ds = (Dataset){0};
}

// ubyte pixels as floats: v / 255.0f, as the loaders have always scaled them
// (the table filled once, whichever thread asks first).
static float scale_table[256];
static pthread_once_t scale_once = PTHREAD_ONCE_INIT;

static void fill_scale(void) {
  for (int v = 0; v < 256; v++)
    scale_table[v] = v / 255.0f;
}

static const float *byte_scale(void) {
  pthread_once(&scale_once, fill_scale);
  return scale_table;
}

void data_rows(const Dataset *ds, const int64_t *idx, int64_t first, int64_t k, float *dst) {
  const float *scale = ds->x8 ? byte_scale() : NULL;
  for (int64_t i = 0; i < k; i++) {
    int64_t s = idx ? idx[i] : first + i;
    float *d = dst + i * ds->dim;
    if (ds->x8) {
      const uint8_t *p = ds->x8 + s * ds->dim;
      for (int64_t j = 0; j < ds->dim; j++)
        d[j] = scale[p[j]];
    } else {
      memcpy(d, ds->x + s * ds->dim, (size_t)ds->dim * sizeof(float));
    }
  }
}

void data_subset(const Dataset *ds, const int64_t *idx, int64_t k, Dataset *out) {
  *out = *ds;
  out->n = k;
  out->x = ds->x ? xmalloc((size_t)(k * ds->dim) * sizeof(float)) : NULL;
  out->x8 = ds->x8 ? xmalloc((size_t)(k * ds->dim)) : NULL;
  out->y = ds->y ? xmalloc((size_t)k * sizeof(int32_t)) : NULL;
  out->t = ds->t ? xmalloc((size_t)(k * ds->tdim) * sizeof(float)) : NULL;
  out->source = xstrdup(ds->source ? ds->source : "");
  for (int64_t i = 0; i < k; i++) {
    if (ds->x)
      memcpy(out->x + i * ds->dim, ds->x + idx[i] * ds->dim, (size_t)ds->dim * sizeof(float));
    else
      memcpy(out->x8 + i * ds->dim, ds->x8 + idx[i] * ds->dim, (size_t)ds->dim);
    if (ds->y)
      out->y[i] = ds->y[idx[i]];
    if (ds->t)
      memcpy(out->t + i * ds->tdim, ds->t + idx[i] * ds->tdim, (size_t)ds->tdim * sizeof(float));
  }
}

// Fills perm with 0..n-1 in an order drawn from r (Fisher-Yates).
static void permute(Rng *r, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = rng_below(r, (uint32_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

//
// IDX files
//
// An IDX file is a 4-byte magic number (0, 0, element type, number of
// dimensions), one big-endian 32-bit size per dimension, and the elements,
// big-endian, in C order.
//

static int idx_elem_size(int type) {
  switch (type) {
  case RT_IDX_U8: case RT_IDX_I8: return 1;
  case RT_IDX_I16: return 2;
  case RT_IDX_I32: case RT_IDX_F32: return 4;
  case RT_IDX_F64: return 8;
  }
  return 0;
}

static const char *idx_type_name(int type) {
  switch (type) {
  case RT_IDX_U8: return "ubyte";
  case RT_IDX_I8: return "byte";
  case RT_IDX_I16: return "short";
  case RT_IDX_I32: return "int32";
  case RT_IDX_F32: return "float32";
  case RT_IDX_F64: return "float64";
  }
  return "unknown";
}

// "60000x28x28"
static const char *dims_str(const int64_t *dims, int ndim, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ndim && len < n; i++)
    len += snprintf(buf + len, n - len, i ? "x%lld" : "%lld", (long long)dims[i]);
  return buf;
}

// Where an IDX file's bytes come from: a file or a buffer in memory, plain
// or gzip (told apart by gzip's magic bytes 1f 8b). gzip data is inflated
// as it is read, so that the reader allocates no more than the data that
// actually arrives; concatenated gzip members are read one after another,
// as gzip -d does, and any other bytes after the last one are refused.
typedef struct IdxIn {
  const char *path;            // for messages
  FILE *fp;                    // the file, or NULL for bytes in memory
  const unsigned char *mem;    // the bytes in memory (fp NULL)
  size_t memlen, mempos;
  int64_t size;                // the file's size in bytes
  bool gzip;                   // the data is gzip-compressed
#ifndef NNC_NO_ZLIB
  z_stream zs;                 // gzip: the inflater; next_in points into zbuf or mem
#endif
  unsigned char *zbuf;         // gzip from a file: [IDX_ZBUF] bytes of compressed input
  int64_t zread;               // gzip: compressed bytes taken from the source so far
  bool raw_eof;                // the source has no bytes left to give
  bool done;                   // gzip: the last member ended where the input did
  char *err;
  size_t errsz;
} IdxIn;

#define IDX_ZBUF (1 << 18)

// Up to n raw bytes from the source; -1 on a read error (reported).
static int64_t idx_raw(IdxIn *in, void *dst, size_t n) {
  if (!in->fp) {
    size_t k = in->memlen - in->mempos < n ? in->memlen - in->mempos : n;
    if (k)
      memcpy(dst, in->mem + in->mempos, k);
    in->mempos += k;
    in->raw_eof = in->mempos == in->memlen;
    return (int64_t)k;
  }
  size_t k = fread(dst, 1, n, in->fp);
  if (k < n && ferror(in->fp)) {
    errorf(in->err, in->errsz, "%s: read error: %s", in->path, strerror(errno));
    return -1;
  }
  in->raw_eof |= k < n;
  return (int64_t)k;
}

#ifndef NNC_NO_ZLIB
// Makes at least want bytes of compressed input available unless the
// source ends first; false on a read error.
static bool idx_fill(IdxIn *in, uInt want) {
  if (!in->fp || in->zs.avail_in >= want || in->raw_eof)
    return true;
  memmove(in->zbuf, in->zs.next_in, in->zs.avail_in);
  int64_t k = idx_raw(in, in->zbuf + in->zs.avail_in, IDX_ZBUF - in->zs.avail_in);
  if (k < 0)
    return false;
  in->zs.next_in = in->zbuf;
  in->zs.avail_in += (uInt)k;
  in->zread += k;
  return true;
}

static bool idx_gz_error(IdxIn *in, int ret) {
  if (ret == Z_MEM_ERROR)
    nnc_fatal("%s: out of memory while decompressing", in->path);
  errorf(in->err, in->errsz, "%s: corrupt gzip data: %s\n"
            "---> HINT: check the file with `gzip -t %s`, or fetch it again", in->path,
            ret == Z_NEED_DICT ? "it needs a preset dictionary" : in->zs.msg ? in->zs.msg : "unknown error",
            in->path);
  return false;
}

// After a gzip member ends: the input must end too, or another member
// begin. Sets in->done at the end.
static bool idx_next_member(IdxIn *in) {
  if (!idx_fill(in, 2))
    return false;
  if (in->zs.avail_in == 0) {
    in->done = true;
    return true;
  }
  if (in->zs.avail_in >= 2 && in->zs.next_in[0] == 0x1f && in->zs.next_in[1] == 0x8b) {
    inflateReset(&in->zs);
    return true;
  }
  int64_t extra = in->size - (in->zread - in->zs.avail_in);
  errorf(in->err, in->errsz, "%s: has %lld bytes of trailing data after the end of its gzip data\n"
            "---> HINT: the file is damaged or something was appended to it; `gzip -t %s` "
            "shows the same", in->path, (long long)extra, in->path);
  return false;
}

// Up to n bytes of gzip data, decompressed: fewer only where the data
// ends. -1 on an error (reported).
static int64_t idx_read_gz(IdxIn *in, void *dst, int64_t n) {
  int64_t got = 0;
  while (got < n && !in->done) {
    if (!idx_fill(in, 1))
      return -1;
    int64_t chunk = n - got > (1 << 30) ? (1 << 30) : n - got;
    in->zs.next_out = (unsigned char *)dst + got;
    in->zs.avail_out = (uInt)chunk;
    int ret = inflate(&in->zs, Z_NO_FLUSH);
    got += chunk - in->zs.avail_out;
    if (ret == Z_STREAM_END) {
      if (!idx_next_member(in))
        return -1;
    } else if (ret == Z_BUF_ERROR && in->zs.avail_in == 0 && in->raw_eof) {
      errorf(in->err, in->errsz, "%s: is truncated: the gzip data ends early\n"
                "---> HINT: the download was probably cut off; fetch the file again", in->path);
      return -1;
    } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
      return idx_gz_error(in, ret), -1;
    }
  }
  return got;
}
#endif

// Up to n bytes of (decompressed) data: fewer only where the data ends.
// -1 on an error (reported).
static int64_t idx_read(IdxIn *in, void *dst, int64_t n) {
#ifndef NNC_NO_ZLIB
  if (in->gzip)
    return idx_read_gz(in, dst, n);
#endif
  int64_t got = 0;
  while (got < n && !in->raw_eof) {
    int64_t k = idx_raw(in, (char *)dst + got, (size_t)(n - got));
    if (k < 0)
      return -1;
    got += k;
  }
  return got;
}

// Opens the source: looks at the first two bytes for gzip's magic.
static bool idx_open(IdxIn *in) {
  unsigned char m[2] = {0, 0};
  int64_t k;
  if (in->fp) {
    k = idx_raw(in, m, 2);
    if (k < 0)
      return false;
    rewind(in->fp);
    in->raw_eof = false;
  } else {
    k = in->memlen < 2 ? (int64_t)in->memlen : 2;
    if (k)
      memcpy(m, in->mem, (size_t)k);
  }
  in->gzip = k == 2 && m[0] == 0x1f && m[1] == 0x8b;
  if (!in->gzip)
    return true;
#ifdef NNC_NO_ZLIB
  errorf(in->err, in->errsz, "%s: is gzip-compressed, and this runtime library was built without zlib, so it "
            "cannot read gzip-compressed files\n"
            "---> HINT: rebuild it with zlib (zlib1g-dev for the target), or decompress the file first "
            "(`gunzip -k %s`)", in->path, in->path);
  return false;
#else
  if (inflateInit2(&in->zs, 15 + 16) != Z_OK)   // 15 + 16: a gzip wrapper, nothing else
    nnc_fatal("zlib: inflateInit2 failed");
  if (in->fp) {
    in->zbuf = xmalloc(IDX_ZBUF);
    in->zs.next_in = in->zbuf;
  } else {
    in->zs.next_in = (unsigned char *)in->mem;   // zlib only reads it
    in->zs.avail_in = (uInt)in->memlen;   // data_idx_decode keeps memlen below 4 GiB
    in->zread = (int64_t)in->memlen;
    in->raw_eof = true;
  }
  return true;
#endif
}

static void idx_close(IdxIn *in) {
#ifndef NNC_NO_ZLIB
  if (in->gzip)
    inflateEnd(&in->zs);
#endif
  free(in->zbuf);
  if (in->fp)
    fclose(in->fp);
}
// Converts count big-endian elements of esize bytes to host order in place.
static void be_to_host(unsigned char *p, int64_t count, int esize) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (esize == 1)
    return;
  for (int64_t i = 0; i < count; i++, p += esize)
    for (int a = 0, b = esize - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
#else
  (void)p, (void)count, (void)esize;
#endif
}

// Checks the magic number: 0, 0, a known type code, 1..RT_IDX_MAX_DIMS.
static bool idx_check_magic(const unsigned char *m, const char *path, IdxFile *idx, char *err,
                            size_t errsz) {
  if (m[0] != 0 || m[1] != 0) {
    errorf(err, errsz, "%s: not an IDX file: it starts with bytes 0x%02x 0x%02x, expected 0x00 0x00\n"
              "---> HINT: IDX files (MNIST's train-images-idx3-ubyte, ...) begin 00 00 TYPE NDIM; "
              "for a CSV file use a .csv name", path, m[0], m[1]);
    return false;
  }
  if (!idx_elem_size(m[2])) {
    errorf(err, errsz, "%s: unknown IDX element type code 0x%02x\n"
              "---> HINT: known codes are 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int32, "
              "0x0D float32 and 0x0E float64", path, m[2]);
    return false;
  }
  if (m[3] < 1 || m[3] > RT_IDX_MAX_DIMS) {
    errorf(err, errsz, "%s: IDX header gives %d dimensions; expected 1 to %d",
              path, m[3], RT_IDX_MAX_DIMS);
    return false;
  }
  idx->type = m[2];
  idx->ndim = m[3];
  return true;
}

// Reads the magic number and the dimensions, and checks that the data they
// describe is not absurdly large.
static bool idx_read_header(IdxIn *in, IdxFile *idx) {
  const char *path = in->path;
  char *err = in->err;
  size_t errsz = in->errsz;
  unsigned char m[4 + 4 * RT_IDX_MAX_DIMS];
  int64_t got = idx_read(in, m, 4);
  if (got < 0)
    return false;
  if (got < 4) {
    errorf(err, errsz, "%s: is %s: %lld bytes, too short for an IDX header (at least 8)",
              path, got ? "truncated" : "empty", (long long)got);
    return false;
  }
  if (!idx_check_magic(m, path, idx, err, errsz))
    return false;
  int need = 4 * idx->ndim;
  got = idx_read(in, m + 4, need);
  if (got < 0)
    return false;
  if (got < need) {
    errorf(err, errsz, "%s: is truncated inside its header: %d dimensions need a %d-byte header, "
              "found %lld bytes", path, idx->ndim, 4 + need, (long long)(4 + got));
    return false;
  }
  int64_t bytes = idx_elem_size(idx->type);
  idx->count = 1;
  for (int i = 0; i < idx->ndim; i++) {
    const unsigned char *d = m + 4 + 4 * i;
    idx->dims[i] = (int64_t)d[0] << 24 | (int64_t)d[1] << 16 | (int64_t)d[2] << 8 | d[3];
    if (idx->dims[i] && bytes > RT_IDX_MAX_BYTES / idx->dims[i]) {
      char buf[160];
      errorf(err, errsz, "%s: IDX header describes %s %s elements, more than the limit of %lld bytes\n"
                "---> HINT: the header is probably corrupt", path,
                dims_str(idx->dims, i + 1, buf, sizeof buf), idx_type_name(idx->type),
                (long long)RT_IDX_MAX_BYTES);
      return false;
    }
    bytes *= idx->dims[i];
    idx->count *= idx->dims[i];
  }
  return true;
}

// The most decompressed bytes counted for the message about trailing data.
#define IDX_MAX_COUNTED ((int64_t)1 << 26)

// Counts the (decompressed) bytes left, up to IDX_MAX_COUNTED; -1 on an error.
static int64_t idx_count_rest(IdxIn *in) {
  char *scratch = xmalloc(65536);
  int64_t extra = 0, r;
  while (extra < IDX_MAX_COUNTED && (r = idx_read(in, scratch, 65536)) > 0)
    extra += r;
  free(scratch);
  return r < 0 ? -1 : extra;
}

// Reports data that is shorter or longer than the header says; found is
// the data's size (after decompression), at least found when more is true.
static bool idx_size_error(IdxIn *in, const IdxFile *idx, int64_t found, bool more) {
  int64_t nbytes = idx->count * idx_elem_size(idx->type), hdr = 4 + 4 * idx->ndim;
  char dims[160];
  dims_str(idx->dims, idx->ndim, dims, sizeof dims);
  const char *how = in->gzip ? " after decompression" : "";
  if (found < nbytes)
    errorf(in->err, in->errsz, "%s: is truncated: expected %lld bytes%s (a %lld-byte header and %s %s "
              "elements), found %lld\n---> HINT: the file was probably cut off; fetch it again",
              in->path, (long long)(hdr + nbytes), how, (long long)hdr, dims, idx_type_name(idx->type),
              (long long)(hdr + found));
  else
    errorf(in->err, in->errsz, "%s: has %s%lld bytes of trailing data: expected %lld bytes%s (a %lld-byte "
              "header and %s %s elements), found %s%lld\n---> HINT: the header's sizes do not match "
              "the data; is the file corrupt?", in->path, more ? "more than " : "",
              (long long)(found - nbytes), (long long)(hdr + nbytes), how, (long long)hdr, dims,
              idx_type_name(idx->type), more ? "more than " : "", (long long)(hdr + found));
  return false;
}

// Reads the elements and checks that nothing is missing or left over. A
// plain file's size is checked before anything is allocated; gzip data
// goes into a buffer that grows as it arrives (at most twice its size).
static bool idx_read_data(IdxIn *in, IdxFile *idx) {
  int esize = idx_elem_size(idx->type);
  int64_t nbytes = idx->count * esize, hdr = 4 + 4 * idx->ndim;
  idx->gzip = in->gzip;
  if (!in->gzip && in->size - hdr != nbytes)
    return idx_size_error(in, idx, in->size - hdr, false);
  int64_t cap = in->gzip && nbytes > (1 << 20) ? (1 << 20) : nbytes, got = 0;
  idx->data = xmalloc((size_t)cap);
  for (;;) {
    int64_t r = idx_read(in, (char *)idx->data + got, cap - got);
    if (r < 0)
      return false;
    got += r;
    if (got < cap || cap == nbytes)
      break;
    cap = cap > nbytes / 2 ? nbytes : 2 * cap;
    idx->data = xrealloc(idx->data, (size_t)cap);
  }
  if (got < nbytes)
    return idx_size_error(in, idx, got, false);
  int64_t extra = idx_count_rest(in);
  if (extra < 0)
    return false;
  if (extra > 0)
    return idx_size_error(in, idx, nbytes + extra, extra >= IDX_MAX_COUNTED);
  be_to_host(idx->data, idx->count, esize);
  return true;
}

// Reads an IDX file from in, which it closes.
static bool idx_read_from(IdxIn *in, IdxFile *out) {
  bool ok = idx_open(in) && idx_read_header(in, out) && idx_read_data(in, out);
  idx_close(in);
  if (!ok)
    data_idx_free(out);
  return ok;
}

bool data_idx_read(const char *path, IdxFile *out, char *err, size_t errsz) {
  *out = (IdxFile){0};
  IdxIn in = {.path = path, .err = err, .errsz = errsz};
  in.fp = fopen(path, "rb");
  struct stat st;
  const char *why = !in.fp ? strerror(errno) : fstat(fileno(in.fp), &st) ? strerror(errno)
                    : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
  if (why) {
    errorf(err, errsz, "%s: cannot open: %s", path, why);
    if (in.fp)
      fclose(in.fp);
    return false;
  }
  in.size = (int64_t)st.st_size;
  return idx_read_from(&in, out);
}

bool data_idx_decode(const unsigned char *buf, size_t len, const char *name, IdxFile *out, char *err,
                   size_t errsz) {
  *out = (IdxFile){0};
  if (len > UINT32_MAX) {
    errorf(err, errsz, "%s: %zu bytes are too many to decode from memory", name, len);
    return false;
  }
  IdxIn in = {.path = name, .mem = buf, .memlen = len, .size = (int64_t)len, .err = err, .errsz = errsz};
  return idx_read_from(&in, out);
}

void data_idx_free(IdxFile *idx) {
  free(idx->data);
  *idx = (IdxFile){0};
}

// Element i as a double.
static double idx_value(const IdxFile *idx, int64_t i) {
  switch (idx->type) {
  case RT_IDX_U8: return ((const uint8_t *)idx->data)[i];
  case RT_IDX_I8: return ((const int8_t *)idx->data)[i];
  case RT_IDX_I16: return ((const int16_t *)idx->data)[i];
  case RT_IDX_I32: return ((const int32_t *)idx->data)[i];
  case RT_IDX_F32: return ((const float *)idx->data)[i];
  case RT_IDX_F64: return ((const double *)idx->data)[i];
  }
  unreachable();
}

// Fills ds's samples from an images IDX: the first dimension counts them.
static bool idx_to_images(const IdxFile *im, const char *path, Dataset *ds, char *err, size_t errsz) {
  if (im->ndim < 2 || im->ndim - 1 > RT_MAX_SAMPLE_DIMS) {
    errorf(err, errsz, "%s: images must have 2 to %d dimensions (samples first), this file has %d\n"
              "---> HINT: is this a labels file? images files are named like train-images-idx3-ubyte",
              path, RT_MAX_SAMPLE_DIMS + 1, im->ndim);
    return false;
  }
  if (im->dims[0] == 0 || im->count == 0) {
    errorf(err, errsz, "%s: holds no samples", path);
    return false;
  }
  ds->n = im->dims[0];
  ds->ndim = im->ndim - 1;
  memcpy(ds->shape, im->dims + 1, sizeof(int64_t) * ds->ndim);
  ds->dim = im->count / ds->n;
  if (im->type == RT_IDX_U8) {   // kept as bytes
    ds->x8 = xmalloc((size_t)im->count);
    memcpy(ds->x8, im->data, (size_t)im->count);
  } else {
    ds->x = xmalloc((size_t)im->count * sizeof(float));
    for (int64_t i = 0; i < im->count; i++) {
      double v = idx_value(im, i);
      ds->x[i] = (float)v;
      if (!isfinite(ds->x[i])) {
        errorf(err, errsz, "%s: element %lld (sample %lld) is %g; image values must be finite "
                  "numbers%s", path, (long long)i, (long long)(i / ds->dim), v,
                  isfinite(v) ? " within float range" : "");
        return false;
      }
    }
  }
  return true;
}

// Checks labels against [0, nclasses), or finds nclasses when it is <= 0.
// Messages name the first bad label's index and value.
static bool check_labels(const int32_t *y, int64_t n, int *nclasses, const char *path, char *err,
                         size_t errsz) {
  int32_t max = -1;
  for (int64_t i = 0; i < n; i++) {
    if (y[i] < 0 || (*nclasses > 0 && y[i] >= *nclasses)) {
      if (*nclasses > 0)
        errorf(err, errsz, "%s: label at index %lld is %d, outside [0, %d)\n"
                  "---> HINT: the model has %d classes; is this the labels file of another data set?",
                  path, (long long)i, y[i], *nclasses, *nclasses);
      else
        errorf(err, errsz, "%s: label at index %lld is %d; labels must not be negative",
                  path, (long long)i, y[i]);
      return false;
    }
    if (y[i] > max)
      max = y[i];
  }
  if (*nclasses <= 0 && max >= RT_MAX_CLASSES) {
    errorf(err, errsz, "%s: the largest label is %d; with no class count given, labels must lie "
              "below %d\n---> HINT: are these really class labels?", path, max, RT_MAX_CLASSES);
    return false;
  }
  if (*nclasses <= 0)
    *nclasses = max + 1;
  return true;
}

// Fills ds's labels from a one-dimensional integer IDX.
static bool idx_to_labels(const IdxFile *lb, const char *path, const char *images_path, int nclasses,
                          Dataset *ds, char *err, size_t errsz) {
  if (lb->type == RT_IDX_F32 || lb->type == RT_IDX_F64) {
    errorf(err, errsz, "%s: labels must be integers (ubyte or int32), this file holds %s\n"
              "---> HINT: is this an images file? labels files are named like train-labels-idx1-ubyte",
              path, idx_type_name(lb->type));
    return false;
  }
  if (lb->ndim != 1) {
    errorf(err, errsz, "%s: labels must have 1 dimension, this file has %d\n"
              "---> HINT: is this an images file? labels files are named like train-labels-idx1-ubyte",
              path, lb->ndim);
    return false;
  }
  if (lb->count != ds->n) {
    errorf(err, errsz, "%s: has %lld labels but %s has %lld images\n"
              "---> HINT: the two files must come from the same split (train-* with train-*, t10k-* with t10k-*)",
              path, (long long)lb->count, images_path, (long long)ds->n);
    return false;
  }
  ds->y = xmalloc((size_t)ds->n * sizeof(int32_t));
  for (int64_t i = 0; i < ds->n; i++) {
    double v = idx_value(lb, i);
    ds->y[i] = (int32_t)v;
  }
  ds->nclasses = nclasses;
  return check_labels(ds->y, ds->n, &ds->nclasses, path, err, errsz);
}

bool data_load_idx(const char *images_path, const char *labels_path, int nclasses, Dataset *out,
                 char *err, size_t errsz) {
  *out = (Dataset){0};
  IdxFile idx;
  if (!data_idx_read(images_path, &idx, err, errsz))
    return false;
  bool ok = idx_to_images(&idx, images_path, out, err, errsz);
  data_idx_free(&idx);
  if (ok && labels_path) {
    ok = data_idx_read(labels_path, &idx, err, errsz) &&
         idx_to_labels(&idx, labels_path, images_path, nclasses, out, err, errsz);
    data_idx_free(&idx);
  }
  if (!ok) {
    data_free(out);
    return false;
  }
  StrBuf src = {0};
  sb_printf(&src, labels_path ? "%s + %s" : "%s", images_path, labels_path);
  out->source = src.data;
  return true;
}

//
// The MNIST directory layout
//

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Finds DIR/PREFIX-WHAT-IDXN-ubyte or one of its variants; tried gets the
// names it looked for.
static bool find_idx(const char *dir, const char *prefix, const char *what, const char *idxn,
                     StrBuf *found, StrBuf *tried) {
  sb_free(tried);
  for (int i = 0; i < 4; i++) {   // -idx3-ubyte, -idx3-ubyte.gz, .idx3-ubyte, .idx3-ubyte.gz
    sb_free(found);
    sb_printf(found, "%s/%s-%s%c%s-ubyte%s", dir, prefix, what, i < 2 ? '-' : '.', idxn, i % 2 ? ".gz" : "");
    if (is_file(found->data))
      return true;
    sb_printf(tried, "%s%s", tried->len ? ", " : "", strrchr(found->data, '/') + 1);
  }
  return false;
}

// Loads split of dir: its images, and its labels unless images_only.
static bool load_idx_dir(const char *dir, const char *split, int nclasses, bool images_only, Dataset *out,
                         char *err, size_t errsz) {
  *out = (Dataset){0};
  const char *prefix = !strcmp(split, "train") ? "train"
                       : !strcmp(split, "test") || !strcmp(split, "t10k") ? "t10k" : NULL;
  if (!prefix) {
    errorf(err, errsz, "%s: unknown split '%s'; expected train or test", dir, split);
    return false;
  }
  struct stat st;
  const char *why = stat(dir, &st) != 0 ? strerror(errno) : !S_ISDIR(st.st_mode) ? "not a directory" : NULL;
  if (why) {
    errorf(err, errsz, "%s: %s\n---> HINT: give a directory in the MNIST layout, such as %s "
              "(apt install dataset-fashion-mnist)", dir, why, RT_FASHION_MNIST_DIR);
    return false;
  }
  StrBuf images = {0}, labels = {0}, tried = {0};
  bool ok = find_idx(dir, prefix, "images", "idx3", &images, &tried) &&
            (images_only || find_idx(dir, prefix, "labels", "idx1", &labels, &tried));
  if (!ok)
    errorf(err, errsz, "%s: no %s data found; looked for %s\n---> HINT: the directory should "
              "hold the MNIST files, as %s does (apt install dataset-fashion-mnist)",
              dir, split, tried.data, RT_FASHION_MNIST_DIR);
  else
    ok = data_load_idx(images.data, images_only ? NULL : labels.data, nclasses, out, err, errsz);
  sb_free(&images);
  sb_free(&labels);
  sb_free(&tried);
  return ok;
}

bool data_load_idx_dir(const char *dir, const char *split, int nclasses, Dataset *out,
                     char *err, size_t errsz) {
  return load_idx_dir(dir, split, nclasses, false, out, err, errsz);
}

bool data_load_idx_dir_images(const char *dir, const char *split, Dataset *out, char *err, size_t errsz) {
  return load_idx_dir(dir, split, 0, true, out, err, errsz);
}

//
// CSV files
//
// The Kaggle digit-recognizer layout: a header line, then one sample per
// line, with or without a label first. The whole file is read at once and
// parsed by a pointer walk; fields are almost all one- to three-digit
// integers, which take a fast path. A UTF-8 byte order mark before the
// header is skipped (spreadsheets write one); lines may end in LF, CRLF or
// a lone CR (old Mac files); blank lines are skipped.
//

// A CSV file being parsed.
typedef struct Csv {
  const char *path;
  const char *header;   // the header line, for naming columns in messages
  const char *p;        // the next character
  const char *end;      // one past the last character
  int64_t line;         // line number of p, from 1
  int nfields;          // fields per line, as in the header
  bool labeled;         // the first field is the label
  int nclasses;         // as given by the caller
  char *err;
  size_t errsz;
} Csv;

#define CSV_MAX_FIELDS (1 << 24)   // columns in a header at most

// Whether p is at the end of a line: LF, CRLF, a lone CR, or the end.
static bool csv_eol(const Csv *c, const char *p) {
  return p == c->end || *p == '\n' || *p == '\r';
}

// Moves c->p past the line end there (CRLF counts as one).
static void csv_skip_eol(Csv *c) {
  if (c->p < c->end && *c->p == '\r') {
    c->p++;
    if (c->p < c->end && *c->p == '\n')
      c->p++;
  } else if (c->p < c->end && *c->p == '\n') {
    c->p++;
  }
}

// Skips blank lines, counting them; false at the end of the file.
static bool csv_next_row(Csv *c) {
  while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) {
    csv_skip_eol(c);
    c->line++;
  }
  return c->p < c->end;
}

// Skips a UTF-8 byte order mark at the start of the file.
static void csv_skip_bom(Csv *c) {
  if (c->end - c->p >= 3 && !memcmp(c->p, "\xEF\xBB\xBF", 3))
    c->p += 3;
}

// Counts the fields of the header line at c->p into c->nfields; refuses
// absurdly many.
static const char *csv_field_end(const Csv *c, const char *p);

static bool csv_count_fields(Csv *c) {
  int64_t n = 1;
  for (const char *q = csv_field_end(c, c->p); !csv_eol(c, q); q = csv_field_end(c, q + 1))
    n++;
  if (n > CSV_MAX_FIELDS) {
    errorf(c->err, c->errsz, "%s: line 1: the header has %lld columns, more than the limit of %d",
              c->path, (long long)n, CSV_MAX_FIELDS);
    return false;
  }
  c->nfields = (int)n;
  return true;
}

// The end of the field at p: the next comma or line end. A field that
// starts with a double quote runs to its closing quote ("" inside stands
// for one), so that a text column may hold commas ("Smith, J."); a field
// does not run across lines.
static const char *csv_field_end(const Csv *c, const char *p) {
  if (p < c->end && *p == '"') {
    for (p++; p < c->end && !csv_eol(c, p); p++) {
      if (*p != '"')
        continue;
      p++;
      if (p == c->end || *p != '"')   // the closing quote; "" stands for one
        break;
    }
  }
  while (p < c->end && *p != ',' && !csv_eol(c, p))
    p++;
  return p;
}

// Whether the field at p opens a double quote that its line does not close
// (a text field holding a line break, which this reader does not join).
static bool csv_unclosed(const Csv *c, const char *p) {
  if (p >= c->end || *p != '"')
    return false;
  for (p++; p < c->end && !csv_eol(c, p); p++) {
    if (*p != '"')
      continue;
    if (p + 1 == c->end || p[1] != '"')
      return false;
    p++;
  }
  return true;
}

static const char *csv_colname(const Csv *c, int f, char *buf, size_t n);

// Reports field f at c->p if its quote is not closed on its line.
static bool csv_closed(Csv *c, int f) {
  if (!csv_unclosed(c, c->p))
    return true;
  char name[64];
  errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): the double quote that opens the field is not closed "
            "on its line\n---> HINT: a quoted field must end on its line: remove the line breaks inside it, or "
            "close the quote", c->path, (long long)c->line, f + 1, csv_colname(c, f, name, sizeof name));
  return false;
}

// A field's text without the blanks and the double quotes around it
// (" 1.5", "\"1.5\"" and "a1 " are 1.5, 1.5 and a1), as a header written
// by hand ("a0, a1") or a quoting tool has them.
static void csv_unquote(const char **s, const char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t'))
    (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
    (*e)--;
  if (*e - *s >= 2 && **s == '"' && (*e)[-1] == '"') {
    (*s)++;
    (*e)--;
  }
}

// The name of field f (from 0) in the header, into buf.
static const char *csv_colname(const Csv *c, int f, char *buf, size_t n) {
  const char *p = c->header;
  for (int i = 0; i < f; i++)
    p = csv_field_end(c, p) + 1;
  const char *e = csv_field_end(c, p);
  csv_unquote(&p, &e);
  snprintf(buf, n, "%.*s", (int)(e - p), p);
  return buf;
}

// Parses field f at c->p into *v, leaving c->p at the separator after it.
// Values are stored as floats, so they must lie within float range.
static bool csv_number(Csv *c, int f, double *v) {
  if (!csv_closed(c, f))
    return false;
  const char *s = c->p, *e = csv_field_end(c, s), *end = e;
  csv_unquote(&s, &e);
  int x = 0, i = 0;
  while (s + i < e && i < 9 && s[i] >= '0' && s[i] <= '9')
    x = x * 10 + (s[i++] - '0');
  if (i > 0 && s + i == e) {
    *v = x;
    c->p = end;
    return true;
  }
  bool ok = e > s && e - s < 64;
  for (const char *q = s; ok && q < e; q++)
    ok = *q && strchr("0123456789+-.eE", *q) != NULL;
  char buf[64], *stop = NULL;
  if (ok) {
    memcpy(buf, s, e - s);
    buf[e - s] = 0;
    *v = strtod(buf, &stop);
    ok = *stop == 0 && isfinite(*v);
  }
  bool too_big = ok && fabs(*v) > FLT_MAX;
  if (!ok || too_big) {
    char name[64];
    csv_colname(c, f, name, sizeof name);
    if (e == s)
      errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): the field is empty; expected a number",
                c->path, (long long)c->line, f + 1, name);
    else if (too_big)
      errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): %.*s is beyond the range of a 32-bit "
                "float (about 3.4e38)", c->path, (long long)c->line, f + 1, name, (int)(e - s), s);
    else if (e - s >= 64)
      errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): '%.40s...' is too long for a number "
                "(%lld characters)", c->path, (long long)c->line, f + 1, name, s, (long long)(e - s));
    else if (memchr(s, 0, e - s > 0 ? (size_t)(e - s) : 0))
      errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): the field holds a NUL byte; expected "
                "a number\n---> HINT: the file holds binary data; is it really a CSV text file?",
                c->path, (long long)c->line, f + 1, name);
    else
      errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): '%.*s' is not a number",
                c->path, (long long)c->line, f + 1, name, (int)(e - s > 40 ? 40 : e - s), s);
    return false;
  }
  c->p = end;
  return true;
}

// Reports a line with the wrong number of fields; found counts those
// before c->p, and the rest of the line is counted here.
static bool csv_bad_count(Csv *c, int64_t found) {
  for (c->p = csv_field_end(c, c->p); !csv_eol(c, c->p); c->p = csv_field_end(c, c->p + 1))
    found++;
  errorf(c->err, c->errsz, "%s: line %lld: expected %d fields (as in the header), found %lld",
            c->path, (long long)c->line, c->nfields, (long long)found);
  return false;
}

// Checks a pixel's or a label's value; a label is stored in *y.
static bool csv_check(Csv *c, int f, double v, int32_t *y) {
  bool bad_pixel = !y && (v < 0 || v > 255);
  bool bad_label = y && (v != floor(v) || v < 0 || v > INT32_MAX);
  bool out_of_range = y && !bad_label && c->nclasses > 0 && v >= c->nclasses;
  if (!bad_pixel && !bad_label && !out_of_range) {
    if (y)
      *y = (int32_t)v;
    return true;
  }
  char name[64], what[160];
  if (bad_pixel)
    snprintf(what, sizeof what, "pixel value %g is outside 0..255", v);
  else if (bad_label)
    snprintf(what, sizeof what, "label %g is not a class number (0, 1, 2, ...)", v);
  else
    snprintf(what, sizeof what, "label %g is outside [0, %d)\n---> HINT: the model has %d classes",
             v, c->nclasses, c->nclasses);
  errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): %s", c->path, (long long)c->line,
            f + 1, csv_colname(c, f, name, sizeof name), what);
  return false;
}

// Parses one data line into x [dim] and, when labeled, *y.
static bool csv_row(Csv *c, float *x, int32_t *y) {
  for (int f = 0; f < c->nfields; f++) {
    if (f > 0) {
      if (*c->p != ',')
        return csv_bad_count(c, f);
      c->p++;
    }
    double v;
    bool is_label = c->labeled && f == 0;
    if (!csv_number(c, f, &v) || !csv_check(c, f, v, is_label ? y : NULL))
      return false;
    if (!is_label)
      *x++ = (float)(v / 255.0);
  }
  if (!csv_eol(c, c->p))
    return csv_bad_count(c, c->nfields);
  csv_skip_eol(c);
  return true;
}

// Reads the header line: its first field says whether labels come first.
static bool csv_header(Csv *c) {
  csv_skip_bom(c);
  c->header = c->p;
  const char *e = csv_field_end(c, c->p);
  size_t len = e - c->p;
  c->labeled = len == 5 && !memcmp(c->p, "label", 5);
  if (!c->labeled && !(len == 6 && !memcmp(c->p, "pixel0", 6))) {
    bool numeric = len > 0 && c->p[0] >= '0' && c->p[0] <= '9';
    errorf(c->err, c->errsz, "%s: line 1: the header must start with 'label' (training data) or "
              "'pixel0' (unlabeled data), found '%.*s'\n---> HINT: %s", c->path,
              (int)(len > 40 ? 40 : len), c->p, numeric ? "the file seems to have no header line; "
              "add one such as label,pixel0,...,pixel783" : "use the Kaggle digit-recognizer layout");
    return false;
  }
  if (!csv_count_fields(c))
    return false;
  if (c->labeled && c->nfields == 1) {
    errorf(c->err, c->errsz, "%s: line 1: the header has a label column but no pixel columns", c->path);
    return false;
  }
  while (!csv_eol(c, c->p))
    c->p++;
  csv_skip_eol(c);
  c->line = 2;
  return true;
}

// An upper bound on the data lines left, for sizing the arrays before
// parsing: the line ends plus one, and no more than the bytes left hold. A
// row that parses takes at least row_bytes bytes with its line end (2 for
// each number: a digit and a comma or line end; 1 for a column that is
// skipped unread and may be empty), so k rows need k row_bytes - 1 bytes;
// one more row may be started and fail. Blank lines thus cost nothing, and
// the arrays are never larger than the file justifies.
static int64_t csv_count_lines(const Csv *c, int64_t row_bytes) {
  int64_t n = 1;
  for (const char *p = c->p; (p = memchr(p, '\n', c->end - p)); p++)
    n++;
  for (const char *p = c->p; (p = memchr(p, '\r', c->end - p)); p++)
    n++;
  int64_t by_size = (c->end - c->p + 1) / row_bytes + 1;
  return n < by_size ? n : by_size;
}

// Parses every data line, skipping blank ones.
static bool csv_rows(Csv *c, Dataset *ds) {
  int64_t cap = csv_count_lines(c, 2 * (int64_t)c->nfields);
  ds->x = xmalloc((size_t)(cap * ds->dim) * sizeof(float));
  ds->y = c->labeled ? xmalloc((size_t)cap * sizeof(int32_t)) : NULL;
  while (csv_next_row(c)) {
    if (ds->n == cap)
      unreachable();   // csv_count_lines bounds every row that can parse
    if (!csv_row(c, ds->x + ds->n * ds->dim, ds->y ? ds->y + ds->n : NULL))
      return false;
    ds->n++;
    c->line++;
  }
  if (ds->n == 0) {
    errorf(c->err, c->errsz, "%s: has a header line but no data lines", c->path);
    return false;
  }
  return true;
}

// One sample's shape: square when the pixel count is a square number.
static void csv_shape(Dataset *ds) {
  int64_t s = (int64_t)llround(sqrt((double)ds->dim));
  if (s > 1 && s * s == ds->dim) {
    ds->ndim = 2;
    ds->shape[0] = ds->shape[1] = s;
  } else {
    ds->ndim = 1;
    ds->shape[0] = ds->dim;
  }
}

bool data_load_csv(const char *path, int nclasses, Dataset *out, char *err, size_t errsz) {
  *out = (Dataset){0};
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    errorf(err, errsz, "%s: cannot read: %s", path, strerror(errno));
    return false;
  }
  Csv c = {.path = path, .p = text, .end = text + len, .line = 1, .nclasses = nclasses,
           .err = err, .errsz = errsz};
  size_t blank = strspn(text, " \t\r\n");
  bool ok = blank < len;
  if (!ok)
    errorf(err, errsz, "%s: is empty; expected a header line such as label,pixel0,...,pixel783", path);
  ok = ok && csv_header(&c);
  if (ok) {
    out->dim = c.nfields - c.labeled;
    ok = csv_rows(&c, out);
  }
  free(text);
  if (ok && c.labeled) {
    out->nclasses = nclasses;
    ok = check_labels(out->y, out->n, &out->nclasses, path, err, errsz);
  }
  if (!ok) {
    data_free(out);
    return false;
  }
  csv_shape(out);
  out->source = xstrdup(path);
  return true;
}

//
// Tables named by column
//
// A header names each column after a model input or the target: NAME for
// one value per sample, NAMEk for value k of several. A row of the data set
// is every input's values, one input after another in the order given,
// whatever the columns' order; other columns are skipped unread.
//

// The column groups of a table: the inputs, then the target (if any).
typedef struct Table {
  const Columns **group;               // [ngroups] the inputs, then the target
  int64_t *at;                           // [ngroups] where group g's values start in the row
  int ngroups;
  bool target;                           // the last group is the target
  int64_t in_dim;                        // floats per sample: all the inputs' values
  int64_t need;                          // columns the header must name: in_dim plus the target's
} Table;

// The value k of group g that column col names, or -1: col is "NAME" for a
// group of one value, or "NAMEk" with k in [0, dim).
static int64_t column_value(const char *col, size_t len, const Columns *g) {
  size_t n = strlen(g->name);
  if (len < n || memcmp(col, g->name, n))
    return -1;
  if (len == n)
    return g->dim == 1 ? 0 : -1;
  int64_t v = 0;
  size_t i = n;
  for (; i < len && i - n < 12 && col[i] >= '0' && col[i] <= '9'; i++)
    v = v * 10 + (col[i] - '0');
  bool plain = col[n] != '0' || len == n + 1;   // "x01" is not x1
  return i == len && plain && v < g->dim ? v : -1;
}

// A header column: its text and position.
typedef struct Column {
  const char *s;
  size_t len;
  int f;
} Column;

static bool same_name(const Column *x, const Column *y) {
  return x->len == y->len && !memcmp(x->s, y->s, x->len);
}

// By name, then by position.
static int column_cmp(const void *a, const void *b) {
  const Column *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  if (c || x->len != y->len)
    return c ? c : x->len < y->len ? -1 : 1;
  return x->f - y->f;
}

// Refuses a header that names a column twice, naming the column whose
// first appearance comes first, and its first two positions.
static bool table_unique(Csv *c, const Column *cols) {
  Column *s = xmalloc(sizeof(Column) * c->nfields);
  memcpy(s, cols, sizeof(Column) * c->nfields);
  qsort(s, c->nfields, sizeof(Column), column_cmp);
  int dup = -1;   // in s: the first appearance of the repeated name
  for (int i = 0; i + 1 < c->nfields; i++)
    if (same_name(&s[i], &s[i + 1]) && (i == 0 || !same_name(&s[i - 1], &s[i])) && (dup < 0 || s[i].f < s[dup].f))
      dup = i;
  if (dup >= 0 && s[dup].len == 0)
    errorf(c->err, c->errsz, "%s: line 1: columns %d and %d have no name\n---> HINT: name every "
              "column of the header", c->path, s[dup].f + 1, s[dup + 1].f + 1);
  else if (dup >= 0)
    errorf(c->err, c->errsz, "%s: line 1: the column '%.*s' appears twice, as columns %d and %d\n"
              "---> HINT: name each column once", c->path, (int)(s[dup].len > 60 ? 60 : s[dup].len),
              s[dup].s, s[dup].f + 1, s[dup + 1].f + 1);
  free(s);
  return dup < 0;
}

// An example header for the hint: "a0,a1,a2,b,y" (long groups elided).
static void table_example(const Table *t, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = 0;
  for (int g = 0; g < t->ngroups && len < n; g++) {
    const Columns *c = t->group[g];
    const char *sep = g ? "," : "";
    if (c->dim == 1)
      len += snprintf(buf + len, n - len, "%s%s", sep, c->name);
    else if (c->dim <= 3)
      for (int64_t k = 0; k < c->dim && len < n; k++)
        len += snprintf(buf + len, n - len, "%s%s%lld", k ? "," : sep, c->name, (long long)k);
    else
      len += snprintf(buf + len, n - len, "%s%s0,...,%s%lld", sep, c->name, c->name, (long long)c->dim - 1);
  }
}

// The column that names value at of the row of all values, into buf.
static const char *table_column_name(const Table *t, int64_t at, char *buf, size_t n) {
  int g = 0;
  while (g + 1 < t->ngroups && at >= t->at[g + 1])
    g++;
  const Columns *c = t->group[g];
  if (c->dim == 1)
    snprintf(buf, n, "%s", c->name);
  else
    snprintf(buf, n, "%s%lld", c->name, (long long)(at - t->at[g]));
  return buf;
}

// Maps each header column to its place in the row of all values (slot[f],
// -1 for a column of no group); every value needs exactly one column.
static bool table_header(Csv *c, const Table *t, int64_t **slot) {
  c->header = c->p;
  if (!csv_count_fields(c))
    return false;
  Column *cols = xmalloc(sizeof(Column) * c->nfields);
  for (int f = 0; f < c->nfields; f++) {
    const char *s = c->p, *e = csv_field_end(c, s), *end = e;
    csv_unquote(&s, &e);
    cols[f] = (Column){s, (size_t)(e - s), f};
    c->p = end + (end < c->end && *end == ',');
  }
  bool ok = table_unique(c, cols);
  *slot = xmalloc(sizeof(int64_t) * c->nfields);
  int *seen = xcalloc((size_t)t->need, sizeof(int));   // seen[at]: 1 + the column of value at
  for (int f = 0; ok && f < c->nfields; f++) {
    (*slot)[f] = -1;
    int first = -1;
    for (int g = 0; ok && g < t->ngroups; g++) {
      int64_t k = column_value(cols[f].s, cols[f].len, t->group[g]);
      if (k < 0)
        continue;
      if (first >= 0) {
        errorf(c->err, c->errsz, "%s: line 1: the column '%.*s' could belong to '%s' or to '%s'\n"
                  "---> HINT: rename an input or the target so that no column name fits both", c->path,
                  (int)cols[f].len, cols[f].s, t->group[first]->name, t->group[g]->name);
        ok = false;
      }
      first = g;
      (*slot)[f] = t->at[g] + k;
    }
    int64_t at = (*slot)[f];
    if (ok && at >= 0 && seen[at]) {   // "y" and "y0" both name a scalar's value
      const Column *o = &cols[seen[at] - 1];
      errorf(c->err, c->errsz, "%s: line 1: the columns '%.*s' (column %d) and '%.*s' (column %d) name the "
                "same value\n---> HINT: keep one of them", c->path, (int)o->len, o->s, o->f + 1,
                (int)cols[f].len, cols[f].s, f + 1);
      ok = false;
    }
    if (at >= 0)
      seen[at] = f + 1;
  }
  const char *sep = NULL;   // a header of one column that another separator splits
  for (const char *q = c->header; c->nfields == 1 && !sep && !csv_eol(c, q); q++)
    sep = *q == ';' ? "semicolons" : *q == '\t' ? "tabs" : NULL;
  if (ok && sep && t->need > 1) {
    errorf(c->err, c->errsz, "%s: line 1: the header is one column, its fields separated by %s; nnc reads "
              "comma-separated values\n---> HINT: write the file with commas (pandas: df.to_csv(path, index=False))",
              c->path, sep);
    ok = false;
  }
  for (int64_t at = 0; ok && at < t->need; at++) {
    if (seen[at])
      continue;
    char name[300], example[200];
    table_example(t, example, sizeof example);
    errorf(c->err, c->errsz, "%s: line 1: no column '%s'\n---> HINT: the header names a column for "
              "each value of %s%s (for example %s)", c->path, table_column_name(t, at, name, sizeof name),
              t->ngroups - t->target > 1 ? "every input" : "the input", t->target ? " and the target" : "",
              example);
    ok = false;
  }
  free(seen);
  free(cols);
  while (!csv_eol(c, c->p))
    c->p++;
  csv_skip_eol(c);
  c->line = 2;
  return ok;
}

// Parses one data line into x [in_dim] and the target: t [tdim] real
// values, or the class *y.
// The input whose values hold slot at of a row.
static const Columns *table_group(const Table *t, int64_t at) {
  int g = 0;
  while (g + 1 < t->ngroups && t->at[g + 1] <= at)
    g++;
  return t->group[g];
}

// Value v of integer input g, as int32 bits into *dst: a whole number, in
// [0, g->bound) where the model knows the bound (an embedding's vocab).
static bool table_index(Csv *c, int f, const Columns *g, double v, float *dst) {
  char name[64];
  if (v != floor(v) || v < INT32_MIN || v > INT32_MAX) {
    errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): %g is not a whole number, but input '%s' holds "
           "integers (i32)\n---> HINT: write indexes as 0, 1, 2, ...; or declare '%s' as f32[...]", c->path,
           (long long)c->line, f + 1, csv_colname(c, f, name, sizeof name), v, g->name, g->name);
    return false;
  }
  if (g->bound > 0 && (v < 0 || v >= (double)g->bound)) {
    errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): index %g of input '%s' is outside [0, %lld)\n"
           "---> HINT: indexes count from 0 and must be less than the vocab of the embedding that reads '%s'",
           c->path, (long long)c->line, f + 1, csv_colname(c, f, name, sizeof name), v, g->name,
           (long long)g->bound, g->name);
    return false;
  }
  int32_t i = (int32_t)v;
  memcpy(dst, &i, sizeof i);
  return true;
}

static bool table_row(Csv *c, const Table *t, const int64_t *slot, float *x, float *tv, int32_t *y) {
  for (int f = 0; f < c->nfields; f++) {
    double v;
    if (f > 0 && *c->p != ',')
      return csv_bad_count(c, f);
    c->p += f > 0;
    int64_t at = slot[f];
    if (at < 0) {   // a column of no input or target: any text
      if (!csv_closed(c, f))
        return false;
      c->p = csv_field_end(c, c->p);
      continue;
    }
    if (!csv_number(c, f, &v))
      return false;
    if (!y || at < t->in_dim) {   // a value float32 cannot hold would become an infinity
      if (fabs(v) > FLT_MAX) {
        char name[64];
        errorf(c->err, c->errsz, "%s: line %lld, column %d (%s): %g is too large for float32 (at most %g in "
                  "magnitude)\n---> HINT: scale the column down", c->path, (long long)c->line, f + 1,
                  csv_colname(c, f, name, sizeof name), v, FLT_MAX);
        return false;
      }
    }
    const Columns *g = at < t->in_dim ? table_group(t, at) : NULL;
    if (g && g->integer && !table_index(c, f, g, v, x + at))
      return false;
    if (g && !g->integer)
      x[at] = (float)v;
    else if (!g && y && !csv_check(c, f, v, y))
      return false;
    else if (!g && !y)
      tv[at - t->in_dim] = (float)v;
  }
  if (!csv_eol(c, c->p))
    return csv_bad_count(c, c->nfields);
  csv_skip_eol(c);
  return true;
}

bool data_load_table_csv(const char *path, const Columns *inputs, int ninputs, const Columns *target,
                       Dataset *out, char *err, size_t errsz) {
  *out = (Dataset){0};
  Table t = {.group = xmalloc(sizeof(Columns *) * (ninputs + 1)), .at = xmalloc(sizeof(int64_t) * (ninputs + 1)),
             .target = target != NULL};
  for (int g = 0; g < ninputs; g++) {
    t.group[t.ngroups] = &inputs[g];
    t.at[t.ngroups++] = t.in_dim;
    t.in_dim += inputs[g].dim;
  }
  t.need = t.in_dim;
  bool classes = target && target->nclasses > 0;
  if (target) {
    t.group[t.ngroups] = target;
    t.at[t.ngroups++] = t.in_dim;
    t.need += classes ? 1 : target->dim;
  }
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    errorf(err, errsz, "%s: cannot read: %s", path, strerror(errno));
    free(t.group);
    free(t.at);
    return false;
  }
  Csv c = {.path = path, .p = text, .end = text + len, .line = 1, .err = err, .errsz = errsz,
           .nclasses = classes ? target->nclasses : 0};
  csv_skip_bom(&c);
  int64_t *slot = NULL;
  bool ok = strspn(c.p, " \t\r\n") < (size_t)(c.end - c.p);
  if (!ok) {
    char example[200];
    table_example(&t, example, sizeof example);
    errorf(err, errsz, "%s: is empty; expected a header line such as %s", path, example);
  }
  ok = ok && table_header(&c, &t, &slot);
  int64_t cap = 0;
  if (ok) {
    int64_t read = 0;   // columns that hold a value: each takes 2 bytes a row, the others 1
    for (int f = 0; f < c.nfields; f++)
      read += slot[f] >= 0;
    cap = csv_count_lines(&c, c.nfields + read);
    out->dim = t.in_dim;
    out->x = xmalloc((size_t)(cap * t.in_dim) * sizeof(float));
    if (classes) {
      out->y = xmalloc((size_t)cap * sizeof(int32_t));
      out->nclasses = target->nclasses;
    } else if (target) {
      out->tdim = target->dim;
      out->t = xmalloc((size_t)(cap * target->dim) * sizeof(float));
    }
  }
  while (ok && csv_next_row(&c)) {
    if (out->n == cap)
      unreachable();   // csv_count_lines bounds every row that can parse
    ok = table_row(&c, &t, slot, out->x + out->n * t.in_dim, out->t ? out->t + out->n * out->tdim : NULL,
                   out->y ? out->y + out->n : NULL);
    out->n += ok;
    c.line++;
  }
  if (ok && out->n == 0) {
    errorf(err, errsz, "%s: has a header line but no data lines", path);
    ok = false;
  }
  free(slot);
  free(text);
  free(t.group);
  free(t.at);
  if (!ok) {
    data_free(out);
    return false;
  }
  out->ndim = 1;
  out->shape[0] = t.in_dim;
  out->source = xstrdup(path);
  return true;
}

//
// Normalization and the validation split
//

static const char *source(const Dataset *ds) { return ds->source ? ds->source : "data set"; }

// Element i of ds's samples as a float (scale: byte_scale() for bytes).
static float value_at(const Dataset *ds, const float *scale, int64_t i) {
  return ds->x ? ds->x[i] : scale[ds->x8[i]];
}

void data_stats(const Dataset *ds, double *mean, double *std) {
  int64_t total = ds->n * ds->dim;
  const float *scale = byte_scale();
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < total; i++)
    sum += value_at(ds, scale, i);
  double m = total ? sum / total : 0;
  for (int64_t i = 0; i < total; i++) {
    double d = value_at(ds, scale, i) - m;
    sq += d * d;
  }
  *mean = m;
  *std = total ? sqrt(sq / total) : 0;
}

void data_normalize(Dataset *ds, double mean, double std) {
  double inv = std > 0 ? 1 / std : 1;
  int64_t total = ds->n * ds->dim;
  if (!ds->x) {   // normalized values are floats
    ds->x = xmalloc((size_t)total * sizeof(float));
    data_rows(ds, NULL, 0, ds->n, ds->x);
    free(ds->x8);
    ds->x8 = NULL;
  }
  for (int64_t i = 0; i < total; i++)
    ds->x[i] = (float)((ds->x[i] - mean) * inv);
}

bool data_split(const Dataset *ds, double fraction, uint64_t seed, Dataset *train,
              Dataset *val, char *err, size_t errsz) {
  *train = *val = (Dataset){0};
  if (!(fraction >= 0 && fraction <= 1)) {
    errorf(err, errsz, "%s: validation fraction %g is outside [0, 1]\n"
              "---> HINT: 0.1 holds out a tenth of the training data", source(ds), fraction);
    return false;
  }
  if (ds->n > UINT32_MAX) {
    errorf(err, errsz, "%s: %lld samples are too many to split", source(ds), (long long)ds->n);
    return false;
  }
  int64_t n = ds->n, nval = llround(n * fraction);
  int64_t *perm = xmalloc((size_t)(n ? n : 1) * sizeof(int64_t));
  char *in_val = xcalloc((size_t)(n ? n : 1), 1);
  Rng r;
  rng_seed(&r, seed, RT_STREAM_SPLIT);
  permute(&r, perm, n);
  for (int64_t i = 0; i < nval; i++)
    in_val[perm[i]] = 1;
  int64_t nt = 0, nv = 0;   // reuse perm: validation indices from the front, training from the back
  for (int64_t i = 0; i < n; i++)
    if (in_val[i])
      perm[nv++] = i;
  for (int64_t i = 0; i < n; i++)
    if (!in_val[i])
      perm[nval + nt++] = i;
  data_subset(ds, perm, nval, val);
  data_subset(ds, perm + nval, nt, train);
  free(perm);
  free(in_val);
  return true;
}

//
// Batching
//

// Draws this epoch's order, remembering the Rng as it was before.
static void begin_epoch(Batcher *b) {
  b->epoch_rng = b->rng;
  if (b->shuffle) {
    permute(&b->rng, b->perm, b->ds->n);
  } else {
    for (int64_t i = 0; i < b->ds->n; i++)
      b->perm[i] = i;
  }
}

bool data_batcher_init(Batcher *b, const Dataset *ds, int64_t batch, bool shuffle,
                     uint64_t seed, char *err, size_t errsz) {
  *b = (Batcher){0};
  if (batch < 1) {
    errorf(err, errsz, "batch size %lld must be at least 1", (long long)batch);
    return false;
  }
  if (ds->n > UINT32_MAX) {
    errorf(err, errsz, "%s: %lld samples are too many to shuffle", source(ds), (long long)ds->n);
    return false;
  }
  b->ds = ds;
  b->batch = batch;
  b->shuffle = shuffle;
  b->perm = xmalloc((size_t)(ds->n ? ds->n : 1) * sizeof(int64_t));
  rng_seed(&b->rng, seed, RT_STREAM_SHUFFLE);
  begin_epoch(b);
  return true;
}

void data_batcher_free(Batcher *b) {
  free(b->perm);
  *b = (Batcher){0};
}

int64_t data_batcher_next(Batcher *b, float *x, void *y) {
  const Dataset *ds = b->ds;
  if (b->pos >= ds->n || (b->drop_last && ds->n - b->pos < b->batch)) {
    b->epoch++;
    b->pos = 0;
    begin_epoch(b);
    return 0;
  }
  int64_t k = ds->n - b->pos < b->batch ? ds->n - b->pos : b->batch;
  for (int64_t i = 0; i < k; i++) {
    int64_t s = b->perm[b->pos + i];
    data_rows(ds, &s, 0, 1, x + i * ds->dim);
    if (y && ds->y)
      ((int32_t *)y)[i] = ds->y[s];
    else if (y && ds->t)
      memcpy((float *)y + i * ds->tdim, ds->t + s * ds->tdim, (size_t)ds->tdim * sizeof(float));
  }
  b->pos += k;
  return k;
}

int64_t data_batcher_nbatches(const Batcher *b) {
  return b->drop_last ? b->ds->n / b->batch : (b->ds->n + b->batch - 1) / b->batch;
}

Cursor data_batcher_cursor(const Batcher *b) {
  return (Cursor){.epoch = b->epoch, .pos = b->pos, .rng = b->epoch_rng};
}

bool data_batcher_set_cursor(Batcher *b, Cursor c, char *err, size_t errsz) {
  if (c.epoch < 0 || c.pos < 0 || c.pos > b->ds->n || !(c.rng.inc & 1)) {
    errorf(err, errsz, "%s: cannot resume at epoch %lld, sample %lld of %lld\n"
              "---> HINT: the checkpoint was written for another data set or batch setting",
              source(b->ds), (long long)c.epoch, (long long)c.pos, (long long)b->ds->n);
    return false;
  }
  b->rng = c.rng;
  b->epoch = c.epoch;
  begin_epoch(b);
  b->pos = c.pos;
  return true;
}

void data_cursor_format(Cursor c, char *buf, size_t n) {
  snprintf(buf, n, "epoch=%lld pos=%lld rng=%016llx:%016llx", (long long)c.epoch, (long long)c.pos,
           (unsigned long long)c.rng.state, (unsigned long long)c.rng.inc);
}

bool data_cursor_parse(const char *s, Cursor *c) {
  long long epoch, pos;
  unsigned long long state, inc;
  int end = -1;
  if (sscanf(s, "epoch=%lld pos=%lld rng=%llx:%llx%n", &epoch, &pos, &state, &inc, &end) != 4 ||
      s[end] != 0 || epoch < 0 || pos < 0 || !(inc & 1))
    return false;
  *c = (Cursor){.epoch = epoch, .pos = pos, .rng = {.state = state, .inc = inc}};
  return true;
}
