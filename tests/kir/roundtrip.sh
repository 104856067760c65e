#!/bin/sh
# Kernel IR text reads back: for every model and entry point, the program
# printed, read back and printed again is the same text, and the LLVM IR
# compiled from the text is the same as that compiled from the model (as
# generated, -O 0: what the optimizer makes of it follows from it, and
# optimizing takes lstm's programs 20 times as long). The
# training step also unfused (an update per parameter, as library kernels).
# tests/heads too: several outputs, and the loss weights of its kernels.
. "${0%/*}/../lib.sh"

# The models named after the two arguments of every shell test (CTest runs
# one test per model), or all of them.
shift 2
[ $# -gt 0 ] || set -- models/*.nn tests/cpu/embedding.nn tests/heads/*.nn tests/cpu/act.nn tests/cpu/concat.nn \
  tests/cpu/slice.nn tests/cpu/reduce.nn tests/cpu/max.nn   # act.nn: the activations, erf among them
for m in "$@"; do
  n=${m##*/}
  n=${n%.nn}
  for e in forward eval train train--no-fuse; do
    opt=
    case $e in *--no-fuse) e=${e%--no-fuse} opt=--no-fuse ;; esac
    if ! "$nnc" emit --stage kernels $opt --entry $e "$m" >"$tmp/$n.$e.kir" 2>"$tmp/err"; then
      if grep -q 'has no loss' "$tmp/err"; then
        ok "$n $e: no loss, no $e step"
      else
        bad "$n $e: emit failed"; cat "$tmp/err"
      fi
      continue
    fi
    if ! "$nnc" emit --stage kernels "$tmp/$n.$e.kir" >"$tmp/again.kir"; then
      bad "$n $e: the text does not read back"
    elif ! cmp -s "$tmp/$n.$e.kir" "$tmp/again.kir"; then
      bad "$n $e: printed again, the text differs"; diff "$tmp/$n.$e.kir" "$tmp/again.kir" | head -20
    elif ! "$nnc" emit --stage llvm -O 0 $opt --entry $e "$m" >"$tmp/a.ll" ||
         ! "$nnc" emit --stage llvm -O 0 "$tmp/$n.$e.kir" >"$tmp/b.ll"; then
      bad "$n $e: compiling failed"
    elif ! cmp -s "$tmp/a.ll" "$tmp/b.ll"; then
      bad "$n $e: the LLVM IR of the text differs from the model's"; diff "$tmp/a.ll" "$tmp/b.ll" | head -20
    else
      ok "$n $e $opt: $(wc -l <"$tmp/$n.$e.kir") lines read back; the same LLVM IR"
    fi
  done
done
exit $fail
