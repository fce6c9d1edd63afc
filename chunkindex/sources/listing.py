"""List a recipe's source files into a manifest table.

The manifest (one row per file) holds the path relative to the store root,
the reference URL written into the index, size, etag and last-modified (the
cache key of the header step), the variable, and the concat coordinate parsed
from the name, sorted by coordinate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import functools
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec, open_store, reference_url

MANIFEST_SCHEMA = pa.schema([
    ("file_id", pa.int32()),
    ("path", pa.string()),
    ("url", pa.string()),
    ("size", pa.int64()),
    ("etag", pa.string()),
    ("last_modified", pa.timestamp("us", tz="UTC")),
    ("variable", pa.string()),
    ("time", pa.timestamp("us")),
])

# strftime directives and the text they match.
_DIRECTIVES = {
    "Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
    "S": r"\d{2}", "j": r"\d{3}", "y": r"\d{2}", "b": r"[A-Za-z]{3}", "%": "%",
}


_GLOB_MAGIC = re.compile(r"[*?\[]")


class ListingError(RuntimeError):
    """The listing is empty, a name does not parse, or coordinates repeat."""


@dataclass(frozen=True)
class NamePattern:
    """A compiled file-name pattern with `{time:%...}`, `{variable}` and `{name}` fields."""

    text: str
    regex: re.Pattern[str]
    time_formats: tuple[str, ...]  # strftime format of each `time` group, in order

    @classmethod
    def compile(cls, text: str) -> NamePattern:
        parts, formats, pos = [], [], 0
        for match in re.finditer(r"\{(\w+)(?::([^}]*))?\}", text):
            parts.append(re.escape(text[pos:match.start()]))
            name, fmt = match.group(1), match.group(2)
            if name == "time":
                if not fmt:
                    raise ValueError(f"pattern {text!r}: the time field needs a strftime format, e.g. {{time:%Y%m%d}}")
                piece = ""
                for directive in re.split(r"(%.)", fmt):
                    if directive.startswith("%") and len(directive) == 2:
                        if directive[1] not in _DIRECTIVES:
                            raise ValueError(f"pattern {text!r}: unsupported directive {directive}")
                        piece += _DIRECTIVES[directive[1]]
                    else:
                        piece += re.escape(directive)
                parts.append(f"(?P<time{len(formats)}>{piece})")
                formats.append(fmt)
            elif name == "variable":
                parts.append("(?P<variable>[^/]+?)" if "(?P<variable>" not in "".join(parts)
                             else "(?P=variable)")
            else:
                parts.append(f"(?P<{name}>[^/]*?)")
            pos = match.end()
        parts.append(re.escape(text[pos:]))
        return cls(text, re.compile("".join(parts) + r"\Z"), tuple(formats))

    def parse_time(self, match: re.Match[str], path: str) -> dt.datetime | None:
        """The time of a matched name; every time field must agree."""
        if not self.time_formats:
            return None
        # Fields may each carry only part of a date (%Y, %m, %d): merge them.
        values: dict[str, int] = {}
        for i, fmt in enumerate(self.time_formats):
            text = match.group(f"time{i}")
            try:
                fields = _field_values(text, fmt)
            except ValueError as exc:
                raise ListingError(f"{path}: cannot parse {text!r} as {fmt!r}: {exc}") from None
            for key, value in fields:
                if key in values and values[key] != value:
                    raise ListingError(f"{path}: the time fields disagree ({key} {values[key]} vs {value})")
                values[key] = value
        if "yday" in values:
            base = dt.datetime(values["year"], 1, 1) + dt.timedelta(days=values["yday"] - 1)
            values.update(month=base.month, day=base.day)
        try:
            return dt.datetime(values.get("year", 1970), values.get("month", 1), values.get("day", 1),
                               values.get("hour", 0), values.get("minute", 0), values.get("second", 0))
        except ValueError as exc:
            raise ListingError(f"{path}: not a valid time: {exc}") from None

    def fill(self, time: dt.datetime, variable: str | None = None) -> str:
        text = re.sub(r"\{time:([^}]*)\}", lambda m: time.strftime(m.group(1)), self.text)
        if variable is not None:
            text = text.replace("{variable}", variable)
        return text


_FIELDS = (("%Y", "year"), ("%y", "year"), ("%m", "month"), ("%b", "month"), ("%d", "day"), ("%j", "yday"),
           ("%H", "hour"), ("%M", "minute"), ("%S", "second"))


_NUMERIC = {"Y": ("year", 4), "m": ("month", 2), "d": ("day", 2), "j": ("yday", 3), "H": ("hour", 2),
            "M": ("minute", 2), "S": ("second", 2)}


@functools.lru_cache(maxsize=256)
def _numeric_format(fmt: str) -> re.Pattern[str] | None:
    """A regex with one group per field when `fmt` has only fixed-width numeric
    directives (the common %Y%m%d...), else None (strptime handles it)."""
    parts = []
    for piece in re.split(r"(%.)", fmt):
        if piece.startswith("%") and len(piece) == 2:
            if piece[1] not in _NUMERIC:
                return None
            key, width = _NUMERIC[piece[1]]
            parts.append(f"(?P<{key}>\\d{{{width}}})")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + r"\Z")


@functools.lru_cache(maxsize=65536)  # names repeat their year, month and day fields
def _field_values(text: str, fmt: str) -> tuple[tuple[str, int], ...]:
    """(field, value) pairs of one time field of a name, e.g. ("year", 2020)."""
    numeric = _numeric_format(fmt)
    if numeric is not None and (match := numeric.match(text)):
        fields = {key: int(value) for key, value in match.groupdict().items()}
        # The same checks as strptime: a real date (a leap year unless the year is given).
        dt.datetime(fields.get("year", 2000), fields.get("month", 1), fields.get("day", 1),
                    fields.get("hour", 0), fields.get("minute", 0), fields.get("second", 0))
        if not 1 <= fields.get("yday", 1) <= 366:
            raise ValueError(f"day of year {fields['yday']} is out of range")
        return tuple(fields.items())
    parsed = dt.datetime.strptime(text, fmt)
    return tuple((key, parsed.timetuple().tm_yday if key == "yday" else getattr(parsed, key))
                 for directive, key in _FIELDS if directive in fmt)


def _date_range(start: str, end: str, step: str) -> list[dt.datetime]:
    current, last = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    out = []
    while current <= last:
        out.append(current)
        if step == "day":
            current += dt.timedelta(days=1)
        elif step == "month":
            current = current.replace(year=current.year + current.month // 12,
                                      month=current.month % 12 + 1)
        else:
            current = current.replace(year=current.year + 1)
    return out


async def _head_all(store: Any, paths: list[str], concurrency: int) -> list[dict[str, Any]]:
    from obstore import head_async

    semaphore = asyncio.Semaphore(concurrency)

    async def one(path: str) -> dict[str, Any] | str:
        async with semaphore:
            try:
                return dict(await head_async(store, path))
            except FileNotFoundError:
                return f"{path}: not found (HEAD) at the source"
            except Exception as exc:  # noqa: BLE001  obstore raises its own error types
                return f"{path}: HEAD failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    results = await asyncio.gather(*(one(p) for p in paths))
    problems = sorted(r for r in results if isinstance(r, str))
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ListingError(f"{len(problems)} of {len(paths)} named files are missing:\n  "
                           + "\n  ".join(problems[:20]) + more)
    return [r for r in results if not isinstance(r, str)]


def _list_objects(store: Any, url: str) -> list[dict[str, Any]]:
    import obstore
    from obstore.exceptions import BaseError

    objects: list[dict[str, Any]] = []
    try:
        for batch in obstore.list(store, chunk_size=1000):
            objects.extend(dict(meta) for meta in batch)
    except (BaseError, OSError) as exc:
        # obstore's first line names the folder or object and the cause
        # (e.g. "... on <folder>: Permission denied"); the rest is a debug dump.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ListingError(f"{url}: cannot list the source: {reason}") from None
    return objects


def _matching_rows(recipe: Recipe, objects: list[dict[str, Any]], pattern: NamePattern | None
                   ) -> list[tuple[str, int, str | None, Any, str | None, dt.datetime | None]]:
    """(path, size, etag, last modified, variable, time) of every listed object
    the recipe's pattern (or glob) takes."""
    variables = recipe.variable_names
    rows: list[tuple[str, int, str | None, Any, str | None, dt.datetime | None]] = []
    for obj in objects:
        path = obj["path"]
        if pattern is not None:
            match = pattern.regex.match(path)
            if match is None:
                continue
            variable = match.groupdict().get("variable")
            if variable is not None and variable not in variables:
                continue
            if variable is None and len(variables) == 1 and recipe.format == "cog":
                variable = variables[0]
            time = pattern.parse_time(match, path)
        else:
            assert recipe.source.glob is not None
            if not fnmatch.fnmatchcase(path, recipe.source.glob):
                continue
            variable = variables[0] if recipe.format == "cog" and len(variables) == 1 else None
            time = None
        rows.append((path, int(obj["size"]), obj.get("e_tag"), obj.get("last_modified"), variable, time))
    return rows


def list_sources(recipe: Recipe, spec: StoreSpec) -> pa.Table:
    """List the recipe's source files as a manifest table (see MANIFEST_SCHEMA).

    Templated listings send `headers.concurrency` HEAD requests at once.

    Args:
        recipe: the recipe (its `source`, `variables`, `format` and `headers.concurrency`).
        spec: the store the files are listed from.

    Returns:
        One row per file, sorted by coordinate (MANIFEST_SCHEMA).

    Raises:
        ListingError: the source cannot be listed (a folder without read
            permission...), nothing matched, a matching name did not parse, or
            two files share a (variable, time) coordinate.
    """
    store = open_store(spec)
    pattern = NamePattern.compile(recipe.source.pattern) if recipe.source.pattern else None
    variables = recipe.variable_names
    if recipe.source.template is not None:
        assert pattern is not None  # the schema requires a pattern with a template
        tpl = recipe.source.template
        wanted = [pattern.fill(t, v) for t in _date_range(tpl.start, tpl.end, tpl.step)
                  for v in (variables if "{variable}" in pattern.text else [None])]
        objects = asyncio.run(_head_all(store, wanted, recipe.headers.concurrency))
        for obj, path in zip(objects, wanted):
            obj["path"] = path
    elif recipe.source.glob is not None and not _GLOB_MAGIC.search(recipe.source.glob):
        # One named file (`chunkindex index FILE`): asked for directly, its folder is not listed.
        objects = asyncio.run(_head_all(store, [recipe.source.glob], recipe.headers.concurrency))
        objects[0]["path"] = recipe.source.glob
    else:
        if not spec.can_list:
            raise ListingError(f"{spec.url}: an HTTP server cannot list; give source.template in the recipe")
        objects = _list_objects(store, spec.url)

    rows = _matching_rows(recipe, objects, pattern)
    what = recipe.source.pattern or recipe.source.glob
    if not rows:
        raise ListingError(f"recipe {recipe.id}: no file under {spec.url} matches {what!r}")
    if recipe.format != "cog":  # NetCDF files hold every variable
        rows = [(*r[:4], None, r[5]) for r in rows]
    # Sort by coordinate (then variable, then path) and reject duplicates.
    rows.sort(key=lambda r: (r[5] or dt.datetime.min, r[4] or "", r[0]))
    seen: dict[tuple[Any, Any], str] = {}
    # Grouped by grid, several files share a time (one per grid): the COG
    # assembler checks each grid's times once the groups are known.
    if pattern is not None and pattern.time_formats and recipe.source.group_by is None:
        for row in rows:
            var = row[4]
            key = (var, row[5])
            if key in seen:
                raise ListingError(
                    f"recipe {recipe.id}: {seen[key]} and {row[0]} have the same coordinate "
                    f"({row[5]:%Y-%m-%d %H:%M:%S}{', variable ' + var if var else ''})")
            seen[key] = row[0]
    for row in rows:
        if row[1] == 0:
            raise ListingError(f"{reference_url(spec, row[0])}: the file is empty (0 bytes)")
    return pa.table({
        "file_id": pa.array(range(len(rows)), pa.int32()),
        "path": [r[0] for r in rows],
        "url": [reference_url(spec, r[0]) for r in rows],
        "size": pa.array([r[1] for r in rows], pa.int64()),
        "etag": [r[2] for r in rows],
        "last_modified": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        "variable": [r[4] for r in rows],
        "time": pa.array([r[5] for r in rows], pa.timestamp("us")),
    }, schema=MANIFEST_SCHEMA)
