"""An example etlconsole phase plugin.

``MaskEmail`` follows the phase contract with the ``etlconsole.Phase`` base class and
declared options; ``plain.Shout`` shows that a plain class works too. ``has_email_column``
is a ``when`` predicate: it gets an ``etlconsole.ConditionContext`` and returns a bool.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from etlconsole import ConditionContext, Option, Phase, PhaseResult, Rejects

__all__ = ["MaskEmail", "has_email_column", "big_file"]


class MaskEmail(Phase):
    """Mask e-mail addresses: keep the first letter (and the domain)."""

    name = "mask_email"
    description = "Mask e-mail addresses: d***@example.org (rows without an @ are rejected)."
    options = {
        "column": Option("string", "the e-mail column", required=True),
        "keep_domain": Option("bool", "keep the part after the @", default=True),
        "reject_invalid": Option("bool", "reject values without an @ instead of masking "
                                 "them whole", default=True),
    }

    def __init__(self, column: str, keep_domain: bool = True, reject_invalid: bool = True):
        self.column, self.keep_domain, self.reject_invalid = column, keep_domain, reject_invalid

    def setup(self, schema: pa.Schema) -> None:
        if self.column not in schema.names:
            from etlconsole.errors import SpecError
            raise SpecError(f"no column {self.column!r} to mask", key="column")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch | PhaseResult:
        i = batch.schema.get_field_index(self.column)
        values = batch.column(i)
        bad = pc.invert(pc.fill_null(pc.match_substring(values, "@"), True))
        rejects = None
        if self.reject_invalid and pc.any(bad).as_py():
            rejected = batch.filter(bad)
            n = rejected.num_rows
            rejects = Rejects(rejected, ["mask_email"] * n, [self.column] * n,
                              ["not an e-mail address (no @)"] * n)
            batch = batch.filter(pc.invert(bad))
            values = batch.column(i)
        replacement = r"\1***@\2" if self.keep_domain else r"\1***@***"
        masked = pc.replace_substring_regex(values, pattern=r"^(.)[^@]*@(.*)$",
                                            replacement=replacement)
        batch = batch.set_column(i, self.column, masked)
        return PhaseResult(batch, rejects) if rejects is not None else batch


def has_email_column(ctx: ConditionContext) -> bool:
    """`when` predicate: the phase's input has a column whose name contains 'email'."""
    return any("email" in c.lower() for c in ctx.columns)


def big_file(ctx: ConditionContext) -> bool:
    """`when` predicate: more than a million rows (estimated)."""
    return ctx.estimated_rows > 1_000_000
