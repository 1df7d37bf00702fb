"""The error for a source tree imported before its extension was built."""

from __future__ import annotations

import importlib.machinery
import os
from typing import Optional


def missing_extension_error() -> Optional[ImportError]:
    """An ImportError saying what to run when ``scanad/`` holds no built extension
    (``python`` started in a checkout that was never built imports the sources),
    or None when the extension file is there.

    >>> missing_extension_error() is None
    True
    """
    here = os.path.dirname(os.path.abspath(__file__))
    if any(os.path.exists(os.path.join(here, "_scanad" + suffix))
           for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        return None
    return ImportError(
        f"scanad's C extension is not built in {here!r}, a source tree. Build it there "
        "with `pip install -e .` or `pip install .`, or start Python in another directory "
        "to import an installed scanad."
    )
