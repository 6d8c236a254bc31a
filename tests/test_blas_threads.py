"""``_base.blas_threads``: a fit runs its evaluations with one BLAS thread and leaves the
caller's BLAS thread counts as they were (a scoped setting, never a process-wide one).
Counts are read with threadpoolctl; no timing."""

from __future__ import annotations

import warnings

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import interlace
from interlace._base import blas_threads
from interlace._base.blas_threads import single_blas_thread
from interlace._model import estimate


def blas_counts() -> dict[str, int]:
    return {
        lib["filepath"]: lib["num_threads"]
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    }


@pytest.fixture
def two_threads():
    """The caller's own setting, 2 threads per BLAS library (also on a 1-core machine)."""
    if not blas_counts():
        pytest.skip("threadpoolctl sees no BLAS library in this process")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


@pytest.mark.usefixtures("two_threads")
def test_the_scope_sets_one_thread_and_restores_the_callers():
    before = blas_counts()
    assert set(before.values()) == {2}
    with single_blas_thread():
        assert set(blas_counts().values()) == {1}
    assert blas_counts() == before


@pytest.mark.usefixtures("two_threads")
def test_a_fit_runs_its_optimiser_with_one_thread_and_leaves_the_setting(monkeypatch):
    seen = []
    inner = estimate.minimize_rescaled

    def spy(*args, **kwargs):
        seen.append(set(blas_counts().values()))
        return inner(*args, **kwargs)

    monkeypatch.setattr(estimate, "minimize_rescaled", spy)
    before = blas_counts()
    page = interlace.datasets.exam_scores()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interlace.fit("score ~ hours_studied + (1 | student_id) + (1 | school_id)", page)
    assert seen == [{1}]
    assert blas_counts() == before


def test_without_threadpoolctl_the_scope_does_nothing(monkeypatch):
    monkeypatch.setattr(blas_threads, "_CONTROLLER", False)
    before = blas_counts()
    with single_blas_thread():
        assert blas_counts() == before
