#!/bin/sh
# golden.sh: runs one nnc command and compares what it printed with a file.
#
#   golden.sh NNC ROOT EXPECTED STATUS STREAM -- ARGS...
#
# Runs `NNC ARGS...` in ROOT (so file names print relative to the source
# tree), expects exit status STATUS, and compares STREAM (stdout, stderr or
# both) with the file EXPECTED. With NNC_UPDATE_GOLDEN=1 in the environment
# it rewrites EXPECTED instead; review the diff before committing it.
set -u
nnc=$1 root=$2 expected=$3 status=$4 stream=$5
shift 6
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
cd "$root" || exit 1
NO_COLOR=1 "$nnc" "$@" >"$out" 2>"$err"
got=$?
case "$stream" in
  stdout) actual=$out ;;
  stderr) actual=$err ;;
  both) cat "$err" >>"$out"; actual=$out ;;
  *) echo "golden.sh: bad stream '$stream'"; exit 1 ;;
esac
if [ "${NNC_UPDATE_GOLDEN:-0}" = 1 ]; then
  cp "$actual" "$expected"
  echo "updated $expected"
  exit 0
fi
fail=0
if [ "$got" != "$status" ]; then
  echo "FAIL: exit status $got, expected $status: nnc $*"
  echo "--- stderr:"; cat "$err"
  fail=1
fi
if [ ! -f "$expected" ]; then
  echo "FAIL: missing golden file $expected (run with NNC_UPDATE_GOLDEN=1 to create it)"
  exit 1
fi
if ! diff -u "$expected" "$actual"; then
  echo "FAIL: output differs from $expected (nnc $*)"
  fail=1
fi
exit $fail
