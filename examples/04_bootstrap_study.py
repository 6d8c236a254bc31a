"""A vectorised bootstrap study: 1,000 parametric refits in one compiled call, then
cluster and pigeonhole refits for a crossed design.

Run: python examples/04_bootstrap_study.py
Simulates responses from a fitted random-slopes model and refits every one of them
with jax.vmap (lme4's bootMer does the same one refit at a time), then compares models
with likelihood-ratio tests, asymptotic and bootstrap, and reports Satterthwaite tests.
"""

import time
import warnings

import interlace

df = interlace.datasets.reaction_times()
fit = interlace.fit("reaction ~ days + (days | subject)", data=df)

fit.parametric_bootstrap(1000, seed=0)  # compile once
start = time.perf_counter()
boot = fit.parametric_bootstrap(1000, seed=1)
print(
    f"1000 parametric-bootstrap refits in {time.perf_counter() - start:.2f} s "
    f"({boot.converged.mean():.1%} converged)"
)

print("\n# Bootstrap standard errors next to the model-based ones")
print(
    boot.se()[["Intercept", "days"]]
    .round(3)
    .to_frame("bootstrap")
    .assign(model_based=fit.fe_bse.round(3))
)

print("\n# 95% intervals: percentile bootstrap (all parameters) and Wald (fixed effects)")
print(boot.conf_int("percentile").round(3).head(6))
print(fit.confint("wald").dropna().round(3))

print("\n# Does the slope vary by subject? Compare with a random-intercept model")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    small = interlace.fit("reaction ~ days + (1 | subject)", data=df)
print(interlace.anova(small, fit, n_bootstrap=200, seed=2))
print(
    "(the chi-squared p-value is conservative for a variance on its boundary;"
    " the bootstrap p-value is not)"
)

print("\n# Satterthwaite t-tests (lmerTest's method)")
print(fit.coef_table(ddf="satterthwaite").round(4))

print("\n# Nonparametric refits for crossed designs: resample levels, not residuals")
exams = interlace.datasets.exam_scores()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the page's school variance is at the boundary
    page = interlace.fit(
        "score ~ hours_studied + prior_gpa", data=exams, groups=["student_id", "school_id"]
    )
start = time.perf_counter()
pig = page.pigeonhole_bootstrap(200, seed=3)  # students and schools resampled independently
print(
    f"200 pigeonhole refits (Owen 2007) in {time.perf_counter() - start:.1f} s "
    "including compilation"
)
students = page.cluster_bootstrap(200, group="student_id", seed=4)
print(
    page.fe_bse.round(3)
    .to_frame("model_based")
    .assign(cluster_students=students.se().round(3), pigeonhole=pig.se().round(3))
)
