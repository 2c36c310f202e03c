"""The state store: one SQLite file (WAL) that the engine writes and the console reads."""

from .store import StateStore, new_job_id

__all__ = ["StateStore", "new_job_id"]
