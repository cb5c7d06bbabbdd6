"""The C allocator's thresholds, set for a process that moves large messages.

glibc's malloc gives memory back to the kernel whenever more than
``M_TRIM_THRESHOLD`` bytes are free at the top of its heap, and serves blocks
over ``M_MMAP_THRESHOLD`` with a fresh ``mmap``. Both start at 128 KiB and
rise as large blocks are freed, but only to twice the largest block seen, so
a process that receives, decodes, encodes and sends a 1 MiB message frees
more than that in one go and hands it back after nearly every message. The
next message's buffers are then faulted in and zeroed by the kernel a page at
a time, which costs more than the copying done in them: measured here, half
the time of a 1 MiB echo, on both ends.

:func:`tune_allocator` pins the two thresholds at the ceiling glibc's own
adjustment works towards on 64-bit machines (``mmap`` above 32 MiB, trim
above 64 MiB free), so those pages stay in the process. The price is memory:
up to 64 MiB the process no longer uses may stay resident until it is needed
again, per malloc arena (the main thread's, and one per worker thread that
allocates heavily).

It runs once per process, when a service or a client starts, and only with
glibc. ``MICRO_MALLOC=system`` leaves the allocator as it is, and so does any
malloc setting of your own (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_`` or a ``glibc.malloc`` tunable).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Mapping

__all__ = ["tune_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: blocks larger than this get their own mapping (glibc's ceiling for its own adjustment)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap beyond this goes back to the kernel
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_CHOICES = ("tuned", "system")
_OWN_SETTINGS = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)

_lock = threading.Lock()
_decided = False


def tune_allocator(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's trim and mmap thresholds once per process; True if this call set them.

    Raises :class:`ValueError` for a ``MICRO_MALLOC`` other than ``tuned`` or ``system``.
    """
    global _decided
    env = os.environ if environ is None else environ
    choice = env.get("MICRO_MALLOC", "tuned").strip().lower() or "tuned"
    if choice not in _CHOICES:
        raise ValueError(f"MICRO_MALLOC must be one of {', '.join(_CHOICES)}, not {choice!r}")
    with _lock:
        if _decided:
            return False
        _decided = True
        if choice == "system" or not _glibc() or _has_own_settings(env):
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        # Setting either turns glibc's own adjustment of both off: set both.
        mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        trim_set = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        return bool(mmap_set and trim_set)


def _glibc() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False
    return version is not None and version.startswith("glibc")


def _has_own_settings(env: Mapping[str, str]) -> bool:
    return any(name in env for name in _OWN_SETTINGS) or "glibc.malloc." in env.get(
        "GLIBC_TUNABLES", ""
    )
