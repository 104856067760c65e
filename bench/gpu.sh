#!/usr/bin/env bash
# bench/gpu.sh: nnc's cuda backend against PyTorch CUDA (eager and
# torch.compile) on this machine's GPU, in one run of at most 8 minutes.
#
#   bench/gpu.sh [--models mlp,cnn,resnet18] [--budget SECONDS] [--no-build] [--out DIR]
#
# For a machine with one NVIDIA GPU and no network. In order:
#   1. checks that there is a GPU (nvidia-smi) and, where PyTorch is
#      installed, that it sees it; exits with a message otherwise;
#   2. builds nnc (Release, into build-gpu/; --no-build takes it as it is);
#   3. runs the CUDA tests for real: ctest -R cuda;
#   4. per model, nnc (--backend cuda), then PyTorch eager, then
#      torch.compile (bench/gpu_torch.py, which defines PyTorch's side):
#        first_step   nnc: wall clock of `nnc train --limit BATCH --epochs 1
#                     --test-limit 1` with an empty NVRTC cache (the whole
#                     process: CUDA's start, reading the data, NVRTC, the
#                     step, a checkpoint, one test sample); PyTorch: from
#                     building the model to the end of its first step
#                     (torch imported and the data read before)
#        train_epoch  samples/s of one epoch of 60,000 samples at the model's
#                     batch (nnc train's epoch figure; resnet18: the first
#                     6,400 samples, extrapolated to 60,000 in epoch_s)
#        infer_1000   samples/s of the forward pass at batch 1000 (nnc bench
#                     --entry forward --batch 1000)
#        latency_1    microseconds of one forward call at batch 1 (nnc bench
#                     --entry forward --batch 1, the median)
#   5. prints the table and appends it, with the GPU's name, the date and the
#      commands, to bench/RESULTS.md (and, with --out DIR, writes the table,
#      the records and the logs to DIR).
# Data: the Fashion-MNIST IDX files in $NNC_BENCH_DATA (default
# /usr/share/datasets/fashion-mnist), else random data of the same shape.
# Every step runs under a time limit that keeps the whole within --budget
# (default 470 s); what does not fit is skipped and said so in the table.
set -euo pipefail

start=$(date +%s)
root=$(cd "$(dirname "$0")/.." && pwd)
build=${NNC_GPU_BUILD:-$root/build-gpu}
data=${NNC_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
models=mlp,cnn,resnet18 budget=470 do_build=1 outdir=""
while [ $# -gt 0 ]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --out) outdir=$2; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "gpu.sh: $*" >&2; exit 1; }
left() { echo $((start + budget - $(date +%s))); }
# capped CAP CMD...: CMD under a limit of CAP seconds, or less where the
# budget has less left (10 s kept for the table); 124 when it ran out.
capped() {
  local cap=$1 l
  shift
  l=$(($(left) - 10))
  [ "$l" -lt "$cap" ] && cap=$l
  [ "$cap" -gt 0 ] || return 124
  timeout -k 5 "$cap" "$@"
}

# 1. A GPU, and PyTorch that sees it.
command -v nvidia-smi >/dev/null 2>&1 ||
  die "nvidia-smi not found: no NVIDIA driver on this machine, so no GPU to measure (this script needs one)"
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
[ -n "$gpu" ] || die "nvidia-smi lists no GPU: $(nvidia-smi -L 2>&1 | head -n 1)"
python=${PYTHON:-}
if [ -z "$python" ]; then
  python=python3
  [ -x /opt/torchenv/bin/python ] && python=/opt/torchenv/bin/python
fi
torch=1
if ! "$python" -c 'import torch' >/dev/null 2>&1; then
  torch=0
  echo "gpu.sh: PyTorch is not installed for $python (set PYTHON=...): nnc is measured alone" >&2
elif ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  die "PyTorch ($python) says torch.cuda.is_available() is false: no usable GPU, or a PyTorch without CUDA"
fi
echo "gpu.sh: $gpu; budget ${budget} s"

work=$(mktemp -d "${TMPDIR:-/tmp}/nnc-gpu-XXXXXX")
trap 'rm -rf "$work"' EXIT
records=$work/records.jsonl
: >"$records"
logs=$work/logs
mkdir -p "$logs"

# 2. nnc, built for speed.
nnc=$build/cli/nnc
if [ $do_build = 1 ]; then
  echo "gpu.sh: building nnc into $build"
  capped 60 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNNC_SANITIZE=OFF >"$logs/configure.log" 2>&1 ||
    { tail -n 20 "$logs/configure.log"; die "configuring $build failed (log above)"; }
  capped 240 cmake --build "$build" -j "$(nproc)" >"$logs/build.log" 2>&1 ||
    { tail -n 30 "$logs/build.log"; die "building nnc failed or took too long (log above)"; }
fi
[ -x "$nnc" ] || die "$nnc is missing: build nnc first, or leave out --no-build"
echo "gpu.sh: built in $(($(date +%s) - start)) s"

# 3. The CUDA tests, on the GPU.
tests="not run"
if (cd "$build" && capped 120 ctest -R cuda --output-on-failure) >"$logs/ctest.log" 2>&1; then
  tests=$(grep -E 'tests passed' "$logs/ctest.log" | tail -n 1 || true)
else
  tests="FAILED: $(grep -E 'tests passed|tests failed' "$logs/ctest.log" | tail -n 1 || true)"
  grep -E '^ *[0-9]+ - ' "$logs/ctest.log" || true
fi
echo "gpu.sh: ctest -R cuda: $tests"

# Data: Fashion-MNIST, or random data of its shape.
if [ ! -f "$data/train-images-idx3-ubyte.gz" ] || [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
  data=$work/data
  "$python" "$root/bench/gpu_torch.py" --make-data "$data" >/dev/null
  datanote="random data shaped as Fashion-MNIST (60,000 + 10,000 samples of 1x28x28, 10 classes)"
else
  datanote="Fashion-MNIST from $data"
fi

# rec MODEL METRIC VALUE UNIT [EXTRA-JSON]: one of nnc's records (VALUE may
# be null, with a note in EXTRA).
rec() {
  local extra=${5:+, $5}
  echo "{\"framework\": \"nnc-cuda\", \"model\": \"$1\", \"metric\": \"$2\", \"value\": $3, \"unit\": \"$4\"$extra}" >>"$records"
  echo "gpu.sh: nnc-cuda $1 $2: $3 $4"
}
# fail MODEL METRIC UNIT LOG STATUS: a record of what went wrong.
fail() {
  local why
  why=$({ grep -m 1 -E '^nnc: |error' "$4" || grep -v '^ *$' "$4" | tail -n 1; } | tr -d '"\\' | cut -c1-160 || true)
  [ "$5" = 124 ] && why="over its time limit"
  rec "$1" "$2" null "$3" "\"note\": \"failed: $why\""
}
# one field of the JSON record `nnc bench --format json` prints
field() { sed -n "s/.*\"$1\": \([0-9.eE+-]*\).*/\1/p" "$2" | head -n 1; }

nnc_model() {
  local m=$1 limit=() epoch_note="" t0 t1 st rate
  local cache=$work/nvrtc-$m
  # first_step, with an empty cache: NVRTC compiles everything
  t0=$(date +%s.%N)
  st=0
  NNC_CACHE_DIR=$cache capped 120 "$nnc" train "$root/models/$m.nn" --backend cuda --data "$data" --epochs 1 \
    --limit 64 --test-limit 1 --progress none --out "$work/first-$m" >"$logs/$m-first.log" 2>&1 || st=$?
  t1=$(date +%s.%N)
  if [ $st = 0 ]; then
    rec "$m" first_step "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" s '"batch": 64'
  else
    fail "$m" first_step s "$logs/$m-first.log" $st
  fi
  # train_epoch (the cache now warm)
  if [ "$m" = resnet18 ]; then
    limit=(--limit 6400)
    epoch_note=', "note": "the first 6400 samples (100 steps), extrapolated to 60000"'
  fi
  st=0
  NNC_CACHE_DIR=$cache capped 150 "$nnc" train "$root/models/$m.nn" --backend cuda --data "$data" --epochs 1 \
    "${limit[@]}" --test-limit 1 --progress none --overwrite --out "$work/train-$m" >"$logs/$m-train.log" 2>&1 || st=$?
  rate=$(sed -n 's/^epoch [0-9]*\/[0-9]*.* \([0-9.]*\) samples\/s$/\1/p' "$logs/$m-train.log" | tail -n 1)
  if [ $st = 0 ] && [ -n "$rate" ]; then
    rec "$m" train_epoch "$rate" samples/s "\"batch\": 64, \"epoch_s\": $(awk -v r="$rate" 'BEGIN { printf "%.3f", 60000 / r }')$epoch_note"
  else
    fail "$m" train_epoch samples/s "$logs/$m-train.log" $st
  fi
  # infer_1000 and latency_1: the compiled forward pass
  st=0
  NNC_CACHE_DIR=$cache capped 60 "$nnc" bench "$root/models/$m.nn" --backend cuda --entry forward --batch 1000 \
    --reps 20 --no-compare --format json >"$logs/$m-infer.log" 2>&1 || st=$?
  if [ $st = 0 ] && [ -n "$(field samples_per_s "$logs/$m-infer.log")" ]; then
    rec "$m" infer_1000 "$(field samples_per_s "$logs/$m-infer.log")" samples/s '"batch": 1000'
  else
    fail "$m" infer_1000 samples/s "$logs/$m-infer.log" $st
  fi
  st=0
  NNC_CACHE_DIR=$cache capped 60 "$nnc" bench "$root/models/$m.nn" --backend cuda --entry forward --batch 1 \
    --reps 200 --no-compare --format json >"$logs/$m-latency.log" 2>&1 || st=$?
  if [ $st = 0 ] && [ -n "$(field step_median_ms "$logs/$m-latency.log")" ]; then
    rec "$m" latency_1 "$(field step_median_ms "$logs/$m-latency.log" | awk '{ printf "%.1f", $1 * 1000 }')" us \
      '"batch": 1, "calls": 200'
  else
    fail "$m" latency_1 us "$logs/$m-latency.log" $st
  fi
}

torch_model() {
  local m=$1 fw=$2 limit=() st=0
  [ "$m" = resnet18 ] && limit=(--epoch-limit 6400)
  TORCHINDUCTOR_CACHE_DIR=$work/inductor capped 200 "$python" "$root/bench/gpu_torch.py" --measure "$m" \
    --framework "$fw" --data "$data" --out "$records" --deadline $((start + budget - 15)) "${limit[@]}" \
    >"$logs/$m-torch-$fw.log" 2>&1 || st=$?
  if [ $st != 0 ]; then
    local why
    why=$(grep -v '^ *$' "$logs/$m-torch-$fw.log" | tail -n 1 | tr -d '"\\' | cut -c1-160 || true)
    [ "$st" = 124 ] && why="over its time limit"
    echo "gpu.sh: PyTorch $fw on $m stopped (status $st): $why"
    echo "{\"framework\": \"pytorch-$fw\", \"model\": \"$m\", \"metric\": \"run\", \"value\": null, \"unit\": \"\", \"note\": \"stopped: $why\"}" >>"$records"
  fi
}

# 4. The measurements, model by model, each side right after the other.
for m in ${models//,/ }; do
  [ -f "$root/models/$m.nn" ] || die "no model models/$m.nn"
  nnc_model "$m"
  if [ $torch = 1 ]; then
    torch_model "$m" eager
    torch_model "$m" compile
  fi
done

# 5. The table, here and in bench/RESULTS.md.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
elapsed=$(($(date +%s) - start))
{
  echo
  echo "### The cuda backend on $gpu ($(date -u '+%Y-%m-%d %H:%M UTC'), bench/gpu.sh at $commit)"
  echo
  echo "GPU (name, memory, driver): $gpu. Data: $datanote. ctest -R cuda: $tests. The whole run: $elapsed s."
  echo "nnc: \`nnc train MODEL --backend cuda --epochs 1 [--limit 6400 for resnet18]\` (epoch samples/s),"
  echo "\`nnc train ... --limit 64\` with an empty NVRTC cache (first step, wall clock of the command),"
  echo "\`nnc bench MODEL --backend cuda --entry forward --batch 1000 | --batch 1 --reps 200\`."
  echo "PyTorch $("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '(absent)'):"
  echo "\`bench/gpu_torch.py --measure MODEL --framework eager|compile\` (definitions in its docstring)."
  echo
  "$python" "$root/bench/gpu_torch.py" --table "$records"
} >"$work/table.md"
cat "$work/table.md"
cat "$work/table.md" >>"$root/bench/RESULTS.md"
echo "gpu.sh: appended to bench/RESULTS.md ($elapsed s in all)"
if [ -n "$outdir" ]; then
  mkdir -p "$outdir"
  cp "$work/table.md" "$records" "$outdir/"
  cp -r "$logs" "$outdir/logs"
fi
