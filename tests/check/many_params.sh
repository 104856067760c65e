#!/bin/sh
# A model of 40,000 parameters, each added to a running sum: checking it and
# fusing its training step take about a second (name lookup, common
# subexpressions and the update's blocks are linear; one loop fuses at most
# a bounded chain). CTest's TIMEOUT on this test guards against a return to
# quadratic time (minutes) and against deep recursion (a crash).
nnc=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk 'BEGIN {
  n = 40000
  print "model many {\n  input x: f32[2]\n  target y: f32[2]"
  for (i = 0; i < n; i++) printf "  param p%d: f32[2] = zeros\n", i
  print "  h0 = x"
  for (i = 0; i < n; i++) printf "  h%d = h%d + p%d\n", i + 1, i, i
  printf "  h%d\n}\nloss mse\n", n
}' >"$dir/many.nn"
fail=0
if "$nnc" check "$dir/many.nn" >"$dir/check.out" 2>&1 &&
   [ "$(awk '$1 == "total" { print $2 }' "$dir/check.out")" = 80,000 ]; then
  echo "ok   check: 80,000 parameters"
else
  echo "FAIL check:"; tail -5 "$dir/check.out"; fail=1
fi
if "$nnc" emit --stage fused --entry train "$dir/many.nn" >"$dir/fused.out" 2>&1 &&
   grep -q "every parameter: sgd_step" "$dir/fused.out"; then
  echo "ok   emit --stage fused --entry train: $(grep -c '^kernel' "$dir/fused.out") kernels"
else
  echo "FAIL emit --stage fused --entry train:"; tail -5 "$dir/fused.out"; fail=1
fi
# 40,000 warnings (unused parameters): each finds its source line and its
# repeat check at once, not by a scan of the file or of every earlier report.
awk 'BEGIN {
  print "model unused {\n  input x: f32[2]"
  for (i = 0; i < 40000; i++) printf "  param p%d: f32[2] = zeros\n", i
  print "  x\n}"
}' >"$dir/unused.nn"
if "$nnc" check -q "$dir/unused.nn" >"$dir/unused.out" 2>&1 &&
   [ "$(grep -c "warning: parameter 'p[0-9]*' is never used" "$dir/unused.out")" = 40000 ] &&
   grep -A1 "unused.nn:40002:" "$dir/unused.out" | grep -q "param p39999: f32\[2\] = zeros"; then
  echo "ok   check: 40,000 warnings, each with its line"
else
  echo "FAIL check of 40,000 unused parameters:"; tail -5 "$dir/unused.out"; fail=1
fi
exit $fail
