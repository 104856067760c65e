// gradcheck.c: the gradients autodiff builds, run by the ref backend,
// against central differences of the loss, for small models that between
// them use every op and every loss.
//
// The executor computes in float, so the step is large (1e-2 relative) and
// the tolerance loose (2% + 2e-3); the kernels' own tests check each
// backward kernel in double precision much more tightly. What this test
// catches is a wrong rule in autodiff: a missing transpose, a gradient sent
// to the wrong input, a broadcast not summed back, a contribution dropped.
// Dropout and gaussian_noise stay on, with the same masks and noise in every run.
#include "../test.h"
#include "../load_model.h"
#include "frontend.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Case {
  const char *name;
  const char *src;     // the .nn model
  int batch;
} Case;

static const Case cases[] = {
    {"elementwise", "model m {\n input x: f32[3]\n target y: f32[3]\n"
                    " param a: f32[3] = uniform(0.5, 1.5)\n param b: f32[3] = uniform(-1, 1)\n"
                    " param c: f32[] = constant(0.7)\n"
                    " h = x * a + b / (c * c + 1) - 2 * x\n"
                    " -h + exp(h / 4) + log(a * a + x * x + 1) + tanh(h) + sigmoid(b * x)\n}\nloss mse\n", 4},
    {"matmul", "model m {\n input x: f32[5]\n target y: class(3)\n"
               " param w: f32[5, 4] = normal(0, 0.5)\n param v: f32[4, 3] = normal(0, 0.5)\n"
               " ((x @ w) -> relu) @ v\n}\nloss cross_entropy\n", 6},
    {"matmul-3d", "model m {\n input x: f32[4, 6]\n target y: f32[8]\n"
                  " param w: f32[6, 3] = normal(0, 0.5)\n param v: f32[3, 2] = normal(0, 0.5)\n"
                  " ((x @ w) -> tanh) @ v -> flatten\n}\nloss mse\n", 3},
    {"matmul-4d", "model m {\n input x: f32[2, 3, 5]\n target y: class(3)\n"
                  " param w: f32[5, 4] = normal(0, 0.5)\n param p: f32[2, 3, 5] = normal(0, 0.5)\n"
                  " h = ((x + p) @ w) -> tanh\n (p @ w) + h -> flatten -> linear(3)\n}\nloss cross_entropy\n", 1},
    {"linear-nll", "model m {\n input x: f32[2, 3]\n target y: class(4)\n"
                   " x -> flatten -> linear(7) -> tanh -> linear(4, bias = false) -> log_softmax\n}\nloss nll\n", 5},
    {"conv", "model m {\n input x: f32[2, 7, 6]\n target y: f32[3, 4, 3]\n"
             " x -> conv2d(3, 3, stride = 2, pad = 1) -> sigmoid -> conv2d(3, 2, pad = 1, dilation = 2, bias = false)\n"
             "}\nloss mse\n", 2},
    {"conv-pairs", "model m {\n input x: f32[2, 7, 6]\n target y: f32[3, 3, 5]\n"
                   " x -> conv2d(3, (3, 2), stride = (2, 1), pad = (1, 0), dilation = (1, 2)) -> tanh\n"
                   " -> maxpool((2, 1), stride = (1, 1)) -> conv2d(3, (1, 2), pad = (0, 1), bias = false)\n"
                   "}\nloss mse\n", 2},
    {"conv-transpose", "model m {\n input x: f32[2, 4, 3]\n target y: f32[2, 16, 5]\n"
                       " x -> conv2d(3, 3, pad = 1) -> tanh\n"
                       " -> conv_transpose2d(4, (3, 2), stride = (2, 1), pad = (1, 0), output_pad = (1, 0),"
                       " dilation = (1, 2)) -> sigmoid\n"
                       " -> upsample((2, 1)) -> conv_transpose2d(2, 1, bias = false)\n}\nloss mse\n", 2},
    {"conv-groups", "model m {\n input x: f32[4, 5, 4]\n target y: f32[4, 5, 4]\n"
                    " x -> conv2d(6, 3, pad = 1, groups = 2) -> tanh -> conv2d(6, (3, 1), pad = (1, 0), groups = 6)\n"
                    " -> sigmoid -> conv_transpose2d(4, 3, pad = 1, groups = 2)\n}\nloss mse\n", 2},
    {"pool", "model m {\n input x: f32[2, 6, 6]\n target y: f32[3]\n"
             " h = x -> conv2d(3, 1) -> maxpool(3, stride = 2, pad = 1)\n"
             " k = x -> conv2d(3, 1) -> avgpool(2)\n"
             " (h -> global_avgpool) + (k -> global_avgpool) -> flatten -> linear(3) -> softmax -> log\n}\n"
             "loss mse\n", 3},
    {"batchnorm", "model m {\n input x: f32[2, 4, 4]\n target y: class(3)\n"
                  " x -> conv2d(3, 3, pad = 1) -> batchnorm -> tanh -> flatten -> linear(5) -> batchnorm\n"
                  " -> linear(3)\n}\nloss cross_entropy\n", 4},
    {"residual", "block res(c) {\n h = x -> linear(c) -> tanh\n h + x\n}\n"
                 "model m {\n input x: f32[4]\n target y: f32[4]\n x -> res(4) -> res(4) -> reshape(2, 2) -> dropout(0.3)\n"
                 " -> flatten\n}\nloss l1\n", 3},
    // The same noise in every run (the generator restored): its gradient, the identity.
    {"noise", "model m {\n input x: f32[2, 4, 4]\n target y: f32[3]\n"
              " x -> gaussian_noise(0.5) -> conv2d(2, 3) -> tanh -> gaussian_noise(0.3) -> flatten -> linear(3)\n"
              " -> tanh\n}\nloss mse\n", 3},
    {"bce", "model m {\n input x: f32[6]\n target y: f32[2]\n x -> linear(5) -> relu -> linear(2)\n}\n"
            "loss bce_with_logits\n", 4},
    {"linear-seq", "model m {\n input x: f32[3, 4]\n target y: f32[6]\n"
                   " x -> linear(5) -> tanh -> linear(2, bias = false) -> flatten\n}\nloss mse\n", 2},
    {"embedding", "model m {\n input t: i32[3]\n target y: class(3)\n"
                  " t -> embedding(5, 3) -> tanh -> flatten -> linear(3)\n}\nloss cross_entropy\n", 4},
    // A weighted sum of losses on two outputs, against a class target, a
    // real one and the input; the trunk gets every head's gradient.
    {"weighted", "model m {\n input x: f32[5]\n target c: class(3)\n target y: f32[2]\n"
                 " h = x -> linear(6) -> tanh\n logits = h -> linear(3)\n r = h -> linear(5)\n"
                 " b = logits -> linear(2)\n logits, r, b\n}\n"
                 "loss 0.7 * cross_entropy(logits, c) + 2.5 * mse(r, x) + -0.5 * l1(b, y) + 0.3 * l1(r, x)\n", 3},
    {"activations", "model m {\n input x: f32[8]\n target y: f32[8]\n"
                    " param a: f32[8] = uniform(0.5, 1.5)\n param b: f32[8] = uniform(-1, 1)\n"
                    " h = x * a + b\n"
                    " gelu(h) + gelu(h, tanh = true) + leaky_relu(h, slope = 0.1) + silu(h) + elu(h, alpha = 0.7) +\n"
                    " softplus(h, beta = 2) + sqrt(a * x * x + 0.5) + abs(h) * b +\n"
                    " clamp(h, -0.9, 0.7) + clamp(h, min = 0.15) + clamp(h, max = 0.3)\n}\nloss mse\n", 4},
    {"activations-epilogue", "model m {\n input x: f32[2, 5, 5]\n target y: class(3)\n"
                             " x -> conv2d(3, 3) -> elu -> flatten -> linear(6) -> gelu -> linear(5) -> softplus\n"
                             " -> linear(4) -> leaky_relu(slope = -0.3) -> linear(3) -> silu\n}\nloss cross_entropy\n", 5},
    {"concat", "model m {\n input x: f32[3, 2]\n target y: f32[3]\n param cls: f32[1, 2] = uniform(-1, 1)\n"
               " h = x -> tanh\n c = concat(cls, h, x * h, axis = 1)\n"
               " concat(c, c * c, axis = -1) -> flatten -> linear(3)\n}\nloss mse\n", 3},
    {"slice", "model m {\n input x: f32[4, 6]\n target y: f32[5]\n param w: f32[3, 6] = uniform(-1, 1)\n"
              " h = x -> tanh\n a = h[:, 0] * w[-1]\n b = h[:, 1:, ::2]\n c = (x * h)[..., -1]\n"
              " p, q, r = h[:, :, ::2] -> split(3)\n"
              " k = concat(a, c, b -> flatten, p * q + r -> flatten, axis = 1)\n"
              " concat(k, w[1:, 2:5] -> flatten, axis = -1) -> linear(5)\n}\nloss mse\n", 3},
    {"reduce", "model m {\n input x: f32[3, 4]\n target y: f32[4]\n param w: f32[2, 3, 4] = uniform(-1, 1)\n"
               " h = x -> tanh\n a = sum(h * x, -1)\n b = mean(h, 1, keepdim = true) * x\n"
               " c = mean(w * w, 0, 2) + sum(w, axis = 1, keepdim = true)[0, :, 1]\n"
               " d = mean(x * h, keepdim = true) + sum(h, keepdim = true) -> flatten\n"
               " concat(a * c, b -> flatten, d, axis = 1) -> linear(4)\n}\nloss mse\n", 3},
    {"split", "model m {\n input x: f32[4]\n target y: f32[3]\n param w: f32[4, 6] = uniform(-1, 1)\n"
              " a, b, c = x @ w -> split(3)\n u, v = (x * 2 @ w) -> split(2)\n"
              " (a -> tanh) * (b -> sigmoid) + c * u[:, 1:] + x[:, :2] * w[0, 1:3] -> linear(3)\n}\n"
              "loss mse\n", 3},
    {"max", "model m {\n input x: f32[3, 4]\n target y: f32[4]\n param w: f32[2, 3, 4] = uniform(-1, 1)\n"
            " h = x * w[1] -> tanh\n a = max(h, -1) * max(x, 1, keepdim = true)[:, 0, :3]\n"
            " b = max(w, 0, 2)\n c = max(concat(h, h, axis = 1), 1) -> max(keepdim = true)\n"
            " concat(a * b, c, axis = 1) -> linear(4)\n}\nloss mse\n", 3},
    {"attention", "model m {\n input x: f32[4, 3]\n target y: class(2)\n"
                  " param wq: f32[3, 3] = normal(0, 0.6)\n param wk: f32[3, 3] = normal(0, 0.6)\n"
                  " param wv: f32[3, 3] = normal(0, 0.6)\n q = x @ wq\n k = x @ wk\n v = x @ wv\n"
                  " a = (q @ transpose(k)) -> softmax(axis = -1)\n (a @ v) -> flatten -> linear(2)\n}\n"
                  "loss cross_entropy\n", 3},
    {"permute-broadcast", "model m {\n input x: f32[2, 3, 4]\n target y: f32[3, 2, 2]\n"
                          " param w: f32[1, 4, 2] = normal(0, 0.5)\n"
                          " h = ((x -> permute(0, 2, 1, 3)) @ w) -> tanh\n"
                          " ((h @ transpose(h)) @ (h -> permute(0, 1, 3, 2))) -> log_softmax(axis = 1)\n}\n"
                          "loss mse\n", 3},
    {"layernorm", "model m {\n input x: f32[3, 4]\n target y: f32[3, 4]\n"
                  " param w: f32[4, 4] = normal(0, 0.5)\n"
                  " h = (x -> layernorm(eps = 0.01)) @ w\n"
                  " (h -> tanh -> layernorm(dims = 2, affine = false)) + (h -> layernorm)\n}\nloss mse\n", 3},
    {"lstm", "model m {\n input x: f32[4, 3]\n target y: class(3)\n x -> lstm(5) -> linear(3)\n}\n"
             "loss cross_entropy\n", 3},
    {"lstm-sequence", "model m {\n input x: f32[3, 2]\n target y: f32[3, 4]\n x -> lstm(4, sequence = true)\n}\n"
                      "loss mse\n", 2},
    {"concat-product", "model m {\n input x: f32[3]\n target y: f32[4]\n"
                       " param a: f32[3, 5] = uniform(-1, 1)\n param wx: f32[4, 3] = uniform(-1, 1)\n"
                       " param wh: f32[4, 5] = uniform(-1, 1)\n param wa: f32[4, 5] = uniform(-1, 1)\n"
                       " param wb: f32[4, 5] = uniform(-1, 1)\n h = (x @ a) -> tanh\n"
                       " w = concat(wx, wh, axis = 1)\n w2 = concat(wa, wb, axis = 0)\n"
                       " concat(x, h, axis = 1) @ transpose(w) + (h @ transpose(w2))[:, 0:4] +\n"
                       "   ((h * 2) @ transpose(w2))[:, 2:6]\n}\nloss mse\n", 3},
    {"gru", "model m {\n input x: f32[4, 3]\n target y: class(3)\n x -> gru(5) -> linear(3)\n}\n"
            "loss cross_entropy\n", 3},
    {"gru-sequence", "model m {\n input x: f32[3, 2]\n target y: f32[3, 4]\n x -> gru(4, sequence = true)\n}\n"
                     "loss mse\n", 2},
};

static Rng dropout_rng;   // restored before each run: every run draws the same masks

static double loss_at(Exec *ex, int64_t B, const float *x, const void *y) {
  *exec_rng(ex) = dropout_rng;
  return exec_run(ex, ENTRY_TRAIN, B, x, y, 0.0);   // lr 0: the update leaves the parameters as they are
}

static void check_case(const Case *c) {
  Arena *a = arena_new();
  Diag d;
  diag_init(&d, stderr);
  SrcFile f = {c->name, c->src, strlen(c->src)};
  Program *p = fe_parse(&f, a, &d);
  Model *m = p && !d.nerrors ? pass_lower(p, a, &d) : NULL;
  if (!m || !pass_autodiff(m, &d)) {
    FAIL("%s: the model does not compile\n", c->name);
    goto done;
  }
  int64_t B = c->batch;
  ExecOptions eo = {.max_batch = B};
  Exec *ex = exec_new("ref", m, &eo, NULL, 0);
  exec_init_params(ex, 5);
  dropout_rng = *exec_rng(ex);
  Rng r;
  rng_seed(&r, 11, 1);
  int64_t nx = exec_sample_dim(m) * B, ny = exec_target_dim(m) * B;
  float *x = xmalloc(sizeof(float) * nx);
  for (int64_t i = 0; i < nx; i++)
    x[i] = (float)(rng_uniform(&r) * 2 - 1);
  t_fill_indexes(m, x, B, &r, 0);
  void *y = xmalloc(4 * (ny ? ny : 1));
  t_fill_targets(m, y, B, &r, 0, 1);
  loss_at(ex, B, x, y);
  int checked = 0, bad = 0;
  for (int pi = 0; pi < m->nparams; pi++) {
    const IrNode *pn = m->params[pi];
    int si = exec_find_state(ex, pn->name);
    int64_t n = ir_numel(pn, 1);
    float *pv = xmalloc(sizeof(float) * n);
    exec_read_state(ex, si, pv);
    loss_at(ex, B, x, y);
    float *grad = xmalloc(sizeof(float) * n);
    CHECK(exec_read_value(ex, m->grads[pi], grad), "%s: no gradient of %s", c->name, pn->name);
    for (int64_t i = 0; i < n && i < 40; i++) {
      float old = pv[i];
      float h = 1e-2f * fmaxf(fabsf(old), 0.1f);
      pv[i] = old + h;
      exec_write_state(ex, si, pv);
      double lp = loss_at(ex, B, x, y);
      pv[i] = old - h;
      exec_write_state(ex, si, pv);
      double lm = loss_at(ex, B, x, y);
      pv[i] = old;
      exec_write_state(ex, si, pv);
      double fd = (lp - lm) / (2.0 * h), an = grad[i];
      checked++;
      if (fabs(fd - an) > 0.02 * fmax(fabs(fd), fabs(an)) + 2e-3) {
        if (bad < 5)
          printf("  %s: d loss / d %s[%lld]: autodiff %.6g, central difference %.6g\n", c->name,
                 pn->name, (long long)i, an, fd);
        bad++;
      }
    }
    free(grad);
    free(pv);
  }
  printf("%s: %d gradient elements of %d parameters checked\n", c->name, checked, m->nparams);
  CHECK(bad == 0, "%s: %d gradient elements off", c->name, bad);
  free(x);
  free(y);
  exec_free(ex);
done:
  diag_free(&d);
  arena_free(a);
}

int main(void) {
  for (int i = 0; i < countof(cases); i++)
    check_case(&cases[i]);
  return t_finish("gradcheck");
}
