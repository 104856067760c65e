#!/bin/sh
# examples/two_models: mlp and cnn, compiled ahead of time, linked into one
# program (that it links at all shows their symbols do not collide), each
# trained on the first 4000 training samples and both classifying the first
# 2000 test images. Each model's accuracy must be well above chance (10%);
# this pass gave mlp 0.749 and cnn 0.640 when the test was written.
#
#   two_models.sh NNC SOURCE_TREE TWO_MODELS
. "${0%/*}/../lib.sh"
two_models=$3
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skip: $data not installed"; exit 77; }

"$two_models" "$data" 4000 2000 >"$tmp/out" 2>&1 || { bad "two_models exited $?"; cat "$tmp/out"; exit 1; }
cat "$tmp/out"
line=$(grep '^on 2000 test images: ' "$tmp/out")
set -- $(echo "$line" | sed -E 's/.*mlp accuracy ([0-9.]+), cnn accuracy ([0-9.]+), they agree on ([0-9.]+)$/\1 \2 \3/')
if [ $# = 3 ] && awk -v m="$1" -v c="$2" -v a="$3" 'BEGIN { exit !(m > 0.6 && c > 0.3 && a > 0.2 && a <= 1) }'; then
  ok "mlp $1, cnn $2, agreement $3"
else
  bad "accuracies: '$line'"
fi

"$two_models" "$data" 0 >"$tmp/out" 2>&1
status=$?
[ $status = 2 ] && grep -q "^usage: two_models DATA_DIR .*(counts from 1 up)" "$tmp/out" \
  && ok "a sample count of 0 is refused" || { bad "count 0: status $status"; cat "$tmp/out"; }
"$two_models" "$tmp/none" >"$tmp/out" 2>&1
status=$?
[ $status = 1 ] && grep -q "^two_models: $tmp/none/train-images-idx3-ubyte.gz: .*No such file" "$tmp/out" \
  && ok "a missing data directory" || { bad "missing data: status $status"; cat "$tmp/out"; }
exit $fail
