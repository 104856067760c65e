#!/bin/sh
# examples/pkg-config: an example built by hand as a user builds it, with
# the build tree's nncrt.pc:
#
#   nnc compile models/mlp.nn -o mlp; nnc compile models/cnn.nn -o cnn
#   cc -I. two_models.c mlp.o cnn.o $(pkg-config --cflags --libs nncrt)
#
# and run on a few samples (when the data set is installed); then the same
# with both models compiled --shared.
#
#   pkg_config.sh NNC SOURCE_TREE CC BUILD/nncrt
. "${0%/*}/../lib.sh"
cc=$3
export PKG_CONFIG_PATH=$4
data=/usr/share/datasets/fashion-mnist

flags=$(pkg-config --cflags --libs nncrt) || { bad "pkg-config knows no nncrt in $4"; exit 1; }
"$nnc" compile models/mlp.nn -o "$tmp/mlp" >"$tmp/log" 2>&1 && "$nnc" compile models/cnn.nn -o "$tmp/cnn" >>"$tmp/log" 2>&1 \
  || { bad "nnc compile"; cat "$tmp/log"; exit 1; }
cp examples/two_models/two_models.c "$tmp/"
if (cd "$tmp" && "$cc" -O2 -Wall -Wextra -Werror -I. two_models.c mlp.o cnn.o $flags -o two_models) >"$tmp/log" 2>&1; then
  ok "cc two_models.c mlp.o cnn.o $flags"
else
  bad "the build failed"; cat "$tmp/log"; exit 1
fi
if [ -d "$data" ]; then
  "$tmp/two_models" "$data" 1000 256 >"$tmp/log" 2>&1 && grep -q "^on 256 test images: mlp accuracy 0\." "$tmp/log" \
    && ok "it runs: $(tail -1 "$tmp/log")" || { bad "two_models failed"; cat "$tmp/log"; }
fi

# The same with both models as shared objects (each with the runtime
# library inside, hidden; the program links nncrt too for its readers, and
# runs where it was linked, as it names them ./mlp.so and ./cnn.so):
# the same numbers.
mkdir "$tmp/so"
"$nnc" compile models/mlp.nn -o "$tmp/so/mlp" --shared >"$tmp/so.log" 2>&1 \
  && "$nnc" compile models/cnn.nn -o "$tmp/so/cnn" --shared >>"$tmp/so.log" 2>&1 \
  || { bad "nnc compile --shared"; cat "$tmp/so.log"; exit 1; }
cp examples/two_models/two_models.c "$tmp/so/"
if (cd "$tmp/so" && "$cc" -O2 -Wall -Wextra -Werror -I. two_models.c ./mlp.so ./cnn.so $flags -o two_models) >"$tmp/so.log" 2>&1; then
  ok "cc two_models.c ./mlp.so ./cnn.so $flags"
else
  bad "the build with shared objects failed"; cat "$tmp/so.log"; exit 1
fi
if [ -d "$data" ]; then
  (cd "$tmp/so" && ./two_models "$data" 1000 256) >"$tmp/so.log" 2>&1 && cmp -s "$tmp/log" "$tmp/so.log" \
    && ok "with shared objects it prints the same" || { bad "two_models on shared objects"; diff "$tmp/log" "$tmp/so.log"; }
fi
exit $fail
