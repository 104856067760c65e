#!/bin/sh
# A checkpoint whose weights hold NaN or infinity, or whose normalization
# metadata is not a finite mean and standard deviation, is refused with
# the tensor and index (or the key), never used to predict.
. "${0%/*}/../lib.sh"

awk 'BEGIN { printf "label"; for (j = 0; j < 784; j++) printf ",pixel%d", j; print ""
             for (i = 0; i < 20; i++) { printf "%d", i % 10
               for (j = 0; j < 784; j++) printf ",%d", (i * 7 + j) % 256; print "" } }' >"$tmp/d.csv"
"$nnc" train models/logreg.nn --data "$tmp/d.csv" --epochs 1 --normalize --threads 1 --progress none \
  --out "$tmp/run" >"$tmp/train.log" 2>&1 || { bad "training failed"; cat "$tmp/train.log"; exit 1; }
ck=$tmp/run/checkpoint.safetensors
"$nnc" predict models/logreg.nn --weights "$ck" "$tmp/d.csv" --limit 1 >"$tmp/p.log" 2>&1 \
  || { bad "predict with the good checkpoint failed"; cat "$tmp/p.log"; }

# Element 3 of linear_1.weight (at data offset 0, F32) becomes a NaN, then +inf.
for bits in 0000c07f 0000807f; do
  perl -e 'my ($f, $hex) = @ARGV; open(my $h, "+<:raw", $f) or die; read($h, my $n, 8);
           my $hlen = unpack("Q<", $n); seek($h, 8 + $hlen + 12, 0); print $h pack("H8", $hex);' \
    "$ck" "$bits" 2>/dev/null || bad "perl failed"
  "$nnc" predict models/logreg.nn --weights "$ck" "$tmp/d.csv" >"$tmp/nan.log" 2>&1
  if [ $? = 1 ] && grep -q "tensor 'linear_1.weight' holds [-+a-zA-Z ]* at flat index 3" "$tmp/nan.log" &&
     grep -q "diverged, or the file is damaged" "$tmp/nan.log"; then
    ok "a checkpoint with a non-finite weight ($bits) is refused"
  else
    bad "non-finite weight ($bits)"; cat "$tmp/nan.log"
  fi
done

# The mean of 'normalize' becomes "nan" (the header keeps its length).
"$nnc" train models/logreg.nn --data "$tmp/d.csv" --epochs 1 --normalize --threads 1 --progress none --overwrite \
  --out "$tmp/run" >"$tmp/train.log" 2>&1 || { bad "second training failed"; cat "$tmp/train.log"; }
perl -0777 -pi -e 's/("normalize":")([^ "]*)/$1 . sprintf("%-*s", length($2), "nan")/e' "$ck"
"$nnc" predict models/logreg.nn --weights "$ck" "$tmp/d.csv" >"$tmp/norm.log" 2>&1
if [ $? = 1 ] && grep -q "metadata 'normalize' is 'nan" "$tmp/norm.log"; then
  ok "a checkpoint with a non-finite normalization is refused"
else
  bad "non-finite normalization"; cat "$tmp/norm.log"
fi
exit $fail
