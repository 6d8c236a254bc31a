"""The outcome of a refit bootstrap: :class:`BootstrapResult` and its table of replicates.

Parametric (:mod:`interlace._inference.parametric`), cluster and pigeonhole
(:mod:`interlace._inference.resample`) bootstraps all refit the model with
:func:`~interlace._core.refit.refit_all` and report here: one row per refit with the
fixed effects, lme4's ``sd_*``/``cor_*``/``sigma``, the ``theta`` entries and any
``statistic`` columns, plus the same quantities at the original fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.checks import check_level
from .._base.errors import ModelSpecError
from .._core.fitting import ArrayFit
from .._core.refit import RefitBatch, warn_unconverged
from .._model.estimate import ModelFit
from .._model.varcorr import sdcor_names, sdcor_values

__all__ = ["BootstrapResult", "bootstrap_result"]


@dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a refit bootstrap: one row per refit.

    ``replicates`` has the fixed effects, ``sd_*``/``cor_*``/``sigma`` (lme4's names),
    ``theta`` entries and any ``statistic`` columns; ``converged`` flags each refit.
    """

    replicates: pd.DataFrame
    converged: np.ndarray
    estimate: pd.Series  # the same quantities at the original fit

    @property
    def n_bootstrap(self) -> int:
        return len(self.replicates)

    def se(self) -> pd.Series:
        """Bootstrap standard errors: sd (ddof=1) of converged replicates."""
        return self.replicates[self.converged].std(ddof=1)

    def conf_int(self, method: str = "percentile", level: float = 0.95) -> pd.DataFrame:
        """``percentile``: quantiles of the replicates; ``basic``: ``2 est - quantiles``
        (Davison & Hinkley 1997, eqs. 5.6 and 5.18)."""
        a = (1 - check_level(level)) / 2
        reps = self.replicates[self.converged]
        lo, hi = reps.quantile(a), reps.quantile(1 - a)
        if method == "basic":
            lo, hi = 2 * self.estimate - hi, 2 * self.estimate - lo
        elif method != "percentile":
            raise ModelSpecError(f"method must be 'percentile' or 'basic', got {method!r}.")
        return pd.DataFrame({f"{100 * a:g} %": lo, f"{100 * (1 - a):g} %": hi})


def bootstrap_result(
    fit: ModelFit, parts: list[RefitBatch], statistic, n_bootstrap: int
) -> BootstrapResult:
    """A :class:`BootstrapResult` of the first ``n_bootstrap`` refits in ``parts``, with
    the same quantities at the original ``fit`` as its ``estimate``."""
    reps = RefitBatch.concatenate(parts, n_bootstrap)
    table = _table(fit, reps.beta, reps.theta, reps.sigma, reps.statistic)
    est_extra = np.zeros(0)
    if statistic is not None:
        at_fit = ArrayFit(
            beta=jnp.asarray(fit.beta),
            theta=jnp.asarray(fit.theta),
            sigma=jnp.asarray(fit.sigma),
            deviance=jnp.asarray(fit.deviance),
            fe_cov=jnp.asarray(fit.fe_cov),
            converged=jnp.asarray(fit.converged),
        )
        est_extra = np.atleast_1d(np.asarray(statistic(at_fit)))
    estimate = _table(
        fit, fit.beta[None], fit.theta[None], np.array([fit.sigma]), est_extra[None]
    ).iloc[0]
    warn_unconverged(reps.converged, "bootstrap refits")
    return BootstrapResult(
        replicates=table, converged=reps.converged.astype(bool), estimate=estimate
    )


def _table(fit: ModelFit, beta, theta, sigma, extra) -> pd.DataFrame:
    terms = fit.design.terms
    table = pd.DataFrame(beta, columns=list(fit.design.fe_names))
    sdcor = sdcor_values(theta, sigma, terms)
    for j, name in enumerate(sdcor_names(terms)):
        table[name] = sdcor[:, j]
    for j, name in enumerate(fit.theta_names):
        table[f"theta_{name}"] = theta[:, j]
    for j in range(extra.shape[1] if extra.ndim == 2 else 0):
        table[f"statistic_{j}"] = extra[:, j]
    return table
