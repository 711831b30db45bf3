#!/usr/bin/env bash
# Packaging check of the Python binding (run by ./scripts/test.sh's python block):
#  1. a fresh virtualenv (python3 -m venv; Debian's python3-venv);
#  2. `pip install ./bindings/python` into it: pip's build isolation fetches
#     scikit-build-core from PyPI, which drives the project's CMake (library only)
#     and bundles libwfengine.so in the package;
#  3. tests/package_smoke.py in that virtualenv, outside the source tree and without
#     WFENGINE_LIBRARY: the bundled library loads (wf_version) and runs a job;
#  4. `pip wheel ./bindings/python` (reusing the CMake build directory of step 2)
#     and a look inside the wheel: the package and wfengine/lib/libwfengine.so.
# Compiles through ccache when it is installed (CCACHE_DISABLE=1 for a cold build),
# ${JOBS:-2} compile jobs. PYTHON picks the interpreter (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/wfengine-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset WFENGINE_LIBRARY PYTHONPATH
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)

settings=(--config-settings="build-dir=$work/cmake")
if command -v ccache >/dev/null; then
  settings+=(--config-settings=cmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache
             --config-settings=cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "${settings[@]}" .
echo "pip install ./bindings/python: $(($(date +%s) - start)) s"
(cd "$work" && venv/bin/python "$OLDPWD/tests/package_smoke.py")

t=$(date +%s)
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "${settings[@]}" .
echo "pip wheel ./bindings/python: $(($(date +%s) - t)) s"
"$work/venv/bin/python" - "$work"/dist/wfengine-*.whl <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["wfengine/__init__.py", "wfengine/py.typed", "wfengine/lib/libwfengine.so"]
missing = [n for n in need if n not in names]
assert not missing, f"{sys.argv[1]} lacks {missing}: {names}"
extra = [n for n in names if "__pycache__" in n or n.endswith(".h")]
assert not extra, f"{sys.argv[1]} carries {extra}"
z = zipfile.ZipFile(sys.argv[1])
so = z.getinfo(need[-1]).file_size
print(f"wheel {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, {need[-1]} ({so / 1e6:.1f} MB)")
EOF
echo "python package check: $(($(date +%s) - start)) s"
