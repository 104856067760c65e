#!/bin/sh
# A compiled model trained in plain C (tests/aot/train_check.c, built here
# with cc and the build tree's pkg-config file) over the first samples of
# Fashion-MNIST, one epoch in file order, against `nnc train` on the same
# samples: every tensor the same bytes, for mlp and cnn; the artifact's
# checkpoint read by `nnc eval`. Then an artifact for another CPU
# (--cpu haswell, which this x86-64 host runs) trains to the same loss
# within rounding, and one with its weights embedded starts from them.
#
#   train_bytes.sh NNC ROOT BUILD
. "${0%/*}/../lib.sh"
build=$3
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: Fashion-MNIST is not in $data (scripts/install-deps.sh installs dataset-fashion-mnist)"; exit 77
fi
if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null; then
  echo "SKIP: needs cc and pkg-config to build the test program"; exit 77
fi
export PKG_CONFIG_PATH="$build/nncrt"
flags=$(pkg-config --cflags --libs nncrt) || { bad "pkg-config nncrt (PKG_CONFIG_PATH=$build/nncrt)"; exit 1; }

# build NAME MODEL [compile options]: $tmp/NAME, train_check over the artifact.
build() {
  name=$1 model=$2
  shift 2
  mkdir -p "$tmp/$name"
  "$nnc" compile "models/$model.nn" -o "$tmp/$name/model" --name model "$@" &&
    cc -O2 -Wall -Wextra -Werror -I"$tmp/$name" -o "$tmp/$name/train_check" tests/aot/train_check.c \
       "$tmp/$name/model.o" $flags
}

for m in mlp:640 cnn:320; do
  model=${m%:*} limit=${m#*:}
  build "$model" "$model" || { bad "$model: the artifact does not build"; continue; }
  "$nnc" train "models/$model.nn" --epochs 1 --limit "$limit" --no-shuffle --no-test --threads 2 \
    --out "$tmp/$model/run" --progress none -q || { bad "$model: nnc train failed"; continue; }
  if "$tmp/$model/train_check" "$data" "$limit" 2 "$tmp/$model/aot.safetensors" "$tmp/$model/run/checkpoint.safetensors" \
       >"$tmp/$model/log" 2>&1; then
    ok "$model: one epoch of $limit samples in plain C gives nnc train's bytes ($(grep -c 'the same bytes' "$tmp/$model/log") tensors)"
  else
    bad "$model: the artifact's training differs from nnc train's"; cat "$tmp/$model/log"
  fi
  a=$("$nnc" eval "models/$model.nn" --weights "$tmp/$model/aot.safetensors" --limit 1000 | grep '^loss')
  b=$("$nnc" eval "models/$model.nn" --weights "$tmp/$model/run/checkpoint.safetensors" --limit 1000 | grep '^loss')
  [ -n "$a" ] && [ "$a" = "$b" ] && ok "$model: nnc eval reads the artifact's checkpoint: $a" || bad "$model: eval '$a' vs '$b'"
done

# Another seed: nnc train --seed S draws the weights and the dropout masks
# from S, as the artifact's init(S) does (cnn has dropout).
if [ -x "$tmp/cnn/train_check" ] &&
   "$nnc" train models/cnn.nn --epochs 1 --limit 128 --no-shuffle --no-test --threads 2 --seed 5 \
     --out "$tmp/cnn/run5" --progress none -q &&
   SEED=5 "$tmp/cnn/train_check" "$data" 128 2 "$tmp/cnn/aot5.safetensors" "$tmp/cnn/run5/checkpoint.safetensors" \
     >"$tmp/cnn/log5" 2>&1; then
  ok "cnn with --seed 5: nnc train's bytes, dropout masks included"
else
  bad "cnn with --seed 5 differs"; cat "$tmp/cnn/log5"
fi

# Another CPU: the same training within rounding (its vector code may differ).
if build haswell mlp --cpu haswell; then
  "$tmp/haswell/train_check" "$data" 640 2 "$tmp/haswell/aot.safetensors" >"$tmp/haswell/log" 2>&1 || bad "haswell: training failed"
  h=$(sed -n 's/.*mean loss //p' "$tmp/haswell/log") n=$(sed -n 's/.*mean loss //p' "$tmp/mlp/log")
  awk -v a="$h" -v b="$n" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 1e-4) }' \
    && ok "--cpu haswell: runs here, mean loss $h (host $n)" || bad "--cpu haswell: mean loss '$h', host '$n'"
else
  bad "--cpu haswell: the artifact does not build"
fi

# Embedded weights: a context starts from the checkpoint.
mkdir -p "$tmp/embed"
if "$nnc" compile models/mlp.nn -o "$tmp/embed/model" --name model --weights "$tmp/mlp/run/checkpoint.safetensors" --embed &&
   cc -O2 -Wall -Wextra -Werror -I"$tmp/embed" -o "$tmp/embed/check" tests/aot/embed_check.c "$tmp/embed/model.o" $flags; then
  "$tmp/embed/check" "$tmp/mlp/run/checkpoint.safetensors" && ok "--embed: a new context starts from the weights" \
    || bad "--embed: the embedded weights are not the checkpoint's"
  s1=$(stat -c %s "$tmp/mlp/model.o") s2=$(stat -c %s "$tmp/embed/model.o")
  [ "$s2" -gt $((s1 + 2600000)) ] && ok "--embed: the object grew by the weights ($s1 -> $s2 bytes)" || bad "--embed: sizes $s1 -> $s2"
else
  bad "--embed: the artifact does not build"
fi
# ... also where the state holds buffers after optimizer state (a batchnorm's
# running statistics): only optimizer state is left out, and starts at zero.
mkdir -p "$tmp/bn"
printf 'model bn {\n  input image: f32[1, 28, 28]\n  target label: class(10)\n  image -> conv2d(2, 3) -> batchnorm -> relu -> flatten -> linear(10)\n}\nloss cross_entropy\noptimizer adam(lr = 0.001)\n' >"$tmp/bn/bn.nn"
if "$nnc" train "$tmp/bn/bn.nn" --epochs 1 --limit 256 --no-test --out "$tmp/bn/run" -q >/dev/null &&
   "$nnc" compile "$tmp/bn/bn.nn" -o "$tmp/bn/model" --name model --weights "$tmp/bn/run/checkpoint.safetensors" --embed \
     >/dev/null &&
   cc -O2 -Wall -Wextra -Werror -I"$tmp/bn" -o "$tmp/bn/check" tests/aot/embed_check.c "$tmp/bn/model.o" $flags; then
  "$tmp/bn/check" "$tmp/bn/run/checkpoint.safetensors" && ok "--embed with batchnorm statistics and Adam's state" \
    || bad "--embed with batchnorm: the embedded weights are not the checkpoint's"
else
  bad "--embed with batchnorm: the artifact does not build"
fi
exit $fail
