"""GLMM parametric bootstrap: ``result.parametric_bootstrap(n)`` against lme4's
``bootMer(fit, fixef, nsim = n)`` of the same glmer model.

Run from the repository root (R with lme4 on PATH as Rscript):

    python benchmarks/bench_glmm_bootstrap.py            # cbpp 1,000 and VerbAgg 100 draws
    python benchmarks/bench_glmm_bootstrap.py --write    # also put the section into RESULTS.md

Models (tests/data): cbpp, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``
(56 rows), and VerbAgg, ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``
(7,584 rows, crossed), binomial Laplace fits. interlace: one process fits each model,
then times ``parametric_bootstrap(n, seed=1)`` twice: the *first call* (which compiles
the vectorised refits) and the *compiled call*. lme4: ``benchmarks/lme4_glmm_bootstrap.R``
times ``bootMer`` (default settings, seed 1) in one Rscript after an untimed warm-up;
VerbAgg with ``--lme4-verbagg`` draws (default 10: a glmer refit takes seconds), its
time scaled to ``n`` (marked *extrapolated*). The bootstrap standard deviations of the
fixed effects are compared as a sanity check (different draws: they agree to sampling
error, about ``1 / sqrt(2 n)`` relative). No timing is asserted.
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
HEADING = "## GLMM parametric bootstrap: interlace vs bootMer"
MODELS = {
    "cbpp": "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    "verbagg": "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
}


def load(key: str) -> pd.DataFrame:
    if key == "cbpp":
        d = pd.read_csv(DATA / "cbpp.csv")
        d["period"] = pd.Categorical(d["period"].astype(str), categories=["1", "2", "3", "4"])
        return d
    d = pd.read_csv(DATA / "verbagg.csv", dtype={"id": str})
    for c, levels in (("Gender", ["F", "M"]), ("btype", ["curse", "scold", "shout"])):
        d[c] = pd.Categorical(d[c], categories=levels)
    d["situ"] = pd.Categorical(d["situ"], categories=["other", "self"])
    return d


def run(n_cbpp: int, n_verbagg: int, lme4_verbagg: int) -> dict:
    import interlace

    rows = {}
    for key, n in (("cbpp", n_cbpp), ("verbagg", n_verbagg)):
        fit = interlace.fit(MODELS[key], load(key), family="binomial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unconverged refits: counted in the table
            t0 = time.perf_counter()
            fit.parametric_bootstrap(n, seed=1)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            boot = fit.parametric_bootstrap(n, seed=1)
            compiled = time.perf_counter() - t0
        sd = boot.replicates[list(fit.fe_params.index)].std(ddof=1)
        rows[key] = {
            "n": n,
            "first_s": first,
            "compiled_s": compiled,
            "converged": int(boot.converged.sum()),
            "sd": {k: float(v) for k, v in sd.items()},
        }
        print(key, json.dumps(rows[key]), flush=True)
    cmd = [
        "Rscript",
        str(HERE / "lme4_glmm_bootstrap.R"),
        str(DATA / "cbpp.csv"),
        str(n_cbpp),
        str(DATA / "verbagg.csv"),
        str(lme4_verbagg),
    ]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return harness.run_record(interlace, interlace=rows, lme4=r)


def render(raw: dict) -> str:
    r = raw["lme4"]
    lines = [
        *harness.section_head(raw, HEADING, r["version"]),
        "Method: `benchmarks/bench_glmm_bootstrap.py` docstring. Wall seconds of one call "
        "each; lme4's VerbAgg time is bootMer's over fewer draws, scaled to the same number.",
        "",
        "| model | draws | interlace first call | interlace compiled | converged | bootMer | "
        "bootMer / compiled | bootMer / first call | largest relative difference of the "
        "fixed effects' bootstrap sds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, ours in raw["interlace"].items():
        theirs = r[key]
        scale = ours["n"] / theirs["nsim"]
        lme4_s = theirs["seconds"] * scale
        note = "" if scale == 1 else f" **extrapolated** from {theirs['nsim']} draws"
        # lme4's names: (Intercept), period2, ...; ours: Intercept, period[T.2], ...
        ours_sd = np.array(list(ours["sd"].values()))
        their_sd = np.array(list(theirs["sd"].values()))
        diff = np.max(np.abs(ours_sd / their_sd - 1.0)) if len(ours_sd) == len(their_sd) else np.nan
        lines.append(
            f"| {key} | {ours['n']:,} | {ours['first_s']:.2f} s | {ours['compiled_s']:.2f} s | "
            f"{ours['converged']}/{ours['n']} | {lme4_s:.1f} s{note} | "
            f"{lme4_s / ours['compiled_s']:.0f}x | {lme4_s / ours['first_s']:.0f}x | "
            f"{diff:.2f} (bootMer {theirs['nsim']} draws) |"
        )
    lines += [
        "",
        "The bootstrap sds are a sanity check, not a match: the two sides draw different "
        "responses, and an sd is sensitive to a few extreme replicates (a draw with no case "
        "in a period sends that period's estimate towards minus infinity, where each "
        "optimiser stops somewhere else). VerbAgg's bootMer sds come from 10 draws only.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cbpp", type=int, default=1000, help="draws for cbpp (both sides)")
    ap.add_argument("--verbagg", type=int, default=100, help="interlace's VerbAgg draws")
    ap.add_argument("--lme4-verbagg", type=int, default=10, help="bootMer's VerbAgg draws")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = ap.parse_args()
    raw = run(args.cbpp, args.verbagg, args.lme4_verbagg)
    harness.publish(raw, "glmm_bootstrap", render(raw), HEADING, args.write)


if __name__ == "__main__":
    main()
