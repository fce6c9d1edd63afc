"""`chunkindex` command line: doctor, info, refs."""

from __future__ import annotations

import argparse
import sys

from chunkindex import doctor


def _info(index: str) -> int:
    from chunkindex.indexes.kerchunk import KerchunkIndex

    opened = KerchunkIndex.open(index)
    meta = opened.metadata
    record_size = opened.record_size
    kind = "Kerchunk Parquet" if record_size is not None else "Kerchunk JSON"
    print(f"{index}: {kind}" + (f", record_size {record_size}" if record_size else ""))
    root = meta.get(".zattrs", {})
    if root.get("title"):
        print(f"title: {root['title']}")
    files: set[str] = set()
    for name in sorted(opened.array_names, key=lambda n: n + "/.zarray"):  # as the keys sort
        zarray, attrs = opened.zarray(name), opened.zattrs(name)
        n_chunks = opened.grid(name).n_chunks
        dims = attrs.get("_ARRAY_DIMENSIONS", [])
        info = attrs.get("chunkindex", {})
        codec = info.get("codec", {})
        readers = codec.get("readers")
        decodable = ("GDAL: yes" if info.get("gdal_decodable") else "GDAL: NO") if info else "inline"
        if info.get("warning"):
            decodable += f" ({info['warning']})"
        references = opened.references(name)
        refs = int((references.codes >= 0).sum())
        files |= references.referenced_files
        print(f"  {name}{tuple(dims)} shape {tuple(zarray['shape'])} chunks {tuple(zarray['chunks'])} "
              f"{zarray['dtype']} fill {zarray['fill_value']}")
        print(f"      codec: {codec.get('description') or zarray['compressor']}; {decodable}"
              + (f"; readers: {', '.join(readers) or 'none'}" if readers is not None else ""))
        print(f"      chunks {n_chunks:,}, references {refs:,}")
    print(f"files referenced: {len(files):,}")
    return 0


def _refs(index: str, array: str, key: str) -> int:
    from chunkindex.indexes.kerchunk import lookup_reference

    try:
        parts = tuple(int(p) for p in key.replace(".", ",").split(","))
    except ValueError:
        print(f"error: chunk key {key!r} must be integers separated by commas, e.g. 0,3,5", file=sys.stderr)
        return 2
    ref = lookup_reference(index, array, parts)
    if ref.path is not None:
        print(f"{ref.path}\t{ref.offset}\t{ref.size}")
    elif ref.raw_bytes is not None:
        print(f"(inline: {ref.raw_bytes} bytes)")
    else:
        print("(no data: reads as the fill value)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chunkindex", description="Chunk-reference indexes GDAL reads natively.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_doctor = sub.add_parser("doctor", help="check Python, GDAL and its drivers, and the packages")
    p_doctor.add_argument("--gdal-only", action="store_true")
    p_info = sub.add_parser("info", help="arrays, shapes, chunks, codecs, readers, references, files of an index")
    p_info.add_argument("index", help="a Kerchunk Parquet folder or Kerchunk JSON file")
    p_refs = sub.add_parser("refs", help="the file, offset and size of one chunk")
    p_refs.add_argument("index")
    p_refs.add_argument("array")
    p_refs.add_argument("chunk", help="chunk indices, e.g. 0,3,5")
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            return doctor.main(["--gdal-only"] if args.gdal_only else [])
        if args.command == "info":
            return _info(args.index)
        return _refs(args.index, args.array, args.chunk)
    except (ValueError, KeyError, IndexError, FileNotFoundError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
