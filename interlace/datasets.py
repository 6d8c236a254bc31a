"""Built-in example data, generated on the fly (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["exam_scores"]


def exam_scores(n: int = 300, seed: int = 42) -> pd.DataFrame:
    """The results page's running example: exam scores of students in schools.

    Columns ``score``, ``hours_studied``, ``prior_gpa``, ``student_id`` (30 students) and
    ``school_id`` (10 schools), drawn exactly as the page does with
    ``numpy.random.default_rng(seed)``; the defaults reproduce the page's data.
    """
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "score": 60 + rng.normal(0, 8, n),
            "hours_studied": rng.uniform(0, 10, n),
            "prior_gpa": rng.uniform(2.0, 4.0, n),
            "student_id": [f"s{i}" for i in rng.integers(1, 31, n)],
            "school_id": [f"sch{i}" for i in rng.integers(1, 11, n)],
        }
    )
