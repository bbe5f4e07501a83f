"""The benchmark scripts run at tiny sizes so they do not rot (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from . import pgtest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.sqlite_only("the SQLite runs; the PostgreSQL options have their own smoke test")
def test_scale_benchmark_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/scale.py", "--units", "20", "--drafts", "500", "--adoptions", "50", "--repeat", "1",
         "--startup-runs", "1", "--keep", str(tmp_path / "s.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "standings ms" in result.stdout and "custom" in result.stdout


@pytest.mark.sqlite_only("the SQLite runs; the PostgreSQL options have their own smoke test")
def test_startup_benchmark_runs():
    result = subprocess.run(
        [sys.executable, "bench/startup.py", "--runs", "1", "--idle", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "idle RSS MB" in result.stdout and "county" in result.stdout
    assert "started in" in result.stdout and "import bot.cli, handlers" in result.stdout


@pytest.mark.sqlite_only("the SQLite runs; the PostgreSQL options have their own smoke test")
def test_ingest_benchmark_runs():
    """All three servers (NoneBot2 installed into bench/.venv-nonebot on first use), tiny sizes."""
    result = subprocess.run(
        [sys.executable, "bench/ingest.py", "--events", "60", "--senders", "1", "5", "--rounds", "1",
         "--rush", "6", "--rush-officers", "3", "--rush-seconds", "2", "--drain-seconds", "30",
         "--cost-events", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"xinxibot", "nonebot2", "bare"} <= rows, result.stdout
    assert (
        "xinxibot/nonebot2" in result.stdout and "lost: 0; duplicated receipts: 0" in result.stdout
    )
    costs = [line.split() for line in result.stdout.splitlines() if line.startswith("xinxibot  ")]
    submit = next(row for row in costs if row[1] == "/报送")  # CPU, SQL and commits per event
    assert int(submit[2]) == 10 and float(submit[4]) > 0 and float(submit[5]) > 0, costs


def test_hostile_files_benchmark_runs():
    result = subprocess.run(
        [sys.executable, "bench/hostile_files.py", "--inflate-mb", "4", "--limit", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "peak (VmHWM)" in result.stdout and "解压后内容过大" in result.stdout


def test_flood_benchmark_runs():
    result = subprocess.run(
        [sys.executable, "bench/flood.py", "--helps", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "officer's receipt delay" in result.stdout


def test_slow_clients_benchmark_runs():
    result = subprocess.run(
        [sys.executable, "bench/slow_clients.py", "--posts", "4", "--stalled", "5",
         "--half-open", "10", "--seconds", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loads = [
        line.split()[1] for line in result.stdout.splitlines() if line[:2] in ("1 ", "2 ", "3 ")
    ]
    assert loads == ["unauthenticated", "stalled", "descriptors"], result.stdout


@pytest.mark.postgres
def test_benchmarks_run_on_postgres(tmp_path):
    """--postgres: standings beside SQLite; ingest with one and two processes."""
    scale = subprocess.run(
        [sys.executable, "bench/scale.py", "--units", "20", "--drafts", "500", "--adoptions", "50", "--repeat", "1",
         "--startup-runs", "1", "--postgres", pgtest.BASE_URL],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert scale.returncode == 0, scale.stderr
    assert "custom/pg" in scale.stdout and "HashAggregate" in scale.stdout
    ingest = subprocess.run(
        [sys.executable, "bench/ingest.py", "--events", "40", "--senders", "1", "4", "--rounds", "1", "--rush", "0",
         "--no-nonebot", "--cost-events", "0", "--postgres", pgtest.BASE_URL],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    rows = [line.split() for line in ingest.stdout.splitlines() if line.startswith("pg")]
    assert {r[0] for r in rows} == {"pg", "pg-2proc"} and all(r[5] == "0" for r in rows), rows
    leftovers = pgtest.query(
        pgtest.BASE_URL, "select count(*) from pg_database where datname like 'xinxibot_bench_%'"
    )
    assert leftovers == [(0,)]
