"""A reader that opens and reads an index over and over, in its own process,
while the test rewrites or appends to it (tests/test_read_during_write.py).

    python reader_loop.py KIND INDEX STOP OUT

KIND is `zarr` (GDAL's ZARR driver on the Kerchunk Parquet folder, each
read in a new process), `zarr-long-lived` (the same, every read in this one
process), `gdal-cri` (GDAL's CRI driver) or `py-cri` (chunkindex's CRI
reader). Each read opens the index, reads the time coordinate and every
`analysed_sst` sample, closes it, and appends one JSON line to OUT: its
start and end (time.time()), the shape and a digest of what it read, or the
error. The loop stops once the file STOP exists.

A new process per ZARR read because GDAL (3.13) keeps the `.zmetadata` of a
Kerchunk Parquet folder it has opened for the life of the process (the
`/vsikerchunk_parquet_ref/` cache is not dropped when the dataset closes):
one process sees the index as it was at its first open.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VARIABLE = "analysed_sst"


def read_once(kind: str, index: str) -> tuple[np.ndarray, np.ndarray]:
    """(time values, every sample of VARIABLE) read through one reader."""
    if kind == "py-cri":
        from chunkindex.flat import open_index

        cri = open_index(index)
        return np.asarray(cri.dimensions["time"]["values"]), cri.read(VARIABLE)
    from osgeo import gdal

    gdal.UseExceptions()
    name = f'CRI:"{index}"' if kind == "gdal-cri" else f'ZARR:"{index}"'
    dataset = gdal.OpenEx(name, gdal.OF_MULTIDIM_RASTER)
    try:
        root = dataset.GetRootGroup()
        array = root.OpenMDArray(VARIABLE)
        times = array.GetDimensions()[0].GetIndexingVariable().ReadAsArray()
        return np.asarray(times), array.ReadAsArray()
    finally:
        del dataset  # closing it drops GDAL's cache of the index's metadata and record files


def digest(times: np.ndarray, values: np.ndarray) -> str:
    """What a read saw, as one string: equal reads give equal digests."""
    h = hashlib.sha256(repr((values.shape, str(values.dtype))).encode())
    h.update(repr(np.asarray(times).tolist()).encode())
    h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def outcome(kind: str, index: str) -> dict[str, object]:
    """One read: its shape and digest, or its error."""
    try:
        times, values = read_once(kind, index)
        return {"shape": list(values.shape), "digest": digest(times, values),
                "values": hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()}
    except Exception as exc:  # noqa: BLE001  every failure is a result the test reports
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(kind: str, index: str, stop: str, out: str) -> None:
    with open(out, "a") as log:
        while not Path(stop).exists():
            start = time.time()
            if kind == "zarr":
                done = subprocess.run([sys.executable, __file__, "once", kind, index], capture_output=True,
                                      text=True, check=False)
                record = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]}
            else:
                record = outcome(kind.removesuffix("-long-lived"), index)
            log.write(json.dumps({"start": start, "end": time.time(), **record}) + "\n")
            log.flush()


if __name__ == "__main__":
    if sys.argv[1] == "once":
        print(json.dumps(outcome(sys.argv[2], sys.argv[3])))
    else:
        main(*sys.argv[1:5])
