"""Run many source files through a plain pipeline in ONE interpreter (fast) and report.

Usage: python _corpus_driver.py TASKS.json RESULTS.jsonl STATE.db

TASKS.json is a list of {"id", "source", "workdir"}. For each task a pipeline with one
``load`` phase into ``workdir/dest.db`` is written and run with
``etlconsole.api.run`` exactly as the CLI does, and one JSON line is appended to
RESULTS.jsonl (flushed at once). A line {"id", "started": true} precedes every run, so the
caller can tell which file a crashed or hung driver was working on: a watchdog
(faulthandler) kills the whole process when one file takes longer than
ETL_E2E_FILE_TIMEOUT seconds (default 60), and the caller restarts the driver on the
remaining files.

Outcomes, mirroring the CLI's exit codes:
  exit_code 0  the job succeeded (summary, dialect and rejects recorded)
  exit_code 1  the job ran and failed (summary recorded)
  exit_code 2  a UserError before anything ran (its message recorded)
  "exception"  any other exception: the CLI would print "internal error" (a bug)
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from pathlib import Path

from etlconsole import config
from etlconsole.errors import UserError
from etlconsole import api
from etlconsole.store import StateStore

PIPELINE = """name = "corpus"

[source]
path = {source}

[[phases]]
type = "load"
destination = "sqlite"
path = "dest.db"
table = "t"
mode = "append"
"""


def run_one(task: dict, settings, store: StateStore) -> dict:
    work = Path(task["workdir"])
    work.mkdir(parents=True, exist_ok=True)
    pipeline = work / "pipeline.toml"
    pipeline.write_text(PIPELINE.format(source=json.dumps(task["source"], ensure_ascii=False)),
                        encoding="utf-8")
    out = {"id": task["id"], "dest": str(work / "dest.db")}
    t0 = time.monotonic()
    try:
        summary = api.run(pipeline, settings).to_json()
    except UserError as exc:
        out.update(exit_code=exc.exit_code, error=str(exc))
    except BaseException as exc:      # noqa: BLE001 - every other exception is a finding
        out.update(exit_code="exception", exc_type=type(exc).__name__, error=str(exc),
                   traceback=traceback.format_exc())
    else:
        out.update(exit_code=0 if summary["status"] == "succeeded" else 1,
                   summary=json.loads(json.dumps(summary, default=str)))
        job = store.job(summary["job_id"])
        out["dialect"] = job["dialect"]
        out["rejects"] = [{k: r[k] for k in ("row", "phase", "rule", "column", "message")}
                          for r in store.rejects(summary["job_id"])]
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def main(argv: list[str]) -> int:
    tasks_file, results_file, state_db = argv[1:4]
    tasks = json.loads(Path(tasks_file).read_text(encoding="utf-8"))
    settings = config.load_settings(environ={}, state_db=state_db)
    store = StateStore(settings.state_path)
    timeout = float(os.environ.get("ETL_E2E_FILE_TIMEOUT", "60"))
    with open(results_file, "a", encoding="utf-8") as results:
        for task in tasks:
            results.write(json.dumps({"id": task["id"], "started": True}) + "\n")
            results.flush()
            faulthandler.dump_traceback_later(timeout, exit=True)
            try:
                out = run_one(task, settings, store)
            finally:
                faulthandler.cancel_dump_traceback_later()
            results.write(json.dumps(out, ensure_ascii=False) + "\n")
            results.flush()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
