"""Time interlace's vectorised paths on the results-page design: fit_many vs a loop, bootstrap.

Run from the repository root:  python benchmarks/bench_vectorized.py [--json PATH]
(``python benchmarks/run_benchmarks.py``, i.e. ``make bench``, runs it at the end and puts
its numbers in benchmarks/RESULTS.md). Standalone, it prints the RESULTS.md section and
writes benchmarks/out/vectorized_latest.json. It owns these measurements and their
section; benchmarks/harness.py owns the worker process and its deadlock watchdog.

Design: ``df = interlace.datasets.exam_scores()``, ``score ~ hours_studied + prior_gpa``,
``groups=["student_id", "school_id"]``.

  a. ``interlace.fit_many`` on B = 1000 responses ``Y = score + N(0, 3^2)`` noise (seeded):
     one untimed warm-up call, then the median of 3 calls; against a Python loop of 1000
     ``interlace.fit`` calls on ``df.assign(score=Y[:, j])`` (after one warm-up fit), and
     the largest absolute difference of the fixed effects between the two.
  b. ``result.bootstrap_se(statistic="median", n_bootstrap=10_000, resample_level="group",
     seed=1)``: one warm-up call, then the median of 5.

The measurements run in a worker process (this script with --worker; ``harness.Worker``)
that reports each step as it finishes. If the worker stops making progress (no step
finished and almost no CPU used for a while: a deadlock, not a slow step; the harness's
stall watchdog), it is killed and the measurements are run again in a new worker with a
larger XLA CPU thread pool (environment variable NPROC), and both attempts are recorded.
With jaxlib 0.10.2 on 2 cores, fit_many's single vmapped
batch of 1000 deadlocked every time before commit 512ec29 (which batched this model by
128; batches of 128 hung too on wider tails, issue 16): native stacks showed batched
LAPACK kernels (Cholesky, triangular solve) running concurrently, each holding one of the
2 threads of XLA's intra-op pool while it waited for sub-tasks queued on that same pool.
A small vmapped loop of Cholesky + triangular solves reproduces it outside interlace.
Since ``interlace._linalg``, vmapped refits factorise with plain JAX operations and
contain no LAPACK call at all; the detection stays as a safety net.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import harness  # benchmarks/ is on sys.path
from harness import OUT, ROOT, med

FORMULA = "score ~ hours_studied + prior_gpa"
GROUPS = ["student_id", "school_id"]
B = 1000
NOISE_SD = 3.0
SEED = 0
N_BOOTSTRAP = 10_000
REPEATS = {"fit_many": 3, "loop": 1, "bootstrap": 5}
FE_TOL = 1e-6  # fit_many and the loop should agree on the fixed effects to this


# --- worker: the measurements ------------------------------------------------------------
def worker(repeats):
    import warnings

    import jax
    import numpy as np

    import interlace

    timed = harness.make_timer()  # wall, CPU and compile seconds of one call

    def report(step, **fields):
        harness.say("STEP", {"step": step, **fields})

    warnings.simplefilter("ignore")  # the page model is a singular fit, as in lme4
    df = interlace.datasets.exam_scores()
    rng = np.random.default_rng(SEED)
    Y = df.score.to_numpy()[:, None] + rng.normal(0, NOISE_SD, (len(df), B))

    def many():
        return interlace.fit_many(FORMULA, df, Y, groups=GROUPS)

    _, first = timed(many)
    report("fit_many warm-up", **first)
    runs = []
    for i in range(repeats["fit_many"]):
        table, t = timed(many)
        runs.append(t)
        report(f"fit_many {i + 1}/{repeats['fit_many']}", **t)

    r0 = interlace.fit(FORMULA, df, groups=GROUPS)  # warm-up fit (compiles this shape)
    names = list(r0.fe_params.index)
    loops = []
    for i in range(repeats["loop"]):

        def loop():
            fits = [
                interlace.fit(FORMULA, df.assign(score=Y[:, j]), groups=GROUPS) for j in range(B)
            ]
            return (
                np.array([f.fe_params[names].to_numpy() for f in fits]),
                np.array([f.deviance for f in fits]),
                all(f.converged for f in fits),
            )

        (fe_loop, dev_loop, conv_loop), t = timed(loop)
        loops.append(t)
        report(f"loop of {B} fits {i + 1}/{repeats['loop']}", **t)
    fe_many = table[names].to_numpy()
    dev_many = table["deviance"].to_numpy()
    fe_diff = np.max(np.abs(fe_many - fe_loop), axis=1)  # per response
    dev_diff = dev_many - dev_loop  # > 0: fit_many stopped at a worse REML criterion

    boot = []
    _, boot_first = timed(
        lambda: r0.bootstrap_se(
            statistic="median", n_bootstrap=N_BOOTSTRAP, resample_level="group", seed=1
        )
    )
    report("bootstrap warm-up", **boot_first)
    for i in range(repeats["bootstrap"]):
        se, t = timed(
            lambda: r0.bootstrap_se(
                statistic="median", n_bootstrap=N_BOOTSTRAP, resample_level="group", seed=1
            )
        )
        boot.append(t)
        report(f"bootstrap {i + 1}/{repeats['bootstrap']}", **t)

    result = {
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "fit_many": {
            "first_call": first,
            "runs": runs,
            "median_s": med(runs),
            "min_s": min(x["seconds"] for x in runs),
            "cpu_median_s": med(runs, "cpu_s"),
            "compile_median_s": med(runs, "compile_s"),
            "converged": bool(table["converged"].all()),
        },
        "loop": {
            "runs": loops,
            "median_s": med(loops),
            "cpu_median_s": med(loops, "cpu_s"),
            "compile_median_s": med(loops, "compile_s"),
            "converged": bool(conv_loop),
        },
        "fe_names": names,
        "fe_max_abs_diff": float(np.max(np.abs(fe_many - fe_loop))),
        "fe_max_abs_diff_by_name": dict(zip(names, np.max(np.abs(fe_many - fe_loop), 0).tolist())),
        "deviance_max_abs_diff": float(np.max(np.abs(dev_diff))),
        "fe_tolerance": FE_TOL,
        "n_fe_mismatch": int(np.sum(fe_diff > FE_TOL)),
        "n_deviance_many_worse": int(np.sum(dev_diff > 1e-6)),
        "n_deviance_many_better": int(np.sum(dev_diff < -1e-6)),
        "deviance_many_minus_loop_max": float(np.max(dev_diff)),
        "deviance_many_minus_loop_min": float(np.min(dev_diff)),
        "bootstrap": {
            "first_call": boot_first,
            "runs": boot,
            "median_s": med(boot),
            "min_s": min(x["seconds"] for x in boot),
            "cpu_median_s": med(boot, "cpu_s"),
            "se": se,
        },
    }
    result["ratio_loop_over_fit_many"] = result["loop"]["median_s"] / result["fit_many"]["median_s"]
    harness.say("RESULT", result)


# --- orchestrator: run the worker, detect a deadlock, retry ------------------------------
def attempt(extra_env, repeats):
    worker = harness.Worker(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--repeats",
            json.dumps(repeats),
        ],
        extra_env=extra_env,
    )
    info = {"env": extra_env, "steps": [], "outcome": None}

    def step(tag, body):
        msg = json.loads(body)
        info["steps"].append(msg)
        print(
            f"  {msg['step']}: {msg['seconds']:.3f} s (cpu {msg['cpu_s']:.3f} s, "
            f"compile {msg['compile_s']:.3f} s)",
            flush=True,
        )

    def last_step():
        return info["steps"][-1]["step"] if info["steps"] else "start"

    try:
        result = worker.reply("measurements", on_line=step)
    except harness.Stalled as st:
        s = st.args[0]
        info.update(
            outcome="deadlock",
            stalled_after=last_step(),
            wall_s=time.perf_counter() - worker.t0,
            cpu_s=s["worker_cpu_s"],
            idle_s=s["idle_s"],
        )
        print(
            f"  worker made no progress for {s['idle_s']:.0f} s after '{last_step()}' "
            f"(CPU {s['worker_cpu_s']:.1f} s in {info['wall_s']:.0f} s): deadlock; killed",
            flush=True,
        )
        return info, None
    except harness.WorkerDied as died:
        raise RuntimeError(
            f"bench_vectorized worker exited with status "
            f"{died.args[0]['exit_status']} after step '{last_step()}'"
        ) from None
    info.update(outcome="ok", wall_s=time.perf_counter() - worker.t0)
    worker.close()
    return info, result


def run(repeats=None):
    """Run the measurements (retrying once with a larger XLA thread pool after a deadlock);
    returns the dict that run_benchmarks.py stores under "vectorized"."""
    repeats = {**REPEATS, **(repeats or {})}
    attempts = []
    first, result = attempt({}, repeats)
    attempts.append(first)
    if result is None:
        env = harness.bigger_pool_env()
        print(f"  retrying with NPROC={env['NPROC']} (XLA CPU intra-op pool size)", flush=True)
        second, result = attempt(env, repeats)
        attempts.append(second)
        if result is None:
            return {"attempts": attempts, "repeats": repeats, "result": None}
    return {"attempts": attempts, "repeats": repeats, "result": result, "env": attempts[-1]["env"]}


# --- RESULTS.md section ------------------------------------------------------------------
def render_section(vec):
    lines = [
        "## Vectorized fits and bootstrap",
        "",
        "Results-page design: `df = interlace.datasets.exam_scores()` (300 rows), "
        f"`{FORMULA}`, `groups={GROUPS}`, REML. Measured in a separate worker process "
        "by `benchmarks/bench_vectorized.py` (`python benchmarks/run_benchmarks.py` runs "
        "it at the end; `python benchmarks/bench_vectorized.py` runs it alone). No lme4 "
        "here.",
        "",
    ]
    for a in vec["attempts"]:
        if a["outcome"] == "deadlock":
            env = " ".join(f"{k}={v}" for k, v in a["env"].items()) or "default environment"
            lines += [
                f"**Deadlock ({env}).** The worker stopped after step '{a['stalled_after']}': "
                f"no progress and under {harness.STALL_CPU_S:g} s of CPU in {a['idle_s']:.0f} s "
                f"(killed after {a['wall_s']:.0f} s wall, {a['cpu_s']:.1f} s CPU). This matches the "
                "hang seen with jaxlib 0.10.2 on this 2-core machine: inside the vmapped fit, "
                "batched LAPACK kernels (Cholesky, triangular solve) run concurrently, each "
                "holding one thread of XLA's CPU intra-op pool (one thread per core) while it "
                "waits for sub-tasks queued on that same pool. The numbers below come from a "
                "second worker whose pool was enlarged with the environment variable "
                "`NPROC` (read by XLA when it sizes that pool), set before jax starts.",
                "",
            ]
    r = vec["result"]
    if r is None:
        return "\n".join(lines + ["No numbers: every attempt deadlocked.", ""])
    env = " ".join(f"{k}={v}" for k, v in vec["env"].items())
    fm, lp, bs = r["fit_many"], r["loop"], r["bootstrap"]
    reps = vec["repeats"]
    cache = r.get("compilation_cache_dir")
    if cache and Path(cache).is_relative_to(ROOT):
        cache = str(Path(cache).relative_to(ROOT))
    lines += [
        f"Environment of the measuring worker: {env or 'default (no extra variables)'}; "
        + (f"persistent compilation cache `{cache}`." if cache else "no compilation cache.")
        + " Warm-up calls are untimed in the medians; their times are shown for reference.",
        "",
        "| | |",
        "|---|---|",
        f"| `fit_many(formula, df, Y, groups=...)`, B = {B} responses (Y = score + "
        f"N(0, {NOISE_SD:g}²) noise, seed {SEED}): median of {reps['fit_many']} (min); CPU "
        f"| {fm['median_s']:.2f} s ({fm['min_s']:.2f} s); CPU {fm['cpu_median_s']:.2f} s |",
        f"| of which tracing + compilation inside each timed call (jax's compile events) "
        f"| {fm['compile_median_s']:.2f} s |",
        f"| `fit_many` first call (warm-up): wall (of which tracing + compilation) "
        f"| {fm['first_call']['seconds']:.2f} s ({fm['first_call']['compile_s']:.2f} s) |",
        f"| Python loop of {B} `interlace.fit` calls on `df.assign(score=Y[:, j])`, after one "
        f"warm-up fit: {'median of ' + str(reps['loop']) if reps['loop'] > 1 else 'one loop'}; "
        f"CPU | {lp['median_s']:.2f} s ({1000 * lp['median_s'] / B:.1f} ms a fit); CPU "
        f"{lp['cpu_median_s']:.2f} s |",
        f"| ratio loop / fit_many | {r['ratio_loop_over_fit_many']:#.3g}x |",
        f"| max abs difference of fixed effects, fit_many vs loop (all {B} x "
        f"{len(r['fe_names'])}) | {r['fe_max_abs_diff']:.2e} |",
        f"| responses whose fixed effects differ by more than {FE_TOL:g} (target: none) "
        f"| {r['n_fe_mismatch']} of {B}: **{'met' if r['n_fe_mismatch'] == 0 else 'not met'}** |",
        f"| REML criterion, fit_many minus loop: range; responses where fit_many is worse / "
        f"better by more than 1e-6 | {r['deviance_many_minus_loop_min']:+.2e} to "
        f"{r['deviance_many_minus_loop_max']:+.2e}; {r['n_deviance_many_worse']} / "
        f"{r['n_deviance_many_better']} |",
        f"| converged: fit_many; loop | {'all' if fm['converged'] else 'NOT all'}; "
        f"{'all' if lp['converged'] else 'NOT all'} |",
        f'| `result.bootstrap_se(statistic="median", n_bootstrap={N_BOOTSTRAP:_}, '
        f'resample_level="group", seed=1)`: median of {reps["bootstrap"]} (min); CPU '
        f"| {1000 * bs['median_s']:.1f} ms ({1000 * bs['min_s']:.1f} ms); "
        f"CPU {1000 * bs['cpu_median_s']:.1f} ms |",
        f"| `bootstrap_se` first call (warm-up, incl. compilation) "
        f"| {bs['first_call']['seconds']:.2f} s |",
        f"| bootstrap standard error of the median score | {bs['se']:.6f} |",
        '| issue target for bootstrap_se: "well under a second" '
        f"| {'met' if bs['median_s'] < 1 else 'not met'} |",
        "",
    ]
    if fm["compile_median_s"] > 0.1 * fm["median_s"]:
        lines += [
            f"Every timed `fit_many` call traced and compiled its vmapped fit again "
            f"({fm['compile_median_s']:.2f} s of the {fm['median_s']:.2f} s median): the "
            "warm-up call does not make later calls compiled, so this is what every call "
            "costs. The loop's `interlace.fit` calls reuse their compiled code "
            f"({lp['compile_median_s']:.2f} s of compilation inside the timed loop).",
            "",
        ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--json", help="write the results here (default: benchmarks/out/vectorized_latest.json)"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker({**REPEATS, **json.loads(args.repeats or "{}")})
        return
    vec = run()
    out = Path(args.json) if args.json else OUT / "vectorized_latest.json"
    out.parent.mkdir(exist_ok=True)
    harness.save_json(vec, out)
    print(render_section(vec))


if __name__ == "__main__":
    main()
