# Sourced by scripts/run, scripts/test and scripts/bench: installs missing Debian packages.
# Usage: respite_install_deps pkg...
respite_install_deps() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# What building respite and running its tests needs.
RESPITE_BUILD_DEPS=(build-essential cmake pkg-config libuv1-dev libhiredis-dev libfmt-dev catch2
  libcli11-dev libhttp-parser-dev libssl-dev)
RESPITE_TEST_DEPS=(redis-server redis-tools python3 python3-redis tcl dpkg-dev openssl)
