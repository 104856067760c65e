#!/bin/sh
# The run directory of `nnc train`: the lock against a second run, links
# never followed, --overwrite and --resume, the metrics log cut back to the
# checkpoint, a failed metrics write, --out as a file or as a .safetensors
# path, --epochs 0, --init with PyTorch-style plain weights, and the test set
# that does not load, resume settings, FIFOs never opened. Data: small CSV
# and IDX files made here.
. "${0%/*}/../lib.sh"
export NO_COLOR=1

# speed = 2 t^2 - 3 t + 0.5 exactly, for models/quadratic.nn.
awk 'BEGIN { srand(3); print "t,speed"; for (i = 0; i < 64; i++) { t = int(rand() * 16 - 8) / 4; print t "," 2 * t * t - 3 * t + 0.5 } }' >"$tmp/q.csv"
q() { "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --lr 0.01 --seed 1 --threads 1 --progress none "$@"; }

# A second run into the same directory fails, naming the first one's pid.
"$nnc" train models/quadratic.nn --data "$tmp/q.csv" --epochs 1000000 --out "$tmp/busy" -q &
first=$!   # nnc's own pid: not started through a function
for i in $(seq 200); do [ "$(cat "$tmp/busy/train.lock" 2>/dev/null)" = $first ] && break; sleep 0.05; done
q --epochs 1 --out "$tmp/busy" --overwrite >"$tmp/busy.log" 2>&1
status=$?
# DIR/checkpoint.safetensors is DIR's run: the same lock, not CHECKPOINT.lock beside it
q --epochs 1 --out "$tmp/busy/checkpoint.safetensors" --overwrite >"$tmp/busy2.log" 2>&1
status2=$?
kill $first; wait $first 2>/dev/null
[ $status2 = 1 ] && grep -q "busy is in use by another training (pid $first)" "$tmp/busy2.log" && [ ! -e "$tmp/busy/checkpoint.lock" ] \
  && ok "--out DIR/checkpoint.safetensors takes DIR's lock" || { bad "--out DIR/checkpoint.safetensors: $status2"; cat "$tmp/busy2.log"; }
if [ $status = 1 ] && grep -q "busy is in use by another training (pid $first), which holds its lock" "$tmp/busy.log"; then
  ok "a second run into a busy directory fails, naming the first one's pid"
else
  bad "second run: status $status"; cat "$tmp/busy.log"
fi

# A new run does not replace a checkpoint unless told.
q --epochs 2 --out "$tmp/a" -q || bad "a first run failed"
cp "$tmp/a/checkpoint.safetensors" "$tmp/a.first"
q --epochs 2 --out "$tmp/a" >"$tmp/again.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q "checkpoint.safetensors is an earlier run's checkpoint; a new run would replace it" "$tmp/again.log" \
   && grep -q -- "HINT: continue that run with --resume .*, start over with --overwrite" "$tmp/again.log" \
   && cmp -s "$tmp/a/checkpoint.safetensors" "$tmp/a.first"; then
  ok "a new run into a directory with a checkpoint is refused, the checkpoint kept"
else
  bad "new run over a checkpoint: status $status"; cat "$tmp/again.log"
fi
q --epochs 1 --out "$tmp/a" --overwrite -q && [ "$(wc -l <"$tmp/a/metrics.csv")" = 2 ] \
  && ok "--overwrite starts over" || bad "--overwrite"
# An --overwrite run that fails in its first epoch leaves the new run's
# epoch-0 checkpoint beside its empty log, not the old run's checkpoint,
# whose metrics rows are gone.
q --epochs 3 --out "$tmp/ow" -q && printf 't,speed\n1e30,1e30\n1,2\n' >"$tmp/huge.csv"
q --epochs 3 --out "$tmp/ow" --overwrite --data "$tmp/huge.csv" >"$tmp/ow.log" 2>&1
[ $? = 1 ] && [ "$(wc -l <"$tmp/ow/metrics.csv")" = 1 ] \
  && head -c 1000 "$tmp/ow/checkpoint.safetensors" | tr -c '[:print:]' ' ' | grep -q '"epoch":"0"' \
  && ok "a failed --overwrite run leaves a checkpoint that agrees with its log" || { bad "--overwrite then failure"; cat "$tmp/ow.log"; }
q --epochs 1 --out "$tmp/a" --resume "$tmp/a/checkpoint.safetensors" --overwrite >"$tmp/both.log" 2>&1
[ $? = 2 ] && grep -q "resume continues a run; --overwrite starts a new one" "$tmp/both.log" \
  && ok "--resume with --overwrite is a usage error" || { bad "--resume --overwrite"; cat "$tmp/both.log"; }

# Resuming cuts the metrics log back to the checkpoint's epoch, and puts
# back the checkpoint's own row when a crash came before it was logged.
q --epochs 3 --out "$tmp/m" -q
cp "$tmp/m/checkpoint.safetensors" "$tmp/m3.safetensors"
q --epochs 5 --out "$tmp/m" --resume "$tmp/m/checkpoint.safetensors" -q
cut -d, -f1-7 "$tmp/m/metrics.csv" >"$tmp/m5.rows"
q --epochs 3 --out "$tmp/m" --resume "$tmp/m3.safetensors" -q
[ "$(cut -d, -f1 "$tmp/m/metrics.csv" | tr '\n' ' ')" = "epoch 1 2 3 " ] \
  && ok "a resume cuts the metrics back to the checkpoint's epoch" || { bad "metrics not cut"; cat "$tmp/m/metrics.csv"; }
sed -i '$d' "$tmp/m/metrics.csv"
q --epochs 5 --out "$tmp/m" --resume "$tmp/m/checkpoint.safetensors" -q
if cut -d, -f1-7 "$tmp/m/metrics.csv" | cmp -s - "$tmp/m5.rows" && grep -q '^3,.*,$' "$tmp/m/metrics.csv"; then
  ok "a row lost to a crash comes back from the checkpoint (without its seconds)"
else
  bad "the lost row"; cat "$tmp/m/metrics.csv"
fi

q --epochs 2 --metrics json --out "$tmp/j" -q
cp "$tmp/j/checkpoint.safetensors" "$tmp/j2.safetensors"
q --epochs 4 --metrics json --out "$tmp/j" --resume "$tmp/j/checkpoint.safetensors" -q
q --epochs 2 --metrics json --out "$tmp/j" --resume "$tmp/j2.safetensors" -q
[ "$(sed 's/,.*//' "$tmp/j/metrics.jsonl" | tr '\n' ' ')" = '{"epoch": 1 {"epoch": 2 ' ] \
  && ok "a resume cuts JSON metrics back too" || { bad "JSON metrics not cut"; cat "$tmp/j/metrics.jsonl"; }

# A parameter whose initializer overflows is not blamed on an update (a
# std beyond float32 is refused at check time; draws of normal(3e38, 3e38)
# overflow where they land).
sed 's/param  a: f32\[\] = normal(0, 1)/param  a: f32[] = normal(0, 1e39)/' models/quadratic.nn >"$tmp/big.nn"
"$nnc" check "$tmp/big.nn" >"$tmp/big.log" 2>&1
[ $? = 1 ] && grep -q "normal: std 1e+39 is beyond the range of float32" "$tmp/big.log" \
  && ok "an initializer beyond float32 is refused at check time" || { bad "float32 initializer"; cat "$tmp/big.log"; }
sed 's/param  a: f32\[\] = normal(0, 1)/param  a: f32[] = normal(3e38, 3e38)/' models/quadratic.nn >"$tmp/big.nn"
"$nnc" train "$tmp/big.nn" --data "$tmp/q.csv" --out "$tmp/big" --progress none >"$tmp/big.log" 2>&1
[ $? = 1 ] && grep -q "'a' was not finite before the first update of this run" "$tmp/big.log" \
  && grep -q "hint: check the initializer of 'a'" "$tmp/big.log" && ok "a non-finite initial weight is blamed on its initializer" \
  || { bad "non-finite initializer"; cat "$tmp/big.log"; }

# Links are never followed: not at the files nnc writes, not at a temporary.
echo precious >"$tmp/victim"
for f in metrics.csv checkpoint.safetensors train.lock; do
  mkdir -p "$tmp/link-${f%%.*}"
  ln -s "$tmp/victim" "$tmp/link-${f%%.*}/$f"
  q --epochs 1 --out "$tmp/link-${f%%.*}" >"$tmp/link.log" 2>&1
  status=$?
  if [ $status = 1 ] && grep -q "link-${f%%.*}/$f' is a symbolic link; nnc never writes through a link" "$tmp/link.log" \
     && [ "$(cat "$tmp/victim")" = precious ]; then
    ok "a link at $f is refused"
  else
    bad "a link at $f: status $status"; cat "$tmp/link.log"
  fi
done
mkdir -p "$tmp/plant"
ln -s "$tmp/victim" "$tmp/plant/metrics.csv.tmp.999999999"
ln -s "$tmp/victim" "$tmp/plant/checkpoint.safetensors.tmp.$$.live"
# The pid of the shell that execs nnc is nnc's: its old-style temporary name is known.
sh -c 'ln -s "$1" "$2/checkpoint.safetensors.tmp.$$"; shift 2; exec "$@"' sh "$tmp/victim" "$tmp/plant" \
  "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --lr 0.01 --epochs 2 --out "$tmp/plant" -q
status=$?
left=$(ls "$tmp/plant" | tr '\n' ' ')
if [ $status = 0 ] && [ "$(cat "$tmp/victim")" = precious ] \
   && [ "$left" = "checkpoint.safetensors checkpoint.safetensors.tmp.$$.live metrics.csv train.lock " ]; then
  ok "planted temporaries: nothing written through them; those of dead pids removed, a live one's kept"
else
  bad "planted temporaries: status $status, victim '$(cat "$tmp/victim")', left: $left"
fi

# A metrics write that fails (here: past the file size limit, while the
# checkpoint stays under it) is an error, not a lost log.
sh -c 'trap "" XFSZ; ulimit -f 2; exec "$@"' sh "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --lr 0.01 \
  --epochs 60 --out "$tmp/full" --progress none -q >"$tmp/full.log" 2>&1
status=$?
if [ $status = 1 ] && grep -q "cannot write the metrics log '.*full/metrics.csv': File too large; the checkpoint of epoch [0-9]* was saved" "$tmp/full.log"; then
  ok "a failed metrics write is an error"
else
  bad "metrics write failure: status $status"; cat "$tmp/full.log"
fi

# --out: a file is not a directory; a .safetensors path is the checkpoint.
echo x >"$tmp/afile"
q --epochs 1 --out "$tmp/afile" >"$tmp/file.log" 2>&1
[ $? = 1 ] && grep -q "out '.*afile' is a file, not a directory" "$tmp/file.log" && ok "--out naming a file is refused" \
  || { bad "--out a file"; cat "$tmp/file.log"; }
q --epochs 1 --out "$tmp/sub/w.safetensors" -q
[ -f "$tmp/sub/w.safetensors" ] && [ -f "$tmp/sub/w.metrics.csv" ] && [ -f "$tmp/sub/w.lock" ] \
  && ok "--out X.safetensors is the checkpoint, with X.metrics.csv beside it" || { bad "--out .safetensors"; ls "$tmp/sub"; }
mkdir "$tmp/d.safetensors"
q --epochs 1 --out "$tmp/d.safetensors" >"$tmp/dir.log" 2>&1
[ $? = 1 ] && grep -q "is a directory, but a path ending in .safetensors names the checkpoint file itself" "$tmp/dir.log" \
  && ok "--out X.safetensors that is a directory is refused" || { bad "--out dir.safetensors"; cat "$tmp/dir.log"; }

# --resume without --out continues in the run the checkpoint belongs to.
q --epochs 6 --resume "$tmp/m/checkpoint.safetensors" -q && [ "$(tail -1 "$tmp/m/metrics.csv" | cut -d, -f1)" = 6 ] \
  && q --epochs 3 --resume "$tmp/sub/w.safetensors" -q && [ "$(tail -1 "$tmp/sub/w.metrics.csv" | cut -d, -f1)" = 3 ] \
  && ok "--resume without --out continues in the checkpoint's run" || { bad "--resume without --out"; ls "$tmp/m" "$tmp/sub"; }

# --epochs 0 writes the initial weights; resuming from them is the same run.
q --epochs 0 --out "$tmp/e0" -q && q --epochs 3 --out "$tmp/e0" --resume "$tmp/e0/checkpoint.safetensors" -q
q --epochs 3 --out "$tmp/e3" -q
cmp -s "$tmp/e0/checkpoint.safetensors" "$tmp/e3/checkpoint.safetensors" \
  && ok "--epochs 0 writes the initial weights; resuming from them equals a fresh run" || bad "--epochs 0"

# Plain weights as PyTorch's save_file writes them (no metadata; a = 2,
# b = -3, c = 0.5): evaluated as they are, a new run starts from them with
# --init, and --resume says to use --init.
hdr='{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}'
while [ $((${#hdr} % 8)) != 0 ]; do hdr="$hdr "; done
{ printf "\\$(printf %03o ${#hdr})\\000\\000\\000\\000\\000\\000\\000"; printf '%s' "$hdr"
  printf '\000\000\000\100\000\000\100\300\000\000\000\077'; } >"$tmp/torch.safetensors"
"$nnc" eval models/quadratic.nn --weights "$tmp/torch.safetensors" --data "$tmp/q.csv" >"$tmp/plain.log" 2>&1
if grep -q "torch.safetensors (plain weights, no training metadata)" "$tmp/plain.log" && grep -q "^loss 0.0000" "$tmp/plain.log"; then
  ok "eval takes a state_dict without nnc metadata as weights"
else
  bad "eval of plain weights"; cat "$tmp/plain.log"
fi
q --epochs 1 --out "$tmp/init" --init "$tmp/torch.safetensors" >"$tmp/init.log" 2>&1 \
  && grep -q "starting from the weights of .*torch.safetensors (plain weights, no nnc metadata); optimizer state starts fresh" "$tmp/init.log" \
  && grep -q "^epoch 1/1: train loss 0.0000" "$tmp/init.log" && ok "--init starts a new run from plain weights" \
  || { bad "--init"; cat "$tmp/init.log"; }
q --epochs 2 --out "$tmp/res" --resume "$tmp/torch.safetensors" >"$tmp/res.log" 2>&1
[ $? = 1 ] && grep -q "holds weights but no training state" "$tmp/res.log" && grep -q "HINT: start a new run from these weights with --init" "$tmp/res.log" \
  && ok "--resume from plain weights says to use --init" || { bad "--resume plain"; cat "$tmp/res.log"; }

# A resume takes the run's settings: without --batch and --lr it goes on
# with the run's, bit for bit; another --batch, --seed, --limit,
# --val-split, --no-shuffle or --normalize, or other data, is refused,
# naming what the run had.
q --epochs 2 --batch 8 --out "$tmp/s2" -q && q --epochs 1 --batch 8 --out "$tmp/s1" -q && cp -r "$tmp/s1" "$tmp/s1.first" \
  && "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --threads 1 --progress none --epochs 2 -q \
       --resume "$tmp/s1/checkpoint.safetensors" && cmp -s "$tmp/s1/checkpoint.safetensors" "$tmp/s2/checkpoint.safetensors" \
  && ok "a resume continues with the run's --batch and --lr" || bad "a resume without the run's flags differs"
head -33 "$tmp/q.csv" >"$tmp/q32.csv"
for args in "--batch 16:trained with --batch 8; resuming it with --batch 16" "--seed 2:trained with --seed 1; resuming it with --seed 2" \
    "--limit 10:trained with no --limit; resuming it with --limit 10" "--val-split 0.5:with --val-split 0; resuming it with --val-split 0.5" \
    "--no-shuffle:trained with the data shuffled; resuming it with --no-shuffle" "--normalize:trained without --normalize" \
    "--drop-last:trained with every epoch's last batch kept; resuming it with --drop-last" \
    "--data $tmp/q32.csv:the run trained on 64 samples, but .*q32.csv gives 32"; do
  q --epochs 2 --out "$tmp/s1.first" --resume "$tmp/s1.first/checkpoint.safetensors" ${args%%:*} >"$tmp/s.log" 2>&1
  [ $? = 1 ] && grep -q "${args#*:}" "$tmp/s.log" && grep -q "HINT: .*--init" "$tmp/s.log" \
    && ok "a resume with ${args%%:*} is refused" || { bad "a resume with ${args%%:*}"; cat "$tmp/s.log"; }
done
q --epochs 2 --out "$tmp/s1.first" --resume "$tmp/s1.first/checkpoint.safetensors" --lr 0.001 -q \
  && ok "a resume may change --lr" || bad "a resume with another --lr"

# --drop-last: 64 samples in batches of 24 make 2 steps an epoch (not 3),
# kept by a resume; a batch larger than the data leaves no step and is refused.
q --epochs 2 --batch 24 --drop-last --out "$tmp/dl" -q && grep -q '^2,4,' "$tmp/dl/metrics.csv" \
  && q --epochs 3 --out "$tmp/dl" --resume "$tmp/dl/checkpoint.safetensors" -q && grep -q '^3,6,' "$tmp/dl/metrics.csv" \
  && ok "--drop-last drops each epoch's partial batch, and a resume keeps it" \
  || { bad "--drop-last"; cat "$tmp/dl/metrics.csv"; }
# schedule onecycle: per step over epochs x batches (4 here); the metrics
# log the rate of each epoch's last step: OneCycleLR's at steps 1 and 3.
sed 's/^optimizer.*/optimizer sgd(lr = 1e-3)\nschedule onecycle(max_lr = 0.01)/' models/quadratic.nn >"$tmp/oc.nn"
"$nnc" train "$tmp/oc.nn" --data "$tmp/q.csv" --epochs 2 --batch 32 --threads 1 --progress none --out "$tmp/oc" -q \
  && grep -q '^1,2,0.00811745654,' "$tmp/oc/metrics.csv" && grep -q '^2,4,4e-08,' "$tmp/oc/metrics.csv" \
  && ok "onecycle steps the rate per batch as OneCycleLR" || { bad "onecycle"; cat "$tmp/oc/metrics.csv"; }
# train { patience = 1 }: with this rate the validation loss first rises
# after epoch 6, so the run stops after epoch 7, its best weights (epoch 6)
# in checkpoint.best.safetensors; without a validation set it is refused.
sed 's/^train .*/train { batch = 8, epochs = 30, patience = 1, val_split = 0.25 }/; s/^optimizer.*/optimizer sgd(lr = 0.01, momentum = 0.9)/' \
  models/quadratic.nn >"$tmp/es.nn"
"$nnc" train "$tmp/es.nn" --data "$tmp/q.csv" --lr 0.03 --threads 1 --progress none --out "$tmp/es" >"$tmp/s.log" 2>&1 \
  && grep -q "early stop after epoch 7: no better validation loss for 1 epoch; the best, epoch 6" "$tmp/s.log" \
  && [ "$(tail -1 "$tmp/es/metrics.csv" | cut -d, -f1)" = 7 ] \
  && head -c 1000 "$tmp/es/checkpoint.best.safetensors" | grep -aq '"epoch":"6"' \
  && ok "patience stops the run and keeps the best epoch's checkpoint" || { bad "patience"; cat "$tmp/s.log"; }
"$nnc" train "$tmp/es.nn" --data "$tmp/q.csv" --val-split 0 --threads 1 --progress none --out "$tmp/es2" >"$tmp/s.log" 2>&1
[ $? = 1 ] && grep -q "patience = 1 stops training on the validation metric, but this run has no validation set" "$tmp/s.log" \
  && ok "patience without a validation set is refused" || { bad "patience without validation"; cat "$tmp/s.log"; }
q --epochs 1 --batch 100 --drop-last --out "$tmp/dl2" >"$tmp/s.log" 2>&1
[ $? = 1 ] && grep -q "the 64 training samples make no whole batch of 100" "$tmp/s.log" && grep -q "HINT: use --batch 64" "$tmp/s.log" \
  && ok "--drop-last with no whole batch is refused" || { bad "--drop-last with no whole batch"; cat "$tmp/s.log"; }

# A resume into another run's directory is refused, its checkpoint and
# metrics left as they were; an earlier copy of the run's own checkpoint
# still rolls the run back.
q --epochs 3 --seed 5 --out "$tmp/other" -q && cp "$tmp/other/checkpoint.safetensors" "$tmp/other.ckpt" \
  && cp "$tmp/other/metrics.csv" "$tmp/other.csv" || bad "the other run failed"
q --epochs 2 --out "$tmp/other" --resume "$tmp/s1/checkpoint.safetensors" >"$tmp/other.log" 2>&1
[ $? = 1 ] && grep -q "other/checkpoint.safetensors belongs to another run than .*s1/checkpoint.safetensors" "$tmp/other.log" \
  && cmp -s "$tmp/other/checkpoint.safetensors" "$tmp/other.ckpt" && cmp -s "$tmp/other/metrics.csv" "$tmp/other.csv" \
  && ok "a resume into another run's directory is refused, its files kept" || { bad "resume into another run"; cat "$tmp/other.log"; }

# A validation split that leaves nothing to train on says so.
head -3 "$tmp/q.csv" >"$tmp/q2.csv"
q --epochs 1 --data "$tmp/q2.csv" --val-split 0.9 --out "$tmp/vs" >"$tmp/vs.log" 2>&1
[ $? = 1 ] && grep -q "q2.csv: --val-split 0.9 holds out all 2 samples for validation, leaving none" "$tmp/vs.log" \
  && ok "a split that leaves no training samples names --val-split" || { bad "--val-split 0.9 of 2"; cat "$tmp/vs.log"; }

# Nothing blocks on a FIFO: a metrics log, a checkpoint or data that is one
# is refused (it used to hang); a run directory given as the weights points
# at the checkpoint inside.
mkfifo "$tmp/fifo"
cp -r "$tmp/s1" "$tmp/ff" && rm "$tmp/ff/metrics.csv" && mkfifo "$tmp/ff/metrics.csv"
timeout 60 "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --epochs 2 --progress none -q \
  --resume "$tmp/ff/checkpoint.safetensors" >"$tmp/ff.log" 2>&1
[ $? = 1 ] && grep -q "cannot read the metrics log '.*ff/metrics.csv': not a regular file" "$tmp/ff.log" \
  && ok "a metrics log that is a FIFO is refused" || { bad "metrics FIFO"; cat "$tmp/ff.log"; }
for flag in --resume --init; do
  timeout 60 "$nnc" train models/quadratic.nn --data "$tmp/q.csv" --epochs 2 --progress none -q --out "$tmp/ff2" \
    $flag "$tmp/fifo" >"$tmp/ff.log" 2>&1
  [ $? = 1 ] && grep -q "fifo: is not a regular file (a pipe or a device), so it cannot be a checkpoint" "$tmp/ff.log" \
    && ok "$flag FIFO is refused" || { bad "$flag FIFO"; cat "$tmp/ff.log"; }
done
timeout 60 "$nnc" train models/quadratic.nn --epochs 1 --progress none --out "$tmp/ff3" --data "$tmp/fifo" >"$tmp/ff.log" 2>&1
[ $? = 1 ] && grep -q "fifo: is not a regular file" "$tmp/ff.log" && grep -q "HINT: save the data to a file" "$tmp/ff.log" \
  && ok "--data FIFO is refused" || { bad "--data FIFO"; cat "$tmp/ff.log"; }
timeout 60 "$nnc" eval models/quadratic.nn --data "$tmp/q.csv" --weights "$tmp/s1" >"$tmp/ff.log" 2>&1
[ $? = 1 ] && grep -q "s1: is a directory, not a checkpoint" "$tmp/ff.log" \
  && grep -q "HINT: give the checkpoint file, such as .*s1/checkpoint.safetensors" "$tmp/ff.log" \
  && ok "eval --weights RUNDIR names the checkpoint inside" || { bad "eval --weights RUNDIR"; cat "$tmp/ff.log"; }
timeout 60 "$nnc" predict models/quadratic.nn --weights "$tmp/s1/checkpoint.safetensors" "$tmp/fifo" >"$tmp/ff.log" 2>&1
[ $? = 1 ] && grep -q "fifo: is not a regular file" "$tmp/ff.log" && ok "predict on a FIFO is refused" \
  || { bad "predict FIFO"; cat "$tmp/ff.log"; }

# A test set that does not load is an error; --no-test trains without one.
idx() {   # idx FILE MAGIC3 COUNT [28 28]: an IDX header for COUNT samples, then zeros
  f=$1 m=$2 n=$3
  shift 3
  { printf "\\000\\000\\010\\$m"; for d in $n "$@"; do printf "\\000\\000\\000\\$(printf %03o $d)"; done
    size=$n; for d in "$@"; do size=$((size * d)); done; head -c $size /dev/zero; } >"$f"
}
mkdir "$tmp/idx"
idx "$tmp/idx/train-images-idx3-ubyte" 003 64 28 28
idx "$tmp/idx/train-labels-idx1-ubyte" 001 64
l() { "$nnc" train models/logreg.nn --data "$tmp/idx" --epochs 1 --threads 1 --progress none "$@"; }
l --out "$tmp/t1" >"$tmp/notest.log" 2>&1
[ $? = 1 ] && grep -q "the test set: " "$tmp/notest.log" && grep -q -- "--no-test" "$tmp/notest.log" \
  && ok "a missing test set is an error" || { bad "missing test set"; cat "$tmp/notest.log"; }
idx "$tmp/idx/t10k-images-idx3-ubyte" 003 64 28 28
idx "$tmp/idx/t10k-labels-idx1-ubyte" 001 64
head -c 3000 "$tmp/idx/t10k-images-idx3-ubyte" >"$tmp/cut" && mv "$tmp/cut" "$tmp/idx/t10k-images-idx3-ubyte"
l --out "$tmp/t2" >"$tmp/cut.log" 2>&1
[ $? = 1 ] && grep -q "the test set: .*t10k-images" "$tmp/cut.log" && ok "a truncated test set is an error" \
  || { bad "truncated test set"; cat "$tmp/cut.log"; }
l --out "$tmp/t3" --no-test >"$tmp/skip.log" 2>&1 && grep -q "^test: skipped (--no-test)" "$tmp/skip.log" \
  && ok "--no-test trains without a test set, and says so" || { bad "--no-test"; cat "$tmp/skip.log"; }
q --epochs 1 --out "$tmp/t4" >"$tmp/csv.log" 2>&1 && grep -q "^test: none (give one with --test FILE)" "$tmp/csv.log" \
  && ok "CSV data without --test says there is no test set" || { bad "CSV without a test set"; cat "$tmp/csv.log"; }
exit $fail
