"""interlace is a good JAX citizen (issue 15): importing it changes no process-wide JAX
setting, its entry points compute in float64 inside their own ``jax.enable_x64(True)``
scope, and a user's float32 JAX code next to it stays float32.

Each check needs a fresh interpreter (the x64 flag, jit caches and the compilation-cache
configuration are process-wide), so the same script runs in two subprocesses: one with
JAX's defaults (float64 off) and one that turns float64 on before importing interlace.
Every public entry point that computes is called in both; the results must agree to
1e-12 relative (the same float64 programs: in practice bit-identical; a float32 leak
anywhere would be ~1e-7 off) and be float64 in both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import interlace

_SCRIPT = r"""
import json, sys, warnings
import jax, jax.numpy as jnp, numpy as np

X64 = sys.argv[1] == "1"
if X64:
    jax.config.update("jax_enable_x64", True)
cache_dir_before = jax.config.jax_compilation_cache_dir
min_time_before = jax.config.jax_persistent_cache_min_compile_time_secs

# A user's own float32 model, compiled before interlace is imported.
user_model = jax.jit(lambda w, x: jnp.sum(jnp.tanh(x @ w)))
w = jnp.linspace(-1.0, 1.0, 32).reshape(8, 4)
x = jnp.linspace(0.0, 2.0, 24).reshape(3, 8)
user_before = user_model(w, x)

import interlace

out = {"import": {"x64": bool(jax.config.jax_enable_x64),
                  "ones_dtype": str(jnp.ones(3).dtype),
                  "cache_dir_unchanged": jax.config.jax_compilation_cache_dir == cache_dir_before,
                  "min_time_unchanged": (jax.config.jax_persistent_cache_min_compile_time_secs
                                         == min_time_before)}}
warnings.simplefilter("ignore")
df = interlace.datasets.exam_scores()
F, G = "score ~ hours_studied + prior_gpa", ["student_id", "school_id"]
values = {}


def keep(name, value):
    values[name] = value


res = interlace.fit(F, df, groups=G)
user_between = user_model(w, x)
keep("fit.fe_params", res.fe_params.to_numpy())
keep("fit.fe_cov", res.fe_cov.to_numpy())
keep("fit.theta", res.theta.to_numpy())
keep("fit.deviance", np.float64(res.deviance))
keep("fit.scale", np.float64(res.scale))
keep("fit.fittedvalues", res.fittedvalues.to_numpy())
keep("fit.random_effects", res.random_effects["student_id"].to_numpy())
keep("predict", res.predict(df.iloc[:20]).to_numpy())
keep("simulate", res.simulate(2, seed=3).to_numpy())
keep("bootstrap_se", np.float64(res.bootstrap_se("mean", n_bootstrap=50, seed=1)))
keep("parametric_bootstrap", res.parametric_bootstrap(8, seed=2).replicates.to_numpy())
keep("cluster_bootstrap", res.cluster_bootstrap(8, seed=2).replicates.to_numpy())
keep("pigeonhole_bootstrap", res.pigeonhole_bootstrap(8, seed=2).replicates.to_numpy())
keep("satterthwaite", res.coef_table("satterthwaite").to_numpy(dtype=np.float64))
keep("confint_profile", res.confint("profile").to_numpy())
small = interlace.fit("score ~ hours_studied", df, groups=G)
keep("anova", interlace.anova(small, res).table.to_numpy(dtype=np.float64))
keep("hlm_resid", interlace.hlm_resid(res, standardized=True).to_numpy())
keep("hlm_resid_group", interlace.hlm_resid(res, level="student_id").to_numpy())
keep("leverage", interlace.leverage(res).to_numpy())
keep("cooks_distance", interlace.cooks_distance(res).to_numpy())
keep("hlm_influence", interlace.hlm_influence(res, level="school_id")
     .drop(columns="converged").to_numpy(dtype=np.float64))
Y = np.stack([df["score"].to_numpy(), df["score"].to_numpy() * 0.5 + df["prior_gpa"]], 1)
keep("fit_many", interlace.fit_many(F, df, Y, groups=G)
     .drop(columns="converged").to_numpy(dtype=np.float64))

ma = interlace.model_arrays(F, df, G)
theta = np.array([0.6, 0.3])
beta, sigma = np.array([50.0, 2.0, 3.0]), 4.0
d = res.design
cp = interlace.cross_products([t.codes for t in d.terms], [len(t.levels) for t in d.terms],
                              d.X, d.y, [t.X for t in d.terms])
jax_out = {"model_arrays.y": ma.y, "model_arrays.X": ma.X, "cross_products.A1": cp.A1,
           "deviance": interlace.deviance(theta, ma),
           "deviance_ml": interlace.deviance(theta, ma, reml=False),
           "loglik": interlace.loglik(beta, theta, sigma, ma),
           "blups": interlace.blups(theta, ma)[0],
           "profiled_deviance": interlace.profiled_deviance(theta, cp, reml=True),
           "fit_arrays.theta": interlace.fit_arrays(ma)["theta"],
           "fit_arrays.beta": interlace.fit_arrays(ma)["beta"]}
with jax.enable_x64(True):  # the documented way to transform the functional layer
    jax_out["grad_deviance"] = jax.jit(jax.grad(interlace.deviance))(theta, ma)
out["jax_dtypes"] = {k: str(v.dtype) for k, v in jax_out.items()}
# model_arrays' arrays are float64 JAX arrays and stay so outside interlace's calls
out["jax_dtypes"]["model_arrays.y+0"] = str((ma.y * 1.0).dtype) if X64 else "float64"
values.update(jax_out)

errors = {}
for name, call in {
    "jit_deviance": lambda: jax.jit(interlace.deviance)(theta, ma),
    "float32_theta": lambda: interlace.deviance(jnp.asarray(theta, jnp.float32), ma),
    "float32_model": lambda: interlace.fit_arrays(ma.replace(y=ma.y.astype(jnp.float32))),
}.items():
    try:
        call()
        errors[name] = None
    except interlace.PrecisionError as exc:
        errors[name] = str(exc)
out["errors"] = errors

user_after = user_model(w, x)
out["user"] = {"dtypes": [str(v.dtype) for v in (user_before, user_between, user_after)],
               "values": [float(v) for v in (user_before, user_between, user_after)],
               "traces": user_model._cache_size()}
out["end"] = {"x64": bool(jax.config.jax_enable_x64), "ones_dtype": str(jnp.ones(3).dtype),
              "cache_dir_unchanged": jax.config.jax_compilation_cache_dir == cache_dir_before}
out["dtypes"] = {k: str(np.asarray(v).dtype) for k, v in values.items()}
out["values"] = {k: np.asarray(v, dtype=np.float64).ravel().tolist() for k, v in values.items()}
print("RESULT" + json.dumps(out))
"""


def _run_script(x64: bool) -> subprocess.Popen:
    root = str(Path(interlace.__file__).resolve().parents[1])
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    for var in ("JAX_ENABLE_X64", "JAX_COMPILATION_CACHE_DIR", "INTERLACE_COMPILATION_CACHE"):
        env.pop(var, None)
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "1" if x64 else "0"],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


@pytest.fixture(scope="module")
def runs():
    """Both processes at once (each is mostly compiling on one core)."""
    procs = {"default": _run_script(False), "x64": _run_script(True)}
    return {k: _result(p) for k, p in procs.items()}


def test_import_changes_no_jax_setting(runs):
    imported = runs["default"]["import"]
    assert imported == {
        "x64": False,
        "ones_dtype": "float32",
        "cache_dir_unchanged": True,
        "min_time_unchanged": True,
    }


def test_settings_are_unchanged_after_every_entry_point(runs):
    assert runs["default"]["end"] == {
        "x64": False,
        "ones_dtype": "float32",
        "cache_dir_unchanged": True,
    }
    assert runs["x64"]["end"]["x64"] is True


def test_a_users_float32_model_stays_float32_next_to_interlace(runs):
    user = runs["default"]["user"]
    assert user["dtypes"] == ["float32"] * 3
    # the same compiled float32 program before, between and after: identical values and
    # a single trace (interlace's scopes do not make the user's function retrace)
    assert user["values"][0] == user["values"][1] == user["values"][2]
    assert user["traces"] == 1


def test_every_entry_point_returns_float64(runs):
    for run in runs.values():
        bad = {k: v for k, v in run["dtypes"].items() if v != "float64"}
        assert not bad, bad
        bad = {k: v for k, v in run["jax_dtypes"].items() if v != "float64"}
        assert not bad, bad


def test_results_equal_those_of_a_float64_process(runs):
    """rtol 1e-12 (atol 1e-12 of each quantity's largest magnitude, for entries at 0):
    float32 anywhere on the way would be ~1e-7 off."""
    default, x64 = runs["default"]["values"], runs["x64"]["values"]
    assert default.keys() == x64.keys()
    for name in x64:
        ref, got = np.asarray(x64[name]), np.asarray(default[name])
        scale = np.nanmax(np.abs(ref)) if ref.size else 0.0
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale, err_msg=name)


@pytest.mark.parametrize("name", ["jit_deviance", "float32_theta", "float32_model"])
def test_functional_layer_refuses_float32(runs, name):
    """The documented rule: a float32 argument, or tracing with float64 off, is refused
    with a PrecisionError that says how to turn float64 on; never a float32 fit."""
    msg = runs["default"]["errors"][name]
    assert msg is not None, f"{name}: no PrecisionError"
    assert "float64" in msg and "interlace never fits in float32" in msg
    assert 'jax.config.update("jax_enable_x64", True)' in msg
    assert "with jax.enable_x64(True):" in msg
    # with float64 on, a float32 array is still refused (the message says how to convert)
    if name != "jit_deviance":
        assert runs["x64"]["errors"][name] is not None
    else:
        assert runs["x64"]["errors"][name] is None
