#!/usr/bin/env bash
# Sets up everything and runs every check: lint, types, and all tests (unit, integration on a real
# Azurite, end-to-end on the running local stack, the browser test in headless Chromium), and the
# quick soak (bench/README.md), which fails on any difference from its model.
#
# Most of that time is waiting (queues, timers, polls), not CPU, so the parts run side by side:
# - the quick soak starts first, in the background, on a private stack of its own (free ports);
# - ruff, then mypy, then pytest in TEST_WORKERS pytest-xdist workers (default 3) with
#   `--dist loadgroup`: the groups (tests/conftest.py) keep every e2e test of the session stack in
#   one worker, in file order (the card-number scan last), and each other file whole in one worker.
# Every step runs even after one failed; the soak's output is printed once it ends, then a summary.
# The command fails if any step failed. Extra arguments go to pytest (`-n 0` runs it in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate

started=$SECONDS
soak_log="$(mktemp "${TMPDIR:-/tmp}/soak-quick.XXXXXX")"
# SIGTERM is made a KeyboardInterrupt, so an interrupted soak stops its stack (`soak_stack`'s finally).
python -c 'import runpy, signal, sys
signal.signal(signal.SIGTERM, signal.default_int_handler)
sys.argv = ["python -m bench.soak", "--quick"]
runpy.run_module("bench.soak", run_name="__main__", alter_sys=True)' >"$soak_log" 2>&1 &
soak_pid=$!
stop_soak() {
  if kill -0 "$soak_pid" 2>/dev/null; then
    kill -TERM "$soak_pid" 2>/dev/null || true
    wait "$soak_pid" 2>/dev/null || true
  fi
  rm -f "$soak_log"
}
trap stop_soak EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "== soak --quick: started in the background (output below, once it ends)"

declare -a results=()
step() {  # step NAME COMMAND...: run it, note how it went and how long it took, never stop here
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "== $name"
  "$@" || rc=$?
  results+=("$(printf '%-16s %s (%d s)' "$name" "$([ "$rc" = 0 ] && echo ok || echo "FAILED, exit $rc")" $((SECONDS - t0)))")
  return 0
}
failed() { [[ "${results[*]}" == *FAILED* ]]; }

step "ruff" ruff check shared functions function_app.py devstack tests bench
step "mypy --strict" mypy --strict shared functions
step "pytest" python -m pytest tests -n "${TEST_WORKERS:-3}" --dist loadgroup --no-loadscope-reorder "$@"

echo "== soak --quick"
t0=$SECONDS
soak_rc=0
wait "$soak_pid" || soak_rc=$?  # exits non-zero on any difference from the model
cat "$soak_log"
results+=("$(printf '%-16s %s (%d s after pytest)' "soak --quick" \
  "$([ "$soak_rc" = 0 ] && echo ok || echo "FAILED, exit $soak_rc")" $((SECONDS - t0)))")

echo "== summary ($((SECONDS - started)) s after setup)"
printf '%s\n' "${results[@]}"
if failed; then exit 1; fi
