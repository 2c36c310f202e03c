"""Content hashes of source files, as the text a job records: ``"algorithm:hex"``.

A job proves to resume that the bytes it skips are the ones it loaded (ADR 0017): every
run hashes every byte of its source once. The hash guards against an edited or replaced
file, not against an adversary, so it is XXH3-128 (~7 GB/s here, against SHA-256's
~1.5 GB/s with SHA extensions: 0.06 s of CPU less per 120 MB on a job whose two cores are
both busy). The algorithm is named in what is recorded, so a job recorded by an earlier
version (SHA-256, or a bare blake2b digest before that) is checked with its own.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import xxhash

PROOF = "xxh3_128"      # what new jobs record

_MAKERS: dict[str, Callable[[], Any]] = {
    "xxh3_128": xxhash.xxh3_128,
    "sha256": hashlib.sha256,
    "blake2b": lambda: hashlib.blake2b(digest_size=20),
}


def new(algorithm: str = PROOF) -> Any:
    """A fresh hash object (``update``, ``copy``, ``hexdigest``); both libraries release
    the GIL on large updates."""
    return _MAKERS[algorithm]()


def text(h: Any, algorithm: str = PROOF) -> str:
    return f"{algorithm}:{h.hexdigest()}"


def algorithm_of(recorded: str) -> str | None:
    """The algorithm a recorded hash was made with; None for one this version does not
    know (a newer version's: the content counts as changed, never as proven)."""
    algorithm, sep, _ = recorded.rpartition(":")
    if not sep:
        return "blake2b"        # the bare hex digests of the first versions
    return algorithm if algorithm in _MAKERS else None
