#!/usr/bin/env bash
# Two builds of nnc side by side: `nnc bench` of each model's step, run by
# A then B, ROUNDS times over (A B A B ...), so that both see the same
# machine load. Prints, per model and entry point, each side's median step
# time over the rounds (each round's figure is nnc bench's own median over
# REPS steps), their ratio (the median of the rounds' B/A ratios), and the
# machine's GEMM ceiling measured in the same runs (cblas_sgemm alone on
# the step's own GEMM shapes: nnc bench's gemm_alone_gflops) with the share
# of it each side's step reaches (the GEMMs' FLOPs over the whole step's
# time: step_share_of_gemm_alone; a convolution's GEMMs are not counted).
#
#   bench/ab.sh NNC_A NNC_B [--models mlp,cnn,resnet18] [--entries train,forward]
#                           [--rounds 5] [--reps 20] [--threads 2]
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
A=$1 B=$2
shift 2
models=mlp,cnn,resnet18 entries=train,forward rounds=5 reps=20 threads=2
while [ $# -gt 0 ]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --entries) entries=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "ab.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
# The whole step's GFLOP/s: the first "gflops" (the kernels' own follow it).
step_gflops() { sed -n 's/^[^[]*"step_max_ms": [0-9.]*, "gflops": \([0-9.]*\).*/\1/p'; }
median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ceiling() {
  local f
  f=$(mktemp --suffix .nn)
  printf 'model gemm {\n    input x: f32[2048]\n    x -> linear(2048, bias = false)\n}\n' >"$f"
  "$B" bench "$f" --entry forward --batch 2048 --reps 5 --threads "$threads" --format json --no-compare |
    field gemm_alone_gflops
  rm -f "$f"
}
c0=$(ceiling)
echo "A: $A ($("$A" --version | head -1))"
echo "B: $B ($("$B" --version | head -1))"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $threads threads, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1 /proc/loadavg)"
rows=()
for m in ${models//,/ }; do
  for e in ${entries//,/ }; do
    ta=() tb=() ratio=() ga=() gb=()
    for ((r = 0; r < rounds; r++)); do
      ja=$("$A" bench "models/$m.nn" --entry "$e" --reps "$reps" --threads "$threads" --format json --no-compare)
      jb=$("$B" bench "models/$m.nn" --entry "$e" --reps "$reps" --threads "$threads" --format json --no-compare)
      a=$(field step_median_ms <<<"$ja") b=$(field step_median_ms <<<"$jb")
      ta+=("$a") tb+=("$b")
      ratio+=("$(awk -v a="$a" -v b="$b" 'BEGIN {print b / a}')")
      ga+=("$(step_gflops <<<"$ja")") gb+=("$(step_gflops <<<"$jb")")
    done
    rows+=("$m $e $(printf '%s\n' "${ta[@]}" | median) $(printf '%s\n' "${tb[@]}" | median) $(printf '%s\n' "${ratio[@]}" | median) $(printf '%s\n' "${ga[@]}" | median) $(printf '%s\n' "${gb[@]}" | median)")
  done
done
c1=$(ceiling)
ceil=$(awk -v a="$c0" -v b="$c1" 'BEGIN {print (a + b) / 2}')
echo "GEMM ceiling (cblas_sgemm 2048^3, $threads threads): $c0 GFLOP/s before, $c1 after"
printf '%-9s %-8s %11s %11s %7s %14s %14s\n' model entry "A ms/step" "B ms/step" "B/A" "A GF/s (ceil)" "B GF/s (ceil)"
for row in "${rows[@]}"; do
  read -r m e a b r fa fb <<<"$row"
  printf '%-9s %-8s %11.3f %11.3f %7.3f %7.1f (%.2f) %7.1f (%.2f)\n' "$m" "$e" "$a" "$b" "$r" \
    "$fa" "$(awk -v g="$fa" -v c="$ceil" 'BEGIN {print g / c}')" "$fb" "$(awk -v g="$fb" -v c="$ceil" 'BEGIN {print g / c}')"
done
