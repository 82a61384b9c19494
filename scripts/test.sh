#!/usr/bin/env bash
# Sets up everything and runs every check: lint, types, and all tests (unit, integration on a real
# Azurite, end-to-end on the running local stack, the browser test in headless Chromium), then the
# quick soak (bench/README.md), which fails on any difference from its model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
echo "== ruff"; ruff check shared functions function_app.py devstack tests bench
echo "== mypy --strict"; mypy --strict shared functions
echo "== pytest"; python -m pytest tests "$@"
echo "== soak --quick"; python -m bench.soak --quick  # exits non-zero on any difference from the model
