#!/usr/bin/env bash
# Fresh machine -> ready, for working on this repository: Docker engine, compose v2 and base image (the
# kit's bootstrap-host.sh), then a .venv with the SDK and the dev-cluster kit (both editable) and the dev
# tools. Idempotent: re-running does only what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

SLURM_SDK_SITE_CA_DIR="$PWD/images/site-ca" bash harness/src/slurm_dev_cluster/bootstrap-host.sh

# The fast tier tests the SDK's SSH transport against a real, throwaway sshd on 127.0.0.1 (the tests
# start it themselves); only the binaries are needed, never the system service.
printf '\n==> OpenSSH binaries for the SSH transport tests\n'
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null; then
  echo "    ok: present"
elif [ -f /etc/debian_version ] && [ "$(id -u)" = 0 ]; then
  policy=/usr/sbin/policy-rc.d
  [ -e "$policy" ] && had_policy=1 || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
  [ -n "${had_policy:-}" ] || rm -f "$policy"
  echo "    ok: installed (service not started)"
else
  echo "    skipped: install openssh-server by hand, or the SSH transport tests skip"
fi

printf '\n==> Python environment .venv\n'
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: Python >= 3.11 is needed on the host (found $(python3 -V 2>&1))" >&2; exit 1; }
stamp=.venv/.installed-from
want=$(cat pyproject.toml harness/pyproject.toml | sha256sum | cut -c1-64)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "    ok: up to date"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "    installing slurm-sdk and slurm-dev-cluster (editable) with dev extras ..."
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./harness
  echo "$want" > "$stamp"
  echo "    ok: installed"
fi
