#!/usr/bin/env python3
"""PyTorch's values for tests/cpu/test_act.c: each activation at a dozen
points, the kinks among them, forward and gradient.

For each case, p = zeros(12) is a parameter and the model is
y = ACT(x + p), loss = mse_loss(y, -1): the test reads y and p's gradient,
2 (y + 1) / 12 * ACT'(x), from nnc's training step. Prints the C table that
test_act.c holds; run by hand:

    /opt/torchenv/bin/python tests/torch/make_act_values.py
"""
import torch
import torch.nn.functional as F

X = [-25.0, -3.0, -1.0, -0.5, -0.2, 0.0, 0.1, 0.3, 0.5, 1.0, 3.0, 25.0]

# (the nnc call on h, the same in PyTorch)
CASES = [
    ("gelu(h)", lambda h: F.gelu(h)),
    ("gelu(h, tanh = true)", lambda h: F.gelu(h, approximate="tanh")),
    ("leaky_relu(h)", lambda h: F.leaky_relu(h)),
    ("leaky_relu(h, slope = -0.3)", lambda h: F.leaky_relu(h, -0.3)),
    ("silu(h)", lambda h: F.silu(h)),
    ("elu(h)", lambda h: F.elu(h)),
    ("elu(h, alpha = 0.5)", lambda h: F.elu(h, 0.5)),
    ("softplus(h)", lambda h: F.softplus(h)),
    ("softplus(h, beta = 2, threshold = 1)", lambda h: F.softplus(h, 2, 1)),
    ("sqrt(h + 25)", lambda h: torch.sqrt(h + 25)),
    ("abs(h)", lambda h: torch.abs(h)),
    ("clamp(h, -0.5, 0.5)", lambda h: torch.clamp(h, -0.5, 0.5)),
    ("clamp(h, min = 0.1)", lambda h: torch.clamp(h, min=0.1)),
    ("clamp(h, max = 0.3)", lambda h: torch.clamp(h, max=0.3)),
]


def c_float(v):
    if v != v:
        return "NAN"
    if v in (float("inf"), float("-inf")):
        return "INFINITY" if v > 0 else "-INFINITY"
    return "%.9g" % v


def main():
    torch.set_num_threads(1)
    x = torch.tensor(X, dtype=torch.float32)
    print("// made by tests/torch/make_act_values.py (torch %s)" % torch.__version__)
    for call, fn in CASES:
        p = torch.zeros(len(X), requires_grad=True)
        y = fn(x + p)
        F.mse_loss(y, torch.full_like(y, -1.0)).backward()
        print('    {"%s",' % call)
        print("     {%s}," % ", ".join(c_float(v) for v in y.tolist()))
        print("     {%s}}," % ", ".join(c_float(v) for v in p.grad.tolist()))


if __name__ == "__main__":
    main()
