#!/bin/sh
# The main job: installs what is missing, builds nnc, checks every model in
# models/ (one summary table each), then trains models/mlp.nn on
# Fashion-MNIST (Debian's dataset-fashion-mnist package) and prints its test
# accuracy.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
nnc=${NNC_BUILD_DIR:-$root/build}/cli/nnc
cd "$root"
"$nnc" check models/*.nn
echo
"$nnc" train models/mlp.nn --overwrite --out "${NNC_RUN_DIR:-$root/runs/mlp}"
