"""PrefixHashes: one SHA-256 pass over a plain source gives both the whole-file digest
and the proofs of the prefixes the reader has read (extract, ADR 0017)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from etlconsole.engine.extract import (CsvStream, PrefixHashes, digest, prefix_digest,
                                       sniff)


@pytest.fixture
def small_steps(monkeypatch):
    monkeypatch.setattr(PrefixHashes, "STEP", 4096)


def _csv(path: Path, rows: int) -> Path:
    rng = random.Random(7)
    lines = ["id,name,amount"] + [f"{i},name {rng.randrange(10**9)},{rng.random():.6f}"
                                  for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_proof_is_the_hash_of_a_prefix_at_or_past_what_was_read(small_steps, tmp_path):
    src = _csv(tmp_path / "a.csv", 3000)
    size = src.stat().st_size
    hashes = PrefixHashes(src)
    n = 0
    for n in sorted(random.Random(1).sample(range(size + 1), 40)) + [size]:
        m, h = hashes.covering(n)
        assert n <= m <= size and (m % PrefixHashes.STEP == 0 or m == size), (n, m)
        assert m - n < PrefixHashes.STEP
        assert h == prefix_digest(src, m)
    assert hashes.covering(size + 1) is None          # past the end: no proof
    assert hashes.run_to_end(threading.Event()) == digest(src)


def test_the_digest_thread_and_the_reader_share_one_pass(small_steps, tmp_path):
    src = _csv(tmp_path / "a.csv", 20_000)
    hashes = PrefixHashes(src)
    whole: list[str | None] = []
    thread = threading.Thread(target=lambda: whole.append(hashes.run_to_end(threading.Event())))
    thread.start()
    d = sniff(src)
    chunks = list(CsvStream(src, d, block_size=8192, chunk_rows=500, prefixes=hashes))
    thread.join()
    assert whole == [digest(src)]
    assert len(chunks) > 10
    last = 0
    for c in chunks:
        m, h = c.proof
        assert m >= last and h == prefix_digest(src, m)
        last = m
    assert last == src.stat().st_size      # the last chunk's proof covers the whole file


def test_a_stopped_digest_leaves_the_reader_its_proofs(small_steps, tmp_path):
    src = _csv(tmp_path / "a.csv", 5000)
    hashes = PrefixHashes(src)
    stop = threading.Event()
    stop.set()
    assert hashes.run_to_end(stop) is None
    chunks = list(CsvStream(src, sniff(src), block_size=8192, chunk_rows=700, prefixes=hashes))
    for c in chunks:
        m, h = c.proof
        assert h == prefix_digest(src, m)


def test_a_proof_recorded_with_sha256_is_checked_with_sha256(tmp_path):
    """A job recorded by the previous version kept SHA-256 proofs: resume checks them with
    SHA-256 (the same bytes pass, an edit is refused), and a hash of an algorithm this
    version does not know never passes."""
    import hashlib

    from etlconsole.engine.extract import same_prefix
    src = tmp_path / "a.csv"
    src.write_bytes(b"id,v\n" + b"".join(b"%d,x\n" % i for i in range(1000)))
    size = 2000
    old = "sha256:" + hashlib.sha256(src.read_bytes()[:size]).hexdigest()
    assert same_prefix(src, size, old)
    assert same_prefix(src, size, prefix_digest(src, size))
    assert prefix_digest(src, size).startswith("xxh3_128:")
    assert not same_prefix(src, size, "md4:" + "0" * 32)
    data = bytearray(src.read_bytes())
    data[1000] = ord("9") if data[1000] != ord("9") else ord("8")
    src.write_bytes(bytes(data))
    assert not same_prefix(src, size, old)
    assert same_prefix(src, size + 10_000, old) is False      # the file is shorter than that
