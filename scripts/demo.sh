#!/usr/bin/env bash
# The main job: `make demo` (or `bash scripts/demo.sh`). Creates the venv if needed, then runs `streamrec demo`,
# which starts the stack, imports the shipped data, trains, starts a worker (+ learner), replays a stream and
# prints explained recommendations live. QUICK=1: a short run that exits by itself (< 2 minutes, for CI).
# Ctrl-C stops everything the demo started: the demo gets the same Ctrl-C and stops its processes in order;
# the traps below only wait for that (INT) or forward a SIGTERM sent to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/streamrec ] || bash scripts/bootstrap.sh

args=()
if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then args+=(--quick); fi
unset QUICK  # decided above; keeps `QUICK=0` from being read again by the command's env option

child=
trap 'trap "" INT; [ -n "$child" ] && wait "$child"; exit 130' INT
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; [ -n "$child" ] && wait "$child"; exit 143' TERM
.venv/bin/streamrec demo "${args[@]}" "$@" &
child=$!
wait "$child"
