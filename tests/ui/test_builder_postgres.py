"""The builder offers the postgres load with its options (issue 14): choose the
destination, fill url, schema, table, mode, on_error, on_failure and password_env, apply,
save, and the file reads back as that load; a password in the URL is refused in the form."""

from __future__ import annotations

import tomllib

import pytest
from textual.widgets import Input, Select

from etlconsole.spec import load_spec
from etlconsole.ui.screens.options_form import OptionsForm

from .helpers import static_text, wait_for
from .test_builder_forms import builder, open_form, set_value

LOAD = 4                        # the demo pipeline's load phase
URL = "postgresql://etl@db.example:5432/warehouse"
POSTGRES_OPTIONS = ("url", "service", "schema", "password_env")


async def _type(pilot, form: OptionsForm, name: str, text: str) -> None:
    """Focus the field (scrolled into view) and type into it key by key."""
    field = form.query_one(f"#opt-{name}", Input)
    field.focus()
    await pilot.pause()
    field.value = ""
    await pilot.press(*text)


@pytest.mark.parametrize("size", [(80, 24), (140, 45)])
async def test_builder_sets_up_a_postgres_load(ws, size):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=size) as pilot:
        screen = await builder(pilot)
        await pilot.press(*["down"] * LOAD)
        form = await open_form(pilot, screen)
        destination = form.query_one("#opt-destination", Select)
        assert "postgres" in [value for _, value in destination._options]   # offered
        for name in POSTGRES_OPTIONS:                    # its options are fields of the form
            assert form.query_one(f"#opt-{name}", Input).value == ""
        destination.value = "postgres"
        set_value(form, "path", "")                      # a server has a URL, not a path
        set_value(form, "url", URL)
        await _type(pilot, form, "schema", "sales")
        await _type(pilot, form, "password_env", "WH_PW")
        set_value(form, "mode", "atomic")
        set_value(form, "on_error", "fail")
        set_value(form, "on_failure", "rollback")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert pilot.app.screen is screen, form.query_one("#form-error").content
        assert screen.editor.dirty
        checks = screen.checks
        await pilot.press("ctrl+s")
        assert not screen.editor.dirty
        # the builder's check plans it (no connection) and names it as people read it
        await wait_for(pilot, lambda: screen.checks > checks, what="the check")
        assert static_text(pilot.app, "#b-problems").endswith(
            "-> postgres postgres://db.example/warehouse sales.orders (atomic)"), \
            static_text(pilot.app, "#b-problems")
    saved = tomllib.loads(ws.pipeline.read_text(encoding="utf-8"))["phases"][LOAD]
    assert saved == {"type": "load", "destination": "postgres", "url": URL, "schema": "sales",
                     "password_env": "WH_PW", "table": "orders", "mode": "atomic",
                     "on_error": "fail", "on_failure": "rollback"}
    load = load_spec(ws.pipeline).phases[LOAD]
    assert load.options["url"] == URL and "path" not in load.options


async def test_a_password_in_the_url_is_refused_in_the_form(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        screen = await builder(pilot)
        await pilot.press(*["down"] * LOAD)
        form = await open_form(pilot, screen)
        form.query_one("#opt-destination", Select).value = "postgres"
        set_value(form, "path", "")
        set_value(form, "url", "postgresql://etl:hunter2@db/warehouse")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert pilot.app.screen is form                  # not applied
        error = str(form.query_one("#form-error").content)
        assert "password in the URL is refused" in error and "hunter2" not in error
        await pilot.press("escape")
        await pilot.pause()
        assert not screen.editor.dirty
    assert "hunter2" not in ws.pipeline.read_text(encoding="utf-8")
