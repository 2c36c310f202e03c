"""A part as a worker runs it, without a cluster: the key merge of the unique rule, and the
exactly-once re-run of a part (the ledger's batches skipped, the rejects told again)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa

from etlconsole.config import Settings
from etlconsole.engine.executors import keys as K
from etlconsole.engine.executors import parts as P
from etlconsole.engine.plan import make_plan
from etlconsole.spec import load_spec
from etlconsole.store.packed import unpack

from daskkit import DropLab, ledger_batches, parquet_digest


def test_cross_part_finds_the_later_holders_of_keys_held_by_several_parts():
    def keys(values, part):
        return pa.table({"key": pa.array(values, pa.int64()),
                         "part": pa.array([part] * len(values), pa.int32())})
    # in any order of the parts; a key of one part alone (1, 2, 5, 7) never comes out, nor
    # does a key's first owner (3: part 0; 4: part 1; 9: part 0), which loads it
    dups = K.cross_part(keys([1, 2, 3, 9], 0), keys([3, 4, 9], 2), keys([4, 3, 5], 1), keys([7], 3),
                        keys([], 4))
    assert sorted(zip(dups["key"].to_pylist(), dups["part"].to_pylist(), strict=True)) == \
        [(3, 1), (3, 2), (4, 2), (9, 2)]
    # each part is handed its own rows: the keys it must reject
    assert K.held_by(dups, 2)["key"].to_pylist() == [3, 4, 9]
    assert K.earlier(dups, 1).to_pylist() == [3] and len(K.earlier(dups, 0)) == 0
    assert K.cross_part(keys([1], 0), keys([2], 1)).num_rows == 0
    assert K.cross_part().num_rows == 0


def _task(lab: DropLab, k: int, tmp: Path, batch_rows: int = 500) -> P.PartTask:
    plan = make_plan(load_spec(lab.pipeline))
    ws = tmp / "ws"
    ws.mkdir(exist_ok=True)
    return P.PartTask("job1", k, plan.files[k], plan.spec, plan.dialects[k], None, {},
                      Settings(), str(ws), batch_rows=batch_rows)


def test_a_part_run_again_writes_only_what_the_ledger_lacks_and_tells_the_same_rejects(tmp_path, drop):
    lab = DropLab(tmp_path / "lab", drop)
    task = _task(lab, 1, tmp_path)           # a gzipped file
    first = P.run_part(task)
    n = len(first.batches)
    assert all(b.written for b in first.batches) and n >= 3
    assert [b.number for b in first.batches] == [P.PART_STRIDE + i for i in range(1, n + 1)]
    digest = parquet_digest(lab.out)
    # a worker killed before its last two commits: those batches never reached the folder
    for number in (P.PART_STRIDE + n - 1, P.PART_STRIDE + n):
        for f in list(lab.out.glob(f"part-job1-{number:08d}.parquet")):
            f.unlink()
    assert ledger_batches(lab.out) == [P.PART_STRIDE + i for i in range(1, n - 1)]
    again = P.run_part(task)
    assert [b.written for b in again.batches] == [False] * (n - 2) + [True, True]
    assert again.skipped == [P.PART_STRIDE + i for i in range(1, n - 1)]
    assert parquet_digest(lab.out) == digest                       # exactly once
    assert unpack(again.rejects) == unpack(first.rejects)
    assert len(unpack(first.rejects)) == sum(b.rejected for b in first.batches) > 0
    assert [(b.row_start, b.row_end) for b in again.batches] == \
        [(b.row_start, b.row_end) for b in first.batches]
    assert again.records == first.records == 2_001


def test_seeded_keys_are_rejected_like_a_local_run_would(tmp_path, drop):
    """Part 3 holds a key part 0 introduced: seeded, its row is rejected by the unique rule
    with the message a local run gives; unseeded, it loads."""
    lab = DropLab(tmp_path / "lab", drop)
    dups = pa.table({"key": pa.array([9_000_001], pa.int64()), "part": pa.array([3], pa.int32())})
    seeded = P.run_part(_task(lab, 3, tmp_path), dups)
    unique = [r for r in unpack(seeded.rejects) if r["rule"] == "unique"]
    assert [(r["row"], r["message"]) for r in unique if r["row"] == 2_001] == \
        [(2_001, "duplicate value '9000001' (already seen in this job)")]
    shutil.rmtree(lab.out)
    plain = P.run_part(_task(lab, 3, tmp_path))
    assert not [r for r in unpack(plain.rejects) if r["row"] == 2_001]


def test_the_engine_and_the_cli_import_no_dask():
    """The engine works without dask installed: nothing imports it until a job asks."""
    import subprocess
    import sys
    code = ("import sys, etlconsole.cli, etlconsole.engine.executors, "
            "etlconsole.engine.executors.dask, etlconsole.engine.executors.parts, "
            "etlconsole.engine.executors.keys, etlconsole.engine.executors.progress, "
            "etlconsole.engine.executors.cluster; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _lines(stats: list[dict]) -> list[tuple]:
    """A phase table without its times."""
    return [(s["label"], s["rows_in"], s["rows_out"], s["rejected"], s["warned"]) for s in stats]


def test_a_load_pass_from_its_spill_gives_what_the_file_gives(tmp_path, drop):
    """ADR 0028: the pre-pass spills what its validate phase lets through, and the load
    pass streams that instead of the file — the same batches, rejects (the cross-part
    duplicate rejected by the unique rule, same message), rows and phase table. The file
    is gone when the spilled pass runs: it reads only the spill, which it then removes."""
    copy = tmp_path / "drop"
    copy.mkdir()
    for f in drop.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    lab = DropLab(tmp_path / "lab", copy)
    tasks = [_task(lab, k, tmp_path) for k in range(6)]
    spill = tmp_path / "spill" / "part-00003.spill"
    keys = [K.part_keys(t, str(spill) if t.part == 3 else None) for t in tasks]
    dups = K.cross_part(*keys)
    # the crafted ones (daskkit): each later holder, not the first owner (0, 4) that loads it
    holders: dict[int, list[int]] = {}
    for key, part in zip(dups["key"].to_pylist(), dups["part"].to_pylist(), strict=True):
        holders.setdefault(key, []).append(part)
    assert (holders[9_000_001], holders[9_000_002], holders[9_000_003]) == ([3], [5], [2])
    from_file = P.run_part(tasks[3], dups)
    digest = parquet_digest(lab.out)
    shutil.rmtree(lab.out)
    assert spill.is_file()
    tasks[3].file.path.unlink()             # the load pass below cannot read the file
    from_spill = P.run_part(tasks[3], dups, str(spill))
    assert not spill.exists() and not list(spill.parent.iterdir())
    assert parquet_digest(lab.out) == digest
    assert unpack(from_spill.rejects) == unpack(from_file.rejects)
    assert [(b.number, b.row_start, b.row_end, b.rows, b.loaded) for b in from_spill.batches] == \
        [(b.number, b.row_start, b.row_end, b.rows, b.loaded) for b in from_file.batches]
    assert [r["message"] for r in unpack(from_spill.rejects) if r["rule"] == "unique"
            and r["row"] == 2_001] == ["duplicate value '9000001' (already seen in this job)"]
    assert _lines(from_spill.stats) == _lines(from_file.stats)
    assert (from_spill.records, from_spill.bytes_read, from_spill.content, from_spill.warned) == \
        (from_file.records, from_file.bytes_read, from_file.content, from_file.warned)


def test_a_part_without_its_spill_reads_its_file(tmp_path, drop):
    """A load task that finds no spill (another machine's, or removed by a run whose result
    was then lost) runs the whole chain from its file: the same result."""
    lab = DropLab(tmp_path / "lab", drop)
    tasks = [_task(lab, k, tmp_path) for k in range(6)]
    dups = K.cross_part(*[K.part_keys(t) for t in tasks])
    first = P.run_part(tasks[5], dups)
    shutil.rmtree(lab.out)
    again = P.run_part(tasks[5], dups, str(tmp_path / "nowhere" / "part-00005.spill"))
    assert unpack(again.rejects) == unpack(first.rejects)
    assert [r["row"] for r in unpack(again.rejects) if r["rule"] == "unique"
            and r["message"].startswith("duplicate value '9000002'")]


def test_a_validate_phase_that_only_warns_never_spills(tmp_path, drop):
    """With on_error = "warn" the failing rows go on, and the unique rule alone could not
    tell them apart again: the pre-pass writes no spill and the load pass reads the file."""
    lab = DropLab(tmp_path / "lab", drop)
    assert K.spillable(make_plan(load_spec(lab.pipeline)))
    text = lab.pipeline.read_text(encoding="utf-8")
    assert text.count('on_error = "reject"') == 1
    lab.pipeline.write_text(text.replace('on_error = "reject"', 'on_error = "warn"'), encoding="utf-8")
    assert not K.spillable(make_plan(load_spec(lab.pipeline)))
    spill = tmp_path / "spill" / "part-00002.spill"
    K.part_keys(_task(lab, 2, tmp_path), str(spill))
    assert not spill.parent.exists() or not list(spill.parent.iterdir())


def test_spills_that_would_fill_half_the_disk_are_not_written(tmp_path):
    from etlconsole.engine.executors.spill import spill_fits
    from etlconsole.engine.sources import SourceFile
    free = shutil.disk_usage(tmp_path).free
    small = SourceFile(tmp_path / "a.csv", 0, None, 1_000_000)
    assert spill_fits(tmp_path, [small, small])
    assert not spill_fits(tmp_path, [SourceFile(tmp_path / "b.csv", 1, None, free // 2)])
    # a compressed file's spill is counted at 10x its bytes
    assert not spill_fits(tmp_path, [SourceFile(tmp_path / "c.csv.gz", 2, "gzip", free // 15)])
    assert spill_fits(tmp_path, [SourceFile(tmp_path / "d.csv", 3, None, free // 15)])
