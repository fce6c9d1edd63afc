"""The per-dataset report: step times, rates, memory, references, validation,
and which readers decode each array (Markdown + PNG plots)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from chunkindex.codecs import REFS_ONLY_NOTE
from chunkindex.recipe import load_recipe
from chunkindex.tables import chunk_table_metadata, read_chunk_table, read_parquet


@dataclass(frozen=True)
class ReportInputs:
    recipe: str
    manifest: str
    index: str
    validation: str
    headers: list[str]
    benchmarks: dict[str, list[str]]
    write_summary: str


@dataclass(frozen=True)
class StepFigures:
    step: str
    jobs: int
    seconds: float
    max_rss_mb: float
    io_in_mb: float


def read_benchmark(paths: list[str]) -> StepFigures | None:
    """Sum of wall time, max of peak RSS over Snakemake benchmark files."""
    seconds, rss, io_in, jobs = 0.0, 0.0, 0.0, 0
    for path in paths:
        if not Path(path).exists():
            continue
        with open(path) as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                jobs += 1
                seconds += float(row.get("s") or 0)
                rss = max(rss, _number(row.get("max_rss")))
                io_in += _number(row.get("io_in"))
    return StepFigures("", jobs, seconds, rss, io_in) if jobs else None


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "-", "NA") else 0.0
    except ValueError:
        return 0.0


def write_report(inputs: ReportInputs, markdown_out: str, steps_png: str, refs_png: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipe = load_recipe(inputs.recipe)
    manifest = read_parquet(inputs.manifest)
    summary = json.loads(Path(inputs.write_summary).read_text())
    validation = json.loads(Path(inputs.validation).read_text())
    n_files = manifest.num_rows
    n_bytes = sum(manifest["size"].to_pylist())
    n_refs = summary["refs"]
    header_seconds, header_bytes = 0.0, 0
    for path in inputs.headers:
        meta = chunk_table_metadata(path)
        header_seconds += float(meta.get(b"chunkindex.seconds", b"0"))
        table = read_chunk_table(path)
        if "header_bytes" in table.column_names:
            table = table.select(["file_id", "header_bytes"])
            per_file = table.group_by("file_id").aggregate([("header_bytes", "max")])
            header_bytes += sum(per_file["header_bytes_max"].to_pylist())
    extraction = _extraction_line(inputs.headers, recipe.format)
    steps: dict[str, StepFigures] = {}
    for step, paths in inputs.benchmarks.items():
        figures = read_benchmark(paths)
        if figures is not None:
            steps[step] = figures

    lines = [f"# {recipe.title}", "", f"Recipe `{recipe.id}` ({recipe.format}), source `{recipe.source.url}`.", ""]
    lines += ["## Steps", "", "| step | jobs | time (s) | peak memory (MB) | rate |", "|---|---:|---:|---:|---|"]
    for step, fig in steps.items():
        rate = ""
        if step == "list":
            rate = f"{n_files / max(fig.seconds, 1e-9):,.0f} files/s"
        elif step == "headers":
            rate = (f"{n_files / max(fig.seconds, 1e-9):,.0f} files/s, {n_refs / max(fig.seconds, 1e-9):,.0f} refs/s "
                    f"(in-step: {n_files / max(header_seconds, 1e-9):,.0f} files/s)")
        elif step == "write":
            rate = f"{n_refs / max(fig.seconds, 1e-9):,.0f} refs/s"
        lines.append(f"| {step} | {fig.jobs} | {fig.seconds:.2f} | {fig.max_rss_mb:.0f} | {rate} |")
    lines += ["", f"Files: {n_files:,} ({n_bytes / 1e6:,.1f} MB). References: {n_refs:,}. "
              f"Header bytes fetched (first request per file, at least): {header_bytes / 1e6:,.2f} MB.", ""]
    lines += [extraction, ""]
    if summary.get("timings"):
        lines.append("Write step parts: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary["timings"].items())
                     + (f" ({n_refs / max(summary['timings'].get('kerchunk_parquet', 0), 1e-9):,.0f} refs/s Kerchunk Parquet)"
                        if "kerchunk_parquet" in summary["timings"] else ""))
        lines.append("")
    lines += ["## Arrays and readers", "", "| array | refs | chunks with no data | decodable by |", "|---|---:|---:|---|"]
    for name, refs in summary["refs_per_array"].items():
        readers = summary["readers"].get(name, [])
        decodable = ", ".join(readers) if readers else f"**none: {REFS_ONLY_NOTE}** (GDAL opens it for the references)"
        lines.append(f"| {name} | {refs:,} | {summary['missing_per_array'].get(name, 0):,} | {decodable} |")
    lines.append("")
    refs_only = [n for n in summary["refs_per_array"] if n.endswith("_refs_only")]
    if refs_only:
        lines += [f"> **WARNING** {', '.join(refs_only)}: {REFS_ONLY_NOTE.upper()}. GDAL opens these arrays and "
                  "reports exact chunk references, but their true codec chain (recorded in the `chunkindex` "
                  "attribute) includes a step GDAL cannot decode. Read pixels with zarr-python + imagecodecs "
                  "from the array without the suffix.", ""]
    for note in summary.get("notes", []):
        lines.append(f"- note: {note}")
    for skipped in summary.get("skipped_files", []):
        lines.append(f"- skipped: {skipped}")
    lines += ["", "## Validation", "",
              f"Result: **{'passed' if validation['ok'] else 'FAILED'}** "
              f"({len(validation['mismatches'])} mismatches).", "",
              "| array | chunks | refs checked | pixels via GDAL | via recorded chain | via zarr-python | no-data chunks |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for a in validation["arrays"]:
        lines.append(f"| {a['array']} | {a['chunks_checked']} | {a['refs_checked']} | {a['pixels_checked_gdal']} | "
                     f"{a['pixels_checked_python']} | {a['pixels_checked_zarr']} | {a['missing_chunks_checked']} |")
    for note in validation.get("notes", []):
        lines.append(f"\n- {note}")
    lines += ["", "![step times](steps.png)", "", "![references per array](refs.png)", ""]

    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(steps)
    ax.barh(names, [steps[n].seconds for n in names], color="#3a7ca5")
    ax.set_xlabel("seconds (sum over jobs)")
    ax.set_title(f"{recipe.id}: time per step")
    fig.tight_layout()
    fig.savefig(steps_png, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(summary["refs_per_array"]))))
    arrays = list(summary["refs_per_array"])
    ax.barh(arrays, [summary["refs_per_array"][a] for a in arrays], color="#81c3d7")
    ax.set_xlabel("chunk references")
    ax.set_title(f"{recipe.id}: references per array")
    fig.tight_layout()
    fig.savefig(refs_png, dpi=100)
    plt.close(fig)

    text = "\n".join(lines)
    Path(markdown_out).write_text(text)
    return text



def _extraction_line(header_paths: list[str], fmt: str) -> str:
    """Which extractor ran, and its chunk rate (NetCDF/HDF5) or file rate (TIFF)."""
    if fmt == "cog":
        readers = {chunk_table_metadata(p).get(b"chunkindex.tiff_reader", b"numpy").decode() for p in header_paths}
        names = {"numpy": "chunkindex's numpy TIFF tag reader", "async-tiff": "async-tiff"}
        return (f"Header extraction: {', '.join(names.get(r, r) for r in sorted(readers))} (every IFD of every "
                "file; each batch's first file re-read with the other reader as a cross-check).")
    extractors: set[str] = set()
    chunks, seconds = 0, 0.0
    for path in header_paths:
        table = read_chunk_table(path, columns=["extractor", "seconds", "chunk_number"])
        extractors.update(table["extractor"].to_pylist())
        seconds += sum(table["seconds"].to_pylist())
        chunks += sum(len(v) for v in table["chunk_number"].to_pylist())
    names = {"hdf5": "h5py chunk_iter", "gdal": "GDAL GetRawBlockInfo"}
    ran = ", ".join(names.get(e, e) for e in sorted(extractors))
    return (f"Chunk extraction: {ran} walked {chunks:,} chunks in {seconds:.3f} s "
            f"({chunks / max(seconds, 1e-9):,.0f} chunks/s); the other extractor cross-checks in validation.")
