"""The operator console: a reader of the state store plus a launcher of engine processes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..config import Settings, load_settings
from ..store import StateStore
from .launcher import Launched, Launcher
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
        self.DEFAULT_MODE = "monitor" if (run or resume or watch) else start
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
        return StateStore(self.state_path)

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
        for mode, (key, label, help_text) in SCREENS.items():
            title = "Pipeline builder" if mode == "builder" else label
            yield SystemCommand(f"{title} ({key})", help_text,
                                lambda mode=mode: self.action_show(mode))

    def follow_job(self, job_id: str) -> None:
        """Follow ``job_id`` on the monitor (attach to a job started anywhere)."""
        self.watched_launch, self.watch_job_id = None, job_id
        self.selected_job_id = job_id
        self._show_monitor()

    def _show_monitor(self) -> None:
        if self.current_mode != "monitor":
            self.switch_mode("monitor")
        else:
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
        running = self.running_launches
        if not running:
            self.exit(self.result_code())
            return

        def answer(choice: str | None) -> None:
            if choice == "leave":
                self.exit(self.result_code())
            elif choice == "stop":
                self.notify("stopping: the job will be marked interrupted (resumable) …")
                self._stop_and_exit(running)
        names = [x.job_id or f"pid {x.pid}" for x in running]
        self.push_screen(QuitModal(names), answer)

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
