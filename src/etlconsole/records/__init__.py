"""Typed records of the state store and of the library's results (issue 13, ADR 0023).

What the CLI prints and the console shows is built from these, not from dicts looked up
by string keys: each record knows its JSON (``to_json``: exactly what ``--json`` printed
before) and its text lines (``lines``), so there is one printer of a run summary, one of
a rollback, one rejects-CSV writer. The store may import this module (it imports nothing
from the engine); the engine's own typed results (``RollbackReport``, ``LedgerEntry``)
stay in ``engine/destinations/base.py`` and reach these records as their ``to_dict()``.

Records are frozen: a value read from the store or returned by a run is a snapshot.
"""

from .events import event_detail
from .jobs import Batch, Checkpoint, Job, JobDetails, PhaseLine, Segment, phase_lines
from .naming import named, set_destination_namer
from .rejects import REJECT_CSV_COLUMNS, Reject, write_rejects_csv
from .results import CleanupAction, FixFile, ReplaySummary, RollbackSummary, RunSummary
from .status import ACTIVE, UNFINISHED, BatchStatus, JobStatus, ReplayStatus, SegmentStatus

__all__ = ["ACTIVE", "REJECT_CSV_COLUMNS", "UNFINISHED", "Batch", "BatchStatus", "Checkpoint",
           "CleanupAction", "FixFile", "Job", "JobDetails", "JobStatus", "PhaseLine",
           "Reject", "ReplayStatus", "ReplaySummary", "event_detail",
           "RollbackSummary", "RunSummary", "Segment", "SegmentStatus", "phase_lines",
           "named", "set_destination_namer", "write_rejects_csv"]
