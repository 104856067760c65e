#!/bin/sh
# The parameter totals `nnc check` reports equal PyTorch's for the same models
# (sum of p.numel() over model.parameters()).
nnc=$1
cd "$2" || exit 1
fail=0
for pair in logreg:7,850 logreg_by_hand:7,850 mlp100:89,610 mlp:669,706 cnn:225,034 \
            resnet18:11,175,434 quadratic:3 lenet5:61,706 lstm:82,186 gru:14,922; do
  m=${pair%%:*} want=${pair#*:}
  got=$("$nnc" check "models/$m.nn" | awk '$1 == "total" { print $2 }')
  if [ "$got" = "$want" ]; then
    echo "ok   $m: $got parameters"
  else
    echo "FAIL $m: $got parameters, PyTorch has $want"
    fail=1
  fi
done
exit $fail
