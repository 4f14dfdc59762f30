"""Fixed-rate deadlines on one clock: t_k = start + k * period, in integer nanoseconds.

Every periodic loop of the project keeps its time with this one object: the controller's wall-clock
loop (monotonic clock), its sim-time ticker (/clock), the sim bridge's realtime loop and bag replay
(bag time). Deadlines are computed from the start, never by adding periods up, so a period that is not
a whole number of nanoseconds (300 Hz) does not drift.

A loop that finds itself a whole period or more past its deadline skips the deadlines it missed and
counts them (as ros2_control's controller manager does): it runs once, now, instead of catching up in
a burst of ticks that would all see the same sensor data.
"""
from __future__ import annotations

import math


class Schedule:
    """Deadlines every `period_ns` from `start(t0)`. Not thread-safe: one loop owns it."""

    def __init__(self, period_ns: float):
        if not (period_ns > 0 and math.isfinite(period_ns)):
            raise ValueError(f"period must be a finite time > 0 ns, got {period_ns!r}")
        self.period_ns = float(period_ns)
        self.start_ns = 0
        self.k = 0
        self.next_ns = 0
        self.missed = 0  # deadlines skipped since start()

    def start(self, t0_ns: int, first: int = 1) -> None:
        """Begin at t0_ns; the first deadline is `first` periods later (0: at t0 itself)."""
        self.start_ns, self.k, self.missed = int(t0_ns), int(first), 0
        self.next_ns = self._deadline(self.k)

    def _deadline(self, k: int) -> int:
        return self.start_ns + round(k * self.period_ns)

    def due(self, now_ns: int) -> bool:
        return now_ns >= self.next_ns

    def advance(self) -> None:
        """Move to the next deadline (after a tick at the current one)."""
        self.k += 1
        self.next_ns = self._deadline(self.k)

    def take(self, now_ns: int) -> tuple[int, int]:
        """A tick at now_ns (>= the current deadline): (how late it is past that deadline, how many whole
        deadlines were skipped), with the schedule moved past now_ns's deadline."""
        late = now_ns - self.next_ns
        skipped = int(late // self.period_ns) if late >= self.period_ns else 0
        if skipped:
            self.k += skipped
            self.missed += skipped
        self.advance()
        return late, skipped
