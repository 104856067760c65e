// test_elementwise.c: broadcasting add/sub/mul/div, k_sum_to_shape and the
// unary ops against naive double versions; their backward by gradient
// checks. The naive broadcast unravels every output index on its own, a
// different route from the kernels' strided odometer.
#include "../test.h"
#include "runtime.h"

//
// Naive broadcasting in double
//

// idx = the multi-index of flat position k in shape s.
static void unravel(int64_t *idx, int64_t k, const KShape *s) {
  for (int i = s->ndim - 1; i >= 0; i--) {
    idx[i] = k % s->dim[i];
    k /= s->dim[i];
  }
}

// The flat offset in x (shape xs) that output index idx (shape ys) reads:
// dims aligned at the right; a dim of size 1 always reads position 0.
static int64_t bcast_offset(const KShape *xs, const KShape *ys, const int64_t *idx) {
  int64_t off = 0;
  for (int i = 0; i < xs->ndim; i++) {
    int j = ys->ndim - xs->ndim + i;
    off = off * xs->dim[i] + (xs->dim[i] == 1 ? 0 : idx[j]);
  }
  return off;
}

static double apply(KBinary op, double a, double b) {
  switch (op) {
  case K_ADD: return a + b;
  case K_SUB: return a - b;
  case K_MUL: return a * b;
  case K_DIV: return a / b;
  }
  return NAN;
}

static void naive_binary(KBinary op, double *y, const KShape *ys, const double *a,
                         const KShape *as, const double *b, const KShape *bs) {
  int64_t idx[K_MAX_DIMS];
  for (int64_t k = 0; k < k_numel(ys); k++) {
    unravel(idx, k, ys);
    y[k] = apply(op, a[bcast_offset(as, ys, idx)], b[bcast_offset(bs, ys, idx)]);
  }
}

static void shape_str(char *buf, size_t size, const KShape *s) {
  int n = snprintf(buf, size, "[");
  for (int i = 0; i < s->ndim; i++)
    n += snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)s->dim[i]);
  snprintf(buf + n, size - n, "]");
}

//
// Binary ops
//

typedef struct BinCtx {
  KBinary op;
  KShape as, bs, ys;
  double *a, *b;      // inputs in double; the gradient check perturbs these
  double *y;          // scratch (ys)
  const float *w;     // output weights = the output gradient (ys)
} BinCtx;

static double bin_loss(void *p) {
  BinCtx *c = p;
  naive_binary(c->op, c->y, &c->ys, c->a, &c->as, c->b, &c->bs);
  return t_dot(c->w, c->y, k_numel(&c->ys));
}

typedef struct ShapePair {
  int an;
  int64_t a[K_MAX_DIMS];
  int bn;
  int64_t b[K_MAX_DIMS];
} ShapePair;

static const ShapePair pairs[] = {
  {2, {2, 3}, 2, {2, 3}},                            // same shape
  {2, {4, 5}, 1, {5}},                               // bias [.., C] + [C]
  {1, {5}, 2, {4, 5}},                               // bias on the left
  {4, {2, 3, 4, 5}, 3, {3, 1, 1}},                   // conv bias [C,1,1]
  {0, {0}, 2, {3, 2}},                               // scalar (ndim 0) on the left
  {2, {3, 2}, 0, {0}},                               // scalar on the right
  {1, {1}, 1, {7}},                                  // [1] stretches
  {3, {3, 1, 4}, 3, {1, 5, 1}},                      // both stretch
  {3, {2, 3, 1}, 1, {1}},
  {2, {4, 1}, 3, {2, 1, 3}},                         // different ranks, both stretch
  {6, {2, 1, 3, 1, 2, 1}, 6, {1, 4, 1, 3, 1, 2}},    // six dims, alternating
  {6, {1, 2, 1, 2, 3, 2}, 2, {3, 1}},
  {3, {1, 1, 1}, 3, {1, 1, 1}},
};

static void test_binary(KBinary op, const char *opname, const ShapePair *sp) {
  BinCtx c = {.op = op, .as = k_shape(sp->an, sp->a), .bs = k_shape(sp->bn, sp->b)};
  if (!k_broadcast_shape(&c.ys, &c.as, &c.bs)) {
    CHECK(false, "test shapes broadcast");
    return;
  }
  int64_t na = k_numel(&c.as), nb = k_numel(&c.bs), ny = k_numel(&c.ys);
  char sa[64], sb[64], what[200];
  shape_str(sa, sizeof sa, &c.as);
  shape_str(sb, sizeof sb, &c.bs);

  float *a = t_randf(na, -1, 1);
  float *b = op == K_DIV ? t_randf_away0(nb, 0.5, 2) : t_randf(nb, -1, 1);
  float *y = xmalloc(ny * sizeof(float));
  c.a = t_tod(a, na);
  c.b = t_tod(b, nb);
  c.y = xmalloc(ny * sizeof(double));

  k_binary_forward(op, y, a, &c.as, b, &c.bs);
  naive_binary(op, c.y, &c.ys, c.a, &c.as, c.b, &c.bs);
  snprintf(what, sizeof what, "%s %s %s forward", opname, sa, sb);
  t_close_fwd(what, y, c.y, ny);

  float *w = t_randf(ny, -1, 1);
  float *da0 = t_randf(na, -1, 1), *db0 = t_randf(nb, -1, 1);
  float *da = t_copyf(da0, na), *db = t_copyf(db0, nb);
  c.w = w;
  k_binary_backward(op, da, db, w, a, &c.as, b, &c.bs);
  snprintf(what, sizeof what, "%s %s %s d/da", opname, sa, sb);
  t_grad(what, da, da0, bin_loss, &c, c.a, na);
  snprintf(what, sizeof what, "%s %s %s d/db", opname, sa, sb);
  t_grad(what, db, db0, bin_loss, &c, c.b, nb);

  // One gradient at a time gives the same numbers as both at once.
  float *da1 = t_copyf(da0, na), *db1 = t_copyf(db0, nb);
  k_binary_backward(op, da1, NULL, w, a, &c.as, b, &c.bs);
  k_binary_backward(op, NULL, db1, w, a, &c.as, b, &c.bs);
  snprintf(what, sizeof what, "%s %s %s da alone", opname, sa, sb);
  t_equal(what, da1, da, na);
  snprintf(what, sizeof what, "%s %s %s db alone", opname, sa, sb);
  t_equal(what, db1, db, nb);

  free(a), free(b), free(y), free(c.a), free(c.b), free(c.y);
  free(w), free(da0), free(db0), free(da), free(db), free(da1), free(db1);
}

// y may alias an operand that already has y's shape.
static void test_binary_in_place(void) {
  int64_t d[] = {4, 5};
  KShape s2 = k_shape(2, d), s1 = k_shape(1, d + 1);
  float *a = t_randf(20, -1, 1), *b = t_randf(5, 0.5, 1);
  float *want = xmalloc(20 * sizeof(float));
  k_binary_forward(K_DIV, want, a, &s2, b, &s1);
  k_binary_forward(K_DIV, a, a, &s2, b, &s1);
  t_equal("div in place, y = a", a, want, 20);
  float *c = t_randf(20, -1, 1);
  k_binary_forward(K_MUL, want, c, &s2, a, &s2);
  k_binary_forward(K_MUL, c, c, &s2, a, &s2);
  t_equal("mul in place, same shapes", c, want, 20);
  free(a), free(b), free(c), free(want);
}

static void test_broadcast_shape(void) {
  int64_t d23[] = {2, 3}, d43[] = {4, 3}, d314[] = {3, 1, 4}, d51[] = {5, 1};
  KShape a = k_shape(2, d23), b = k_shape(2, d43), out;
  CHECK(!k_broadcast_shape(&out, &a, &b), "[2,3] and [4,3] do not broadcast");
  a = k_shape(3, d314);
  b = k_shape(2, d51);
  bool ok = k_broadcast_shape(&out, &a, &b);
  CHECK(ok && out.ndim == 3 && out.dim[0] == 3 && out.dim[1] == 5 && out.dim[2] == 4, "[3,1,4] and [5,1] broadcast to [3,5,4]");
  KShape scalar = k_shape(0, NULL);
  ok = k_broadcast_shape(&out, &scalar, &scalar);
  CHECK(ok && out.ndim == 0 && k_numel(&out) == 1, "scalar and scalar broadcast to a scalar");
}

//
// k_sum_to_shape
//

static void test_sum_to_shape(int dn, const int64_t *dd, int sn, const int64_t *sd) {
  KShape ds = k_shape(dn, dd), ss = k_shape(sn, sd);
  int64_t nd = k_numel(&ds), ns = k_numel(&ss);
  float *src = t_randf(ns, -1, 1), *dst0 = t_randf(nd, -1, 1), *dst = t_copyf(dst0, nd);
  double *want = t_tod(dst0, nd);
  int64_t idx[K_MAX_DIMS];
  for (int64_t k = 0; k < ns; k++) {
    unravel(idx, k, &ss);
    want[bcast_offset(&ds, &ss, idx)] += src[k];
  }
  k_sum_to_shape(dst, &ds, src, &ss);
  char s1[64], s2[64], what[160];
  shape_str(s1, sizeof s1, &ss);
  shape_str(s2, sizeof s2, &ds);
  snprintf(what, sizeof what, "sum_to_shape %s -> %s", s1, s2);
  t_close_fwd(what, dst, want, nd);
  free(src), free(dst0), free(dst), free(want);
}

static void test_sums(void) {
  test_sum_to_shape(1, (int64_t[]){3}, 2, (int64_t[]){4, 3});
  test_sum_to_shape(2, (int64_t[]){4, 1}, 2, (int64_t[]){4, 3});
  test_sum_to_shape(4, (int64_t[]){1, 3, 1, 1}, 4, (int64_t[]){2, 3, 4, 5});
  test_sum_to_shape(3, (int64_t[]){3, 1, 1}, 4, (int64_t[]){2, 3, 4, 5});
  test_sum_to_shape(0, NULL, 2, (int64_t[]){2, 3});
  test_sum_to_shape(3, (int64_t[]){2, 1, 3}, 3, (int64_t[]){2, 4, 3});
  test_sum_to_shape(1, (int64_t[]){5}, 1, (int64_t[]){5});
  test_sum_to_shape(2, (int64_t[]){1, 1}, 3, (int64_t[]){3, 1, 2});
  test_sum_to_shape(6, (int64_t[]){1, 2, 1, 3, 1, 1}, 6, (int64_t[]){2, 2, 3, 3, 2, 2});
  test_sum_to_shape(1, (int64_t[]){1}, 1, (int64_t[]){1000});
}

//
// Unary ops
//

typedef struct Unary {
  const char *name;
  double lo, hi;          // input range
  bool away0;             // inputs at least lo away from 0, either sign
  void (*fwd)(float *y, const float *x, int64_t n);
  void (*bwd)(float *dx, const float *dy, const float *xy, int64_t n);
  bool from_output;       // bwd takes y rather than x
  double (*f)(double);    // the naive forward
} Unary;

static void neg_bwd(float *dx, const float *dy, const float *unused, int64_t n) {
  (void)unused;
  k_neg_backward(dx, dy, n);
}

static double neg_d(double x) { return -x; }
static double relu_d(double x) { return x > 0 ? x : 0; }
static double sigmoid_d(double x) { return 1 / (1 + exp(-x)); }

static const Unary unaries[] = {
  {"neg", -2, 2, false, k_neg_forward, neg_bwd, false, neg_d},
  {"relu (from x)", 0.01, 2, true, k_relu_forward, k_relu_backward, false, relu_d},
  {"relu (from y)", 0.01, 2, true, k_relu_forward, k_relu_backward, true, relu_d},
  {"sigmoid", -6, 6, false, k_sigmoid_forward, k_sigmoid_backward, true, sigmoid_d},
  {"tanh", -3, 3, false, k_tanh_forward, k_tanh_backward, true, tanh},
  {"exp", -3, 3, false, k_exp_forward, k_exp_backward, true, exp},
  {"log", 0.05, 4, false, k_log_forward, k_log_backward, false, log},
};

typedef struct UnCtx {
  const Unary *u;
  double *x;
  const float *w;
  int64_t n;
} UnCtx;

static double un_loss(void *p) {
  UnCtx *c = p;
  double s = 0;
  for (int64_t i = 0; i < c->n; i++)
    s += c->w[i] * c->u->f(c->x[i]);
  return s;
}

static void test_unary(const Unary *u) {
  int64_t n = 257;
  float *x = u->away0 ? t_randf_away0(n, u->lo, u->hi) : t_randf(n, u->lo, u->hi);
  float *y = xmalloc(n * sizeof(float));
  double *want = xmalloc(n * sizeof(double));
  u->fwd(y, x, n);
  for (int64_t i = 0; i < n; i++)
    want[i] = u->f(x[i]);
  char what[100];
  snprintf(what, sizeof what, "%s forward", u->name);
  t_close(what, y, want, n, 1e-6, 1e-6);

  float *w = t_randf(n, -1, 1), *dx0 = t_randf(n, -1, 1), *dx = t_copyf(dx0, n);
  u->bwd(dx, w, u->from_output ? y : x, n);
  UnCtx c = {u, t_tod(x, n), w, n};
  snprintf(what, sizeof what, "%s backward", u->name);
  t_grad(what, dx, dx0, un_loss, &c, c.x, n);

  float *z = t_copyf(x, n);   // y may alias x
  u->fwd(z, z, n);
  snprintf(what, sizeof what, "%s in place", u->name);
  t_equal(what, z, y, n);
  free(x), free(y), free(want), free(w), free(dx0), free(dx), free(c.x), free(z);
}

// PyTorch's relu gradient at exactly 0 is 0; sigmoid saturates without NaN.
static void test_unary_edges(void) {
  float x[] = {0.0f, -0.0f, -1.0f, 1.0f}, dy[] = {1, 1, 1, 1}, dx[4] = {0};
  k_relu_backward(dx, dy, x, 4);
  CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0 && dx[3] == 1, "relu'(0) = 0, relu'(1) = 1");
  float big[] = {-200.0f, 200.0f}, s[2];
  k_sigmoid_forward(s, big, 2);
  CHECK(s[0] == 0.0f && s[1] == 1.0f, "sigmoid(-200) = 0 and sigmoid(200) = 1");
}

int main(void) {
  t_seed(1);
  test_broadcast_shape();
  const char *names[] = {"add", "sub", "mul", "div"};
  for (int op = K_ADD; op <= K_DIV; op++)
    for (int i = 0; i < countof(pairs); i++)
      test_binary((KBinary)op, names[op], &pairs[i]);
  test_binary_in_place();
  test_sums();
  for (int i = 0; i < countof(unaries); i++)
    test_unary(&unaries[i]);
  test_unary_edges();
  return t_finish("test_elementwise");
}
