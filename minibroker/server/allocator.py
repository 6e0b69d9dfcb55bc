"""Tune the allocators of ``minibroker serve`` so that freed memory goes back to the system.

Two parts: big blocks keep their own mappings (``keep_large_blocks_mapped``),
and small Python objects come from the C heap instead of CPython's arenas
(``small_objects_from_the_c_heap``), so that ``malloc_trim``
(``return_free_memory``, at the server's settle) hands back what a burst left.

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

Only ``minibroker serve`` calls these: the allocators are process-wide, and
an embedded broker must not retune the program it runs in. Elsewhere than
glibc (musl, macOS) they do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Final

log = logging.getLogger("minibroker.server")

#: ``M_MMAP_THRESHOLD`` in glibc's malloc.h.
_M_MMAP_THRESHOLD: Final = -3
#: glibc's own starting threshold, now kept for good.
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def _libc_function(name: str) -> ctypes._NamedFuncPointer | None:
    """A function of the C library by name, or None where it has none (not glibc)."""
    try:
        # The process's own symbols: libc's, without searching for the library file.
        function: ctypes._NamedFuncPointer = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def keep_large_blocks_mapped() -> bool:
    """Fix glibc's mmap threshold; True if it was set (False: not glibc)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
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
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True


class _MemAllocator(ctypes.Structure):
    """The C API's ``PyMemAllocatorEx``: a context and four function pointers."""

    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("malloc", ctypes.c_void_p),
        ("calloc", ctypes.c_void_p),
        ("realloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
    ]


#: ``PyMemAllocatorDomain``: raw (plain malloc), mem (``PyMem_Malloc``), object.
_DOMAIN_RAW: Final = 0
_DOMAINS_ON_PYMALLOC: Final = (1, 2)


def current_object_allocator() -> str | None:
    """CPython's name for its allocator set ("pymalloc", "malloc", "pymalloc_debug"),
    or None for a set it does not know (hooked by tracemalloc, or switched here)."""
    try:
        name_of = ctypes.pythonapi._PyMem_GetCurrentAllocatorName
    except AttributeError:
        return None
    name_of.restype = ctypes.c_char_p
    name = name_of()
    return name.decode() if name is not None else None


def small_objects_from_the_c_heap() -> bool:
    """New small Python objects come from malloc, not pymalloc; True if switched.

    CPython serves objects of up to 512 bytes from its own 1 MiB arenas and
    gives an arena back only when every object in it is freed. After a
    burst (a million fuzzed frames, a queue of 50,000 messages) every
    object of it is freed, but the few long-lived ones made meanwhile (a
    counter's new int, a timer's float, a decoder compiled on first use, a
    cache entry) are spread over the arenas the burst added and pin them:
    the server stayed 5 to 18 MiB above its idle size, creeping from round
    to round, although it held the same objects as when idle. glibc's heap
    has the same holes, but ``malloc_trim`` returns every free page inside
    it, so what stays pinned is a 4 KiB page per survivor, not a 1 MiB
    arena. ``PYTHONMALLOC=malloc`` does this from the start but must be set
    before the interpreter starts; this does it from now on: new blocks come
    from malloc, while freeing and resizing still go through pymalloc's own
    functions, which tell its blocks (the objects made before the switch)
    from the C heap's and free each where it came from. (Those functions
    still take a block resized from nothing, a list's first items say, or a
    small pymalloc block resized, from pymalloc; the RSS still comes back
    within 5 % of idle after a burst, docs/reliability.md.)

    The cost is CPU: glibc's malloc is slower than pymalloc for small
    blocks (docs/reliability.md has the measured difference per message).
    An operator who prefers pymalloc's speed to memory coming back says so
    with ``PYTHONMALLOC=pymalloc``: any ``PYTHONMALLOC`` is left as chosen,
    and so are ``-X dev``'s debug hooks and tracemalloc, which hook the
    allocator. Done before other threads run. One effect:
    ``sys.getallocatedblocks()`` counts only pymalloc's blocks and is off
    afterwards. False where nothing was switched.
    """
    if os.environ.get("PYTHONMALLOC") or _libc_function("malloc_trim") is None:
        return False  # the operator chose an allocator, or no trim to give pages back
    if current_object_allocator() != "pymalloc":
        return False  # debug hooks, tracemalloc, or switched already
    api = ctypes.pythonapi
    raw = _MemAllocator()
    api.PyMem_GetAllocator(_DOMAIN_RAW, ctypes.byref(raw))
    for domain in _DOMAINS_ON_PYMALLOC:
        current = _MemAllocator()
        api.PyMem_GetAllocator(domain, ctypes.byref(current))
        switched = _MemAllocator(current.ctx, raw.malloc, raw.calloc, current.realloc, current.free)
        api.PyMem_SetAllocator(domain, ctypes.byref(switched))
    return True
