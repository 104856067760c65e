#!/bin/sh
# `cmake --install` into a fresh prefix: nnc, the runtime library, its
# header and its pkg-config file; the installed nnc compiles a model, also
# as a shared object with the installed runtime library inside, and a
# program built as the README says (cc app.c mlp.o $(pkg-config --cflags
# --libs nncrt)) links and runs it.
#
#   install.sh NNC ROOT BUILD
. "${0%/*}/../lib.sh"
build=$3
prefix="$tmp/prefix"
if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null; then
  echo "SKIP: needs cc and pkg-config"; exit 77
fi
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || { bad "cmake --install failed"; cat "$tmp/install.log"; exit 1; }
pc=$(find "$prefix" -name nncrt.pc)
lib=$(find "$prefix" -name libnncrt.a)
[ -x "$prefix/bin/nnc" ] && [ -n "$lib" ] && [ -f "$prefix/include/nncrt.h" ] && [ -n "$pc" ] \
  && ok "installed: bin/nnc, ${lib#"$prefix"/}, include/nncrt.h, ${pc#"$prefix"/}" || { bad "install: $(cd "$prefix" && find . -type f)"; exit 1; }
export PKG_CONFIG_PATH="${pc%/*}"
flags=$(pkg-config --cflags --libs nncrt)
case $flags in *"$prefix"*) ok "pkg-config nncrt points into the prefix: $flags" ;; *) bad "pkg-config nncrt: $flags" ;; esac

cat >"$tmp/app.c" <<'C'
#include "mlp.h"
#include <stdio.h>
#ifndef ALONE   /* a shared artifact exports the model's API alone: no nncrt_* */
#include "nncrt.h"
#define VERSION nncrt_version()
#else
#define VERSION "inside"
#endif
int main(void) {
  char err[1024];
  static float x[2 * MLP_INPUT_SIZE], out[2 * MLP_OUTPUT_SIZE];
  static int32_t y[2] = {3, 7};
  mlp_context *ctx = mlp_create(1, err, sizeof err);
  if (!ctx) { fprintf(stderr, "%s\n", err); return 1; }
  for (int i = 0; i < 2 * MLP_INPUT_SIZE; i++) x[i] = (float)(i % 13) / 13;
  double l0 = mlp_eval(ctx, 2, x, y, NULL);
  for (int s = 0; s < 20; s++) mlp_train_step(ctx, 2, x, y, 0.01);
  double l1 = mlp_eval(ctx, 2, x, y, out);
  printf("nncrt %s: loss %.4f -> %.4f\n", VERSION, l0, l1);
  mlp_free(ctx);
  return l1 < l0 ? 0 : 1;
}
C
cd "$tmp" || exit 1
if "$prefix/bin/nnc" compile "$2/models/mlp.nn" -o mlp && cc -Wall -Wextra -o app app.c mlp.o $flags && ./app >app.log; then
  ok "the installed nnc's artifact, built with pkg-config, trains: $(cat app.log)"
else
  bad "the installed nnc's artifact"; cat app.log 2>/dev/null
fi
if "$prefix/bin/nnc" compile "$2/models/mlp.nn" -o libmlp --shared && cc -Wall -DALONE -o app2 app.c -I. -I"$prefix/include" -L. -lmlp \
     -Wl,-rpath,"$tmp" && ./app2 >app2.log; then
  ok "--shared with the installed runtime library inside: $(cat app2.log)"
else
  bad "--shared with the installed nnc"; cat app2.log 2>/dev/null
fi
nm -D --defined-only libmlp.so | awk '{print $3}' | grep -v '^mlp_' >other.txt
[ ! -s other.txt ] && ok "the shared object exports the model's API alone" || bad "it exports $(head -5 other.txt | tr '\n' ' ')..."
exit $fail
