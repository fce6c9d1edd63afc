"""`chunkindex.flat`: the CRI flat index reader and writers (see
chunkindex.indexes.flat and docs/spec/cri-parquet.md)."""

from chunkindex.indexes.flat import (
    CriArray,
    CriError,
    CriIndex,
    codec_steps,
    decode_chunk,
    open_index,
    write_cri_duckdb,
    write_cri_gpkg,
    write_cri_parquet,
)

__all__ = ["CriArray", "CriError", "CriIndex", "codec_steps", "decode_chunk", "open_index",
           "write_cri_duckdb", "write_cri_gpkg", "write_cri_parquet"]
