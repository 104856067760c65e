#!/bin/sh
# The main job: installs what is missing, builds nnc, and checks every model
# in models/, printing each one's summary table.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
cd "$root"
"${NNC_BUILD_DIR:-$root/build}/cli/nnc" check models/*.nn
