#!/bin/sh
# runtime.sh: the runtime library cross-built for aarch64 and run there
# through qemu-user.
#
#   runtime.sh build CMAKE ROOT DIR   configure and build the runtime-only
#                                     aarch64 library into DIR (no OpenBLAS,
#                                     no zlib, warnings as errors); a second
#                                     run reuses DIR and rebuilds what changed
#   runtime.sh run CMAKE ROOT DIR     cross-compile tests/cross/runtime_test.c
#                                     against DIR's libraries and run it
#                                     under qemu-aarch64
#
# CTest runs "build" as the setup of the fixture cross_runtime (test
# cross/runtime-build) and "run" as cross/runtime; other tests that need the
# aarch64 library require the fixture and find it in DIR
# (DIR/runtime/libnnc_runtime.a, DIR/util/libnnc_util.a,
# DIR/data/libnnc_data.a). Exits 77 (a skip) when a tool is missing.
set -eu
mode=$1 cmake=$2 root=$3 dir=$4
sysroot=/usr/aarch64-linux-gnu

test=cross/runtime
[ "$mode" = build ] && test=cross/runtime-build
skip() {
  echo "$test: skipped: $1 (scripts/install-deps.sh installs it on x86-64 Debian hosts)"
  exit 77
}
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 ||
  skip "aarch64-linux-gnu-gcc not found: install gcc-aarch64-linux-gnu"
[ -f "$sysroot/include/stdio.h" ] ||
  skip "no C library for aarch64 in $sysroot: install libc6-dev-arm64-cross"
command -v qemu-aarch64 >/dev/null 2>&1 ||
  skip "qemu-aarch64 not found: install qemu-user"

case $mode in
build)
  "$cmake" -S "$root" -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNC_RUNTIME_ONLY=ON -DNNC_BLAS=OFF -DNNC_ZLIB=OFF \
    -DNNC_SANITIZE=OFF -DNNC_WERROR=ON >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; echo "cross/runtime-build: configuring $dir failed"; exit 1; }
  "$cmake" --build "$dir" -j2
  ;;
run)
  for lib in runtime/libnnc_runtime.a data/libnnc_data.a util/libnnc_util.a; do
    [ -f "$dir/$lib" ] || { echo "cross/runtime: $dir/$lib is missing: run the test cross/runtime-build first"; exit 1; }
  done
  aarch64-linux-gnu-gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I"$root/util" -I"$root/runtime" -I"$root/data" \
    -o "$dir/runtime_test" "$root/tests/cross/runtime_test.c" \
    "$dir/data/libnnc_data.a" "$dir/runtime/libnnc_runtime.a" "$dir/util/libnnc_util.a" -lpthread -lm
  # LD_LIBRARY_PATH: the sysroot's libc, not a multiarch libc6:arm64 of the
  # host (see cmake/aarch64-linux-gnu.cmake)
  qemu-aarch64 -L "$sysroot" -E LD_LIBRARY_PATH="$sysroot/lib" "$dir/runtime_test"
  ;;
*)
  echo "usage: runtime.sh build|run CMAKE ROOT DIR" >&2
  exit 2
  ;;
esac
