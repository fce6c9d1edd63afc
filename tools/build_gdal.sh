#!/usr/bin/env bash
# Build GDAL (>= 3.12) with exactly the drivers chunkindex needs, from Debian's
# source package, with Arrow/Parquet taken from the pinned pyarrow wheel.
#
# Usage: tools/build_gdal.sh PYTHON
#   PYTHON  the interpreter of the project's virtual environment (pyarrow and
#           numpy installed); the Python bindings are built for it.
#
# The result lives in a cache outside the repository,
#   ${CHUNKINDEX_CACHE:-~/.cache/chunkindex}/gdal-<version>-<key>
# where <key> hashes everything that changes the binaries (GDAL version, CMake
# options, pyarrow version, Python version). A complete install is marked by a
# file named BUILD_OK, so an interrupted build is redone, and a finished one is
# reused in well under a second. The path of the install is printed last.
set -euo pipefail

PYTHON=${1:?usage: build_gdal.sh PYTHON}
GDAL_WANTED=${GDAL_VERSION:-3.13.3}
GDAL_MIN=3.12
CACHE=${CHUNKINDEX_CACHE:-$HOME/.cache/chunkindex}
JOBS=${GDAL_BUILD_JOBS:-$(nproc)}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '[build_gdal] %s\n' "$*" >&2; }
die() { printf '[build_gdal] error: %s\n' "$*" >&2; exit 1; }

PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYARROW_VERSION=$("$PYTHON" -c 'import pyarrow; print(pyarrow.__version__)') \
  || die "pyarrow is not installed in $PYTHON's environment; run 'make setup'"
PYARROW_DIR=$("$PYTHON" -c 'import os, pyarrow; print(os.path.dirname(pyarrow.__file__))')
"$PYTHON" -c 'import numpy' || die "numpy is not installed in $PYTHON's environment"

# Drivers: everything optional off, then exactly these on. GTiff/COG, MEM and
# the core virtual file systems (/vsicurl/, /vsis3/) are always built.
CMAKE_OPTIONS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_TESTING=OFF
  -DBUILD_APPS=ON
  -DBUILD_PYTHON_BINDINGS=ON
  -DBUILD_JAVA_BINDINGS=OFF
  -DBUILD_CSHARP_BINDINGS=OFF
  -DGDAL_BUILD_OPTIONAL_DRIVERS=OFF
  -DOGR_BUILD_OPTIONAL_DRIVERS=OFF
  -DGDAL_USE_EXTERNAL_LIBS=OFF
  -DGDAL_USE_INTERNAL_LIBS=WHEN_NO_EXTERNAL
  -DGDAL_ENABLE_DRIVER_VRT=ON
  -DGDAL_ENABLE_DRIVER_GTI=ON
  -DGDAL_ENABLE_DRIVER_ZARR=ON
  -DGDAL_ENABLE_DRIVER_NETCDF=ON
  -DGDAL_ENABLE_DRIVER_HDF5=ON
  -DGDAL_ENABLE_DRIVER_DERIVED=ON
  # Raster drivers for JPEG/PNG/WebP bytes (tiles decoded on an in-memory file).
  -DGDAL_ENABLE_DRIVER_JPEG=ON
  -DGDAL_ENABLE_DRIVER_PNG=ON
  -DGDAL_ENABLE_DRIVER_WEBP=ON
  -DOGR_ENABLE_DRIVER_GEOJSON=ON
  -DOGR_ENABLE_DRIVER_SQLITE=ON
  -DOGR_ENABLE_DRIVER_GPKG=ON
  -DOGR_ENABLE_DRIVER_FLATGEOBUF=ON
  -DOGR_ENABLE_DRIVER_VRT=ON
  -DOGR_ENABLE_DRIVER_ARROW=ON
  -DOGR_ENABLE_DRIVER_PARQUET=ON
  # Arrow and Parquet as plugins: libgdal itself never links pyarrow's libraries.
  -DOGR_ENABLE_DRIVER_ARROW_PLUGIN=ON
  -DOGR_ENABLE_DRIVER_PARQUET_PLUGIN=ON
  -DGDAL_USE_ARROW=ON
  -DGDAL_USE_PARQUET=ON
  -DGDAL_USE_ARROWDATASET=ON
  -DGDAL_USE_ARROWCOMPUTE=ON
  -DGDAL_USE_CURL=ON
  -DGDAL_USE_SQLITE3=ON
  -DGDAL_USE_HDF5=ON
  -DGDAL_USE_NETCDF=ON
  -DGDAL_USE_ZSTD=ON
  -DGDAL_USE_BLOSC=ON
  -DGDAL_USE_LZ4=ON
  -DGDAL_USE_DEFLATE=ON
  -DGDAL_USE_ZLIB=ON
  -DGDAL_USE_LIBLZMA=ON
  -DGDAL_USE_EXPAT=ON
  -DGDAL_USE_GEOS=ON
  -DGDAL_USE_PNG=ON
  -DGDAL_USE_JPEG=ON
  -DGDAL_USE_WEBP=ON
  -DGDAL_USE_TIFF_INTERNAL=ON
  -DGDAL_USE_GEOTIFF_INTERNAL=ON
  -DGDAL_USE_LERC_INTERNAL=ON
  -DGDAL_USE_JSONC_INTERNAL=ON
  -DGDAL_USE_QHULL_INTERNAL=ON
  -DGDAL_USE_OPENCAD_INTERNAL=OFF
)

KEY=$(printf '%s\n' "script-v1" "$GDAL_WANTED" "$PY_VERSION" "$PYARROW_VERSION" "${CMAKE_OPTIONS[@]}" \
      | sha256sum | cut -c1-12)
PREFIX="$CACHE/gdal-$GDAL_WANTED-py$PY_VERSION-pyarrow$PYARROW_VERSION-$KEY"

if [[ -f "$PREFIX/BUILD_OK" ]]; then
  log "reusing $PREFIX"
  echo "$PREFIX"
  exit 0
fi

# --- Build dependencies (Debian packages) -----------------------------------
DEB_PACKAGES=(cmake ninja-build swig ccache patchelf xz-utils dpkg-dev curl
  libproj-dev libnetcdf-dev libhdf5-dev libcurl4-openssl-dev libsqlite3-dev
  libzstd-dev libblosc-dev liblz4-dev libdeflate-dev libexpat1-dev libgeos-dev
  libpng-dev libjpeg-dev liblzma-dev zlib1g-dev libwebp-dev proj-data)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# --- Source: Debian's orig tarball from forky/sid ---------------------------
SRC_CACHE="$CACHE/src"
mkdir -p "$SRC_CACHE"
tarball_for() { ls "$SRC_CACHE"/gdal_"$1"+dfsg.orig.tar.xz 2>/dev/null | head -1; }
TARBALL=$(tarball_for "$GDAL_WANTED" || true)
if [[ -z "$TARBALL" ]]; then
  SOURCES_FILE=/etc/apt/sources.list.d/chunkindex-deb-src.sources
  if ! apt-cache showsrc gdal 2>/dev/null | grep -q '^Version: 3\.1[2-9]'; then
    log "adding a deb-src entry for Debian forky and sid"
    $SUDO tee "$SOURCES_FILE" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: forky sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    $SUDO apt-get update -qq
  fi
  # Prefer the pinned version; otherwise the newest >= 3.12 the index offers
  # (an archive drops old versions).
  versions=$(apt-cache showsrc gdal | sed -n 's/^Version: //p' | sort -Vr | uniq)
  chosen=""
  for v in $versions; do
    upstream=${v%%+*}; upstream=${upstream#*:}
    if [[ "$upstream" == "$GDAL_WANTED" ]]; then chosen=$v; break; fi
  done
  if [[ -z "$chosen" ]]; then
    for v in $versions; do
      upstream=${v%%+*}; upstream=${upstream#*:}
      if [[ "$(printf '%s\n' "$GDAL_MIN" "$upstream" | sort -V | head -1)" == "$GDAL_MIN" ]]; then
        chosen=$v; break
      fi
    done
  fi
  [[ -n "$chosen" ]] || die "Debian's source index offers no GDAL >= $GDAL_MIN (found: $versions)"
  upstream=${chosen%%+*}; upstream=${upstream#*:}
  if [[ "$upstream" != "$GDAL_WANTED" ]]; then
    log "GDAL $GDAL_WANTED is no longer offered; building $upstream instead"
    GDAL_WANTED=$upstream
    exec env GDAL_VERSION="$upstream" "$0" "$@"
  fi
  log "downloading gdal $chosen source (orig tarball)"
  # Only the orig tarball is needed; the .dsc and debian/ parts may be missing
  # from a mirror without harm, so the URIs are fetched one by one.
  ( cd "$SRC_CACHE"
    apt-get source --print-uris "gdal=$chosen" 2>/dev/null \
      | sed -n "s/^'\([^']*orig\.tar\.[a-z]*\)' \([^ ]*\) .*/\1 \2/p" \
      | while read -r uri name; do
          curl -fsSL --retry 3 -o "$name.part" "$uri" && mv "$name.part" "$name"
        done )
  TARBALL=$(tarball_for "$GDAL_WANTED" || true)
  [[ -n "$TARBALL" ]] || die "could not download gdal_${GDAL_WANTED}+dfsg.orig.tar.xz"
fi

WORK="$CACHE/build-gdal-$GDAL_WANTED-$KEY"
rm -rf "$WORK"
mkdir -p "$WORK"
log "extracting $TARBALL"
tar -C "$WORK" -xf "$TARBALL"
SRC=$(find "$WORK" -maxdepth 1 -type d -name 'gdal-*' | head -1)
[[ -n "$SRC" ]] || die "unexpected tarball layout in $TARBALL"
# The dfsg tarball strips these data files, but ogr/CMakeLists.txt installs them.
for f in ogr/data/cubewerx_extra.wkt ogr/data/ecw_cs.wkt; do
  [[ -f "$SRC/$f" ]] || : > "$SRC/$f"
done

# --- Arrow/Parquet from the pyarrow wheel -----------------------------------
# A private copy of the libraries keeps the plugins working whichever virtual
# environment (and checkout) later loads them; same SONAME, same bytes.
ARROW_LIB="$PREFIX/lib/pyarrow-libs"
mkdir -p "$ARROW_LIB"
cp -a "$PYARROW_DIR"/libarrow*.so.* "$PYARROW_DIR"/libparquet.so.* "$ARROW_LIB"/
SHIM="$WORK/arrow-cmake"
mkdir -p "$SHIM"
lib_of() { ls "$ARROW_LIB"/"$1".so.* | head -1; }
write_shim() {  # package, namespace::target, library, dependencies
  local pkg=$1 target=$2 lib=$3 deps=$4
  cat > "$SHIM/${pkg}Config.cmake" <<EOF
# Written by chunkindex tools/build_gdal.sh: pyarrow wheels ship no CMake files.
set(${pkg}_VERSION "$PYARROW_VERSION")
set(${pkg}_FOUND TRUE)
if(NOT TARGET $target)
  add_library($target SHARED IMPORTED)
  set_target_properties($target PROPERTIES
    IMPORTED_LOCATION "$(lib_of "$lib")"
    INTERFACE_INCLUDE_DIRECTORIES "$PYARROW_DIR/include"
    INTERFACE_COMPILE_FEATURES cxx_std_20
    INTERFACE_LINK_LIBRARIES "$deps")
endif()
EOF
  printf 'set(PACKAGE_VERSION "%s")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n' \
    "$PYARROW_VERSION" > "$SHIM/${pkg}ConfigVersion.cmake"
}
write_shim Arrow Arrow::arrow_shared libarrow ""
write_shim ArrowCompute ArrowCompute::arrow_compute_shared libarrow_compute "Arrow::arrow_shared"
write_shim Parquet Parquet::parquet_shared libparquet "Arrow::arrow_shared"
write_shim ArrowDataset ArrowDataset::arrow_dataset_shared libarrow_dataset \
  "Arrow::arrow_shared;Parquet::parquet_shared;ArrowCompute::arrow_compute_shared;$(lib_of libarrow_acero)"

# --- Configure, build, install ----------------------------------------------
log "configuring GDAL $GDAL_WANTED into $PREFIX"
cmake -S "$SRC" -B "$WORK/build" -G Ninja \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_INSTALL_RPATH="$PREFIX/lib" \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DPython_EXECUTABLE="$PYTHON" -DPython_FIND_VIRTUALENV=ONLY \
  -DGDAL_PYTHON_INSTALL_PREFIX="$PREFIX" \
  -DArrow_DIR="$SHIM" -DParquet_DIR="$SHIM" -DArrowDataset_DIR="$SHIM" -DArrowCompute_DIR="$SHIM" \
  "${CMAKE_OPTIONS[@]}" > "$WORK/configure.log" 2>&1 \
  || { tail -40 "$WORK/configure.log" >&2; die "cmake configure failed (log: $WORK/configure.log)"; }

log "building with $JOBS jobs (tens of minutes on 2 cores; ccache makes a rebuild quick)"
# Paths relative to the build folder, so ccache hits from any cache location.
export CCACHE_BASEDIR="$WORK" CCACHE_NOHASHDIR=true
start=$SECONDS
cmake --build "$WORK/build" -j "$JOBS" > "$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log" >&2; die "build failed (log: $WORK/build.log)"; }
log "built in $((SECONDS - start)) s"
cmake --install "$WORK/build" > "$WORK/install.log" 2>&1 \
  || { tail -40 "$WORK/install.log" >&2; die "install failed (log: $WORK/install.log)"; }

# The plugins find pyarrow's libraries next to them, never via LD_LIBRARY_PATH.
for plugin in "$PREFIX"/lib/gdalplugins/*.so; do
  patchelf --set-rpath "$ARROW_LIB:$PREFIX/lib" "$plugin"
done

SITE=$(find "$PREFIX/lib" -maxdepth 3 -type d -name site-packages | head -1)
[[ -n "$SITE" && -d "$SITE/osgeo" ]] || die "Python bindings were not installed under $PREFIX"
# setup.py's extension modules keep only Python's own RUNPATH: add libgdal's.
for module in "$SITE"/osgeo/_*.so; do
  old=$(patchelf --print-rpath "$module")
  patchelf --set-rpath "$PREFIX/lib${old:+:$old}" "$module"
done
echo "$SITE" > "$PREFIX/site-packages.path"
rm -rf "$WORK"
touch "$PREFIX/BUILD_OK"
log "installed $PREFIX"
echo "$PREFIX"
