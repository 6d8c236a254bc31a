"""Smoke test: every example runs to completion and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    # in a scratch folder: examples may write files (03 writes its plots)
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()


def test_results_page_example_prints_the_page_numbers():
    path = next(p for p in EXAMPLES if p.name == "01_results_page.py")
    out = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300
    ).stdout
    for line in (
        "LR statistic: 0.210 (df=1)",
        "p-value: 0.6470",
        "AIC: 2061.00",
        "BIC: 2083.22",
        "log-lik: -1024.50",
        "converged: True",
        "student_id: σ² = 4.513 (σ ≈ 2.12 score points)",
        "Residual variance (scale): σ² = 51.391 (σ ≈ 7.17 score points)",
        "ICC(student_id): 0.081 → 8.1% of variance explained by student_id",
        "Conditional predictions — mean: 59.67, std: 1.43",
        "boundary (singular) fit: see help(interlace.isSingular)",
    ):
        assert line in out, line
