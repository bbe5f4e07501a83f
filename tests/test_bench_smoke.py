"""The benchmark scripts run at tiny sizes so they do not rot (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_benchmark_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/scale.py", "--units", "20", "--drafts", "500", "--adoptions", "50", "--repeat", "1",
         "--keep", str(tmp_path / "s.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "standings ms" in result.stdout and "custom" in result.stdout


def test_ingest_benchmark_runs():
    """All three servers (NoneBot2 installed into bench/.venv-nonebot on first use), tiny sizes."""
    result = subprocess.run(
        [sys.executable, "bench/ingest.py", "--events", "60", "--senders", "1", "5", "--rounds", "1",
         "--rush", "6", "--rush-officers", "3", "--rush-seconds", "2", "--drain-seconds", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"xinxibot", "nonebot2", "bare"} <= rows, result.stdout
    assert (
        "xinxibot/nonebot2" in result.stdout and "lost: 0; duplicated receipts: 0" in result.stdout
    )


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
