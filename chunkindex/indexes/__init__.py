"""Index kinds written from assembled arrays (Kerchunk, CRI flat index)."""
