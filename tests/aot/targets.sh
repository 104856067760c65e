#!/bin/sh
# A model of several targets compiled ahead of time: its header (each
# target's size, offset and classes, a union for the row's values) builds
# a program that trains it (tests/aot/targets.c).
#
#   targets.sh NNC ROOT BUILD
. "${0%/*}/../lib.sh"
build=$3
if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null; then
  echo "SKIP: needs cc and pkg-config"; exit 77
fi
flags=$(PKG_CONFIG_PATH="$build/nncrt" pkg-config --cflags --libs nncrt)
"$nnc" compile tests/heads/detect.nn -o "$tmp/det" --name det >"$tmp/log" 2>&1 || { bad "compile"; cat "$tmp/log"; exit 1; }
grep -q '^#define DET_TARGET_SIZE 5   /\* 4-byte values per sample: label (int32 class labels), box (floats)' "$tmp/det.h" &&
  grep -q '^#define DET_TARGET_BOX_OFFSET 1 ' "$tmp/det.h" && grep -q '^#define DET_TARGET_LABEL_NUM_CLASSES 3 ' "$tmp/det.h" &&
  ok "the header gives each target's size, place and classes" || { bad "the header's target macros"; grep TARGET "$tmp/det.h"; }
cc -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c "$tmp/det.h" && ok "the header compiles alone as C99" ||
  bad "the header does not compile"
cc -Wall -Wextra -Werror -I"$tmp" -o "$tmp/targets" tests/aot/targets.c "$tmp/det.o" $flags -lm ||
  { bad "the program does not build"; exit 1; }
"$tmp/targets" || fail=1
exit $fail
