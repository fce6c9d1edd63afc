"""MODIS-like swath granules: a day of five-minute granules from a
sun-synchronous orbit, as NetCDF4 files with tie-point geolocation.

The geometry is a simple but physical whisk-broom model: a circular orbit
(inclination 98.2 degrees, 705 km, 98.9 minutes) over a rotating spherical
Earth; each scan (1.4771 s) sweeps +-55 degrees across track with 1354
samples and 10 detectors along track, whose ground footprints grow with the
slant range, so that neighbouring scans overlap towards the swath edges
(the bowtie). A day's orbits cross the antimeridian and pass within ~8
degrees of both poles; the swath (2330 km) covers them.

Each file `MOD021KM.A<yyyyddd>.<hhmm>.nc` holds:

- `radiance(line, pixel)` Int16, 2030 x 1354, chunks of one scan (10 x 1354),
- `cloud_mask(line, pixel)` UInt8, chunks of 256 x 256,

both constant per granule (so that the files stay small), and the
geolocation at tie points, MODIS-style: `latitude(tie_line, tie_pixel)` and
`longitude(...)` Float32 at detectors 2 and 7 of every scan and every 50th
pixel (plus the last), with the coordinate variables `tie_line`/`tie_pixel`
giving their full-resolution positions (CF 1.9 tie-point interpolation
attributes name them; `scan_lines` on the geolocation says 10 lines a scan). Full-resolution geolocation = bilinear interpolation on the sphere
within each scan (`chunkindex.geo.TiePointGrid`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

EARTH_RADIUS_KM = 6371.0
ALTITUDE_KM = 705.0
INCLINATION_DEG = 98.2
PERIOD_S = 98.88 * 60
SCAN_PERIOD_S = 1.4771
SCAN_HALF_ANGLE_DEG = 55.0
DETECTORS = 10
SAMPLES = 1354
SCANS = 203
GRANULE_S = 300.0
TIE_DETECTORS = (2, 7)
TIE_PIXEL_STEP = 50
EARTH_RATE = 2 * np.pi / 86164.0905


def tie_pixels(samples: int = SAMPLES, step: int = TIE_PIXEL_STEP) -> np.ndarray:
    cols = np.arange(0, samples, step)
    return cols if cols[-1] == samples - 1 else np.append(cols, samples - 1)


def geolocation(seconds: float, lines: np.ndarray, pixels: np.ndarray, node_lon: float,
                phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude (rows, cols) of pixel centres on `lines` x `pixels`
    (1-D) of the granule starting `seconds` after the day's start
    (line = scan * 10 + detector)."""
    scan, detector = np.divmod(np.asarray(lines), DETECTORS)
    t = seconds + scan * SCAN_PERIOD_S
    u = 2 * np.pi * t / PERIOD_S + phase
    inc = np.radians(INCLINATION_DEG)
    node = np.radians(node_lon) - EARTH_RATE * t  # Earth turns under the orbit
    # Orbit-plane position and velocity directions in the Earth-fixed frame.
    cu, su = np.cos(u), np.sin(u)
    sat = np.stack([cu, su * np.cos(inc), su * np.sin(inc)], axis=-1)
    vel = np.stack([-su, cu * np.cos(inc), cu * np.sin(inc)], axis=-1)
    sat, vel = _rotate_z(sat, node), _rotate_z(vel, node)
    cross = np.cross(sat, vel)
    theta = np.radians((np.asarray(pixels) - (SAMPLES - 1) / 2) * (2 * SCAN_HALF_ANGLE_DEG / SAMPLES))
    ratio = (EARTH_RADIUS_KM + ALTITUDE_KM) / EARTH_RADIUS_KM
    gamma = np.arcsin(np.clip(ratio * np.sin(theta), -1, 1)) - theta  # Earth angle off nadir
    slant = np.where(np.abs(theta) > 1e-9, EARTH_RADIUS_KM * np.sin(gamma) / np.where(theta == 0, 1, np.sin(theta)),
                     ALTITUDE_KM)
    # Along-track: detector offset seen at the slant range (this is the bowtie).
    beta = np.outer((detector - (DETECTORS - 1) / 2) / ALTITUDE_KM, slant / EARTH_RADIUS_KM)
    ground = np.cos(gamma)[None, :, None] * sat[:, None] + np.sin(gamma)[None, :, None] * cross[:, None]
    ground = np.cos(beta)[..., None] * ground + np.sin(beta)[..., None] * vel[:, None]
    ground /= np.linalg.norm(ground, axis=-1, keepdims=True)
    lon = np.degrees(np.arctan2(ground[..., 1], ground[..., 0]))
    lat = np.degrees(np.arcsin(np.clip(ground[..., 2], -1, 1)))
    return lon, lat


def _rotate_z(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], axis=-1)


def orbit_parameters(seed: int) -> tuple[float, float]:
    rng = np.random.default_rng([seed, 40])
    return float(rng.uniform(-180, 180)), float(rng.uniform(0, 2 * np.pi))


def tie_point_lines(scans: int = SCANS) -> np.ndarray:
    return (np.arange(scans)[:, None] * DETECTORS + np.array(TIE_DETECTORS)).ravel()


def granule_tie_points(seed: int, granule: int, scans: int = SCANS) -> tuple[np.ndarray, ...]:
    """(tie lines, tie pixels, lon, lat) of granule number `granule` of the day."""
    node_lon, phase = orbit_parameters(seed)
    lines, pixels = tie_point_lines(scans), tie_pixels()
    lon, lat = geolocation(granule * GRANULE_S, lines, pixels, node_lon, phase)
    return lines, pixels, lon, lat


def file_name(day: dt.date, granule: int) -> str:
    minutes = int(granule * GRANULE_S // 60)
    return f"MOD021KM.A{day:%Y}{day.timetuple().tm_yday:03d}.{minutes // 60:02d}{minutes % 60:02d}.nc"


def write_granule(path: Path, seed: int, day: dt.date, granule: int, scans: int = SCANS) -> None:
    """Write one granule (see the module docstring)."""
    import netCDF4

    lines, pixels, lon, lat = granule_tie_points(seed, granule, scans)
    start = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=granule * GRANULE_S)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({
            "title": "MODIS-like swath granule (chunkindex synthetic fixture)",
            "Conventions": "CF-1.9",
            "time_coverage_start": start.isoformat() + "Z",
            "time_coverage_end": (start + dt.timedelta(seconds=GRANULE_S)).isoformat() + "Z",
            "scan_lines": np.int32(DETECTORS),
        })
        nc.createDimension("time", 1)
        nc.createDimension("line", scans * DETECTORS)
        nc.createDimension("pixel", SAMPLES)
        nc.createDimension("tie_line", lines.size)
        nc.createDimension("tie_pixel", pixels.size)
        time = nc.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "seconds since 1970-01-01 00:00:00", "standard_name": "time",
                        "calendar": "standard"})
        time[:] = [(start - dt.datetime(1970, 1, 1)).total_seconds()]
        for name, values, std in (("latitude", lat, "latitude"), ("longitude", lon, "longitude")):
            var = nc.createVariable(name, "f4", ("tie_line", "tie_pixel"), zlib=True, complevel=4,
                                    shuffle=True, least_significant_digit=4)
            var.setncatts({"standard_name": std, "units": f"degrees_{'north' if std == 'latitude' else 'east'}",
                           "tie_point_mapping": "line: tie_line pixel: tie_pixel",
                           "scan_lines": np.int32(DETECTORS)})
            var[:] = values.astype(np.float32)
        for name, values in (("tie_line", lines), ("tie_pixel", pixels)):
            # Dimension coordinates: the full-resolution line/pixel of each tie point.
            var = nc.createVariable(name, "i4", (name,))
            var.setncatts({"long_name": f"{name.split('_')[1]} index of the tie points"})
            var[:] = values.astype(np.int32)
        interp = nc.createVariable("tie_point_interpolation", "i4", ())
        interp.setncatts({"interpolation_name": "bi_linear", "tie_point_mapping":
                          "line: tie_line tie_line pixel: tie_pixel tie_pixel",
                          "scan_lines": np.int32(DETECTORS)})
        for name, dtype, chunks, fill in (("radiance", "i2", (DETECTORS, SAMPLES), np.int16(-1)),
                                          ("cloud_mask", "u1", (256, 256), np.uint8(255))):
            var = nc.createVariable(name, dtype, ("line", "pixel"), zlib=True, complevel=9,
                                    chunksizes=chunks, fill_value=fill)
            var.setncatts({"coordinate_interpolation": "latitude: longitude: tie_point_interpolation",
                           "coordinates": "latitude longitude"})
            var[:] = np.full((scans * DETECTORS, SAMPLES), granule % 200 + 1, dtype=dtype)


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write `count` granules (default 288, a day) from `date` into `folder`."""
    opts = fixture_set.options
    day = dt.date.fromisoformat(str(opts.get("date", "2024-03-21")))
    count = int(opts.get("count", 288))
    scans = int(opts.get("scans", SCANS))
    if not 1 <= count <= 288:
        raise ValueError(f"fixture set {fixture_set.name!r}: count {count} is not 1..288 granules of a day")
    for granule in range(count):
        write_granule(folder / file_name(day, granule), fixture_set.seed, day, granule, scans)
