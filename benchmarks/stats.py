"""Small statistics helpers shared by the requester roles."""

from __future__ import annotations

import math
import time


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    values = sorted(x * 1e6 for x in latencies_s)
    return {
        "p50_us": percentile(values, 50),
        "p90_us": percentile(values, 90),
        "p99_us": percentile(values, 99),
        "max_us": values[-1] if values else math.nan,
        "mean_us": sum(values) / len(values) if values else math.nan,
    }


class RequesterTally:
    """What a requester role counts; ``report()`` follows the W4 contract."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seq_count = 0
        self.conc_count = 0
        self.conc_elapsed = 0.0
        self.errors = 0
        self.mismatches = 0
        self.first_error = ""

    def error(self, exc: BaseException | str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"

    def sequential_reply(self, right: bool, elapsed: float, measured: bool) -> None:
        """One sequential request answered: a wrong body counts as a mismatch;
        past the warm-up (``measured``) its latency counts too."""
        if not right:
            self.mismatches += 1
        if measured:
            self.latencies.append(elapsed)
            self.seq_count += 1

    def report(self) -> dict[str, object]:
        return {
            **latency_summary(self.latencies),
            "seq_count": self.seq_count,
            "conc_count": self.conc_count,
            "conc_elapsed": self.conc_elapsed,
            "errors": self.errors,
            "mismatches": self.mismatches,
            "first_error": self.first_error,
        }


def now() -> float:
    return time.perf_counter()
