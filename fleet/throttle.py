"""Something that may happen at most once per interval (a log line under a flood), and how often it was held back."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Lets something happen at most once per interval, counting the times it was held back."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")
        self._held = 0

    def ready(self) -> int | None:
        """None while the interval runs (counted); else how many times it was held back since the last time."""
        now = self._clock()
        if now - self._last < self.interval_s:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held
