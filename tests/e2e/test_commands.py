"""The smaller commands: phases, check, demo, history on an empty store."""

from __future__ import annotations

import json

from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import assert_summary, query, tables, write_pipeline

BUILTIN_PHASES = {"clean", "validate", "transform", "map", "load"}


def test_phases_json(cli):
    res = cli("phases", "--json")
    assert res.returncode == 0, str(res)
    phases = {p["name"]: p for p in res.json_lines()}
    assert BUILTIN_PHASES <= set(phases)
    for name in BUILTIN_PHASES:
        p = phases[name]
        assert isinstance(p["options"], dict) and p["options"], p
        for opt in p["options"].values():
            assert {"kind", "help", "required"} <= set(opt), p
    assert phases["validate"]["options"]["rules"]["required"] is True
    assert set(phases["load"]["options"]) >= {"path", "table"}
    assert phases["transform"]["options"].keys() >= {"cast", "derive"}


def test_phases_text(cli):
    res = cli("phases")
    assert res.returncode == 0, str(res)
    for name in BUILTIN_PHASES:
        assert any(line.startswith(name) for line in res.stdout_lines), res.stdout


def _sample(tmp_path, rows=300):
    write_orders_csv(tmp_path / "orders.csv", rows, seed=5)
    (tmp_path / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")


def test_check_prints_the_plan_and_writes_nothing(cli, tmp_path):
    _sample(tmp_path)
    res = cli("check", "pipeline.toml")
    assert res.returncode == 0, str(res)
    out = res.stdout
    assert "OK" in out
    for label in ("phase 1 (clean)", "phase 2 (validate)", "phase 3 (transform)",
                  "phase 4 (map)", "phase 5 (load)"):
        assert label in out, out
    assert "warehouse.db" in out and "orders" in out
    assert not (tmp_path / "warehouse.db").exists(), "check must not write the destination"


def test_check_json(cli, tmp_path):
    _sample(tmp_path)
    res = cli("check", "pipeline.toml", "--json")
    assert res.returncode == 0, str(res)
    info = res.last_json()
    assert [p["type"] for p in info["phases"]] == ["clean", "validate", "transform", "map", "load"]
    assert info["destination"]["table"] == "orders"
    assert info["destination"]["path"].endswith("warehouse.db")
    assert info["dialect"]["delimiter"] == ","
    loaded = info["phases"][-1]["columns"]
    assert any(c.startswith("id:") for c in loaded) and not any(c.startswith("sku:") for c in loaded)
    assert not (tmp_path / "warehouse.db").exists()


def test_check_bad_pipeline_is_a_user_error(cli, tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='[[phases]]\ntype = "clean"\ntrimm = true\n')
    res = cli("check", "p.toml")
    assert res.returncode == 2, str(res)
    assert len(res.stderr_lines) == 1 and "trimm" in res.stderr and "Traceback" not in res.stderr


def test_demo_from_an_empty_folder_twice(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for attempt in (1, 2):
        res = cli("demo", "--no-ui", cwd=empty, timeout=120)
        assert res.returncode == 0, f"attempt {attempt}\n{res}"
        assert "try next" in res.stdout, str(res)
        assert "Traceback" not in res.stderr
        folder = empty / "etlconsole-demo"
        for name in ("orders.csv", "pipeline.toml", "warehouse.db"):
            assert (folder / name).is_file(), name
        assert "orders" in tables(folder / "warehouse.db")
        loaded = query(folder / "warehouse.db", "SELECT count(*) FROM orders")[0][0]
        assert loaded > 0
    # the demo starts from scratch each time: the second run did not append
    res = cli("show", "last", "--json", cwd=empty)
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == loaded


def test_demo_json_summary(cli, tmp_path):
    res = cli("demo", "--no-ui", "--json", "--rows", "1000", timeout=120)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert s["rows_read"] == 1000
    manifest = write_orders_csv(tmp_path / "again.csv", 1000)     # the demo's default seed
    assert (s["rows_loaded"], s["rows_rejected"]) == (manifest.expected_loaded,
                                                      manifest.expected_rejected)


def test_history_on_an_empty_store(cli):
    res = cli("jobs", "--json")
    assert res.returncode == 0, str(res)
    assert res.stdout_lines == []


def test_show_and_rejects_of_unknown_job(cli):
    for args in (("show", "last"), ("rejects", "nosuchjob", "--json")):
        res = cli(*args)
        assert res.returncode == 2, str(res)
        assert len(res.stderr_lines) == 1 and res.stderr_lines[0].startswith("error:"), str(res)
        assert "Traceback" not in res.stderr


def test_run_without_json_prints_a_readable_summary(cli, tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = cli("run", "p.toml", "--no-ui")
    assert res.returncode == 0, str(res)
    assert "rows read" in res.stdout and "rows loaded" in res.stdout
    for line in res.stdout_lines:     # not JSON
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        raise AssertionError(f"JSON without --json: {line}")


def test_batches_lists_every_committed_batch(cli, tmp_path):
    import json as _json
    from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv
    write_orders_csv(tmp_path / "orders.csv", 3_000, seed=3)
    (tmp_path / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML)
    summary = cli("run", "pipeline.toml", "--no-ui", "--json",
                  env={"PIPELINE_CHUNK_SIZE": "500", "PIPELINE_BATCH_SIZE_MAX": "1000",
                       "PIPELINE_BATCH_SIZE_MIN": "100"}).last_json()
    rows = [_json.loads(line) for line in cli("batches", "last", "--json").stdout.splitlines()]
    assert len(rows) == summary["batches"] >= 3
    assert all(r["status"] == "COMMITTED" and r["attempts"] == 1 for r in rows)
    assert sum(r["rows_loaded"] for r in rows) == summary["rows_loaded"]
    assert sum(r["rows_rejected"] for r in rows) == summary["rows_rejected"]
    assert rows[0]["row_start"] == 1 and rows[-1]["row_end"] == 3_000
    assert all(a["row_end"] + 1 == b["row_start"] for a, b in zip(rows, rows[1:], strict=False))
    text = cli("batches", "last").stdout
    assert "COMMITTED" in text


def _on_terminal(cli, *args, timeout=30) -> tuple[int, str]:
    """The CLI with stdin and stdout on a pseudo-terminal (where the console would open)."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    from .helpers import clean_env
    main, sub = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "etlconsole", "--state", str(cli.state),
                             *map(str, args)], cwd=cli.cwd, env=clean_env({"TERM": "xterm"}),
                            stdin=sub, stdout=sub, stderr=sub, close_fds=True)
    os.close(sub)
    out, end = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([main], [], [], 0.1)   # never block past the deadline
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:          # the child closed its side: it has exited
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:       # still running: the console opened
            proc.kill()
        proc.wait()
        os.close(main)
    return proc.returncode, out.decode("utf-8", "replace")


def test_resume_of_a_finished_job_on_a_terminal_says_so_and_opens_no_console(cli, tmp_path):
    _sample(tmp_path)
    done = cli("run", "pipeline.toml", "--no-ui", "--json")
    assert done.returncode == 0, str(done)
    job = done.last_json()["job_id"]
    code, out = _on_terminal(cli, "resume", job, timeout=20)
    assert code == 0, out
    assert f"job {job} already succeeded; nothing to resume" in out


def test_resume_of_a_rolled_back_job_on_a_terminal_is_refused_in_one_line(cli, tmp_path):
    _sample(tmp_path)
    done = cli("run", "pipeline.toml", "--no-ui", "--json")
    job = done.last_json()["job_id"]
    assert cli("rollback", job, "--yes").returncode == 0
    code, out = _on_terminal(cli, "resume", job, timeout=20)
    assert code == 2, out
    assert f"job {job} was rolled back" in out and "Traceback" not in out
