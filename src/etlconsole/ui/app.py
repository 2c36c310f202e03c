"""The operator console: a reader of the state store plus a launcher of engine processes."""

from __future__ import annotations

import os
import shlex
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..config import Settings, load_settings
from ..records import UNFINISHED, Job
from .. import api
from ..api import StateStore
from .launcher import Launched, Launcher
from .screens.base import PolledScreen
from .screens.builder import BuilderScreen
from .screens.jobs import JobsScreen
from .screens.modals import QuitModal
from .screens.monitor import MonitorScreen
from .screens.rejects import RejectsScreen

T = TypeVar("T")
SCREENS = {"builder": ("p", "Build", "Pipeline builder: edit and run the pipeline file"),
           "monitor": ("m", "Monitor", "The running (or last) job, live"),
           "jobs": ("j", "Jobs", "History; resume, roll back, clean up"),
           "rejects": ("x", "Rejects", "Rejected rows of the selected job")}
STOP_WAIT_S = 15.0
# What a screen's action does, for the command palette (keyed by action name).
ACTION_HELP = {
    "resume": "Continue the selected failed or interrupted job from its last checkpoint",
    "rollback": "Undo the selected job on every destination (or back to the selected checkpoint)",
    "cleanup": "Remove orphaned staging data and workspaces (shows what first)",
    "details": "Everything about the selected job",
    "export": "Write every reject of this job to a CSV file",
    "open_reject": "The highlighted reject in full: every value and the record",
    "page": "Another page of rejected rows",
    "replay": "Replay the edited rejects (or set a column over the selected group) into the "
              "job's destination, after a dry run",
    "edit": "Edit this reject's values as the source had them (then r replays it)",
    "fix_file": "Write this job's open rejects as a fix file (rejects JOB --fix) to fix-JOB.csv "
                "in the export folder",
    "replay_file": "Replay a fixed fix file into this job's destination, after a dry run",
    "undo_replay": "Undo this job's latest replay that loaded rows (rollback JOB --replay N): "
                   "its rows go, its rejects are open again, after a dry run",
    "run": "Run the pipeline as a new job",
    "save": "Save the pipeline file",
}


class ConsoleApp(App[int]):
    TITLE = "etlconsole"
    MODES = {"builder": BuilderScreen, "monitor": MonitorScreen, "jobs": JobsScreen,
             "rejects": RejectsScreen}
    BINDINGS = [
        *[Binding(key, f"show('{mode}')", label) for mode, (key, label, _) in SCREENS.items()],
        Binding("q", "quit_console", "Quit"),
        Binding("ctrl+q", "quit_console", "Quit", show=False, priority=True),
    ]

    def __init__(self, state_path: str | Path, *, start: str = "jobs",
                 pipeline: str | Path | None = None, run: dict | None = None,
                 resume: str | None = None, watch: str | None = None,
                 settings: Settings | None = None, poll_interval: float = 0.5,
                 export_dir: Path | None = None, cwd: Path | None = None):
        # per instance on purpose: Textual reads it from self; the start screen is an argument
        self.DEFAULT_MODE = "monitor" if (run or resume or watch) else start  # type: ignore[misc]
        super().__init__()
        self.state_path = Path(state_path)
        self.settings = settings or load_settings(state_db=str(state_path))
        self.pipeline_path = Path(pipeline) if pipeline else None
        self.poll_interval = poll_interval
        self.export_dir = Path(export_dir or Path.cwd())
        self.launcher = Launcher(self.state_path, cwd=cwd)
        self.launched: list[Launched] = []
        self.watched_launch: Launched | None = None   # the monitor follows this process
        self.watch_job_id: str | None = watch           # ... or this job
        self.selected_job_id: str | None = watch        # jobs and rejects screens
        self._initial = (run, resume)

    def on_mount(self) -> None:
        run, resume = self._initial
        if run:
            self.launch_run(**run)
        elif resume:
            self.launch_resume(resume)

    # -- store access -------------------------------------------------------------
    def open_store(self) -> StateStore:
        return api.open_store(self.state_path)

    def with_store(self, fn: Callable[[StateStore], T]) -> T:
        """Run ``fn`` with a fresh connection (for worker threads), then close it."""
        store = self.open_store()
        try:
            return fn(store)
        finally:
            store.close()

    # -- screens --------------------------------------------------------------------
    def action_show(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("show", "quit_console") and self.screen.is_modal:
            return False
        if action == "show" and parameters and parameters[0] == self.current_mode:
            return False      # the key of the screen shown: not in the footer (saves room)
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.screen_action_commands(screen)
        for mode, (key, label, help_text) in SCREENS.items():
            title = "Pipeline builder" if mode == "builder" else label
            yield SystemCommand(f"{title} ({key})", help_text,
                                lambda mode=mode: self.action_show(mode))

    def screen_action_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The actions the screen offers now (its keys in the footer, e.g. resume, roll
        back, export, run, save), read from its active bindings: whatever a screen binds
        is in the palette too (a key kept out of the footer when the screen names its action
        in ``PALETTE_ONLY``), and an action its check_action disables is not."""
        seen = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            name = binding.action.split("(")[0].rsplit(".", 1)[-1]
            shown = binding.show or name in getattr(screen, "PALETTE_ONLY", ())
            if (not active.enabled or not shown or not binding.description
                    or active.node is self or binding.action in seen):
                continue
            seen.add(binding.action)
            yield SystemCommand(f"{binding.description} ({self.get_key_display(binding)})",
                                binding.tooltip or ACTION_HELP.get(name, binding.description),
                                partial(self.run_action, binding.action, active.node))

    # sync where Textual's is async: the palette's Quit opens the dialog and returns
    def action_quit(self) -> None:  # type: ignore[override]
        """Textual's quit (the palette's "Quit"): through the running-job dialog, as q."""
        self.action_quit_console()

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Screenshots go to the export folder (default: the current directory), which
        exists; Textual's default, the downloads folder, may not (XDG_DOWNLOAD_DIR)."""
        return super().deliver_screenshot(filename, path or str(self.export_dir), time_format)

    def follow_job(self, job_id: str) -> None:
        """Follow ``job_id`` on the monitor (attach to a job started anywhere)."""
        self.watched_launch, self.watch_job_id = None, job_id
        self.selected_job_id = job_id
        self._show_monitor()

    def _show_monitor(self) -> None:
        if self.current_mode != "monitor":
            self.switch_mode("monitor")
        elif isinstance(self.screen, PolledScreen):
            self.screen.poll_now()

    # -- launching ----------------------------------------------------------------
    def launch_run(self, pipeline: str | Path, source=None, dest=None) -> Launched:
        launched = self.launcher.run(Path(pipeline), source=source, dest=dest)
        self._follow(launched)
        self.notify(f"started {Path(pipeline).name} (pid {launched.pid})")
        return launched

    def launch_resume(self, job_id: str) -> Launched:
        launched = self.launcher.resume(job_id)
        self._follow(launched)
        self.selected_job_id = job_id
        self.notify(f"resuming job {job_id} (pid {launched.pid})")
        return launched

    def _follow(self, launched: Launched) -> None:
        self.launched.append(launched)
        self.watched_launch, self.watch_job_id = launched, launched.job_id
        self._show_monitor()

    @property
    def running_launches(self) -> list[Launched]:
        return [x for x in self.launched if x.running]

    # -- quitting -------------------------------------------------------------------
    def action_quit_console(self) -> None:
        if isinstance(self.screen, QuitModal):      # asked already (e.g. the palette's Quit)
            return
        running = self.running_launches
        if not running:
            self.exit(self.result_code())
            return

        def answer(choice: str | None) -> None:
            still = self.running_launches        # it may have ended while the dialog was open
            if choice in ("quit", "leave") or (choice == "stop" and not still):
                self.exit(self.result_code())
            elif choice == "stop":
                self.notify("stopping: the job will be marked interrupted (resumable) …")
                self._stop_and_exit(still)
        self.push_screen(QuitModal(self._running_names(), self._running_names, self.exit_line),
                         answer)

    def _running_names(self) -> list[str]:
        return [x.job_id or f"pid {x.pid}" for x in self.running_launches]

    @work(thread=True, exit_on_error=False)
    def _stop_and_exit(self, running: list[Launched]) -> None:
        for x in running:
            x.stop()
        for x in running:
            x.wait(STOP_WAIT_S)
        self.call_from_thread(self.exit, self.result_code())

    def result_code(self) -> int:
        """Like the headless commands: 0 if the job this console launched last succeeded
        (or none was launched, or it was left running), else 1."""
        if not self.launched:
            return 0
        last = self.launched[-1]
        if last.running:
            return 0
        return 0 if last.returncode == 0 else 1

    def exit_job(self, store: StateStore) -> Job | None:
        """The job the operator was on when quitting: the last one this console launched,
        else the one it watched or selected; None if there is none."""
        if self.launched:
            last = self.launched[-1]
            if last.job_id:
                return api.find(store, last.job_id)
            return api.job_by_pid(store, last.pid)
        ref = self.watch_job_id or self.selected_job_id
        return api.find(store, ref) if ref else None

    def exit_line(self) -> str | None:
        """One line for stdout after the console closed: the job, its status, and the
        command that continues from here (resume it, watch it, or see it)."""
        try:
            job = self.with_store(self.exit_job)
        except Exception:        # no store, or the job is gone: nothing worth a line
            return None
        if job is None:
            return None
        return job_line(job, self.state_option())

    def state_option(self) -> str:
        """'--state PATH ' unless the store is the one every command finds by default."""
        found = os.environ.get("PIPELINE_STATE_DB") or Settings.state_db
        if self.state_path.resolve() == Path(found).resolve():
            return ""
        return f"--state {shlex.quote(str(self.state_path))} "


def job_line(job: Job, state: str = "") -> str:
    """``job 3f2a… interrupted — resume: etlconsole resume 3f2a…`` and the like."""
    jid, status = job.id, job.status
    if status.active:
        hint = f"watch: etlconsole {state}ui --watch {jid}"
    elif status in UNFINISHED and job.resumable:
        hint = f"resume: etlconsole {state}resume {jid}"
    else:
        hint = f"details: etlconsole {state}show {jid}"
    return f"job {jid} {status} — {hint}"
