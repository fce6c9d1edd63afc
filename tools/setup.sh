#!/usr/bin/env bash
# One-command environment: .venv with the pinned packages, and GDAL >= 3.12
# with the drivers chunkindex needs importable from it as `osgeo`.
# Idempotent; a second run on the same machine takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
log() { printf '[setup] %s\n' "$*" >&2; }

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || { log "error: Python 3.11 is required (PYTHON=$PYTHON is $("$PYTHON" --version 2>&1))"; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall the pins only when pyproject.toml or the lock changed.
DEPS_KEY=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
STAMP="$VENV/.chunkindex-deps-$DEPS_KEY"
if [[ ! -f "$STAMP" ]]; then
  log "installing pinned packages (requirements.lock)"
  "$PY" -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
  "$PY" -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[test]"
  rm -f "$VENV"/.chunkindex-deps-*
  touch "$STAMP"
fi

if "$PY" -m chunkindex.doctor --gdal-only --quiet; then
  log "GDAL is ready: $("$PY" -c 'from osgeo import gdal; print(gdal.__version__)')"
  tools/build_driver.sh "$PY" >/dev/null  # the CRI driver plugin (cached)
  exit 0
fi

log "no suitable GDAL importable from $VENV: building (or reusing) one from Debian's source package"
PREFIX=$(tools/build_gdal.sh "$(cd "$(dirname "$PY")" && pwd)/python")
SITE_PACKAGES=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
cat "$PREFIX/site-packages.path" > "$SITE_PACKAGES/chunkindex-gdal.pth"
# GDAL's command-line tools (gdalmdiminfo, gdalinfo, ...) on the venv's PATH.
for tool in "$PREFIX"/bin/*; do
  ln -sf "$tool" "$VENV/bin/$(basename "$tool")"
done
tools/build_driver.sh "$PY" >/dev/null  # the CRI driver plugin (cached)
"$PY" -m chunkindex.doctor --gdal-only
