"""Time and peak memory of interlace (and lme4) against rows and levels, synthetic data.

It owns the child (generate, fit twice, break the fit down), the lme4 run and RESULTS.md's
scaling section; benchmarks/harness.py runs the child processes (timeout, peak RSS),
records the environment and writes the section.

Run from the repository root:

    python benchmarks/bench_scaling.py                      # 1e4 1e5 1e6 + three factors at 1e5
    python benchmarks/bench_scaling.py --sizes 1e5 --no-append
    python benchmarks/bench_scaling.py --with-1e7           # adds 1e7 (interlace only)

Designs come from ``benchmarks/synthetic.py`` (``make_crossed``: Zipf(1.1) level
frequencies, levels scaling with rows; see its docstring). For each design:

* interlace runs in a FRESH Python process (so its peak RSS is that fit's alone) with
  ``INTERLACE_NO_COMPILATION_CACHE=1``. The child times: import; data generation; fit 1
  (``interlace.fit("y ~ x", data, groups=[...], method="REML", verbose=True)``: includes
  tracing and compiling); fit 2 (same data, same process: compiled); then a breakdown of
  a third pass through fit's own steps (``build_design``, ``cross_products``,
  ``minimize_deviance``, ``estimates``) and of one compiled deviance + gradient
  evaluation. Peak RSS is ``getrusage(RUSAGE_SELF).ru_maxrss`` read after fit 1 (so
  generation + one fit), after fit 2 and after the breakdown. The child's per-iteration
  deviance lines (``verbose=True``) are time-stamped by this process. A memory limit
  (``RLIMIT_DATA``, ``--mem-limit-gb``) makes a fit that would exhaust the machine fail
  with ``MemoryError`` instead of waking the OOM killer; a timeout kills the child.
* lme4: the child also writes the data to a temporary CSV (after its peak RSS was read);
  ``Rscript benchmarks/lme4_scaling.R`` (under ``/usr/bin/time -v`` for the peak RSS, if
  present) fits ``lmer(y ~ x + (1|a) + (1|b)[ + (1|c)], REML=TRUE)``, default control, with
  a timeout (``--lme4-timeout``, default 30 min). lme4 runs at every size except 1e7
  (``--lme4-1e7`` to include it).

The table goes to stdout and is appended to ``benchmarks/RESULTS.md`` under "Scaling
(synthetic crossed designs)" (a previous section of that name is replaced; other sections
are untouched); raw results go to ``benchmarks/out/scaling_<stamp>.json`` and the section
to ``benchmarks/out/scaling_latest.md``. ``--render JSON`` re-appends a saved run;
``--add-to JSON`` adds this run's designs to a saved run (an interlace-only rerun, e.g.
``--sizes 1e6 --no-lme4 --no-three-factor --add-to ...``, keeps that run's lme4 fit of the
same data) and renders both.
Timings are wall-clock, single runs: noisy on a shared machine (the load average at the
start of each fit is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import HERE, OUT, ROOT, loadavg

HEADING = harness.SECTIONS["scaling"]
TAG = "@@RESULT "
THREE_FACTOR = (1e5, (2000, 400, 50))


def _internals():
    """interlace's internal steps that ``breakdown`` times one by one (fit()'s own steps:
    the package map in ``interlace/__init__.py``). Every private import of this file is
    here, so that re-pointing them is a change to this function only."""
    from interlace._core.deviance import cholesky_logdiag, estimates, profiled_deviance
    from interlace._core.optimize import minimize_deviance
    from interlace._core.theta import to_internal
    from interlace._model.design import build_design
    from interlace._model.estimate import start_values

    return types.SimpleNamespace(
        build_design=build_design,
        start_values=start_values,
        to_internal=to_internal,
        minimize_deviance=minimize_deviance,
        estimates=estimates,
        profiled_deviance=profiled_deviance,
        cholesky_logdiag=cholesky_logdiag,
    )


# --------------------------------------------------------------------------- child
def child(spec: dict) -> None:
    """Runs in the fresh process: generate, fit twice, break the fit down, write the CSV."""
    out: dict = {"stage": "start"}
    rss_mib = harness.peak_rss_mib

    def emit():
        print(TAG + json.dumps(out), flush=True)

    import warnings

    harness.cap_memory(spec.get("mem_limit_bytes"))  # MemoryError, not the OOM killer
    t0 = time.perf_counter()
    import jax
    import numpy as np

    import interlace

    out["import_s"] = time.perf_counter() - t0
    out["rss_after_import_mib"] = rss_mib()
    from synthetic import make_crossed  # benchmarks/ is on sys.path

    levels = spec["levels"]
    t0 = time.perf_counter()
    data = make_crossed(spec["rows"], levels, seed=spec["seed"], zipf_s=spec["zipf_s"])
    out["gen_s"] = time.perf_counter() - t0
    out["levels"] = [int(data[f].cat.categories.size) for f in data.columns[2:]]
    out["rss_after_gen_mib"] = rss_mib()
    groups = list(data.columns[2:])
    out["update_entries_predicted"] = predicted_update_entries(data, groups, p=2)
    out["stage"] = "fit 1"
    emit()

    def one_fit(verbose):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0, c0 = time.perf_counter(), time.process_time()
            r = interlace.fit("y ~ x", data, groups=groups, method="REML", verbose=verbose)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        sd = np.sqrt(r.scale)
        return r, {
            "wall_s": wall,
            "cpu_s": cpu,
            "deviance": float(r.deviance),
            "converged": bool(r.converged),
            "n_evaluations": int(r.n_evaluations),
            "n_iterations": int(r.n_iterations),
            "theta": [float(v) for v in r.theta],
            "sigma": float(sd),
            "max_abs_grad": float(np.max(np.abs(r.grad_theta.to_numpy()))),
            "warnings": [str(x.message) for x in w],
        }

    print("@@MARK fit 1 start", flush=True)
    r, out["fit1"] = one_fit(verbose=spec["verbose"])
    out["rss_after_fit1_mib"] = rss_mib()
    print("@@MARK fit 1 end", flush=True)
    del r
    out["stage"] = "fit 2"
    emit()
    r, out["fit2"] = one_fit(verbose=spec["verbose"])  # verbose is static: same compiled fit
    out["rss_after_fit2_mib"] = rss_mib()
    del r
    emit()

    if spec["breakdown"]:
        out["stage"] = "breakdown"
        try:
            out["breakdown"] = breakdown(data, groups)
        except Exception as e:  # noqa: BLE001  private API may change: report, don't fail
            out["breakdown"] = {"error": f"{type(e).__name__}: {e}"}
        out["rss_after_breakdown_mib"] = rss_mib()
        emit()

    if spec.get("csv"):
        out["stage"] = "csv"
        t0 = time.perf_counter()
        data.to_csv(spec["csv"], index=False, float_format="%.17g")
        out["csv_s"] = time.perf_counter() - t0
    out["stage"] = "done"
    out["jax_devices"] = [str(d) for d in jax.devices()]
    emit()


def predicted_update_entries(data, groups, p: int) -> int:
    """The number of update entries ``interlace.cross_products`` will store
    (random intercepts only): for each level of the largest factor, ``d (d + 1) / 2`` with
    ``d`` = the distinct levels of the other factors it meets + ``p`` + 1 (X and y). Known
    before fitting, so a fit that runs out of memory building them still has its size."""
    import numpy as np

    codes = [data[g].cat.codes.to_numpy().astype(np.int64) for g in groups]
    nlev = [int(data[g].cat.categories.size) for g in groups]
    first = int(np.argmax(nlev))
    d = np.full(nlev[first], p + 1, dtype=np.int64)
    for i, c in enumerate(codes):
        if i != first:
            pairs = np.unique(codes[first] * nlev[i] + c)
            d += np.bincount(pairs // nlev[i], minlength=nlev[first])
    return int(np.sum(d * (d + 1) // 2))


def breakdown(data, groups) -> dict:
    """fit()'s steps timed one by one (compiled: run after two fits of the same shapes)."""
    import jax
    import jax.numpy as jnp

    from interlace import cross_products

    internal = _internals()
    build_design, estimates = internal.build_design, internal.estimates
    minimize_deviance, profiled_deviance = internal.minimize_deviance, internal.profiled_deviance

    b: dict = {}
    t0 = time.perf_counter()
    design = build_design("y ~ x", data, groups)
    b["build_design_s"] = time.perf_counter() - t0
    terms = design.terms
    t0 = time.perf_counter()
    cp = cross_products(
        [t.codes for t in terms],
        [len(t.levels) for t in terms],
        design.X,
        design.y,
        [t.X for t in terms],
    )
    jax.block_until_ready(cp)
    b["cross_products_s"] = time.perf_counter() - t0
    b["tail_columns"] = int(cp.t)
    b["update_entries"] = int(cp.upd_level.shape[0])
    b["cross_products_mib"] = (
        sum(x.nbytes for x in jax.tree_util.tree_leaves(cp) if hasattr(x, "nbytes")) / 2**20
    )
    t0 = time.perf_counter()
    theta0 = jnp.asarray(
        internal.to_internal(internal.start_values(design), [t.k for t in terms], cp.order)
    )
    b["start_values_s"] = time.perf_counter() - t0

    def best(f, *fargs, reps=3, budget=None):
        """Min wall time of ``reps`` compiled calls (min: robust to other load on a shared
        machine); fewer reps once ``budget`` seconds are spent. Returns (min, n, result)."""
        times, spent = [], 0.0
        for _ in range(reps):
            t0 = time.perf_counter()
            res = jax.block_until_ready(f(*fargs))
            times.append(time.perf_counter() - t0)
            spent += times[-1]
            if budget is not None and spent > budget:
                break
        return min(times), len(times), res

    # verbose=True as in fits 1 and 2 (a static argument): the compiled loop is reused.
    b["minimize_deviance_s"], b["minimize_deviance_reps"], opt = best(
        lambda: minimize_deviance(theta0, cp, reml=True, maxiter=500, verbose=True),
        reps=3,
        budget=60,
    )
    b["evaluations"] = int(opt.evaluations)
    b["iterations"] = int(opt.iterations)
    b["estimates_s"], _, _ = best(lambda: estimates(opt.theta, cp, reml=True), reps=2)

    vg = jax.jit(jax.value_and_grad(lambda th, c: profiled_deviance(th, c, reml=True)))
    val = jax.jit(lambda th, c: profiled_deviance(th, c, reml=True))
    for name, f in (("value_and_grad", vg), ("value", val)):
        jax.block_until_ready(f(opt.theta, cp))  # compile
        b[f"one_{name}_s"], _, _ = best(f, opt.theta, cp, reps=5, budget=30)

    # Pieces of one evaluation (as in interlace._deviance): the gather + sorted segment-sum
    # of the update entries (tail_schur) and its gradient; the dense Cholesky of the t x t
    # tail; cholesky_logdiag with its gradient (custom VJP: triangular inverse + product).
    t = cp.t
    S = jnp.tril(jnp.full((t, t), 0.01) + jnp.eye(t) * t)  # SPD (lower triangle), t x t
    R = jnp.linspace(-1.0, 1.0, t * t)
    w0 = jnp.linspace(0.1, 0.2, cp.q1)

    def scatter(w, c):
        return jax.ops.segment_sum(
            w[c.upd_level] * c.upd_prod[:, 0],
            c.upd_flat,
            num_segments=t * t,
            indices_are_sorted=True,
        )

    pieces = {
        "update_scatter": (jax.jit(scatter), (w0, cp)),
        "update_scatter_value_and_grad": (
            jax.jit(jax.value_and_grad(lambda w, c: jnp.vdot(scatter(w, c), R))),
            (w0, cp),
        ),
        "dense_cholesky": (
            jax.jit(lambda a: jax.lax.linalg.cholesky(a, symmetrize_input=True)),
            (S,),
        ),
        "cholesky_logdiag_value_and_grad": (
            jax.jit(jax.value_and_grad(lambda a: jnp.sum(internal.cholesky_logdiag(a)))),
            (S,),
        ),
    }
    for name, (f, fargs) in pieces.items():
        jax.block_until_ready(f(*fargs))  # compile
        b[f"one_{name}_s"], _, _ = best(f, *fargs, reps=3, budget=30)
    return b


# -------------------------------------------------------------------------- parent
def run_interlace(rows, levels, args, csv_path):
    spec = {
        "rows": int(rows),
        "levels": list(levels) if levels else None,
        "seed": args.seed,
        "zipf_s": args.zipf_s,
        "verbose": True,
        "breakdown": not args.no_breakdown,
        "csv": str(csv_path) if csv_path else None,
        "mem_limit_bytes": mem_limit_bytes(args.mem_limit_gb),
    }
    env = dict(os.environ, INTERLACE_NO_COMPILATION_CACHE="1")
    print(f"interlace: {json.dumps(spec)} (load average {loadavg(text=True)})", flush=True)
    run = harness.run_streaming(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        timeout=args.timeout,
        env=env,
        cwd=OUT,
        prefix="  ",
        quiet=TAG,
    )
    results = [json.loads(ln[len(TAG) :]) for _, ln in run["lines"] if ln.startswith(TAG)]
    res = results[-1] if results else {"stage": "start"}
    res.update(
        {
            "rc": run["rc"],
            "process_wall_s": run["wall_s"],
            "timed_out": run["timed_out"],
            "sampled_peak_mib": run["sampled_peak_mib"],
            "mem_limit_gib": (spec["mem_limit_bytes"] or 0) / 2**30,
            "ok": run["rc"] == 0 and res.get("stage") == "done",
        }
    )
    marks = {ln: t for t, ln in run["lines"] if ln.startswith("@@MARK")}
    t1a, t1b = marks.get("@@MARK fit 1 start", 0.0), marks.get("@@MARK fit 1 end", float("inf"))
    iters = [
        (t, ln) for t, ln in run["lines"] if ln.lstrip().startswith("iteration") and t1a <= t <= t1b
    ]
    res["iteration_log"] = [f"{t:.2f}s {ln.strip()}" for t, ln in iters]
    if "@@MARK fit 1 start" in marks and iters:
        res["first_iteration_printed_after_s"] = iters[0][0] - marks["@@MARK fit 1 start"]
        res["last_iteration_printed_after_s"] = iters[-1][0] - marks["@@MARK fit 1 start"]
    if not res["ok"]:
        res["output_tail"] = [ln for _, ln in run["lines"][-25:] if not ln.startswith(TAG)]
    return res


def run_lme4(csv_path, args):
    cmd = ["Rscript", str(HERE / "lme4_scaling.R"), str(csv_path)]
    timev = Path("/usr/bin/time").exists()
    tfile = Path(tempfile.mkstemp(prefix="interlace_time_")[1])
    if timev:
        cmd = ["/usr/bin/time", "-o", str(tfile), "-v", *cmd]
    print(
        f"lme4: {shlex.join(cmd)} (timeout {args.lme4_timeout} s, load average "
        f"{loadavg(text=True)})",
        flush=True,
    )
    run = harness.run_streaming(cmd, timeout=args.lme4_timeout, cwd=ROOT, prefix="  ")
    res = {
        "rc": run["rc"],
        "process_wall_s": run["wall_s"],
        "timed_out": run["timed_out"],
        "sampled_peak_mib": run["sampled_peak_mib"],
        "peak_rss_source": None,
        "ok": False,
    }
    lines = [ln for _, ln in run["lines"]]
    lines += tfile.read_text().splitlines() if timev else []
    tfile.unlink()
    for ln in lines:
        if ln.startswith("RESULT\t"):  # harness.R's say()
            res.update(json.loads(ln.partition("\t")[2]), ok=True)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", ln)
        if m:
            res["peak_rss_mib"] = int(m.group(1)) / 1024
            res["peak_rss_source"] = "/usr/bin/time -v"
    if "peak_rss_mib" not in res and res.get("ok"):
        res["peak_rss_mib"] = res["gc_max_mb"]
        res["peak_rss_source"] = "R gc() max used"
    if not res["ok"]:
        res["output_tail"] = [ln for _, ln in run["lines"][-15:]]
    return res


def mem_limit_bytes(gb: float | None) -> int | None:
    """The child's RLIMIT_DATA: ``gb`` GiB; by default 85% of RAM, but no more than what is
    available now less 1 GiB (the machine may be shared); 0: no limit."""
    if gb is not None:
        return int(gb * 2**30) if gb > 0 else None
    mem = harness.meminfo_kib
    return int(min(0.85 * mem("MemTotal"), mem("MemAvailable") - 2**20) * 1024)


# ------------------------------------------------------------------------ render
def _f(v, fmt, na="–"):
    return na if v is None else format(v, fmt)


def render(raw: dict) -> str:
    raw = {**raw, "runs": sorted(raw["runs"], key=lambda r: (len(r["levels"]), r["rows"]))}
    env = raw["environment"]
    lm = next((r["lme4"] for r in raw["runs"] if r.get("lme4", {}).get("ok")), None)
    lme4_line = (
        f"{lm['r_version']}, lme4 {lm['lme4_version']}, BLAS {lm['blas']} "
        "(reference BLAS: single-threaded)"
        if lm
        else raw.get("lme4_note", "not run")
    )
    L = [
        HEADING,
        "",
        f"Generated by `{raw['command']}` on {raw['date']} (raw results: "
        f"`{raw['raw_file']}`, git-ignored). Single runs, wall-clock seconds: the machine "
        "is shared (other test runs may overlap), so timings are noisy; the load average "
        "(1/5/15 min) at the start of each fit is listed."
        + "".join(
            f" Then `{c['command']}` on {c['date']} added: {', '.join(c['designs'])}"
            f" (interlace commit {c['environment']['interlace_commit']})."
            for c in raw.get("later_commands", [])
        ),
        "",
        *harness.environment_lines(env, lme4_line, compact=True),
        f"- Data: `benchmarks/synthetic.py` `make_crossed(rows, levels, seed={raw['seed']}, "
        f"zipf_s={raw['zipf_s']})`: Zipf level frequencies, random-intercept sds 1.0 / 0.5 "
        "/ 0.3, residual sd 1, `y = 1 + 0.5 x + effects + noise`.",
        '- interlace: `interlace.fit("y ~ x", data, groups=["a", "b"(, "c")], '
        'method="REML")` in a fresh process per design with '
        "`INTERLACE_NO_COMPILATION_CACHE=1`; *fit 1* includes tracing and compilation, "
        "*fit 2* is the same fit again in the same process. Peak RSS: the child's "
        "`ru_maxrss` after fit 1 (Python + JAX + the data + one fit).",
        "- lme4: `lmer(y ~ x + (1|a) + (1|b)(+ (1|c)), REML = TRUE)`, default control, "
        "timed around `lmer()` (`benchmarks/lme4_scaling.R`, data read from a CSV first); "
        "peak RSS of the whole Rscript process (`/usr/bin/time -v`, includes the data).",
        "",
        "| design | rows | levels | tail columns t | update entries | generate | "
        "interlace fit 1 (incl. compile) | fit 2 (compiled; CPU time) | "
        "evaluations (iterations) | interlace peak RSS | lme4 `lmer()` | lme4 feval | "
        "lme4 peak RSS | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in raw["runs"]:
        i, m = r["interlace"], r.get("lme4", {})
        bd = i.get("breakdown", {}) or {}
        f1, f2 = i.get("fit1"), i.get("fit2")
        if i.get("ok") or f1:
            fit1 = _f(f1 and f1["wall_s"], ".2f") + " s"
            fit2 = f"{f2['wall_s']:.2f} s (CPU {f2['cpu_s']:.2f} s)" if f2 else "–"
            ev = f"{f1['n_evaluations']} ({f1['n_iterations']})" if f1 else "–"
            rss = f"{i['rss_after_fit1_mib']:.0f} MiB" if "rss_after_fit1_mib" in i else "–"
        else:
            why = "timeout" if i.get("timed_out") else f"failed (rc {i.get('rc')})"
            fit1, fit2, ev = f"**{why}** at stage '{i.get('stage')}'", "–", "–"
            rss = f"≥ {i['sampled_peak_mib']:.0f} MiB (sampled)"
        if m.get("ok"):
            lme = f"{m['wall_s']:.2f} s" + (
                " (earlier command)" if m.get("from_earlier_command") else ""
            )
            lfe = str(m["feval"])
            lrss = f"{m['peak_rss_mib']:.0f} MiB"
        elif m.get("skipped"):
            lme, lfe, lrss = m["skipped"], "–", "–"
        else:
            why = (
                f"**timeout** ({m.get('process_wall_s', 0):.0f} s)"
                if m.get("timed_out")
                else f"**failed** (rc {m.get('rc')})"
            )
            lme, lfe, lrss = why, "–", f"≥ {m.get('sampled_peak_mib', 0):.0f} MiB (sampled)"
        lv = " x ".join(f"{q:,}" for q in r["levels"])
        upd = _f(bd.get("update_entries"), ",")
        if upd == "–" and i.get("update_entries_predicted"):
            upd = f"{i['update_entries_predicted']:,} (counted from the data)"
        L.append(
            f"| {r['label']} | {r['rows']:,} | {lv} | {_f(bd.get('tail_columns'), ',')} | "
            f"{upd} | {_f(i.get('gen_s'), '.2f')} s | "
            f"{fit1} | {fit2} | {ev} | {rss} | {lme} | {lfe} | {lrss} | "
            f"{r.get('loadavg', '')} |"
        )

    L += [
        "",
        "Deviance (REML criterion) against lme4: interlace should be no worse than "
        "lme4 + 1e-6 relative.",
        "",
        "| design | interlace deviance | converged | max abs gradient | lme4 REMLcrit | "
        "(interlace - lme4) / lme4 | no worse than lme4 | sd(a) sd(b) (sd(c)) sigma: "
        "interlace; lme4 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in raw["runs"]:
        i, m = r["interlace"], r.get("lme4", {})
        f1 = i.get("fit1")
        if not f1:
            L.append(f"| {r['label']} | – | – | – | – | – | – | – |")
            continue

        def sds(th, s):
            return " ".join(f"{t * s:.3f}" for t in th) + f" {s:.3f}"

        ours = sds(f1["theta"], f1["sigma"])
        conv = "yes" if f1["converged"] else "**no**"
        if m.get("ok"):
            rel = (f1["deviance"] - m["deviance"]) / abs(m["deviance"])
            ok = "yes" if f1["deviance"] <= m["deviance"] + 1e-6 * abs(m["deviance"]) else "**no**"
            theirs = sds(m["theta"], m["sigma"])
            L.append(
                f"| {r['label']} | {f1['deviance']:.6f} | {conv} | "
                f"{f1['max_abs_grad']:.1e} | {m['deviance']:.6f} | {rel:+.2e} | {ok} | "
                f"{ours}; {theirs} |"
            )
        else:
            L.append(
                f"| {r['label']} | {f1['deviance']:.6f} | {conv} | "
                f"{f1['max_abs_grad']:.1e} | – | – | – | {ours}; – |"
            )

    bds = [(r, r["interlace"].get("breakdown")) for r in raw["runs"]]
    bds = [(r, b) for r, b in bds if b and "error" not in b]
    if bds:
        L += [
            "",
            "Where interlace's compiled time goes: a third pass through `fit`'s steps "
            "in the same child after fits 1 and 2, seconds, each the best of up to 3 (5 for "
            "one evaluation) compiled calls (the minimum resists the other load on the "
            "machine): `build_design` (formula, level codes), `cross_products` "
            "(`interlace._crossprod`: the one pass over the rows and the update entries), "
            "`minimize_deviance` (the compiled L-BFGS loop), `estimates`; one compiled "
            "deviance + gradient evaluation at the optimum and deviance alone; and its big "
            "pieces alone: the gather + sorted segment-sum of the update entries "
            "(`tail_schur`), forward and forward + gradient; a dense Cholesky of the "
            "t x t tail (`lax.linalg.cholesky`); `cholesky_logdiag` forward + gradient "
            '(its custom VJP: triangular inverse and a t x t product). "fit 1 first '
            'iteration": when fit 1 printed its first iteration (design, cross-products, '
            "start values, tracing + compiling, one iteration).",
            "",
            "| design | build_design | cross_products | minimize_deviance (evaluations) | "
            "one value+grad | one value | update scatter: fwd; fwd+grad | dense Cholesky "
            "t x t | cholesky_logdiag fwd+grad | estimates | cross-products arrays | "
            "fit 1 first iteration |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r, b in bds:
            i = r["interlace"]
            L.append(
                f"| {r['label']} | {b['build_design_s']:.2f} | {b['cross_products_s']:.2f} "
                f"| {b['minimize_deviance_s']:.2f} ({b['evaluations']}) | "
                f"{b['one_value_and_grad_s']:.3f} | {b['one_value_s']:.3f} | "
                f"{b['one_update_scatter_s']:.3f}; "
                f"{b['one_update_scatter_value_and_grad_s']:.3f} | "
                f"{b['one_dense_cholesky_s']:.3f} | "
                f"{b['one_cholesky_logdiag_value_and_grad_s']:.3f} | "
                f"{b['estimates_s']:.2f} | {b['cross_products_mib']:.0f} MiB | "
                f"{_f(i.get('first_iteration_printed_after_s'), '.1f')} s |"
            )
    fails = [
        r
        for r in raw["runs"]
        if not r["interlace"].get("ok")
        or (r.get("lme4") and not r["lme4"].get("ok") and not r["lme4"].get("skipped"))
    ]
    if fails:
        L += ["", "Failures:", ""]
        for r in fails:
            for side in ("interlace", "lme4"):
                s = r.get(side) or {}
                if s.get("ok") or s.get("skipped") or not s:
                    continue
                tail = " / ".join(x.strip() for x in s.get("output_tail", [])[-4:])
                lim = (
                    f"memory limit (RLIMIT_DATA) {s['mem_limit_gib']:.1f} GiB, "
                    if s.get("mem_limit_gib")
                    else ""
                )
                L.append(
                    f"- {r['label']}, {side}: rc {s.get('rc')}, {lim}"
                    f"{'timed out, ' if s.get('timed_out') else ''}after "
                    f"{s.get('process_wall_s', 0):.0f} s, sampled peak RSS "
                    f"{s.get('sampled_peak_mib', 0):.0f} MiB; last output: `{tail[-400:]}`"
                )
    if raw.get("note"):
        L += ["", raw["note"]]
    return "\n".join(L) + "\n"


# -------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        "--sizes",
        type=float,
        nargs="*",
        default=[1e4, 1e5, 1e6],
        help="rows per two-factor design (default 1e4 1e5 1e6; none: only the "
        "three-factor design and --with-1e7)",
    )
    ap.add_argument("--with-1e7", action="store_true", help="add 1e7 rows (interlace only)")
    ap.add_argument(
        "--no-three-factor",
        action="store_true",
        help="skip the three-factor design (1e5 rows, 2000 x 400 x 50 levels)",
    )
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--lme4-1e7", action="store_true", help="also run lme4 at 1e7 rows")
    ap.add_argument("--lme4-timeout", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds for each interlace child (default 1800)",
    )
    ap.add_argument(
        "--mem-limit-gb",
        type=float,
        default=None,
        help="data-segment limit (RLIMIT_DATA) of each interlace child (GiB; "
        "default 85%% of RAM or the memory available when it starts less "
        "1 GiB, the smaller; 0: none)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-append", action="store_true", help="don't touch RESULTS.md")
    ap.add_argument("--note", default="", help="free text printed under the tables")
    ap.add_argument("--render", metavar="JSON", help="only re-append a saved run's section")
    ap.add_argument(
        "--add-to",
        metavar="JSON",
        help="add this run's designs to a saved run "
        "(benchmarks/out/scaling_*.json; same labels are replaced) and render both",
    )
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.render:
        raw = json.loads(Path(args.render).read_text())
        if args.note:  # kept with the raw results, so a later --render repeats it
            raw["note"] = args.note
            Path(args.render).write_text(json.dumps(raw, indent=2) + "\n")
        md = render(raw)
        (OUT / "scaling_latest.md").write_text(md)
        harness.replace_section(md, HEADING)
        return

    from synthetic import default_levels

    designs = [
        (f"2 factors, {s:.0e}".replace("+0", ""), s, default_levels(int(s))) for s in args.sizes
    ]
    if not args.no_three_factor:
        rows, lv = THREE_FACTOR
        designs.append(("3 factors, 1e5", rows, lv))
    if args.with_1e7 and 1e7 not in args.sizes:
        designs.append(("2 factors, 1e7", 1e7, default_levels(10**7)))

    started = dt.datetime.now().astimezone()
    OUT.mkdir(exist_ok=True)
    have_r = shutil.which("Rscript") is not None and not args.no_lme4
    env = harness.environment()
    runs = []
    tmp = Path(tempfile.mkdtemp(prefix="interlace_scaling_"))
    try:
        for label, rows, lv in designs:
            print(f"\n=== {label}: {int(rows):,} rows, levels {lv} ===", flush=True)
            do_lme4 = have_r and (rows < 1e7 or args.lme4_1e7)
            csv = tmp / f"data_{int(rows)}_{len(lv)}.csv" if do_lme4 else None
            la = loadavg(text=True)
            res = run_interlace(rows, lv, args, csv)
            f1 = res.get("fit1")
            if f1:
                print(
                    f"interlace: fit 1 {f1['wall_s']:.2f} s, deviance {f1['deviance']:.6f}, "
                    f"peak RSS {res.get('rss_after_fit1_mib', 0):.0f} MiB",
                    flush=True,
                )
            run = {
                "label": label,
                "rows": int(rows),
                "levels": list(res.get("levels", lv)),
                "loadavg": la,
                "interlace": res,
            }
            if not have_r:
                run["lme4"] = {
                    "skipped": "not run (--no-lme4)" if args.no_lme4 else "not run (no Rscript)"
                }
            elif not do_lme4:
                run["lme4"] = {"skipped": "not run (1e7: --lme4-1e7)"}
            elif not (csv and csv.exists() and res.get("stage") == "done"):
                run["lme4"] = {"skipped": "not run (no data: interlace child failed)"}
            else:
                run["lme4"] = run_lme4(csv, args)
                m = run["lme4"]
                if m.get("ok"):
                    print(
                        f"lme4: {m['wall_s']:.2f} s, REMLcrit {m['deviance']:.6f}, peak RSS "
                        f"{m['peak_rss_mib']:.0f} MiB",
                        flush=True,
                    )
                csv.unlink()
            runs.append(run)
            save(runs, args, env, started)  # keep partial results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw = save(runs, args, env, started)
    if args.add_to:
        raw = merge(json.loads(Path(args.add_to).read_text()), raw)
        save_raw(raw, started)
    md = render(raw)
    print("\n" + md)
    (OUT / "scaling_latest.md").write_text(md)
    if not args.no_append:
        harness.replace_section(md, HEADING)
        print(f"appended to {harness.RESULTS}")


def merge(old: dict, new: dict) -> dict:
    """``old`` with ``new``'s designs added (a design of the same label is replaced)."""
    labels = {r["label"] for r in new["runs"]}
    before = {r["label"]: r for r in old["runs"]}
    for r in new["runs"]:  # an interlace-only rerun keeps the earlier lme4 fit of the same data
        prev = before.get(r["label"], {})
        same = (prev.get("rows"), prev.get("levels")) == (r["rows"], r["levels"])
        if (
            r.get("lme4", {}).get("skipped")
            and same
            and prev.get("lme4", {}).get("ok")
            and (old["seed"], old["zipf_s"]) == (new["seed"], new["zipf_s"])
        ):
            r["lme4"] = {**prev["lme4"], "from_earlier_command": old["command"]}
    out = dict(old)
    out["runs"] = [r for r in old["runs"] if r["label"] not in labels] + new["runs"]
    out["later_commands"] = [
        *old.get("later_commands", []),
        {
            "command": new["command"],
            "date": new["date"],
            "designs": sorted(labels),
            "environment": new["environment"],
        },
    ]
    out["raw_file"] = new["raw_file"]
    return out


def save_raw(raw: dict, started) -> None:
    stamp = started.strftime("%Y%m%dT%H%M%S")
    harness.save_json(raw, OUT / f"scaling_{stamp}.json", OUT / "scaling_latest.json")


def save(runs, args, env, started) -> dict:
    stamp = started.strftime("%Y%m%dT%H%M%S")
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "python_executable": sys.executable,
        "environment": env,
        "seed": args.seed,
        "zipf_s": args.zipf_s,
        "mem_limit_gb": args.mem_limit_gb,
        "note": args.note,
        "raw_file": f"benchmarks/out/scaling_{stamp}.json",
        "runs": runs,
    }
    save_raw(raw, started)
    return raw


if __name__ == "__main__":
    main()
