#!/bin/sh
# `nnc compile`'s command line: what it writes and its symbols, the
# header's constants, and every way to get it wrong (exit 2 for bad usage,
# 1 for bad input), each leaving nothing behind: no PREFIX.o, no PREFIX.h,
# no temporary file.
#
#   cli.sh NNC ROOT
. "${0%/*}/../lib.sh"

# Nothing half-written: no file and no temporary under $tmp/res*.
nothing() {
  if ls "$tmp"/res* >/dev/null 2>&1; then bad "$1: left $(ls "$tmp"/res* | tr '\n' ' ')"; else ok "$1: nothing written"; fi
}

expect 0 "" compile models/mlp.nn -o "$tmp/mlp"
[ -s "$tmp/mlp.o" ] && [ -s "$tmp/mlp.h" ] && ok "mlp.o and mlp.h written" || bad "mlp.o and mlp.h missing"
syms=$(nm -g --defined-only "$tmp/mlp.o" | awk '{print $3}' | sort | tr '\n' ' ')
case $syms in
"mlp_create mlp_error mlp_eval mlp_forward mlp_free mlp_init mlp_load mlp_num_tensors mlp_output mlp_read_tensor mlp_save mlp_steps mlp_tensor_name mlp_tensor_numel mlp_train_step mlp_write_tensor ")
  ok "the object's global symbols are the model's API alone" ;;
*) bad "global symbols: $syms" ;;
esac
nm -u "$tmp/mlp.o" | awk '{print $2}' | grep -v -e '^nncrt5_' -e '^memset$' -e '^memcpy$' -e '^expf$' -e '^logf$' \
  -e '^tanhf$' -e '^__' >"$tmp/undef"
[ ! -s "$tmp/undef" ] && ok "it needs nncrt5_* and libm alone" || { bad "undefined: $(cat "$tmp/undef" | tr '\n' ' ')"; }
grep -q '^#define MLP_INPUT_SIZE 784 ' "$tmp/mlp.h" && grep -q '^#define MLP_OUTPUT_SIZE 10 ' "$tmp/mlp.h" \
  && grep -q '^#define MLP_MAX_BATCH 64$' "$tmp/mlp.h" && grep -q '^#define MLP_NUM_CLASSES 10 ' "$tmp/mlp.h" \
  && grep -q '^double mlp_train_step(mlp_context \*ctx, int64_t batch, const float \*x, const mlp_target \*y, double lr);' "$tmp/mlp.h" \
  && ok "the header's sizes and prototypes" || bad "the header: $(cat "$tmp/mlp.h")"
cc -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c "$tmp/mlp.h" && ok "the header compiles alone as C99, -Wall -Wextra -pedantic" \
  || bad "the header does not compile alone"
if command -v c++ >/dev/null; then
  echo '#include "mlp.h"
int main() { return mlp_num_tensors() > 0 ? 0 : 1; }' >"$tmp/t.cc"
  c++ -Wall -Wextra -Werror -fsyntax-only -I"$tmp" "$tmp/t.cc" && ok "and as C++" || bad "the header does not compile as C++"
fi

# --entry, --batch, --name
expect 0 "" compile models/mlp.nn -o "$tmp/fwd" --entry forward --batch 1000 --name mnist_fwd
grep -q '^#define MNIST_FWD_MAX_BATCH 1000$' "$tmp/fwd.h" && grep -q '^#define MNIST_FWD_HAS_TRAIN 0$' "$tmp/fwd.h" \
  && nm -g --defined-only "$tmp/fwd.o" | grep -q ' T mnist_fwd_forward$' && ok "--entry forward --batch 1000 --name mnist_fwd" \
  || bad "--entry/--batch/--name"
# A model without a loss has forward alone.
printf 'model tiny {\n  input x: f32[3]\n  x -> linear(2)\n}\n' >"$tmp/tiny.nn"
expect 0 "" compile "$tmp/tiny.nn" -o "$tmp/tiny"
grep -q '^#define TINY_HAS_EVAL 0$' "$tmp/tiny.h" && ok "a model without a loss: forward alone" || bad "tiny: $(grep HAS_ "$tmp/tiny.h")"
expect 2 "model 'tiny' has no eval entry point: it has no loss" compile "$tmp/tiny.nn" -o "$tmp/res" --entry forward,eval
nothing "an entry point the model lacks"

# Bad usage: exit 2, nothing written.
expect 2 "compile needs -o PREFIX" compile models/mlp.nn
expect 2 "compile needs exactly one model file" compile -o "$tmp/res"
expect 2 "--entry takes forward, eval and train, comma-separated; found 'backward'" compile models/mlp.nn -o "$tmp/res" --entry forward,backward
expect 2 "--batch needs a whole number from 1 to 1048576, found '0'" compile models/mlp.nn -o "$tmp/res" --batch 0
expect 2 "--name needs a C identifier" compile models/mlp.nn -o "$tmp/res" --name 9lives
expect 2 "--name needs a C identifier" compile models/mlp.nn -o "$tmp/res" --name "a-b"
expect 2 "not beginning with 'nncrt', the runtime library's" compile models/mlp.nn -o "$tmp/res" --name nncrt
# A model whose name would begin the runtime's names: refused unless --name renames it.
printf 'model nncrt_net {\n  input x: f32[3]\n  x -> linear(2)\n}\n' >"$tmp/nncrt_net.nn"
expect 2 "'nncrt_net' cannot begin the names of C functions" compile "$tmp/nncrt_net.nn" -o "$tmp/res"
expect 0 "" compile "$tmp/nncrt_net.nn" -o "$tmp/net" --name net
expect 2 "-o takes the files' prefix: '-o mlp' writes mlp.o and mlp.h" compile models/mlp.nn -o "$tmp/res.o"
expect 2 "-o takes a prefix for the files' names, not a directory" compile models/mlp.nn -o "$tmp/"
expect 2 "--embed puts the weights of --weights CKPT into the object" compile models/mlp.nn -o "$tmp/res" --embed
expect 2 "--runtime names the library --shared links in" compile models/mlp.nn -o "$tmp/res" --runtime /nonexistent
expect 2 "LLVM has no target for 'nosuch-unknown-linux-gnu'" compile models/mlp.nn -o "$tmp/res" --target nosuch-unknown-linux-gnu
expect 2 "'pentium9' is not a CPU LLVM knows for x86_64" compile models/mlp.nn -o "$tmp/res" --cpu pentium9
expect 2 "target 'sparc-unknown-linux-gnu' is not a 64-bit little-endian machine" compile models/mlp.nn -o "$tmp/res" --target sparc-linux-gnu
expect 2 "target 'i686-unknown-linux-gnu' is not a 64-bit little-endian machine" compile models/mlp.nn -o "$tmp/res" --target i686-linux-gnu
expect 2 "--shared links nnc's runtime library, which is this machine's" compile models/mlp.nn -o "$tmp/res" --target aarch64-linux-gnu --shared
expect 2 "unrecognized option" compile models/mlp.nn -o "$tmp/res" --frobnicate
expect 2 "--entry takes forward, eval and train, comma-separated; found 'forward,,eval'" compile models/mlp.nn -o "$tmp/res" --entry forward,,eval
expect 2 "-o takes the files' prefix" compile models/mlp.nn -o .o
expect 2 "LLVM cannot make code for CPU 'i386' on x86_64" compile models/mlp.nn -o "$tmp/res" --cpu i386
expect 2 "the prefix 'pthread' would define pthread_create, which the C library" compile models/mlp.nn -o "$tmp/res" --name pthread
expect 2 "the runtime library runs on Linux alone" compile models/mlp.nn -o "$tmp/res" --target x86_64-pc-windows-msvc
printf 'model bn {\n  input x: f32[4]\n  target t: class(2)\n  x -> linear(3) -> batchnorm -> relu -> linear(2)\n}\nloss cross_entropy\n' >"$tmp/bn.nn"
expect 2 "model 'bn' cannot train at --batch 1: a batchnorm has one value per channel" compile "$tmp/bn.nn" -o "$tmp/res" --batch 1
expect 0 "" compile "$tmp/bn.nn" -o "$tmp/bn1" --batch 1 --entry forward,eval
printf 'model two {\n  input x: f32[2]\n  input X: f32[1]\n  target y: f32[1]\n  (x -> linear(1)) + (X -> linear(1))\n}\nloss mse\n' >"$tmp/two.nn"
expect 1 "inputs 'x' and 'X' would both be PREFIX_INPUT_X_SIZE" compile "$tmp/two.nn" -o "$tmp/res"
nothing "bad usage"

# Bad input: exit 1, nothing written.
expect 1 "error" compile "$tmp/missing.nn" -o "$tmp/res"
"$nnc" train models/logreg.nn --epochs 0 --out "$tmp/lr" -q >/dev/null 2>&1 || bad "a logreg checkpoint could not be made"
expect 1 "so the checkpoint is from another model" compile models/mlp.nn -o "$tmp/res" --weights "$tmp/lr/checkpoint.safetensors"
expect 1 "No such file" compile models/mlp.nn -o "$tmp/res" --weights "$tmp/none.safetensors"
expect 1 "is a directory, not a checkpoint" compile models/mlp.nn -o "$tmp/res" --weights "$tmp/lr"
nothing "bad input"
expect 1 "cannot write here" compile models/mlp.nn -o "$tmp/no/such/dir/mlp"
# An existing PREFIX.h is not touched by a failed compile.
echo keep >"$tmp/res.h"
expect 1 "so the checkpoint is from another model" compile models/mlp.nn -o "$tmp/res" --weights "$tmp/lr/checkpoint.safetensors"
[ "$(cat "$tmp/res.h")" = keep ] && [ ! -e "$tmp/res.o" ] && [ -z "$(ls "$tmp" | grep '\.tmp\.')" ] \
  && ok "a failed compile leaves an existing PREFIX.h as it was" || bad "a failed compile changed res.h"
rm -f "$tmp/res.h"
# A directory where a file would go: refused before anything is renamed.
mkdir "$tmp/res.h" && echo old >"$tmp/res.o"
expect 1 "res.h: is a directory, which the compiled model's file would replace; nothing was written" compile models/mlp.nn -o "$tmp/res"
[ "$(cat "$tmp/res.o")" = old ] && ok "the object beside it was left as it was" || bad "res.o was replaced"
rm -rf "$tmp/res.h" "$tmp/res.o"
# What the command line gives reaches the header's comments and strings safely.
mkdir "$tmp/d*" && "$nnc" train models/logreg.nn --epochs 0 --out "$tmp/q\"w*/c.safetensors" -q >/dev/null 2>&1
expect 0 "" compile models/logreg.nn -o "$tmp/d*/m" --weights "$tmp/q\"w*/c.safetensors"
cc -std=c99 -Wall -Wextra -Werror -fsyntax-only -x c "$tmp/d*/m.h" && grep -q 'LOGREG_WEIGHTS ".*q\\"w\*/c.safetensors"' "$tmp/d*/m.h" \
  && ok "paths with */ and quotes: the header compiles, and the path reads back" || bad "the header of odd paths: $(head -3 "$tmp/d*/m.h")"
# A read-only directory: refused with the reason.
if [ "$(id -u)" != 0 ]; then
  mkdir "$tmp/ro" && chmod 555 "$tmp/ro"
  expect 1 "cannot write here: Permission denied" compile models/mlp.nn -o "$tmp/ro/mlp"
fi
exit $fail
