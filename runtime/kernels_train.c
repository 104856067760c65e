// kernels_train.c: the reference kernels that only training needs, or that
// training uses differently from inference: dropout, the losses, the
// optimizer updates and the parameter initializers (batch normalization
// is kernels_bn.c's).
//
// Statistics and losses accumulate in double and round once at the end.
// The optimizers instead reproduce torch.optim's float arithmetic step by
// step, so that a run here and a run in PyTorch stay close over many steps.
#include "runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

//
// Dropout
//

float k_dropout_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

// y = x * (kept ? scale : 0), the product PyTorch forms (x * noise), so a
// dropped inf or NaN gives NaN there as here.
uint64_t k_dropout_key(float p, Rng *rng) {
  if (!(p > 0.0f && p < 1.0f))
    return 0;
  uint64_t hi = rng_u32(rng);
  return hi << 32 | rng_u32(rng);
}

// splitmix64's output function on the key's index-th step: a bijection of
// 64-bit words that passes BigCrush, cheap enough for every element.
static inline uint64_t dropout_hash(uint64_t key, int64_t index) {
  uint64_t z = key + ((uint64_t)index + 1) * K_DROPOUT_GOLDEN;
  z = (z ^ (z >> 30)) * K_DROPOUT_MIX1;
  z = (z ^ (z >> 27)) * K_DROPOUT_MIX2;
  return z ^ (z >> 31);
}

float k_dropout_uniform(uint64_t key, int64_t index) {
  return (float)(dropout_hash(key, index) >> 40) * (1.0f / 16777216.0f);
}

// u >= p in integers: the 24-bit draw at least ceil(p * 2^24) (exact).
static uint64_t dropout_least(float p) {
  return p >= 1.0f ? (uint64_t)1 << 24 : (uint64_t)ceil((double)p * 16777216.0);
}

void k_dropout_forward(float *y, uint8_t *mask, const float *x, int64_t n, float p, uint64_t key, int64_t first) {
  if (p <= 0.0f) {
    memmove(y, x, n * sizeof(float));
    memset(mask, 1, n);
    return;
  }
  k_dropout_forward_tail(y, mask, x, n, k_dropout_scale(p), dropout_least(p), key, first);
}

void k_dropout_forward_tail(float *y, uint8_t *mask, const float *x, int64_t n, float scale, uint64_t least,
                            uint64_t key, int64_t first) {
  for (int64_t i = 0; i < n; i++) {   // without branches: which elements drop is random
    uint8_t keep = (dropout_hash(key, first + i) >> 40) >= least;
    mask[i] = keep;
    y[i] = x[i] * ((float)keep * scale);
  }
}

void k_dropout_forward_fast(float *y, uint8_t *mask, const float *x, int64_t n, float p, uint64_t key,
                            int64_t first) {
  if (p <= 0.0f || (!k_avx512() && !k_avx2())) {
    k_dropout_forward(y, mask, x, n, p, key, first);
    return;
  }
  (k_avx512() ? k_avx512_dropout : k_avx2_dropout)(y, mask, x, n, k_dropout_scale(p), dropout_least(p), key, first);
}

void k_dropout_backward(float *dx, const float *dy, const uint8_t *mask, int64_t n, float p) {
  float scale = k_dropout_scale(p);
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] * (mask[i] ? scale : 0.0f);
}

//
// Gaussian noise
//

uint64_t k_noise_key(float std, Rng *rng) {
  if (!(std > 0.0f))
    return 0;
  uint64_t hi = rng_u32(rng);
  return hi << 32 | rng_u32(rng);
}

float k_noise_normal(uint64_t key, int64_t index) {
  float u1 = (float)((dropout_hash(key, 2 * index) >> 40) + 1) * (1.0f / 16777216.0f);
  float u2 = (float)(dropout_hash(key, 2 * index + 1) >> 40) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

void k_noise_forward(float *y, const float *x, int64_t n, float std, uint64_t key, int64_t first) {
  if (!(std > 0.0f)) {
    memmove(y, x, n * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] + std * k_noise_normal(key, first + i);
}

//
// Losses
//

// A label outside [0, C) comes from the data, not from nnc: say which.
static void check_label(const char *loss, const int32_t *labels, int64_t i, int64_t C) {
  if (labels[i] < 0 || labels[i] >= C)
    nnc_fatal("%s: label %d of sample %lld is outside [0, %lld)\n"
              "---> HINT: class labels count from 0 and must be less than the number of "
              "classes the model outputs; check the data and the size of the last layer",
              loss, (int)labels[i], (long long)i, (long long)C);
}

// log(sum_c exp(row[c])), stable: the maximum comes out first.
static double logsumexp(const float *row, int64_t C) {
  double m = -INFINITY;
  for (int64_t c = 0; c < C; c++)
    if (row[c] > m)
      m = row[c];
  if (isinf(m))   // all -inf (the sum is 0) or some +inf (the sum is inf)
    return m;
  double sum = 0;
  for (int64_t c = 0; c < C; c++)
    sum += exp(row[c] - m);
  return m + log(sum);
}

float k_cross_entropy_forward(const float *logits, const int32_t *labels, int64_t N, int64_t C) {
  double total = 0;
  for (int64_t i = 0; i < N; i++) {
    check_label("cross_entropy", labels, i, C);
    const float *row = logits + i * C;   // (C)
    total += logsumexp(row, C) - row[labels[i]];
  }
  return (float)(total / N);
}

void k_cross_entropy_backward(float *dlogits, float g, const float *logits,
                              const int32_t *labels, int64_t N, int64_t C) {
  double scale = (double)g / N;
  for (int64_t i = 0; i < N; i++) {
    check_label("cross_entropy", labels, i, C);
    const float *row = logits + i * C;   // (C)
    double lse = logsumexp(row, C);
    for (int64_t c = 0; c < C; c++) {
      double p = exp(row[c] - lse);      // softmax
      dlogits[i * C + c] += (float)(scale * (p - (c == labels[i])));
    }
  }
}

float k_cross_entropy_smooth_forward(const float *logits, const int32_t *labels, int64_t N, int64_t C,
                                     double smoothing) {
  if (smoothing == 0)
    return k_cross_entropy_forward(logits, labels, N, C);
  double total = 0;
  for (int64_t i = 0; i < N; i++) {
    check_label("cross_entropy", labels, i, C);
    const float *row = logits + i * C;   // (C)
    double lse = logsumexp(row, C), sum = 0;
    for (int64_t c = 0; c < C; c++)
      sum += row[c];
    total += (1.0 - smoothing) * (lse - row[labels[i]]) + smoothing * (lse - sum / C);
  }
  return (float)(total / N);
}

void k_cross_entropy_smooth_backward(float *dlogits, float g, const float *logits, const int32_t *labels,
                                     int64_t N, int64_t C, double smoothing) {
  if (smoothing == 0) {
    k_cross_entropy_backward(dlogits, g, logits, labels, N, C);
    return;
  }
  double scale = (double)g / N, off = smoothing / C;
  for (int64_t i = 0; i < N; i++) {
    check_label("cross_entropy", labels, i, C);
    const float *row = logits + i * C;   // (C)
    double lse = logsumexp(row, C);
    for (int64_t c = 0; c < C; c++) {
      double p = exp(row[c] - lse);      // softmax
      dlogits[i * C + c] += (float)(scale * (p - (1.0 - smoothing) * (c == labels[i]) - off));
    }
  }
}

float k_nll_forward(const float *logp, const int32_t *labels, int64_t N, int64_t C) {
  double total = 0;
  for (int64_t i = 0; i < N; i++) {
    check_label("nll", labels, i, C);
    total -= logp[i * C + labels[i]];
  }
  return (float)(total / N);
}

void k_nll_backward(float *dlogp, float g, const int32_t *labels, int64_t N, int64_t C) {
  float d = (float)(-(double)g / N);
  for (int64_t i = 0; i < N; i++) {
    check_label("nll", labels, i, C);
    dlogp[i * C + labels[i]] += d;
  }
}

float k_mse_forward(const float *x, const float *t, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - t[i];
    sum += d * d;
  }
  return (float)(sum / n);
}

void k_mse_backward(float *dx, float *dt, float g, const float *x, const float *t, int64_t n) {
  double scale = 2.0 * g / n;
  for (int64_t i = 0; i < n; i++) {
    float d = (float)(scale * ((double)x[i] - t[i]));
    if (dx)
      dx[i] += d;
    if (dt)
      dt[i] -= d;
  }
}

float k_l1_forward(const float *x, const float *t, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++)
    sum += fabs((double)x[i] - t[i]);
  return (float)(sum / n);
}

// The subgradient PyTorch uses: sign(x - t), and 0 where x == t.
void k_l1_backward(float *dx, float *dt, float g, const float *x, const float *t, int64_t n) {
  float scale = (float)((double)g / n);
  for (int64_t i = 0; i < n; i++) {
    float s = (float)((x[i] > t[i]) - (x[i] < t[i]));
    if (dx)
      dx[i] += scale * s;
    if (dt)
      dt[i] -= scale * s;
  }
}

// max(x,0) - x*t + log(1 + exp(-|x|)) never overflows: exp's argument is <= 0.
float k_bce_with_logits_forward(const float *x, const float *t, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double xi = x[i];
    sum += fmax(xi, 0.0) - xi * t[i] + log1p(exp(-fabs(xi)));
  }
  return (float)(sum / n);
}

void k_bce_with_logits_backward(float *dx, float *dt, float g, const float *x, const float *t,
                                int64_t n) {
  double scale = (double)g / n;
  for (int64_t i = 0; i < n; i++) {
    double xi = x[i];
    if (dx)
      dx[i] += (float)(scale * (1.0 / (1.0 + exp(-xi)) - t[i]));
    if (dt)
      dt[i] += (float)(scale * -xi);
  }
}

//
// Optimizers
//

// PyTorch rounds v*beta2 + w*g*g and the like after every operation. Keep
// the compiler from fusing them into one rounding, as GCC and Clang would
// when the target has FMA (-march=native); fmaf() below is explicit.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

// torch.lerp(a, b, w) for float: a + w*(b - a) when |w| < 0.5, else
// b - (b - a)*(1 - w), each one fused multiply-add as in PyTorch's
// vectorized CPU kernel.
static float torch_lerpf(float a, float b, float w) {
  return fabsf(w) < 0.5f ? fmaf(w, b - a, a) : fmaf(w - 1.0f, b - a, b);
}

// Tensor.add(other, alpha) is fmaf(other, alpha, self) in PyTorch's
// vectorized CPU kernel; scalars are Python floats rounded to float.
void k_sgd_step(float *p, float *buf, const float *g, int64_t n, const KSgd *o, int64_t t) {
  float wd = (float)o->weight_decay;
  float mom = (float)o->momentum;
  float keep = (float)(1.0 - o->dampening);   // alpha of buf.mul_(momentum).add_(g, alpha)
  float neg_lr = (float)-o->lr;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    if (o->weight_decay != 0)
      gi = fmaf(p[i], wd, gi);                 // g.add(p, alpha=wd)
    if (o->momentum != 0) {
      if (t == 1)
        buf[i] = gi;                           // the buffer starts as a copy of g
      else
        buf[i] = fmaf(gi, keep, buf[i] * mom);
      gi = o->nesterov ? fmaf(buf[i], mom, gi) : buf[i];
    }
    p[i] = fmaf(gi, neg_lr, p[i]);             // p.add_(g, alpha=-lr)
  }
}

void k_adam_step(float *p, float *m, float *v, const float *g, int64_t n, const KAdam *o,
                 int64_t t) {
  // Per-step scalars in double, as Python computes them.
  double bias_correction1 = 1.0 - pow(o->beta1, (double)t);
  double bias_correction2 = 1.0 - pow(o->beta2, (double)t);
  float neg_step_size = (float)-(o->lr / bias_correction1);
  float bc2_sqrt = (float)sqrt(bias_correction2);
  float decay = (float)(1.0 - o->lr * o->weight_decay);   // AdamW's p.mul_()
  float wd = (float)o->weight_decay;
  float w1 = (float)(1.0 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1.0 - o->beta2);
  float eps = (float)o->eps;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    if (o->decoupled)
      p[i] = p[i] * decay;
    else if (o->weight_decay != 0)
      gi = fmaf(p[i], wd, gi);                  // g.add(p, alpha=wd)
    m[i] = torch_lerpf(m[i], gi, w1);           // m.lerp_(g, 1-beta1)
    v[i] = v[i] * b2 + w2 * gi * gi;            // v.mul_(beta2).addcmul_(g, g, value=1-beta2)
    float denom = sqrtf(v[i]) / bc2_sqrt + eps;
    p[i] = p[i] + neg_step_size * m[i] / denom; // p.addcdiv_(m, denom, value=-step_size)
  }
}

void k_rmsprop_step(float *p, float *sq, float *buf, float *ga, const float *g, int64_t n, const KRmsprop *o) {
  float wd = (float)o->weight_decay, alpha = (float)o->alpha, w = (float)(1.0 - o->alpha);
  float eps = (float)o->eps, mom = (float)o->momentum, neg_lr = (float)-o->lr;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    if (o->weight_decay != 0)
      gi = fmaf(p[i], wd, gi);                  // g.add(p, alpha=wd)
    sq[i] = sq[i] * alpha + w * gi * gi;        // sq.mul_(alpha).addcmul_(g, g, value=1-alpha)
    float avg;
    if (o->centered) {
      ga[i] = torch_lerpf(ga[i], gi, w);        // ga.lerp_(g, 1-alpha)
      avg = sqrtf(sq[i] + -1.0f * ga[i] * ga[i]) + eps;   // sq.addcmul(ga, ga, value=-1).sqrt_().add_(eps)
    } else {
      avg = sqrtf(sq[i]) + eps;
    }
    if (o->momentum > 0) {
      buf[i] = buf[i] * mom + gi / avg;         // buf.mul_(momentum).addcdiv_(g, avg)
      p[i] = fmaf(buf[i], neg_lr, p[i]);        // p.add_(buf, alpha=-lr)
    } else {
      p[i] = p[i] + neg_lr * gi / avg;          // p.addcdiv_(g, avg, value=-lr)
    }
  }
}

float k_adagrad_neg_clr(double lr, double lr_decay, int64_t t) {
  return (float)-(lr / (1.0 + (double)(t - 1) * lr_decay));
}

void k_adagrad_step(float *p, float *sum, const float *g, int64_t n, const KAdagrad *o, int64_t t) {
  float wd = (float)o->weight_decay, eps = (float)o->eps;
  float neg_clr = k_adagrad_neg_clr(o->lr, o->lr_decay, t);
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    if (o->weight_decay != 0)
      gi = fmaf(p[i], wd, gi);                  // g.add(p, alpha=wd)
    sum[i] = sum[i] + gi * gi;                  // sum.addcmul_(g, g, value=1)
    p[i] = p[i] + neg_clr * gi / (sqrtf(sum[i]) + eps);   // p.addcdiv_(g, sum.sqrt().add_(eps), value=-clr)
  }
}

//
// Initializers
//

void k_init_constant(float *p, int64_t n, float value) {
  for (int64_t i = 0; i < n; i++)
    p[i] = value;
}

void k_init_zeros(float *p, int64_t n) { k_init_constant(p, n, 0.0f); }
void k_init_ones(float *p, int64_t n) { k_init_constant(p, n, 1.0f); }

void k_init_uniform(float *p, int64_t n, float lo, float hi, Rng *rng) {
  for (int64_t i = 0; i < n; i++)
    p[i] = lo + (hi - lo) * rng_uniformf(rng);
}

void k_init_normal(float *p, int64_t n, float mean, float std, Rng *rng) {
  for (int64_t i = 0; i < n; i++)
    p[i] = (float)(mean + std * rng_normal(rng));
}

// torch.nn.init.kaiming_uniform_ with mode fan_in and leaky_relu's gain.
double k_kaiming_uniform_bound(int64_t fan_in, double a) {
  if (fan_in <= 0)
    return 0;
  double gain = sqrt(2.0 / (1.0 + a * a));
  double std = gain / sqrt((double)fan_in);
  return sqrt(3.0) * std;
}

double k_default_weight_bound(int64_t fan_in) { return k_kaiming_uniform_bound(fan_in, sqrt(5.0)); }

double k_default_bias_bound(int64_t fan_in) { return fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0; }

void k_init_fill(float *p, int64_t n, int kind, double a, double b, Rng *rng) {
  switch (kind) {
  case RT_INIT_ZEROS: k_init_zeros(p, n); break;
  case RT_INIT_ONES: k_init_ones(p, n); break;
  case RT_INIT_CONSTANT: k_init_constant(p, n, (float)a); break;
  case RT_INIT_NORMAL: k_init_normal(p, n, (float)a, (float)b, rng); break;
  case RT_INIT_UNIFORM: k_init_uniform(p, n, (float)a, (float)b, rng); break;
  default: nnc_bug(__FILE__, __LINE__, "k_init_fill: unknown initializer");
  }
}
