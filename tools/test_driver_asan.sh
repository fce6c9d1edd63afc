#!/usr/bin/env bash
# Build the CRI driver plugin with AddressSanitizer and run its tests against
# it (the driver's tests only). GDAL loads the ASan plugin first; the Parquet
# plugin still comes from GDAL's own plugin folder. With CRI_PLUGIN_DEST=DIR the
# release plugin goes to DIR (tools/build_driver.sh --dest), not the shared folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
PLUGIN=$(tools/build_driver.sh --asan "$PY")
INSTALLED=$(tools/build_driver.sh "$PY")
LIBASAN=$(${CXX:-c++} -print-file-name=libasan.so)
[[ -f "$LIBASAN" ]] || { echo "libasan.so not found (install the compiler's ASan runtime)" >&2; exit 1; }
export GDAL_DRIVER_PATH="$(dirname "$PLUGIN"):$(dirname "$INSTALLED")"
# libstdc++ preloaded too: ASan intercepts __cxa_throw only if it can find it
# at start-up, and Python's own binary does not link libstdc++.
LIBSTDCXX=$(${CXX:-c++} -print-file-name=libstdc++.so)
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
# Python itself leaks by design; report memory errors, not leaks.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1
export CRI_EXPECT_PLUGIN="$PLUGIN"
# GDAL's programs hang at exit on their error path under an ASan preload
# (libp11-kit): the tests run them in process instead.
export CRI_INPROCESS_TOOLS=1
exec "$PY" -m pytest tests/test_cri_driver.py tests/test_cri_spatial.py -q -p no:cacheprovider "${@:2}"
