#!/usr/bin/env bash
# usage: check_link_lines.sh <build dir> <source dir> <c compiler>
# Installs the build into a scratch prefix and links examples/edge_appliance
# against it the two ways docs/embedding.md gives (pkg-config + the static
# archives, and CMake with find_package), then checks each binary with readelf
# (no libwfengine.so, SQLite, libuv, mbedTLS or http-parser NEEDED) and runs it.
set -euo pipefail
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pcdir=$(dirname "$(find "$tmp/prefix" -name wfengine.pc | head -1)")
export PKG_CONFIG_PATH=$pcdir

check() { # <binary> <how>
  local needed
  needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  echo "$2: NEEDED $needed"
  if grep -Eq '(^| )lib(wfengine|sqlite3|uv|mbedcrypto|mbedtls|mbedx509|http_parser)[.-]' <<<"$needed"; then
    echo "FAIL $2: a library that should be static is NEEDED"
    exit 1
  fi
  # Runs: opens a database, registers the provider and the schedule, closes.
  EDGE_WHSEC="whsec_$(head -c 24 /dev/urandom | base64)" "$1" --db "$tmp/$2.db" \
    --url http://127.0.0.1:9/unused --allow-private --simulate 0 >/dev/null
  echo "ok   $2: static engine, runs"
}

# 1. pkg-config (the line in docs/embedding.md)
# shellcheck disable=SC2046
"$cc" -std=c99 -O2 -Wall -Wextra -Werror "$src/examples/edge_appliance/main.c" \
  -o "$tmp/edge_pc" $(pkg-config --cflags wfengine) -L"$(pkg-config --variable=libdir wfengine)" \
  -l:libwfengine.a -l:libsqlite3.a -l:libuv_a.a -l:libmbedcrypto.a -l:libhttp_parser.a \
  -lcurl -lnats -ldate-tz -lstdc++ -lm -lpthread
check "$tmp/edge_pc" pkg-config

# 2. CMake: the example's own CMakeLists.txt against the installed package
cmake -S "$src/examples/edge_appliance" -B "$tmp/b" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/b" >/dev/null
check "$tmp/b/edge_appliance" cmake
