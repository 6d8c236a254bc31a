"""Vectorised refits finish on crossed designs whatever the tail width (issue 16).

With jaxlib 0.10.2, batched LAPACK kernels under ``vmap`` (``fit_many``, the bootstraps)
wedged XLA's CPU thread pool on 2 cores: ``fit_many`` of 16 responses on a 43-column
tail stopped using CPU after ~18 s and never returned. Each design here runs in a
subprocess pinned to 2 CPUs (the pool is sized from the affinity) with a deadline, so a
hang fails the test instead of stalling the suite: ``fit_many`` of 256 responses, a
parametric bootstrap and a cluster bootstrap of 500 refits each, on
``y ~ x + (1 | g) + (1 | h)`` with 120 levels of ``g`` and 17, 37 or 117 of ``h`` (dense
tails of 20, 40 and 120 columns), 1,500 rows. ``fit_many``'s results for a few responses
must match one-by-one :func:`interlace.fit` fits: deviance to 1e-6 relative, fixed
effects to 1e-5 (absolute, values of order 1), theta to 1e-4 (absolute).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Seconds a design's subprocess may take. A cold run (no persistent compilation cache)
# compiles ~8 batched graphs per design; measured ~60-110 s on 2 shared cores. A hang
# never ends, so the deadline only has to sit well above that.
DEADLINE_S = 420

N_RESPONSES = 256
N_REFITS = 500
CHECKED = (0, 1, 255)  # responses refitted one by one and compared

DEVIANCE_RTOL = 1e-6
BETA_ATOL = 1e-5
THETA_ATOL = 1e-4

WORKER = r"""
import json, os, sys, warnings
if hasattr(os, "sched_setaffinity"):  # XLA sizes its CPU pool from this: 2 threads
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
import numpy as np, pandas as pd
import interlace

nh, B, R, checked = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
rng = np.random.default_rng(nh)
n, ng = 1500, 120
g = rng.integers(0, ng, n); h = rng.integers(0, nh, n); x = rng.normal(size=n)
y = 1 + 0.5 * x + 0.8 * rng.normal(size=ng)[g] + 0.6 * rng.normal(size=nh)[h] + rng.normal(size=n)
df = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})
Y = y[:, None] + 0.5 * rng.normal(size=(n, B))
formula = "y ~ x + (1 | g) + (1 | h)"
out = {"t": int(interlace.model_arrays(formula, df).template.t)}
warnings.simplefilter("ignore")
many = interlace.fit_many(formula, df, Y)
out["many_converged"] = int(many["converged"].sum())
out["many_finite"] = bool(np.isfinite(many.drop(columns="converged").to_numpy()).all())
out["one_by_one"] = []
for j in checked:
    r = interlace.fit(formula, df.assign(y=Y[:, j]))
    out["one_by_one"].append({
        "deviance": [float(many["deviance"].iloc[j]), float(r.deviance)],
        "beta": [many[list(r.fe_params.index)].iloc[j].tolist(), r.fe_params.tolist()],
        "theta": [many[list(r.theta.index)].iloc[j].tolist(), r.theta.tolist()]})
fit = interlace.fit(formula, df)
for name, boot in (("parametric", fit.parametric_bootstrap(R, seed=1)),
                   ("cluster", fit.cluster_bootstrap(R, group="g", seed=1))):
    out[name] = {"n": int(boot.n_bootstrap), "converged": int(boot.converged.sum()),
                 "se_finite": bool(np.isfinite(boot.se().to_numpy()).all())}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("levels_h, tail", [(17, 20), (37, 40), (117, 120)])
def test_vectorised_refits_finish_and_match_single_fits(levels_h, tail):
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                WORKER,
                str(levels_h),
                str(N_RESPONSES),
                str(N_REFITS),
                json.dumps(CHECKED),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"refits on a {tail}-column tail did not finish in {DEADLINE_S} s "
            "(deadlocked XLA thread pool?)"
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT ") :])
    assert out["t"] == tail
    assert out["many_finite"]
    assert out["many_converged"] >= N_RESPONSES - 2  # at most 2 of 256 unconverged
    for rec in out["one_by_one"]:
        many_dev, one_dev = rec["deviance"]
        assert abs(many_dev - one_dev) <= DEVIANCE_RTOL * abs(one_dev)
        for a, b in zip(*rec["beta"]):
            assert abs(a - b) <= BETA_ATOL
        for a, b in zip(*rec["theta"]):
            assert abs(a - b) <= THETA_ATOL
    for name in ("parametric", "cluster"):
        assert out[name]["n"] == N_REFITS
        assert out[name]["converged"] >= N_REFITS - 5  # at most 1% unconverged
        assert out[name]["se_finite"]
