// fuzz_table_csv.c: the named-column CSV table (x0,x1,y...), for a vector
// input with a scalar target and a scalar input with a vector target.
// Every loaded value must be finite.
#include "fuzz.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  for (int k = 0; k < 2; k++) {
    char err[1024] = "";
    RtDataset ds;
    bool ok = k ? rt_load_table_csv(path, "t", 1, "y", 3, &ds, err, sizeof err)
                : rt_load_table_csv(path, "x", 2, "y", 1, &ds, err, sizeof err);
    fuzz_check_message(ok, err, "rt_load_table_csv");
    if (!ok)
      continue;
    for (int64_t i = 0; i < ds.n * ds.dim; i++)
      if (!isfinite(ds.x[i]))
        abort();
    for (int64_t i = 0; i < ds.n * ds.tdim; i++)
      if (!isfinite(ds.t[i]))
        abort();
    rt_dataset_free(&ds);
  }
  return 0;
}
