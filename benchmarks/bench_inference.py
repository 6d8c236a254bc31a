"""Time interlace's vectorised inference against lme4, same data, same machine, same run.

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

interlace runs in a worker process (this script with ``--worker``), which serves the same
requests as the R process, with ``INTERLACE_NO_COMPILATION_CACHE=1``, so first calls
compile for real whatever earlier runs left on disk; the tracing + compilation time inside
every timed call is summed from jax's own compile events and reported. The worker lets the
driver survive what interlace can do to a process on a small shared machine, and record it:

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
import platform
import queue
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from importlib.metadata import version
from pathlib import Path

from jax_timing import accelerator_line  # benchmarks/ is on sys.path
from jax_timing import cpu_seconds as _cpu_seconds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
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
REPEATS = {"full": {"influence": (5, 3), "sleepstudy": (3, 3)},
           "quick": {"influence": (2, 1), "sleepstudy": (1, 1)}}  # (interlace, lme4)
STALL_WINDOW_S = 30.0  # a worker with a request pending and < STALL_CPU_S CPU in two
STALL_CPU_S = 1.0      # windows is deadlocked (as in bench_vectorized.py)
POLL_S = 2.0  # how often the driver samples the worker's peak RSS


# --- helpers -------------------------------------------------------------------------------
def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def med(runs, key="seconds"):
    return statistics.median(r[key] for r in runs) if runs else None


def summary(runs):
    if not runs:
        return None
    return {"median_s": med(runs), "min_s": min(r["seconds"] for r in runs),
            "max_s": max(r["seconds"] for r in runs), "cpu_median_s": med(runs, "cpu_s"),
            "n": len(runs), "seconds": [r["seconds"] for r in runs]}




class Stalled(Exception):
    """The interlace worker made no progress: a deadlock (see bench_vectorized.py)."""


class Lme4:
    """The long-lived Rscript process of benchmarks/lme4_inference.R."""

    def __init__(self):
        self.proc = subprocess.Popen(["Rscript", str(HERE / "lme4_inference.R")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._line("READY")

    def _line(self, tag):
        line = self.proc.stdout.readline()
        fields = line.rstrip("\n").split("\t", 1)
        if fields[0] != tag or len(fields) != 2:
            raise RuntimeError(f"lme4_inference.R: expected {tag}, got {line!r} "
                               f"(exit status {self.proc.poll()}; R's stderr is above)")
        return json.loads(fields[1])

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line("RESULT")

    def close(self):
        try:
            self.proc.communicate("QUIT\n", timeout=60)
        except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
            self.proc.kill()
            self.proc.wait()


class WorkerDied(Exception):
    """The interlace worker exited while a request was pending (e.g. the OOM killer)."""


class WorkerError(Exception):
    """interlace raised an exception in the worker (traceback in args[0])."""


class Interlace:
    """A worker process (this script with --worker) that runs interlace on request.

    Running interlace outside this process lets a deadlock be detected and survived:
    while a request is pending, if the worker uses less than STALL_CPU_S of CPU in two
    windows of STALL_WINDOW_S, it is killed and Stalled is raised (bench_vectorized.py
    does the same for fit_many). Its peak RSS is sampled every POLL_S, and its address
    space is capped (RLIMIT_DATA, ``mem_limit_gb``) so that on a shared machine a runaway
    allocation fails in the worker instead of waking the kernel's OOM killer."""

    def __init__(self, extra_env=None, mem_limit_gb=None):
        self.extra_env = dict(extra_env or {})
        self.mem_limit_gb = mem_limit_gb
        env = {**os.environ, "INTERLACE_NO_COMPILATION_CACHE": "1", **self.extra_env}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        if mem_limit_gb:  # the worker sets RLIMIT_DATA itself, before it imports jax
            cmd += ["--mem-limit-gb", str(mem_limit_gb)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.peak_rss_mib = 0.0
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in self.proc.stdout]
                         + [self.lines.put(None)], daemon=True).start()
        self.info = self._reply("start")

    def _sample_rss(self):
        try:  # VmHWM: the worker's peak resident set so far
            for ln in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if ln.startswith("VmHWM:"):
                    self.peak_rss_mib = max(self.peak_rss_mib, int(ln.split()[1]) / 1024)
        except OSError:
            pass

    def _reply(self, what):
        t0 = time.perf_counter()
        idle, cpu_mark, window_start = 0, _cpu_seconds(self.proc.pid) or 0.0, t0
        while True:
            try:
                line = self.lines.get(timeout=POLL_S)
            except queue.Empty:
                self._sample_rss()
                if time.perf_counter() - window_start < STALL_WINDOW_S:
                    continue
                window_start = time.perf_counter()
                cpu = _cpu_seconds(self.proc.pid)
                if cpu is None:
                    continue
                idle = idle + 1 if cpu - cpu_mark < STALL_CPU_S else 0
                cpu_mark = cpu
                if idle >= 2:
                    self.kill()
                    raise Stalled({"request": what, "env": self.extra_env,
                                   "waited_s": time.perf_counter() - t0,
                                   "idle_s": idle * STALL_WINDOW_S, "worker_cpu_s": cpu,
                                   "worker_peak_rss_mib": self.peak_rss_mib})
                continue
            if line is None:
                status = self.proc.wait()
                how = (" (SIGKILL: on Linux most likely the kernel's OOM killer)"
                       if status == -9 else "")
                raise WorkerDied({"request": what, "env": self.extra_env,
                                  "exit_status": status, "waited_s": time.perf_counter() - t0,
                                  "worker_peak_rss_mib": self.peak_rss_mib,
                                  "mem_limit_gb": self.mem_limit_gb,
                                  "message": f"interlace worker exited with status {status}"
                                             f"{how} during {what!r}, after "
                                             f"{time.perf_counter() - t0:.0f} s; last sampled "
                                             f"peak RSS {self.peak_rss_mib:.0f} MiB; its "
                                             "stderr, if any, is above"})
            tag, _, body = line.rstrip("\n").partition("\t")
            if tag == "RESULT":
                self._sample_rss()
                return json.loads(body)
            if tag == "ERROR":
                tb = json.loads(body)
                raise WorkerError({"request": what, "env": self.extra_env, "traceback": tb,
                                   "worker_peak_rss_mib": self.peak_rss_mib,
                                   "message": f"interlace raised, during {what!r}: "
                                              f"{tb.strip().splitlines()[-1]}"})
            # anything else is the worker's own output; pass it through
            print(f"  [worker] {line.rstrip()}", flush=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._reply(request)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        try:
            self.proc.communicate(json.dumps({"op": "quit"}) + "\n", timeout=60)
        except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
            self.kill()


def interleave(n_il, n_r, il, r, label):
    """il(i) and r(i) alternately: il 0, r 0, il 1, r 1, ...; r is None without lme4."""
    a, b = [], []
    for i in range(max(n_il, n_r if r else 0)):
        if i < n_il:
            a.append(il(i))
            print(f"  {label}: interlace {i + 1}/{n_il}: {a[-1]['seconds']:.3f} s "
                  f"(cpu {a[-1]['cpu_s']:.3f} s, compile {a[-1]['compile_s']:.3f} s)",
                  flush=True)
        if r and i < n_r:
            b.append(r(i))
            print(f"  {label}: lme4 {i + 1}/{n_r}: {b[-1]['seconds']:.3f} s "
                  f"(cpu {b[-1]['cpu_s']:.3f} s)", flush=True)
    return a, b


# --- worker: the interlace side --------------------------------------------------------------
def environment(interlace):
    try:  # the same description as benchmarks/RESULTS.md
        from run_benchmarks import environment as env_of
        return env_of(interlace)
    except Exception as exc:  # noqa: BLE001 - a description only; never fail the run on it
        return {"cpu": platform.processor(), "cores": os.cpu_count(),
                "python": platform.python_version(), "os": platform.platform(),
                "packages": {p: version(p) for p in ("jax", "jaxlib", "numpy", "pandas")},
                "interlace_from": str(Path(interlace.__file__).parent),
                "note": f"run_benchmarks.environment failed: {exc!r}"}


def worker(mem_limit_gb=None):
    """Serve requests (one JSON object a line on stdin; one RESULT/ERROR line back)."""
    import traceback

    if mem_limit_gb:
        n = int(mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (n, n))  # RLIMIT_AS would slow XLA (bench_scaling.py)

    warnings.simplefilter("ignore")  # the page model is a singular fit (as in lme4)
    import pandas as pd
    from jax_timing import make_timer  # benchmarks/ is on sys.path

    import interlace

    timed = make_timer()  # wall, CPU and compile seconds of one call

    def say(tag, obj):
        sys.stdout.write(f"{tag}\t{json.dumps(obj)}\n")
        sys.stdout.flush()

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

    env = environment(interlace)
    env["worker_env"] = {k: os.environ[k] for k in ("NPROC", "XLA_FLAGS",
                                                     "INTERLACE_NO_COMPILATION_CACHE")
                         if k in os.environ}
    env["worker_rlimit_as_gib"] = mem_limit_gb
    say("RESULT", env)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            op = req["op"]
            if op == "quit":
                break
            if op == "setup":
                fits[req["model"]], t = setup(req["model"])
                r = fits[req["model"]]
                say("RESULT", {**t, "converged": bool(r.converged),
                               "fe_names": list(r.fe_params.index)})
            elif op == "influence":
                inf, t = timed(lambda: interlace.hlm_influence(fits["page"]))
                say("RESULT", {**t, "n_deletions": len(inf),
                               "n_converged": int(inf["converged"].sum()),
                               "cooksd": inf["cooksd"].tolist()})
            elif op == "boot":
                r = fits[req["model"]]
                boot, t = timed(lambda r=r, n=req["n"], seed=req["seed"]:
                                r.parametric_bootstrap(n, seed=seed))
                se = boot.se()
                say("RESULT", {**t, "seed": req["seed"], "n": req["n"],
                               "n_converged": int(boot.converged.sum()),
                               "boot_sd": [float(se[n]) for n in r.fe_params.index],
                               "peak_rss_mib": peak_rss_mib()})
            else:
                raise ValueError(f"unknown request {req!r}")
        except Exception:  # noqa: BLE001 - reported to the driver, which records it
            say("ERROR", traceback.format_exc())


# --- the tasks (driver side) -------------------------------------------------------------------
def _timing(x):
    return {k: x[k] for k in ("seconds", "cpu_s", "compile_s") if k in x}


def task_influence(il, lme4, reps):
    import numpy as np

    fit = il.ask(op="setup", model="page")
    first = il.ask(op="influence")
    print(f"  influence: interlace warm-up {first['seconds']:.2f} s "
          f"(compile {first['compile_s']:.2f} s)", flush=True)
    r_first = None
    if lme4:
        r_first = lme4.ask("influence_page")
        print(f"  influence: lme4 warm-up {r_first['seconds']:.2f} s", flush=True)
    last = {}

    def one_il(i):
        last["il"] = il.ask(op="influence")
        return _timing(last["il"])

    def one_r(i):
        last["r"] = lme4.ask("influence_page")
        return {k: last["r"][k] for k in ("seconds", "cpu_s", "n_warnings", "n_messages")}

    a, b = interleave(*reps, one_il, one_r if lme4 else None, "influence")
    res = {"interlace": {"fit": _timing(fit), "first_call": _timing(first), "runs": a,
                         **summary(a), "compile_median_s": med(a, "compile_s"),
                         "n_deletions": last["il"]["n_deletions"],
                         "n_converged": last["il"]["n_converged"]},
           "lme4": None}
    if lme4:
        cd_r = np.asarray(last["r"]["cooksd"])
        cd_i = np.asarray(last["il"]["cooksd"])
        res["lme4"] = {"first_call": {k: r_first[k] for k in ("seconds", "cpu_s")},
                       "runs": b, **summary(b), "n_deletions": last["r"]["n_deletions"],
                       "n_messages_last": last["r"]["n_messages"],
                       "n_warnings_last": last["r"]["n_warnings"]}
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
        rows.append({"name": n, "interlace": a, "lme4": b, "rel_diff": rel,
                     "mc_se_rel": mc, "z": rel / mc})
    return rows


def task_sleepstudy(il, lme4, reps):
    fit = il.ask(op="setup", model="sleepstudy")
    names = fit["fe_names"]
    first = il.ask(op="boot", model="sleepstudy", n=N_BOOT_SLEEP, seed=0)
    print(f"  sleepstudy bootstrap: interlace warm-up {first['seconds']:.2f} s "
          f"(compile {first['compile_s']:.2f} s)", flush=True)
    r_first = None
    if lme4:
        r_first = lme4.ask(f"bootmer_sleepstudy {LME4_BOOT_WARMUP} 0")
        print(f"  sleepstudy bootstrap: lme4 warm-up (nsim {LME4_BOOT_WARMUP}) "
              f"{r_first['seconds']:.2f} s", flush=True)
    last = {}

    def one_il(i):
        last["il"] = il.ask(op="boot", model="sleepstudy", n=N_BOOT_SLEEP, seed=i + 1)
        return {**_timing(last["il"]), "n_converged": last["il"]["n_converged"]}

    def one_r(i):
        last["r"] = lme4.ask(f"bootmer_sleepstudy {N_BOOT_SLEEP} {i + 1}")
        return {k: last["r"][k] for k in ("seconds", "cpu_s", "n_ok", "n_warnings",
                                          "n_messages")}

    a, b = interleave(*reps, one_il, one_r if lme4 else None, "sleepstudy bootstrap")
    n_conv = last["il"]["n_converged"]
    res = {"interlace": {"fit": _timing(fit), "first_call": _timing(first), "runs": a,
                         **summary(a), "compile_median_s": med(a, "compile_s"),
                         "n_converged_last": n_conv, "seed_last": last["il"]["seed"],
                         "fe_names": names, "boot_sd": last["il"]["boot_sd"]},
           "lme4": None}
    if lme4:
        rr = last["r"]
        res["lme4"] = {"first_call": {k: r_first[k] for k in ("seconds", "cpu_s")},
                       "warmup_nsim": LME4_BOOT_WARMUP, "runs": b, **summary(b),
                       "n_ok_last": rr["n_ok"], "n_warnings_last": rr["n_warnings"],
                       "n_messages_last": rr["n_messages"], "fe_names": rr["names"],
                       "boot_sd": rr["boot_sd"], "seed_last": rr["seed"]}
        res["sd_agreement"] = sd_agreement(names, res["interlace"]["boot_sd"], rr["boot_sd"],
                                           n_conv, rr["n_ok"])
        res["ratio"] = res["lme4"]["median_s"] / res["interlace"]["median_s"]
    return res


def task_insteval(il, lme4, reps=None):
    fit = il.ask(op="setup", model="insteval")
    print(f"  InstEval: interlace fit {fit['seconds']:.2f} s "
          f"(compile {fit['compile_s']:.2f} s)", flush=True)
    failures = []

    def one_il(seed, label):
        print(f"  InstEval bootstrap ({N_BOOT_INSTEVAL}): interlace {label} call (seed {seed}) "
              "running ...", flush=True)
        try:
            out = il.ask(op="boot", model="insteval", n=N_BOOT_INSTEVAL, seed=seed)
        except (WorkerDied, WorkerError) as exc:  # recorded; lme4 is still measured
            failures.append({"call": label, "seed": seed, **exc.args[0]})
            print(f"  FAILED: {exc.args[0]['message']}", flush=True)
            return None
        out["worker_peak_rss_mib"] = il.peak_rss_mib
        print(f"  InstEval bootstrap ({N_BOOT_INSTEVAL}): interlace {label} call: "
              f"{out['seconds']:.2f} s (cpu {out['cpu_s']:.2f} s, compile "
              f"{out['compile_s']:.2f} s), {out['n_converged']} converged, worker peak RSS "
              f"{out['peak_rss_mib']:.0f} MiB", flush=True)
        return out

    first = one_il(0, "first")  # includes compilation
    r = None
    if lme4:  # between the two interlace calls (alternation)
        print(f"  InstEval bootMer nsim={N_LME4_INSTEVAL} running ...", flush=True)
        r = lme4.ask(f"bootmer_insteval {N_LME4_INSTEVAL} 1")
        print(f"  InstEval bootMer nsim={N_LME4_INSTEVAL}: {r['seconds']:.2f} s "
              f"(lmer fit before it, not in this figure: {r['fit_seconds']:.2f} s)",
              flush=True)
    second = one_il(1, "second") if first is not None else None  # compiled
    res = {"interlace": {"fit": _timing(fit), "first_call": first, "second_call": second,
                         "fe_names": fit["fe_names"], "failures": failures},
           "lme4": None}
    if lme4:
        per = r["seconds"] / N_LME4_INSTEVAL
        res["lme4"] = {"nsim": N_LME4_INSTEVAL, "seconds": r["seconds"], "cpu_s": r["cpu_s"],
                       "per_refit_s": per, "extrapolated_100_s": per * N_BOOT_INSTEVAL,
                       "n_ok": r["n_ok"], "n_warnings": r["n_warnings"],
                       "n_messages": r["n_messages"], "fit_seconds": r["fit_seconds"],
                       "fe_names": r["names"], "boot_sd": r["boot_sd"]}
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
    command = shlex.join(["python", *sys.argv])
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    raw = {"date": started.isoformat(timespec="seconds"), "command": command, "quick": quick,
           "python_executable": sys.executable, "lme4": None,
           "loadavg": {"start": load_start, "end": None},
           "compilation_cache": "off (INTERLACE_NO_COMPILATION_CACHE=1 in the worker)",
           "repeats": reps, "tasks_requested": tasks, "tasks": {}, "deadlocks": []}
    il = Interlace(mem_limit_gb=mem_limit_gb)
    raw["environment"] = il.info
    raw["worker_mem_limit_gb"] = mem_limit_gb
    lme4 = None
    if not use_lme4:
        raw["lme4"] = "skipped (--no-lme4)"
    elif shutil.which("Rscript") is None:
        raw["lme4"] = "skipped: Rscript is not on PATH"
    else:
        lme4 = Lme4()
        i = lme4.info
        raw["lme4"] = f"{i['r_version']}, lme4 {i['lme4_version']}, BLAS {i['blas']}"
    print(f"lme4: {raw['lme4']}; load average at start {load_start}", flush=True)
    try:
        for key in tasks:
            print(f"{key}:", flush=True)
            before = loadavg()
            t0 = time.perf_counter()
            try:
                try:
                    res = TASKS[key](il, lme4, reps.get(key))
                except Stalled as st:
                    info = {"task": key, **st.args[0], "loadavg": loadavg()}
                    raw["deadlocks"].append(info)
                    nproc = str(max(4, 2 * len(os.sched_getaffinity(0))))
                    print(f"  interlace worker made no progress for {info['idle_s']:.0f} s "
                          f"during {info['request']} (worker CPU {info['worker_cpu_s']:.1f} s, "
                          f"peak RSS {info['worker_peak_rss_mib'] or 0:.0f} MiB): deadlock; "
                          f"killed. Task {key} again, in a new worker with NPROC={nproc} "
                          "(XLA CPU intra-op pool size)", flush=True)
                    il = Interlace({"NPROC": nproc}, mem_limit_gb)
                    res = TASKS[key](il, lme4, reps.get(key))
                res["worker_env"] = il.extra_env
                res["worker_interlace_from"] = il.info.get("interlace_from")
            except Exception as exc:  # noqa: BLE001 - record it; the other tasks still run
                import traceback
                res = {"error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()}
                print(f"  FAILED: {res['traceback']}", flush=True)
                if isinstance(exc, Stalled):
                    raw["deadlocks"].append({"task": key, **exc.args[0]})
            if il.proc.poll() is not None and key != tasks[-1]:
                il = Interlace(mem_limit_gb=mem_limit_gb)  # a fresh worker for the next task
            res.update(loadavg_before=before, loadavg_after=loadavg(),
                       task_wall_s=time.perf_counter() - t0)
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


def _spread_rows(i, r):
    """Detail rows shared by every task: each side's spread of timed repetitions and
    interlace's compile time and warm-up call."""
    rows = [f"| interlace: median (min, max) of {i['n']}; CPU | {_s(i['median_s'])} "
            f"({_s(i['min_s'])}, {_s(i['max_s'])}); CPU {_s(i['cpu_median_s'])} |",
            f"| interlace: tracing + compilation inside the timed calls (median) "
            f"| {_s(i['compile_median_s'])} |",
            f"| interlace warm-up call (incl. compilation): wall (compile) "
            f"| {_s(i['first_call']['seconds'])} ({_s(i['first_call']['compile_s'])}) |"]
    lme4 = ([f"| lme4: median (min, max) of {r['n']}; CPU | {_s(r['median_s'])} "
             f"({_s(r['min_s'])}, {_s(r['max_s'])}); CPU {_s(r['cpu_median_s'])} |"]
            if r else [])
    return rows, lme4


def _deadlock_lines(raw):
    out = []
    for d in raw.get("deadlocks", []):
        env = " ".join(f"{k}={v}" for k, v in d["env"].items()) or "default environment"
        out += [f"**Deadlock in task {d['task']} ({env}).** The interlace worker made no "
                f"progress during request `{json.dumps(d['request'])}`: under {STALL_CPU_S:g} s "
                f"of CPU in {d['idle_s']:.0f} s (killed after {d['waited_s']:.0f} s, worker "
                f"CPU {d['worker_cpu_s']:.1f} s, peak RSS "
                f"{d['worker_peak_rss_mib'] or 0:.0f} MiB). "
                + ("The task was run again from the start in a new worker with a larger "
                   "XLA CPU intra-op thread pool (`NPROC`); what is reported below for this "
                   "task comes from that second worker." if not d["env"]
                   else "No numbers for this task."), ""]
    return out


def render(raw):
    env = raw["environment"]
    pk = env.get("packages", {})
    t = raw["tasks"]
    na = f"n/a (lme4 {raw['lme4']})" if not raw["lme4"].startswith("R ") else "n/a"
    la = raw["loadavg"]
    lines = [
        "## Inference: influence and parametric bootstrap, interlace vs lme4", "",
        f"Generated by `{raw['command']}` (from the repository root) on {raw['date']}"
        f" ({raw['wall_s'] / 60:.1f} min); raw numbers in `benchmarks/out/inference.json`.", "",
        f"- Machine: {env.get('cpu')}, {env.get('cores')} cores"
        + (f", {env['ram_gib']} GiB RAM" if "ram_gib" in env else "")
        + (f"; processes allowed on CPUs {env['affinity']}" if "affinity" in env else ""),
        f"- OS: {env.get('os')}",
        accelerator_line(env),
        f"- Python {env.get('python')}; " + ", ".join(f"{k} {v}" for k, v in pk.items())
        + f" (interlace imported from {env.get('interlace_from')})",
        f"- lme4: {raw['lme4']}",
        f"- Load average (1, 5, 15 min) at start {la['start']}, at end {la['end']} "
        "(the machine may be shared; per task in the JSON)",
        f"- interlace compilation cache: {raw['compilation_cache']}", "",
        *_deadlock_lines(raw),
        "Wall-clock medians of each side's timed repetitions (CPU time: user + system, all "
        "threads). Alternation: lme4 runs in one long-lived Rscript process "
        "(`benchmarks/lme4_inference.R`) that times `influence()` / `bootMer()` on request "
        "(fits made once, outside the clock), so within each task the repetitions are "
        "interleaved, interlace 1, lme4 1, interlace 2, lme4 2, ..., after one untimed "
        "warm-up per side. interlace runs in a worker process (this script with --worker) "
        "that serves the same requests, so that a deadlock can be detected and survived. "
        "Ratio = lme4 / interlace. No timing is asserted.", "",
        "| task | interlace | lme4 | lme4 / interlace |", "|---|---|---|---|"]
    detail = []

    inf = t.get("influence", {})
    if "interlace" in inf:
        i, r = inf["interlace"], inf["lme4"]
        lines.append(
            f"| exact case-deletion influence, results page ({i['n_deletions']} refits): "
            f"`hlm_influence(result)` median of {i['n']}; `influence(fit)` median of "
            f"{r['n'] if r else 0} | {_cell(i)} | "
            + (f"{_cell(r)} | {_x(inf['ratio'])} |"
               if r else f"{na} | n/a |"))
        detail += [
            "### Exact case-deletion influence (results page)", "",
            f"`interlace.hlm_influence(interlace.fit(\"{PAGE_FORMULA}\", df, groups="
            f"{PAGE_GROUPS}))` vs `influence(lmer(score ~ hours_studied + prior_gpa + "
            "(1|student_id) + (1|school_id), data))` (REML; lme4's default case deletion, "
            "its default refit control). df = `tests/data/results_page.csv`, 300 rows.", "",
            "| | |", "|---|---|", *_spread_rows(i, r)[0],
            f"| interlace refits converged | {i['n_converged']} of {i['n_deletions']} |"]
        if r:
            detail += [
                *_spread_rows(i, r)[1],
                f"| lme4 warm-up call | {_s(r['first_call']['seconds'])} |",
                f"| lme4 messages / warnings during one call (singular refits etc.) "
                f"| {r['n_messages_last']} / {r['n_warnings_last']} |",
                f"| ratio lme4 / interlace (medians) | {_x(inf['ratio'])} |",
                f"| Cook's distance, interlace vs lme4 `cooks.distance(influence(fit))`: max "
                f"abs diff (max rel diff; largest D) | {inf['cooksd_max_abs_diff']:.2e} "
                f"({inf['cooksd_max_rel_diff']:.2e}; {inf['cooksd_max']:.4f}) |"]
        detail.append("")
    elif inf:
        lines.append(f"| exact case-deletion influence | FAILED: {inf['error']} | | |")

    sl = t.get("sleepstudy", {})
    if "interlace" in sl:
        i, r = sl["interlace"], sl["lme4"]
        lines.append(
            f"| parametric bootstrap, sleepstudy, {N_BOOT_SLEEP} refits: "
            f"`parametric_bootstrap({N_BOOT_SLEEP})` median of {i['n']}; `bootMer(fit, "
            f"function(m) fixef(m), nsim = {N_BOOT_SLEEP})` median of {r['n'] if r else 0} "
            f"| {_cell(i)} | "
            + (f"{_cell(r)} | {_x(sl['ratio'])} |"
               if r else f"{na} | n/a |"))
        detail += [
            "### Parametric bootstrap (sleepstudy)", "",
            f"`{SLEEP_FORMULA}`, REML, `tests/data/sleepstudy.csv` (Subject a string / factor). "
            f"interlace `result.parametric_bootstrap({N_BOOT_SLEEP}, seed=i)`, i = 1 .. {i['n']} "
            "after a warm-up with seed 0" + (
                f"; lme4 `set.seed(i); bootMer(fit, function(m) fixef(m), nsim = "
                f"{N_BOOT_SLEEP})`, i = 1 .. {r['n']} (parametric, parallel = \"no\") after a "
                f"warm-up with nsim = {LME4_BOOT_WARMUP}." if r else "."), "",
            "| | |", "|---|---|", *_spread_rows(i, r)[0],
            f"| interlace refits converged (last run) | {i['n_converged_last']} of "
            f"{N_BOOT_SLEEP} |"]
        if r:
            detail += [
                *_spread_rows(i, r)[1],
                f"| lme4 refits without NA (last run); warnings / messages | {r['n_ok_last']} "
                f"of {N_BOOT_SLEEP}; {r['n_warnings_last']} / {r['n_messages_last']} |",
                f"| ratio lme4 / interlace (medians) | {_x(sl['ratio'])} |"]
            detail += ["", "Bootstrap sd of the fixed effects (last timed run of each side; "
                       "independent simulations, so they differ by Monte Carlo error: the "
                       "relative difference of two independent sds has standard error about "
                       "sqrt(1/(2(B1-1)) + 1/(2(B2-1))), normal approximation):", "",
                       "| fixed effect | interlace `boot.se()` | lme4 `sd(b$t)` | relative "
                       "difference | MC standard error | z |", "|---|---|---|---|---|---|"]
            detail += [f"| {a['name']} | {a['interlace']:.4f} | {a['lme4']:.4f} | "
                       f"{a['rel_diff']:+.2%} | {a['mc_se_rel']:.2%} | {a['z']:+.2f} |"
                       for a in sl["sd_agreement"]]
        else:
            detail.append(f"| bootstrap sd (last run): {', '.join(i['fe_names'])} "
                          f"| {', '.join(f'{v:.4f}' for v in i['boot_sd'])} |")
        detail.append("")
    elif sl:
        lines.append(f"| parametric bootstrap, sleepstudy | FAILED: {sl['error']} | | |")

    ie = t.get("insteval", {})
    if "interlace" in ie:
        i, r = ie["interlace"], ie["lme4"]
        ext = (f"{_s(r['extrapolated_100_s'])} **extrapolated from {r['nsim']} refits** "
               f"({_s(r['seconds'])} for {r['nsim']}) |") if r else f"{na} |"
        fails = {x["call"]: x for x in i.get("failures", [])}
        detail += [
            "### Parametric bootstrap (InstEval, 73,421 rows)", "",
            f"`{INSTEVAL_FORMULA}`, REML. interlace `result.parametric_bootstrap("
            f"{N_BOOT_INSTEVAL}, seed=0)` (first call, compiles) then `seed=1` (compiled); one "
            "call each, in that order, with the lme4 call between them. lme4 `bootMer(fit, "
            f"fixef, nsim = {N_LME4_INSTEVAL})` once; a full {N_BOOT_INSTEVAL} would take about "
            "20 min, so its figure for 100 refits is the per-refit time x 100: "
            f"**extrapolated from {N_LME4_INSTEVAL} refits**, not measured.", "",
            "| | |", "|---|---|",
            f"| interlace `fit` before the bootstraps (incl. compilation) "
            f"| {_s(i['fit']['seconds'])} ({_s(i['fit']['compile_s'])} compile) |"]
        for key, title in (("first", "first call (incl. compilation)"),
                           ("second", "second call (compiled)")):
            c = i[f"{key}_call"]
            if c is not None:
                lines.append(
                    f"| InstEval parametric bootstrap, {N_BOOT_INSTEVAL} refits, {title}; "
                    f"{c['n_converged']} converged | {_s(c['seconds'])} (CPU {_s(c['cpu_s'])}) "
                    f"| {ext} " + (f"{_x(ie[f'ratio_{key}_extrapolated'])} (extrapolated) |"
                                   if r else "n/a |"))
                detail += [
                    f"| interlace {key} call: wall (tracing + compilation); CPU; converged "
                    f"| {_s(c['seconds'])} ({_s(c['compile_s'])}); CPU {_s(c['cpu_s'])}; "
                    f"{c['n_converged']} of {N_BOOT_INSTEVAL} |",
                    f"| interlace {key} call: per refit; worker peak RSS so far "
                    f"| {_s(c['seconds'] / N_BOOT_INSTEVAL)}; {c['peak_rss_mib']:.0f} MiB |",
                    f"| interlace {key} call: bootstrap sd of {', '.join(i['fe_names'])} "
                    f"| {', '.join(f'{v:.4f}' for v in c['boot_sd'])} |"]
            else:
                why = (f"FAILED: {fails[key]['message']}" if key in fails
                       else "not run (the first call failed)")
                lines.append(f"| InstEval parametric bootstrap, {N_BOOT_INSTEVAL} refits, "
                             f"{title} | {why} | {ext} n/a |")
                detail.append(f"| interlace {key} call | {why} |")
        if i.get("failures"):
            detail.append(f"| interlace worker memory cap (RLIMIT_DATA) "
                          f"| {raw.get('worker_mem_limit_gb') or 'none'} GiB |")
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
                f"{_x(ie.get('ratio_second_extrapolated'))} |"]
        detail.append("")
    elif ie:
        lines.append(f"| InstEval parametric bootstrap | FAILED: {ie['error']} | | |")
    elif raw["quick"]:
        lines.append("| InstEval parametric bootstrap | skipped (--quick) | | |")
    lines.append("")
    return "\n".join(lines + detail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions (influence 2 / 1, bootstrap 1 / 1); no InstEval")
    ap.add_argument("--no-lme4", action="store_true", help="skip lme4 even if Rscript is found")
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=None,
                    help="run only these tasks (default: all)")
    ap.add_argument("--mem-limit-gb", type=float, default=None,
                    help="cap the interlace worker's address space (RLIMIT_DATA), so that on a "
                    "shared machine a runaway allocation fails there instead of waking the "
                    "OOM killer (default: 85%% of physical memory; 0: no cap)")
    ap.add_argument("--render", metavar="JSON", help="only re-render a saved inference.json")
    ap.add_argument("--no-results", action="store_true",
                    help="do not put the section into benchmarks/RESULTS.md (--quick never does)")
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
            (OUT / "inference.json").write_text(json.dumps(raw, indent=2) + "\n")
        mem = args.mem_limit_gb
        if mem is None:
            mem = round(0.85 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        raw = run(quick=args.quick, use_lme4=not args.no_lme4, tasks=args.tasks, on_task=save,
                  mem_limit_gb=mem or None)
        save(raw)
    md = render(raw)
    (OUT / "inference.md").write_text(md + "\n")
    print()
    print(md)
    print(f"wrote {OUT / 'inference.md'} and {OUT / 'inference.json'}")
    if not args.quick and not args.no_results:
        _replace_section(HERE / "RESULTS.md", md)
        print(f"and its section in {HERE / 'RESULTS.md'}")


def _replace_section(path: Path, md: str) -> None:
    """Put ``md`` (a ``## Inference:`` section) into RESULTS.md, replacing an earlier one
    (up to the next ``## `` heading) or appending it."""
    text = path.read_text() if path.exists() else ""
    start = text.find("## Inference:")
    if start < 0:
        path.write_text(text.rstrip() + "\n\n" + md.rstrip() + "\n")
        return
    nxt = text.find("\n## ", start + 1)
    rest = text[nxt + 1:] if nxt >= 0 else ""
    path.write_text(text[:start] + md.rstrip() + "\n" + ("\n" + rest if rest else ""))


if __name__ == "__main__":
    main()
