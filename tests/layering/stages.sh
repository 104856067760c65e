#!/bin/sh
# stages.sh: checks that no stage depends on a stage above it.
#
#   stages.sh includes ROOT        the "#include "..."" lines of every stage's
#                                  sources (.c .h .def .l .y, subdirectories
#                                  too)
#   stages.sh deps ROOT DEPS       the nnc_* libraries each target links, as
#                                  CMake saw them (DEPS: lines "dir target
#                                  lib...", written by tests/CMakeLists.txt)
#
# Prints an ok or FAIL line per stage and exits 1 when one failed, naming
# the file and line, the header or library, and what the stage may use.
root=$2
cd "$root" || exit 1
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# The stages, bottom to top:
#   util < runtime < ir < frontend < passes < codegen < data < nncrt < exec < train < aot < cli
# and what each may use (include or link) besides itself. Each may use the
# stages below it, except:
# - runtime: what a compiled model links, with OpenBLAS (where the build has it), libm and pthreads
#   only (tests/layering/runtime_symbols.sh checks its symbols);
# - ir may use runtime: the kernel IR carries the runtime's kernel descriptors;
# - frontend needs no IR (passes lowers its syntax trees to the graph IR);
# - data (the readers) sits beside the compiler: util alone;
# - nncrt, the runtime library compiled models link, is runtime and data
#   (and util) with the artifact's API on top: nothing of the compiler.
# A new stage directory must be added here.
allowed() {
  case $1 in
  util)     echo "" ;;
  runtime)  echo "util" ;;
  ir)       echo "util runtime" ;;
  frontend) echo "util" ;;
  passes)   echo "util runtime ir frontend" ;;
  codegen)  echo "util runtime ir frontend passes" ;;
  data)     echo "util" ;;
  nncrt)    echo "util runtime data" ;;
  exec)     echo "util runtime ir frontend passes codegen data" ;;
  train)    echo "util runtime ir frontend passes codegen data exec" ;;
  aot)      echo "util runtime ir frontend passes codegen data exec train" ;;
  cli)      echo "util runtime ir frontend passes codegen data exec train aot" ;;
  *)        return 1 ;;
  esac
}
stages="util runtime ir frontend passes codegen data nncrt exec train aot cli"

# Headers made at build time, and the stage that makes them.
generated_stage() {
  case $1 in
  parser.h | lexer.h) echo frontend ;;
  version.h)          echo cli ;;
  *)                  return 1 ;;
  esac
}

# Whether stage $1 may use stage $2.
may_use() {
  [ "$1" = "$2" ] && return 0
  for u in $(allowed "$1"); do
    [ "$u" = "$2" ] && return 0
  done
  return 1
}

# What stage $1 may use, for the messages.
uses() {
  a=$(allowed "$1")
  echo "${a:-nothing}" | sed 's/ /, /g'
}

# Every directory that builds something is a stage in the table, except
# tests/ and examples/ (programs on nncrt's public API alone, which
# tests/examples/pkg_config.sh builds as a user would).
check_dirs() {
  for f in */CMakeLists.txt; do
    d=${f%/CMakeLists.txt}
    [ "$d" = tests ] || [ "$d" = examples ] && continue
    allowed "$d" >/dev/null || bad "$d/ builds a library but is not a stage in tests/layering/stages.sh; add it to the table"
  done
}

# The stage that owns header $2, included by file $1, on stdout; nothing
# when it is no project header.
header_stage() {
  case $2 in
  */*)
    p=$(cd "$(dirname "$1")/$(dirname "$2")" 2>/dev/null && pwd) || return 0
    case $p in
    "$root_abs"/*) p=${p#"$root_abs"/}; echo "${p%%/*}" ;;
    esac
    return 0 ;;
  esac
  own=$(dirname "$1")
  if [ -f "$own/$2" ]; then echo "${own%%/*}"; return 0; fi
  found=""
  for d in $stages; do
    [ -f "$d/$2" ] && found="$found $d"
  done
  case $found in
  " "*" "*) echo "ambiguous:$found" | sed 's/ /,/g; s/:,/:/' ;;
  " "*)     echo "${found# }" ;;
  *)        generated_stage "$2" || true ;;
  esac
}

check_includes() {
  root_abs=$(pwd)
  for s in $stages; do
    [ -d "$s" ] || continue
    n=0 nbad=0
    for f in $(find "$s" -type f \( -name '*.[ch]' -o -name '*.def' -o -name '*.l' -o -name '*.y' \) | sort); do
      # file:line:header for each #include "..."
      hits=$(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
             sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/')
      [ -n "$hits" ] || continue
      while read -r line h; do
        n=$((n + 1))
        hs=$(header_stage "$f" "$h")
        case $hs in
        "")
          bad "$f:$line: includes \"$h\", which is in no stage directory; use <$h> for a system header"
          nbad=$((nbad + 1)) ;;
        ambiguous:*)
          bad "$f:$line: \"$h\" names a header in several stages (${hs#ambiguous:}); rename one"
          nbad=$((nbad + 1)) ;;
        *)
          if ! may_use "$s" "$hs"; then
            bad "$f:$line: includes \"$h\" of $hs/, but $s may include only its own headers and those of: $(uses "$s")"
            nbad=$((nbad + 1))
          fi ;;
        esac
      done <<EOF
$hits
EOF
    done
    [ $nbad = 0 ] && ok "$s: $n project includes, all of $s or $(uses "$s")"
  done
}

check_deps() {
  deps=$1
  if [ ! -s "$deps" ]; then
    bad "$deps is missing or empty; configure the build with CMake first"
    return
  fi
  nlinks=0
  while read -r dir target libs; do
    for l in $libs; do
      ldir=$(awk -v t="$l" '$2 == t { print $1 }' "$deps")
      if [ -z "$ldir" ]; then
        bad "$dir/CMakeLists.txt: $target links $l, which no stage directory builds"
        continue
      fi
      nlinks=$((nlinks + 1))
      may_use "$dir" "$ldir" ||
        bad "$dir/CMakeLists.txt: $target links $l of $ldir/, but $dir may link only its own libraries and those of: $(uses "$dir")"
    done
  done <"$deps"
  # The file must list the libraries, or the check would pass on nothing.
  awk '$2 == "nnc_runtime"' "$deps" | grep -q . || bad "$deps lists no nnc_runtime"
  [ $fail = 0 ] && ok "$nlinks links between the stages' libraries, each to a stage it may use"
}

case $1 in
includes) check_dirs; check_includes ;;
deps)     check_dirs; check_deps "$3" ;;
*)        echo "usage: stages.sh includes ROOT | stages.sh deps ROOT DEPS" >&2; exit 2 ;;
esac
exit $fail
