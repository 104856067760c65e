#!/usr/bin/env python3
"""PyTorch twins of the models in models/, trained the way `nnc train` trains
them, for comparing test accuracy (and time) on the same machine and data.

  bench/pytorch_train.py MODEL [--epochs E] [--seeds 1,2,3] [--threads T]

MODEL is logreg, mlp100, mlp, cnn, lenet5, vit, lstm, autoencoder or denoise. Data: the IDX.gz files of Debian's
dataset-fashion-mnist package, scaled to [0, 1] (ToTensor), no normalization.
Settings: the model file's (batch, optimizer, lr, momentum), shuffled each
epoch, PyTorch's default initialization. Prints one line per seed and a
summary line: mean, min and max test accuracy; for the autoencoders (trained
with MSE against the clean image; denoise on inputs with Gaussian noise of
std 0.3 added), the test MSE instead.
"""
import argparse
import gzip
import struct
import time

import numpy as np
import torch
import torch.nn as nn

import torch_models  # bench/, beside this script

DATA = "/usr/share/datasets/fashion-mnist"

# name: (batch, optimizer, lr, momentum, loss, input noise std)
SETTINGS = {
    "logreg": (64, "sgd", 0.1, 0.0, "ce", 0),
    "mlp100": (32, "sgd", 0.1, 0.0, "ce", 0),
    "mlp": (64, "sgd", 0.05, 0.9, "ce", 0),
    "cnn": (64, "sgd", 0.05, 0.9, "nll", 0),
    "lenet5": (64, "sgd", 0.05, 0.9, "ce", 0),
    "vit": (64, "adam", 1e-3, 0.0, "ce", 0),
    "lstm": (64, "adam", 1e-3, 0.0, "ce", 0),
    "autoencoder": (64, "adam", 1e-3, 0.0, "mse", 0),
    "denoise": (64, "adam", 1e-3, 0.0, "mse", 0.3),
}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    x = read_idx(f"{DATA}/{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx(f"{DATA}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def build(name):
    if name == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    if name == "mlp100":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                             nn.Linear(100, 10))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                             nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(),
                             nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10), nn.LogSoftmax(dim=1))
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    if name in torch_models.CLASSES:
        return torch_models.build(name)
    raise SystemExit(f"unknown model {name}")


def run(name, epochs, seed, train, test):
    batch, opt_name, lr, momentum, loss_kind, noise = SETTINGS[name]
    torch.manual_seed(seed)
    model = build(name)
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = {"nll": nn.NLLLoss(), "ce": nn.CrossEntropyLoss(), "mse": nn.MSELoss()}[loss_kind]
    x, y = train
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            if loss_kind == "mse":
                clean = x[idx]
                noisy = clean + noise * torch.randn(clean.shape, generator=g) if noise else clean
                loss = loss_fn(model(noisy), clean)
            else:
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    tx, ty = test
    with torch.no_grad():
        if loss_kind == "mse":
            # the test MSE of the reconstruction, from clean test images
            total = sum(((model(tx[i:i + 1000]) - tx[i:i + 1000]) ** 2).sum().item() for i in range(0, len(tx), 1000))
            return total / tx.numel(), seconds
        correct = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item()
                      for i in range(0, len(tx), 1000))
    return correct / len(tx), seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(SETTINGS))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load("train"), load("t10k")
    accs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        acc, secs = run(args.model, args.epochs, seed, train, test)
        accs.append(acc)
        metric = "test mse" if SETTINGS[args.model][4] == "mse" else "test accuracy"
        print(f"pytorch {args.model} epochs {args.epochs} seed {seed}: {metric} {acc:.6g} ({secs:.1f} s)",
              flush=True)
    print(f"pytorch {args.model} epochs {args.epochs}: mean {np.mean(accs):.6g} min {min(accs):.6g} "
          f"max {max(accs):.6g} over {len(accs)} seeds (torch {torch.__version__}, {args.threads} threads)")


if __name__ == "__main__":
    main()
