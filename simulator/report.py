"""What the simulator says about a run: counts of every fix until Kafka answers, 5-second windows, the totals
line and the JSON summary, and the status line redrawn on a terminal. No Kafka here: the producer feeds it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, TextIO


class Delivery:
    """Counts every fix handed to the producer until the broker acknowledges or refuses it.

    Callbacks run on kafka-python's sender thread (or on ours when a future is already done),
    so the two counters they touch are updated under a lock.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def on_ack(self, _metadata: object) -> None:
        with self._lock:
            self.acked += 1

    def on_error(self, error: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = f"{type(error).__name__}: {error}"

    @property
    def unconfirmed(self) -> int:
        return self.sent - self.acked - self.failed


@dataclass(frozen=True)
class Totals:
    sent: int
    acked: int
    failed: int
    seconds: float
    target_rate: float
    connected: bool = True
    # The figures of each report (``Window.figures``), the last one covering the rest of the run.
    windows: tuple[dict[str, Any], ...] = ()
    skipped_s: float = 0.0  # time skipped ahead because the loop could not keep up

    @property
    def unconfirmed(self) -> int:
        return self.sent - self.acked - self.failed

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = f"totals: sent {self.sent}, acknowledged {self.acked}, failed {self.failed}"
        if self.unconfirmed:
            text += f", unconfirmed {self.unconfirmed} (broker gave no answer before shutdown)"
        if not self.connected:
            return text + " (stopped before Kafka was reachable)"
        rates = f"{self.rate:,.1f} fixes/s; {self.target_rate:,.1f}/s if no driver were offline"
        return text + f" in {self.seconds:.1f} s ({rates})"

    def summary(self) -> dict[str, Any]:
        """The totals and every window's figures, for programs (docs/api.md, "Producer: the simulator")."""
        return {
            "sent": self.sent,
            "acknowledged": self.acked,
            "failed": self.failed,
            "unconfirmed": self.unconfirmed,
            "connected": self.connected,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "target_rate": round(self.target_rate, 1),
            "max_lag_ms": max((w["max_lag_ms"] for w in self.windows), default=0),
            "skipped_s": round(self.skipped_s, 3),
            "windows": list(self.windows),
        }

    def summary_line(self) -> str:
        """The summary as one line of JSON: ``{"summary": {...}}``, printed last on stdout."""
        return json.dumps({"summary": self.summary()}, separators=(",", ":"))


class Window:
    """Rates over one reporting window."""

    def __init__(self, now: float, delivery: Delivery) -> None:
        self.start = now
        self.sent, self.acked, self.failed = delivery.sent, delivery.acked, delivery.failed
        self.max_lag = 0.0

    def rates(self, now: float, delivery: Delivery, target_rate: float) -> tuple[float, float, float]:
        """Seconds, fixes/s sent and the error against ``target_rate`` in percent, since the window began."""
        seconds = max(now - self.start, 1e-9)
        rate = (delivery.sent - self.sent) / seconds
        error = (rate - target_rate) / target_rate * 100.0 if target_rate else 0.0
        return seconds, rate, error

    def figures(self, now: float, delivery: Delivery, target_rate: float) -> dict[str, Any]:
        """What :meth:`line` says, as numbers; counts are this window's own."""
        seconds, rate, error = self.rates(now, delivery, target_rate)
        return {
            "seconds": round(seconds, 3),
            "sent": delivery.sent - self.sent,
            "acknowledged": delivery.acked - self.acked,
            "failed": delivery.failed - self.failed,
            "rate": round(rate, 1),
            "target_rate": round(target_rate, 1),
            "error_pct": round(error, 2),
            "max_lag_ms": round(self.max_lag * 1000),
        }

    def line(self, now: float, delivery: Delivery, target_rate: float) -> str:
        _seconds, rate, error = self.rates(now, delivery, target_rate)
        text = (
            f"sent {delivery.sent} (+{delivery.sent - self.sent}), acknowledged {delivery.acked} "
            f"(+{delivery.acked - self.acked}), failed {delivery.failed} (+{delivery.failed - self.failed}); "
            f"{rate:,.1f} fixes/s against target {target_rate:,.1f}/s ({error:+.1f}%), "
            f"max lag {self.max_lag * 1000:.0f} ms"
        )
        if delivery.failed > self.failed and delivery.last_error:
            text += f"; last error {delivery.last_error}"
        return text


class Progress:
    """One status line redrawn in place on a terminal; log lines clear it before they print."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def draw(self, delivery: Delivery, rate: float, target: float, lag: float, elapsed: float) -> None:
        self.stream.write(
            f"\r\x1b[K{elapsed:7.1f} s  sent {delivery.sent:,}  acked {delivery.acked:,}  "
            f"failed {delivery.failed:,}  {rate:,.0f} of {target:,.0f} fixes/s  lag {lag * 1000:.0f} ms"
        )
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()

    def filter(self, _record: logging.LogRecord) -> bool:
        self.clear()
        return True
