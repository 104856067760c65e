#!/usr/bin/env python3
"""Reference numbers from PyTorch for nnc's agreement-with-PyTorch test.

For each of the models mlp, cnn, resnet18, quadratic, lenet5, lstm, gru, vit,
autoencoder and denoise (as defined in models/*.nn) this script builds the
same network in PyTorch (the last three: their twins in bench/torch_models.py,
with nnc's parameter names), fills its weights
and its input batch from a small deterministic generator that a C program can
reproduce bit for bit, and writes tests/torch/ref/NAME.safetensors with:

  input, target          the batch (float32 input, int32 class labels or
                         float32 regression targets; autoencoders have no
                         target: the loss compares the output with the input)
  noise                  denoise: the gaussian_noise layer's draws, [3, batch,
                         1, 28, 28], one per step (see make_noise)
  loss                   the loss of the initial model on the batch
  grad.P                 d loss / d P for every trainable parameter P
  OPT.loss               the loss before each of 3 optimizer steps
  OPT.P                  every parameter and buffer after the 3rd step

for OPT in sgd, sgd_nesterov, adam, adamw, and but for resnet18 rmsprop,
rmsprop_centered, adagrad, sgd_clip. Tensors with more than 16384
elements are stored sampled (see README.md). Nothing here is needed to build
or test nnc; run it by hand and commit the files it writes:

    /opt/torchenv/bin/python tests/torch/make_reference.py
"""

import copy
import json
import math
import re
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "ref")
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import torch_models  # noqa: E402  (bench/torch_models.py: the PyTorch twins)

WHOLE_LIMIT = 16384        # tensors with more elements are stored sampled
SAMPLES = 2048             # sampled elements per large tensor
SAMPLE_MULT = 2654435761   # idx_k = (k * SAMPLE_MULT) mod numel
STEPS = 3                  # optimizer steps per config

# resnet18 uses 8, not 2: its last stage works on 1x1 maps, where batchnorm
# with 2 samples per channel normalizes a single difference x1 - x2 and turns
# its rounding into O(1) changes (float32 and float64 gradients then differ
# by about 1%, and 3 optimizer steps by 100%).
BATCH = {"mlp": 8, "cnn": 4, "resnet18": 8, "quadratic": 16, "lenet5": 4, "lstm": 8, "gru": 8,
         "vit": 4, "autoencoder": 4, "denoise": 4}
# sgd_clip's max_norm: 0.05, but where the gradients' global norm is not
# well above that (train_steps asserts more than twice, at every step). The
# autoencoders' norms at the initial weights: 0.0103 (autoencoder) and 0.023
# (denoise); with 0.05 their clipping would never act.
CLIP_NORM = {"autoencoder": 0.002, "denoise": 0.002}
EXPECTED_PARAMS = {"mlp": 669706, "cnn": 225034, "resnet18": 11175434,
                   "quadratic": 3, "lenet5": 61706, "lstm": 82186, "gru": 14922,
                   "vit": 139018, "autoencoder": 9569, "denoise": 19105}
ALL_MODELS = ["mlp", "cnn", "resnet18", "quadratic", "lenet5", "lstm", "gru",
              "vit", "autoencoder", "denoise"]
AUTOENCODERS = ("autoencoder", "denoise")   # target: the input itself

# ---------------------------------------------------------------------------
# The deterministic generator
# ---------------------------------------------------------------------------

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
LCG_A = 1664525
LCG_C = 1013904223
MASK32 = 0xFFFFFFFF

GENERATOR_TEXT = (
    "per tensor: state = FNV-1a 32-bit hash of the tensor name's bytes "
    "(offset 2166136261, prime 16777619); for each element in row-major order: "
    "state = (state * 1664525 + 1013904223) mod 2^32, u = (state >> 8) / 16777216.0, "
    "value = (float32)(lo + (hi - lo) * u) computed in double. "
    "linear/conv weight and bias: lo = -1/sqrt(fan_in), hi = +1/sqrt(fan_in) "
    "(fan_in = in_features or C*KH*KW); batchnorm weight 1, bias 0, running_mean 0, "
    "running_var 1; layernorm weight 1, bias 0; conv_transpose2d weight and bias: fan_in = "
    "the weight's dimension 1 (out_channels) * KH*KW (PyTorch's); vit cls and pos (nnc: "
    "normal(0, 0.02)): lo = -0.02*sqrt(3), hi = +0.02*sqrt(3); "
    "quadratic a, b, c: lo = -1, hi = 1; tensor 'input': images lo = 0, "
    "hi = 1 (quadratic t: lo = -2, hi = 2); class label k = (7*k + 3) mod 10; "
    "quadratic speed_k = (2*(t_k*t_k) - 3*t_k) + 0.5 in float32"
)


def fnv1a32(name):
    h = FNV_OFFSET
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * FNV_PRIME) & MASK32
    return h


class _LcgTables:
    """A^(i+1) and sum_{j<=i} A^j (mod 2^64, of which the low 32 bits are
    what matter), so that the state after i+1 steps from seed s is
    A^(i+1)*s + C*sum_{j<=i} A^j  (mod 2^32)."""

    def __init__(self):
        self.n = 0
        self.apow = None
        self.gsum = None

    def get(self, n):
        if n > self.n:
            m = max(n, 1 << 16)
            with np.errstate(over="ignore"):
                apow = np.cumprod(np.full(m, LCG_A, dtype=np.uint64), dtype=np.uint64)
                geo = np.empty(m, dtype=np.uint64)
                geo[0] = 1
                geo[1:] = apow[:-1]
                gsum = np.cumsum(geo, dtype=np.uint64)
            self.n, self.apow, self.gsum = m, apow, gsum
        return self.apow[:n], self.gsum[:n]


_TABLES = _LcgTables()


def lcg_states(name, n):
    """The n successive states (uint32, as uint64) of the generator for name."""
    apow, gsum = _TABLES.get(n)
    with np.errstate(over="ignore"):
        s = apow * np.uint64(fnv1a32(name)) + np.uint64(LCG_C) * gsum
    return s & np.uint64(MASK32)


def lcg_states_scalar(name, n):
    """The same states, one at a time: the definition, used to check the
    vectorized version."""
    state = fnv1a32(name)
    out = []
    for _ in range(n):
        state = (state * LCG_A + LCG_C) & MASK32
        out.append(state)
    return out


def uniform_values(name, n, lo, hi):
    """float32 numpy array: (float32)(lo + (hi - lo) * u_i), in double."""
    u = (lcg_states(name, n) >> np.uint64(8)).astype(np.float64) / 16777216.0
    lo = float(lo)
    hi = float(hi)
    return (lo + (hi - lo) * u).astype(np.float32)


def uniform_tensor(name, shape, lo, hi):
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return torch.from_numpy(uniform_values(name, n, lo, hi).reshape(shape))


def check_generator():
    """The vectorized generator against its definition."""
    for name, n in (("input", 10000), ("linear_1.weight", 5000), ("a", 3),
                    ("down_3.conv2d_1.weight", 3000)):
        vec = lcg_states(name, n).tolist()
        ref = lcg_states_scalar(name, n)
        assert vec == ref, "vectorized generator differs for " + name
    # the far end of the largest tensor (2,359,296 elements)
    name, n = "basic_5.conv2d_2.weight", 512 * 512 * 9
    state = fnv1a32(name)
    for _ in range(n):
        state = (state * LCG_A + LCG_C) & MASK32
    assert int(lcg_states(name, n)[-1]) == state, "vectorized generator differs at the end"


def print_generator_examples():
    print("generator examples (name, FNV-1a seed, first states, first values):")
    for name, lo, hi, n in (("input", 0.0, 1.0, 6),
                            ("linear_1.weight", -1 / math.sqrt(784), 1 / math.sqrt(784), 4),
                            ("a", -1.0, 1.0, 1)):
        states = lcg_states_scalar(name, n)
        vals = uniform_values(name, n, lo, hi)
        print("  %s: seed %u (0x%08x)" % (name, fnv1a32(name), fnv1a32(name)))
        for i in range(n):
            bits = struct.unpack("<I", struct.pack("<f", vals[i]))[0]
            print("    [%d] state %10u  u %.17g  value %.9g (0x%08x)"
                  % (i, states[i], (states[i] >> 8) / 16777216.0, vals[i], bits))
    t, speed = make_batch("quadratic")
    print("  quadratic: t[0..2] = %s, speed[0..2] = %s"
          % (", ".join("%.9g" % v for v in t[:3].tolist()),
             ", ".join("%.9g" % v for v in speed[:3].tolist())))
    print("  class labels (batch 8): %s" % ", ".join(str((7 * k + 3) % 10) for k in range(8)))


# ---------------------------------------------------------------------------
# The models, named as nnc names them
# ---------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_1 = nn.Linear(784, 512)
        self.linear_2 = nn.Linear(512, 512)
        self.linear_3 = nn.Linear(512, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.linear_1(x))
        x = F.relu(self.linear_2(x))
        return self.linear_3(x)


class CNN(nn.Module):
    """models/cnn.nn with its two dropout layers replaced by the identity."""

    def __init__(self):
        super().__init__()
        self.conv2d_1 = nn.Conv2d(1, 32, 3)
        self.dropout_1 = nn.Identity()      # dropout(0.25), disabled
        self.conv2d_2 = nn.Conv2d(32, 64, 3)
        self.dropout_2 = nn.Identity()      # dropout(0.5), disabled
        self.linear_1 = nn.Linear(1600, 128)
        self.linear_2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.dropout_1(F.max_pool2d(F.relu(self.conv2d_1(x)), 2))
        x = self.dropout_2(F.max_pool2d(F.relu(self.conv2d_2(x)), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.linear_1(x))
        return F.log_softmax(self.linear_2(x), dim=1)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class Basic(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv2d_1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.batchnorm_1 = _bn(c)
        self.conv2d_2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.batchnorm_2 = _bn(c)

    def forward(self, x):
        h = F.relu(self.batchnorm_1(self.conv2d_1(x)))
        h = self.batchnorm_2(self.conv2d_2(h))
        return F.relu(h + x)


class Down(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.conv2d_1 = nn.Conv2d(cin, c, 3, stride=2, padding=1, bias=False)
        self.batchnorm_1 = _bn(c)
        self.conv2d_2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.batchnorm_2 = _bn(c)
        self.conv2d_3 = nn.Conv2d(cin, c, 1, stride=2, bias=False)
        self.batchnorm_3 = _bn(c)

    def forward(self, x):
        h = F.relu(self.batchnorm_1(self.conv2d_1(x)))
        h = self.batchnorm_2(self.conv2d_2(h))
        s = self.batchnorm_3(self.conv2d_3(x))
        return F.relu(h + s)


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d_1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=True)
        self.batchnorm_1 = _bn(64)
        self.basic_1 = Basic(64)
        self.basic_2 = Basic(64)
        self.down_1 = Down(64, 128)
        self.basic_3 = Basic(128)
        self.down_2 = Down(128, 256)
        self.basic_4 = Basic(256)
        self.down_3 = Down(256, 512)
        self.basic_5 = Basic(512)
        self.linear_1 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.relu(self.batchnorm_1(self.conv2d_1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for block in (self.basic_1, self.basic_2, self.down_1, self.basic_3,
                      self.down_2, self.basic_4, self.down_3, self.basic_5):
            x = block(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.linear_1(x)


class Quadratic(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))
        self.c = nn.Parameter(torch.zeros(()))

    def forward(self, t):
        return self.a * t * t + self.b * t + self.c


class LeNet5(nn.Module):
    """models/lenet5.nn: the classic tutorial's LeNet-5 for 28x28 images."""

    def __init__(self):
        super().__init__()
        self.conv2d_1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2d_2 = nn.Conv2d(6, 16, 5)
        self.linear_1 = nn.Linear(400, 120)
        self.linear_2 = nn.Linear(120, 84)
        self.linear_3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.conv2d_1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.conv2d_2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.tanh(self.linear_1(x))
        x = torch.tanh(self.linear_2(x))
        return self.linear_3(x)


class LSTMNet(nn.Module):
    """models/lstm.nn: the image's rows as 28 steps, the last hidden state."""

    def __init__(self):
        super().__init__()
        self.lstm_1 = nn.LSTM(28, 128, batch_first=True)
        self.linear_1 = nn.Linear(128, 10)

    def forward(self, x):
        _, (h, _) = self.lstm_1(x)
        return self.linear_1(h[-1])


class GRUNet(nn.Module):
    """models/gru.nn: every step's hidden state, flattened."""

    def __init__(self):
        super().__init__()
        self.gru_1 = nn.GRU(28, 32, batch_first=True)
        self.linear_1 = nn.Linear(28 * 32, 10)

    def forward(self, x):
        out, _ = self.gru_1(x)
        return self.linear_1(torch.flatten(out, 1))


def vit_name(name):
    """bench/torch_models.py's ViT names as models/vit.nn's."""
    for old, new in (("patch.", "conv2d_1."), ("ln.", "layernorm_1."), ("head.", "linear_1.")):
        if name.startswith(old):
            return new + name[len(old):]
    if name.startswith("layers."):
        _, i, rest = name.split(".", 2)
        for old, new in (("ln1.", "layernorm_1."), ("attn.qkv.", "attention_1.linear_1."),
                         ("attn.proj.", "attention_1.linear_2."), ("ln2.", "layernorm_2."),
                         ("fc1.", "linear_1."), ("fc2.", "linear_2.")):
            if rest.startswith(old):
                return "encoder_%d.%s%s" % (int(i) + 1, new, rest[len(old):])
        raise KeyError(name)
    assert name in ("cls", "pos"), name
    return name


def sequential_name(layers):
    """Names of a twin made of nn.Sequential enc and dec: layers maps
    'enc.0' and so on to nnc's layer names."""
    def rename(name):
        mod, pname = name.rsplit(".", 1)
        return layers[mod] + "." + pname
    return rename


# The twins of bench/torch_models.py: their names as nnc's, and the shapes
# nnc gives the tensors whose shapes differ (vit's cls [1, 1, 64] is [1, 64]).
TWIN_NAMES = {
    torch_models.ViT: vit_name,
    torch_models.AutoEncoder: sequential_name({"enc.0": "conv2d_1", "enc.2": "conv2d_2",
                                               "dec.0": "conv_transpose2d_1",
                                               "dec.2": "conv_transpose2d_2"}),
    torch_models.Denoise: sequential_name({"enc.0": "conv2d_1", "enc.3": "conv2d_2",
                                           "dec.1": "conv2d_3", "dec.4": "conv2d_4"}),
}
TWIN_SHAPES = {(torch_models.ViT, "cls"): (1, 64), (torch_models.ViT, "pos"): (17, 64)}
NORMAL_STD = {(torch_models.ViT, "cls"): 0.02, (torch_models.ViT, "pos"): 0.02}

# denoise's gaussian_noise(0.3): nnc's draws, reproduced (see make_noise).
NOISE_STD = 0.3
NOISE_SEED = 0
NOISE_STREAM = 0x64726F70   # "drop", the stream of nnc's dropout and noise generator


def nnc_name(name, model=None):
    """PyTorch's name of a parameter as nnc names it: one recurrent layer
    has no _l0; a twin's names are mapped as TWIN_NAMES says."""
    rename = TWIN_NAMES.get(type(model))
    return rename(name) if rename else name.replace("_l0", "")


def nnc_tensor(model, name, t):
    """t (the tensor PyTorch names name) in nnc's shape."""
    shape = TWIN_SHAPES.get((type(model), name))
    return t.reshape(shape) if shape else t


MODELS = {
    "mlp": (MLP, lambda out, y: F.cross_entropy(out, y)),
    "cnn": (CNN, lambda out, y: F.nll_loss(out, y)),
    "resnet18": (ResNet18, lambda out, y: F.cross_entropy(out, y)),
    "quadratic": (Quadratic, lambda out, y: F.mse_loss(out, y)),
    "lenet5": (LeNet5, lambda out, y: F.cross_entropy(out, y)),
    "lstm": (LSTMNet, lambda out, y: F.cross_entropy(out, y)),
    "gru": (GRUNet, lambda out, y: F.cross_entropy(out, y)),
    "vit": (torch_models.ViT, lambda out, y: F.cross_entropy(out, y)),
    "autoencoder": (torch_models.AutoEncoder, lambda out, y: F.mse_loss(out, y)),
    "denoise": (torch_models.Denoise, lambda out, y: F.mse_loss(out, y)),
}


def init_model(model):
    """Fill every parameter and buffer as described in GENERATOR_TEXT."""
    with torch.no_grad():
        for prefix, mod in model.named_modules():
            pre = prefix + "." if prefix else ""
            if isinstance(mod, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                if isinstance(mod, nn.Linear):
                    fan_in = mod.in_features
                else:
                    # Conv2d [out, in, KH, KW], ConvTranspose2d [in, out, KH, KW]:
                    # PyTorch's fan_in is dimension 1 times KH*KW for both
                    assert mod.groups == 1
                    fan_in = mod.weight.shape[1] * mod.kernel_size[0] * mod.kernel_size[1]
                bound = 1.0 / math.sqrt(fan_in)
                for pname in ("weight", "bias"):
                    p = getattr(mod, pname)
                    if p is not None:
                        p.copy_(uniform_tensor(nnc_name(pre + pname, model), tuple(p.shape),
                                               -bound, bound))
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.fill_(1.0)
                mod.bias.fill_(0.0)
            elif isinstance(mod, (nn.LSTM, nn.GRU)):
                bound = 1.0 / math.sqrt(mod.hidden_size)
                for pname, p in mod.named_parameters(recurse=False):
                    p.copy_(uniform_tensor(pre + nnc_name(pname), tuple(p.shape), -bound, bound))
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.bias.fill_(0.0)
                mod.running_mean.fill_(0.0)
                mod.running_var.fill_(1.0)
                mod.num_batches_tracked.zero_()
            elif isinstance(mod, Quadratic):
                for pname in ("a", "b", "c"):
                    getattr(mod, pname).copy_(uniform_tensor(pname, (), -1.0, 1.0))
            for pname, p in mod.named_parameters(recurse=False):
                std = NORMAL_STD.get((type(model), pre + pname))
                if std is not None:   # nnc's normal(0, std): uniform of the same std
                    bound = std * math.sqrt(3.0)
                    p.copy_(uniform_tensor(nnc_name(pre + pname, model), tuple(p.shape),
                                           -bound, bound))
    return model


def build(name):
    cls, _ = MODELS[name]
    model = init_model(cls())
    model.train()
    return model


def named_buffers(model):
    """nnc's buffers: batchnorm running statistics (not num_batches_tracked)."""
    return [(n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")]


def make_batch(name):
    """The input batch and the target: class labels, quadratic's speed, or
    for an autoencoder the input itself."""
    b = BATCH[name]
    if name == "quadratic":
        t = uniform_tensor("input", (b,), -2.0, 2.0)
        two = torch.tensor(2.0, dtype=torch.float32)
        three = torch.tensor(3.0, dtype=torch.float32)
        half = torch.tensor(0.5, dtype=torch.float32)
        speed = (two * (t * t) - three * t) + half
        return t, speed
    shape = (b, 28, 28) if name in ("mlp", "lstm", "gru") else (b, 1, 28, 28)
    x = uniform_tensor("input", shape, 0.0, 1.0)
    if name in AUTOENCODERS:
        return x, x
    y = torch.tensor([(7 * k + 3) % 10 for k in range(b)], dtype=torch.int64)
    return x, y


# nnc's gaussian_noise, reproduced: its generator (PCG32, util/rng.c) seeded
# with rng_seed(NOISE_SEED, NOISE_STREAM) draws one 64-bit key per training
# step (two outputs, the first the high half); element i of the batch gets
# std * sqrtf(-2 logf(u1)) * cosf(6.2831853f u2), u1 = (h(2i) + 1) / 2^24,
# u2 = h(2i + 1) / 2^24, h(j) the top 24 bits of splitmix64's output function
# at key + (j + 1) * 0x9e3779b97f4a7c15 (runtime/kernels_train.c). Every step
# is float32 as there, logf and cosf computed in double and rounded (glibc's
# may differ by an ulp: the C test counts such elements).

M64 = (1 << 64) - 1


def pcg_u32(rng):
    old = rng[0]
    rng[0] = (old * 6364136223846793005 + rng[1]) & M64
    xorshifted = (((old >> 18) ^ old) >> 27) & MASK32
    rot = old >> 59
    return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & MASK32


def pcg_seed(seed, stream):
    rng = [0, ((stream << 1) | 1) & M64]
    pcg_u32(rng)
    rng[0] = (rng[0] + seed) & M64
    pcg_u32(rng)
    return rng


def splitmix_top24(key, n):
    """h(j) for j = 0..n-1: the top 24 bits of splitmix64's output function."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(40)


def make_noise(shape):
    """The keys [STEPS] and what nnc adds to the input at each step,
    std * normal, float32 [STEPS, *shape]."""
    rng = pcg_seed(NOISE_SEED, NOISE_STREAM)
    n = int(np.prod(shape))
    keys, noise = [], []
    f = np.float32
    for _ in range(STEPS):
        hi = pcg_u32(rng)
        key = (hi << 32) | pcg_u32(rng)
        h = splitmix_top24(key, 2 * n)
        u1 = (h[0::2] + np.uint64(1)).astype(f) * f(1.0 / 16777216.0)
        u2 = h[1::2].astype(f) * f(1.0 / 16777216.0)
        logu = np.log(u1.astype(np.float64)).astype(f)
        r = np.sqrt(f(-2.0) * logu)
        c = np.cos((f(6.2831853) * u2).astype(np.float64)).astype(f)
        noise.append((f(NOISE_STD) * (r * c)).reshape(shape))
        keys.append(key)
    return np.array(keys, dtype=np.uint64).view(np.int64), torch.from_numpy(np.stack(noise))


# ---------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------


def optimizer_configs(name):
    sgd_lr = 0.01 if name == "quadratic" else 0.05
    # RMSprop and Adagrad divide by a root of the squared gradients, which
    # makes resnet18's float32 rounding O(1) after three steps (as Adam's
    # on its conv2d_1.bias): the smaller models only.
    adaptive = [] if name == "resnet18" else [
        ("rmsprop", "RMSprop(lr=1e-3)",
         lambda ps: torch.optim.RMSprop(ps, lr=1e-3)),
        ("rmsprop_centered", "RMSprop(lr=1e-3, alpha=0.9, momentum=0.9, centered=True, weight_decay=1e-4)",
         lambda ps: torch.optim.RMSprop(ps, lr=1e-3, alpha=0.9, momentum=0.9, centered=True,
                                        weight_decay=1e-4)),
        ("adagrad", "Adagrad(lr=0.01, lr_decay=0.1, weight_decay=1e-4, initial_accumulator_value=0.1)",
         lambda ps: torch.optim.Adagrad(ps, lr=0.01, lr_decay=0.1, weight_decay=1e-4,
                                        initial_accumulator_value=0.1)),
    ]
    # Gradient clipping by the global norm, the norm well above max_norm at
    # every step (the smaller models only, as the adaptive ones).
    clipped = [] if name == "resnet18" else [
        ("sgd_clip", "SGD(lr=%g, momentum=0.9, weight_decay=1e-4) with clip_grad_norm_(max_norm=%g)"
         % (sgd_lr, CLIP_NORM.get(name, 0.05)),
         lambda ps: torch.optim.SGD(ps, lr=sgd_lr, momentum=0.9, weight_decay=1e-4)),
    ]
    return [
        ("sgd", "SGD(lr=%g, momentum=0.9)" % sgd_lr,
         lambda ps: torch.optim.SGD(ps, lr=sgd_lr, momentum=0.9)),
        ("sgd_nesterov", "SGD(lr=%g, momentum=0.9, nesterov=True, weight_decay=1e-4)" % sgd_lr,
         lambda ps: torch.optim.SGD(ps, lr=sgd_lr, momentum=0.9, nesterov=True,
                                    weight_decay=1e-4)),
        ("adam", "Adam(lr=1e-3)",
         lambda ps: torch.optim.Adam(ps, lr=1e-3)),
        ("adamw", "AdamW(lr=1e-3, weight_decay=0.01)",
         lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)),
    ] + adaptive + clipped


# torch.nn.utils.clip_grad_norm_ between backward and step: an optimizer
# config whose text says "with clip_grad_norm_(max_norm=M)" clips to M.
def clip_norm_of(text):
    m = re.search(r"with clip_grad_norm_\(max_norm=([0-9.e-]+)\)", text)
    return float(m.group(1)) if m else None


def loss_and_grads(model, loss_fn, x, y):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    grads = {nnc_name(n, model): nnc_tensor(model, n, p.grad.detach().clone())
             for n, p in model.named_parameters()}
    return loss.detach().clone(), grads


def train_steps(model, loss_fn, make_opt, xs, y, clip=None):
    """STEPS steps, step k on the batch xs[k] (denoise: the noisy inputs)."""
    opt = make_opt(model.parameters())
    losses = []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[step]), y)
        losses.append(loss.detach().clone())
        loss.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            assert norm.item() > 2 * clip, ("clipping must act", norm.item(), clip)
        opt.step()
    state = {nnc_name(n, model): nnc_tensor(model, n, p.detach().clone())
             for n, p in model.named_parameters()}
    state.update({n: b.detach().clone() for n, b in named_buffers(model)})
    return torch.stack(losses), state


# ---------------------------------------------------------------------------
# safetensors, written and read by hand
# ---------------------------------------------------------------------------

DTYPES = {"F32": (np.float32, 4), "F64": (np.float64, 8),
          "I32": (np.int32, 4), "I64": (np.int64, 8)}


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype code, numpy array). Data in sorted-name order."""
    header = {"__metadata__": dict(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        code, arr = tensors[name]
        np_dtype, _ = DTYPES[code]
        arr = np.array(arr, dtype=np.dtype(np_dtype).newbyteorder("<"), order="C")
        data = arr.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, "header length not a multiple of 8"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    expect = 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        info = header[name]
        np_dtype, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        assert begin == expect, "tensor data not contiguous at " + name
        count = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        assert end - begin == count * size, "bad size for " + name
        arr = np.frombuffer(raw[base + begin:base + end], dtype=np.dtype(np_dtype).newbyteorder("<"))
        out[name] = (info["dtype"], arr.reshape(info["shape"]))
        expect = end
    assert base + expect == len(raw), "trailing bytes after the data"
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    assert order == sorted(header), "tensors not in sorted-name order"
    return out, metadata


# ---------------------------------------------------------------------------
# Storing (whole or sampled)
# ---------------------------------------------------------------------------


def sample_indices(numel):
    k = np.arange(SAMPLES, dtype=np.int64)
    return (k * np.int64(SAMPLE_MULT)) % np.int64(numel)


def add_tensor(out, name, t):
    """float32 tensor t under name: whole, or sampled with .idx and .stats."""
    arr = t.detach().to(torch.float32).contiguous().numpy()
    if arr.size <= WHOLE_LIMIT:
        out[name] = ("F32", arr.copy())
        return
    flat = arr.reshape(-1)
    idx = sample_indices(flat.size)
    out[name + ".idx"] = ("I64", idx)
    out[name] = ("F32", flat[idx].copy())
    f64 = flat.astype(np.float64)
    out[name + ".stats"] = ("F64", np.array([f64.sum(), (f64 * f64).sum()], dtype=np.float64))


# ---------------------------------------------------------------------------
# float64 cross-check
# ---------------------------------------------------------------------------


def diff(a32, a64):
    """(relative L2, normwise max) differences of a float32 result against
    its float64 counterpart: ||a-b|| / ||b|| and max|a-b| / max|b|."""
    a = a32.detach().to(torch.float64).reshape(-1)
    b = a64.detach().reshape(-1)
    d = a - b
    nb = b.norm().item()
    mb = b.abs().max().item()
    rel = d.norm().item() / nb if nb > 0 else d.norm().item()
    norm = d.abs().max().item() / mb if mb > 0 else d.abs().max().item()
    return rel, norm


def report_worst(label, pairs, skip=()):
    """pairs: name -> (float32 tensor, float64 tensor); prints the worst
    tensors, leaving out the names in skip."""
    rows = [(n,) + diff(a, b) for n, (a, b) in pairs.items() if n not in skip]
    worst_rel = max(rows, key=lambda r: r[1])
    worst_norm = max(rows, key=lambda r: r[2])
    rels = sorted(r[1] for r in rows)
    print("    %-20s rel-L2 max %.1e (%s), median %.1e; max-norm %.1e (%s)"
          % (label, worst_rel[1], worst_rel[0], rels[len(rels) // 2],
             worst_norm[2], worst_norm[0]))


def zero_gradients(grads64):
    """Parameters whose float64 gradient is zero up to rounding: a bias
    followed by batchnorm, whose gradient vanishes analytically."""
    top = max(g.abs().max().item() for g in grads64.values())
    return [n for n, g in grads64.items() if g.abs().max().item() < 1e-9 * top]


# ---------------------------------------------------------------------------


def run_model(name):
    torch.manual_seed(0)  # nothing here is random; fixed anyway
    _, loss_fn = MODELS[name]
    x, y = make_batch(name)
    model = build(name)

    nparams = sum(p.numel() for p in model.parameters())
    assert nparams == EXPECTED_PARAMS[name], (name, nparams)
    print("%s: %d parameters, batch %d" % (name, nparams, BATCH[name]))

    out = {}
    add_tensor(out, "input", x)
    if y.dtype == torch.int64:
        out["target"] = ("I32", y.numpy().astype(np.int32))
    elif name not in AUTOENCODERS:
        add_tensor(out, "target", y)
    # the model's input at each step: denoise's gaussian_noise adds nnc's draws
    xs = [x] * STEPS
    if name == "denoise":
        keys, noise = make_noise(tuple(x.shape))
        out["noise.key"] = ("I64", keys)
        add_tensor(out, "noise", noise)
        xs = [x + noise[k] for k in range(STEPS)]

    loss, grads = loss_and_grads(model, loss_fn, xs[0], y)
    add_tensor(out, "loss", loss)
    for n, g in grads.items():
        add_tensor(out, "grad." + n, g)
    print("  loss %.9g" % loss.item())

    # float64 twin of the initial model, same weights and buffers
    model64 = copy.deepcopy(build(name)).double()
    xs64 = [t.double() for t in xs]
    y64 = y.double() if y.is_floating_point() else y
    loss64, grads64 = loss_and_grads(model64, loss_fn, xs64[0], y64)
    zero = zero_gradients(grads64)
    print("  float32 vs float64 (same weights and batch):")
    print("    %-20s %.1e" % ("loss", abs(loss.item() - loss64.item()) / abs(loss64.item())))
    report_worst("gradients", {n: (grads[n], grads64[n]) for n in grads}, zero)

    configs = optimizer_configs(name)
    for opt_name, text, make_opt in configs:
        clip = clip_norm_of(text)
        losses, state = train_steps(build(name), loss_fn, make_opt, xs, y, clip)
        add_tensor(out, opt_name + ".loss", losses)
        for n, t in state.items():
            add_tensor(out, opt_name + "." + n, t)
        losses64, state64 = train_steps(build(name).double(), loss_fn, make_opt, xs64, y64, clip)
        ldiff = ((losses.double() - losses64).abs() / losses64.abs()).tolist()
        print("    %-20s losses %s" % (opt_name, " ".join("%.1e" % v for v in ldiff)))
        report_worst(opt_name + " after %d" % STEPS,
                     {n: (state[n], state64[n]) for n in state}, zero)
        for n in zero:
            print("    %-20s %s: |float32 - float64| max %.1e (gradient is rounding noise)"
                  % ("", n, (state[n].double() - state64[n]).abs().max().item()))
    for n in zero:
        print("  note: grad.%s is zero analytically; float32 max |g| %.1e, float64 %.1e"
              % (n, grads[n].abs().max().item(), grads64[n].abs().max().item()))

    metadata = {
        "model": name,
        "torch_version": torch.__version__,
        "batch_size": str(BATCH[name]),
        "steps": str(STEPS),
        "optimizers": "; ".join("%s: torch.optim.%s" % (o, text) for o, text, _ in configs),
        "generator": GENERATOR_TEXT,
        "storage": ("tensors with at most %d elements are stored whole; a larger X is "
                    "stored as X.idx (I64, idx_k = (k * %d) mod numel, k = 0..%d), X (F32, "
                    "the values at those flat row-major indices) and X.stats (F64, [sum, "
                    "sum of squares] of the whole tensor in float64)"
                    % (WHOLE_LIMIT, SAMPLE_MULT, SAMPLES - 1)),
        "mode": "train mode; float32; torch.set_num_threads(1); deterministic algorithms",
    }
    if name == "cnn":
        metadata["dropout"] = ("dropout disabled: both Dropout layers replaced by Identity, "
                               "everything else in train mode")
    if name in AUTOENCODERS:
        metadata["target"] = "none: the loss is F.mse_loss(output, input) against the clean input"
    if name == "denoise":
        metadata["noise"] = ("gaussian_noise(%g) on: nnc's draws reproduced, generator seeded "
                             "rng_seed(%d, 0x%x); the input at step k is input + noise[k]"
                             % (NOISE_STD, NOISE_SEED, NOISE_STREAM))
    if name == "resnet18":
        metadata["batchnorm"] = ("BatchNorm2d eps 1e-5 momentum 0.1, train mode (batch "
                                 "statistics, biased variance; running_var updated with the "
                                 "unbiased variance)")

    path = os.path.join(OUT_DIR, name + ".safetensors")
    write_safetensors(path, out, metadata)

    back, meta_back = read_safetensors(path)
    assert meta_back == metadata
    assert sorted(back) == sorted(out)
    for n, (code, arr) in out.items():
        code2, arr2 = back[n]
        assert code == code2 and arr.shape == arr2.shape, n
        assert arr.astype(arr2.dtype).tobytes() == arr2.tobytes(), n
    try:
        from safetensors.numpy import load_file  # only if already installed
    except ImportError:
        load_file = None
    if load_file is not None:
        other = load_file(path)
        for n, (_, arr) in out.items():
            assert np.array_equal(other[n], arr), n
    print("  wrote %s (%d bytes, %d tensors)" % (os.path.relpath(path, os.getcwd()),
                                                 os.path.getsize(path), len(out)))


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    os.makedirs(OUT_DIR, exist_ok=True)

    print("torch %s" % torch.__version__)
    check_generator()
    print_generator_examples()
    names = sys.argv[1:] or ALL_MODELS
    for name in names:
        run_model(name)
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n + ".safetensors")) for n in names)
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
