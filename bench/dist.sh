#!/usr/bin/env bash
# Data-parallel training on this machine: samples/s of one epoch of mlp and
# cnn with P = 1 (plain, and --distributed in one process) and P = 2
# (mpirun, the cores shared out: --threads cores/P each), as nnc prints
# them (epoch time: the step, the gradient sum, no compiling, no loading).
#
#   bench/dist.sh [--limit 12800] [--repeat 3] [--models "mlp cnn"]
#
# Prints one line per run and the median of each configuration. Needs
# Fashion-MNIST (dataset-fashion-mnist) and Open MPI (scripts/install-deps.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nnc=${NNC:-$root/build/cli/nnc}
data=${NNC_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
limit=12800 repeat=3 models="mlp cnn"
while [ $# -gt 0 ]; do
  case $1 in
    --limit) limit=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
cores=$(nproc)
root_flag=""
[ "$(id -u)" = 0 ] && root_flag=--allow-run-as-root
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rate() { sed -n 's/^epoch 1\/1:.* \([0-9][0-9]*\) samples\/s$/\1/p' "$1"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $cores cores; $(date -u +%Y-%m-%d)"
echo "nnc $("$nnc" --version 2>/dev/null | head -1); $(mpirun --version | head -1)"
for m in $models; do
  set -- "$root/models/$m.nn" --data "$data" --limit "$limit" --epochs 1 --no-test --progress none
  for cfg in plain dist1 dist2; do
    : >"$tmp/rates"
    for i in $(seq "$repeat"); do
      case $cfg in
        plain) "$nnc" train "$@" --threads "$cores" --out "$tmp/r" --overwrite >"$tmp/log" 2>&1 ;;
        dist1) "$nnc" train "$@" --threads "$cores" --out "$tmp/r" --overwrite --distributed >"$tmp/log" 2>&1 ;;
        dist2) mpirun --oversubscribe $root_flag -np 2 "$nnc" train "$@" --threads $((cores / 2 > 0 ? cores / 2 : 1)) \
                 --out "$tmp/r" --overwrite --distributed >"$tmp/log" 2>&1 </dev/null ;;
      esac
      r=$(rate "$tmp/log")
      [ -n "$r" ] || { echo "$m $cfg: no epoch line"; cat "$tmp/log"; exit 1; }
      echo "$r" >>"$tmp/rates"
      echo "  $m $cfg run $i: $r samples/s"
    done
    echo "$m $cfg median: $(median <"$tmp/rates") samples/s"
  done
done
