"""``minibroker serve`` makes glibc give big freed blocks back to the system, and
takes small objects from the C heap so that a burst's memory can go back too.

Run in a child process each: the allocator is process-wide, and its mmap
threshold only ever rises inside the process that freed a big block.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from minibroker.server.allocator import keep_large_blocks_mapped

#: The start of every child: its argv[1] says "serve" (tuned) or "default".
PRELUDE = textwrap.dedent(
    """
    import gc
    import sys

    from minibroker.server import allocator

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    """
)

CHILD = PRELUDE + textwrap.dedent(
    """
    if sys.argv[1] == "serve":
        assert allocator.keep_large_blocks_mapped()
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


BURST_CHILD = PRELUDE + textwrap.dedent(
    """
    if sys.argv[1] == "serve":
        assert allocator.small_objects_from_the_c_heap()
    start = rss()
    burst = [(i, str(i), [i]) for i in range(300_000)]  # about 60 MiB of small objects
    survivors = burst[::1000]  # a few outlive the burst, spread over it
    del burst
    gc.collect()
    allocator.return_free_memory()  # what the server's settle does once idle
    print((rss() - start) >> 20)
    """
)


def without_pythonmalloc() -> dict[str, str]:
    """This environment less PYTHONMALLOC: the children start on CPython's default."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONMALLOC"}


def burst_retained_mib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", BURST_CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env=without_pythonmalloc(),
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc only")
def test_a_few_survivors_of_a_burst_do_not_keep_its_memory() -> None:
    if not keep_large_blocks_mapped():
        pytest.skip("not glibc: no malloc_trim to give pages back")
    # pymalloc: 300 survivors pin nearly every 1 MiB arena the burst added.
    assert burst_retained_mib("default") >= 30
    assert burst_retained_mib("serve") <= 4  # a page or two per survivor


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_switch_is_done_once_and_only_over_pymalloc() -> None:
    if not keep_large_blocks_mapped():
        pytest.skip("not glibc: nothing is switched")
    child = textwrap.dedent(
        """
        from minibroker.server.allocator import current_object_allocator as name
        from minibroker.server.allocator import small_objects_from_the_c_heap as switch

        before = name()
        print(before, switch(), name(), switch())
        """
    )
    plain = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, env=without_pythonmalloc()
    )
    if plain.stdout.split()[:1] != ["pymalloc"]:
        pytest.skip("this interpreter does not run pymalloc")
    # Switched, it is no allocator set CPython knows, and a second call does nothing.
    assert plain.stdout.split() == ["pymalloc", "True", "None", "False"]
    # An allocator the operator chose (pymalloc too), or debug hooks: left as they are.
    for allocator in ("pymalloc", "malloc", "pymalloc_debug"):
        env = {**without_pythonmalloc(), "PYTHONMALLOC": allocator}
        done = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True
        )
        assert done.stdout.split()[1:] == ["False", allocator, "False"]
