// kernels.c: the reference kernels for elementwise ops, matmul and softmax.
//
// Broadcasting works on shapes padded on the left with 1s to K_MAX_DIMS
// dimensions. Each operand gets a stride along every output dimension, 0
// where broadcasting stretches it, and an odometer walks the output one row
// (the innermost dimension) at a time. The gradient of a stretched operand
// is the output gradient summed back to the operand's shape, in double
// (k_sum_to_shape). Matmul is the BLAS's sgemm (k_blas_sgemm) with the batch folded into M.
#include "runtime.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// A broken promise by the caller (shapes the passes should have rejected).
#define K_CHECK(cond, what)                    \
  do {                                         \
    if (!(cond))                               \
      nnc_bug(__FILE__, __LINE__, what);       \
  } while (0)

//
// Shapes and broadcasting
//

KShape k_shape(int ndim, const int64_t *dim) {
  K_CHECK(ndim >= 0 && ndim <= K_MAX_DIMS, "k_shape: ndim out of range");
  KShape s = {.ndim = ndim};
  for (int i = 0; i < ndim; i++)
    s.dim[i] = dim[i];
  return s;
}

int64_t k_numel(const KShape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++)
    n *= s->dim[i];
  return n;
}

// out = s's dims padded on the left with 1s to K_MAX_DIMS.
static void pad_dims(int64_t *out, const KShape *s) {
  int off = K_MAX_DIMS - s->ndim;
  for (int i = 0; i < K_MAX_DIMS; i++)
    out[i] = i < off ? 1 : s->dim[i - off];
}

bool k_broadcast_shape(KShape *out, const KShape *a, const KShape *b) {
  int64_t pa[K_MAX_DIMS], pb[K_MAX_DIMS];
  pad_dims(pa, a);
  pad_dims(pb, b);
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  out->ndim = n;
  for (int i = 0; i < n; i++) {
    int64_t x = pa[K_MAX_DIMS - n + i], y = pb[K_MAX_DIMS - n + i];
    if (x != y && x != 1 && y != 1)
      return false;
    out->dim[i] = x == 1 ? y : x;
  }
  return true;
}

// True if a and b are the same shape once both are padded with leading 1s.
static bool same_padded(const KShape *a, const KShape *b) {
  int64_t pa[K_MAX_DIMS], pb[K_MAX_DIMS];
  pad_dims(pa, a);
  pad_dims(pb, b);
  return memcmp(pa, pb, sizeof pa) == 0;
}

// True if x, padded, is 1s followed by exactly the trailing dims of the
// padded output shape yd: then x repeats along y with period numel(x), as a
// bias [C] does along [N, C].
static bool is_suffix(const KShape *x, const int64_t *yd) {
  int64_t px[K_MAX_DIMS];
  pad_dims(px, x);
  int k = 0;
  while (k < K_MAX_DIMS && px[k] == 1)
    k++;
  for (int i = k; i < K_MAX_DIMS; i++)
    if (px[i] != yd[i])
      return false;
  return true;
}

// Walks an output shape in row-major order, one innermost row at a time,
// tracking where each row starts in two operands a and b.
typedef struct Bcast {
  int64_t dim[K_MAX_DIMS];      // output shape, padded
  int64_t sa[K_MAX_DIMS];       // a's stride along each output dim; 0 where stretched
  int64_t sb[K_MAX_DIMS];       // b's, likewise
  int64_t idx[K_MAX_DIMS - 1];  // odometer over every dim but the innermost
  int64_t offa, offb;           // offsets of the current row's first element
  int64_t rows;                 // number of rows to visit
  int64_t len;                  // elements per row: dim[K_MAX_DIMS-1]
} Bcast;

// st = x's contiguous strides, 0 along the dims where x has size 1.
static void bcast_strides(int64_t *st, const KShape *x) {
  int64_t px[K_MAX_DIMS];
  pad_dims(px, x);
  int64_t s = 1;
  for (int i = K_MAX_DIMS - 1; i >= 0; i--) {
    st[i] = px[i] == 1 ? 0 : s;
    s *= px[i];
  }
}

static void bcast_init(Bcast *w, const KShape *ys, const KShape *as, const KShape *bs) {
  memset(w, 0, sizeof *w);
  pad_dims(w->dim, ys);
  bcast_strides(w->sa, as);
  bcast_strides(w->sb, bs);
  w->len = w->dim[K_MAX_DIMS - 1];
  w->rows = w->len > 0;
  for (int i = 0; i < K_MAX_DIMS - 1; i++)
    w->rows *= w->dim[i];
}

// Moves to the next row: the odometer's last digit turns first.
static void bcast_next(Bcast *w) {
  for (int d = K_MAX_DIMS - 2; d >= 0; d--) {
    w->offa += w->sa[d];
    w->offb += w->sb[d];
    if (++w->idx[d] < w->dim[d])
      return;
    w->offa -= w->sa[d] * w->dim[d];
    w->offb -= w->sb[d] * w->dim[d];
    w->idx[d] = 0;
  }
}

// y[i] = a[i*sa] op b[i*sb] for i < n; a stride of 0 repeats one value.
static void binary_row(KBinary op, float *y, const float *a, int64_t sa,
                       const float *b, int64_t sb, int64_t n) {
  switch (op) {
  case K_ADD:
    for (int64_t i = 0; i < n; i++)
      y[i] = a[i * sa] + b[i * sb];
    return;
  case K_SUB:
    for (int64_t i = 0; i < n; i++)
      y[i] = a[i * sa] - b[i * sb];
    return;
  case K_MUL:
    for (int64_t i = 0; i < n; i++)
      y[i] = a[i * sa] * b[i * sb];
    return;
  case K_DIV:
    for (int64_t i = 0; i < n; i++)
      y[i] = a[i * sa] / b[i * sb];
    return;
  }
  unreachable();
}

// Fast paths first: same shape, a scalar operand, an operand that repeats
// with a period (bias); then the general odometer walk.
void k_binary_forward(KBinary op, float *y, const float *a, const KShape *as,
                      const float *b, const KShape *bs) {
  KShape ys;
  K_CHECK(k_broadcast_shape(&ys, as, bs), "k_binary_forward: shapes do not broadcast");
  int64_t ny = k_numel(&ys), na = k_numel(as), nb = k_numel(bs);
  if (ny == 0)
    return;
  if (na == ny && nb == ny) {
    binary_row(op, y, a, 1, b, 1, ny);
    return;
  }
  if (na == ny && nb == 1) {
    binary_row(op, y, a, 1, b, 0, ny);
    return;
  }
  if (nb == ny && na == 1) {
    binary_row(op, y, a, 0, b, 1, ny);
    return;
  }
  int64_t yd[K_MAX_DIMS];
  pad_dims(yd, &ys);
  if (na == ny && is_suffix(bs, yd)) {
    for (int64_t r = 0; r < ny; r += nb)
      binary_row(op, y + r, a + r, 1, b, 1, nb);
    return;
  }
  if (nb == ny && is_suffix(as, yd)) {
    for (int64_t r = 0; r < ny; r += na)
      binary_row(op, y + r, a, 1, b + r, 1, na);
    return;
  }
  Bcast w;
  bcast_init(&w, &ys, as, bs);
  for (int64_t r = 0; r < w.rows; r++, y += w.len) {
    binary_row(op, y, a + w.offa, w.sa[K_MAX_DIMS - 1], b + w.offb, w.sb[K_MAX_DIMS - 1], w.len);
    bcast_next(&w);
  }
}

void k_slice_forward(float *y, const float *x, int64_t outer, int64_t xc, int64_t yc, int64_t inner,
                     int64_t start, int64_t step) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < yc; j++)
      memcpy(y + (o * yc + j) * inner, x + (o * xc + start + j * step) * inner, sizeof(float) * inner);
}

void k_slice_backward(float *dx, const float *dy, int64_t outer, int64_t xc, int64_t yc, int64_t inner,
                      int64_t start, int64_t step) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < yc; j++) {
      float *d = dx + (o * xc + start + j * step) * inner;
      const float *s = dy + (o * yc + j) * inner;
      for (int64_t i = 0; i < inner; i++)
        d[i] += s[i];
    }
}

void k_concat_part(float *y, const float *x, int64_t outer, int64_t xouter, int64_t yc, int64_t xc,
                   int64_t inner, int64_t at) {
  for (int64_t o = 0; o < outer; o++)
    memcpy(y + (o * yc + at) * inner, x + (o % xouter) * xc * inner, sizeof(float) * xc * inner);
}

// Walks x's elements in order: for each, its index o in the reduced
// result and its position p (row-major over the axes), as floats.
typedef struct AxesWalk {
  int64_t stride[K_MAX_DIMS], pstride[K_MAX_DIMS], at[K_MAX_DIMS], n, o, p;
  const KShape *xs;
} AxesWalk;

static AxesWalk walk_start(const KShape *xs, unsigned axes) {
  AxesWalk w = {.n = 1, .xs = xs};
  int64_t ys = 1, ps = 1;
  for (int d = xs->ndim - 1; d >= 0; d--) {
    bool gone = axes >> d & 1;
    w.stride[d] = gone ? 0 : ys;
    w.pstride[d] = gone ? ps : 0;
    ys *= gone ? 1 : xs->dim[d];
    ps *= gone ? xs->dim[d] : 1;
    w.n *= xs->dim[d];
  }
  return w;
}

static void walk_next(AxesWalk *w) {
  for (int d = w->xs->ndim - 1; d >= 0; d--) {
    w->o += w->stride[d];
    w->p += w->pstride[d];
    if (++w->at[d] < w->xs->dim[d])
      return;
    w->o -= w->stride[d] * w->at[d];
    w->p -= w->pstride[d] * w->at[d];
    w->at[d] = 0;
  }
}

void k_max_axes(float *y, const float *x, const KShape *xs, unsigned axes) {
  AxesWalk w = walk_start(xs, axes);
  for (int64_t i = 0; i < w.n; i++, walk_next(&w))
    if (x[i] > y[w.o] || x[i] != x[i])
      y[w.o] = x[i];
}

void k_max_first(float *first, const float *x, const float *y, const KShape *xs, unsigned axes) {
  AxesWalk w = walk_start(xs, axes);
  for (int64_t i = 0; i < w.n; i++, walk_next(&w)) {
    float v = x[i] == y[w.o] ? -(float)w.p : -INFINITY;
    if (v > first[w.o] || v != v)
      first[w.o] = v;
  }
}

void k_max_grad(float *dx, const float *g, const float *first, const KShape *xs, unsigned axes) {
  AxesWalk w = walk_start(xs, axes);
  for (int64_t i = 0; i < w.n; i++, walk_next(&w))
    dx[i] = (float)w.p == -first[w.o] ? g[w.o] : 0.0f;
}

void k_sum_axes(float *y, const float *x, const KShape *xs, unsigned axes, float scale) {
  int64_t stride[K_MAX_DIMS], at[K_MAX_DIMS] = {0}, n = 1, ys = 1;
  for (int d = xs->ndim - 1; d >= 0; d--) {   // y's stride for each of x's dimensions (0: reduced)
    stride[d] = axes >> d & 1 ? 0 : ys;
    ys *= axes >> d & 1 ? 1 : xs->dim[d];
    n *= xs->dim[d];
  }
  int64_t o = 0;
  for (int64_t i = 0; i < n; i++) {
    y[o] += x[i] * scale;
    for (int d = xs->ndim - 1; d >= 0; d--) {   // the next index, odometer-wise
      o += stride[d];
      if (++at[d] < xs->dim[d])
        break;
      o -= stride[d] * at[d];
      at[d] = 0;
    }
  }
}

void k_sum_to_shape(float *dst, const KShape *ds, const float *src, const KShape *ss) {
  KShape bs;
  K_CHECK(k_broadcast_shape(&bs, ds, ss) && same_padded(&bs, ss),
          "k_sum_to_shape: destination does not broadcast to the source's shape");
  int64_t nd = k_numel(ds), ns = k_numel(ss);
  if (nd == ns) {
    for (int64_t i = 0; i < ns; i++)
      dst[i] += src[i];
    return;
  }
  // Walk src with dst as operand "b": offb is where each src row lands.
  double *acc = xcalloc(nd, sizeof(double));    // (nd)
  Bcast w;
  bcast_init(&w, ss, ss, ds);
  int64_t sb = w.sb[K_MAX_DIMS - 1];
  for (int64_t r = 0; r < w.rows; r++, src += w.len) {
    double *row = acc + w.offb;
    for (int64_t i = 0; i < w.len; i++)
      row[i * sb] += src[i];
    bcast_next(&w);
  }
  for (int64_t i = 0; i < nd; i++)
    dst[i] += (float)acc[i];
  free(acc);
}

// Each gradient term is itself a broadcast elementwise op with dy's shape,
// computed into a temporary and then summed down to the operand's shape.
void k_binary_backward(KBinary op, float *da, float *db, const float *dy,
                       const float *a, const KShape *as, const float *b, const KShape *bs) {
  KShape ys;
  K_CHECK(k_broadcast_shape(&ys, as, bs), "k_binary_backward: shapes do not broadcast");
  int64_t ny = k_numel(&ys);
  float *t = op == K_ADD ? NULL : xmalloc(ny * sizeof(float));   // (ys): a gradient term
  if (da) {
    if (op == K_ADD || op == K_SUB) {
      k_sum_to_shape(da, as, dy, &ys);
    } else {
      k_binary_forward(op, t, dy, &ys, b, bs);   // dy * b  or  dy / b
      k_sum_to_shape(da, as, t, &ys);
    }
  }
  if (db) {
    switch (op) {
    case K_ADD:
      k_sum_to_shape(db, bs, dy, &ys);
      break;
    case K_SUB:
      k_neg_forward(t, dy, ny);
      k_sum_to_shape(db, bs, t, &ys);
      break;
    case K_MUL:
      k_binary_forward(K_MUL, t, dy, &ys, a, as);
      k_sum_to_shape(db, bs, t, &ys);
      break;
    case K_DIV:
      // -dy * ((a / b) / b), the order PyTorch's div backward uses.
      k_binary_forward(K_DIV, t, a, as, b, bs);
      k_binary_forward(K_DIV, t, t, &ys, b, bs);
      for (int64_t i = 0; i < ny; i++)
        t[i] = -dy[i] * t[i];
      k_sum_to_shape(db, bs, t, &ys);
      break;
    }
  }
  free(t);
}

//
// Unary ops
//

void k_neg_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = -x[i];
}

void k_neg_backward(float *dx, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] -= dy[i];
}

void k_relu_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void k_relu_backward(float *dx, const float *dy, const float *x_or_y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (x_or_y[i] > 0.0f)
      dx[i] += dy[i];
}

void k_sigmoid_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void k_sigmoid_backward(float *dx, const float *dy, const float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] * (1.0f - y[i]) * y[i];
}

void k_tanh_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = tanhf(x[i]);
}

void k_tanh_backward(float *dx, const float *dy, const float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

void k_exp_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = expf(x[i]);
}

void k_exp_backward(float *dx, const float *dy, const float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] * y[i];
}

void k_log_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = logf(x[i]);
}

void k_log_backward(float *dx, const float *dy, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] / x[i];
}

//
// Matmul
//

// cblas takes int sizes (checked here, whichever BLAS the build has); the
// leading dimension of a row-major matrix is its stored row length, at
// least 1 even for an empty one.
void k_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
             float alpha, const float *A, const float *B, float beta, float *C) {
  K_CHECK(M >= 0 && N >= 0 && K >= 0 && M <= INT_MAX && N <= INT_MAX && K <= INT_MAX,
          "k_sgemm: matrix size out of range");
  if (M == 0 || N == 0)
    return;
  if (K == 0) {   // an empty sum: C = beta*C (BLAS rejects K = 0 with some lda)
    for (int64_t i = 0; i < M * N; i++)
      C[i] = beta == 0.0f ? 0.0f : beta * C[i];
    return;
  }
  k_blas_sgemm(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N);
}

// Without ta the batch of a's is one tall (batch*M, K) matrix: one sgemm.
// With ta each stored (K,M) matrix is transposed on its own: one per batch.
void k_matmul_forward(float *y, const float *a, const float *b,
                      int64_t batch, int64_t M, int64_t K, int64_t N, bool ta, bool tb) {
  if (!ta) {
    k_sgemm(false, tb, batch * M, N, K, 1.0f, a, b, 0.0f, y);
    return;
  }
  for (int64_t i = 0; i < batch; i++)
    k_sgemm(true, tb, M, N, K, 1.0f, a + i * K * M, b, 0.0f, y + i * M * N);
}

// With Y = op(A) @ op(B): dop(A) = dY @ op(B)^T and dop(B) = op(A)^T @ dY.
// A transposed operand's gradient is the transpose of those, which the
// transpose flags express without moving data.
void k_matmul_backward(float *da, float *db, const float *dy,
                       const float *a, const float *b,
                       int64_t batch, int64_t M, int64_t K, int64_t N, bool ta, bool tb) {
  if (da) {
    if (!ta)   // da (batch*M, K) += dy (batch*M, N) @ op(b)^T
      k_sgemm(false, !tb, batch * M, K, N, 1.0f, dy, b, 1.0f, da);
    else       // da_i (K, M) += op(b) (K, N) @ dy_i^T
      for (int64_t i = 0; i < batch; i++)
        k_sgemm(tb, true, K, M, N, 1.0f, b, dy + i * M * N, 1.0f, da + i * K * M);
  }
  if (db) {
    if (!ta && !tb)        // db (K, N) += a^T (K, batch*M) @ dy
      k_sgemm(true, false, K, N, batch * M, 1.0f, a, dy, 1.0f, db);
    else if (!ta && tb)    // db (N, K) += dy^T (N, batch*M) @ a
      k_sgemm(true, false, N, K, batch * M, 1.0f, dy, a, 1.0f, db);
    else
      for (int64_t i = 0; i < batch; i++) {
        const float *ai = a + i * K * M, *dyi = dy + i * M * N;   // ai stored (K, M)
        if (!tb)           // db (K, N) += ai @ dy_i
          k_sgemm(false, false, K, N, M, 1.0f, ai, dyi, 1.0f, db);
        else               // db (N, K) += dy_i^T @ ai^T
          k_sgemm(true, true, N, K, M, 1.0f, dyi, ai, 1.0f, db);
      }
  }
}

//
// Softmax and log-softmax along the middle axis of (outer, C, inner)
//

// The maximum of x[0], x[s], ..., x[(C-1)*s]; NaNs are skipped here and
// propagate through exp() afterwards.
static float max_strided(const float *x, int64_t C, int64_t s) {
  float m = -INFINITY;
  for (int64_t c = 0; c < C; c++)
    if (x[c * s] > m)
      m = x[c * s];
  return m;
}

// sum_c exp(x[c*s] - m) in double.
static double sum_exp_strided(const float *x, int64_t C, int64_t s, float m) {
  double sum = 0;
  for (int64_t c = 0; c < C; c++)
    sum += exp((double)x[c * s] - m);
  return sum;
}

void k_softmax_forward(float *y, const float *x, int64_t outer, int64_t C, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * C * inner + i;
      float m = max_strided(x + base, C, inner);
      double sum = sum_exp_strided(x + base, C, inner, m);
      for (int64_t c = 0; c < C; c++) {
        int64_t k = base + c * inner;
        y[k] = (float)(exp((double)x[k] - m) / sum);
      }
    }
}

void k_softmax_backward(float *dx, const float *dy, const float *y,
                        int64_t outer, int64_t C, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * C * inner + i;
      double dot = 0;
      for (int64_t c = 0; c < C; c++)
        dot += (double)dy[base + c * inner] * y[base + c * inner];
      for (int64_t c = 0; c < C; c++) {
        int64_t k = base + c * inner;
        dx[k] += (float)(y[k] * (dy[k] - dot));
      }
    }
}

void k_log_softmax_forward(float *y, const float *x, int64_t outer, int64_t C, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * C * inner + i;
      float m = max_strided(x + base, C, inner);
      double lse = m + log(sum_exp_strided(x + base, C, inner, m));
      for (int64_t c = 0; c < C; c++) {
        int64_t k = base + c * inner;
        y[k] = (float)((double)x[k] - lse);
      }
    }
}

void k_log_softmax_backward(float *dx, const float *dy, const float *y,
                            int64_t outer, int64_t C, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * C * inner + i;
      double sum = 0;
      for (int64_t c = 0; c < C; c++)
        sum += dy[base + c * inner];
      for (int64_t c = 0; c < C; c++) {
        int64_t k = base + c * inner;
        dx[k] += (float)(dy[k] - exp((double)y[k]) * sum);
      }
    }
}

//
// Embedding
//

int64_t k_embedding_check(const int32_t *idx, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= vocab)
      return i;
  return -1;
}

void k_embedding_forward(float *y, const float *w, const int32_t *idx, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; i++)
    memcpy(y + i * dim, w + (int64_t)idx[i] * dim, sizeof(float) * dim);
}

void k_embedding_backward(float *dw, const float *dy, const int32_t *idx, int64_t n, int64_t dim,
                          int64_t j0, int64_t j1) {
  for (int64_t i = 0; i < n; i++) {
    float *row = dw + (int64_t)idx[i] * dim;
    const float *g = dy + i * dim;
    for (int64_t j = j0; j < j1; j++)
      row[j] += g[j];
  }
}

// Permutes and batched matrix products (attention)
//

// The row-major strides of shape s.
static void strides_of(const KShape *s, int64_t *st) {
  int64_t k = 1;
  for (int i = s->ndim - 1; i >= 0; i--) {
    st[i] = k;
    k *= s->dim[i];
  }
}

void k_permute(float *y, const float *x, const KShape *xs, const int64_t *order) {
  int nd = xs->ndim;
  int64_t xst[K_MAX_DIMS], dim[K_MAX_DIMS], st[K_MAX_DIMS], idx[K_MAX_DIMS] = {0};
  strides_of(xs, xst);
  for (int i = 0; i < nd; i++) {
    dim[i] = xs->dim[order[i]];
    st[i] = xst[order[i]];   // the step in x along dimension i of y
  }
  int64_t n = k_numel(xs);
  for (int64_t k = 0; k < n; k++) {
    int64_t off = 0;
    for (int i = 0; i < nd; i++)
      off += idx[i] * st[i];
    y[k] = x[off];
    for (int i = nd - 1; i >= 0 && ++idx[i] == dim[i]; i--)   // the next index of y, row-major
      idx[i] = 0;
  }
}

// The element stride of each of ys's leading dimensions (nl of them) in an
// operand of shape s (aligned at the right; 0 where it is 1 or absent).
static void lead_strides(const KShape *s, int nl, int64_t *out) {
  int64_t st[K_MAX_DIMS];
  strides_of(s, st);
  int ls = s->ndim - 2;
  for (int i = 0; i < nl; i++) {
    int j = ls - nl + i;
    out[i] = j >= 0 && s->dim[j] != 1 ? st[j] : 0;
  }
}

void k_batch_matmul(float *y, const KShape *ys, const float *a, const KShape *as, bool ta,
                    const float *b, const KShape *bs, bool tb) {
  int nl = ys->ndim - 2;
  int64_t M = ys->dim[nl], N = ys->dim[nl + 1];
  int64_t K = as->dim[as->ndim - (ta ? 2 : 1)];
  int64_t sa[K_MAX_DIMS], sb[K_MAX_DIMS], dim[K_MAX_DIMS], idx[K_MAX_DIMS] = {0}, batch = 1;
  lead_strides(as, nl, sa);
  lead_strides(bs, nl, sb);
  for (int i = 0; i < nl; i++)
    batch *= dim[i] = ys->dim[i];
  // a's (m, k) element at m * am + k * ak, b's (k, n) at k * bk + n * bn
  int64_t am = ta ? 1 : K, ak = ta ? M : 1, bk = tb ? 1 : N, bn = tb ? K : 1;
  for (int64_t t = 0; t < batch; t++) {
    int64_t oa = 0, ob = 0;
    for (int i = 0; i < nl; i++) {
      oa += idx[i] * sa[i];
      ob += idx[i] * sb[i];
    }
    float *yt = y + t * M * N;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++)
          s += (double)a[oa + m * am + k * ak] * (double)b[ob + k * bk + n * bn];
        yt[m * N + n] = (float)s;
      }
    for (int i = nl - 1; i >= 0 && ++idx[i] == dim[i]; i--)
      idx[i] = 0;
  }
}

//
// Layer normalization over rows of D values
//

// The mean and 1/sqrt(var + eps) of x[0..D), in double, in order.
static void row_stats(const float *x, int64_t D, double eps, double *mean, double *rstd) {
  double s = 0, v = 0;
  for (int64_t j = 0; j < D; j++)
    s += x[j];
  double m = s / (double)D;
  for (int64_t j = 0; j < D; j++) {
    double d = x[j] - m;
    v += d * d;
  }
  *mean = m;
  *rstd = 1.0 / sqrt(v / (double)D + eps);
}

void k_layernorm_forward(float *y, const float *x, int64_t rows, int64_t D, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    double m, rstd;
    row_stats(xr, D, eps, &m, &rstd);
    for (int64_t j = 0; j < D; j++)
      yr[j] = (float)((xr[j] - m) * rstd);
  }
}

void k_layernorm_backward(float *dx, const float *dy, const float *x, int64_t rows, int64_t D, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D, *gr = dy + r * D;
    double m, rstd, sg = 0, sgx = 0;
    row_stats(xr, D, eps, &m, &rstd);
    for (int64_t j = 0; j < D; j++) {
      sg += gr[j];
      sgx += gr[j] * ((xr[j] - m) * rstd);
    }
    sg /= (double)D;
    sgx /= (double)D;
    for (int64_t j = 0; j < D; j++)
      dx[r * D + j] = (float)(rstd * (gr[j] - sg - (xr[j] - m) * rstd * sgx));
  }
}
