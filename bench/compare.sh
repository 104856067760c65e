#!/usr/bin/env bash
# Speed of nnc against PyTorch (eager and torch.compile), side by side in one
# run, on the same machine, data, batch and thread count.
#
#   bench/compare.sh [--models mlp,cnn,resnet18,vit,lstm] [--threads 2] [--reps 3] [--quick]
#                    [--only METRIC[,METRIC]] [--frameworks eager,compile] [--out FILE.jsonl]
#   bench/compare.sh --report FILE.jsonl     (the ratio table of an earlier run)
#
# Metrics: train_epoch, resnet18_step, infer_1000, latency_1, first_step,
# peak_rss (their definitions for PyTorch: bench/torch_bench.py). For each
# metric and model, nnc is measured first and PyTorch right after it, so that
# both see the same machine load. Every record (nnc's and PyTorch's) is one
# JSON line in FILE.jsonl (default runs/bench/speed-DATE.jsonl); at the end a
# table of nnc/PyTorch ratios is printed.
#
# How nnc is measured (through its command line):
#   train_epoch    `nnc train --epochs REPS`: the samples/s nnc prints for each
#                  epoch (epoch time, no data loading); median over the epochs.
#   resnet18_step  `nnc train models/resnet18.nn --limit 640 --epochs 1+REPS`:
#                  epoch time / 10 steps; the first epoch is the warm-up.
#   infer_1000     `nnc bench --entry forward --batch 1000 --reps 10`: samples/s
#                  of the compiled forward pass (the model's output from a
#                  batch copied in), one figure per repetition; as PyTorch's
#                  model(x) under no_grad on slices of the test set.
#   latency_1      `nnc bench --entry forward --batch 1 --reps 1000`: the median
#                  call, in microseconds (PyTorch's value: its median call).
#   first_step     wall clock of `nnc train --limit 64 --epochs 1 --test-limit 1`:
#                  the whole command, which also writes a checkpoint and
#                  evaluates one test sample; nnc prints no time for the end of
#                  its first step. Compared with PyTorch's to_exit, the same work.
#   peak_rss       `/usr/bin/time -v nnc train models/mlp.nn --epochs 1`.
#
# Records share one schema: framework, model, metric, value, unit, threads,
# batch, reps, spread [min, max], values, and optional fields; an nnc record
# whose value is comparable with a PyTorch field other than `value` names it
# in compare_field. The nnc side is one function per metric, nnc_cli_METRIC
# MODEL, called through nnc_measure; another source of nnc timings (a future
# `nnc bench` printing records of this schema) is another set of functions
# behind nnc_measure. The ratio table reads only the JSON lines.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nnc=${NNC:-$root/build/cli/nnc}
python=${PYTHON:-/opt/torchenv/bin/python}
data=${NNC_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
all_metrics=train_epoch,resnet18_step,infer_1000,latency_1,first_step,peak_rss
models=mlp,cnn,resnet18,vit,lstm threads=2 reps="" quick=0 only=$all_metrics frameworks=eager,compile out="" report=""

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --frameworks) frameworks=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
ratios() {
"$python" - "$1" <<'EOF'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
higher_better = {"samples/s"}
nnc = {(r["model"], r["metric"]): r for r in rows if r["framework"] == "nnc"}
fws = ["pytorch-eager", "pytorch-compile"]
pt = {(r["framework"], r["model"], r["metric"]): r for r in rows if r["framework"] in fws}

def fmt(v):
    return "-" if v is None else f"{v:.4g}"

print(f"{'model':9s} {'metric':14s} {'unit':10s} {'nnc':>10s} {'eager':>10s} {'compile':>10s} "
      f"{'nnc/eager':>10s} {'nnc/compile':>12s}  nnc is")
print("-" * 110)
for (model, metric), n in nnc.items():
    field = n.get("compare_field", "value")
    cells, verdicts = [], []
    for fw in fws:
        p = pt.get((fw, model, metric))
        pv = None if p is None else p.get(field, p["value"]) if p["value"] is not None else None
        ratio = n["value"] / pv if pv else None
        cells.append((pv, ratio))
        if ratio:
            better = ratio if n["unit"] in higher_better else 1 / ratio
            what = "memory" if n["unit"] == "KiB" else ""
            if better >= 1:
                verdicts.append(f"{better:.2f}x {'smaller' if what else 'faster'} than {fw[8:]}")
            else:
                verdicts.append(f"{1 / better:.2f}x {'larger' if what else 'slower'} than {fw[8:]}")
    print(f"{model:9s} {metric:14s} {n['unit']:10s} {fmt(n['value']):>10s} {fmt(cells[0][0]):>10s} "
          f"{fmt(cells[1][0]):>10s} {fmt(cells[0][1]):>10s} {fmt(cells[1][1]):>12s}  {'; '.join(verdicts)}")
print("\nratio = nnc value / PyTorch value (samples/s: above 1 is nnc faster; s, us, KiB: below 1 is nnc better)."
      "\nlatency_1 compares medians of single calls; resnet18_step nnc's epoch time / 10 steps with PyTorch's"
      "\nmean over blocks of 10 steps; first_step nnc's whole command with PyTorch's to_exit.")
extra = [r for r in rows if r["framework"] in fws and r["metric"].startswith("compile_")]
if extra:
    print("\ntorch.compile: first call or step including compilation")
    for r in extra:
        print(f"  {r['model']:9s} {r['metric']:20s} batch {r['batch']:<5} {r['value']:.2f} s")
others = [r for r in rows if r["framework"] in fws and r["metric"] in ("first_step", "latency_1", "resnet18_step")]
if others:
    print("\nPyTorch details")
    for r in others:
        keys = [k for k in ("from_model", "to_exit", "block_mean", "p10", "p90", "step_median") if k in r]
        print(f"  {r['framework']:16s} {r['model']:9s} {r['metric']:14s} value {fmt(r['value'])} {r['unit']}; "
              + ", ".join(f"{k} {r[k]}" for k in keys))
errors = [r for r in rows if "error" in r]
for r in errors:
    print(f"\nERROR {r['framework']} {r['model']} {r['metric']}: {r['error'][:1500]}")
EOF
}

if [ -n "$report" ]; then ratios "$report"; exit; fi
[ -n "$reps" ] || reps=$([ $quick = 1 ] && echo 2 || echo 3)
for m in ${only//,/ }; do
  case ",$all_metrics," in *",$m,"*) ;; *) echo "compare.sh: unknown metric '$m'" >&2; exit 2 ;; esac
done
[ -x "$nnc" ] || { echo "compare.sh: $nnc not found; build it with scripts/build.sh" >&2; exit 2; }
[ -x "$python" ] || { echo "compare.sh: no Python at $python (set PYTHON)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$out" ]; then
  mkdir -p "$root/runs/bench"
  out=$root/runs/bench/speed-$(date +%Y%m%d-%H%M%S).jsonl
fi
: > "$out"

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
log() { echo "$*" >&2; }
now_ns() { date +%s%N; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# median and min/max of the numbers on stdin, one a line
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
json_list() { paste -sd, - | sed 's/^/[/; s/$/]/'; }

# emit MODEL METRIC UNIT BATCH EXTRA_JSON < values: one nnc record, value = the median
emit() {
  local model=$1 metric=$2 unit=$3 batch=$4 extra=$5 vals
  vals=$(cat)
  local n med lo hi list
  n=$(printf '%s\n' "$vals" | grep -c .)
  med=$(printf '%s\n' "$vals" | median)
  lo=$(printf '%s\n' "$vals" | sort -g | head -1)
  hi=$(printf '%s\n' "$vals" | sort -g | tail -1)
  list=$(printf '%s\n' "$vals" | json_list)
  printf '{"framework": "nnc", "model": "%s", "metric": "%s", "value": %s, "unit": "%s", "threads": %s, "batch": %s, "reps": %s, "spread": [%s, %s], "values": %s, "load1": %s, "quick": %s%s}\n' \
    "$model" "$metric" "$med" "$unit" "$threads" "$batch" "$n" "$lo" "$hi" "$list" "$(load1)" \
    "$([ $quick = 1 ] && echo true || echo false)" "${extra:+, $extra}" >> "$out"
  log "  nnc              $(printf '%-9s %-20s %12.4g %s' "$model" "$metric" "$med" "$unit")"
}

# wall seconds of a command (its output discarded)
wall() { local t0 t1; t0=$(now_ns); "$@" > /dev/null; t1=$(now_ns); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }'; }

# ---- nnc through its command line

nnc_cli_train_epoch() {
  local m=$1 limit=() n=60000
  [ $quick = 1 ] && { limit=(--limit 6400); n=6400; }
  "$nnc" train "$root/models/$m.nn" --data "$data" --epochs "$reps" "${limit[@]}" --test-limit 1 \
    --threads "$threads" --progress none --overwrite --out "$work/train-$m" > "$work/train-$m.log"
  sed -n 's/^epoch [0-9]*\/[0-9]*: .*, \([0-9.]*\) samples\/s$/\1/p' "$work/train-$m.log" |
    emit "$m" train_epoch samples/s 64 "\"samples\": $n"
}

nnc_cli_resnet18_step() {
  local block=$([ $quick = 1 ] && echo 3 || echo 10)
  "$nnc" train "$root/models/resnet18.nn" --data "$data" --epochs $((reps + 1)) --limit $((64 * block)) \
    --test-limit 1 --threads "$threads" --progress none --overwrite --out "$work/train-resnet18" > "$work/resnet18.log"
  sed -n 's/^epoch \([0-9]*\)\/[0-9]*: .*, \([0-9.]*\) samples\/s$/\1 \2/p' "$work/resnet18.log" |
    awk '$1 > 1 { printf "%.6f\n", 64 / $2 }' |
    emit resnet18 resnet18_step s 64 "\"block_steps\": $block, \"compare_field\": \"block_mean\", \"method\": \"epoch time of $block steps / $block; the first epoch is the warm-up\""
}

# one field of the JSON record `nnc bench --format json` prints
bench_field() { sed -n "s/.*\"$1\": \([0-9.eE+-]*\).*/\1/p"; }

nnc_cli_infer_1000() {
  local m=$1 i
  for i in $(seq "$reps"); do
    "$nnc" bench "$root/models/$m.nn" --entry forward --batch 1000 --reps 10 --no-compare --threads "$threads" \
      --format json | bench_field samples_per_s
  done | emit "$m" infer_1000 samples/s 1000 "\"method\": \"nnc bench --entry forward --batch 1000 --reps 10: samples/s of the median call, one figure per repetition\""
}

nnc_cli_latency_1() {
  local m=$1 i
  for i in $(seq "$reps"); do
    "$nnc" bench "$root/models/$m.nn" --entry forward --batch 1 --reps 1000 --no-compare --threads "$threads" \
      --format json | bench_field step_median_ms | awk '{ printf "%.3f\n", $1 * 1000 }'
  done | emit "$m" latency_1 us 1 "\"calls_per_rep\": 1000, \"method\": \"nnc bench --entry forward --batch 1 --reps 1000: the median call, one figure per repetition\""
}

nnc_cli_first_step() {
  local m=$1 i
  for i in $(seq "$reps"); do
    rm -rf "$work/first-$m"
    wall "$nnc" train "$root/models/$m.nn" --data "$data" --epochs 1 --limit 64 --test-limit 1 \
      --threads "$threads" --progress none --out "$work/first-$m"
  done | emit "$m" first_step s 64 "\"compare_field\": \"to_exit\", \"method\": \"wall clock of the whole nnc train --limit 64 --epochs 1 --test-limit 1 (also writes a checkpoint and evaluates one test sample)\""
}

nnc_cli_peak_rss() {
  local m=$1 i limit=() n=60000
  [ $quick = 1 ] && { limit=(--limit 6400); n=6400; }
  for i in $(seq "$reps"); do
    /usr/bin/time -v "$nnc" train "$root/models/$m.nn" --data "$data" --epochs 1 "${limit[@]}" --test-limit 1 \
      --threads "$threads" --progress none --overwrite --out "$work/rss-$m" 2>&1 >/dev/null |
      sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): \([0-9]*\)$/\1/p'
  done | emit "$m" peak_rss KiB 64 "\"samples\": $n, \"method\": \"/usr/bin/time -v nnc train --epochs 1\""
}

nnc_measure() { "nnc_cli_$1" "$2"; }

torch_measure() {
  local q=()
  [ $quick = 1 ] && q=(--quick)
  "$python" "$root/bench/torch_bench.py" --only "$1" --models "$2" --threads "$threads" --reps "$reps" \
    --frameworks "$frameworks" --data "$data" "${q[@]}" >> "$out"
}

# the models each metric applies to
models_for() {
  case $1 in
    train_epoch|infer_1000) echo mlp cnn vit lstm ;;
    latency_1) echo mlp cnn ;;
    resnet18_step) echo resnet18 ;;
    first_step) echo mlp cnn resnet18 ;;
    peak_rss) echo mlp ;;
  esac
}

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu:     $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores"
  echo "memory:  $(free -h | awk '/^Mem:/ { print $2 }')"
  echo "os:      $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -r)"
  echo "nnc:     $("$nnc" --version), binary $nnc; repository HEAD $commit"
  echo "torch:   $("$python" -c 'import torch; print(torch.__version__)')"
  echo "run:     threads $threads, reps $reps, quick $quick, models $models, metrics $only"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the start"
} | tee "$work/header.txt" >&2

t_start=$(date +%s)
for metric in ${only//,/ }; do
  for m in $(models_for "$metric"); do
    has "$models" "$m" || continue
    log "== $metric $m"
    nnc_measure "$metric" "$m" || log "  nnc $metric $m failed"
    torch_measure "$metric" "$m" || log "  torch_bench $metric $m failed"
  done
done
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end; $(( $(date +%s) - t_start )) s" >> "$work/header.txt"

cat "$work/header.txt"
echo "records: $out"
echo
ratios "$out"
