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
