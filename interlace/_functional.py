"""The public functional layer: pure JAX functions of a model's arrays.

Build a model's arrays once with :func:`model_arrays` (the pandas/formula edge), then
use plain functions of arrays that compose with ``jax.jit``, ``jax.grad`` and
``jax.vmap``: the profiled deviance of ``theta``, the full log-likelihood of
``(beta, theta, sigma)``, the BLUPs, and :func:`fit_arrays`, a fit whose estimates are
differentiable in the data by the implicit function theorem. ``theta`` is in the
user's term order with lme4's layout (:mod:`interlace._core.theta`), as in
``CrossedLMEResult.theta``.

Precision, one rule (:mod:`interlace._base.precision`): where interlace builds the
arrays (:func:`model_arrays`, :func:`fit_many`, which converts ``responses`` to float64
as :func:`interlace.fit` converts data columns) it computes in float64 whatever
``jax_enable_x64`` says. Functions of your arrays (:func:`deviance`, :func:`loglik`,
:func:`blups`, :func:`fit_arrays`) compute in float64 when called eagerly with float64
arrays (numpy, or JAX arrays from :func:`model_arrays`), and refuse a float32 array, or
being traced by your ``jax.jit``/``grad``/``vmap`` with float64 off, with a
:class:`~interlace.PrecisionError` that says how to turn float64 on
(``jax.config.update("jax_enable_x64", True)``, or ``with jax.enable_x64(True):``
around your transformation). Never a silent float32 fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._base.checks import check_method
from ._base.errors import DataError
from ._base.precision import float64_functional, float64_scope
from ._core.arrays import ModelArrays, cross_products_of, theta_to_internal
from ._core.deviance import blups_by_term, estimates, log_likelihood, profiled_deviance
from ._core.fitting import ArrayFit, fit_arrays, fit_values
from ._core.refit import deviance_statistic, refit_all, warn_unconverged
from ._model.design import build_design
from ._model.estimate import design_arrays
from ._model.frames import as_pandas, is_frame

__all__ = ["model_arrays", "deviance", "loglik", "blups", "fit_arrays", "fit_many", "ArrayFit"]


@float64_scope
def model_arrays(formula: str, data: Any, groups: str | Sequence[str] | None = None) -> ModelArrays:
    """The arrays of a model (a pytree): response, fixed and random-term columns, unit
    weights and the index structure of its cross-products. Same formula syntax and
    input checks as :func:`interlace.fit`."""
    return design_arrays(build_design(formula, data, groups))


@float64_functional
def deviance(theta: jnp.ndarray, model: ModelArrays, *, reml: bool = True) -> jnp.ndarray:
    """Profiled deviance at ``theta`` (lme4's REML criterion or ML deviance)."""
    return profiled_deviance(theta_to_internal(theta, model), cross_products_of(model), reml=reml)


@float64_functional
def loglik(
    beta: jnp.ndarray, theta: jnp.ndarray, sigma: jnp.ndarray, model: ModelArrays
) -> jnp.ndarray:
    """Full ML log-likelihood of ``(beta, theta, sigma)`` (not profiled)."""
    return log_likelihood(beta, theta_to_internal(theta, model), sigma, cross_products_of(model))


@float64_functional
def blups(theta: jnp.ndarray, model: ModelArrays, *, reml: bool = True) -> list[jnp.ndarray]:
    """BLUPs at ``theta``: one ``(levels, k)`` array per term, in the user's order."""
    cp = cross_products_of(model)
    return blups_by_term(estimates(theta_to_internal(theta, model), cp, reml=reml), cp)


@float64_scope
def fit_many(
    formula: str,
    data: Any,
    responses: pd.DataFrame | ArrayLike,
    groups: str | Sequence[str] | None = None,
    method: str = "REML",
    *,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Fit one model per response column, all sharing ``formula``'s design, with one
    compiled, vectorised call per batch (``jax.vmap`` of :func:`fit_arrays`), warm-started
    and preconditioned at the fit of the first response. ``batch_size`` defaults to all
    responses for small models, else at most ``MAX_BATCH`` and fewer for large tails (see
    :func:`interlace._core.refit.default_batch_size`); any batch size is safe.

    ``data`` is any frame :func:`interlace.fit` accepts; ``responses`` is an ``(n, B)``
    array or a frame (pandas, polars, pyarrow, a dict of columns) whose rows align with
    ``data`` (rows ``data`` drops for missing values are dropped from it too), converted
    to float64 (a float32 array is widened, as data columns are in :func:`interlace.fit`;
    the fits are float64 whatever ``jax_enable_x64`` says). Returns a
    DataFrame with one row per response: fixed effects, theta (lme4's names), sigma,
    deviance and converged.
    """
    reml = check_method(method) == "REML"
    data = as_pandas(data, "data")
    design = build_design(formula, data, groups)
    model = design_arrays(design)
    frame = (
        as_pandas(responses, "responses")
        if is_frame(responses)
        else pd.DataFrame(np.asarray(responses), index=data.index)
    )
    if len(frame) != len(data):
        raise DataError(f"responses has {len(frame)} rows but data has {len(data)}.")
    frame = frame.set_axis(data.index, axis=0)
    Y = frame.loc[design.row_index].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(Y)):
        raise DataError("responses contain NaN or infinite values in rows the model uses.")

    theta0 = fit_values(
        model.replace(y=jnp.asarray(Y[:, 0])), reml=reml
    ).theta  # a warm start shared by the batch
    out = refit_all(
        model,
        jnp.asarray(Y.T),
        theta0,
        reml=reml,
        statistic=deviance_statistic,
        batch_size=batch_size,
    )
    table = pd.DataFrame(out.beta, columns=list(model.fe_names), index=frame.columns)
    for j, name in enumerate(model.theta_names):
        table[name] = out.theta[:, j]
    table["sigma"] = out.sigma
    table["deviance"] = out.statistic[:, 0]
    table["converged"] = out.converged
    warn_unconverged(out.converged, "fits")
    return table
