"""Driver statuses over time: available, on a trip, offline, in the proportions asked for.

An available driver waits a random time, then either starts a trip or goes offline; a trip or an
offline spell lasts a random time, then the driver is available again. The mean waiting time and
the odds of a trip against going offline are solved from the shares asked for, so that across a
fleet about ``on_trip_share`` of drivers are on a trip and ``offline_share`` are offline.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fleet.schema import Status


@dataclass(frozen=True)
class StatusMix:
    on_trip_share: float = 0.35
    offline_share: float = 0.05
    mean_trip_s: float = 600.0
    mean_offline_s: float = 300.0
    pickup_stop_s: tuple[float, float] = (15.0, 45.0)
    dropoff_stop_s: tuple[float, float] = (10.0, 30.0)

    def __post_init__(self) -> None:
        for name in ("on_trip_share", "offline_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} {getattr(self, name)} is not in [0, 1)")
        if self.on_trip_share + self.offline_share >= 1.0:
            raise ValueError(
                f"on-trip share {self.on_trip_share} and offline share {self.offline_share} "
                "leave no driver available; their sum must be below 1"
            )

    @property
    def available_share(self) -> float:
        return 1.0 - self.on_trip_share - self.offline_share

    @property
    def trip_chance(self) -> float:
        """Probability that an available spell ends in a trip rather than going offline.

        Time shares are visits times mean durations: trip/offline = q*T / ((1-q)*O), solved for q.
        """
        trip_time = self.on_trip_share * self.mean_offline_s
        offline_time = self.offline_share * self.mean_trip_s
        if trip_time + offline_time == 0.0:
            return 1.0
        return trip_time / (trip_time + offline_time)

    @property
    def mean_available_s(self) -> float:
        """Mean available spell that makes available/on-trip time match the shares asked for."""
        if self.on_trip_share > 0.0:
            return self.trip_chance * self.mean_trip_s * self.available_share / self.on_trip_share
        if self.offline_share > 0.0:
            return (1.0 - self.trip_chance) * self.mean_offline_s * self.available_share / self.offline_share
        return math.inf  # nobody ever leaves "available"

    def after_available(self, rng: random.Random) -> str:
        return Status.ON_TRIP if rng.random() < self.trip_chance else Status.OFFLINE

    def spell(self, status: str, rng: random.Random) -> float:
        """How long a new spell of ``status`` lasts, seconds.

        Waiting for a ride is memoryless (exponential); trips and breaks are less erratic (uniform
        around their mean). Either way the mean is the one the shares were solved with.
        """
        if status == Status.AVAILABLE:
            mean = self.mean_available_s
            return math.inf if math.isinf(mean) else rng.expovariate(1.0 / mean)
        mean = self.mean_trip_s if status == Status.ON_TRIP else self.mean_offline_s
        return rng.uniform(0.5 * mean, 1.5 * mean)

    def initial(self, rng: random.Random) -> tuple[str, float]:
        """A status drawn by the shares, and how long it has left: a fleet already in its steady mix."""
        draw = rng.random()
        if draw < self.on_trip_share:
            status = Status.ON_TRIP
        elif draw < self.on_trip_share + self.offline_share:
            status = Status.OFFLINE
        else:
            status = Status.AVAILABLE
        spell = self.spell(status, rng)
        return status, spell if math.isinf(spell) else rng.uniform(0.0, spell)
