#!/bin/sh
# nnc train --distributed: P processes of mpirun, each with its share of
# every batch, train to the weights of one process within float rounding
# (a sum in another order), and one process alone to the same bytes;
# resuming with another P continues the run; process 0 alone prints; what
# cannot train as one process does is refused. $3: mpirun (may be empty).
# Built without MPI, --distributed must say what to install. Skipped (77)
# only where nnc has MPI but mpirun is missing.
. "${0%/*}/../lib.sh"
mpirun=${3:-mpirun}
root=""
[ "$(id -u)" = 0 ] && root=--allow-run-as-root
close=tests/train/close.pl

# 240 samples of 12 x 12 in the label,pixel0,... layout: 12 batches of 20.
awk 'BEGIN { printf "label"; for (j = 0; j < 144; j++) printf ",pixel%d", j; print ""
             for (i = 0; i < 240; i++) { printf "%d", i % 4
               for (j = 0; j < 144; j++) printf ",%d", (i * 37 + j * (i % 4 + 3)) % 256; print "" } }' >"$tmp/d.csv"
set -- --data "$tmp/d.csv" --no-test --threads 1 --progress none

NO_COLOR=1 "$nnc" train tests/train/dist.nn "$@" --epochs 1 --out "$tmp/alone" --distributed >"$tmp/alone.log" 2>&1
status=$?
if grep -q "built without MPI" "$tmp/alone.log"; then
  if [ $status = 1 ] && grep -q "HINT: install Open MPI.*libopenmpi-dev openmpi-bin" "$tmp/alone.log"; then
    ok "built without MPI: --distributed names the packages to install"
  else
    bad "built without MPI: status $status"; cat "$tmp/alone.log"
  fi
  exit $fail
fi
command -v "$mpirun" >/dev/null 2>&1 || { echo "skip: nnc has MPI, but there is no $mpirun"; exit 77; }
[ $status = 0 ] || { bad "--distributed in one process without mpirun: status $status"; cat "$tmp/alone.log"; exit 1; }

run() {   # run NAME P ARGS...: P processes (0: nnc alone, without --distributed)
  name=$1 p=$2
  shift 2
  if [ "$p" = 0 ]; then
    "$nnc" train tests/train/dist.nn "$@" >"$tmp/$name.log" 2>&1
  else
    "$mpirun" --oversubscribe $root -np "$p" "$nnc" train tests/train/dist.nn "$@" --distributed \
      >"$tmp/$name.log" 2>&1 </dev/null
  fi
}
trained() {   # trained NAME P ARGS...: the run must succeed
  run "$@" || { bad "training $1 on $2 processes failed"; cat "$tmp/$1.log"; }
}

trained one 0 "$@" --epochs 1 --out "$tmp/one"
if cmp -s "$tmp/one/checkpoint.safetensors" "$tmp/alone/checkpoint.safetensors"; then
  ok "--distributed in one process: the same checkpoint as a plain run"
else
  bad "--distributed in one process changed the checkpoint"
fi

for p in 2 3; do   # 3: shares of 6 and 7 of each batch of 20
  trained p$p $p "$@" --epochs 1 --out "$tmp/p$p"
  if perl $close "$tmp/one/checkpoint.safetensors" "$tmp/p$p/checkpoint.safetensors" 1e-5 >"$tmp/cmp" 2>&1; then
    ok "P = $p: the weights of one process ($(cat "$tmp/cmp"))"
  else
    bad "P = $p: the weights differ from one process's: $(cat "$tmp/cmp")"
  fi
done
trained nofuse 2 "$@" --epochs 1 --no-fuse --out "$tmp/nofuse"   # every node a kernel: other points to sum at
if perl $close "$tmp/one/checkpoint.safetensors" "$tmp/nofuse/checkpoint.safetensors" 1e-5 >"$tmp/cmp" 2>&1; then
  ok "P = 2 unfused: the weights of one process ($(cat "$tmp/cmp"))"
else
  bad "P = 2 unfused: $(cat "$tmp/cmp")"
fi
# Augmentation draws by the sample's place in the epoch: the same with shares.
trained aug1 0 "$@" --epochs 1 --shift 2 --hflip --noise 0.05 --out "$tmp/aug1"
trained aug2 2 "$@" --epochs 1 --shift 2 --hflip --noise 0.05 --out "$tmp/aug2"
if perl $close "$tmp/aug1/checkpoint.safetensors" "$tmp/aug2/checkpoint.safetensors" 1e-5 >"$tmp/cmp" 2>&1; then
  ok "P = 2 augmented (shift, hflip, noise): the weights of one process ($(cat "$tmp/cmp"))"
else
  bad "P = 2 augmented: $(cat "$tmp/cmp")"
fi
lines=$(grep -c "^epoch 1/1: train loss" "$tmp/p2.log")
if [ "$lines" = 1 ] && grep -q "distributed: 2 processes, each with 10 samples of every batch of 20" "$tmp/p2.log"; then
  ok "process 0 alone prints"
else
  bad "P = 2 printed $lines epoch lines"; cat "$tmp/p2.log"
fi
l1=$(tail -1 "$tmp/one/metrics.csv" | cut -d, -f4) l2=$(tail -1 "$tmp/p2/metrics.csv" | cut -d, -f4)
if awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'; then
  ok "the metrics log's training loss is the whole batch's ($l1, $l2)"
else
  bad "training loss of P = 2 $l2, of one process $l1"
fi

# Two epochs in one process, and the same run split: one epoch on 2
# processes resumed on 3, and one on 1 resumed on 2.
trained two 0 "$@" --epochs 2 --out "$tmp/two"
cp -r "$tmp/p2" "$tmp/r23"
trained r23b 3 "$@" --epochs 2 --resume "$tmp/r23/checkpoint.safetensors"
cp -r "$tmp/one" "$tmp/r12"
trained r12b 2 "$@" --epochs 2 --resume "$tmp/r12/checkpoint.safetensors"
for r in r23 r12; do
  if perl $close "$tmp/two/checkpoint.safetensors" "$tmp/$r/checkpoint.safetensors" 1e-5 >"$tmp/cmp" 2>&1; then
    ok "resumed with another P ($r): two epochs of one process ($(cat "$tmp/cmp"))"
  else
    bad "resumed $r: $(cat "$tmp/cmp")"; cat "$tmp/${r}b.log"
  fi
done

refused() {   # refused NAME P PATTERN ARGS...
  name=$1 p=$2 pattern=$3
  shift 3
  run "$name" "$p" "$@"
  status=$?
  if [ $status != 0 ] && grep -q -- "$pattern" "$tmp/$name.log"; then
    ok "refused: $pattern"
  else
    bad "$name: status $status, no line matches '$pattern'"; cat "$tmp/$name.log"
  fi
}
# A loss that goes non-finite stops every process; one says where, as one process would.
sed 's/adam(lr = 0.01)/sgd(lr = 1e30)/' tests/train/dist.nn >"$tmp/sgd.nn"
"$nnc" train "$tmp/sgd.nn" "$@" --out "$tmp/nan1" >"$tmp/nan1.log" 2>&1
"$mpirun" --oversubscribe $root -np 2 "$nnc" train "$tmp/sgd.nn" "$@" --distributed --out "$tmp/nan2" \
  >"$tmp/nan2.log" 2>&1 </dev/null
status=$?
want=$(grep "training stopped" "$tmp/nan1.log")
if [ $status != 0 ] && [ -n "$want" ] && [ "$(grep -c "training stopped" "$tmp/nan2.log")" = 1 ] &&
   grep -qF "$want" "$tmp/nan2.log"; then
  ok "a non-finite loss stops every process, reported once as one process does"
else
  bad "non-finite loss on 2 processes: status $status"; cat "$tmp/nan1.log" "$tmp/nan2.log"
fi
refused ref 2 "the ref backend runs a training step as a whole" "$@" --backend ref --out "$tmp/ref"
refused small 2 "a batch of 1 samples leaves some of the 2 processes none" "$@" --batch 1 --out "$tmp/small"
refused last 3 "leave a last batch of 1, fewer than the 3 processes" "$@" --batch 7 --limit 22 --out "$tmp/last"
run lastok 3 "$@" --batch 7 --limit 22 --drop-last --out "$tmp/lastok" ||
  { bad "--drop-last drops the last batch of one"; cat "$tmp/lastok.log"; }
"$mpirun" --oversubscribe $root -np 2 "$nnc" train tests/train/dist_bn.nn "$@" --distributed --out "$tmp/bn" \
  >"$tmp/bn.log" 2>&1 </dev/null
if [ $? != 0 ] && grep -q "dist_bn.nn:6:.*batchnorm trains on the statistics of the whole batch" "$tmp/bn.log"; then
  ok "a batchnorm is refused, at its line"
else
  bad "batchnorm with P = 2"; cat "$tmp/bn.log"
fi
"$mpirun" --oversubscribe $root -np 2 "$nnc" train tests/train/dist.nn "$@" --out "$tmp/nodist" \
  >"$tmp/nodist.log" 2>&1 </dev/null
if [ $? != 0 ] && grep -q "HINT: add --distributed" "$tmp/nodist.log"; then
  ok "mpirun without --distributed is refused"
else
  bad "mpirun without --distributed"; cat "$tmp/nodist.log"
fi
exit $fail
