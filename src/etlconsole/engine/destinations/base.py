"""The destination contract: where a job's batches land, each with its ledger entry.

A destination is one class (a subclass of ``Destination``) registered under the
entry-point group ``etlconsole.destinations`` (see ``destinations/__init__.py``). The
engine only ever talks to it through this class: nothing outside the destinations package
knows which kind it holds (ADR 0014).

A job uses two halves of it:

- **the write half**, on an instance made for one job and one location
  (``check`` → ``open`` → ``prepare``/``write`` per batch → ``publish`` → ``close``);
- **the recovery half**, as class methods that need no open job: ``read_ledger``,
  ``rollback`` (whole job or after a batch, with a dry run), ``leftovers`` and
  ``remove_leftover`` (for cleanup). They work from what a job record keeps of its
  destination (kind and path), so a job can be resumed, rolled back or cleaned up by a
  process that never wrote to it.

The central promise is the ledger: ``write`` commits a batch's rows *and* its ledger
entry in one destination transaction (or an equivalent: a folder commits with a rename),
so what ``read_ledger`` returns is exactly what the destination holds, after any crash.

Errors are classified once, by the destination that knows its driver
(``classify``): ``TransientDestinationError`` (retrying may succeed: a lock, a busy
file) or ``TerminalDestinationError`` (it will not). ``retrying`` is the one retry loop.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

import pyarrow as pa

from ...errors import JobFailed, SpecError, UserError

if TYPE_CHECKING:
    from ..phases.load import Load

T = TypeVar("T")
MODES = ("append", "atomic", "replace")


# -- errors -------------------------------------------------------------------------
class TransientDestinationError(Exception):
    """Mixin: retrying the same operation later may succeed (a lock, a busy database).
    Catch it, or ``TerminalDestinationError``, to act on the class of any destination's
    error (as dlt's ``TransientException``/``TerminalException``)."""


class TerminalDestinationError(Exception):
    """Mixin: retrying cannot help (a missing column, a full disk, a refused row)."""


class DestinationError(JobFailed):
    """A destination failed after the job started writing: the job fails, resumably."""


class DestinationBusy(TransientDestinationError, DestinationError):
    """Locked, busy or briefly unreachable; the write is rolled back and retried."""


class DestinationFailed(TerminalDestinationError, DestinationError):
    """Anything a retry would not fix."""


class DestinationUnusable(UserError):
    """``check`` found the destination cannot take this job (exit 2, nothing written)."""


# -- typed results --------------------------------------------------------------------
@dataclass(frozen=True)
class RefusedRow:
    """A row the destination refused, with the database's reason.

    Attributes:
        index: the row's position in the batch given to ``write``.
        rule: ``not_null``, ``unique``, ``check``, ``foreign_key``, … or ``database``.
        column: the column the database named, or None (CHECK constraints name none).
        message: the database's own words.
    """

    index: int
    rule: str
    column: str | None
    message: str


class RowRefused(TerminalDestinationError, DestinationError):
    """The destination refused a row and the job said not to isolate it
    (``on_error = "fail"`` on the load); nothing of the batch was committed."""

    def __init__(self, row: RefusedRow):
        super().__init__(row.message)
        self.row = row
        self.index, self.message = row.index, row.message


@dataclass
class WriteResult:
    """What writing one batch took: attempts (1 + retries) and the rows refused."""

    attempts: int
    refused: list[RefusedRow] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerEntry:
    """One committed batch of one job, as the destination's own ledger records it.

    Attributes:
        batch: the batch number (1, 2, … per job).
        row_start, row_end: the source records the batch covers (1-based, inclusive).
        rows: rows the destination holds for it (refused rows not counted).
        where: the table (or folder, or file) holding it.
    """

    batch: int
    row_start: int | None
    row_end: int | None
    rows: int
    where: str

    def to_dict(self) -> dict[str, Any]:
        """The shape the state store reconciles with (``table_name`` kept for it)."""
        return {"table_name": self.where, "batch": self.batch, "row_start": self.row_start,
                "row_end": self.row_end, "rows": self.rows}


@dataclass
class RollbackReport:
    """What a rollback removed (or, in a dry run, would remove) from one destination."""

    path: str
    kind: str
    rows: dict[str, int] = field(default_factory=dict)    # table/folder -> rows removed
    batches: int = 0
    dropped: list[str] = field(default_factory=list)      # tables, folders, columns
    restored: list[str] = field(default_factory=list)     # what a replace had replaced

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Leftover:
    """Something a job left in the destination outside its data (for ``cleanup``).

    Attributes:
        name: the table or folder, as ``remove_leftover`` takes it.
        job_id: the job it belongs to.
        what: ``stage`` (rows waiting for a publish) or ``replaced`` (a backup of what a
            ``replace`` job replaced).
    """

    name: str
    job_id: str
    what: str


# -- the contract ----------------------------------------------------------------------
class Destination(ABC):
    """Base class of every destination.

    Capability flags (class attributes) tell the planner what a kind accepts without
    opening it:

    Attributes:
        kind: the name pipelines use (``destination = "sqlite"``).
        title: how messages name it ("SQLite").
        has_tables: the load names a ``table`` (False: ``path`` alone is the target).
        refuses_rows: the destination can refuse single rows (constraints); ``write``
            then isolates them, or raises ``RowRefused`` when ``isolate`` is False.
        lineage_columns: columns the destination adds to every row (job and batch).
        max_columns: the most columns a row may have, the added ones included (None: no
            limit).
        folds_case: column names differing only by case are the same column.
        atomic_publish: ``publish`` is one transaction (False: several renames that a
            resume finishes or a rollback undoes).
        locator: the load option naming the destination: ``path`` (a file or folder,
            relative to the pipeline file) or ``url`` (a server; see ``locate``).
        parallel_writers: several processes may write batches of one job at once (the
            Dask executor needs it; ADR 0026).
        shared_ledger: one ledger holds the entries of every table a job writes at the
            same ``path`` (a database's ledger table), each naming its table or, until an
            atomic job publishes, its stage: ``owns`` tells a target's own.
    """

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    has_tables: ClassVar[bool] = False
    refuses_rows: ClassVar[bool] = False
    lineage_columns: ClassVar[tuple[str, ...]] = ()
    max_columns: ClassVar[int | None] = None
    folds_case: ClassVar[bool] = False
    atomic_publish: ClassVar[bool] = False
    locator: ClassVar[str] = "path"
    parallel_writers: ClassVar[bool] = False
    shared_ledger: ClassVar[bool] = False

    def __init__(self, path: Path, job_id: str, *, table: str | None = None,
                 mode: str = "append", timeout_ms: int = 30_000, retry_attempts: int = 3,
                 retry_delay_ms: int = 200, isolate: bool = True):
        """Args:
            path: the database file or dataset folder.
            job_id: the job whose batches this instance writes.
            table: the target table (destinations with ``has_tables``).
            mode: ``append``, ``atomic`` or ``replace``.
            timeout_ms: the longest wait for a lock.
            retry_attempts, retry_delay_ms: retries of transient errors, first delay.
            isolate: refuse bad rows one by one (False: a refused row fails the batch).
        """
        self.path, self.job_id, self.table, self.mode = Path(path), job_id, table, mode
        # the table its batches go to (an atomic or replace job's stage, until published)
        self.write_table = table
        self.timeout_ms = timeout_ms
        self.retry_attempts, self.retry_delay_ms = retry_attempts, retry_delay_ms
        self.isolate = isolate
        self.retries = 0            # transient errors retried so far (the job's summary)

    @classmethod
    def for_load(cls, load: Load, path: Path, job_id: str, settings: Any) -> Destination:
        """The destination of a load phase, with the job's settings."""
        return cls(path, job_id, table=load.table, mode=load.mode,
                   timeout_ms=settings.transaction_timeout_ms,
                   retry_attempts=settings.batch_retry_attempts,
                   retry_delay_ms=settings.batch_retry_delay_ms,
                   isolate=load.on_error != "fail")

    @classmethod
    def locate(cls, load: Load, dest: str | Path | None, resolve: Callable[[str], Path]) -> Path:
        """Where a load phase writes, as the job record keeps it: ``--dest`` (``dest``) or
        the load's own option. The default resolves a path against the pipeline file
        (``resolve``); a server destination returns its URL (without a password).

        Raises:
            UserError: the location is not one this kind accepts (exit 2).
        """
        return Path(dest).resolve() if dest else resolve(load.path)

    @classmethod
    def where(cls, path: Path) -> str:
        """How plans and messages name the location ``locate`` returned."""
        return str(path)

    @classmethod
    def named(cls, path: Path | str, table: str | None) -> tuple[str, str | None]:
        """How jobs, rollback previews and ``show`` name a recorded location and table:
        (the location, the table still to be named after it). A file names its path and
        leaves the table; a server kind may name both at once (``postgres://host/db s.t``)."""
        return str(path), table

    def describe(self) -> dict[str, Any]:
        """What the job record keeps (kind, path, table, mode): enough for the recovery
        half to find the job's effect again."""
        return {"kind": self.kind, "path": str(self.path), "table": self.table, "mode": self.mode}

    # -- planning ------------------------------------------------------------------------
    @classmethod
    def check_columns(cls, names: list[str], *, table: str | None, source: Path) -> None:
        """Refuse, before the job starts, columns this kind cannot hold.

        Args:
            names: the columns to load (without the engine's ``_etl_`` ones).
            table: the load's table, if any.
            source: the source file, for the message.
        Raises:
            UserError: too many columns; SpecError: two names the destination would merge.
        """
        if cls.max_columns is not None:
            room = cls.max_columns - len(cls.lineage_columns)
            if len(names) > room:
                into = f" into table {table!r}" if table else ""
                raise UserError(f"{source}: {len(names)} columns to load{into}, but "
                                f"{cls.title} allows at most {room} (plus etlconsole's "
                                f"{len(cls.lineage_columns)}); choose fewer with a map phase")
        if cls.folds_case:
            folded = [n.casefold() for n in names]
            clash = next((n for n in names if folded.count(n.casefold()) > 1), None)
            if clash:
                raise SpecError(f"column {clash!r} would be loaded twice ({cls.title} ignores "
                                "the case of column names); rename one of them", key="phases")

    # -- the write half ------------------------------------------------------------------
    @abstractmethod
    def check(self, schema: pa.Schema) -> None:
        """Before anything is written: is the destination reachable, writable and
        compatible with ``schema``? Writes nothing that stays.

        Args:
            schema: the columns the job will write.
        Raises:
            DestinationUnusable: with one line saying what and where (exit 2).
        """

    @abstractmethod
    def open(self, schema: pa.Schema) -> None:
        """Connect and create what the job needs (table, ledger, staging) if missing.

        Raises:
            DestinationError: it cannot be opened (the job fails, resumably).
        """

    def prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch as ``write`` will store it (e.g. dates as ISO text). Called outside
        the loader thread, so vectorized conversions do not hold up the writes; must be
        pure (``write`` may get the result of an earlier call)."""
        return batch

    @abstractmethod
    def write(self, batch_number: int, batch: pa.RecordBatch, row_start: int, row_end: int, *,
              before_commit: Callable[[list[RefusedRow]], None] | None = None) -> WriteResult:
        """Commit one batch with its ledger entry, in one destination transaction.

        Args:
            batch_number: the batch's number in the job (a resume writes a number again
                only if its ledger entry is missing).
            batch: the rows (``prepare``d), without the engine's ``_etl_`` columns.
            row_start, row_end: the source records the batch covers.
            before_commit: called with the refused rows inside the transaction, just
                before the commit, so what it records is kept exactly when the batch is.
        Returns:
            WriteResult: attempts and the rows refused (left out; the rest committed).
        Raises:
            RowRefused: a row was refused and ``isolate`` is False; nothing committed.
            DestinationError: after the retries of a transient error, or a terminal one;
                nothing of the batch committed.
        """

    def publish(self, schema: pa.Schema) -> None:  # noqa: B027 - append has nothing to do
        """The end of a successful ``atomic`` or ``replace`` job: make the staged batches
        the target's. Idempotent (a resume after a publish finds nothing to do).

        Raises:
            DestinationError: the publish failed; the job is resumable.
        """

    def close(self) -> None:  # noqa: B027 - nothing held by default
        """Release connections; what was not committed is rolled back."""

    def ledger(self) -> list[LedgerEntry]:
        """This target's committed batches here: ``read_ledger`` for the open job, less
        the entries of its other targets in the same database (see ``owns``)."""
        return [e for e in type(self).read_ledger(self.path, self.job_id) if self.owns(e)]

    def owns(self, entry: LedgerEntry) -> bool:
        """Is ``entry`` this target's? With a ``shared_ledger``, only when it names the
        target's table or stage: when two branches load two tables of one database, a batch
        one table committed before a kill must not count as held by the other, or resume
        skips it there."""
        return not self.shared_ledger or entry.where in self.ledger_names()

    def ledger_names(self) -> tuple[str, ...]:
        """The names this target's entries carry in a shared ledger: its table, and its
        stage until an atomic or replace job publishes."""
        return tuple(dict.fromkeys(n for n in (self.table, self.write_table) if n))

    def ledger_of(self, first: int, last: int) -> list[LedgerEntry]:
        """This job's committed batches numbered ``first`` to ``last`` (a Dask part's:
        parts.PART_STRIDE). By default the whole ledger, filtered; a destination whose
        ledger is read per entry overrides it, or every part of a job of thousands of
        files would read the entries of all the parts before it."""
        return [e for e in self.ledger() if first <= e.batch <= last]

    # -- errors and retries ----------------------------------------------------------------
    @abstractmethod
    def classify(self, exc: Exception) -> DestinationError:
        """The one place a destination's driver errors are sorted: return a
        ``TransientDestinationError`` or ``TerminalDestinationError`` (both
        ``DestinationError``) with a one-line message naming the destination."""

    def rolled_back(self) -> None:  # noqa: B027 - nothing to undo by default
        """Undo the failed attempt's uncommitted work before a retry (e.g. ROLLBACK)."""

    def retrying(self, fn: Callable[..., T], *args: Any) -> tuple[int, T]:
        """Run ``fn(*args)`` (one destination transaction); retry transient errors with
        exponential backoff and jitter, after ``rolled_back``.

        Returns:
            (attempts, what fn returned).
        Raises:
            DestinationError: terminal, or transient after ``retry_attempts`` retries.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt, fn(*args)
            except RowRefused:
                self.rolled_back()
                raise
            except Exception as exc:  # driver errors come in many classes: classify them
                self.rolled_back()
                error = exc if isinstance(exc, DestinationError) else self.classify(exc)
                if attempt > self.retry_attempts or not isinstance(error, TransientDestinationError):
                    raise error from exc
                self.retries += 1
                delay = self.retry_delay_ms / 1000 * 2 ** (attempt - 1)
                time.sleep(delay * random.uniform(0.5, 1.5))

    # -- the recovery half ------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def read_ledger(cls, path: Path, job_id: str) -> list[LedgerEntry]:
        """The job's committed batches in the destination at ``path``, by batch number.

        Returns an empty list when the destination or its ledger does not exist. Never
        creates anything."""

    @classmethod
    @abstractmethod
    def rollback(cls, path: Path, job_id: str, *, after_batch: int | None = None,
                 dry_run: bool = False, timeout_ms: int = 30_000) -> RollbackReport:
        """Undo the job's effect: all of it, or the batches after ``after_batch``.

        A whole rollback also undoes what the job created (its tables or folder, when
        nothing else is in them), restores what a ``replace`` replaced and drops its
        staging. Must be safe to run again after it was itself interrupted.

        Args:
            path: the destination.
            job_id: the job.
            after_batch: keep batches up to this one (None: remove everything).
            dry_run: report what would be removed, change nothing.
            timeout_ms: the longest wait for a lock.
        Returns:
            RollbackReport.
        Raises:
            DestinationError: the rollback failed; what was done is whole (one
                transaction) or finished by running it again.
        """

    @classmethod
    def leftovers(cls, path: Path) -> list[Leftover]:
        """Staging and replaced-data backups of any job in the destination (cleanup
        decides which are orphaned or expired)."""
        return []

    @classmethod
    def remove_leftover(cls, path: Path, leftover: Leftover, timeout_ms: int = 30_000) -> None:
        """Remove one of ``leftovers``."""
        raise NotImplementedError(f"{cls.kind} has no leftovers")


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the one test of writability that holds for
    every reason a write can fail (permissions, a read-only mount, an immutable folder,
    a full disk) and for every user, root included (``os.access`` says yes to root).

    Raises:
        DestinationUnusable: one line naming the folder and the system's reason.
    """
    probe = folder / f".etl-probe-{uuid.uuid4().hex[:12]}"
    try:
        fd = os.open(str(probe), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise DestinationUnusable(f"{folder}: cannot write in the {what} folder "
                                  f"({exc.strerror or exc}); nothing was written") from None
    os.close(fd)
    os.unlink(probe)
