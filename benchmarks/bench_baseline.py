"""Time the working tree against a baseline git revision of interlace, on the same machine.

Run from the repository root:
    python benchmarks/bench_baseline.py --baseline REV [--repeats N] [--write]

The baseline is checked out into a temporary git worktree and put first on
``PYTHONPATH`` of its child processes; the working tree's children import this checkout.
Each (code, workload) pair runs in its own fresh process with the persistent compilation
cache off, baseline and working tree alternating, so that drift in the machine's load
falls on both. Each process compiles once (untimed), then times the workload ``--repeats``
times; tables report medians. ``--write`` puts the table into benchmarks/RESULTS.md
(section "Against a baseline revision"). Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import ROOT

HEADING = "## Against a baseline revision"
INSTEVAL = (
    "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
    "tests/data/insteval.csv.gz",
    {"s": "str", "d": "str", "dept": "str", "service": "str"},
)
SLEEP = ("Reaction ~ Days + (Days | Subject)", "tests/data/sleepstudy.csv", {"Subject": "str"})
PAGE = (
    "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)",
    "tests/data/results_page.csv",
    {},
)
HIGH_SNR = (
    "y1 ~ x + (x | subject) + (1 | site)",
    "tests/data/high_snr_slopes.csv",
    {"subject": "str", "site": "str"},
)
# (x || g) with x ~ N(50, 1), 1,500 rows, 40 levels, no random variation: far_slope_data()
FAR_SLOPE = ("y ~ x + (x || g)", "benchmarks/out/far_slope.csv", {"g": "str"})
# (x || g) with x of spread 1e6, 600 rows, 25 levels: huge_slope_data()
HUGE_SLOPE = ("y ~ x + (x || g)", "benchmarks/out/huge_slope.csv", {"g": "str"})
WORKLOADS = {  # key -> (title, model, what is timed)
    "insteval_fit": ("InstEval REML fit, compiled", INSTEVAL, "fit"),
    "page_fit": ("Results page REML fit, compiled", PAGE, "fit"),
    "sleep_boot": ("sleepstudy parametric_bootstrap(1000), compiled", SLEEP, "boot1000"),
    "page_influence": (
        "Results page hlm_influence (300 row deletions), compiled",
        PAGE,
        "influence",
    ),
    "new_models": (
        "12 new small models (bench_latency.py's), first fits in one process "
        "after a warm-up fit of the page: total",
        PAGE,
        "new_models",
    ),
    "high_snr_fit": (
        "Random slopes with ~1e6 times the residual variance (tests/data/high_snr_slopes.csv, "
        "y1), REML fit, compiled",
        HIGH_SNR,
        "fit",
    ),
    "far_slope_many": (
        "`fit_many`, `y ~ x + (x || g)` with x near 50, 64 responses, compiled "
        "(deviance column: their sum)",
        FAR_SLOPE,
        "many64",
    ),
    "huge_slope_many": (
        "`fit_many`, `y ~ x + (x || g)` with x of spread 1e6, 64 responses, compiled "
        "(deviance column: their sum)",
        HUGE_SLOPE,
        "many64",
    ),
}

CHILD = r"""
import json, sys, time, warnings
import pandas as pd
import interlace
formula, path, dtypes, what, repeats, models = json.loads(sys.argv[1])
df = pd.read_csv(path, dtype=dtypes)
warnings.simplefilter("ignore")
if what == "new_models":  # each model is new once per process: one timed pass
    frames = [(m["formula"], m["REML"], pd.read_csv(m["csv"], dtype={f: str for f in m["factors"]}))
              for m in models]
    fit = interlace.fit(formula, df)
    t0 = time.perf_counter()
    for f, reml, d in frames:
        interlace.fit(f, d, method="REML" if reml else "ML")
    print("@@" + json.dumps({"seconds": [time.perf_counter() - t0], "deviance": fit.deviance,
                             "where": interlace.__file__}))
    sys.exit(0)
import numpy as np
Y, extra = None, {}
if what == "many64":  # the same 64 responses for both codes
    rng = np.random.default_rng(64)
    Y = df["y"].to_numpy()[:, None] + rng.normal(size=(len(df), 64)) * np.linspace(0.5, 2, 64)
def run(i):
    fit = interlace.fit(formula, df)
    if what == "many64":
        table = interlace.fit_many(formula, df, Y)
        extra["deviance"] = float(table["deviance"].sum())
        extra["converged"] = int(table["converged"].sum())
    elif what == "boot1000":
        fit.parametric_bootstrap(1000, seed=i, progress=False)
    elif what == "influence":
        interlace.hlm_influence(fit, progress=False)
    return fit
run(0)  # compiles
times = []
for i in range(1, repeats + 1):
    t0 = time.perf_counter()
    fit = run(i)
    times.append(time.perf_counter() - t0)
print("@@" + json.dumps({"seconds": times, "deviance": extra.get("deviance", fit.deviance),
                         "converged": extra.get("converged"), "where": interlace.__file__}))
"""


def far_slope_data() -> None:
    """``benchmarks/out/far_slope.csv`` for FAR_SLOPE (seeded; rewritten at every run)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(10)
    n = 1500
    d = pd.DataFrame({"g": rng.integers(0, 40, n).astype(str), "x": rng.normal(50.0, 1.0, n)})
    d["y"] = 2.0 + 0.3 * d.x + rng.normal(size=n)
    path = ROOT / FAR_SLOPE[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    d.to_csv(path, index=False)


def huge_slope_data() -> None:
    """``benchmarks/out/huge_slope.csv`` for HUGE_SLOPE: the design of
    ``tests/test_high_snr_slopes.py::test_refits_of_a_slope_on_a_covariate_in_huge_units``
    (seeded; rewritten at every run)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(15)
    n = 600
    g, h = rng.integers(0, 25, n), rng.integers(0, 8, n)
    u = rng.normal(size=n)
    d = pd.DataFrame({"g": g.astype(str), "x": 1e6 * u})
    d["y"] = 2 + 0.5 * u + rng.normal(size=25)[g] + 0.4 * rng.normal(size=25)[g] * u
    d["y"] += 0.5 * rng.normal(size=8)[h] + rng.normal(size=n)
    path = ROOT / HUGE_SLOPE[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    d.to_csv(path, index=False)


def _latency_models() -> list[dict]:
    """bench_latency.py's twelve models (their CSVs regenerated), absolute paths."""
    import bench_latency

    manifest = bench_latency.write_data(list(bench_latency.MODELS))
    return [dict(m, csv=str(ROOT / m["csv"])) for k, m in manifest.items() if k != "page"]


def run_child(workload: str, repeats: int, tree: Path) -> dict:
    """One fresh process importing the interlace of checkout ``tree`` (``python -c`` puts
    its working directory first on ``sys.path``; ``PYTHONPATH`` too, for clarity)."""
    _, (formula, path, dtypes), what = WORKLOADS[workload]
    env = dict(
        os.environ,
        INTERLACE_NO_COMPILATION_CACHE="1",
        INTERLACE_NO_PROGRESS="1",
        PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    models = _latency_models() if what == "new_models" else []
    if what == "new_models" and repeats > 1:  # one timed pass per process
        runs = [run_child(workload, 1, tree) for _ in range(repeats)]
        return dict(runs[0], seconds=[r["seconds"][0] for r in runs])
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps([formula, str(ROOT / path), dtypes, what, repeats, models]),
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
    if out.returncode or not line:
        raise RuntimeError(f"{workload} failed:\n{out.stderr[-2000:]}")
    return json.loads(line[0][2:])


def render(baseline: str, head: str, rows: dict, repeats: int, env: dict) -> str:
    lines = [
        HEADING,
        "",
        f"Generated by `python benchmarks/bench_baseline.py --baseline {baseline} "
        f"--repeats {repeats}`: the baseline ({baseline}) and the working tree ({head}), "
        "each workload in a fresh process per code (persistent cache off, one untimed "
        "compiling call first), baseline and working tree alternating. Medians of "
        f"{repeats} timed calls, wall-clock seconds; ratio = working tree / baseline "
        "(below 1: faster).",
        "",
        *harness.environment_lines(env, lme4="not used", compact=True),
        "",
        "| workload | baseline | working tree | ratio | deviance (both) |",
        "|---|---|---|---|---|",
    ]
    for key, (base, new) in rows.items():
        b, n = harness.median(base["seconds"]), harness.median(new["seconds"])
        same = abs(base["deviance"] - new["deviance"]) <= 1e-8 * abs(base["deviance"])
        lines.append(
            f"| {WORKLOADS[key][0]} | {b:.3f} | {n:.3f} | {n / b:.2f} | "
            f"{new['deviance']:.6f} "
            f"({'equal to 1e-8' if same else 'DIFFER: ' + str(base['deviance'])}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare against")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.baseline],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    rows = {}
    if "far_slope_many" in args.workloads:
        far_slope_data()
    if "huge_slope_many" in args.workloads:
        huge_slope_data()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for key in args.workloads:
                base = run_child(key, args.repeats, tree)
                new = run_child(key, args.repeats, ROOT)
                assert Path(base["where"]).resolve().is_relative_to(tree.resolve()), base
                assert Path(new["where"]).resolve().is_relative_to(ROOT), new
                rows[key] = (base, new)
                print(
                    f"{key}: baseline {harness.median(base['seconds']):.3f} s, "
                    f"working tree {harness.median(new['seconds']):.3f} s"
                    + (
                        f"; converged {base['converged']} vs {new['converged']} of 64"
                        if new.get("converged") is not None
                        else ""
                    ),
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True
            )
    env = harness.environment()  # this checkout's commit (the children imported interlace)
    harness.save_json(
        {"baseline": rev, "head": head, "repeats": args.repeats, "rows": rows, "environment": env},
        harness.OUT / "baseline_latest.json",
    )
    md = render(rev, head + " + uncommitted" if _dirty() else head, rows, args.repeats, env)
    print(md)
    if args.write:
        harness.replace_section(md, HEADING)


def _dirty() -> bool:
    return bool(
        subprocess.run(
            ["git", "status", "--porcelain", "interlace"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    )


if __name__ == "__main__":
    main()
