#!/bin/sh
# Crash safety of a run directory: a short training is killed with SIGKILL
# at points drawn from a seeded sequence, and resumed each time. After every
# kill the checkpoint must load (the next resume loads it), no temporary file
# of an earlier process may be left, and the metrics log must agree with
# the checkpoint: rows 1..E, or 1..E-1 when the kill fell between the
# checkpoint and its row. At the end the resumed run's checkpoint must equal
# an uninterrupted run's bit for bit, and so must its metrics (but seconds).
. "${0%/*}/../lib.sh"

# 256 samples of 28x28 "images" whose class shows in every tenth pixel.
awk 'BEGIN { srand(1); printf "label"; for (j = 0; j < 784; j++) printf ",pixel%d", j; print ""
  for (i = 0; i < 256; i++) { l = i % 10; printf "%d", l
    for (j = 0; j < 784; j++) printf ",%d", j % 10 == l ? 200 + int(rand() * 50) : int(rand() * 30); print "" } }' \
  >"$tmp/data.csv"

epochs=120
set -- models/logreg.nn --data "$tmp/data.csv" --no-test --backend ref --threads 1 --batch 8 --epochs $epochs \
  --seed 3 --progress none -q
train() { "$nnc" train "$@"; }   # train OPTIONS --out OUT: the same run every time
ms() { date +%s%N | cut -c1-13; }

t0=$(ms)
train "$@" --out "$tmp/ref" || { echo "FAIL the uninterrupted run"; exit 1; }
span=$(($(ms) - t0))
echo "the uninterrupted run took $span ms"

# The checkpoint's epoch, from its JSON header; empty when there is none.
ckpt_epoch() {
  [ -f "$1" ] && head -c 400 "$1" | tr -c '[:print:]' ' ' | sed -n 's/.*"epoch":"\([0-9]*\)".*/\1/p'
}

run=$tmp/run
kills=0
for delay in $(awk -v n=16 -v span="$span" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "%d\n", rand() * span / 10 }'); do
  resume=
  [ -f "$run/checkpoint.safetensors" ] && resume=--resume=$run/checkpoint.safetensors
  "$nnc" train "$@" --out "$run" $resume 2>"$tmp/err" &   # not through a function: $! is nnc's pid
  pid=$!
  sleep "$(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }')"
  kill -9 $pid 2>/dev/null
  wait $pid
  status=$?
  [ $status = 137 ] && kills=$((kills + 1))
  if [ $status != 137 ] && [ $status != 0 ]; then
    bad "a run (after ${delay} ms) ended with status $status"; cat "$tmp/err"
  fi
  # Once the killed process held the lock (and wrote its pid there), it
  # had removed the temporaries of earlier ones: only its own may be left.
  others='*.tmp.*'
  [ "$(cat "$run/train.lock" 2>/dev/null)" = $pid ] && others=
  for f in "$run"/*; do
    [ -e "$f" ] || continue
    case ${f##*/} in
      checkpoint.safetensors|metrics.csv|train.lock) ;;
      checkpoint.safetensors.tmp.$pid.*|metrics.csv.tmp.$pid.*) ;;
      $others) ;;
      *) bad "after a kill at ${delay} ms: unexpected file ${f##*/} (pid $pid was killed)" ;;
    esac
  done
  e=$(ckpt_epoch "$run/checkpoint.safetensors")
  rows=$(awk -F, 'NR > 1 { if ($1 != NR - 1) { print "gap"; exit } n = $1 } END { print n + 0 }' "$run/metrics.csv" 2>/dev/null)
  e=${e:-0}
  if [ -f "$run/metrics.csv" ] && [ "$rows" != "$e" ] && [ "$rows" != "$((e - 1))" ]; then
    bad "after a kill at ${delay} ms: the checkpoint is at epoch $e, the metrics log has rows 1..$rows"
  fi
done

# Every kill may have come before the first checkpoint (a loaded machine
# starts slowly): then the last run starts afresh, as the kills' runs did.
resume=
[ -f "$run/checkpoint.safetensors" ] && resume=--resume=$run/checkpoint.safetensors
train "$@" --out "$run" $resume || bad "the last resume failed"
echo "$kills runs killed"
[ $kills -ge 4 ] || bad "only $kills of 16 runs were killed before they ended"
cmp -s "$tmp/ref/checkpoint.safetensors" "$run/checkpoint.safetensors" \
  || bad "the resumed checkpoint differs from the uninterrupted one"
cut -d, -f1-7 "$tmp/ref/metrics.csv" >"$tmp/ref.rows"
cut -d, -f1-7 "$run/metrics.csv" >"$tmp/run.rows"
cmp -s "$tmp/ref.rows" "$tmp/run.rows" || { bad "the metrics differ from the uninterrupted run's"; diff "$tmp/ref.rows" "$tmp/run.rows" | head; }
left=$(ls "$run" | grep -c tmp)
[ "$left" = 0 ] || bad "$left temporary files are left"
[ $fail = 0 ] && echo "ok   $kills kills: the checkpoint always loaded, no stale temporaries, metrics agreed"
exit $fail
