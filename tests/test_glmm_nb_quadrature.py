"""A negative binomial whose size is estimated, fitted by adaptive Gauss-Hermite
quadrature (nAGQ > 1). lme4's quadrature deviance sums deviance residuals, which leave
out the density's terms in the size: minimised over the size too, it has no optimum (the
size ran to 1e-14 and -2 logLik to 7e-11, reported as converged; glmer.nb stops at its
search bound, size 0.099, on the same data). interlace then minimises the quadrature
approximation of -2 log L with the full density. Checked against the marginal likelihood
integrated directly, level by level, on a fine grid (no reference from lme4 exists)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln, logsumexp

import interlace


def _frame(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_g, per = 30, 20
    g = np.repeat(np.arange(n_g), per)
    x = rng.normal(size=g.size)
    mu = np.exp(1.0 + 0.5 * x + rng.normal(0, 0.7, n_g)[g])
    y = rng.poisson(rng.gamma(2.0, mu / 2.0))  # negative binomial, size 2
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})


def _minus_two_log_lik(df: pd.DataFrame, beta, sd: float, size: float) -> float:
    """-2 log L by direct integration over each level's random intercept:
    L_l = int prod_i NB(y_i | exp(x_i'beta + sd u), size) phi(u) du, on 8,001 points of
    [-12, 12] (the trapezoid rule's error on this smooth integrand is far below 1e-9)."""
    u = np.linspace(-12.0, 12.0, 8001)
    log_phi = -0.5 * u**2 - 0.5 * np.log(2 * np.pi)
    log_w = np.log(np.full(u.size, u[1] - u[0]))
    log_w[[0, -1]] -= np.log(2.0)
    total = 0.0
    for _, part in df.groupby("g"):
        y = part["y"].to_numpy(float)[:, None]
        eta = (beta[0] + beta[1] * part["x"].to_numpy())[:, None] + sd * u[None, :]
        mu = np.exp(eta)
        log_p = (
            gammaln(y + size)
            - gammaln(size)
            - gammaln(y + 1.0)
            + size * np.log(size / (size + mu))
            + y * np.log(mu / (size + mu))
        )
        total += logsumexp(log_p.sum(axis=0) + log_phi + log_w)
    return -2.0 * total


@pytest.mark.usefixtures("float64_throughout")
def test_estimated_size_by_quadrature_is_the_marginal_likelihoods_optimum():
    """Tolerances: the reported -2 logLik against the direct integral at the fitted
    parameters, 1e-7 relative (25 nodes per level); the size and fixed effects against
    the Laplace fit's, 5% and 0.05 (quadrature and Laplace differ a little, a collapsed
    size by orders of magnitude)."""
    df = _frame()
    laplace = interlace.fit("y ~ x + (1 | g)", df, family="negative_binomial")
    agq = interlace.fit("y ~ x + (1 | g)", df, family="negative_binomial", nAGQ=25)
    assert agq.converged
    mf = agq.model_fit
    sd = float(np.sqrt(agq.variance_components["g"]))  # a variance: theta^2 here
    direct = _minus_two_log_lik(df, np.asarray(agq.fe_params), sd, float(mf.size))
    assert -2 * agq.llf == pytest.approx(direct, rel=1e-7)
    assert mf.size == pytest.approx(laplace.model_fit.size, rel=0.05)
    np.testing.assert_allclose(agq.fe_params, laplace.fe_params, atol=0.05)
    # the size is the optimum of that likelihood: moving it 5% either way (beta and sd as
    # fitted) raises the direct integral
    for factor in (0.95, 1.05):
        moved = _minus_two_log_lik(df, np.asarray(agq.fe_params), sd, float(mf.size) * factor)
        assert moved > direct
