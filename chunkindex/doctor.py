"""Environment check: is everything chunkindex needs importable and complete?

`chunkindex doctor` prints the versions and drivers and exits non-zero, with a
one-line fix, when anything is missing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field

MIN_GDAL = (3, 12)
REQUIRED_DRIVERS = (
    "Zarr", "Parquet", "netCDF", "HDF5", "GTiff", "COG", "VRT", "GTI",
    "GPKG", "FlatGeobuf", "GeoJSON", "MEM",
    # Decoders of JPEG/PNG/WebP tile bytes outside a TIFF (the CRI driver reads them on an in-memory file).
    "JPEG", "PNG", "WEBP",
)
PYTHON_PACKAGES = ("async-tiff", "obstore", "pyarrow", "snakemake", "numpy", "h5py", "jsonschema")
FIX = "run `make setup` (or, with conda, `conda env create -f envs/chunkindex.yaml`)"


@dataclass
class DoctorReport:
    """What the environment has, and what it lacks."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_gdal(report: DoctorReport) -> None:
    """Append GDAL's version and driver availability to `report`."""
    try:
        from osgeo import gdal
    except ImportError as exc:
        report.lines.append(f"GDAL: not importable ({exc})")
        report.problems.append("GDAL Python bindings (osgeo) are not importable")
        return
    version = gdal.__version__
    report.lines.append(f"GDAL: {version} ({gdal.__file__})")
    if _version_tuple(version) < MIN_GDAL:
        report.problems.append(f"GDAL {version} is older than {'.'.join(map(str, MIN_GDAL))}")
    missing = []
    for name in REQUIRED_DRIVERS:
        present = gdal.GetDriverByName(name) is not None
        report.lines.append(f"  driver {name:<11} {'present' if present else 'MISSING'}")
        if not present:
            missing.append(name)
    if missing:
        report.problems.append("GDAL lacks drivers: " + ", ".join(missing))


def check_cri_driver(report: DoctorReport) -> None:
    """Append the CRI driver plugin's presence and version to `report`.

    The plugin is built by `tools/build_driver.sh` after GDAL, so its absence
    is a problem only for the full check (setup's GDAL check must not rebuild
    GDAL for it).
    """
    try:
        from osgeo import gdal
    except ImportError:
        return
    driver = gdal.GetDriverByName("CRI")
    if driver is None:
        report.lines.append("  driver CRI         MISSING (tools/build_driver.sh builds it)")
        report.problems.append("the CRI driver plugin (gdal_CRI.so) is not installed")
        return
    version = driver.GetMetadataItem("CRI_DRIVER_VERSION") or "?"
    report.lines.append(f"  driver CRI         present (plugin {version}, reads CRI spec "
                        f"{driver.GetMetadataItem('CRI_SPEC_VERSIONS') or '?'}, Parquet rows read "
                        f"{'directly by row group' if driver.GetMetadataItem('CRI_PARQUET_READER') == 'DIRECT' else 'through OGR'})")


def check_packages(report: DoctorReport) -> None:
    """Append the versions of the Python packages the workflow imports."""
    for name in PYTHON_PACKAGES:
        try:
            importlib.import_module(name.replace("-", "_"))
            version = importlib.metadata.version(name)
        except (ImportError, importlib.metadata.PackageNotFoundError):
            report.lines.append(f"{name}: MISSING")
            report.problems.append(f"Python package {name} is not installed")
            continue
        report.lines.append(f"{name}: {version}")


def run_doctor(gdal_only: bool = False) -> DoctorReport:
    """Check the environment; `gdal_only` skips the Python package checks."""
    report = DoctorReport()
    report.lines.append(f"Python: {platform.python_version()} ({sys.executable})")
    check_gdal(report)
    if not gdal_only:
        check_cri_driver(report)
        check_packages(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chunkindex doctor", description=__doc__)
    parser.add_argument("--gdal-only", action="store_true", help="check GDAL only")
    parser.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    args = parser.parse_args(argv)
    report = run_doctor(gdal_only=args.gdal_only)
    if not args.quiet:
        print("\n".join(report.lines))
        if report.ok:
            print("OK: everything chunkindex needs is here")
        else:
            for problem in report.problems:
                print(f"PROBLEM: {problem}")
            print(f"FIX: {FIX}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
