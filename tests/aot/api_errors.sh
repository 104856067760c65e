#!/bin/sh
# Four artifacts linked into one program, misused every way tests/aot/api_errors.c knows.
#
#   api_errors.sh NNC ROOT BUILD
. "${0%/*}/../lib.sh"
build=$3
if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null; then
  echo "SKIP: needs cc and pkg-config"; exit 77
fi
flags=$(PKG_CONFIG_PATH="$build/nncrt" pkg-config --cflags --libs nncrt)
"$nnc" compile models/mlp.nn -o "$tmp/a" --name a --entry forward --batch 4 &&
  "$nnc" compile models/logreg.nn -o "$tmp/b" --name b &&
  "$nnc" compile models/quadratic.nn -o "$tmp/c" --name c &&
  "$nnc" compile tests/cpu/embedding.nn -o "$tmp/d" --name d --entry forward --batch 2 &&
  "$nnc" train models/logreg.nn --epochs 0 --out "$tmp/b.safetensors" -q >/dev/null &&
  cc -Wall -Wextra -Werror -I"$tmp" -o "$tmp/api_errors" tests/aot/api_errors.c "$tmp/a.o" "$tmp/b.o" "$tmp/c.o" "$tmp/d.o" $flags \
  || { bad "the program does not build"; exit 1; }
"$tmp/api_errors" "$tmp/b.safetensors" "$tmp" || fail=1
exit $fail
