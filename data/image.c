// image.c: images for `nnc predict`: PGM and PNG files decoded to gray
// floats in [0, 1], and resampled to the model's input size.
//
// The PNG decoder reads non-interlaced PNGs of every colour type (gray,
// gray+alpha, RGB, RGBA, palette) and bit depth (1 to 16). It checks each
// chunk's CRC, joins the IDAT chunks, inflates them with zlib and undoes
// the five row filters. Colour becomes gray with the Rec. 601 luma weights
// (0.299 R + 0.587 G + 0.114 B); alpha is dropped. PGM files may be ASCII
// (P2) or binary (P5), with any maxval up to 65535; their colour siblings
// P3 and P6 are read the same way. A runtime library built without zlib
// (NNC_NO_ZLIB, for a target that has none) checks a PNG's chunks, then
// refuses to inflate its image data, saying so.
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifndef NNC_NO_ZLIB
#include <zlib.h>
#endif

#define IMAGE_MAX_PIXELS ((int64_t)1 << 26)   // 64 megapixels

void data_image_free(Image *img) {
  free(img->px);
  *img = (Image){0};
}

static float luma(double r, double g, double b) { return (float)(0.299 * r + 0.587 * g + 0.114 * b); }

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

//
// PNG
//

// A PNG file being decoded.
typedef struct Png {
  const char *name;           // for messages
  const unsigned char *buf;   // the whole file
  size_t len;
  uint32_t w, h;              // from IHDR
  int depth;                  // bits per sample: 1, 2, 4, 8 or 16
  int color;                  // 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
  int channels;               // samples per pixel
  unsigned char plte[256][3]; // the palette's RGB entries
  int nplte;                  // entries in plte; 0 when there is no PLTE chunk
  unsigned char *idat;        // the IDAT chunks' data, joined
  size_t nidat, capidat;
  char *err;
  size_t errsz;
} Png;

// IHDR: size, bit depth and colour type, which must be a valid pair.
static bool png_ihdr(Png *p, const unsigned char *d, uint32_t n) {
  if (n != 13) {
    errorf(p->err, p->errsz, "%s: IHDR chunk is %u bytes, expected 13", p->name, n);
    return false;
  }
  p->w = be32(d);
  p->h = be32(d + 4);
  p->depth = d[8];
  p->color = d[9];
  static const char *const depths[7] = {"\1\2\4\10\20", "", "\10\20", "\1\2\4\10", "\10\20", "", "\10\20"};
  static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
  if (p->color > 6 || !depths[p->color][0] || !p->depth || !strchr(depths[p->color], p->depth)) {
    errorf(p->err, p->errsz, "%s: invalid PNG: bit depth %d with colour type %d", p->name, p->depth, p->color);
    return false;
  }
  p->channels = channels[p->color];
  if (p->w == 0 || p->h == 0 || p->w > INT32_MAX || p->h > INT32_MAX ||
      (int64_t)p->w * p->h > IMAGE_MAX_PIXELS) {
    errorf(p->err, p->errsz, "%s: PNG size %ux%u is %s", p->name, p->w, p->h,
              p->w && p->h ? "too large (the limit is 64 megapixels)" : "empty");
    return false;
  }
  if (d[10] != 0 || d[11] != 0) {
    errorf(p->err, p->errsz, "%s: invalid PNG: unknown compression method %d or filter method %d",
              p->name, d[10], d[11]);
    return false;
  }
  if (d[12] != 0) {
    errorf(p->err, p->errsz, "%s: interlaced PNG images are not supported\n"
              "---> HINT: convert it to a non-interlaced PNG, e.g. `convert %s -interlace none out.png` "
              "(ImageMagick)", p->name, p->name);
    return false;
  }
  return true;
}

static bool png_plte(Png *p, const unsigned char *d, uint32_t n) {
  if (n % 3 || n == 0 || n > 768) {
    errorf(p->err, p->errsz, "%s: invalid PNG: PLTE chunk of %u bytes (expected 3 to 768, "
              "a multiple of 3)", p->name, n);
    return false;
  }
  p->nplte = (int)(n / 3);
  memcpy(p->plte, d, n);
  return true;
}

static void png_idat(Png *p, const unsigned char *d, uint32_t n) {
  if (n == 0)
    return;
  if (p->nidat + n > p->capidat) {
    p->capidat = (p->nidat + n) * 2;
    p->idat = xrealloc(p->idat, p->capidat);
  }
  memcpy(p->idat + p->nidat, d, n);
  p->nidat += n;
}

// The CRC-32 of a chunk's type and data: zlib's, or without zlib the same
// sum bit by bit.
static uint32_t chunk_crc(const unsigned char *d, uint32_t n) {
#ifndef NNC_NO_ZLIB
  return (uint32_t)crc32(crc32(0, NULL, 0), d, n);
#else
  uint32_t c = 0xffffffffu;
  for (uint32_t i = 0; i < n; i++) {
    c ^= d[i];
    for (int k = 0; k < 8; k++)
      c = c >> 1 ^ (0xedb88320u & -(c & 1));
  }
  return ~c;
#endif
}

// Checks the chunk at pos: its length against the file, and its CRC.
// *n gets the length of its data.
static bool png_chunk_ok(Png *p, size_t pos, uint32_t *n) {
  if (p->len - pos < 12) {
    errorf(p->err, p->errsz, "%s: PNG is truncated: it ends at byte %zu, before its IEND chunk%s\n"
              "---> HINT: the file was probably cut off", p->name, p->len,
              p->len > pos ? " (inside a chunk header)" : "");
    return false;
  }
  *n = be32(p->buf + pos);
  const unsigned char *type = p->buf + pos + 4;
  char tname[5];
  for (int i = 0; i < 4; i++)
    tname[i] = type[i] >= 0x20 && type[i] < 0x7F ? (char)type[i] : '?';
  tname[4] = 0;
  if (*n > INT32_MAX || p->len - pos - 12 < *n) {
    errorf(p->err, p->errsz, "%s: PNG chunk '%s' at byte %zu is truncated: it claims %u bytes, "
              "%zu remain\n---> HINT: the file was probably cut off", p->name, tname, pos, *n,
              p->len - pos - 12);
    return false;
  }
  uint32_t stored = be32(type + 4 + *n), crc = chunk_crc(type, *n + 4);
  if (stored != crc) {
    errorf(p->err, p->errsz, "%s: bad CRC in PNG chunk '%s' at byte %zu (stored 0x%08x, computed 0x%08x)\n"
              "---> HINT: the file is corrupt", p->name, tname, pos, stored, crc);
    return false;
  }
  return true;
}

// Walks the chunks up to IEND and handles IHDR, PLTE and IDAT; ancillary
// chunks (a lowercase first letter) are skipped.
static bool png_chunks(Png *p) {
  size_t pos = 8;
  for (int k = 0;; k++) {
    uint32_t n;
    if (!png_chunk_ok(p, pos, &n))
      return false;
    const unsigned char *type = p->buf + pos + 4, *d = type + 4;
    pos += 12 + (size_t)n;
    bool ihdr = !memcmp(type, "IHDR", 4), plte = !memcmp(type, "PLTE", 4), idat = !memcmp(type, "IDAT", 4);
    if ((k == 0) != ihdr) {
      errorf(p->err, p->errsz, "%s: invalid PNG: %s", p->name,
                k == 0 ? "the first chunk is not IHDR" : "a second IHDR chunk");
      return false;
    }
    if ((ihdr && !png_ihdr(p, d, n)) || (plte && !png_plte(p, d, n)))
      return false;
    if (idat)
      png_idat(p, d, n);
    if (!memcmp(type, "IEND", 4))
      return true;
    if (!(type[0] & 0x20) && !ihdr && !plte && !idat) {
      errorf(p->err, p->errsz, "%s: PNG has an unknown critical chunk '%.4s'", p->name, (const char *)type);
      return false;
    }
  }
}

// Inflates the joined IDAT data into *out, which must come to exactly n
// bytes. The buffer grows as the data arrives (to at most twice its size),
// so that a header that claims a huge image costs nothing until the
// compressed data proves it.
#ifdef NNC_NO_ZLIB
static bool png_inflate(Png *p, unsigned char **out, size_t n) {
  (void)out, (void)n;
  errorf(p->err, p->errsz, "%s: cannot decode PNG images: this runtime library was built without zlib\n"
            "---> HINT: rebuild it with zlib (zlib1g-dev for the target), or convert the image to PGM "
            "(`convert %s %s.pgm`)", p->name, p->name, p->name);
  return false;
}
#else
static bool png_inflate(Png *p, unsigned char **out, size_t n) {
  z_stream zs = {0};
  if (inflateInit(&zs) != Z_OK)
    nnc_fatal("zlib: inflateInit failed");
  size_t cap = n + 1 < (1 << 20) ? n + 1 : (1 << 20);   // n + 1: a spare byte tells "too much" from "just right"
  unsigned char *buf = xmalloc(cap);
  zs.next_in = p->idat;
  size_t in_left = p->nidat;
  int ret;
  for (;;) {
    if (zs.avail_in == 0 && in_left) {
      zs.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
      in_left -= zs.avail_in;
    }
    if (zs.total_out == cap) {
      if (cap == n + 1) {
        ret = Z_BUF_ERROR;   // more data than the image needs
        break;
      }
      cap = cap > (n + 1) / 2 ? n + 1 : 2 * cap;
      buf = xrealloc(buf, cap);
    }
    zs.next_out = buf + zs.total_out;
    zs.avail_out = (uInt)(cap - zs.total_out);
    ret = inflate(&zs, Z_NO_FLUSH);
    if (ret != Z_OK)
      break;
  }
  *out = buf;
  size_t got = zs.total_out;
  const char *msg = zs.msg ? zs.msg : "unknown error";
  bool ok = ret == Z_STREAM_END && got == n;
  if (ret == Z_STREAM_END && got != n)
    errorf(p->err, p->errsz, "%s: PNG image data holds %zu bytes, expected %zu for %ux%u pixels",
              p->name, got, n, p->w, p->h);
  else if (ret == Z_BUF_ERROR && got == n + 1)
    errorf(p->err, p->errsz, "%s: PNG image data holds more than the %zu bytes %ux%u pixels need",
              p->name, n, p->w, p->h);
  else if (ret == Z_BUF_ERROR)
    errorf(p->err, p->errsz, "%s: PNG image data is truncated: the compressed stream ends early%s",
              p->name, p->nidat ? "" : " (there is no IDAT chunk)");
  else if (!ok)
    errorf(p->err, p->errsz, "%s: corrupt PNG image data: %s", p->name, msg);
  inflateEnd(&zs);
  return ok;
}
#endif

static int paeth(int a, int b, int c) {
  int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Undoes the row filters in place; each row is a filter byte then stride bytes.
static bool png_unfilter(Png *p, unsigned char *data, size_t stride, size_t bpp) {
  const unsigned char *prev = NULL;
  for (uint32_t y = 0; y < p->h; y++) {
    unsigned char *row = data + y * (stride + 1), f = row[0], *r = row + 1;
    if (f > 4) {
      errorf(p->err, p->errsz, "%s: corrupt PNG image data: unknown filter type %d on row %u",
                p->name, f, y);
      return false;
    }
    for (size_t i = 0; i < stride; i++) {
      int a = i >= bpp ? r[i - bpp] : 0, b = prev ? prev[i] : 0, c = prev && i >= bpp ? prev[i - bpp] : 0;
      int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth(a, b, c);
      r[i] = (unsigned char)(r[i] + pred);
    }
    prev = r;
  }
  return true;
}

// Sample i of a row of samples depth bits wide.
static unsigned png_sample(const unsigned char *r, int depth, size_t i) {
  if (depth == 8)
    return r[i];
  if (depth == 16)
    return (unsigned)r[2 * i] << 8 | r[2 * i + 1];
  size_t bit = i * depth;
  return (r[bit / 8] >> (8 - depth - bit % 8)) & ((1u << depth) - 1);
}

// Turns the unfiltered rows into gray pixels.
static bool png_to_gray(Png *p, const unsigned char *data, size_t stride, Image *img) {
  double max = (1u << p->depth) - 1;
  for (uint32_t y = 0; y < p->h; y++) {
    const unsigned char *r = data + y * (stride + 1) + 1;
    float *out = img->px + (size_t)y * p->w;
    for (uint32_t x = 0; x < p->w; x++) {
      size_t s = (size_t)x * p->channels;
      if (p->color == 3) {
        unsigned k = png_sample(r, p->depth, s);
        if ((int)k >= p->nplte) {
          errorf(p->err, p->errsz, "%s: PNG pixel (%u, %u) uses palette entry %u, but the palette has %d",
                    p->name, x, y, k, p->nplte);
          return false;
        }
        out[x] = luma(p->plte[k][0], p->plte[k][1], p->plte[k][2]) / 255.0f;
      } else if (p->channels >= 3) {
        out[x] = (float)(luma(png_sample(r, p->depth, s), png_sample(r, p->depth, s + 1),
                              png_sample(r, p->depth, s + 2)) / max);
      } else {
        out[x] = (float)(png_sample(r, p->depth, s) / max);
      }
    }
  }
  return true;
}

static bool png_decode(Png *p, Image *img) {
  if (!png_chunks(p))
    return false;
  if (p->color == 3 && !p->nplte) {
    errorf(p->err, p->errsz, "%s: invalid PNG: a palette image without a PLTE chunk", p->name);
    return false;
  }
  size_t bits = (size_t)p->channels * p->depth, stride = ((size_t)p->w * bits + 7) / 8;
  size_t n = p->h * (stride + 1);
  unsigned char *data = NULL;
  bool ok = png_inflate(p, &data, n) && png_unfilter(p, data, stride, bits >= 8 ? bits / 8 : 1);
  if (ok) {
    img->w = (int)p->w;
    img->h = (int)p->h;
    img->px = xmalloc(sizeof(float) * p->w * p->h);
    ok = png_to_gray(p, data, stride, img);
  }
  free(data);
  return ok;
}

//
// PGM (and PPM)
//
// "P5 WIDTH HEIGHT MAXVAL" and one whitespace character, then the samples,
// one byte each when MAXVAL < 256, else two (big-endian). P2 writes the
// header and the samples as ASCII numbers. '#' starts a comment in the header.
//

// A PNM file being decoded.
typedef struct Pnm {
  const char *name;
  const unsigned char *buf;
  size_t len;
  size_t pos;                 // the next byte
  int channels;               // 1 gray (P2, P5), 3 colour (P3, P6)
  bool ascii;                 // P2, P3
  char *err;
  size_t errsz;
} Pnm;

// Skips whitespace and comments.
static void pnm_space(Pnm *p) {
  while (p->pos < p->len) {
    unsigned char c = p->buf[p->pos];
    if (c == '#') {
      while (p->pos < p->len && p->buf[p->pos] != '\n')
        p->pos++;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      p->pos++;
    } else {
      break;
    }
  }
}

// Reads an unsigned decimal number; what names it in messages.
static bool pnm_number(Pnm *p, const char *what, long max, long *v) {
  pnm_space(p);
  size_t start = p->pos;
  long x = 0;
  while (p->pos < p->len && p->buf[p->pos] >= '0' && p->buf[p->pos] <= '9' && x <= max)
    x = x * 10 + (p->buf[p->pos++] - '0');
  if (p->pos == start) {
    if (p->pos >= p->len)
      errorf(p->err, p->errsz, "%s: is truncated: the file ends before the %s", p->name, what);
    else
      errorf(p->err, p->errsz, "%s: expected the %s at byte %zu, found '%c'", p->name, what,
                p->pos, p->buf[p->pos] >= 0x20 && p->buf[p->pos] < 0x7F ? p->buf[p->pos] : '?');
    return false;
  }
  if (x > max) {
    errorf(p->err, p->errsz, "%s: the %s is larger than %ld", p->name, what, max);
    return false;
  }
  *v = x;
  return true;
}

// Sample i of the binary data, or -1 past its end.
static long pnm_binary(Pnm *p, size_t i, int bytes) {
  size_t at = p->pos + i * bytes;
  if (at + bytes > p->len)
    return -1;
  return bytes == 1 ? p->buf[at] : (long)p->buf[at] << 8 | p->buf[at + 1];
}

// Checks that the bytes after the header can hold w x h pixels before
// anything is allocated for them: ns samples take ns or 2 ns bytes in
// binary, and at least 2 ns in ASCII (a digit and a separator each).
static bool pnm_room(Pnm *p, long w, long h, long maxval) {
  size_t ns = (size_t)w * h * p->channels, left = p->len - p->pos;
  size_t need = p->ascii ? 2 * ns : maxval < 256 ? ns : 2 * ns;
  if (left >= need)
    return true;
  if (p->ascii)
    errorf(p->err, p->errsz, "%s: is truncated: %ldx%ld pixels need %zu values, but only %zu bytes "
              "follow the header", p->name, w, h, ns, left);
  else
    errorf(p->err, p->errsz, "%s: is truncated: %ldx%ld pixels need %zu bytes of data, found %zu",
              p->name, w, h, need, left);
  return false;
}

// Reads the samples into img, scaling by maxval.
static bool pnm_samples(Pnm *p, long maxval, Image *img) {
  size_t npx = (size_t)img->w * img->h, ns = npx * p->channels;
  int bytes = maxval < 256 ? 1 : 2;
  double rgb[3];
  for (size_t i = 0; i < ns; i++) {
    long v;
    if (p->ascii) {
      pnm_space(p);
      if (p->pos >= p->len) {
        errorf(p->err, p->errsz, "%s: is truncated: %dx%d pixels need %zu values, found %zu",
                  p->name, img->w, img->h, ns, i);
        return false;
      }
      if (!pnm_number(p, "next pixel value", 65535, &v))
        return false;
    } else {
      v = pnm_binary(p, i, bytes);
    }
    if (v > maxval) {
      errorf(p->err, p->errsz, "%s: pixel %zu (x %zu, y %zu) is %ld, above the maxval %ld",
                p->name, i / p->channels, i / p->channels % img->w, i / p->channels / img->w, v, maxval);
      return false;
    }
    rgb[i % p->channels] = (double)v / maxval;
    if ((int)(i % p->channels) == p->channels - 1)
      img->px[i / p->channels] = p->channels == 1 ? (float)rgb[0] : luma(rgb[0], rgb[1], rgb[2]);
  }
  return true;
}

static bool pnm_decode(Pnm *p, Image *img) {
  long w, h, maxval;
  p->pos = 2;
  if (!pnm_number(p, "width", INT32_MAX, &w) || !pnm_number(p, "height", INT32_MAX, &h) ||
      !pnm_number(p, "maxval", 65535, &maxval))
    return false;
  if (w == 0 || h == 0 || maxval == 0 || (int64_t)w * h > IMAGE_MAX_PIXELS) {
    errorf(p->err, p->errsz, "%s: invalid size %ldx%ld or maxval %ld (need a size of at most 64 "
              "megapixels and a maxval of 1 to 65535)", p->name, w, h, maxval);
    return false;
  }
  if (!p->ascii) {
    if (p->pos >= p->len) {
      errorf(p->err, p->errsz, "%s: is truncated: the file ends after its header", p->name);
      return false;
    }
    unsigned char c = p->buf[p->pos++];   // the single whitespace character after maxval
    if (!strchr(" \t\r\n\v\f", c) || !c) {
      errorf(p->err, p->errsz, "%s: expected whitespace after the maxval, found byte 0x%02x",
                p->name, c);
      return false;
    }
  }
  if (!pnm_room(p, w, h, maxval))
    return false;
  img->w = (int)w;
  img->h = (int)h;
  img->px = xmalloc(sizeof(float) * (size_t)w * h);
  return pnm_samples(p, maxval, img);
}

//
// Loading and resizing
//

// Names what the first bytes look like when they are no PNG or PGM.
static const char *guess_format(const unsigned char *b, size_t n) {
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8)
    return "a JPEG file";
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
    return "a GIF file";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M')
    return "a BMP file";
  if (n >= 2 && b[0] == 'P' && (b[1] == '1' || b[1] == '4'))
    return "a PBM (bitmap) file";
  return n ? "in an unknown format" : "empty";
}

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

// Whether the first bytes say PNG (also with a damaged signature) or a
// netpbm image of any kind (the decoder names those it does not read).
static bool looks_like_image(const unsigned char *b, size_t n) {
  return (n >= 4 && !memcmp(b, png_signature, 4)) ||
         (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7' && strchr(" \t\r\n#", b[2]) && b[2]);
}

bool data_image_file(const char *path) {
  unsigned char b[4];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(b, 1, sizeof b, f) : 0;
  if (f)
    fclose(f);
  return looks_like_image(b, n);
}

bool data_image_decode(const unsigned char *buf, size_t len, const char *name, Image *img,
                     char *err, size_t errsz) {
  *img = (Image){0};
  bool ok;
  if (len >= 4 && !memcmp(buf, png_signature, 4) && (len < 8 || memcmp(buf, png_signature, 8))) {
    char got[40] = "";
    for (size_t i = 0; i < 8 && i < len; i++)
      snprintf(got + 3 * i, sizeof got - 3 * i, " %02X", buf[i]);
    errorf(err, errsz, "%s: the PNG signature is damaged: its first bytes are%s, expected 89 50 4E 47 "
              "0D 0A 1A 0A\n---> HINT: %s", name, got, len < 8 ? "the file is cut off"
              : "line ends were changed, as a transfer in text mode does; copy the file again in binary mode");
    ok = false;
  } else if (len >= 8 && !memcmp(buf, png_signature, 8)) {
    Png p = {.name = name, .buf = buf, .len = len, .err = err, .errsz = errsz};
    ok = png_decode(&p, img);
    free(p.idat);
  } else if (len >= 2 && buf[0] == 'P' && strchr("2356", buf[1]) && buf[1]) {
    Pnm p = {.name = name, .buf = buf, .len = len, .err = err, .errsz = errsz,
             .channels = buf[1] == '3' || buf[1] == '6' ? 3 : 1, .ascii = buf[1] <= '3'};
    ok = pnm_decode(&p, img);
  } else {
    errorf(err, errsz, "%s: not a PNG or PGM image: the file is %s\n"
              "---> HINT: convert it, e.g. `convert %s -colorspace Gray digit.png` (ImageMagick)",
              name, guess_format(buf, len), name);
    ok = false;
  }
  if (!ok)
    data_image_free(img);
  return ok;
}

bool data_image_load(const char *path, Image *img, char *err, size_t errsz) {
  *img = (Image){0};
  size_t len;
  char *buf = read_file(path, &len);
  if (!buf) {
    errorf(err, errsz, "%s: cannot read: %s", path, strerror(errno));
    return false;
  }
  bool ok = data_image_decode((const unsigned char *)buf, len, path, img, err, errsz);
  free(buf);
  return ok;
}

// Output sample j of dn along one axis of sn source samples p[0], p[stride],
// ...: the average over the source span it covers when shrinking, linear
// interpolation between the two nearest samples (centres aligned) when
// growing.
static float resample(const float *p, ptrdiff_t stride, int sn, int dn, int j) {
  if (dn == sn)
    return p[j * stride];
  if (dn < sn) {
    double scale = (double)sn / dn, a = j * scale, b = a + scale, sum = 0;
    for (int i = (int)a; i < sn && i < b; i++) {
      double lo = i > a ? i : a, hi = i + 1 < b ? i + 1 : b;
      sum += (hi - lo) * p[i * stride];
    }
    return (float)(sum / scale);
  }
  double x = (j + 0.5) * sn / dn - 0.5;
  if (x < 0)
    x = 0;
  int i0 = (int)x, i1 = i0 + 1 < sn ? i0 + 1 : i0;
  double f = x - i0;
  return (float)((1 - f) * p[i0 * stride] + f * p[i1 * stride]);
}

// The two axes are resampled one after the other, through an intermediate
// image of either [src->h, w] (rows first) or [h, src->w] (columns first):
// whichever is smaller, so that a 1 x 67M image bound for 28 x 28 needs 28
// floats in between, not 67M x 28. Either order gives the same values up
// to rounding, since each axis's weights do not depend on the other.
void data_image_resize(const Image *src, int w, int h, Image *dst) {
  float *px = xmalloc(sizeof(float) * (size_t)h * w);   // [h, w]
  if ((int64_t)src->h * w <= (int64_t)h * src->w) {
    float *tmp = xmalloc(sizeof(float) * (size_t)src->h * w);   // [src->h, w]: rows resampled
    for (int y = 0; y < src->h; y++)
      for (int x = 0; x < w; x++)
        tmp[(size_t)y * w + x] = resample(src->px + (size_t)y * src->w, 1, src->w, w, x);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        px[(size_t)y * w + x] = resample(tmp + x, w, src->h, h, y);
    free(tmp);
  } else {
    float *tmp = xmalloc(sizeof(float) * (size_t)h * src->w);   // [h, src->w]: columns resampled
    for (int y = 0; y < h; y++)
      for (int x = 0; x < src->w; x++)
        tmp[(size_t)y * src->w + x] = resample(src->px + x, src->w, src->h, h, y);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        px[(size_t)y * w + x] = resample(tmp + (size_t)y * src->w, 1, src->w, w, x);
    free(tmp);
  }
  *dst = (Image){.w = w, .h = h, .px = px};
}
