"""When each fix is due: the simulator's pacing as a pure schedule, the clock passed in.

Slot ``k`` is due ``k * slot_s`` seconds after the start on the monotonic clock, so lateness never
accumulates: each due time is computed from the start, not from the previous sleep. When the sender
falls more than :data:`MAX_LAG_S` behind, the schedule skips ahead instead of sending a burst of stale
fixes: a live map wants fresh positions. :class:`simulator.producer.Pacer` is the I/O around it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Past this lag the sender says it is behind; past MAX_LAG_S the schedule stops catching up and skips ahead.
LATE_S = 0.5
MAX_LAG_S = 2.0


@dataclass
class Schedule:
    start: float  # monotonic seconds of slot 0
    slot_s: float  # seconds between two consecutive slots of the fleet
    skipped_s: float = 0.0  # time skipped ahead, in all, because the sender could not keep up

    def due(self, slot: int) -> float:
        """Monotonic time at which ``slot`` is due."""
        return self.start + self.skipped_s + slot * self.slot_s

    def wait(self, slot: int, now: float) -> float:
        """Seconds until ``slot`` is due (0 or less: it is due)."""
        return self.due(slot) - now

    def catch_up(self, slot: int, now: float) -> tuple[float, bool]:
        """How late ``slot`` is at ``now``, and whether the schedule skipped ahead because of it."""
        lag = now - self.due(slot)
        if lag > MAX_LAG_S:
            self.skipped_s += lag
            return lag, True
        return lag, False
