"""Likelihood-ratio tests between nested models: lme4's ``anova(m1, m2, ...)``.

Models are ordered by their number of parameters ``npar``; each row after the first
tests it against the row before: ``Chisq = 2 max(0, logLik_i - logLik_{i-1})`` on
``Df = npar_i - npar_{i-1}`` degrees of freedom, ``Pr(>Chisq)`` from the chi-squared
distribution. REML likelihoods of models with different fixed effects are not
comparable, so by default every REML fit is first refitted by ML (lme4's
``refit = TRUE``), and the output says so. With ``n_bootstrap``, two models are also
compared by a parametric bootstrap of the LR statistic under the smaller model
(p = (1 + #{LR* >= LR}) / (B + 1)), which is the better reference in small samples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.errors import ModelSpecError
from .._base.precision import float64_scope
from .._base.seeds import Seed, key_from_seed

__all__ = ["AnovaTable", "anova"]


@dataclass(frozen=True)
class AnovaTable:
    """The table (``.table``, a DataFrame), the models' formulas and whether REML fits
    were refitted by ML."""

    table: pd.DataFrame
    formulas: dict
    refitted_ml: bool

    def __str__(self) -> str:
        lines = ["Models:"] + [f"{k}: {v}" for k, v in self.formulas.items()]
        if self.refitted_ml:
            lines.insert(0, "refitting model(s) with ML (instead of REML)")
        return "\n".join(lines + [self.table.to_string()])

    __repr__ = __str__


def _ml(result):
    from .._fit import fit_design

    if result.method == "ML":
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular refits are reported by the originals
        return fit_design(result.design, "ML")


@float64_scope
def anova(*models, refit: bool = True, names=None, n_bootstrap: int = 0,
          seed: Seed = None) -> AnovaTable:
    """Compare nested models fitted to the same data (lme4's ``anova``). ``seed`` (for
    ``n_bootstrap``): see :mod:`interlace._base.seeds`."""
    if n_bootstrap:
        seed = key_from_seed(seed)  # a bad seed fails before the refits
    if len(models) < 2:
        raise ModelSpecError("anova needs at least two fitted models to compare.")
    names = list(names) if names is not None else [f"m{i + 1}" for i in range(len(models))]
    if len(names) != len(models):
        raise ModelSpecError("names must give one name per model.")
    y0 = models[0].design.y
    for m in models[1:]:
        if m.nobs != models[0].nobs or not np.array_equal(m.design.y, y0):
            raise ModelSpecError(
                "All models must be fitted to the same rows and response; check for rows "
                "dropped because of missing values in one model's columns."
            )
    refitted = refit and any(m.method == "REML" for m in models)
    fits = [_ml(m) for m in models] if refit else list(models)
    order = np.argsort([m.df_modelwc for m in fits], kind="stable")
    fits = [fits[i] for i in order]
    names = [names[i] for i in order]
    npar = np.array([m.df_modelwc for m in fits])
    llf = np.array([m.llf for m in fits])
    chisq = np.r_[np.nan, 2 * np.maximum(0.0, np.diff(llf))]
    df = np.r_[np.nan, np.diff(npar)]
    with np.errstate(invalid="ignore"):
        from scipy.special import chdtrc  # chi-squared upper tail; imported on use

        p = np.where(df > 0, chdtrc(np.where(df > 0, df, 1), chisq), np.nan)
    table = pd.DataFrame({
        "npar": npar, "AIC": [m.aic for m in fits], "BIC": [m.bic for m in fits],
        "logLik": llf, "deviance": -2 * llf, "Chisq": chisq, "Df": df, "Pr(>Chisq)": p,
    }, index=names)
    if n_bootstrap:
        if len(fits) != 2:
            raise ModelSpecError("the bootstrap LRT compares exactly two models.")
        table["Pr_boot(>Chisq)"] = [np.nan, _bootstrap_lrt(fits[0], fits[1], n_bootstrap, seed)]
    return AnovaTable(table=table, formulas={n: m.formula for n, m in zip(names, fits)},
                      refitted_ml=refitted)


def _bootstrap_lrt(small, large, n_bootstrap: int, seed) -> float:
    """Parametric-bootstrap p-value of the LR statistic, simulating from ``small``."""
    from .._functional import _arrays_of
    from .._core.refit import _deviance_of, _key, refit_all, simulate_responses, warn_unconverged

    Y = simulate_responses(small, int(n_bootstrap), _key(seed))
    devs = []
    for m in (small, large):
        model = _arrays_of(m.design)
        out = refit_all(model, Y, jnp.asarray(m.theta.to_numpy()), reml=m.method == "REML",
                        statistic=_deviance_of)
        warn_unconverged(out[3], "bootstrap refits")
        devs.append(np.asarray(out[4])[:, 0])
    lr_star = devs[0] - devs[1]
    lr = 2 * (large.llf - small.llf)
    return float((1 + np.sum(lr_star >= lr)) / (n_bootstrap + 1))


