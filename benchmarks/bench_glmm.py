"""GLMMs: interlace's binomial and Poisson mixed models against lme4's glmer().

Run from the repository root (R with lme4 on PATH as Rscript):

    python benchmarks/bench_glmm.py                 # 4 models, 3 repeats
    python benchmarks/bench_glmm.py --repeats 5
    python benchmarks/bench_glmm.py --quick         # VerbAgg only, 1 repeat
    python benchmarks/bench_glmm.py --no-lme4       # interlace only (R still writes VerbAgg)
    python benchmarks/bench_glmm.py --write         # also put "## GLMMs" into RESULTS.md
    python benchmarks/bench_glmm.py --render [JSON] [--write]   # re-render a saved run

The models (data in benchmarks/out/glmm/, git-ignored, rewritten at every run):

  * VerbAgg, lme4's data set, written by R (``Rscript benchmarks/lme4_glmm.R data``: r2 as
    0/1, factors as strings, and their level orders, which the worker sets as pandas
    categoricals so that both sides build the same model):
    ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``, binomial (logit),
    nAGQ=1 (Laplace) and nAGQ=0; 7,584 rows.
  * crossed: a seeded (numpy ``default_rng``) binary design, 2,000 subjects x 400 items, a
    random 100,000 of the 800,000 pairs, x ~ N(0, 1), f a two-level factor, logit
    -0.5 + 0.8 x + 0.4 [f = b] + subject (sd 1.0) + item (sd 0.6):
    ``y ~ x + f + (1 | subject) + (1 | item)``, Laplace, and nAGQ=0 (against glmer's
    nAGQ=0, beside the targets).
  * poisson: 500 sites x 10 years, 4 surveys each by one of 40 observers (20,000 rows),
    counts ~ Poisson(hours x exp(0.2 + 1.2 cover + site (0.5) + year (0.3) + observer
    (0.2))): ``count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) +
    (1 | observer)``, Laplace (the same formula string on both sides).

One repetition of one model is ONE fresh Python process (this script with ``--worker``,
``harness.Worker``), the persistent compilation cache off
(``INTERLACE_NO_COMPILATION_CACHE=1``): import interlace (timed), read the CSV (untimed),
one untimed warm-up fit of a small different-shaped GLMM (200 rows, ``y ~ x + (1 | g)``,
binomial) that pays JAX's start-up; then the *first fit* of the model (wall seconds of
``interlace.fit``, and the JAX tracing + compile seconds inside it: ``harness.make_timer``),
then glmer's fit of it in R (alternating, so drift in machine load hits both), then the
*compiled fit*: the same model fitted again in that process; for VerbAgg, then a user's
*next formula*: the same data with other fixed effects (``r2 ~ Anger + Gender + btype +
(1 | id) + (1 | item)``), fitted first in this process, and by glmer. lme4 runs in one
long-lived Rscript (benchmarks/lme4_glmm.R, ``harness.RDriver``; one untimed warm-up glmer() of the
same small model first): glmer() with default control, timed inside R around glmer()
only. Every figure is a median over the repeats. Agreement: -2 logLik of both
(interlace: ``-2 * result.llf``; R: ``-2 * logLik(fit)``), the largest fixed-effect and
theta differences.

Issue targets (reported, never asserted), on glmer's own fit (Laplace, its default): the
compiled fit at least 10x faster than glmer (VerbAgg and the 100,000-row design); the first
fit in a running process no slower than glmer (every Laplace model). The nAGQ=0 rows are
reported beside them against glmer's nAGQ=0, with interlace's exact Laplace fit of the
same model against glmer's nAGQ=0 too (what a user who wants glmer's fast mode gets).

Raw results: benchmarks/out/glmm_<time>.json and glmm_latest.json; the markdown goes to
benchmarks/out/glmm.md (and, with ``--write``, into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import OUT, ROOT, median

DATA = OUT / "glmm"
HEADING = harness.SECTIONS["glmm"]
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
# key -> (label, dataset, formula, family, nAGQ)
MODELS = {
    "verbagg_laplace": ("VerbAgg, Laplace", "verbagg", VERBAGG, "binomial", 1),
    "verbagg_agq0": ("VerbAgg, nAGQ=0", "verbagg", VERBAGG, "binomial", 0),
    "crossed": (
        "crossed binary 10^5 rows",
        "crossed",
        "y ~ x + f + (1 | subject) + (1 | item)",
        "binomial",
        1,
    ),
    "crossed_agq0": (
        "crossed binary 10^5 rows, nAGQ=0",
        "crossed",
        "y ~ x + f + (1 | subject) + (1 | item)",
        "binomial",
        0,
    ),
    "poisson": (
        "Poisson with offset",
        "poisson",
        "count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)",
        "poisson",
        1,
    ),
}
WARMUP = ("warm-up", "warmup", "y ~ x + (1 | g)", "binomial", 1)
# Fitted in the same process after a model's compiled fit: other fixed effects on the
# same data (VerbAgg without situ), a user's next formula. key -> (follow-up key, model)
VERBAGG_OTHER = "r2 ~ Anger + Gender + btype + (1 | id) + (1 | item)"
FOLLOW_UPS = {
    "verbagg_laplace": (
        "verbagg_other_laplace",
        ("VerbAgg without situ, Laplace", "verbagg", VERBAGG_OTHER, "binomial", 1),
    ),
    "verbagg_agq0": (
        "verbagg_other_agq0",
        ("VerbAgg without situ, nAGQ=0", "verbagg", VERBAGG_OTHER, "binomial", 0),
    ),
}
QUICK = ("verbagg_laplace", "verbagg_agq0")
# The targets are on glmer's own fit (Laplace, its default): compiled >= 10x glmer.
# The nAGQ=0 rows are compared with glmer's nAGQ=0 beside them (module docstring).
TEN_X = ("verbagg_laplace", "crossed")
# nAGQ=0 key -> the Laplace key of the same model
FAST_MODE = {"verbagg_agq0": "verbagg_laplace", "crossed_agq0": "crossed"}
TARGET_SPEEDUP = 10.0
FACTORS = {
    "warmup": ["g"],
    "verbagg": ["Gender", "btype", "situ", "id", "item"],
    "crossed": ["subject", "item", "f"],
    "poisson": ["site", "year", "observer"],
}


# --- the data ---------------------------------------------------------------------------------
def expit(x):
    import numpy as np

    return 1 / (1 + np.exp(-x))


def make_data(name: str):
    """A seeded synthetic dataset (module docstring), as a pandas frame."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng({"warmup": 100, "crossed": 1, "poisson": 2}[name])
    if name == "warmup":
        g = rng.integers(0, 20, 200)
        x = rng.standard_normal(200)
        y = rng.random(200) < expit(0.3 + 0.7 * x + 0.8 * rng.standard_normal(20)[g])
        return pd.DataFrame({"y": y.astype(int), "x": x, "g": [f"g{i:02d}" for i in g]})
    if name == "crossed":
        subjects, items, rows = 2000, 400, 100_000
        s, i = np.divmod(np.sort(rng.choice(subjects * items, rows, replace=False)), items)
        x, f = rng.standard_normal(rows), rng.integers(0, 2, rows)
        u, v = 1.0 * rng.standard_normal(subjects), 0.6 * rng.standard_normal(items)
        y = rng.random(rows) < expit(-0.5 + 0.8 * x + 0.4 * f + u[s] + v[i])
        return pd.DataFrame(
            {
                "y": y.astype(int),
                "x": x,
                "f": np.where(f == 1, "b", "a"),
                "subject": [f"s{k:04d}" for k in s],
                "item": [f"i{k:03d}" for k in i],
            }
        )
    sites, years, visits, observers = 500, 10, 4, 40
    site = np.repeat(np.arange(sites), years * visits)
    year = np.tile(np.repeat(np.arange(years), visits), sites)
    rows = len(site)
    obs = rng.integers(0, observers, rows)
    cover, hours = rng.uniform(0, 1, rows), rng.uniform(0.5, 4, rows)
    eta = (
        0.2
        + 1.2 * cover
        + 0.5 * rng.standard_normal(sites)[site]
        + 0.3 * rng.standard_normal(years)[year]
        + 0.2 * rng.standard_normal(observers)[obs]
    )
    return pd.DataFrame(
        {
            "count": rng.poisson(hours * np.exp(eta)),
            "cover": cover,
            "hours": hours,
            "site": [f"site{k:03d}" for k in site],
            "year": [str(2011 + k) for k in year],
            "observer": [f"obs{k:02d}" for k in obs],
        }
    )


def write_data(keys) -> dict:
    """Write the CSVs the models need (VerbAgg by R) and the manifest both sides read."""
    DATA.mkdir(parents=True, exist_ok=True)
    names = ["warmup", *dict.fromkeys(MODELS[k][1] for k in keys)]
    datasets = {}
    for name in names:
        path, levels = DATA / f"{name}.csv", None
        if name == "verbagg":
            if shutil.which("Rscript") is None:
                sys.exit("VerbAgg is written by R (lme4::VerbAgg): Rscript is not on PATH")
            subprocess.run(["Rscript", "benchmarks/lme4_glmm.R", "data"], cwd=ROOT, check=True)
            levels = json.loads((DATA / "verbagg_levels.json").read_text())
        else:
            make_data(name).to_csv(path, index=False, float_format="%.17g")
        datasets[name] = {
            "rows": sum(1 for _ in path.open()) - 1,
            "csv": str(path.relative_to(ROOT)),
            "factors": FACTORS[name],
            "levels": levels,  # None: sorted, as R's factor()
        }
    specs = {k: MODELS.get(k, WARMUP) for k in ["warmup", *keys]}
    specs.update(FOLLOW_UPS[k] for k in keys if k in FOLLOW_UPS)
    fields = ("label", "data", "formula", "family", "nAGQ")
    models = {k: dict(zip(fields, spec)) for k, spec in specs.items()}
    manifest = {"datasets": datasets, "models": models}
    harness.save_json(manifest, DATA / "models.json")
    return manifest


# --- worker: the interlace side -----------------------------------------------------------------
def worker():
    """Serve fit requests (one JSON object a line on stdin; one RESULT/ERROR line back)."""
    t0 = time.perf_counter()
    import pandas as pd

    import interlace

    import_s = time.perf_counter() - t0
    timed = harness.make_timer()
    manifest = json.loads((DATA / "models.json").read_text())
    frames = {}

    def frame(name):
        if name not in frames:
            d = manifest["datasets"][name]
            df = pd.read_csv(ROOT / d["csv"], dtype={c: str for c in d["factors"]})
            for c in d["factors"]:  # R's level order (VerbAgg's, or sorted)
                levels = (d["levels"] or {}).get(c) or sorted(df[c].unique())
                df[c] = pd.Categorical(df[c], categories=levels)
            frames[name] = df
        return frames[name]

    def fit(req):
        m = manifest["models"][req["key"]]
        df = frame(m["data"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r, t = timed(
                lambda: interlace.fit(m["formula"], df, family=m["family"], nAGQ=m["nAGQ"])
            )
        return {
            **t,
            "key": req["key"],
            "phase": req["phase"],
            "m2ll": -2 * float(r.llf),
            "fixef": {k: float(v) for k, v in r.fe_params.items()},
            "fe_bse": {k: float(v) for k, v in r.fe_bse.items()},
            "theta": {k: float(v) for k, v in r.theta.items()},
            "converged": bool(r.converged),
            "n_iterations": int(r.n_iterations),
            "n_evaluations": int(r.n_evaluations),
            "stop_reason": str(r.stop_reason),
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        }

    env = harness.environment(interlace)
    env["interlace_file"] = interlace.__file__
    harness.say("RESULT", {"environment": env, "import_s": import_s})
    harness.serve(fit)


# --- driver --------------------------------------------------------------------------------------
def one_process(key, lme4, rep) -> dict:
    """One fresh interlace process for ``key``: warm-up, first fit, glmer, compiled fit."""
    w = harness.Worker(
        [sys.executable, str(Path(__file__).resolve()), "--worker"],
        env={"INTERLACE_NO_COMPILATION_CACHE": "1", "INTERLACE_NO_PROGRESS": "1"},
    )
    try:
        hello = w.reply("start")
        warm = w.ask(key="warmup", phase="warmup")
        first = w.ask(key=key, phase="first")
        r = lme4.ask(key) if lme4 else None
        comp = w.ask(key=key, phase="compiled")
        other = other_r = None
        if key in FOLLOW_UPS:  # a new formula on the same data, in the same process
            other = w.ask(key=FOLLOW_UPS[key][0], phase="other formula")
            other_r = lme4.ask(FOLLOW_UPS[key][0]) if lme4 else None
    finally:
        w.close()
    print(
        f"[{key} {rep}] import {hello['import_s']:.2f} s, warm-up {warm['seconds']:.2f} s | "
        f"first fit {first['seconds']:.2f} s (compile {first['compile_s']:.2f} s) | "
        f"compiled {comp['seconds']:.3f} s | "
        + (f"glmer {r['seconds']:.3f} s | " if r else "")
        + f"-2 logLik {comp['m2ll']:.4f}"
        + (f" vs glmer {r['m2ll']:.4f}" if r else "")
        + (
            f" | other formula {other['seconds']:.3f} s (compile {other['compile_s']:.2f} s)"
            if other
            else ""
        )
        + (f" vs glmer {other_r['seconds']:.3f} s" if other_r else ""),
        flush=True,
    )
    return {
        "import_s": hello["import_s"],
        "environment": hello["environment"],
        "warmup": warm,
        "first": first,
        "compiled": comp,
        "lme4": r,
        "other": other,
        "other_lme4": other_r,
        "peak_rss_mib": w.peak_rss_mib,
    }


def run(keys, repeats, use_lme4) -> dict:
    started = dt.datetime.now().astimezone()
    manifest = write_data(keys)
    load = {"start": harness.loadavg()}
    lme4, lme4_note = harness.lme4_driver("lme4_glmm.R", use=use_lme4)
    print(f"lme4: {lme4_note}", flush=True)
    lme4_warmup = None
    try:
        if lme4:
            lme4_warmup = lme4.ask("warmup")
        runs = {k: [] for k in keys}
        for rep in range(1, repeats + 1):
            for key in keys:
                runs[key].append(one_process(key, lme4, rep))
    finally:
        if lme4:
            lme4.close()
    load["end"] = harness.loadavg()
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "environment": runs[keys[0]][0]["environment"],
        "lme4": lme4_note,
        "loadavg": load,
        "repeats": repeats,
        "keys": list(keys),
        "manifest": manifest,
        "lme4_warmup": lme4_warmup,
        "runs": runs,
    }
    raw["summary"] = summarise(raw)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    raw["raw_file"] = f"benchmarks/out/glmm_{stamp}.json"
    harness.save_json(raw, OUT / f"glmm_{stamp}.json", OUT / "glmm_latest.json")
    return raw


def _max_diff(a: dict, b: dict, by_name: bool) -> float | None:
    """Largest |a - b| over two named vectors: by name, or by position (fixed effects,
    whose names differ: ``Gender[T.M]`` against R's ``GenderM``)."""
    if by_name:
        pairs = [(a[k], b[k]) for k in a if k in b]
    else:
        pairs = list(zip(a.values(), b.values())) if len(a) == len(b) else []
    return max((abs(x - y) for x, y in pairs), default=None)


def summarise(raw) -> dict:
    out = {}
    for key in raw["keys"]:
        ps = raw["runs"][key]
        first, comp = [p["first"] for p in ps], [p["compiled"] for p in ps]
        r = [p["lme4"] for p in ps if p["lme4"]]
        s = {
            "fits": len(ps),
            "first_s": median(x["seconds"] for x in first),
            "first_compile_s": median(x["compile_s"] for x in first),
            "compiled_s": median(x["seconds"] for x in comp),
            "compiled_compile_s": median(x["compile_s"] for x in comp),
            "m2ll": comp[-1]["m2ll"],
            "first_vs_compiled_m2ll": max(abs(a["m2ll"] - b["m2ll"]) for a, b in zip(first, comp)),
            "converged": all(x["converged"] for x in first + comp),
            "n_iterations": comp[-1]["n_iterations"],
            "warnings": sorted({w for x in first + comp for w in x["warnings"]}),
            "import_s": median(p["import_s"] for p in ps),
            "warmup_s": median(p["warmup"]["seconds"] for p in ps),
            "peak_rss_mib": max(p["peak_rss_mib"] for p in ps),
        }
        if r:
            g = median(x["seconds"] for x in r)
            s.update(
                lme4_s=g,
                lme4_fits=len(r),
                lme4_m2ll=r[-1]["m2ll"],
                m2ll_diff=s["m2ll"] - r[-1]["m2ll"],
                speedup_compiled=g / s["compiled_s"],
                ratio_first=s["first_s"] / g,
                fixef_max_diff=_max_diff(comp[-1]["fixef"], r[-1]["fixef"], by_name=False),
                theta_max_diff=_max_diff(comp[-1]["theta"], r[-1]["theta"], by_name=True),
                lme4_warnings=sorted({w for x in r for w in x["warnings"]}),
                lme4_feval=r[-1]["feval"],
            )
        others = [p["other"] for p in ps if p.get("other")]
        if others:
            o = {
                "key": FOLLOW_UPS[key][0],
                "first_s": median(x["seconds"] for x in others),
                "compile_s": median(x["compile_s"] for x in others),
                "m2ll": others[-1]["m2ll"],
                "converged": all(x["converged"] for x in others),
            }
            other_r = [p["other_lme4"] for p in ps if p.get("other_lme4")]
            if other_r:
                g = median(x["seconds"] for x in other_r)
                o.update(lme4_s=g, lme4_m2ll=other_r[-1]["m2ll"], ratio=o["first_s"] / g)
            s["other"] = o
        out[key] = s
    return out


# --- rendering -----------------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _fast_mode_lines(raw) -> list[str]:
    """glmer's ``nAGQ = 0`` against interlace's ``nAGQ = 0`` and against its Laplace fit
    (the same model, exact Laplace): reported beside the targets, which are on glmer's
    default fit."""
    s, man = raw["summary"], raw["manifest"]
    keys = [k for k in raw["keys"] if k in FAST_MODE]
    if not keys:
        return []
    lines = ["", "Beside the targets, glmer's fast mode (`nAGQ=0`):", ""]
    for key in keys:
        x, label = s[key], man["models"][key]["label"]
        lines.append(
            f"- {label}: compiled {x['speedup_compiled']:.1f}x faster than glmer's nAGQ=0 "
            f"({x['compiled_s']:.3f} s vs {x['lme4_s']:.3f} s); first fit "
            f"{x['ratio_first']:.2f}x glmer's ({x['first_s']:.2f} s vs {x['lme4_s']:.2f} s)"
        )
        lap = s.get(FAST_MODE[key])
        if lap is not None:
            lines.append(
                f"- {man['models'][FAST_MODE[key]]['label']} (the exact Laplace fit), against "
                f"glmer's nAGQ=0: compiled {x['lme4_s'] / lap['compiled_s']:.1f}x faster "
                f"({lap['compiled_s']:.3f} s vs {x['lme4_s']:.3f} s)"
            )
        lines += _follow_up_lines(x, man, target=False)
    return lines


def _follow_up_lines(x: dict, man: dict, *, target: bool) -> list[str]:
    """The line on a model's next formula (against glmer's fit of it), if it was run."""
    o = x.get("other", {})
    if "lme4_s" not in o:
        return []
    times = f"{o['first_s']:.3f} s vs glmer's {o['lme4_s']:.3f} s, {o['ratio']:.2f}x"
    verdict = f"no slower than glmer: {_met(o['ratio'] <= 1)} ({times})" if target else times
    return [f"- {man['models'][o['key']]['label']} (a new formula in a running process): {verdict}"]


def render(raw) -> str:
    s, env, man = raw["summary"], raw["environment"], raw["manifest"]
    have = all("lme4_s" in x for x in s.values())
    lines = [
        "## GLMMs: binomial and Poisson mixed models, interlace vs glmer",
        "",
        f"Generated by `{raw['command']}` (from the repository root) on {raw['date']}; raw "
        f"results in `{raw['raw_file']}` (git-ignored). Load average (1, 5, 15 min) at the "
        f"start {raw['loadavg']['start']}, at the end {raw['loadavg']['end']} (the machine "
        "may be shared).",
        "",
        *harness.environment_lines(env, raw["lme4"]),
        "",
        "Each repetition of a model is one fresh Python process with the persistent "
        "compilation cache off (`INTERLACE_NO_COMPILATION_CACHE=1`): import, one untimed "
        "warm-up fit of a small different model (200 rows, `y ~ x + (1 | g)`, binomial), "
        "then *first fit*: wall seconds of `interlace.fit` on the model (*compile*: JAX "
        "tracing + compile seconds inside it); *compiled*: the same model fitted again in that "
        "process. *glmer*: `glmer()` with default control in one long-lived Rscript "
        "(`benchmarks/lme4_glmm.R`), timed inside R, run between interlace's two fits. "
        "*fits*: repetitions; every time is their median. -2 logLik: interlace "
        "`-2 * result.llf`, glmer `-2 * logLik(fit)`. Data: VerbAgg from lme4; the others "
        "seeded synthetic designs (`benchmarks/bench_glmm.py` docstring; "
        "`benchmarks/out/glmm/`).",
        "",
        "| model | rows | formula | family | nAGQ | fits | first fit | compile | compiled fit "
        "| glmer | glmer / compiled | first / glmer | -2 logLik interlace | -2 logLik glmer "
        "| difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in raw["keys"]:
        m, x = man["models"][key], s[key]
        tail = (
            f"{x['lme4_s']:.3f} s | {x['speedup_compiled']:.1f}x | {x['ratio_first']:.2f}x | "
            f"{x['m2ll']:.4f} | {x['lme4_m2ll']:.4f} | {x['m2ll_diff']:+.2e}"
            if "lme4_s" in x
            else f"n/a | n/a | n/a | {x['m2ll']:.4f} | n/a | n/a"
        )
        rhs = m["formula"].split("~", 1)[1].strip().replace("|", "\\|")
        lines.append(
            f"| {m['label']} | {man['datasets'][m['data']]['rows']:,} | `{rhs}` "
            f"| {m['family']} | {m['nAGQ']} | {x['fits']} | {x['first_s']:.2f} s | "
            f"{x['first_compile_s']:.2f} s | {x['compiled_s']:.3f} s | {tail} |"
        )
    followed = [k for k in raw["keys"] if "other" in s[k]]
    if followed:
        lines += [
            "",
            "A user's next formula: after its compiled fit, the same process fits the same data "
            "with other fixed effects (no situ: 5 columns instead of 6). *compile*: as above; "
            "glmer fits the same formula in the R process.",
            "",
            "| model | formula | first fit in the process | compile | glmer | first / glmer "
            "| -2 logLik interlace | -2 logLik glmer |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key in followed:
            o = s[key]["other"]
            m = man["models"][o["key"]]
            rhs = m["formula"].split("~", 1)[1].strip().replace("|", "\\|")
            g = (
                f"{o['lme4_s']:.3f} s | {o['ratio']:.2f}x | {o['m2ll']:.4f} | {o['lme4_m2ll']:.4f}"
                if "lme4_s" in o
                else f"n/a | n/a | {o['m2ll']:.4f} | n/a"
            )
            lines.append(
                f"| {m['label']} | `{rhs}` | {o['first_s']:.3f} s | {o['compile_s']:.2f} s | {g} |"
            )
    lines += ["", "Issue targets, on glmer's default fit (Laplace; reported, not asserted):", ""]
    if have:
        for key in raw["keys"]:
            x, label = s[key], man["models"][key]["label"]
            if key in FAST_MODE:
                continue
            if key in TEN_X:
                lines.append(
                    f"- {label}: compiled fit at least {TARGET_SPEEDUP:g}x faster than glmer: "
                    f"{_met(x['speedup_compiled'] >= TARGET_SPEEDUP)} "
                    f"({x['speedup_compiled']:.1f}x)"
                )
            lines.append(
                f"- {label}: first fit in a running process no slower than glmer: "
                f"{_met(x['ratio_first'] <= 1)} ({x['first_s']:.2f} s vs {x['lme4_s']:.2f} s)"
            )
            lines += _follow_up_lines(x, man, target=True)
        lines += _fast_mode_lines(raw)
    else:
        lines.append("- not measured (no glmer in this run).")
    notes = []
    for key in raw["keys"]:
        x, label = s[key], man["models"][key]["label"]
        bits = [
            f"import {x['import_s']:.2f} s, warm-up fit {x['warmup_s']:.2f} s, peak RSS "
            f"{x['peak_rss_mib']:.0f} MiB",
            f"{x['n_iterations']} iterations, "
            + ("converged" if x["converged"] else "**not converged**"),
            f"first vs compiled -2 logLik {x['first_vs_compiled_m2ll']:.1e}",
        ]
        if "lme4_s" in x:
            fe, th = x["fixef_max_diff"], x["theta_max_diff"]
            bits.append(
                "largest |difference| from glmer: fixed effects "
                + (f"{fe:.1e}" if fe is not None else "n/a")
                + ", theta "
                + (f"{th:.1e}" if th is not None else "n/a")
            )
            bits.append(f"glmer {x['lme4_feval']} function evaluations")
            if x["lme4_warnings"]:
                bits.append("glmer warned: " + "; ".join(x["lme4_warnings"]))
        if x["warnings"]:
            bits.append("interlace warned: " + "; ".join(x["warnings"]))
        notes.append(f"- {label}: " + "; ".join(bits) + ".")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per model (3)")
    ap.add_argument("--quick", action="store_true", help="VerbAgg only, 1 repeat")
    ap.add_argument("--no-lme4", action="store_true", help="skip glmer even if Rscript is found")
    ap.add_argument(
        "--render",
        nargs="?",
        const=str(OUT / "glmm_latest.json"),
        metavar="JSON",
        help="only re-render a saved run (default: the latest)",
    )
    ap.add_argument(
        "--write", action="store_true", help="put the section into benchmarks/RESULTS.md"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    OUT.mkdir(exist_ok=True)
    if args.render:
        raw = json.loads(Path(args.render).read_text())
        raw["summary"] = summarise(raw)
    else:
        keys = QUICK if args.quick else tuple(MODELS)
        raw = run(keys, 1 if args.quick else args.repeats, not args.no_lme4)
    md = render(raw)
    (OUT / "glmm.md").write_text(md)
    print()
    print(md)
    print(f"wrote {OUT / 'glmm.md'}" + ("" if args.render else f" and {raw['raw_file']}"))
    if args.write:
        harness.replace_section(md, HEADING)
        print(f"and its section in {harness.RESULTS}")


if __name__ == "__main__":
    main()
