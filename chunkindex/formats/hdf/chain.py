"""HDF5 filter pipelines to a Zarr v2 codec chain."""

from __future__ import annotations

from typing import Any

import numpy as np

from chunkindex.codecs import CodecChain, UnsupportedCodec

# HDF5 filter ids
H5Z_DEFLATE, H5Z_SHUFFLE, H5Z_FLETCHER32, H5Z_SZIP, H5Z_NBIT, H5Z_SCALEOFFSET = 1, 2, 3, 4, 5, 6
H5Z_BLOSC, H5Z_LZ4, H5Z_BITSHUFFLE, H5Z_ZSTD = 32001, 32004, 32008, 32015
FILTER_NAMES = {H5Z_DEFLATE: "deflate", H5Z_SHUFFLE: "shuffle", H5Z_FLETCHER32: "fletcher32", H5Z_SZIP: "szip",
                H5Z_NBIT: "nbit", H5Z_SCALEOFFSET: "scaleoffset", H5Z_BLOSC: "blosc", H5Z_LZ4: "lz4",
                H5Z_BITSHUFFLE: "bitshuffle", H5Z_ZSTD: "zstd", 307: "bzip2", 32013: "zfp", 32017: "sz"}

# hdf5-blosc's compressor codes (cd_values[6]).
BLOSC_CNAMES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


def blosc_compressor(values: list[int], where: str = "") -> dict[str, Any]:
    """The numcodecs Blosc config of an HDF5 blosc filter's client data.

    hdf5-blosc stores [filter version, blosc format, typesize, chunk bytes,
    clevel, shuffle, compressor]; a file written without the last three
    uses the filter's own defaults (5, byte shuffle, blosclz).

    Example:
        >>> blosc_compressor([2, 2, 4, 40000, 9, 2, 5])
        {'id': 'blosc', 'cname': 'zstd', 'clevel': 9, 'shuffle': 2, 'blocksize': 0}
    """
    clevel = values[4] if len(values) > 4 else 5
    shuffle = values[5] if len(values) > 5 else 1
    code = values[6] if len(values) > 6 else 0
    if code not in BLOSC_CNAMES:
        raise UnsupportedCodec(f"{where}: blosc compressor code {code} is not one numcodecs or GDAL knows")
    return {"id": "blosc", "cname": BLOSC_CNAMES[code], "clevel": int(clevel),
            "shuffle": int(shuffle), "blocksize": 0}


def hdf5_chain(filters: list[dict[str, Any]], dtype: np.dtype, where: str) -> CodecChain:
    """The Zarr v2 chain of an HDF5 filter pipeline (applied in order on write)."""
    zarr_filters: list[dict[str, Any]] = []
    compressor: dict[str, Any] | None = None
    notes = []
    for f in filters:
        code = f["code"]
        if compressor is not None:
            raise UnsupportedCodec(f"{where}: HDF5 filter {f['name']} after compressor {compressor['id']} "
                                   "cannot be expressed as a Zarr v2 chain")
        if code == H5Z_SHUFFLE:
            zarr_filters.append({"id": "shuffle", "elementsize": int(dtype.itemsize)})
        elif code == H5Z_DEFLATE:
            compressor = {"id": "zlib", "level": int(f["values"][0]) if f["values"] else 1}
        elif code == H5Z_ZSTD:
            compressor = {"id": "zstd", "level": int(f["values"][0]) if f["values"] else 1}
        elif code == H5Z_BLOSC:
            compressor = blosc_compressor(f["values"], where)
        elif code == H5Z_LZ4:
            compressor = {"id": "imagecodecs_lz4h5"}
            notes.append("HDF5 LZ4 filter framing: decodable by imagecodecs, not by GDAL")
        elif code == H5Z_FLETCHER32:
            zarr_filters.append({"id": "fletcher32"})
            notes.append("Fletcher32 checksums: checked and stripped by numcodecs, not by GDAL")
        else:
            raise UnsupportedCodec(f"{where}: the HDF5 {f['name']} filter (id {code}) cannot be decoded "
                                   "through references by GDAL or zarr-python")
    # Fletcher32 is the last filter on write, so it is undone first: it acts on
    # the compressed bytes, which Zarr v2 cannot express after a compressor.
    if any(z["id"] == "fletcher32" for z in zarr_filters) and compressor is not None:
        raise UnsupportedCodec(f"{where}: Fletcher32 after compression cannot be expressed as a Zarr v2 chain")
    description = "HDF5 " + (" + ".join(f["name"] for f in filters) or "uncompressed")
    return CodecChain(compressor, tuple(zarr_filters), description, True, tuple(notes))
