#!/bin/sh
# Data augmentation declared in `train {}` and on the command line: the
# same seed gives the same checkpoint bytes on 1 and 2 threads and after a
# resume in the middle; augmenting changes what trains, and the command
# line can turn each transform off again; validation is not augmented;
# values out of range and augmenting a model without an image input are
# refused.
. "${0%/*}/../lib.sh"

# 4x4 images whose label says whether the bright pixel lies in the top half.
cat >"$tmp/aug.nn" <<'EOF2'
model aug {
    input  x: f32[1, 4, 4]
    target label: class(2)
    x -> conv2d(2, 3, pad = 1) -> relu -> flatten -> linear(2)
}
loss cross_entropy
optimizer sgd(lr = 0.1, momentum = 0.9)
train { epochs = 2, batch = 8, shift = 1, crop = 1, hflip = true, rotate = 15, noise = 0.1 }
EOF2
sed 's/, shift = 1, crop = 1, hflip = true, rotate = 15, noise = 0.1//' "$tmp/aug.nn" >"$tmp/plain.nn"
awk 'BEGIN { printf "label"; for (k = 0; k < 16; k++) printf ",x%d", k; print "";
  for (i = 0; i < 40; i++) { p = (i * 7) % 16; printf "%d", p < 8; for (k = 0; k < 16; k++) printf ",%s", k == p ? "1" : "0.1"; print "" } }' \
  >"$tmp/img.csv"

train() {   # train OUT MODEL ARGS...
  out=$1 model=$2
  shift 2
  "$nnc" train "$model" --data "$tmp/img.csv" --out "$tmp/$out" --progress none "$@" >"$tmp/$out.log" 2>&1 ||
    { bad "training $out"; cat "$tmp/$out.log"; }
}
same() {   # same A B WHAT
  if cmp -s "$tmp/$1/checkpoint.safetensors" "$tmp/$2/checkpoint.safetensors"; then ok "$3"; else bad "$3"; fi
}
train a1 "$tmp/aug.nn" -j 1
train r1 "$tmp/aug.nn" -j 1 --backend ref
train r2 "$tmp/aug.nn" -j 2 --backend ref
train a1again "$tmp/aug.nn" -j 1
same a1 a1again "augmented: the same seed, the same bytes"
same r1 r2 "augmented: 1 and 2 threads, the same bytes (ref: the cpu backend's sums depend on the threads)"
train half "$tmp/aug.nn" -j 1 --epochs 1
train half "$tmp/aug.nn" -j 1 --resume "$tmp/half/checkpoint.safetensors" --epochs 2
same a1 half "augmented: a resumed run, the same bytes"
train p "$tmp/plain.nn" -j 1
if cmp -s "$tmp/a1/checkpoint.safetensors" "$tmp/p/checkpoint.safetensors"; then
  bad "augmentation changed nothing"
else
  ok "augmentation changes the training"
fi
train off "$tmp/aug.nn" -j 1 --shift 0 --crop 0 --no-hflip --rotate 0 --noise 0
same p off "the command line turns every transform off"
train on "$tmp/plain.nn" -j 1 --shift 1 --crop 1 --hflip --rotate 15 --noise 0.1
same a1 on "the command line gives the declaration's augmentation"
train n "$tmp/plain.nn" -j 1 --noise 0.1 --seed 3
train n2 "$tmp/plain.nn" -j 1 --noise 0.1 --seed 4
if cmp -s "$tmp/n/checkpoint.safetensors" "$tmp/n2/checkpoint.safetensors"; then
  bad "the noise does not follow the seed"
else
  ok "the noise follows the seed"
fi

# Validation is never augmented: with weights that do not move (lr 1e-30),
# heavy noise changes the training loss but not the validation loss.
train v0 "$tmp/plain.nn" -j 1 --val-split 0.25 --lr 1e-30 --epochs 1
train v1 "$tmp/plain.nn" -j 1 --val-split 0.25 --lr 1e-30 --epochs 1 --noise 100 --hflip --rotate 90
f() { awk -F, -v c="$2" 'NR == 2 { print $c }' "$tmp/$1/metrics.csv"; }
if [ "$(f v0 6)" = "$(f v1 6)" ] && [ "$(f v0 4)" != "$(f v1 4)" ] && [ "$(f v0 6)" != -1 ]; then
  ok "validation sees the data as it is (val loss $(f v0 6) both; train loss $(f v0 4), augmented $(f v1 4))"
else
  bad "validation and augmentation: val loss $(f v0 6) / $(f v1 6), train loss $(f v0 4) / $(f v1 4)"
fi

# Errors: out of range on the command line (usage), and a model without images.
expect 2 "--rotate needs an angle in \[0, 180\] degrees, found '200'" train "$tmp/aug.nn" --rotate 200
expect 2 "--shift needs a whole number of pixels from 0, found '-1'" train "$tmp/aug.nn" --shift -1
expect 2 "--noise needs a standard deviation in \[0, 1e6\], found 'x'" train "$tmp/aug.nn" --noise x
expect 1 "shift 4: a translation as large as the image (4 pixels) leaves only zeros" \
  train "$tmp/plain.nn" --data "$tmp/img.csv" --shift 4 --out "$tmp/x1"
cat >"$tmp/flat.nn" <<'EOF2'
model flat {
    input  x: f32[16]
    target label: class(2)
    x -> linear(2)
}
loss cross_entropy
EOF2
expect 1 "hflip augments images \[C, H, W\], but model 'flat' has no image input ('x' is f32\[N,16\])" \
  train "$tmp/flat.nn" --data "$tmp/img.csv" --hflip --out "$tmp/x2"
train noisy "$tmp/flat.nn" --noise 0.5 --epochs 1
exit $fail
