#!/usr/bin/env python3
"""PyTorch on the GPU (eager and torch.compile) for bench/gpu.sh, which runs nnc's
cuda backend beside it. Three modes:

  bench/gpu_torch.py --make-data DIR
      random data shaped as Fashion-MNIST (IDX.gz files: 60,000 training and
      10,000 test images of 1x28x28 bytes, labels in 0..9), for a machine
      without the dataset; needs neither torch nor numpy
  bench/gpu_torch.py --measure MODEL --framework eager|compile --data DIR
                     --out FILE.jsonl [--deadline UNIX_TIME] [--epoch-limit N]
      the measurements below for one model, one JSON line each, appended to
      FILE.jsonl as each is done; what would pass the deadline is skipped
      (and said)
  bench/gpu_torch.py --table FILE.jsonl
      the side-by-side table of every record in FILE.jsonl (nnc's too), as
      Markdown

Measurements (the models are bench/torch_bench.py's, which match models/*.nn
layer for layer and parameter for parameter; batch, optimizer and loss are the
model files'):

  first_step   seconds from building the model (the first CUDA work of the
               process, so CUDA's initialization is in it) through
               torch.compile, if asked, to the end of the first training step;
               torch is imported and the data read before. A fresh inductor
               cache (TORCHINDUCTOR_CACHE_DIR set by gpu.sh per run).
  train_epoch  samples/s of training steps at the model's batch on data held
               on the GPU, in a fresh random order, after the first step: the
               full batches of the 60,000 samples (937 steps; the last partial
               batch is left out, so that torch.compile compiles one shape), or
               of the first --epoch-limit samples; `epoch_s` is 60,000 over
               that rate (extrapolated when limited).
  infer_1000   samples/s of model(x) at batch 1000 under eval() and no_grad on
               the 10,000 test samples, after one warm-up batch.
  latency_1    microseconds of one call at batch 1 (median of 200, after 10
               warm-up calls), each synchronized.

Every timing synchronizes the GPU before reading the clock.
"""
import argparse
import gzip
import json
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCH = 60000
FRAMEWORK = {"eager": "pytorch-eager", "compile": "pytorch-compile"}
BATCH = {"mlp": 64, "cnn": 64, "resnet18": 64}   # models/*.nn: train { batch = 64 }


# ---------------------------------------------------------------- data

def write_idx(path, dims, data):
    """An IDX file of unsigned bytes (type 0x08), gzip'd."""
    head = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        f.write(data)


def make_data(dir_):
    os.makedirs(dir_, exist_ok=True)
    for split, n in (("train", 60000), ("t10k", 10000)):
        write_idx(f"{dir_}/{split}-images-idx3-ubyte.gz", (n, 28, 28), os.urandom(n * 28 * 28))
        write_idx(f"{dir_}/{split}-labels-idx1-ubyte.gz", (n,), bytes(b % 10 for b in os.urandom(n)))
    print(f"gpu_torch: random Fashion-MNIST-shaped data in {dir_}")


# ---------------------------------------------------------------- measurements

class Out:
    """Appends one JSON line per record to a file, as each is done."""

    def __init__(self, path, model, framework, deadline):
        self.path, self.model, self.framework, self.deadline = path, model, framework, deadline

    def left(self):
        return self.deadline - time.time()

    def emit(self, metric, value, unit, **extra):
        rec = {"framework": self.framework, "model": self.model, "metric": metric, "value": value, "unit": unit}
        rec.update(extra)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"gpu_torch: {self.framework} {self.model} {metric}: {value} {unit}", flush=True)

    def skip(self, metric, unit, why):
        self.emit(metric, None, unit, note=why)


def measure(args):
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_torch: torch.cuda.is_available() is false: no GPU, or a PyTorch built without CUDA")
    sys.path.insert(0, HERE)
    # bench/torch_bench.py: the models, their optimizers and losses, the training step
    from torch_bench import build, optimizer, loss_fn, compiled, make_step, configure_dynamo, load

    name, fw = args.measure, args.framework
    out = Out(args.out, name, FRAMEWORK[fw], args.deadline)
    dev = torch.device(args.device)
    B = BATCH[name]
    xtr, ytr = load("train", args.data)
    xte, yte = load("t10k", args.data)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    configure_dynamo()

    # first_step, then train_epoch on the same model
    torch.manual_seed(1)
    t0 = time.perf_counter()
    model = build(name).to(dev).train()
    opt = optimizer(name, model)
    fwd = compiled(model) if fw == "compile" else model
    step = make_step(fwd, opt, loss_fn(name))
    x, y = xtr.to(dev), ytr.to(dev)
    step(x[:B], y[:B])
    sync()
    out.emit("first_step", round(time.perf_counter() - t0, 3), "s", batch=B)

    n = min(args.epoch_limit or EPOCH, EPOCH) // B * B
    perm = torch.randperm(len(x), device=dev)[:n]
    steps, t = 0, time.perf_counter()
    for i in range(0, n, B):
        idx = perm[i:i + B]
        step(x[idx], y[idx])
        steps += 1
        if steps % 50 == 0 and out.left() < 60:   # leave time for the rest
            break
    sync()
    dt = time.perf_counter() - t
    rate = steps * B / dt
    note = "full batches of the epoch" if steps * B == EPOCH // B * B else f"{steps} steps, extrapolated to 60000 samples"
    out.emit("train_epoch", round(rate, 1), "samples/s", batch=B, steps=steps, epoch_s=round(EPOCH / rate, 3),
             note=note)

    # inference: the same model, in eval mode (torch.compile compiles it again per shape)
    model.eval()
    xt = xte.to(dev)
    with torch.no_grad():
        if out.left() < 30:
            out.skip("infer_1000", "samples/s", "no time left")
        else:
            fwd(xt[:1000])
            sync()
            t = time.perf_counter()
            for i in range(0, len(xt) // 1000 * 1000, 1000):
                fwd(xt[i:i + 1000])
            sync()
            out.emit("infer_1000", round(len(xt) // 1000 * 1000 / (time.perf_counter() - t), 1), "samples/s",
                     batch=1000)
        if out.left() < 20:
            out.skip("latency_1", "us", "no time left")
        else:
            for i in range(10):
                fwd(xt[i:i + 1])
            sync()
            calls = []
            for i in range(200):
                t = time.perf_counter()
                fwd(xt[i:i + 1])
                sync()
                calls.append(time.perf_counter() - t)
            out.emit("latency_1", round(statistics.median(calls) * 1e6, 1), "us", batch=1, calls=200)


# ---------------------------------------------------------------- the table

COLUMNS = ["nnc-cuda", "pytorch-eager", "pytorch-compile"]
METRICS = [("first_step", "first step, s"), ("train_epoch", "train epoch, samples/s"),
           ("epoch_s", "train epoch, s"), ("infer_1000", "inference, batch 1000, samples/s"),
           ("latency_1", "latency, batch 1, us")]


def cell(v):
    """A value as the table shows it: 3 significant digits below 100, whole numbers above."""
    if v is None:
        return "-"
    if not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def table(path):
    recs = {}
    notes = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            key = (r["model"], r["metric"], r["framework"])
            recs[key] = r
            if r.get("note") and (r["value"] is None or "extrapolated" in r["note"]):
                notes.append(f"{r['framework']} {r['model']} {r['metric']}: {r['note']}")
    models = [m for m in ("mlp", "cnn", "resnet18") if any(k[0] == m for k in recs)]
    lines = ["| model | measure | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for m in models:
        for metric, label in METRICS:
            cells = []
            for fw in COLUMNS:
                if metric == "epoch_s":
                    r = recs.get((m, "train_epoch", fw))
                    v = r.get("epoch_s") if r else None
                else:
                    r = recs.get((m, metric, fw))
                    v = r["value"] if r else None
                cells.append(cell(v))
            lines.append(f"| {m} | {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--make-data", metavar="DIR")
    ap.add_argument("--measure", choices=sorted(BATCH))
    ap.add_argument("--framework", choices=sorted(FRAMEWORK), default="eager")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out")
    ap.add_argument("--deadline", type=float, default=time.time() + 3600)
    ap.add_argument("--epoch-limit", type=int, default=0)
    ap.add_argument("--table", metavar="FILE")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)   # cpu: to try this script without a GPU
    args = ap.parse_args()
    if args.make_data:
        make_data(args.make_data)
    elif args.table:
        table(args.table)
    elif args.measure:
        if not args.out:
            ap.error("--measure needs --out FILE.jsonl")
        measure(args)
    else:
        ap.error("give --make-data, --measure or --table")


if __name__ == "__main__":
    main()
