// test_idx.c: IDX and IDX.gz loading: valid files of several element types,
// gzip told apart by its magic bytes, the MNIST directory layout, and every
// malformed case, each of whose messages must name the file and the problem.
#include "../test.h"
#include "data.h"

#include <math.h>
#include <sys/stat.h>
#include <zlib.h>

// A growable byte buffer for building files.
typedef struct Bytes {
  unsigned char *data;
  size_t len;
} Bytes;

static void put(Bytes *b, const void *p, size_t n) {
  b->data = realloc(b->data, b->len + n + 1);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_be32(Bytes *b, uint32_t v) {
  unsigned char c[4] = {v >> 24, v >> 16, v >> 8, v};
  put(b, c, 4);
}

// The IDX header: magic, then one size per dimension.
static void idx_header(Bytes *b, int type, int ndim, const uint32_t *dims) {
  unsigned char m[4] = {0, 0, (unsigned char)type, (unsigned char)ndim};
  put(b, m, 4);
  for (int i = 0; i < ndim; i++)
    put_be32(b, dims[i]);
}

// 5 images of 3x4 ubyte pixels: pixel j of image i is 12 i + j (times 3).
static Bytes images_u8(void) {
  Bytes b = {0};
  idx_header(&b, 0x08, 3, (uint32_t[]){5, 3, 4});
  for (int i = 0; i < 60; i++) {
    unsigned char v = (unsigned char)(i * 3 + (i == 59) * 78);   // 0..174, and 255 last
    put(&b, &v, 1);
  }
  return b;
}

static Bytes labels_u8(const unsigned char *y, int n) {
  Bytes b = {0};
  idx_header(&b, 0x08, 1, (uint32_t[]){(uint32_t)n});
  put(&b, y, n);
  return b;
}

static void write_gz(const char *path, const Bytes *b) {
  gzFile f = gzopen(path, "wb");
  if (!f || gzwrite(f, b->data, (unsigned)b->len) != (int)b->len || gzclose(f) != Z_OK) {
    fprintf(stderr, "%s: gzip write failed\n", path);
    exit(1);
  }
}

static void test_valid_u8(void) {
  Bytes im = images_u8(), lb = labels_u8((const unsigned char[]){3, 0, 9, 1, 4}, 5);
  t_write(t_path("im"), im.data, im.len);
  t_write(t_path("lb"), lb.data, lb.len);
  write_gz(t_path("im.data"), &im);   // gzip under a name that does not say so
  char err[1024];
  for (int gz = 0; gz < 2; gz++) {
    Dataset ds;
    const char *p = t_path(gz ? "im.data" : "im");
    bool ok = data_load_idx(p, t_path("lb"), 10, &ds, err, sizeof err);
    CHECK(ok, "%s", err);
    if (!ok)
      continue;
    CHECK(ds.n == 5 && ds.ndim == 2 && ds.shape[0] == 3 && ds.shape[1] == 4 && ds.dim == 12,
          "n %lld ndim %d dim %lld", (long long)ds.n, ds.ndim, (long long)ds.dim);
    float x[60];
    data_rows(&ds, NULL, 0, 5, x);
    CHECK(ds.x8 && !ds.x, "ubyte images kept as bytes");
    for (int i = 0; i < 60; i++)
      CHECK(x[i] == im.data[16 + i] / 255.0f, "x[%d] = %g", i, x[i]);
    CHECK(x[59] == 1.0f && x[0] == 0.0f, "range");
    int64_t pick[2] = {4, 1};   // rows by index, as the batcher reads them
    data_rows(&ds, pick, 0, 2, x);
    CHECK(x[0] == im.data[16 + 48] / 255.0f && x[12] == im.data[16 + 12] / 255.0f, "rows 4 and 1");
    // Statistics read the bytes as floats; normalizing turns them into floats.
    double sum = 0, sq = 0, mean, sd;
    for (int i = 0; i < 60; i++)
      sum += im.data[16 + i] / 255.0f;
    for (int i = 0; i < 60; i++)
      sq += (im.data[16 + i] / 255.0f - sum / 60) * (im.data[16 + i] / 255.0f - sum / 60);
    data_stats(&ds, &mean, &sd);
    CHECK(fabs(mean - sum / 60) < 1e-12 && fabs(sd - sqrt(sq / 60)) < 1e-12, "stats %g %g", mean, sd);
    data_normalize(&ds, mean, sd);
    CHECK(ds.x && !ds.x8, "normalized samples are floats");
    bool same = ds.x != NULL;
    for (int i = 0; same && i < 60; i++)
      same = ds.x[i] == (float)((im.data[16 + i] / 255.0f - mean) / sd);
    CHECK(same, "normalized values");
    CHECK(ds.y[0] == 3 && ds.y[2] == 9 && ds.y[4] == 4 && ds.nclasses == 10, "labels");
    CHECK(ds.source && strstr(ds.source, p), "source %s", ds.source);
    data_free(&ds);
    IdxFile idx;
    CHECK(data_idx_read(p, &idx, err, sizeof err), "%s", err);
    CHECK(idx.gzip == gz && idx.type == RT_IDX_U8 && idx.ndim == 3 && idx.count == 60, "idx header");
    data_idx_free(&idx);
  }
  Dataset ds;   // classes from the labels when the caller gives none
  CHECK(data_load_idx(t_path("im"), t_path("lb"), 0, &ds, err, sizeof err), "%s", err);
  CHECK(ds.nclasses == 10, "inferred nclasses %d", ds.nclasses);
  data_free(&ds);
  CHECK(data_load_idx(t_path("im"), NULL, 10, &ds, err, sizeof err), "%s", err);
  CHECK(ds.y == NULL && ds.n == 5, "unlabeled");
  data_free(&ds);
  free(im.data);
  free(lb.data);
}

// float32 images and int32 labels, big-endian like every IDX file.
static void test_valid_f32_i32(void) {
  Bytes im = {0}, lb = {0};
  idx_header(&im, 0x0D, 2, (uint32_t[]){3, 2});
  float v[6] = {-1.5f, 0.25f, 3e5f, 0, 1, -0.0078125f};
  for (int i = 0; i < 6; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    put_be32(&im, u);
  }
  idx_header(&lb, 0x0C, 1, (uint32_t[]){3});
  put_be32(&lb, 2);
  put_be32(&lb, 70000);
  put_be32(&lb, 0);
  t_write(t_path("f32"), im.data, im.len);
  write_gz(t_path("i32.gz"), &lb);
  char err[1024];
  Dataset ds;
  bool ok = data_load_idx(t_path("f32"), t_path("i32.gz"), 0, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.ndim == 1 && ds.dim == 2, "shape");
    for (int i = 0; i < 6; i++)
      CHECK(ds.x[i] == v[i], "x[%d] = %g, expected %g", i, ds.x[i], v[i]);
    CHECK(ds.y[1] == 70000 && ds.nclasses == 70001, "int32 labels");
    data_free(&ds);
  }
  CHECK_ERR(data_load_idx(t_path("f32"), t_path("i32.gz"), 10, &ds, err, sizeof err), err,
            t_path("i32.gz"), "label at index 1 is 70000", "outside [0, 10)");
  CHECK_ERR(data_load_idx(t_path("f32"), t_path("f32"), 10, &ds, err, sizeof err), err,
            t_path("f32"), "labels must be integers", "float32");
  free(im.data);
  free(lb.data);
}

// Writes bytes to a file and expects data_idx_read to fail with these words.
#define BAD_IDX(name, bytes, n, ...)                                          \
  do {                                                                        \
    t_write(t_path(name), (bytes), (n));                                \
    IdxFile idx_;                                                               \
    char err_[1024];                                                          \
    CHECK_ERR(data_idx_read(t_path(name), &idx_, err_, sizeof err_), err_,    \
              t_path(name), __VA_ARGS__);                                   \
  } while (0)

static void test_malformed(void) {
  Bytes im = images_u8();   // 16-byte header + 60 bytes
  BAD_IDX("empty", "", 0, "is empty");
  BAD_IDX("magic", "abcdefghijklmnop", 16, "not an IDX file", "0x61 0x62");
  BAD_IDX("type", "\0\0\x07\x01\0\0\0\1x", 9, "unknown IDX element type code 0x07");
  BAD_IDX("ndim", "\0\0\x08\0\0\0\0\0", 8, "gives 0 dimensions");
  BAD_IDX("header", "\0\0\x08\x03\0\0\0\5\0\0", 10, "truncated inside its header", "16-byte header",
          "found 10");
  BAD_IDX("absurd", "\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16,
          "more than the limit");
  BAD_IDX("short", im.data, im.len - 3, "is truncated", "expected 76 bytes", "found 73");
  Bytes longer = {0};
  put(&longer, im.data, im.len);
  put(&longer, "12345", 5);
  BAD_IDX("long", longer.data, longer.len, "5 bytes of trailing data", "expected 76 bytes", "found 81");
  IdxFile idx;
  char err[1024];
  CHECK_ERR(data_idx_read(t_path("missing"), &idx, err, sizeof err), err, t_path("missing"),
            "cannot open", "No such file");

  // gzip: short data after decompression, a cut-off stream, a bad checksum
  Bytes cut = {0};
  put(&cut, im.data, im.len - 10);
  write_gz(t_path("short.gz"), &cut);
  CHECK_ERR(data_idx_read(t_path("short.gz"), &idx, err, sizeof err), err, t_path("short.gz"),
            "truncated", "expected 76 bytes after decompression", "found 66");
  write_gz(t_path("full.gz"), &im);
  size_t n;
  unsigned char *gz = (unsigned char *)read_file(t_path("full.gz"), &n);
  BAD_IDX("cut.gz", gz, n - 12, "truncated", "gzip data ends early");
  gz[n - 6] ^= 0x55;   // inside the CRC-32 of the gzip trailer
  BAD_IDX("crc.gz", gz, n, "corrupt gzip data", "gzip -t");
  free(gz);
  free(cut.data);
  free(longer.data);
  free(im.data);
}

// Sizes from the header are checked against the data before anything is
// allocated for it; gzip data is read as it arrives, member by member.
static void test_sizes_and_gzip(void) {
  IdxFile idx;
  char err[1024];
  // 20M images of 28x28 claimed by a 216-byte file: refused from its size
  Bytes claim = {0};
  idx_header(&claim, 0x08, 3, (uint32_t[]){20000000, 28, 28});
  put(&claim, (unsigned char[200]){0}, 200);
  BAD_IDX("claim", claim.data, claim.len, "is truncated", "expected 15680000016 bytes", "found 216");
  write_gz(t_path("claim.gz"), &claim);
  CHECK_ERR(data_idx_read(t_path("claim.gz"), &idx, err, sizeof err), err, "claim.gz", "is truncated",
            "expected 15680000016 bytes after decompression", "found 216");
  CHECK_ERR(data_idx_decode(claim.data, claim.len, "mem", &idx, err, sizeof err), err, "mem: is truncated");

  // two gzip members make one stream, as with gzip -d
  Bytes im = images_u8();
  write_gz(t_path("a.gz"), &(Bytes){im.data, 30});
  write_gz(t_path("b.gz"), &(Bytes){im.data + 30, im.len - 30});
  size_t na, nb;
  char *ga = read_file(t_path("a.gz"), &na), *gb = read_file(t_path("b.gz"), &nb);
  Bytes two = {0};
  put(&two, ga, na);
  put(&two, gb, nb);
  t_write(t_path("two.gz"), two.data, two.len);
  bool ok = data_idx_read(t_path("two.gz"), &idx, err, sizeof err);
  CHECK(ok && idx.gzip && idx.count == 60 && !memcmp(idx.data, im.data + 16, 60), "two members: %s",
        ok ? "" : err);
  data_idx_free(&idx);
  ok = data_idx_decode(two.data, two.len, "two.gz", &idx, err, sizeof err);
  CHECK(ok && idx.gzip && idx.count == 60 && !memcmp(idx.data, im.data + 16, 60), "from memory: %s",
        ok ? "" : err);
  data_idx_free(&idx);
  ok = data_idx_decode(im.data, im.len, "plain", &idx, err, sizeof err);
  CHECK(ok && !idx.gzip && idx.dims[0] == 5 && !memcmp(idx.data, im.data + 16, 60), "plain from memory: %s",
        ok ? "" : err);
  data_idx_free(&idx);

  // anything else after the gzip data is refused, even a single zero byte
  Bytes junk = {0};
  put(&junk, two.data, two.len);
  put(&junk, "trailing", 8);
  BAD_IDX("junk.gz", junk.data, junk.len, "8 bytes of trailing data after the end of its gzip data");
  junk.len = two.len + 1;
  junk.data[two.len] = 0;
  BAD_IDX("zero.gz", junk.data, junk.len, "1 bytes of trailing data after the end of its gzip data");
  junk.data[two.len] = 0x1f;   // the first byte of another member, and nothing more
  BAD_IDX("half.gz", junk.data, junk.len, "1 bytes of trailing data");
  CHECK_ERR(data_idx_decode(junk.data, junk.len, "half", &idx, err, sizeof err), err, "half: has 1 bytes");

  // float images must hold finite numbers
  Bytes f = {0};
  idx_header(&f, 0x0D, 2, (uint32_t[]){2, 2});
  uint32_t vals[4] = {0x3f800000, 0x7fc00000, 0, 0};   // 1, NaN
  for (int i = 0; i < 4; i++)
    put_be32(&f, vals[i]);
  t_write(t_path("nan"), f.data, f.len);
  Dataset ds;
  CHECK_ERR(data_load_idx(t_path("nan"), NULL, 0, &ds, err, sizeof err), err, "nan: element 1 (sample 0) is nan",
            "must be finite");
  Bytes d = {0};
  idx_header(&d, 0x0E, 2, (uint32_t[]){1, 1});
  put(&d, "\x7f\xef\xff\xff\xff\xff\xff\xff", 8);   // DBL_MAX: beyond float
  t_write(t_path("dmax"), d.data, d.len);
  CHECK_ERR(data_load_idx(t_path("dmax"), NULL, 0, &ds, err, sizeof err), err, "element 0 (sample 0)",
            "within float range");
  free(d.data);
  free(f.data);
  free(junk.data);
  free(two.data);
  free(ga);
  free(gb);
  free(im.data);
  free(claim.data);
}

static void test_mismatch(void) {
  Bytes im = images_u8(), lb4 = labels_u8((const unsigned char[]){1, 2, 3, 4}, 4);
  Bytes bad = labels_u8((const unsigned char[]){1, 2, 3, 12, 200}, 5);
  t_write(t_path("m_im"), im.data, im.len);
  t_write(t_path("m_lb4"), lb4.data, lb4.len);
  t_write(t_path("m_bad"), bad.data, bad.len);
  Dataset ds;
  char err[1024];
  CHECK_ERR(data_load_idx(t_path("m_im"), t_path("m_lb4"), 10, &ds, err, sizeof err), err,
            t_path("m_lb4"), "has 4 labels", t_path("m_im"), "has 5 images");
  CHECK_ERR(data_load_idx(t_path("m_im"), t_path("m_bad"), 10, &ds, err, sizeof err), err,
            t_path("m_bad"), "label at index 3 is 12", "outside [0, 10)");
  CHECK_ERR(data_load_idx(t_path("m_lb4"), t_path("m_lb4"), 10, &ds, err, sizeof err), err,
            t_path("m_lb4"), "images must have 2 to 5 dimensions", "has 1");
  CHECK_ERR(data_load_idx(t_path("m_im"), t_path("m_im"), 10, &ds, err, sizeof err), err,
            t_path("m_im"), "labels must have 1 dimension");
  free(im.data);
  free(lb4.data);
  free(bad.data);
}

// The MNIST layout, with the .gz and dotted variants of the names.
static void test_dir(void) {
  char dir[600], err[2048];
  snprintf(dir, sizeof dir, "%s/mnist", t_dir);
  mkdir(dir, 0755);
  Dataset ds;
  CHECK_ERR(data_load_idx_dir(dir, "train", 10, &ds, err, sizeof err), err, dir, "no train data found",
            "train-images-idx3-ubyte, train-images-idx3-ubyte.gz, train-images.idx3-ubyte, "
            "train-images.idx3-ubyte.gz", "dataset-fashion-mnist");
  CHECK_ERR(data_load_idx_dir(dir, "valid", 10, &ds, err, sizeof err), err, "unknown split 'valid'");
  CHECK_ERR(data_load_idx_dir(t_path("nowhere"), "train", 10, &ds, err, sizeof err), err,
            "nowhere", "No such file or directory");
  Bytes im = images_u8(), lb = labels_u8((const unsigned char[]){0, 1, 2, 3, 4}, 5);
  Bytes lb2 = labels_u8((const unsigned char[]){5, 6, 7, 8, 9}, 5);
  char p[700];
  snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
  write_gz(p, &im);
  CHECK_ERR(data_load_idx_dir(dir, "train", 10, &ds, err, sizeof err), err,
            "looked for train-labels-idx1-ubyte, train-labels-idx1-ubyte.gz");
  snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", dir);
  t_write(p, lb.data, lb.len);
  snprintf(p, sizeof p, "%s/t10k-images.idx3-ubyte", dir);
  t_write(p, im.data, im.len);
  snprintf(p, sizeof p, "%s/t10k-labels.idx1-ubyte.gz", dir);
  write_gz(p, &lb2);
  bool ok = data_load_idx_dir(dir, "train", 10, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.n == 5 && ds.y[4] == 4, "train split");
    data_free(&ds);
  }
  ok = data_load_idx_dir(dir, "test", 10, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.n == 5 && ds.y[0] == 5 && ds.dim == 12, "test split");
    data_free(&ds);
  }
  free(im.data);
  free(lb.data);
  free(lb2.data);
}

int main(void) {
  t_tmpdir("idx");
  test_valid_u8();
  test_valid_f32_i32();
  test_malformed();
  test_sizes_and_gzip();
  test_mismatch();
  test_dir();
  return t_finish("test_idx");
}
