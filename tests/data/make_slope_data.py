"""Write tests/data/crossed_slopes.csv: a simulated crossed subjects x items
design with a correlated random intercept + random slope per subject.

Run from the repository root:

    python3 tests/data/make_slope_data.py

Then regenerate the lme4 references that use it:

    Rscript tests/data/make_lme4_slope_references.R

Design: 40 subjects (S01..S40) x 24 items (I01..I24); every subject sees every
item exactly once (960 rows, subject-major order). Each subject sees 12 items in
condition "a" and 12 in condition "b" (which 12 is a seeded random split per
subject), so ``cond`` varies within subject and within item. ``t`` is a
continuous covariate, uniform on [0, 1) per row.

Generating model:

    y = 2 + 0.5 * t + 0.3 * (cond == "b")
        + b0[subject] + b1[subject] * t      (sd 1.0 and 0.6, correlation 0.4)
        + c0[item]                           (sd 0.8)
        + e                                  (sd 1.0)

There is no per-subject ``cond`` slope in the generating model, so the
reference fit ``y ~ cond + (1 + cond | subject) + (1 | item)`` estimates a
(near-)zero slope variance.

The data are simulated with numpy (not R). ``float_format="%.17g"`` makes the
floats round-trip exactly, so R and the Python tests see bit-identical values.
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "crossed_slopes.csv"

N_SUBJECTS = 40
N_ITEMS = 24
SEED = 20240611


def make_crossed_slopes_frame() -> pd.DataFrame:
    rng = np.random.default_rng(SEED)

    # Per-subject (intercept, slope of t): sd 1.0 and 0.6, correlation 0.4.
    sd = np.array([1.0, 0.6])
    corr = np.array([[1.0, 0.4], [0.4, 1.0]])
    cov = corr * np.outer(sd, sd)
    b = rng.multivariate_normal(np.zeros(2), cov, size=N_SUBJECTS)
    c = rng.normal(0.0, 0.8, size=N_ITEMS)

    subj = np.repeat(np.arange(N_SUBJECTS), N_ITEMS)
    item = np.tile(np.arange(N_ITEMS), N_SUBJECTS)

    # Within each subject, half the items in "a" and half in "b".
    cond_b = np.zeros((N_SUBJECTS, N_ITEMS), dtype=bool)
    for s in range(N_SUBJECTS):
        cond_b[s, rng.permutation(N_ITEMS)[: N_ITEMS // 2]] = True
    cond_b = cond_b.ravel()

    n = N_SUBJECTS * N_ITEMS
    t = rng.uniform(0.0, 1.0, size=n)
    e = rng.normal(0.0, 1.0, size=n)

    y = (2.0 + 0.5 * t + 0.3 * cond_b
         + b[subj, 0] + b[subj, 1] * t
         + c[item]
         + e)

    return pd.DataFrame({
        "subject": [f"S{s + 1:02d}" for s in subj],
        "item": [f"I{i + 1:02d}" for i in item],
        "cond": np.where(cond_b, "b", "a"),
        "t": t,
        "y": y,
    })


if __name__ == "__main__":
    df = make_crossed_slopes_frame()
    df.to_csv(OUT, index=False, float_format="%.17g")
    back = pd.read_csv(OUT)
    assert back.equals(df), "crossed_slopes.csv does not round-trip exactly"
    print(f"wrote {OUT} ({len(df)} rows)")
