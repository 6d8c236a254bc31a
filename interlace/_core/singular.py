"""Boundary (singular) fits: lme4's ``isSingular`` rule and its warning text."""

from __future__ import annotations

import numpy as np

__all__ = ["SINGULAR_MESSAGE", "isSingular", "theta_is_singular"]

SINGULAR_MESSAGE = "boundary (singular) fit: see help(interlace.isSingular)"


def theta_is_singular(theta_diagonal, tol: float = 1e-4) -> bool:
    """lme4's rule: a fit is singular when a ``theta`` with lower bound 0 (a diagonal
    entry of a relative covariance factor) is below ``tol``."""
    return bool(np.any(np.asarray(theta_diagonal) < tol))


def isSingular(result, tol: float = 1e-4) -> bool:  # noqa: N802 (lme4's name)
    """Is the fit on the boundary of the parameter space?

    A fit is singular when a diagonal entry of some relative covariance factor (for
    an intercept, ``sigma_g / sigma``) is below ``tol`` (lme4's ``isSingular``): a
    variance is estimated as (essentially) zero, or for a vector-valued term the
    covariance matrix is rank deficient (e.g. a correlation of +-1). This is a valid
    estimate, not a failure: the data carry no evidence of that variation. Consider
    simplifying the random effects, or keep them for design reasons; inference about
    such a variance (e.g. Wald intervals) is unreliable at the boundary.
    """
    from .theta import diagonal_mask

    mask = diagonal_mask([t.k for t in result.design.terms])
    return theta_is_singular(result.theta.to_numpy()[mask], tol)
