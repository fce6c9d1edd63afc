"""A map of chunk footprints (matplotlib): polygons coloured by time or bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq


def footprint_map(index: str | Path, png: str | Path, color_by: str = "time", variable: str | None = None,
                  level: int = 0, title: str | None = None, max_polygons: int = 200_000) -> int:
    """Draw the footprints of a footprint GeoParquet on a lon/lat map; returns the polygon count.

    Chunks sharing a footprint (time steps of a regular grid) are drawn once,
    coloured by their first time (`color_by="time"`) or their total bytes
    (`color_by="length"`). When every footprint has the same first time (a
    regular grid: each footprint holds every step) or none, a time colour bar
    would show one value; they are coloured by bytes then, the time span in
    the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shapely
    from matplotlib.collections import PolyCollection

    table = pq.read_table(index, columns=["variable", "level", "geometry", "time", "length"])
    variable = variable or table["variable"][0].as_py()
    table = table.filter(pc.and_(pc.equal(table["variable"], variable), pc.equal(table["level"], level)))
    grouped = table.group_by("geometry").aggregate([("time", "min"), ("time", "max"), ("length", "sum")])
    if grouped.num_rows > max_polygons:
        grouped = grouped.slice(0, max_polygons)
    geoms = shapely.from_wkb(grouped["geometry"].to_numpy(zero_copy_only=False))
    parts, owner = shapely.get_parts(geoms, return_index=True)
    rings = shapely.get_exterior_ring(parts)
    coords, ring_index = shapely.get_coordinates(rings, return_index=True)
    splits = np.flatnonzero(np.diff(ring_index)) + 1
    polygons = np.split(coords, splits)
    first = pc.unique(grouped["time_min"].drop_null())
    span = ""
    if color_by == "time" and len(first) < 2:
        color_by = "length"
        last = pc.max(grouped["time_max"]).as_py()
        span = ("no time axis" if not len(first) else
                f"each footprint holds every step, {_when(first[0].as_py())}"
                + (f" to {_when(last)}" if last != first[0].as_py() else ""))
    if color_by == "time":
        values = grouped["time_min"].cast("int64").to_numpy(zero_copy_only=False).astype(float)
        label = "time (first step)"
    else:
        values = grouped["length_sum"].to_numpy().astype(float)
        label = "bytes behind the footprint"
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=110)
    collection = PolyCollection(polygons, array=values[owner], cmap="viridis", edgecolors="k", linewidths=0.15,
                                alpha=0.75)
    ax.add_collection(collection)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_aspect("equal")
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    if values.size and np.ptp(values) == 0:  # one value: a colour bar would show a made-up range around it
        collection.set_array(None)
        collection.set_facecolor(plt.get_cmap("viridis")(0.5))
        span = ", ".join(filter(None, [span, f"{label} {values[0]:,.0f} each" if color_by != "time" else ""]))
        cbar = None
    else:
        cbar = fig.colorbar(collection, ax=ax, shrink=0.7)
    if cbar is not None and color_by == "time":
        ticks = cbar.get_ticks()
        cbar.set_ticks(ticks)
        cbar.set_ticklabels([_when(np.datetime64(int(t), "ms")) for t in ticks])
    if cbar is not None:
        cbar.set_label(label)
    ax.set_title(title or f"{Path(index).name}: {variable} level {level}, {grouped.num_rows:,} footprints"
                 + (f"\n({span})" if span else ""))
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return grouped.num_rows


def _when(t) -> str:
    return str(np.datetime64(t, "ms"))[:16].replace("T", " ")
