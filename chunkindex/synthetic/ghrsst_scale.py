"""GHRSST archive at catalogue scale, cheaply: one real full-size COG
(36000 x 17999, 512 x 512 tiles - 2,556 of them - with overviews 2-32, the
real codec) whose tiles are constant, hard-linked under `count` daily
GHRSST names (one copy of it per 60,000 links, the file system's limit
being 65,000). Every file has the real header and tile grid; only headers are
read when indexing, so this measures what the real archive would cost."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np

from chunkindex.synthetic.ghrsst import (
    FULL_HEIGHT,
    FULL_WIDTH,
    RELATIVE_PATH,
    SST_NODATA,
    SST_OFFSET,
    SST_SCALE,
    write_cog,
)
from chunkindex.synthetic.manifest import FixtureSet

TEMPLATE = "template/ghrsst-full-size-template.tif"
# ext4 allows 65,000 links to one inode: past that, files link to a copy.
LINKS_PER_TEMPLATE = 60_000


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    opts = fixture_set.options
    start = dt.date.fromisoformat(str(opts.get("start", "2002-06-01")))
    count = int(opts.get("count", 8660))
    compression = str(opts.get("compression", "ZSTD"))
    predictor = int(opts.get("predictor", 2))
    template = folder / TEMPLATE
    # Constant-valued tiles (seeded value): each tile compresses to a few bytes.
    value = int(np.random.default_rng(fixture_set.seed).integers(-5000, 5000))
    data = np.full((FULL_HEIGHT, FULL_WIDTH), value, dtype=np.int16)
    write_cog(template, data, 1.0, compression, predictor, nodata=SST_NODATA, band_scale=SST_SCALE,
              band_offset=SST_OFFSET, units="celsius", description="analysed_sst", resampling="NEAREST")
    del data
    for day in range(count):
        date = start + dt.timedelta(days=day)
        path = folder / RELATIVE_PATH.format(date=date, variable="analysed_sst")
        path.parent.mkdir(parents=True, exist_ok=True)
        copy = day // LINKS_PER_TEMPLATE
        source = template if copy == 0 else template.with_name(f"{template.stem}-{copy}{template.suffix}")
        if day % LINKS_PER_TEMPLATE == 0 and copy:
            shutil.copyfile(template, source)
        os.link(source, path)
