#!/usr/bin/env bash
# Creates ./.venv for this clone. The heavy dependencies (torch is a multi-GB CUDA build on PyPI) live in a
# shared environment under ~/.cache/streamrec keyed by the dependency spec, so a warm machine reuses it and a
# cold machine builds it by itself. ./.venv is a thin per-clone environment that sees the shared one through a
# .pth file and holds only the editable install of this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}
export PIP_CACHE_DIR="$CACHE/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# constraints.txt pins the exact set CI last passed with (pyproject.toml keeps the ranges); without it every cold
# machine resolves the newest releases of the day. STREAMREC_UNPINNED=1 resolves afresh (to refresh the pins:
# then copy the environment's requirements.lock over constraints.txt).
constraints=constraints.txt
[ -n "${STREAMREC_UNPINNED:-}" ] && constraints=
# The key covers what decides the installed set: interpreter version, declared dependencies and the pins.
key=$(CONSTRAINTS="$constraints" "$PYTHON" - <<'PY'
import hashlib, json, os, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
pins = None
if os.environ["CONSTRAINTS"]:  # the pins only: editing a comment does not rebuild the environment
    lines = open(os.environ["CONSTRAINTS"]).read().splitlines()
    pins = "\n".join(line.strip() for line in lines if line.strip() and not line.startswith("#"))
spec = {"python": sys.version_info[:2], "deps": project["dependencies"],
        "dev": project["optional-dependencies"]["dev"], "build": ["setuptools>=69", "wheel"]}
if pins is not None:
    spec["pins"] = hashlib.sha256(pins.encode()).hexdigest()
print(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16])
PY
)
deps="$CACHE/venvs/$key"

# The dashboard's browser test drives Debian's chromium through its chromedriver (no browser download).
if { ! command -v chromium >/dev/null || [ ! -x /usr/bin/chromedriver ]; } && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null && [ -z "${STREAMREC_NO_BROWSER:-}" ]; then
  echo "bootstrap: installing chromium + chromium-driver (apt) for the dashboard browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "bootstrap: warning: could not install chromium; the dashboard browser test will fail" >&2
fi

mkdir -p "$CACHE/venvs"
exec 9>"$CACHE/venvs/.lock"
flock 9  # one builder at a time; a second caller waits and then finds the environment complete
if [ ! -f "$deps/.complete" ]; then
  echo "bootstrap: building dependency environment $deps (first time on this machine; torch is large)"
  rm -rf "$deps"
  mkdir -p "$CACHE/venvs"
  "$PYTHON" -m venv "$deps"
  "$deps/bin/python" -m pip install -q --upgrade pip
  reqs=$("$PYTHON" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"] + ["setuptools>=69", "wheel"]))
PY
)
  echo "$reqs" > "$deps/requirements.in"
  "$deps/bin/python" -m pip install -r "$deps/requirements.in" ${constraints:+-c "$constraints"}
  "$deps/bin/python" -m pip freeze > "$deps/requirements.lock"
  touch "$deps/.complete"
fi

if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.deps 2>/dev/null)" != "$deps" ]; then
  rm -rf .venv
  "$PYTHON" -m venv .venv
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  dsite=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$dsite" > "$site/_streamrec_deps.pth"
  echo "$deps" > .venv/.deps
fi
# Cheap (no downloads): points the console script `streamrec` at this checkout.
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 
