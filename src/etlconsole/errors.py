"""Exceptions that carry their own exit code.

A ``UserError`` is a mistake the operator can fix (bad pipeline file, missing source,
nonsense setting). It is found before anything is written and prints as one line on
stderr with exit code 2 — never a traceback.
"""


class UserError(Exception):
    """A problem with the operator's input; exit code 2, nothing touched."""

    exit_code = 2


class SpecError(UserError):
    """A mistake in a pipeline file, located by file, phase and key."""

    def __init__(self, message: str, *, file: str | None = None, phase: str | None = None,
                 key: str | None = None):
        self.file, self.phase, self.key, self.detail = file, phase, key, message
        super().__init__(self._render())

    def _render(self) -> str:
        where = [w for w in (self.file, self.phase, self.key) if w]
        return ": ".join([*where, self.detail])

    def located(self, *, file: str | None = None, phase: str | None = None) -> "SpecError":
        """The same error with the location filled in by an outer layer."""
        return SpecError(self.detail, file=self.file or file, phase=self.phase or phase,
                         key=self.key)


class JobFailed(Exception):
    """The job stopped after it started writing; its state is kept and it is resumable."""

    exit_code = 1


class DiskFull(JobFailed):
    """A disk etlconsole writes its own files to (the state store, a job's workspace) is
    full. The job stops at once, resumably: what its destinations committed stays, and
    the state store is reconciled with their ledgers on resume."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a disk (or a quota) is full: SQLite's SQLITE_FULL, or ENOSPC /
    EDQUOT from the operating system."""
    import errno
    import sqlite3
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(exc))
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
