"""Write tests/data/results_page.csv: the example data of the results page.

Run from the repository root:

    python3 tests/data/make_results_page_csv.py

The data are simulated with numpy (not R). ``float_format="%.17g"`` makes the
floats round-trip exactly, so R (tests/data/make_lme4_references.R) and the
Python tests see bit-identical values.
"""

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results_page.csv"


def make_results_page_frame() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    n = 300
    df = pd.DataFrame({
        "score": 60 + rng.normal(0, 8, n),
        "hours_studied": rng.uniform(0, 10, n),
        "prior_gpa": rng.uniform(2.0, 4.0, n),
        "student_id": [f"s{i}" for i in rng.integers(1, 31, n)],
        "school_id": [f"sch{i}" for i in rng.integers(1, 11, n)],
    })
    return df


if __name__ == "__main__":
    df = make_results_page_frame()
    df.to_csv(OUT, index=False, float_format="%.17g")
    back = pd.read_csv(OUT)
    assert back.equals(df), "results_page.csv does not round-trip exactly"
    print(f"wrote {OUT} ({len(df)} rows)")
