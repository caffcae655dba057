#!/usr/bin/env bash
# Fresh machine -> ready: Docker engine, compose v2 and base image (bootstrap-host.sh), then a .venv with
# the SDK (editable) and the dev tools. Idempotent: re-running does only what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

bash harness/bootstrap-host.sh

printf '\n==> Python environment .venv\n'
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: Python >= 3.11 is needed on the host (found $(python3 -V 2>&1))" >&2; exit 1; }
stamp=.venv/.installed-from
want=$(sha256sum pyproject.toml | cut -c1-64)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "    ok: up to date"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "    installing slurm-sdk (editable) with dev extras ..."
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
  echo "    ok: installed"
fi
