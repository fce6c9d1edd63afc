"""Chunk footprints: one WGS84 polygon per spatial chunk, for regular
(affine, any CRS), curvilinear, swath (per-pixel or tie-point geolocation,
bowtie scans) and GCP-georeferenced grids, computed as numpy columns and
emitted as WKB (GeoParquet-ready), without a Python object per chunk."""

from chunkindex.geo.footprints import Footprints, grid_footprints
from chunkindex.geo.grids import AffineGrid, GCPGrid, GeolocatedGrid, TiePointGrid

__all__ = ["AffineGrid", "Footprints", "GCPGrid", "GeolocatedGrid", "TiePointGrid", "grid_footprints"]
