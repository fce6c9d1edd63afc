"""`chunkindex` command line: doctor, info, refs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    if "path" in ref:
        print(f"{ref['path']}\t{ref['offset']}\t{ref['size']}")
    elif "raw_bytes" in ref:
        print(f"(inline: {ref['raw_bytes']} bytes)")
    else:
        print("(no data: reads as the fill value)")
    return 0


def _query(args: argparse.Namespace) -> int:
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from chunkindex.geo.query import Query, parse_time_range, query_index

    try:
        bbox = tuple(float(v) for v in args.bbox.split(","))
    except ValueError:
        bbox = ()
    if len(bbox) != 4:
        raise ValueError(f"--bbox {args.bbox!r}: expected MINX,MINY,MAXX,MAXY")
    start, end = parse_time_range(args.time) if args.time else (None, None)
    query = Query(bbox, args.crs, start, end, args.variable, args.level)  # type: ignore[arg-type]
    table = query_index(args.index, query, with_geometry=args.format == "parquet")
    if args.format == "parquet":
        if not args.output:
            raise ValueError("--format parquet needs --output FILE")
        pq.write_table(table, args.output)
        print(f"{table.num_rows} chunks -> {args.output}", file=sys.stderr)
    elif args.format == "csv":
        pacsv.write_csv(table, args.output or sys.stdout.buffer)
    elif args.format == "json":
        rows = table.to_pylist()
        text = json.dumps(rows, default=str, indent=None)
        if args.output:
            Path(args.output).write_text(text + "\n")
        else:
            sys.stdout.write(text + "\n")
    else:
        print(table.to_pandas().to_string(max_rows=args.max_rows) if table.num_rows else "(no chunks)")
        print(f"{table.num_rows} chunks", file=sys.stderr)
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
    p_query = sub.add_parser("query", help="the chunks whose footprint intersects a box (from a footprint index)")
    p_query.add_argument("index", help="a footprint GeoParquet (<id>.footprints.parquet)")
    p_query.add_argument("--bbox", required=True, help="MINX,MINY,MAXX,MAXY (lon/lat: MINX > MAXX crosses 180)")
    p_query.add_argument("--crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326 lon/lat)")
    p_query.add_argument("--time", help="START/END, ISO 8601 (either side may be empty)")
    p_query.add_argument("--variable")
    p_query.add_argument("--level", type=int)
    p_query.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p_query.add_argument("--output", help="file to write (required for parquet)")
    p_query.add_argument("--max-rows", type=int, default=20, help="rows shown by --format table")
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            return doctor.main(["--gdal-only"] if args.gdal_only else [])
        if args.command == "info":
            return _info(args.index)
        if args.command == "query":
            return _query(args)
        return _refs(args.index, args.array, args.chunk)
    except (ValueError, KeyError, IndexError, FileNotFoundError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
