// kernels_act.c: the reference kernels of the activations gelu, leaky_relu,
// silu, elu, softplus, sqrt, abs and clamp (runtime.h, KAct), written as
// PyTorch's CPU kernels compute them, in float with libm (erff, expm1f,
// log1pf). The fused loops (passes/fuse.c) follow the same formulas.
#include "runtime.h"

#include <math.h>

static float act_forward(const KAct *a, float x) {
  switch (a->kind) {
  case K_GELU: return x * 0.5f * (1.0f + erff(x * K_SQRT1_2));
  case K_GELU_TANH: {
    float inner = K_GELU_BETA * (x + K_GELU_KAPPA * (x * x * x));
    return 0.5f * x * (1.0f + tanhf(inner));
  }
  case K_LEAKY_RELU: return x > 0 ? x : x * a->p0;
  case K_SILU: return x / (1.0f + expf(-x));
  case K_ELU: return x > 0 ? x : a->p0 * expm1f(x);
  case K_SOFTPLUS: return x * a->p0 > a->p1 ? x : log1pf(expf(x * a->p0)) / a->p0;
  case K_SQRT: return sqrtf(x);
  case K_ABS: return fabsf(x);
  case K_CLAMP: {   // NaN stays NaN, as torch.clamp
    float v = a->p0 > x ? a->p0 : x;
    return a->p1 < v ? a->p1 : v;
  }
  }
  return x;
}

// dy * f'(x); sqrt's from y.
static float act_backward(const KAct *a, float dy, float x) {
  switch (a->kind) {
  case K_GELU: {
    float cdf = 0.5f * (1.0f + erff(x * K_SQRT1_2));
    float pdf = expf(-0.5f * x * x) * K_GELU_PDF;
    return dy * (cdf + x * pdf);
  }
  case K_GELU_TANH: {
    float x2 = x * x, inner = K_GELU_BETA * (x + K_GELU_KAPPA * (x2 * x)), t = tanhf(inner);
    float left = 0.5f * x, right = 1.0f + t;
    float dleft = 0.5f * right, dtanh = 1.0f - t * t;
    float dinner = K_GELU_BETA * (1.0f + 3.0f * K_GELU_KAPPA * x2);
    return dy * (dleft + left * dtanh * dinner);
  }
  case K_LEAKY_RELU: return x > 0 ? dy : dy * a->p0;
  case K_SILU: {
    float s = 1.0f / (1.0f + expf(-x));
    return dy * s * (1.0f + x * (1.0f - s));
  }
  case K_ELU: return x > 0 ? dy : dy * (a->p0 * expf(x));
  case K_SOFTPLUS: {
    float z = expf(x * a->p0);
    return x * a->p0 > a->p1 ? dy : dy * z / (z + 1.0f);
  }
  case K_SQRT: return dy / (2.0f * x);
  case K_ABS: return x > 0 ? dy : x < 0 ? -dy : 0.0f;
  case K_CLAMP: return x > a->p0 && x < a->p1 ? dy : 0.0f;   // 0 at the bounds, as torch 2.15
  }
  return dy;
}

void k_act_forward(const KAct *a, float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = act_forward(a, x[i]);
}

void k_act_backward(const KAct *a, float *dx, const float *dy, const float *x_or_y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += act_backward(a, dy[i], x_or_y[i]);
}
