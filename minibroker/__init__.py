"""minibroker: a small, fast message broker on Trio.

Queues with pull consumers, topics with push fan-out, an append-only log
with offsets, and request/reply, over one msgpack-over-TCP protocol.
"""

__version__ = "0.1.0"
