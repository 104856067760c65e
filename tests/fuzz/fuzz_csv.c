// fuzz_csv.c: the digit-recognizer CSV (label,pixel0,...), with the class
// count given and inferred. Every loaded value must be a pixel in [0, 1].
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  for (int nclasses = 0; nclasses <= 10; nclasses += 10) {
    char err[1024] = "";
    Dataset ds;
    bool ok = data_load_csv(path, nclasses, &ds, err, sizeof err);
    fuzz_check_message(ok, err, "data_load_csv");
    if (!ok)
      continue;
    for (int64_t i = 0; i < ds.n * ds.dim; i++)
      if (!(ds.x[i] >= 0 && ds.x[i] <= 1))
        abort();
    for (int64_t i = 0; ds.y && i < ds.n; i++)
      if (ds.y[i] < 0 || ds.y[i] >= ds.nclasses)
        abort();
    data_free(&ds);
  }
  return 0;
}
