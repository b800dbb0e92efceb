"""``make bench``: microshop against the raw WSGI limit and its peers, in one run.

    .venv/bin/python -m bench.run                                  # the full run, 10-13 minutes
    .venv/bin/python -m bench.run --cases order_read,fastapi_read  # some cases only
    .venv/bin/python -m bench.run --seconds 1 --rounds 1 --orders 20000   # a quick look

It seeds a production microshop on SQLite (and one on PostgreSQL) in a temporary folder,
starts every server the chosen cases need on a free loopback port, logs the reader and
the writer in once, warms every case up (and stops if any of its requests fails), then
runs the cases interleaved: each round runs every case once, in the same order, so a
slow minute on the machine hits all of them alike. It prints the Markdown table; a run
of every case also writes it into ``docs/performance.md`` and the measurements into
``bench/results/latest.json`` (a run of some cases writes ``bench/results/partial.json``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg

from app.kit.pagination import encode_cursor
from bench import report
from bench.cases import (
    CASES,
    SERVERS,
    SMALL_SHOP_ORDERS,
    SOAK,
    SOAK_MOST_SECONDS,
    SOAK_REQUESTS,
    Case,
    Fixture,
)
from bench.load import ensure_wrk, run_wrk
from bench.seed import READER, WRITER, reader_order_ids, seed, username
from bench.servers import ROOT, WAITRESS_THREADS, Server, machine_busy_seconds
from bench.shop import (
    DEFAULT_POSTGRES_URL,
    database_urls,
    login,
    migrate,
    postgres_databases,
    postgres_version,
    shop_environment,
)

WARM_UP_SECONDS = 1
READ_SAMPLE = 1000
"""How many of the reader's order ids ``GET /order/<id>`` picks among."""
PACKAGES = ("waitress", "flask", "flask-restful", "flask-jwt-extended", "sqlalchemy", "pydantic")
PEER_PACKAGES = ("fastapi", "uvicorn", "uvloop", "httptools", "flask-sqlalchemy")
CASE_NAMED = {case.name: case for case in CASES}


def main(argv: Sequence[str] | None = None) -> None:
    options = _parse(argv)
    if options.postgres_orders is None:
        options.postgres_orders = min(100_000, options.orders)
    cases = _chosen(options.cases)
    ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="microshop-bench-"))
    try:
        _run(options, cases, folder)
    finally:
        if options.keep:
            print(f"bench: kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=6, help="wrk's duration per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every case once")
    parser.add_argument(
        "--cases",
        help="comma-separated case names (default: all): " + ", ".join(c.name for c in CASES),
    )
    parser.add_argument("--users", type=int, default=10_000, help="seeded users")
    parser.add_argument("--orders", type=int, default=1_000_000, help="seeded orders (SQLite)")
    parser.add_argument(
        "--postgres-orders",
        type=int,
        help="seeded orders on PostgreSQL (default: 100 000, or --orders if fewer)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MICROSHOP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database to make (and drop) three schemas in "
        "(default: $MICROSHOP_BENCH_POSTGRES_URL, else %(default)s)",
    )
    parser.add_argument(
        "--soak-requests",
        type=int,
        help="after the rounds, read orders until the SQLite shop has served this many "
        f"requests since its warm-up (default: {SOAK_REQUESTS} in a run of every case, "
        "else 0: no soak); needs the order_read case",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and logs")
    return parser.parse_args(argv)


def _chosen(names: str | None) -> list[Case]:
    if not names:
        return list(CASES)
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = wanted - {case.name for case in CASES}
    if unknown:
        raise SystemExit(f"bench: no such case: {', '.join(sorted(unknown))}")
    return [case for case in CASES if case.name in wanted]


def _run(options: argparse.Namespace, cases: list[Case], folder: Path) -> None:
    started = datetime.now(UTC)
    commit = _commit()
    secret = secrets.token_urlsafe(48)
    envs = {"shop": shop_environment(folder / "sqlite", secret)}
    envs["shop_gunicorn"] = envs["shop"]  # the same shop, served by gunicorn's workers
    seeding = {"sqlite": _seed(envs["shop"], options.users, options.orders)}
    if any(case.server == "shop_small" for case in cases):
        envs["shop_small"] = shop_environment(folder / "small", secret)
        seeding["sqlite_small"] = _seed(envs["shop_small"], options.users, SMALL_SHOP_ORDERS)
    with ExitStack() as stack:
        if any(case.server == "shop_postgres" for case in cases):
            postgres_env = _postgres_shop(stack, options.postgres_url, folder / "postgres", secret)
            if postgres_env is None:
                cases = [case for case in cases if case.server != "shop_postgres"]
            else:
                envs["shop_postgres"] = postgres_env
                seeding["postgresql"] = _seed(postgres_env, options.users, options.postgres_orders)
        servers = _start_servers(stack, cases, envs, folder)
        fixture = make_fixture(servers["shop"].url, envs)
        for case in cases:  # and the cases run beside them: argon2id's memory is in the peak
            for warmed in (case, *([CASE_NAMED[case.beside]] if case.beside else [])):
                _warm_up(warmed, servers[case.server], fixture)
        rss_warm = {name: server.rss_kib() for name, server in servers.items()}
        peak_warm = servers["shop"].peak_rss_kib()
        measurements = [
            _measure(case, number, servers[case.server], fixture, options.seconds)
            for number in range(1, options.rounds + 1)
            for case in cases
        ]
        served = sum(m.requests + m.beside_requests for m in measurements if m.server == "shop")
        soak = _soak(options, measurements, servers["shop"], fixture, served)
        if soak is not None:
            measurements.append(soak)
            served += soak.requests
        memory = {
            name: {
                "rss_after_warm_up_mib": rss_warm[name] / 1024,
                "rss_at_end_mib": server.rss_kib() / 1024,
                "peak_rss_mib": server.peak_rss_kib() / 1024,
            }
            for name, server in servers.items()
        }
        memory["shop"].update(
            peak_rss_after_warm_up_mib=peak_warm / 1024, requests_after_warm_up=served
        )
    summaries = report.summarize(measurements)
    if soak is not None:
        report.add_growth(summaries, memory["shop"])
    found = report.ratios(summaries)
    machine = _machine(options.postgres_url if "postgresql" in seeding else None)
    table = report.markdown(summaries, found, _header(options, started, commit, seeding, machine))
    print(table)
    complete = options.cases is None
    report.write_json(
        report.RESULTS / ("latest.json" if complete else "partial.json"),
        {
            "started": started.isoformat(timespec="seconds"),
            "commit": commit,
            "settings": {
                "seconds": options.seconds,
                "rounds": options.rounds,
                "wrk": "-t2 -c8 --latency --timeout=10s (login: -c4)",
                "waitress_threads": WAITRESS_THREADS,
                "cases": [case.name for case in cases],
            },
            "machine": machine,
            "seeding": seeding,
            "cases": summaries,
            "ratios": found,
            "servers": memory,
            "measurements": report.as_dicts(measurements),
        },
    )
    if complete:
        report.write_docs(report.DOCS, table)


def _postgres_shop(
    stack: ExitStack, base_url: str, folder: Path, secret: str
) -> dict[str, str] | None:
    """The environment of a shop on fresh PostgreSQL schemas (dropped when ``stack``
    closes), or None when the database cannot be reached."""
    try:
        urls = stack.enter_context(postgres_databases(base_url, str(os.getpid())))
    except psycopg.OperationalError as error:
        print(f"bench: PostgreSQL unreachable, its case is skipped: {error}", file=sys.stderr)
        return None
    return shop_environment(folder, secret, urls)


def _start_servers(
    stack: ExitStack, cases: list[Case], envs: dict[str, dict[str, str]], folder: Path
) -> dict[str, Server]:
    """Every server the cases load, and the SQLite shop, which the logins need; the peers
    read the SQLite shop's order database."""
    peer_env = {**envs["shop"], "BENCH_ORDER_DATABASE_URL": database_urls(envs["shop"])["order"]}
    servers = {}
    for name in dict.fromkeys(["shop", *(case.server for case in cases)]):
        spec = SERVERS[name]
        servers[name] = stack.enter_context(
            Server.running(
                name, spec.command, env=envs.get(name, peer_env), health=spec.health, logs=folder
            )
        )
    return servers


def _seed(env: dict[str, str], users: int, orders: int) -> dict[str, Any]:
    began = time.perf_counter()
    migrate(env)
    counts = seed(database_urls(env), users=users, orders=orders)
    seconds = time.perf_counter() - began
    print(f"bench: seeded {counts} in {seconds:.1f} s", file=sys.stderr)
    return {
        "users": counts.users,
        "orders": counts.orders,
        "payments": counts.payments,
        "seconds": seconds,
    }


def make_fixture(shop_url: str, envs: dict[str, dict[str, str]]) -> Fixture:
    """Tokens and order ids from the seeded shops in ``envs`` (``shop``, and
    ``shop_postgres`` and ``shop_small`` when they run)."""
    ids = reader_order_ids(database_urls(envs["shop"])["order"])
    others = {
        name: reader_order_ids(database_urls(envs[name])["order"]) if name in envs else []
        for name in ("shop_postgres", "shop_small")
    }
    sample = random.Random(5)

    def reads(found: list[int]) -> list[int]:
        return sample.sample(found, min(READ_SAMPLE, len(found)))

    return Fixture(
        reader_token=login(shop_url, username(READER)),
        writer_token=login(shop_url, username(WRITER)),
        reader_ids=reads(ids),
        deep_cursor=encode_cursor(ids[min(20, len(ids) - 1)]),
        postgres_reader_ids=reads(others["shop_postgres"]),
        small_reader_ids=reads(others["shop_small"]),
    )


def _warm_up(case: Case, server: Server, fixture: Fixture) -> None:
    """A short unmeasured run: caches filled, and a case that fails stops the benchmark."""
    load = run_wrk(
        server.url, case.wrk_args(fixture), seconds=WARM_UP_SECONDS, connections=case.connections
    )
    if load.failed or not load.requests:
        tail = server.log.read_text()[-3000:]
        raise SystemExit(f"bench: {case.name} failed {load.failed} of {load.requests}:\n{tail}")


def _soak(
    options: argparse.Namespace,
    measurements: list[report.Measurement],
    shop: Server,
    fixture: Fixture,
    served: int,
) -> report.Measurement | None:
    """``SOAK``, for as long as the order reads of the rounds say the SQLite shop needs to
    have served ``--soak-requests`` since its warm-up; None when the run skips it."""
    wanted = options.soak_requests
    if wanted is None:
        wanted = SOAK_REQUESTS if options.cases is None else 0
    rates = [m.requests_per_second for m in measurements if m.case == "order_read"]
    if wanted <= served or not rates:
        return None
    seconds = min(SOAK_MOST_SECONDS, math.ceil((wanted - served) / statistics.median(rates)))
    print(f"bench: soak of {seconds} s, {served} requests served so far", file=sys.stderr)
    return _measure(SOAK, 1, shop, fixture, seconds)


def _cpu_clocks(server: Server) -> tuple[float, float, float]:
    """CPU seconds so far of the server, of wrk (this process's finished children), and of
    the whole machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return server.cpu_seconds(), children.ru_utime + children.ru_stime, machine_busy_seconds()


def _measure(
    case: Case, number: int, server: Server, fixture: Fixture, seconds: int
) -> report.Measurement:
    """One run of ``case`` (and of the case beside it, on the same server at once)."""
    before = _cpu_clocks(server)
    with ThreadPoolExecutor(max_workers=2) as pool:
        beside = None
        if case.beside is not None:
            other = CASE_NAMED[case.beside]
            beside = pool.submit(
                run_wrk,
                server.url,
                other.wrk_args(fixture),
                seconds=seconds,
                connections=other.connections,
            )
        load = run_wrk(
            server.url, case.wrk_args(fixture), seconds=seconds, connections=case.connections
        )
        beside_load = beside.result() if beside is not None else None
    beside_requests = beside_load.requests if beside_load else 0
    cpu, wrk, machine = (
        after - then for after, then in zip(_cpu_clocks(server), before, strict=True)
    )
    measurement = report.Measurement(
        case=case.name,
        server=case.server,
        round=number,
        requests=load.requests,
        seconds=load.seconds,
        requests_per_second=load.requests_per_second,
        p50_ms=load.p50_ms,
        p99_ms=load.p99_ms,
        cpu_us_per_request=cpu * 1e6 / max(load.requests + beside_requests, 1),
        peak_rss_mib=server.peak_rss_kib() / 1024,
        failed=load.failed + (beside_load.failed if beside_load else 0),
        flows_per_second=load.flows / load.seconds,
        others_cpu_share=max(0.0, machine - cpu - wrk) / (load.seconds * (os.cpu_count() or 1)),
        beside_requests=beside_requests,
        beside_requests_per_second=beside_load.requests_per_second if beside_load else None,
    )
    print(
        f"round {number} {case.name:20} {measurement.requests_per_second:8.0f} req/s  "
        f"p50 {measurement.p50_ms:7.2f} ms  p99 {measurement.p99_ms:7.2f} ms  "
        f"{measurement.cpu_us_per_request:6.0f} µs CPU/req  {measurement.failed} failed  "
        f"others {measurement.others_cpu_share:.0%}",
        file=sys.stderr,
    )
    return measurement


def _commit() -> str:
    """The commit measured, ``-dirty`` when tracked files differ from it."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return described.stdout.strip() or "unknown"


def _machine(postgres_url: str | None) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(postgres_url) if postgres_url else None,
        "wrk": wrk.split()[1] if wrk else "unknown",
        "packages": {name: _version(name) for name in PACKAGES + PEER_PACKAGES},
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _header(
    options: argparse.Namespace,
    started: datetime,
    commit: str,
    seeding: dict[str, dict[str, Any]],
    machine: dict[str, Any],
) -> str:
    rounds = f"{options.rounds} round{'s' if options.rounds > 1 else ''}"
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC at commit {commit}: {rounds} of "
        f"{options.seconds} s per case, interleaved; wrk -t2 -c8 (login -c4); "
        "production settings.",
    ]
    shops = (
        ("sqlite", "sqlite", "SQLite"),
        ("sqlite_small", "sqlite", "SQLite, the small shop"),
        ("postgresql", "postgresql", "PostgreSQL"),
    )
    for database, engine, name in shops:
        if database in seeding:
            counts = seeding[database]
            lines.append(
                f"{name} {machine[engine]}: {report.count(counts['users'])} users, "
                f"{report.count(counts['orders'])} orders, "
                f"{report.count(counts['payments'])} payments "
                f"(seeded in {counts['seconds']:.0f} s)."
            )
    packages = ", ".join(f"{name} {v}" for name, v in machine["packages"].items())
    lines.append(
        f"{machine['cores']} cores ({machine['cpu']}), Python {machine['python']}, "
        f"wrk {machine['wrk']}; {packages}."
    )
    return "\n".join(f"- {line}" for line in lines)


if __name__ == "__main__":
    main()
