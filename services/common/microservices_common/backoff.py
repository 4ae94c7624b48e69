"""Capped exponential backoff with jitter, the one retry schedule of the project.

The delay before retry n (0-based) is drawn from [d/2, d] where d = min(cap, base * 2**n):
it grows fast, never exceeds the cap, and the random half spreads clients out so that a
fleet of counters does not hammer a server that has just come back in lockstep
("equal jitter", see https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class Backoff:
    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 32))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def delays(self) -> Iterator[float]:
        attempt = 0
        while True:
            yield self.delay(attempt)
            attempt += 1
