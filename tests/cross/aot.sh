#!/bin/sh
# Models compiled ahead of time for aarch64 (--target aarch64-linux-gnu,
# NEON-wide micro-kernels) and linked with the runtime library cross-built
# for it (no OpenBLAS, no AVX-512, no zlib: the fixture cross_runtime), run
# under qemu-aarch64: mlp and cnn give the host's forward output within
# float tolerance (the vector code differs: 4 floats against the host's
# 8 or 16, other instruction choices), and training steps lower the loss.
# The program is tests/aot/cross_check.c, built for both machines.
#
#   aot.sh NNC ROOT DIR BUILD   (DIR: the aarch64 build; BUILD: the host's)
. "${0%/*}/../lib.sh"
dir=$3 build=$4
sysroot=/usr/aarch64-linux-gnu
skip() { echo "cross/aot: skipped: $1 (scripts/install-deps.sh installs it on x86-64 Debian hosts)"; exit 77; }
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || skip "aarch64-linux-gnu-gcc not found: install gcc-aarch64-linux-gnu"
[ -f "$sysroot/include/stdio.h" ] || skip "no C library for aarch64 in $sysroot: install libc6-dev-arm64-cross"
command -v qemu-aarch64 >/dev/null 2>&1 || skip "qemu-aarch64 not found: install qemu-user"
command -v cc >/dev/null 2>&1 || skip "no host C compiler (cc)"
lib=$dir/nncrt/libnncrt.a
[ -f "$lib" ] || { bad "$lib is missing: the test cross/runtime-build makes it"; exit 1; }
host_flags=$(PKG_CONFIG_PATH="$build/nncrt" pkg-config --cflags --libs nncrt)

for m in mlp cnn; do
  mkdir -p "$tmp/$m/arm" "$tmp/$m/host"
  "$nnc" train "models/$m.nn" --epochs 0 --out "$tmp/$m/w.safetensors" -q >/dev/null 2>&1 || { bad "$m: no weights"; continue; }
  "$nnc" compile "models/$m.nn" -o "$tmp/$m/arm/model" --name model --target aarch64-linux-gnu --batch 8 >/dev/null &&
    "$nnc" compile "models/$m.nn" -o "$tmp/$m/host/model" --name model --batch 8 >/dev/null ||
    { bad "$m: nnc compile failed"; continue; }
  file "$tmp/$m/arm/model.o" | grep -q "ARM aarch64" || bad "$m: the object is not aarch64's: $(file "$tmp/$m/arm/model.o")"
  aarch64-linux-gnu-gcc -O2 -Wall -Wextra -Werror -I"$tmp/$m/arm" -I"$2/nncrt" -o "$tmp/$m/arm/check" \
      tests/aot/cross_check.c "$tmp/$m/arm/model.o" "$lib" -lm -lpthread &&
    cc -O2 -Wall -Wextra -Werror -I"$tmp/$m/host" -o "$tmp/$m/host/check" tests/aot/cross_check.c \
      "$tmp/$m/host/model.o" $host_flags || { bad "$m: the programs do not build"; continue; }
  # LD_LIBRARY_PATH: the sysroot's libc (see cmake/aarch64-linux-gnu.cmake)
  if qemu-aarch64 -L "$sysroot" -E LD_LIBRARY_PATH="$sysroot/lib" "$tmp/$m/arm/check" "$tmp/$m/w.safetensors" \
       >"$tmp/$m/arm.out" 2>"$tmp/$m/arm.log"; then
    ok "$m on aarch64 (qemu): $(cat "$tmp/$m/arm.log")"
  else
    bad "$m on aarch64 (qemu) failed"; cat "$tmp/$m/arm.log"; continue
  fi
  "$tmp/$m/host/check" "$tmp/$m/w.safetensors" >"$tmp/$m/host.out" 2>"$tmp/$m/host.log" || bad "$m on the host failed"
  # Each output within 1e-5 of the largest, in absolute value.
  if paste "$tmp/$m/arm.out" "$tmp/$m/host.out" | awk '
       { a[NR] = $1; b[NR] = $2; if ($2 > big) big = $2; if (-$2 > big) big = -$2 }
       END { worst = 0; for (i = 1; i <= NR; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > worst) worst = d }
             printf "%d outputs, largest difference %.3g (largest output %.3g)\n", NR, worst, big
             exit !(NR > 0 && worst <= 1e-5 * (big > 1 ? big : 1)) }' >"$tmp/$m/cmp"; then
    ok "$m: aarch64 forward equals the host's within float tolerance: $(cat "$tmp/$m/cmp")"
  else
    bad "$m: aarch64 and host outputs differ: $(cat "$tmp/$m/cmp")"
  fi
done
exit $fail
