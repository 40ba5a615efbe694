"""Freed volumes go back to the system at once (glibc's allocator).

glibc serves a large allocation with its own memory mapping, returned on free, but
after the first such free it raises that threshold up to 32 MiB and keeps freed
blocks below it in its heaps (one per thread). A scan's slabs, boxes and temporaries
are of that size, so the process would keep up to 100 MiB it no longer uses. Fixing
the threshold at 1 MiB keeps the peak resident memory of a scan near what its arrays
need.
"""

from __future__ import annotations

import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
# Free memory kept at the top of the heap: fixing the mmap threshold also fixes this at
# glibc's 128 KiB, and then a loop of sub-MiB temporaries hands its pages back and
# faults them in again at every step.
TRIM_THRESHOLD = 8 << 20
_done = False


def release_freed_memory_promptly(threshold: int = 1 << 20) -> bool:
    """Serve allocations of at least ``threshold`` bytes by their own mappings (glibc only).

    Returns True if the setting was applied; elsewhere it does nothing. Called once
    per process, further calls are free.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
        if _done:
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):  # not glibc
        return False
    return _done
