"""Simulation from a fitted model and the parametric bootstrap (lme4's ``simulate`` and
``bootMer(type = "parametric")``), vectorised.

Responses are drawn with new random effects and residuals
(:mod:`interlace._core.simulate`); the bootstrap refits the model to every simulated
response with :func:`~interlace._core.refit.refit_all` (one compiled batch per chunk),
warm-started at the fitted ``theta``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._base.checks import check_n_bootstrap
from .._base.progress import progress_bar
from .._base.seeds import key_from_seed
from .._core.crossprod import device_array
from .._core.refit import chunk_plan, chunk_rows, refit_all
from .._core.simulate import simulate_responses
from .._model.estimate import ModelFit
from .replicates import BootstrapResult, bootstrap_result

__all__ = ["simulate_from", "model_responses", "parametric_bootstrap"]


def simulate_from(fit: ModelFit, n: int, key) -> jnp.ndarray:
    """``(n, nobs)`` responses simulated from ``fit``'s model (new random effects and
    residuals, lme4's ``simulate(fit)``), offsets included; residual variances
    ``sigma^2 / w_i`` with prior weights."""
    d = fit.design
    Y = simulate_responses(
        key,
        device_array(d.X),
        device_array(fit.beta),
        device_array(fit.sigma),
        device_array(fit.theta),
        tuple(device_array(t.codes) for t in d.terms),
        tuple(device_array(t.X) for t in d.terms),
        None if d.weights is None else device_array(1.0 / np.sqrt(d.weights)),
        n=int(n),
        ks=tuple(t.k for t in d.terms),
        nlevels=tuple(len(t.levels) for t in d.terms),
    )
    return Y if d.offset is None else Y + device_array(d.offset)


def model_responses(fit: ModelFit, Y: jnp.ndarray) -> jnp.ndarray:
    """Responses ``Y`` (rows) as ``fit``'s model arrays hold them: less the offset."""
    offset = fit.design.offset
    return Y if offset is None else Y - device_array(offset)


def parametric_bootstrap(
    fit: ModelFit,
    n_bootstrap: int = 1000,
    seed=None,
    statistic: Callable | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> BootstrapResult:
    """Refit ``fit``'s model to ``n_bootstrap`` simulated responses (module doc).

    ``statistic(params) -> array`` is JAX-traceable; ``params`` (an
    :class:`~interlace._core.fitting.ArrayFit`) has ``beta``, ``theta``, ``sigma`` of one
    refit. Chunks keep at most ``chunk_size x nobs`` simulated values in memory (default:
    about 2^22 numbers); they are of equal, balanced sizes (:func:`chunk_plan`), so only a
    few surplus responses are simulated and refitted. ``progress``: see
    :mod:`interlace._base.progress`.
    """
    n_bootstrap = check_n_bootstrap(n_bootstrap)
    model = fit.search_arrays
    theta0 = np.asarray(fit.theta, np.float64)
    n_chunks, chunk = chunk_plan(
        model, n_bootstrap, int(chunk_size or chunk_rows(model, n_bootstrap, fit.nobs))
    )
    key = key_from_seed(seed)
    parts = []
    with progress_bar(n_bootstrap, "parametric bootstrap", progress) as bar:
        for _ in range(n_chunks):
            key, sub = jax.random.split(key)
            Y = model_responses(fit, simulate_from(fit, chunk, sub))
            parts.append(
                refit_all(
                    model,
                    Y,
                    theta0,
                    reml=fit.reml,
                    statistic=statistic,
                    bar=bar,
                    centring=fit.centring,
                )
            )
    return bootstrap_result(fit, parts, statistic, n_bootstrap)
