"""Generalized linear mixed models (lme4's glmer): a crossed binary model and a count
model with an offset.

Run: python examples/06_glmm.py
Two simulated data sets (numpy seed 6, made below, so the script runs anywhere):

1. accuracy: 60 subjects x 40 items, each subject answering each item once; correct
   (0/1) ~ a standardised predictor x, with crossed random intercepts for subjects and
   items, family="binomial" (logit link; Laplace approximation, glmer's default);
2. counts: birds counted at 30 sites over 8 years with varying observation time,
   count ~ cover + offset(log(hours)), with site and year intercepts, family="poisson".

For each: glmer's summary layout (result.summary()), Wald intervals of the fixed
effects (and, for the binary model, profile-likelihood intervals and the conditional
modes' standard errors), predictions on the response and link scales (an unseen subject, site or year
gets a random effect of 0) and, for the counts, nAGQ=0 next to the Laplace fit. The
fitting code reproduces glmer's estimates, log-likelihoods and standard errors on
lme4's reference data sets (cbpp, grouseticks, VerbAgg) and simulated crossed designs:
tests/test_glmm_references.py holds those checks. The data here are made by this
script, so its own numbers are not among the references. Each new model compiles once
(several seconds); the whole script takes about 20-30 s.
"""

import numpy as np
import pandas as pd

import interlace

rng = np.random.default_rng(6)

# --- 1. Crossed binary model: subjects x items ---------------------------------------
n_subjects, n_items = 60, 40
subject = np.repeat(np.arange(n_subjects), n_items)
item = np.tile(np.arange(n_items), n_subjects)
x = rng.normal(size=subject.size)
eta = (
    0.4  # intercept (log-odds)
    + 0.7 * x
    + rng.normal(0.0, 0.8, n_subjects)[subject]  # subject sd 0.8
    + rng.normal(0.0, 0.5, n_items)[item]  # item sd 0.5
)
accuracy = pd.DataFrame(
    {
        "correct": rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))),
        "x": x.round(3),
        "subject": [f"s{i:02d}" for i in subject],
        "item": [f"i{i:02d}" for i in item],
    }
)

binary = interlace.fit("correct ~ x + (1 | subject) + (1 | item)", data=accuracy, family="binomial")
print(binary.summary())

print("\n# 95% Wald intervals of the fixed effects (log-odds)")
print(binary.conf_int(0.95).round(3))
print("odds ratio per unit of x:", np.exp(binary.fe_params["x"]).round(3))

print("\n# Predictions: a known subject and item, and a subject not in the data")
new = pd.DataFrame({"x": [0.0, 0.0, 1.0], "subject": ["s00", "s99", "s99"], "item": "i00"})
print(
    new.assign(
        p_correct=binary.predict(newdata=new, type="response").round(3),
        log_odds=binary.predict(newdata=new, type="link").round(3),
        p_population=binary.predict(newdata=new, include_re=False).round(3),
    )
)

print("\n# Conditional modes (link scale) with their standard errors (lme4's condVar):")
print("# the five highest subjects")
modes = interlace.hlm_resid(binary, level="subject")
print(modes.nlargest(5, "(Intercept)").round(3))

print("\n# Profile-likelihood intervals (lme4's default confint for glmer)")
print(binary.confint("profile").round(3))

# --- 2. Counts with an offset: sites x years -----------------------------------------
n_sites, n_years = 30, 8
site = np.repeat(np.arange(n_sites), n_years)
year = np.tile(np.arange(n_years), n_sites)
cover = rng.uniform(0.0, 1.0, n_sites)[site]  # habitat cover of each site
hours = rng.uniform(1.0, 6.0, site.size).round(1)  # observation time of each visit
eta = (
    np.log(hours)  # counts grow with time spent: the offset
    + 0.2
    + 1.5 * cover
    + rng.normal(0.0, 0.4, n_sites)[site]
    + rng.normal(0.0, 0.25, n_years)[year]
)
birds = pd.DataFrame(
    {
        "count": rng.poisson(np.exp(eta)),
        "cover": cover.round(3),
        "hours": hours,
        "site": [f"site{i:02d}" for i in site],
        "year": 2015 + year,
    }
)

formula = "count ~ cover + offset(np.log(hours)) + (1 | site) + (1 | year)"
counts = interlace.fit(formula, data=birds, family="poisson")
print("\n" + counts.summary())

print("\n# 95% Wald intervals, and as rate ratios")
ci = counts.conf_int(0.95)
print(pd.concat([ci, np.exp(ci).add_prefix("exp ")], axis=1).round(3))

print("\n# Predicted counts for a 2-hour visit: a known site and year, then new ones")
new = pd.DataFrame(
    {"cover": 0.5, "hours": 2.0, "site": ["site00", "site99", "site99"], "year": [2016, 2016, 2030]}
)
print(
    new.assign(
        expected=counts.predict(newdata=new).round(3),
        log_mean=counts.predict(newdata=new, type="link").round(3),
    )
)

print("\n# nAGQ=0 (fixed effects inside PIRLS): faster, close to the Laplace fit")
fast = interlace.fit(formula, data=birds, family="poisson", nAGQ=0)
print(
    pd.DataFrame(
        {"Laplace": counts.fe_params, "nAGQ=0": fast.fe_params},
    ).round(4)
)
print(f"logLik Laplace {counts.llf:.3f}, nAGQ=0 {fast.llf:.3f}")
print(f"deviance (sum of squared deviance residuals): {counts.deviance:.2f}")
print("Pearson residuals, first five:", counts.residuals("pearson").head().round(3).tolist())
