"""Synthetic, byte-reproducible stand-ins for the real archives.

Each generator writes one fixture set into a folder, from a seed; the same
seed and library versions give byte-identical files (a checksum manifest
records them).
"""

from chunkindex.synthetic.manifest import FixtureSet, generate_fixture_set, write_manifest

__all__ = ["FixtureSet", "generate_fixture_set", "write_manifest"]
