"""Shared fixtures: expensive fits are made once per session and reused."""

from __future__ import annotations

import os

# The dense reference (tests/dense_reference.py) makes many small BLAS calls; OpenBLAS's
# thread pool only adds contention on a 2-core machine. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# `make test` runs one pytest-xdist worker per core, each its own JAX process: on a GPU,
# the first to start would otherwise reserve most of the device's memory for itself
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import contextlib  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import interlace  # noqa: E402

DATA = Path(__file__).parent / "data"
PAGE_FORMULA = "score ~ hours_studied + prior_gpa"
PAGE_GROUPS = ["student_id", "school_id"]


def fit_quiet(*args, **kwargs):
    """interlace.fit with its warnings recorded; returns (result, [warning messages])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = interlace.fit(*args, **kwargs)
    return result, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def float64_throughout():
    """JAX float64 on for a whole module (``pytestmark = pytest.mark.usefixtures(
    "float64_throughout")``): only for low-level tests of private ``_core`` functions, which
    make JAX arrays and call unscoped internals throughout. Everything else relies on the
    public entry points' own float64 scopes (``interlace._base.precision``), or wraps its
    own array-making in ``with jax.enable_x64(True):``; importing interlace leaves
    ``jax_enable_x64`` off, and so does the suite."""
    import jax

    with jax.enable_x64(True):
        yield


@contextlib.contextmanager
def backend_compiles():
    """The XLA executables built inside the block, as a list of ``jax.monitoring`` event
    names (count them; never time them)."""
    import jax

    compiles: list[str] = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def exact_glmm_deviance(fit, formula: str, data, family, nagq: int) -> float:
    """``-2 logLik`` of ``formula`` on ``data`` at ``fit``'s estimates, evaluated at the
    model's own shapes and fixed-effect width (``GlmmProblem(shared=False)``): the
    reference a fit through shared compiled code (size classes, padded widths) must
    equal."""
    import numpy as np

    from interlace._core.theta import to_internal
    from interlace._model.glmm_design import build_glmm_design
    from interlace._model.glmm_estimate import GlmmProblem

    exact = GlmmProblem(build_glmm_design(formula, data, None, family), family, nagq, shared=False)
    theta = to_internal(np.asarray(fit.model_fit.theta), exact.ks, exact.order)
    beta_s = exact.standardized_beta(fit.fe_params.to_numpy())
    x = theta if nagq == 0 else np.concatenate([theta, beta_s])
    return float(exact.fun(nagq == 0)(x)[0])


@pytest.fixture(scope="session")
def page_df():
    return interlace.datasets.exam_scores()


@pytest.fixture(scope="session")
def page_fit(page_df):
    return fit_quiet(PAGE_FORMULA, data=page_df, groups=PAGE_GROUPS)


@pytest.fixture(scope="session")
def page_result(page_fit):
    return page_fit[0]


@pytest.fixture(scope="session")
def lme4_refs():
    path = DATA / "lme4_references.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: regenerate it with tests/data/make_lme4_references.R")
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module. Every executable keeps
    its machine code in memory mappings of its own, and one process that runs the whole
    suite compiles a few thousand: the process's mappings then pass the kernel's
    ``vm.max_map_count`` (65,530 here) and XLA aborts in the middle of a compile
    ("Fatal Python error: Aborted"). Session fixtures keep their results (plain arrays and
    pandas objects); a module that needs a function again recompiles it, or loads it
    from the persistent compilation cache."""
    yield
    import jax

    jax.clear_caches()
