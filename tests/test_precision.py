"""Float64 whatever the process's JAX settings (issue 16, ``interlace._base.precision``).

Turning ``jax_enable_x64`` on and off is process-wide, so those checks run in a fresh
Python process: it turns float64 on (as a user may; importing interlace leaves it off),
fits and evaluates, turns it off and repeats: the functions first compiled with the flag
on keep working inside interlace's scopes. The fit must give the float64 numbers (1e-10 relative: a
float32 fit of the same model is ~1e-7 off) and the functional layer must either give
float64 results or raise :class:`interlace.PrecisionError` with instructions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interlace

from .conftest import PAGE_FORMULA, PAGE_GROUPS

_SCRIPT = r"""
import json, warnings
import jax, jax.numpy as jnp, numpy as np
import interlace

jax.config.update("jax_enable_x64", True)
warnings.simplefilter("ignore")
df = interlace.datasets.exam_scores()  # 300 rows, 30 students x 10 schools, crossed
F, G = "score ~ hours_studied + prior_gpa", ["student_id", "school_id"]
theta = np.array([0.6, 0.3])  # an interior point (the page fit's school theta is 0)
beta, sigma = np.array([50.0, 2.0, 3.0]), 4.0


def evaluate(ma, res):
    cp = interlace.cross_products([t.codes for t in res.design.terms],
                                  [len(t.levels) for t in res.design.terms],
                                  res.design.X, res.design.y,
                                  [t.X for t in res.design.terms])
    fa = interlace.fit_arrays(ma)
    return {
        "fit_deviance": res.deviance,
        "fit_dtype": str(res.fe_params.dtype),
        "deviance": interlace.deviance(theta, ma),
        "loglik": interlace.loglik(beta, theta, sigma, ma),
        "blups": interlace.blups(theta, ma)[0],
        "profiled_deviance": interlace.profiled_deviance(theta, cp, reml=True),
        "fit_arrays_deviance": fa["deviance"],
        "fit_arrays_theta": fa["theta"],
        "simulate": res.simulate(2, seed=3).to_numpy(),
        "bootstrap_se": res.bootstrap_se("mean", n_bootstrap=50, seed=1),
    }


on = evaluate(interlace.model_arrays(F, df, G), interlace.fit(F, df, groups=G))
jax.config.update("jax_enable_x64", False)
ma = interlace.model_arrays(F, df, G)
off = evaluate(ma, interlace.fit(F, df, groups=G))

out = {"x64_after": bool(jax.config.jax_enable_x64), "dtypes": {}, "rel": {}, "errors": {}}
for k, v in off.items():
    if k == "fit_dtype":
        out["dtypes"][k] = v
        continue
    a, b = np.asarray(on[k], dtype=np.float64), np.asarray(v)
    out["dtypes"][k] = str(b.dtype)
    out["rel"][k] = float(np.max(np.abs(b - a) / np.maximum(np.abs(a), 1e-300)))

calls = {
    "float32_theta": lambda: interlace.deviance(jnp.asarray(theta), ma),
    "jit": lambda: jax.jit(interlace.deviance)(theta, ma),
    "grad": lambda: jax.grad(interlace.deviance)(theta, ma),
    "vmap": lambda: jax.vmap(interlace.deviance, in_axes=(0, None))(np.stack([theta] * 2), ma),
    "closed_over_jit": lambda: jax.jit(lambda: interlace.deviance(theta, ma))(),
    "jit_fit_arrays": lambda: jax.jit(interlace.fit_arrays)(ma),
}
for name, call in calls.items():
    try:
        call()
        out["errors"][name] = None
    except interlace.PrecisionError as exc:
        out["errors"][name] = str(exc)
with jax.enable_x64(True):  # the documented way to trace with float64 off elsewhere
    scoped = jax.jit(interlace.deviance)(theta, ma)
out["scoped_jit_rel"] = float(abs(scoped / np.float64(on["deviance"]) - 1))
out["scoped_jit_dtype"] = str(scoped.dtype)
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def x64_off_run():
    """Run ``_SCRIPT`` in a fresh process (the worktree's interlace on its path)."""
    root = str(Path(interlace.__file__).resolve().parents[1])
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def test_fit_is_float64_with_x64_turned_off(x64_off_run):
    # 1e-10 relative: the float32 fit of this model is ~1e-7 off (2049.0 vs 2049.0002)
    assert x64_off_run["rel"]["fit_deviance"] < 1e-10
    assert x64_off_run["dtypes"]["fit_dtype"] == "float64"
    assert x64_off_run["x64_after"] is False  # the caller's setting is restored


@pytest.mark.parametrize(
    "name",
    [
        "deviance",
        "loglik",
        "blups",
        "profiled_deviance",
        "fit_arrays_deviance",
        "fit_arrays_theta",
        "simulate",
        "bootstrap_se",
    ],
)
def test_functional_layer_is_float64_with_x64_turned_off(x64_off_run, name):
    """Called eagerly with float64 arrays, the functions compute in float64: results
    equal the x64-on ones to 1e-10 relative (identical computations: usually 0)."""
    assert x64_off_run["dtypes"][name] == "float64", name
    assert x64_off_run["rel"][name] < 1e-10, name


@pytest.mark.parametrize(
    "name", ["float32_theta", "jit", "grad", "vmap", "closed_over_jit", "jit_fit_arrays"]
)
def test_float32_traces_raise_a_clear_error(x64_off_run, name):
    """Inside a transformation traced with float64 off (or given a float32 array) the
    functional layer cannot compute in float64: it refuses and says how to enable it."""
    msg = x64_off_run["errors"][name]
    assert msg is not None, f"{name}: no PrecisionError"
    assert 'jax.config.update("jax_enable_x64", True)' in msg
    assert "with jax.enable_x64(True):" in msg


def test_tracing_inside_enable_x64_scope_works(x64_off_run):
    assert x64_off_run["scoped_jit_dtype"] == "float64"
    assert x64_off_run["scoped_jit_rel"] < 1e-12


# --- in this process (float64 off, JAX's default: importing interlace leaves it so) ------
@pytest.fixture(scope="module")
def page_arrays(page_df):
    return interlace.model_arrays(PAGE_FORMULA, page_df, PAGE_GROUPS)


def test_float32_array_is_refused_even_with_x64_on(page_arrays):
    with jax.enable_x64(True):
        theta32 = jnp.asarray(np.array([0.6, 0.3]), dtype=jnp.float32)
        with pytest.raises(
            interlace.PrecisionError,
            match=r"'theta' holds a float32 array.*"
            r"jnp\.float64",
        ):
            interlace.deviance(theta32, page_arrays)
        y32 = page_arrays.y.astype(jnp.float32)
        with pytest.raises(interlace.PrecisionError, match="'model' holds a float32"):
            interlace.fit_arrays(page_arrays.replace(y=y32))
    assert issubclass(interlace.PrecisionError, interlace.InterlaceError)


def test_python_scalars_are_taken_as_float64(page_arrays):
    # exact: the same float64 computation
    theta, beta = np.array([0.6, 0.3]), np.array([50.0, 2.0, 3.0])
    a = interlace.loglik(beta, theta, 4.0, page_arrays)
    b = interlace.loglik(beta, theta, np.float64(4.0), page_arrays)
    assert a.dtype == jnp.float64 and float(a) == float(b)


# Every public entry point that computes runs in float64 whatever the flag says.
_SCOPED = [
    "fit",
    "fit_many",
    "model_arrays",
    "cross_products",
    "anova",
    "hlm_resid",
    "leverage",
    "cooks_distance",
    "n_influential",
    "hlm_influence",
    "shard_rows",
    "shard_leading",
]
_FUNCTIONAL = ["deviance", "loglik", "blups", "fit_arrays", "profiled_deviance"]
_METHODS = [
    "bootstrap_se",
    "coef_table",
    "confint",
    "simulate",
    "parametric_bootstrap",
    "cluster_bootstrap",
    "pigeonhole_bootstrap",
]


@pytest.mark.parametrize(
    "name", _SCOPED + _FUNCTIONAL + [f"CrossedLMEResult.{m}" for m in _METHODS]
)
def test_entry_points_are_wrapped_and_documented(name):
    obj = interlace
    for part in name.split("."):
        obj = getattr(obj, part)
    assert hasattr(obj, "__wrapped__"), f"{name} is not wrapped by interlace._base.precision"
    assert "Precision:" in obj.__doc__
    if name in _FUNCTIONAL:
        assert "PrecisionError" in obj.__doc__


def test_scope_restores_the_setting_after_an_exception():
    from interlace._base.precision import float64_scope

    @float64_scope
    def boom():
        assert jax.config.jax_enable_x64
        raise RuntimeError("inside")

    assert not jax.config.jax_enable_x64  # importing interlace left JAX's default
    with pytest.raises(RuntimeError, match="inside"):
        boom()
    assert not jax.config.jax_enable_x64
