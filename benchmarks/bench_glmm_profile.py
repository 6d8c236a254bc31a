"""GLMM profile-likelihood intervals: ``result.confint("profile")`` against lme4's
``confint(fit, method = "profile")`` of the same glmer model.

Run from the repository root (R with lme4 on PATH as Rscript):

    python benchmarks/bench_glmm_profile.py            # three models
    python benchmarks/bench_glmm_profile.py --write    # also put the section into RESULTS.md

Models (tests/data, Laplace fits): cbpp, ``cbind(incidence, size - incidence) ~ period +
(1 | herd)`` (56 rows); a Poisson model with an offset and three crossed factors (2,000
rows); a binary model with a correlated by-subject slope (3,000 rows). interlace: one
process fits each model, then times ``confint("profile")`` twice, the *first call* (it
compiles only the small sd/cor-to-theta map: the refits run on the fit's compiled
evaluation) and a *repeat*. lme4: ``benchmarks/lme4_glmm_profile.R`` times
``confint(fit, method = "profile")`` (default settings) in one Rscript, each fit made
first, untimed. The largest relative difference of the interval ends is shown: lme4
interpolates a spline through its profile points and its constrained refits stop earlier
(tests/test_glmm_profile.py: at lme4's own points ours are never higher), so ends agree
to ~1e-4..4e-3, not to the last digit. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
HEADING = '## GLMM profile intervals: interlace vs lme4\'s confint(method = "profile")'
MODELS = {
    "cbpp": (
        "cbpp.csv",
        ["herd", "period"],
        "binomial",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    ),
    "poisson_offset": (
        "glmm_poisson_offset.csv",
        ["site", "year", "observer"],
        "poisson",
        "count ~ cover + offset(np.log(hours)) + (1 | site) + (1 | year) + (1 | observer)",
    ),
    "binary_slope": (
        "glmm_binary_slope.csv",
        ["subject", "item"],
        "binomial",
        "y ~ x + (1 + x | subject) + (1 | item)",
    ),
}


def run() -> dict:
    import interlace

    rows = {}
    for key, (file, factors, family, formula) in MODELS.items():
        data = pd.read_csv(DATA / file, dtype={c: str for c in factors})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = interlace.fit(formula, data, family=family)
            t0 = time.perf_counter()
            fit.confint("profile")
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            ci = fit.confint("profile")
            repeat = time.perf_counter() - t0
        rows[key] = {
            "first_s": first,
            "repeat_s": repeat,
            "rows": list(ci.index),
            "lower": ci.iloc[:, 0].tolist(),
            "upper": ci.iloc[:, 1].tolist(),
        }
        print(key, f"first {first:.2f} s, repeat {repeat:.2f} s", flush=True)
    cmd = ["Rscript", str(HERE / "lme4_glmm_profile.R"), str(DATA)]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return harness.run_record(interlace, interlace=rows, lme4=r)


def _largest_difference(ours: dict, theirs: dict) -> float:
    """Largest relative difference of the ends, rows matched in order (sd/cor rows have
    the same names; fixed effects are in the same order under different names)."""
    a = np.array([ours["lower"], ours["upper"]])
    b = np.array([theirs["lower"], theirs["upper"]])
    if a.shape != b.shape:
        return float("nan")
    # lme4 orders a model's random terms by their number of levels; match sd/cor by name
    order = [
        theirs["rows"].index(n) if n in theirs["rows"] else i for i, n in enumerate(ours["rows"])
    ]
    return float(np.max(np.abs(a - b[:, order]) / np.maximum(np.abs(b[:, order]), 1e-12)))


def render(raw: dict) -> str:
    r = raw["lme4"]
    lines = [
        *harness.section_head(raw, HEADING, r["version"]),
        "Method: `benchmarks/bench_glmm_profile.py` docstring. Wall seconds of one call each.",
        "",
        "| model | parameters | interlace first call | interlace repeat | lme4 | "
        "lme4 / first call | largest relative difference of the ends |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, ours in raw["interlace"].items():
        theirs = r[key]
        lines.append(
            f"| {key} | {len(ours['rows'])} | {ours['first_s']:.2f} s | {ours['repeat_s']:.2f} s | "
            f"{theirs['seconds']:.1f} s | {theirs['seconds'] / ours['first_s']:.1f}x | "
            f"{_largest_difference(ours, theirs):.1e} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = ap.parse_args()
    raw = run()
    harness.publish(raw, "glmm_profile", render(raw), HEADING, args.write)


if __name__ == "__main__":
    main()
