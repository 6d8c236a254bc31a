"""Boundary (singular) fits: lme4's ``isSingular`` rule on ``theta`` and its warning text."""

from __future__ import annotations

import numpy as np

from .theta import diagonal_mask

__all__ = ["SINGULAR_MESSAGE", "SINGULAR_TOL", "theta_is_singular", "fit_is_singular"]

# lme4's threshold for a diagonal theta (a relative sd) counted as zero.
SINGULAR_TOL = 1e-4

SINGULAR_MESSAGE = "boundary (singular) fit: see help(interlace.isSingular)"


def theta_is_singular(theta_diagonal, tol: float = SINGULAR_TOL) -> bool:
    """lme4's rule: a fit is singular when a ``theta`` with lower bound 0 (a diagonal
    entry of a relative covariance factor) is below ``tol``."""
    return bool(np.any(np.asarray(theta_diagonal) < tol))


def fit_is_singular(fit, tol: float = SINGULAR_TOL) -> bool:
    """:func:`theta_is_singular` of a fit (``ModelFit`` or ``GlmmFit``), judged on
    ``theta`` as the fit searched it: with random-slope columns far from 0 centred (its
    ``centring``, :mod:`interlace._core.centring`), where a covariance is near singular
    only if it is; on the original columns such a slope's ``theta`` is tiny at every
    fit."""
    theta = np.asarray(fit.theta, dtype=float)
    if fit.centring is not None:
        theta = fit.centring.to_centred_theta(theta)
    return theta_is_singular(theta[diagonal_mask([t.k for t in fit.design.terms])], tol)
