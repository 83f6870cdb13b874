#!/usr/bin/env bash
# Time `make test` as CI sees it: a fresh clone of this checkout's HEAD, its virtual environment
# built first (not timed). The machine's load is printed too: on a shared machine it matters.
#   scripts/time_make_test.sh [CLONE_DIR]
set -euo pipefail
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
clone="${1:-$(mktemp -d)/plasticc_jax}"
git clone --quiet "$source_dir" "$clone"
cd "$clone"
make venv > /dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
time make test
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
