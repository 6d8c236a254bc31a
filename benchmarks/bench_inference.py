"""Time interlace's vectorised inference against lme4, same data, same machine, same run.

It owns the tasks below, the worker's side of them and RESULTS.md's "## Inference:"
section; benchmarks/harness.py owns the worker and R processes (watchdog, memory cap),
the environment record and the writing of the section.

Run from the repository root:

    python benchmarks/bench_inference.py            # full: about 10 min on 2 cores
    python benchmarks/bench_inference.py --quick    # fewer repetitions, no InstEval
    python benchmarks/bench_inference.py --no-lme4  # interlace only

Writes benchmarks/out/inference.md (the markdown section, also printed) and
benchmarks/out/inference.json (every timing); ``--render JSON`` only re-renders a saved
JSON; ``--tasks influence sleepstudy insteval`` picks tasks.

Tasks (lme4 in one long-lived Rscript process, ``benchmarks/lme4_inference.R``, which
fits on first use and then times each request around ``influence()`` / ``bootMer()``):

  1. Exact case-deletion influence, results-page model (300 rows -> 300 refits):
     ``interlace.hlm_influence(result)`` with ``result = interlace.fit("score ~
     hours_studied + prior_gpa", df, groups=["student_id", "school_id"])`` against lme4's
     ``influence(fit)`` (influence.merMod, case deletion by default). interlace: one
     untimed warm-up call, then 5 timed; lme4: one untimed warm-up, then 3 timed.
  2. Parametric bootstrap, sleepstudy ``Reaction ~ Days + (Days | Subject)``, 1000 refits:
     ``result.parametric_bootstrap(1000, seed=i)`` against ``bootMer(fit, function(m)
     fixef(m), nsim = 1000)`` (plain: parametric, single-threaded). One untimed warm-up
     each (interlace: the same 1000-refit call, seed 0, so that the timed calls are
     compiled; lme4: nsim = 20, which loads and byte-compiles what bootMer uses), then 3
     timed, seeds 1, 2, 3. The bootstrap sd of the fixed effects (last timed run of each
     side) shows that both do the same work.
  3. InstEval ``y ~ service + (1 | s) + (1 | d) + (1 | dept)``, REML, 100-refit parametric
     bootstrap with interlace: the first call (seed 0, includes compilation) and a second
     call (seed 1, compiled). lme4: ``bootMer(fit, fixef, nsim = 5)`` once (a full 100
     takes about 20 min), and its per-refit time x 100, labelled as extrapolated.

Alternation: within each task the repetitions are interleaved (interlace 1, lme4 1,
interlace 2, lme4 2, ...; extra interlace repetitions come last), so drift in machine load
hits both sides alike. Times are wall-clock; CPU time (user + system, all threads) is
reported too. Each side's medians are over its own timed repetitions; ratio = lme4 /
interlace. ``os.getloadavg()`` is recorded at the start and the end (and around each task)
because the machine may be shared. No timing is asserted anywhere.

interlace runs in a worker process (this script with ``--worker``; ``harness.Worker``),
which serves the same requests as the R process, with ``INTERLACE_NO_COMPILATION_CACHE=1``,
so first calls compile for real whatever earlier runs left on disk; the tracing +
compilation time inside every timed call is summed from jax's own compile events and
reported. The worker lets the driver survive what interlace can do to a process on a small
shared machine, and record it:

* a deadlock (no progress, almost no CPU; jaxlib 0.10.2's batched LAPACK kernels on a
  2-core pool, see bench_vectorized.py): the worker is killed and the task runs again
  from the start in a new worker with ``NPROC`` = max(4, 2 x cores);
* running out of memory: the worker's data segment is capped (``RLIMIT_DATA``,
  ``--mem-limit-gb``, default 85 % of physical memory), so an allocation fails in the
  worker with RESOURCE_EXHAUSTED instead of waking the kernel's OOM killer; a worker
  killed anyway (SIGKILL) is reported as such;
* any exception: its last line is in the table, the traceback in the JSON.

A failed interlace call is reported, not retried with other settings, and the lme4 side
of the task is still measured.

``run(quick, use_lme4, tasks, on_task, mem_limit_gb)`` and ``render(raw)`` are
importable (benchmarks/ on sys.path). inference.json is rewritten after every task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import OUT, ROOT, WorkerDied, WorkerError, loadavg, med, summary

PAGE_CSV = "tests/data/results_page.csv"
PAGE_FORMULA = "score ~ hours_studied + prior_gpa"
PAGE_GROUPS = ["student_id", "school_id"]
SLEEP_CSV = "tests/data/sleepstudy.csv"
SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
INSTEVAL_CSV = "tests/data/insteval.csv.gz"
INSTEVAL_FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
DTYPES = {"s": str, "d": str, "dept": str, "service": str, "Subject": str}
N_BOOT_SLEEP = 1000
N_BOOT_INSTEVAL = 100
N_LME4_INSTEVAL = 5
LME4_BOOT_WARMUP = 20
REPEATS = {
    "full": {"influence": (5, 3), "sleepstudy": (3, 3)},
    "quick": {"influence": (2, 1), "sleepstudy": (1, 1)},
}  # (interlace, lme4)


# --- helpers -------------------------------------------------------------------------------
def start_worker(extra_env=None, mem_limit_gb=None):
    """This script with --worker, compilation cache off (``harness.Worker``: a deadlock is
    detected, the peak RSS sampled); ``info``: its environment record. With
    ``mem_limit_gb`` it caps its own data segment (``harness.cap_memory``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    if mem_limit_gb:  # the worker sets RLIMIT_DATA itself, before it imports jax
        cmd += ["--mem-limit-gb", str(mem_limit_gb)]
    worker = harness.Worker(
        cmd,
        env={"INTERLACE_NO_COMPILATION_CACHE": "1"},
        extra_env=extra_env,
        mem_limit_gb=mem_limit_gb,
    )
    worker.info = worker.reply("start")
    return worker


def alternate(il, lme4, reps, label, il_request, r_request, il_keys=(), r_keys=(), r_warmup=None):
    """A task's repetitions: one untimed warm-up per side (interlace ``il_request(-1)``,
    lme4 ``r_warmup``, default ``r_request(0)``), then interlace ``il_request(i)`` and lme4
    ``r_request(i)`` alternately: il 0, r 0, il 1, r 1, ...; extra ones come last. Returns
    each side's part of the task's result (lme4's None without lme4) and last reply."""
    first = il.ask(**il_request(-1))
    print(
        f"  {label}: interlace warm-up {first['seconds']:.2f} s "
        f"(compile {first['compile_s']:.2f} s)",
        flush=True,
    )
    if lme4:
        r_first = lme4.ask(r_warmup or r_request(0))
        print(
            f"  {label}: lme4 warm-up ({r_warmup or r_request(0)}) {r_first['seconds']:.2f} s",
            flush=True,
        )
    (n_il, n_r), a, b, last = reps, [], [], {}
    for i in range(max(n_il, n_r if lme4 else 0)):
        if i < n_il:
            last["il"] = il.ask(**il_request(i))
            a.append({**_timing(last["il"]), **{k: last["il"][k] for k in il_keys}})
            print(
                f"  {label}: interlace {i + 1}/{n_il}: {a[-1]['seconds']:.3f} s "
                f"(cpu {a[-1]['cpu_s']:.3f} s, compile {a[-1]['compile_s']:.3f} s)",
                flush=True,
            )
        if lme4 and i < n_r:
            last["r"] = lme4.ask(r_request(i))
            b.append({k: last["r"][k] for k in ("seconds", "cpu_s", *r_keys)})
            print(
                f"  {label}: lme4 {i + 1}/{n_r}: {b[-1]['seconds']:.3f} s "
                f"(cpu {b[-1]['cpu_s']:.3f} s)",
                flush=True,
            )
    il_part = {
        "first_call": _timing(first),
        "runs": a,
        **summary(a),
        "compile_median_s": med(a, "compile_s"),
    }
    r_part = lme4 and {
        "first_call": {k: r_first[k] for k in ("seconds", "cpu_s")},
        "runs": b,
        **summary(b),
    }
    return il_part, r_part, last["il"], last.get("r")


def _timing(x):
    return {k: x[k] for k in ("seconds", "cpu_s", "compile_s") if k in x}


# --- worker: the interlace side --------------------------------------------------------------
def worker(mem_limit_gb=None):
    """Serve requests (one JSON object a line on stdin; one RESULT/ERROR line back)."""
    harness.cap_memory(mem_limit_gb and int(mem_limit_gb * 2**30))
    warnings.simplefilter("ignore")  # the page model is a singular fit (as in lme4)
    import pandas as pd

    import interlace

    timed = harness.make_timer()  # wall, CPU and compile seconds of one call
    fits = {}

    def setup(model):
        if model == "page":
            df = pd.read_csv(ROOT / PAGE_CSV)
            return timed(lambda: interlace.fit(PAGE_FORMULA, df, groups=PAGE_GROUPS))
        if model == "sleepstudy":
            df = pd.read_csv(ROOT / SLEEP_CSV, dtype=DTYPES)
            return timed(lambda: interlace.fit(SLEEP_FORMULA, df))
        df = pd.read_csv(ROOT / INSTEVAL_CSV, dtype=DTYPES)
        return timed(lambda: interlace.fit(INSTEVAL_FORMULA, df, method="REML"))

    env = harness.environment(interlace)
    env["worker_env"] = {
        k: os.environ[k]
        for k in ("NPROC", "XLA_FLAGS", "INTERLACE_NO_COMPILATION_CACHE")
        if k in os.environ
    }
    env["worker_rlimit_as_gib"] = mem_limit_gb
    harness.say("RESULT", env)

    def handle(req):
        op = req["op"]
        if op == "setup":
            fits[req["model"]], t = setup(req["model"])
            r = fits[req["model"]]
            return {**t, "converged": bool(r.converged), "fe_names": list(r.fe_params.index)}
        if op == "influence":
            inf, t = timed(lambda: interlace.hlm_influence(fits["page"]))
            return {
                **t,
                "n_deletions": len(inf),
                "n_converged": int(inf["converged"].sum()),
                "cooksd": inf["cooksd"].tolist(),
            }
        if op == "boot":
            r = fits[req["model"]]
            boot, t = timed(lambda: r.parametric_bootstrap(req["n"], seed=req["seed"]))
            se = boot.se()
            return {
                **t,
                "seed": req["seed"],
                "n": req["n"],
                "n_converged": int(boot.converged.sum()),
                "boot_sd": [float(se[n]) for n in r.fe_params.index],
                "peak_rss_mib": harness.peak_rss_mib(),
            }
        raise ValueError(f"unknown request {req!r}")

    harness.serve(handle)


# --- the tasks (driver side) -------------------------------------------------------------------
def task_influence(il, lme4, reps):
    import numpy as np

    fit = il.ask(op="setup", model="page")
    i, r, il_last, r_last = alternate(
        il,
        lme4,
        reps,
        "influence",
        lambda i: {"op": "influence"},
        lambda i: "influence_page",
        r_keys=("n_warnings", "n_messages"),
    )
    res = {
        "interlace": {
            "fit": _timing(fit),
            **i,
            "n_deletions": il_last["n_deletions"],
            "n_converged": il_last["n_converged"],
        },
        "lme4": None,
    }
    if lme4:
        cd_r = np.asarray(r_last["cooksd"])
        cd_i = np.asarray(il_last["cooksd"])
        res["lme4"] = {
            **r,
            "n_deletions": r_last["n_deletions"],
            "n_messages_last": r_last["n_messages"],
            "n_warnings_last": r_last["n_warnings"],
        }
        res["cooksd_max_abs_diff"] = float(np.max(np.abs(cd_i - cd_r)))
        res["cooksd_max"] = float(np.max(cd_r))
        res["cooksd_max_rel_diff"] = float(np.max(np.abs(cd_i - cd_r) / np.abs(cd_r)))
        res["ratio"] = res["lme4"]["median_s"] / res["interlace"]["median_s"]
    return res


def sd_agreement(names, sd_il, sd_r, n_il, n_r):
    """Relative difference of two independent bootstrap sds against its Monte Carlo
    standard error, sqrt(1/(2(B1-1)) + 1/(2(B2-1))) (normal approximation)."""
    mc = (1 / (2 * (n_il - 1)) + 1 / (2 * (n_r - 1))) ** 0.5
    rows = []
    for n, a, b in zip(names, sd_il, sd_r):
        rel = (a - b) / b
        rows.append(
            {"name": n, "interlace": a, "lme4": b, "rel_diff": rel, "mc_se_rel": mc, "z": rel / mc}
        )
    return rows


def task_sleepstudy(il, lme4, reps):
    fit = il.ask(op="setup", model="sleepstudy")
    names = fit["fe_names"]
    i, r, il_last, rr = alternate(
        il,
        lme4,
        reps,
        "sleepstudy bootstrap",
        lambda i: {"op": "boot", "model": "sleepstudy", "n": N_BOOT_SLEEP, "seed": i + 1},
        lambda i: f"bootmer_sleepstudy {N_BOOT_SLEEP} {i + 1}",
        il_keys=("n_converged",),
        r_keys=("n_ok", "n_warnings", "n_messages"),
        r_warmup=f"bootmer_sleepstudy {LME4_BOOT_WARMUP} 0",
    )
    n_conv = il_last["n_converged"]
    res = {
        "interlace": {
            "fit": _timing(fit),
            **i,
            "n_converged_last": n_conv,
            "seed_last": il_last["seed"],
            "fe_names": names,
            "boot_sd": il_last["boot_sd"],
        },
        "lme4": None,
    }
    if lme4:
        res["lme4"] = {
            "first_call": r["first_call"],
            "warmup_nsim": LME4_BOOT_WARMUP,
            **r,
            "n_ok_last": rr["n_ok"],
            "n_warnings_last": rr["n_warnings"],
            "n_messages_last": rr["n_messages"],
            "fe_names": rr["names"],
            "boot_sd": rr["boot_sd"],
            "seed_last": rr["seed"],
        }
        res["sd_agreement"] = sd_agreement(
            names, res["interlace"]["boot_sd"], rr["boot_sd"], n_conv, rr["n_ok"]
        )
        res["ratio"] = res["lme4"]["median_s"] / res["interlace"]["median_s"]
    return res


def task_insteval(il, lme4, reps=None):
    fit = il.ask(op="setup", model="insteval")
    print(
        f"  InstEval: interlace fit {fit['seconds']:.2f} s (compile {fit['compile_s']:.2f} s)",
        flush=True,
    )
    failures = []

    def one_il(seed, label):
        print(
            f"  InstEval bootstrap ({N_BOOT_INSTEVAL}): interlace {label} call (seed {seed}) "
            "running ...",
            flush=True,
        )
        try:
            out = il.ask(op="boot", model="insteval", n=N_BOOT_INSTEVAL, seed=seed)
        except (WorkerDied, WorkerError) as exc:  # recorded; lme4 is still measured
            failures.append({"call": label, "seed": seed, **exc.args[0]})
            print(f"  FAILED: {exc.args[0]['message']}", flush=True)
            return None
        out["worker_peak_rss_mib"] = il.peak_rss_mib
        print(
            f"  InstEval bootstrap ({N_BOOT_INSTEVAL}): interlace {label} call: "
            f"{out['seconds']:.2f} s (cpu {out['cpu_s']:.2f} s, compile "
            f"{out['compile_s']:.2f} s), {out['n_converged']} converged, worker peak RSS "
            f"{out['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
        return out

    first = one_il(0, "first")  # includes compilation
    r = None
    if lme4:  # between the two interlace calls (alternation)
        print(f"  InstEval bootMer nsim={N_LME4_INSTEVAL} running ...", flush=True)
        r = lme4.ask(f"bootmer_insteval {N_LME4_INSTEVAL} 1")
        print(
            f"  InstEval bootMer nsim={N_LME4_INSTEVAL}: {r['seconds']:.2f} s "
            f"(lmer fit before it, not in this figure: {r['fit_seconds']:.2f} s)",
            flush=True,
        )
    second = one_il(1, "second") if first is not None else None  # compiled
    res = {
        "interlace": {
            "fit": _timing(fit),
            "first_call": first,
            "second_call": second,
            "fe_names": fit["fe_names"],
            "failures": failures,
        },
        "lme4": None,
    }
    if lme4:
        per = r["seconds"] / N_LME4_INSTEVAL
        res["lme4"] = {
            "nsim": N_LME4_INSTEVAL,
            "seconds": r["seconds"],
            "cpu_s": r["cpu_s"],
            "per_refit_s": per,
            "extrapolated_100_s": per * N_BOOT_INSTEVAL,
            "n_ok": r["n_ok"],
            "n_warnings": r["n_warnings"],
            "n_messages": r["n_messages"],
            "fit_seconds": r["fit_seconds"],
            "fe_names": r["names"],
            "boot_sd": r["boot_sd"],
        }
        for key, call in (("first", first), ("second", second)):
            if call is not None:
                res[f"ratio_{key}_extrapolated"] = per * N_BOOT_INSTEVAL / call["seconds"]
    return res


# --- driver --------------------------------------------------------------------------------
TASKS = {"influence": task_influence, "sleepstudy": task_sleepstudy, "insteval": task_insteval}


def run(quick=False, use_lme4=True, tasks=None, on_task=None, mem_limit_gb=None):
    """All measurements; returns the raw dict (also what inference.json holds).
    ``on_task(raw)`` is called after each task with the results so far;
    ``mem_limit_gb`` caps the interlace worker's address space (None: no cap)."""
    started = dt.datetime.now().astimezone()
    load_start = loadavg()
    tasks = [t for t in (tasks or list(TASKS)) if not (quick and t == "insteval")]
    reps = REPEATS["quick" if quick else "full"]
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "quick": quick,
        "python_executable": sys.executable,
        "lme4": None,
        "loadavg": {"start": load_start, "end": None},
        "compilation_cache": "off (INTERLACE_NO_COMPILATION_CACHE=1 in the worker)",
        "repeats": reps,
        "tasks_requested": tasks,
        "tasks": {},
        "deadlocks": [],
    }
    il = start_worker(mem_limit_gb=mem_limit_gb)
    raw["environment"] = il.info
    raw["worker_mem_limit_gb"] = mem_limit_gb
    lme4, raw["lme4"] = harness.lme4_driver("lme4_inference.R", use=use_lme4)
    print(f"lme4: {raw['lme4']}; load average at start {load_start}", flush=True)
    try:
        for key in tasks:
            print(f"{key}:", flush=True)
            before = loadavg()
            t0 = time.perf_counter()
            try:
                try:
                    res = TASKS[key](il, lme4, reps.get(key))
                except harness.Stalled as st:
                    info = {"task": key, **st.args[0], "loadavg": loadavg()}
                    raw["deadlocks"].append(info)
                    env = harness.bigger_pool_env()
                    print(
                        f"  interlace worker made no progress for {info['idle_s']:.0f} s "
                        f"during {info['request']} (worker CPU {info['worker_cpu_s']:.1f} s, "
                        f"peak RSS {info['worker_peak_rss_mib'] or 0:.0f} MiB): deadlock; "
                        f"killed. Task {key} again, in a new worker with NPROC="
                        f"{env['NPROC']} (XLA CPU intra-op pool size)",
                        flush=True,
                    )
                    il = start_worker(env, mem_limit_gb)
                    res = TASKS[key](il, lme4, reps.get(key))
                res["worker_env"] = il.extra_env
                res["worker_interlace_from"] = il.info.get("interlace_from")
            except Exception as exc:  # noqa: BLE001 - record it; the other tasks still run
                import traceback

                res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(f"  FAILED: {res['traceback']}", flush=True)
                if isinstance(exc, harness.Stalled):
                    raw["deadlocks"].append({"task": key, **exc.args[0]})
            if il.proc.poll() is not None and key != tasks[-1]:
                il = start_worker(mem_limit_gb=mem_limit_gb)  # a fresh one for the next task
            res.update(
                loadavg_before=before, loadavg_after=loadavg(), task_wall_s=time.perf_counter() - t0
            )
            raw["tasks"][key] = res
            if on_task:
                on_task(raw)
    finally:
        if lme4:
            lme4.close()
        il.close()
    raw["loadavg"]["end"] = loadavg()
    raw["wall_s"] = (dt.datetime.now().astimezone() - started).total_seconds()
    print(f"load average at end {raw['loadavg']['end']}", flush=True)
    return raw


# --- markdown ------------------------------------------------------------------------------
def _s(x):
    return "n/a" if x is None else (f"{x:.3f} s" if x < 10 else f"{x:.1f} s")


def _x(x):
    return "n/a" if x is None else f"{x:#.3g}x"


def _cell(d):
    """A summary-table cell: median wall time and its CPU time."""
    return f"{_s(d['median_s'])} (CPU {_s(d['cpu_median_s'])})"


def _summary_row(task, i, r, ratio, na):
    """A row of the summary table: the task, each side's median, the ratio."""
    return f"| {task} | {_cell(i)} | " + (f"{_cell(r)} | {_x(ratio)} |" if r else f"{na} | n/a |")


def _spread_rows(i, r):
    """Detail rows shared by every task: each side's spread of timed repetitions and
    interlace's compile time and warm-up call."""
    rows = [
        f"| interlace: median (min, max) of {i['n']}; CPU | {_s(i['median_s'])} "
        f"({_s(i['min_s'])}, {_s(i['max_s'])}); CPU {_s(i['cpu_median_s'])} |",
        f"| interlace: tracing + compilation inside the timed calls (median) "
        f"| {_s(i['compile_median_s'])} |",
        f"| interlace warm-up call (incl. compilation): wall (compile) "
        f"| {_s(i['first_call']['seconds'])} ({_s(i['first_call']['compile_s'])}) |",
    ]
    lme4 = (
        [
            f"| lme4: median (min, max) of {r['n']}; CPU | {_s(r['median_s'])} "
            f"({_s(r['min_s'])}, {_s(r['max_s'])}); CPU {_s(r['cpu_median_s'])} |"
        ]
        if r
        else []
    )
    return rows, lme4


def _deadlock_lines(raw):
    out = []
    for d in raw.get("deadlocks", []):
        env = " ".join(f"{k}={v}" for k, v in d["env"].items()) or "default environment"
        out += [
            f"**Deadlock in task {d['task']} ({env}).** The interlace worker made no "
            f"progress during request `{json.dumps(d['request'])}`: under "
            f"{harness.STALL_CPU_S:g} s "
            f"of CPU in {d['idle_s']:.0f} s (killed after {d['waited_s']:.0f} s, worker "
            f"CPU {d['worker_cpu_s']:.1f} s, peak RSS "
            f"{d['worker_peak_rss_mib'] or 0:.0f} MiB). "
            + (
                "The task was run again from the start in a new worker with a larger "
                "XLA CPU intra-op thread pool (`NPROC`); what is reported below for this "
                "task comes from that second worker."
                if not d["env"]
                else "No numbers for this task."
            ),
            "",
        ]
    return out


def render(raw):
    env = raw["environment"]
    t = raw["tasks"]
    na = f"n/a (lme4 {raw['lme4']})" if not raw["lme4"].startswith("R ") else "n/a"
    la = raw["loadavg"]
    lines = [
        "## Inference: influence and parametric bootstrap, interlace vs lme4",
        "",
        f"Generated by `{raw['command']}` (from the repository root) on {raw['date']}"
        f" ({raw['wall_s'] / 60:.1f} min); raw numbers in `benchmarks/out/inference.json`.",
        "",
        *harness.environment_lines(env, raw["lme4"]),
        f"- Load average (1, 5, 15 min) at start {la['start']}, at end {la['end']} "
        "(the machine may be shared; per task in the JSON)",
        f"- interlace compilation cache: {raw['compilation_cache']}",
        "",
        *_deadlock_lines(raw),
        "Wall-clock medians of each side's timed repetitions (CPU time: user + system, all "
        "threads). Alternation: lme4 runs in one long-lived Rscript process "
        "(`benchmarks/lme4_inference.R`) that times `influence()` / `bootMer()` on request "
        "(fits made once, outside the clock), so within each task the repetitions are "
        "interleaved, interlace 1, lme4 1, interlace 2, lme4 2, ..., after one untimed "
        "warm-up per side. interlace runs in a worker process (this script with --worker) "
        "that serves the same requests, so that a deadlock can be detected and survived. "
        "Ratio = lme4 / interlace. No timing is asserted.",
        "",
        "| task | interlace | lme4 | lme4 / interlace |",
        "|---|---|---|---|",
    ]
    detail = []

    inf = t.get("influence", {})
    if "interlace" in inf:
        i, r = inf["interlace"], inf["lme4"]
        lines.append(
            _summary_row(
                f"exact case-deletion influence, results page ({i['n_deletions']} refits): "
                f"`hlm_influence(result)` median of {i['n']}; `influence(fit)` median of "
                f"{r['n'] if r else 0}",
                i,
                r,
                inf.get("ratio"),
                na,
            )
        )
        detail += [
            "### Exact case-deletion influence (results page)",
            "",
            f'`interlace.hlm_influence(interlace.fit("{PAGE_FORMULA}", df, groups='
            f"{PAGE_GROUPS}))` vs `influence(lmer(score ~ hours_studied + prior_gpa + "
            "(1|student_id) + (1|school_id), data))` (REML; lme4's default case deletion, "
            "its default refit control). df = `tests/data/results_page.csv`, 300 rows.",
            "",
            "| | |",
            "|---|---|",
            *_spread_rows(i, r)[0],
            f"| interlace refits converged | {i['n_converged']} of {i['n_deletions']} |",
        ]
        if r:
            detail += [
                *_spread_rows(i, r)[1],
                f"| lme4 warm-up call | {_s(r['first_call']['seconds'])} |",
                f"| lme4 messages / warnings during one call (singular refits etc.) "
                f"| {r['n_messages_last']} / {r['n_warnings_last']} |",
                f"| ratio lme4 / interlace (medians) | {_x(inf['ratio'])} |",
                f"| Cook's distance, interlace vs lme4 `cooks.distance(influence(fit))`: max "
                f"abs diff (max rel diff; largest D) | {inf['cooksd_max_abs_diff']:.2e} "
                f"({inf['cooksd_max_rel_diff']:.2e}; {inf['cooksd_max']:.4f}) |",
            ]
        detail.append("")
    elif inf:
        lines.append(f"| exact case-deletion influence | FAILED: {inf['error']} | | |")

    sl = t.get("sleepstudy", {})
    if "interlace" in sl:
        i, r = sl["interlace"], sl["lme4"]
        lines.append(
            _summary_row(
                f"parametric bootstrap, sleepstudy, {N_BOOT_SLEEP} refits: "
                f"`parametric_bootstrap({N_BOOT_SLEEP})` median of {i['n']}; `bootMer(fit, "
                f"function(m) fixef(m), nsim = {N_BOOT_SLEEP})` median of {r['n'] if r else 0}",
                i,
                r,
                sl.get("ratio"),
                na,
            )
        )
        detail += [
            "### Parametric bootstrap (sleepstudy)",
            "",
            f"`{SLEEP_FORMULA}`, REML, `tests/data/sleepstudy.csv` (Subject a string / factor). "
            f"interlace `result.parametric_bootstrap({N_BOOT_SLEEP}, seed=i)`, i = 1 .. {i['n']} "
            "after a warm-up with seed 0"
            + (
                f"; lme4 `set.seed(i); bootMer(fit, function(m) fixef(m), nsim = "
                f'{N_BOOT_SLEEP})`, i = 1 .. {r["n"]} (parametric, parallel = "no") after a '
                f"warm-up with nsim = {LME4_BOOT_WARMUP}."
                if r
                else "."
            ),
            "",
            "| | |",
            "|---|---|",
            *_spread_rows(i, r)[0],
            f"| interlace refits converged (last run) | {i['n_converged_last']} of "
            f"{N_BOOT_SLEEP} |",
        ]
        if r:
            detail += [
                *_spread_rows(i, r)[1],
                f"| lme4 refits without NA (last run); warnings / messages | {r['n_ok_last']} "
                f"of {N_BOOT_SLEEP}; {r['n_warnings_last']} / {r['n_messages_last']} |",
                f"| ratio lme4 / interlace (medians) | {_x(sl['ratio'])} |",
            ]
            detail += [
                "",
                "Bootstrap sd of the fixed effects (last timed run of each side; "
                "independent simulations, so they differ by Monte Carlo error: the "
                "relative difference of two independent sds has standard error about "
                "sqrt(1/(2(B1-1)) + 1/(2(B2-1))), normal approximation):",
                "",
                "| fixed effect | interlace `boot.se()` | lme4 `sd(b$t)` | relative "
                "difference | MC standard error | z |",
                "|---|---|---|---|---|---|",
            ]
            detail += [
                f"| {a['name']} | {a['interlace']:.4f} | {a['lme4']:.4f} | "
                f"{a['rel_diff']:+.2%} | {a['mc_se_rel']:.2%} | {a['z']:+.2f} |"
                for a in sl["sd_agreement"]
            ]
        else:
            detail.append(
                f"| bootstrap sd (last run): {', '.join(i['fe_names'])} "
                f"| {', '.join(f'{v:.4f}' for v in i['boot_sd'])} |"
            )
        detail.append("")
    elif sl:
        lines.append(f"| parametric bootstrap, sleepstudy | FAILED: {sl['error']} | | |")

    ie = t.get("insteval", {})
    if "interlace" in ie:
        i, r = ie["interlace"], ie["lme4"]
        ext = (
            (
                f"{_s(r['extrapolated_100_s'])} **extrapolated from {r['nsim']} refits** "
                f"({_s(r['seconds'])} for {r['nsim']}) |"
            )
            if r
            else f"{na} |"
        )
        fails = {x["call"]: x for x in i.get("failures", [])}
        detail += [
            "### Parametric bootstrap (InstEval, 73,421 rows)",
            "",
            f"`{INSTEVAL_FORMULA}`, REML. interlace `result.parametric_bootstrap("
            f"{N_BOOT_INSTEVAL}, seed=0)` (first call, compiles) then `seed=1` (compiled); one "
            "call each, in that order, with the lme4 call between them. lme4 `bootMer(fit, "
            f"fixef, nsim = {N_LME4_INSTEVAL})` once; a full {N_BOOT_INSTEVAL} would take about "
            "20 min, so its figure for 100 refits is the per-refit time x 100: "
            f"**extrapolated from {N_LME4_INSTEVAL} refits**, not measured.",
            "",
            "| | |",
            "|---|---|",
            f"| interlace `fit` before the bootstraps (incl. compilation) "
            f"| {_s(i['fit']['seconds'])} ({_s(i['fit']['compile_s'])} compile) |",
        ]
        for key, title in (
            ("first", "first call (incl. compilation)"),
            ("second", "second call (compiled)"),
        ):
            c = i[f"{key}_call"]
            if c is not None:
                lines.append(
                    f"| InstEval parametric bootstrap, {N_BOOT_INSTEVAL} refits, {title}; "
                    f"{c['n_converged']} converged | {_s(c['seconds'])} (CPU {_s(c['cpu_s'])}) "
                    f"| {ext} "
                    + (f"{_x(ie[f'ratio_{key}_extrapolated'])} (extrapolated) |" if r else "n/a |")
                )
                detail += [
                    f"| interlace {key} call: wall (tracing + compilation); CPU; converged "
                    f"| {_s(c['seconds'])} ({_s(c['compile_s'])}); CPU {_s(c['cpu_s'])}; "
                    f"{c['n_converged']} of {N_BOOT_INSTEVAL} |",
                    f"| interlace {key} call: per refit; worker peak RSS so far "
                    f"| {_s(c['seconds'] / N_BOOT_INSTEVAL)}; {c['peak_rss_mib']:.0f} MiB |",
                    f"| interlace {key} call: bootstrap sd of {', '.join(i['fe_names'])} "
                    f"| {', '.join(f'{v:.4f}' for v in c['boot_sd'])} |",
                ]
            else:
                why = (
                    f"FAILED: {fails[key]['message']}"
                    if key in fails
                    else "not run (the first call failed)"
                )
                lines.append(
                    f"| InstEval parametric bootstrap, {N_BOOT_INSTEVAL} refits, "
                    f"{title} | {why} | {ext} n/a |"
                )
                detail.append(f"| interlace {key} call | {why} |")
        if i.get("failures"):
            detail.append(
                f"| interlace worker memory cap (RLIMIT_DATA) "
                f"| {raw.get('worker_mem_limit_gb') or 'none'} GiB |"
            )
        if r:
            detail += [
                f"| lme4 `bootMer`, nsim = {r['nsim']}: wall; CPU; refits without NA "
                f"| {_s(r['seconds'])}; CPU {_s(r['cpu_s'])}; {r['n_ok']} of {r['nsim']} |",
                f"| lme4 per refit | {_s(r['per_refit_s'])} |",
                f"| lme4 for {N_BOOT_INSTEVAL} refits, **extrapolated from {r['nsim']} refits** "
                f"| {_s(r['extrapolated_100_s'])} |",
                f"| lme4 `lmer` fit of InstEval (before bootMer, not in the figures above) "
                f"| {_s(r['fit_seconds'])} |",
                f"| ratio lme4 (extrapolated) / interlace: first call; second call "
                f"| {_x(ie.get('ratio_first_extrapolated'))}; "
                f"{_x(ie.get('ratio_second_extrapolated'))} |",
            ]
        detail.append("")
    elif ie:
        lines.append(f"| InstEval parametric bootstrap | FAILED: {ie['error']} | | |")
    elif raw["quick"]:
        lines.append("| InstEval parametric bootstrap | skipped (--quick) | | |")
    lines.append("")
    return "\n".join(lines + detail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions (influence 2 / 1, bootstrap 1 / 1); no InstEval",
    )
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4 even if Rscript is found")
    ap.add_argument(
        "--tasks",
        nargs="+",
        choices=list(TASKS),
        default=None,
        help="run only these tasks (default: all)",
    )
    ap.add_argument(
        "--mem-limit-gb",
        type=float,
        default=None,
        help="cap the interlace worker's address space (RLIMIT_DATA), so that on a "
        "shared machine a runaway allocation fails there instead of waking the "
        "OOM killer (default: 85%% of physical memory; 0: no cap)",
    )
    ap.add_argument("--render", metavar="JSON", help="only re-render a saved inference.json")
    ap.add_argument(
        "--no-results",
        action="store_true",
        help="do not put the section into benchmarks/RESULTS.md (--quick never does)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.mem_limit_gb)
        return
    OUT.mkdir(exist_ok=True)
    if args.render:
        raw = json.loads(Path(args.render).read_text())
    else:

        def save(raw):  # after every task, so that a later failure keeps what was measured
            harness.save_json(raw, OUT / "inference.json")

        mem = args.mem_limit_gb
        if mem is None:
            mem = round(0.85 * harness.meminfo_kib("MemTotal") / 2**20, 1)
        raw = run(
            quick=args.quick,
            use_lme4=not args.no_lme4,
            tasks=args.tasks,
            on_task=save,
            mem_limit_gb=mem or None,
        )
        save(raw)
    md = render(raw)
    (OUT / "inference.md").write_text(md + "\n")
    print()
    print(md)
    print(f"wrote {OUT / 'inference.md'} and {OUT / 'inference.json'}")
    if not args.quick and not args.no_results:
        harness.replace_section(md, harness.SECTIONS["inference"])
        print(f"and its section in {harness.RESULTS}")


if __name__ == "__main__":
    main()
