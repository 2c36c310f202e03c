"""Environment settings (``PIPELINE_*``), read and validated in one place.

Every setting is named after what it controls; a bad value is a ``UserError`` naming the
variable, raised before a job starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError


@dataclass(frozen=True)
class Settings:
    max_memory_mb: int = 512            # PIPELINE_MAX_MEMORY_MB: RSS budget of the engine process
    chunk_size: int = 32_768            # PIPELINE_CHUNK_SIZE: max rows per chunk through the phases
    stream_high_water_mark: int = 256 << 10  # PIPELINE_STREAM_HIGH_WATER_MARK: reader block size, bytes
    batch_size_min: int = 1_000         # PIPELINE_BATCH_SIZE_MIN: smallest load batch (rows)
    batch_size_max: int = 50_000        # PIPELINE_BATCH_SIZE_MAX: largest load batch (rows)
    # PIPELINE_BATCH_RETRY_ATTEMPTS: tries after the first, transient errors only
    batch_retry_attempts: int = 3
    batch_retry_delay_ms: int = 200     # PIPELINE_BATCH_RETRY_DELAY_MS: first backoff delay, doubled each try
    checkpoint_interval: int = 100_000  # PIPELINE_CHECKPOINT_INTERVAL: rows between checkpoints
    transaction_timeout_ms: int = 30_000  # PIPELINE_TRANSACTION_TIMEOUT_MS: max wait for a destination lock
    rollback_retention_hours: int = 168   # PIPELINE_ROLLBACK_RETENTION_HOURS: keep rollback data this long
    # PIPELINE_PART_SIZE_KB: Dask byte ranges of a large plain file, this size (0: none);
    # unset, as many as the cluster's workers need (executors.part_files)
    part_size_kb: int | None = None
    state_db: str = ".etlconsole/state.db"  # PIPELINE_STATE_DB: the state store

    @property
    def state_path(self) -> Path:
        return Path(self.state_db)


# variable -> (field, smallest accepted value); state_db is a path, not a number.
_NUMERIC = {
    "PIPELINE_MAX_MEMORY_MB": ("max_memory_mb", 64),
    "PIPELINE_CHUNK_SIZE": ("chunk_size", 1),
    "PIPELINE_STREAM_HIGH_WATER_MARK": ("stream_high_water_mark", 4096),
    "PIPELINE_BATCH_SIZE_MIN": ("batch_size_min", 1),
    "PIPELINE_BATCH_SIZE_MAX": ("batch_size_max", 1),
    "PIPELINE_BATCH_RETRY_ATTEMPTS": ("batch_retry_attempts", 0),
    "PIPELINE_BATCH_RETRY_DELAY_MS": ("batch_retry_delay_ms", 0),
    "PIPELINE_CHECKPOINT_INTERVAL": ("checkpoint_interval", 1),
    "PIPELINE_TRANSACTION_TIMEOUT_MS": ("transaction_timeout_ms", 0),
    "PIPELINE_ROLLBACK_RETENTION_HOURS": ("rollback_retention_hours", 0),
    "PIPELINE_PART_SIZE_KB": ("part_size_kb", 0),
}

ENV_VARS = (*_NUMERIC, "PIPELINE_STATE_DB")


def describe() -> list[tuple[str, object, str]]:
    """(variable, default, meaning) for every setting, for `--help` and the README."""
    docs = {
        "max_memory_mb": "RSS budget of the engine process in MB",
        "chunk_size": "max rows per chunk passed through the phases",
        "stream_high_water_mark": "CSV reader block size in bytes",
        "batch_size_min": "smallest load batch in rows",
        "batch_size_max": "largest load batch in rows",
        "batch_retry_attempts": "retries of a batch after a transient error",
        "batch_retry_delay_ms": "first retry delay in ms (doubles each retry, with jitter)",
        "checkpoint_interval": "rows between checkpoints",
        "transaction_timeout_ms": "longest wait for a destination lock in ms",
        "rollback_retention_hours": "hours that rollback data of failed jobs is kept",
        "part_size_kb": "Dask executor: a plain file larger than this is read in byte ranges of "
                        "this size, one task each (0: one task per file; unset: a large file "
                        "is cut only as far as the cluster's workers need parts, ranges of at "
                        "least 32 MB)",
        "state_db": "path of the state store",
    }
    defaults = Settings()
    by_field = {f: v for v, (f, _) in _NUMERIC.items()} | {"state_db": "PIPELINE_STATE_DB"}
    return [(by_field[f.name], getattr(defaults, f.name), docs[f.name]) for f in fields(Settings)]


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Settings from the environment; raises UserError naming the first bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, (field, minimum) in _NUMERIC.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        text = raw.strip()
        if not re.fullmatch(r"-?[0-9]+(_[0-9]+)*", text):
            raise UserError(f"{var}={raw!r} is not a whole number")
        value = int(text)
        if value < minimum:
            raise UserError(f"{var}={value} is too small (at least {minimum})")
        values[field] = value
    if env.get("PIPELINE_STATE_DB"):
        values["state_db"] = env["PIPELINE_STATE_DB"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    if settings.batch_size_min > settings.batch_size_max:
        raise UserError(
            f"PIPELINE_BATCH_SIZE_MIN={settings.batch_size_min} is larger than "
            f"PIPELINE_BATCH_SIZE_MAX={settings.batch_size_max}")
    return settings
