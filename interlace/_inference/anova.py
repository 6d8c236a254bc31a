"""Likelihood-ratio tests between nested models: lme4's ``anova(m1, m2, ...)``.

Models are ordered by their number of parameters ``npar``; each row after the first
tests it against the row before: ``Chisq = 2 max(0, logLik_i - logLik_{i-1})`` on
``Df = npar_i - npar_{i-1}`` degrees of freedom, ``Pr(>Chisq)`` from the chi-squared
distribution. REML likelihoods of models with different fixed effects are not
comparable, so by default every REML fit is first refitted by ML (lme4's
``refit = TRUE``), and the output says so. With ``n_bootstrap``, two models are also
compared by a parametric bootstrap of the LR statistic under the smaller model
(p = (1 + #{LR* >= LR}) / (B + 1)), which is the better reference in small samples.

GLMMs (maximum likelihood already) are compared as they are, when they share the family
and the response; their quadrature settings must give likelihoods on one scale (lme4's
``nAGQ > 1`` log-likelihood leaves out the density's constant, so it is not compared with
``nAGQ`` 0 or 1). The bootstrap is for linear mixed models only.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._base.checks import check_n_bootstrap
from .._base.errors import ModelSpecError
from .._base.precision import float64_scope
from .._base.seeds import Seed, key_from_seed
from .._core.refit import deviance_statistic, refit_all, warn_unconverged
from .._model.estimate import ModelFit, fit_design
from .._model.glmm_estimate import GlmmFit
from .parametric import model_responses, simulate_from

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


def _fit_of(model) -> ModelFit | GlmmFit:
    """The :class:`ModelFit` or :class:`GlmmFit` of a fitted result (or the record)."""
    fit = getattr(model, "model_fit", model)
    if not isinstance(fit, (ModelFit, GlmmFit)):
        raise ModelSpecError(f"anova compares fitted models; got {type(model).__name__}.")
    return fit


def _ml(fit):
    """``fit`` by ML (singular refits are reported by the original fits, not again); a
    GLMM is an ML fit already."""
    if isinstance(fit, GlmmFit) or fit.method == "ML":
        return fit
    return fit_design(fit.design, "ML", warn=False)


def _same_weights(a, b) -> bool:
    """Whether two designs have the same prior weights (None: all 1)."""
    wa, wb = a.weights, b.weights
    if wa is None or wb is None:
        return wa is None and wb is None
    return bool(np.array_equal(wa, wb))


def _check_glmms(models) -> None:
    """GLMMs compare with GLMMs of the same family, weights and likelihood scale."""
    kinds = {isinstance(m, GlmmFit) for m in models}
    if kinds == {True, False}:
        raise ModelSpecError(
            "anova compares linear mixed models with linear mixed models and GLMMs with "
            "GLMMs of the same family; got both kinds."
        )
    if kinds != {True}:
        return
    families = {(m.family.name, m.family.link) for m in models}
    if len(families) > 1:
        raise ModelSpecError(
            f"anova compares GLMMs of one family and link; got {sorted(families)}."
        )
    if len({m.nagq > 1 for m in models}) > 1:
        raise ModelSpecError(
            "anova cannot compare an nAGQ > 1 fit with nAGQ 0 or 1 fits: lme4's quadrature "
            "log-likelihood leaves out the density's constant, so they are on other scales."
        )
    w0 = np.asarray(models[0].prior_weights)
    # other numbers of rows: anova's own check says so (rows and response), not this one
    if any(
        np.shape(m.prior_weights) == w0.shape and not np.array_equal(m.prior_weights, w0)
        for m in models[1:]
    ):
        raise ModelSpecError("All GLMMs must have the same prior weights (trials).")


@float64_scope
def anova(
    *models, refit: bool = True, names=None, n_bootstrap: int = 0, seed: Seed = None
) -> AnovaTable:
    """Compare nested models fitted to the same data (lme4's ``anova``). ``seed`` (for
    ``n_bootstrap``): see :mod:`interlace._base.seeds`."""
    if n_bootstrap:
        n_bootstrap = check_n_bootstrap(n_bootstrap)
        seed = key_from_seed(seed)  # a bad seed fails before the refits
    if len(models) < 2:
        raise ModelSpecError("anova needs at least two fitted models to compare.")
    names = list(names) if names is not None else [f"m{i + 1}" for i in range(len(models))]
    if len(names) != len(models):
        raise ModelSpecError("names must give one name per model.")
    models = tuple(_fit_of(m) for m in models)
    _check_glmms(models)
    y0 = models[0].design.y
    for m in models[1:]:
        if m.nobs != models[0].nobs or not np.array_equal(m.design.y, y0):
            raise ModelSpecError(
                "All models must be fitted to the same rows and response; check for rows "
                "dropped because of missing values in one model's columns."
            )
        if not _same_weights(m.design, models[0].design):
            raise ModelSpecError(
                "All models must be fitted with the same weights= (their likelihoods are of "
                "different data otherwise)."
            )
    refitted = refit and any(getattr(m, "method", "ML") == "REML" for m in models)
    fits = [_ml(m) for m in models] if refit else list(models)
    order = np.argsort([m.n_params for m in fits], kind="stable")
    fits = [fits[i] for i in order]
    names = [names[i] for i in order]
    npar = np.array([m.n_params for m in fits])
    llf = np.array([m.llf for m in fits])
    chisq = np.r_[np.nan, 2 * np.maximum(0.0, np.diff(llf))]
    df = np.r_[np.nan, np.diff(npar)]
    with np.errstate(invalid="ignore"):
        from scipy.special import chdtrc  # chi-squared upper tail; imported on use

        p = np.where(df > 0, chdtrc(np.where(df > 0, df, 1), chisq), np.nan)
    table = pd.DataFrame(
        {
            "npar": npar,
            "AIC": [m.aic for m in fits],
            "BIC": [m.bic for m in fits],
            "logLik": llf,
            "deviance": -2 * llf,
            "Chisq": chisq,
            "Df": df,
            "Pr(>Chisq)": p,
        },
        index=names,
    )
    if n_bootstrap:
        if isinstance(fits[0], GlmmFit):
            raise ModelSpecError(
                "The bootstrap LRT (n_bootstrap) is available for linear mixed models only; "
                "for GLMMs use the chi-squared test (n_bootstrap=0)."
            )
        if len(fits) != 2:
            raise ModelSpecError("the bootstrap LRT compares exactly two models.")
        table["Pr_boot(>Chisq)"] = [np.nan, _bootstrap_lrt(fits[0], fits[1], n_bootstrap, seed)]
    return AnovaTable(
        table=table,
        formulas={n: m.design.formula for n, m in zip(names, fits)},
        refitted_ml=refitted,
    )


def _bootstrap_lrt(small: ModelFit, large: ModelFit, n_bootstrap: int, seed) -> float:
    """Parametric-bootstrap p-value of the LR statistic, simulating from ``small``."""
    Y = simulate_from(small, n_bootstrap, key_from_seed(seed))
    devs = []
    for m in (small, large):
        out = refit_all(
            m.search_arrays,
            model_responses(m, Y),
            jnp.asarray(m.theta),
            reml=m.reml,
            statistic=deviance_statistic,
            centring=m.centring,
        )
        warn_unconverged(out.converged, "bootstrap refits")
        devs.append(out.statistic[:, 0])
    lr_star = devs[0] - devs[1]
    lr = 2 * (large.llf - small.llf)
    return float((1 + np.sum(lr_star >= lr)) / (n_bootstrap + 1))
