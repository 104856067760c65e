// test_batch.c: statistics and normalization, the seeded validation split,
// and the batcher: same seed same order, a fresh order each epoch, the last
// partial batch, and a cursor saved and restored mid-run continuing bit for
// bit.
#include "../test.h"
#include "data.h"

#include <math.h>

// n samples of dim 3: sample i is (10 i, 10 i + 1, 10 i + 2), label i % 4.
static Dataset make_ds(int64_t n, bool labeled) {
  Dataset ds = {.n = n, .ndim = 1, .shape = {3}, .dim = 3, .nclasses = labeled ? 4 : 0};
  ds.x = xmalloc(sizeof(float) * n * 3);
  ds.y = labeled ? xmalloc(sizeof(int32_t) * n) : NULL;
  for (int64_t i = 0; i < n; i++) {
    for (int k = 0; k < 3; k++)
      ds.x[i * 3 + k] = (float)(10 * i + k);
    if (labeled)
      ds.y[i] = (int32_t)(i % 4);
  }
  ds.source = xstrdup("made-up data");
  return ds;
}

static int64_t sample_of(const float *x) { return (int64_t)x[0] / 10; }

static void test_stats(void) {
  Dataset ds = make_ds(10, true);
  double mean, std, m = 0, v = 0;
  for (int i = 0; i < 30; i++)
    m += ds.x[i] / 30.0;
  for (int i = 0; i < 30; i++)
    v += (ds.x[i] - m) * (ds.x[i] - m) / 30.0;
  data_stats(&ds, &mean, &std);
  CHECK(fabs(mean - m) < 1e-9 && fabs(std - sqrt(v)) < 1e-9, "mean %g std %g", mean, std);
  data_normalize(&ds, mean, std);
  CHECK(fabs(ds.x[0] - (0 - m) / sqrt(v)) < 1e-6, "normalized x[0] %g", ds.x[0]);
  data_stats(&ds, &mean, &std);
  CHECK(fabs(mean) < 1e-6 && fabs(std - 1) < 1e-6, "after normalizing: mean %g std %g", mean, std);
  data_free(&ds);
}

static void check_split(const Dataset *ds, const Dataset *tr, const Dataset *va, int64_t nval) {
  CHECK(va->n == nval && tr->n == ds->n - nval, "sizes %lld + %lld", (long long)tr->n, (long long)va->n);
  char *seen = xcalloc(ds->n, 1);
  const Dataset *parts[2] = {tr, va};
  for (int p = 0; p < 2; p++)
    for (int64_t i = 0; i < parts[p]->n; i++) {
      int64_t s = sample_of(parts[p]->x + i * 3);
      CHECK(!seen[s], "sample %lld twice", (long long)s);
      seen[s] = 1;
      CHECK(parts[p]->y[i] == s % 4, "label follows its sample");
      CHECK(i == 0 || s > sample_of(parts[p]->x + (i - 1) * 3), "original order kept");
    }
  free(seen);
}

static void test_split(void) {
  Dataset ds = make_ds(100, true), tr, va, tr2, va2;
  char err[512];
  CHECK(data_split(&ds, 0.25, 7, &tr, &va, err, sizeof err), "%s", err);
  check_split(&ds, &tr, &va, 25);
  CHECK(data_split(&ds, 0.25, 7, &tr2, &va2, err, sizeof err), "%s", err);
  CHECK(!memcmp(va.x, va2.x, sizeof(float) * 75), "same seed, same split");
  data_free(&tr2);
  data_free(&va2);
  CHECK(data_split(&ds, 0.25, 8, &tr2, &va2, err, sizeof err), "%s", err);
  CHECK(memcmp(va.x, va2.x, sizeof(float) * 75), "another seed, another split");
  data_free(&tr2);
  data_free(&va2);
  data_free(&tr);
  data_free(&va);
  Dataset small = make_ds(10, true);
  CHECK(data_split(&small, 0.25, 1, &tr, &va, err, sizeof err), "%s", err);
  check_split(&small, &tr, &va, 3);   // round(2.5) = 3
  data_free(&tr);
  data_free(&va);
  for (double f = 0; f <= 1; f += 1) {
    CHECK(data_split(&small, f, 1, &tr, &va, err, sizeof err), "%s", err);
    check_split(&small, &tr, &va, f == 0 ? 0 : 10);
    data_free(&tr);
    data_free(&va);
  }
  CHECK_ERR(data_split(&small, 1.5, 1, &tr, &va, err, sizeof err), err, "made-up data", "1.5", "outside [0, 1]");
  CHECK_ERR(data_split(&small, NAN, 1, &tr, &va, err, sizeof err), err, "outside [0, 1]");
  data_free(&small);
  data_free(&ds);
}

// Runs nb batches and records the sample order and batch sizes.
static void run(Batcher *b, int nb, int64_t *order, int64_t *sizes) {
  float x[4 * 3];
  int32_t y[4];
  int64_t k = 0;
  for (int i = 0; i < nb; i++) {
    sizes[i] = data_batcher_next(b, x, y);
    for (int64_t j = 0; j < sizes[i]; j++) {
      order[k++] = sample_of(x + j * 3);
      CHECK(y[j] == order[k - 1] % 4, "label %d for sample %lld", y[j], (long long)order[k - 1]);
    }
  }
}

static void test_batcher(void) {
  Dataset ds = make_ds(10, true);
  Batcher a, b;
  char err[512];
  int64_t oa[40], ob[40], sa[12], sb[12];
  CHECK(data_batcher_init(&a, &ds, 4, true, 42, err, sizeof err), "%s", err);
  CHECK(data_batcher_nbatches(&a) == 3, "nbatches");
  run(&a, 12, oa, sa);   // three epochs of 4, 4, 2, then 0
  static const int64_t expect[4] = {4, 4, 2, 0};
  for (int i = 0; i < 12; i++)
    CHECK(sa[i] == expect[i % 4], "batch %d has %lld samples", i, (long long)sa[i]);
  for (int e = 0; e < 3; e++) {
    int seen[10] = {0};
    for (int i = 0; i < 10; i++)
      seen[oa[e * 10 + i]]++;
    for (int i = 0; i < 10; i++)
      CHECK(seen[i] == 1, "epoch %d: sample %d seen %d times", e, i, seen[i]);
  }
  CHECK(memcmp(oa, oa + 10, sizeof(int64_t) * 10) && memcmp(oa + 10, oa + 20, sizeof(int64_t) * 10),
        "each epoch has its own order");
  CHECK(data_batcher_init(&b, &ds, 4, true, 42, err, sizeof err), "%s", err);
  run(&b, 12, ob, sb);
  CHECK(!memcmp(oa, ob, sizeof oa[0] * 30), "same seed, same order");
  data_batcher_free(&b);
  CHECK(data_batcher_init(&b, &ds, 4, true, 43, err, sizeof err), "%s", err);
  run(&b, 12, ob, sb);
  CHECK(memcmp(oa, ob, sizeof oa[0] * 30), "another seed, another order");
  data_batcher_free(&b);
  CHECK(data_batcher_init(&b, &ds, 4, false, 42, err, sizeof err), "%s", err);
  run(&b, 8, ob, sb);
  for (int i = 0; i < 20; i++)
    CHECK(ob[i] == i % 10, "without shuffle, stored order");
  data_batcher_free(&b);
  data_batcher_free(&a);
  CHECK_ERR(data_batcher_init(&a, &ds, 0, true, 1, err, sizeof err), err, "batch size 0");
  data_free(&ds);
}

// drop_last: batches of 4 of 10 samples, two per epoch (the 2 left over
// dropped, each epoch others, as PyTorch's DataLoader(drop_last=True)), the
// same order as without it; 8 in batches of 4 keeps both.
static void test_drop_last(void) {
  Dataset ds = make_ds(10, true);
  Batcher a, b;
  char err[512];
  int64_t oa[40], ob[40], sa[12], sb[12];
  CHECK(data_batcher_init(&a, &ds, 4, true, 42, err, sizeof err), "%s", err);
  CHECK(data_batcher_init(&b, &ds, 4, true, 42, err, sizeof err), "%s", err);
  b.drop_last = true;
  CHECK(data_batcher_nbatches(&b) == 2, "drop_last: 2 batches of 4 in 10, found %lld",
        (long long)data_batcher_nbatches(&b));
  run(&a, 12, oa, sa);   // 4, 4, 2, 0 per epoch
  run(&b, 9, ob, sb);    // 4, 4, 0 per epoch
  static const int64_t expect[3] = {4, 4, 0};
  for (int i = 0; i < 9; i++)
    CHECK(sb[i] == expect[i % 3], "drop_last: batch %d has %lld samples", i, (long long)sb[i]);
  for (int e = 0; e < 3; e++)
    CHECK(!memcmp(oa + 10 * e, ob + 8 * e, sizeof(int64_t) * 8), "drop_last: epoch %d's order is the same", e);
  data_batcher_free(&a);
  data_batcher_free(&b);
  data_free(&ds);
  ds = make_ds(8, true);
  CHECK(data_batcher_init(&a, &ds, 4, false, 1, err, sizeof err), "%s", err);
  a.drop_last = true;
  run(&a, 4, oa, sa);
  CHECK(data_batcher_nbatches(&a) == 2 && sa[0] == 4 && sa[1] == 4 && sa[2] == 0 && sa[3] == 4,
        "drop_last keeps whole batches");
  data_batcher_free(&a);
  data_free(&ds);
}

// Saves the cursor after `before` batches, restores it in a batcher made
// with another seed, and checks that both continue the same way.
static void resume_after(int before) {
  Dataset ds = make_ds(10, true);
  Batcher a, b;
  char err[512], text[128];
  float xa[12], xb[12];
  int32_t ya[4], yb[4];
  data_batcher_init(&a, &ds, 4, true, 9, err, sizeof err);
  for (int i = 0; i < before; i++)
    data_batcher_next(&a, xa, ya);
  data_cursor_format(data_batcher_cursor(&a), text, sizeof text);
  Cursor c;
  CHECK(data_cursor_parse(text, &c), "cannot parse '%s'", text);
  data_batcher_init(&b, &ds, 4, true, 12345, err, sizeof err);
  CHECK(data_batcher_set_cursor(&b, c, err, sizeof err), "%s", err);
  for (int i = 0; i < 20; i++) {
    int64_t na = data_batcher_next(&a, xa, ya), nb = data_batcher_next(&b, xb, yb);
    CHECK(na == nb && !memcmp(xa, xb, sizeof(float) * 3 * na) && !memcmp(ya, yb, sizeof(int32_t) * na),
          "after resuming at batch %d, batch %d differs", before, i);
  }
  CHECK(a.epoch == b.epoch && a.pos == b.pos, "cursors agree");
  data_batcher_free(&a);
  data_batcher_free(&b);
  data_free(&ds);
}

static void test_cursor(void) {
  for (int before = 0; before < 10; before++)   // mid-epoch, at the partial batch, at epoch ends
    resume_after(before);
  Dataset ds = make_ds(10, false);
  Batcher b;
  char err[512];
  data_batcher_init(&b, &ds, 4, true, 1, err, sizeof err);
  float x[12];
  CHECK(data_batcher_next(&b, x, NULL) == 4, "unlabeled batches");
  Cursor c = data_batcher_cursor(&b);
  c.pos = 11;
  CHECK_ERR(data_batcher_set_cursor(&b, c, err, sizeof err), err, "made-up data", "sample 11 of 10");
  data_batcher_free(&b);
  data_free(&ds);
  CHECK(!data_cursor_parse("epoch=1 pos=2", &c), "short cursor");
  CHECK(!data_cursor_parse("epoch=1 pos=2 rng=0:2", &c), "even rng increment");
  CHECK(!data_cursor_parse("epoch=1 pos=2 rng=0:1 x", &c), "trailing text");
  CHECK(data_cursor_parse("epoch=1 pos=2 rng=ff:1", &c) && c.rng.state == 255 && c.epoch == 1, "parse");
}

int main(void) {
  t_tmpdir("batch");
  test_stats();
  test_split();
  test_batcher();
  test_drop_last();
  test_cursor();
  return t_finish("test_batch");
}
