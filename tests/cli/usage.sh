#!/bin/sh
# Command-line use: help, version, and the exit statuses of mistakes
# (2 for bad usage, 1 for errors in the input files).
. "${0%/*}/../lib.sh"

printf 'model m {\n    input x: f32[4]\n    x -> linear(2)\n}\n' >"$tmp/noloss.nn"
expect 2 'usage: nnc <command>'
expect 0 'usage: nnc <command>' --help
expect 0 'usage: nnc <command>' -h
expect 0 '3 out of memory' --help
expect 0 '^nnc [0-9][0-9.]* (commit .*, LLVM [0-9]' --version
expect 0 'usage: nnc check' check --help
expect 0 'usage: nnc emit' emit --help
expect 0 'usage: nnc train' train --help
expect 0 'usage: nnc eval' eval --help
expect 0 'usage: nnc predict' predict --help
expect 0 'usage: nnc bench' bench --help
expect 2 "^nnc: unknown backend 'xyzzy' (expected ref, cpu, cuda or cuda-emu)$" train --backend xyzzy models/mlp.nn
# --backend is one option of every verb that runs a model: the names come
# from the registry, with the nearest one for a slip, and --help lists them
for cmd in train eval predict bench; do
  expect 2 "^nnc: unknown backend 'cpuu' (expected ref, cpu, cuda or cuda-emu); did you mean 'cpu'?$" $cmd --backend cpuu models/mlp.nn
  expect 0 '^  ref  *one plain C kernel per graph node' $cmd --help
  expect 0 '^  cpu  *fused kernels compiled by LLVM' $cmd --help
done
expect 2 '^  cpu  *fused kernels' train --backend tpu models/mlp.nn
expect 0 'step: median .* over 2 runs' bench --backend ref --batch 8 --reps 2 --threads 1 models/logreg.nn
expect 2 "--epochs needs a whole number from 0 to 1000000, found '-1'" train --epochs -1 models/mlp.nn
expect 2 "--test and --no-test contradict each other" train --test x.csv --no-test models/mlp.nn
expect 2 "--resume continues a run; --init starts a new one" train --resume a --init b models/mlp.nn
# --split train of a single file would evaluate the whole file
printf 'x0,x1,x2,x3\n1,2,3,4\n' >"$tmp/t.csv"
expect 2 "--split picks the train-\* or t10k-\* files of an IDX directory, but '.*t.csv' is a file" \
  eval --weights w --split train --data "$tmp/t.csv" models/mlp.nn
# an empty path is a usage error, not a missing directory to create
expect 2 "--out needs a path, found ''" train --out "" models/mlp.nn
expect 2 "--data needs a path, found ''" train --data "" models/mlp.nn
expect 2 "--resume needs a path, found ''" train --resume "" models/mlp.nn
expect 2 "--weights needs a path, found ''" eval --weights "" models/mlp.nn
expect 2 "--weights needs a path, found ''" predict --weights "" models/mlp.nn x.png
expect 2 "--threads needs a whole number from 1 to 1024, found '5000'" bench --threads 5000 models/mlp.nn
expect 2 "--threads needs a whole number from 1 to 1024, found '0'" train --threads 0 models/mlp.nn
expect 2 'eval needs --weights' eval models/mlp.nn
expect 2 "--entry is forward, eval or train, found 'bogus'" emit --stage kernels --entry bogus models/mlp.nn
expect 0 'kernel 0 gemm "linear_1 + relu_1"' emit --stage kernels models/mlp.nn
expect 0 'unfused producer/consumer pairs' emit --stage fused --entry train models/mlp.nn
expect 0 '^define .*@nnc_' emit --stage llvm models/mlp.nn
expect 0 'maxps' emit --stage asm models/mlp.nn
expect 0 '^define .*@nnc_' emit --stage llvm -O 0 models/mlp.nn
expect 2 "--opt-level needs 0, 1, 2 or 3, found '4'" emit --stage llvm -O 4 models/mlp.nn
expect 2 "--opt-level applies to --stage llvm and asm, not kernels" emit --stage kernels -O 1 models/mlp.nn
expect 0 '"entry": "train_step", "batch": 8, "reps": 2, "step_median_ms"' bench --batch 8 --reps 2 --threads 1 --format json models/logreg.nn
expect 0 'unfused .* ref ' bench --batch 8 --reps 4 --threads 1 models/logreg.nn
expect 0 '^kernel,kind,name' bench --batch 8 --reps 2 --format csv --no-compare --entry forward models/mlp.nn
# a region is one row; --no-regions gives each of its kernels one
expect 0 ' rgn .* kernels to #' bench --batch 32 --reps 2 --threads 2 --no-compare tests/cpu/rnn.nn
expect 0 '^model rnn, train_step, batch 32: [0-9]* kernels (no regions), ' \
  bench --batch 32 --reps 2 --threads 2 --no-compare --no-regions tests/cpu/rnn.nn
expect 2 "--format is table, csv or json, found 'xml'" bench --format xml models/mlp.nn
expect 1 "model .m. has no loss to train with" emit --stage kernels --entry train "$tmp/noloss.nn"
expect 1 "time its inference with --entry forward" bench "$tmp/noloss.nn"
expect 2 "unknown command 'chek'; did you mean 'check'?" chek models/mlp.nn
expect 2 'check needs at least one .nn file' check
expect 2 'emit needs --stage (ast, ir, dot, kernels, fused, llvm, asm, cuda or ptx)' emit models/mlp.nn
# every --batch takes 1 to 1048576 and says so (bench and emit stopped at
# 1000000, without naming the limit)
for cmd in train eval bench emit; do
  expect 2 "^nnc: --batch needs a whole number from 1 to 1048576, found '1048577'" $cmd models/mlp.nn --batch 1048577
done
expect 2 "^nnc: --reps needs a whole number from 1 to 1000000" bench models/mlp.nn --reps 0
expect 2 "--train applies to --stage ir and dot, not kernels; the training step's kernels are --entry train" emit --stage kernels --train models/mlp.nn
expect 2 '--train applies to --stage ir and dot, not ast' emit --stage ast --train models/mlp.nn
expect 2 "unknown stage 'sass'" emit --stage sass models/mlp.nn
expect 2 'emit needs exactly one input file' emit --stage ir models/mlp.nn models/cnn.nn
expect 2 'max-errors needs a count' check --max-errors many models/mlp.nn
expect 2 'unrecognized option' check --frobnicate models/mlp.nn
expect 1 "cannot read 'no/such/model.nn'" check no/such/model.nn
expect 1 "cannot read" check models/mlp.nn no/such/model.nn
expect 0 'model mlp' check models/mlp.nn models/cnn.nn
expect 0 '^graph mlp' emit --stage ir models/mlp.nn
expect 0 '^digraph' emit --stage dot models/mlp.nn
expect 0 '(model mlp' emit --stage ast models/mlp.nn
expect 0 '' emit --stage ir -o "$tmp/mlp.ir" models/mlp.nn
expect 0 '^graph mlp' emit --stage ir "$tmp/mlp.ir"
expect 2 'has no AST' emit --stage ast "$tmp/mlp.ir"
# kernel IR text reads back: printed again, or compiled
expect 0 '' emit --stage kernels --entry train -o "$tmp/mlp.kir" models/mlp.nn
expect 0 '^program train_step of mlp' emit --stage kernels "$tmp/mlp.kir"
expect 0 '^define .*@nnc_train_step' emit --stage llvm "$tmp/mlp.kir"
expect 2 "is kernel IR text; use --stage kernels, llvm, asm, cuda or ptx" emit --stage ir "$tmp/mlp.kir"
expect 2 "is kernel IR text: its entry point, batch and kernels are in it" emit --stage kernels --batch 4 "$tmp/mlp.kir"
expect 1 "cannot read '.*none.kir'" emit --stage kernels "$tmp/none.kir"
expect 1 'cannot write' emit --stage ir -o "$tmp/no/such/dir/x.ir" models/mlp.nn
printf 'model m {\n    input x: f32[4]\n    x -> linear(0)\n}\n' >"$tmp/bad.nn"
expect 1 "'out' must be at least 1" check "$tmp/bad.nn"
# Errors in one file do not stop the others from being checked.
expect 1 'model cnn' check "$tmp/bad.nn" models/cnn.nn
# Output that cannot be written is an error, not a silent exit 0.
if [ -w /dev/full ]; then
  NO_COLOR=1 "$nnc" check models/mlp.nn >/dev/full 2>"$tmp/err"
  got=$?
  if [ "$got" = 1 ] && grep -q 'writing to standard output failed' "$tmp/err"; then
    echo "ok   nnc check models/mlp.nn >/dev/full -> 1"
  else
    echo "FAIL: nnc check models/mlp.nn >/dev/full exited $got"; cat "$tmp/err"; fail=1
  fi
fi
exit $fail
