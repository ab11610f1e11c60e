"""glibc malloc settings for a process that streams big messages (``proxy`` and ``serve``).

By default glibc serves a block of 128 KiB or more with its own ``mmap``. A read asks for a buffer of
:data:`proxy.jsonl.RECEIVE_BYTES` and shrinks it to what came; glibc then shrinks the mapping in place and
unmaps it at ``free``, so its adaptive threshold never rises and every big read gets fresh pages from the
kernel: 6.5 page faults per 64 KiB message and 96 per 1 MiB message streamed through ``proxy`` (measured with
``/proc/PID/stat`` on glibc 2.36). Blocks up to :data:`MMAP_THRESHOLD_BYTES` now come from the heap, which
keeps up to :data:`TRIM_THRESHOLD_BYTES` free at its top for the next one: 1.8 faults per 64 KiB message. Bigger
blocks (a 64 MiB message) still get their own mapping and go back to the kernel when freed.

The trim threshold is a trade between speed and peak memory. At 16 MiB, 1 MiB messages fell to 13 faults each
(CPU -16% in an interleaved A/B run of 4 repetitions), but the heap then kept up to 16 MiB: a 64 MiB stdin line of
nested lists peaked 5 MiB higher, past the ``baseline + 3 x size`` bound of ``scripts/memcheck.py`` (issue 9).
At 4 MiB every memcheck shape peaks as without these settings.

Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import os

from .options import MiB

#: Blocks of at least this many bytes get their own mapping (glibc's default: 128 KiB, adjusted at run time).
MMAP_THRESHOLD_BYTES = 4 * MiB
#: Free bytes at the top of the heap beyond this are given back to the kernel (glibc's default: 128 KiB).
TRIM_THRESHOLD_BYTES = 4 * MiB

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_for_streaming() -> bool:
    """Apply the thresholds above with glibc's ``mallopt(3)``; False where the C library has no ``mallopt`` or is
    not glibc (nothing changes then). Never raises."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError):  # no such name outside glibc
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim_set = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(mmap_set and trim_set)  # mallopt returns 1 on success
