#!/usr/bin/env bash
# Builds the Docker images, locally: no registry is reachable, so nothing is
# pulled. The Debian root filesystem comes from debootstrap and is cached, so
# reruns take seconds.
#
#   scripts/images.sh                  the test peers below (what is missing)
#   scripts/images.sh --services       also one image per service, from the
#                                      binaries built on this host
#   scripts/images.sh --rebuild        rebuild (the rootfs cache stays)
#
# Options for --services:
#   --bin-dir DIR   where the binaries are (default
#                   ${CARGO_TARGET_DIR:-target}/<profile>)
#   --profile P     cargo profile directory for the default --bin-dir
#                   (default debug)
#   --tag TAG       image tag (default local; the tests use test)
#
# Test peers (on one cached Debian bookworm rootfs, which carries Dovecot):
#   reconciler-dovecot:test         Dovecot 2.3 (Debian's dovecot-core/-imapd),
#                                   configured like Mailcow's (deploy/images/dovecot)
#   reconciler-nextcloud-occ:test   Nextcloud's layout for the occ simulator
#                                   (deploy/images/nextcloud-occ)
# Services (deploy/images/<service>; docs/DEPLOYMENT.md), each the host's
# binary on the same base (the host is Debian bookworm too: same glibc):
#   authentik-reconciler/<service>:TAG   coordinator, mailcow-agent, sogo-agent,
#                                        nextcloud-agent, matrix-agent,
#                                        stalwart-agent
#   reconciler-simulators:TAG            the Authentik and Mailcow simulators,
#                                        for the compose stack test
# A service image is rebuilt only when its Dockerfile, binaries or the base
# image changed (a label records their digest), so a rerun sends nothing to
# the Docker daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${RECONCILER_CACHE:-$HOME/.cache/authentik-reconciler}
REBUILD=0
SERVICES=0
PROFILE=debug
BIN_DIR=
TAG=local
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --rebuild) REBUILD=1 ;;
    --services) SERVICES=1 ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift ;;
    --profile) PROFILE=${2:?--profile needs a name}; shift ;;
    --tag) TAG=${2:?--tag needs a tag}; shift ;;
    -h|--help) usage ;;
    *) echo "images.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/$PROFILE}
mkdir -p "$CACHE"

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_image() { [ "$REBUILD" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

# rootfs <name> <comma-separated packages>: a cached tarball of a minimal
# Debian with those packages installed.
rootfs() {
  local name=$1 packages=$2 tarball="$CACHE/$1-$SUITE.tar"
  if [ ! -s "$tarball" ]; then
    need debootstrap || [ -x /usr/sbin/debootstrap ] || { as_root apt-get update -qq && as_root apt-get install -y -qq debootstrap >/dev/null; }
    local dir
    dir=$(mktemp -d)
    echo "==> debootstrap $SUITE with $packages (cached in $tarball)" >&2
    as_root debootstrap --variant=minbase --include="$packages" "$SUITE" "$dir" "$MIRROR" >"$CACHE/$name-debootstrap.log" 2>&1 \
      || { tail -n 30 "$CACHE/$name-debootstrap.log" >&2; exit 1; }
    as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    as_root tar -C "$dir" -cf "$tarball.partial" .
    as_root rm -rf "$dir"
    mv "$tarball.partial" "$tarball"
  fi
  echo "$tarball"
}

BASE=reconciler-base:$SUITE

# The base image: the cached rootfs, imported (no network).
base() {
  if have_image "$BASE"; then return 0; fi
  local tarball
  tarball=$(rootfs dovecot "dovecot-core,dovecot-imapd,ca-certificates")
  echo "==> docker import $BASE" >&2
  docker import "$tarball" "$BASE" >/dev/null
}

# image <tag> <context dir>: the context's Dockerfile on the base image.
image() {
  local tag=$1 context=$2
  if have_image "$tag"; then return 0; fi
  echo "==> docker build $tag" >&2
  docker build --quiet --build-arg BASE="$BASE" -t "$tag" "$context" >/dev/null
}

# binary_image <tag> <context dir> <binary>…: the context's Dockerfile with
# the binaries from $BIN_DIR beside it.
binary_image() {
  local tag=$1 context=$2
  shift 2
  local bin
  for bin in "$@"; do
    [ -x "$BIN_DIR/$bin" ] || {
      echo "images.sh: $BIN_DIR/$bin is missing: build it first (cargo build --workspace --bins)" >&2
      exit 1
    }
  done
  # What the image is made of: skip the build when nothing changed.
  local digest
  digest=$( {
    docker image inspect -f '{{.Id}}' "$BASE"
    cat "$context/Dockerfile"
    for bin in "$@"; do cat "$BIN_DIR/$bin"; done
  } | sha256sum | cut -d' ' -f1)
  if [ "$REBUILD" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "authentik-reconciler.inputs"}}' "$tag" 2>/dev/null)" = "$digest" ]; then
    return 0
  fi
  echo "==> docker build $tag (binaries from $BIN_DIR)" >&2
  local dir
  dir=$(mktemp -d)
  cp "$context/Dockerfile" "$dir/"
  for bin in "$@"; do
    # A hard link when the target dir is on the same file system: no copy.
    ln "$BIN_DIR/$bin" "$dir/$bin" 2>/dev/null || cp "$BIN_DIR/$bin" "$dir/$bin"
  done
  # Quiet unless it fails (the legacy builder warns about itself on stderr).
  docker build --quiet --build-arg BASE="$BASE" --label "authentik-reconciler.inputs=$digest" \
    -t "$tag" "$dir" >/dev/null 2>"$dir.log" || { cat "$dir.log" >&2; rm -rf "$dir" "$dir.log"; exit 1; }
  rm -rf "$dir" "$dir.log"
}

base
image reconciler-dovecot:test deploy/images/dovecot
image reconciler-nextcloud-occ:test deploy/images/nextcloud-occ

if [ "$SERVICES" = 1 ]; then
  for service in coordinator mailcow-agent sogo-agent nextcloud-agent matrix-agent stalwart-agent; do
    binary_image "authentik-reconciler/$service:$TAG" "deploy/images/$service" "$service"
  done
  binary_image "reconciler-simulators:$TAG" deploy/images/simulators authentik-sim mailcow-sim
fi
