#!/bin/sh
# fuzz.sh TARGET|all [LIMIT]: the long fuzzing run. Builds the libFuzzer
# targets with clang into build-fuzz/ and runs TARGET (or each target in
# turn) at low priority, from its seeds and what earlier runs found
# (build-fuzz/work/TARGET), for LIMIT: seconds (default 600) or -runs=N.
# See docs/fuzzing.md; FUZZ_SEED picks libFuzzer's seed (default: the time).
#
#   scripts/fuzz.sh image 300
#   scripts/fuzz.sh all -runs=1000000
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
targets="idx idx_gz csv table_csv image safetensors nn kir"
if [ $# -lt 1 ]; then
  echo "usage: scripts/fuzz.sh TARGET|all [SECONDS | -runs=N]   (targets: $targets)" >&2
  exit 2
fi
t=$1
limit=${2:-600}
cc=$(command -v clang-19 || command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
  echo "fuzz.sh: needs clang with libFuzzer; run scripts/install-deps.sh" >&2
  exit 1
fi
cmake -S "$root/tests/fuzz" -B "$root/build-fuzz" -DCMAKE_C_COMPILER="$cc" >/dev/null
[ "$t" = all ] || targets=$t
for t in $targets; do
  nice cmake --build "$root/build-fuzz" -j2 --target "fuzz_$t" >/dev/null
  FUZZ_SEED=${FUZZ_SEED:-$(date +%s)} nice sh "$root/tests/fuzz/run.sh" "$t" "$root/build-fuzz" \
    "$root/build-fuzz/work" "$limit"
done
