"""Reading a rosbag2 bag: one entry point for a bag directory or a single .db3 / .mcap file (also a directory
whose recording crashed before metadata.yaml was written), streaming (one message or one MCAP chunk in
memory at a time), with every skip, every piece of damage and every disagreement between metadata.yaml and
the storage counted in ReadStats (bags/census.py)."""
from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from rosbags.interfaces import Connection, Qos
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

from liquid_control.bags import census as bag_census
from liquid_control.bags.common import STORAGE_ERRORS, SUFFIX, BagError, explain, normalize_topic, regular
from liquid_control.bags.recovery import (RecoveringDirectoryReader, RecoveringMcapReader, RecoveringSqlite3Reader,
                                          StrictDirectoryReader, StrictMcapReader, TolerantDirectoryReader,
                                          census_source)
from liquid_control.bags.typestore import DISTROS, CdrError, bag_typestore, decode_cdr, distro_typestore
from liquid_control.core.errors import LiquidControlError
from liquid_control.core.yamlfile import load_yaml


class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    log_time_ns: int  # rosbag2's receive time
    data: bytes


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any  # a rosbags dataclass with ROS field names


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    count: int
    qos: tuple[Qos, ...]
    connection: Connection = field(repr=False, compare=False)


@dataclass
class ReadStats:
    """What happened while reading: reported at the end, so no skip goes unnoticed."""

    read: int = 0
    decoded: int = 0
    padded: int = 0  # decoded with trailing rmw padding
    skipped: Counter = field(default_factory=Counter)  # (topic, reason) -> count
    by_topic: Counter = field(default_factory=Counter)  # topic -> messages read
    damage: str | None = None  # what a recovering read found damaged (and what it did about it)
    notes: list[str] = field(default_factory=list)

    MAX_REASONS = 20  # distinct reasons kept per topic; more are pooled (memory stays bounded)

    def skip(self, topic: str, reason: str, n: int = 1) -> None:
        key = (topic, reason)
        if key not in self.skipped and sum(1 for t, _ in self.skipped if t == topic) >= self.MAX_REASONS:
            key = (topic, "other reasons (too many different ones to list)")
        self.skipped[key] += n

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def lines(self) -> list[str]:
        out = [f"read {self.read} messages, decoded {self.decoded}"
               + (f" ({self.padded} with rmw trailing padding)" if self.padded else "")]
        for (topic, reason), n in sorted(self.skipped.items()):
            out.append(f"skipped {n} on {topic}: {reason}")
        if self.damage:
            out.append(f"damage: {self.damage}")
        out += self.notes
        return out


class BagReader:
    """A rosbag2 bag opened for streaming reads. Use as a context manager, or call close().

    path: a bag directory (with metadata.yaml; or, after a crashed recording, with exactly one
    storage file), or a single .mcap / .db3 file.
    distro: whose message definitions decode topics the bag stores no definition for.
    recover: read up to damage (a cut MCAP, a damaged sqlite page) instead of raising; the damage
    is reported in `stats.damage`.

    What the bag says it holds is taken twice (bags/census.py): `metadata_census` (metadata.yaml, for a
    bag directory) and `storage_census` (the storage's own counts); where they differ it is noted in
    `stats.notes`, the bag's span (start_ns, end_ns) and topic counts are the storage's, and
    `shortfall(topics)` names the topics of which a whole read got fewer messages than either says.
    Only regular files are opened (a FIFO or a device as the bag, its metadata.yaml or a storage file
    is refused before anything is read).
    """

    def __init__(self, path: str | Path, *, distro: str | None = None, recover: bool = False):
        self.path = Path(path)
        self.recover = recover
        self.stats = ReadStats()
        self._storage = None
        self.metadata_census: bag_census.Census | None = None
        self.storage_census: bag_census.Census | None = None
        self._open()
        try:
            self._check_connections()
            self._take_census()
            self.typestore, notes = bag_typestore(self._storage.connections, distro or self._distro())
        except BaseException:
            self.close()
            raise
        self.stats.notes += notes
        from liquid_control.bags.codecs import joint_state_decoder
        from liquid_control.core.spec import JOINT_STATE

        fast = joint_state_decoder(self.typestore, distro_typestore(None))
        self._fast = {JOINT_STATE: fast} if fast is not None else {}
        self.topics: dict[str, BagTopic] = {}
        for conn in self._storage.connections:
            if conn.topic in self.topics:  # one topic recorded with two types: keep the first, say so
                self.stats.notes.append(f"topic {conn.topic} has several types; using {self.topics[conn.topic].msgtype}")
                continue
            count = conn.msgcount if self.storage_census is None else self.storage_census.counts.get(conn.topic, 0)
            self.topics[conn.topic] = BagTopic(conn.topic, conn.msgtype, count,
                                               tuple(conn.ext.offered_qos_profiles), conn)

    # --- opening ---------------------------------------------------------------------------------
    def _open(self) -> None:
        p = self.path
        if not p.exists() and not p.is_symlink():
            raise BagError(f"bag {p} does not exist")
        if p.is_dir():
            if (p / "metadata.yaml").exists() or (p / "metadata.yaml").is_symlink():
                cls = RecoveringDirectoryReader if self.recover else StrictDirectoryReader
                self.storage = self._check_metadata(p)
                storage = cls(p)
            else:
                files = sorted(f for f in p.iterdir() if f.suffix in SUFFIX)
                if len(files) != 1:
                    what = "no .mcap or .db3 file" if not files else f"{len(files)} storage files ({', '.join(f.name for f in files)})"
                    raise BagError(f"{p} is not a rosbag2 bag: no metadata.yaml and {what}")
                self.stats.notes.append(f"{p} has no metadata.yaml (recording not closed?); read {files[0].name} directly")
                self.path = p = files[0]
        if not p.is_dir():
            regular(p, "bag file")
            if p.suffix not in SUFFIX:
                raise BagError(f"{p} is not a rosbag2 file: expected a bag directory, .mcap or .db3")
            self.storage = SUFFIX[p.suffix]
            if self.storage == "mcap":
                storage = (RecoveringMcapReader if self.recover else StrictMcapReader)(p)
            else:
                storage = (RecoveringSqlite3Reader if self.recover else Sqlite3Reader)(p)
        try:
            storage.open()
        except FileNotFoundError as exc:
            raise BagError(f"bag {p}: {explain(exc)}") from None
        except (*STORAGE_ERRORS, AttributeError, sqlite3.Error, RecursionError) as exc:
            hint = self._hint(exc)
            raise BagError(f"cannot read bag {p}: {explain(exc)}{hint}") from None
        self._storage = storage
        for s in getattr(storage, "storages", [storage]):
            if getattr(s, "damage", None):
                self.stats.damage = s.damage
            if isinstance(s, RecoveringMcapReader):
                s.on_damaged_chunk = self._damaged_chunk
            if getattr(s, "damage", None) and isinstance(s, RecoveringSqlite3Reader):
                self.stats.skip("(sqlite)", "unreadable rows on damaged pages", s.lost)

    def _damaged_chunk(self, reason: str, lost: int) -> None:
        self.stats.skip("(chunk)", reason, lost)

    def _hint(self, exc: BaseException) -> str:
        text = str(exc)
        if not self.recover and ("magic" in text or "Truncated" in text or "footer" in text):
            return " (the file looks truncated; recover=True / --recover reads the intact part)"
        if "malformed" in text and not self.recover:
            return " (a damaged sqlite3 bag; recover=True / --recover salvages the readable rows)"
        return ""

    @staticmethod
    def _check_metadata(p: Path) -> str:
        """Before rosbags reads a bag directory: metadata.yaml and the storage files it names are
        regular files, metadata.yaml is bounded YAML (size, alias expansion) of the right shape.
        Returns the storage identifier."""
        meta = p / "metadata.yaml"
        regular(meta, "bag metadata")
        try:
            data = load_yaml(meta, "bag metadata")
        except LiquidControlError as exc:
            raise BagError(str(exc)) from None
        info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            raise BagError(f"bag metadata {meta}: no rosbag2_bagfile_information mapping")
        files = info.get("relative_file_paths")
        if not isinstance(files, list) or not all(isinstance(f, str) and f.strip() for f in files):
            raise BagError(f"bag metadata {meta}: relative_file_paths is not a list of file names")
        for name in files:
            f = p / Path(name).name  # as rosbags and rosbag2 resolve it: inside the bag directory
            if f.exists() or f.is_symlink():
                regular(f, "bag file")
        return str(info.get("storage_identifier", "?"))

    def _check_connections(self) -> None:
        """Damage can leave a topic without a name or type, or a count or time that is not a number."""
        storage = self._storage
        for s in [storage, *getattr(storage, "storages", [])]:
            for c in s.connections:
                if not isinstance(c.topic, str) or not isinstance(c.msgtype, str) or not isinstance(c.msgcount, int):
                    raise BagError(f"cannot read bag {self.path}: damaged topic table (topic {c.topic!r}, type "
                                   f"{c.msgtype!r}, {c.msgcount!r} messages)")
            meta = s.metadata
            if not all(isinstance(v, int) for v in (meta.start_time, meta.end_time, meta.message_count)):
                raise BagError(f"cannot read bag {self.path}: damaged time or count (start {meta.start_time!r}, "
                               f"end {meta.end_time!r}, {meta.message_count!r} messages)")

    def _take_census(self) -> None:
        storage = self._storage
        storages = getattr(storage, "storages", None)
        if storages is None:
            parts = [storage]
        else:
            meta = storage.metadata
            self.metadata_census = bag_census.census("metadata.yaml", storage.connections, meta.start_time, meta.end_time)
            parts = list(storages)
        counts = [bag_census.census(census_source(s), s.connections, s.metadata.start_time, s.metadata.end_time)
                  for s in parts]
        self.storage_census = bag_census.merge(" + ".join(dict.fromkeys(c.source for c in counts)), counts)
        if self.metadata_census is not None and self.storage_census is not None:
            lines = bag_census.disagreements(self.metadata_census, self.storage_census)
            if lines:
                self.stats.notes.append("metadata.yaml disagrees with the storage (read by the storage): " + "; ".join(lines))
        if isinstance(storage, TolerantDirectoryReader):
            self.stats.notes += storage.mismatches()

    def shortfall(self, topics: Iterable[str]) -> list[str]:
        """For topics read whole: a line per topic of which fewer messages were read than metadata.yaml
        or the storage says the bag holds (empty: nothing was lost)."""
        sources = [c for c in (self.metadata_census, self.storage_census) if c is not None]
        return bag_census.shortfall(self.stats.by_topic, sources, [normalize_topic(t) for t in topics])

    def _distro(self) -> str | None:
        meta = getattr(self._storage, "metadata", None)
        distro = getattr(meta, "ros_distro", None)
        return distro if distro in DISTROS else None

    # --- facts -----------------------------------------------------------------------------------
    @property
    def start_ns(self) -> int:
        """The first message's log time, as the storage holds it (2**63 - 1 for an empty bag)."""
        c = self.storage_census
        if c is None:
            return int(self._storage.metadata.start_time)
        return bag_census.EMPTY_START if c.start_ns is None else c.start_ns

    @property
    def end_ns(self) -> int:
        """One past the last message's log time (0 for an empty bag)."""
        c = self.storage_census
        if c is None:
            return int(self._storage.metadata.end_time)
        return 0 if c.end_ns is None else c.end_ns

    @property
    def duration(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def message_count(self) -> int:
        c = self.storage_census
        return int(self._storage.metadata.message_count) if c is None else c.total

    def topic(self, name: str) -> BagTopic | None:
        """A topic by name; relative names match their fully qualified form."""
        return self.topics.get(name) or self.topics.get(normalize_topic(name))

    def require(self, topics: dict[str, str | None], what: str = "needed") -> dict[str, BagTopic]:
        """The bag topics for {name: expected msgtype or None}; a BagError naming the first missing
        or mistyped topic (and what the bag has instead)."""
        found = {}
        for name, msgtype in topics.items():
            t = self.topic(name)
            if t is None:
                have = ", ".join(f"{x.name} ({x.msgtype})" for x in self.topics.values()) or "no topics"
                raise BagError(f"bag {self.path} has no topic {normalize_topic(name)} ({what}); it has: {have}")
            if msgtype and t.msgtype != msgtype:
                raise BagError(f"bag topic {t.name} has type {t.msgtype}, {what} as {msgtype}")
            if t.count == 0:
                raise BagError(f"bag topic {t.name} ({what}) holds no messages")
            found[name] = t
        return found

    # --- streaming -------------------------------------------------------------------------------
    def raw_messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                     stop_ns: int | None = None) -> Iterator[RawMessage]:
        """Messages in log-time order, undecoded. Damage mid-read raises BagError (or, recovering,
        ends the stream and sets stats.damage)."""
        if topics is None:
            conns = [t.connection for t in self.topics.values()]
        else:
            conns = [t.connection for name in topics if (t := self.topic(name)) is not None]
        if not conns:
            return
        it = self._storage.messages(conns, start_ns, stop_ns)
        last_ns = None
        by_topic = self.stats.by_topic
        while True:
            try:
                conn, t_ns, data = next(it)
            except StopIteration:
                return
            except STORAGE_ERRORS as exc:
                where = "at the start" if last_ns is None else f"after log time {last_ns / 1e9:.6f} s"
                reason = f"{self.path}: damaged {where}: {explain(exc)}"
                if not self.recover:
                    raise BagError(f"{reason} (recover=True / --recover reads up to the damage)") from None
                self.stats.damage = reason
                return
            last_ns = t_ns
            self.stats.read += 1
            by_topic[conn.topic] += 1
            yield RawMessage(conn.topic, conn.msgtype, t_ns, data)

    def decode(self, raw: RawMessage) -> Any | None:
        """Decode one message; None (and a counted skip) when it does not decode as its type."""
        try:
            msg, trailing = decode_cdr(self.typestore, raw.data, raw.msgtype, self._fast.get(raw.msgtype))
        except CdrError as exc:
            self.stats.skip(raw.topic, str(exc))
            return None
        self.stats.decoded += 1
        self.stats.padded += trailing > 3
        return msg

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[BagMessage]:
        """Decoded messages in log-time order; undecodable ones are skipped and counted in stats."""
        for raw in self.raw_messages(topics, start_ns, stop_ns):
            msg = self.decode(raw)
            if msg is not None:
                yield BagMessage(raw.topic, raw.msgtype, raw.log_time_ns, msg)

    # --- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            try:
                storage.close()
            except Exception:
                pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_bag(path: str | Path, *, distro: str | None = None, recover: bool = False) -> BagReader:
    return BagReader(path, distro=distro, recover=recover)
