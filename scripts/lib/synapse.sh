# Installs Synapse (`matrix-synapse` from PyPI) into a cached virtualenv, the
# real Matrix homeserver the tests and the demo start privately on loopback
# (tests/kit/src/harness/synapse.rs). Sourced by scripts/lib/prereqs.sh, or
# run on its own. Idempotent and quick when the venv is there: nothing is
# downloaded then.
#
#   SYNAPSE_VENV   where the venv lives
#                  (default ~/.cache/authentik-reconciler/synapse-venv; the
#                  harness reads the same variable and default)
#   SYNAPSE_VERSION  a pip requirement specifier, e.g. "==1.163.2" (default:
#                  the newest release; 1.163.2 is the one tested)

synapse_venv="${SYNAPSE_VENV:-$HOME/.cache/authentik-reconciler/synapse-venv}"

# One install at a time: two test runs starting together would otherwise
# delete each other's half-made venv.
mkdir -p "$(dirname "$synapse_venv")"
exec {synapse_lock}>"$synapse_venv.lock"
flock "$synapse_lock"

# The venv is usable when its Python can import Synapse's entry point; a
# half-made venv (an interrupted install) is made again.
if ! "$synapse_venv/bin/python" -c 'import synapse.app.homeserver' >/dev/null 2>&1; then
  echo "==> installing Synapse (PyPI matrix-synapse${SYNAPSE_VERSION:-}) into $synapse_venv"
  # Debian splits venv support (ensurepip) into python3-venv.
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo_cmd=(); else sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$synapse_venv"
  python3 -m venv "$synapse_venv"
  "$synapse_venv/bin/pip" install --quiet --disable-pip-version-check "matrix-synapse${SYNAPSE_VERSION:-}"
  "$synapse_venv/bin/python" -c 'import synapse.app.homeserver'
fi
flock -u "$synapse_lock"
exec {synapse_lock}>&-
unset synapse_venv synapse_lock
