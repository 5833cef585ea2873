#!/usr/bin/env bash
# The main job: `make demo` (or `bash scripts/demo.sh`). Creates the venv if needed, then runs `streamrec demo`,
# which starts the stack, imports the shipped data, trains, starts a worker (+ learner), replays a stream and
# prints explained recommendations live. QUICK=1: a short run that exits by itself (< 2 minutes, for CI).
# Ctrl-C stops everything the demo started (the Python side stops its children; the trap covers this shell).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/streamrec ] || bash scripts/bootstrap.sh

args=()
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then args+=(--quick); fi
unset QUICK  # decided above; keeps `QUICK=0` from being read again as an option value

child=
trap 'if [ -n "$child" ]; then kill -INT "$child" 2>/dev/null || true; wait "$child" || true; fi; exit 130' INT TERM
.venv/bin/streamrec demo "${args[@]}" "$@" &
child=$!
wait "$child"
