"""Progress bars for long vectorised runs (bootstraps, deletion diagnostics).

A ``tqdm`` bar on standard error, counting finished refits batch by batch. By default it
shows only when standard error is a terminal (so logs, CI and piped output stay clean)
and ``INTERLACE_NO_PROGRESS`` is not set; ``progress=True`` or ``False`` forces it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, progress: bool | None = None):
    """A ``tqdm`` bar over ``total`` refits, disabled unless ``progress`` (default:
    interactive standard error and no ``INTERLACE_NO_PROGRESS``)."""
    from tqdm import tqdm

    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("INTERLACE_NO_PROGRESS")
    return tqdm(
        total=int(total),
        desc=desc,
        unit="refit",
        disable=not progress,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
