"""Built-in example data, generated on the fly (nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["exam_scores", "reaction_times"]


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


def reaction_times(n_subjects: int = 18, n_days: int = 10, seed: int = 7) -> pd.DataFrame:
    """Synthetic sleep-deprivation study: reaction time (ms) of subjects over days.

    Each subject has its own intercept and slope over ``days`` (sd 25 ms and 6 ms per
    day, correlation 0.3) around ``250 + 10 days``; residual sd 25 ms. Columns
    ``reaction``, ``days``, ``subject``. Shaped like lme4's ``sleepstudy``.
    """
    rng = np.random.default_rng(seed)
    sd = np.array([25.0, 6.0])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.3], [0.3, 1.0]])
    effects = rng.multivariate_normal([0.0, 0.0], cov, size=n_subjects)
    subject = np.repeat(np.arange(n_subjects), n_days)
    days = np.tile(np.arange(n_days), n_subjects).astype(float)
    reaction = (
        250
        + effects[subject, 0]
        + (10 + effects[subject, 1]) * days
        + rng.normal(0, 25, subject.size)
    )
    return pd.DataFrame(
        {"reaction": reaction, "days": days, "subject": [f"S{s + 1:02d}" for s in subject]}
    )
