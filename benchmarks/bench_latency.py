"""Latency: the first fit of each of many new small models, interlace against lme4.

Run from the repository root:

    python benchmarks/bench_latency.py                # 3 fresh processes, 12 models
    python benchmarks/bench_latency.py --repeats 1    # one process (about 5 min on 2 cores)
    python benchmarks/bench_latency.py --quick        # 3 models, one process
    python benchmarks/bench_latency.py --no-lme4      # interlace only
    python benchmarks/bench_latency.py --render [JSON] [--write]   # re-render a saved run

It owns the models, their data, the worker's side and RESULTS.md's "## Latency" section
(written only with ``--write``); benchmarks/harness.py owns the worker and R processes,
the environment record and the writing of the section; benchmarks/lme4_latency.R is the
lme4 side.

The data: twelve seeded synthetic crossed designs (numpy ``default_rng(seed)``), 200 to
10,000 rows, two or three crossed grouping factors, written as CSV to
benchmarks/out/latency/ (git-ignored) with ``models.json``, the manifest lme4_latency.R
reads, so that lme4 fits the very same rows. The models differ in formula, term structure
(random intercepts, a correlated slope ``(x1 | g)``, uncorrelated ``(1 + x || g)``), fixed
columns (2 to 4, one a two-level factor), size, and REML / ML.

What one repetition measures, in ONE fresh Python process (this script with ``--worker``,
``harness.Worker``) with the persistent compilation cache off
(``INTERLACE_NO_COMPILATION_CACHE=1``), so that every compile is real:

  1. import of jax, pandas and interlace (timed), reading every CSV (untimed), one untimed
     warm-up fit of an unrelated model (the results page), which pays JAX's start-up;
  2. each model once, one after another: the *first fit*; wall seconds around
     ``interlace.fit`` and, from jax.monitoring, the tracing + lowering + XLA compile
     seconds inside it (``harness.make_timer``: sum of JAX's compile-event durations;
     nested traces can count twice), the union of those events' time spans (no double
     counting) and the number of XLA executables built (backend-compile events), with the
     functions whose compiles cost most;
  3. each model once more: the *compiled fit* (same process).

lme4 runs in one long-lived Rscript process (benchmarks/lme4_latency.R) that fits the
page once untimed, then each model after interlace's first fit of it (alternating, so
that drift in machine load hits both), timed inside R around ``lmer()`` only, default
control, the same REML / ML. Across repetitions (fresh interlace processes; the R
process stays) every figure is a median.

Then the start-up figures, each a separate process whose wall time is measured here
(interpreter start, ``import interlace, pandas``, reading the page CSV, one fit), median of
``--startup-repeats`` (3), alternating:
  * empty cache: ``INTERLACE_NO_COMPILATION_CACHE=1``;
  * warm cache: interlace's cache (opt-in, ``INTERLACE_COMPILATION_CACHE=1``) in a
    temporary ``XDG_CACHE_HOME`` that one untimed run (recorded as "filling run") filled
    first;
  * lme4: ``Rscript -e 'library(lme4); read.csv(...); lmer(...)'``.

Issue targets (reported, never asserted): per-model median of first fit / lme4 within
2x, total (sum of first fits / sum of lme4 fits) within 3x; import + first fit of the
results page under 2 s with an empty cache, under 1 s with a warm one.

Raw results: benchmarks/out/latency_<time>.json and latency_latest.json; the markdown
goes to benchmarks/out/latency.md (and, with ``--write``, into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import OUT, ROOT, median

DATA = OUT / "latency"
HEADING = harness.SECTIONS["latency"]
PAGE_CSV = "tests/data/results_page.csv"
PAGE_FORMULA = "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)"
PAGE_FACTORS = ["student_id", "school_id"]
# key -> (rows, levels of g1, g2[, g3], formula, method); the seed is the key's number.
MODELS = {
    "m01": (200, (20, 10), "y ~ x1 + (1 | g1) + (1 | g2)", "REML"),
    "m02": (400, (40, 8), "y ~ x1 + x2 + (1 | g1) + (1 | g2)", "ML"),
    "m03": (800, (40, 20, 5), "y ~ x1 + (1 | g1) + (1 | g2) + (1 | g3)", "REML"),
    "m04": (1000, (50, 25), "y ~ x1 + (x1 | g1) + (1 | g2)", "REML"),
    "m05": (1500, (60, 30), "y ~ x1 + x2 + x3 + (1 + x1 || g1) + (1 | g2)", "ML"),
    "m06": (2000, (100, 40, 10), "y ~ x1 + x2 + cond + (1 | g1) + (1 | g2) + (1 | g3)", "REML"),
    "m07": (3000, (150, 30), "y ~ x1 + x2 + (x1 | g1) + (x1 | g2)", "ML"),
    "m08": (4000, (200, 50, 8), "y ~ x1 + (x1 | g1) + (1 | g2) + (1 | g3)", "REML"),
    "m09": (5000, (250, 20), "y ~ x1 + x2 + x3 + (1 | g1) + (1 | g2)", "REML"),
    "m10": (7000, (300, 60, 12), "y ~ x1 + x2 + (1 + x2 || g1) + (1 | g2) + (1 | g3)", "ML"),
    "m11": (10000, (400, 100), "y ~ x1 + x2 + cond + (x1 | g1) + (1 | g2)", "REML"),
    "m12": (10000, (500, 80, 20), "y ~ x1 + x3 + (1 | g1) + (1 | g2) + (1 | g3)", "ML"),
}
QUICK = ("m01", "m04", "m10")
# The simulated truth: y = 2 + 0.5 x1 - 0.3 x2 + 0.2 x3 + 0.4 [cond = b] + e, e ~ N(0, 1),
# plus per factor a random intercept (sd INTERCEPT_SD) and random slopes of x1 (sd
# SLOPE_SD["x1"], correlation 0.3 with the intercept) and x2 (independent).
BETA = (2.0, 0.5, -0.3, 0.2, 0.4)
INTERCEPT_SD = {"g1": 1.0, "g2": 0.6, "g3": 0.4}
SLOPE_SD = {"x1": {"g1": 0.4, "g2": 0.25}, "x2": {"g1": 0.3}}
SLOPE_CORR = 0.3
# Targets of the Latency issue.
TARGET_MEDIAN_RATIO, TARGET_TOTAL_RATIO = 2.0, 3.0
TARGET_EMPTY_S, TARGET_WARM_S = 2.0, 1.0
DEVIANCE_RTOL = 1e-6  # interlace's deviance may be lower than lme4's (lme4 stops early)
BACKEND = "/jax/core/compile/backend_compile_duration"
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"


# --- the data ---------------------------------------------------------------------------------
def factors_of(levels) -> list[str]:
    return [f"g{i + 1}" for i in range(len(levels))]


def make_data(rows: int, levels, seed: int):
    """A seeded crossed design: columns y, x1, x2, x3 (N(0, 1)), cond ("a"/"b") and one
    string factor per level count (``g1_007``; every level occurs at least once, the
    others drawn uniformly, independently per factor: crossed, not nested)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 3))
    cond = rng.integers(0, 2, rows)
    y = BETA[0] + x @ np.array(BETA[1:4]) + BETA[4] * cond + rng.standard_normal(rows)
    cols = {}
    for name, q in zip(factors_of(levels), levels):
        codes = rng.permutation(np.concatenate([np.arange(q), rng.integers(0, q, rows - q)]))
        z = rng.standard_normal((q, 3))
        b0 = INTERCEPT_SD[name] * z[:, 0]
        b1 = SLOPE_SD["x1"].get(name, 0.0) * (
            SLOPE_CORR * z[:, 0] + (1 - SLOPE_CORR**2) ** 0.5 * z[:, 1]
        )
        b2 = SLOPE_SD["x2"].get(name, 0.0) * z[:, 2]
        y += b0[codes] + b1[codes] * x[:, 0] + b2[codes] * x[:, 1]
        width = len(str(q - 1))
        cols[name] = np.array([f"{name}_{i:0{width}d}" for i in range(q)])[codes]
    return pd.DataFrame(
        {
            "y": y,
            "x1": x[:, 0],
            "x2": x[:, 1],
            "x3": x[:, 2],
            "cond": np.where(cond == 1, "b", "a"),
            **cols,
        }
    )


def write_data(keys) -> dict:
    """Write each model's CSV (regenerated: same seed, same bytes) and the manifest that
    lme4_latency.R reads; return the manifest (paths relative to the repository root)."""
    DATA.mkdir(parents=True, exist_ok=True)
    manifest = {
        "page": {
            "csv": PAGE_CSV,
            "formula": PAGE_FORMULA,
            "REML": True,
            "factors": PAGE_FACTORS,
            "rows": None,
            "levels": None,
        }
    }
    for key in keys:
        rows, levels, formula, method = MODELS[key]
        path = DATA / f"{key}.csv"
        make_data(rows, levels, int(key[1:])).to_csv(path, index=False, float_format="%.17g")
        manifest[key] = {
            "csv": str(path.relative_to(ROOT)),
            "formula": formula,
            "REML": method == "REML",
            "factors": factors_of(levels),
            "rows": rows,
            "levels": list(levels),
        }
    harness.save_json(manifest, DATA / "models.json")
    return manifest


# --- worker: the interlace side -----------------------------------------------------------------
def worker():
    """Serve requests (one JSON object a line on stdin; one RESULT/ERROR line back)."""
    t0 = time.perf_counter()
    import jax
    import pandas as pd

    import interlace

    import_s = time.perf_counter() - t0
    warnings.simplefilter("ignore")  # singular fits warn, as in lme4

    timed = harness.make_timer()  # wall, CPU and compile seconds of one call
    spans = []  # (event, start, end, fun_name) of every JAX compile event

    def on_span(event, start, end, **kw):
        if event.startswith("/jax/core/compile/"):
            spans.append((event, start, end, str(kw.get("fun_name", "?"))))

    jax.monitoring.register_event_time_span_listener(on_span)
    manifest = json.loads((DATA / "models.json").read_text())
    frames = {}

    def fit(req):
        m = manifest[req["key"]]
        if req["key"] not in frames:
            frames[req["key"]] = pd.read_csv(
                ROOT / m["csv"], dtype={c: str for c in [*m["factors"], "cond"]}
            )
        df, method = frames[req["key"]], "REML" if m["REML"] else "ML"
        n0 = len(spans)
        r, t = timed(lambda: interlace.fit(m["formula"], df, method=method))
        mine = spans[n0:]
        backend = [s for s in mine if s[0] == BACKEND]
        by_fun: dict[str, list] = {}
        for _ev, a, b, name in backend:
            by_fun.setdefault(name, [0, 0.0])
            by_fun[name][0] += 1
            by_fun[name][1] += b - a
        return {
            **t,
            "key": req["key"],
            "phase": req["phase"],
            "n_executables": len(backend),
            "backend_compile_s": sum(b - a for _, a, b, _ in backend),
            "trace_s": sum(b - a for ev, a, b, _ in mine if ev == TRACE),
            "lower_s": sum(b - a for ev, a, b, _ in mine if ev == LOWER),
            "n_traces": sum(ev == TRACE for ev, *_ in mine),
            "compile_span_s": _union_seconds([(a, b) for _, a, b, _ in mine]),
            "compiled_functions": {
                k: {"n": n, "seconds": s}
                for k, (n, s) in sorted(by_fun.items(), key=lambda kv: -kv[1][1])
            },
            "deviance": float(r.deviance),
            "converged": bool(r.converged),
            "singular": bool(interlace.isSingular(r)),
            "n_evaluations": int(r.n_evaluations),
            "n_iterations": int(r.n_iterations),
        }

    env = harness.environment(interlace)
    env["worker_env"] = {
        k: os.environ[k]
        for k in ("NPROC", "XLA_FLAGS", "INTERLACE_NO_COMPILATION_CACHE")
        if k in os.environ
    }
    env["interlace_file"] = interlace.__file__
    harness.say("RESULT", {"environment": env, "import_s": import_s})

    def handle(req):
        if req["op"] == "fit":
            return fit(req)
        raise ValueError(f"unknown request {req!r}")

    harness.serve(handle)


def _union_seconds(intervals) -> float:
    """Length of the union of ``(start, end)`` intervals (nested compile events once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


# --- driver --------------------------------------------------------------------------------------
def one_process(keys, lme4, rep):
    """One fresh interlace process: warm-up, first fits (lme4 alternating), compiled fits."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    w = harness.Worker(
        cmd, env={"INTERLACE_NO_COMPILATION_CACHE": "1", "INTERLACE_NO_PROGRESS": "1"}
    )
    try:
        hello = w.reply("start")
        print(
            f"[process {rep}] import jax + pandas + interlace {hello['import_s']:.2f} s "
            f"({hello['environment']['interlace_file']})",
            flush=True,
        )
        warm = w.ask(op="fit", key="page", phase="warmup")
        print(
            f"[process {rep}] warm-up (results page) {warm['seconds']:.2f} s, compile "
            f"{warm['compile_s']:.2f} s, {warm['n_executables']} executables",
            flush=True,
        )
        first, compiled, r = {}, {}, {}
        for key in keys:
            first[key] = f = w.ask(op="fit", key=key, phase="first")
            line = (
                f"[process {rep}] {key} first fit {f['seconds']:.3f} s (compile "
                f"{f['compile_s']:.2f} s, {f['n_executables']} executables)"
            )
            if lme4:
                r[key] = lme4.ask(key)
                line += f" | lme4 {r[key]['seconds']:.3f} s"
            print(line, flush=True)
        for key in keys:
            compiled[key] = c = w.ask(op="fit", key=key, phase="compiled")
            print(
                f"[process {rep}] {key} compiled fit {c['seconds']:.3f} s "
                f"({c['n_executables']} executables)",
                flush=True,
            )
    finally:
        w.close()
    return {
        "import_s": hello["import_s"],
        "environment": hello["environment"],
        "warmup": warm,
        "first": first,
        "compiled": compiled,
        "lme4": r,
        "peak_rss_mib": w.peak_rss_mib,
    }


STARTUP_CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys, warnings
import interlace, pandas as pd
t1 = time.perf_counter()
df = pd.read_csv(sys.argv[1])
t2 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = interlace.fit(sys.argv[2], df)
t3 = time.perf_counter()
import jax
print("@@" + json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "fit_s": t3 - t2,
                         "deviance": r.deviance, "interlace_file": interlace.__file__,
                         "cache_dir": jax.config.jax_compilation_cache_dir}))
"""

R_STARTUP = (
    "suppressPackageStartupMessages(library(lme4)); "
    f"d <- read.csv('{PAGE_CSV}', stringsAsFactors = TRUE); "
    f"fit <- lmer({PAGE_FORMULA}, data = d); cat(REMLcrit(fit), '\\n')"
)


def startup_python(cache_home: Path | None) -> dict:
    """Wall time of ``python -c "import interlace, pandas; fit the page"``: cache off
    (``cache_home`` None) or interlace's cache under XDG_CACHE_HOME=``cache_home``."""
    env = dict(os.environ, INTERLACE_NO_PROGRESS="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_home is None:
        env["INTERLACE_NO_COMPILATION_CACHE"] = "1"
    else:  # the cache is opt-in
        env.pop("INTERLACE_NO_COMPILATION_CACHE", None)
        env["INTERLACE_COMPILATION_CACHE"] = "1"
        env["XDG_CACHE_HOME"] = str(cache_home)
    t0 = time.perf_counter()
    # cwd is benchmarks/out, not the repository root, so that the child imports interlace
    # as the worker does (PYTHONPATH or an installed copy), not from ./interlace.
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_CHILD, str(ROOT / PAGE_CSV), PAGE_FORMULA],
        cwd=OUT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
    if out.returncode or not line:
        raise RuntimeError(f"start-up run failed:\n{out.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(line[0][2:])}


def startup_r() -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        ["Rscript", "-e", R_STARTUP],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"Rscript start-up run failed:\n{out.stderr[-3000:]}")
    return {"wall_s": wall, "deviance": float(out.stdout.split()[-1])}


def startup(n: int, use_r: bool) -> dict:
    runs = {"empty": [], "warm": [], "lme4": []}
    with tempfile.TemporaryDirectory(prefix="interlace_latency_cache_") as tmp:
        fill = startup_python(Path(tmp))
        entries = sum(len(files) for _, _, files in os.walk(tmp))
        print(
            f"[start-up] filling run (cache on, empty) {fill['wall_s']:.2f} s; "
            f"{entries} files in the cache",
            flush=True,
        )
        for i in range(n):
            runs["empty"].append(startup_python(None))
            runs["warm"].append(startup_python(Path(tmp)))
            if use_r:
                runs["lme4"].append(startup_r())
            print(
                f"[start-up] {i + 1}/{n}: "
                + " | ".join(f"{k} {v[-1]['wall_s']:.2f} s" for k, v in runs.items() if v),
                flush=True,
            )
    return {
        "filling_run": fill,
        "cache_files": entries,
        "runs": runs,
        **{f"{k}_median_s": median(x["wall_s"] for x in v) for k, v in runs.items()},
    }


def run(keys, repeats, use_lme4, startup_repeats) -> dict:
    started = dt.datetime.now().astimezone()
    manifest = write_data(keys)
    lme4, lme4_note = harness.lme4_driver("lme4_latency.R", use=use_lme4)
    print(f"lme4: {lme4_note}", flush=True)
    load = {"start": harness.loadavg()}
    lme4_warmup = None
    try:
        if lme4:
            lme4_warmup = lme4.ask("page")
            print(f"lme4 warm-up (results page) {lme4_warmup['seconds']:.3f} s", flush=True)
        processes = [one_process(keys, lme4, i + 1) for i in range(repeats)]
    finally:
        if lme4:
            lme4.close()
    load["after_models"] = harness.loadavg()
    start = startup(startup_repeats, use_r=lme4 is not None) if startup_repeats else None
    load["end"] = harness.loadavg()
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "python_executable": sys.executable,
        "environment": processes[0]["environment"],
        "lme4": lme4_note,
        "loadavg": load,
        "repeats": repeats,
        "keys": list(keys),
        "manifest": manifest,
        "lme4_warmup": lme4_warmup,
        "processes": processes,
        "startup": start,
    }
    raw["summary"] = summarise(raw)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    raw["raw_file"] = f"benchmarks/out/latency_{stamp}.json"
    harness.save_json(raw, OUT / f"latency_{stamp}.json", OUT / "latency_latest.json")
    return raw


def summarise(raw) -> dict:
    procs, per_model = raw["processes"], {}
    for key in raw["keys"]:
        first = [p["first"][key] for p in procs]
        comp = [p["compiled"][key] for p in procs]
        r = [p["lme4"][key] for p in procs if key in p["lme4"]]
        s = {
            "first_s": median(x["seconds"] for x in first),
            "first_compile_s": median(x["compile_s"] for x in first),
            "first_compile_span_s": median(x["compile_span_s"] for x in first),
            "first_backend_s": median(x["backend_compile_s"] for x in first),
            "first_trace_s": median(x["trace_s"] for x in first),
            "first_lower_s": median(x["lower_s"] for x in first),
            "first_executables": median(x["n_executables"] for x in first),
            "compiled_s": median(x["seconds"] for x in comp),
            "compiled_cpu_s": median(x["cpu_s"] for x in comp),
            "first_cpu_s": median(x["cpu_s"] for x in first),
            "compiled_executables": max(x["n_executables"] for x in comp),
            "deviance": comp[-1]["deviance"],
            "first_vs_compiled_deviance": max(
                abs(a["deviance"] - b["deviance"]) for a, b in zip(first, comp)
            ),
            "converged": all(x["converged"] for x in first + comp),
            "singular": comp[-1]["singular"],
            "n_evaluations": comp[-1]["n_evaluations"],
        }
        if r:
            lm = median(x["seconds"] for x in r)
            s.update(
                lme4_s=lm,
                lme4_deviance=r[-1]["deviance"],
                lme4_feval=r[-1]["feval"],
                lme4_singular=r[-1]["singular"],
                lme4_convergence_messages=max(x["convergence_messages"] for x in r),
                ratio_first=s["first_s"] / lm,
                ratio_compiled=s["compiled_s"] / lm,
                deviance_rel_diff=(s["deviance"] - r[-1]["deviance"]) / abs(r[-1]["deviance"]),
            )
        per_model[key] = s
    out = {
        "models": per_model,
        "total_first_s": sum(s["first_s"] for s in per_model.values()),
        "total_compiled_s": sum(s["compiled_s"] for s in per_model.values()),
        "total_compile_s": sum(s["first_compile_s"] for s in per_model.values()),
        "total_executables": sum(s["first_executables"] for s in per_model.values()),
    }
    if all("lme4_s" in s for s in per_model.values()):
        out["total_lme4_s"] = sum(s["lme4_s"] for s in per_model.values())
        out["median_ratio_first"] = median(s["ratio_first"] for s in per_model.values())
        out["total_ratio_first"] = out["total_first_s"] / out["total_lme4_s"]
        out["median_ratio_compiled"] = median(s["ratio_compiled"] for s in per_model.values())
        out["total_ratio_compiled"] = out["total_compiled_s"] / out["total_lme4_s"]
        out["deviance_worst_rel_diff"] = max(s["deviance_rel_diff"] for s in per_model.values())
    # which functions' compiles cost most, over all first fits of all processes
    funs: dict[str, list] = {}
    for p in procs:
        for key in raw["keys"]:
            for name, v in p["first"][key]["compiled_functions"].items():
                funs.setdefault(name, [0, 0.0])
                funs[name][0] += v["n"]
                funs[name][1] += v["seconds"]
    out["top_compiled_functions"] = [
        {"name": k, "n": n / len(procs), "seconds": s / len(procs)}
        for k, (n, s) in sorted(funs.items(), key=lambda kv: -kv[1][1])[:8]
    ]
    return out


# --- rendering -----------------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _terms(formula: str) -> str:
    """The right-hand side, its ``|`` escaped for a markdown table cell."""
    return formula.split("~", 1)[1].strip().replace("|", "\\|")


def render(raw) -> str:
    s, env, man = raw["summary"], raw["environment"], raw["manifest"]
    have = "median_ratio_first" in s
    n = len(raw["keys"])
    rows = [man[k]["rows"] for k in raw["keys"]]
    lines = [
        "## Latency: first fits of new models, interlace vs lme4",
        "",
        f"Generated by `{raw['command']}` (from the repository root) on {raw['date']}; raw "
        f"results in `{raw['raw_file']}` (git-ignored). Load average (1, 5, 15 min) at the "
        f"start {raw['loadavg']['start']}, at the end {raw['loadavg']['end']} (the machine "
        "may be shared).",
        "",
        *harness.environment_lines(env, raw["lme4"]),
        "",
        f"What a user pays for when fitting many different small models: {n} seeded "
        f"synthetic crossed designs (`benchmarks/out/latency/`, {min(rows):,} to "
        f"{max(rows):,} rows; random intercepts, correlated and uncorrelated slopes, REML "
        "and ML: see the table), fitted one after another in ONE fresh Python process per "
        "repetition with the persistent compilation cache off "
        "(`INTERLACE_NO_COMPILATION_CACHE=1`), after one untimed warm-up fit of the results "
        "page. *First fit*: wall seconds of `interlace.fit` on a model the process has not "
        "seen. *Compile*: JAX tracing + lowering + XLA compile seconds inside that call "
        "(jax.monitoring, `harness.make_timer`). *Executables*: XLA executables built in that "
        "call (backend-compile events). *Compiled*: the same model fitted again in the same "
        "process. *lme4*: `lmer()` with default control in one long-lived Rscript "
        "(`benchmarks/lme4_latency.R`, one warm-up fit of the page first), timed inside R; "
        "it fits each model right after interlace's first fit of it. "
        f"{raw['repeats']} fresh process(es); figures are medians across them. "
        "Ratios are interlace / lme4 (above 1: interlace slower).",
        "",
        "| model | rows | levels | formula (response y) | method | first fit | compile | "
        "executables | compiled fit | lme4 | first / lme4 | compiled / lme4 | deviance "
        "(interlace - lme4) / lme4 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in raw["keys"]:
        m, x = man[key], s["models"][key]
        method = "REML" if m["REML"] else "ML"
        tail = (
            f"{x['lme4_s']:.3f} s | {x['ratio_first']:.1f}x | {x['ratio_compiled']:.2f}x | "
            f"{x['deviance_rel_diff']:+.1e}"
            if "lme4_s" in x
            else "n/a | n/a | n/a | n/a"
        )
        lines.append(
            f"| {key} | {m['rows']:,} | {' x '.join(map(str, m['levels']))} | "
            f"`{_terms(m['formula'])}` | {method} | {x['first_s']:.2f} s | "
            f"{x['first_compile_s']:.2f} s | {x['first_executables']:g} | "
            f"{x['compiled_s']:.3f} s | {tail} |"
        )
    tot = (
        f"{s['total_lme4_s']:.3f} s | {s['total_ratio_first']:.1f}x | "
        f"{s['total_ratio_compiled']:.2f}x | "
        if have
        else "n/a | n/a | n/a | "
    )
    lines += [
        f"| **total** | | | | | {s['total_first_s']:.2f} s | {s['total_compile_s']:.2f} s "
        f"| {s['total_executables']:g} | {s['total_compiled_s']:.3f} s | {tot}|",
        "",
    ]

    targets = []
    if have:
        targets += [
            f"- Per-model median of first fit / lme4 within {TARGET_MEDIAN_RATIO:g}x: "
            f"{_met(s['median_ratio_first'] <= TARGET_MEDIAN_RATIO)} "
            f"({s['median_ratio_first']:.1f}x; compiled fits: {s['median_ratio_compiled']:.2f}x)",
            f"- Total (sum of first fits / sum of lme4 fits) within {TARGET_TOTAL_RATIO:g}x: "
            f"{_met(s['total_ratio_first'] <= TARGET_TOTAL_RATIO)} "
            f"({s['total_first_s']:.2f} s / {s['total_lme4_s']:.3f} s = "
            f"{s['total_ratio_first']:.1f}x)",
        ]
    else:
        targets.append("- Ratios to lme4: not measured (no lme4 in this run).")
    st = raw.get("startup")
    if st:
        n_st = len(st["runs"]["empty"])
        targets += [
            f"- Import + first fit of the results page in a fresh process, empty cache, under "
            f"{TARGET_EMPTY_S:g} s: {_met(st['empty_median_s'] < TARGET_EMPTY_S)} "
            f"({st['empty_median_s']:.2f} s)",
            f"- The same with a warm persistent cache, under {TARGET_WARM_S:g} s: "
            f"{_met(st['warm_median_s'] < TARGET_WARM_S)} ({st['warm_median_s']:.2f} s)",
        ]
    lines += ["Issue targets (reported, not asserted):", "", *targets, ""]

    if st:

        def parts(runs):
            return (
                f"import {median(r['import_s'] for r in runs):.2f} s, fit "
                f"{median(r['fit_s'] for r in runs):.2f} s"
            )

        r_line = (
            f"; `Rscript -e 'library(lme4); read.csv(...); lmer(...)'` {st['lme4_median_s']:.2f} s"
            if st["lme4_median_s"] is not None
            else ""
        )
        lines += [
            f"Start-up (wall seconds of a new process: interpreter, `import interlace, "
            f"pandas`, reading the page CSV, one fit; median of {n_st}, alternating): empty "
            f"cache (`INTERLACE_NO_COMPILATION_CACHE=1`) {st['empty_median_s']:.2f} s "
            f"({parts(st['runs']['empty'])}); warm cache (a temporary `XDG_CACHE_HOME` that "
            f"one untimed run filled with {st['cache_files']} files, that filling run taking "
            f"{st['filling_run']['wall_s']:.2f} s) {st['warm_median_s']:.2f} s "
            f"({parts(st['runs']['warm'])}){r_line}.",
            "",
        ]

    first_procs = raw["processes"]
    warm = median(p["warmup"]["seconds"] for p in first_procs)
    imp = median(p["import_s"] for p in first_procs)
    notes = [
        f"In the worker: importing jax, pandas and interlace took {imp:.2f} s; the "
        f"warm-up fit of the page {warm:.2f} s (compile "
        f"{median(p['warmup']['compile_s'] for p in first_procs):.2f} s, "
        f"{median(p['warmup']['n_executables'] for p in first_procs):g} executables)."
    ]
    span = sum(x["first_compile_span_s"] for x in s["models"].values())
    backend = sum(x["first_backend_s"] for x in s["models"].values())
    cpu = sum(x["compiled_cpu_s"] for x in s["models"].values())
    trace = sum(x["first_trace_s"] for x in s["models"].values())
    lower = sum(x["first_lower_s"] for x in s["models"].values())
    notes.append(
        f"Over the {n} first fits: {s['total_compile_s']:.2f} s of compile events "
        f"({span:.2f} s as the union of their time spans, nested traces counted once) of "
        f"{s['total_first_s']:.2f} s: tracing {trace:.2f} s, lowering to MLIR {lower:.2f} s, "
        f"XLA backend compiles {backend:.2f} s; {s['total_executables']:g} executables "
        f"in all. Compiled fits built "
        f"{sum(x['compiled_executables'] for x in s['models'].values())} executables in all; "
        f"their CPU time (all threads) was {cpu:.2f} s against {s['total_compiled_s']:.2f} s "
        "wall (one call per model and process, on a possibly shared machine: single "
        "compiled fits vary from run to run; they are not the subject here)."
    )
    if s["top_compiled_functions"]:
        notes.append(
            f"Most expensive compiles over the {n} first fits (function: "
            "executables, backend seconds, per process): "
            + "; ".join(
                f"`{f['name']}` {f['n']:g}, {f['seconds']:.2f} s"
                for f in s["top_compiled_functions"]
            )
            + "."
        )
    if have:
        worst = s["deviance_worst_rel_diff"]
        lower = sum(x["deviance_rel_diff"] < -DEVIANCE_RTOL for x in s["models"].values())
        notes.append(
            f"Deviances (REML criterion for REML fits): interlace is never above lme4 by more "
            f"than {DEVIANCE_RTOL:g} relative: "
            + ("yes" if worst <= DEVIANCE_RTOL else f"**no** (worst {worst:+.1e})")
            + f" (largest (interlace - lme4) / lme4: {worst:+.1e}; interlace lower by more "
            f"than {DEVIANCE_RTOL:g} on {lower} of {n} models, where lme4's default optimizer "
            "stopped early)."
        )
    bad = [k for k, x in s["models"].items() if not x["converged"]]
    same = max(x["first_vs_compiled_deviance"] for x in s["models"].values())
    notes.append(
        f"First and compiled fits agree (largest deviance difference {same:.1e}); "
        + (f"not converged: {', '.join(bad)}." if bad else "all converged.")
    )
    warned = [k for k, x in s["models"].items() if x.get("lme4_convergence_messages")]
    if warned:
        notes.append(
            "lme4 warned of convergence (besides singular fits) on "
            + ", ".join(
                f"{k} (deviance (interlace - lme4) / lme4 "
                f"{s['models'][k]['deviance_rel_diff']:+.1e})"
                for k in warned
            )
            + "."
        )
    sing = [k for k, x in s["models"].items() if x["singular"] or x.get("lme4_singular")]
    if sing:
        notes.append(f"Singular fits (interlace or lme4): {', '.join(sing)}.")
    lines += [f"- {t}" for t in notes]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh interlace processes (each fits every model twice); medians "
        "across them (default 3)",
    )
    ap.add_argument(
        "--startup-repeats",
        type=int,
        default=3,
        help="fresh processes per start-up figure (default 3; 0: skip them)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"only {', '.join(QUICK)}, one process, one start-up run each",
    )
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4 even if Rscript is found")
    ap.add_argument(
        "--render",
        nargs="?",
        const=str(OUT / "latency_latest.json"),
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
        keys = args.models or (QUICK if args.quick else list(MODELS))
        repeats = 1 if args.quick else args.repeats
        startup_repeats = 1 if args.quick else args.startup_repeats
        raw = run(keys, repeats, not args.no_lme4, startup_repeats)
    md = render(raw)
    (OUT / "latency.md").write_text(md)
    print()
    print(md)
    print(f"wrote {OUT / 'latency.md'}" + ("" if args.render else f" and {raw['raw_file']}"))
    if args.write:
        harness.replace_section(md, HEADING)
        print(f"and its section in {harness.RESULTS}")


if __name__ == "__main__":
    main()
