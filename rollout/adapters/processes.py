"""Whether a process of this host is alive, by PID (for locks left by killed processes)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
