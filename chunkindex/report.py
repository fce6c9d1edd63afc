"""The per-dataset report: step times, rates, memory, references, validation,
and which readers decode each array (Markdown + PNG plots)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chunkindex.codecs import REFS_ONLY_NOTE
from chunkindex.model import REFS_ONLY_GROUP
from chunkindex.pipeline import WriteSummary
from chunkindex.recipe import load_recipe
from chunkindex.tables import chunk_table_metadata, read_chunk_table, read_parquet

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ReportInputs:
    recipe: str
    manifest: str
    validation: str
    headers: list[str]
    benchmarks: dict[str, list[str]]
    write_summary: str
    footprint_map: str | None = None  # the footprint map PNG (recipes with footprints)


@dataclass(frozen=True)
class StepFigures:
    step: str
    jobs: int
    seconds: float
    max_rss_mb: float
    io_in_mb: float


def shard_benchmarks(plan_path: str, benchmarks_dir: str) -> list[str]:
    """The benchmark files of the write plan's shard jobs (none for an append);
    those missing (shards written by an earlier run's jobs) are left out."""
    from chunkindex.indexes.sharded import WritePlan

    plan = WritePlan.read(plan_path)
    count = len(plan.shards) if plan.mode == "write" else 0
    paths = [Path(benchmarks_dir) / f"write_shard-{number:05d}.tsv" for number in range(count)]
    return [str(p) for p in paths if p.is_file()]


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
    """Write the Markdown report of one workflow run and its two plots.

    Args:
        inputs: the run's recipe, manifest, header batches, benchmarks, summary and validation.
        markdown_out: the report's path.
        steps_png: the time-per-step plot's path.
        refs_png: the references-per-array plot's path.

    Returns:
        The Markdown text written.

    Example:
        >>> write_report(inputs, "report.md", "steps.png", "refs.png")  # doctest: +SKIP
    """
    recipe = load_recipe(inputs.recipe)
    manifest = read_parquet(inputs.manifest)
    summary = WriteSummary.read(inputs.write_summary)
    validation = json.loads(Path(inputs.validation).read_text())
    steps = {step: figures for step, paths in inputs.benchmarks.items()
             if (figures := read_benchmark(paths)) is not None}
    lines = [f"# {recipe.title}", "", f"Recipe `{recipe.id}` ({recipe.format}), source `{recipe.source.url}`.", ""]
    lines += _step_lines(steps, manifest, summary.refs, inputs.headers)
    lines += [_extraction_line(inputs.headers, recipe.format), ""]
    lines += _array_lines(summary, _cri_driver_arrays(validation))
    lines += _validation_lines(validation)
    lines += ["", "![step times](steps.png)", "", "![references per array](refs.png)", ""]
    if inputs.footprint_map:
        lines += ["## Chunk footprints", "",
                  "Each chunk's WGS84 footprint (`<id>.footprints.parquet`, also in the CRI index with "
                  "`footprints` among the kinds), drawn once per spatial chunk, coloured by its first time step; "
                  "query it with `chunkindex query INDEX --bbox ...`.", "",
                  f"![chunk footprints]({Path(inputs.footprint_map).name})", ""]
    _plots(recipe.id, steps, summary, steps_png, refs_png)
    text = "\n".join(lines)
    Path(markdown_out).write_text(text)
    return text


def _header_figures(header_paths: list[str]) -> tuple[float, int]:
    """(seconds spent in the header steps, header bytes fetched) of every batch."""
    header_seconds, header_bytes = 0.0, 0
    for path in header_paths:
        meta = chunk_table_metadata(path)
        header_seconds += float(meta.get(b"chunkindex.seconds", b"0"))
        table = read_chunk_table(path)
        if "header_bytes" in table.column_names:
            table = table.select(["file_id", "header_bytes"])
            per_file = table.group_by("file_id").aggregate([("header_bytes", "max")])
            header_bytes += sum(per_file["header_bytes_max"].to_pylist())
    return header_seconds, header_bytes


def _step_lines(steps: dict[str, StepFigures], manifest: pa.Table, n_refs: int, header_paths: list[str]) -> list[str]:
    """The table of steps (time, memory, rate) and the run's totals."""
    n_files = manifest.num_rows
    n_bytes = sum(manifest["size"].to_pylist())
    header_seconds, header_bytes = _header_figures(header_paths)
    lines = ["## Steps", "", "| step | jobs | time (s) | peak memory (MB) | rate |", "|---|---:|---:|---:|---|"]
    for step, fig in steps.items():
        rate = ""
        if step == "list":
            rate = f"{n_files / max(fig.seconds, 1e-9):,.0f} files/s"
        elif step == "headers":
            rate = (f"{n_files / max(fig.seconds, 1e-9):,.0f} files/s, {n_refs / max(fig.seconds, 1e-9):,.0f} refs/s "
                    f"(in-step: {n_files / max(header_seconds, 1e-9):,.0f} files/s)")
        elif step in ("write", "write_shard"):
            rate = f"{n_refs / max(fig.seconds, 1e-9):,.0f} refs/s"
        lines.append(f"| {step} | {fig.jobs} | {fig.seconds:.2f} | {fig.max_rss_mb:.0f} | {rate} |")
    return lines + ["", f"Files: {n_files:,} ({n_bytes / 1e6:,.1f} MB). References: {n_refs:,}. "
                    f"Header bytes fetched (first request per file, at least): {header_bytes / 1e6:,.2f} MB.", ""]


CRI_DRIVER_READER = "GDAL (CRI driver)"


def _cri_driver_arrays(validation: dict[str, Any]) -> set[str]:
    """Arrays whose validated pixels GDAL read through the CRI driver plugin
    (`cri:<name>` results, levels > 0 under their Kerchunk `ovr<k>/<name>` names)
    with no mismatch on that array."""
    failed = {m["array"] for m in validation.get("mismatches", [])}
    names: set[str] = set()
    for a in validation.get("arrays", []):
        label = a["array"]
        if not label.startswith("cri:") or not a.get("pixels_checked_gdal") or label in failed:
            continue
        name, _, level = label[len("cri:"):].partition("@level")
        names.add(name if not level else f"{name}@{level}")
    return names


def _decodes_through_cri(name: str, through_cri: set[str]) -> bool:
    # Overview levels are `ovr<k>/<name>` in the Kerchunk index (`<name>_ovr<k>` before issue 17).
    match = re.fullmatch(r"ovr\d+/(.+)", name) or re.fullmatch(r"(.+)_ovr\d+", name)
    if match:  # any checked level of the variable stands for its overviews: one decode chain
        return any(n.startswith(match.group(1) + "@") for n in through_cri)
    return name in through_cri


def _array_lines(summary: WriteSummary, through_cri: set[str] = frozenset()) -> list[str]:
    """The write step's parts, and each array with the readers that decode it
    (GDAL through the CRI driver where validation read its pixels that way)."""
    lines: list[str] = []
    timings = summary.timings
    if timings:
        rate = (f" ({summary.refs / max(timings['kerchunk_parquet'], 1e-9):,.0f} refs/s Kerchunk Parquet)"
                if "kerchunk_parquet" in timings else "")
        lines += ["Write step parts: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()) + rate, ""]
    lines += ["## Arrays and readers", "", "| array | refs | chunks with no data | decodable by |", "|---|---:|---:|---|"]
    for name, refs in summary.refs_per_array.items():
        readers = list(summary.readers.get(name, []))
        if _decodes_through_cri(name, through_cri):
            readers.append(CRI_DRIVER_READER)
        decodable = ", ".join(readers) if readers else f"**none: {REFS_ONLY_NOTE}** (GDAL opens it for the references)"
        lines.append(f"| {name} | {refs:,} | {summary.missing_per_array.get(name, 0):,} | {decodable} |")
    lines.append("")
    refs_only = [n for n in summary.refs_per_array if REFS_ONLY_GROUP in n.split("/")[:-1]]
    if refs_only:
        lines += [f"> **WARNING** {', '.join(refs_only)}: {REFS_ONLY_NOTE.upper()}. GDAL opens these arrays and "
                  "reports exact chunk references (GetRawBlockInfo); their true codec chain (recorded in the "
                  "`chunkindex` attribute) includes a step GDAL cannot decode, so any pixel read fails. Read "
                  "pixels with zarr-python + imagecodecs from the array of the same name outside `refs_only/`.", ""]
    lines += [f"- note: {note}" for note in summary.notes]
    lines += [f"- skipped: {skipped}" for skipped in summary.skipped_files]
    return lines


def _validation_lines(validation: dict[str, Any]) -> list[str]:
    """The validation result and what it checked per array."""
    lines = ["", "## Validation", "",
             f"Result: **{'passed' if validation['ok'] else 'FAILED'}** "
             f"({len(validation['mismatches'])} mismatches).", "",
             "| array | chunks | refs checked | pixels via GDAL | via recorded chain | via zarr-python | no-data chunks |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for a in validation["arrays"]:
        lines.append(f"| {a['array']} | {a['chunks_checked']} | {a['refs_checked']} | {a['pixels_checked_gdal']} | "
                     f"{a['pixels_checked_python']} | {a['pixels_checked_zarr']} | {a['missing_chunks_checked']} |")
    lines += [f"\n- {note}" for note in validation.get("notes", [])]
    return lines


def _plots(recipe_id: str, steps: dict[str, StepFigures], summary: WriteSummary, steps_png: str,
           refs_png: str) -> None:
    """Time per step and references per array, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(steps)
    ax.barh(names, [steps[n].seconds for n in names], color="#3a7ca5")
    ax.set_xlabel("seconds (sum over jobs)")
    ax.set_title(f"{recipe_id}: time per step")
    fig.tight_layout()
    fig.savefig(steps_png, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(summary.refs_per_array))))
    arrays = list(summary.refs_per_array)
    ax.barh(arrays, [summary.refs_per_array[a] for a in arrays], color="#81c3d7")
    ax.set_xlabel("chunk references")
    ax.set_title(f"{recipe_id}: references per array")
    fig.tight_layout()
    fig.savefig(refs_png, dpi=100)
    plt.close(fig)


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
