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

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ._base.checks import check_method, check_positive_int
from ._base.errors import DataError, ModelSpecError
from ._base.precision import float64_functional, float64_scope
from ._core.arrays import ModelArrays, cross_products_of, theta_to_internal
from ._core.centring import slope_centring
from ._core.crossprod import device_array
from ._core.deviance import blups_by_term, estimates, log_likelihood, profiled_deviance
from ._core.family import Family
from ._core.fitting import ArrayFit, fit_arrays
from ._core.refit import deviance_statistic, refit_all, warn_unconverged
from ._fit import check_nagq, resolve_family
from ._model.design import Design
from ._model.estimate import centred_design, design_arrays, fit_design, start_values
from ._model.frames import as_pandas, is_frame
from ._model.glmm_design import build_glmm_design, check_responses
from ._model.glmm_estimate import no_overdispersion
from ._model.glmm_many import degenerate_responses, fit_glmm_many
from ._model.offsets import aligned, row_labels
from ._model.weighted_design import build_lmm_design

__all__ = ["model_arrays", "deviance", "loglik", "blups", "fit_arrays", "fit_many", "ArrayFit"]


@float64_scope
def model_arrays(
    formula: str,
    data: Any,
    groups: str | Sequence[str] | None = None,
    *,
    weights: Any = None,
    offset: Any = None,
) -> ModelArrays:
    """The arrays of a model (a pytree): response, fixed and random-term columns, unit
    row multiplicities, prior weights (``weights=``, residual variance ``sigma^2 / w_i``)
    and the index structure of its cross-products. Same formula syntax and input checks
    as :func:`interlace.fit`; with offsets, the response held is ``y`` less the
    offset."""
    design = build_lmm_design(formula, data, groups, weights, offset)
    # fit_arrays searches random-slope columns far from 0 centred, as interlace.fit does
    return dataclasses.replace(design_arrays(design), centring=slope_centring(design.terms))


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
    method: str | None = None,
    *,
    family: str | Family = "gaussian",
    nAGQ: int = 1,  # noqa: N803 (lme4's name)
    weights: Any = None,
    offset: Any = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Fit one model per response column, all sharing ``formula``'s design, with one
    compiled, vectorised call per batch (``jax.vmap``): genes x cells, simulations,
    refits.

    ``data`` is any frame :func:`interlace.fit` accepts; ``responses`` is an ``(n, B)``
    array or a frame (pandas, polars, pyarrow, a dict of columns) whose rows align with
    ``data`` (rows ``data`` drops for missing values are dropped from it too; a pandas
    frame, or a Series for one response, with pandas ``data`` is matched to its rows by
    index label, as pandas aligns, and may hold more rows), converted
    to float64 (a float32 array is widened, as data columns are in :func:`interlace.fit`;
    the fits are float64 whatever ``jax_enable_x64`` says). The formula's response names
    a column of ``data`` or, if ``data`` has no such column, stands for the responses.

    Linear mixed models (``family="gaussian"``; ``method`` ``"REML"``, the default, or
    ``"ML"``; ``weights`` and ``offset`` as in :func:`interlace.fit`, shared by every
    response): :func:`fit_arrays` under ``vmap``, warm-started and preconditioned at the
    fit of the first response. One row per response: fixed effects, theta (lme4's
    names), sigma, deviance (the REML criterion or ``-2 logLik``, as the single fit's),
    ``llf`` and converged.

    GLMMs (``family``, ``nAGQ``, ``weights``, ``offset`` as in :func:`interlace.fit`; the
    weights and offset are shared by every response): each response fitted as
    :func:`interlace.fit` fits it (the same objective and optimum), by a compiled L-BFGS
    under ``vmap``, in lanes that take the next response when a fit stops; responses
    after the first batch start from the converged fits' typical theta
    (:mod:`interlace._model.glmm_many`). One row per response: fixed effects, theta,
    ``size`` (negative binomial), ``deviance`` and ``llf`` (as :class:`GLMMResult`'s:
    lme4's ``deviance()``, the sum of squared deviance residuals at the modes, and its
    ``logLik``; compare models by ``-2 llf``) and converged; no standard errors. A
    response no GLMM can fit (all counts 0, or one binomial outcome only) gets a row of
    NaN with ``converged=False`` and a warning; negative-binomial responses whose size
    runs off toward infinity (no overdispersion: Poisson counts) are named in one.

    ``batch_size`` (responses fitted side by side: a batch, or a GLMM's lanes) has a
    default that bounds memory; any batch size is safe.
    """
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    fam = resolve_family(family, method, nAGQ, weights, offset)
    if isinstance(responses, pd.Series):  # one response: a column named as the Series
        responses = responses.to_frame()
    # a pandas frame of responses is matched to pandas data's rows by index label
    labels = row_labels(data) if isinstance(responses, pd.DataFrame) else None
    data = as_pandas(data, "data")
    frame = (
        as_pandas(responses, "responses")
        if is_frame(responses)
        else pd.DataFrame(np.asarray(responses))
    )
    if frame.ndim != 2 or frame.shape[1] == 0:
        raise DataError("responses needs one column per response, and at least one.")
    frame = aligned(frame, labels, "responses")
    if len(frame) != len(data):
        raise DataError(f"responses has {len(frame)} rows but data has {len(data)}.")
    frame = frame.set_axis(data.index, axis=0)
    data = _with_response(formula, data, frame, fam)
    if fam is not None:
        nagq = check_nagq(nAGQ)
        return _fit_many_glmm(formula, data, frame, groups, fam, nagq, weights, offset, batch_size)
    method = check_method("REML" if method is None else method)
    reml = method == "REML"
    design = build_lmm_design(formula, data, groups, weights, offset)
    # the refits search random-slope columns far from 0 centred, as a single fit does
    centring = slope_centring(design.terms)
    model = design_arrays(design if centring is None else centred_design(design, centring))
    Y = _response_matrix(frame, design.row_index)
    theta0 = _warm_start(design, Y, method)
    if design.offset is not None:
        Y = Y - design.offset[:, None]  # the model arrays hold responses less the offset
    out = refit_all(
        model,
        device_array(Y.T),
        theta0,
        reml=reml,
        statistic=deviance_statistic,
        batch_size=batch_size,
        centring=centring,
    )
    table = pd.DataFrame(out.beta, columns=list(model.fe_names), index=frame.columns)
    for j, name in enumerate(model.theta_names):
        table[name] = out.theta[:, j]
    table["sigma"] = out.sigma
    table["deviance"] = out.statistic[:, 0]
    table["llf"] = -0.5 * out.statistic[:, 0]
    table["converged"] = out.converged
    warn_unconverged(out.converged, "fits")
    return table


def _warm_start(design: Design, Y: np.ndarray, method: str, tries: int = 5) -> np.ndarray:
    """``theta`` (user's order) shared by a batch as its start: the first response among
    the first ``tries`` that fits (finite and converged) fitted as :func:`interlace.fit`
    fits it (the host optimiser over the size class's compiled evaluation, which a
    session has usually compiled already), else the moment start. A constant first
    response, say, would otherwise start every refit from NaN."""
    for j in range(min(tries, Y.shape[1])):
        if np.ptp(Y[:, j]) == 0.0:
            continue
        fit = fit_design(dataclasses.replace(design, y=Y[:, j]), method, warn=False)
        if fit.converged and np.all(np.isfinite(fit.theta)):
            return fit.theta
    return start_values(design)


def _response_matrix(frame: pd.DataFrame, rows: pd.Index) -> np.ndarray:
    """The responses' rows the model uses, (n, B) float64, all finite."""
    try:
        Y = frame.loc[rows].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"responses must be numeric: {exc}") from exc
    bad = ~np.all(np.isfinite(Y), axis=0)
    if bad.any():
        cols = [str(c) for c in frame.columns[bad]]
        row = rows[int(np.argmax(~np.isfinite(Y[:, int(np.argmax(bad))])))]
        raise DataError(
            f"{len(cols)} response(s) have NaN or infinite values in rows the model uses: "
            f"{cols[:5]}{' ...' if len(cols) > 5 else ''} (first at row {row!r}). fit_many "
            "fits every response on the same rows: drop those rows from data and "
            "responses, or fit those responses one by one with interlace.fit, which drops "
            "a response's missing rows."
        )
    return Y


def _with_response(
    formula: str, data: pd.DataFrame, frame: pd.DataFrame, fam: Family | None
) -> pd.DataFrame:
    """``data``, or a copy in which the formula's response (a plain name that is not a
    column of ``data``) stands for the responses: the first one a model can fit, its
    missing or infinite values filled in (it only selects rows and passes the design's
    checks; every response is fitted, and checked under its own name: a response with a
    missing value, or outside the family's support, is refused naming it, whichever
    column it is)."""
    lhs = formula.split("~", 1)[0].strip() if isinstance(formula, str) else ""
    if not lhs.isidentifier() or lhs in data.columns:
        return data
    try:
        Y = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"responses must be numeric: {exc}") from exc
    fine = np.ones(Y.shape[1], dtype=bool)
    if fam is not None:
        Z = np.nan_to_num(Y, posinf=0.0, neginf=0.0)
        fine = ~degenerate_responses(Z, fam, np.ones(Y.shape[0]))
        fine &= np.all((Z >= 0) & ((Z <= 1) | (fam.name != "binomial")), axis=0)
        if not fine.any():
            # every response is degenerate (they become NaN rows) or out of the family's
            # support (refused by name later): a stand-in that any family accepts, 0 and 1
            # in turn
            return data.assign(**{lhs: np.where(np.arange(Y.shape[0]) % 2 == 0, 0.0, 1.0)})
    y = Y[:, int(np.argmax(fine))]
    finite = np.isfinite(y)
    return data.assign(**{lhs: np.where(finite, y, y[finite][0] if finite.any() else 0.0)})


# glmm_design.check_responses's warnings on responses that are not whole numbers
_NON_INTEGER = r"(The .* response .* has non-integer values|non-integer #successes)"


def _fit_many_glmm(
    formula: str,
    data: pd.DataFrame,
    frame: pd.DataFrame,
    groups: str | Sequence[str] | None,
    fam: Family,
    nagq: int,
    weights: Any,
    offset: Any,
    batch_size: int | None,
) -> pd.DataFrame:
    if formula.split("~", 1)[0].strip().startswith("cbind"):
        raise ModelSpecError(
            "fit_many takes each binomial response as a column of proportions, with the "
            "trials in weights= (shared by all responses), not cbind(successes, failures)."
        )
    with warnings.catch_warnings():
        # the design's response is a stand-in (one of the responses under the formula's
        # name): its non-integer warning would name the formula's placeholder, so the
        # responses are checked by their own names below
        warnings.filterwarnings("ignore", message=_NON_INTEGER, category=UserWarning)
        glmm = build_glmm_design(formula, data, groups, fam, weights=weights, offset=offset)
    Y = _response_matrix(frame, glmm.design.row_index)
    check_responses(Y, fam, glmm.prior_weights, frame.columns, stacklevel=5)
    out = fit_glmm_many(glmm, fam, Y, nagq=nagq, batch_size=batch_size)
    bad, B = out.degenerate, Y.shape[1]
    if bad.any():
        what = "all 0" if fam.name != "binomial" else "all one outcome"
        warnings.warn(
            f"{int(bad.sum())} of {B} responses are {what} in the rows the model uses "
            f"(e.g. {frame.columns[np.flatnonzero(bad)[0]]!r}): no {fam.name} GLMM can fit "
            "them (the intercept runs to infinity); their rows are NaN with converged=False.",
            UserWarning,
            stacklevel=4,  # user, float64_scope, fit_many, here
        )
    if fam.estimates_size:
        flat = np.array([no_overdispersion(k, Y[:, j]) for j, k in enumerate(out.size)])
        if flat.any():
            first = np.flatnonzero(flat)[0]
            warnings.warn(
                f"{int(flat.sum())} of {B} responses show no overdispersion beyond a "
                f"Poisson's (e.g. {frame.columns[first]!r}, size {out.size[first]:.3g}): "
                "their likelihood keeps rising toward an infinite size, where the model is "
                "a Poisson GLMM, so their size is wherever the optimizer stopped. Fit them "
                "with family='poisson'.",
                UserWarning,
                stacklevel=4,  # user, float64_scope, fit_many, here
            )
    table = pd.DataFrame(out.beta, columns=list(glmm.design.fe_names), index=frame.columns)
    for j, name in enumerate(out.theta_names):
        table[name] = out.theta[:, j]
    if fam.name == "negative_binomial":
        table["size"] = out.size
    table["deviance"] = out.deviance
    table["llf"] = -0.5 * out.minus_two_llf
    table["converged"] = out.converged
    separated = [j for j, cols in enumerate(out.separated) if cols]
    if separated:
        first = separated[0]
        warnings.warn(
            f"{len(separated)} of {B} responses are separated by fixed effects (e.g. "
            f"{frame.columns[first]!r} by {list(out.separated[first])}: fitted "
            f"{'probabilities reach 0 or 1' if fam.name == 'binomial' else 'means reach 0'} "
            "on one side of them): their maximum-likelihood estimates are infinite, so the "
            "finite values reported are not reliable; their rows have converged=False. Fit "
            "one with interlace.fit for details, or drop or coarsen those columns.",
            UserWarning,
            stacklevel=4,  # user, float64_scope, fit_many, here
        )
    unexplained = out.converged | np.array([bool(c) for c in out.separated])
    warn_unconverged(unexplained[~bad], "fits")
    return table
