#!/usr/bin/env bash
# Set up the lab's environment in .venv at the repository root (idempotent and fast when re-run).
#   scripts/bootstrap.sh          engine + app
#   scripts/bootstrap.sh --test   also the test tools and Debian's Chromium for the browser tests
# Every package is installed at the exact version of constraints.txt (refresh it with `make constraints`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

is_ok_python() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  local c
  for c in "${NQS_PYTHON:-}" python3.13 python3.12 python3; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && is_ok_python "$c" && { command -v "$c"; return; }
  done
  local roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)/versions")
  roots+=("$HOME/.pyenv/versions" /usr/local/bin /usr/bin /opt/python*/bin)
  for r in "${roots[@]}"; do
    for c in $(ls -d "$r"/3.1[2-9]*/bin/python3.1[2-9] "$r"/python3.1[2-9] 2>/dev/null | sort -rV); do
      is_ok_python "$c" && { echo "$c"; return; }
    done
  done
  echo "bootstrap: no Python >= 3.12 found (set NQS_PYTHON to one)" >&2
  exit 1
}

# Debian's Chromium for the browser tests, installed while pip works (on a fresh machine both wait on downloads)
chromium_job=""
if [ $want_test = 1 ] && [ ! -x /usr/bin/chromium ]; then
  echo "bootstrap: installing Debian's Chromium for the browser tests"
  sudo_cmd=""; [ "$(id -u)" != 0 ] && sudo_cmd="sudo"
  ( $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null ) &
  chromium_job=$!
fi

if [ ! -x .venv/bin/python ] || ! is_ok_python .venv/bin/python; then
  py="$(find_python)"
  echo "bootstrap: creating .venv with $py ($("$py" --version 2>&1))"
  rm -rf .venv
  "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

# Exact versions from constraints.txt; the stamp holds a hash of pyproject.toml, constraints.txt and the list
# of modules to byte-compile, so editing one (or switching to a commit that changes them) re-installs.
extras=""
stamp=.venv/.nqs-installed
[ $want_test = 1 ] && { extras="[test]"; stamp=.venv/.nqs-installed-test; }
want="$(cat pyproject.toml constraints.txt scripts/byte_compile.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing nqs-lab$extras into .venv (versions from constraints.txt)"
  # --no-compile: pip would byte-compile every module of every package (JAX, SciPy, Bokeh, TeNPy, Dask, ...):
  # on a loaded 2-core machine the install took 95 s of CPU and 4 min with it, 30 s and 1.5 min without.
  .venv/bin/python -m pip install -q --no-compile -c constraints.txt -e ".$extras"
  # and compiles only what the lab (and the tests) import, also where PYTHONDONTWRITEBYTECODE is set
  .venv/bin/python scripts/byte_compile.py ${1:-}
  echo "$want" > "$stamp"
fi

if [ -n "$chromium_job" ]; then
  wait "$chromium_job"  # its failure stops the setup (set -e)
fi
