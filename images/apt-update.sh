#!/usr/bin/env bash
# `apt-get update` for the image build, which also builds from a mirror whose Debian testing or unstable
# (forky, sid) Release file has expired. A testing/unstable Release is valid for about a week and is only
# renewed by a live mirror, so a stale snapshot of it (seen: this project's build machine) fails every
# update with "Release file ... is expired". Only then, only for a testing/unstable suite and only when
# expiry is the sole error, the update is repeated without the Valid-Until check: signatures are still
# verified (an unsigned or tampered Release still fails). A stable release whose Release expired means
# a mirror that stopped syncing or a replay: that fails, naming the fix.
set -euo pipefail

# The suite's own word on what it is: "13.2" for a stable release, "forky/sid" for testing and unstable.
DEBIAN_VERSION_FILE="${SLURM_SDK_DEBIAN_VERSION_FILE:-/etc/debian_version}"  # a test points it elsewhere
EXPIRED='^E: Release file for .* is expired'

is_testing_or_unstable() { ! grep -qE '^[0-9]' "$DEBIAN_VERSION_FILE"; }

output=$(mktemp)
trap 'rm -f "$output"' EXIT
status=0
apt-get update 2>&1 | tee "$output" || status=$?
[ "$status" = 0 ] && exit 0

errors=$(grep -E '^E: ' "$output" || true)
expired=$(grep -E "$EXPIRED" "$output" || true)
if [ -z "$expired" ] || [ "$errors" != "$expired" ]; then
  exit "$status"   # another failure (network, signature, ...): apt's own message above says it
fi
if ! is_testing_or_unstable; then
  printf 'error: the mirror serves an expired Release for Debian %s, a stable release:\n%s\n' \
    "$(cat "$DEBIAN_VERSION_FILE")" "$expired" >&2
  printf 'fix: build from a mirror that is in sync (the Release file is signed with a Valid-Until date so that a stale or replayed one is refused)\n' >&2
  exit "$status"
fi
printf 'warning: Debian %s (testing/unstable) from a stale mirror snapshot:\n%s\n' \
  "$(cat "$DEBIAN_VERSION_FILE")" "$expired" >&2
printf 'warning: updating again without the Valid-Until check (signatures are still verified)\n' >&2
apt-get -o Acquire::Check-Valid-Until=false update
