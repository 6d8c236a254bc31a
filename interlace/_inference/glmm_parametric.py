"""Simulation from a fitted GLMM and its parametric bootstrap (lme4's ``simulate`` and
``bootMer(type = "parametric")`` for ``glmer`` fits).

A draw: new random effects ``b = Lambda u``, ``u ~ N(0, I)`` (the fitted relative
covariance factors; the scale is 1), ``eta = o + X beta + Z b``, ``mu = g^-1(eta)``, then
the response from the family: binomial successes out of the prior-weight trials, as a
proportion (a 0/1 outcome with one trial), Poisson counts, negative binomial counts with
the fitted size (gamma-Poisson mixture). The bootstrap reports the fixed effects, lme4's
``sd_*``/``cor_*`` and ``theta`` per replicate. Few draws of a small model are refitted
one after another with the model's compiled evaluation (nothing is compiled again);
otherwise (:func:`vectorise`) the draws are refitted side by side in vectorised lanes
(:func:`~interlace._model.glmm_many.fit_glmm_many`, the same objective), each from the
fitted ``theta`` as lme4's ``refit`` starts, after compiling the lanes once (~10 s on 2
cores). Both reach the same optimum (replicates agree to ~1e-10). On cbpp, 1,000 draws
took 23 s one after another and 11 s in lanes (1.0 s once compiled); 30 draws 0.7 s and
11 s.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from .._base.seeds import Seed, rng_from_seed
from .._core.refit import warn_unconverged
from .._core.theta import lower_factor
from .._model.glmm_design import GlmmDesign
from .._model.glmm_estimate import GlmmFit, fit_glmm_design
from .._model.glmm_many import fit_glmm_many
from .._model.varcorr import sdcor_names, sdcor_values
from .replicates import BootstrapResult

__all__ = ["simulate_glmm", "glmm_parametric_bootstrap"]


def simulate_glmm(fit: GlmmFit, n: int, seed: Seed = None) -> np.ndarray:
    """``(n, nobs)`` responses drawn from ``fit`` (module docstring), on the scale the
    model reads its response (binomial: proportions of the trials)."""
    rng = rng_from_seed(seed)
    design, fam = fit.design, fit.family
    _warn_weights_in_draws(fam.name, np.asarray(fit.prior_weights, dtype=float))
    fixed = fit.fixed_part(design.X) + fit.offset
    out = np.empty((n, design.nobs))
    start = 0
    thetas = []
    for term in design.terms:
        m = term.k * (term.k + 1) // 2
        thetas.append(fit.theta[start : start + m])
        start += m
    for i in range(n):
        eta = fixed.copy()
        for term, th in zip(design.terms, thetas):
            T = lower_factor(np.asarray(th), term.k)
            b = rng.standard_normal((len(term.levels), term.k)) @ T.T
            eta += np.sum(term.X * b[term.codes], axis=1)
        mu = np.asarray(fam.linkinv(eta), dtype=float)
        if fam.name == "binomial":
            trials = np.round(fit.prior_weights).astype(np.int64)
            hits = rng.binomial(trials, np.clip(mu, 0.0, 1.0))
            out[i] = np.where(trials > 0, hits / np.maximum(trials, 1), 0.0)
        elif fam.name == "poisson":
            out[i] = rng.poisson(mu)
        else:  # negative binomial: Poisson with a gamma(size, mu / size) mean
            k = fit.size
            out[i] = rng.poisson(rng.gamma(k, mu / k))
    return out


def _warn_weights_in_draws(family: str, w: np.ndarray) -> None:
    """The draws' use of prior weights, where it departs from the fitted model (as R's
    ``family$simulate``): binomial trials must be whole numbers; count families have no
    trials, and their draws ignore the weights."""
    if family == "binomial" and np.any(np.abs(w - np.round(w)) > 1e-7 * np.maximum(1.0, w)):
        warnings.warn(
            "The binomial prior weights are not whole numbers of trials, so no binomial draw "
            "matches them: the draws use rounded trial counts (R's simulate gives NaN "
            "here), and a bootstrap of them is not of the fitted model.",
            UserWarning,
            stacklevel=4,
        )
    elif family != "binomial" and np.any(w != 1.0):
        warnings.warn(
            f"The draws ignore the prior weights (as R's simulate does for {family} "
            "models): a count has no trial size to draw it with, so a bootstrap of them is "
            "not of the weighted model that was fitted.",
            UserWarning,
            stacklevel=4,
        )


def glmm_parametric_bootstrap(fit: GlmmFit, n_bootstrap: int, seed: Seed = None) -> BootstrapResult:
    """Refit ``fit``'s model to ``n_bootstrap`` draws (module docstring)."""
    glmm = GlmmDesign(
        fit.design, fit.prior_weights, fit.offset, fit.offset_terms, fit.offset_argument
    )
    Y = simulate_glmm(fit, n_bootstrap, seed)
    if vectorise(n_bootstrap, fit.design.nobs):
        return _in_lanes(fit, glmm, Y)
    rows, flags = [], []
    for y in Y:
        replicate = glmm._replace(design=dataclasses.replace(glmm.design, y=y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted below, once, as non-converged refits
            try:
                refit = fit_glmm_design(replicate, fit.family, nagq=fit.nagq, hessian=False)
                rows.append(_row(refit))
                # a separated draw's estimates are infinite: as the lanes, not converged
                flags.append(refit.converged and not refit.separated)
            except Exception:  # a draw the model cannot fit (e.g. all successes)
                rows.append(np.full(len(_names(fit)), np.nan))
                flags.append(False)
    return _result(fit, np.vstack(rows), np.asarray(flags, dtype=bool))


def vectorise(n_bootstrap: int, nobs: int) -> bool:
    """Whether to refit in lanes (module docstring): when one after another would take
    longer than compiling them, by a rough cost model of 2 cores (a refit ~20 ms plus
    ~0.04 ms a row; the lanes' executable ~10 s to compile): cbpp (56 rows) from 450
    draws, a 1,000-row model from 167, VerbAgg (7,584 rows) from 31."""
    return n_bootstrap * (1.0 + nobs / _ROWS_PER_REFIT_OVERHEAD) > _REFITS_PER_COMPILE


# A sequential refit costs about 1 + nobs / 500 units of 20 ms; the lanes compile ~500.
_ROWS_PER_REFIT_OVERHEAD = 500.0
_REFITS_PER_COMPILE = 500.0


def _in_lanes(fit: GlmmFit, glmm: GlmmDesign, Y: np.ndarray) -> BootstrapResult:
    # a draw no GLMM can fit (all one outcome, all zero counts) is a NaN row, unconverged
    batch = fit_glmm_many(glmm, fit.family, Y.T, nagq=fit.nagq, start_theta=fit.theta)
    rows = _rows(batch.beta, batch.theta, fit.design.terms)
    return _result(fit, rows, np.asarray(batch.converged, dtype=bool))


def _result(fit: GlmmFit, rows: np.ndarray, converged: np.ndarray) -> BootstrapResult:
    warn_unconverged(converged, "bootstrap refits")
    return BootstrapResult(
        replicates=pd.DataFrame(rows, columns=_names(fit)),
        converged=converged,
        estimate=pd.Series(_row(fit), index=_names(fit)),
    )


def _names(fit: GlmmFit) -> list[str]:
    sd = sdcor_names(fit.design.terms)[:-1]  # no residual sigma in a GLMM
    return [*fit.design.fe_names, *sd, *(f"theta_{n}" for n in fit.design.theta_names)]


def _rows(beta: np.ndarray, theta: np.ndarray, terms) -> np.ndarray:
    """Replicate rows (``_names``' columns) from ``beta`` (m, p) and ``theta`` (m, t)."""
    sd = sdcor_values(theta, np.ones(len(theta)), terms)[:, :-1]  # no residual sigma
    return np.hstack([beta, sd, theta])


def _row(fit: GlmmFit) -> np.ndarray:
    return _rows(fit.beta[None], fit.theta[None], fit.design.terms)[0]
