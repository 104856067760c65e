#!/bin/sh
# runtime_symbols.sh: checks that the runtime library needs nothing but util
# and the system libraries, as a model compiled ahead of time links it.
#
#   runtime_symbols.sh NM CC OPENBLAS ARCHIVE...
#
# OPENBLAS is "-" in a build without it (NNC_BLAS off).
# ARCHIVE... are every nnc_* library of the build; libnnc_runtime.a with
# libnnc_util.a, and libnnc_runtime_san.a with libnnc_util_san.a where the
# sanitizer build made them, are checked. Of the symbols the runtime's
# objects leave undefined, those that it and util do not define must each
# be defined by libc, libm, pthreads, OpenBLAS or libgcc (with the
# sanitizers' own libraries for the _san archive), and by no other nnc_*
# library. Each one that is not is named with the object that needs it.
nm=$1 cc=$2 openblas=$3
shift 3
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The names a library defines, one per line (without symbol versions).
defined() {
  case $1 in
  *.a) "$nm" --defined-only "$1" 2>/dev/null | awk 'NF == 3 { print $3 }' ;;
  *)   "$nm" -D --defined-only "$1" 2>/dev/null | awk 'NF == 3 { sub(/@.*/, "", $3); print $3 }' ;;
  esac
}

# A system library by file name, as the compiler finds it; nothing when absent.
syslib() {
  p=$("$cc" -print-file-name="$1")
  [ "$p" != "$1" ] && [ -e "$p" ] && echo "$p"
}

# The symbols of the system libraries a compiled model links.
sys="$tmp/sys"
for l in libc.so.6 libm.so.6 libpthread.so.0 libgcc_s.so.1 $(basename "$(syslib libgcc.a)") ld-linux-x86-64.so.2 ld-linux-aarch64.so.1; do
  p=$(syslib "$l") && defined "$p"
done >"$sys"
[ "$openblas" = - ] || defined "$openblas" >>"$sys"
# What the linker itself defines.
echo _GLOBAL_OFFSET_TABLE_ >>"$sys"
grep -qx memcpy "$sys" && grep -qx pthread_create "$sys" &&
  { [ "$openblas" = - ] || grep -qx cblas_sgemm "$sys"; } ||
  { bad "cannot read the symbols of libc, pthreads and OpenBLAS ($openblas) with $nm"; exit 1; }
for l in libasan.so libubsan.so; do
  p=$(syslib "$l") && defined "$p"
done >"$tmp/san"

checked=0
for suffix in "" _san; do
  runtime="" util=""
  for a in "$@"; do
    case ${a##*/} in
    libnnc_runtime$suffix.a) runtime=$a ;;
    libnnc_util$suffix.a)    util=$a ;;
    esac
  done
  [ -n "$runtime$util" ] || continue
  if [ ! -f "$runtime" ] || [ ! -f "$util" ]; then
    bad "libnnc_runtime$suffix.a or libnnc_util$suffix.a is not built; build the nnc_runtime$suffix target first"
    continue
  fi
  checked=$((checked + 1))
  # What the runtime and util define, and what the other nnc libraries do
  # ("symbol archive" lines).
  { defined "$runtime"; defined "$util"; } | sort -u >"$tmp/own"
  grep -q '^k_' "$tmp/own" || bad "$runtime defines no k_* kernel: not the runtime library?"
  for a in "$@"; do
    [ "$a" = "$runtime" ] || [ "$a" = "$util" ] && continue
    defined "$a" | sed "s|\$| ${a##*/}|"
  done >"$tmp/others"
  allow="$tmp/sys"
  if [ -n "$suffix" ]; then
    cat "$tmp/sys" "$tmp/san" >"$tmp/sys_san"
    allow="$tmp/sys_san"
  fi
  # "object symbol" for each strong undefined symbol of the runtime's objects.
  "$nm" -A -u "$runtime" | awk '$(NF-1) == "U" { n = split($1, p, ":"); print p[n-1], $NF }' |
    sort -u >"$tmp/undef"
  nundef=0 nsys=0
  while read -r obj sym; do
    nundef=$((nundef + 1))
    grep -qxF "$sym" "$tmp/own" && continue
    by=$(awk -v s="$sym" '$1 == s { print $2; exit }' "$tmp/others")
    if [ -n "$by" ]; then
      bad "${runtime##*/}: $obj needs $sym, which $by defines: the runtime may use util and system libraries alone"
    elif ! grep -qxF "$sym" "$allow"; then
      bad "${runtime##*/}: $obj needs $sym, which neither util nor a system library (libc, libm, pthreads, OpenBLAS, libgcc${suffix:+, ASan, UBSan}) defines"
    else
      nsys=$((nsys + 1))
    fi
  done <"$tmp/undef"
  [ $fail = 0 ] && ok "${runtime##*/}: of $nundef undefined symbols, $nsys from system libraries, the rest its own or util's"
done
[ $checked -gt 0 ] || bad "no libnnc_runtime archive among the arguments"
exit $fail
