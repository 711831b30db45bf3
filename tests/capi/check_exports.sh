#!/bin/sh
# Usage: check_exports.sh <shared library> [nm]
# Fails if the library defines a dynamic symbol that is not part of the wf_* API.
# Linker-generated symbols (_init, _fini, _edata, ...) are tolerated.
set -u
lib=${1:?usage: check_exports.sh <shared library> [nm]}
nm_tool=${2:-nm}

if [ ! -f "$lib" ]; then
  echo "exported_symbols: no such library: $lib" >&2
  exit 1
fi

syms=$("$nm_tool" -D --defined-only "$lib") || {
  echo "exported_symbols: '$nm_tool -D --defined-only $lib' failed" >&2
  exit 1
}

# nm -D lines look like "0000000000012340 T wf_open" (with versioned names
# possibly followed by @VERSION). Type A entries are version nodes, not code/data.
bad=$(printf '%s\n' "$syms" | awk '
  NF >= 2 {
    type = $(NF - 1); name = $NF
    sub(/@.*/, "", name)
    if (type == "A" || type == "a" || type == "U" || type == "w" || type == "v") next
    if (name ~ /^wf_/) next
    if (name ~ /^(_init|_fini|_edata|_end|__bss_start|__bss_start__|__bss_end__|_bss_end__|__end__|_etext|__etext|etext|edata|end|__data_start|data_start|__dso_handle|_IO_stdin_used|_DYNAMIC|_GLOBAL_OFFSET_TABLE_|__GNU_EH_FRAME_HDR|__TMC_END__)$/) next
    print "  " type " " name
  }')

count=$(printf '%s\n' "$syms" | awk 'NF >= 2 && $NF ~ /^wf_/ {n++} END {print n + 0}')
if [ "$count" -eq 0 ]; then
  echo "exported_symbols: $lib exports no wf_* symbol at all" >&2
  exit 1
fi
if [ -n "$bad" ]; then
  echo "exported_symbols: $lib exports symbols outside the wf_ namespace:" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi
echo "exported_symbols: $count wf_* symbols, nothing else"
exit 0
