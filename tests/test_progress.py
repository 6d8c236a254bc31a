"""Progress bars: shown when asked (or on a terminal), silent otherwise."""

from __future__ import annotations

import interlace
from interlace._base.progress import progress_bar


def test_bar_counts_refits_when_asked(page_result, capsys):
    boot = page_result.pigeonhole_bootstrap(64, seed=1, progress=True)
    err = capsys.readouterr().err
    assert boot.n_bootstrap == 64
    assert "64/64" in err and "refit" in err


def test_silent_when_not_interactive(page_result, capsys):
    page_result.pigeonhole_bootstrap(64, seed=1)  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""
    interlace.hlm_influence(page_result, level="school_id", progress=False)
    assert capsys.readouterr().err == ""


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("INTERLACE_NO_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert progress_bar(10, "x").disable
