"""Time-ordered, URL-safe ids: ``<prefix>_<12 hex ms timestamp><16 hex random>``.

Sorting ids sorts by creation time, which makes cursor pagination a plain ``id > cursor``.
"""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(8).hex()}"
