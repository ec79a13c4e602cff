#!/usr/bin/env bash
# Builds the Docker images the tests run, locally: no registry is reachable,
# so nothing is pulled. The Debian root filesystem comes from debootstrap
# and is cached, so reruns take seconds.
#
#   scripts/images.sh            build what is missing
#   scripts/images.sh --rebuild  rebuild the images (the rootfs cache stays)
#
# Images:
#   reconciler-dovecot:test   Dovecot 2.3 (Debian's dovecot-core/-imapd),
#                             configured like Mailcow's (deploy/images/dovecot)
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

# image <tag> <rootfs name> <packages> <context dir>: imports the rootfs as
# <tag>-base, then builds the context's Dockerfile on top (COPY only, no network).
image() {
  local tag=$1 name=$2 packages=$3 context=$4
  if have_image "$tag"; then return 0; fi
  local tarball base="${tag%%:*}-base:$SUITE"
  tarball=$(rootfs "$name" "$packages")
  echo "==> docker import $base" >&2
  docker import "$tarball" "$base" >/dev/null
  echo "==> docker build $tag" >&2
  docker build --quiet --build-arg BASE="$base" -t "$tag" "$context" >/dev/null
}

image reconciler-dovecot:test dovecot "dovecot-core,dovecot-imapd,ca-certificates" deploy/images/dovecot
