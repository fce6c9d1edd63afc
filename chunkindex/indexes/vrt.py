"""A multidimensional GDAL VRT over the source COGs (`<id>.vrt`): the archive
as one `time x y x x` array per variable for a GDAL without the CRI driver
plugin. Each time step is one `<Source>` naming a source file and its band;
GDAL's GTiff driver decodes the tiles, so every codec GTiff reads (TIFF
predictors, JPEG, LERC, ...) reads here too. No chunk references: GDAL opens
each file's header when a read first touches it.

Only full-resolution arrays are written (the COG overviews stay reachable
through each source file); `_refs_only` variants are left out, they exist for
Kerchunk readers only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from chunkindex.atomic import write_text
from chunkindex.model import ArraySpec
from chunkindex.sources.stores import gdal_path

# numpy dtype (kind, itemsize) -> GDAL data type name.
GDAL_TYPES = {("u", 1): "Byte", ("i", 1): "Int8", ("u", 2): "UInt16", ("i", 2): "Int16", ("u", 4): "UInt32",
              ("i", 4): "Int32", ("u", 8): "UInt64", ("i", 8): "Int64", ("f", 2): "Float16", ("f", 4): "Float32",
              ("f", 8): "Float64", ("c", 8): "CFloat32", ("c", 16): "CFloat64"}
DIMENSION_TYPES = {"T": "TEMPORAL", "Y": "HORIZONTAL_Y", "X": "HORIZONTAL_X", "Z": "VERTICAL"}


class VrtError(ValueError):
    """The arrays cannot be written as a multidimensional VRT over their files."""


def _attribute(name: str, value: Any) -> str:
    if isinstance(value, str):
        kind, text = "String", escape(value)
    elif isinstance(value, bool | int | np.integer):
        kind, text = "Int64", str(int(value))
    elif isinstance(value, float | np.floating):
        kind, text = "Float64", repr(float(value))
    else:
        return ""  # lists, dicts: not CF attributes a GDAL reader needs
    return f'<Attribute name={quoteattr(name)}><DataType>{kind}</DataType><Value>{text}</Value></Attribute>'


def _number(value: Any) -> str:
    """A number as GDAL parses it back exactly (Python's repr, not numpy's)."""
    return str(int(value)) if isinstance(value, int | np.integer) else repr(float(value))


def _coordinate(array: ArraySpec) -> str:
    """A 1-D indexing variable: regularly spaced when it is, else inline values."""
    values = np.frombuffer(array.inline or b"", "<f8")
    attrs = "".join(_attribute(k, v) for k, v in array.attrs.items())
    steps = np.diff(values)
    if values.size > 2 and np.allclose(steps, steps[0], rtol=0, atol=abs(steps[0]) * 1e-9):
        increment = (float(values[-1]) - float(values[0])) / (values.size - 1)
        body = f'<RegularlySpacedValues start="{float(values[0])!r}" increment="{increment!r}"/>'
    else:
        body = f"<InlineValues>{' '.join(repr(float(v)) for v in values)}</InlineValues>"
    return (f'<Array name={quoteattr(array.name)}><DataType>Float64</DataType>'
            f'<DimensionRef ref={quoteattr(array.name)}/>{body}{attrs}</Array>')


def _srs(array: ArraySpec) -> str:
    crs = array.attrs.get("_CRS")
    if not isinstance(crs, dict) or not (crs.get("url") or crs.get("wkt")):
        return ""
    from osgeo import osr

    osr.UseExceptions()
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs.get("url") or crs["wkt"])
    y, x = (array.dims.index(d) + 1 for d in array.spatial_dims or array.dims[-2:])
    # GDAL's mapping lists, per CRS axis, the array dimension (1-based) along it.
    mapping = (y, x) if srs.EPSGTreatsAsLatLong() or srs.EPSGTreatsAsNorthingEasting() else (x, y)
    return f'<SRS dataAxisToSRSAxisMapping="{mapping[0]},{mapping[1]}">{escape(srs.ExportToWkt())}</SRS>'


def _sources(array: ArraySpec, time_dim: str | None) -> str:
    """One `<Source>` per (time step, band): the file holding that step's chunks."""
    grid = array.chunk_grid
    dims = list(array.dims)
    time_axis = dims.index(time_dim) if time_dim in dims else None
    spatial = set(array.spatial_dims or dims[-2:])
    band_axes = [j for j, d in enumerate(dims) if j != time_axis and d not in spatial]
    if len(band_axes) > 1:
        raise VrtError(f"{array.name}: dimensions {dims} have more than one non-spatial dimension besides "
                       f"{time_dim}; a VRT over TIFF bands cannot place them")
    band_axis = band_axes[0] if band_axes else None
    codes = array.url_index.reshape(grid)
    steps = array.shape[time_axis] if time_axis is not None else 1
    bands = array.shape[band_axis] if band_axis is not None else 1
    parts = []
    for t in range(steps):
        plane = np.moveaxis(codes, time_axis, 0)[t] if time_axis is not None else codes
        present = plane[plane >= 0]
        if present.size == 0:
            continue  # a step with no data at all reads as the fill value
        if np.unique(present).size != 1:
            raise VrtError(f"{array.name}: the chunks of step {t} come from several files; a VRT source is one file")
        url = gdal_path(array.urls[int(present[0])])
        for b in range(bands):
            offset = [0] * len(dims)
            if time_axis is not None:
                offset[time_axis] = t
            if band_axis is not None:
                offset[band_axis] = b
            # The source band is 2-D (y, x): new axes put it at its place in the array.
            view = "[" + ",".join(["newaxis"] * (len(dims) - 2) + ["..."]) + "]" if len(dims) > 2 else ""
            parts.append(f"<Source><SourceFilename>{escape(url)}</SourceFilename><SourceBand>{b + 1}</SourceBand>"
                         + (f"<SourceView>{view}</SourceView>" if view else "")
                         + f'<DestSlab offset="{",".join(map(str, offset))}"/></Source>')
    return "".join(parts)


def multidim_vrt(arrays: list[ArraySpec], time_dim: str | None) -> str:
    """The VRT XML of the full-resolution COG arrays in `arrays` (see the module docstring).

    Args:
        arrays: the assembled arrays (coordinates, data arrays, overview
            arrays and variants; only level-0 data arrays and the coordinates
            they use are written).
        time_dim: the concatenation dimension (None for a single file).

    Returns:
        The XML text.

    Raises:
        VrtError: an array that is not from COGs, or whose time step spans several files.
    """
    coordinates = {a.name: a for a in arrays if a.inline is not None and a.dims == (a.name,)}
    data = [a for a in arrays if "chunkindex" in a.attrs and a.inline is None
            and a.attrs["chunkindex"].get("ifd", 0) == 0 and "variant_of" not in a.attrs["chunkindex"]]
    if not data:
        raise VrtError("no full-resolution data arrays to write")
    for array in data:
        if array.attrs["chunkindex"].get("source_format") != "cog":
            raise VrtError(f"{array.name}: a multidimensional VRT over the source files is written for COG "
                           f"archives only (this array is from {array.attrs['chunkindex'].get('source_format')})")
    sizes: dict[str, int] = {}
    for array in data:
        for dim, size in zip(array.dims, array.shape):
            if sizes.setdefault(dim, size) != size:
                raise VrtError(f"dimension {dim} has size {size} in {array.name} and {sizes[dim]} elsewhere")
    lines = ["<VRTDataset>", '  <Group name="/">']
    for dim, size in sizes.items():
        coordinate = coordinates.get(dim)
        axis = coordinate.attrs.get("axis") if coordinate is not None else None
        kind = f' type="{DIMENSION_TYPES[axis]}"' if axis in DIMENSION_TYPES else ""
        ref = f" indexingVariable={quoteattr(dim)}" if coordinate is not None else ""
        lines.append(f"    <Dimension name={quoteattr(dim)}{kind} size=\"{size}\"{ref}/>")
    lines += [f"    {_coordinate(coordinates[d])}" for d in sizes if d in coordinates]
    for array in data:
        dtype = np.dtype(array.dtype)
        gdal_type = GDAL_TYPES.get((dtype.kind, dtype.itemsize))
        if gdal_type is None:
            raise VrtError(f"{array.name}: data type {array.dtype} has no GDAL equivalent")
        attrs = array.attrs
        extra = ""
        fill = attrs.get("_FillValue")
        if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
            extra += f"<NoDataValue>{_number(fill)}</NoDataValue>"
        elif isinstance(fill, float):
            extra += "<NoDataValue>NaN</NoDataValue>"
        if "units" in attrs:
            extra += f"<Unit>{escape(str(attrs['units']))}</Unit>"
        if "add_offset" in attrs:
            extra += f"<Offset>{_number(attrs['add_offset'])}</Offset>"
        if "scale_factor" in attrs:
            extra += f"<Scale>{_number(attrs['scale_factor'])}</Scale>"
        extra += "".join(_attribute(k, v) for k, v in attrs.items()
                         if not k.startswith(("_", "chunkindex")) and k not in ("scale_factor", "add_offset"))
        refs = "".join(f"<DimensionRef ref={quoteattr(d)}/>" for d in array.dims)
        lines.append(f"    <Array name={quoteattr(array.name)}><DataType>{gdal_type}</DataType>{refs}"
                     f"{_srs(array)}{extra}")
        lines.append(f"      {_sources(array, time_dim)}")
        lines.append("    </Array>")
    lines += ["  </Group>", "</VRTDataset>", ""]
    return "\n".join(lines)


def write_multidim_vrt(arrays: list[ArraySpec], path: str | Path, time_dim: str | None) -> Path:
    """Write `multidim_vrt(arrays, time_dim)` to `path` atomically.

    Args:
        arrays: the assembled arrays.
        path: the `<id>.vrt` file.
        time_dim: the concatenation dimension.

    Returns:
        The path written.
    """
    write_text(path, multidim_vrt(arrays, time_dim))
    return Path(path)
