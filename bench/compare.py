"""One change measured: microshop at a base commit and as the work tree is, side by side.

    .venv/bin/python -m bench.compare HEAD~1                     # /healthz and the order read
    .venv/bin/python -m bench.compare 27b49c0 --cases healthz --rounds 7

The base is checked out into a temporary git worktree and served from there (its
directory first on ``PYTHONPATH``, the same ``.venv``); each version gets a shop of its own,
migrated and seeded alike, on ``waitress-serve --threads=4`` as ``make bench`` runs it. The
two servers take turns, case by case, round by round, so a slow minute on the machine lands
on both. Printed per case: the medians of req/s, server CPU per request (user and system)
and the machine's context switches per request, for each version, and the work tree ÷ the
base: a change's effect as a ratio, which is what a noisy machine can measure.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cases import CASES, SERVERS, Case, Fixture
from bench.load import ensure_wrk, run_wrk
from bench.run import WARM_UP_SECONDS, make_fixture
from bench.seed import seed
from bench.servers import ROOT, Server
from bench.shop import database_urls, migrate, shop_environment

COMPARABLE = [case for case in CASES if case.server == "shop" and case.beside is None]
"""The cases of one SQLite shop: what a change to microshop's own code moves."""
DEFAULT_CASES = ("healthz", "order_read")


@dataclass(frozen=True)
class Sample:
    """One run of one case on one version."""

    requests_per_second: float
    user_us: float
    """Server user CPU per request."""
    system_us: float
    switches: float
    """Context switches of the whole machine per request (the load generator's too)."""

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.system_us


def main(argv: Sequence[str] | None = None) -> None:
    options = _parse(argv)
    ensure_wrk()
    cases = [case for case in COMPARABLE if case.name in options.cases]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="microshop-ab-")))
        base = stack.enter_context(_worktree(options.base, folder / "base"))
        secret = secrets.token_urlsafe(48)
        servers: dict[str, Server] = {}
        fixtures: dict[str, Fixture] = {}
        for version, source in (("base", base), ("work tree", ROOT)):
            env = shop_environment(folder / version.replace(" ", "_"), secret)
            env["PYTHONPATH"] = str(source)
            migrate(env)
            seed(database_urls(env), users=options.users, orders=options.orders)
            server = stack.enter_context(
                Server.running(
                    version, SERVERS["shop"].command, env=env, health="/healthz", logs=folder
                )
            )
            servers[version] = server
            fixtures[version] = make_fixture(server.url, {"shop": env})
        samples = _rounds(cases, servers, fixtures, options.rounds, options.seconds)
    print(
        f"base {options.base} against the work tree: {options.rounds} rounds of "
        f"{options.seconds} s, interleaved; {options.orders} orders"
    )
    print(table(samples))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("base", help="the commit to compare the work tree with")
    parser.add_argument(
        "--cases",
        type=lambda text: text.split(","),
        default=list(DEFAULT_CASES),
        help=f"comma-separated, of: {', '.join(case.name for case in COMPARABLE)}",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4, help="wrk's duration per case and round")
    parser.add_argument("--orders", type=int, default=100_000, help="orders seeded per shop")
    parser.add_argument("--users", type=int, default=1_000, help="users seeded per shop")
    options = parser.parse_args(argv)
    unknown = set(options.cases) - {case.name for case in COMPARABLE}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    return options


@contextmanager
def _worktree(commit: str, path: Path) -> Iterator[Path]:
    """``commit`` checked out at ``path``, removed when the block ends."""
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(path), commit], check=True)
    try:
        yield path
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=True)


def _rounds(
    cases: list[Case],
    servers: Mapping[str, Server],
    fixtures: Mapping[str, Fixture],
    rounds: int,
    seconds: int,
) -> dict[str, dict[str, list[Sample]]]:
    """Every case on every version once per round, the versions taking turns."""
    for case in cases:
        for version, server in servers.items():
            run_wrk(server.url, case.wrk_args(fixtures[version]), seconds=WARM_UP_SECONDS)
    samples: dict[str, dict[str, list[Sample]]] = {
        case.name: {version: [] for version in servers} for case in cases
    }
    for number in range(1, rounds + 1):
        for case in cases:
            for version, server in servers.items():
                sample = _sample(case, server, fixtures[version], seconds)
                samples[case.name][version].append(sample)
                print(
                    f"round {number} {case.name:12} {version:9} "
                    f"{sample.requests_per_second:7.0f} req/s {sample.cpu_us:6.0f} µs CPU/req",
                    file=sys.stderr,
                )
    return samples


def _sample(case: Case, server: Server, fixture: Fixture, seconds: int) -> Sample:
    before = (*server.cpu_times(), _context_switches())
    load = run_wrk(
        server.url, case.wrk_args(fixture), seconds=seconds, connections=case.connections
    )
    after = (*server.cpu_times(), _context_switches())
    if load.failed:
        raise SystemExit(f"bench: {case.name} on {server.name}: {load.failed} requests failed")
    user, system, switches = (later - earlier for later, earlier in zip(after, before, strict=True))
    requests = max(load.requests, 1)
    return Sample(
        requests_per_second=load.requests_per_second,
        user_us=user * 1e6 / requests,
        system_us=system * 1e6 / requests,
        switches=switches / requests,
    )


def _context_switches() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("ctxt "):
            return int(line.split()[1])
    raise RuntimeError("no ctxt line in /proc/stat")


def table(samples: Mapping[str, Mapping[str, list[Sample]]]) -> str:
    """The Markdown table: medians per version, and the work tree's ÷ the base's."""
    lines = [
        "| case | version | req/s | CPU µs/req (user + system) | context switches/req |",
        "|---|---|---:|---:|---:|",
    ]
    for case, versions in samples.items():
        medians = {version: _medians(runs) for version, runs in versions.items()}
        for version, (rate, user, system, switches) in medians.items():
            lines.append(
                f"| {case} | {version} | {rate:.0f} | {user + system:.0f} ({user:.0f} + "
                f"{system:.0f}) | {switches:.1f} |"
            )
        base, changed = medians["base"], medians["work tree"]
        rate_ratio = changed[0] / base[0]
        cpu_ratio = (changed[1] + changed[2]) / (base[1] + base[2])
        lines.append(f"| {case} | work tree ÷ base | {rate_ratio:.2f} | {cpu_ratio:.2f} | |")
    return "\n".join(lines)


def _medians(runs: list[Sample]) -> tuple[float, float, float, float]:
    return (
        statistics.median(run.requests_per_second for run in runs),
        statistics.median(run.user_us for run in runs),
        statistics.median(run.system_us for run in runs),
        statistics.median(run.switches for run in runs),
    )


if __name__ == "__main__":
    main()
