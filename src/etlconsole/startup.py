"""Imports of many modules at once — the program's own, Dask's — with Python's cyclic
garbage collector paused.

A program's start allocates tens of thousands of objects that live as long as it does
(classes, functions, module dicts: ~70,000 the collector tracks once a Dask driver has
imported ``distributed``), and each allocation counts towards the next collection, which
then walks them to find nothing to free. Measured: the imports of a Dask job's driver
take 0.30 s of CPU with the collector on, 0.26 s with it paused; the job's driver, ~25 ms
less CPU in all (bench/scale_bench.py's ``cpu driver``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """The collector off for the block, then as it was. ``freeze``: the objects alive at
    its end are moved out of every later collection's walk (``gc.freeze``): for a
    process's start only, where what is alive then is the program itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
