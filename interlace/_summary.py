"""lme4-style text summary of a :class:`CrossedLMEResult` (``summary(lmer(...))``)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ._core.singular import SINGULAR_MESSAGE

__all__ = ["format_summary", "format_glmm_summary"]


def _format_p(p: float) -> str:
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


def _random_effect_rows(res) -> list[tuple[str, str, float, str]]:
    """(group, name, variance, correlations) rows as lme4 prints ``VarCorr``."""
    rows = []
    for g, vc in res.variance_components.items():
        if not isinstance(vc, pd.DataFrame):
            rows.append((g, "(Intercept)", vc, ""))
            continue
        cov = vc.to_numpy()
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)
        for i, name in enumerate(vc.columns):
            cells = " ".join(f"{corr[i, j]:5.2f}" for j in range(i))
            rows.append((g if i == 0 else "", name, cov[i, i], cells))
    return rows


def _group_name(term) -> str:
    """A term's grouping factor as a formula writes it: ``a:b``, with backticks around
    column names that are not plain names (```subj id```)."""
    cols = term.group_columns or (term.factor,)
    return ":".join(c if re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", c) else f"`{c}`" for c in cols)


def format_summary(res) -> str:
    """Header, criterion, scaled residuals, random effects, fixed effects, notes."""
    d = res.design
    # the formula as written, plus the terms given through groups= (recorded by the design)
    formula = res.formula + "".join(f" + (1 | {_group_name(t)})" for t in d.terms if t.from_groups)
    lines = []
    if res.method == "REML":
        lines += [
            "Linear mixed model fit by REML",
            f"Formula: {formula}",
            *_call_lines(d),
            "",
            f"REML criterion at convergence: {res.deviance:.4f}",
            "",
        ]
    else:
        lines += [
            "Linear mixed model fit by maximum likelihood",
            f"Formula: {formula}",
            *_call_lines(d),
            "",
            *_criteria(res, res.deviance),
        ]
    scaled = res.residuals("pearson").to_numpy() / np.sqrt(res.scale)
    rows = _random_effect_rows(res) + [("Residual", "", res.scale, "")]
    lines += _body(res, scaled, rows)
    return "\n".join(lines)


def _call_lines(design) -> list[str]:
    """lme4's ``Weights:`` and ``Offset:`` lines under the formula, for the arguments
    that were given."""
    lines = []
    if design.weights_label is not None:
        lines.append(f"Weights: {design.weights_label}")
    if design.offset_label is not None:
        lines.append(f" Offset: {design.offset_label}")
    return lines


def _fixed_effects_table(res) -> str:
    return pd.DataFrame(
        {
            "Estimate": res.fe_params.map("{:.6g}".format),
            "Std. Error": res.fe_bse.map("{:.6g}".format),
            "z value": res.fe_zvalues.map("{:.3f}".format),
            "Pr(>|z|)": res.fe_pvalues.map(_format_p),
        }
    ).to_string()


def format_glmm_summary(res) -> str:
    """glmer's summary: method and family, information criteria (``deviance`` column:
    ``-2 logLik``), scaled (Pearson) residuals, random effects, fixed effects (z tests)."""
    d = res.design
    formula = res.formula + "".join(f" + (1 | {_group_name(t)})" for t in d.terms if t.from_groups)
    approx = (
        "Laplace Approximation"
        if res.nAGQ == 1
        else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {res.nAGQ}"
    )
    lines = [
        f"Generalized linear mixed model fit by maximum likelihood ({approx})",
        f" Family: {res.family_label}  ( {res.link} )",
        f"Formula: {formula}",
        *_call_lines(d),
        "",
        *_criteria(res, -2.0 * res.llf),
    ]
    lines += _body(res, res.residuals("pearson").to_numpy(), _random_effect_rows(res))
    return "\n".join(lines)


def _criteria(res, deviance: float) -> list[str]:
    """The AIC / BIC / logLik / deviance / df.resid table."""
    return [
        f"{'AIC':>10}{'BIC':>10}{'logLik':>10}{'deviance':>10}{'df.resid':>10}",
        f"{res.aic:>10.1f}{res.bic:>10.1f}{res.llf:>10.1f}{deviance:>10.1f}"
        f"{res.nobs - res.df_modelwc:>10d}",
        "",
    ]


def _body(res, scaled: np.ndarray, rows) -> list[str]:
    """What lmer's and glmer's summaries share after the header: scaled residuals'
    quantiles, the random effects (``rows``: group, name, variance, correlations),
    counts, fixed effects (z tests), dropped columns, the optimiser's report, the
    singular note."""
    q = np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1])
    lines = [
        "Scaled residuals:",
        "".join(f"{h:>10}" for h in ("Min", "1Q", "Median", "3Q", "Max")),
        "".join(f"{v:>10.4f}" for v in q),
        "",
    ]
    gw = max(len("Groups"), *(len(r[0]) for r in rows))
    nw = max(len("Name"), *(len(r[1]) for r in rows))
    has_corr = any(r[3] for r in rows)
    lines += [
        "Random effects:",
        f" {'Groups':<{gw}} {'Name':<{nw}} {'Variance':>12} {'Std.Dev.':>12}"
        + ("  Corr" if has_corr else ""),
    ]
    for g, name, var, corr in rows:
        lines.append(
            f" {g:<{gw}} {name:<{nw}} {var:>12.4f} {np.sqrt(var):>12.4f}"
            + (f"  {corr}" if corr else "")
        )
    groups = "; ".join(f"{k}, {v}" for k, v in res.ngroups.items())
    lines += [f"Number of obs: {res.nobs}, groups:  {groups}", ""]
    lines += ["Fixed effects:", _fixed_effects_table(res), ""]
    dropped = res.design.dropped_fe
    if dropped:
        lines.append(
            f"fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} columns / coefficients: {list(dropped)}"
        )
    status = "converged" if res.converged else "did NOT converge"
    lines.append(
        f"optimizer (L-BFGS) {status} after {res.n_iterations} iterations, "
        f"{res.n_evaluations} deviance evaluations ({res.stop_reason})"
    )
    if res.is_singular:
        lines.append(SINGULAR_MESSAGE)
    return lines
