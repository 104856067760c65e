// test_image.c: PNG and PGM decoding and resizing. The PNGs are made here,
// with zlib's compress() and a CRC-32 of our own, in every colour type,
// several bit depths and all five row filters, and compared pixel by pixel
// with the gray values they should give.
#include "../test.h"
#include "data.h"

#include <math.h>
#include <zlib.h>

static uint32_t crc_table[256];

static uint32_t crc(const unsigned char *p, size_t n) {
  if (!crc_table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      crc_table[i] = c;
    }
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++)
    c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// A growable byte buffer for building files.
typedef struct Bytes {
  unsigned char *data;
  size_t len;
} Bytes;

static void put(Bytes *b, const void *p, size_t n) {
  b->data = realloc(b->data, b->len + n + 1);
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_be32(Bytes *b, uint32_t v) {
  unsigned char c[4] = {v >> 24, v >> 16, v >> 8, v};
  put(b, c, 4);
}

static void chunk(Bytes *b, const char *type, const void *data, uint32_t n) {
  put_be32(b, n);
  size_t at = b->len;
  put(b, type, 4);
  put(b, data, n);
  put_be32(b, crc(b->data + at, n + 4));
}

// What to encode: samples[h][w * channels], each below 2^depth.
typedef struct Spec {
  int w, h, color, depth;
  const uint16_t *samples;
  const unsigned char *plte;   // palette RGB, nplte entries
  int nplte;
  int interlace;               // written into IHDR as is
  int extra_rows;              // rows of data beyond h (negative: fewer)
  int bad_filter;              // a filter byte to use instead of the real one on row 0
  int empty_idat;              // an IDAT chunk with no data before the others
} Spec;

static int channels_of(int color) { return color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1; }

// Packs one row of samples into bytes, MSB first.
static void pack_row(const Spec *s, int y, unsigned char *out, size_t stride) {
  int ch = channels_of(s->color);
  memset(out, 0, stride);
  for (int i = 0; i < s->w * ch; i++) {
    unsigned v = s->samples[(y % s->h) * s->w * ch + i];
    if (s->depth == 16) {
      out[2 * i] = v >> 8;
      out[2 * i + 1] = v & 0xFF;
    } else if (s->depth == 8) {
      out[i] = (unsigned char)v;
    } else {
      size_t bit = (size_t)i * s->depth;
      out[bit / 8] |= (unsigned char)(v << (8 - s->depth - bit % 8));
    }
  }
}

static int paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Filters row y with filter type y % 5 against the previous raw row.
static void filter_row(int f, const unsigned char *raw, const unsigned char *prev, size_t n, size_t bpp,
                       unsigned char *out) {
  for (size_t i = 0; i < n; i++) {
    int a = i >= bpp ? raw[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
    int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth(a, b, c);
    out[i] = (unsigned char)(raw[i] - pred);
  }
}

static Bytes encode_png(const Spec *s) {
  int bits = channels_of(s->color) * s->depth, rows = s->h + s->extra_rows;
  size_t stride = ((size_t)s->w * bits + 7) / 8, bpp = bits >= 8 ? bits / 8 : 1;
  unsigned char *raw = calloc(rows + 1, stride), *filt = malloc((stride + 1) * rows + 1);
  for (int y = 0; y < rows; y++) {
    pack_row(s, y, raw + (y + 1) * stride, stride);
    filt[y * (stride + 1)] = (unsigned char)(y % 5);
    filter_row(y % 5, raw + (y + 1) * stride, raw + y * stride, stride, bpp, filt + y * (stride + 1) + 1);
  }
  if (s->bad_filter)
    filt[0] = (unsigned char)s->bad_filter;
  uLongf zn = compressBound((stride + 1) * rows);
  unsigned char *z = malloc(zn);
  compress(z, &zn, filt, (stride + 1) * rows);
  Bytes b = {0};
  put(&b, "\x89PNG\r\n\x1a\n", 8);
  unsigned char ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, (unsigned char)s->depth, (unsigned char)s->color,
                            0, 0, (unsigned char)s->interlace};
  for (int i = 0; i < 4; i++) {
    ihdr[i] = (unsigned char)(s->w >> (24 - 8 * i));
    ihdr[4 + i] = (unsigned char)(s->h >> (24 - 8 * i));
  }
  chunk(&b, "IHDR", ihdr, 13);
  chunk(&b, "tEXt", "Comment\0made by test_image", 26);
  if (s->plte)
    chunk(&b, "PLTE", s->plte, 3 * s->nplte);
  if (s->empty_idat)
    chunk(&b, "IDAT", "", 0);
  chunk(&b, "IDAT", z, (uint32_t)zn / 2);   // two IDAT chunks, to be joined
  chunk(&b, "IDAT", z + zn / 2, (uint32_t)(zn - zn / 2));
  chunk(&b, "IEND", "", 0);
  free(raw);
  free(filt);
  free(z);
  return b;
}

// The gray value pixel i should decode to.
static float expected_gray(const Spec *s, int i) {
  int ch = channels_of(s->color);
  double max = (1 << s->depth) - 1;
  const uint16_t *p = s->samples + i * ch;
  if (s->color == 3) {
    const unsigned char *c = s->plte + 3 * p[0];
    return (float)((0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0);
  }
  if (ch >= 3)
    return (float)((0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / max);
  return (float)(p[0] / max);
}

static uint16_t *random_samples(int n, int depth, unsigned seed, int below) {
  Rng r;
  rng_seed(&r, seed, 0);
  uint16_t *s = malloc(sizeof(uint16_t) * n);
  for (int i = 0; i < n; i++)
    s[i] = (uint16_t)rng_below(&r, below ? (uint32_t)below : 1u << depth);
  return s;
}

static void check_png(int color, int depth, int w, int h) {
  static const unsigned char plte[16 * 3] = {0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 12, 34, 56};
  int ch = channels_of(color);
  Spec s = {.w = w, .h = h, .color = color, .depth = depth};
  uint16_t *samples = random_samples(w * h * ch, depth, (unsigned)(color * 100 + depth),
                                     color == 3 ? (depth < 3 ? 1 << depth : 6) : 0);
  s.samples = samples;
  if (color == 3) {
    s.plte = plte;
    s.nplte = 6;
  }
  Bytes b = encode_png(&s);
  Image img;
  char err[1024], name[64];
  snprintf(name, sizeof name, "png-c%d-d%d.png", color, depth);
  bool ok = data_image_decode(b.data, b.len, name, &img, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(img.w == w && img.h == h, "%s: size %dx%d", name, img.w, img.h);
    int bad = 0;
    for (int i = 0; i < w * h; i++)
      bad += fabsf(img.px[i] - expected_gray(&s, i)) > 1e-6f;
    CHECK(bad == 0, "%s: %d of %d pixels differ", name, bad, w * h);
    data_image_free(&img);
  }
  free(b.data);
  free(samples);
}

static void test_png_valid(void) {
  static const int cases[][2] = {{0, 1}, {0, 2}, {0, 4}, {0, 8}, {0, 16}, {2, 8}, {2, 16}, {3, 1},
                                 {3, 2}, {3, 4}, {3, 8}, {4, 8}, {4, 16}, {6, 8}, {6, 16}};
  for (int i = 0; i < countof(cases); i++) {
    check_png(cases[i][0], cases[i][1], 7, 11);   // odd sizes: partial bytes, every filter twice
    check_png(cases[i][0], cases[i][1], 1, 1);
  }
  // a file on disk, through data_image_load
  uint16_t px[4] = {0, 85, 170, 255};
  Spec s = {.w = 2, .h = 2, .color = 0, .depth = 8, .samples = px};
  Bytes b = encode_png(&s);
  t_write(t_path("g.png"), b.data, b.len);
  free(b.data);
  Image img;
  char err[1024];
  bool ok = data_image_load(t_path("g.png"), &img, err, sizeof err);
  CHECK(ok && img.px[1] == (float)(85 / 255.0) && img.px[3] == 1, "load from file: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  CHECK_ERR(data_image_load(t_path("none.png"), &img, err, sizeof err), err, "none.png", "No such file");
}

#define BAD_IMG(name, bytes, n, ...)                                                       \
  do {                                                                                     \
    Image img_;                                                                          \
    char err_[1024];                                                                       \
    CHECK_ERR(data_image_decode((const unsigned char *)(bytes), (n), name, &img_, err_, sizeof err_), \
              err_, name, __VA_ARGS__);                                                    \
  } while (0)

// Rewrites the CRC of the chunk at offset at (after its data was changed).
static void fix_crc(Bytes *b, size_t at) {
  uint32_t n = (uint32_t)b->data[at] << 24 | b->data[at + 1] << 16 | b->data[at + 2] << 8 | b->data[at + 3];
  uint32_t c = crc(b->data + at + 4, n + 4);
  for (int i = 0; i < 4; i++)
    b->data[at + 8 + n + i] = (unsigned char)(c >> (24 - 8 * i));
}

static void test_png_errors(void) {
  uint16_t px[48] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};   // enough for 4x3 RGBA
  Spec s = {.w = 4, .h = 3, .color = 0, .depth = 8, .samples = px};
  Bytes good = encode_png(&s);
  BAD_IMG("photo.jpg", "\xFF\xD8\xFF\xE0 JFIF", 10, "not a PNG or PGM image", "JPEG", "convert");
  BAD_IMG("empty.png", "", 0, "not a PNG or PGM image", "empty");
  Bytes b = {0};
  put(&b, good.data, good.len);
  b.data[33 + 8 + 5] ^= 1;   // a byte of the tEXt chunk (IHDR ends at 33)
  BAD_IMG("crc.png", b.data, b.len, "bad CRC in PNG chunk 'tEXt' at byte 33", "corrupt");
  b.data[33 + 8 + 5] ^= 1;
  b.data[16] ^= 0x40;   // IHDR's width
  BAD_IMG("crc-ihdr.png", b.data, b.len, "bad CRC in PNG chunk 'IHDR' at byte 8");
  b.data[16] ^= 0x40;
  // a signature whose CRLF became LF, as a transfer in text mode does
  Bytes lf = {0};
  put(&lf, "\x89PNG\n\x1a\n", 7);
  put(&lf, good.data + 8, good.len - 8);
  BAD_IMG("text-mode.png", lf.data, lf.len, "PNG signature is damaged", "89 50 4E 47 0A 1A 0A",
          "expected 89 50 4E 47 0D 0A 1A 0A", "binary mode");
  BAD_IMG("sig-cut.png", "\x89PNG\r", 5, "PNG signature is damaged", "cut off");
  free(lf.data);
  BAD_IMG("cut.png", good.data, good.len - 20, "PNG chunk 'IDAT'", "is truncated", "cut off");
  BAD_IMG("noend.png", good.data, good.len - 12, "truncated", "before its IEND chunk");
  BAD_IMG("sig.png", good.data, 8, "truncated", "before its IEND");
  free(b.data);
  s.interlace = 1;
  b = encode_png(&s);
  BAD_IMG("inter.png", b.data, b.len, "interlaced", "convert", "-interlace none");
  free(b.data);
  s.interlace = 0;
  s.depth = 4;
  s.color = 2;
  b = encode_png(&s);
  BAD_IMG("depth.png", b.data, b.len, "bit depth 4 with colour type 2");
  free(b.data);
  s.color = 3;
  s.depth = 8;
  b = encode_png(&s);
  BAD_IMG("noplte.png", b.data, b.len, "palette image without a PLTE chunk");
  free(b.data);
  s.plte = (const unsigned char *)"\0\0\0\xff\xff\xff";
  s.nplte = 2;
  b = encode_png(&s);
  BAD_IMG("index.png", b.data, b.len, "pixel (2, 0) uses palette entry 2, but the palette has 2");
  free(b.data);
  s = (Spec){.w = 4, .h = 3, .color = 0, .depth = 8, .samples = px, .extra_rows = -1};
  b = encode_png(&s);
  BAD_IMG("few.png", b.data, b.len, "holds 10 bytes, expected 15 for 4x3 pixels");
  free(b.data);
  s.extra_rows = 1;
  b = encode_png(&s);
  BAD_IMG("many.png", b.data, b.len, "more than the 15 bytes 4x3 pixels need");
  free(b.data);
  s.extra_rows = 0;
  s.empty_idat = 1;   // an empty IDAT first: nothing to append (memcpy from NULL before)
  b = encode_png(&s);
  Image img;
  char err[1024];
  bool ok = data_image_decode(b.data, b.len, "empty-idat.png", &img, err, sizeof err);
  CHECK(ok && img.w == 4 && img.h == 3 && img.px[11] == 11 / 255.0f, "empty first IDAT: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  free(b.data);
  s.empty_idat = 0;
  // A header that claims 8192x8192 RGBA at 16 bits (512 MB of image data)
  // over a few bytes of IDAT: refused once the data runs out, having
  // allocated no more than the data that arrived.
  uint16_t *row = calloc(3 * 8192 * 4, sizeof(uint16_t));   // the three rows written
  s = (Spec){.w = 8192, .h = 8192, .color = 6, .depth = 16, .samples = row, .extra_rows = 3 - 8192};
  b = encode_png(&s);
  BAD_IMG("claim.png", b.data, b.len, "holds 196611 bytes, expected 536879104 for 8192x8192 pixels");
  free(b.data);
  free(row);
  s = (Spec){.w = 4, .h = 3, .color = 0, .depth = 8, .samples = px};
  s.bad_filter = 7;
  b = encode_png(&s);
  BAD_IMG("filter.png", b.data, b.len, "unknown filter type 7 on row 0");
  free(b.data);
  b = (Bytes){0};   // corrupt zlib data: a broken stream header in the first IDAT
  put(&b, good.data, good.len);
  size_t idat = 33 + 12 + 26;
  b.data[idat + 8] = 0x00;
  fix_crc(&b, idat);
  BAD_IMG("zlib.png", b.data, b.len, "corrupt PNG image data");
  memcpy(b.data + idat + 4, "ABCD", 4);   // an unknown critical chunk
  fix_crc(&b, idat);
  BAD_IMG("crit.png", b.data, b.len, "unknown critical chunk 'ABCD'");
  free(b.data);
  free(good.data);
}

static void test_pgm(void) {
  Image img;
  char err[1024];
  const char *p2 = "P2\n# a comment\n3 2 # trailing comment\n10\n0 5 10\n10 0 2\n";
  bool ok = data_image_decode((const unsigned char *)p2, strlen(p2), "a.pgm", &img, err, sizeof err);
  CHECK(ok, "%s", err);
  if (ok) {
    CHECK(img.w == 3 && img.h == 2 && img.px[1] == 0.5f && img.px[2] == 1 && img.px[5] == 0.2f, "P2 pixels");
    data_image_free(&img);
  }
  const unsigned char p5[] = "P5 2 2 255\n\x00\x33\xcc\xff";
  ok = data_image_decode(p5, sizeof p5 - 1, "b.pgm", &img, err, sizeof err);
  CHECK(ok && img.px[1] == 0.2f && img.px[3] == 1, "P5 8-bit: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  const unsigned char p5w[] = "P5\n2 1\n1000\n\x01\xf4\x03\xe8";   // 500, 1000
  ok = data_image_decode(p5w, sizeof p5w - 1, "c.pgm", &img, err, sizeof err);
  CHECK(ok && img.px[0] == 0.5f && img.px[1] == 1, "P5 16-bit: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  const unsigned char p6[] = "P6 1 1 255\n\xff\x00\x00";
  ok = data_image_decode(p6, sizeof p6 - 1, "d.ppm", &img, err, sizeof err);
  CHECK(ok && fabsf(img.px[0] - 0.299f) < 1e-6f, "P6 luma: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  const char *p3 = "P3 1 1 65535 0 65535 0";
  ok = data_image_decode((const unsigned char *)p3, strlen(p3), "e.ppm", &img, err, sizeof err);
  CHECK(ok && fabsf(img.px[0] - 0.587f) < 1e-6f, "P3 luma: %s", ok ? "" : err);
  if (ok)
    data_image_free(&img);
  BAD_IMG("t.pgm", "P5 2 2 255\n\x01\x02\x03", 14, "is truncated", "2x2 pixels need 4 bytes", "found 3");
  BAD_IMG("v.pgm", "P2 2 1 7 3 9", 12, "pixel 1 (x 1, y 0) is 9, above the maxval 7");
  BAD_IMG("m.pgm", "P2 2 2 7 1 2 3", 14, "is truncated", "need 4 values", "only 6 bytes follow the header");
  BAD_IMG("n.pgm", "P2 2 2 7 1 2 3   ", 17, "is truncated", "need 4 values, found 3");
  // a header that claims 64 megapixels: refused before anything is allocated for them
  BAD_IMG("huge2.pgm", "P2 8192 8192 255\n0 0\n", 21, "is truncated", "8192x8192 pixels need 67108864 values",
          "only 5 bytes");
  BAD_IMG("huge5.pgm", "P5 8192 8192 255\n\0\0\0", 20, "is truncated", "need 67108864 bytes", "found 3");
  BAD_IMG("huge16.pgm", "P5 2 2 65535\n\0\0\0\0", 17, "is truncated", "need 8 bytes", "found 4");
  BAD_IMG("z.pgm", "P5 2 2 0\n", 9, "maxval 0");
  BAD_IMG("big.pgm", "P5 2 2 70000\n", 13, "maxval is larger than 65535");
  BAD_IMG("h.pgm", "P5 2", 4, "truncated", "before the height");
  BAD_IMG("x.pgm", "P2 2 x", 6, "expected the height", "found 'x'");
  BAD_IMG("a.pgm", "P2 1 1 9 q", 10, "expected the next pixel value", "found 'q'");
  BAD_IMG("ws.pgm", "P5 1 1 255x\x01", 12, "expected whitespace after the maxval");
  BAD_IMG("p1.pbm", "P1 1 1 1", 8, "not a PNG or PGM image", "PBM");
}

static void test_resize(void) {
  float src[16];
  for (int i = 0; i < 16; i++)
    src[i] = (float)i;
  Image a = {.w = 4, .h = 4, .px = src}, b;
  data_image_resize(&a, 2, 2, &b);   // each output averages a 2x2 block
  CHECK(b.px[0] == 2.5f && b.px[1] == 4.5f && b.px[2] == 10.5f && b.px[3] == 12.5f,
        "2x2 blocks: %g %g %g %g", b.px[0], b.px[1], b.px[2], b.px[3]);
  data_image_free(&b);
  float two[4] = {0, 1, 0, 1};
  Image c = {.w = 2, .h = 2, .px = two};
  data_image_resize(&c, 4, 1, &b);   // grow across, shrink down
  CHECK(b.px[0] == 0 && b.px[1] == 0.25f && b.px[2] == 0.75f && b.px[3] == 1, "bilinear: %g %g %g %g",
        b.px[0], b.px[1], b.px[2], b.px[3]);
  data_image_free(&b);
  float five[5] = {1, 2, 3, 4, 5};
  Image d = {.w = 5, .h = 1, .px = five};
  data_image_resize(&d, 2, 1, &b);   // 2.5 source pixels per output pixel
  CHECK(fabsf(b.px[0] - (1 + 2 + 1.5f) / 2.5f) < 1e-6f && fabsf(b.px[1] - (1.5f + 4 + 5) / 2.5f) < 1e-6f,
        "fractional areas: %g %g", b.px[0], b.px[1]);
  data_image_free(&b);
  data_image_resize(&a, 4, 4, &b);
  CHECK(!memcmp(b.px, src, sizeof src), "same size copies");
  data_image_free(&b);
  Image big = {.w = 100, .h = 70, .px = malloc(sizeof(float) * 7000)};
  Rng r;
  rng_seed(&r, 3, 0);
  double mean = 0, mean2 = 0;
  for (int i = 0; i < 7000; i++)
    mean += (big.px[i] = rng_uniformf(&r)) / 7000.0;
  data_image_resize(&big, 28, 28, &b);
  for (int i = 0; i < 28 * 28; i++)
    mean2 += b.px[i] / 784.0;
  CHECK(fabs(mean - mean2) < 1e-5, "area averaging keeps the mean: %g vs %g", mean, mean2);
  data_image_free(&b);
  data_image_free(&big);
  // A tall thin image goes through the smaller intermediate, [h, src->w]
  // (4 x 1 floats here, not 1000 x 2): each output row averages half the column.
  float *col = malloc(sizeof(float) * 1000);
  for (int i = 0; i < 1000; i++)
    col[i] = (float)i;
  Image tall = {.w = 1, .h = 1000, .px = col};
  data_image_resize(&tall, 2, 2, &b);
  CHECK(fabsf(b.px[0] - 249.5f) < 1e-3f && b.px[1] == b.px[0] && fabsf(b.px[2] - 749.5f) < 1e-3f &&
        b.px[3] == b.px[2], "tall: %g %g %g %g", b.px[0], b.px[1], b.px[2], b.px[3]);
  data_image_free(&b);
  Image wide = {.w = 1000, .h = 1, .px = col};   // and its transpose, rows first
  data_image_resize(&wide, 2, 2, &b);
  CHECK(fabsf(b.px[0] - 249.5f) < 1e-3f && b.px[2] == b.px[0] && fabsf(b.px[1] - 749.5f) < 1e-3f &&
        b.px[3] == b.px[1], "wide: %g %g %g %g", b.px[0], b.px[1], b.px[2], b.px[3]);
  data_image_free(&b);
  free(col);
}

// data_image_file tells a damaged image from a file in another format.
static void test_sniff(void) {
  t_write(t_path("s.png"), "\x89PNG\r\n\x1a\n\0\0\0\0", 12);
  t_write(t_path("s2.png"), "\x89PNG\n\x1a\n", 7);
  t_write(t_path("s.pgm"), "P5 1 1 255\n", 11);
  t_write(t_path("s.csv"), "label,pixel0\n", 13);
  t_write(t_path("s.idx"), "\0\0\x08\x01\0\0\0\0", 8);
  CHECK(data_image_file(t_path("s.png")) && data_image_file(t_path("s2.png")) && data_image_file(t_path("s.pgm")),
        "images");
  CHECK(!data_image_file(t_path("s.csv")) && !data_image_file(t_path("s.idx")) &&
        !data_image_file(t_path("nothing")), "not images");
}

int main(void) {
  t_tmpdir("image");
  test_png_valid();
  test_png_errors();
  test_pgm();
  test_resize();
  test_sniff();
  return t_finish("test_image");
}
