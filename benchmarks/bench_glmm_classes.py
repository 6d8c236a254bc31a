"""GLMM size classes: what sharing one compiled evaluation saves, and what padding costs.

Run from the repository root: ``python benchmarks/bench_glmm_classes.py [--repeats 3]
[--write]``. Baseline: the same interlace with size classes off
(``interlace._core.glmm_buckets.ENABLED = False``: every model at its exact shapes), in
the same run.

*Refits on other rows*: one fresh Python process (persistent compilation cache off)
fits VerbAgg's ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`` (Laplace)
on five versions of the data, each missing another seeded 1-4% of its rows (as five
responses with their own missing values, or five folds, would be): wall seconds of each
fit, the first one's compile included. Processes alternate between classes on and off,
``--repeats`` of each; medians.

*Compiled fits*: in one process, each model is fitted once both ways (compiles), then
``--fits`` times more alternating between classes on and off; medians of the wall
seconds of one ``interlace.fit``. Models: VerbAgg (Laplace and ``nAGQ = 0``), and
seeded synthetic binary models (``_synthetic``).

-2 logLik of the two ways are compared for every fit (largest absolute difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VERBAGG_CSV = ROOT / "benchmarks" / "out" / "glmm" / "verbagg.csv"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TITLE = "## GLMM size classes: refits on other rows, and the cost of padding"


def _verbagg():
    import pandas as pd

    if not VERBAGG_CSV.exists():
        sys.exit(f"{VERBAGG_CSV} is missing: run benchmarks/bench_glmm.py once (it writes it)")
    return pd.read_csv(VERBAGG_CSV)


def _synthetic(n: int, subjects: int, items: int, slope: bool, seed: int):
    """Binary response, subjects x items crossed at random, one covariate."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    s, i, x = rng.integers(0, subjects, n), rng.integers(0, items, n), rng.normal(size=n)
    b = rng.normal(0, 0.5, subjects) if slope else np.zeros(subjects)
    eta = 0.2 + (0.5 + b[s]) * x + rng.normal(0, 1, subjects)[s] + rng.normal(0, 0.7, items)[i]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "s": s.astype(str), "i": i.astype(str)})


def _refit_worker(classes: bool) -> dict:
    """One fresh process: five fits of VerbAgg on rows with different ones missing."""
    import interlace
    import interlace._core.glmm_buckets as gb

    gb.ENABLED = classes
    df = _verbagg()
    rng = np.random.default_rng(7)
    seconds, m2ll = [], []
    for share in (0.01, 0.02, 0.03, 0.04, 0.025):
        keep = rng.random(len(df)) >= share
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = interlace.fit(VERBAGG, df[keep], family="binomial")
        seconds.append(time.perf_counter() - t)
        m2ll.append(-2.0 * fit.llf)
    return {"seconds": seconds, "m2ll": m2ll}


def _compiled(fits: int) -> list[dict]:
    import interlace
    import interlace._core.glmm_buckets as gb

    va = _verbagg()
    cases = [
        ("VerbAgg, Laplace", VERBAGG, va, 1),
        ("VerbAgg, nAGQ=0", VERBAGG, va, 0),
        (
            "200 rows, y ~ x + (1 | s) + (1 | i)",
            "y ~ x + (1 | s) + (1 | i)",
            _synthetic(200, 20, 8, False, 1),
            1,
        ),
        (
            "600 rows, y ~ x + (1 | s) + (1 | i)",
            "y ~ x + (1 | s) + (1 | i)",
            _synthetic(600, 30, 12, False, 2),
            1,
        ),
        (
            "3,000 rows, y ~ x + (1 + x | s) + (1 | i)",
            "y ~ x + (1 + x | s) + (1 | i)",
            _synthetic(3000, 60, 50, True, 3),
            1,
        ),
    ]
    out = []
    for name, formula, df, nagq in cases:
        times: dict[bool, list[float]] = {True: [], False: []}
        m2ll = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for on in (True, False):
                gb.ENABLED = on
                m2ll[on] = -2.0 * interlace.fit(formula, df, family="binomial", nAGQ=nagq).llf
            for r in range(fits):
                for on in (True, False) if r % 2 == 0 else (False, True):
                    gb.ENABLED = on
                    t = time.perf_counter()
                    interlace.fit(formula, df, family="binomial", nAGQ=nagq)
                    times[on].append(time.perf_counter() - t)
        out.append(
            {
                "model": name,
                "rows": len(df),
                "padded_s": float(np.median(times[True])),
                "exact_s": float(np.median(times[False])),
                "m2ll_diff": abs(m2ll[True] - m2ll[False]),
            }
        )
        print(out[-1], flush=True)
    return out


def _run(repeats: int, fits: int) -> dict:
    env = dict(os.environ, INTERLACE_NO_COMPILATION_CACHE="1")
    refits: dict[str, list] = {"on": [], "off": []}
    for r in range(repeats):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", mode],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                check=True,
            )
            refits[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(mode, refits[mode][-1]["seconds"], flush=True)
    return {"refits": refits, "compiled": _compiled(fits)}


def _render(raw: dict, meta: dict) -> str:
    on, off = raw["refits"]["on"], raw["refits"]["off"]
    per_on = np.median([r["seconds"] for r in on], axis=0)
    per_off = np.median([r["seconds"] for r in off], axis=0)
    diff = max(abs(a - b) for r1, r2 in zip(on, off) for a, b in zip(r1["m2ll"], r2["m2ll"]))
    lines = [
        TITLE,
        "",
        f"Generated by `python benchmarks/bench_glmm_classes.py --repeats {meta['repeats']} "
        f"--fits {meta['fits']} --write` (from the repository root) on {meta['when']}; "
        f"{meta['machine']} (the machine of the sections above); Python {meta['python']}, "
        f"jax {meta['jax']}. Load average at the start {meta['load']} (the machine may be "
        "shared). Method: the script's docstring; baseline: size classes off (exact "
        "shapes), in the same run.",
        "",
        "Refits on other rows (VerbAgg, Laplace; each fit on data missing another "
        "1-4% of its rows; one fresh process each way; medians of "
        f"{len(on)} processes):",
        "",
        "| fit | 1 | 2 | 3 | 4 | 5 | all five |",
        "|---|---|---|---|---|---|---|",
        "| size classes on (s) | "
        + " | ".join(f"{v:.2f}" for v in per_on)
        + f" | {per_on.sum():.2f} |",
        "| exact shapes (s) | "
        + " | ".join(f"{v:.2f}" for v in per_off)
        + f" | {per_off.sum():.2f} |",
        "",
        "The first fit compiles either way; with size classes the later ones, on other "
        "rows of the same class, reuse its compiled evaluation: all five in "
        f"{per_off.sum() / per_on.sum():.1f}x less time, each later one "
        f"{np.median(per_off[1:] / per_on[1:]):.1f}x faster (median). Largest "
        f"|difference| in -2 logLik between the two ways: {diff:.1e}.",
        "",
        f"Compiled fits (one process; medians of {meta['fits']} fits each way, alternating):",
        "",
        "| model | rows | size classes on | exact shapes | on / exact | -2 logLik difference |",
        "|---|---|---|---|---|---|",
    ]
    for c in raw["compiled"]:
        lines.append(
            f"| {c['model'].replace('|', chr(92) + '|')} | {c['rows']:,} | {1e3 * c['padded_s']:.1f} ms | "
            f"{1e3 * c['exact_s']:.1f} ms | {c['padded_s'] / c['exact_s']:.2f} | "
            f"{c['m2ll_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def _write(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, or append it."""
    text = RESULTS.read_text()
    if TITLE in text:
        start = text.index(TITLE)
        nxt = text.find("\n## ", start + len(TITLE))
        rest = text[nxt + 1 :] if nxt >= 0 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes each way (3)")
    ap.add_argument("--fits", type=int, default=7, help="compiled fits each way (7)")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    ap.add_argument("--render", action="store_true", help="only re-render the latest run")
    ap.add_argument("--worker", choices=("on", "off"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_refit_worker(args.worker == "on")))
        return
    latest = ROOT / "benchmarks" / "out" / "glmm_classes_latest.json"
    if args.render:
        raw = json.loads(latest.read_text())
        section = _render(raw, raw["meta"])
        print(section)
        if args.write:
            _write(section)
        return
    import jax

    meta = {
        "repeats": args.repeats,
        "fits": args.fits,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "load": [round(v, 2) for v in os.getloadavg()],
    }
    raw = _run(args.repeats, args.fits)
    section = _render(raw, meta)
    latest.parent.mkdir(exist_ok=True)
    latest.write_text(json.dumps({"meta": meta, **raw}, indent=1))
    print(section)
    if args.write:
        _write(section)


if __name__ == "__main__":
    main()
