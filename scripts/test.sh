#!/usr/bin/env bash
# Set up everything the tests need (system packages included), then run the whole suite,
# slow cluster and rebuild tests too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q -p no:cacheprovider -m "slow or not slow" "$@"
