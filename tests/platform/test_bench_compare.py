"""``python -m bench.compare``: its arithmetic and its worktree, without a server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.compare import Sample, _parse, _worktree, table
from bench.servers import ROOT


def sample(rate: float, user: float, system: float = 100.0) -> Sample:
    return Sample(requests_per_second=rate, user_us=user, system_us=system, switches=16.0)


def test_the_table_divides_the_work_trees_medians_by_the_bases():
    samples = {
        "healthz": {
            "base": [sample(100, 300), sample(200, 400), sample(900, 200)],
            "work tree": [sample(300, 150), sample(400, 200), sample(500, 250)],
        }
    }
    lines = table(samples).splitlines()
    assert lines[2] == "| healthz | base | 200 | 400 (300 + 100) | 16.0 |"
    assert lines[3] == "| healthz | work tree | 400 | 300 (200 + 100) | 16.0 |"
    assert lines[4] == "| healthz | work tree ÷ base | 2.00 | 0.75 | |"


@pytest.mark.parametrize("cases", ["nonsense", "fastapi_read", "order_read_beside_login"])
def test_only_the_cases_of_one_sqlite_shop_compare(cases: str):
    with pytest.raises(SystemExit):
        _parse(["HEAD", "--cases", cases])
    assert _parse(["HEAD", "--cases", "healthz,deep_page"]).cases == ["healthz", "deep_page"]


def test_the_base_is_checked_out_beside_and_removed(tmp_path: Path):
    path = tmp_path / "base"
    with _worktree("HEAD", path) as checked_out:
        assert (checked_out / "wsgi.py").read_text() == (ROOT / "wsgi.py").read_text()
    assert not path.exists()
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert str(path) not in listed.stdout
