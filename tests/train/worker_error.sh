#!/bin/sh
# An error a kernel finds on the pool's threads (batchnorm over a batch of
# one sample, which `nnc bench --batch 1` runs: `nnc train` refuses it before
# it starts) ends the run with exit status 1 and one message, every time:
# not a crash from exit's destructors racing the other threads, and not the
# message once per thread.
nnc=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'model m {\n    input x: f32[5]\n    target y: class(3)\n    x -> batchnorm -> linear(3)\n}\nloss cross_entropy\n' >"$tmp/bn.nn"
fail=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
  "$nnc" bench "$tmp/bn.nn" --batch 1 --reps 1 --no-compare --threads 4 >"$tmp/out" 2>&1
  rc=$? n=$(grep -c 'training needs more than one value per channel' "$tmp/out")
  if [ "$rc" != 1 ] || [ "$n" != 1 ]; then
    echo "FAIL run $i: exit status $rc, $n messages"; cat "$tmp/out"; fail=1
  fi
done
[ $fail = 0 ] && echo "ok   12 runs: exit status 1, one message each"
exit $fail
