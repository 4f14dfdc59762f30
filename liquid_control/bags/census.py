"""What a bag says it holds, per source, and what a read got: so that no message is lost unnoticed.

A rosbag2 bag states its contents twice: in metadata.yaml (per-topic message counts, start time,
duration), and in its storage (sqlite3: the rows of the messages table; MCAP: the summary statistics,
else the chunk indexes or a scan of the records). The two can disagree: an edited or stale
metadata.yaml, a recording that crashed, a file damaged or cut. A `Census` is one source's account;
`disagreements` names where metadata.yaml and the storage differ, and `shortfall` names the topics of
which a read got fewer messages than a source says the bag holds.

Reading goes by the storage: the bag's time span is the storage's (metadata.yaml's start time, when
it is late, would otherwise hide every message before it), and messages are matched to topics by
name and type only (a metadata.yaml whose offered QoS or type hash differs from the storage file's
is read all the same, as rosbag2 reads it; it is noted).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

EMPTY_START = 2**63 - 1  # rosbags' start time of a bag without messages


@dataclass(frozen=True)
class Census:
    """One source's account of a bag: messages per topic and the log-time span."""

    source: str  # "metadata.yaml", "sqlite3 rows", "MCAP summary statistics", ...
    counts: dict[str, int]  # topic -> messages
    start_ns: int | None  # first log time (None: no messages)
    end_ns: int | None  # one past the last log time

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def census(source: str, connections: Iterable[Any], start_ns: int, end_ns: int) -> Census:
    """A census from rosbags connections (their msgcount) and a reader's metadata start/end."""
    counts: dict[str, int] = {}
    for c in connections:
        counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount or 0)
    some = sum(counts.values()) > 0 and start_ns != EMPTY_START
    return Census(source, counts, int(start_ns) if some else None, int(end_ns) if some else None)


def merge(source: str, parts: list[Census]) -> Census | None:
    """The census of a bag split over several storage files."""
    if not parts:
        return None
    counts: dict[str, int] = {}
    for p in parts:
        for t, n in p.counts.items():
            counts[t] = counts.get(t, 0) + n
    starts = [p.start_ns for p in parts if p.start_ns is not None]
    ends = [p.end_ns for p in parts if p.end_ns is not None]
    return Census(source, counts, min(starts) if starts else None, max(ends) if ends else None)


def _time(ns: int | None) -> str:
    return "none" if ns is None else f"{ns * 1e-9:.6f} s"


def disagreements(meta: Census, store: Census) -> list[str]:
    """Where metadata.yaml and the storage differ: one line each (counts per topic, start, end)."""
    out = []
    for topic in sorted(set(meta.counts) | set(store.counts)):
        a, b = meta.counts.get(topic), store.counts.get(topic)
        if a != b:
            out.append(f"{topic}: {meta.source} says {'no topic' if a is None else a} messages, "
                       f"the storage ({store.source}) holds {'no topic' if b is None else b}")
    if meta.start_ns != store.start_ns and meta.total and store.total:
        out.append(f"start time: {meta.source} says {_time(meta.start_ns)}, the storage's first message is at "
                   f"{_time(store.start_ns)} ({(meta.start_ns - store.start_ns) * 1e-9:+.6f} s)")
    if meta.end_ns != store.end_ns and meta.total and store.total:
        out.append(f"end time: {meta.source} says {_time(meta.end_ns)}, the storage's last message ends at "
                   f"{_time(store.end_ns)} ({(meta.end_ns - store.end_ns) * 1e-9:+.6f} s)")
    return out


def shortfall(read: Mapping[str, int], sources: list[Census], topics: Iterable[str], verb: str = "read") -> list[str]:
    """Per topic that was read whole: a line when fewer messages were read than a source says it holds."""
    out = []
    for topic in topics:
        said = {c.source: c.counts[topic] for c in sources if topic in c.counts}
        got = read.get(topic, 0)
        if said and got < max(said.values()):
            where = ", ".join(f"{src}: {n}" for src, n in said.items())
            out.append(f"{topic}: {verb} {got} of {max(said.values())} messages ({where})")
    return out
