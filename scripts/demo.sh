#!/usr/bin/env bash
# Sets up everything, starts the local stack and plays the scripted story, printing the timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_CHROMIUM=1 bash scripts/setup.sh
exec .venv/bin/python -m devstack.stack --story "$@"
