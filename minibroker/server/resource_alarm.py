"""A resource alarm, as RabbitMQ's: the broker's memory above a watermark, or its disk low.

``--memory-high-watermark BYTES`` compares the process's resident memory
(``/proc/self/statm``) with BYTES; ``--disk-free-limit BYTES`` compares the
free space of the data directory's file system with BYTES. While either is
crossed the alarm is on, and whoever listens is told when it goes on and off
(the AMQP front end blocks its publishers then, see
``minibroker/amqp/blocking.py``). The server checks once a second
(``run``); ``check`` does one round, so tests drive it with measurements of
their own.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

log = logging.getLogger("minibroker.server")

#: Seconds between two checks.
CHECK_INTERVAL: Final = 1.0
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """This process's resident memory, or None where /proc is not available."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class ResourceAlarm:
    """Watches memory and disk against their limits; tells listeners when that changes."""

    def __init__(
        self,
        *,
        memory_limit: int | None = None,
        disk_free_limit: int | None = None,
        data_dir: Path | None = None,
        memory: Callable[[], int | None] = resident_bytes,
        disk_free: Callable[[Path], int] | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.disk_free_limit = disk_free_limit if data_dir is not None else None
        self.data_dir = data_dir
        #: Measures resident memory (tests put a measurement of their own here).
        self.memory = memory
        self._disk_free = disk_free or (lambda path: shutil.disk_usage(path).free)
        #: Why the alarm is on ("memory", "disk" or both, as RabbitMQ words it), or None.
        self.reason: str | None = None
        #: Called with the new reason (None: the alarm cleared) when it changes.
        self.listeners: list[Callable[[str | None], None]] = []

    @property
    def enabled(self) -> bool:
        return self.memory_limit is not None or self.disk_free_limit is not None

    def check(self) -> str | None:
        """Measure once; tell the listeners if the alarm went on, off or changed."""
        causes = []
        if self.memory_limit is not None:
            used = self.memory()
            if used is not None and used > self.memory_limit:
                causes.append("memory")
        if self.disk_free_limit is not None and self.data_dir is not None:
            try:
                free = self._disk_free(self.data_dir)
            except OSError:
                free = None
            if free is not None and free < self.disk_free_limit:
                causes.append("disk")
        reason = None if not causes else "low on " + " and ".join(causes)
        if reason != self.reason:
            self.reason = reason
            if reason is None:
                log.warning("resource alarm cleared")
            else:
                log.warning("resource alarm: %s; blocking AMQP publishers", reason)
            for listener in list(self.listeners):
                listener(reason)
        return reason

    async def run(self) -> None:
        while True:
            self.check()
            await trio.sleep(CHECK_INTERVAL)
