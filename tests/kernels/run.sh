#!/bin/sh
# Builds the kernel tests by hand and runs them; no CMake needed.
#
#   tests/kernels/run.sh                 gcc, -O2, into /tmp/kb
#   CC=clang tests/kernels/run.sh        another compiler
#   SAN=1 tests/kernels/run.sh           -O1 with AddressSanitizer + UBSan
#   OUT=dir tests/kernels/run.sh         another build directory
#
# Prints one line per test program and exits non-zero if any failed; each
# program's full output is in $OUT/<name>.log.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CC=${CC:-gcc}
OUT=${OUT:-/tmp/kb}
SAN=${SAN:-0}

# Debian puts cblas.h under /usr/include/<triplet>/openblas-*.
blas_inc=""
for d in /usr/include/*-linux-gnu/openblas-pthread /usr/include/*-linux-gnu/openblas-openmp \
         /usr/include/*-linux-gnu/openblas-serial /usr/include/openblas; do
  if [ -f "$d/cblas.h" ]; then blas_inc=$d; break; fi
done
if [ -z "$blas_inc" ]; then
  echo "run.sh: cblas.h from OpenBLAS not found (install libopenblas-dev)" >&2
  exit 2
fi

flags="-std=gnu11 -Wall -Wextra -g -I$root/util -I$root/runtime -I$blas_inc"
if [ "$SAN" = 1 ]; then
  flags="$flags -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
else
  flags="$flags -O2"
fi

mkdir -p "$OUT"
# The runtime library and util, every file: the kernels call the GEMM
# driver and the thread pool.
srcs="$root/util/*.c $root/runtime/*.c"

failed=0
for t in elementwise matmul conv pool norm loss optim init; do
  exe="$OUT/test_$t"
  # shellcheck disable=SC2086
  $CC $flags -o "$exe" "$here/test_$t.c" $srcs -lopenblas -lm -lpthread
  # One OpenBLAS thread keeps the runs reproducible and quick on small shapes.
  if OPENBLAS_NUM_THREADS=1 "$exe" >"$OUT/test_$t.log" 2>&1; then
    tail -n 1 "$OUT/test_$t.log"
  else
    echo "test_$t FAILED (see $OUT/test_$t.log):"
    grep -B6 -E "NOT OK|failed" "$OUT/test_$t.log" | head -n 40
    tail -n 3 "$OUT/test_$t.log"
    failed=1
  fi
done
exit $failed
