#!/bin/sh
# aarch64.sh: the host shim's aarch64 context switch, under qemu. Runs
# test_cuda_shim with a C compiler that keeps the first source it is given
# (the shim's header and kernels.cu), cross-compiles that with
# aarch64_main.c and runs it under qemu-aarch64. Exits 77 (a skip) when a
# tool is missing.
#
#   aarch64.sh TEST_CUDA_SHIM DIR   (DIR: tests/codegen/shim)
set -eu
bin=$1 dir=$2
skip() {
  echo "shim/aarch64: skipped: $1 (scripts/install-deps.sh installs it on x86-64 Debian hosts)"
  exit 77
}
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || skip "aarch64-linux-gnu-gcc not found"
command -v qemu-aarch64 >/dev/null 2>&1 || skip "qemu-aarch64 not found"
host_cc=$(echo "${NNC_CC:-cc}" | cut -d" " -f1)
command -v "$host_cc" >/dev/null 2>&1 || skip "no host C compiler ($host_cc)"
work=$(mktemp -d "${TMPDIR:-/tmp}/nnc-shim-aarch64-XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/cc" <<EOS
#!/bin/sh
for a in "\$@"; do
  case "\$a" in *cuda.c) [ -e "$work/shim.c" ] || cp "\$a" "$work/shim.c" ;; esac
done
exec ${NNC_CC:-cc} "\$@"
EOS
chmod +x "$work/cc"
NNC_CC="$work/cc" "$bin" "$dir" >"$work/host.log" 2>&1 || { cat "$work/host.log"; exit 1; }
grep -q k5_diverge "$work/shim.c" || { echo "shim/aarch64: the kernels' source was not captured"; exit 1; }
aarch64-linux-gnu-gcc -std=gnu11 -O2 -static -ffp-contract=off -w -I"$work" "$dir/aarch64_main.c" -o "$work/run" -lm
qemu-aarch64 "$work/run"
