"""Building a pipeline from nothing, keys only: a new path, its source (with the engine's
sniff shown), phases added where they belong, options typed as the help shows, saved,
checked and run to a finished job. Also: typing never triggers screen keys."""

from __future__ import annotations

import pytest
from textual.widgets import Input, OptionList, TextArea

from etlconsole.engine.plan import make_plan
from etlconsole.spec import load_spec
from etlconsole.ui.screens.builder import BuilderScreen
from etlconsole.ui.screens.modals import AddPhaseModal
from etlconsole.ui.screens.options_form import OptionsForm
from etlconsole.ui.screens.source_form import SourceForm

from .helpers import column, split_into_drop, static_text, wait_for

SIZES = [(80, 24), (140, 45)]
KEY_NAMES = {" ": "space", "\n": "enter", "\t": "tab"}


async def type_text(pilot, text: str) -> None:
    """Type ``text`` key by key, as an operator would."""
    await pilot.press(*[KEY_NAMES.get(c, c) for c in text])


async def add_phase(pilot, screen, name: str) -> None:
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AddPhaseModal), what="add dialog")
    options = pilot.app.screen.query_one(OptionList)
    names = [options.get_option_at_index(i).id for i in range(options.option_count)]
    await pilot.press(*["down"] * (names.index(name) - (options.highlighted or 0)), "enter")
    await wait_for(pilot, lambda: pilot.app.screen is screen, what="back on the builder")


async def edit(pilot, *keys_and_text) -> OptionsForm:
    """e, then for each item: a str is typed, a tuple is pressed as keys; then Ctrl+S."""
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, OptionsForm), what="form")
    form = pilot.app.screen
    for step in keys_and_text:
        if isinstance(step, tuple):
            await pilot.press(*step)
        else:
            await type_text(pilot, step)
    await pilot.press("ctrl+s")
    await pilot.pause()
    if pilot.app.screen is form:
        raise AssertionError(f"the form refused: {form.query_one('#form-error').content}")
    return form


@pytest.mark.parametrize("size", SIZES)
async def test_build_a_pipeline_from_an_empty_console_keys_only(ws, size):
    new = ws.root / "new.toml"
    async with ws.app().run_test(size=size) as pilot:          # the jobs screen, no jobs
        await wait_for(pilot, lambda: "p opens the pipeline builder"
                       in static_text(pilot.app, "#jobs-info"), what="the empty console's hint")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BuilderScreen))
        screen = pilot.app.screen
        await pilot.press("tab")
        assert isinstance(screen.focused, Input) and screen.focused.id == "b-open"
        await type_text(pilot, "new.toml\n")
        assert screen.editor is not None and screen.editor.new and not new.exists()
        assert screen.check_action("add", ()) and screen.check_action("source", ())
        await wait_for(pilot, lambda: screen.checks >= 1)
        assert "no source yet" in static_text(pilot.app, "#b-problems")

        # the source: path typed (completed by the suggester), sniff shown
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SourceForm))
        form = pilot.app.screen
        await type_text(pilot, "ord")
        await wait_for(pilot, lambda: form.query_one("#src-path", Input)._suggestion
                       == "orders.csv", what="path completion")
        await pilot.press("right")                              # accept the completion
        assert form.query_one("#src-path", Input).value == "orders.csv"
        await wait_for(pilot, lambda: "delimiter ','" in static_text(pilot.app, "#src-sniff"))
        assert "order_id" in static_text(pilot.app, "#src-sniff")
        assert form.query_one("#src-delimiter", Input).placeholder == "sniffed: ,"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await wait_for(pilot, lambda: "delimiter ','" in static_text(pilot.app, "#b-source"),
                       what="the sniff on the builder")
        assert "utf-8" in static_text(pilot.app, "#b-source")

        # a load first; then validate and transform land before it
        await add_phase(pilot, screen, "load")
        await edit(pilot, ("tab",), "warehouse.db", ("tab",), "orders")
        await add_phase(pilot, screen, "validate")
        table = screen.query_one("#b-phases")
        assert column(table, 1) == ["validate", "load"] and table.cursor_row == 0
        await edit(pilot, '{ column = "order_id", required = true, type = "int64" }, '
                          '{ column = "quantity", type = "int64", min = 1 }')
        await add_phase(pilot, screen, "transform")
        assert column(table, 1) == ["validate", "transform", "load"]
        await edit(pilot, 'quantity = "int64"\nunit_price = "float64"', ("tab", "tab"),
                   'total = "quantity * unit_price"')
        await wait_for(pilot, lambda: screen.checks >= 1 and
                       static_text(pilot.app, "#b-problems").startswith("OK"),
                       what="a pipeline without problems")
        await pilot.press("ctrl+s")
        assert new.exists() and not screen.editor.dirty

        spec = load_spec(new)
        assert [p.type for p in spec.phases] == ["validate", "transform", "load"]
        assert spec.source.path == "orders.csv"
        assert spec.phases[1].options["derive"] == {"total": "quantity * unit_price"}
        assert spec.phases[0].options["rules"][1] == {"column": "quantity", "type": "int64",
                                                      "min": 1}
        make_plan(spec)                                         # `etlconsole check` passes

        await wait_for(pilot, lambda: screen.check_action("run", ()) is True)
        await pilot.press("r")
        await wait_for(pilot, lambda: pilot.app.current_mode == "monitor")
        await wait_for(pilot, lambda: "finished: succeeded" in static_text(pilot.app, "#m-final"),
                       timeout=60, what="the job to finish")


@pytest.mark.parametrize("size", SIZES)
async def test_typing_in_the_path_field_never_triggers_screen_keys(ws, size):
    async with ws.app(start="builder").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert screen.focused is None                   # p/m/j/x/q are screen keys here
        await pilot.press("tab")
        field = screen.focused
        assert isinstance(field, Input) and field.id == "b-open" and field.region.height
        await type_text(pilot, "mjxpq maps.toml")
        assert field.value == "mjxpq maps.toml"
        assert pilot.app.screen is screen and pilot.app.is_running


async def test_letters_typed_in_forms_stay_in_the_form(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.checks >= 1)
        await pilot.press("down", "down", "e")                  # transform: cast first
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, OptionsForm))
        area = pilot.app.screen.focused
        assert isinstance(area, TextArea)
        await type_text(pilot, "qmp")
        assert "qmp" in area.text and isinstance(pilot.app.screen, OptionsForm)
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SourceForm))
        await type_text(pilot, "qm")
        assert pilot.app.screen.query_one("#src-path", Input).value == "orders.csvqm"
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert not screen.editor.dirty


@pytest.mark.parametrize("size", SIZES)
async def test_source_form_takes_a_drop_of_files(ws, size):
    """[source] path may be a directory or a glob of files (some compressed): the form says
    how many files it names and shows the sniff of the first, and the builder's check line
    plans the job (before: 'is a directory, expected a CSV file')."""
    split_into_drop(ws.csv, ws.root / "drop")
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=size) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.checks >= 1)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SourceForm))
        path = pilot.app.screen.query_one("#src-path", Input)
        path.value = ""
        await type_text(pilot, "drop")
        await wait_for(pilot, lambda: "2 files" in static_text(pilot.app, "#src-sniff"),
                       what="the drop's files")
        shown = static_text(pilot.app, "#src-sniff")
        assert "a.csv" in shown and "b.csv.gz" in shown and "order_id" in shown
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert screen.editor.spec.source.path == "drop"
        assert screen.editor.sniff().names[0] == "order_id"


def test_the_source_form_lists_the_csv_files_here_else_one_folder_down(tmp_path):
    """What an operator may type as the source: the folder's CSV files (compressed ones
    too); where it has none — a pipeline started next to `etlconsole demo`'s folder — those
    of its subfolders, as paths relative to it."""
    from etlconsole.ui.screens.source_form import csv_files
    (tmp_path / "etlconsole-demo").mkdir()
    (tmp_path / "etlconsole-demo" / "orders.csv").write_text("a\n1\n")
    (tmp_path / "drops").mkdir()
    (tmp_path / "drops" / "orders_01.csv.gz").write_bytes(b"")
    (tmp_path / "drops" / "notes.md").write_text("")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.csv").write_text("")
    assert csv_files(tmp_path) == ["drops/orders_01.csv.gz", "etlconsole-demo/orders.csv"]
    (tmp_path / "here.csv").write_text("a\n1\n")
    assert csv_files(tmp_path) == ["here.csv"]
