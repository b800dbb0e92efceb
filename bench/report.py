"""From the rounds' measurements to the medians, the ratios of issue #11, and the outputs.

    summaries = summarize(measurements)            # per case: medians over the rounds
    table = markdown(summaries, ratios(summaries), header)
    write_docs(DOCS, table)                        # between the markers, replacing the last
    write_json(RESULTS / "latest.json", {...})

A case's req/s, p50, p99 and CPU per request are the medians over its rounds (one slow
round moves none of them); "spread" is half the range of its req/s over the median.
Peak RSS is the largest VmHWM read after the case's rounds: cases that share a server
share its peak. "Others' CPU" is the most that processes other than the server and wrk
took of the machine in any of the case's rounds: above a few percent, the machine was
not quiet. Ratios divide medians.
"""

from __future__ import annotations

import json
import operator
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cases import CASES, SOAK

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TITLES = {case.name: case.title for case in [*CASES, SOAK]}


@dataclass(frozen=True)
class Measurement:
    """One case in one round."""

    case: str
    server: str
    round: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    peak_rss_mib: float
    failed: int
    flows_per_second: float
    others_cpu_share: float
    """The share of the machine's CPU that processes other than the server and wrk used
    during the run: how noisy the machine was."""
    beside_requests: int = 0
    """Requests of the case run beside this one (``Case.beside``), on the same server."""
    beside_requests_per_second: float | None = None


@dataclass(frozen=True)
class Ratio:
    label: str
    numerator: tuple[str, str]
    """(case, measure) of a summary; the measure alone when there is no denominator."""
    denominator: tuple[str, str] | None
    target: tuple[str, float] | None
    """(">=" or "<=", bound), from issue #11's targets; None for information."""


RPS = "requests_per_second"
RATIOS = [
    Ratio(
        "`GET /order/<id>` ÷ FastAPI + uvicorn",
        ("order_read", RPS),
        ("fastapi_read", RPS),
        (">=", 1.5),
    ),
    Ratio("`GET /order/<id>` ÷ raw WSGI", ("order_read", RPS), ("raw_wsgi", RPS), (">=", 0.25)),
    Ratio(
        "`GET /order/<id>`: p99 ÷ p50",
        ("order_read", "p99_ms"),
        ("order_read", "p50_ms"),
        ("<=", 4),
    ),
    Ratio("`/healthz` ÷ bare Flask hello", ("healthz", RPS), ("flask_hello", RPS), (">=", 0.8)),
    Ratio("deep page ÷ first page", ("deep_page", RPS), ("first_page", RPS), (">=", 0.9)),
    Ratio("login, req/s", ("login", RPS), None, (">=", 40)),
    Ratio(
        "`GET /order/<id>`: the full shop ÷ a shop of 1 000 orders",
        ("order_read", RPS),
        ("order_read_small", RPS),
        (">=", 0.9),
    ),
    Ratio(
        "`GET /order/<id>` beside logins: its p99 ÷ its p99 alone",
        ("order_read_beside_login", "p99_ms"),
        ("order_read", "p99_ms"),
        ("<=", 5),
    ),
    Ratio(
        "logins beside the reads ÷ logins alone (req/s)",
        ("order_read_beside_login", "beside_requests_per_second"),
        ("login", RPS),
        None,
    ),
    Ratio(
        "`GET /order/<id>`: gunicorn, 2 workers ÷ one waitress process",
        ("order_read_gunicorn", RPS),
        ("order_read", RPS),
        (">=", 1.7),
    ),
    Ratio(
        "SQLite shop's peak RSS: at the end ÷ after the warm-up",
        ("soak", "peak_rss_growth"),
        None,
        ("<=", 1.1),
    ),
    Ratio(
        "`GET /order/<id>` ÷ naive Flask stack",
        ("order_read", RPS),
        ("naive_flask_read", RPS),
        None,
    ),
    Ratio(
        "`GET /order/<id>`: PostgreSQL ÷ SQLite",
        ("order_read_postgres", RPS),
        ("order_read", RPS),
        None,
    ),
]
_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}
_SIGN = {">=": "≥", "<=": "≤"}


def summarize(measurements: list[Measurement]) -> dict[str, dict[str, Any]]:
    """Per case, in the order the cases ran: medians over the rounds, and the worst cases."""
    by_case: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_case.setdefault(measurement.case, []).append(measurement)
    summaries = {}
    for case, rounds in by_case.items():
        rates = [m.requests_per_second for m in rounds]
        median_rate = statistics.median(rates)
        summaries[case] = {
            "title": TITLES[case],
            "rounds": len(rounds),
            RPS: median_rate,
            "spread": (max(rates) - min(rates)) / 2 / median_rate if median_rate else 0.0,
            "p50_ms": statistics.median(m.p50_ms for m in rounds),
            "p99_ms": statistics.median(m.p99_ms for m in rounds),
            "cpu_us_per_request": statistics.median(m.cpu_us_per_request for m in rounds),
            "peak_rss_mib": max(m.peak_rss_mib for m in rounds),
            "failed": sum(m.failed for m in rounds),
            "flows_per_second": statistics.median(m.flows_per_second for m in rounds),
            "others_cpu_share": max(m.others_cpu_share for m in rounds),
            "beside_requests_per_second": _median_of(
                [m.beside_requests_per_second for m in rounds]
            ),
        }
    raw = summaries.get("raw_wsgi", {}).get(RPS)
    for summary in summaries.values():
        summary["of_raw_wsgi"] = summary[RPS] / raw if raw else None
    return summaries


def _median_of(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def add_growth(summaries: dict[str, dict[str, Any]], shop_memory: Mapping[str, float]) -> None:
    """The soak's summary gains the SQLite shop's requests and peak RSS since its warm-up."""
    summaries[SOAK.name].update(
        requests_after_warm_up=shop_memory["requests_after_warm_up"],
        peak_rss_after_warm_up_mib=shop_memory["peak_rss_after_warm_up_mib"],
        peak_rss_growth=shop_memory["peak_rss_mib"] / shop_memory["peak_rss_after_warm_up_mib"],
    )


def ratios(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Issue #11's ratios that this run's cases allow, each with its target and verdict."""
    found = []
    for ratio in RATIOS:
        parts = [ratio.numerator, *([ratio.denominator] if ratio.denominator else [])]
        if any(case not in summaries for case, _ in parts):
            continue
        value = summaries[ratio.numerator[0]][ratio.numerator[1]]
        if ratio.denominator:
            value /= summaries[ratio.denominator[0]][ratio.denominator[1]]
        found.append(
            {
                "ratio": ratio.label,
                "value": value,
                "target": f"{_SIGN[ratio.target[0]]} {ratio.target[1]:g}" if ratio.target else None,
                "met": _COMPARE[ratio.target[0]](value, ratio.target[1]) if ratio.target else None,
            }
        )
    return found


def markdown(
    summaries: Mapping[str, Mapping[str, Any]], found: list[dict[str, Any]], header: str
) -> str:
    lines = [
        header,
        "",
        "| case | req/s | spread | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB "
        "| ÷ raw WSGI | failed | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries.values():
        of_raw = summary["of_raw_wsgi"]
        lines.append(
            f"| {summary['title']} | {count(summary[RPS])} | ±{summary['spread']:.0%} "
            f"| {_ms(summary['p50_ms'])} | {_ms(summary['p99_ms'])} "
            f"| {count(summary['cpu_us_per_request'])} | {summary['peak_rss_mib']:.0f} "
            f"| {'—' if of_raw is None else f'{of_raw:.2f}'} | {summary['failed']} "
            f"| {summary['others_cpu_share']:.0%} |"
        )
    notes = []
    if "pay_flow" in summaries:
        notes.append(
            f"The pay flow completed {count(summaries['pay_flow']['flows_per_second'])} "
            "flows/s (a flow is two requests: place, then pay)."
        )
    beside = summaries.get("order_read_beside_login", {}).get("beside_requests_per_second")
    if beside is not None:
        notes.append(
            f"Beside the reads, logins ran at {count(beside)} req/s; that row's CPU per "
            "request counts both loads' requests."
        )
    if "peak_rss_growth" in summaries.get(SOAK.name, {}):
        soak = summaries[SOAK.name]
        notes.append(
            f"From its warm-up to the end of the soak, the SQLite shop served "
            f"{count(soak['requests_after_warm_up'])} requests; its peak RSS went from "
            f"{soak['peak_rss_after_warm_up_mib']:.1f} to {soak['peak_rss_mib']:.1f} MiB."
        )
    if notes:
        lines += ["", *notes]
    if found:
        lines += ["", "| ratio (issue #11) | this run | target | |", "|---|---:|---:|---|"]
        for ratio in found:
            verdict = "" if ratio["met"] is None else ("met" if ratio["met"] else "**not met**")
            lines.append(
                f"| {ratio['ratio']} | {ratio['value']:.2f} | {ratio['target'] or '—'} "
                f"| {verdict} |"
            )
    return "\n".join(lines) + "\n"


def write_docs(path: Path, table: str) -> None:
    """Put ``table`` between the markers of ``path``, replacing what the last run put there."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"bench: {path} lacks the markers {BEGIN} and {END}")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    path.write_text(f"{before}{BEGIN}\n{table}{END}{after}")


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def as_dicts(measurements: list[Measurement]) -> list[dict[str, Any]]:
    return [asdict(measurement) for measurement in measurements]


def count(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
