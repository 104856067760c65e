// safetensors.c: checkpoints in the safetensors format
// (github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON, then the tensors' bytes back to back:
//
//   {"__metadata__": {"step": "1200"},
//    "fc1.w": {"dtype": "F32", "shape": [784, 128], "data_offsets": [0, 401408]}, ...}
//
// Offsets count from the end of the header. The writer pads the header with
// spaces to a multiple of 8 and stores wider dtypes first, so every tensor
// is aligned to its element size; it writes a temporary file and renames
// it, so a crash never leaves a torn checkpoint. The reader checks all that
// a damaged or foreign file can get wrong, with a small JSON parser of its
// own, and points into one buffer holding the whole file.
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c stores tensors in host byte order, which must be little-endian"
#endif

static const char *const dtype_names[] = {"F32", "F64", "I32", "I64", "U8"};
static const size_t dtype_sizes[] = {4, 8, 4, 8, 1};

const char *data_dtype_name(StDType t) { return dtype_names[t]; }
size_t data_dtype_size(StDType t) { return dtype_sizes[t]; }

// numel * elem, or false when a product overflows size_t.
static bool tensor_bytes(int ndim, const int64_t *shape, size_t elem, size_t *out) {
  size_t n = elem;
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0 || __builtin_mul_overflow(n, (size_t)shape[i], &n))
      return false;
  *out = n;
  return true;
}

// "[784, 128]"
static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t len = snprintf(buf, n, "[");
  for (int i = 0; i < ndim && len < n; i++)
    len += snprintf(buf + len, n - len, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (len < n)
    snprintf(buf + len, n - len, "]");
  return buf;
}

//
// JSON
//
// Just enough JSON for a safetensors header: objects, arrays, strings with
// every escape (\uXXXX and surrogate pairs too), numbers, true, false and
// null. Values live in an arena. The first error is kept with its position.
//

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonKind;

typedef struct Json Json;
struct Json {
  JsonKind kind;
  size_t pos;        // where the value starts in the text
  bool b;            // JSON_BOOL
  double num;        // JSON_NUMBER
  bool integer;      // JSON_NUMBER: written without fraction or exponent, and fits int64
  int64_t i;         // JSON_NUMBER when integer
  char *str;         // JSON_STRING: decoded UTF-8, NUL-terminated
  int n;             // JSON_ARRAY, JSON_OBJECT: number of elements
  Json **elems;      // JSON_ARRAY, JSON_OBJECT: [n] values
  char **keys;       // JSON_OBJECT: [n] decoded keys
};

typedef struct JsonParser {
  const char *s;     // the text; not NUL-terminated
  size_t len;        // its length
  size_t pos;        // the next character
  int depth;         // arrays and objects open around pos
  Arena *a;          // where values go
  char msg[160];     // the first error, empty while there is none
  size_t errpos;     // where it happened
} JsonParser;

#define JSON_MAX_DEPTH 64

static Json *json_value(JsonParser *p);

static void *json_fail(JsonParser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *json_fail(JsonParser *p, size_t pos, const char *fmt, ...) {
  if (!p->msg[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
    p->errpos = pos;
  }
  return NULL;
}

static void json_ws(JsonParser *p) {
  while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
    p->pos++;
}

// The next character, or 0 at the end of the text.
static char json_peek(JsonParser *p) { return p->pos < p->len ? p->s[p->pos] : 0; }

static Json *json_new(JsonParser *p, JsonKind kind, size_t pos) {
  Json *v = arena_alloc(p->a, sizeof(Json));
  v->kind = kind;
  v->pos = pos;
  return v;
}

// Four hex digits after \u, or -1.
static long json_hex4(JsonParser *p) {
  if (p->len - p->pos < 4)
    return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos + i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  p->pos += 4;
  return v;
}

static void put_utf8(StrBuf *b, long cp) {
  if (cp < 0x80) {
    sb_putc(b, (char)cp);
  } else if (cp < 0x800) {
    sb_putc(b, (char)(0xC0 | cp >> 6));
    sb_putc(b, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    sb_putc(b, (char)(0xE0 | cp >> 12));
    sb_putc(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    sb_putc(b, (char)(0x80 | (cp & 0x3F)));
  } else {
    sb_putc(b, (char)(0xF0 | cp >> 18));
    sb_putc(b, (char)(0x80 | (cp >> 12 & 0x3F)));
    sb_putc(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    sb_putc(b, (char)(0x80 | (cp & 0x3F)));
  }
}

// \uXXXX, with a second \uXXXX when the first is a high surrogate.
static bool json_unicode(JsonParser *p, StrBuf *b) {
  size_t at = p->pos - 2;
  long cp = json_hex4(p);
  if (cp < 0)
    return json_fail(p, at, "\\u must be followed by four hex digits"), false;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    long lo = -1;
    if (p->len - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
      p->pos += 2;
      lo = json_hex4(p);
    }
    if (lo < 0xDC00 || lo > 0xDFFF)
      return json_fail(p, at, "high surrogate \\u%04lX is not followed by a low surrogate", cp), false;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return json_fail(p, at, "low surrogate \\u%04lX without a high surrogate before it", cp), false;
  } else if (cp == 0) {
    return json_fail(p, at, "\\u0000 is not allowed in names and values"), false;
  }
  put_utf8(b, cp);
  return true;
}

// string = '"' (char | escape)* '"'
static char *json_string(JsonParser *p) {
  size_t start = p->pos++;
  StrBuf b = {0};
  for (;;) {
    if (p->pos >= p->len) {
      sb_free(&b);
      return json_fail(p, start, "string is not terminated");
    }
    unsigned char c = p->s[p->pos++];
    if (c == '"')
      break;
    if (c < 0x20) {
      sb_free(&b);
      return json_fail(p, p->pos - 1, "control character 0x%02x in a string (write it as \\u%04x)", c, c);
    }
    if (c != '\\') {
      sb_putc(&b, (char)c);
      continue;
    }
    if (p->pos >= p->len) {
      sb_free(&b);
      return json_fail(p, start, "string is not terminated");
    }
    char e = p->s[p->pos++];
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *k = e ? strchr(from, e) : NULL;
    if (k) {
      sb_putc(&b, to[k - from]);
    } else if (e != 'u' || !json_unicode(p, &b)) {
      sb_free(&b);
      if (e == 'u')
        return NULL;
      if ((unsigned char)e < 0x20 || (unsigned char)e >= 0x7F)
        return json_fail(p, p->pos - 2, "invalid escape: backslash before byte 0x%02x", (unsigned char)e);
      return json_fail(p, p->pos - 2, "invalid escape \\%c in a string", e);
    }
  }
  char *s = arena_strndup(p->a, b.data ? b.data : "", b.len);
  sb_free(&b);
  return s;
}

// number = '-'? int frac? exp?
static Json *json_number(JsonParser *p) {
  size_t start = p->pos;
  const char *s = p->s;
  size_t i = p->pos;
  i += i < p->len && s[i] == '-';
  size_t digits = i;
  if (i < p->len && s[i] == '0')
    i++;
  else
    while (i < p->len && s[i] >= '0' && s[i] <= '9')
      i++;
  if (i == digits)
    return json_fail(p, start, "malformed number");
  bool integer = true;
  if (i < p->len && s[i] == '.') {
    size_t d = ++i;
    while (i < p->len && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == d)
      return json_fail(p, start, "malformed number: no digits after '.'");
    integer = false;
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    i += i < p->len && (s[i] == '+' || s[i] == '-');
    size_t d = i;
    while (i < p->len && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == d)
      return json_fail(p, start, "malformed number: no digits in the exponent");
    integer = false;
  }
  char buf[64];
  if (i - start >= sizeof buf)
    return json_fail(p, start, "number too long");
  memcpy(buf, s + start, i - start);
  buf[i - start] = 0;
  Json *v = json_new(p, JSON_NUMBER, start);
  v->num = strtod(buf, NULL);
  errno = 0;
  v->i = strtoll(buf, NULL, 10);
  v->integer = integer && errno != ERANGE;
  p->pos = i;
  return v;
}

// array = '[' (value (',' value)*)? ']'
// object = '{' (string ':' value (',' string ':' value)*)? '}'
static Json *json_container(JsonParser *p, bool object) {
  char close = object ? '}' : ']';
  Json *v = json_new(p, object ? JSON_OBJECT : JSON_ARRAY, p->pos++);
  if (++p->depth > JSON_MAX_DEPTH)
    return json_fail(p, v->pos, "nested more than %d deep", JSON_MAX_DEPTH);
  PtrVec elems = {0}, keys = {0};
  json_ws(p);
  if (json_peek(p) == close) {
    p->pos++;
    p->depth--;
    return v;
  }
  for (;;) {
    json_ws(p);
    if (object) {
      if (json_peek(p) != '"')
        return json_fail(p, p->pos, "expected a string key in an object");
      char *key = json_string(p);
      if (!key)
        return NULL;
      ptrvec_push(p->a, &keys, key);
      json_ws(p);
      if (json_peek(p) != ':')
        return json_fail(p, p->pos, "expected ':' after the key \"%.40s\"", key);
      p->pos++;
    }
    Json *e = json_value(p);
    if (!e)
      return NULL;
    ptrvec_push(p->a, &elems, e);
    json_ws(p);
    char c = json_peek(p);
    p->pos++;
    if (c == close)
      break;
    if (c != ',')
      return json_fail(p, p->pos - 1, "expected ',' or '%c' %s", close, object ? "after an object member" : "after an array element");
  }
  p->depth--;
  v->n = elems.len;
  v->elems = (Json **)elems.data;
  v->keys = (char **)keys.data;
  return v;
}

// Matches the literal word at pos.
static bool json_word(JsonParser *p, const char *w) {
  size_t n = strlen(w);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n))
    return false;
  p->pos += n;
  return true;
}

// value = object | array | string | number | true | false | null
static Json *json_value(JsonParser *p) {
  json_ws(p);
  size_t at = p->pos;
  char c = json_peek(p);
  if (p->pos >= p->len)
    return json_fail(p, at, "unexpected end of the header");
  if (c == '{' || c == '[')
    return json_container(p, c == '{');
  if (c == '"') {
    char *s = json_string(p);
    if (!s)
      return NULL;
    Json *v = json_new(p, JSON_STRING, at);
    v->str = s;
    return v;
  }
  if (c == '-' || (c >= '0' && c <= '9'))
    return json_number(p);
  Json *v = json_new(p, JSON_BOOL, at);
  if (json_word(p, "true") || json_word(p, "false")) {
    v->b = p->s[at] == 't';
    return v;
  }
  if (json_word(p, "null")) {
    v->kind = JSON_NULL;
    return v;
  }
  if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F)
    return json_fail(p, at, "unexpected character '%c'", c);
  return json_fail(p, at, "unexpected byte 0x%02x", (unsigned char)c);
}

//
// Reading
//

// What the reader needs while it checks a header.
typedef struct StReader {
  const char *path;
  StFile *f;
  size_t hlen;           // header bytes
  size_t data_size;      // bytes after the header
  uint64_t (*off)[2];    // [ntensors] data_offsets as given
  bool header_only;      // read the header alone (data_st_read_header)
  char *err;
  size_t errsz;
} StReader;

static bool st_dtype(StReader *r, const char *name, const Json *v, StDType *out) {
  static const char *const others[] = {"F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "I16",
                                       "U16", "U32", "U64", "BOOL", "C64"};
  if (v->kind != JSON_STRING) {
    errorf(r->err, r->errsz, "%s: tensor '%s': dtype must be a string such as \"F32\"", r->path, name);
    return false;
  }
  for (int i = 0; i < countof(dtype_names); i++)
    if (!strcmp(v->str, dtype_names[i])) {
      *out = (StDType)i;
      return true;
    }
  bool known = false;
  for (int i = 0; i < countof(others); i++)
    known |= !strcmp(v->str, others[i]);
  // nnc's weights are F32: the other dtypes read here are refused for them later
  errorf(r->err, r->errsz, "%s: tensor '%s': %s dtype '%.20s'\n---> HINT: nnc's weights are F32%s", r->path,
            name, known ? "unsupported" : "unknown", v->str,
            known ? "; save the tensors as float32 (from PyTorch: {k: v.float() for k, v in "
                    "model.state_dict().items()})" : "");
  return false;
}

// An array of up to max non-negative integers.
static bool st_ints(StReader *r, const char *name, const char *what, const Json *v, int max,
                    int64_t *out) {
  bool ok = v->kind == JSON_ARRAY && v->n <= max;
  for (int i = 0; ok && i < v->n; i++) {
    ok = v->elems[i]->kind == JSON_NUMBER && v->elems[i]->integer && v->elems[i]->i >= 0;
    if (ok)
      out[i] = v->elems[i]->i;
  }
  if (!ok)
    errorf(r->err, r->errsz, "%s: tensor '%s': %s must be an array of %s%d non-negative integers",
              r->path, name, what, max == 2 ? "" : "at most ", max);
  return ok;
}

// One tensor's entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]}.
static bool st_tensor(StReader *r, const char *name, const Json *v, StTensor *t, uint64_t off[2]) {
  if (v->kind != JSON_OBJECT) {
    errorf(r->err, r->errsz, "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
              r->path, name);
    return false;
  }
  bool seen[3] = {0};
  int64_t o[2] = {0, 0};
  for (int i = 0; i < v->n; i++) {
    const char *k = v->keys[i];
    int which = !strcmp(k, "dtype") ? 0 : !strcmp(k, "shape") ? 1 : !strcmp(k, "data_offsets") ? 2 : -1;
    if (which < 0 || seen[which]) {
      errorf(r->err, r->errsz, "%s: tensor '%s': %s key '%.40s'", r->path, name,
                which < 0 ? "unexpected" : "duplicate", k);
      return false;
    }
    seen[which] = true;
    const Json *e = v->elems[i];
    bool ok = which == 0   ? st_dtype(r, name, e, &t->dtype)
              : which == 1 ? st_ints(r, name, "shape", e, RT_ST_MAX_DIMS, t->shape)
                           : st_ints(r, name, "data_offsets", e, 2, o);
    if (!ok)
      return false;
    if (which == 1)
      t->ndim = e->n;
    if (which == 2 && (e->n != 2 || o[0] > o[1])) {
      errorf(r->err, r->errsz, "%s: tensor '%s': data_offsets must be [begin, end] with begin <= end",
                r->path, name);
      return false;
    }
  }
  for (int i = 0; i < 3; i++)
    if (!seen[i]) {
      errorf(r->err, r->errsz, "%s: tensor '%s' has no %s", r->path, name,
                (const char *[]){"dtype", "shape", "data_offsets"}[i]);
      return false;
    }
  off[0] = (uint64_t)o[0];
  off[1] = (uint64_t)o[1];
  return true;
}

// The tensor's size must match its offsets, and they must lie in the data.
static bool st_check_size(StReader *r, const StTensor *t, const uint64_t off[2]) {
  size_t need;
  char sh[128];
  if (!tensor_bytes(t->ndim, t->shape, data_dtype_size(t->dtype), &need) || need != off[1] - off[0]) {
    errorf(r->err, r->errsz, "%s: tensor '%s': shape %s of %s does not match data_offsets "
              "[%llu, %llu] (%llu bytes)", r->path, t->name,
              shape_str(t->ndim, t->shape, sh, sizeof sh), data_dtype_name(t->dtype),
              (unsigned long long)off[0], (unsigned long long)off[1],
              (unsigned long long)(off[1] - off[0]));
    return false;
  }
  if (off[1] > r->data_size) {
    errorf(r->err, r->errsz, "%s: tensor '%s': data_offsets [%llu, %llu] go beyond the data, "
              "which holds %zu bytes\n---> HINT: the file is probably truncated", r->path, t->name,
              (unsigned long long)off[0], (unsigned long long)off[1], r->data_size);
    return false;
  }
  return true;
}

// A tensor's bytes in the data section, for sorting by offset.
typedef struct Span {
  uint64_t begin, end;   // data_offsets
  int i;                 // the tensor
} Span;

static int by_offset(const void *a, const void *b) {
  const Span *x = a, *y = b;
  return x->begin != y->begin ? (x->begin < y->begin ? -1 : 1)
         : x->end != y->end   ? (x->end < y->end ? -1 : 1) : 0;
}

// Tensors must cover the data exactly: no overlaps, no holes, nothing left.
static bool st_check_layout(StReader *r) {
  int n = r->f->ntensors;
  Span *sp = xmalloc(sizeof(Span) * (n ? n : 1));
  for (int i = 0; i < n; i++)
    sp[i] = (Span){r->off[i][0], r->off[i][1], i};
  qsort(sp, n, sizeof(Span), by_offset);
  const Span *prev = NULL;
  uint64_t end = 0;
  bool ok = true;
  for (int k = 0; ok && k < n; k++) {
    const Span *s = &sp[k];
    if (s->begin == s->end)
      continue;   // empty tensors take no bytes
    if (s->begin < end)
      errorf(r->err, r->errsz, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                r->path, r->f->tensors[prev->i].name, (unsigned long long)prev->begin,
                (unsigned long long)prev->end, r->f->tensors[s->i].name,
                (unsigned long long)s->begin, (unsigned long long)s->end);
    else if (s->begin > end)
      errorf(r->err, r->errsz, "%s: bytes [%llu, %llu) of the data belong to no tensor",
                r->path, (unsigned long long)end, (unsigned long long)s->begin);
    ok = s->begin == end;
    end = s->end;
    prev = s;
  }
  free(sp);
  if (ok && end != r->data_size) {
    errorf(r->err, r->errsz, "%s: the last %llu bytes of the data belong to no tensor", r->path,
              (unsigned long long)(r->data_size - end));
    ok = false;
  }
  return ok;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// The first name that occurs twice in names[0..n), or NULL.
static const char *find_duplicate(const char *const *names, int n) {
  if (n < 2)
    return NULL;
  const char **sorted = xmalloc(sizeof(char *) * (n ? n : 1));
  memcpy(sorted, names, sizeof(char *) * n);
  qsort(sorted, n, sizeof(char *), by_name);
  const char *dup = NULL;
  for (int i = 1; i < n && !dup; i++)
    if (!strcmp(sorted[i - 1], sorted[i]))
      dup = sorted[i];
  free(sorted);
  return dup;
}

static bool st_unique(StReader *r, char **names, int n, const char *what) {
  const char *dup = find_duplicate((const char *const *)names, n);
  if (dup)
    errorf(r->err, r->errsz, "%s: duplicate %s '%.60s' in the header", r->path, what, dup);
  return !dup;
}

// __metadata__: an object of strings.
static bool st_metadata(StReader *r, const Json *v) {
  if (v->kind != JSON_OBJECT) {
    errorf(r->err, r->errsz, "%s: __metadata__ must be an object of strings", r->path);
    return false;
  }
  if (!st_unique(r, v->keys, v->n, "metadata key"))
    return false;
  StFile *f = r->f;
  f->meta = arena_alloc(f->arena, sizeof(StMeta) * (v->n ? v->n : 1));
  for (int i = 0; i < v->n; i++) {
    if (v->elems[i]->kind != JSON_STRING) {
      errorf(r->err, r->errsz, "%s: __metadata__ value of '%.60s' must be a string",
                r->path, v->keys[i]);
      return false;
    }
    f->meta[f->nmeta++] = (StMeta){v->keys[i], v->elems[i]->str};
  }
  return true;
}

// Points t at its data, or at an aligned copy where the file misaligns it.
static void st_bind(StFile *f, StTensor *t, const unsigned char *p) {
  size_t align = data_dtype_size(t->dtype);
  if ((uintptr_t)p % align) {
    void *copy = arena_alloc(f->arena, t->nbytes);
    memcpy(copy, p, t->nbytes);
    p = copy;
  }
  t->data = p;
}

// Turns the parsed header into the file's tensors and metadata.
static bool st_header(StReader *r, const Json *root) {
  StFile *f = r->f;
  if (root->kind != JSON_OBJECT) {
    errorf(r->err, r->errsz, "%s: the header must be a JSON object", r->path);
    return false;
  }
  if (!st_unique(r, root->keys, root->n, "tensor name"))
    return false;
  f->tensors = arena_alloc(f->arena, sizeof(StTensor) * (root->n ? root->n : 1));
  r->off = arena_alloc(f->arena, sizeof(uint64_t[2]) * (root->n ? root->n : 1));
  for (int i = 0; i < root->n; i++) {
    if (!strcmp(root->keys[i], "__metadata__")) {
      if (!st_metadata(r, root->elems[i]))
        return false;
      continue;
    }
    StTensor *t = &f->tensors[f->ntensors];
    t->name = root->keys[i];
    if (!st_tensor(r, t->name, root->elems[i], t, r->off[f->ntensors]) ||
        !st_check_size(r, t, r->off[f->ntensors]))
      return false;
    t->nbytes = r->off[f->ntensors][1] - r->off[f->ntensors][0];
    f->ntensors++;
  }
  if (!st_check_layout(r))
    return false;
  for (int i = 0; i < f->ntensors; i++) {
    f->tensors[i].offset = 8 + r->hlen + r->off[i][0];
    if (!r->header_only)
      st_bind(f, &f->tensors[i], f->buf + f->tensors[i].offset);
  }
  return true;
}

// Parses the JSON text of the header; messages quote the text around an error.
static bool st_parse(StReader *r) {
  StFile *f = r->f;
  JsonParser p = {.s = (const char *)f->buf + 8, .len = r->hlen, .a = f->arena};
  Json *root = json_value(&p);
  if (root) {
    json_ws(&p);
    if (p.pos < p.len)
      json_fail(&p, p.pos, "unexpected text after the header's object");
  }
  if (p.msg[0]) {
    size_t from = p.errpos > 20 ? p.errpos - 20 : 0;
    size_t n = p.len - from < 40 ? p.len - from : 40;
    char near[41];
    for (size_t i = 0; i < n; i++) {
      unsigned char c = p.s[from + i];
      near[i] = c >= 0x20 && c < 0x7F ? (char)c : '?';
    }
    near[n] = 0;
    errorf(r->err, r->errsz, "%s: malformed JSON header at byte %zu of the header (file offset %zu): "
              "%s\n  near: %s\n---> HINT: is this a safetensors file?", r->path, p.errpos,
              p.errpos + 8, p.msg, near);
    return false;
  }
  return st_header(r, root);
}

// Checks the 8-byte header length against the limit and the file's size.
static bool st_check_length(StReader *r, const unsigned char *le, size_t size) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | le[i];
  if (n > RT_ST_MAX_HEADER) {
    errorf(r->err, r->errsz, "%s: header length %llu is over the limit of %u bytes\n"
              "---> HINT: is this a safetensors file?", r->path, (unsigned long long)n, RT_ST_MAX_HEADER);
    return false;
  }
  if (n > size - 8) {
    errorf(r->err, r->errsz, "%s: header length %llu goes beyond the end of the file (%zu bytes)\n"
              "---> HINT: the file is truncated, or not a safetensors file", r->path,
              (unsigned long long)n, size);
    return false;
  }
  r->hlen = (size_t)n;
  r->data_size = size - 8 - r->hlen;
  return true;
}

// Reads the whole file, once its first 8 bytes have passed st_check_length.
static bool st_load(StReader *r) {
  StFile *f = r->f;
  FILE *fp = fopen(r->path, "rb");
  struct stat st;
  const char *why = !fp ? strerror(errno) : fstat(fileno(fp), &st) ? strerror(errno)
                    : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
  if (why) {
    errorf(r->err, r->errsz, "%s: cannot read: %s", r->path, why);
    if (fp)
      fclose(fp);
    return false;
  }
  f->size = (size_t)st.st_size;
  f->buf = xmalloc(f->size < 8 || r->header_only ? 8 : f->size);
  bool ok = true;
  if (f->size < 8) {
    errorf(r->err, r->errsz, "%s: is %zu bytes, too short for a safetensors file (at least 8)\n"
              "---> HINT: the file is empty or was cut off", r->path, f->size);
    ok = false;
  }
  bool got8 = ok && fread(f->buf, 1, 8, fp) == 8;
  ok = ok && (!got8 || st_check_length(r, f->buf, f->size));
  size_t want = f->size - 8;
  if (ok && r->header_only) {   // the header alone: its 8 + hlen bytes
    want = r->hlen;
    f->buf = xrealloc(f->buf, 8 + want);
  }
  if (ok && (!got8 || fread(f->buf + 8, 1, want, fp) != want)) {
    errorf(r->err, r->errsz, "%s: read error: %s", r->path,
              ferror(fp) ? strerror(errno) : "the file shrank while it was read");
    ok = false;
  }
  fclose(fp);
  return ok;
}

static bool st_read(const char *path, StFile *f, bool header_only, char *err, size_t errsz) {
  *f = (StFile){.path = xstrdup(path), .arena = arena_new()};
  StReader r = {.path = path, .f = f, .header_only = header_only, .err = err, .errsz = errsz};
  if (st_load(&r) && st_parse(&r))
    return true;
  data_st_free(f);
  return false;
}

bool data_st_read(const char *path, StFile *f, char *err, size_t errsz) { return st_read(path, f, false, err, errsz); }

bool data_st_read_header(const char *path, StFile *f, char *err, size_t errsz) {
  return st_read(path, f, true, err, errsz);
}

bool data_st_read_tensor(const StFile *f, const StTensor *t, void *dst, char *err, size_t errsz) {
  int fd = open(f->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  size_t done = 0;
  bool same = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == f->size;
  while (same && done < t->nbytes) {
    ssize_t k = pread(fd, (char *)dst + done, t->nbytes - done, (off_t)(t->offset + done));
    if (k <= 0)
      break;
    done += (size_t)k;
  }
  int e = errno;
  if (fd >= 0)
    close(fd);
  if (done == t->nbytes)
    return true;
  errorf(err, errsz, "%s: reading tensor '%s' failed: %s\n---> HINT: was the file changed while it was read?",
         f->path, t->name, fd < 0 ? strerror(e) : !same ? "the file is no longer the one whose header was read"
                                                        : "the file ended early");
  return false;
}

void data_st_free(StFile *f) {
  free(f->path);
  free(f->buf);
  arena_free(f->arena);
  *f = (StFile){0};
}

const StTensor *data_st_find(const StFile *f, const char *name) {
  for (int i = 0; i < f->ntensors; i++)
    if (!strcmp(f->tensors[i].name, name))
      return &f->tensors[i];
  return NULL;
}

const char *data_st_meta(const StFile *f, const char *key) {
  for (int i = 0; i < f->nmeta; i++)
    if (!strcmp(f->meta[i].key, key))
      return f->meta[i].value;
  return NULL;
}

//
// Writing
//

static void json_put_string(StrBuf *b, const char *s) {
  sb_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      sb_printf(b, "\\%c", *p);
    else if (*p < 0x20)
      sb_printf(b, "\\u%04x", *p);
    else
      sb_putc(b, (char)*p);
  }
  sb_putc(b, '"');
}

// Checks the caller's tensors before anything touches the disk.
static bool st_check_inputs(const char *path, const StTensor *t, int nt, size_t *sizes, char *err,
                            size_t errsz) {
  for (int i = 0; i < nt; i++) {
    const char *name = t[i].name;
    const char *why = !name || !*name ? "has no name"
                      : !strcmp(name, "__metadata__") ? "is named __metadata__, which the format reserves"
                      : (unsigned)t[i].dtype > ST_U8 ? "has an unknown dtype"
                      : t[i].ndim < 0 || t[i].ndim > RT_ST_MAX_DIMS ? "has too many dimensions"
                      : !tensor_bytes(t[i].ndim, t[i].shape, data_dtype_size(t[i].dtype), &sizes[i])
                          ? "has a negative or too large shape" : NULL;
    if (!why && sizes[i] && !t[i].data)
      why = "has no data";
    if (why) {
      errorf(err, errsz, "%s: cannot write the checkpoint: tensor %d ('%s') %s", path, i,
                name ? name : "", why);
      return false;
    }
  }
  return true;
}

// Tensor names and metadata keys must each be unique.
static bool st_check_names(const char *path, const StTensor *t, int nt, const StMeta *meta,
                           int nmeta, char *err, size_t errsz) {
  int n = nt > nmeta ? nt : nmeta;
  const char **names = xmalloc(sizeof(char *) * (n ? n : 1));
  for (int i = 0; i < nt; i++)
    names[i] = t[i].name;
  const char *dup = find_duplicate(names, nt), *what = "tensor name";
  for (int i = 0; !dup && i < nmeta; i++) {
    names[i] = meta[i].key;
    if (!meta[i].key || !meta[i].value) {
      errorf(err, errsz, "%s: cannot write the checkpoint: metadata entry %d has no %s", path, i,
                meta[i].key ? "value" : "key");
      free(names);
      return false;
    }
  }
  if (!dup) {
    dup = find_duplicate(names, nmeta);
    what = "metadata key";
  }
  if (dup)
    errorf(err, errsz, "%s: cannot write the checkpoint: %s '%s' is given twice", path, what, dup);
  free(names);
  return !dup;
}

// The header JSON, padded with spaces to a multiple of 8 bytes.
static void st_header_json(StrBuf *b, const StTensor *t, int nt, const uint64_t *offs,
                           const size_t *sizes, const StMeta *meta, int nmeta) {
  sb_putc(b, '{');
  if (nmeta > 0) {
    sb_puts(b, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i)
        sb_putc(b, ',');
      json_put_string(b, meta[i].key);
      sb_putc(b, ':');
      json_put_string(b, meta[i].value);
    }
    sb_putc(b, '}');
  }
  for (int i = 0; i < nt; i++) {
    if (i || nmeta > 0)
      sb_putc(b, ',');
    json_put_string(b, t[i].name);
    sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", data_dtype_name(t[i].dtype));
    for (int d = 0; d < t[i].ndim; d++)
      sb_printf(b, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
    sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offs[i],
              (unsigned long long)(offs[i] + sizes[i]));
  }
  sb_putc(b, '}');
  while (b->len % 8)
    sb_putc(b, ' ');
}

// Data offsets: wider dtypes first (stable), so each is aligned to its size.
static void st_layout(const StTensor *t, int nt, const size_t *sizes, uint64_t *offs, int *order) {
  int k = 0;
  for (size_t w = 8; w >= 1; w /= 2)
    for (int i = 0; i < nt; i++)
      if (data_dtype_size(t[i].dtype) == w)
        order[k++] = i;
  uint64_t at = 0;
  for (int i = 0; i < nt; i++) {
    offs[order[i]] = at;
    at += sizes[order[i]];
  }
}

const char *data_errno_hint(int e) {
  switch (e) {
  case ENOSPC: case EDQUOT: return "the disk (or your quota) is full; free some space or write elsewhere";
  case EFBIG: return "the file is larger than this system allows (see ulimit -f)";
  case EACCES: case EPERM: case EROFS: return "check that the directory exists and is writable";
  case ENOENT: case ENOTDIR: return "the directory does not exist; create it first";
  case EISDIR: return "the path names a directory; give a file name";
  }
  return "check the path and the disk";
}

// The directory part of path ("." when there is none).
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return xstrdup(".");
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *d = xmalloc(n + 1);
  memcpy(d, path, n);
  d[n] = 0;
  return d;
}

int data_sync_dir(const char *path) {
  char *dir = dir_of(path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  free(dir);
  if (fd < 0)
    return errno;
  int e = fsync(fd) && errno != EINVAL ? errno : 0;
  close(fd);
  return e;
}

int data_create_temp(const char *path, char **tmp) {
  StrBuf b = {0};
  sb_printf(&b, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
  int fd = mkstemp(b.data);   // O_CREAT | O_EXCL: never through a link
  if (fd < 0) {
    int e = errno;
    sb_free(&b);
    errno = e;
    return -1;
  }
  mode_t mask = umask(0);   // mkstemp makes 0600; give what a plain create would
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  *tmp = b.data;
  return fd;
}

// An open temporary file and what is being written to it.
typedef struct StWriter {
  const char *path;      // the final name
  char *tmp;             // path.tmp.PID.XXXXXX, made by data_create_temp
  FILE *fp;
  const char *doing;     // for messages: "writing the header", ...
  char *err;
  size_t errsz;
} StWriter;

// Reports errno, closes and removes the temporary file; path is untouched.
static bool st_abort(StWriter *w, int e) {
  if (w->fp)
    fclose(w->fp);
  w->fp = NULL;
  unlink(w->tmp);
  errorf(w->err, w->errsz, "%s: cannot write the checkpoint (%s %s): %s; %s was left as it was\n"
            "---> HINT: %s", w->path, w->doing, w->tmp, strerror(e), w->path, data_errno_hint(e));
  return false;
}

static bool st_put(StWriter *w, const void *p, size_t n) {
  errno = 0;
  if (n && fwrite(p, 1, n, w->fp) != n)
    return st_abort(w, errno ? errno : EIO);
  return true;
}

// Writes everything to the temporary file, syncs it and renames it to path.
static bool st_commit(StWriter *w, const StrBuf *hdr, const StTensor *t, int nt, const int *order,
                      const size_t *sizes) {
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)((uint64_t)hdr->len >> 8 * i);
  w->doing = "writing the header of";
  if (!st_put(w, len, 8) || !st_put(w, hdr->data, hdr->len))
    return false;
  w->doing = "writing tensor data to";
  for (int k = 0; k < nt; k++)
    if (!st_put(w, t[order[k]].data, sizes[order[k]]))
      return false;
  w->doing = "flushing";
  if (fflush(w->fp) || fsync(fileno(w->fp)))
    return st_abort(w, errno);
  FILE *fp = w->fp;
  w->fp = NULL;
  w->doing = "closing";
  if (fclose(fp))
    return st_abort(w, errno);
  w->doing = "renaming";
  if (rename(w->tmp, w->path))
    return st_abort(w, errno);
  int e = data_sync_dir(w->path);
  if (e)
    errorf(w->err, w->errsz, "%s: the checkpoint was written, but syncing its directory failed: %s\n"
              "---> HINT: a crash now could lose it; %s", w->path, strerror(e), data_errno_hint(e));
  return e == 0;
}

// What is at path may be replaced: nothing, a regular file or a link (the
// rename replaces the link, never what it points to); not a directory, a
// pipe or a device, which renaming over would destroy (/dev/full as root).
static bool st_check_target(const char *path, char *err, size_t errsz) {
  struct stat st;
  if (!*path) {
    errorf(err, errsz, "the checkpoint's path is empty\n---> HINT: give a file name, such as model.safetensors");
    return false;
  }
  if (lstat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
    return true;
  errorf(err, errsz, "%s: is %s, not a file a checkpoint may replace; nothing was written\n---> HINT: give the "
            "path of a new or regular file", path, S_ISDIR(st.st_mode) ? "a directory" : "a pipe, a socket or a device");
  return false;
}

bool data_st_write(const char *path, const StTensor *t, int nt, const StMeta *meta, int nmeta,
                 char *err, size_t errsz) {
  size_t *sizes = xmalloc(sizeof(size_t) * (nt ? nt : 1));
  uint64_t *offs = xmalloc(sizeof(uint64_t) * (nt ? nt : 1));
  int *order = xmalloc(sizeof(int) * (nt ? nt : 1));
  bool ok = st_check_inputs(path, t, nt, sizes, err, errsz) &&
            st_check_names(path, t, nt, meta, nmeta, err, errsz) && st_check_target(path, err, errsz);
  StrBuf hdr = {0};
  if (ok) {
    st_layout(t, nt, sizes, offs, order);
    st_header_json(&hdr, t, nt, offs, sizes, meta, nmeta);
    StWriter w = {.path = path, .doing = "creating", .err = err, .errsz = errsz};
    int fd = data_create_temp(path, &w.tmp);
    if (fd < 0) {
      int e = errno;
      errorf(err, errsz, "%s: cannot write the checkpoint (creating a temporary file beside it): %s; %s "
                "was left as it was\n---> HINT: %s", path, strerror(e), path, data_errno_hint(e));
      ok = false;
    } else if (!(w.fp = fdopen(fd, "wb"))) {
      int e = errno;
      close(fd);
      ok = st_abort(&w, e);
    } else {
      ok = st_commit(&w, &hdr, t, nt, order, sizes);
    }
    free(w.tmp);
  }
  sb_free(&hdr);
  free(sizes);
  free(offs);
  free(order);
  return ok;
}
