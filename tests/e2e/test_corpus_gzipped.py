"""Every file of the real-world corpus, gzipped, behaves exactly like its plain version
(ADR 0025): the same outcome (loaded, or refused before anything is written), the same
figures, the same rejects (record, rule, column, message) and the same rows loaded.

Both sets run in the corpus driver (one interpreter each, see test_corpus.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from .helpers import query
from .test_corpus import CORPUS, CORPUS_MISSING, FILES, _run_driver

# Refused both ways, in other words: a gzip file named .csv is refused for its name; gzipped
# again, its content is gzip data, refused as binary.
SAME_REFUSAL_OTHER_WORDS = {"frictionless/compression/implicit-gz.csv"}


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[dict[str, dict], dict[str, dict], dict[str, Path]]:
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    tmp = tmp_path_factory.mktemp("corpus-gz")
    gz_files: dict[str, Path] = {}
    for i, (rel, path) in enumerate(FILES.items()):
        target = tmp / "gz" / f"{i:03d}" / (path.name + ".gz")
        target.parent.mkdir(parents=True)
        target.write_bytes(gzip.compress(path.read_bytes()))
        gz_files[rel] = target
    plain = _run_driver(tmp / "plain")
    zipped = _run_driver(tmp / "zipped", sources={rel: str(p) for rel, p in gz_files.items()})
    return plain, zipped, gz_files


@pytest.mark.parametrize("rel", list(FILES))
def test_gzipped_file_behaves_like_plain(both, rel):
    plain, zipped, gz_files = both
    p, z = plain[rel], zipped[rel]
    assert z["exit_code"] == p["exit_code"], (p, z)
    if p["exit_code"] == 2:
        assert gz_files[rel].name in z["error"], z["error"]
        if rel not in SAME_REFUSAL_OTHER_WORDS:
            assert z["error"].replace(str(gz_files[rel]), "F") == p["error"].replace(
                str(FILES[rel].resolve()), "F"), (p["error"], z["error"])
        return
    if p["exit_code"] != 0:
        return
    keys = ("rows_read", "rows_loaded", "rows_rejected", "rows_warned")
    assert {k: z["summary"][k] for k in keys} == {k: p["summary"][k] for k in keys}
    assert z["rejects"] == p["rejects"]
    assert z["dialect"] == p["dialect"]
    sql = "SELECT * FROM t ORDER BY rowid"
    strip = lambda rows: [r[:-2] for r in rows]   # noqa: E731 - lineage: job id, batch
    assert strip(query(Path(z["dest"]), sql)) == strip(query(Path(p["dest"]), sql))
