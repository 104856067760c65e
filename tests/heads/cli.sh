#!/bin/sh
# train, eval and predict on models of several outputs and losses, from CSV
# tables: the two-headed model (a classifier and a reconstruction) reports
# each loss beside the total and the classifier's accuracy, on both
# backends alike; predict writes a CSV table with a header naming every
# output's columns; the autoencoder trains on a table with no target
# column; the two-headed model refuses a table without its labels.
. "${0%/*}/../lib.sh"

# 48 samples of 784 pixels in [0, 1) and a label in [0, 10).
awk 'BEGIN {
  srand(3)
  for (j = 0; j < 784; j++) printf "%simage%d", j ? "," : "", j
  print ",label"
  for (i = 0; i < 48; i++) {
    for (j = 0; j < 784; j++) printf "%s%.3f", j ? "," : "", rand()
    printf ",%d\n", int(rand() * 10)
  }
}' >"$tmp/images.csv"
cut -d, -f1-784 "$tmp/images.csv" >"$tmp/unlabeled.csv"

for backend in cpu ref; do
  NO_COLOR=1 "$nnc" train tests/heads/twohead.nn --data "$tmp/images.csv" --test "$tmp/images.csv" --epochs 2 \
    --backend "$backend" --threads 1 --out "$tmp/two-$backend" --progress none >"$tmp/two-$backend.log" 2>&1 \
    || { bad "train twohead ($backend)"; cat "$tmp/two-$backend.log"; }
  grep 'epoch 2/2' "$tmp/two-$backend.log" | sed 's/ | [0-9.]* s,.*//' >"$tmp/two-$backend.epoch"
done
if grep -q '^epoch 2/2: train loss [0-9.]* acc 0\.[0-9]* (cross_entropy(logits, label) [0-9.]*, mse(recon, image) [0-9.]*)$' \
    "$tmp/two-cpu.epoch"; then
  ok "each loss is reported beside the total, with the classifier's accuracy"
else
  bad "the epoch line"; cat "$tmp/two-cpu.log"
fi
if cmp -s "$tmp/two-cpu.epoch" "$tmp/two-ref.epoch"; then
  ok "cpu and ref report the same losses and accuracy"
else
  bad "cpu and ref differ"; cat "$tmp/two-cpu.epoch" "$tmp/two-ref.epoch"
fi
grep -q '^test: loss [0-9.]* accuracy 0\.[0-9]* (cross_entropy(logits, label) [0-9.]*, mse(recon, image) [0-9.]*)' \
  "$tmp/two-cpu.log" && ok "the test set's losses" || { bad "the test line"; cat "$tmp/two-cpu.log"; }

# metrics.csv: a column per loss of the weighted sum, for the training epoch
# and the validation set, after the others; the weighted sum of an epoch's
# terms is its loss; a row the checkpoint restores (the log lost it) keeps them.
"$nnc" train tests/heads/twohead.nn --data "$tmp/images.csv" --no-test --epochs 1 --val-split 0.25 --threads 1 \
  --out "$tmp/terms" --progress none >"$tmp/terms.log" 2>&1 || { bad "train twohead with val-split"; cat "$tmp/terms.log"; }
want=epoch,step,lr,train_loss,train_acc,val_loss,val_acc,seconds,train_cross_entropy_logits_label,train_mse_recon_image
want=$want,val_cross_entropy_logits_label,val_mse_recon_image
[ "$(head -n 1 "$tmp/terms/metrics.csv")" = "$want" ] && ok "metrics.csv has a column per loss term" ||
  { bad "metrics.csv header"; head -n 1 "$tmp/terms/metrics.csv"; }
awk -F, 'NR == 2 { d = $4 - ($9 + 0.1 * $10); e = $6 - ($11 + 0.1 * $12)
  exit !(NF == 12 && d * d < 1e-12 && e * e < 1e-12 && $11 > 0) }' "$tmp/terms/metrics.csv" &&
  ok "each loss is 1.0 * cross_entropy + 0.1 * mse of its row's terms" || { bad "the terms' columns"; cat "$tmp/terms/metrics.csv"; }
sed 2d "$tmp/terms/metrics.csv" >"$tmp/terms.csv" && cp "$tmp/terms.csv" "$tmp/terms/metrics.csv"
"$nnc" train tests/heads/twohead.nn --data "$tmp/images.csv" --no-test --epochs 2 --resume "$tmp/terms/checkpoint.safetensors" \
  --threads 1 --progress none >"$tmp/terms2.log" 2>&1 || { bad "resume twohead"; cat "$tmp/terms2.log"; }
awk -F, 'NR == 2 { exit !(NF == 12 && $8 == "" && $9 > 0 && $12 > 0) }' "$tmp/terms/metrics.csv" &&
  ok "the row the checkpoint restores keeps the terms" || { bad "the restored row"; cat "$tmp/terms/metrics.csv"; }

ck="$tmp/two-cpu/checkpoint.safetensors"
expect 0 '^losses cross_entropy(logits, label) [0-9.]*, mse(recon, image) [0-9.]*$' \
  eval tests/heads/twohead.nn --weights "$ck" --data "$tmp/images.csv"
grep -q '^loss [0-9.]*  accuracy 0\.[0-9]* ([0-9]* of 48)$' "$tmp/out" && ok "eval's accuracy is the classifier's" \
  || { bad "eval accuracy"; cat "$tmp/out"; }

NO_COLOR=1 "$nnc" predict tests/heads/twohead.nn --weights "$ck" --limit 3 "$tmp/unlabeled.csv" >"$tmp/pred.csv" 2>&1 \
  || { bad "predict twohead"; cat "$tmp/pred.csv"; }
header=$(head -1 "$tmp/pred.csv")
case "$header" in
  sample,logits0,logits1,*,logits9,recon0,recon1,*,recon783) ok "predict's header names every output's columns" ;;
  *) bad "predict header: $(echo "$header" | cut -c1-120)" ;;
esac
rows=$(awk -F, 'NR > 1 && NF == 1 + 10 + 784' "$tmp/pred.csv" | wc -l)
[ "$rows" = 3 ] && ok "a row of 794 values per sample" || { bad "predict rows: $rows"; head -c 400 "$tmp/pred.csv"; }

expect 0 '^epoch 1/1: train loss [0-9.]* |' train tests/heads/autoencoder.nn --data "$tmp/unlabeled.csv" --no-test \
  --out "$tmp/ae" --progress none
grep -q ' acc ' "$tmp/out" && { bad "an autoencoder has no accuracy"; cat "$tmp/out"; } || ok "no accuracy without a class output"
expect 0 '^loss [0-9.]*$' eval tests/heads/autoencoder.nn --weights "$tmp/ae/checkpoint.safetensors" \
  --data "$tmp/unlabeled.csv"
expect 1 "no column 'label'" train tests/heads/twohead.nn --data "$tmp/unlabeled.csv" --no-test --out "$tmp/nolabel" \
  --progress none
# --noise would reach the input the autoencoder's loss compares with: refused before training.
expect 1 "noise 0.3 would reach input 'image', which loss mse compares with" train tests/heads/autoencoder.nn \
  --data "$tmp/unlabeled.csv" --no-test --noise 0.3 --out "$tmp/ae-noise" --progress none
grep -q 'HINT: put the noise in the model instead, where the loss does not see it: `image -> gaussian_noise(0.3) -> ...`' \
  "$tmp/out" && [ ! -e "$tmp/ae-noise/checkpoint.safetensors" ] && ok "--noise on a loss's input: the hint, no training" \
  || { bad "--noise refusal"; cat "$tmp/out"; }
# nnc compile: each output's and each target's size and place in a sample's
# row; two targets whose macros would be one refused.
expect 0 '' compile tests/heads/twohead.nn -o "$tmp/two"
grep -q '^#define TWOHEAD_OUTPUT_SIZE 794 ' "$tmp/two.h" && grep -q '^#define TWOHEAD_OUTPUT_LOGITS_OFFSET 0 ' "$tmp/two.h" \
  && grep -q '^#define TWOHEAD_OUTPUT_RECON_SIZE 784$' "$tmp/two.h" && grep -q '^#define TWOHEAD_OUTPUT_RECON_OFFSET 10 ' \
  "$tmp/two.h" && ok "the header gives each output's size and offset" || { bad "header"; grep OUTPUT "$tmp/two.h"; }
printf 'model t {\n input x: f32[3]\n target a: f32[1]\n target b: f32[1]\n p = x -> linear(1)\n q = x -> linear(1)\n p, q\n}\nloss mse(p, a) + mse(q, b)\n' >"$tmp/t2.nn"
expect 0 '' compile "$tmp/t2.nn" -o "$tmp/t2"
grep -q '^#define T_TARGET_SIZE 2 ' "$tmp/t2.h" && grep -q '^#define T_TARGET_B_OFFSET 1 ' "$tmp/t2.h" &&
  grep -q '^typedef union t_target {' "$tmp/t2.h" && ok "the header gives each target's size and offset" ||
  { bad "target macros"; grep TARGET "$tmp/t2.h"; }
sed 's/target b:/target A:/; s/mse(q, b)/mse(q, A)/' "$tmp/t2.nn" >"$tmp/t3.nn"
expect 1 "model 't': targets 'a' and 'A' would both be PREFIX_TARGET_A_SIZE in the header" compile "$tmp/t3.nn" -o "$tmp/t3"

# Two targets from one table (a class and a box), on cpu and ref alike; a
# label outside its classes is refused with the sample and the target.
awk 'BEGIN {
  srand(5)
  for (j = 0; j < 16; j++) printf "x%d,", j
  print "box0,box1,box2,box3,label"
  for (i = 0; i < 40; i++) {
    for (j = 0; j < 16; j++) printf "%.3f,", rand()
    for (j = 0; j < 4; j++) printf "%.3f,", rand()
    printf "%d\n", int(rand() * 3)
  }
}' >"$tmp/detect.csv"
for backend in cpu ref; do
  NO_COLOR=1 "$nnc" train tests/heads/detect.nn --data "$tmp/detect.csv" --test "$tmp/detect.csv" --epochs 3 \
    --backend "$backend" --threads 1 --out "$tmp/det-$backend" --progress none >"$tmp/det-$backend.log" 2>&1 \
    || { bad "train detect ($backend)"; cat "$tmp/det-$backend.log"; }
  grep '^test:' "$tmp/det-$backend.log" >"$tmp/det-$backend.test"
done
grep -q '^test: loss [0-9.]* accuracy 0\.[0-9]* (cross_entropy(logits, label) [0-9.]*, mse(coords, box) [0-9.]*)' \
  "$tmp/det-cpu.test" && cmp -s "$tmp/det-cpu.test" "$tmp/det-ref.test" \
  && ok "two targets from a table: each loss and the accuracy, cpu and ref alike" \
  || { bad "two targets"; cat "$tmp/det-cpu.log" "$tmp/det-ref.log"; }
awk -F, 'NR == 4 { $NF = 7 } { print }' OFS=, "$tmp/detect.csv" >"$tmp/detect-bad.csv"
expect 1 "sample 2: label 7 of target 'label' is not a class in \[0, 3)" train tests/heads/detect.nn \
  --data "$tmp/detect-bad.csv" --no-test --out "$tmp/det-bad" --progress none

# Two classifiers after a real-valued target: each one's accuracy, checked
# against the argmax of predict's columns.
awk 'BEGIN {
  srand(7)
  for (j = 0; j < 8; j++) printf "x%d,", j
  print "box0,box1,kind,label"
  for (i = 0; i < 40; i++) {
    for (j = 0; j < 8; j++) printf "%.3f,", rand()
    printf "%.3f,%.3f,%d,%d\n", rand(), rand(), int(rand() * 3), int(rand() * 4)
  }
}' >"$tmp/twoclass.csv"
expect 0 '' train tests/heads/twoclass.nn --data "$tmp/twoclass.csv" --no-test --epochs 3 --threads 1 \
  --out "$tmp/tc" --progress none
grep -q '^epoch 3/3: .* (acc kind 0\.[0-9]*, label 0\.[0-9]*) |' "$tmp/out" && ok "each classifier's accuracy per epoch" \
  || { bad "two classifiers' accuracy"; cat "$tmp/out"; }
expect 0 '^accuracies kind 0\.[0-9]*, label 0\.[0-9]*$' eval tests/heads/twoclass.nn \
  --weights "$tmp/tc/checkpoint.safetensors" --data "$tmp/twoclass.csv"
reported=$(sed -n 's/^accuracies kind \([0-9.]*\), label \([0-9.]*\)$/kind \1 label \2/p' "$tmp/out")
NO_COLOR=1 "$nnc" predict tests/heads/twoclass.nn --weights "$tmp/tc/checkpoint.safetensors" "$tmp/twoclass.csv" \
  >"$tmp/tc.pred" 2>&1
counted=$(paste -d, "$tmp/tc.pred" "$tmp/twoclass.csv" | awk -F, 'NR > 1 {
  bk = 0; for (j = 1; j < 3; j++) if ($(4 + j) > $(4 + bk)) bk = j
  bl = 0; for (j = 1; j < 4; j++) if ($(7 + j) > $(7 + bl)) bl = j
  ck += bk == $(NF - 1); cl += bl == $NF; n++
} END { printf "kind %.4f label %.4f", ck / n, cl / n }')
[ "$reported" = "$counted" ] && ok "eval's accuracies are predict's argmax against the labels ($counted)" \
  || bad "eval says '$reported', predict's columns give '$counted'"

# IDX images without a labels file (where Debian's Fashion-MNIST is installed).
data=/usr/share/datasets/fashion-mnist
if [ -d "$data" ]; then
  mkdir "$tmp/idx" && cp "$data/train-images-idx3-ubyte.gz" "$tmp/idx/"
  expect 0 '^epoch 1/1: train loss' train tests/heads/autoencoder.nn --data "$tmp/idx" --limit 256 --no-test \
    --out "$tmp/ae-idx" --progress none
  expect 1 'no train data found; looked for train-labels' train tests/heads/twohead.nn --data "$tmp/idx" --limit 256 \
    --no-test --out "$tmp/two-idx" --progress none
fi
exit $fail
