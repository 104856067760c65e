#!/bin/sh
# End to end: `nnc train`, `eval` and `predict` on a subset of Fashion-MNIST
# (skipped when Debian's dataset-fashion-mnist package is not installed).
# Checks that the same seed and thread count give bit-identical weights,
# that 2 epochs equal 1 epoch + resume + 1 epoch bit for bit, that a
# checkpoint of another model is refused, and that a diverging run stops
# with the op that went non-finite.
. "${0%/*}/../lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skip: $data not installed"; exit 77; }

train() {   # train OUT EPOCHS [more options]
  out=$1 epochs=$2
  shift 2
  NO_COLOR=1 "$nnc" train models/mlp100.nn --limit 3000 --test-limit 1000 --seed 7 --threads 1 \
    --epochs "$epochs" --out "$tmp/$out" --progress none "$@" >"$tmp/$out.log" 2>&1
}

train a 2 || { bad "training failed"; cat "$tmp/a.log"; }
train b 2
if cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors"; then
  ok "the same seed and threads give bit-identical checkpoints"
else
  bad "two runs with the same seed differ"
fi
train c 1
train c 2 --resume "$tmp/c/checkpoint.safetensors"
if cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/c/checkpoint.safetensors"; then
  ok "1 epoch + resume + 1 epoch equals 2 epochs, bit for bit"
else
  bad "the resumed run differs from the uninterrupted one"; cat "$tmp/c.log"
fi
acc=$(awk '/^test:/ { print $5 }' "$tmp/a.log")
if awk -v a="$acc" 'BEGIN { exit !(a > 0.70) }'; then ok "test accuracy $acc on 1000 samples"; else bad "test accuracy '$acc'"; cat "$tmp/a.log"; fi
lines=$(wc -l <"$tmp/a/metrics.csv")
[ "$lines" = 3 ] && ok "metrics log has a header and 2 epochs" || bad "metrics.csv has $lines lines"
train j 1 --metrics json --val-split 0.1
grep -q '"val_acc": 0\.' "$tmp/j/metrics.jsonl" && ok "JSON metrics with validation" || bad "no validation in metrics.jsonl"

"$nnc" eval models/mlp100.nn --weights "$tmp/a/checkpoint.safetensors" --limit 500 >"$tmp/eval.log" 2>&1 \
  && grep -q '^confusion matrix' "$tmp/eval.log" && grep -q 'accuracy 0\.' "$tmp/eval.log" \
  && ok "eval prints accuracy, per-class accuracy and the confusion matrix" || { bad "eval"; cat "$tmp/eval.log"; }

"$nnc" eval models/mlp.nn --weights "$tmp/a/checkpoint.safetensors" >"$tmp/wrong.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q "tensor 'linear_1.weight' is F32 \[100,784\] in the checkpoint but f32\[512,784\] in this model" "$tmp/wrong.log"; then
  ok "a checkpoint of another model is refused, naming the tensor"
else
  bad "wrong-model checkpoint: status $status"; cat "$tmp/wrong.log"
fi

"$nnc" predict models/mlp100.nn --weights "$tmp/a/checkpoint.safetensors" --limit 3 --top 2 \
  "$data/t10k-images-idx3-ubyte.gz" >"$tmp/pred.log" 2>&1
[ "$(grep -c '^/.*\[[0-2]\]:  [0-9] (0\.[0-9]*)  [0-9] (0\.[0-9]*)$' "$tmp/pred.log")" = 3 ] \
  && ok "predict on an IDX file: top-2 classes with probabilities" || { bad "predict IDX"; cat "$tmp/pred.log"; }
{ printf 'P2\n4 4\n255\n'; for i in 1 2 3 4; do echo "0 255 255 0"; done; } >"$tmp/img.pgm"
"$nnc" predict models/mlp100.nn --weights "$tmp/a/checkpoint.safetensors" "$tmp/img.pgm" >"$tmp/pgm.log" 2>&1 \
  && grep -q "img.pgm:  [0-9] (0\." "$tmp/pgm.log" && ok "predict on a PGM image" || { bad "predict PGM"; cat "$tmp/pgm.log"; }

NO_COLOR=1 "$nnc" train models/mlp100.nn --limit 640 --lr 1e5 --out "$tmp/nan" --progress none >"$tmp/nan.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q 'training stopped at epoch 1, step [0-9]*: the loss is [-a-z]*; \(the first op whose output is not finite is\|.linear_[0-9].[a-z]*. is no longer finite\)' "$tmp/nan.log"; then
  ok "a diverging run stops at the first non-finite op"
else
  bad "diverging run: status $status"; cat "$tmp/nan.log"
fi

printf 'model m {\n    input image: f32[28, 28]\n    target label: class(10)\n    image -> flatten -> linear(10) -> log\n}\nloss cross_entropy\n' >"$tmp/logneg.nn"
NO_COLOR=1 "$nnc" train "$tmp/logneg.nn" --limit 64 --out "$tmp/logneg" --progress none >"$tmp/logneg.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q "logneg.nn:4:39: error: training stopped at epoch 1, step 1: the loss is [-a-z]*; the first op whose output is not finite is log in 'log_1'" "$tmp/logneg.log"; then
  ok "a non-finite forward value is traced to its op and .nn line"
else
  bad "log of negatives: status $status"; cat "$tmp/logneg.log"
fi

"$nnc" train models/quadratic.nn --out "$tmp/q" >"$tmp/quad.log" 2>&1
[ $? = 1 ] && grep -q "is a directory of images, but model 'quadratic' has the real-valued target 'speed'" "$tmp/quad.log" \
  && ok "a real-valued model pointed at image data is told to give a CSV" || { bad "quadratic on images"; cat "$tmp/quad.log"; }

"$nnc" train models/mlp100.nn --data "$tmp/none" --out "$tmp/x" >"$tmp/nodata.log" 2>&1
[ $? = 1 ] && grep -q "none: No such file or directory" "$tmp/nodata.log" && ok "missing data is reported" \
  || { bad "missing data"; cat "$tmp/nodata.log"; }
exit $fail
