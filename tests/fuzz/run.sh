#!/bin/sh
# run.sh TARGET BINDIR WORKDIR LIMIT: runs the libFuzzer target
# BINDIR/fuzz_TARGET on every seed and regression input once (each must
# pass), then fuzzes it from its seeds for LIMIT: a number of seconds, or
# -runs=N for N inputs. New inputs go to
# WORKDIR/TARGET (the seed directories are only read); a crash leaves its
# input as WORKDIR/TARGET-crash-*. Exits 77 (a skip for CTest) when the
# target was not built, which needs clang with libFuzzer.
#
# Limits: an allocation over -malloc_limit_mb is a failure, as is 10 s on
# one input. The largest image a 4 KB input can honestly decode (a 1-bit
# PNG, 1032:1 deflate) takes 128 MB of floats, so images get 200 MB; the
# other readers never need more than a few times their input.
set -u
t=$1 bindir=$2 work=$3 limit=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$bindir/fuzz_$t
if [ ! -x "$bin" ]; then
  echo "fuzz_$t: skipped: not built (the fuzz targets need clang with libFuzzer:" \
       "apt install clang-N libclang-rt-N-dev for LLVM N, or run scripts/install-deps.sh)"
  exit 77
fi
opts="-rss_limit_mb=1536 -malloc_limit_mb=128 -timeout=10"
seeds="$here/corpus/$t"
case $t in
  image) opts="-rss_limit_mb=1536 -malloc_limit_mb=200 -timeout=10" ;;
  nn) seeds="$here/corpus/nn $root/models $root/tests/parse"; opts="$opts -dict=$here/nn.dict" ;;
  kir) seeds="$here/corpus/kir $root/tests/kir" ;;
esac
mkdir -p "$work/$t"
log=$work/$t.log

# Every seed and regression input, once each.
inputs=$(find $seeds "$here/regress/$t" -type f 2>/dev/null | sort)
if [ -n "$inputs" ] && ! "$bin" $opts $inputs >"$log" 2>&1; then
  tail -40 "$log"
  echo "fuzz_$t: an input in tests/fuzz/corpus/$t or tests/fuzz/regress/$t fails"
  exit 1
fi

# Fuzzing from the seeds.
case $limit in
  -*) ;;
  *) limit="-max_total_time=$limit" ;;
esac
if ! "$bin" $opts -seed="${FUZZ_SEED:-1}" $limit -print_final_stats=1 \
     -artifact_prefix="$work/$t-" "$work/$t" $seeds >"$log" 2>&1; then
  tail -40 "$log"
  echo "fuzz_$t: failed; the input is $(ls "$work/$t"-crash-* "$work/$t"-leak-* "$work/$t"-oom-* \
       "$work/$t"-timeout-* "$work/$t"-slow-unit-* "$work/$t"-malloc-limit-* 2>/dev/null | head -1)"
  exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
echo "fuzz_$t: $runs runs in ${secs:-?} s, clean ($(find "$work/$t" -type f | wc -l) inputs in $work/$t)"
