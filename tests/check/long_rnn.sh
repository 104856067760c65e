#!/bin/sh
# Recurrent layers over 400 steps, unrolled: an LSTM returning every step
# into a GRU (3 gate slices per step: 1200 slice gradients, joined by
# concats of at most 1024 parts). Its training step is planned in seconds
# (CTest's TIMEOUT guards the memory planner's first fit against a return
# to n^3) and in tens of megabytes: each slice's gradient is written once,
# not as a zeroed copy of the whole projection per slice (gigabytes here).
nnc=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/long.nn" <<'NN'
model long {
    input  x: f32[400, 8]
    target y: class(4)
    x -> lstm(16, sequence = true) -> gru(8) -> linear(4)
}
loss      cross_entropy
optimizer adam(lr = 1e-3)
NN
fail=0
if ! "$nnc" emit --stage kernels --entry train --batch 64 "$dir/long.nn" >"$dir/k.out" 2>&1; then
  echo "FAIL emit --stage kernels --entry train:"; tail -5 "$dir/k.out"; exit 1
fi
arena=$(sed -n 's/^program train_step of long: .*; arena \([0-9]*\) bytes.*/\1/p' "$dir/k.out")
if [ -n "$arena" ] && [ "$arena" -lt 100000000 ]; then
  echo "ok   training step of 400 steps: arena $arena bytes at batch 64"
else
  echo "FAIL training step of 400 steps: arena '$arena' bytes at batch 64 (expected under 100 MB)"; fail=1
fi
exit $fail
