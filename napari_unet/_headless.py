"""Running a GUI script (benchmarks, screenshot makers) without a display: again under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

#: set in the re-executed process, so that it does not re-execute itself again
_FLAG = "_NAPARI_UNET_XVFB"


def rerun_under_xvfb(script: str, argv: Sequence[str]) -> int | None:
    """Run ``script argv`` again under ``xvfb-run`` (1600x1000 screen) when there is no display.

    Returns
    -------
    int or None
        The re-run's exit status, or None when the caller should go on in this process (a
        display exists, no ``xvfb-run`` is installed, or this is the re-run already).
    """
    if os.environ.get("DISPLAY") or os.environ.get(_FLAG) or not shutil.which("xvfb-run"):
        return None
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, script, *argv]
    return subprocess.call(cmd, env=dict(os.environ, **{_FLAG: "1"}))
