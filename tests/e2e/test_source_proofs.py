"""A job's one hash pass over its source: the proofs its batches keep check out against
the file, and it records the whole-file digest (extract.PrefixHashes, ADR 0017)."""

from __future__ import annotations

import random
import sqlite3

from etlconsole.engine.extract import PrefixHashes, digest, prefix_digest

from .helpers import write_pipeline


def test_a_run_records_verifiable_proofs_and_the_whole_digest(cli, tmp_path):
    """End to end: the batches a job commits keep proofs that resume can check, and the
    job records the whole-file digest, from the one pass over the file."""
    src = tmp_path / "data.csv"
    rng = random.Random(3)
    src.write_text("id,name\n" + "".join(f"{i},n{rng.randrange(10**12)}\n"
                                         for i in range(1, 600_001)))
    assert src.stat().st_size > 2 * PrefixHashes.STEP
    pipeline = write_pipeline(tmp_path / "p.toml", source=src.name)
    small = {"PIPELINE_CHUNK_SIZE": "5000", "PIPELINE_STREAM_HIGH_WATER_MARK": "65536"}
    res = cli("run", pipeline, "--no-ui", "--json", env=small)
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    with sqlite3.connect(cli.state) as conn:
        batches = conn.execute("SELECT source_bytes, source_sha256 FROM pipeline_batches "
                               "WHERE job_id = ? ORDER BY batch_number", (job,)).fetchall()
        (recorded,) = conn.execute("SELECT source_digest FROM import_jobs WHERE id = ?",
                                   (job,)).fetchone()
    conn.close()
    assert len(batches) >= 2
    sizes = [size for size, _ in batches]
    assert sizes == sorted(sizes) and sizes[0] < src.stat().st_size   # proofs move with the reader
    for size, sha in batches:
        assert sha == prefix_digest(src, size)
    assert recorded == digest(src)
