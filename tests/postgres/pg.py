"""A throwaway PostgreSQL server for the test suite, started from the machine's own binaries.

``PgServer.start()`` runs ``initdb`` in a fresh temporary folder, then ``pg_ctl start`` on a
free port of 127.0.0.1 (never another address); as root, both run as the ``postgres`` user
(the server refuses to run as root). The superuser ``postgres`` gets a password and TCP
connections must give it (scram-sha-256), so the tests exercise the password path the
destination promises: it comes from ``PGPASSWORD`` (or ``password_env``), never the URL.

No binaries: tests skip with the reason — unless ``ETLCONSOLE_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), then they fail, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PASSWORD = "etl-test-secret-7f3a"       # grepped for in stores and outputs: must never appear
REQUIRE_VAR = "ETLCONSOLE_REQUIRE_POSTGRES"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (or PG_BINDIR)."""
    env = os.environ.get("PG_BINDIR")
    def version(p: str) -> int:
        v = p.split("/")[-2]
        return int(v) if v.isdigit() else 0

    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                          reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, bindir: Path, *, durable: bool = False):
        self.bindir = bindir
        self.durable = durable          # fsync on (benchmarks); tests run without it
        # as root the server runs as postgres, who must reach the folder: not under a
        # TMPDIR in root's home
        self.root = Path(tempfile.mkdtemp(prefix="etl-pg-", dir="/tmp" if os.geteuid() == 0 else None))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.log = self.root / "server.log"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.root))

    def start(self) -> "PgServer":
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_postgres:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        self.ctl_start()
        return self

    def ctl_start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                "-c max_connections=60")
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        res = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                        "-o", opts, "-w", "-t", "60", "start", check=False)
        if res.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr}\n{log}")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is cut, as a server restart would."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.ctl_start()

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- for tests -------------------------------------------------------------------
    def url(self, db: str = "postgres", user: str = "postgres") -> str:
        """The URL a pipeline names: no password in it."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def secret_url(self, db: str = "postgres") -> str:
        """For the tests' own connections only."""
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres", autocommit: bool = True):
        import adbc_driver_postgresql.dbapi as pg
        return pg.connect(self.secret_url(db), autocommit=autocommit)

    def execute(self, sql: str, db: str = "postgres") -> list[tuple]:
        conn = self.connect(db)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            try:
                rows = cur.fetchall()
            except Exception:
                rows = []
            cur.close()
            return rows
        finally:
            conn.close()

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:10]
        self.execute(f"CREATE DATABASE {name}")
        return name


def start_or_skip():
    """The running server, or a pytest skip (a failure when ETLCONSOLE_REQUIRE_POSTGRES=1)."""
    import pytest

    bindir = find_bindir()
    required = os.environ.get(REQUIRE_VAR) == "1"
    if bindir is None:
        reason = ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb; "
                  "Debian package 'postgresql'): PostgreSQL tests skipped")
        if required:
            pytest.fail(f"{REQUIRE_VAR}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    server = PgServer(bindir)
    try:
        server.start()
    except Exception as exc:
        server.stop()
        if required:
            pytest.fail(f"cannot start PostgreSQL: {exc}", pytrace=False)
        pytest.skip(f"cannot start PostgreSQL from {bindir}: {exc}")
    deadline = time.monotonic() + 30
    while True:
        try:
            server.execute("SELECT 1")
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
    return server
