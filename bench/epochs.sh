#!/usr/bin/env bash
# Epoch-to-epoch steadiness of nnc's training speed, and its speed with one
# competing busy process.
#
#   bench/epochs.sh [--nnc PATH] [--base PATH] [--epochs 20] [--loaded-epochs 3]
#                   [--threads 2] [--only quiet,loaded] [--limit N]
#
# quiet   `nnc train models/mlp.nn` for EPOCHS consecutive epochs (20 by
#         default), the first included (nnc compiles the step before it
#         starts the clock): every epoch's samples/s as nnc prints it (epoch
#         time, no data loading), the fastest, the slowest, the slowest over
#         the fastest, and how many epochs are more than 15% under the
#         fastest. Then cnn for LOADED_EPOCHS epochs, the quiet figure the
#         loaded one is set against. (A --base binary older than the eager
#         compile counts its compilation in its first epoch; compare medians.)
# loaded  with one `yes > /dev/null` running (killed at the end, or on ^C):
#         mlp and cnn for LOADED_EPOCHS epochs each, their median against half
#         the quiet median (a fair share of the one free core is about half),
#         and PyTorch eager's train_epoch (bench/torch_bench.py) under the
#         same load when $PYTHON (default /opt/torchenv/bin/python) imports
#         torch.
#
# --base PATH runs a second nnc binary (an older build) right after each run
# of the first, same model, epochs and load, and prints both. --limit N
# trains on the first N samples (a quick check; the targets are for whole
# epochs). The machine should be otherwise idle for the quiet figures.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nnc=${NNC:-$root/build/cli/nnc}
python=${PYTHON:-/opt/torchenv/bin/python}
data=${NNC_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
base="" epochs=20 loaded_epochs=3 threads=2 only=quiet,loaded limit=()

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --nnc) nnc=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --loaded-epochs) loaded_epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --limit) limit=(--limit "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "epochs.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$nnc" ] || { echo "epochs.sh: no nnc at $nnc (build it, or pass --nnc)" >&2; exit 2; }
[ -z "$base" ] || [ -x "$base" ] || { echo "epochs.sh: no nnc at $base (--base)" >&2; exit 2; }
[ -d "$data" ] || { echo "epochs.sh: no data at $data (set NNC_BENCH_DATA)" >&2; exit 2; }
has() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

work=$(mktemp -d)
hog=""
cleanup() { [ -z "$hog" ] || kill "$hog" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# epochs BIN MODEL N: the samples/s of each of N epochs, one a line
# (each run in a directory of its own: a run refuses a place that holds another's checkpoint)
epochs() {
  local out
  out=$(mktemp -d "$work/run.XXXXXX")
  "$1" train "$root/models/$2.nn" --data "$data" --epochs "$3" "${limit[@]}" --test-limit 1 \
    --threads "$threads" --progress none --out "$out" > "$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
  sed -n 's/^epoch [0-9]*\/[0-9]*: .*, \([0-9.]*\) samples\/s$/\1/p' "$work/log"
}

# summary NAME < figures: median, fastest, slowest, slowest/fastest, epochs > 15% under the fastest
summary() {
  sort -n | awk -v name="$1" '{ v[NR] = $1 } END {
    med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    slow = 0; for (i = 1; i <= NR; i++) if (v[i] < 0.85 * v[NR]) slow++
    printf "%-34s median %8.0f  fastest %8.0f  slowest %8.0f  slowest/fastest %.2f  under 85%% of fastest: %d of %d\n",
      name, med, v[NR], v[1], v[1] / v[NR], slow, NR }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run TAG MODEL N: both binaries, one after the other; figures in $work/TAG-{new,base}-MODEL
run() {
  local tag=$1 m=$2 n=$3 side bin
  for side in new base; do
    bin=$nnc
    [ $side = new ] || bin=$base
    [ -n "$bin" ] || continue
    epochs "$bin" "$m" "$n" > "$work/$tag-$side-$m"
    echo "$tag $m ($side): $(tr '\n' ' ' < "$work/$tag-$side-$m")"
  done
}

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:     $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores"
echo "nnc:     $nnc ($("$nnc" --version))${base:+; base $base ($("$base" --version))}"
echo "run:     threads $threads, epochs $epochs, loaded epochs $loaded_epochs${limit[1]:+, limit ${limit[1]}}"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the start"
echo

if has quiet || has loaded; then
  run quiet mlp "$epochs"
  run quiet cnn "$loaded_epochs"
fi
if has loaded; then
  yes > /dev/null &
  hog=$!
  run loaded mlp "$loaded_epochs"
  run loaded cnn "$loaded_epochs"
  torch=""
  if "$python" -c 'import torch' 2>/dev/null; then
    tl=()
    [ ${#limit[@]} = 0 ] || tl=(--quick)
    "$python" "$root/bench/torch_bench.py" --only train_epoch --models mlp,cnn --frameworks eager \
      --threads "$threads" --reps "$loaded_epochs" --data "$data" "${tl[@]}" > "$work/torch.jsonl" 2>/dev/null &&
      torch=1
  else
    echo "loaded: no PyTorch at $python (set PYTHON): its figures are left out"
  fi
  kill "$hog"
  wait "$hog" 2>/dev/null || true
  hog=""
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"

echo
for side in new base; do
  [ $side = new ] || [ -n "$base" ] || continue
  bin=$nnc
  [ $side = new ] || bin=$base
  echo "== $side: $bin"
  summary "quiet mlp, $epochs epochs" < "$work/quiet-$side-mlp"
  summary "quiet cnn, $loaded_epochs epochs" < "$work/quiet-$side-cnn"
  has loaded || continue
  for m in mlp cnn; do
    summary "loaded $m, $loaded_epochs epochs" < "$work/loaded-$side-$m"
    q=$(median < "$work/quiet-$side-$m") l=$(median < "$work/loaded-$side-$m")
    t=""
    [ -z "$torch" ] || t=$(sed -n "s/.*\"model\": \"$m\", \"metric\": \"train_epoch\", \"value\": \([0-9.]*\).*/\1/p" \
                              "$work/torch.jsonl" | head -1)
    awk -v m="$m" -v q="$q" -v l="$l" -v t="$t" 'BEGIN {
      printf "  %s loaded/(quiet/2) %.2f (target >= 0.8)", m, l / (q / 2)
      if (t != "") printf "; PyTorch eager loaded %.0f, nnc/PyTorch %.2f (target >= 2)", t, l / t
      printf "\n" }'
  done
done
