#!/bin/sh
# Memory bounds: a model or a batch that cannot fit is refused before
# anything is allocated (check with the file's batch; train, eval and bench
# with the batch they run at), NNC_MAX_MEMORY is checked, and eval keeps its
# confusion matrix to 100 classes (class(100000) would be 80 GB of counts).
. "${0%/*}/../lib.sh"

cat >"$tmp/k101.nn" <<'NN'
model many_classes {
    input  x: f32[2]
    target label: class(101)
    x -> linear(101)
}
loss cross_entropy
train { batch = 4, epochs = 1 }
NN
awk 'BEGIN { print "label,x0,x1"; for (i = 0; i < 16; i++) printf "%d,%d,%d\n", (i * 7) % 101, i, 16 - i }' >"$tmp/k101.csv"

export NNC_MAX_MEMORY=1M
# The file's batch of 4 fits in 1 MiB; --batch 4096 does not: the logits [4096,101]
# alone take 1.6 MiB.
expect 0 '' check -q "$tmp/k101.nn"
expect 1 'linear_1: its result \[N,101\] takes 1,654,784 bytes (1.6 MiB) at batch 4096' \
  train "$tmp/k101.nn" --data "$tmp/k101.csv" --out "$tmp/big" --batch 4096
[ ! -e "$tmp/big" ] && echo "ok   the refused run wrote nothing" || { echo "FAIL: $tmp/big exists"; fail=1; }
expect 1 'at batch 4096' bench "$tmp/k101.nn" --batch 4096
expect 0 '' train "$tmp/k101.nn" --data "$tmp/k101.csv" --out "$tmp/run" --progress none
expect 1 'at batch 8192' eval "$tmp/k101.nn" --weights "$tmp/run/checkpoint.safetensors" --data "$tmp/k101.csv" --batch 8192
expect 0 'confusion matrix: shown for at most 100 classes, not 101' \
  eval "$tmp/k101.nn" --weights "$tmp/run/checkpoint.safetensors" --data "$tmp/k101.csv"
NNC_MAX_MEMORY=lots expect 1 "NNC_MAX_MEMORY must be a size such as 512M or 64G, found 'lots'" check "$tmp/k101.nn"
unset NNC_MAX_MEMORY
expect 0 '' check -q "$tmp/k101.nn"
exit $fail
