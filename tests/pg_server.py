"""A throwaway PostgreSQL server for the tests that share an Optuna study across workers.

`postgres_server` (one per test session) runs `initdb` and `pg_ctl` from the installed
PostgreSQL in a folder under /tmp, on a free local port, with trust authentication, and
stops it (`pg_ctl stop -m immediate`) and removes the folder afterwards. The server refuses
to run as root, so as root the binaries run as the `postgres` user (`runuser`), in folders
that user owns. `postgres_url` makes a fresh database per test and gives its URL:
`postgresql+psycopg2://postgres@127.0.0.1:PORT/DB`.

Skipped only where PostgreSQL's binaries, the `postgres` user (as root) or psycopg2 are
missing; a server that fails to start is a test failure, with the end of its log.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "postgres"


def _bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


def _major(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    port: int
    folder: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        pytest.fail(
            f"PostgreSQL {what} failed (rc {done.returncode}): {done.stderr[-3000:]}\n{tail}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(USER)
        except KeyError:
            pytest.skip(f"no {USER!r} user to run PostgreSQL as (it refuses to run as root)")
    pytest.importorskip("psycopg2", reason="no psycopg2 (pip install 'tpdiff-harness[postgres]')")
    folder = Path(tempfile.mkdtemp(prefix="tpdiff-pg-"))
    data, sockets, log = folder / "data", folder / "sock", folder / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8"],
             "initdb")  # fmt: skip
        port = _free_port()
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
              "-w", "-t", "60", "start"], "server start", log)  # fmt: skip
        try:
            yield Server(port, folder)
        finally:
            subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"]),  # fmt: skip
                capture_output=True, timeout=120,
            )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database(f"test_{uuid.uuid4().hex[:12]}")
