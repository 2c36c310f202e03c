"""The status enums of jobs, batches, replays and run segments."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status. A ``str`` enum: the store's text, the JSON and every comparison
    with a plain string stay what they were (``JobStatus.SUCCEEDED == "succeeded"``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ROLLED_BACK = "rolled_back"

    @property
    def active(self) -> bool:
        """A process is (or claims to be) working on the job."""
        return self in ACTIVE

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for a job that ended so: 0 only when it succeeded."""
        return 0 if self is JobStatus.SUCCEEDED else 1


ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.PENDING})
# Ended without success: what cleanup may tidy after the retention period.
UNFINISHED = frozenset({JobStatus.FAILED, JobStatus.INTERRUPTED})


class BatchStatus(StrEnum):
    """A load batch's status (upper case in the store since its first schema)."""

    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RETRYING = "RETRYING"       # allowed by the schema since its first version
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"


class ReplayStatus(StrEnum):
    """A replay's status (``pipeline_replays``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class SegmentStatus(StrEnum):
    """How a run segment ended: a job status, or ``killed`` (its process died)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"
