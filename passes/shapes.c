// shapes.c: shape inference and checking, one rule per op.
//
// pass_infer_node() computes a node's dtype and shape from its inputs and
// attributes. The lowering calls it on each node as it builds the graph
// (a layer's parameter shapes depend on its input's shape); pass_shapes()
// runs it over a whole graph, such as one read back from text. Shapes carry
// the batch dimension as IR_N; it broadcasts with itself and with 1 only.
#include "passes.h"

#include <math.h>
#include <string.h>

// Formats a shape into one of a few rotating buffers, so that one message
// can quote several shapes.
static const char *sh(const IrNode *n) {
  static char bufs[4][96];
  static int next;
  char *b = bufs[next++ & 3];
  return ir_shape_str(n->ndim, n->shape, b, 96);
}

static const char *mnem(const IrNode *n) { return ir_op_info(n->op)->mnem; }

static void set_shape(IrNode *n, int ndim, const int64_t *shape) {
  n->ndim = ndim;
  memmove(n->shape, shape, sizeof(int64_t) * ndim);
}

static bool fail(IrNode *n, Diag *d, const char *hint, const char *fmt, const char *a,
                 const char *b) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, a, b);
  diag_error(d, n->loc, hint, "%s: %s", mnem(n), msg);
  n->ndim = -1;
  return false;
}

// The layer n belongs to, as the user wrote it: its scope's kind
// ("down_1.linear_2" gives linear), else the op's mnemonic.
static const char *layer_kind(const IrNode *n, char *buf, size_t size) {
  const char *s = n->scope ? strrchr(n->scope, '.') : NULL;
  s = s ? s + 1 : n->scope;
  const char *end = s ? strrchr(s, '_') : NULL;
  if (!s || !end || end == s || end[1] < '0' || end[1] > '9')
    return mnem(n);
  snprintf(buf, size, "%.*s", (int)(end - s), s);
  return buf;
}

// Every input must be a real-valued tensor (class targets only feed losses).
static bool check_f32(IrNode *n, Diag *d, int first, int last) {
  for (int i = first; i < last && i < n->nsrc; i++) {
    IrNode *s = n->src[i];
    char kind[64];
    if (s->dtype != DT_F32 && s->op == IR_INPUT)
      return fail(n, d, "look its values up with embedding(x, vocab, dim), or declare the input f32[...]",
                  "'%s' holds integers (i32); embedding takes them, %s takes f32", s->name,
                  layer_kind(n, kind, sizeof kind));
    if (s->dtype != DT_F32) {
      const char *what = s->name ? s->name : "this operand";
      return fail(n, d, "class targets hold integer class indexes; only a loss can use them",
                  "'%s' is a class target, not a tensor of numbers%s", what, "");
    }
  }
  return true;
}

// numpy broadcasting: shapes aligned at the right; each pair of dimensions
// must be equal, or one of them 1. IR_N matches only IR_N or 1.
static bool infer_broadcast(IrNode *n, Diag *d) {
  IrNode *a = n->src[0], *b = n->src[1];
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  int64_t out[IR_MAX_DIMS];
  for (int i = 0; i < nd; i++) {
    int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da == db || db == 1)
      out[i] = da;
    else if (da == 1)
      out[i] = db;
    else {
      char hint[160];
      snprintf(hint, sizeof hint,
               "shapes are aligned at the right; each pair of dimensions must be equal or 1 "
               "(dimension %d differs)", i);
      return fail(n, d, hint, "shapes %s and %s do not broadcast", sh(a), sh(b));
    }
  }
  for (int i = 1; i < nd; i++)
    if (out[i] == IR_N) {
      char hint[160];
      snprintf(hint, sizeof hint, "the batch dimension N must stay first; here it would end up in "
               "dimension %d", i);
      return fail(n, d, hint, "shapes %s and %s do not broadcast", sh(a), sh(b));
    }
  set_shape(n, nd, out);
  n->dtype = DT_F32;
  return true;
}

// a[..., M, K] @ b[K, P] -> [..., M, P]; ta and tb transpose the last two
// dimensions of a and of b first.
// a[..., K, M]^T b[..., K, P] -> [M, P], summed over every leading
// dimension too (N among them): the gradient of a weight that multiplies
// a tensor of more than 2 dimensions. Autodiff makes these; the leading
// dimensions of a and b must agree, and b is not transposed.
static bool infer_matmul_folded(IrNode *n, Diag *d) {
  IrNode *a = n->src[0], *b = n->src[1];
  bool same = !n->attr.i[1] && a->ndim == b->ndim;
  for (int i = 0; same && i < a->ndim - 1; i++)
    same = a->shape[i] == b->shape[i];
  if (!same)
    return fail(n, d, NULL, "a transposed left operand %s needs a right operand with the same leading dimensions, found %s",
                sh(a), sh(b));
  set_shape(n, 2, (int64_t[]){a->shape[a->ndim - 1], b->shape[b->ndim - 1]});
  n->dtype = DT_F32;
  return true;
}

static bool infer_matmul(IrNode *n, Diag *d) {
  IrNode *a = n->src[0], *b = n->src[1];
  if (a->ndim < 2)
    return fail(n, d, "a matrix product needs a matrix on each side; reshape a vector to [1, K]",
                "the left operand %s has fewer than 2 dimensions%s", sh(a), "");
  if (n->attr.i[0] && a->ndim > 2)
    return infer_matmul_folded(n, d);
  if (b->ndim != 2)
    return fail(n, d, "the right operand must be a matrix [K, P]",
                "the right operand %s is not 2-dimensional%s", sh(b), "");
  int64_t m = n->attr.i[0] ? a->shape[1] : a->shape[a->ndim - 2];
  int64_t ka = n->attr.i[0] ? a->shape[0] : a->shape[a->ndim - 1];
  int64_t kb = n->attr.i[1] ? b->shape[1] : b->shape[0];
  int64_t p = n->attr.i[1] ? b->shape[0] : b->shape[1];
  if (ka == IR_N && !n->attr.i[0])
    return fail(n, d, "the batch dimension N cannot be summed over by '@'",
                "the left operand %s has the batch dimension last%s", sh(a), "");
  if (ka != kb) {
    char sa[100], sb[100];
    snprintf(sa, sizeof sa, "%s%s", sh(a), n->attr.i[0] ? "^T" : "");
    snprintf(sb, sizeof sb, "%s%s", sh(b), n->attr.i[1] ? "^T" : "");
    return fail(n, d, "the left operand's last dimension must equal the right operand's first",
                "inner dimensions differ (%s x %s)", sa, sb);
  }
  int64_t out[IR_MAX_DIMS];
  int nd = a->ndim;
  memcpy(out, a->shape, sizeof(int64_t) * nd);
  out[nd - 2] = m;
  out[nd - 1] = p;
  set_shape(n, nd, out);
  n->dtype = DT_F32;
  return true;
}

// x permuted: dimension i of the result is dimension d<i> of x. The
// attributes must be an order of x's dimensions, and N stays first.
static bool infer_permute(IrNode *n, Diag *d) {
  IrNode *x = n->src[0];
  int64_t out[IR_MAX_DIMS];
  bool seen[IR_MAX_DIMS] = {0};
  for (int i = 0; i < x->ndim; i++) {
    int64_t p = n->attr.i[i];
    if (p < 0 || p >= x->ndim || seen[p])
      return fail(n, d, "give each dimension of the input once, e.g. permute(x, 0, 2, 1, 3)",
                  "the order is not a permutation of the dimensions of %s%s", sh(x), "");
    seen[p] = true;
    out[i] = x->shape[p];
  }
  if (ir_is_batched(x) && n->attr.i[0] != 0)
    return fail(n, d, "the batch dimension N stays first; permute the dimensions of one sample",
                "cannot move the batch dimension of %s%s", sh(x), "");
  set_shape(n, x->ndim, out);
  n->dtype = DT_F32;
  return true;
}

// a[..., M, K] @ b[..., K, P] -> [..., M, P] (ta / tb: the last two
// dimensions of a / b swapped first); the leading dimensions broadcast as
// numpy's do (aligned at the right, equal or 1), N first.
static bool infer_batch_matmul(IrNode *n, Diag *d) {
  IrNode *a = n->src[0], *b = n->src[1];
  if (a->ndim < 2 || b->ndim < 2)
    return fail(n, d, "a matrix product needs a matrix on each side",
                "the operands %s and %s need at least 2 dimensions each", sh(a), sh(b));
  int ta = (int)n->attr.i[0], tb = (int)n->attr.i[1];
  int64_t m = a->shape[a->ndim - 2 + ta], ka = a->shape[a->ndim - 1 - ta];
  int64_t kb = b->shape[b->ndim - 2 + tb], p = b->shape[b->ndim - 1 - tb];
  if (m == IR_N || ka == IR_N || kb == IR_N || p == IR_N)
    return fail(n, d, "the batch dimension N cannot be a row or column of a matrix product; transpose the others",
                "the operands %s and %s have the batch dimension among their last two", sh(a), sh(b));
  if (ka != kb) {
    char sa[100], sb[100];
    snprintf(sa, sizeof sa, "%s%s", sh(a), ta ? "^T" : "");
    snprintf(sb, sizeof sb, "%s%s", sh(b), tb ? "^T" : "");
    return fail(n, d, "the left operand's last dimension must equal the right operand's second to last",
                "inner dimensions differ (%s x %s)", sa, sb);
  }
  int la = a->ndim - 2, lb = b->ndim - 2, nl = la > lb ? la : lb;
  if (nl + 3 > IR_MAX_DIMS)
    return fail(n, d, "a batched matrix product has at most 3 leading dimensions; reshape to fold some",
                "too many leading dimensions (%s x %s)", sh(a), sh(b));
  int64_t out[IR_MAX_DIMS];
  for (int i = 0; i < nl; i++) {
    int ia = la - nl + i, ib = lb - nl + i;
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return fail(n, d, "the leading dimensions are aligned at the right; each pair must be equal or 1",
                  "the leading dimensions of %s and %s do not broadcast", sh(a), sh(b));
    out[i] = da == 1 ? db : da;
    if (out[i] == IR_N && i != 0)
      return fail(n, d, "the batch dimension N must stay first",
                  "the leading dimensions of %s and %s put N after another dimension", sh(a), sh(b));
  }
  out[nl] = m;
  out[nl + 1] = p;
  set_shape(n, nl + 2, out);
  n->dtype = DT_F32;
  return true;
}

// Output size of a sliding window: floor((in + 2p - d(k-1) - 1) / s) + 1,
// or 0 when the window does not fit even once.
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil) {
  int64_t span = dil * (k - 1) + 1;
  if (in + 2 * p < span)
    return 0;
  return (in + 2 * p - span) / s + 1;
}

// Checks the window attributes and sets [N, C, OH, OW] from x[N, C, H, W].
static bool infer_window(IrNode *n, Diag *d, int64_t channels, int64_t kh, int64_t kw,
                         const int64_t *a /* stride_h stride_w pad_h pad_w dil_h dil_w */) {
  IrNode *x = n->src[0];
  if (x->ndim != 4) {
    const char *hint = x->ndim == 3 ? "declare image inputs as f32[channels, height, width], "
                                      "e.g. f32[1, 28, 28]"
                                    : "it needs a 4-dimensional [N, C, H, W] input";
    return fail(n, d, hint, "expects an input [N, C, H, W], found %s%s", sh(x), "");
  }
  for (int i = 0; i < 6; i++)
    if ((i < 2 || i >= 4) ? a[i] < 1 : a[i] < 0)
      return fail(n, d, NULL, "%s%s", i < 2 ? "the stride must be at least 1"
                                      : i < 4 ? "the padding must not be negative"
                                              : "the dilation must be at least 1", "");
  int64_t oh = window_out(x->shape[2], kh, a[0], a[2], a[4]);
  int64_t ow = window_out(x->shape[3], kw, a[1], a[3], a[5]);
  if (oh < 1 || ow < 1) {
    char in[96], win[96];
    snprintf(in, sizeof in, "%lldx%lld (padded by %lld, %lld)", (long long)x->shape[2],
             (long long)x->shape[3], (long long)a[2], (long long)a[3]);
    snprintf(win, sizeof win, "%lldx%lld", (long long)(a[4] * (kh - 1) + 1),
             (long long)(a[5] * (kw - 1) + 1));
    return fail(n, d, "use a smaller kernel, more padding, or fewer downsampling layers before this one",
                "the input %s is smaller than the %s window", in, win);
  }
  int64_t out[4] = {x->shape[0], channels, oh, ow};
  set_shape(n, 4, out);
  n->dtype = DT_F32;
  return true;
}

// The groups of a convolution (or of its gradients) with input channels c
// and weight w [O, C/groups, KH, KW]: at least 1, dividing both counts.
static bool check_groups(IrNode *n, Diag *d, int64_t c, const IrNode *w) {
  int64_t G = n->attr.i[6];
  char nums[64];
  snprintf(nums, sizeof nums, "%lld input channels in %lld groups", (long long)c, (long long)G);
  if (G < 1)
    return fail(n, d, NULL, "groups must be at least 1 (%s)%s", nums, "");
  if (c % G || w->shape[0] % G || w->shape[1] != c / G)
    return fail(n, d, "with groups g, the weight is [O, C/g, KH, KW] and g divides C and O",
                "%s do not match the weight %s", nums, sh(w));
  return true;
}

static bool infer_conv2d(IrNode *n, Diag *d) {
  IrNode *x = n->src[0], *w = n->src[1];
  if (w->ndim != 4)
    return fail(n, d, NULL, "the weight %s is not [O, C, KH, KW]%s", sh(w), "");
  if (x->ndim == 4 && n->attr.i[6] == 1 && x->shape[1] != w->shape[1]) {
    return fail(n, d, "dimension 1 of the input is its channel count; it must match the weight's",
                "the input %s has a different channel count than the weight %s", sh(x), sh(w));
  }
  if (x->ndim == 4 && !check_groups(n, d, x->shape[1], w))
    return false;
  if (n->nsrc == 3 && (n->src[2]->ndim != 1 || n->src[2]->shape[0] != w->shape[0]))
    return fail(n, d, NULL, "the bias %s does not match the weight %s", sh(n->src[2]), sh(w));
  return infer_window(n, d, w->shape[0], w->shape[2], w->shape[3], n->attr.i);
}

// Pools: attrs k_h k_w stride_h stride_w pad_h pad_w [dil_h dil_w].
static bool infer_pool(IrNode *n, Diag *d) {
  const int64_t *a = n->attr.i;
  if (a[0] < 1 || a[1] < 1)
    return fail(n, d, NULL, "the kernel size must be at least 1%s%s", "", "");
  if (2 * a[4] > a[0] || 2 * a[5] > a[1])
    return fail(n, d, "padding may be at most half the kernel size, as in PyTorch",
                "the padding is larger than half the kernel%s%s", "", "");
  int64_t w[6] = {a[2], a[3], a[4], a[5], 1, 1};
  if (n->op == IR_MAXPOOL) {
    w[4] = a[6];
    w[5] = a[7];
  }
  if (n->src[0]->ndim != 4)
    return infer_window(n, d, 0, a[0], a[1], w);
  return infer_window(n, d, n->src[0]->shape[1], a[0], a[1], w);
}

static bool infer_batchnorm(IrNode *n, Diag *d) {
  IrNode *x = n->src[0];
  if (x->ndim != 2 && x->ndim != 4)
    return fail(n, d, "batchnorm normalizes [N, C] features or [N, C, H, W] feature maps",
                "expects an input [N, C] or [N, C, H, W], found %s%s", sh(x), "");
  for (int i = 1; i < 5; i++) {
    IrNode *s = n->src[i];
    if (s->ndim != 1 || s->shape[0] != x->shape[1])
      return fail(n, d, NULL, "the statistics %s do not match the input's channels %s", sh(s), sh(x));
  }
  if (!(n->attr.f[0] > 0))
    return fail(n, d, NULL, "eps must be positive%s%s", "", "");
  if (!(n->attr.f[1] >= 0 && n->attr.f[1] <= 1))
    return fail(n, d, NULL, "momentum must be in [0, 1]%s%s", "", "");
  set_shape(n, x->ndim, x->shape);
  n->dtype = DT_F32;
  return true;
}

// x i32[N, ...] indexes the rows of w[vocab, dim]: [N, ..., dim].
static bool infer_embedding(IrNode *n, Diag *d) {
  IrNode *x = n->src[0], *w = n->src[1];
  if ((x->dtype != DT_I32 || x->op != IR_INPUT) && x->name)
    return fail(n, d, "declare the indexes as an integer input, e.g. input tokens: i32[16]",
                "'%s' is not an integer input (i32)%s", x->name, "");
  if (x->dtype != DT_I32 || x->op != IR_INPUT)   // a computed value, such as another layer's result
    return fail(n, d, "declare the indexes as an integer input, e.g. input tokens: i32[16]",
                "its indexes must be an integer input (i32), found the computed %s%s", sh(x), "");
  if (w->dtype != DT_F32 || w->ndim != 2)
    return fail(n, d, NULL, "the weight %s is not [vocab, dim]%s", sh(w), "");
  if (x->ndim + 1 > IR_MAX_DIMS)
    return fail(n, d, NULL, "the indexes %s have too many dimensions for one more%s", sh(x), "");
  int64_t out[IR_MAX_DIMS];
  memcpy(out, x->shape, sizeof(int64_t) * x->ndim);
  out[x->ndim] = w->shape[1];
  set_shape(n, x->ndim + 1, out);
  n->dtype = DT_F32;
  return true;
}

static int64_t per_sample(const IrNode *n, bool *batched) {
  int64_t k = 1;
  *batched = false;
  for (int i = 0; i < n->ndim; i++) {
    if (n->shape[i] == IR_N)
      *batched = true;
    else
      k *= n->shape[i];
  }
  return k;
}

// The target shape is preset on the node; element counts must agree, and
// the batch dimension must stay where it was.
static bool infer_reshape(IrNode *n, Diag *d) {
  IrNode *x = n->src[0];
  if (n->ndim < 0)
    return fail(n, d, NULL, "has no target shape%s%s", "", "");
  bool bx, bn;
  int64_t kx = per_sample(x, &bx), kn = per_sample(n, &bn);
  if (bx != bn || (bx && (x->shape[0] != IR_N || n->shape[0] != IR_N)))
    return fail(n, d, "the batch dimension N stays first; give the shape of one sample",
                "cannot move the batch dimension (%s to %s)", sh(x), sh(n));
  if (kx != kn)
    return fail(n, d, "the number of elements per sample must stay the same",
                "cannot reshape %s to %s", sh(x), sh(n));
  n->dtype = x->dtype;
  return true;
}

static bool infer_softmax(IrNode *n, Diag *d) {
  IrNode *x = n->src[0];
  if (x->ndim < 2)
    return fail(n, d, "it normalizes over dimension 1 of [N, C]", "expects at least 2 dimensions, found %s%s", sh(x), "");
  if (n->attr.i[0] < 0 || n->attr.i[0] >= x->ndim)
    return fail(n, d, NULL, "axis out of range for %s%s", sh(x), "");
  set_shape(n, x->ndim, x->shape);
  n->dtype = DT_F32;
  return true;
}

// A slice along one axis (attrs axis start stop step), already in range:
// the lowering turns the user's indexes into these, with its own errors.
static bool infer_slice(IrNode *n, Diag *d, const IrNode *x) {
  const int64_t *a = n->attr.i;
  if (a[0] < 0 || a[0] >= x->ndim)
    return fail(n, d, NULL, "axis out of range for %s%s", sh(x), "");
  int64_t size = x->shape[a[0]];
  if (size == IR_N)
    return fail(n, d, "index the other dimensions; every sample of the batch stays",
                "cannot slice the batch dimension N of %s%s", sh(x), "");
  if (a[3] < 1 || a[1] < 0 || a[2] > size || a[1] >= a[2]) {
    char r[96];
    snprintf(r, sizeof r, "%lld:%lld:%lld", (long long)a[1], (long long)a[2], (long long)a[3]);
    return fail(n, d, NULL, "the range %s is empty or outside %s", r, sh(x));
  }
  if (n->op == IR_SLICE) {
    set_shape(n, x->ndim, x->shape);
    n->shape[a[0]] = (a[2] - a[1] + a[3] - 1) / a[3];
  }
  n->dtype = DT_F32;
  return true;
}

// Inputs of the same rank R, or of R - 1 without the batch dimension (then
// broadcast along N), equal but along axis, which is not N.
static bool infer_concat(IrNode *n, Diag *d) {
  int rank = 0;
  const IrNode *big = NULL;
  for (int i = 0; i < n->nsrc; i++)
    if (n->src[i]->ndim > rank) {
      rank = n->src[i]->ndim;
      big = n->src[i];
    }
  int64_t axis = n->attr.i[0];
  if (!big || axis < 0 || axis >= rank)
    return fail(n, d, NULL, "axis out of range for %s%s", big ? sh(big) : "[]", "");
  if (big->shape[axis] == IR_N)
    return fail(n, d, "concatenate along another axis; the batch dimension N is the samples",
                "cannot concatenate along the batch dimension N of %s%s", sh(big), "");
  int64_t out[IR_MAX_DIMS];
  memcpy(out, big->shape, sizeof(int64_t) * rank);
  out[axis] = 0;
  for (int i = 0; i < n->nsrc; i++) {
    const IrNode *x = n->src[i];
    int lead = rank - x->ndim;   // 1: x lacks the batch dimension
    bool ok = lead == 0 || (lead == 1 && big->shape[0] == IR_N && !ir_is_batched(x));
    for (int j = lead; ok && j < rank; j++)
      ok = j == axis || x->shape[j - lead] == big->shape[j];
    if (!ok || (lead == 0 && (x->shape[0] == IR_N) != (big->shape[0] == IR_N))) {
      char hint[200];
      snprintf(hint, sizeof hint, "every dimension but axis %lld must match; a tensor without the batch "
               "dimension N may have one dimension fewer", (long long)axis);
      return fail(n, d, hint, "cannot concatenate %s and %s", sh(big), sh(x));
    }
    out[axis] += x->shape[axis - lead];
  }
  set_shape(n, rank, out);
  n->dtype = DT_F32;
  return true;
}

// sum and mean: the axes of the mask go (or stay as 1 with keepdim).
static bool infer_reduce(IrNode *n, Diag *d) {
  IrNode *x = n->src[0];
  uint64_t axes = (uint64_t)n->attr.i[0];
  if (!axes || axes >> x->ndim)
    return fail(n, d, NULL, "the axes are out of range for %s%s", sh(x), "");
  int64_t out[IR_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < x->ndim; i++) {
    bool gone = axes >> i & 1;
    if (gone && x->shape[i] == IR_N)
      return fail(n, d, "reduce the other axes; the samples of a batch stay apart",
                  "cannot reduce the batch dimension N of %s%s", sh(x), "");
    if (!gone || n->attr.i[1])
      out[nd++] = gone ? 1 : x->shape[i];
  }
  set_shape(n, nd, out);
  n->dtype = DT_F32;
  return true;
}

// Losses compare the model's output with the target and give f32[].
static bool infer_loss(IrNode *n, Diag *d) {
  IrNode *y = n->src[0], *t = n->src[1];
  char hint[256];
  if (n->op == IR_CROSS_ENTROPY || n->op == IR_NLL) {
    if (t->dtype != DT_I32 || t->op != IR_TARGET)
      return fail(n, d, "declare the target as `target label: class(K)`, or use mse or l1 for real-valued targets",
                  "needs a class target, found %s%s", sh(t), "");
    int64_t k = t->attr.i[0];
    if (y->ndim != 2 || y->shape[0] != IR_N) {
      snprintf(hint, sizeof hint, "end the model with a layer that gives [N, %lld], such as linear(%lld)",
               (long long)k, (long long)k);
      return fail(n, d, hint, "expects the model's output to be [N, classes], found %s%s", sh(y), "");
    }
    if (y->shape[1] != k) {
      snprintf(hint, sizeof hint, "make the last layer produce %lld values, e.g. linear(%lld)",
               (long long)k, (long long)k);
      char a[64], b[128];
      snprintf(a, sizeof a, "%lld", (long long)y->shape[1]);
      snprintf(b, sizeof b, "'%s' has %lld", t->name ? t->name : "the target", (long long)k);
      return fail(n, d, hint, "the model's output has %s classes, but the target %s", a, b);
    }
  } else {
    if (t->dtype != DT_F32 && t->op == IR_INPUT)
      return fail(n, d, "compare the output with an f32 input or target",
                  "needs a real-valued target, but '%s' is an integer input (i32)%s", t->name ? t->name : "it", "");
    if (t->dtype != DT_F32) {
      snprintf(hint, sizeof hint, "use cross_entropy (or nll) for class targets, or declare the target as f32[...]");
      return fail(n, d, hint, "needs a real-valued target, but '%s' is a class target%s",
                  t->name ? t->name : "the target", "");
    }
    if (!ir_same_shape(y, t))
      return fail(n, d, "the output and the target must have the same shape",
                  "the model's output %s and the target %s differ", sh(y), sh(t));
  }
  n->ndim = 0;
  n->dtype = DT_F32;
  return true;
}

// The shape a "preset" op was built with must match the shape of the
// forward tensor whose gradient it is (like), element for element.
static bool check_preset(IrNode *n, Diag *d, const IrNode *like) {
  if (n->ndim < 0)
    return fail(n, d, NULL, "has no preset shape%s%s", "", "");
  if (like && !ir_same_shape(n, like))
    return fail(n, d, NULL, "the preset shape %s differs from %s", sh(n), sh(like));
  n->dtype = DT_F32;
  return true;
}

// The attributes of an activation or its gradient (the language checks
// them first, with the call's words; this guards edited IR text).
static bool check_act(IrNode *n, Diag *d) {
  const double *f = n->attr.f;
  switch (n->op) {
  case IR_LEAKY_RELU: case IR_LEAKY_RELU_GRAD: case IR_ELU: case IR_ELU_GRAD:
    if (!isfinite(f[0]))
      return fail(n, d, NULL, "the %s must be finite%s", n->op == IR_ELU || n->op == IR_ELU_GRAD ? "alpha" : "slope", "");
    return true;
  case IR_SOFTPLUS: case IR_SOFTPLUS_GRAD:
    if (!(f[0] > 0 && isfinite(f[0])) || isnan(f[1]))
      return fail(n, d, NULL, "beta must be positive and finite, and threshold a number%s%s", "", "");
    return true;
  case IR_CLAMP: case IR_CLAMP_GRAD:
    if (!n->attr.i[0] && !n->attr.i[1])
      return fail(n, d, NULL, "has neither a min nor a max%s%s", "", "");
    if ((n->attr.i[0] && isnan(f[0])) || (n->attr.i[1] && isnan(f[1])) ||
        (n->attr.i[0] && n->attr.i[1] && f[0] > f[1]))
      return fail(n, d, NULL, "min must not be greater than max%s%s", "", "");
    return true;
  default:
    return true;
  }
}

static bool same_as(IrNode *n, Diag *d, const IrNode *like, const IrNode *other) {
  if (other && !ir_same_shape(like, other))
    return fail(n, d, NULL, "operand shapes %s and %s differ", sh(like), sh(other));
  set_shape(n, like->ndim, like->shape);
  n->dtype = DT_F32;
  return true;
}

// Gradient and optimizer ops: autodiff builds them from checked forward
// nodes, so these rules mostly confirm what it built.
static bool infer_grad(IrNode *n, Diag *d) {
  IrNode *a = n->src[0], *b = n->nsrc > 1 ? n->src[1] : NULL;
  switch (n->op) {
  case IR_SUM_TO: {
    // A broadcast run backwards: the preset shape, aligned at the right,
    // must broadcast to the gradient's.
    int nd = n->ndim;
    if (nd < 0 || nd > a->ndim)
      return fail(n, d, NULL, "cannot sum %s down to %s", sh(a), sh(n));
    for (int i = 0; i < nd; i++) {
      int64_t t = n->shape[i], s = a->shape[a->ndim - nd + i];
      if (t != s && t != 1)
        return fail(n, d, NULL, "cannot sum %s down to %s", sh(a), sh(n));
    }
    n->dtype = DT_F32;
    return true;
  }
  case IR_RELU_GRAD: case IR_SIGMOID_GRAD: case IR_TANH_GRAD: case IR_SOFTMAX_GRAD:
  case IR_LOG_SOFTMAX_GRAD: case IR_DROPOUT_GRAD: case IR_LAYERNORM_GRAD:
    return same_as(n, d, a, b);
  case IR_GELU_GRAD: case IR_LEAKY_RELU_GRAD: case IR_SILU_GRAD: case IR_ELU_GRAD: case IR_SOFTPLUS_GRAD:
  case IR_SQRT_GRAD: case IR_ABS_GRAD: case IR_CLAMP_GRAD:
    return check_act(n, d) && same_as(n, d, a, b);
  case IR_CONV2D_GRAD_INPUT: case IR_CONV2D_GRAD_WEIGHT: {
    // (g, w) -> x, or (g, x) -> w: x [N, C, H, W], w [O, C/groups, KH, KW]
    const IrNode *x = n->op == IR_CONV2D_GRAD_INPUT ? n : b, *w = n->op == IR_CONV2D_GRAD_INPUT ? b : n;
    if (!check_preset(n, d, NULL))
      return false;
    if (x->ndim != 4 || w->ndim != 4)
      return fail(n, d, NULL, "expects an input [N, C, H, W] and a weight [O, C, KH, KW], found %s and %s", sh(x),
                  sh(w));
    return check_groups(n, d, x->shape[1], w);
  }
  case IR_CONV2D_GRAD_WEIGHT_POOLED: case IR_CONV2D_GRAD_INPUT_POOLED: {
    // (g, x, p) -> w or (g, w, p) -> x: g the gradient of p = maxpool(y), y [N, O, OH, OW] the
    // convolution's output
    const IrNode *p = n->src[2], *x = n->op == IR_CONV2D_GRAD_INPUT_POOLED ? n : b;
    const IrNode *w = n->op == IR_CONV2D_GRAD_INPUT_POOLED ? b : n;
    if (!check_preset(n, d, NULL))
      return false;
    if (p->op != IR_MAXPOOL || !ir_same_shape(a, p) || x->ndim != 4 || w->ndim != 4 || p->src[0]->ndim != 4 ||
        p->src[0]->shape[1] != w->shape[0])
      return fail(n, d, NULL, "expects the gradient %s of a max pooling of a convolution's output, found %s beside "
                  "it", sh(a), sh(b));
    return check_groups(n, d, x->shape[1], w);
  }
  case IR_AVGPOOL_GRAD: case IR_GLOBAL_AVGPOOL_GRAD:
    return check_preset(n, d, NULL);
  case IR_CHANNEL_SUM: {
    if (a->ndim < 2)
      return fail(n, d, NULL, "expects [N, C, ...], found %s%s", sh(a), "");
    int64_t c = a->shape[1];
    set_shape(n, 1, &c);
    n->dtype = DT_F32;
    return true;
  }
  case IR_MAXPOOL_GRAD: case IR_BATCHNORM_GRAD:
    return same_as(n, d, b, NULL);
  case IR_MAX_FIRST: case IR_MAX_GRAD: {   // (x, y) -> y's shape; (g, first) -> x's, preset
    const IrNode *x = n->op == IR_MAX_FIRST ? a : n;
    if (n->op == IR_MAX_GRAD && !check_preset(n, d, NULL))
      return false;
    IrNode kept = *x;
    for (int j = 0; j < x->ndim; j++)
      if (n->attr.i[0] >> j & 1)
        kept.shape[j] = 1;
    const IrNode *y = n->op == IR_MAX_FIRST ? b : a;
    if (!ir_same_shape(&kept, y) || !ir_same_shape(&kept, b))
      return fail(n, d, NULL, "%s does not reduce %s with keepdim", sh(y), sh(x));
    if (n->op == IR_MAX_FIRST)
      set_shape(n, kept.ndim, kept.shape);
    n->dtype = DT_F32;
    return true;
  }
  case IR_SLICE_GRAD: {   // g -> the preset shape of the sliced tensor
    if (!check_preset(n, d, NULL) || !infer_slice(n, d, n))
      return false;
    IrNode like = *n;
    like.shape[n->attr.i[0]] = (n->attr.i[2] - n->attr.i[1] + n->attr.i[3] - 1) / n->attr.i[3];
    if (!ir_same_shape(&like, a))
      return fail(n, d, NULL, "the gradient %s does not fit a slice of %s", sh(a), sh(n));
    return true;
  }
  case IR_BATCHNORM_GRAD_GAMMA: {
    int64_t c = b->shape[1];
    set_shape(n, 1, &c);
    n->dtype = DT_F32;
    return true;
  }
  case IR_CROSS_ENTROPY_GRAD: case IR_NLL_GRAD: case IR_MSE_GRAD: case IR_L1_GRAD:
  case IR_BCE_WITH_LOGITS_GRAD:
    return same_as(n, d, a, NULL);
  case IR_EMBEDDING_GRAD:
    if (b->dtype != DT_I32 || n->ndim != 2 || a->ndim != b->ndim + 1 || a->shape[a->ndim - 1] != n->shape[1])
      return fail(n, d, NULL, "the gradient %s does not match the indexes %s", sh(a), sh(b));
    return check_preset(n, d, NULL);
  case IR_SGD_STEP: case IR_ADAM_STEP: case IR_RMSPROP_STEP: case IR_ADAGRAD_STEP:
    for (int i = 1; i < n->nsrc; i++)
      if (!ir_same_shape(a, n->src[i]))
        return fail(n, d, NULL, "the state %s does not match the parameter %s", sh(n->src[i]), sh(a));
    return same_as(n, d, a, NULL);
  default:
    break;
  }
  unreachable();
}

bool pass_infer_node(IrNode *n, Diag *d) {
  for (int i = 0; i < n->nsrc; i++)
    if (n->src[i]->ndim < 0) {
      n->ndim = -1;
      return false;
    }
  switch (n->op) {
  case IR_INPUT: case IR_TARGET: case IR_PARAM: case IR_BUFFER: case IR_CONST:
    if (n->ndim < 0)
      return fail(n, d, NULL, "has no shape%s%s", "", "");
    return true;
  case IR_ADD: case IR_SUB: case IR_MUL: case IR_DIV:
    return check_f32(n, d, 0, 2) && infer_broadcast(n, d);
  case IR_NEG: case IR_RELU: case IR_SIGMOID: case IR_TANH: case IR_EXP: case IR_LOG:
  case IR_GELU: case IR_LEAKY_RELU: case IR_SILU: case IR_ELU: case IR_SOFTPLUS: case IR_SQRT: case IR_ABS:
  case IR_CLAMP:
    if (!check_f32(n, d, 0, 1) || !check_act(n, d))
      return false;
    set_shape(n, n->src[0]->ndim, n->src[0]->shape);
    n->dtype = DT_F32;
    return true;
  case IR_DROPOUT:
    if (!check_f32(n, d, 0, 1))
      return false;
    if (!(n->attr.f[0] >= 0 && n->attr.f[0] < 1))
      return fail(n, d, NULL, "the probability must be in [0, 1)%s%s", "", "");
    set_shape(n, n->src[0]->ndim, n->src[0]->shape);
    n->dtype = DT_F32;
    return true;
  case IR_GAUSSIAN_NOISE:
    if (!check_f32(n, d, 0, 1))
      return false;
    if (!(n->attr.f[0] >= 0 && n->attr.f[0] <= 1e6))
      return fail(n, d, NULL, "the standard deviation must be in [0, 1e6]%s%s", "", "");
    set_shape(n, n->src[0]->ndim, n->src[0]->shape);
    n->dtype = DT_F32;
    return true;
  case IR_MATMUL:
    return check_f32(n, d, 0, 2) && infer_matmul(n, d);
  case IR_CONV2D:
    return check_f32(n, d, 0, 3) && infer_conv2d(n, d);
  case IR_PERMUTE:
    return check_f32(n, d, 0, 1) && infer_permute(n, d);
  case IR_BATCH_MATMUL:
    return check_f32(n, d, 0, 2) && infer_batch_matmul(n, d);
  case IR_LAYERNORM: {
    IrNode *x = n->src[0];
    if (!check_f32(n, d, 0, 1))
      return false;
    if (n->attr.i[0] < 1 || n->attr.i[0] > x->ndim - ir_is_batched(x))
      return fail(n, d, "it normalizes over the last dims dimensions of one sample",
                  "dims out of range for %s%s", sh(x), "");
    if (!(n->attr.f[0] > 0))
      return fail(n, d, NULL, "eps must be positive%s%s", "", "");
    set_shape(n, x->ndim, x->shape);
    n->dtype = DT_F32;
    return true;
  }
  case IR_MAXPOOL: case IR_AVGPOOL:
    return check_f32(n, d, 0, 1) && infer_pool(n, d);
  case IR_GLOBAL_AVGPOOL: {
    IrNode *x = n->src[0];
    if (!check_f32(n, d, 0, 1))
      return false;
    if (x->ndim != 4)
      return fail(n, d, NULL, "expects an input [N, C, H, W], found %s%s", sh(x), "");
    int64_t out[4] = {x->shape[0], x->shape[1], 1, 1};
    set_shape(n, 4, out);
    n->dtype = DT_F32;
    return true;
  }
  case IR_BATCHNORM:
    return check_f32(n, d, 0, 5) && infer_batchnorm(n, d);
  case IR_RESHAPE:
    return check_f32(n, d, 0, 1) && infer_reshape(n, d);
  case IR_SOFTMAX: case IR_LOG_SOFTMAX:
    return check_f32(n, d, 0, 1) && infer_softmax(n, d);
  case IR_EMBEDDING:
    return check_f32(n, d, 1, 2) && infer_embedding(n, d);
  case IR_CROSS_ENTROPY: case IR_NLL: case IR_MSE: case IR_L1: case IR_BCE_WITH_LOGITS:
    return check_f32(n, d, 0, 1) && infer_loss(n, d);
  case IR_SLICE:
    return check_f32(n, d, 0, 1) && infer_slice(n, d, n->src[0]);
  case IR_CONCAT:
    return check_f32(n, d, 0, n->nsrc) && infer_concat(n, d);
  case IR_SUM: case IR_MEAN: case IR_MAX:
    return check_f32(n, d, 0, 1) && infer_reduce(n, d);
  default:
    return infer_grad(n, d);
  }
}

bool pass_shapes(IrGraph *g, Diag *d) {
  bool ok = true;
  for (int i = 0; i < g->nnodes; i++)
    if (!pass_infer_node(g->nodes[i], d))
      ok = false;
  return ok;
}
