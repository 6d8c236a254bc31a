"""Nonparametric refit bootstraps that resample levels: cluster and pigeonhole.

A *cluster bootstrap* draws the ``q`` levels of one grouping factor with replacement and
refits the model to the rows of the drawn levels; a level drawn twice becomes two
distinct levels (two clusters), not one level with doubled data. The *pigeonhole*
bootstrap (Owen 2007, Ann. Appl. Stat. 1(2)) does this for every crossed factor at once,
independently, keeping the cells ``(i, j)`` of the drawn levels.

Each replicate is evaluated without building the resampled data: rows are weighted by
the product of their levels' copy counts and the deviance takes the counts into account
as distinct levels (``_core.deviance``, "Duplicated levels"), which is exact: it equals the
deviance of the relabelled, physically resampled data. So every replicate has the
original shapes, and all of them are refitted by one ``jax.vmap`` (:func:`refit_all`),
warm-started at the fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from .._base.checks import check_n_bootstrap
from .._base.errors import ModelSpecError
from .._base.progress import progress_bar
from .._base.seeds import rng_from_seed
from .._core.refit import chunk_plan, chunk_rows, refit_all
from .._model.estimate import ModelFit
from .replicates import BootstrapResult, bootstrap_result

__all__ = ["resampled_levels_bootstrap", "LevelResamples"]


def _check_factors(design, template, factors: Sequence[str]) -> dict[str, int]:
    """Internal term position of each resampled factor, after checking it can be done."""
    names = design.factor_names
    user_pos = {}
    for f in factors:
        if f not in names:
            raise ModelSpecError(
                f"{f!r} is not a grouping factor of the model ({', '.join(map(repr, names))})."
            )
        terms = [i for i, t in enumerate(design.terms) if t.factor == f]
        if len(terms) != 1:
            raise ModelSpecError(
                f"factor {f!r} has {len(terms)} random terms; resampling its levels is "
                "supported for factors with one term (write (1 + x | g), not (x || g))."
            )
        user_pos[f] = terms[0]
    pos = {f: template.order.index(u) for f, u in user_pos.items()}
    for f, r in pos.items():
        if r > 0 and template.ks[r] != 1:
            raise ModelSpecError(
                f"factor {f!r} has random slopes and is not the model's largest term; "
                "resampling its levels is supported for intercept-only factors there."
            )
    for f in factors:  # a factor nested in a resampled one would need relabelling too
        fc = design.codes[names.index(f)]
        for h, hc in zip(names, design.codes):
            if h != f and _nested(hc, fc) and len(np.unique(hc)) > len(np.unique(fc)):
                raise ModelSpecError(
                    f"factor {h!r} is nested in {f!r}: resampling {f!r}'s levels would "
                    f"have to relabel {h!r} too, which is not supported; resample {h!r} "
                    "or use parametric_bootstrap."
                )
    return pos


def _nested(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Each level of ``inner`` occurs with one level of ``outer`` only."""
    pairs = np.unique(np.stack([inner, outer], axis=1), axis=0)
    return len(pairs) == len(np.unique(inner))


class LevelResamples:
    """Builds, for copy counts of the resampled factors' levels, the leaves that turn
    the model's arrays into those of the resampled data (module docstring)."""

    def __init__(self, fit: ModelFit, factors: Sequence[str]):
        d = fit.design
        base = fit.search_arrays
        cp = base.template
        self.design, self.template, self.factors = d, cp, list(factors)
        self.pos = _check_factors(d, cp, self.factors)
        self.model = dataclasses.replace(base, level_mult=jnp.ones(cp.q1), tail_mult=jnp.ones(cp.t))
        # first tail column of each term; term 1 (one factor's terms) has none
        tail_starts = np.cumsum([0] + [q * k for q, k in cp.tail_terms])
        self.offsets = np.concatenate([np.zeros(cp.first_terms), tail_starts]).astype(int)

    def nlevels(self, factor: str) -> int:
        return len(self.design.levels[self.design.factor_names.index(factor)])

    def leaves(self, counts: dict[str, np.ndarray]):
        """``(weights, level_mult, tail_mult)`` for ``counts[f]`` of shape
        ``(B, levels of f)``: row weights are products of their levels' counts."""
        d, cp = self.design, self.template
        B = next(iter(counts.values())).shape[0]
        W = np.ones((B, d.nobs))
        level_mult, tail_mult = np.ones((B, cp.q1)), np.ones((B, cp.t))
        for f in self.factors:
            c = np.asarray(counts[f], dtype=np.float64)
            W *= c[:, d.codes[d.factor_names.index(f)]]
            r = self.pos[f]
            if r == 0:
                level_mult = c
            else:
                tail_mult[:, self.offsets[r] : self.offsets[r] + c.shape[1]] = c
        return jnp.asarray(W), jnp.asarray(level_mult), jnp.asarray(tail_mult)


def resampled_levels_bootstrap(
    fit: ModelFit,
    factors: Sequence[str],
    n_bootstrap: int = 1000,
    seed=None,
    statistic: Callable | None = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> BootstrapResult:
    """Refit ``fit``'s model to ``n_bootstrap`` resamples of the levels of ``factors``
    (module docstring); returns a :class:`BootstrapResult` like the parametric one."""
    n_bootstrap = check_n_bootstrap(n_bootstrap)
    if isinstance(factors, str):
        factors = [factors]
    factors = list(dict.fromkeys(factors))
    if not factors:
        raise ModelSpecError("name at least one grouping factor to resample.")
    reps = LevelResamples(fit, factors)
    rng = rng_from_seed(seed)
    # equal, balanced chunks: one compiled shape, and fewer surplus refits than batches
    n_chunks, B = chunk_plan(
        reps.model, n_bootstrap, int(chunk_size or chunk_rows(reps.model, n_bootstrap, fit.nobs))
    )
    theta0 = jnp.asarray(fit.theta)
    parts = []
    with progress_bar(n_bootstrap, f"bootstrap of {', '.join(factors)}", progress) as bar:
        for _ in range(n_chunks):
            counts = {
                f: rng.multinomial(
                    reps.nlevels(f), np.full(reps.nlevels(f), 1.0 / reps.nlevels(f)), size=B
                )
                for f in factors
            }
            parts.append(
                refit_all(
                    reps.model,
                    reps.leaves(counts),
                    theta0,
                    reml=fit.reml,
                    statistic=statistic,
                    field=("weights", "level_mult", "tail_mult"),
                    bar=bar,
                    centring=fit.centring,
                )
            )
    return bootstrap_result(fit, parts, statistic, n_bootstrap)
