#!/bin/sh
# The plateau schedule end to end: the rate falls when the validation loss
# stops improving (metrics.csv's lr column), a run resumed halfway keeps the
# schedule's state and logs the same rows as one that ran through, and a run
# without a validation set is refused before it starts.
. "${0%/*}/../lib.sh"
awk 'BEGIN { print "t0,t1,speed"; s = 7
  for (i = 0; i < 80; i++) { s = (s * 1103515245 + 12345) % 2147483648; t = s / 2147483648 * 4 - 2
    printf "%.6f,%.6f,%.6f\n", t, t * t, 2 * t * t - 3 * t + 0.5 } }' >"$tmp/q.csv"
m=tests/train/plateau.nn
expect 0 "" train $m --data "$tmp/q.csv" --out "$tmp/all" --progress none
expect 0 "" train $m --data "$tmp/q.csv" --out "$tmp/half" --progress none --epochs 3
expect 0 "" train $m --data "$tmp/q.csv" --out "$tmp/half" --progress none --resume "$tmp/half/checkpoint.safetensors"
cut -d, -f1-7 "$tmp/all/metrics.csv" >"$tmp/all.rows"
cut -d, -f1-7 "$tmp/half/metrics.csv" >"$tmp/half.rows"
if cmp -s "$tmp/all.rows" "$tmp/half.rows"; then
  ok "a run resumed after epoch 3 logs the rows of the run that went through"
else
  bad "the resumed run differs:"; diff "$tmp/all.rows" "$tmp/half.rows"
fi
lrs=$(cut -d, -f3 "$tmp/all.rows" | tail -n +2 | sort -u | wc -l)
first=$(sed -n 2p "$tmp/all.rows" | cut -d, -f3) last=$(tail -n 1 "$tmp/all.rows" | cut -d, -f3)
if [ "$first" = 0.02 ] && [ "$lrs" -ge 2 ] && awk -v a="$last" 'BEGIN { exit !(a < 0.02) }'; then
  ok "the rate starts at lr and falls ($lrs rates, the last $last)"
else
  bad "the rate did not fall: first $first, last $last, $lrs rates"; cat "$tmp/all.rows"
fi
if grep -q '"plateau":"lr=' "$tmp/all/checkpoint.safetensors"; then
  ok "the checkpoint keeps the schedule's state"
else
  bad "no plateau state in the checkpoint"
fi
expect 1 "this run has no validation set" train $m --data "$tmp/q.csv" --out "$tmp/none" --val-split 0
exit $fail
