"""wrk, the load generator: installed when missing, run with ``bench/wrk.lua``.

    ensure_wrk()
    load = run_wrk("http://127.0.0.1:8123", ["get", token, "/order/7,/order/9"], seconds=6)
    load.requests_per_second, load.p50_ms, load.p99_ms

Every case runs ``wrk -t2 -c8`` (login ``-c4``) with ``--latency`` and a 10 s timeout
(an argon2id login queue must not count as failures); the script's ``done()`` prints one
JSON line, so nothing here parses wrk's human-readable report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "wrk.lua"
THREADS = 2
TIMEOUT = "10s"


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package first if it is missing (as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is missing; install it (apt-get install wrk) and rerun")
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=apt)
    return shutil.which("wrk") or "wrk"


@dataclass(frozen=True)
class Load:
    """What wrk measured in one run of one case."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    mean_us: float
    max_us: int
    flows: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return self.p50_us / 1000

    @property
    def p99_ms(self) -> float:
        return self.p99_us / 1000

    @property
    def failed(self) -> int:
        """Requests answered 4xx/5xx, plus socket errors and timeouts."""
        return sum(self.errors.values())


def run_wrk(url: str, args: list[str], *, seconds: float, connections: int = 8) -> Load:
    command = [
        "wrk",
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={TIMEOUT}",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        *args,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in finished.stdout.splitlines():
        if line.startswith("BENCH "):
            return Load(**json.loads(line.removeprefix("BENCH ")))
    raise RuntimeError(f"wrk gave no summary:\n{finished.stdout}\n{finished.stderr}")
