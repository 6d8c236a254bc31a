"""interlace.plots: each plot renders to a PNG and draws the numbers it claims to draw."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

import interlace
from interlace import plots

from .conftest import DATA


@pytest.fixture(scope="module")
def sleep_df():
    return pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})


@pytest.fixture(scope="module")
def sleep_result(sleep_df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit("Reaction ~ Days + (Days | Subject)", data=sleep_df)


def _render(ax, tmp_path, name="plot.png"):
    """Save the Axes' figure, check the PNG, close the figure."""
    fig = ax.figure
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.exists() and path.stat().st_size > 5_000
    return path


def _qq_points(values):
    y = np.sort(np.asarray(values, dtype=float))
    return stats.norm.ppf((np.arange(1, y.size + 1) - 0.5) / y.size), y


def test_residuals_vs_fitted_draws_the_conditional_residuals(sleep_result, tmp_path):
    ax = plots.residuals_vs_fitted(sleep_result)
    xy = ax.collections[0].get_offsets()
    res = interlace.hlm_resid(sleep_result, type="conditional", standardized=False)
    np.testing.assert_allclose(xy[:, 0], res["fitted"].to_numpy())
    np.testing.assert_allclose(xy[:, 1], res["resid"].to_numpy())
    # conditional, unstandardized residuals are the result's own fitted values and residuals
    np.testing.assert_allclose(xy[:, 0], sleep_result.fittedvalues.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(xy[:, 1], sleep_result.resid.to_numpy(), atol=1e-8)
    assert [tuple(line.get_ydata()) for line in ax.lines] == [(0.0, 0.0)]
    assert ax.get_xlabel() == "Fitted values" and ax.get_ylabel() == "Conditional residuals"
    _render(ax, tmp_path)


def test_residuals_vs_fitted_uses_a_given_axes(sleep_result, tmp_path):
    _, (a0, a1) = plt.subplots(1, 2)
    assert plots.residuals_vs_fitted(sleep_result, standardized=True, ax=a1) is a1
    assert not a0.collections and a1.get_ylabel() == "Standardized conditional residuals"
    _render(a1, tmp_path)


def test_qq_residuals_points_and_quartile_line(sleep_result, tmp_path):
    ax = plots.qq_residuals(sleep_result)
    resid = interlace.hlm_resid(sleep_result, type="conditional", standardized=True)["resid"]
    x, y = _qq_points(resid)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[x, y])
    (line,) = ax.lines  # the reference line passes through both quartile points
    lx, ly = line.get_xydata().T
    slope = (ly[1] - ly[0]) / (lx[1] - lx[0])
    tq, sq = stats.norm.ppf([0.25, 0.75]), np.quantile(resid, [0.25, 0.75])
    np.testing.assert_allclose(ly[0] + slope * (tq - lx[0]), sq)
    _render(ax, tmp_path)


def test_qq_blups_slope_and_intercept_factors(sleep_result, page_result, tmp_path):
    ax = plots.qq_blups(sleep_result, "Subject", column="Days")
    blups = sleep_result.random_effects["Subject"]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[_qq_points(blups["Days"])])
    _render(ax, tmp_path, "days.png")

    ax = plots.qq_blups(sleep_result, "Subject")  # default: the first column
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], np.sort(blups["(Intercept)"]))
    assert ax.get_ylabel() == "BLUP (Intercept)"
    plt.close(ax.figure)

    ax = plots.qq_blups(page_result, "student_id")  # intercept-only: a Series
    np.testing.assert_allclose(
        ax.collections[0].get_offsets()[:, 1], np.sort(page_result.random_effects["student_id"])
    )
    _render(ax, tmp_path, "student.png")
    with pytest.raises(interlace.ModelSpecError, match="only a random intercept"):
        plots.qq_blups(page_result, "student_id", column="x")
    plt.close("all")


def test_cooks_index_points_cutoff_and_labels(page_result, tmp_path):
    ax = plots.cooks_index(page_result)
    d = interlace.cooks_distance(page_result)
    n = len(d)
    np.testing.assert_allclose(ax.collections[-1].get_offsets(), np.c_[np.arange(n), d])
    (cut,) = ax.lines
    np.testing.assert_allclose(cut.get_ydata(), [4 / n, 4 / n])
    above = d[d > 4 / n]
    labels = [t.get_text() for t in ax.texts]  # the 10 largest above the cut-off, in order
    assert labels == [str(i) for i in above.nlargest(10).sort_index().index]
    positions = np.array([t.xy for t in ax.texts])
    np.testing.assert_allclose(positions[:, 1], d.iloc[positions[:, 0].astype(int)])
    _render(ax, tmp_path)
    ax = plots.cooks_index(page_result, max_labels=None)
    assert len(ax.texts) == len(above)
    plt.close(ax.figure)


def test_cooks_index_from_influence_frame_and_threshold(page_result, tmp_path):
    influence = pd.DataFrame({"cooksd": [0.01, 0.5, 0.02, 0.3]}, index=["a", "b", "c", "d"])
    ax = plots.cooks_index(page_result, threshold=0.25, influence=influence)
    np.testing.assert_allclose(ax.collections[-1].get_offsets()[:, 1], influence["cooksd"])
    assert ax.lines[0].get_ydata()[0] == 0.25
    assert [t.get_text() for t in ax.texts] == ["b", "d"]
    _render(ax, tmp_path)


def _errorbars(ax):
    data_line, _, (bars,) = ax.containers[0].lines
    halfwidths = np.array([(s[1, 0] - s[0, 0]) / 2 for s in bars.get_segments()])
    return (
        np.asarray(data_line.get_xdata(), dtype=float),
        np.asarray(data_line.get_ydata(), dtype=float),
        halfwidths,
    )


def test_caterpillar_sorted_blups_with_intervals(sleep_result, tmp_path):
    ax = plots.caterpillar(sleep_result, "Subject", column="Days", level=0.9)
    x, y, half = _errorbars(ax)
    frame = interlace.hlm_resid(sleep_result, level="Subject").sort_values("Days")
    assert len(x) == len(frame) == sleep_result.ngroups["Subject"] == 18
    np.testing.assert_allclose(x, frame["Days"])
    np.testing.assert_allclose(half, stats.norm.ppf(0.95) * frame["Days_se"])
    assert np.all(np.diff(x) >= 0) and list(y) == list(range(18))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(frame.index)
    np.testing.assert_allclose(x, sleep_result.random_effects["Subject"]["Days"].sort_values())
    _render(ax, tmp_path)


def test_caterpillar_intercept_factor(page_result, tmp_path):
    ax = plots.caterpillar(page_result, "student_id")
    x, _, half = _errorbars(ax)
    assert len(x) == 30 and np.all(half > 0)
    np.testing.assert_allclose(x, page_result.random_effects["student_id"].sort_values())
    _render(ax, tmp_path)


def test_caterpillar_many_levels_drops_tick_labels(page_result, monkeypatch, tmp_path):
    frame = pd.DataFrame(
        {"(Intercept)": np.linspace(-1, 1, 60)[::-1], "(Intercept)_se": 0.1, "n_obs": 5},
        index=[f"g{i}" for i in range(60)],
    )
    monkeypatch.setattr(plots, "hlm_resid", lambda result, level: frame)
    ax = plots.caterpillar(page_result, "student_id")
    x, _, _ = _errorbars(ax)
    assert len(x) == 60 and len(ax.get_yticks()) == 0
    np.testing.assert_allclose(x, np.linspace(-1, 1, 60))
    with pytest.raises(interlace.ModelSpecError, match="not one of"):
        plots.caterpillar(page_result, "student_id", column="n_obs")
    _render(ax, tmp_path)


def _partial_means(result, data, factor, blup):
    """Group means of ``resid + own intercept BLUP``, computed with pandas."""
    own = data[factor].astype(str).map(blup.rename(index=str)).to_numpy()
    partial = pd.Series(result.resid.to_numpy() + own)
    return (
        partial.groupby(data[factor].astype(str).to_numpy()).mean().reindex(blup.index.astype(str))
    )


def test_shrinkage_x_is_the_unshrunk_group_mean(page_result, page_df, tmp_path):
    ax = plots.shrinkage(page_result, "student_id")
    xy = ax.collections[0].get_offsets()
    blup = page_result.random_effects["student_id"]
    expected = _partial_means(page_result, page_df, "student_id", blup)
    np.testing.assert_allclose(xy[:, 0], expected, rtol=1e-10)
    np.testing.assert_allclose(xy[:, 1], blup)
    # the BLUP is the group mean shrunk by n_j s2_g / (n_j s2_g + s2) (the block's normal
    # equations), which is what makes x the unshrunk deviation
    n_j = page_df["student_id"].value_counts().reindex(blup.index).to_numpy()
    v = page_result.variance_components["student_id"]
    np.testing.assert_allclose(
        xy[:, 1], xy[:, 0] * n_j * v / (n_j * v + page_result.scale), rtol=1e-6, atol=1e-9
    )
    assert ax.lines[0].get_linestyle() == "--"
    lx, ly = ax.lines[0].get_xydata().T
    np.testing.assert_allclose(lx, ly)
    _render(ax, tmp_path)


def test_shrinkage_slope_factor_uses_the_intercept(sleep_result, sleep_df, tmp_path):
    ax = plots.shrinkage(sleep_result, "Subject")
    xy = ax.collections[0].get_offsets()
    blup = sleep_result.random_effects["Subject"]["(Intercept)"]
    np.testing.assert_allclose(
        xy[:, 0], _partial_means(sleep_result, sleep_df, "Subject", blup), rtol=1e-10
    )
    np.testing.assert_allclose(xy[:, 1], blup)
    assert ax.get_ylabel() == "BLUP (Intercept)"
    _render(ax, tmp_path)
    with pytest.raises(interlace.ModelSpecError, match="not a grouping factor"):
        plots.shrinkage(sleep_result, "Days")
    plt.close("all")


def test_diagnostic_panel(sleep_result, tmp_path):
    path = tmp_path / "panel.png"
    fig = plots.diagnostic_panel(sleep_result, "Subject", path=path)
    try:
        assert len(fig.axes) == 6 and path.stat().st_size > 20_000
        assert all(ax.has_data() for ax in fig.axes)
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == "Residuals vs fitted" and titles[-1] == "Shrinkage: Subject"
    finally:
        plt.close(fig)


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "interlace.plots")
    with pytest.raises(ImportError, match=r"pip install interlace\[plot\]"):
        importlib.import_module("interlace.plots")


def test_core_import_does_not_load_matplotlib():
    code = "import sys, interlace; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
