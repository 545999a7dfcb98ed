"""Pacing: replay at the original timing x ``speed`` (idle gaps capped) or under a rate cap.

The clock and the sleep function are injectable, so tests drive a fake clock and check
the schedule exactly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from psanalytics.errors import PsaError

__all__ = ["Pacer", "PacingError"]


class PacingError(PsaError, ValueError):
    """Pacing options that cannot work together (e.g. a speed of 0)."""


class Pacer:
    """Decides when each batch may leave.

    - ``speed``: keep the original spacing of events divided by ``speed`` (``speed=2``
      replays twice as fast as it happened). A gap in the original stream longer than
      ``max_idle`` seconds of replay time is shortened to ``max_idle``.
    - ``rate``: at most ``rate`` events per second (and ``requests_per_s`` requests per
      second when given); a batch of n events takes n / rate seconds of budget.
    - both: a batch leaves when both allow it. Neither: as fast as possible.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        speed: float | None = None,
        rate: float | None = None,
        requests_per_s: float | None = None,
        max_idle: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed is not None and not speed > 0:
            raise PacingError(f"speed must be > 0 (got {speed!r}); use None for as fast as possible")
        if rate is not None and not rate > 0:
            raise PacingError(f"rate must be > 0 events/s (got {rate!r})")
        if requests_per_s is not None and not requests_per_s > 0:
            raise PacingError(f"requests_per_s must be > 0 (got {requests_per_s!r})")
        if not max_idle >= 0:
            raise PacingError(f"max_idle must be >= 0 seconds (got {max_idle!r})")
        self.speed = speed
        self.rate = rate
        self.requests_per_s = requests_per_s
        self.max_idle = max_idle
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._start: float | None = None
        self._prev_orig: float | None = None
        self._speed_due = 0.0  # replay seconds since start for the previous item
        self._rate_due = 0.0
        self._req_due = 0.0
        self.idle_capped = 0.0  # seconds of original time skipped by the idle cap

    @property
    def active(self) -> bool:
        return self.speed is not None or self.rate is not None or self.requests_per_s is not None

    def due(self, orig_time_s: float, n_events: int) -> float:
        """The clock time at which an item (original time in seconds, n events) may go."""
        with self._lock:
            if self._start is None:
                self._start = self.clock()
            due = 0.0
            if self.speed is not None:
                if self._prev_orig is not None:
                    gap = max(0.0, orig_time_s - self._prev_orig) / self.speed
                    if gap > self.max_idle:
                        self.idle_capped += (gap - self.max_idle) * self.speed
                        gap = self.max_idle
                    self._speed_due += gap
                self._prev_orig = max(orig_time_s, self._prev_orig or orig_time_s)
                due = self._speed_due
            if self.rate is not None:
                due = max(due, self._rate_due)
                self._rate_due = due + n_events / self.rate
            if self.requests_per_s is not None:
                due = max(due, self._req_due)
                self._req_due = due + 1.0 / self.requests_per_s
            if self.speed is not None:
                # Later items keep their original spacing from this point on.
                self._speed_due = max(self._speed_due, due)
            return self._start + due

    def wait(self, orig_time_s: float, n_events: int = 1) -> float:
        """Sleep until the item may go; returns the clock time it was due."""
        due = self.due(orig_time_s, n_events)
        if not self.active:
            return due
        while True:
            now = self.clock()
            if now >= due:
                return due
            self.sleep(due - now)
