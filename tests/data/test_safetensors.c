// test_safetensors.c: checkpoints: a round trip of every dtype (scalars,
// zero-size tensors, odd names, metadata), a file as another writer might
// lay it out, every malformed file the reader must refuse, and atomic
// writes that leave an existing file alone when they fail.
#include "../test.h"
#include "data.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

static void test_round_trip(void) {
  float f32[6] = {1.5f, -2, 3.25f, 0, 1e-30f, -7};
  double f64[4] = {3.141592653589793, -1e300, 0.1, 2};
  int32_t i32 = -123456;
  int64_t i64[4] = {INT64_MIN, INT64_MAX, 0, -1};
  uint8_t u8[5] = {0, 1, 127, 128, 255};
  StTensor t[] = {
      {.name = "u8", .dtype = ST_U8, .ndim = 1, .shape = {5}, .data = u8},
      {.name = "fc1.w", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = f32},
      {.name = "scalar", .dtype = ST_I32, .ndim = 0, .data = &i32},
      {.name = "d", .dtype = ST_F64, .ndim = 1, .shape = {4}, .data = f64},
      {.name = "q\"uo\\te\n\xc3\xa9", .dtype = ST_I64, .ndim = 2, .shape = {2, 2}, .data = i64},
      {.name = "empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 3}, .data = NULL},
  };
  StMeta meta[] = {{"step", "1200"}, {"cursor", "epoch=1 pos=2 rng=00ff:0001"}, {"we\"ird", "a\tb\x01"}};
  char err[1024];
  const char *path = t_path("ck.safetensors");
  CHECK(data_st_write(path, t, 6, meta, 3, err, sizeof err), "%s", err);
  StFile f;
  bool ok = data_st_read(path, &f, err, sizeof err);
  CHECK(ok, "%s", err);
  if (!ok)
    return;
  CHECK(f.ntensors == 6 && f.nmeta == 3, "%d tensors, %d metadata", f.ntensors, f.nmeta);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | f.buf[i];
  CHECK(hlen % 8 == 0 && f.buf[8] == '{', "header length %llu", (unsigned long long)hlen);
  for (int i = 0; i < 6; i++) {
    const StTensor *r = data_st_find(&f, t[i].name);
    CHECK(r != NULL, "tensor %s missing", t[i].name);
    if (!r)
      continue;
    size_t n = data_dtype_size(t[i].dtype);
    for (int d = 0; d < t[i].ndim; d++)
      n *= t[i].shape[d];
    CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim && r->nbytes == n, "%s: header", t[i].name);
    CHECK(!memcmp(r->shape, t[i].shape, sizeof(int64_t) * t[i].ndim), "%s: shape", t[i].name);
    CHECK(n == 0 || !memcmp(r->data, t[i].data, n), "%s: data", t[i].name);
    CHECK((uintptr_t)r->data % data_dtype_size(r->dtype) == 0, "%s: aligned", t[i].name);
    CHECK(r->data >= (void *)f.buf && (const unsigned char *)r->data <= f.buf + f.size,
          "%s: points into the file buffer", t[i].name);
  }
  CHECK(!strcmp(f.tensors[0].name, "u8") && !strcmp(f.tensors[5].name, "empty"), "header order kept");
  CHECK(data_st_find(&f, "nope") == NULL, "absent tensor");
  CHECK(!strcmp(data_st_meta(&f, "step"), "1200") && !strcmp(data_st_meta(&f, "we\"ird"), "a\tb\x01"),
        "metadata");
  CHECK(data_st_meta(&f, "absent") == NULL, "absent metadata");
  data_st_free(&f);
  // overwrite it with no metadata and no tensors at all
  CHECK(data_st_write(path, NULL, 0, NULL, 0, err, sizeof err), "%s", err);
  ok = data_st_read(path, &f, err, sizeof err);
  CHECK(ok && f.ntensors == 0 && f.nmeta == 0 && f.size == 16, "empty file: %s", ok ? "" : err);
  if (ok)
    data_st_free(&f);
}

// Writes a file: the header's length, the header, then data.
static const char *craft(const char *name, const char *header, const void *data, size_t n) {
  size_t h = strlen(header);
  unsigned char *b = malloc(8 + h + n + 1);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)h >> 8 * i);
  memcpy(b + 8, header, h);
  if (n)
    memcpy(b + 8 + h, data, n);
  t_write(t_path(name), b, 8 + h + n);
  free(b);
  return t_path(name);
}

// A file laid out as another writer might: metadata last, whitespace, \u
// escapes, a tensor misaligned by the 3-byte one before it.
static void test_foreign(void) {
  unsigned char data[3 + 8];
  float v[2] = {0.5f, -4};
  memcpy(data, "abc", 3);
  memcpy(data + 3, v, 8);
  const char *p = craft("foreign", "{ \"b\\u00e9\\ud83d\\ude00\" : {\"shape\":[3],\"dtype\":\"U8\",\"data_offsets\":[0,3]},\n"
                        "  \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [3, 11]},\n"
                        "  \"__metadata__\": {\"format\": \"pt\", \"\\\"k\\/\": \"\\n\"}}   ", data, sizeof data);
  StFile f;
  char err[1024];
  bool ok = data_st_read(p, &f, err, sizeof err);
  CHECK(ok, "%s", err);
  if (!ok)
    return;
  const StTensor *w = data_st_find(&f, "w"), *b = data_st_find(&f, "b\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(w && b, "names with escapes");
  if (w && b) {
    CHECK(((const float *)w->data)[0] == 0.5f && ((const float *)w->data)[1] == -4, "misaligned data");
    CHECK((uintptr_t)w->data % 4 == 0, "copied to an aligned place");
    CHECK(!memcmp(b->data, "abc", 3), "u8 data");
  }
  CHECK(data_st_meta(&f, "\"k/") && !strcmp(data_st_meta(&f, "\"k/"), "\n"), "escaped metadata");
  data_st_free(&f);
}

#define BAD_ST(name, header, data, n, ...)                                         \
  do {                                                                             \
    StFile f_;                                                                   \
    char err_[1024];                                                               \
    const char *p_ = craft(name, header, data, n);                                 \
    CHECK_ERR(data_st_read(p_, &f_, err_, sizeof err_), err_, p_, __VA_ARGS__);      \
  } while (0)

#define T(name, dtype, shape, b, e) \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_malformed_files(void) {
  static const unsigned char zeros[64];
  StFile f;
  char err[1024];
  t_write(t_path("tiny"), "\x10\0\0", 3);
  CHECK_ERR(data_st_read(t_path("tiny"), &f, err, sizeof err), err, "tiny", "too short");
  t_write(t_path("huge"), "\0\0\0\x10\0\0\0\0{}", 10);   // 256 MiB header
  CHECK_ERR(data_st_read(t_path("huge"), &f, err, sizeof err), err, "huge", "header length 268435456",
            "over the limit");
  t_write(t_path("beyond"), "\xe8\x03\0\0\0\0\0\0{\"a\":1}", 15);
  CHECK_ERR(data_st_read(t_path("beyond"), &f, err, sizeof err), err, "beyond",
            "header length 1000 goes beyond the end of the file (15 bytes)");
  CHECK_ERR(data_st_read(t_path("absent"), &f, err, sizeof err), err, "absent", "cannot read",
            "No such file");

  BAD_ST("j1", "{\"a\":}", NULL, 0, "malformed JSON header at byte 5", "unexpected character '}'");
  BAD_ST("j2", "{\"a\":{\"dtype\":\"F32\",}}", NULL, 0, "at byte 20", "expected a string key");
  BAD_ST("j3", "{\"a", NULL, 0, "at byte 1", "string is not terminated");
  BAD_ST("j4", "{\"a\\q\":1}", NULL, 0, "at byte 3", "invalid escape \\q");
  BAD_ST("j5", "{\"a\\u12g4\":1}", NULL, 0, "\\u must be followed by four hex digits");
  BAD_ST("j6", "{\"a\\ud800x\":1}", NULL, 0, "high surrogate \\uD800");
  BAD_ST("j7", "{\"a\\udc00\":1}", NULL, 0, "low surrogate \\uDC00");
  BAD_ST("j8", "{\"a\nb\":1}", NULL, 0, "control character 0x0a");
  BAD_ST("j9", "{} x", NULL, 0, "at byte 3", "unexpected text after");
  BAD_ST("j10", "{\"a\" 1}", NULL, 0, "expected ':' after the key \"a\"");
  BAD_ST("j11", "{\"a\":[1 2]}", NULL, 0, "expected ',' or ']'");
  BAD_ST("j12", "{\"a\":01}", NULL, 0, "expected ',' or '}'");
  BAD_ST("j13", "{\"a\":1.}", NULL, 0, "no digits after '.'");
  BAD_ST("j14", "", NULL, 0, "unexpected end of the header");
  BAD_ST("j15", "{\"a\":\"\\u0000\"}", NULL, 0, "\\u0000 is not allowed");
  char deep[300];
  memset(deep, '[', 200);
  deep[200] = 0;
  BAD_ST("j16", deep, NULL, 0, "nested more than 64 deep");
  BAD_ST("top", "[1,2]", NULL, 0, "must be a JSON object");

  BAD_ST("d1", "{" T("w", "F17", "[1]", 0, 4) "}", zeros, 4, "tensor 'w'", "unknown dtype 'F17'");
  BAD_ST("d2", "{" T("w", "BF16", "[2]", 0, 4) "}", zeros, 4, "unsupported dtype 'BF16'", "weights are F32", "v.float()");
  BAD_ST("s1", "{" T("w", "F32", "[2]", 0, 4) "}", zeros, 4, "tensor 'w'", "shape [2] of F32",
         "does not match data_offsets [0, 4] (4 bytes)");
  BAD_ST("s2", "{" T("w", "F32", "[-2]", 0, 8) "}", zeros, 8, "shape must be an array", "non-negative");
  BAD_ST("s3", "{" T("w", "F32", "[2.5]", 0, 8) "}", zeros, 8, "shape must be an array");
  BAD_ST("s4", "{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", zeros, 4, "at most 8");
  BAD_ST("s5", "{" T("w", "F32", "[4611686018427387904, 4]", 0, 4) "}", zeros, 4, "does not match");
  BAD_ST("o1", "{" T("w", "F32", "[2]", 0, 8) "}", zeros, 4, "data_offsets [0, 8] go beyond the data",
         "holds 4 bytes");
  BAD_ST("o2", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", zeros, 12,
         "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
  BAD_ST("o3", "{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", zeros, 12,
         "bytes [4, 8) of the data belong to no tensor");
  BAD_ST("o4", "{" T("a", "F32", "[1]", 0, 4) "}", zeros, 8, "the last 4 bytes of the data belong to no tensor");
  BAD_ST("o5", "{" T("a", "F32", "[0]", 8, 4) "}", zeros, 8, "begin <= end");
  BAD_ST("o6", "{" T("a", "F32", "[1]", 4, 8) "}", zeros, 8, "bytes [0, 4) of the data belong to no tensor");
  BAD_ST("n1", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", zeros, 8,
         "duplicate tensor name 'a'");
  BAD_ST("k1", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", zeros, 4, "tensor 'a' has no data_offsets");
  BAD_ST("k2", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", zeros, 4,
         "unexpected key 'x'");
  BAD_ST("k3", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", zeros, 4, "duplicate key 'dtype'");
  BAD_ST("k4", "{\"a\":[1]}", zeros, 4, "tensor 'a': expected an object");
  BAD_ST("m1", "{\"__metadata__\":{\"step\":12}}", NULL, 0, "__metadata__ value of 'step' must be a string");
  BAD_ST("m2", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0, "duplicate metadata key 'k'");
  BAD_ST("m3", "{\"__metadata__\":[]}", NULL, 0, "__metadata__ must be an object");
}

static bool file_equals(const char *path, const char *text) {
  size_t n;
  char *s = read_file(path, &n);
  bool eq = s && n == strlen(text) && !memcmp(s, text, n);
  free(s);
  return eq;
}

// No "*.tmp.*" file is left in dir.
static bool no_temp_files(const char *dir) {
  DIR *d = opendir(dir);
  bool clean = d != NULL;
  for (struct dirent *e; d && (e = readdir(d));)
    clean &= strstr(e->d_name, ".tmp.") == NULL;
  if (d)
    closedir(d);
  return clean;
}

static void test_atomic(void) {
  static float big[1 << 16];
  StTensor t = {.name = "big", .dtype = ST_F32, .ndim = 1, .shape = {1 << 16}, .data = big};
  char err[1024];
  const char *path = t_path("keep.safetensors");
  t_write(path, "old checkpoint", 14);

  // a file-size limit makes the write fail halfway, like a full disk
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  signal(SIGXFSZ, SIG_IGN);
  setrlimit(RLIMIT_FSIZE, &lim);
  bool ok = data_st_write(path, &t, 1, NULL, 0, err, sizeof err);
  setrlimit(RLIMIT_FSIZE, &old);
  CHECK_ERR(ok, err, path, "cannot write the checkpoint", "File too large", "was left as it was", "ulimit");
  CHECK(file_equals(path, "old checkpoint"), "the old file changed");
  CHECK(no_temp_files(t_dir), "a temporary file was left behind");

  // the target is a directory, or a FIFO: refused before anything is written
  char dir[600];
  snprintf(dir, sizeof dir, "%s/adir", t_dir);
  mkdir(dir, 0755);
  t_write(t_path("adir/inside"), "x", 1);
  CHECK_ERR(data_st_write(dir, &t, 1, NULL, 0, err, sizeof err), err, dir, "is a directory, not a file a checkpoint "
            "may replace; nothing was written");
  CHECK(file_equals(t_path("adir/inside"), "x") && no_temp_files(t_dir), "directory untouched");
  char fifo[600];
  snprintf(fifo, sizeof fifo, "%s/afifo", t_dir);
  struct stat fst;
  CHECK(mkfifo(fifo, 0600) == 0);
  CHECK_ERR(data_st_write(fifo, &t, 1, NULL, 0, err, sizeof err), err, fifo, "is a pipe, a socket or a device");
  CHECK(stat(fifo, &fst) == 0 && S_ISFIFO(fst.st_mode) && no_temp_files(t_dir), "the FIFO was replaced");
  unlink(fifo);
  CHECK_ERR(data_st_write("", &t, 1, NULL, 0, err, sizeof err), err, "the checkpoint's path is empty");

  CHECK_ERR(data_st_write(t_path("no/such/dir/ck"), &t, 1, NULL, 0, err, sizeof err), err,
            "no/such/dir/ck", "creating", "No such file or directory", "does not exist");

  // a read-only directory (root may write anyway, so only checked for others)
  char ro[600];
  snprintf(ro, sizeof ro, "%s/ro", t_dir);
  mkdir(ro, 0755);
  t_write(t_path("ro/ck"), "old", 3);
  chmod(ro, 0555);
  if (geteuid() != 0) {
    CHECK_ERR(data_st_write(t_path("ro/ck"), &t, 1, NULL, 0, err, sizeof err), err, "ro/ck",
              "Permission denied", "writable");
    CHECK(file_equals(t_path("ro/ck"), "old") && no_temp_files(ro), "read-only directory untouched");
  }
  chmod(ro, 0755);

  CHECK(data_st_write(path, &t, 1, NULL, 0, err, sizeof err), "%s", err);   // now it works
  StFile f;
  CHECK(data_st_read(path, &f, err, sizeof err) && f.ntensors == 1, "%s", err);
  data_st_free(&f);
}

static void test_bad_inputs(void) {
  float x = 1;
  char err[1024];
  const char *p = t_path("never");
  StTensor two[2] = {{.name = "a", .dtype = ST_F32, .ndim = 0, .data = &x},
                     {.name = "a", .dtype = ST_F32, .ndim = 0, .data = &x}};
  CHECK_ERR(data_st_write(p, two, 2, NULL, 0, err, sizeof err), err, "tensor name 'a' is given twice");
  StTensor reserved = {.name = "__metadata__", .dtype = ST_F32, .data = &x};
  CHECK_ERR(data_st_write(p, &reserved, 1, NULL, 0, err, sizeof err), err, "reserves");
  StTensor neg = {.name = "n", .dtype = ST_F32, .ndim = 1, .shape = {-1}, .data = &x};
  CHECK_ERR(data_st_write(p, &neg, 1, NULL, 0, err, sizeof err), err, "negative or too large shape");
  StTensor nodata = {.name = "n", .dtype = ST_F32, .ndim = 1, .shape = {2}};
  CHECK_ERR(data_st_write(p, &nodata, 1, NULL, 0, err, sizeof err), err, "has no data");
  StMeta dup[2] = {{"k", "1"}, {"k", "2"}};
  CHECK_ERR(data_st_write(p, NULL, 0, dup, 2, err, sizeof err), err, "metadata key 'k' is given twice");
  struct stat st;
  CHECK(stat(p, &st) != 0, "nothing was written");
}

// The header alone (data_st_read_header), then tensors one by one
// (data_st_read_tensor): the same tensors and bytes as a whole read, and a
// file that changed in between is refused.
static void test_header_only(void) {
  float a[5] = {1, 2, 3, 4, 5}, b[3] = {-1, 0.5f, 9};
  StTensor t[] = {{.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {5}, .data = a},
                  {.name = "b", .dtype = ST_F32, .ndim = 2, .shape = {1, 3}, .data = b}};
  char err[1024];
  const char *path = t_path("h.safetensors");
  CHECK(data_st_write(path, t, 2, NULL, 0, err, sizeof err), "%s", err);
  StFile whole, head;
  bool ok = data_st_read(path, &whole, err, sizeof err) && data_st_read_header(path, &head, err, sizeof err);
  CHECK(ok, "%s", err);
  if (!ok)
    return;
  CHECK(head.ntensors == 2 && head.size == whole.size, "the header's tensors and the file's size");
  for (int i = 0; i < 2; i++) {
    const StTensor *w = data_st_find(&whole, t[i].name), *h = data_st_find(&head, t[i].name);
    float got[5] = {0};
    CHECK(h && !h->data && h->offset == w->offset && h->nbytes == w->nbytes, "%s: header alone", t[i].name);
    CHECK(data_st_read_tensor(&head, h, got, err, sizeof err) && !memcmp(got, t[i].data, h->nbytes), "%s: read: %s",
          t[i].name, err);
  }
  t_write(path, "changed", 7);   // another file now: refused, not read past its end
  float got[5];
  CHECK_ERR(data_st_read_tensor(&head, data_st_find(&head, "b"), got, err, sizeof err), err, "h.safetensors",
            "reading tensor 'b' failed", "no longer the one whose header was read");
  data_st_free(&whole);
  data_st_free(&head);
  CHECK_ERR(data_st_read_header(t_path("tiny-nothing"), &head, err, sizeof err), err, "tiny-nothing");
}

int main(void) {
  t_tmpdir("st");
  test_round_trip();
  test_header_only();
  test_foreign();
  test_malformed_files();
  test_atomic();
  test_bad_inputs();
  return t_finish("test_safetensors");
}
