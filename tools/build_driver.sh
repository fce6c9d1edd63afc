#!/usr/bin/env bash
# Build the CRI GDAL driver plugin (gdal-driver/) against the project's GDAL and
# install it into that GDAL's plugin folder, so Python, gdalinfo,
# gdal_translate and gdalmdiminfo load it with no setting.
#
# Usage: tools/build_driver.sh [--asan] [--dest DIR] [PYTHON]
#   PYTHON  interpreter whose `osgeo` is the GDAL to build against
#           (default .venv/bin/python); GDAL_PREFIX overrides the prefix.
#   --asan  build with AddressSanitizer into the cache instead of installing;
#           prints the folder holding that gdal_CRI.so (for GDAL_DRIVER_PATH).
#   --dest DIR  (or CRI_PLUGIN_DEST=DIR) install into DIR instead of GDAL's
#           plugin folder, which every process on the machine shares: DIR
#           gets gdal_CRI.so plus links to GDAL's other plugins (Parquet,
#           Arrow) and drivers.ini, so `GDAL_DRIVER_PATH=DIR` loads this copy
#           and still every other plugin. For trying a change privately.
#
# Cached by a hash of gdal-driver/ and the GDAL prefix: a second run with
# nothing changed takes well under a second. The plugin path is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."

ASAN=0
DEST=${CRI_PLUGIN_DEST:-}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --asan) ASAN=1; shift ;;
    --dest) DEST=${2:?--dest needs a folder}; shift 2 ;;
    *) break ;;
  esac
done
PY=${1:-.venv/bin/python}
CACHE=${CHUNKINDEX_CACHE:-$HOME/.cache/chunkindex}
log() { printf '[build_driver] %s\n' "$*" >&2; }
die() { printf '[build_driver] error: %s\n' "$*" >&2; exit 1; }

# The GDAL prefix: walk up from osgeo's folder to the one holding
# lib/cmake/gdal (the CMake config package find_package(GDAL CONFIG) reads).
if [[ -z "${GDAL_PREFIX:-}" ]]; then
  GDAL_PREFIX=$("$PY" - <<'EOF' 2>/dev/null || true
import os
from osgeo import gdal
d = os.path.dirname(os.path.abspath(gdal.__file__))
while d != "/":
    if os.path.isdir(os.path.join(d, "lib", "cmake", "gdal")):
        print(d)
        break
    d = os.path.dirname(d)
EOF
)
fi
if [[ -z "$GDAL_PREFIX" ]]; then
  GDAL_PREFIX=$(ls -d "$CACHE"/gdal-*/ 2>/dev/null | while read -r d; do
    [[ -f "$d/BUILD_OK" ]] && echo "${d%/}"; done | tail -1)
fi
[[ -n "$GDAL_PREFIX" && -d "$GDAL_PREFIX/lib/cmake/gdal" ]] \
  || die "no GDAL with a CMake config package found (run 'make setup' first, or set GDAL_PREFIX)"

KEY=$( { find gdal-driver -type f \( -name '*.cpp' -o -name '*.h' -o -name 'CMakeLists.txt' \) \
           -print0 | sort -z | xargs -0 sha256sum; echo "$GDAL_PREFIX asan=$ASAN"; } \
       | sha256sum | cut -c1-12)
BUILD="$CACHE/build-cri-$KEY"
PLUGINS="$GDAL_PREFIX/lib/gdalplugins"
if ((ASAN)); then
  OUT="$BUILD/plugin"
elif [[ -n "$DEST" ]]; then
  mkdir -p "$DEST"
  OUT=$(cd "$DEST" && pwd)
  if [[ "$OUT" == "$(cd "$PLUGINS" && pwd)" ]]; then
    DEST=""
  else
    # Its own build folder: the shared one may be configured from another checkout.
    BUILD="$OUT/.build-$KEY"
  fi
else
  OUT="$PLUGINS"
fi
# A private folder: GDAL_DRIVER_PATH replaces GDAL's own plugin folder, so
# link GDAL's other plugins (and the drivers.ini that orders them) next to ours.
link_other_plugins() {
  [[ -n "$DEST" && "$OUT" != "$PLUGINS" ]] || return 0
  local f
  for f in "$PLUGINS"/*.so "$PLUGINS"/drivers.ini; do
    [[ -e "$f" && "$(basename "$f")" != gdal_CRI.so ]] && ln -sfn "$f" "$OUT/$(basename "$f")"
  done
  return 0
}
STAMP="$OUT/.gdal_CRI-$KEY"
if [[ -f "$STAMP" && -f "$OUT/gdal_CRI.so" ]]; then
  link_other_plugins
  echo "$OUT/gdal_CRI.so"
  exit 0
fi

command -v cmake >/dev/null || die "cmake is not installed"
# LERC chunks decode through liblerc (the project's GDAL has no MRF driver);
# without it the driver still builds and refuses LERC naming the codec.
if ! dpkg-query -W -f='${Status}' liblerc-dev 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  log "installing Debian's liblerc-dev (LERC decoding)"
  { $SUDO apt-get install -y -qq liblerc-dev >&2 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq liblerc-dev >&2; }; } \
    || log "liblerc-dev could not be installed: LERC chunks will be refused"
fi
log "building gdal_CRI.so against $GDAL_PREFIX$( ((ASAN)) && echo ' (AddressSanitizer)')"
mkdir -p "$BUILD"
OPTS=(-DCMAKE_BUILD_TYPE=Release -DGDAL_DIR="$GDAL_PREFIX/lib/cmake/gdal" -DCRI_PLUGIN_DIR="$OUT")
((ASAN)) && OPTS+=(-DCRI_ASAN=ON -DCMAKE_BUILD_TYPE=Debug)
# The direct Parquet row-group reader links the Arrow/Parquet libraries the
# GDAL build copied from the pyarrow wheel (the Parquet plugin uses the same).
PYARROW_INCLUDE=$("$PY" -c 'import os, pyarrow; print(os.path.join(os.path.dirname(pyarrow.__file__), "include"))' \
  2>/dev/null || true)
if [[ -d "$GDAL_PREFIX/lib/pyarrow-libs" && -d "$PYARROW_INCLUDE/parquet" ]]; then
  OPTS+=(-DCRI_ARROW_INCLUDE_DIR="$PYARROW_INCLUDE" -DCRI_ARROW_LIB_DIR="$GDAL_PREFIX/lib/pyarrow-libs")
fi
command -v ccache >/dev/null && OPTS+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S gdal-driver -B "$BUILD" "${OPTS[@]}" > "$BUILD/configure.log" 2>&1 \
  || { tail -30 "$BUILD/configure.log" >&2; die "cmake configure failed (log: $BUILD/configure.log)"; }
cmake --build "$BUILD" -j "${GDAL_BUILD_JOBS:-$(nproc)}" > "$BUILD/build.log" 2>&1 \
  || { tail -40 "$BUILD/build.log" >&2; die "build failed (log: $BUILD/build.log)"; }
mkdir -p "$OUT"
# Replace the plugin atomically (a new inode): every running GDAL process has
# the old one mapped, and overwriting it in place would crash them.
cp "$BUILD/gdal_CRI.so" "$OUT/.gdal_CRI.so.$$"
mv -f "$OUT/.gdal_CRI.so.$$" "$OUT/gdal_CRI.so"
rm -f "$OUT"/.gdal_CRI-*
touch "$STAMP"
link_other_plugins
# A private folder keeps only the current build.
[[ -z "$DEST" ]] || find "$OUT" -maxdepth 1 -name '.build-*' ! -name ".build-$KEY" -exec rm -rf {} +
log "installed $OUT/gdal_CRI.so"
echo "$OUT/gdal_CRI.so"
