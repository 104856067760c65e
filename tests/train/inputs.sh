#!/bin/sh
# train, eval and predict on models of several inputs and real-valued
# targets, from CSV tables named by column, on both backends: every input
# is fed (a model whose weights are known gives outputs computed here by
# hand; a trained one recovers the second input's coefficient), predict
# reads the tables train reads, unscaled and normalized as in training,
# and data that does not fit the model is refused with the shapes named.
. "${0%/*}/../lib.sh"

# y = p*a + q*b + c with known weights; a learning rate of 1e-30 leaves
# them as they are (each update rounds away), so the checkpoint holds them.
cat >"$tmp/fixed.nn" <<'EOF'
model fixed {
    input  a: f32[]
    input  b: f32[]
    target y: f32[]
    param  p: f32[] = constant(3)
    param  q: f32[] = constant(-2)
    param  c: f32[] = constant(0.5)
    p * a + q * b + c
}
loss mse
train { epochs = 1, batch = 4 }
EOF
# the target first and an extra column: columns are found by name
printf 'y,note,b,a\n13,first,-4,1.5\n-1409.5,x,255,-300\n0.5,,0,0\n1.5,y,1,1\n' >"$tmp/fixed.csv"
for backend in cpu ref; do
  NO_COLOR=1 "$nnc" train "$tmp/fixed.nn" --data "$tmp/fixed.csv" --lr 1e-30 --out "$tmp/fixed-$backend" \
    --backend "$backend" --progress none -q >"$tmp/log" 2>&1 || { bad "train fixed ($backend)"; cat "$tmp/log"; }
  ck="$tmp/fixed-$backend/checkpoint.safetensors"
  # predict: f(a, b) computed by hand, with no scaling of values outside 0..255
  "$nnc" predict "$tmp/fixed.nn" --weights "$ck" --backend "$backend" "$tmp/fixed.csv" >"$tmp/pred" 2>&1
  printf '%s[0]: 13\n%s[1]: -1409.5\n%s[2]: 0.5\n%s[3]: 1.5\n' "$tmp/fixed.csv" "$tmp/fixed.csv" "$tmp/fixed.csv" \
    "$tmp/fixed.csv" >"$tmp/want"
  cmp -s "$tmp/pred" "$tmp/want" && ok "predict feeds both inputs, unscaled ($backend)" \
    || { bad "predict on two inputs ($backend)"; diff "$tmp/want" "$tmp/pred"; }
  # eval: targets off by 1 and 3 from f give an MSE of (1 + 9) / 2 = 5
  printf 'a,b,y\n1.5,-4,14\n0,0,-2.5\n' >"$tmp/off.csv"
  expect 0 '^loss 5\.0000$' eval "$tmp/fixed.nn" --weights "$ck" --data "$tmp/off.csv" --backend "$backend"
done

# Training moves the second input's weight: y = a + 4b - 1, from p = 3,
# q = -2, c = 0.5; with --normalize, predict standardizes as train did.
awk 'BEGIN { print "a,b,y"; for (i = 0; i < 64; i++) { a = (i % 8) / 4 - 1; b = int(i / 8) / 4 - 1;
  print a "," b "," a + 4 * b - 1 } }' >"$tmp/lin.csv"
printf 'a,b\n0.5,0.25\n-2,3\n' >"$tmp/new.csv"
for norm in "" --normalize; do
  NO_COLOR=1 "$nnc" train "$tmp/fixed.nn" --data "$tmp/lin.csv" --lr 0.1 --epochs 60 --batch 8 $norm \
    --out "$tmp/lin$norm" --progress none -q >"$tmp/log" 2>&1 || { bad "train lin $norm"; cat "$tmp/log"; }
  "$nnc" predict "$tmp/fixed.nn" --weights "$tmp/lin$norm/checkpoint.safetensors" "$tmp/new.csv" >"$tmp/pred" 2>&1
  # f(0.5, 0.25) = 0.5, f(-2, 3) = 9
  if awk '/\[0\]:/ { e0 = $2 - 0.5 } /\[1\]:/ { e1 = $2 - 9 }
          END { exit !(e0 * e0 < 1e-6 && e1 * e1 < 1e-6) }' "$tmp/pred"; then
    ok "training recovers both inputs' coefficients ${norm:-(not normalized)}"
  else
    bad "trained predictions ${norm:-(not normalized)}"; cat "$tmp/pred" "$tmp/log"
  fi
done

# A class target with two inputs, from a table: the label is a0 + b > 0.
cat >"$tmp/cls.nn" <<'EOF'
model cls {
    input  a: f32[2]
    input  b: f32[1]
    target label: class(2)
    (a -> linear(2)) + (b -> linear(2))
}
loss cross_entropy
optimizer sgd(lr = 0.5)
train { epochs = 40, batch = 16 }
EOF
awk 'BEGIN { print "label,a0,a1,b"; for (i = 0; i < 128; i++) { a = (i % 16) / 8 - 1; b = int(i / 16) / 4 - 0.9;
  print (a + b > 0 ? 1 : 0) "," a "," (i % 3) "," b } }' >"$tmp/cls.csv"
NO_COLOR=1 "$nnc" train "$tmp/cls.nn" --data "$tmp/cls.csv" --out "$tmp/cls" --progress none -q >"$tmp/log" 2>&1 \
  || { bad "train cls"; cat "$tmp/log"; }
"$nnc" eval "$tmp/cls.nn" --weights "$tmp/cls/checkpoint.safetensors" --data "$tmp/cls.csv" >"$tmp/eval" 2>&1
acc=$(awk '/^loss/ { print $4 }' "$tmp/eval")
awk -v a="$acc" 'BEGIN { exit !(a >= 0.95) }' && ok "two inputs and a class target: accuracy $acc" \
  || { bad "cls accuracy '$acc'"; cat "$tmp/eval" "$tmp/log"; }
printf 'a0,a1,b\n1,0,0.9\n-1,0,-0.9\n' >"$tmp/cls-new.csv"
expect 0 "cls-new.csv\[0\]:  1 ([01]\.[0-9]*)  0 ([01]\.[0-9]*)$" predict "$tmp/cls.nn" \
  --weights "$tmp/cls/checkpoint.safetensors" "$tmp/cls-new.csv"
grep -q "cls-new.csv\[1\]:  0 (" "$tmp/out" && ok "predict: classes from two inputs" || { bad "cls predict"; cat "$tmp/out"; }

# What does not fit, for several inputs
ck="$tmp/fixed-cpu/checkpoint.safetensors"
printf 'label,pixel0,pixel1\n1,0,255\n' >"$tmp/pixels.csv"
expect 1 "pixels.csv: a CSV file in the label,pixel0,... layout holds one input, but model 'fixed' has 2 ('a', 'b')" \
  train "$tmp/fixed.nn" --data "$tmp/pixels.csv" --out "$tmp/x"
expect 1 "HINT: give a CSV file with a column for each value of every input and the target, named after them (a,b,y)" \
  train "$tmp/fixed.nn" --data "$tmp/pixels.csv" --out "$tmp/x"
mkdir "$tmp/idx"
expect 1 "a directory of IDX files holds one input, but model 'fixed' has 2" eval "$tmp/fixed.nn" --weights "$ck" \
  --data "$tmp/idx"
{ printf 'P2\n2 2\n255\n'; echo "0 255 255 0"; } >"$tmp/img.pgm"
expect 1 "img.pgm: an image holds one input, but model 'fixed' has 2" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/img.pgm"
printf 'a,b,a\n1,2,3\n' >"$tmp/dup.csv"
expect 1 "dup.csv: line 1: the column 'a' appears twice, as columns 1 and 3" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/dup.csv"
printf 'a\n1\n' >"$tmp/nob.csv"
expect 1 "nob.csv: line 1: no column 'b'" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/nob.csv"

# predict prints every digit a float needs: 3 * 218107.25 + 0.5 is
# 654322.25, which six digits round to 654322
printf 'a,b\n218107.25,0\n' >"$tmp/wide.csv"
expect 0 "^.*wide.csv: 654322.25$" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/wide.csv"
# a table whose header starts like a PGM's magic (P1) is still a table
sed 's/\bb\b/P1/g; s/\* b/* P1/' "$tmp/fixed.nn" >"$tmp/p1.nn"
printf 'P1,a\n-4,1.5\n' >"$tmp/p1.csv"
expect 0 "^.*p1.csv: 13$" predict "$tmp/p1.nn" --weights "$ck" "$tmp/p1.csv"

# Only the exact Kaggle header (label,pixel0,pixel1,...) is read as pixels,
# scaled by 1/255; for an input named pixel, a header in another order is
# a table, unscaled (pixel0,pixel1,label was taken for three pixels, and
# pixel1,pixel0,label for a table: the order of the columns decided the
# scaling). The logits are the pixels: 100 and 200, or 0.39 and 0.78.
cat >"$tmp/px.nn" <<'EOF'
model px {
    input  pixel: f32[2]
    target label: class(2)
    param  w: f32[2] = constant(1)
    pixel * w
}
loss cross_entropy
EOF
printf 'label,pixel0,pixel1\n1,100,200\n' >"$tmp/px.csv"
NO_COLOR=1 "$nnc" train "$tmp/px.nn" --data "$tmp/px.csv" --epochs 0 --out "$tmp/px" -q >"$tmp/log" 2>&1 || { bad "train px"; cat "$tmp/log"; }
for header in "label,pixel0,pixel1:1,100,200:0.5968" "pixel0,pixel1:100,200:0.5968" "pixel0,pixel1,label:100,200,1:1.0000" \
    "pixel1,pixel0,label:200,100,1:1.0000" "label,pixel1,pixel0:1,200,100:1.0000"; do
  printf '%s\n%s\n' "$(echo "$header" | cut -d: -f1)" "$(echo "$header" | cut -d: -f2)" >"$tmp/pxh.csv"
  expect 0 "pxh.csv:  1 (${header##*:})" predict "$tmp/px.nn" --weights "$tmp/px/checkpoint.safetensors" "$tmp/pxh.csv"
done

# predict reports the loader's own message, and what it takes
printf 'a,b\n1,x2\n' >"$tmp/bad.csv"
expect 1 "bad.csv: line 2, column 2 (b): 'x2' is not a number" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/bad.csv"
expect 1 "idx: is a directory" predict "$tmp/fixed.nn" --weights "$ck" "$tmp/idx"
expect 1 "HINT: predict reads files: PNG or PGM images, IDX files of images, or CSV files" \
  predict "$tmp/fixed.nn" --weights "$ck" "$tmp/idx"
expect 2 "--top needs a whole number from 1 to 1000, found '1001'" predict "$tmp/fixed.nn" --weights "$ck" --top 1001 x
# a real-valued model reads tables, as in training: no /255 for pixel columns
printf 't,speed\n1,2\n' >"$tmp/q.csv"
expect 0 "" train models/quadratic.nn --data "$tmp/q.csv" --epochs 1 --out "$tmp/q" --progress none -q
expect 1 "pixels.csv: line 1: no column 't'" predict models/quadratic.nn --weights "$tmp/q/checkpoint.safetensors" \
  "$tmp/pixels.csv"

# IDX images whose shape is not the input's: refused, both shapes named;
# 28x28 images for cnn's f32[1, 28, 28] are the MNIST case and fit.
idx() {   # idx FILE ROWS COLS: 2 ubyte images, and FILE's labels
  { printf '\000\000\010\003\000\000\000\002\000\000\000'; printf "\\$(printf %03o "$2")"
    printf '\000\000\000'; printf "\\$(printf %03o "$3")"; head -c $(( 2 * $2 * $3 )) /dev/zero; } >"$1"
}
mkdir "$tmp/wide" "$tmp/square"
idx "$tmp/wide/train-images-idx3-ubyte" 16 49
idx "$tmp/square/train-images-idx3-ubyte" 28 28
for d in wide square; do
  printf '\000\000\010\001\000\000\000\002\001\002' >"$tmp/$d/train-labels-idx1-ubyte"
done
expect 1 "ubyte: samples are 16x49, but the model's input 'image' is f32\[1, 28, 28\]" \
  train models/cnn.nn --data "$tmp/wide" --out "$tmp/x" --backend ref
expect 0 "" train models/cnn.nn --data "$tmp/square" --out "$tmp/cnn" --backend ref --batch 2 --no-test --progress none -q
expect 1 "samples are 16x49, but the model's input 'image' is f32\[1, 28, 28\]" \
  predict models/cnn.nn --weights "$tmp/cnn/checkpoint.safetensors" "$tmp/wide/train-images-idx3-ubyte"
expect 0 "train-images-idx3-ubyte\[1\]:  [0-9]" \
  predict models/cnn.nn --weights "$tmp/cnn/checkpoint.safetensors" "$tmp/square/train-images-idx3-ubyte"
# a scalar input counts its one value in the singular
mkdir "$tmp/small"
idx "$tmp/small/train-images-idx3-ubyte" 2 3
cp "$tmp/wide/train-labels-idx1-ubyte" "$tmp/small/"
printf 'model s {\n    input x: f32[]\n    target y: class(3)\n    param w: f32[3] = ones\n    (x -> reshape(1)) * w\n}\nloss cross_entropy\n' >"$tmp/scalar.nn"
expect 1 "samples have 6 values (2x3), but the model's input 'x' is f32\[\] (1 value)$" \
  train "$tmp/scalar.nn" --data "$tmp/small" --out "$tmp/x" --backend ref

# A batchnorm over [N, C] cannot train on a batch of one sample: 9 samples
# in batches of 4 leave one, refused before training starts with a batch
# size that works (it stopped in the last batch, hinting at no option).
cat >"$tmp/bn.nn" <<'EOF2'
model bn {
    input  x: f32[3]
    target y: f32[3]
    x -> linear(3) -> batchnorm
}
loss mse
train { batch = 4 }
EOF2
awk 'BEGIN { print "x0,x1,x2,y0,y1,y2"; for (i = 0; i < 9; i++) print i "," (-i) ",1,0,1," i }' >"$tmp/bn.csv"
expect 1 "batchnorm_1: training needs more than one value per channel, but 9 training samples in batches of 4 leave a last batch of 1 sample" \
  train "$tmp/bn.nn" --data "$tmp/bn.csv" --out "$tmp/bn"
grep -q -- "---> HINT: use --batch 3 (no batch of one), or --limit 8" "$tmp/out" && ok "batch size hint" || bad "batch size hint"
test -e "$tmp/bn/checkpoint.safetensors" && bad "a refused run wrote a checkpoint"
expect 1 "but batches of 1 sample give it one" train "$tmp/bn.nn" --data "$tmp/bn.csv" --out "$tmp/bn" --batch 1
expect 0 "" train "$tmp/bn.nn" --data "$tmp/bn.csv" --out "$tmp/bn" --batch 3 --progress none -q
exit $fail
