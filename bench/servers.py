"""Server processes on free loopback ports, and what the kernel says each one costs.

    command = waitress("bench.peers.raw_wsgi:application")
    with Server.running("raw", command, env=env, health="/", logs=folder) as server:
        before = server.cpu_seconds()       # user + system time of all its threads
        ...                                 # load server.url
        server.peak_rss_kib()               # VmHWM: the most memory it ever held

A server that forks workers (gunicorn) counts as its whole process tree: the CPU time and
memory of the master and every worker, added up.

Each server gets a port of its own (bound to port 0 to find one), is waited for until
its health path answers at all, and is stopped by its PID, on errors too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
WAITRESS_THREADS = 4
"""The same for microshop and every WSGI peer, so only the application differs."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time that processes have used on the whole machine (every core), from
    ``/proc/stat``: user and system time, without interrupts, which no process is charged
    for, so that loopback traffic does not count as another process."""
    user, nice, system = (int(ticks) for ticks in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / CLOCK_TICKS


def waitress(target: str, *, call: bool = False) -> list[str]:
    """``waitress-serve`` as the benchmark runs every WSGI app; ``{port}`` is filled in."""
    command = [str(BIN / "waitress-serve"), f"--threads={WAITRESS_THREADS}"]
    command.append(f"--listen={HOST}:{{port}}")
    return [*command, "--call", target] if call else [*command, target]


def gunicorn(target: str, *, workers: int) -> list[str]:
    """gunicorn's threaded workers, each with waitress's thread count, as the README
    suggests for many cores; its access log is off, as waitress writes none."""
    return [
        str(BIN / "gunicorn"),
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={WAITRESS_THREADS}",
        f"--bind={HOST}:{{port}}",
        "--log-level=warning",
        target,
    ]


def uvicorn(factory: str) -> list[str]:
    """One uvicorn worker, without the access log (waitress writes none either)."""
    return [
        str(BIN / "uvicorn"),
        "--factory",
        factory,
        f"--host={HOST}",
        "--port={port}",
        "--log-level=warning",
        "--no-access-log",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    @contextmanager
    def running(
        cls,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        health: str,
        logs: Path,
    ) -> Iterator[Server]:
        """The server, up and answering on ``health``; stopped when the block ends."""
        port = free_port()
        log = logs / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [part.format(port=port) for part in command],
                env=dict(env),
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = cls(name, process, f"http://{HOST}:{port}", log)
        try:
            server._wait_until_up(health)
            yield server
        finally:
            server._stop()

    def cpu_seconds(self) -> float:
        """User and system CPU time the process tree has used, all its threads together."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """The process tree's user and its system CPU time, apart."""
        user = system = 0
        for pid in self._tree():
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            user += int(fields[11])
            system += int(fields[12])
        return user / CLOCK_TICKS, system / CLOCK_TICKS

    def rss_kib(self) -> int:
        """VmRSS: the memory the process tree holds now."""
        return self._status("VmRSS")

    def peak_rss_kib(self) -> int:
        """VmHWM: the most memory each process of the tree has held, added up."""
        return self._status("VmHWM")

    def _tree(self) -> list[int]:
        """The server's process and its descendants (gunicorn's workers)."""
        pids, found = [self.process.pid], []
        while pids:
            pid = pids.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids.extend(int(child) for child in (task / "children").read_text().split())
        return found

    def _status(self, key: str) -> int:
        total = 0
        for pid in self._tree():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
                    break
            else:
                raise RuntimeError(f"no {key} for {self.name} (process {pid})")
        return total

    def _wait_until_up(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log.read_text()}")
            try:
                httpx.get(self.url + path, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not answer {path} in {timeout} s:\n{self.log.read_text()}"
        )

    def _stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
