#!/bin/sh
# Installs the Debian packages nnc needs to build, test and train.
# Idempotent: installs only what is missing; waits for the dpkg lock
# instead of failing when another apt or dpkg is running.
set -eu

# libopenmpi-dev, openmpi-bin: nnc train --distributed (mpirun -np P);
# nnc builds without them, and --distributed then says to install them.
PKGS="build-essential cmake pkg-config flex bison zlib1g-dev libopenblas-dev \
dataset-fashion-mnist libopenmpi-dev openmpi-bin"

# LLVM 19 where the archive has it, else 14; clang and its runtime
# libraries (libFuzzer, the sanitizers) of the same version build the
# fuzz targets (tests/fuzz).
have() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }
pick_llvm() {
  if apt-cache show llvm-19-dev >/dev/null 2>&1; then v=19; else v=14; fi
  echo "llvm-$v-dev clang-$v libclang-rt-$v-dev"
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# apt-get waits up to 10 minutes for the lock rather than failing at once.
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q"

missing() {
  out=""
  for p in "$@"; do have "$p" || out="$out $p"; done
  echo "$out"
}

# The aarch64 cross compiler and qemu-user: the test cross/runtime builds
# the runtime library for aarch64 and runs it (x86-64 hosts only).
if [ "$(dpkg --print-architecture)" = amd64 ]; then
  PKGS="$PKGS gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
fi

need=$(missing $PKGS)
if [ -n "$need" ] || [ -n "$(missing llvm-19-dev clang-19 libclang-rt-19-dev)" ]; then
  $APT update >/dev/null
  need=$(missing $PKGS $(pick_llvm))
fi
if [ -n "$need" ]; then
  echo "install-deps: installing:$need"
  $APT install --no-install-recommends $need
else
  echo "install-deps: all packages present"
fi
