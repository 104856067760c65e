#!/bin/sh
# Installs what is missing, builds nnc (and its sanitizer build), and runs
# the whole test suite with CTest.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DNNC_SANITIZE=ON
cd "${NNC_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)"
