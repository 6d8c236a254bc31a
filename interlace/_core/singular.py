"""Boundary (singular) fits: lme4's ``isSingular`` rule on ``theta`` and its warning text."""

from __future__ import annotations

import numpy as np

__all__ = ["SINGULAR_MESSAGE", "SINGULAR_TOL", "theta_is_singular"]

# lme4's threshold for a diagonal theta (a relative sd) counted as zero.
SINGULAR_TOL = 1e-4

SINGULAR_MESSAGE = "boundary (singular) fit: see help(interlace.isSingular)"


def theta_is_singular(theta_diagonal, tol: float = SINGULAR_TOL) -> bool:
    """lme4's rule: a fit is singular when a ``theta`` with lower bound 0 (a diagonal
    entry of a relative covariance factor) is below ``tol``."""
    return bool(np.any(np.asarray(theta_diagonal) < tol))
