#!/bin/sh
# Integer inputs (i32) through train, eval and predict: a table's token
# columns read as int32, an IDX file's bytes as indexes (unscaled), on the
# ref and cpu backends; and the data errors: a fraction, an index outside
# the embedding's vocab (from a table and from IDX), --normalize.
. "${0%/*}/../lib.sh"

# The label is 1 when the first token is odd: the embedding must learn it.
cat >"$tmp/tok.nn" <<'EOF2'
model tok {
    input  t: i32[3]
    target label: class(2)
    t -> embedding(8, 4) -> flatten -> linear(2)
}
loss cross_entropy
optimizer adam(lr = 0.05)
train { epochs = 30, batch = 16 }
EOF2
awk 'BEGIN { print "t0,t1,t2,label"; for (i = 0; i < 64; i++) { a = i % 8; b = int(i / 8); c = (a + b) % 8;
  print a "," b "," c "," a % 2 } }' >"$tmp/tok.csv"
for backend in ref cpu; do
  NO_COLOR=1 "$nnc" train "$tmp/tok.nn" --data "$tmp/tok.csv" --out "$tmp/tok-$backend" --backend "$backend" \
    --progress none >"$tmp/log" 2>&1 || { bad "train tok ($backend)"; cat "$tmp/log"; }
  expect 0 'accuracy 1\.0000 ' eval "$tmp/tok.nn" --weights "$tmp/tok-$backend/checkpoint.safetensors" \
    --data "$tmp/tok.csv" --backend "$backend"
done
printf 't0,t1,t2\n3,0,0\n4,0,0\n' >"$tmp/new.csv"
"$nnc" predict "$tmp/tok.nn" --weights "$tmp/tok-cpu/checkpoint.safetensors" "$tmp/new.csv" >"$tmp/pred" 2>&1
if grep -q '\[0\]:  1 ' "$tmp/pred" && grep -q '\[1\]:  0 ' "$tmp/pred"; then
  ok "predict reads integer columns"
else
  bad "predict on tokens"; cat "$tmp/pred"
fi

# Errors where the data is read: the line, the column and the value.
printf 't0,t1,t2,label\n1,2,3,1\n1,2.5,3,0\n' >"$tmp/frac.csv"
expect 1 'line 3, column 2 (t1): 2.5 is not a whole number, but input .t. holds integers (i32)' \
  train "$tmp/tok.nn" --data "$tmp/frac.csv" --out "$tmp/x1"
printf 't0,t1,t2,label\n1,2,8,1\n' >"$tmp/big.csv"
expect 1 'line 2, column 3 (t2): index 8 of input .t. is outside \[0, 8)' \
  train "$tmp/tok.nn" --data "$tmp/big.csv" --out "$tmp/x2"
expect 1 "line 2, column 3 (t2): index 8 of input 't' is outside" \
  predict "$tmp/tok.nn" --weights "$tmp/tok-cpu/checkpoint.safetensors" "$tmp/big.csv"
expect 1 "input 't' holds integers (i32), which standardizing would change" \
  train "$tmp/tok.nn" --data "$tmp/tok.csv" --normalize --out "$tmp/x3"

# IDX: ubyte samples are the indexes themselves, not pixels scaled by 1/255.
mkdir -p "$tmp/idx"
{ printf '\000\000\010\002\000\000\000\004\000\000\000\003'; printf '\001\002\003\004\005\006\003\000\000\002\002\002'; } \
  >"$tmp/idx/train-images-idx3-ubyte"
{ printf '\000\000\010\001\000\000\000\004'; printf '\001\000\001\000'; } >"$tmp/idx/train-labels-idx1-ubyte"
NO_COLOR=1 "$nnc" train "$tmp/tok.nn" --data "$tmp/idx" --out "$tmp/tok-idx" --no-test --progress none \
  >"$tmp/log" 2>&1 && ok "train on IDX bytes as indexes" || { bad "train on IDX"; cat "$tmp/log"; }
expect 0 'accuracy 1\.0000 ' eval "$tmp/tok.nn" --weights "$tmp/tok-idx/checkpoint.safetensors" --data "$tmp/idx" \
  --split train
{ printf '\000\000\010\002\000\000\000\002\000\000\000\003'; printf '\001\002\003\004\011\006'; } \
  >"$tmp/idx/train-images-idx3-ubyte"
{ printf '\000\000\010\001\000\000\000\002'; printf '\001\000'; } >"$tmp/idx/train-labels-idx1-ubyte"
expect 1 'sample 1, value 1: 9 is outside \[0, vocab), but input .t. holds the indexes of an embedding of vocab 8' \
  train "$tmp/tok.nn" --data "$tmp/idx" --out "$tmp/x4" --no-test
printf 'P2\n3 1\n255\n1 2 3\n' >"$tmp/img.pgm"
expect 1 "input 't' holds integers (i32), not an image's pixels" \
  predict "$tmp/tok.nn" --weights "$tmp/tok-cpu/checkpoint.safetensors" "$tmp/img.pgm"
exit $fail
