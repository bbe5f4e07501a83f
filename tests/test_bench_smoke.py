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
