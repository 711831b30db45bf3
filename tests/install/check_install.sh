#!/usr/bin/env bash
# usage: check_install.sh <build dir> <consumer source dir> <c compiler>
set -euo pipefail
build=$1 consumer=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
# 1. CMake package config
cmake -S "$consumer" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/b" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib:$tmp/prefix/lib64:${LD_LIBRARY_PATH:-}" "$tmp/b/consumer" "$tmp/c1.db"
# 2. pkg-config
pcdir=$(dirname "$(find "$tmp/prefix" -name wfengine.pc | head -1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs wfengine)
# shellcheck disable=SC2086
"$cc" -std=c99 -Wall -Werror "$consumer/consumer.c" -o "$tmp/pc" $flags
LD_LIBRARY_PATH="$tmp/prefix/lib:$tmp/prefix/lib64:${LD_LIBRARY_PATH:-}" "$tmp/pc" "$tmp/c2.db"
# 3. static library via pkg-config --static
sflags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --static --cflags --libs wfengine)
# shellcheck disable=SC2086
"$cc" -std=c99 "$consumer/consumer.c" -o "$tmp/st" -L"$(dirname "$(find "$tmp/prefix" -name libwfengine.a | head -1)")" \
  -Wl,-Bstatic -lwfengine -Wl,-Bdynamic $(echo "$sflags" | sed 's/-lwfengine//') -lstdc++ -lm
"$tmp/st" "$tmp/c3.db"
echo "install consumers: cmake, pkg-config and static builds run"
