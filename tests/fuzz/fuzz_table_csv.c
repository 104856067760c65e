// fuzz_table_csv.c: the named-column CSV table (x0,x1,y...), for a vector
// input with a scalar target, a scalar input with a vector target, two
// inputs with a class target, and an integer input (i32) of vocab 5 beside
// a float one. Every loaded value must be finite (an integer input's: an
// int32 in [0, 5)), and every label within its classes.
#include "fuzz.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  static const Columns x2[] = {{"x", 2, 0, false, 0}}, t1[] = {{"t", 1, 0, false, 0}}, ab[] = {{"a", 3, 0, false, 0}, {"b", 1, 0, false, 0}};
  static const Columns y1 = {"y", 1, 0, false, 0}, y3 = {"y", 3, 0, false, 0}, label = {"label", 1, 4, false, 0};
  static const Columns tb[] = {{"t", 2, 0, true, 5}, {"b", 1, 0, false, 0}};
  static const struct {
    const Columns *in;
    int nin;
    const Columns *target;
  } layouts[] = {{x2, 1, &y1}, {t1, 1, &y3}, {ab, 2, &label}, {tb, 2, &label}};
  for (int k = 0; k < 4; k++) {
    char err[1024] = "";
    Dataset ds;
    bool ok = data_load_table_csv(path, layouts[k].in, layouts[k].nin, layouts[k].target, &ds, err, sizeof err);
    fuzz_check_message(ok, err, "data_load_table_csv");
    if (!ok)
      continue;
    for (int64_t i = 0; i < ds.n * ds.dim; i++) {
      int32_t v;
      memcpy(&v, &ds.x[i], sizeof v);
      if (k == 3 && i % 3 < 2 ? v < 0 || v >= 5 : !isfinite(ds.x[i]))
        abort();
    }
    for (int64_t i = 0; i < ds.n * ds.tdim; i++)
      if (!isfinite(ds.t[i]))
        abort();
    for (int64_t i = 0; ds.y && i < ds.n; i++)
      if (ds.y[i] < 0 || ds.y[i] >= 4)
        abort();
    data_free(&ds);
  }
  return 0;
}
