# lib.sh: what the shell tests share. Sourced as the first thing a test
# does (`. "${0%/*}/../lib.sh"`), with the test's own arguments: $1 the nnc
# command, $2 the source tree, which becomes the working directory.
#
#   tmp             a directory of the test's own, removed at exit
#   ok MSG, bad MSG a passed or failed check (bad sets fail=1)
#   expect STATUS PATTERN ARGS...
#                   runs nnc ARGS: the exit status must be STATUS and, unless
#                   PATTERN is empty, a line of stdout + stderr must match it
#
# A test ends with `exit $fail`.
nnc=$1
cd "$2" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

expect() {
  want=$1 pattern=$2
  shift 2
  NO_COLOR=1 "$nnc" "$@" >"$tmp/out" 2>&1
  got=$?
  if [ "$got" != "$want" ]; then
    bad "nnc $* exited $got, expected $want"; cat "$tmp/out"
  elif [ -n "$pattern" ] && ! grep -q -- "$pattern" "$tmp/out"; then
    bad "nnc $*: no line matches '$pattern'"; cat "$tmp/out"
  else
    ok "nnc $* -> $got"
  fi
}
