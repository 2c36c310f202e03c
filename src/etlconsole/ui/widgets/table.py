"""A DataTable updated in place by row key: the cursor stays on its row, never jumps."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from ..format import text


class LiveTable(DataTable):
    """``sync(rows)`` makes the table hold exactly ``rows`` ((key, cells) pairs) in order.

    Cells that did not change are not touched; rows are added and removed by key; only
    when the order itself changes is the table rebuilt, and then the cursor goes back to
    the row key it was on. Plain values become ``Text`` so data is never read as markup.
    """

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs):
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._columns_spec = list(columns)
        self._cells: dict[str, tuple] = {}
        self._order: list[str] = []
        self._cursor_after: str | None = None     # the row the cursor was on before set_columns

    def on_mount(self) -> None:
        for label, key in self._columns_spec:
            self.add_column(label, key=key)

    def set_columns(self, columns: Sequence[tuple[str, str]]) -> bool:
        """Other columns (e.g. a column a job of many files adds): the table is emptied, the
        next ``sync`` fills it again. Returns False when they are the columns it has."""
        columns = list(columns)
        if columns == self._columns_spec:
            return False
        self._columns_spec = columns
        self._cursor_after = self.cursor_key      # the next sync puts the cursor back there
        if self.is_mounted:
            self.clear(columns=True)
            for label, key in columns:
                self.add_column(label, key=key)
        self._cells, self._order = {}, []
        return True

    def _update_dimensions(self, new_rows) -> None:
        super()._update_dimensions(new_rows)
        # DataTable measures new rows at idle time but keeps the lines it rendered before
        # (cached under a counter this step does not bump): rows added while the app was
        # busy would show header-wide columns until the next change. Found by a snapshot
        # test on a loaded machine; textual is pinned to 8.2.x.
        self._update_count += 1
        self.refresh()

    @property
    def cursor_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def sync(self, rows: Sequence[tuple[str, Sequence]]) -> bool:
        """Returns True when the highlighted row changed identity (e.g. it was removed)."""
        before = self.cursor_key or self._cursor_after
        self._cursor_after = None
        cells = {key: tuple(c if isinstance(c, Text) else text(c) for c in row) for key, row in rows}
        order = [key for key, _ in rows]
        keys = [k for _, k in self._columns_spec]
        kept = [k for k in self._order if k in cells]
        new = [k for k in order if k not in self._cells]
        if kept + new == order:
            for key in self._order:
                if key not in cells:
                    self.remove_row(key)
            for key in kept:
                if cells[key] != self._cells[key]:
                    for col, old, value in zip(keys, self._cells[key], cells[key], strict=False):
                        if old != value:
                            self.update_cell(key, col, value, update_width=True)
            for key in new:
                self.add_row(*cells[key], key=key)
        else:
            self.clear()
            for key in order:
                self.add_row(*cells[key], key=key)
        self._cells, self._order = cells, order
        if before in cells:
            index = order.index(before)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
        return self.cursor_key != before
