"""The results page, top to bottom: fit exam scores with crossed students and schools.

Run: python examples/01_results_page.py
Every table printed here is a table of the results page (docs: "Interpreting model
results"); tests/test_results_page.py asserts each number.
"""

import warnings

import numpy as np
import pandas as pd
from scipy.stats import chi2

import interlace

df = interlace.datasets.exam_scores()  # the page's data: numpy seed 42, n = 300

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = interlace.fit(
        "score ~ hours_studied + prior_gpa", data=df, groups=["student_id", "school_id"]
    )
for w in caught:
    print(f"{w.category.__name__}: {w.message}")

print("\n# Fixed effects")
print(result.fe_params)
print(
    pd.DataFrame(
        {
            "estimate": result.fe_params,
            "se": result.fe_bse,
            "p": result.fe_pvalues,
            "ci_lo": result.fe_conf_int.iloc[:, 0],
            "ci_hi": result.fe_conf_int.iloc[:, 1],
        }
    ).round(6)
)

print("\n# Likelihood-ratio test of prior_gpa (ML fits)")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # both ML fits are singular too, as on the page
    m1 = interlace.fit(
        "score ~ hours_studied", data=df, groups=["student_id", "school_id"], method="ML"
    )
    m2 = interlace.fit(
        "score ~ hours_studied + prior_gpa",
        data=df,
        groups=["student_id", "school_id"],
        method="ML",
    )
lr_stat = 2 * (m2.llf - m1.llf)
print(f"LR statistic: {lr_stat:.3f} (df=1)")
print(f"p-value: {chi2.sf(lr_stat, df=1):.4f}")

print("\n# Variance components")
print("Between-group variances:")
for g, v in result.variance_components.items():
    print(f"  {g}: σ² = {v:.3f} (σ ≈ {v**0.5:.2f} score points)")
print(
    f"\nResidual variance (scale): σ² = {result.scale:.3f} "
    f"(σ ≈ {result.scale**0.5:.2f} score points)"
)
total = sum(result.variance_components.values()) + result.scale
for g, v in result.variance_components.items():
    icc = v / total
    print(f"ICC({g}): {icc:.3f} → {icc * 100:.1f}% of variance explained by {g}")
print(f"singular: {interlace.isSingular(result)}")

print("\n# Model fit")
print(f"AIC: {result.aic:.2f}")
print(f"BIC: {result.bic:.2f}")
print(f"log-lik: {result.llf:.2f}")
print(f"converged: {result.converged}")

print("\n# BLUPs of students, sorted")
print(result.random_effects["student_id"].sort_values())

print("\n# Predictions")
y_conditional = result.predict()
y_marginal = result.predict(include_re=False)
print(f"Conditional predictions — mean: {y_conditional.mean():.2f}, std: {y_conditional.std():.2f}")
print(f"Marginal predictions — mean: {y_marginal.mean():.2f}, std: {y_marginal.std():.2f}")
df_new = pd.DataFrame(
    {
        "hours_studied": [5.0, 8.0, 5.0],
        "prior_gpa": [3.2, 3.8, 3.2],
        "student_id": ["s1", "s2", "s_new"],  # s_new is unseen: BLUP = 0
        "school_id": ["sch1", "sch1", "sch1"],
    }
)
print(df_new.assign(predicted_score=result.predict(newdata=df_new).round(2)))

print("\n# Bootstrap standard error of the median")
se_cluster = result.bootstrap_se(
    statistic="median", n_bootstrap=500, resample_level="group", seed=42
)
se_observation = result.bootstrap_se(
    statistic="median", n_bootstrap=500, resample_level="observation", seed=42
)
print(f"Median: {np.median(df['score']):.2f}")
print(f"Cluster-bootstrap SE: {se_cluster:.4f}")
print(f"Observation-bootstrap SE: {se_observation:.4f} (underestimates when ICC > 0)")

print("\n# Summary")
print(result.summary())
