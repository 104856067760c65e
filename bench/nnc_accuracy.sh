#!/bin/sh
# Test accuracy of `nnc train` over several seeds, for comparison with
# bench/pytorch_train.py (same data, batch, optimizer and epochs).
#
#   bench/nnc_accuracy.sh MODEL [EPOCHS] [SEEDS]     e.g. mlp100 1 "1 2 3 4 5"
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nnc=${NNC:-$root/build/cli/nnc}
model=$1 epochs=${2:-1} seeds=${3:-"1 2 3 4 5"}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
accs=""
for s in $seeds; do
  acc=$("$nnc" train "$root/models/$model.nn" --epochs "$epochs" --seed "$s" --out "$out" --overwrite --progress none \
        | awk '/^test:/ { print $5 }')
  echo "nnc $model epochs $epochs seed $s: test accuracy $acc"
  accs="$accs $acc"
done
echo "$accs" | awk -v m="$model" -v e="$epochs" '{ s = 0; mn = 1; mx = 0
  for (i = 1; i <= NF; i++) { s += $i; if ($i < mn) mn = $i; if ($i > mx) mx = $i }
  printf "nnc %s epochs %s: mean %.4f min %.4f max %.4f over %d seeds\n", m, e, s / NF, mn, mx, NF }'
