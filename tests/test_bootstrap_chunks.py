"""Chunked bootstraps simulate and refit only a few responses more than asked for.

A bootstrap whose replicates do not fit in one chunk used to run whole chunks of the
largest size (and refit batches padded to the largest batch) and throw the surplus away:
InstEval's 100 replicates made 114 refits, 500 requested on a model with batches of 128
simulated and refitted 768. Chunks and batches are now balanced (``ceil(n / count)``
each), so the surplus is below the number of chunks (batches). Counted by wrapping the
simulator and the compiled refit batch; chunks are forced small with the chunk size
(``chunk_rows``) and the refit batch size (``default_batch_size``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interlace._core import refit as sim
from interlace._inference import parametric, resample

from .conftest import DATA, fit_quiet


@pytest.fixture(scope="module")
def dyestuff_fit():
    return fit_quiet("Yield ~ 1 + (1 | Batch)", pd.read_csv(DATA / "dyestuff.csv"))[0]


class _Counter:
    """Counts simulated responses and first-pass refits (the second pass refits only
    unconverged ones again, with maxiter=500) and the calls of each."""

    def __init__(self, monkeypatch):
        self.simulated, self.sim_calls = 0, 0
        self.refitted, self.batches, self.batch_shapes = 0, 0, set()
        simulate, fit_batch = parametric.simulate_responses, sim._fit_batch

        def counted_simulate(*args, n, **kwargs):
            self.simulated += n
            self.sim_calls += 1
            return simulate(*args, n=n, **kwargs)

        def counted_fit_batch(model, Y, Theta0, P, *, maxiter, **kwargs):
            if maxiter != 500:
                rows = int(np.shape(Theta0)[0])
                self.refitted += rows
                self.batches += 1
                self.batch_shapes.add(rows)
            return fit_batch(model, Y, Theta0, P, maxiter=maxiter, **kwargs)

        monkeypatch.setattr(parametric, "simulate_responses", counted_simulate)
        monkeypatch.setattr(sim, "_fit_batch", counted_fit_batch)


def _force_chunks(monkeypatch, chunk: int, batch: int | None) -> None:
    for module in (parametric, resample):
        monkeypatch.setattr(module, "chunk_rows", lambda model, n_bootstrap, nobs: chunk)
    monkeypatch.setattr(sim, "default_batch_size", lambda cp: batch)


# (n, most per chunk, refit batch): 57 per chunk and no batching is InstEval's case
# (2^22 // 73,421 rows); 384 per chunk and batches of 128 the 500 -> 768 case.
CASES = [
    (100, 57, None),
    (129, 40, None),
    (500, 57, None),
    (100, 40, 16),
    (129, 40, 16),
    (500, 384, 128),
]


@pytest.mark.parametrize("n, chunk, batch", CASES)
def test_parametric_bootstrap_surplus_below_chunk_count(dyestuff_fit, monkeypatch, n, chunk, batch):
    _force_chunks(monkeypatch, chunk, batch)
    count = _Counter(monkeypatch)
    boot = dyestuff_fit.parametric_bootstrap(n, seed=7)
    assert boot.n_bootstrap == n  # exact
    assert count.sim_calls == -(-n // chunk)  # chunk count ceil(n / most), exact
    # fewer surplus refits than refit batches, and every response simulated is refitted
    # once (a chunk is a whole number of equal batches); exact integers
    assert n <= count.refitted < n + count.batches
    assert count.simulated == count.refitted
    if batch is None or chunk <= batch:  # one batch per chunk: surplus below the chunk count
        assert count.batches == count.sim_calls  # exact
        assert count.simulated < n + count.sim_calls  # exact
    assert len(count.batch_shapes) == 1  # one compiled batch shape (exact)


@pytest.mark.parametrize("n, chunk, batch", [(100, 40, None), (129, 40, 16)])
def test_cluster_bootstrap_surplus_below_batch_count(dyestuff_fit, monkeypatch, n, chunk, batch):
    _force_chunks(monkeypatch, chunk, batch)
    count = _Counter(monkeypatch)
    boot = dyestuff_fit.cluster_bootstrap(n, group="Batch", seed=7)
    assert boot.n_bootstrap == n  # exact
    assert n <= count.refitted < n + count.batches  # exact integers
    assert len(count.batch_shapes) == 1  # one compiled batch shape (exact)


def test_balanced_chunks_are_reproducible(dyestuff_fit, monkeypatch):
    _force_chunks(monkeypatch, 40, 16)
    a = dyestuff_fit.parametric_bootstrap(129, seed=3)
    b = dyestuff_fit.parametric_bootstrap(129, seed=3)
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)  # exact
    c = dyestuff_fit.cluster_bootstrap(129, group="Batch", seed=3)
    d = dyestuff_fit.cluster_bootstrap(129, group="Batch", seed=3)
    pd.testing.assert_frame_equal(c.replicates, d.replicates, check_exact=True)  # exact


@pytest.mark.parametrize("n, most", [(100, 57), (129, 40), (500, 57), (768, 384), (7, 100)])
def test_balanced_split(n, most):
    count, size = sim.balanced_split(n, most)
    assert count == -(-n // most) and size <= most  # exact integers
    assert 0 <= count * size - n < count  # exact integers
