"""Random slopes: each subject gets its own intercept and its own trend over days.

Run: python examples/02_random_slopes.py
lme4 users write the model exactly as in R: (days | subject) is a correlated random
intercept and slope; (days || subject) drops the correlation.
"""

import warnings

import pandas as pd

import interlace

df = interlace.datasets.reaction_times()  # 18 subjects x 10 days, like lme4's sleepstudy

result = interlace.fit("reaction ~ days + (days | subject)", data=df)
print(result.summary())

print("\n# Fixed effects: the average subject")
print(result.fe_params.round(3))

print("\n# Covariance of the random intercept and slope (ms^2)")
cov = result.variance_components["subject"]
print(cov.round(2))
sd = cov.to_numpy().diagonal() ** 0.5
print(
    f"sd intercept {sd[0]:.1f} ms, sd slope {sd[1]:.2f} ms/day, "
    f"correlation {cov.iloc[0, 1] / (sd[0] * sd[1]):.2f}"
)

print("\n# BLUPs: one row per subject, one column per term (first five subjects)")
blups = result.random_effects["subject"]
print(blups.head().round(3))
slopes = result.fe_params["days"] + blups["days"]
print(
    f"steepest subject: {slopes.idxmax()} at {slopes.max():.1f} ms/day; "
    f"flattest: {slopes.idxmin()} at {slopes.min():.1f} ms/day"
)

print("\n# Predictions for a known and a new subject on day 12")
new = pd.DataFrame({"days": [12.0, 12.0], "subject": ["S01", "S99"]})
print(new.assign(predicted=result.predict(newdata=new).round(1)))

print("\n# Uncorrelated version and a likelihood-ratio comparison (ML fits)")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    corr = interlace.fit("reaction ~ days + (days | subject)", data=df, method="ML")
    uncorr = interlace.fit("reaction ~ days + (days || subject)", data=df, method="ML")
print(
    f"logLik correlated {corr.llf:.2f}, uncorrelated {uncorr.llf:.2f}, "
    f"LR = {2 * (corr.llf - uncorr.llf):.3f} on 1 df"
)
