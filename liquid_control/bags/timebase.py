"""Message times for the bag tools: rosbag2's receive (log) time, or the senders' header clock.

`receive`: each message at its log time, in the bag's order (what a node on the recording machine saw).

`header`: each message at its header.stamp, re-ordered by stamp within a bounded window. Two clocks
meet here: stamps are on the sensors' clock (often another machine: a robot whose clock is not synced
to the recording laptop, or a driver that stamps with its own epoch), log times on the recorder's.
Messages without a header (a std_msgs/Float64MultiArray command, a Twist) carry only a log time, so
they are put on the header clock: log time + the header clock's offset from the log clock, estimated
from the stamped messages as the largest (stamp - log time) among those logged in the last window,
i.e. through the least-delayed recent sample, the usual one-way clock-offset estimate. That keeps what
the recording says about order: a command logged after a sensor sample comes after that sample
(and after every sample logged before it, whatever their delays), whatever the two clocks' offset. A
ROS user comparing a policy with recorded commands expects exactly that, and the reorder window then
only has to cover the spread of stamps around the header clock, not the offset between the clocks.
(Putting headerless messages at their bare log time mixes the two clocks in one ordering: with a
sensor clock 2 s behind the recorder, every sample then arrives "older" than the last command and is
dropped; with 0.3 s the comparison with the recorded commands is silently shifted by 0.3 s.)

The window is in header-clock time too: a message is released once the header clock (the newest log
time + the offset) is `window` past its time; one that comes later than that, behind a message already
released, is dropped and counted. Headerless messages before the first stamped one wait (at most one
window of log time) for the offset; with no stamped message at all, header time is receive time.

Memory: the heap holds one window of messages; the offset estimate one window of (log, offset) pairs
at most (a monotonic queue: amortised O(1) per message).
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Iterable, Iterator

TIME_BASES = ("receive", "header")


def header_ns(msg: Any) -> int | None:
    """header.stamp in ns, or None for a message without a header."""
    hdr = getattr(msg, "header", None)
    stamp = getattr(hdr, "stamp", None)
    if stamp is None:
        return None
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class HeaderClock:
    """Puts (log time, message) pairs in header-clock order; see the module docstring.

    push() yields the (time, item) pairs that are due, in time order; flush() the rest at the end.
    """

    def __init__(self, window_ns: int):
        self.window = int(window_ns)
        self.heap: list[tuple[int, int, Any]] = []
        self.seq = 0
        self.last_out: int | None = None
        self.dropped = 0  # later than the window behind an already released message
        self.offsets: deque[tuple[int, int]] = deque()  # (log ns, stamp - log ns), offsets decreasing
        self.offset: int | None = None  # header clock - log clock, once a stamped message was seen
        self.pending: list[tuple[int, Any]] = []  # headerless, before the first stamped message
        self.headerless = 0  # headerless messages placed on the header clock
        self.offset_range: tuple[int, int] | None = None  # the offsets they were placed with (min, max)

    def push(self, log_ns: int, stamp_ns: int | None, item: Any) -> Iterator[tuple[int, Any]]:
        if stamp_ns is not None:
            self._observe(log_ns, stamp_ns - log_ns)
            if self.pending:
                yield from self._place_pending()
            yield from self._add(stamp_ns, item, log_ns)
        elif self.offset is None:
            self.pending.append((log_ns, item))
            if log_ns - self.pending[0][0] > self.window:  # nothing stamped within a window: receive time
                self.offset = 0
                yield from self._place_pending()
        else:
            yield from self._add(self._place(log_ns), item, log_ns)

    def flush(self) -> Iterator[tuple[int, Any]]:
        if self.pending:
            if self.offset is None:
                self.offset = 0
            yield from self._place_pending()
        while self.heap:
            t, _, item = heapq.heappop(self.heap)
            self.last_out = t
            yield t, item

    # --- internals ---------------------------------------------------------------------------------
    def _observe(self, log_ns: int, offset: int) -> None:
        q = self.offsets
        while q and q[-1][1] <= offset:  # an older sample with a larger delay never sets the maximum again
            q.pop()
        q.append((log_ns, offset))
        while len(q) > 1 and q[0][0] < log_ns - self.window:  # the newest pair always stays
            q.popleft()
        self.offset = q[0][1]

    def _place(self, log_ns: int) -> int:
        """A headerless message's time on the header clock."""
        off = self.offset
        self.headerless += 1
        r = self.offset_range
        self.offset_range = (off, off) if r is None else (min(r[0], off), max(r[1], off))
        return log_ns + off

    def _place_pending(self) -> Iterator[tuple[int, Any]]:
        pending, self.pending = self.pending, []
        for log_ns, item in pending:
            yield from self._add(self._place(log_ns), item, log_ns)

    def _add(self, t: int, item: Any, log_ns: int) -> Iterator[tuple[int, Any]]:
        if self.last_out is not None and t < self.last_out:
            self.dropped += 1
            return
        heapq.heappush(self.heap, (t, self.seq, item))
        self.seq += 1
        # now, on the header clock: the newest log time moved by the offset
        release = log_ns + (self.offset or 0) - self.window
        heap = self.heap
        while heap and heap[0][0] <= release:
            t0, _, it = heapq.heappop(heap)
            self.last_out = t0
            yield t0, it


def in_time_order(messages: Iterable[tuple[int, str, Any]], time_base: str, window_ns: int,
                  clock: HeaderClock | None = None) -> Iterator[tuple[int, str, Any]]:
    """(log ns, topic, decoded message) in log order -> (time, topic, message) in the time base's order.
    Pass `clock` to read its counters (dropped, headerless) afterwards."""
    if time_base == "receive":
        yield from messages
        return
    clock = clock or HeaderClock(window_ns)
    for log_ns, topic, msg in messages:
        for t, (tp, m) in clock.push(log_ns, header_ns(msg), (topic, msg)):
            yield t, tp, m
    for t, (tp, m) in clock.flush():
        yield t, tp, m


def header_clock_notes(clock: HeaderClock) -> list[str]:
    """How the header time base placed headerless messages, for the replay report."""
    out = []
    if clock.headerless and clock.offset_range is not None:
        lo, hi = clock.offset_range
        span = f"{lo * 1e-6:+.3f} ms" if lo == hi else f"{lo * 1e-6:+.3f}..{hi * 1e-6:+.3f} ms"
        out.append(f"header time: {clock.headerless} messages without a header placed at receive time "
                   f"{span} (the header clock's offset from the recorder's, seen through the stamped topics)")
    return out
