// test_csv.c: the Kaggle digit-recognizer CSV: with and without labels,
// CRLF and missing final newlines, every error case (each message names the
// file, the line and the column), and a full-size 42000-line file.
#include "../test.h"
#include "data.h"

#include <time.h>

static bool load(const char *name, const char *text, int nclasses, Dataset *ds, char *err, size_t n) {
  t_write(t_path(name), text, strlen(text));
  return data_load_csv(t_path(name), nclasses, ds, err, n);
}

// The same for text that holds NUL bytes: n bytes of it.
static bool load_n(const char *name, const char *text, size_t len, Dataset *ds, char *err, size_t n) {
  t_write(t_path(name), text, len);
  return data_load_csv(t_path(name), 10, ds, err, n);
}

// A table for an input x of two values and a scalar target y.
static const Columns table_x = {"x", 2, 0, false, 0}, table_y = {"y", 1, 0, false, 0};

static bool load_table(const char *name, const char *text, Dataset *ds, char *err, size_t n) {
  t_write(t_path(name), text, strlen(text));
  return data_load_table_csv(t_path(name), &table_x, 1, &table_y, ds, err, n);
}

static void test_valid(void) {
  Dataset ds;
  char err[1024];
  // CRLF, a blank line, and no newline after the last line
  bool ok = load("a.csv", "label,pixel0,pixel1,pixel2,pixel3\r\n7,0,255,51,102\r\n\r\n2,1,2,3,4.5", 10,
                 &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.n == 2 && ds.dim == 4 && ds.ndim == 2 && ds.shape[0] == 2 && ds.shape[1] == 2, "shape");
    CHECK(ds.y[0] == 7 && ds.y[1] == 2 && ds.nclasses == 10, "labels");
    CHECK(ds.x[0] == 0 && ds.x[1] == 1 && ds.x[2] == (float)(51 / 255.0) && ds.x[7] == (float)(4.5 / 255.0),
          "pixels %g %g %g %g", ds.x[0], ds.x[1], ds.x[2], ds.x[7]);
    data_free(&ds);
  }
  ok = load("b.csv", "\xEF\xBB\xBFpixel0,pixel1,pixel2\n1,2,3\n4,5,6\n\n", 10, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.n == 2 && ds.dim == 3 && ds.ndim == 1 && ds.y == NULL && ds.nclasses == 0, "unlabeled");
    CHECK(ds.x[5] == (float)(6 / 255.0), "x[5] %g", ds.x[5]);
    data_free(&ds);
  }
  ok = load("c.csv", "label,pixel0\n3,0\n5,0\n", 0, &ds, err, sizeof err);
  CHECK(ok && ds.nclasses == 6, "inferred classes: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
}

#define BAD_CSV(name, text, ...)                                                     \
  do {                                                                               \
    Dataset ds_;                                                                   \
    char err_[1024];                                                                 \
    CHECK_ERR(load(name, text, 10, &ds_, err_, sizeof err_), err_, t_path(name), __VA_ARGS__); \
  } while (0)

// Line ends: LF, CRLF and lone CRs (old Mac files), each one line; a byte
// order mark; blank lines anywhere; NUL bytes refused.
static void test_lexical(void) {
  Dataset ds;
  char err[1024];
  bool ok = load("cr.csv", "label,pixel0,pixel1\r1,2,3\r\r4,5,6\r", 10, &ds, err, sizeof err);
  CHECK(ok && ds.n == 2 && ds.dim == 2 && ds.y[1] == 4 && ds.x[3] == (float)(6 / 255.0), "CR-only: %s",
        ok ? "" : err);
  if (ok)
    data_free(&ds);
  BAD_CSV("cr-bad.csv", "label,pixel0\r1,0\r\r12,0\r", "line 4, column 1 (label)", "label 12");
  BAD_CSV("mixed.csv", "label,pixel0\n1,0\r\n\r2,0\r3,x\n", "line 5, column 2 (pixel0)", "'x' is not a number");
  // NUL bytes are not digits: a label \0005 is not 5 (nor 0), 25\0009 not 25
  Dataset ds_;
  CHECK_ERR(load_n("nul1.csv", "label,pixel0\n\0005,1\n", 18, &ds_, err, sizeof err), err,
            "line 2, column 1 (label)", "NUL byte", "binary data");
  CHECK_ERR(load_n("nul2.csv", "label,pixel0\n1,25\0009\n", 20, &ds_, err, sizeof err), err,
            "line 2, column 2 (pixel0)", "NUL byte");
  CHECK_ERR(load_n("nul3.csv", "label,pixel0\n1,\0\n", 17, &ds_, err, sizeof err), err,
            "line 2, column 2 (pixel0)", "NUL byte");

  // the table layout: a byte order mark, CRLF, CR and blank lines
  ok = load_table("t.csv", "\xEF\xBB\xBFx0,x1,y\r\n1,2,3\r\n\r\n-4,5e-1,6\r\n", &ds, err, sizeof err);
  CHECK(ok && ds.n == 2 && ds.x[2] == -4 && ds.x[3] == 0.5f && ds.t[1] == 6, "table with BOM, CRLF: %s",
        ok ? "" : err);
  if (ok)
    data_free(&ds);
  ok = load_table("tcr.csv", "y,x1,x0\r\r3,2,1\r6,5,4", &ds, err, sizeof err);
  CHECK(ok && ds.n == 2 && ds.x[0] == 1 && ds.x[1] == 2 && ds.t[1] == 6, "table, CR-only: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  CHECK_ERR(load_table("tcr-bad.csv", "x0,x1,y\r1,2,3\r\r4,5\r", &ds, err, sizeof err), err,
            "line 4: expected 3 fields", "found 2");
  // values are stored as floats: 1e39 is refused, not read as infinity
  CHECK_ERR(load_table("tbig.csv", "x0,x1,y\n1,-1e39,3\n", &ds, err, sizeof err), err,
            "line 2, column 2 (x1)", "-1e39 is beyond the range of a 32-bit float");
  ok = load_table("tsmall.csv", "x0,x1,y\n1,-3.4e38,1e-50\n", &ds, err, sizeof err);
  CHECK(ok && ds.x[1] == -3.4e38f && ds.t[0] == 0, "float range: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  CHECK_ERR(load_table("tlong.csv", "x0,x1,y\n1,2,0.00000000000000000000000000000000000000000000000000000000000000001\n",
                       &ds, err, sizeof err), err, "line 2, column 3 (y)", "too long for a number (67 characters)");
  t_write(t_path("tnul.csv"), "x0,x1,y\n1,2\0,3\n", 15);
  CHECK_ERR(data_load_table_csv(t_path("tnul.csv"), &table_x, 1, &table_y, &ds, err, sizeof err), err,
            "line 2, column 2 (x1)", "NUL byte");

  // Many blank lines and a wide header: the arrays are sized by what the
  // bytes can hold (a row of 2000 fields takes 4000 bytes), not by the
  // line count, which asked for 200001 rows x 2000 floats (1.6 GB) before.
  StrBuf b = {0};
  sb_puts(&b, "pixel0");
  for (int j = 1; j < 2000; j++)
    sb_printf(&b, ",pixel%d", j);
  for (int i = 0; i < 200000; i++)
    sb_putc(&b, '\n');
  for (int j = 0; j < 2000; j++)
    sb_puts(&b, j ? ",1" : "1");
  t_write(t_path("blank.csv"), b.data, b.len);
  ok = data_load_csv(t_path("blank.csv"), 10, &ds, err, sizeof err);
  CHECK(ok && ds.n == 1 && ds.dim == 2000 && ds.x[1999] == (float)(1 / 255.0), "blank lines: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  sb_free(&b);
}

static void test_errors(void) {
  BAD_CSV("e1.csv", "", "is empty", "label,pixel0");
  BAD_CSV("e2.csv", " \r\n\n", "is empty");
  BAD_CSV("e3.csv", "id,x,y\n1,2,3\n", "line 1", "must start with 'label'", "found 'id'");
  BAD_CSV("e4.csv", "1,2,3\n4,5,6\n", "found '1'", "no header line");
  BAD_CSV("e5.csv", "label,pixel0,pixel1\n", "no data lines");
  BAD_CSV("e6.csv", "label,pixel0,pixel1,pixel2\n1,2,3,4\n1,2,3\n", "line 3", "expected 4 fields", "found 3");
  BAD_CSV("e7.csv", "label,pixel0,pixel1\n1,2,3,4,5\n", "line 2", "expected 3 fields", "found 5");
  BAD_CSV("e8.csv", "label,pixel0,pixel1\n1,2,3\n1,2,x7\n", "line 3, column 3 (pixel1)", "'x7' is not a number");
  BAD_CSV("e9.csv", "label,pixel0,pixel1\n1,,3\n", "line 2, column 2 (pixel0)", "empty");
  BAD_CSV("e10.csv", "label,pixel0,pixel1\r\n1,2,300\r\n", "line 2, column 3 (pixel1)", "300", "outside 0..255");
  BAD_CSV("e11.csv", "pixel0,pixel1\n-1,0\n", "line 2, column 1 (pixel0)", "-1", "outside 0..255");
  BAD_CSV("e12.csv", "label,pixel0\n1,0\n\n12,0\n", "line 4, column 1 (label)", "label 12", "outside [0, 10)");
  BAD_CSV("e13.csv", "label,pixel0\n2.5,0\n", "line 2, column 1 (label)", "label 2.5", "not a class number");
  BAD_CSV("e14.csv", "label,pixel0\n1,nan\n", "'nan' is not a number");
  BAD_CSV("e15.csv", "label\n1\n", "no pixel columns");
  Dataset ds;
  char err[1024];
  CHECK_ERR(data_load_csv(t_path("none.csv"), 10, &ds, err, sizeof err), err, "none.csv", "No such file");
}

// 42000 lines of 785 fields, like Kaggle's train.csv (about 75 MB).
static void test_large(void) {
  enum { N = 42000, P = 784 };
  FILE *f = fopen(t_path("big.csv"), "wb");
  fputs("label", f);
  for (int j = 0; j < P; j++)
    fprintf(f, ",pixel%d", j);
  fputc('\n', f);
  Rng r;
  rng_seed(&r, 5, 0);
  for (int i = 0; i < N; i++) {
    fprintf(f, "%d", i % 10);
    for (int j = 0; j < P; j++) {
      unsigned v = rng_below(&r, 4) ? 0 : rng_below(&r, 256);   // mostly zeros, as in MNIST
      fprintf(f, ",%u", v);
    }
    fputc('\n', f);
  }
  fclose(f);
  Dataset ds;
  char err[1024];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  bool ok = data_load_csv(t_path("big.csv"), 10, &ds, err, sizeof err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK(ok, "%s", err);
  if (!ok)
    return;
  printf("test_csv: loaded %d x %d in %.3f s\n", N, P + 1,
         (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
  CHECK(ds.n == N && ds.dim == P && ds.shape[0] == 28 && ds.y[N - 1] == (N - 1) % 10, "big shape");
  rng_seed(&r, 5, 0);   // the same draws give the same values
  bool same = true;
  for (int64_t i = 0; i < (int64_t)N * P && same; i++) {
    unsigned v = rng_below(&r, 4) ? 0 : rng_below(&r, 256);
    same = ds.x[i] == (float)(v / 255.0);
  }
  CHECK(same, "big values differ");
  data_free(&ds);
}

int main(void) {
  t_tmpdir("csv");
  test_valid();
  test_lexical();
  test_errors();
  test_large();
  return t_finish("test_csv");
}
