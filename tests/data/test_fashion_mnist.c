// test_fashion_mnist.c: reads Debian's dataset-fashion-mnist package (IDX.gz
// files). Skipped (exit code 77) where the package is not installed.
//
//   test_fashion_mnist [DIR]    DIR defaults to /usr/share/datasets/fashion-mnist
#include "../test.h"
#include "data.h"

#include <math.h>
#include <sys/stat.h>

// Checks a split against facts about the published files.
static void check_split(const Dataset *ds, int64_t n, const int32_t *first, int img0_sum, int center,
                        double mean) {
  CHECK(ds->n == n && ds->ndim == 2 && ds->shape[0] == 28 && ds->shape[1] == 28 && ds->dim == 784,
        "%lld samples of %lldx%lld", (long long)ds->n, (long long)ds->shape[0], (long long)ds->shape[1]);
  CHECK(ds->nclasses == 10, "nclasses %d", ds->nclasses);
  for (int i = 0; i < 10; i++)
    CHECK(ds->y[i] == first[i], "label %d is %d, expected %d", i, ds->y[i], first[i]);
  int64_t count[10] = {0};
  for (int64_t i = 0; i < ds->n; i++)
    count[ds->y[i]]++;
  for (int c = 0; c < 10; c++)
    CHECK(count[c] == n / 10, "class %d has %lld samples", c, (long long)count[c]);
  double s = 0;
  float x[784];
  data_rows(ds, NULL, 0, 1, x);
  for (int i = 0; i < 784; i++)
    s += x[i];
  CHECK(fabs(s * 255 - img0_sum) < 0.01, "image 0 sums to %g, expected %d", s * 255, img0_sum);
  CHECK(x[14 * 28 + 14] == center / 255.0f, "centre pixel %g", x[14 * 28 + 14] * 255);
  double m, sd;
  data_stats(ds, &m, &sd);
  CHECK(fabs(m - mean) < 1e-6, "mean %.6f, expected %.6f", m, mean);
  CHECK(sd > 0.34 && sd < 0.37, "std %.4f", sd);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : RT_FASHION_MNIST_DIR;
  struct stat st;
  if (stat(dir, &st) != 0) {
    printf("%s is absent (apt install dataset-fashion-mnist)\n", dir);
    return t_skip("test_fashion_mnist", "no Fashion-MNIST");
  }
  t_tmpdir("fmnist");
  Dataset train, test;
  char err[2048];
  double t0 = now_seconds();
  bool ok = data_load_idx_dir(dir, "train", 10, &train, err, sizeof err);
  double t1 = now_seconds();
  CHECK(ok, "%s", err);
  if (!ok)
    return t_finish("test_fashion_mnist");
  printf("test_fashion_mnist: train loaded in %.2f s\n", t1 - t0);
  check_split(&train, 60000, (const int32_t[]){9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247, 217, 0.2860405969887955);
  ok = data_load_idx_dir(dir, "test", 10, &test, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    check_split(&test, 10000, (const int32_t[]){9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456, 110, 0.28684928071228494);
    data_free(&test);
  }
  Dataset tr, va;
  CHECK(data_split(&train, 0.1, 1, &tr, &va, err, sizeof err), "%s", err);
  CHECK(tr.n == 54000 && va.n == 6000, "split %lld + %lld", (long long)tr.n, (long long)va.n);
  Batcher b;
  CHECK(data_batcher_init(&b, &tr, 64, true, 1, err, sizeof err), "%s", err);
  float *x = malloc(sizeof(float) * 64 * 784);
  int32_t y[64];
  int64_t nb = 0, last = 0, k;
  while ((k = data_batcher_next(&b, x, y)) > 0)
    nb++, last = k;
  CHECK(nb == 844 && last == 54000 - 843 * 64, "%lld batches, the last of %lld", (long long)nb, (long long)last);
  free(x);
  data_batcher_free(&b);
  data_free(&tr);
  data_free(&va);
  data_free(&train);
  return t_finish("test_fashion_mnist");
}
