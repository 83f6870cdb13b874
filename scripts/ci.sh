#!/usr/bin/env bash
# CI: a clean clone, CI=true, no GPU. The README's test command does all the set-up; the real
# PLAsTiCC training set beside the checkout (../shared/data/plasticc_snmachine) enables the
# real-data tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PLASTICC_JAX_MIRROR="${PLASTICC_JAX_MIRROR:-$(cd .. && pwd)/shared/data/plasticc_snmachine}"
make test
