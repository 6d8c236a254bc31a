"""Write the simulated crossed-design GLMM data sets that
tests/data/make_glmm_references.R fits with lme4::glmer / glmer.nb.

Run from the repository root:

    python3 tests/data/make_glmm_data.py

Then regenerate the lme4 references that use them:

    Rscript tests/data/make_glmm_references.R

Each data set has its own seed, so changing one leaves the others untouched.
Floats are written with ``float_format="%.17g"`` so R and the Python tests
read bit-identical values; counts and 0/1 responses are integer columns.
Grouping labels are zero-padded strings, so alphabetical order (R's default
factor level order) equals numeric order.

glmm_binary_slope.csv  (seed 20250301; 3,000 rows)
    60 subjects (S01..S60) x 50 items (I01..I50), fully crossed, each pair
    once (subject-major order). ``x`` ~ N(0, 1) per row. Model fitted:
    ``y ~ x + (1 + x | subject) + (1 | item)``, binomial logit. Generating:

        logit P(y = 1) = -0.2 + 0.7 * x
                         + b0[subject] + b1[subject] * x   (sd 1.0, 0.5; corr 0.4)
                         + c0[item]                        (sd 0.6)

glmm_poisson_offset.csv  (seed 20250302; 2,000 rows)
    40 sites (S01..S40) x 10 years (Y2011..Y2020): every site-year is
    surveyed 5 times, each visit by an observer (O01..O15) drawn uniformly at
    random, so the three factors are crossed. ``cover`` ~ U(0, 1) per visit;
    ``hours`` (exposure) is uniform on {0.5, 0.75, ..., 4.0} (exact binary
    fractions). Model fitted:
    ``count ~ cover + offset(log(hours)) + (1 | site) + (1 | year) + (1 | observer)``,
    Poisson log. Generating:

        log E[count] = log(hours) - 0.5 + 1.2 * cover
                       + s[site] (sd 0.7) + t[year] (sd 0.3) + o[observer] (sd 0.2)

glmm_negbin.csv  (seed 20250303; 1,500 rows)
    Cells (C0001..C1500) from 20 donors (D01..D20) x 15 batches (B01..B15),
    fully crossed, 5 cells per donor-batch pair. ``treat`` is "ctrl" or "stim"
    (each with probability 1/2, per cell). Model fitted:
    ``count ~ treat + (1 | donor) + (1 | batch)`` with glmer.nb. Generating:

        log E[count] = 1.0 + 0.6 * (treat == "stim")
                       + d[donor] (sd 0.5) + b[batch] (sd 0.3)
        count ~ NegativeBinomial(mean mu, size 2)   (var = mu + mu^2 / 2)

glmm_fractional_weights.csv  (seed 20250304; 600 rows)
    30 subjects (S01..S30) x 20 items (I01..I20), fully crossed; ``x`` ~ N(0, 1);
    a 0/1 outcome ``y`` with prior weights ``w`` that are NOT whole numbers of trials,
    cycling through 0.7, 1.5, 2.0, 2.6 (no x.5 ties but 1.5, which every rounding rule
    takes to 2). Model fitted: ``y ~ x + (1 | subject) + (1 | item)``, binomial logit,
    ``weights = w`` (glmer warns about non-integer successes and scales each row's
    log density by w / round(w): tests/data/make_glmm_weights_references.R).
    Generating: logit P(y = 1) = 0.2 + 0.7 x + s[subject] (sd 0.8) + i[item] (sd 0.5).

glmm_separated_crossed.csv  (seed 20250305; 300 rows)
    Rows drawn with 15 levels of ``g`` (G01..G15) and 8 of ``h`` (H1..H8), crossed
    at random; ``x`` ~ N(0, 1); ``f`` cycles through A, B, C. Model fitted:
    ``y ~ x + f + (1 | g) + (1 | h)``, binomial logit. Generating:
    logit P(y = 1) = 0.3 x + g (sd 0.8) + h (sd 0.5), then ``y = 0`` on every row of
    level C: quasi-complete separation, ``f[T.C]``'s estimate runs off to about -25
    (tests/data/make_glmm_separation_references.R evaluates lme4's deviance far along it).
"""

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent


def make_binary_slope_frame(seed: int = 20250301) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_subj, n_item = 60, 50
    sd = np.array([1.0, 0.5])
    corr = np.array([[1.0, 0.4], [0.4, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), size=n_subj)
    c = rng.normal(0.0, 0.6, size=n_item)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = rng.normal(0.0, 1.0, size=subj.size)
    eta = -0.2 + 0.7 * x + b[subj, 0] + b[subj, 1] * x + c[item]
    y = (rng.uniform(size=subj.size) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame(
        {
            "subject": [f"S{s + 1:02d}" for s in subj],
            "item": [f"I{i + 1:02d}" for i in item],
            "x": x,
            "y": y,
        }
    )


def make_poisson_offset_frame(seed: int = 20250302) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_site, n_year, n_obs, n_visit = 40, 10, 15, 5
    s = rng.normal(0.0, 0.7, size=n_site)
    t = rng.normal(0.0, 0.3, size=n_year)
    o = rng.normal(0.0, 0.2, size=n_obs)
    site = np.repeat(np.arange(n_site), n_year * n_visit)
    year = np.tile(np.repeat(np.arange(n_year), n_visit), n_site)
    n = site.size
    observer = rng.integers(0, n_obs, size=n)
    cover = rng.uniform(0.0, 1.0, size=n)
    hours = rng.integers(2, 17, size=n) * 0.25  # 0.5, 0.75, ..., 4.0
    eta = np.log(hours) - 0.5 + 1.2 * cover + s[site] + t[year] + o[observer]
    count = rng.poisson(np.exp(eta)).astype(np.int64)
    return pd.DataFrame(
        {
            "site": [f"S{i + 1:02d}" for i in site],
            "year": [f"Y{2011 + i}" for i in year],
            "observer": [f"O{i + 1:02d}" for i in observer],
            "cover": cover,
            "hours": hours,
            "count": count,
        }
    )


def make_negbin_frame(seed: int = 20250303) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_donor, n_batch, n_cell, size = 20, 15, 5, 2.0
    d = rng.normal(0.0, 0.5, size=n_donor)
    b = rng.normal(0.0, 0.3, size=n_batch)
    donor = np.repeat(np.arange(n_donor), n_batch * n_cell)
    batch = np.tile(np.repeat(np.arange(n_batch), n_cell), n_donor)
    n = donor.size
    stim = rng.uniform(size=n) < 0.5
    mu = np.exp(1.0 + 0.6 * stim + d[donor] + b[batch])
    # numpy's negative_binomial(n, p): failures before n successes,
    # mean n (1 - p) / p = mu when p = size / (size + mu).
    count = rng.negative_binomial(size, size / (size + mu)).astype(np.int64)
    return pd.DataFrame(
        {
            "cell": [f"C{i + 1:04d}" for i in range(n)],
            "donor": [f"D{i + 1:02d}" for i in donor],
            "batch": [f"B{i + 1:02d}" for i in batch],
            "treat": np.where(stim, "stim", "ctrl"),
            "count": count,
        }
    )


def make_fractional_weights_frame(seed: int = 20250304) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_subject, n_item = 30, 20
    subject = np.repeat(np.arange(n_subject), n_item)
    item = np.tile(np.arange(n_item), n_subject)
    x = rng.normal(size=subject.size)
    eta = (
        0.2
        + 0.7 * x
        + rng.normal(0.0, 0.8, n_subject)[subject]
        + rng.normal(0.0, 0.5, n_item)[item]
    )
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame(
        {
            "subject": [f"S{i + 1:02d}" for i in subject],
            "item": [f"I{i + 1:02d}" for i in item],
            "x": x,
            "y": y,
            "w": np.resize([0.7, 1.5, 2.0, 2.6], subject.size),
        }
    )


def make_separated_crossed_frame(seed: int = 20250305) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    g, h = rng.integers(0, 15, n), rng.integers(0, 8, n)
    x = rng.normal(size=n)
    f = np.resize(["A", "B", "C"], n)
    eta = 0.3 * x + rng.normal(0.0, 0.8, 15)[g] + rng.normal(0.0, 0.5, 8)[h]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    y[f == "C"] = 0
    return pd.DataFrame(
        {"g": [f"G{k + 1:02d}" for k in g], "h": [f"H{k + 1}" for k in h], "x": x, "f": f, "y": y}
    )


def write(df: pd.DataFrame, name: str) -> None:
    path = DATA / name
    df.to_csv(path, index=False, float_format="%.17g")
    back = pd.read_csv(path)
    assert back.equals(df), f"{name} does not round-trip exactly"
    print(f"wrote {path} ({len(df)} rows)")


if __name__ == "__main__":
    write(make_binary_slope_frame(), "glmm_binary_slope.csv")
    write(make_poisson_offset_frame(), "glmm_poisson_offset.csv")
    write(make_negbin_frame(), "glmm_negbin.csv")
    write(make_fractional_weights_frame(), "glmm_fractional_weights.csv")
    write(make_separated_crossed_frame(), "glmm_separated_crossed.csv")
