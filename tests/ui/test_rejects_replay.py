"""Fixing and replaying rejects in the console (issue 16), keys only: edit one reject's
value and replay it after the dry-run confirmation; fix a whole group with a value set
over it. A real job by the real engine; the replays run as `etlconsole replay`
subprocesses, as the console launches them."""

from __future__ import annotations

import sqlite3

import pytest

from etlconsole.store import StateStore
from etlconsole.ui.screens.modals import ConfirmModal, RejectModal
from etlconsole.ui.screens.rejects import RejectsScreen
from etlconsole.ui.screens.replay import EditRejectModal, SetModal

from .helpers import cells, column, polled, static_text, wait_for

SIZES = [(80, 24), (140, 45)]
REPLAY_S = 60.0      # a subprocess on a shared 2-core machine: generous, never asserted


def warehouse(ws) -> tuple[int, int]:
    con = sqlite3.connect(ws.dest)
    try:
        return con.execute("SELECT count(*), count(DISTINCT id) FROM orders").fetchone()
    finally:
        con.close()


def job_row(ws, job_id: str) -> dict:
    store = StateStore(ws.state)
    try:
        j = store.job(job_id)
    finally:
        store.close()
    assert j["rows_read"] == j["rows_loaded"] + j["rows_rejected"], j    # conservation
    return j


def in_warehouse(ws, order_id: int) -> list[tuple]:
    con = sqlite3.connect(ws.dest)
    try:
        return con.execute("SELECT id, currency, _etl_job_id FROM orders WHERE id = ?",
                           [order_id]).fetchall()
    finally:
        con.close()


async def confirmation(pilot) -> str:
    """The text of the replay's confirmation (its dry run), once it is on screen."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal)
                   and pilot.app.screen.query("#confirm-body"), REPLAY_S,
                   what="the dry-run confirmation")
    return static_text(pilot.app, "#confirm-body")


async def select_group(pilot, screen, rule: str, col: str) -> int:
    """Move the groups table's cursor onto rule/column with the arrow keys; its row."""
    groups = screen.query_one("#groups")
    at = next(i for i, r in enumerate(cells(groups)) if r[1] == rule and r[2] == col)
    for _ in range(at - groups.cursor_row):
        await pilot.press("down")
    await wait_for(pilot, lambda: screen.group != "*" and screen.data.group_key == screen.group
                   and all(r == rule for r in column(screen.query_one("#reject-rows"), 4)),
                   what="the group's rows")
    return at


@pytest.mark.parametrize("size", SIZES)
async def test_edit_one_reject_and_replay_it(ws, size):
    job = ws.run()
    before = warehouse(ws)
    assert before == (job["rows_loaded"], job["rows_loaded"])
    async with ws.app(start="rejects").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RejectsScreen)
        await polled(pilot, screen)
        await select_group(pilot, screen, "allowed", "currency")
        rows = screen.query_one("#reject-rows")
        reject = rows.highlighted_reject()
        record, bad = reject["row"], reject["values"]["currency"]
        order_id = int(reject["values"]["order_id"])
        assert bad not in ("EUR", "USD", "GBP")
        # Enter: the reject in full; e: its values in a form, the currency field focused
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal),
                       what="the edit form")
        form = pilot.app.screen
        assert form.focused.id == f"field-{form.names.index('currency')}"
        assert form.focused.value == bad              # as the source had it
        await pilot.press(*"EUR", "enter")            # its text was selected: replaced
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert 1 in [len(screen.edits)] and screen.edits[record].fix.fields[
            form.names.index("currency")] == "EUR"
        assert "✎ edited" in column(rows, 1)
        assert "r: replay 1 edited" in static_text(pilot.app, "#rejects-caption")
        # r: the dry run's outcome in a confirmation; nothing written yet
        await pilot.press("r")
        body = await confirmation(pilot)
        assert "would load 1" in body and "would reject 0" in body
        assert warehouse(ws) == before and in_warehouse(ws, order_id) == []
        # y: the replay; the warehouse gains exactly that row, the reject is resolved
        await pilot.press("y")
        await wait_for(pilot, lambda: any(r["row"] == record and r.get("resolved_at")
                                          for r in rows.rejects.values()), REPLAY_S,
                       what="the reject resolved")
        assert warehouse(ws) == (before[0] + 1, before[1] + 1)
        assert in_warehouse(ws, order_id) == [(order_id, "EUR", job["job_id"])]
        # the screen's poll may show the store's new state a moment before the replay's
        # own callback (on the UI thread) clears the edits it sent
        await wait_for(pilot, lambda: screen.edits == {}, REPLAY_S, what="the edits cleared")
        assert "✓ #1" in column(rows, 1)
        resolved = next(c for c in cells(rows) if c[0] == f"{record:,}")
        assert resolved[1] == "✓ #1" and resolved[3] == "→ EUR"      # as the replay loaded it
        groups = screen.query_one("#groups")
        currency = next(r for r in cells(groups) if r[1] == "allowed" and r[2] == "currency")
        assert currency[4:] == [f"{int(currency[3]) - 1}", "1"]          # open, resolved
        assert f"{job['rows_rejected'] - 1:,} open, 1 resolved" in static_text(pilot.app,
                                                                             "#rejects-title")
        # a resolved reject is not edited again
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        assert "resolved by replay 1" in static_text(pilot.app, "#reject-body")
        assert pilot.app.screen.check_action("edit", ()) is False
        await pilot.press("escape")
    j = job_row(ws, job["job_id"])
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (
        job["rows_loaded"] + 1, job["rows_rejected"] - 1, 1)


async def test_fix_a_group_with_one_value(ws):
    """The 380-style bulk fix: r on a group sets one column over its open rejects
    (replay --set --where), after the dry run."""
    job = ws.run()
    before = warehouse(ws)
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await select_group(pilot, screen, "allowed", "status")
        group = screen.data.group()
        n = group["open"]
        assert n > 1
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SetModal), what="the set form")
        assert pilot.app.screen.focused.id == "set-value"      # column prefilled: status
        await pilot.press(*"paid", "enter")
        body = await confirmation(pilot)
        assert f"would load {n}" in body and "would reject 0" in body
        await pilot.press("y")
        groups = screen.query_one("#groups")
        await wait_for(pilot, lambda: any(r[1] == "allowed" and r[2] == "status" and r[4] == "0"
                                          for r in cells(groups)), REPLAY_S,
                       what="the group resolved")
        assert all(s.startswith("✓ #1") for s in column(screen.query_one("#reject-rows"), 1))
        # r again on the resolved group: nothing to do, no dialog
        await pilot.press("r")
        await pilot.pause()
        assert pilot.app.screen is screen
    assert warehouse(ws) == (before[0] + n, before[1] + n)
    j = job_row(ws, job["job_id"])
    assert (j["rows_resolved"], j["rows_rejected"]) == (n, job["rows_rejected"] - n)


async def test_a_dry_run_that_rejects_again_shows_the_reasons_and_no_writes(ws):
    job = ws.run()
    before = warehouse(ws)
    async with ws.app(start="rejects").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await select_group(pilot, screen, "allowed", "currency")
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal))
        await pilot.press(*"EURO!", "enter")          # still not a currency
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("r")
        body = await confirmation(pilot)
        assert "would load 0" in body and "would reject 1" in body
        assert "allowed/currency" in body and "EURO!" in body
        await pilot.press("n")                        # declined: nothing replayed
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert len(screen.edits) == 1 and not screen.replaying
    assert warehouse(ws) == before
    j = job_row(ws, job["job_id"])
    assert (j["rows_rejected"], j["rows_resolved"]) == (job["rows_rejected"], 0)


async def test_palette_offers_replay(ws):
    ws.run()
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        titles = [c.title for c in pilot.app.screen_action_commands(screen)]
        assert "Replay (r)" in titles


async def test_a_ragged_record_is_repaired_as_text_and_an_edit_can_be_dropped(ws):
    job = ws.run()
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await select_group(pilot, screen, "fields", "")
        record = screen.query_one("#reject-rows").highlighted_reject()["row"]
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal))
        raw = pilot.app.screen.query_one("#raw")
        text = raw.value
        assert pilot.app.screen.focused is raw and text.count(",") == 11     # 12 fields
        await pilot.press(",", ",", "enter")          # appended: nothing was selected
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert screen.edits[record].fix.raw == text + ",,"
        # opened again: the edit; ctrl+r puts the source's text back, Enter drops the edit
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal))
        assert pilot.app.screen.query_one("#raw").value == text + ",,"
        await pilot.press("ctrl+r", "enter")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert screen.edits == {}
    assert job_row(ws, job["job_id"])["rows_resolved"] == 0


async def test_a_refused_dry_run_is_said_and_nothing_is_asked(ws):
    """The replay command refuses (exit 2, one line): the console says that line and asks
    nothing; the screen is free for the next try."""
    job = ws.run()
    (ws.state.parent / "jobs" / job["job_id"] / "unique.db").unlink()   # as cleanup would
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await select_group(pilot, screen, "allowed", "status")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SetModal))
        await pilot.press(*"paid", "enter")
        await wait_for(pilot, lambda: not screen.replaying, REPLAY_S, what="the dry run's end")
        await pilot.pause()
        assert pilot.app.screen is screen
        said = [str(n.message) for n in pilot.app._notifications]
        assert any("unique-key index" in m and m.startswith("error:") for m in said), said
    j = job_row(ws, job["job_id"])
    assert (j["rows_rejected"], j["rows_resolved"]) == (job["rows_rejected"], 0)
