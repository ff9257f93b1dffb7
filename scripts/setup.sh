#!/usr/bin/env bash
# Set up a fresh machine for authbench: what a stock Debian/Ubuntu lacks (redis-server, the
# venv module, Python itself on a minimal install) from apt, then a Python venv in .venv
# with the pinned dependencies: the services' runtime, the harness and the dev tools
# (`pip install -e '.[harness,dev]'`). Safe to run again: it only installs what is missing.
# As root it runs apt-get itself; as another user through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

find_python() { # the first Python 3.11+ on PATH, or nothing
  local candidate
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

PYTHON=$(find_python)
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ -z "$PYTHON" ]; then
  need_apt+=(python3 python3-venv)
elif [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  # Debian and Ubuntu ship the venv module (ensurepip) apart from Python: python3-venv for
  # the default python3, python3.X-venv for another version.
  need_apt+=("$(basename "$PYTHON")-venv")
fi
if ((${#need_apt[@]})); then
  command -v apt-get >/dev/null 2>&1 ||
    die "please install: ${need_apt[*]} (apt-get is not available here to do it; authbench" \
      "needs redis-server on PATH and Python 3.11+ with its venv module)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      die "please install: ${need_apt[*]} (as root: apt-get install ${need_apt[*]})"
    SUDO="sudo"
  fi
  say "installing ${need_apt[*]} with apt-get"
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install \
    -y -qq --no-install-recommends "${need_apt[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get install ${need_apt[*]} failed (output above)"
  fi
  rm -f "$log"
  PYTHON=$(find_python)
fi
[ -n "$PYTHON" ] || die "Python 3.11+ is required (found none on PATH)"

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[harness,dev]'; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  die "pip install failed"
fi
rm -f "$log"
# The runtime, the harness and the test runner import: a packaging slip fails here, loudly.
# (Locust alone and with warnings off: gevent warns when it patches after other imports.)
.venv/bin/python -c 'import aiohttp, redis, jwt, argon2, matplotlib, psutil, pytest'
.venv/bin/python -W ignore -c 'import locust'
say "ready ($(.venv/bin/python --version), $(redis-server --version | cut -d' ' -f3))"
