#!/usr/bin/env python3
"""Speed of PyTorch (eager and torch.compile) on the models of models/, measured
the way bench/compare.sh measures nnc: same machine, data, batch, optimizer
and thread count.

  bench/torch_bench.py [--models mlp,cnn,resnet18,vit,lstm] [--threads 2] [--reps 3]
                       [--frameworks eager,compile] [--only METRIC[,METRIC]] [--quick]

Metrics (each a median over --reps repetitions unless said otherwise):

  train_epoch    mlp, cnn, vit, lstm: one training epoch on the 60,000 Fashion-MNIST
                 training images (batch 64, shuffled, the last batch has 32),
                 samples/s. The data is in memory as tensors; each epoch slices
                 its batches from a fresh permutation. The repetitions are
                 consecutive epochs of one model. torch.compile is warmed up
                 first (a step at batch 64 and one at the last batch's size);
                 that time is reported as compile_first_step.
  resnet18_step  resnet18: seconds per training step at batch 64 (Adam), after
                 3 warm-up steps: value is the median over the repetitions of
                 the mean step time of a block of 10 steps (the form in which
                 nnc's epoch timing can be compared), step_median the median
                 of all single steps.
  infer_1000     mlp, cnn, vit, lstm: inference on the 10,000 test images at batch 1000,
                 model.eval() and torch.no_grad(), samples/s.
  latency_1      mlp, cnn: inference at batch 1, microseconds per call: value
                 is the median over all calls (--reps blocks of 1000 calls on
                 different test images), block_mean the median over the blocks
                 of the mean call time.
  first_step     mlp, cnn, resnet18: a fresh process (import torch, read the
                 training and test sets, build the model and optimizer,
                 torch.compile if asked, one training step at batch 64):
                 seconds from the process start to the end of the first step;
                 from_model is from the model's construction, to_exit the
                 whole process after it also saves a checkpoint and evaluates
                 one test sample (the work of `nnc train --limit 64
                 --test-limit 1`). torch.compile starts with an empty cache.
  peak_rss       mlp: peak resident memory (ru_maxrss of the child, KiB) of a
                 fresh process that reads the data and trains one epoch.

Output: one JSON object per measurement on stdout, a table on stderr.
--quick: a smoke run: 100 batches per epoch, 3-step blocks, 2000 test images,
200 calls per latency block, 2 repetitions.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import shutil
import tempfile
import time

PROCESS_T0 = time.time()

# A fresh inductor cache for this run, so that compile times are those of a
# first compilation (unless the caller chose a cache).
_OWN_CACHE = None
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="torch_bench_inductor_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _OWN_CACHE

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 64
METRICS = ["train_epoch", "resnet18_step", "infer_1000", "latency_1", "first_step", "peak_rss"]
MODELS = ["mlp", "cnn", "resnet18", "vit", "lstm"]
PARAMS = {"mlp": 669_706, "cnn": 225_034, "resnet18": 11_175_434}  # as `nnc check` counts them
FRAMEWORK = {"eager": "pytorch-eager", "compile": "pytorch-compile"}


# ---------------------------------------------------------------- data

from pytorch_train import read_idx  # noqa: E402  (bench/, beside this script)
import torch_models  # noqa: E402

def load(split, data_dir):
    x = read_idx(f"{data_dir}/{split}-images-idx3-ubyte.gz").astype(np.float32)
    x /= 255.0
    y = read_idx(f"{data_dir}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1).contiguous(), torch.from_numpy(y)


# ---------------------------------------------------------------- models

class MLP(nn.Module):
    """models/mlp.nn: flatten -> linear(512) -> relu -> linear(512) -> relu -> linear(10)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                 nn.Linear(512, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """models/cnn.nn: conv 32 -> conv 64 -> max-pools -> dropouts -> 1600-128-10, log-softmax."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                                 nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(),
                                 nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10), nn.LogSoftmax(dim=1))

    def forward(self, x):
        return self.net(x)


class Basic(nn.Module):
    """block basic(c) of models/resnet18.nn."""

    def __init__(self, c):
        super().__init__()
        self.h = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(self.h(x) + x)


class Down(nn.Module):
    """block down(c) of models/resnet18.nn."""

    def __init__(self, cin, c):
        super().__init__()
        self.h = nn.Sequential(nn.Conv2d(cin, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.s = nn.Sequential(nn.Conv2d(cin, c, 1, stride=2, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(self.h(x) + self.s(x))


class ResNet18(nn.Module):
    """models/resnet18.nn: one-channel 28x28 input, 10 classes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            Basic(64), Basic(64), Down(64, 128), Basic(128), Down(128, 256), Basic(256), Down(256, 512), Basic(512),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))

    def forward(self, x):
        return self.net(x)


def build(name):
    if name in torch_models.CLASSES:
        return torch_models.build(name)
    model = {"mlp": MLP, "cnn": CNN, "resnet18": ResNet18}[name]()
    n = sum(p.numel() for p in model.parameters())
    if n != PARAMS[name]:
        raise SystemExit(f"torch_bench: {name} has {n} parameters, nnc's model has {PARAMS[name]}")
    return model


def optimizer(name, model):
    if name in ("resnet18", "vit", "lstm"):
        return torch.optim.Adam(model.parameters(), lr=1e-3)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def loss_fn(name):
    return nn.NLLLoss() if name == "cnn" else nn.CrossEntropyLoss()


def compiled(model):
    torch._dynamo.reset()
    return torch.compile(model, dynamic=False)


def make_step(fwd, opt, crit):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = crit(fwd(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def configure_dynamo():
    cfg = torch._dynamo.config
    for attr in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, attr):
            setattr(cfg, attr, max(getattr(cfg, attr), 64))


# ---------------------------------------------------------------- output

class Recorder:
    def __init__(self, args):
        self.args = args
        self.rows = []

    def emit(self, framework, model, metric, value, unit, values=None, batch=None, reps=None, **extra):
        rec = {"framework": framework, "model": model, "metric": metric,
               "value": None if value is None else round(value, 6), "unit": unit,
               "threads": self.args.threads, "batch": batch, "reps": reps}
        if values:
            rec["spread"] = [round(min(values), 6), round(max(values), 6)]
            rec["values"] = [round(v, 6) for v in values]
        rec.update(extra)
        rec["torch"] = torch.__version__
        rec["load1"] = round(os.getloadavg()[0], 2)
        rec["quick"] = self.args.quick
        print(json.dumps(rec), flush=True)
        self.rows.append(rec)
        show = "ERROR" if value is None else f"{value:.4g}"
        print(f"  {framework:16s} {model:9s} {metric:20s} {show:>12s} {unit}", file=sys.stderr, flush=True)

    def error(self, framework, model, metric, unit, exc, batch=None):
        text = f"{type(exc).__name__}: {exc}"
        self.emit(framework, model, metric, None, unit, batch=batch, error=text[:4000])
        print(f"    {text[:600]}", file=sys.stderr, flush=True)

    def table(self):
        out = sys.stderr
        print("\n%-16s %-9s %-20s %12s %-10s %-25s %s" % ("framework", "model", "metric", "value", "unit",
                                                       "spread [min, max]", "reps"), file=out)
        print("-" * 104, file=out)
        for r in self.rows:
            v = "ERROR" if r["value"] is None else f"{r['value']:.4g}"
            sp = "" if "spread" not in r else f"[{r['spread'][0]:.4g}, {r['spread'][1]:.4g}]"
            print("%-16s %-9s %-20s %12s %-10s %-25s %s" % (r["framework"], r["model"], r["metric"], v, r["unit"],
                                                           sp, r["reps"] if r["reps"] is not None else ""),
                  file=out)
        for r in self.rows:
            if "error" in r:
                print(f"\n{r['framework']} {r['model']} {r['metric']}: {r['error'][:1500]}", file=out)


def median(v):
    return statistics.median(v)


# ---------------------------------------------------------------- measurements

def train_epoch(rec, name, fw, args, data):
    x, y = data["train"]
    n = 100 * BATCH if args.quick else len(x)
    x, y = x[:n], y[:n]
    torch.manual_seed(1)
    model = build(name).train()
    opt = optimizer(name, model)
    framework = FRAMEWORK[fw]
    try:
        fwd = compiled(model) if fw == "compile" else model
        step = make_step(fwd, opt, loss_fn(name))
        if fw == "compile":
            t = time.perf_counter()
            step(x[:BATCH], y[:BATCH])
            first = time.perf_counter() - t
            tail = n % BATCH
            t = time.perf_counter()
            if tail:
                step(x[:tail], y[:tail])
            tail_s = time.perf_counter() - t
            for _ in range(3):
                step(x[:BATCH], y[:BATCH])
            rec.emit(framework, name, "compile_first_step", first, "s", batch=BATCH, reps=1,
                     tail_batch=tail, tail_compile_s=round(tail_s, 4),
                     note="first training step at batch 64 including compilation; tail_compile_s: the first "
                          "step at the last batch's size")
        g = torch.Generator().manual_seed(1)
        rates = []
        for _ in range(args.reps):
            t = time.perf_counter()
            perm = torch.randperm(n, generator=g)
            for i in range(0, n, BATCH):
                idx = perm[i:i + BATCH]
                step(x[idx], y[idx])
            rates.append(n / (time.perf_counter() - t))
        rec.emit(framework, name, "train_epoch", median(rates), "samples/s", rates, batch=BATCH, reps=args.reps,
                 samples=n)
    except Exception as e:  # torch.compile failing on this machine is a result, not a crash
        rec.error(framework, name, "train_epoch", "samples/s", e, batch=BATCH)


def resnet18_step(rec, fw, args, data):
    x, y = data["train"]
    block = 3 if args.quick else 10
    torch.manual_seed(1)
    model = build("resnet18").train()
    opt = optimizer("resnet18", model)
    framework = FRAMEWORK[fw]
    try:
        fwd = compiled(model) if fw == "compile" else model
        step = make_step(fwd, opt, loss_fn("resnet18"))
        g = torch.Generator().manual_seed(1)
        perm = torch.randperm(len(x), generator=g)
        batches = [perm[i * BATCH:(i + 1) * BATCH] for i in range(3 + args.reps * block)]
        for k in range(3):
            t = time.perf_counter()
            step(x[batches[k]], y[batches[k]])
            if k == 0 and fw == "compile":
                rec.emit(framework, "resnet18", "compile_first_step", time.perf_counter() - t, "s", batch=BATCH,
                         reps=1, note="first training step including compilation")
        steps, means = [], []
        for r in range(args.reps):
            blk = []
            for k in range(block):
                idx = batches[3 + r * block + k]
                xb, yb = x[idx], y[idx]
                t = time.perf_counter()
                step(xb, yb)
                blk.append(time.perf_counter() - t)
            steps += blk
            means.append(sum(blk) / len(blk))
        rec.emit(framework, "resnet18", "resnet18_step", median(means), "s", means, batch=BATCH, reps=args.reps,
                 block_steps=block, step_median=round(median(steps), 6), block_mean=round(median(means), 6))
    except Exception as e:
        rec.error(framework, "resnet18", "resnet18_step", "s", e, batch=BATCH)


def infer_1000(rec, name, fw, args, data):
    xt = data["test"][0]
    n = 2000 if args.quick else len(xt)
    b = 1000
    torch.manual_seed(1)
    model = build(name).eval()
    framework = FRAMEWORK[fw]
    try:
        with torch.no_grad():
            fwd = compiled(model) if fw == "compile" else model
            t = time.perf_counter()
            fwd(xt[:b])
            first = time.perf_counter() - t
            if fw == "compile":
                rec.emit(framework, name, "compile_first_call", first, "s", batch=b, reps=1,
                         note="first inference call at batch 1000 including compilation")
            rates = []
            for _ in range(args.reps):
                t = time.perf_counter()
                for i in range(0, n, b):
                    fwd(xt[i:i + b])
                rates.append(n / (time.perf_counter() - t))
        rec.emit(framework, name, "infer_1000", median(rates), "samples/s", rates, batch=b, reps=args.reps,
                 samples=n)
    except Exception as e:
        rec.error(framework, name, "infer_1000", "samples/s", e, batch=b)


def latency_1(rec, name, fw, args, data):
    xt = data["test"][0]
    calls = 200 if args.quick else 1000
    samples = [xt[j:j + 1] for j in range(calls)]
    torch.manual_seed(1)
    model = build(name).eval()
    framework = FRAMEWORK[fw]
    clock = time.perf_counter_ns
    try:
        with torch.no_grad():
            fwd = compiled(model) if fw == "compile" else model
            t = time.perf_counter()
            fwd(samples[0])
            first = time.perf_counter() - t
            if fw == "compile":
                rec.emit(framework, name, "compile_first_call", first, "s", batch=1, reps=1,
                         note="first inference call at batch 1 including compilation")
            for s in samples[:50]:
                fwd(s)
            all_calls, means = [], []
            for _ in range(args.reps):
                blk = []
                for s in samples:
                    t = clock()
                    fwd(s)
                    blk.append((clock() - t) / 1e3)
                all_calls += blk
                means.append(sum(blk) / len(blk))
        q = np.percentile(all_calls, [10, 90])
        rec.emit(framework, name, "latency_1", median(all_calls), "us", means, batch=1, reps=args.reps,
                 calls_per_rep=calls, block_mean=round(median(means), 3), p10=round(float(q[0]), 3),
                 p90=round(float(q[1]), 3),
                 note="value: median over all calls; spread and values: the mean call time of each block")
    except Exception as e:
        rec.error(framework, name, "latency_1", "us", e, batch=1)


def child_env(fresh_cache):
    env = dict(os.environ)
    if fresh_cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="torch_bench_inductor_")
    return env


def run_child(argv, env):
    """Runs this script as a child; returns (wall seconds, ru_maxrss KiB, stdout)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.time()
        env["TORCH_BENCH_T0"] = repr(t0)
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv, stdout=out, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.time() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if p.returncode != 0:
        raise RuntimeError(f"child {' '.join(argv)} exited with {p.returncode}: {text[-2000:]}")
    return wall, ru.ru_maxrss, text


def first_step(rec, name, fw, args):
    framework = FRAMEWORK[fw]
    walls, firsts, models = [], [], []
    try:
        for _ in range(args.reps):
            env = child_env(fresh_cache=True)
            wall, _, text = run_child(["--child", "first_step", "--models", name, "--frameworks", fw,
                                       "--threads", str(args.threads), "--data", args.data], env)
            shutil.rmtree(env["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
            r = json.loads(text.strip().splitlines()[-1])
            walls.append(wall)
            firsts.append(r["first_step"])
            models.append(r["from_model"])
        rec.emit(framework, name, "first_step", median(firsts), "s", firsts, batch=BATCH, reps=args.reps,
                 from_model=round(median(models), 4), to_exit=round(median(walls), 4),
                 note="from the process start; from_model: from the model's construction; to_exit: the whole "
                      "process, also saving a checkpoint and evaluating one test sample")
    except Exception as e:
        rec.error(framework, name, "first_step", "s", e, batch=BATCH)


def child_first_step(args):
    """In a fresh process: what `nnc train MODEL --limit 64 --test-limit 1` does."""
    t0 = float(os.environ["TORCH_BENCH_T0"])
    torch.set_num_threads(args.threads)
    name, fw = args.models[0], args.frameworks[0]
    x, y = load("train", args.data)
    xt, yt = load("t10k", args.data)
    tm = time.perf_counter()
    torch.manual_seed(1)
    model = build(name).train()
    opt = optimizer(name, model)
    if fw == "compile":
        configure_dynamo()
    fwd = compiled(model) if fw == "compile" else model
    step = make_step(fwd, opt, loss_fn(name))
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:BATCH]
    step(x[idx], y[idx])
    t_first = time.time()
    from_model = time.perf_counter() - tm
    with tempfile.TemporaryDirectory() as d:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, os.path.join(d, "checkpoint.pt"))
    model.eval()
    with torch.no_grad():
        loss_fn(name)(model(xt[:1]), yt[:1]).item()
    print(json.dumps({"first_step": t_first - t0, "from_model": from_model}))


def peak_rss(rec, fw, args):
    framework = FRAMEWORK[fw]
    kib = []
    try:
        for _ in range(args.reps):
            env = child_env(fresh_cache=True)
            argv = ["--child", "peak_rss", "--models", "mlp", "--frameworks", fw, "--threads", str(args.threads),
                    "--data", args.data] + (["--quick"] if args.quick else [])
            _, maxrss, _ = run_child(argv, env)
            shutil.rmtree(env["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
            kib.append(float(maxrss))
        rec.emit(framework, "mlp", "peak_rss", median(kib), "KiB", kib, batch=BATCH, reps=args.reps,
                 samples=100 * BATCH if args.quick else 60000,
                 note="ru_maxrss of a fresh process that reads the data and trains one epoch")
    except Exception as e:
        rec.error(framework, "mlp", "peak_rss", "KiB", e, batch=BATCH)


def child_peak_rss(args):
    torch.set_num_threads(args.threads)
    fw = args.frameworks[0]
    x, y = load("train", args.data)
    load("t10k", args.data)  # nnc train reads the test set too
    n = 100 * BATCH if args.quick else len(x)
    torch.manual_seed(1)
    model = build("mlp").train()
    opt = optimizer("mlp", model)
    fwd = compiled(model) if fw == "compile" else model
    step = make_step(fwd, opt, loss_fn("mlp"))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    for i in range(0, n, BATCH):
        idx = perm[i:i + BATCH]
        step(x[idx], y[idx])


# ---------------------------------------------------------------- main

def csv_list(allowed):
    def parse(s):
        items = [v.strip() for v in s.split(",") if v.strip()]
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
        return items
    return parse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=csv_list(MODELS), default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 2)")
    ap.add_argument("--frameworks", type=csv_list(list(FRAMEWORK)), default=list(FRAMEWORK))
    ap.add_argument("--only", type=csv_list(METRICS), default=list(METRICS), metavar="METRIC[,METRIC]")
    ap.add_argument("--quick", action="store_true", help="a smoke run on a small subset")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--child", choices=["first_step", "peak_rss"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 2 if args.quick else 3
    if args.child == "first_step":
        return child_first_step(args)
    if args.child == "peak_rss":
        return child_peak_rss(args)

    torch.set_num_threads(args.threads)
    configure_dynamo()
    print(f"torch {torch.__version__}, {args.threads} threads, reps {args.reps}"
          f"{', quick' if args.quick else ''}", file=sys.stderr, flush=True)
    rec = Recorder(args)
    need_data = any(m in args.only for m in ("train_epoch", "resnet18_step", "infer_1000", "latency_1"))
    data = {"train": load("train", args.data), "test": load("t10k", args.data)} if need_data else {}
    small = [m for m in args.models if m in ("mlp", "cnn")]
    epoch_models = [m for m in args.models if m in ("mlp", "cnn", "vit", "lstm")]
    for metric in args.only:
        for fw in args.frameworks:
            if metric == "train_epoch":
                for name in epoch_models:
                    train_epoch(rec, name, fw, args, data)
            elif metric == "resnet18_step" and "resnet18" in args.models:
                resnet18_step(rec, fw, args, data)
            elif metric == "infer_1000":
                for name in epoch_models:
                    infer_1000(rec, name, fw, args, data)
            elif metric == "latency_1":
                for name in small:
                    latency_1(rec, name, fw, args, data)
            elif metric == "first_step":
                for name in args.models:
                    first_step(rec, name, fw, args)
            elif metric == "peak_rss" and "mlp" in args.models:
                peak_rss(rec, fw, args)
    rec.table()


if __name__ == "__main__":
    try:
        main()
    finally:
        if _OWN_CACHE:
            shutil.rmtree(_OWN_CACHE, ignore_errors=True)
