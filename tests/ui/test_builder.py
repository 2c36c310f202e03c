"""Pipeline builder: keys edit the phase list; problems show before running; r runs it."""

from __future__ import annotations

import tomllib

from textual.widgets import Input, OptionList, TextArea

from etlconsole.store import StateStore
from etlconsole.ui.screens.builder import BuilderScreen
from etlconsole.ui.screens.modals import AddPhaseModal
from etlconsole.ui.screens.options_form import OptionsForm

from .helpers import column, static_text, wait_for


def saved(ws) -> list[dict]:
    return tomllib.loads(ws.pipeline.read_text(encoding="utf-8"))["phases"]


async def open_builder(pilot) -> BuilderScreen:
    screen = pilot.app.screen
    assert isinstance(screen, BuilderScreen)
    await wait_for(pilot, lambda: screen.checks >= 1, what="first check")
    return screen


async def test_down_space_ctrl_s_disables_the_second_phase(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await open_builder(pilot)
        table = screen.query_one("#b-phases")
        assert column(table, 1) == ["clean", "validate", "transform", "map", "load"]
        assert screen.check_action("save", ()) is None          # nothing to save yet
        await pilot.press("down", "space")
        assert column(table, 2)[1] == "off" and table.cursor_row == 1
        assert screen.editor.dirty and screen.check_action("run", ()) is None
        await pilot.press("ctrl+s")
        assert saved(ws)[1] == {**saved(ws)[1], "type": "validate", "enabled": False}
        assert "enabled = false" in ws.pipeline.read_text()
        assert not screen.editor.dirty


async def test_move_add_remove(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await open_builder(pilot)
        table = screen.query_one("#b-phases")
        await pilot.press("down", "shift+down")                 # validate after transform
        assert column(table, 1)[:3] == ["clean", "transform", "validate"]
        assert table.cursor_row == 2                            # the cursor moved with it
        await pilot.press("shift+up")
        assert column(table, 1)[:3] == ["clean", "validate", "transform"]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AddPhaseModal))
        options = pilot.app.screen.query_one(OptionList)
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert {"clean", "validate", "transform", "map", "load"} <= set(names)
        options.highlighted = names.index("clean")
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert column(table, 1) == ["clean", "validate", "clean", "transform", "map", "load"]
        assert table.cursor_row == 2
        await pilot.press("delete")
        assert column(table, 1) == ["clean", "validate", "transform", "map", "load"]
        await pilot.press("ctrl+s")
        assert [p["type"] for p in saved(ws)] == ["clean", "validate", "transform", "map", "load"]


async def test_edit_form_and_problems_before_running(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(100, 40)) as pilot:
        screen = await open_builder(pilot)
        assert static_text(pilot.app, "#b-problems").startswith("OK: 5 phases")
        await pilot.press("e")                                  # clean: trim, null_values, …
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, OptionsForm))
        form = pilot.app.screen
        lower = form.query_one("#opt-lowercase", Input)
        assert lower.value == '["customer_email"]'
        lower.value = '["no_such_column"]'
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert screen.editor.phases[0].options["lowercase"] == ["no_such_column"]
        await wait_for(pilot, lambda: "no_such_column" in static_text(pilot.app, "#b-problems"),
                       what="the problem")
        problem = static_text(pilot.app, "#b-problems")
        assert "no_such_column" in problem and "phase 1 (clean)" in problem
        assert screen.check_action("run", ()) is None
        # a value that is not TOML is refused in the form, naming the option
        await pilot.press("down", "e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, OptionsForm))
        rules = pilot.app.screen.query_one("#opt-rules", TextArea)
        assert rules.text.startswith("[\n  { column = \"order_id\"")
        rules.text = "[ { column = "
        await pilot.press("ctrl+s")
        assert isinstance(pilot.app.screen, OptionsForm)
        assert static_text(pilot.app, "#form-error").startswith("rules: not a TOML value")
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)


async def test_r_runs_the_saved_pipeline_on_the_monitor(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await open_builder(pilot)
        assert screen.check_action("run", ()) is True
        await pilot.press("r")
        await wait_for(pilot, lambda: pilot.app.current_mode == "monitor")
        launched = pilot.app.launched[-1]
        await wait_for(pilot, lambda: "finished: succeeded" in static_text(pilot.app, "#m-final"),
                       timeout=60, what="the job to finish")
        store = StateStore(ws.state)
        assert store.job("last")["id"] == launched.job_id
        assert store.job("last")["rows_read"] == 2000
        store.close()
        assert pilot.app.result_code() == 0


async def test_open_a_pipeline_file_from_the_builder(ws):
    async with ws.app(start="builder").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        assert screen.editor is None and screen.check_action("save", ()) is None
        assert "Tab to the path field" in static_text(pilot.app, "#b-problems")
        field = screen.query_one("#b-open", Input)
        await pilot.press("tab")                       # the first Tab: the path field
        assert screen.focused is field and field.display
        field.value = str(ws.root)                     # a folder is not a pipeline
        await pilot.press("enter")
        assert "is a directory" in static_text(pilot.app, "#b-problems")
        field.value = str(ws.pipeline)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.checks >= 1)
        assert screen.editor is not None and len(screen.editor.phases) == 5
