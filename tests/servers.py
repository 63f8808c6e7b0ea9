"""Database servers a test can stop and start again: private to the test, on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, up: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            reachable = sock.connect_ex(("127.0.0.1", port)) == 0
        if reachable == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still {'down' if up else 'up'} after {timeout} s")


class ClickHouseServer:
    """A throwaway clickhouse-server; ``stop()`` and ``start()`` keep its data."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("clickhouse-server")
        if binary is None:
            pytest.skip("clickhouse-server is not installed")
        self.binary = binary
        self.directory = directory
        self.tcp_port, self.http_port = free_port(), free_port()
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        template = (REPO / "scripts/clickhouse/config.xml").read_text()
        config = (
            template.replace("@CHDIR@", str(directory))
            .replace("@TCP_PORT@", str(self.tcp_port))
            .replace("@HTTP_PORT@", str(self.http_port))
        )
        (directory / "config.xml").write_text(config)
        shutil.copy(REPO / "scripts/clickhouse/users.xml", directory / "users.xml")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/default"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, f"--config-file={self.directory / 'config.xml'}"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.tcp_port, up=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        _wait_for_port(self.tcp_port, up=False)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb/pg_ctl, run as the postgres user when root)."""

    def __init__(self, _directory: Path | None = None) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            pytest.skip("PostgreSQL server binaries are not installed")
        self.bin = found[-1].parent
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="cs-test-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        directory = self.directory
        self._run(f"'{self.bin}/initdb' -D '{directory}/data' -A trust -U postgres")

    def _run(self, command: str) -> None:
        full = (
            ["su", "postgres", "-s", "/bin/bash", "-c", command]
            if os.geteuid() == 0
            else [
                "bash",
                "-c",
                command,
            ]
        )
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            f"'{self.bin}/pg_ctl' -D '{self.directory}/data' -l '{self.directory}/log' -w "
            f'-o "{options}" start'
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(f"'{self.bin}/pg_ctl' -D '{self.directory}/data' -m {mode} -w stop")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
