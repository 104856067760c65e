// test_table.c: the table CSV (data_load_table_csv): columns named after
// several inputs and the target in any order, rows as the inputs' values
// one after another, class and real-valued targets, no target (prediction),
// skipped columns, values kept unscaled; and each header error: a missing
// column, a name given twice (with both positions), two names for one value,
// a column that fits two inputs; a byte-order mark before the header; a
// value too large for float32; a NUL byte; blank lines, which reserve no
// memory; rows of empty skipped columns, which must all find a place.
#include "../test.h"
#include "data.h"

static const Columns ab[2] = {{"a", 3, 0, false, 0}, {"b", 1, 0, false, 0}};
static const Columns y2 = {"y", 2, 0, false, 0}, label = {"label", 1, 4, false, 0};

static bool load(const char *name, const char *text, const Columns *in, int nin, const Columns *t,
                 Dataset *ds, char *err, size_t n) {
  t_write(t_path(name), text, strlen(text));
  return data_load_table_csv(t_path(name), in, nin, t, ds, err, n);
}

static void test_valid(void) {
  Dataset ds;
  char err[1024];
  // the target first, the inputs' columns shuffled, a text column, values outside 0..255
  bool ok = load("a.csv", "y1,b,note,a2,a0,y0,a1\n-1,300,hello world,3,1,-2,2\n\n0.5,-4,x,6,4,7,5\n", ab, 2,
                 &y2, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(ds.n == 2 && ds.dim == 4 && ds.tdim == 2 && ds.ndim == 1 && ds.shape[0] == 4 && !ds.y, "shape");
    static const float x[8] = {1, 2, 3, 300, 4, 5, 6, -4}, t[4] = {-2, -1, 7, 0.5f};
    CHECK(!memcmp(ds.x, x, sizeof x), "rows: %g %g %g %g | %g %g %g %g", ds.x[0], ds.x[1], ds.x[2], ds.x[3],
          ds.x[4], ds.x[5], ds.x[6], ds.x[7]);
    CHECK(!memcmp(ds.t, t, sizeof t), "targets: %g %g %g %g", ds.t[0], ds.t[1], ds.t[2], ds.t[3]);
    data_free(&ds);
  }
  // the same file without the target, as predict reads it
  ok = data_load_table_csv(t_path("a.csv"), ab, 2, NULL, &ds, err, sizeof err);
  CHECK(ok && ds.n == 2 && ds.dim == 4 && !ds.t && !ds.y && ds.x[7] == -4, "unlabeled: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  // a class target; "b0" names b's single value too
  ok = load("c.csv", "label,b0,a0,a1,a2\n3,1,2,3,4\n0,5,6,7,8\n", ab, 2, &label, &ds, err, sizeof err);
  CHECK(ok && ds.y && ds.y[0] == 3 && ds.y[1] == 0 && ds.nclasses == 4 && ds.x[3] == 1 && ds.x[4] == 6,
        "class target: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  // the byte-order mark a spreadsheet writes before the header; the largest float32 values
  ok = load("bom.csv", "\xEF\xBB\xBF" "a0,a1,a2,b,y0,y1\n1,2,3,3.4e38,-3.4e38,6\n", ab, 2, &y2, &ds, err, sizeof err);
  CHECK(ok && ds.n == 1 && ds.x[0] == 1 && ds.x[3] == 3.4e38f && ds.t[0] == -3.4e38f, "BOM: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
}

#define BAD_TABLE(name, text, in, nin, t, ...)                                           \
  do {                                                                                   \
    Dataset ds_;                                                                       \
    char err_[1024];                                                                     \
    CHECK_ERR(load(name, text, in, nin, t, &ds_, err_, sizeof err_), err_, t_path(name), __VA_ARGS__); \
  } while (0)

static void test_errors(void) {
  BAD_TABLE("e1.csv", "a0,a1,a2,y0,y1\n1,2,3,4,5\n", ab, 2, &y2, "line 1", "no column 'b'",
            "every input and the target", "a0,a1,a2,b,y0,y1");
  BAD_TABLE("e2.csv", "a0,a1,a2,b\n1,2,3,4\n", ab, 2, &y2, "no column 'y0'");
  BAD_TABLE("e3.csv", "a0,a1,a2,b,y0,a1,y1\n1,2,3,4,5,6,7\n", ab, 2, &y2,
            "the column 'a1' appears twice, as columns 2 and 6", "name each column once");
  BAD_TABLE("e4.csv", "note,a0,a1,a2,b,note\n1,2,3,4,5,6\n", ab, 2, NULL, "'note' appears twice, as columns 1 and 6");
  BAD_TABLE("e5.csv", "a0,,a1,a2,b,\n1,2,3,4,5,6\n", ab, 2, NULL, "columns 2 and 6 have no name");
  BAD_TABLE("e6.csv", "a0,a1,a2,b,b0\n1,2,3,4,5\n", ab, 2, NULL,
            "the columns 'b' (column 4) and 'b0' (column 5) name the same value");
  static const Columns clash[2] = {{"x", 2, 0, false, 0}, {"x1", 1, 0, false, 0}};
  BAD_TABLE("e7.csv", "x0,x1\n1,2\n", clash, 2, NULL, "the column 'x1' could belong to 'x' or to 'x1'");
  BAD_TABLE("e8.csv", "a0,a1,a2,b,label\n1,2,3,4,5\n", ab, 2, &label, "line 2, column 5 (label)", "label 5",
            "outside [0, 4)");
  BAD_TABLE("e9.csv", "a0,a1,a2,b\n1,2,x,4\n", ab, 2, NULL, "line 2, column 3 (a2)", "'x' is not a number");
  BAD_TABLE("e10.csv", "", ab, 2, &y2, "is empty", "a0,a1,a2,b,y0,y1");
  // a value float32 cannot hold is refused, not read as an infinity
  BAD_TABLE("e12.csv", "a0,a1,a2,b,y0,y1\n1,2,3,1e39,5,6\n", ab, 2, &y2, "line 2, column 4 (b)",
            "1e39 is beyond the range of a 32-bit float");
  BAD_TABLE("e13.csv", "a0,a1,a2,b,y0,y1\n1,2,3,4,5,-4e38\n", ab, 2, &y2, "line 2, column 6 (y1)", "beyond the range");
  BAD_TABLE("e14.csv", "\xEF\xBB\xBF\n", ab, 2, &y2, "is empty");
  {   // a NUL byte inside a number: "2\0" "003" read as 2, the rest of the line unseen
    static const char nul[] = "a0,a1,a2,b\n1,2,3,4\n1,2\0" "003,4\n";
    Dataset ds;
    char err[1024];
    t_write(t_path("e15.csv"), nul, sizeof nul - 1);
    CHECK_ERR(data_load_table_csv(t_path("e15.csv"), ab, 2, NULL, &ds, err, sizeof err), err, "e15.csv: line 3, column 2 "
              "(a1): the field holds a NUL byte", "is it really a CSV text file?");
  }
  static const Columns wide = {"p", 784, 0, false, 0};
  BAD_TABLE("e11.csv", "label,pixel0\n1,2\n", &wide, 1, NULL, "no column 'p0'", "the input (for example p0,...,p783)");
}

// Blank lines reserve no rows: 4M of them under a header of 65536 columns
// once reserved 4M rows of 65536 floats, a terabyte.
static void test_blank_lines(void) {
  static const Columns p = {"p", 65536, 0, false, 0};
  StrBuf b = {0};
  for (int i = 0; i < 65536; i++)
    sb_printf(&b, "%sp%d", i ? "," : "", i);
  sb_putc(&b, '\n');
  for (int i = 0; i < 65536; i++)
    sb_printf(&b, "%s%d", i ? "," : "", i % 7);
  for (int i = 0; i < 4 << 20; i++)
    sb_putc(&b, '\n');
  t_write(t_path("blank.csv"), b.data, b.len);
  sb_free(&b);
  Dataset ds;
  char err[1024];
  bool ok = data_load_table_csv(t_path("blank.csv"), &p, 1, NULL, &ds, err, sizeof err);
  CHECK(ok && ds.n == 1 && ds.x[65535] == 65535 % 7, "blank lines: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
}

// Rows whose skipped columns are empty take less than two bytes a column:
// the arrays are sized by one byte for each such column (two for a value),
// so every row has its place (sized at two a column, 300 rows of 1000
// empty columns got places for 150).
static void test_empty_columns(void) {
  static const Columns x = {"x", 2, 0, false, 0}, y = {"y", 1, 0, false, 0};
  StrBuf b = {0};
  sb_printf(&b, "x0,x1,y");
  for (int i = 0; i < 1000; i++)
    sb_printf(&b, ",c%d", i);
  sb_putc(&b, '\n');
  for (int r = 0; r < 300; r++) {
    sb_printf(&b, "%d,1,2", r % 10);
    for (int i = 0; i < 1000; i++)
      sb_putc(&b, ',');
    sb_putc(&b, '\n');
  }
  t_write(t_path("empty-cols.csv"), b.data, b.len);
  sb_free(&b);
  Dataset ds;
  char err[1024];
  bool ok = data_load_table_csv(t_path("empty-cols.csv"), &x, 1, &y, &ds, err, sizeof err);
  CHECK(ok && ds.n == 300 && ds.x[2 * 299] == 9 && ds.t[299] == 2, "empty skipped columns: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
}

// Double-quoted fields, as spreadsheets and pandas write them: a quoted
// header name, a text column holding commas and doubled quotes, a quoted
// number; a quote left open is an error in its column.
static void test_quotes(void) {
  static const Columns x = {"x", 2, 0, false, 0}, y = {"y", 1, 0, false, 0};
  Dataset ds;
  char err[1024];
  bool ok = load("q.csv", "\"x0\",x1,note,y\n1,2,\"Smith, J.\",3\n\"4.5\",5,\"say \"\"hi\"\", ok\",6\n", &x, 1, &y,
                 &ds, err, sizeof err);
  CHECK(ok && ds.n == 2 && ds.x[0] == 1 && ds.x[2] == 4.5f && ds.x[3] == 5 && ds.t[0] == 3 && ds.t[1] == 6,
        "quoted fields: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  // blanks around names and numbers, as a header written by hand has them
  ok = load("q-blanks.csv", "x0, x1 ,\ty\n 1,2 , 3\t\n", &x, 1, &y, &ds, err, sizeof err);
  CHECK(ok && ds.n == 1 && ds.x[0] == 1 && ds.x[1] == 2 && ds.t[0] == 3, "blanks: %s", ok ? "" : err);
  if (ok)
    data_free(&ds);
  BAD_TABLE("q2.csv", "x0,x1,y\n1,2,\"3\n", &x, 1, &y, "line 2, column 3 (y)", "quote that opens the field is not closed");
  // a text column holding a line break, as a spreadsheet may write it: the
  // open quote is blamed, not the line that follows it
  BAD_TABLE("q4.csv", "x0,x1,note,y\n1,2,\"two\nlines\",3\n", &x, 1, &y, "line 2, column 3 (note)",
            "not closed on its line");
  // a file separated by semicolons or tabs is named as such, not 'no column x0'
  BAD_TABLE("q6.csv", "x0;x1;y\n1;2;3\n", &x, 1, &y, "line 1: the header is one column", "separated by semicolons",
            "comma-separated");
  BAD_TABLE("q7.csv", "x0\tx1\ty\n1\t2\t3\n", &x, 1, &y, "separated by tabs");
  // a bad value in a quoted header's column is named without the quotes
  BAD_TABLE("q5.csv", "\"x0\",x1,\"y\"\n1,2,z\n", &x, 1, &y, "line 2, column 3 (y)", "'z' is not a number");
  BAD_TABLE("q3.csv", "x0,x1,note,y\n1,2,\"a,b\",3,4\n", &x, 1, &y, "line 2: expected 4 fields", "found 5");
}

// An integer input (i32): whole numbers as int32 bits in the row, beside a
// float input; a fraction and an index outside the vocab are errors naming
// the line and the column.
static void test_integers(void) {
  static const Columns in[2] = {{"tok", 3, 0, true, 10}, {"b", 1, 0, false, 0}};
  Dataset ds;
  char err[1024];
  bool ok = load("i.csv", "b,tok2,label,tok0,tok1\n0.5,9,1,0,3\n-2,-0,0,7,1e0\n", in, 2, &label, &ds, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    int32_t v[8];
    memcpy(v, ds.x, sizeof v);
    CHECK(v[0] == 0 && v[1] == 3 && v[2] == 9 && ds.x[3] == 0.5f && v[4] == 7 && v[5] == 1 && v[6] == 0 &&
          ds.x[7] == -2, "integer rows: %d %d %d %g | %d %d %d %g", v[0], v[1], v[2], ds.x[3], v[4], v[5], v[6],
          ds.x[7]);
    data_free(&ds);
  }
  BAD_TABLE("i1.csv", "tok0,tok1,tok2,b\n1,2,3,4\n1,2.5,3,4\n", in, 2, NULL, "line 3, column 2 (tok1)",
            "2.5 is not a whole number", "input 'tok' holds integers (i32)");
  BAD_TABLE("i2.csv", "tok0,tok1,tok2,b\n1,2,10,4\n", in, 2, NULL, "line 2, column 3 (tok2)",
            "index 10 of input 'tok' is outside [0, 10)", "vocab");
  BAD_TABLE("i3.csv", "tok0,tok1,tok2,b\n-1,2,3,4\n", in, 2, NULL, "index -1 of input 'tok' is outside [0, 10)");
  static const Columns any = {"tok", 1, 0, true, 0};   // no bound: any int32
  ok = load("i4.csv", "tok\n-5\n2147483647\n", &any, 1, NULL, &ds, err, sizeof err);
  int32_t w[2] = {0, 0};
  if (ok) {
    memcpy(w, ds.x, sizeof w);
    data_free(&ds);
  }
  CHECK(ok && w[0] == -5 && w[1] == 2147483647, "unbounded integers: %s", ok ? "" : err);
}

int main(void) {
  t_tmpdir("table");
  test_quotes();
  test_empty_columns();
  test_valid();
  test_errors();
  test_blank_lines();
  test_integers();
  return t_finish("test_table");
}
