"""Every pattern program under docs/examples/ runs and prints exactly its transcript.

Each example embeds its own broker (or a threaded one), so it runs as a user
would run it: ``python docs/examples/NAME.py``, in a subprocess. The
transcripts below are what the docs promise; a change in behaviour shows up
here as a diff. The programs are started all at once and awaited one by one,
so the module costs about one interpreter start-up, not six.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"

#: Examples with a test of their own elsewhere.
TESTED_ELSEWHERE = {"event_sourcing.py": "tests/test_example_event_sourcing.py"}

TRANSCRIPTS = {
    "quickstart.py": """\
queue: b'welcome alice'
topic: orders.placed b'order 1'
log: [(0, b'created'), (1, b'paid')]
request/reply: b'hello bob'
""",
    "work_queue.py": """\
queued 8 jobs on 'thumbnails'; 3 workers compete for them
a worker crashed holding crash.jpg: the broker requeued it, another worker made it
corrupt.jpg failed on delivery 1 and was given back (nack)
corrupt.jpg failed on delivery 2 and was given back (nack)
corrupt.jpg failed on delivery 3 and was given back (nack)
made 7 thumbnails, each exactly once: crash.jpg photo-1.jpg photo-2.jpg photo-3.jpg \
photo-4.jpg photo-5.jpg photo-6.jpg
dead letter: corrupt.jpg (reason max_deliveries, 3 deliveries, from 'thumbnails')
queue stats: published 8, delivered 11, redelivered 3, acked 7, dead-lettered 1, ready 0, \
in flight 0
""",
    "pubsub_fanout.py": """\
published prices.eu.acme=101.5: 3 subscription copies, 1 queue copy
published prices.us.globex=55.0: 2 subscription copies, 1 queue copy
published prices.eu.initech=12.25: 3 subscription copies, 1 queue copy
published prices.us.acme=101.7: 2 subscription copies, 1 queue copy
published prices.eu.acme=101.6: 3 subscription copies, 1 queue copy
published prices.asia.hooli=8.8: 2 subscription copies, 1 queue copy
dashboard got 6: eu.acme=101.5, us.globex=55.0, eu.initech=12.25, us.acme=101.7, \
eu.acme=101.6, asia.hooli=8.8
eu-desk got 3: eu.acme=101.5, eu.initech=12.25, eu.acme=101.6
billing-1 got 3: eu.acme=101.5, eu.initech=12.25, eu.acme=101.6
billing-2 got 3: us.globex=55.0, us.acme=101.7, asia.hooli=8.8
ticker-tape (buffer 3) got the newest 3: eu.acme=102.3, eu.acme=102.4, eu.acme=102.5
ticker-tape was told it dropped 3
dashboard, keeping up, got all 6 of the burst
the archiver drains price-history later: 12 prices were kept for it
""",
    "request_reply.py": """\
quote widget: NoResponders, at once (no pricing service is running)
pricing service registered for pricing.quote
quote 3 x widget: 7.50 EUR
quote 1 x gadget: 12.00 EUR
quote spaceship: ResponderError: no price for 'spaceship'
quote antique: Timeout after 0.2 s (the broker gave up on it)
""",
    "choreography.py": """\
3 orders placed; the shipping service is deployed only now
order 1: placed -> payment captured -> dispatched (TRK-0001)
order 2: placed -> payment declined (card expired) -> cancelled
order 3: placed -> payment captured -> dispatched (TRK-0003)
payments handled 3 events, shipping 2
""",
    "orchestration.py": """\
order 1: inventory.reserve -> reserved 3 x widget
order 1: payment.charge -> charged 7.50
order 1: shipping.schedule -> parcel booked, tracking TRK-0001
order 2: inventory.reserve -> reserved 1 x gadget
order 2: payment.charge failed: card declined: expired
order 2: inventory.release -> released 1 x gadget
order 3: inventory.reserve failed: only 4 gizmo in stock
the shop heard the outcomes: 1 confirmed, 2 rejected, 3 rejected
stock left: widget 7, gadget 2, gizmo 4
""",
}


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start every example at once; each test waits for its own."""
    started = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in TRANSCRIPTS
    }
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_example_prints_its_transcript(name: str, runs: dict[str, subprocess.Popen[str]]) -> None:
    stdout, stderr = runs[name].communicate(timeout=120)
    assert runs[name].returncode == 0, stderr
    assert stdout == TRANSCRIPTS[name]


def test_every_example_is_tested() -> None:
    """A new example must get a transcript here (or a test of its own)."""
    programs = {path.name for path in EXAMPLES.glob("*.py")}
    assert programs == set(TRANSCRIPTS) | set(TESTED_ELSEWHERE)
    for test in TESTED_ELSEWHERE.values():
        assert (ROOT / test).is_file()


def test_every_example_explains_itself() -> None:
    """Each pattern program opens with a docstring: the pattern, and when to use it."""
    for name in sorted(set(TRANSCRIPTS) - {"quickstart.py"}):
        source = (EXAMPLES / name).read_text()
        assert source.startswith('"""'), name
        docstring = source.split('"""')[1]
        assert "The pattern" in docstring, name
        assert "When to use it" in docstring, name
