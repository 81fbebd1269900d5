"""A throwaway PostgreSQL server for tests and `cdp bench-sync`: initdb in a temp dir, run as an
unprivileged user (PostgreSQL refuses root), on a free 127.0.0.1 port; stopped and removed on exit."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path | None:
    if os.environ.get("CDP_PG_BIN"):
        return Path(os.environ["CDP_PG_BIN"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    return Path(candidates[0]).parent if candidates else (Path(found).parent if found else None)


def _install_with_apt() -> None:
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=False, capture_output=True, timeout=600)
    if find_bin_dir() is None:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=False, capture_output=True, timeout=600)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalPostgres:
    def __init__(self, user: str = "postgres"):
        self.user, self.port, self.directory, self.bin_dir = user, _free_port(), None, None

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> LocalPostgres:
        self.bin_dir = find_bin_dir()
        if self.bin_dir is None and os.geteuid() == 0:
            _install_with_apt()
            self.bin_dir = find_bin_dir()
        if self.bin_dir is None:
            raise PostgresUnavailable("no PostgreSQL binaries (initdb) found and apt-get install postgresql failed")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", self.user], check=False, capture_output=True)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.directory = Path(tempfile.mkdtemp(prefix="cdp-pg-"))
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, self.user)
        initdb = self._run("initdb", "-D", str(data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        if initdb.returncode:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()[-500:]}")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB "
            "-c max_wal_size=4GB"
        )
        started = self._run(
            "pg_ctl", "-D", str(data), "-o", options, "-l", str(self.directory / "log"), "-w", "-t", "60", "start"
        )
        if started.returncode:
            log = (self.directory / "log").read_text()[-800:] if (self.directory / "log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {log}")
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until_ready(dsn: str, timeout_s: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(dsn).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
