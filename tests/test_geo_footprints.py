"""Chunk footprints of every grid kind: every pixel centre and corner of a
chunk lies inside its footprint (tested exhaustively), the area excess stays
within the tolerance stated per kind, antimeridian and poles are handled."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from chunkindex.geo import AffineGrid, GCPGrid, GeolocatedGrid, TiePointGrid, grid_footprints
from chunkindex.geo.checks import area_excess, containment_misses
from chunkindex.geo.footprints import polygon_wkb
from chunkindex.synthetic import curvilinear, gcp, swath

SEED = 20021101


def swath_segment(granule: int, first_scan: int, scans: int) -> GeolocatedGrid:
    """Full-resolution geolocation of `scans` scans of a granule of the synthetic day."""
    lines = np.arange(first_scan * 10, (first_scan + scans) * 10)
    lon, lat = swath.geolocation(granule * swath.GRANULE_S, lines, np.arange(swath.SAMPLES),
                                 *swath.orbit_parameters(SEED))
    return GeolocatedGrid(lon, lat, scan_lines=10)


def _scan_nearest_pole(granule: int, sign: int) -> int:
    lines, _, _, lat = swath.granule_tie_points(SEED, granule)
    extreme = lat.max(axis=1) if sign > 0 else -lat.min(axis=1)
    return int(np.clip(lines[np.argmax(extreme)] // 10, 12, swath.SCANS - 12))


def _scan_crossing_antimeridian(granule: int) -> int:
    lines, _, lon, _ = swath.granule_tie_points(SEED, granule)
    jumps = np.abs(np.diff(lon, axis=1)).max(axis=1) > 180
    return int(np.clip(lines[np.argmax(jumps)] // 10, 12, swath.SCANS - 26))


def tie_point_segment(granule: int, first_scan: int, scans: int) -> TiePointGrid:
    """Scans `first_scan`.. of a granule as tie points (not expanded): the
    footprints interpolate corners from the tie points themselves."""
    lines, pixels, lon, lat = swath.granule_tie_points(SEED, granule)
    per = lines.size // swath.SCANS
    rows = slice(first_scan * per, (first_scan + scans) * per)
    return TiePointGrid(lon[rows], lat[rows], lines[rows] - first_scan * 10, pixels, (scans * 10, swath.SAMPLES),
                        scan_lines=10)


# (grid, chunk shape, (median, max) area excess: the stated tolerance per grid kind;
# swath maxima are chunks next to a pole, where straight lon/lat edges need most pieces)
CASES = {
    "wgs84-north-up": (lambda: AffineGrid((-180.0, 0.5, 0.0, 90.0, 0.0, -0.5), 720, 360), (64, 64), (1e-4, 1e-4)),
    "wgs84-south-up": (lambda: AffineGrid((-180.0, 0.5, 0.0, -90.0, 0.0, 0.5), 720, 360), (64, 64), (1e-4, 1e-4)),
    "wgs84-rotated": (lambda: AffineGrid((100.0, 0.01, 0.004, 10.0, 0.004, -0.01), 500, 400), (64, 64), (1e-4, 1e-4)),
    "wgs84-0-360": (lambda: AffineGrid((0.0, 0.75, 0.0, 60.0, 0.0, -0.75), 480, 160), (50, 50), (1e-4, 1e-4)),
    "utm-55s": (lambda: AffineGrid((500000.0, 30.0, 0.0, 7000000.0, 0.0, -30.0), 600, 600, "EPSG:32755"),
                (256, 256), (0.001, 0.001)),
    "polar-stereo-south": (lambda: AffineGrid((-3e6, 25000.0, 0.0, 3e6, 0.0, -25000.0), 240, 240, "EPSG:3031"),
                           (32, 32), (0.002, 0.003)),
    "polar-stereo-north-rotated": (lambda: AffineGrid((-4e6, 10000.0, 2000.0, 4e6, 2000.0, -10000.0), 500, 500,
                                                      "EPSG:3413"), (50, 50), (0.002, 0.003)),
    "gcp": (lambda: GCPGrid(gcp.gcp_positions(), gcp.WIDTH, gcp.HEIGHT), (256, 256), (0.002, 0.006)),
    "curvilinear-roms": (lambda: GeolocatedGrid(*curvilinear.roms_grid(200, 300)), (50, 60), (0.001, 0.001)),
    "swath-north-pole-scans": (lambda: swath_segment(68, _scan_nearest_pole(68, 1) - 12, 24), (10, 1354), (0.06, 0.06)),
    "swath-north-pole-64": (lambda: swath_segment(68, _scan_nearest_pole(68, 1) - 12, 24), (64, 64), (0.03, 0.07)),
    "swath-south-pole-64": (lambda: swath_segment(256, _scan_nearest_pole(256, -1) - 12, 24), (64, 64), (0.03, 0.07)),
    "swath-antimeridian-scans": (lambda: swath_segment(0, _scan_crossing_antimeridian(0) - 12, 24), (10, 1354), (0.06, 0.06)),
    "swath-tie-points-pole-64": (lambda: tie_point_segment(68, _scan_nearest_pole(68, 1) - 12, 24), (64, 64),
                                 (0.03, 0.07)),
    "swath-tie-points-antimeridian-scans": (lambda: tie_point_segment(0, _scan_crossing_antimeridian(0) - 12, 24),
                                            (10, 1354), (0.03, 0.03)),
    "swath-antimeridian-256": (lambda: swath_segment(0, _scan_crossing_antimeridian(0) - 12, 26), (128, 256), (0.03, 0.05)),
}


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            make, chunks, tol = CASES[name]
            grid = make()
            cache[name] = (grid, chunks, tol, grid_footprints(grid, chunks))
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_pixel_centre_and_corner_is_inside_its_footprint(built, name):
    grid, chunks, _, footprints = built(name)
    misses = containment_misses(footprints, grid, chunks)
    assert misses.size == 0, f"{name}: {misses.size} points outside, chunks {np.unique(misses)[:10]}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_area_excess_within_the_stated_tolerance(built, name):
    grid, chunks, (median, largest), footprints = built(name)
    excess = area_excess(footprints, grid, chunks)
    print(f"{name}: area excess median {np.median(excess):.2e} max {excess.max():.2e} "
          f"(tolerance {median}, {largest})")
    assert excess.min() > -1e-3, f"{name}: a footprint is smaller than its chunk"
    assert np.median(excess) <= median and excess.max() <= largest


def test_geographic_grids_are_exact_quadrilaterals(built):
    _, _, _, footprints = built("wgs84-north-up")
    first = footprints.geometries()[0]
    assert shapely.equals(first, shapely.box(-180.0, 58.0, -148.0, 90.0))
    assert shapely.is_ccw(first.exterior)
    _, _, _, wrapped = built("wgs84-0-360")
    assert wrapped.bounds[:, 0].min() >= -180 and wrapped.bounds[:, 2].max() <= 180
    split = shapely.get_type_id(wrapped.geometries()) == 6
    assert split.sum() == 4  # the chunk column straddling 180 E (150..187.5), one per chunk row


def test_antimeridian_footprints_are_split_never_spanning_the_globe(built):
    for name in ("swath-antimeridian-scans", "curvilinear-roms"):
        _, _, _, footprints = built(name)
        geoms = footprints.geometries()
        multi = shapely.get_type_id(geoms) == 6
        assert multi.any(), f"{name}: expected chunks crossing the antimeridian"
        parts, owner = shapely.get_parts(geoms[multi], return_index=True)
        width = np.bincount(owner, weights=np.diff(shapely.bounds(parts)[:, [0, 2]], axis=1)[:, 0])
        assert width.max() < 90, f"{name}: a footprint's parts span {width.max()} degrees of longitude"
        assert (footprints.bounds[:, 0] >= -180).all() and (footprints.bounds[:, 2] <= 180).all()


@pytest.mark.parametrize("name,pole", [("swath-north-pole-64", 90.0), ("swath-south-pole-64", -90.0),
                                       ("polar-stereo-south", -90.0), ("polar-stereo-north-rotated", 90.0)])
def test_a_chunk_over_a_pole_contains_the_pole(built, name, pole):
    _, _, _, footprints = built(name)
    geoms = footprints.geometries()
    holders = shapely.intersects_xy(geoms, 0.0, pole) & shapely.intersects_xy(geoms, 179.9, pole * 0.9999)
    assert 1 <= holders.sum() <= 4, f"{name}: {holders.sum()} chunks hold the pole"
    assert shapely.is_valid(geoms).all()


def test_the_checker_catches_a_footprint_too_small(built):
    grid, chunks, _, footprints = built("curvilinear-roms")
    geoms = footprints.geometries().copy()
    target = int(np.flatnonzero(shapely.get_type_id(geoms) == 3)[0])
    geoms[target] = shapely.affinity.scale(geoms[target], 0.99, 0.99)
    bad = type(footprints)(**{**footprints.__dict__, "wkb": pa.array(shapely.to_wkb(geoms))})
    misses = containment_misses(bad, grid, chunks)
    assert set(np.unique(misses)) == {target}


def test_the_area_check_catches_a_footprint_too_large(built):
    grid, chunks, _, footprints = built("utm-55s")
    grown = footprints.geometries().copy()
    grown[5] = shapely.affinity.scale(grown[5], 1.2, 1.2)
    bad = type(footprints)(**{**footprints.__dict__, "wkb": pa.array(shapely.to_wkb(grown))})
    excess = area_excess(bad, grid, chunks)
    assert excess[5] > 0.4 and np.delete(excess, 5).max() < 0.002


def test_numpy_wkb_equals_shapely_wkb():
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(-180, 180, (50, 7)), rng.uniform(-90, 90, (50, 7))
    ours = polygon_wkb(lon, lat).to_pylist()
    ring = np.stack([lon, lat], axis=-1)
    theirs = shapely.to_wkb(shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1)))
    assert ours == list(theirs)


def test_tie_points_reproduce_the_geolocation_model():
    lines, pixels, lon_tp, lat_tp = swath.granule_tie_points(SEED, 3, scans=20)
    grid = TiePointGrid(lon_tp, lat_tp, lines, pixels, (200, swath.SAMPLES), scan_lines=10).expand()
    truth = swath_segment(3, 0, 20)
    np.testing.assert_allclose(grid.lon[lines][:, pixels], lon_tp, atol=1e-9)
    dlon = (grid.lon - truth.lon + 180) % 360 - 180
    error_km = np.hypot(dlon * np.cos(np.radians(truth.lat)), grid.lat - truth.lat) * 111.2
    # Tie points every 50 pixels: bilinear interpolation is within 1 km of the
    # model near nadir and within 10 km at the swath edges (pixels grow to ~5 km).
    assert error_km[:, 400:954].max() < 1.0 and error_km.max() < 10.0


def test_tie_point_corners_match_expand():
    """Corners interpolated straight from the tie points (one bilinear value
    half a pixel off) equal the mean of the four expanded centres around each."""
    grid = tie_point_segment(3, 0, 20)
    expected = grid.expand().corners_xyz()  # (scans, 11, cols + 1, 3)
    block, row, col = np.meshgrid(np.arange(20), np.arange(11), np.arange(swath.SAMPLES + 1), indexing="ij")
    got = grid.corner_xyz(block, row, col)
    metres = np.linalg.norm(got - expected, axis=-1) * 6_371_000
    assert metres.max() < 0.1, f"corners differ by up to {metres.max():.3f} m"


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="not whole scans"):
        GeolocatedGrid(np.zeros((15, 4)), np.zeros((15, 4)), scan_lines=10)
    with pytest.raises(ValueError, match="non-finite"):
        GeolocatedGrid(np.full((4, 4), np.nan), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="swapped"):
        GeolocatedGrid(np.zeros((4, 4)), np.full((4, 4), 120.0))
    with pytest.raises(ValueError, match="invertible"):
        AffineGrid((0.0, 0.0, 0.0, 0.0, 0.0, 0.0), 10, 10)
    with pytest.raises(ValueError, match="cannot fit"):
        GCPGrid(gcp.gcp_positions()[:2], 10, 10, order=1)


def test_ragged_wkb_equals_shapely_wkb():
    """Rings of different lengths written in one numpy buffer, with an
    antimeridian crossing among them (split by shapely in place)."""
    from chunkindex.geo.footprints import _ragged_to_wkb

    rng = np.random.default_rng(2)
    counts = np.array([4, 7, 5, 4, 9])
    centre = rng.uniform(-150, 150, counts.size)
    centre[3] = 179.0  # crosses 180
    angle = np.concatenate([np.sort(rng.uniform(0, 2 * np.pi, c)) for c in counts])
    owner = np.repeat(np.arange(counts.size), counts)
    lon, lat = centre[owner] + 3 * np.cos(angle), 3 * np.sin(angle)
    wkb, bounds = _ragged_to_wkb(lon, lat, counts, np.zeros(counts.size, np.int8))
    geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
    for i in (0, 1, 2, 4):
        ring = np.stack([lon[owner == i], lat[owner == i]], axis=1)
        assert wkb[i].as_py() == shapely.to_wkb(shapely.Polygon(ring))
    assert shapely.get_type_id(geoms[3]) == 6 and bounds[3, 0] == -180 and bounds[3, 2] == 180
    np.testing.assert_allclose(bounds[[0, 1, 2, 4]], shapely.bounds(geoms[[0, 1, 2, 4]]))
