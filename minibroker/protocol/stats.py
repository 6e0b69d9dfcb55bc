"""Plain counters the protocol layer bumps; the metrics collector reads them.

Incrementing a prometheus Counter costs about a microsecond, as much as
decoding a frame, so the hot path only bumps ints here and
``server/metrics.py`` turns them into Prometheus samples at scrape time.
"""

from __future__ import annotations

from minibroker.value_class import Value, field


class ProtocolStats(Value):
    frames_in: int = 0
    #: Frames queued for sending: responses, errors, goodbyes and push frames.
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
