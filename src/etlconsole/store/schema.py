"""State-store schema, migrated with PRAGMA user_version (one function per version).

Table names keep the original design's names so operators' SQL carries over.
"""

from __future__ import annotations

import sqlite3

from ..errors import UserError

MIGRATIONS = [
    """
    CREATE TABLE import_jobs (
        id TEXT PRIMARY KEY,
        pipeline_name TEXT NOT NULL,
        pipeline_file TEXT,
        pipeline_toml TEXT,
        source_path TEXT,
        source_fingerprint TEXT,          -- JSON: size, mtime_ns, sha256_head_tail
        dialect TEXT,                     -- JSON: encoding, delimiter, quote, header, notes
        destinations TEXT,                -- JSON list: kind, path, table, mode
        status TEXT NOT NULL CHECK (status IN
            ('pending','running','succeeded','failed','interrupted','rolled_back')),
        pid INTEGER,
        heartbeat_at TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        rows_read INTEGER NOT NULL DEFAULT 0,
        rows_loaded INTEGER NOT NULL DEFAULT 0,
        rows_rejected INTEGER NOT NULL DEFAULT 0,
        rows_warned INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER,
        bytes_read INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        peak_rss_mb REAL,
        elapsed_s REAL,
        phase_stats TEXT,                 -- JSON: per phase rows_in, rows_out, rejected, seconds
        settings TEXT,                    -- JSON: the PIPELINE_* values in force
        error TEXT
    );
    CREATE INDEX import_jobs_created ON import_jobs(created_at);
    CREATE TABLE pipeline_checkpoints (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        phase TEXT NOT NULL,
        checkpoint_data TEXT NOT NULL,    -- JSON: batch, last_row, counters, fingerprint
        row_count INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX pipeline_checkpoints_job ON pipeline_checkpoints(job_id, id);
    CREATE TABLE pipeline_batches (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        batch_number INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('PENDING','COMMITTED','RETRYING','FAILED','ROLLED_BACK')),
        row_start INTEGER,
        row_end INTEGER,
        rows_loaded INTEGER NOT NULL DEFAULT 0,
        rows_rejected INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        duration_ms REAL,
        error_details TEXT,               -- JSON
        processed_at TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (job_id, batch_number)
    );
    CREATE TABLE pipeline_rejects (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        batch_number INTEGER,
        row INTEGER,                      -- 1-based record number in the source (header excluded)
        phase TEXT NOT NULL,
        rule TEXT NOT NULL,
        column_name TEXT,
        message TEXT NOT NULL,
        "values" TEXT                     -- JSON: the row's values where it was rejected
    );
    CREATE INDEX pipeline_rejects_job ON pipeline_rejects(job_id, row);
    CREATE TABLE pipeline_metrics (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        at TEXT NOT NULL,
        elapsed_s REAL,
        rows_read INTEGER,
        rows_loaded INTEGER,
        rows_rejected INTEGER,
        rows_per_s REAL,
        rss_mb REAL,
        batch_size INTEGER,
        queue_depth INTEGER,
        retries INTEGER,
        bytes_read INTEGER
    );
    CREATE INDEX pipeline_metrics_job ON pipeline_metrics(job_id, id);
    CREATE TABLE pipeline_events (
        id INTEGER PRIMARY KEY,
        job_id TEXT REFERENCES import_jobs(id),
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        event TEXT NOT NULL,
        details TEXT                      -- JSON
    );
    CREATE INDEX pipeline_events_job ON pipeline_events(job_id, id);
    """,
    # 2: resume and rollback
    """
    ALTER TABLE import_jobs ADD COLUMN pid_started REAL;   -- create time of pid (pid reuse)
    ALTER TABLE import_jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE import_jobs ADD COLUMN resumable INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE import_jobs ADD COLUMN source_digest TEXT;  -- whole-file hash, when known
    ALTER TABLE pipeline_rejects ADD COLUMN phase_label TEXT;
    CREATE INDEX pipeline_rejects_batch ON pipeline_rejects(job_id, batch_number);
    """,
    # 3: honest figures. A job runs in segments (the run, then each resume): each is kept,
    # so a job's duration is the sum of its segments and its rates are per segment.
    # Checkpoints get a number of their own per job (1, 2, 3 ...), filled in for old ones.
    """
    CREATE TABLE pipeline_segments (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        number INTEGER NOT NULL,          -- 1 = the run, 2 = the first resume, ...
        kind TEXT NOT NULL,               -- run | resume | rerun | before (pre-v3 history)
        pid INTEGER,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        elapsed_s REAL,
        rows_at_start INTEGER NOT NULL DEFAULT 0,
        rows_at_end INTEGER,
        status TEXT,
        UNIQUE (job_id, number)
    );
    ALTER TABLE pipeline_metrics ADD COLUMN segment INTEGER;
    ALTER TABLE pipeline_metrics ADD COLUMN segment_elapsed_s REAL;
    ALTER TABLE pipeline_metrics ADD COLUMN segment_rows INTEGER;
    ALTER TABLE pipeline_metrics ADD COLUMN segment_bytes INTEGER;
    ALTER TABLE pipeline_checkpoints ADD COLUMN number INTEGER;
    UPDATE pipeline_checkpoints SET number = (
        SELECT count(*) FROM pipeline_checkpoints c WHERE c.job_id = pipeline_checkpoints.job_id
        AND c.id <= pipeline_checkpoints.id);
    """,
    # 4: fixing and replaying rejects (issue 16, ADR 0016)
    """
    -- source: JSON, the record's fields as a replay last gave them
    ALTER TABLE pipeline_rejects ADD COLUMN source TEXT;
    ALTER TABLE pipeline_rejects ADD COLUMN replay INTEGER;      -- the replay that gave the current reason
    -- replay_batch: a replay batch taking the row (until it commits)
    ALTER TABLE pipeline_rejects ADD COLUMN replay_batch INTEGER;
    ALTER TABLE pipeline_rejects ADD COLUMN resolved_at TEXT;    -- loaded by a replay: when ...
    ALTER TABLE pipeline_rejects ADD COLUMN resolved_by INTEGER; -- ... and by which (pipeline_replays.number)
    ALTER TABLE import_jobs ADD COLUMN rows_resolved INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pipeline_replays (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        number INTEGER NOT NULL,          -- 1, 2, ... per job
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','rolled_back')),
        origin TEXT,                      -- the fix file, or the --set/--where given
        pid INTEGER,
        pid_started REAL,
        rows_in INTEGER NOT NULL DEFAULT 0,
        rows_loaded INTEGER NOT NULL DEFAULT 0,
        rows_rejected INTEGER NOT NULL DEFAULT 0,
        rows_refused INTEGER NOT NULL DEFAULT 0,
        batch_first INTEGER,
        batch_last INTEGER,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT,
        UNIQUE (job_id, number)
    );
    """,
    # 5: the console reads only what changed: job rows by updated_at (set by every write
    # of StateStore to a job row), rejects by page in record order
    """
    ALTER TABLE import_jobs ADD COLUMN updated_at TEXT;
    UPDATE import_jobs SET updated_at = coalesce(heartbeat_at, finished_at, started_at, created_at);
    CREATE INDEX import_jobs_updated ON import_jobs(updated_at);
    CREATE INDEX pipeline_rejects_group ON pipeline_rejects(job_id, phase, rule, column_name, row);
    """,
    # 6: the head of the source each batch was read from (resume proves it unchanged)
    """
    ALTER TABLE pipeline_batches ADD COLUMN source_bytes INTEGER;   -- the first n bytes ...
    ALTER TABLE pipeline_batches ADD COLUMN source_sha256 TEXT;     -- ... and their hash
    """,
    # 7: the branch a reject belongs to, in its own column (issue 13): the store told the
    # main line's rejects from a branch's by parsing labels ("phase 5 (branch) > name >
    # phase 1 (load)"). Rows written before are filled from their label, the branch name
    # being the part after the first " > " (a name holding " > " itself was ambiguous
    # then, and is a best guess here; rows written from now on carry the engine's name).
    """
    ALTER TABLE pipeline_rejects ADD COLUMN branch TEXT;   -- NULL: the main line's reject
    UPDATE pipeline_rejects SET branch = substr(
            substr(phase_label, instr(phase_label, ' > ') + 3), 1,
            instr(substr(phase_label, instr(phase_label, ' > ') + 3), ' > ') - 1)
        WHERE phase_label LIKE '% > % > %';
    """,
    # 8: what reading a job's files learned of each (where it starts, its records, its
    # content's proof), a row per file. In the job's source_fingerprint, every file's end
    # rewrote the whole list: 0.6 MB for a drop of 2,000 files, which took 33.4 s then and
    # 22.5 s now (bench/README.md). The fingerprint keeps what the job knew when it began
    # (a job from before keeps its facts there); StateStore merges these into it on reading.
    """
    CREATE TABLE pipeline_files (
        job_id TEXT NOT NULL REFERENCES import_jobs(id),
        idx INTEGER NOT NULL,             -- the file's place in source_fingerprint.files
        first_record INTEGER,             -- the job's record number of its first record
        records INTEGER,
        content_bytes INTEGER,            -- the whole file's proof, when read to its end
        content_sha256 TEXT,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID;
    """,
]


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [x for x in out if x.strip(" ;\n")]


def migrate(db: sqlite3.Connection) -> None:
    """Apply missing migrations; safe when several processes open a new store at once
    (each migration reads the version and applies itself inside one write lock)."""
    for number, script in enumerate(MIGRATIONS, start=1):
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise UserError(f"the state store has schema version {version}, written by a "
                                f"newer etlconsole; this one knows up to {len(MIGRATIONS)}: "
                                "upgrade etlconsole, or give another --state")
            if version < number:
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
