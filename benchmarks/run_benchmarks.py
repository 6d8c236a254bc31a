"""Time interlace against lme4 on the same models, in the same run.

Run from the repository root:  python benchmarks/run_benchmarks.py [--repeats N]
(``make bench`` does this). Writes benchmarks/RESULTS.md and benchmarks/out/*.json.
It owns the models, the fresh-process child and the part of RESULTS.md above the sections
of bench_inference.py and bench_scaling.py; benchmarks/harness.py owns the lme4 process,
the environment record and the writing of RESULTS.md.

Per model, each repetition runs, in this order:
  1. interlace in a fresh process with INTERLACE_NO_COMPILATION_CACHE=1 (subprocess:
     interpreter start + import + data load + compile + fit; wall time measured here, plus
     the child's own breakdown and peak RSS): a user's very first fit;
  2. the same with interlace's persistent compilation cache turned on
     (INTERLACE_COMPILATION_CACHE=1; it is opt-in), which this process's warm-up fit has
     filled: a later session's first fit with the cache on;
  3. one compiled interlace fit in this process (after one untimed warm-up fit);
  4. one lme4 fit in a long-lived Rscript process (benchmarks/lme4_fit.R, after one
     untimed warm-up fit), timed inside R around lmer() only.
Then benchmarks/bench_vectorized.py runs (fit_many vs a loop of fits, bootstrap_se).
Tables report medians and the ratio lme4 / interlace. No timing is asserted.

The compilation cache lives in benchmarks/out/xdg_cache (XDG_CACHE_HOME for this process
and its children; JAX_COMPILATION_CACHE_DIR is ignored), emptied at the start of each run,
so results do not depend on what earlier runs left in ~/.cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import OUT, ROOT, med

PAGE_CSV = "tests/data/results_page.csv"
INSTEVAL_CSV = "tests/data/insteval.csv.gz"
INSTEVAL_FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
SLEEPSTUDY_CSV = "tests/data/sleepstudy.csv"
MODELS = {  # key -> (title, data file, formula, method, default repeats, issue target)
    "page_REML": (
        "Results page (REML)",
        PAGE_CSV,
        "score ~ hours_studied + prior_gpa + (1 | student_id) + (1 | school_id)",
        "REML",
        5,
        None,
    ),
    "sleepstudy_REML": (
        "sleepstudy, random slopes (REML)",
        SLEEPSTUDY_CSV,
        "Reaction ~ Days + (Days | Subject)",
        "REML",
        5,
        "compiled fit no slower than lme4 (~12 ms)",
    ),
    "insteval_REML": ("InstEval (REML)", INSTEVAL_CSV, INSTEVAL_FORMULA, "REML", 3, None),
    "insteval_ML": ("InstEval (ML)", INSTEVAL_CSV, INSTEVAL_FORMULA, "ML", 3, None),
}
# Grouping columns are read as strings (Subject is numeric in the CSV); lme4_fit.R makes
# the same columns factors.
DTYPES = {"s": str, "d": str, "dept": str, "service": str, "Subject": str}

# The fresh-process run: everything a user pays for on the first fit of a new session.
CHILD = """
import json, resource, sys, time, warnings
t0 = time.perf_counter()
import jax, pandas as pd, interlace
t1 = time.perf_counter()
path, formula, method, dtypes = sys.argv[1:5]
data = pd.read_csv(path, dtype={k: str for k in json.loads(dtypes)})
t2 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = interlace.fit(formula, data, method=method)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "fit_s": t3 - t2,
                  "deviance": r.deviance, "converged": r.converged,
                  "cache_dir": jax.config.jax_compilation_cache_dir,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load(path):
    import pandas as pd

    return pd.read_csv(ROOT / path, dtype=DTYPES)


def fresh_fit(path, formula, method, cache):
    """One fit in a new Python process; cache=False sets INTERLACE_NO_COMPILATION_CACHE=1."""
    env = dict(os.environ)
    if not cache:
        env["INTERLACE_NO_COMPILATION_CACHE"] = "1"
    t0 = time.perf_counter()
    # cwd is benchmarks/out, not the repo root, so that the child imports interlace the
    # same way this process does (installed package or PYTHONPATH), not from ./interlace.
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / path), formula, method, json.dumps(list(DTYPES))],
        cwd=OUT,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"fresh-process fit failed:\n{out.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def compiled_fit(interlace, data, formula, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the page model is a singular fit, as in lme4
        t0, c0 = time.perf_counter(), time.process_time()
        r = interlace.fit(formula, data, method=method)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "deviance": r.deviance,
        "converged": r.converged,
        "singular": bool(interlace.isSingular(r)),
        "n_iterations": r.n_iterations,
        "n_evaluations": r.n_evaluations,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="repetitions for every model (default: 5 for the page, 3 for InstEval)",
    )
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4 even if Rscript is found")
    ap.add_argument(
        "--no-vectorized",
        action="store_true",
        help="skip benchmarks/bench_vectorized.py (fit_many, bootstrap_se)",
    )
    ap.add_argument(
        "--cpus",
        type=int,
        nargs="+",
        default=None,
        help="pin this process and its children (R, fresh processes) to these CPUs",
    )
    ap.add_argument("--note", default="", help="free text to print in RESULTS.md")
    ap.add_argument(
        "--render",
        metavar="JSON",
        help="only rewrite RESULTS.md from a saved "
        "benchmarks/out/timings_*.json (with --note, replacing its note)",
    )
    args = ap.parse_args()
    if args.render:
        raw = json.loads(Path(args.render).read_text())
        raw["note"] = args.note or raw.get("note", "")
        raw.setdefault("raw_file", f"benchmarks/out/{Path(args.render).name}")
        harness.replace_head(render(raw))
        return
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)

    started = dt.datetime.now().astimezone()
    OUT.mkdir(exist_ok=True)
    cache_home = OUT / "xdg_cache"  # interlace's cache: cache_home/interlace/jax
    shutil.rmtree(cache_home, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(cache_home)  # before interlace is imported
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    os.environ.pop("INTERLACE_NO_COMPILATION_CACHE", None)
    # the cache is opt-in: on for this runner (its warm-up fit fills it) and for the
    # fresh-process children that inherit this environment (cache=False turns it off)
    os.environ["INTERLACE_COMPILATION_CACHE"] = "1"
    import interlace

    env = harness.environment(interlace)
    lme4, lme4_note = harness.lme4_driver("lme4_fit.R", use=not args.no_lme4)
    print(f"lme4: {lme4_note}", flush=True)

    results = {}
    for key in args.models:
        title, path, formula, method, default_reps, target = MODELS[key]
        reps = args.repeats or default_reps
        data = load(path)
        compiled_fit(interlace, data, formula, method)  # warm-up: compiles this shape
        if lme4:
            lme4.ask(key)  # warm-up, so both sides are timed warm
        runs = {"fresh_nocache": [], "fresh": [], "compiled": [], "lme4": []}
        for i in range(reps):
            runs["fresh_nocache"].append(fresh_fit(path, formula, method, cache=False))
            runs["fresh"].append(fresh_fit(path, formula, method, cache=True))
            runs["compiled"].append(compiled_fit(interlace, data, formula, method))
            if lme4:
                runs["lme4"].append(lme4.ask(key))
            line = " | ".join(
                f"{k} {v[-1].get('seconds', v[-1].get('wall_s')):.3f}s"
                + (f" (cpu {v[-1]['cpu_s']:.3f}s)" if "cpu_s" in v[-1] else "")
                for k, v in runs.items()
                if v
            )
            print(f"{title} rep {i + 1}/{reps}: {line}", flush=True)
        results[key] = summarise(title, formula, method, reps, runs, target)
    if lme4:
        lme4.close()

    vectorized = None
    if not args.no_vectorized:
        import bench_vectorized  # benchmarks/ is on sys.path: it holds this script

        print("vectorized fits and bootstrap (benchmarks/bench_vectorized.py):", flush=True)
        vectorized = bench_vectorized.run()

    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "python_executable": sys.executable,
        "environment": env,
        "lme4": lme4_note,
        "note": args.note,
        "results": results,
        "vectorized": vectorized,
    }
    stamp = started.strftime("%Y%m%dT%H%M%S")
    raw["raw_file"] = f"benchmarks/out/timings_{stamp}.json"
    harness.save_json(raw, OUT / f"timings_{stamp}.json", OUT / "timings_latest.json")
    harness.replace_head(render(raw))
    print(f"wrote {harness.RESULTS} and {OUT / f'timings_{stamp}.json'}")


def summarise(title, formula, method, reps, runs, target=None):
    c, f, r = runs["compiled"], runs["fresh"], runs["lme4"]
    f0 = runs["fresh_nocache"]
    s = {
        "title": title,
        "formula": formula,
        "method": method,
        "repeats": reps,
        "runs": runs,
        "target": target,
        "compiled_median_s": med(c),
        "compiled_min_s": min(x["seconds"] for x in c),
        "compiled_cpu_median_s": med(c, "cpu_s"),
        "lme4_cpu_median_s": med(r, "cpu_s"),
        "fresh_median_s": med(f, "wall_s"),
        "fresh_fit_median_s": med(f, "fit_s"),
        "peak_rss_mib": max(x["peak_rss_mib"] for x in f),
        "fresh_nocache_median_s": med(f0, "wall_s"),
        "fresh_nocache_fit_median_s": med(f0, "fit_s"),
        "peak_rss_nocache_mib": max(x["peak_rss_mib"] for x in f0),
        "fresh_cache_dir": f[-1]["cache_dir"],
        "fresh_nocache_cache_dir": f0[-1]["cache_dir"],
        "n_evaluations": c[-1]["n_evaluations"],
        "n_iterations": c[-1]["n_iterations"],
        "converged": all(x["converged"] for x in c + f + f0),
        "singular": c[-1]["singular"],
        "deviance": c[-1]["deviance"],
        "lme4_median_s": med(r),
        "lme4_min_s": min((x["seconds"] for x in r), default=None),
    }
    if r:
        s.update(
            lme4_deviance=r[-1]["deviance"],
            lme4_feval=r[-1]["feval"],
            lme4_singular=r[-1]["singular"],
            lme4_convergence_messages=max(x["convergence_messages"] for x in r),
            ratio=s["lme4_median_s"] / s["compiled_median_s"],
            ratio_fresh=s["lme4_median_s"] / s["fresh_median_s"],
            ratio_fresh_nocache=s["lme4_median_s"] / s["fresh_nocache_median_s"],
            target_met=s["compiled_median_s"] <= s["lme4_median_s"],
            deviance_rel_diff=(s["deviance"] - r[-1]["deviance"]) / abs(r[-1]["deviance"]),
        )
    return s


def render(raw):
    env = raw["environment"]
    cache = env.get("compilation_cache_dir")
    if cache and Path(cache).is_relative_to(ROOT):
        cache = str(Path(cache).relative_to(ROOT))
    lines = [
        "# Benchmarks: interlace vs lme4",
        "",
        f"Generated by `{raw['command']}` (from the repository root; `make bench` runs this "
        f"script) on {raw['date']}. Raw timings went to `{raw['raw_file']}` (under the "
        "git-ignored `benchmarks/out/`, so not in the repository).",
        "",
        *harness.environment_lines(env, raw["lme4"]),
        "",
        *([f"Note: {raw['note']}", ""] if raw["note"] else []),
        "Times are wall-clock seconds, medians over the repetitions. *Compiled*: one "
        "`interlace.fit` call in a process that has already fitted the same shapes once. "
        "*Fresh process*: a new Python process that imports interlace, reads the CSV, "
        "compiles (or loads the compiled fit from the persistent cache) and fits: the first "
        "fit of a session. *No cache*: with `INTERLACE_NO_COMPILATION_CACHE=1`, so it "
        "compiles everything, as on a machine's very first fit. *Cache warm*: interlace's "
        "persistent compilation cache (opt-in: `INTERLACE_COMPILATION_CACHE=1`), filled by "
        "the runner's warm-up fit, as in any later session with the cache on. *lme4*: "
        "`lmer()` with default control, timed inside R around the call only. "
        "Ratio = lme4 / interlace. CPU time (user + system, all threads) shows "
        "how much of the machine each side used: XLA uses every core it is allowed; R's "
        "threads depend on its BLAS (named above; the reference BLAS is single-threaded). "
        "The deviance is lme4's criterion: REMLcrit for REML, deviance for ML.",
        "",
        "Alternation: lme4 runs in one long-lived Rscript process (`benchmarks/lme4_fit.R`) "
        "that fits on request, so each repetition is one fresh-process interlace fit without "
        "cache, one with the cache, one compiled interlace fit and one lme4 fit, in that "
        "order; drift in machine load hits both libraries alike. Each side gets one untimed "
        "warm-up fit per model first. "
        + (
            f"The compilation cache was `{cache}`, emptied at the start of the run."
            if cache
            else "No compilation cache was active."
        ),
        "",
    ]
    lines += [
        "## Summary",
        "",
        "| model | interlace compiled | fresh process, cache warm "
        "| fresh process, no cache | lme4 | lme4 / compiled | lme4 / fresh (cache warm) |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = []
    for s in raw["results"].values():
        r = (
            f"{s['lme4_median_s']:.3f} s | {s['ratio']:#.3g}x | {s['ratio_fresh']:#.3g}x"
            if s.get("ratio") is not None
            else "n/a | n/a | n/a"
        )
        lines.append(
            f"| {s['title']} | {s['compiled_median_s']:.3f} s "
            f"| {s['fresh_median_s']:.2f} s | {s['fresh_nocache_median_s']:.2f} s "
            f"| {r} |"
        )
        if s.get("target"):
            targets.append(
                f"- {s['title']}: {s['target']}: "
                + (
                    f"**{'met' if s['target_met'] else 'not met'}** (compiled "
                    f"{1000 * s['compiled_median_s']:.1f} ms, lme4 {1000 * s['lme4_median_s']:.1f} ms "
                    "in this run)"
                    if "target_met" in s
                    else "not checked (no lme4 in this run)"
                )
            )
    lines.append("")
    if targets:
        lines += ["Issue targets:", "", *targets, ""]
    vec = raw.get("vectorized")
    if vec and vec.get("result"):
        v = vec["result"]
        lines += [
            f"Vectorized (details below): `fit_many` of 1000 responses "
            f"{v['fit_many']['median_s']:.2f} s vs a loop of 1000 `fit` calls "
            f"{v['loop']['median_s']:.2f} s ({v['ratio_loop_over_fit_many']:#.3g}x); "
            f"fixed effects differ by more than {v['fe_tolerance']:g} in {v['n_fe_mismatch']} "
            f"of 1000 responses; "
            f"`bootstrap_se`, 10,000 group resamples: {1000 * v['bootstrap']['median_s']:.0f} ms.",
            "",
        ]
    for s in raw["results"].values():
        yn = lambda b: "yes" if b else "no"  # noqa: E731
        na = f"n/a (lme4 {raw['lme4']})"
        have = "ratio" in s
        rows = [
            (
                "interlace compiled fit: median (min); CPU time",
                f"{s['compiled_median_s']:.3f} s ({s['compiled_min_s']:.3f} s); "
                f"CPU {s['compiled_cpu_median_s']:.3f} s",
            ),
            (
                "interlace fresh process, cache warm: median (of which fit incl. loading the "
                "compiled fit); peak RSS",
                f"{s['fresh_median_s']:.2f} s ({s['fresh_fit_median_s']:.2f} s); "
                f"{s['peak_rss_mib']:.0f} MiB",
            ),
            (
                "interlace fresh process, no cache: median (of which fit incl. compile); peak RSS",
                f"{s['fresh_nocache_median_s']:.2f} s ({s['fresh_nocache_fit_median_s']:.2f} s); "
                f"{s['peak_rss_nocache_mib']:.0f} MiB",
            ),
            (
                "lme4 `lmer()`: median (min); CPU time",
                f"{s['lme4_median_s']:.3f} s ({s['lme4_min_s']:.3f} s); "
                f"CPU {s['lme4_cpu_median_s']:.3f} s"
                if have
                else na,
            ),
            (
                "ratio lme4 / interlace: compiled; fresh, cache warm; fresh, no cache",
                f"{s['ratio']:#.3g}x; {s['ratio_fresh']:#.3g}x; {s['ratio_fresh_nocache']:#.3g}x"
                if have
                else na,
            ),
            (
                "evaluations: interlace value+gradient (L-BFGS iterations); lme4 feval",
                f"{s['n_evaluations']} ({s['n_iterations']}); {s['lme4_feval'] if have else na}",
            ),
            ("deviance, interlace", f"{s['deviance']:.10f} (converged: {yn(s['converged'])})"),
            ("deviance, lme4", f"{s['lme4_deviance']:.10f}" if have else na),
            (
                "relative difference (interlace - lme4) / lme4",
                f"{s['deviance_rel_diff']:+.2e}" if have else na,
            ),
            (
                "singular fit: interlace; lme4 (lme4 convergence warnings besides singular)",
                f"{yn(s['singular'])}; "
                + (f"{yn(s['lme4_singular'])} ({s['lme4_convergence_messages']})" if have else na),
            ),
        ]
        if s.get("target"):
            rows.append(
                (
                    f"issue target: {s['target']}",
                    ("met" if s["target_met"] else "not met") if have else na,
                )
            )
        lines += [
            f"## {s['title']}",
            "",
            f"`{s['formula']}`, {s['method']}, {s['repeats']} repetition(s)",
            "",
            "| | |",
            "|---|---|",
        ]
        lines += [f"| {a} | {b} |" for a, b in rows] + [""]
    if vec:
        import bench_vectorized  # benchmarks/ is on sys.path: it holds this script

        lines.append(bench_vectorized.render_section(vec))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
