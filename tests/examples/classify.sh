#!/bin/sh
# examples/classify: cnn trained briefly by nnc train, test images written
# as PNG, and the example's three likeliest classes and probabilities for
# each, against `nnc predict`'s for the same files. Files it cannot read or
# checkpoints of another model get a clear error and exit status 1.
#
#   classify.sh NNC SOURCE_TREE CLASSIFY IDX_PNG
. "${0%/*}/../lib.sh"
classify=$3 idx_png=$4
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skip: $data not installed"; exit 77; }

NO_COLOR=1 "$nnc" train models/cnn.nn --epochs 1 --limit 4000 --no-test --progress none --out "$tmp/cnn" \
  >"$tmp/train.log" 2>&1 || { bad "nnc train cnn"; cat "$tmp/train.log"; exit 1; }
ckpt=$tmp/cnn/checkpoint.safetensors
"$idx_png" "$data/t10k-images-idx3-ubyte.gz" 0 8 "$tmp/test-" || { bad "idx_png"; exit 1; }
set -- "$tmp"/test-?.png

if "$classify" "$ckpt" "$@" >"$tmp/classify.out" 2>&1; then
  ok "classify read $# PNG files"
else
  bad "classify exited $?"; cat "$tmp/classify.out"
fi
NO_COLOR=1 "$nnc" predict models/cnn.nn --weights "$ckpt" "$@" >"$tmp/predict.out" 2>&1 \
  || { bad "nnc predict"; cat "$tmp/predict.out"; }
# "FILE:  9 Ankle boot (0.9876)  7 Sneaker ..." without the class names is
# predict's "FILE:  9 (0.9876)  7 ...".
sed -E 's/  ([0-9]+) [^(]+ \(/  \1 (/g' "$tmp/classify.out" >"$tmp/classify.short"
if [ "$(grep -c "^$tmp/test-[0-9].png:  [0-9] (0\.[0-9]*)  [0-9] (0\.[0-9]*)  [0-9] (0\.[0-9]*)$" "$tmp/classify.short")" = $# ] \
  && cmp -s "$tmp/predict.out" "$tmp/classify.short"; then
  ok "the three likeliest classes and their probabilities are nnc predict's, for each file"
else
  bad "classify differs from nnc predict"; diff "$tmp/predict.out" "$tmp/classify.out"
fi
grep -q "^$tmp/test-0.png:  9 Ankle boot (" "$tmp/classify.out" \
  && ok "class names: the first test image is an ankle boot" || { bad "class names"; cat "$tmp/classify.out"; }

# A file that is not an image: an error naming it, the other files still
# classified, exit status 1.
echo "not an image" >"$tmp/notes.png"
"$classify" "$ckpt" "$tmp/notes.png" "$tmp/test-1.png" >"$tmp/bad.out" 2>"$tmp/bad.err"
status=$?
if [ $status = 1 ] && grep -q "^classify: $tmp/notes.png: not a PNG or PGM image" "$tmp/bad.err" \
  && grep -q "^$tmp/test-1.png:  " "$tmp/bad.out"; then
  ok "a file that is not an image is named, and the others still classified"
else
  bad "not an image: status $status"; cat "$tmp/bad.out" "$tmp/bad.err"
fi
"$classify" "$ckpt" "$tmp/none.png" >"$tmp/bad.out" 2>&1
status=$?
[ $status = 1 ] && grep -q "none.png.*No such file" "$tmp/bad.out" \
  && ok "a missing file" || { bad "missing file: status $status"; cat "$tmp/bad.out"; }

# Checkpoints: a missing one, and one of another model (mlp's initial
# weights), refused before any file is read.
"$classify" "$tmp/none.safetensors" "$tmp/test-1.png" >"$tmp/bad.out" 2>&1
status=$?
[ $status = 1 ] && grep -q "none.safetensors.*No such file" "$tmp/bad.out" \
  && ok "a missing checkpoint" || { bad "missing checkpoint: status $status"; cat "$tmp/bad.out"; }
NO_COLOR=1 "$nnc" train models/mlp.nn --epochs 0 --progress none --out "$tmp/mlp" >"$tmp/mlp.log" 2>&1 \
  || { bad "nnc train mlp --epochs 0"; cat "$tmp/mlp.log"; }
"$classify" "$tmp/mlp/checkpoint.safetensors" "$tmp/test-1.png" >"$tmp/bad.out" 2>&1
status=$?
if [ $status = 1 ] && grep -q "^classify: .*checkpoint.safetensors" "$tmp/bad.out" && ! grep -q "test-1.png:" "$tmp/bad.out"; then
  ok "a checkpoint of another model is refused: $(head -1 "$tmp/bad.out")"
else
  bad "mlp's checkpoint: status $status"; cat "$tmp/bad.out"
fi
exit $fail
