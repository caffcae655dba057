#!/usr/bin/env bash
# Prepare this host for the dev cluster: Docker engine, compose v2, the Debian base image, the host's
# extra CA certificates for the images. Idempotent: every step checks first and does nothing when its
# result is already there. Shipped in the slurm-dev-cluster package; run it as
#   sudo slurm-dev-cluster setup-host     (DEBIAN_RELEASE=trixie|bookworm|forky, default trixie)
# or, in a slurm-sdk checkout, through harness/setup.sh. `bootstrap-host.sh site-ca` runs only the last
# step (no root needed): the kit runs it when it copies the cluster's definition for a build.
set -euo pipefail

RELEASE="${DEBIAN_RELEASE:-trixie}"
BASE_IMAGE="debian:${RELEASE}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/slurm-sdk-dockerd.log}"
COMPOSE_PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

step() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root. Re-run as root (sudo slurm-dev-cluster setup-host) or do it by hand."
}

is_debian_like() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null; }

apt_updated=""
apt_install() {
  need_root "installing $*"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

manual_help() {
  cat >&2 <<'TXT'
This host is not Debian/Ubuntu, so nothing was installed. Install by hand:
  - Docker Engine (https://docs.docker.com/engine/install/) and start the daemon
  - the Docker Compose v2 plugin (`docker compose version` must print v2.x)
  - then re-run this script to create the base image.
TXT
  exit 1
}

ensure_engine() {
  step "Docker engine"
  if command -v dockerd >/dev/null; then ok "dockerd present ($(dockerd --version))"; return; fi
  is_debian_like || manual_help
  echo "    installing Debian's docker.io package ..."
  apt_install docker.io iptables ca-certificates
  ok "installed $(dockerd --version)"
}

# A wedged dockerd (seen: Docker 20.10 deadlocked under load) never answers: every call here is bounded.
docker_answers() { timeout -k 5 30 docker info >/dev/null 2>&1; }

ensure_daemon() {
  step "Docker daemon"
  local status=0
  docker_answers || status=$?
  if [ "$status" = 0 ]; then ok "running (server $(timeout -k 5 30 docker version -f '{{.Server.Version}}'))"; return; fi
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    die "dockerd (${DOCKER_HOST:-unix:///var/run/docker.sock}) did not answer \`docker info\` within 30 s: it is wedged or overloaded.
  Check it: systemctl status docker (or its log, $DOCKERD_LOG, when this script started it);
  restart it: systemctl restart docker, or stop the dockerd this script started, then re-run bash harness/setup.sh"
  fi
  need_root "starting dockerd"
  echo "    starting dockerd in the background (log: $DOCKERD_LOG) ..."
  setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    timeout -k 2 5 docker info >/dev/null 2>&1 && { ok "running"; return; }
    sleep 0.5
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within 30 s; see $DOCKERD_LOG"
}

compose_is_v2() { docker compose version --short 2>/dev/null | grep -qE '^v?2\.'; }

ensure_compose() {
  step "Docker Compose v2"
  if compose_is_v2; then ok "docker compose $(docker compose version --short)"; return; fi
  is_debian_like || manual_help
  need_root "installing the compose plugin"
  # Newer Debian/Ubuntu ship it as a package; Debian 12 does not, so take trixie's static binary.
  for pkg in docker-compose-plugin docker-compose-v2; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then apt_install "$pkg"; compose_is_v2 && { ok "installed $pkg"; return; }; fi
  done
  echo "    fetching the compose v2 binary from Debian trixie's docker-compose package ..."
  local work; work=$(mktemp -d)
  mkdir -p "$work"/{lists/partial,cache/archives/partial,etc}
  echo "deb http://deb.debian.org/debian trixie main" > "$work/etc/trixie.list"
  local opts=(-o Dir::Etc::SourceList="$work/etc/trixie.list" -o Dir::Etc::SourceParts=/dev/null
              -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root -qq)
  apt-get "${opts[@]}" update
  (cd "$work" && apt-get "${opts[@]}" download docker-compose)
  dpkg -x "$work"/docker-compose_*.deb "$work/x"
  mkdir -p "$COMPOSE_PLUGIN_DIR"
  install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_PLUGIN_DIR/docker-compose"
  rm -rf "$work"
  compose_is_v2 || die "compose plugin installed at $COMPOSE_PLUGIN_DIR but 'docker compose version' still fails"
  ok "docker compose $(docker compose version --short)"
}

ensure_base_image() {
  step "Base image $BASE_IMAGE"
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then ok "present"; return; fi
  echo "    trying to pull $BASE_IMAGE (20 s limit) ..."
  if timeout 20 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then ok "pulled"; return; fi
  echo "    no registry answered; building $BASE_IMAGE locally with debootstrap (a few minutes) ..."
  command -v debootstrap >/dev/null || { is_debian_like || manual_help; apt_install debootstrap; }
  need_root "debootstrap"
  # A suite newer than this host's debootstrap (forky on Debian 12) has no script of its own; every Debian
  # suite since bullseye bootstraps the same way, so sid's script serves.
  local script=()
  [ -e "/usr/share/debootstrap/scripts/$RELEASE" ] || script=(/usr/share/debootstrap/scripts/sid)
  local root; root=$(mktemp -d /var/tmp/slurm-sdk-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # $root is expanded now, on purpose
  trap "rm -rf '$root'" EXIT
  debootstrap --variant=minbase "$RELEASE" "$root" http://deb.debian.org/debian "${script[@]}" \
    | grep --line-buffered -E '^(E|W): |^I: (Retrieving|Extracting|Installing core|Configuring|Base system)' \
    | awk '{ if (/^[EW]: / || ++n % 20 == 1 || /Base system/) { print "    " $0; fflush() } }' \
    || die "debootstrap of Debian $RELEASE failed (see the E: lines above)"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  ok "built and tagged $BASE_IMAGE"
}

# Sites behind a TLS-intercepting proxy: containers must trust what the host adds to its trust store.
# Certificates are public (no secret). They land in images/site-ca/ one per file (update-ca-certificates
# in the image reads one certificate per *.crt), from, in order: SLURM_SDK_SITE_CA (a PEM file, bundle or
# not, or a directory of them; `none` skips), the host's own additions in /usr/local/share/ca-certificates
# (Debian/Ubuntu), or else the host's whole bundle.
# The images/site-ca/ of the cluster definition being built (the checkout's, or the kit's copy of it).
SITE_CA_DIR="${SLURM_SDK_SITE_CA_DIR:-}"
HOST_LOCAL_CAS=/usr/local/share/ca-certificates
HOST_BUNDLE=/etc/ssl/certs/ca-certificates.crt

site_ca_sources() {
  local chosen="${SLURM_SDK_SITE_CA:-}"
  if [ -z "$chosen" ]; then
    if [ -n "$(find "$HOST_LOCAL_CAS" -name '*.crt' -type f 2>/dev/null | head -n1)" ]; then chosen=$HOST_LOCAL_CAS
    else chosen=$HOST_BUNDLE; fi
  fi
  [ "$chosen" = none ] && return
  [ -e "$chosen" ] || die "SLURM_SDK_SITE_CA=$chosen does not exist; give a PEM file or directory, or 'none'"
  if [ -d "$chosen" ]; then find "$chosen" -type f \( -name '*.crt' -o -name '*.pem' \) | sort; else echo "$chosen"; fi
}

ensure_site_ca() {
  step "Site CA certificates for the images"
  if [ -z "$SITE_CA_DIR" ]; then
    ok "skipped here (SLURM_SDK_SITE_CA_DIR unset): the kit gathers them when it prepares a build"
    return
  fi
  mkdir -p "$SITE_CA_DIR"
  local work sources count
  sources=$(site_ca_sources)
  work=$(mktemp -d)
  # One certificate per file (site-001.crt, ...), whatever bundles they came in.
  [ -z "$sources" ] || tr '\n' '\0' <<<"$sources" | xargs -0 cat | awk -v dir="$work" '
    /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/site-%03d.crt", dir, n); inside = 1 }
    inside { print > file }
    /-----END CERTIFICATE-----/ { inside = 0; close(file) }'
  count=$(find "$work" -name '*.crt' | wc -l)
  if diff -rq -x .keep "$work" "$SITE_CA_DIR" >/dev/null; then
    ok "up to date ($count certificate(s))"
  else
    rm -f "$SITE_CA_DIR"/*.crt
    [ "$count" = 0 ] || cp "$work"/*.crt "$SITE_CA_DIR"/
    ok "$count certificate(s) from $(echo ${sources:-nowhere (SLURM_SDK_SITE_CA=none)})"
  fi
  rm -rf "$work"
}

if [ "${1:-}" = site-ca ]; then
  ensure_site_ca
  exit 0
fi
ensure_engine
ensure_daemon
ensure_compose
ensure_base_image
ensure_site_ca
printf '\nHost ready: Docker %s, compose %s, base image %s.\n' \
  "$(docker version -f '{{.Server.Version}}')" "$(docker compose version --short)" "$BASE_IMAGE"
