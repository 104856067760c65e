// test_optim.c: SGD (plain, weight decay, momentum, dampening, nesterov)
// and Adam / AdamW over three steps. First scalar cases worked out by hand
// (constant gradient 1, lr 0.1, p0 = 1); then every variant on a vector
// with varying gradients against the textbook formulas written out in
// double, e.g. Adam as m_hat / (sqrt(v_hat) + eps) rather than PyTorch's
// equivalent (sqrt(v) / sqrt(bc2) + eps) order.
//
// Tolerance: |got - want| <= 1e-6 + 1e-5 * |want| (float against double
// over three steps).
#include "../test.h"
#include "runtime.h"

#define OPT_ATOL 1e-6
#define OPT_RTOL 1e-5

//
// Scalars worked out by hand
//

// Three SGD steps on p0 = 1 with g = 1 every step; want the p after each.
static void hand_sgd(const char *what, KSgd o, const double want[3]) {
  float p = 1, buf = 12345;   // buf's old contents must not matter on step 1
  float got[3];
  const float g = 1;
  for (int t = 1; t <= 3; t++) {
    k_sgd_step(&p, o.momentum != 0 ? &buf : NULL, &g, 1, &o, t);
    got[t - 1] = p;
  }
  t_close(what, got, want, 3, OPT_ATOL, OPT_RTOL);
}

static void hand_adam(const char *what, KAdam o, const double want[3]) {
  float p = 1, m = 0, v = 0, got[3];
  const float g = 1;
  for (int t = 1; t <= 3; t++) {
    k_adam_step(&p, &m, &v, &g, 1, &o, t);
    got[t - 1] = p;
  }
  t_close(what, got, want, 3, OPT_ATOL, OPT_RTOL);
}

static void test_by_hand(void) {
  // p -= 0.1 each step.
  hand_sgd("sgd by hand", (KSgd){.lr = 0.1}, (double[]){0.9, 0.8, 0.7});
  // buf = 1, 1.9, 2.71; p = 1 - 0.1, - 0.19, - 0.271.
  hand_sgd("sgd momentum 0.9 by hand", (KSgd){.lr = 0.1, .momentum = 0.9},
           (double[]){0.9, 0.71, 0.439});
  // buf = 1 (g itself, not 0.5*g), 0.9 + 0.5 = 1.4, 1.26 + 0.5 = 1.76.
  hand_sgd("sgd momentum 0.9 dampening 0.5 by hand",
           (KSgd){.lr = 0.1, .momentum = 0.9, .dampening = 0.5}, (double[]){0.9, 0.76, 0.584});
  // buf = 1, 1.9, 2.71; direction = g + 0.9*buf = 1.9, 2.71, 3.439.
  hand_sgd("sgd nesterov 0.9 by hand", (KSgd){.lr = 0.1, .momentum = 0.9, .nesterov = true},
           (double[]){0.81, 0.539, 0.1951});
  // g' = 1 + 0.1p: 1.1, 1.089, 1.07811.
  hand_sgd("sgd weight decay 0.1 by hand", (KSgd){.lr = 0.1, .weight_decay = 0.1},
           (double[]){0.89, 0.7811, 0.673289});
  // With a constant gradient m_hat = v_hat = 1, so each step is lr/(1+eps).
  hand_adam("adam by hand", (KAdam){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
            (double[]){0.9, 0.8, 0.7});
  // p *= 0.99 first, then the same lr-sized step: 0.99 - 0.1, ...
  hand_adam("adamw by hand",
            (KAdam){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1,
                    .decoupled = true},
            (double[]){0.89, 0.7811, 0.673289});
}

//
// Vectors against the formulas in double
//

#define NP 6
static const float p_init[NP] = {0.5f, -1.25f, 2.0f, -0.3f, 0.05f, 1.7f};
static const float grads[3][NP] = {   // one row per step
  {0.1f, -0.4f, 1.5f, 0.7f, -2.0f, 0.3f},
  {-0.2f, -0.35f, 1.1f, -0.6f, 0.9f, 0.25f},
  {0.3f, 0.5f, -0.8f, 0.65f, -1.2f, 0.2f},
};

static void sgd_expect(double *p, const KSgd *o) {
  double buf[NP];
  for (int t = 1; t <= 3; t++)
    for (int i = 0; i < NP; i++) {
      double g = grads[t - 1][i] + o->weight_decay * p[i];
      if (o->momentum != 0) {
        buf[i] = t == 1 ? g : o->momentum * buf[i] + (1 - o->dampening) * g;
        g = o->nesterov ? g + o->momentum * buf[i] : buf[i];
      }
      p[i] -= o->lr * g;
    }
}

static void adam_expect(double *p, const KAdam *o) {
  double m[NP] = {0}, v[NP] = {0};
  for (int t = 1; t <= 3; t++)
    for (int i = 0; i < NP; i++) {
      double g = grads[t - 1][i];
      if (o->decoupled)
        p[i] *= 1 - o->lr * o->weight_decay;
      else
        g += o->weight_decay * p[i];
      m[i] = o->beta1 * m[i] + (1 - o->beta1) * g;
      v[i] = o->beta2 * v[i] + (1 - o->beta2) * g * g;
      double m_hat = m[i] / (1 - pow(o->beta1, t));
      double v_hat = v[i] / (1 - pow(o->beta2, t));
      p[i] -= o->lr * m_hat / (sqrt(v_hat) + o->eps);
    }
}

static void test_sgd(const char *what, KSgd o) {
  float p[NP], buf[NP];
  double want[NP];
  for (int i = 0; i < NP; i++) {
    p[i] = p_init[i];
    want[i] = p_init[i];
    buf[i] = NAN;   // step 1 must overwrite it
  }
  for (int t = 1; t <= 3; t++)
    k_sgd_step(p, o.momentum != 0 ? buf : NULL, grads[t - 1], NP, &o, t);
  sgd_expect(want, &o);
  t_close(what, p, want, NP, OPT_ATOL, OPT_RTOL);
}

static void test_adam(const char *what, KAdam o) {
  float p[NP], m[NP] = {0}, v[NP] = {0};
  double want[NP];
  for (int i = 0; i < NP; i++) {
    p[i] = p_init[i];
    want[i] = p_init[i];
  }
  for (int t = 1; t <= 3; t++)
    k_adam_step(p, m, v, grads[t - 1], NP, &o, t);
  adam_expect(want, &o);
  t_close(what, p, want, NP, OPT_ATOL, OPT_RTOL);
}

int main(void) {
  test_by_hand();
  test_sgd("sgd", (KSgd){.lr = 0.1});
  test_sgd("sgd weight decay", (KSgd){.lr = 0.1, .weight_decay = 0.01});
  test_sgd("sgd momentum", (KSgd){.lr = 0.05, .momentum = 0.9});
  test_sgd("sgd momentum dampening", (KSgd){.lr = 0.05, .momentum = 0.9, .dampening = 0.3});
  test_sgd("sgd nesterov", (KSgd){.lr = 0.05, .momentum = 0.9, .nesterov = true});
  test_sgd("sgd nesterov weight decay",
           (KSgd){.lr = 0.05, .momentum = 0.8, .weight_decay = 0.05, .nesterov = true});
  test_sgd("sgd momentum dampening weight decay",
           (KSgd){.lr = 0.05, .momentum = 0.7, .dampening = 0.1, .weight_decay = 0.02});
  test_adam("adam", (KAdam){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
  test_adam("adam weight decay (L2)",
            (KAdam){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1});
  test_adam("adamw", (KAdam){.lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                             .weight_decay = 0.1, .decoupled = true});
  // beta1 <= 0.5 takes lerp's other branch (weight 1 - beta1 >= 0.5).
  test_adam("adam beta1 0.3", (KAdam){.lr = 0.01, .beta1 = 0.3, .beta2 = 0.6, .eps = 1e-3});
  test_adam("adamw beta1 0.5, large eps", (KAdam){.lr = 0.02, .beta1 = 0.5, .beta2 = 0.9,
                                                  .eps = 0.1, .weight_decay = 0.5,
                                                  .decoupled = true});
  return t_finish("test_optim");
}
