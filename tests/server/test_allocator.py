"""``minibroker serve`` makes glibc give big freed blocks back to the system.

Run in a child process each: the allocator is process-wide, and its mmap
threshold only ever rises inside the process that freed a big block.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from minibroker.server.allocator import keep_large_blocks_mapped

CHILD = textwrap.dedent(
    """
    import sys

    from minibroker.server.allocator import keep_large_blocks_mapped

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    if sys.argv[1] == "serve":
        assert keep_large_blocks_mapped()
    big = b"x" * (8 << 20)
    del big  # a big answer came and went: glibc's own threshold is now 8 MiB
    start = rss()
    blocks = [b"y" * (2 << 20) for _ in range(20)]  # 40 MiB of 2 MiB frames
    kept = blocks.pop()  # one stays (the newest), the others are freed
    del blocks
    print((rss() - start) >> 20)
    """
)


def retained_mib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc only")
def test_freed_big_blocks_go_back_to_the_system() -> None:
    if not keep_large_blocks_mapped():
        pytest.skip("not glibc: nothing to tune")
    assert retained_mib("default") >= 20  # what glibc does on its own: the heap keeps them
    assert retained_mib("serve") <= 4  # one 2 MiB block is still held
