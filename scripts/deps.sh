#!/usr/bin/env bash
# Installs the system packages wfengine builds and tests with (Debian).
# Only installs what is missing; needs root (or sudo) when something is.
# With arguments, installs those packages instead (fuzz.sh, lint.sh use this).
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config libsqlite3-dev sqlite3 libuv1-dev
      nlohmann-json3-dev libmbedtls-dev libcurl4-openssl-dev googletest libgtest-dev
      libbenchmark-dev clang-format libhowardhinnant-date-dev tzdata
      libnats-dev nats-server python3 openssl libcli11-dev
      libhttp-parser-dev prometheus python3-pytest mypy
      python3-venv binutils)
if (($# > 0)); then PKGS=("$@"); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
