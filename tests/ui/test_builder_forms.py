"""The options form of every phase type: as the demo pipeline writes it, freshly added
with no options, and a plugin's (declared options, and a plain class without them).
Each: open (never a crash), edit one value, apply, save, read the file back."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Select, Switch, TextArea

from etlconsole.spec import load_spec
from etlconsole.ui.pipeline_edit import _leading_comments, split_phases
from etlconsole.ui.screens.modals import AddPhaseModal
from etlconsole.ui.screens.options_form import OptionsForm

from .helpers import column, wait_for

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "etlconsole-example-plugin" / "src"
DEMO = ["clean", "validate", "transform", "map", "load"]

# phase index in the demo pipeline -> (widget, value set, option, value saved)
DEMO_EDITS = {
    "clean": ("null_values", '"", "NULL"', "null_values", ["", "NULL"]),
    "validate": ("on_error", "warn", "on_error", "warn"),
    "transform": ("derive", 'total = "quantity * unit_price"', "derive",
                  {"total": "quantity * unit_price"}),
    "map": ("columns", 'order_id = "id"\ntotal = "total"', "columns",
            {"order_id": "id", "total": "total"}),
    "load": ("mode", "atomic", "mode", "atomic"),
}
# freshly added phase type -> edits (widget, value) and what the saved phase holds
FRESH_EDITS = {
    "clean": ([("trim", True), ("lowercase", "customer_email, country")],
              {"trim": True, "lowercase": ["customer_email", "country"]}),
    "validate": ([("rules", '{ column = "order_id", required = true }'), ("on_error", "fail")],
                 {"rules": [{"column": "order_id", "required": True}], "on_error": "fail"}),
    "transform": ([("cast", "quantity = \"int64\""), ("_checkpoint", True)],
                  {"cast": {"quantity": "int64"}, "checkpoint": True}),
    "map": ([("columns", 'order_id = "id", status = "state"'), ("_when", 'env = "MAP"')],
            {"columns": {"order_id": "id", "status": "state"}, "when": {"env": "MAP"}}),
    "load": ([("path", "other.db"), ("table", "t")],
             {"path": "other.db", "table": "t"}),
    "branch": ([("branches", '{ name = "all", phases = [{ type = "load", path = "b.db", '
                             'table = "orders" }] }')],
               {"branches": [{"name": "all", "phases": [{"type": "load", "path": "b.db",
                                                         "table": "orders"}]}]}),
}


def set_value(form: OptionsForm, name: str, value) -> None:
    widget = form.query_one(f"#opt-{name}")
    if isinstance(widget, (Switch, Select)):
        widget.value = value
    elif isinstance(widget, TextArea):
        widget.text = value
    else:
        assert isinstance(widget, Input)
        widget.value = value


async def open_form(pilot, screen) -> OptionsForm:
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, OptionsForm), what="the form")
    return pilot.app.screen


async def apply_and_save(pilot, screen, form) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()
    assert pilot.app.screen is screen, form.query_one("#form-error").content
    await pilot.press("ctrl+s")
    assert not screen.editor.dirty


def saved_phases(path: Path) -> list[dict]:
    return tomllib.loads(path.read_text(encoding="utf-8"))["phases"]


async def builder(pilot):
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.checks >= 1, what="first check")
    return screen


@pytest.mark.parametrize("phase_type", DEMO)
async def test_edit_each_phase_of_the_demo_pipeline(ws, phase_type):
    before = ws.pipeline.read_text(encoding="utf-8")
    index = DEMO.index(phase_type)
    widget, typed, key, value = DEMO_EDITS[phase_type]
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        await pilot.press(*["down"] * index)
        form = await open_form(pilot, screen)
        set_value(form, widget, typed)
        await apply_and_save(pilot, screen, form)
    phases = saved_phases(ws.pipeline)
    assert phases[index][key] == value
    old = tomllib.loads(before)["phases"]
    assert [p for i, p in enumerate(phases) if i != index] == \
        [p for i, p in enumerate(old) if i != index]
    # the other phases' text (with their comments) is untouched, byte for byte
    pieces, after = split_phases(before)[1], split_phases(ws.pipeline.read_text())[1]
    for i in range(len(pieces)):
        if i != index:
            assert after[i].rstrip("\n") == pieces[i].rstrip("\n")
    assert after[index].startswith(_leading_comments(pieces[index]) + "[[phases]]")


@pytest.mark.parametrize("phase_type", list(FRESH_EDITS))
async def test_edit_a_freshly_added_phase_of_each_type(ws, phase_type):
    edits, expected = FRESH_EDITS[phase_type]
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AddPhaseModal))
        options = pilot.app.screen.query_one(OptionList)
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = names.index(phase_type)
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        at = screen.index
        # after the selected clean; a load or branch cannot go before the rest
        assert at == (5 if phase_type in ("load", "branch") else 1)
        assert column(screen.query_one("#b-phases"), 1)[at] == phase_type
        form = await open_form(pilot, screen)             # no options: no crash
        for name, value in edits:
            set_value(form, name, value)
        await apply_and_save(pilot, screen, form)
    saved = saved_phases(ws.pipeline)[at]
    assert saved == {"type": phase_type, **expected}


async def test_choices_not_set_show_their_default(ws):
    ws.pipeline.write_text(ws.pipeline.read_text().replace('on_error = "reject"\n', "")
                           .replace('mode = "append"\n', ""), encoding="utf-8")
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        for index, name, default in ((1, "on_error", "reject"), (4, "mode", "append")):
            screen.query_one("#b-phases").move_cursor(row=index)
            form = await open_form(pilot, screen)
            assert form.query_one(f"#opt-{name}", Select).value == default
            await pilot.press("ctrl+s")                   # unchanged: nothing to save
            await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert not screen.editor.dirty


PLUGIN_PIPELINE = """name = "masked"

[source]
path = "orders.csv"

# mask before anything else
[[phases]]
type = "etlconsole_example_plugin:MaskEmail"
column = "customer_email"

[[phases]]
type = "etlconsole_example_plugin.plain:Shout"
column = "status"

[[phases]]
type = "load"
path = "warehouse.db"
table = "orders"
"""


async def test_edit_plugin_phases(ws, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    ws.pipeline.write_text(PLUGIN_PIPELINE, encoding="utf-8")
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        form = await open_form(pilot, screen)             # declared options
        assert form.query_one("#opt-column", Input).value == "customer_email"
        assert form.query_one("#opt-keep_domain", Switch).value is True   # its default
        set_value(form, "keep_domain", False)
        await apply_and_save(pilot, screen, form)
        await pilot.press("down")
        form = await open_form(pilot, screen)             # a plain class: TOML lines
        area = form.query_one("#opt-__options__", TextArea)
        assert area.text == 'column = "status"'
        area.text = 'column = "status"\nsuffix = "?"'
        await apply_and_save(pilot, screen, form)
    phases = saved_phases(ws.pipeline)
    assert phases[0] == {"type": "etlconsole_example_plugin:MaskEmail",
                         "column": "customer_email", "keep_domain": False}
    assert phases[1]["suffix"] == "?"
    assert "# mask before anything else\n[[phases]]" in ws.pipeline.read_text()
    load_spec(ws.pipeline)


async def test_form_errors_name_the_option_and_the_position(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        await pilot.press("down", "down")
        form = await open_form(pilot, screen)
        set_value(form, "derive", "total = quantity * unit_price")
        await pilot.press("ctrl+s")
        error = str(form.query_one("#form-error").content)
        assert error.startswith("derive: ") and "line 1, column 9" in error
        assert "values need quotes" in error
        set_value(form, "derive", 'total = "quantity * unit_price"')
        set_value(form, "_when", "min_rows = -1")
        await pilot.press("ctrl+s")
        assert pilot.app.screen is form
        assert "when.min_rows" in str(form.query_one("#form-error").content)
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)


EVERY_OPTION = """name = "every"

[source]
path = "orders.csv"

[[phases]]
type = "clean"
when = { not = { env = "SKIP_CLEAN" } }
trim = true
null_values = ["", "NULL"]
lowercase = ["customer_email"]
uppercase = ["currency", "country"]

[[phases]]
type = "validate"
checkpoint = true
on_error = "warn"
rules = [
  { column = "order_id", required = true, type = "int64", unique = true },
  { column = "ordered_on", type = "date", formats = ["%Y-%m-%d"], min = 2000-01-01 },
  { column = "status", allowed = ["new", "paid"], max_length = 9, pattern = '^[a-z]+$' },
]

[[phases]]
type = "transform"
when = "etlconsole_example_plugin:has_email_column"
cast = { quantity = "int64", unit_price = "float64", ordered_on = "date" }
formats = { ordered_on = ["%Y-%m-%d", "%d/%m/%Y"] }
derive = { total = "round(quantity * unit_price, 2)" }
rename = { city = "town" }

[[phases]]
type = "map"
when = { min_rows = 10, max_rows = 5000000 }
columns = { order_id = "id", total = "total", status = "status", currency = "currency" }

[[phases]]
type = "branch"

[[phases.branches]]
name = "cancelled"
filter = "status == 'cancelled'"

[[phases.branches.phases]]
type = "load"
destination = "parquet"
path = "cancelled"
mode = "atomic"
on_failure = "rollback"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
destination = "sqlite"
path = "warehouse.db"
table = "orders"
mode = "replace"
on_failure = "keep"
on_error = "fail"
"""


@pytest.mark.parametrize("index", range(5))
async def test_every_option_shown_reads_back_unchanged(ws, index):
    """Every option of every built-in type, as a file writes it, is shown in a form that
    reads it back as the same value: applying an untouched form changes nothing."""
    ws.pipeline.write_text(EVERY_OPTION, encoding="utf-8")
    before = load_spec(ws.pipeline).phases[index]
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(140, 45)) as pilot:
        screen = await builder(pilot)
        screen.query_one("#b-phases").move_cursor(row=index)
        form = await open_form(pilot, screen)
        edited = form.edited()
        assert (edited.options, edited.when, edited.checkpoint) == (
            {k: v for k, v in before.to_dict().items()
             if k not in ("type", "when", "checkpoint")}, before.when, before.checkpoint)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert not screen.editor.dirty and screen.editor.phases[index] == before
