"""Ask the C allocator to give large freed blocks back to the system (glibc only).

A broker's big allocations come and go: a 1-16 MiB answer frame, the joined
output of a chunk, a read's slice of a log. glibc serves blocks above its
mmap threshold (128 KiB at start) with their own mapping and unmaps them on
free, but each time such a block is freed it *raises* the threshold to that
block's size (up to 32 MiB). After the first big frame, later ones come from
the heap instead, and a heap only shrinks from its top: in a
``benchmarks/memory_soak.py`` run the server stayed megabytes above its
idle size after every queue and log was deleted. Setting the threshold
explicitly turns that adjustment off, so big blocks keep their own mappings
and go back to the system when freed; an mmap and munmap per big block
costs microseconds against the milliseconds it takes to fill one.

Only ``minibroker serve`` calls this: the allocator is process-wide, and an
embedded broker must not retune the program it runs in. Elsewhere than glibc
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Final

log = logging.getLogger("minibroker.server")

#: ``M_MMAP_THRESHOLD`` in glibc's malloc.h.
_M_MMAP_THRESHOLD: Final = -3
#: glibc's own starting threshold, now kept for good.
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def keep_large_blocks_mapped() -> bool:
    """Fix glibc's mmap threshold; True if it was set (False: not glibc)."""
    try:
        # The process's own symbols: libc's, without searching for the library file.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; the allocator keeps its defaults")
        return False
    return True


def return_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``).

    glibc's ``free`` only shrinks a heap from its top, so thousands of small
    freed blocks (the partial frames of many stalled connections) stay in
    the RSS for good. The server calls this when its partial-frame budget
    drains after a burst (server/input_budget.py). False where there is no
    glibc.
    """
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True
