#!/usr/bin/env bash
# The one-step action's script (action.yml at the repository root; docs/ci.md). Inputs come as GitHub
# gives them to a composite step here: INPUT_NODES, INPUT_DEBIAN_RELEASE, INPUT_ACCOUNTING (true|false),
# INPUT_REGISTRY, INPUT_TAG; results go to $GITHUB_ENV and $GITHUB_OUTPUT.
# Usage: start.sh [start|logs|down]. The cluster is the harness's (compose.yaml of this checkout):
# images pulled from the registry when it has them, built otherwise; `up` returns once a tiny job ran.
# tests/integration/test_action.py runs it as the runner would.
set -euo pipefail
root=${GITHUB_ACTION_PATH:?run as an action step, or set GITHUB_ACTION_PATH to a slurm-sdk checkout}
cd "$root"
export SLURM_SDK_PROJECT=${SLURM_SDK_PROJECT:-slurm-sdk-ci}
export DEBIAN_RELEASE=${INPUT_DEBIAN_RELEASE:-trixie}
export SLURM_SDK_SSH_PORT=${SLURM_SDK_SSH_PORT-}   # empty: an ephemeral port on 127.0.0.1

case "${INPUT_ACCOUNTING:-true}" in
  true|1) export SLURM_SDK_ACCOUNTING=1 ;;
  false|0) export SLURM_SDK_ACCOUNTING=0 ;;
  *) echo "::error::accounting: '$INPUT_ACCOUNTING' is not true or false" >&2; exit 2 ;;
esac
nodes=${INPUT_NODES:-2}
[[ "$nodes" =~ ^[1-9][0-9]?$ ]] || { echo "::error::nodes: '$nodes' is not a number from 1 to 64" >&2; exit 2; }

# The kit's Python: $SLURM_SDK_ACTION_PYTHON (one with slurm-dev-cluster installed), else a venv
# made once per job under RUNNER_TEMP.
python=${SLURM_SDK_ACTION_PYTHON:-}
if [ -z "$python" ]; then
  venv="${RUNNER_TEMP:-/tmp}/slurm-sdk-action-venv"
  [ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "$root" "$root/harness"; }
  python="$venv/bin/python"
fi
harness() { "$python" -m slurm_dev_cluster "$@"; }

# A tag given: pull <registry>/slurm-sdk-dev:<tag>[-accounting] and name them as the images for this
# checkout's inputs, so `up` starts them instead of building. No tag: with a registry, `up` pulls the
# images published for exactly these inputs (SLURM_SDK_IMAGE_REGISTRY); without, it builds.
use_tag() {
  local local_tag suffix
  local_tag=$("$python" -c 'from slurm_dev_cluster.stack import Stack; print(Stack().image_tag)')
  for suffix in "" $([ "$SLURM_SDK_ACCOUNTING" = 1 ] && echo -accounting); do
    if ! docker pull --quiet "$INPUT_REGISTRY/slurm-sdk-dev:$INPUT_TAG$suffix" >/dev/null; then
      echo "no image $INPUT_REGISTRY/slurm-sdk-dev:$INPUT_TAG$suffix: building instead" >&2
      return 0
    fi
    docker tag "$INPUT_REGISTRY/slurm-sdk-dev:$INPUT_TAG$suffix" "slurm-sdk-dev:$local_tag$suffix"
  done
}

start() {
  local started=$SECONDS dir
  if [ -n "${INPUT_REGISTRY:-}" ] && [ -n "${INPUT_TAG:-}" ]; then
    use_tag
  elif [ -n "${INPUT_REGISTRY:-}" ]; then
    export SLURM_SDK_IMAGE_REGISTRY=$INPUT_REGISTRY
  fi
  harness up --nodes "$nodes"
  dir="${RUNNER_TEMP:-/tmp}/slurm-sdk"
  mkdir -p "$dir"
  harness config --output "$dir/sdk-config.yaml" >/dev/null
  harness ssh-config > "$dir/ssh_config"
  port=$(awk '$1 == "Port" { print $2 }' "$dir/ssh_config")
  {
    echo "SLURM_SDK_CONFIG=$dir/sdk-config.yaml"
    echo "SLURM_SDK_SSH_CONFIG=$dir/ssh_config"
  } >> "${GITHUB_ENV:?}"
  {
    echo "sdk-config=$dir/sdk-config.yaml"
    echo "ssh-config=$dir/ssh_config"
    echo "ssh-port=$port"
    echo "project=$SLURM_SDK_PROJECT"
  } >> "${GITHUB_OUTPUT:?}"
  echo "Slurm dev cluster up in $((SECONDS - started)) s: ssh -F $dir/ssh_config slurm-dev; SLURM_SDK_CONFIG=$dir/sdk-config.yaml"
}

case "${1:-start}" in
  start) start ;;
  logs) harness logs || docker compose -p "$SLURM_SDK_PROJECT" logs --tail 200 ;;
  down) harness down ;;
  *) echo "usage: $0 [start|logs|down]" >&2; exit 2 ;;
esac
