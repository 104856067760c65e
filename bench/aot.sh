#!/usr/bin/env bash
# Models compiled ahead of time (`nnc compile`, linked with nncrt) against
# the JIT (`nnc predict`, `nnc bench`), in a temporary directory:
#
#  1. start-up: the wall time of a whole process, from its start to its exit,
#     that classifies one 28x28 PGM image on one thread with weights from a
#     checkpoint (bench/aot_start.c: load from the file; the weights compiled
#     in with --embed; and those of an object with --entry forward alone)
#     against `nnc predict --threads 1` on the same files; ROUNDS runs of
#     each in turn (A B C D A B C D ...), medians. Beside them, the floor
#     (an empty C program, and one linked with the same libraries) and the
#     medians of aot_start's own steps (create, load, read, forward).
#  2. forward at batch 1 (latency) and batch 1000 (throughput), 1 and 2
#     threads: bench/aot_time.c's median over REPS calls of MODEL_forward
#     (an artifact compiled with --batch 1 or --batch 1000) against
#     `nnc bench --entry forward` at that batch; ROUNDS/5 rounds of each in
#     turn, the medians of their medians; batch 1000 runs REPS/10 calls.
#     GFLOP/s is nnc bench's FLOP count over each side's time, and its share
#     of the machine's GEMM ceiling is measured as bench/ab.sh measures it
#     (cblas_sgemm on 2048^3 at the same thread count, before and after).
#  3. sizes: each model's object file, with and without --embed (all entry
#     points, and forward alone), libnncrt.a, and aot_start linked (static
#     nncrt, OpenBLAS opened at run time) and stripped.
#
# The checkpoints come from `nnc train --epochs 1 --limit 2000 --no-test`
# (resnet18's, for its size alone, from --epochs 0). It builds the targets
# nnc and nncrt in BUILD first (nothing to do when they are up to date);
# --nnc times another nnc than BUILD's; --keep DIR works in DIR and keeps
# it. A full run takes about 7 minutes.
#
#   bench/aot.sh [--build DIR] [--nnc PATH] [--models mlp,cnn] [--rounds 30]
#                [--reps 200] [--data DIR] [--keep DIR]
set -euo pipefail
build=build nnc= models=mlp,cnn rounds=30 reps=200 data=/usr/share/datasets/fashion-mnist keep=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --nnc) nnc=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    -h | --help) sed -n 2,32p "$0"; exit 0 ;;
    *) echo "aot.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
root=$PWD
build=$(cd "$build" && pwd)
cmake --build "$build" -j "$(nproc)" --target nnc nncrt >/dev/null
nnc=$(realpath "${nnc:-$build/cli/nnc}")
export PKG_CONFIG_PATH=$build/nncrt
ncflags=$(pkg-config --cflags nncrt) nlibs=$(pkg-config --libs nncrt)
if [ -n "$keep" ]; then
  mkdir -p "$keep" && tmp=$(cd "$keep" && pwd)
else
  tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
fi
cd "$tmp"

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
step_gflops() { sed -n 's/^[^[]*"step_max_ms": [0-9.]*, "gflops": \([0-9.]*\).*/\1/p'; }
median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# "median (min)" of the arguments, with printf's FORMAT for each.
med_min() {
  local f=$1
  shift
  printf "$f ($f)" "$(printf '%s\n' "$@" | median)" "$(printf '%s\n' "$@" | sort -g | head -1)"
}
# The wall milliseconds of one run of a command (its output thrown away).
wall_ms() {
  local t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || { echo "aot.sh: failed: $*" >&2; exit 1; }
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f\n", (b - a) * 1e3}'
}
ceiling() {
  printf 'model gemm {\n    input x: f32[2048]\n    x -> linear(2048, bias = false)\n}\n' >gemm.nn
  "$nnc" bench gemm.nn --entry forward --batch 2048 --reps 5 --threads "$1" --format json --no-compare |
    field gemm_alone_gflops
}
cc_model() {   # cc_model DIR OUT SRC: SRC linked with DIR/model.o
  cc -O2 -Wall -Wextra -I"$1" $ncflags "$root/bench/$3" "$1/model.o" $nlibs -o "$2"
}

# The image: the first test sample, as a PGM file.
(set +o pipefail; gunzip -c "$data/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c 784 >pixels)
{ printf 'P5\n28 28\n255\n'; cat pixels; } >image.pgm
echo 'int main(void) { return 0; }' >empty.c
cc -O2 empty.c -o empty
cc -O2 empty.c -Wl,--no-as-needed $nlibs -o empty_libs

ceil1a=$(ceiling 1) ceil2a=$(ceiling 2)
for m in ${models//,/ } resnet18; do
  epochs=1
  [ "$m" = resnet18 ] && epochs=0
  "$nnc" train "$root/models/$m.nn" --epochs $epochs --limit 2000 --no-test --out "$m.safetensors" >/dev/null
  for v in plain:64 embed:64 fplain:64 fembed:64 b1:1 b1000:1000; do
    d=$m/${v%:*}
    mkdir -p "$d"
    extra=()
    case ${v%:*} in
      embed) extra=(--weights "$m.safetensors" --embed) ;;
      fplain) extra=(--entry forward) ;;
      fembed) extra=(--entry forward --weights "$m.safetensors" --embed) ;;
    esac
    [ "${v#*:}" = 64 ] || extra=(--batch "${v#*:}")
    [ "$m" = resnet18 ] && [ "${v#*:}" != 64 ] && continue
    "$nnc" compile "$root/models/$m.nn" -o "$d/model" --name model "${extra[@]}"
  done
done

echo "nnc: $nnc ($("$nnc" --version | head -1))"
cpu() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'; }
echo "$(cpu 'model name') (family $(cpu 'cpu family'), model $(cpu 'model\s')), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1 /proc/loadavg)"

# 1. Start-up.
echo
echo "Start-up: one image, one thread, whole process: median (min) of $rounds runs, ms; JIT/AOT: median of the rounds' ratios"
printf '%-6s %14s %14s %14s %16s %8s %8s   %s\n' model "AOT file" "AOT --embed" "fwd --embed" JIT "JIT/file" "JIT/emb" \
  "AOT file's steps (median us): create load read forward"
e0=() e1=()
for ((r = 0; r < rounds; r++)); do
  e0+=("$(wall_ms ./empty)") e1+=("$(wall_ms ./empty_libs)")
done
for m in ${models//,/ }; do
  cc_model "$m/plain" "$m/start" aot_start.c
  cc_model "$m/embed" "$m/start_emb" aot_start.c
  cc_model "$m/fembed" "$m/start_femb" aot_start.c
  aot=$("$m/start" "$m.safetensors" image.pgm) emb=$("$m/start_emb" - image.pgm) femb=$("$m/start_femb" - image.pgm)
  jit=$("$nnc" predict "$root/models/$m.nn" --weights "$m.safetensors" --threads 1 --top 1 image.pgm | awk '{print $2}')
  [ "$aot" = "$jit" ] && [ "$emb" = "$jit" ] && [ "$femb" = "$jit" ] ||
    echo "aot.sh: $m: the classes differ: AOT $aot, embedded $emb and $femb, JIT $jit" >&2
  ta=() te=() tf=() tj=() ratio_a=() ratio_e=()
  : >"$m.stages"
  for ((r = 0; r < rounds; r++)); do
    a=$(wall_ms "$m/start" "$m.safetensors" image.pgm)
    e=$(wall_ms "$m/start_emb" - image.pgm)
    f=$(wall_ms "$m/start_femb" - image.pgm)
    j=$(wall_ms "$nnc" predict "$root/models/$m.nn" --weights "$m.safetensors" --threads 1 image.pgm)
    "$m/start" "$m.safetensors" image.pgm --stages 2>>"$m.stages" >/dev/null
    ta+=("$a") te+=("$e") tf+=("$f") tj+=("$j")
    ratio_a+=("$(awk -v a="$a" -v j="$j" 'BEGIN {print j / a}')")
    ratio_e+=("$(awk -v e="$e" -v j="$j" 'BEGIN {print j / e}')")
  done
  steps=""
  for k in 2 4 6 8; do
    steps+=" $(awk -v k=$k '{print $k}' "$m.stages" | median)"
  done
  printf '%-6s %14s %14s %14s %16s %8.1f %8.1f   %s\n' "$m" "$(med_min %.2f "${ta[@]}")" "$(med_min %.2f "${te[@]}")" \
    "$(med_min %.2f "${tf[@]}")" "$(med_min %.1f "${tj[@]}")" "$(printf '%s\n' "${ratio_a[@]}" | median)" \
    "$(printf '%s\n' "${ratio_e[@]}" | median)" "$steps"
done
echo "floor: an empty C program $(med_min %.2f "${e0[@]}") ms; linked with nncrt's libraries ($nlibs) $(med_min %.2f "${e1[@]}") ms"

# 2. Forward at batch 1 and 1000.
echo
runs=$(((rounds + 4) / 5))
echo "Forward: ms a call (median over $runs rounds of each side's median), samples/s, GFLOP/s (share of the GEMM ceiling)"
printf '%-6s %5s %3s %10s %10s %7s %10s %10s %16s %16s\n' model batch thr "JIT ms" "AOT ms" AOT/JIT "JIT smp/s" "AOT smp/s" \
  "JIT GF/s (ceil)" "AOT GF/s (ceil)"
rows=()
for m in ${models//,/ }; do
  cc_model "$m/b1" "$m/time_b1" aot_time.c
  cc_model "$m/b1000" "$m/time_b1000" aot_time.c
  for b in 1 1000; do
    n=$reps
    [ $b = 1000 ] && n=$(((reps + 9) / 10))
    for t in 1 2; do
      tj=() ta=() ratio=() fl=()
      for ((r = 0; r < runs; r++)); do
        js=$("$nnc" bench "$root/models/$m.nn" --entry forward --batch $b --threads $t --reps "$n" --format json --no-compare)
        a=$("$m/time_b$b" $t $b "$n" | awk '{print $2}')
        j=$(field step_median_ms <<<"$js")
        tj+=("$j") ta+=("$a")
        ratio+=("$(awk -v a="$a" -v j="$j" 'BEGIN {print a / j}')")
        fl+=("$(awk -v g="$(step_gflops <<<"$js")" -v j="$j" 'BEGIN {print g * j * 1e6}')")   # FLOPs a call
      done
      rows+=("$m $b $t $(printf '%s\n' "${tj[@]}" | median) $(printf '%s\n' "${ta[@]}" | median) $(printf '%s\n' "${ratio[@]}" | median) $(printf '%s\n' "${fl[@]}" | median)")
    done
  done
done
ceil1b=$(ceiling 1) ceil2b=$(ceiling 2)
c1=$(awk -v a="$ceil1a" -v b="$ceil1b" 'BEGIN {print (a + b) / 2}')
c2=$(awk -v a="$ceil2a" -v b="$ceil2b" 'BEGIN {print (a + b) / 2}')
for row in "${rows[@]}"; do
  read -r m b t j a q f <<<"$row"
  c=$c1
  [ "$t" = 2 ] && c=$c2
  awk -v m="$m" -v b="$b" -v t="$t" -v j="$j" -v a="$a" -v q="$q" -v f="$f" -v c="$c" 'BEGIN {
    printf "%-6s %5d %3d %10.4f %10.4f %7.3f %10.0f %10.0f %8.2f (%.3f) %8.2f (%.3f)\n", m, b, t, j, a, q, b / j * 1e3, b / a * 1e3,
      f / j / 1e6, f / j / 1e6 / c, f / a / 1e6, f / a / 1e6 / c }'
done
echo "GEMM ceiling (cblas_sgemm 2048^3): 1 thread $ceil1a GFLOP/s before, $ceil1b after; 2 threads $ceil2a before, $ceil2b after"

# 3. Sizes.
echo
echo "Sizes (bytes)"
printf '%-9s %12s %12s %16s %16s\n' model "object" "--embed" "forward alone" "forward, --embed"
for m in ${models//,/ } resnet18; do
  printf '%-9s %12d %12d %16d %16d\n' "$m" "$(stat -c %s "$m/plain/model.o")" "$(stat -c %s "$m/embed/model.o")" \
    "$(stat -c %s "$m/fplain/model.o")" "$(stat -c %s "$m/fembed/model.o")"
done
m=${models%%,*}
strip -o start.stripped "$m/start"
strip -o start_emb.stripped "$m/start_emb"
strip -o start_femb.stripped "$m/start_femb"
echo "libnncrt.a: $(stat -c %s "$build/nncrt/libnncrt.a")"
echo "aot_start for $m, linked (static nncrt, which opens OpenBLAS when a product first needs it) and stripped: $(stat -c %s start.stripped); with --embed: $(stat -c %s start_emb.stripped); forward alone with --embed: $(stat -c %s start_femb.stripped)"
