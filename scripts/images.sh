#!/usr/bin/env bash
# Builds the Docker images the tests run, locally: no registry is reachable,
# so nothing is pulled. The Debian root filesystem comes from debootstrap
# and is cached, so reruns take seconds.
#
#   scripts/images.sh            build what is missing
#   scripts/images.sh --rebuild  rebuild the images (the rootfs cache stays)
#
# Images (both on one cached Debian bookworm rootfs, which carries Dovecot):
#   reconciler-dovecot:test         Dovecot 2.3 (Debian's dovecot-core/-imapd),
#                                   configured like Mailcow's (deploy/images/dovecot)
#   reconciler-nextcloud-occ:test   Nextcloud's layout for the occ simulator
#                                   (deploy/images/nextcloud-occ)
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${RECONCILER_CACHE:-$HOME/.cache/authentik-reconciler}
REBUILD=0
[ "${1:-}" = "--rebuild" ] && REBUILD=1
mkdir -p "$CACHE"

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_image() { [ "$REBUILD" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

# rootfs <name> <comma-separated packages>: a cached tarball of a minimal
# Debian with those packages installed.
rootfs() {
  local name=$1 packages=$2 tarball="$CACHE/$1-$SUITE.tar"
  if [ ! -s "$tarball" ]; then
    need debootstrap || { as_root apt-get update -qq && as_root apt-get install -y -qq debootstrap >/dev/null; }
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

base
image reconciler-dovecot:test deploy/images/dovecot
image reconciler-nextcloud-occ:test deploy/images/nextcloud-occ
