"""``interlace.fit``: formula and data frame in, a fitted model out.

Pipeline for a linear mixed model (lme4's ``lmer``): :func:`build_design` (formula,
validation, arrays; lme4's ``lFormula``) -> :func:`fit_design` (cross-products, L-BFGS,
estimates: a :class:`ModelFit`) -> :meth:`CrossedLMEResult.from_fit` (pandas; lme4's
``mkMerMod``). For a binomial or Poisson model (lme4's ``glmer``):
:func:`build_glmm_design` -> :func:`fit_glmm_design` (PIRLS and the Laplace deviance)
-> :meth:`GLMMResult.from_fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base.checks import check_method, check_positive_int
from ._base.errors import ModelSpecError
from ._base.precision import float64_scope
from ._core.family import Family, family_of, split_family_call
from ._glmm_result import GLMMResult
from ._model.estimate import fit_design
from ._model.glmm_design import build_glmm_design
from ._model.glmm_estimate import fit_glmm_design
from ._model.weighted_design import build_lmm_design
from ._result import CrossedLMEResult

__all__ = ["fit"]


@float64_scope
def fit(
    formula: str,
    data: Any,  # a pandas, polars or pyarrow frame, or a dict of columns
    groups: str | Sequence[str] | None = None,
    method: str | None = None,
    *,
    family: str | Family = "gaussian",
    nAGQ: int = 1,  # noqa: N803 (lme4's name)
    weights: Any = None,
    offset: Any = None,
    maxiter: int = 500,
    verbose: bool = False,
) -> CrossedLMEResult | GLMMResult:
    """Fit a linear or generalized linear mixed model with crossed (or nested) random
    effects.

    Parameters
    ----------
    formula
        ``"y ~ x1 + x2"`` (formulaic syntax for the fixed part: categorical predictors,
        ``C(...)``, interactions, transforms, ``y ~ 1``), optionally with lme4 random
        terms: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``, ``(0 + x | g)``,
        ``(1 | a:b)``, ``(1 | a/b)``; ``offset(expr)`` terms (e.g.
        ``offset(np.log(hours))``) on the right. GLMMs also take
        ``cbind(successes, failures)`` on the left.
    data
        A pandas or polars DataFrame, a pyarrow Table (any eager frame narwhals reads) or
        a dict of equal-length columns; it is never modified. Rows with a missing value in
        a column the model uses are dropped with a warning that says how many.
    groups
        Column name(s) of crossed grouping factors, one random intercept each
        (shorthand for ``(1 | g)`` terms; may be combined with terms in the formula).
    method
        Linear mixed models: ``"REML"`` (the default, lme4's) or ``"ML"`` (for
        likelihood-ratio tests of fixed effects). GLMMs are fitted by maximum likelihood
        (``"ML"`` is accepted; REML is not defined for them).
    family
        ``"gaussian"`` (a linear mixed model, the default), ``"binomial"``, ``"poisson"``
        or ``"negative_binomial"`` (its size estimated, as lme4's ``glmer.nb``), or a
        family with its link or size: ``interlace.binomial("probit")``,
        ``interlace.binomial("cloglog")``, ``interlace.poisson()``,
        ``interlace.negative_binomial(size=2.0)``. As in R, ``family=interlace.binomial``
        (not called) is the family with its default link, and a string may take R's call
        form: ``'binomial(link = "probit")'``, ``"poisson()"``.
    nAGQ
        GLMMs, as lme4's ``nAGQ``: ``1`` (Laplace, the default), ``0`` (fixed effects
        inside PIRLS: faster, slightly less exact) or ``2``-``100`` (adaptive
        Gauss-Hermite quadrature; a model with one scalar random term, such as ``(1 | g)``);
        any integer type, or a float with an integer value.
    weights, offset
        Prior weights and a known part of the linear predictor, each a column name or
        one value per row of ``data`` (lme4's ``weights=``, ``offset=``); a pandas
        Series with pandas ``data`` is matched to its rows by index label, as pandas
        aligns (a Series lacking a row's label is refused). Linear models:
        row ``i``'s residual variance is ``sigma^2 / w_i`` (weights > 0); GLMMs: binomial
        trials for a proportion response, or a multiplier of each row's log-likelihood.
        Rows whose weight or offset is missing (NaN) are dropped, as rows with a missing
        value elsewhere (with the same warning; lme4's ``na.action``).
    maxiter
        Most L-BFGS iterations; a fit that stops there has ``converged=False``.
    verbose
        Print each iteration's deviance as the optimizer runs (linear models).

    Returns
    -------
    CrossedLMEResult or GLMMResult
        Warns ``boundary (singular) fit: see help(interlace.isSingular)`` when a
        variance is estimated at zero or a correlation at +-1 (lme4's rule).
    """
    fam = resolve_family(family, method, nAGQ, weights, offset)
    if fam is None:
        method = check_method("REML" if method is None else method)
        return CrossedLMEResult.from_fit(
            fit_design(
                build_lmm_design(formula, data, groups, weights, offset),
                method,
                maxiter=maxiter,
                stacklevel=4,
                verbose=verbose,
            )
        )
    glmm = build_glmm_design(formula, data, groups, fam, weights=weights, offset=offset)
    return GLMMResult.from_fit(
        fit_glmm_design(
            glmm,
            fam,
            nagq=check_nagq(nAGQ),
            maxiter=check_positive_int(maxiter, "maxiter"),
            stacklevel=5,
        )
    )


def is_gaussian(family: object) -> bool:
    """Whether ``family`` names the Gaussian family with its identity link, a linear mixed
    model: ``"gaussian"``, or in R's call form ``"gaussian()"``,
    ``'gaussian(link = "identity")'``. Another link is refused: interlace fits no
    Gaussian GLMM."""
    if not isinstance(family, str):
        return False
    name, link = split_family_call(family)
    if name.strip().lower() != "gaussian":
        return False
    if link is not None and link.lower() != "identity":
        raise ModelSpecError(
            f"family={family!r}: a Gaussian response with a {link!r} link is a GLMM interlace "
            "does not fit; model a transformed response with family='gaussian' instead."
        )
    return True


def resolve_family(
    family: str | Family,
    method: str | None,
    nAGQ: int,
    weights: Any,
    offset: Any,  # noqa: N803
) -> Family | None:
    """The family of a GLMM (``fit``'s arguments checked), or None for a Gaussian model
    (after refusing what applies to GLMMs only)."""
    if is_gaussian(family):
        if nAGQ != 1:
            raise ModelSpecError("nAGQ applies to GLMMs only (family='binomial' or 'poisson').")
        return None
    fam = family_of(family)
    if method is not None and str(method).upper() == "REML":
        raise ModelSpecError(
            f"method={method!r}: REML is not defined for a {fam.name} GLMM; it is fitted by "
            "maximum likelihood (leave method out, or pass method='ML')."
        )
    if method is not None and str(method).upper() != "ML":
        raise ModelSpecError(
            f"method={method!r} is unknown: method is 'REML' or 'ML' and chooses how a "
            f"Gaussian (linear) mixed model is fitted; a {fam.name} GLMM is fitted by "
            "maximum likelihood (leave method out, or pass method='ML')."
        )
    check_nagq(nAGQ)
    return fam


def check_nagq(nAGQ: Any) -> int:  # noqa: N803
    """``nAGQ`` as an int: 0, 1 or 2-100 given as any integer type or an integral float;
    anything else (a bool, 1.5, -1, 101) is a :class:`ModelSpecError`."""
    integral = isinstance(nAGQ, (int, np.integer)) or (
        isinstance(nAGQ, (float, np.floating)) and float(nAGQ).is_integer()
    )
    if isinstance(nAGQ, (bool, np.bool_)) or not integral or not 0 <= nAGQ <= 100:
        raise ModelSpecError(
            f"nAGQ={nAGQ!r}: use 1 (Laplace, the default), 0, or 2-100 quadrature points "
            "(one scalar random term only)."
        )
    return int(nAGQ)
