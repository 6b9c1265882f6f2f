"""A real PostgreSQL server on loopback for the test session, started from whatever server
binaries the machine has: pg_ctl on PATH, Debian's /usr/lib/postgresql/*/bin, or the ones the
`pgserver` wheel ships (so a fresh machine with only pip can run the suite).

PostgreSQL refuses to run as root; as root the server runs as the `postgres` user (created
when missing) in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def find_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if debian:
        return Path(debian[-1]).parent
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        return None
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return bundled if (bundled / "pg_ctl").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    bin_dir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}\n{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> Server:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(
            "no PostgreSQL server binaries: install Debian's postgresql package or "
            "`pip install pgserver` (the test extra does)"
        )
    root = Path(tempfile.mkdtemp(prefix="reengage-pg-"))
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        if subprocess.run(["id", "-u", as_user], capture_output=True, check=False).returncode:
            subprocess.run(["useradd", "--system", "--no-create-home", as_user], check=True)
        shutil.chown(root, user=as_user)
        if "pgserver" in bin_dir.parts:
            # the wheel lives under root's home, which the postgres user may not enter
            # (its binaries find their libraries at ../../../pgserver.libs: keep that layout)
            site = bin_dir.parent.parent.parent
            shutil.copytree(site / "pgserver" / "pginstall", root / "site/pgserver/pginstall")
            shutil.copytree(site / "pgserver.libs", root / "site/pgserver.libs")
            subprocess.run(["chown", "-R", as_user, str(root / "site")], check=True)
            bin_dir = root / "site/pgserver/pginstall/bin"
    server = Server(bin_dir, root, _free_port(), as_user)
    server.start()
    return server
