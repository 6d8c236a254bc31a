"""Satterthwaite degrees of freedom for fixed effects (lmerTest's method).

For a contrast ``l`` (here each coefficient), with variance parameters
``psi = (theta, sigma)`` and ``v(psi) = l' C(psi) l``, ``C = sigma^2 (L_X L_X')^-1``:

    df = 2 v^2 / (g' A g),   g = dv / dpsi,   A = 2 H^-1,

where ``H`` is the Hessian of the (REML or ML) deviance in ``psi`` (Kuznetsova,
Brockhoff & Christensen 2017, JSS 82(13), eqs. 6-8). lmerTest differentiates
numerically; here ``g`` and ``H`` come from autodiff.

``df`` does not depend on how ``psi`` is parametrised (``g' H^-1 g`` is invariant under
``psi' = S psi``), so it is computed where the fit searched ``theta``: ``theta' = s
theta`` (each column's size and the weights' scale, :func:`_search_scale`). In ``theta``'s
raw units a slope on a covariate in units of 1e8 has a Hessian entry 1e16 times the
intercept's, past what a float64 inverse resolves: its intercept's ``df`` came out 4e9
instead of 29 (``tests/test_satterthwaite_units.py``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.jit import jit
from .._core.deviance import deviance_varpar, vcov_beta
from .._core.theta import to_internal, weight_scale
from .._model.estimate import ModelFit, user_theta_scales

__all__ = ["satterthwaite"]


@partial(jit, static_argnames=("ks", "order", "reml"))
def _derivatives(psi, scale, cp, *, ks, order, reml):
    """``H`` (the deviance's Hessian in ``psi``), ``C(psi)`` and ``J = d diag(C) / d psi``,
    as one compiled call (3.5 s to compile on sleepstudy, where running the same
    autodiff op by op took 22 s). ``psi = (scale * theta, sigma)`` (module docstring)."""

    def internal(theta):
        return to_internal(theta / scale, list(ks), order)

    def deviance(v):
        return deviance_varpar(internal(v[:-1]), v[-1], cp, reml=reml)

    def cov(v):
        return vcov_beta(internal(v[:-1]), v[-1], cp)

    H = jax.jacrev(jax.grad(deviance))(psi)
    J = jax.jacrev(lambda v: jnp.diagonal(cov(v)))(psi)  # (p, len(psi))
    return H, cov(psi), J


def satterthwaite(fit: ModelFit) -> pd.DataFrame:
    """Estimate, Std. Error, df, t value and Pr(>|t|) per fixed effect (lmerTest's
    ``summary`` table) for a fitted model (its cross-products, as searched)."""
    # on the columns the fit searched (centred random slopes far from 0): ``df`` does not
    # depend on how psi is parametrised, and there the derivatives keep their digits
    cp = fit.search_cross_products
    scale = _search_scale(fit)
    psi = jnp.concatenate([jnp.asarray(fit.search_theta * scale), jnp.asarray([fit.sigma])])
    H, C, J = _derivatives(
        psi, jnp.asarray(scale), cp, ks=tuple(fit.ks), order=tuple(cp.order), reml=fit.reml
    )
    A = 2.0 * jnp.linalg.pinv(0.5 * (H + H.T))
    var = jnp.diagonal(C)
    df = np.asarray(2.0 * var**2 / jnp.einsum("ij,jk,ik->i", J, A, J))
    beta = fit.beta
    se = np.sqrt(np.asarray(var))
    t = beta / se
    from scipy.special import stdtr  # Student t cdf; scipy is imported on use

    return pd.DataFrame(
        {
            "Estimate": beta,
            "Std. Error": se,
            "df": df,
            "t value": t,
            "Pr(>|t|)": 2.0 * stdtr(df, -np.abs(t)),
        },
        index=pd.Index(fit.design.fe_names),
    )


def _search_scale(fit: ModelFit) -> np.ndarray:
    """Per ``theta`` entry (user order), the scale the fit searched it in: its column's
    (:func:`~interlace._model.estimate.user_theta_scales`) times the weights'
    (:func:`~interlace._core.theta.weight_scale`), as ``_model.estimate`` searches."""
    return user_theta_scales(fit.design.terms) * weight_scale(fit.design.weights)
