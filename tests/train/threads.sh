#!/bin/sh
# Same seed, same thread count: the same bytes, however the threads were
# scheduled. Trains tests/train/threads.nn on 2 and on 3 threads, each three
# times: as is, and twice with NNC_POOL_JITTER (every thread waits a random
# time before each chunk it claims, so chunks run on other threads than in
# the plain run), and compares the checkpoints; a malformed NNC_POOL_JITTER
# is refused (skipped when Debian's dataset-fashion-mnist package is not
# installed).
. "${0%/*}/../lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skip: $data not installed"; exit 77; }

train() {   # train OUT THREADS JITTER
  NNC_POOL_JITTER=$3 "$nnc" train tests/train/threads.nn --limit 640 --test-limit 100 --threads "$2" \
    --out "$tmp/$1" --progress none >"$tmp/$1.log" 2>&1 || { echo "FAIL training $1"; cat "$tmp/$1.log"; fail=1; }
}

for t in 2 3; do
  train t$t $t 0
  train t$t-j1 $t 50
  train t$t-j2 $t 200
  for j in j1 j2; do
    if cmp -s "$tmp/t$t/checkpoint.safetensors" "$tmp/t$t-$j/checkpoint.safetensors"; then
      echo "ok   $t threads, chunks on shuffled threads ($j): the same checkpoint"
    else
      echo "FAIL $t threads: the run under NNC_POOL_JITTER ($j) differs"; fail=1
    fi
  done
done
NNC_POOL_JITTER=5us "$nnc" train tests/train/threads.nn --limit 64 --out "$tmp/bad" >"$tmp/bad.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q "NNC_POOL_JITTER is '5us', not a whole number of microseconds" "$tmp/bad.log"; then
  echo "ok   a malformed NNC_POOL_JITTER is refused"
else
  echo "FAIL malformed NNC_POOL_JITTER: status $status"; cat "$tmp/bad.log"; fail=1
fi
exit $fail
