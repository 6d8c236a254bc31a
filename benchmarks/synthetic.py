"""Seeded synthetic crossed designs with Zipf-skewed level frequencies (issue 4 benchmarks).

    from synthetic import make_crossed           # benchmarks/ on sys.path
    df = make_crossed(10**6)                     # levels 20,000 x 4,000 by default
    df = make_crossed(10**5, levels=(2000, 400, 50), seed=1)

    python benchmarks/synthetic.py --rows 1e6 --out crossed_1e6.csv.gz
    python benchmarks/synthetic.py --rows 1e5 --levels 2000 400 50 --out three.parquet

Model: ``y = 1 + 0.5 x + a[f_a] + b[f_b] (+ c[f_c]) + e`` with ``x ~ N(0, 1)``,
random intercepts ``a ~ N(0, 1.0^2)``, ``b ~ N(0, 0.5^2)``, ``c ~ N(0, 0.3^2)`` (``SDS``)
and ``e ~ N(0, 1)``. Each factor's levels are drawn independently of the others (so the
factors are crossed, not nested) with probability proportional to ``1 / rank^zipf_s``;
every level occurs at least once (the first ``n_levels`` rows of each factor hold one
row per level, then all rows are shuffled). Which label gets which rank is a random
permutation, so frequency does not follow label order. Factor columns are pandas
categoricals with zero-padded string labels (``a00017``), which sort in the same order
as strings or as categories.

Default level counts (``default_levels``): ``n / 50`` levels for ``a`` and ``n / 250``
for ``b`` (10^4 rows: 200 x 40; 10^5: 2,000 x 400; 10^6: 20,000 x 4,000), with ``a``
capped at 50,000 and ``b`` at 4,000 (10^7: 50,000 x 4,000). interlace keeps the largest
factor block-diagonal and factors a dense "tail" of (levels of every other factor) + p
+ 1 columns at each deviance evaluation, so the smaller factor's level count sets the
per-evaluation cost (``t^3/3`` flops, ``8 t^2`` bytes): 4,000 tail columns are a 128 MB
matrix and ~2e10 flops, feasible on a laptop; 20,000 would be 3.2 GB and ~2.7e12 flops
per evaluation. The cap of 50,000 on ``a`` keeps the 10^7 design from becoming a mostly
one-observation-per-level factor (200,000 levels of 50 rows each).

Generation is vectorised numpy (10^7 rows in a few seconds).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "BETA",
    "FACTORS",
    "SDS",
    "SIGMA",
    "default_levels",
    "make_crossed",
    "zipf_probabilities",
]

FACTORS = ("a", "b", "c", "d", "e")
SDS = (1.0, 0.5, 0.3, 0.2, 0.1)  # standard deviation of each factor's random intercept
BETA = (1.0, 0.5)  # intercept, slope of x
SIGMA = 1.0  # residual standard deviation
A_PER_LEVEL, B_PER_LEVEL = 50, 250  # rows per level of a and of b in default_levels
A_CAP, B_CAP = 50_000, 4_000


def default_levels(n_rows: int) -> tuple[int, int]:
    """Level counts ``(n_a, n_b)`` for ``n_rows`` rows (see the module docstring)."""
    n_rows = int(n_rows)
    n_a = int(min(max(round(n_rows / A_PER_LEVEL), 2), A_CAP))
    n_b = int(min(max(round(n_rows / B_PER_LEVEL), 2), B_CAP))
    return n_a, n_b


def zipf_probabilities(n_levels: int, s: float) -> np.ndarray:
    """``p[r] proportional to 1 / (r + 1)^s``, ``r = 0 .. n_levels - 1`` (rank order)."""
    w = np.arange(1, n_levels + 1, dtype=np.float64) ** (-float(s))
    return w / w.sum()


def _zipf_codes(rng: np.random.Generator, n_rows: int, n_levels: int, s: float) -> np.ndarray:
    """``n_rows`` level codes in ``0 .. n_levels - 1``, Zipf(s) frequencies, each level >= once."""
    if n_levels > n_rows:
        raise ValueError(f"{n_levels} levels cannot each occur at least once in {n_rows} rows")
    cdf = np.cumsum(zipf_probabilities(n_levels, s))
    cdf[-1] = 1.0
    # Inverse-CDF sampling: one uniform and one binary search per row (vectorised).
    ranks = np.searchsorted(cdf, rng.random(n_rows - n_levels), side="right")
    ranks = np.concatenate([np.arange(n_levels), ranks])
    # Shuffle rows, then map rank -> label code by a random permutation.
    ranks = ranks[rng.permutation(n_rows)]
    return rng.permutation(n_levels)[ranks]


def _categorical(codes: np.ndarray, name: str, n_levels: int) -> pd.Categorical:
    width = len(str(n_levels - 1))
    labels = [f"{name}{i:0{width}d}" for i in range(n_levels)]
    dtype = np.int16 if n_levels < 2**15 else np.int32
    return pd.Categorical.from_codes(codes.astype(dtype), categories=labels)


def make_crossed(
    n_rows: int,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    zipf_s: float = 1.1,
    sds: Sequence[float] | None = None,
) -> pd.DataFrame:
    """A crossed random-intercept design: columns ``y``, ``x`` and factors ``a, b[, c ...]``.

    Parameters
    ----------
    n_rows
        Number of rows (``1e6`` accepted).
    levels
        Level count of each factor, ``(n_a, n_b)`` or ``(n_a, n_b, n_c)`` (up to 5);
        default ``default_levels(n_rows)``.
    seed
        Seed of ``numpy.random.default_rng``: same arguments, same frame.
    zipf_s
        Zipf exponent of the level frequencies (0 gives uniform frequencies).
    sds
        Random-intercept standard deviations per factor; default ``SDS`` (1.0, 0.5, 0.3).

    The true parameters are in ``df.attrs["truth"]``.
    """
    n_rows = int(n_rows)
    levels = tuple(int(q) for q in (default_levels(n_rows) if levels is None else levels))
    if not 1 <= len(levels) <= len(FACTORS):
        raise ValueError(f"levels: between 1 and {len(FACTORS)} factors, got {levels}")
    sds = tuple(float(s) for s in (SDS[: len(levels)] if sds is None else sds))
    if len(sds) != len(levels):
        raise ValueError("sds needs one standard deviation per factor")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_rows)
    y = BETA[0] + BETA[1] * x + SIGMA * rng.standard_normal(n_rows)
    cols = {}
    for name, q, sd in zip(FACTORS, levels, sds):
        codes = _zipf_codes(rng, n_rows, q, zipf_s)
        effects = sd * rng.standard_normal(q)
        y += effects[codes]
        cols[name] = _categorical(codes, name, q)
    df = pd.DataFrame({"y": y, "x": x, **cols})
    df.attrs["truth"] = {
        "beta": list(BETA),
        "sigma": SIGMA,
        "levels": list(levels),
        "sds": dict(zip(FACTORS, sds)),
        "zipf_s": float(zipf_s),
        "seed": int(seed),
    }
    return df


def write(df: pd.DataFrame, out: str | Path) -> None:
    """Write ``.parquet`` (needs pyarrow or fastparquet) or ``.csv`` / ``.csv.gz``."""
    out = Path(out)
    if out.suffix == ".parquet":
        df.to_parquet(out, index=False)
    elif out.name.endswith((".csv", ".csv.gz")):
        df.to_csv(out, index=False, float_format="%.17g")
    else:
        raise ValueError(f"--out must end in .parquet, .csv or .csv.gz, got {out.name}")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=float, required=True, help="number of rows, e.g. 1e6")
    ap.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=None,
        help="level counts per factor, e.g. 2000 400 50 (default: scales with rows)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zipf-s", type=float, default=1.1)
    ap.add_argument("--out", required=True, help="output .parquet, .csv or .csv.gz")
    args = ap.parse_args(argv)
    if not args.out.endswith((".parquet", ".csv", ".csv.gz")):
        ap.error(f"--out must end in .parquet, .csv or .csv.gz, got {args.out}")
    if args.out.endswith(".parquet"):
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
            ap.error(
                "writing .parquet needs pyarrow or fastparquet (pip install pyarrow); "
                "or write .csv.gz"
            )
    t0 = time.perf_counter()
    df = make_crossed(int(args.rows), args.levels, seed=args.seed, zipf_s=args.zipf_s)
    t1 = time.perf_counter()
    write(df, args.out)
    t2 = time.perf_counter()
    lv = " x ".join(str(df[f].cat.categories.size) for f in df.columns[2:])
    print(
        f"{len(df)} rows, levels {lv}: generated in {t1 - t0:.2f} s, "
        f"written to {args.out} in {t2 - t1:.2f} s"
    )


if __name__ == "__main__":
    main()
