"""rosbag2 reading and writing (sqlite3 and MCAP) on top of `rosbags`, hardened for recorded data.

What this adds to `rosbags`:
  * one entry point for a bag directory or a single .db3 / .mcap file, also a directory whose
    recording crashed before metadata.yaml was written;
  * a typestore per bag: the ROS 2 distro's message definitions (Humble, Jazzy, Kilted, ...) with the
    definitions stored in the bag taking precedence, so a bag recorded with changed messages decodes
    with what it was recorded with;
  * tolerant CDR decoding: rmw_fastrtps (rclpy, ros2 bag record) sizes a serialized message by its
    worst-case alignment, so messages holding empty sequences carry up to 4 uninitialised bytes per
    empty sequence after the last field. rosbags' strict decoder rejects those; here they are
    accepted, bounded, and counted; more left-over bytes than padding can explain is an error
    (wrong type or corrupt data), never a silently wrong value;
  * streaming reads (rosbags yields one message or one MCAP chunk at a time: memory stays bounded);
  * corrupt and truncated bags: a clear one-line BagError, or with `recover=True` what is intact is
    read and the damage is reported in the stats: an MCAP file cut mid-write is read up to its last
    complete record, a damaged MCAP chunk is skipped (its messages counted) and reading goes on, a
    malformed sqlite3 file has its readable rows salvaged into a temporary database (the rows of
    damaged pages counted as lost).
    Note: rosbags writes MCAP chunks without a CRC, so in bags it wrote, a flipped payload bit is only
    caught when it breaks the record structure or the CDR decoding;
  * an atomic writer: the bag is written under a temporary name beside the target and renamed into
    place when complete, so a failure never leaves a half-written bag at the target path.

Only the bags layer imports this (rosbags is an optional dependency: the `bags` extra).
"""
from __future__ import annotations

import io
import os
import shutil
import sqlite3
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from liquid_control.bags import census as bag_census
from liquid_control.bags import versions as bag_versions
from liquid_control.core.errors import LiquidControlError
from liquid_control.core.outputs import regular_file
from liquid_control.core.yamlfile import load_yaml

try:
    from rosbags.interfaces import (
        Connection, MessageDefinitionFormat, Nodetype, Qos, QosDurability, QosHistory, QosLiveliness,
        QosReliability, QosTime,
    )
    from rosbags.rosbag2 import ReaderError, Writer, WriterError
    from rosbags.rosbag2.enums import StoragePlugin
    from rosbags.rosbag2.reader import DirectoryReader
    from rosbags.rosbag2.storage_mcap import McapReader, msgsrc
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
    from rosbags.serde import SerdeError
    from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
    from rosbags.typesys.store import Typestore
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(f"the bag tools need rosbags (pip install 'liquid_control[bags]'): {_exc}") from _exc


class BagError(LiquidControlError):
    """A bag is missing, unreadable, corrupt, truncated, or lacks what is asked of it."""


STORAGES = ("mcap", "sqlite3")
_SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}

# ros_distro as rosbag2 writes it into metadata.yaml -> rosbags' store of that distro's definitions.
DISTROS: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON, "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED, "lyrical": Stores.ROS2_LYRICAL, "rolling": Stores.LATEST,
}
DEFAULT_DISTRO = "kilted"

# Errors that the storage back ends raise on damaged data while reading (sqlite via apsw, MCAP via
# struct/zstd/lz4; rosbags' record parsing meets a cut record as ord(b'') -> TypeError, an unknown schema
# encoding or id as KeyError); caught only around storage reads.
_DAMAGE_ERRORS = (ReaderError, struct.error, EOFError, ValueError, OSError, TypeError, KeyError, IndexError,
                  OverflowError)
try:
    import apsw as _apsw

    _STORAGE_ERRORS: tuple[type[BaseException], ...] = (*_DAMAGE_ERRORS, _apsw.Error)
except ModuleNotFoundError:  # pragma: no cover
    _STORAGE_ERRORS = _DAMAGE_ERRORS


def normalize_topic(name: str) -> str:
    """'joint_states' and '/joint_states' are one topic (rosbag2 records fully qualified names)."""
    name = name.strip()
    return name if name.startswith("/") else "/" + name


# --------------------------------------------------------------------------------------------------
# Typestores
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def distro_typestore(distro: str | None = None) -> Typestore:
    """The standard message definitions of a ROS 2 distro (default: Kilted)."""
    key = (distro or DEFAULT_DISTRO).lower()
    if key not in DISTROS:
        raise BagError(f"unknown ROS distro {distro!r}; known: {', '.join(sorted(DISTROS))}")
    return get_typestore(DISTROS[key])


def _parse_definition(conn: Connection) -> dict[str, Any]:
    data = conn.msgdef.data
    if conn.msgdef.format == MessageDefinitionFormat.MSG:
        return get_types_from_msg(data, conn.msgtype)
    sep = "=" * 80 + "\n"
    types: dict[str, Any] = {}
    if data.startswith(f"{sep}IDL: "):
        for part in data.split(sep)[1:]:
            types.update(get_types_from_idl(part.split("\n", 1)[1]))
    else:
        types.update(get_types_from_idl(data))
    return types


def _closure(fielddefs: dict[str, Any], names: Iterable[str]) -> set[str]:
    """The types `names` are built from, themselves included (those `fielddefs` knows)."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in out or name not in fielddefs:
            continue
        out.add(name)
        for _, (kind, sub) in fielddefs[name][1]:
            if kind == Nodetype.NAME:
                stack.append(sub)
            elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) and sub[0][0] == Nodetype.NAME:
                stack.append(sub[0][1])
    return out


def ensure_types(store: Typestore, names: Iterable[str], distro: str | None = None) -> None:
    """Add the distro's definitions of `names` (and what they use) that `store` lacks."""
    base = distro_typestore(distro)
    missing = {n: base.fielddefs[n] for n in _closure(base.fielddefs, names) if n not in store.fielddefs}
    if missing:
        store.register(missing)


def bag_typestore(connections: Iterable[Connection], distro: str | None = None) -> tuple[Typestore, list[str]]:
    """A typestore for these connections: their stored definitions first, the distro's for the rest.

    Returns the store and notes (definitions that could not be parsed and fell back to the distro's).
    Only the types the bag uses are compiled (a full distro store costs ~0.1 s to register).
    """
    connections = list(connections)
    base = distro_typestore(distro)
    stored: dict[str, Any] = {}
    notes: list[str] = []
    for conn in connections:
        if conn.msgdef.format == MessageDefinitionFormat.NONE or conn.msgtype in stored:
            continue
        try:
            stored.update(_parse_definition(conn))
        except Exception as exc:  # a malformed stored definition: say so, use the distro's
            notes.append(f"stored definition of {conn.msgtype} is unreadable ({exc}); using {distro or DEFAULT_DISTRO}'s")
    if not stored:
        return base, notes
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(stored)  # the bag's definitions win ...
    except TypesysError as exc:
        raise BagError(f"the bag's message definitions are inconsistent: {exc}") from None
    # ... and the distro's fill in for topics the bag stores no definition for.
    ensure_types(store, {c.msgtype for c in connections if c.msgtype not in store.fielddefs}, distro)
    return store, notes


# --------------------------------------------------------------------------------------------------
# Tolerant CDR
# --------------------------------------------------------------------------------------------------
class CdrError(BagError):
    """A message's bytes do not decode as its type."""


def _empty_sequences(typestore: Typestore, msgtype: str, msg: Any) -> int:
    """How many empty sequences a decoded message holds (each may leave 4 bytes of rmw padding)."""
    n = 0
    for name, (kind, sub) in typestore.get_msgdef(msgtype).fields:
        if kind == Nodetype.NAME:
            n += _empty_sequences(typestore, sub, getattr(msg, name))
        elif kind in (Nodetype.SEQUENCE, Nodetype.ARRAY):
            value = getattr(msg, name)
            if kind == Nodetype.SEQUENCE and len(value) == 0:
                n += 1
            elif sub[0][0] == Nodetype.NAME:
                n += sum(_empty_sequences(typestore, sub[0][1], v) for v in value)
    return n


def decode_cdr(typestore: Typestore, data: bytes | memoryview, msgtype: str,
               fast: Callable[[bytes], tuple[Any, int] | None] | None = None) -> tuple[Any, int]:
    """Decode one CDR message; returns (message, number of trailing padding bytes ignored).

    Accepts the trailing bytes that rmw implementations leave (the encapsulation's 0-3 alignment
    bytes, plus up to 4 per empty sequence from rmw_fastrtps' worst-case sizing); rejects more.
    `fast`: a decoder for this type that gives the same result or None (joint_state_cdr.py).
    """
    if fast is not None and (done := fast(data)) is not None:
        msg, trailing = done
        if trailing > 3:
            _check_trailing(typestore, msgtype, msg, trailing)
        return msg, trailing
    if len(data) < 4 or data[0] != 0 or data[1] not in (0, 1):
        head = bytes(data[:4]).hex() or "nothing"
        raise CdrError(f"{msgtype}: not plain CDR (encapsulation header {head}, expected 0000 or 0001)")
    try:
        msgdef = typestore.get_msgdef(msgtype)
    except KeyError:
        raise CdrError(f"unknown message type {msgtype} (not in the bag's definitions nor the distro's)") from None
    func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
    try:
        msg, pos = func(memoryview(data)[4:], 0, msgdef.cls, typestore)
    except (struct.error, UnicodeDecodeError, ValueError, IndexError, SerdeError) as exc:
        raise CdrError(f"{msgtype}: {len(data)} bytes do not decode ({exc})") from None
    trailing = len(data) - 4 - pos
    if trailing > 3:
        _check_trailing(typestore, msgtype, msg, trailing)
    return msg, trailing


def _check_trailing(typestore: Typestore, msgtype: str, msg: Any, trailing: int) -> None:
    allowed = 3 + 4 * _empty_sequences(typestore, msgtype, msg)
    if trailing > allowed:
        raise CdrError(f"{msgtype}: {trailing} bytes left over after the last field, at most {allowed} "
                       "can be padding (wrong message type or corrupt data)")


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
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


_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_OPS = set(range(0x01, 0x11))


def _mcap_intact_end(bio: Any, data_start: int, size: int) -> tuple[int, int]:
    """Offset after the last complete data-section record of an MCAP file, and how many records.

    Walks the top-level records (opcode + length) without reading their bodies; stops at the first
    record that runs past the end of the file, a zero-filled or foreign byte, or the DataEnd record.
    """
    pos, records = data_start, 0
    while pos + 9 <= size:
        bio.seek(pos)
        head = bio.read(9)
        op, length = head[0], struct.unpack("<Q", head[1:])[0]
        if op not in _MCAP_OPS or op in (0x02, 0x0F) or pos + 9 + length > size:
            break
        pos += 9 + length
        records += 1
    return pos, records


class _BoundedFile(io.BufferedReader):
    """A storage file whose reads never ask for more bytes than the file has left: a corrupt length
    field (say 2**62) then reads as a truncated record, which rosbags reports (ReaderError), instead of
    allocating that many bytes first (MemoryError)."""

    def __init__(self, path: Path):
        super().__init__(io.FileIO(path, "rb"))
        self.size = os.fstat(self.fileno()).st_size

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > 0:
            n = min(n, max(0, self.size - self.tell()))
        return super().read(n)


class _RecoveringMcapReader(McapReader):
    """An MCAP reader that, when the file has no valid footer (cut while recording), reads the
    complete records before the cut instead of refusing the file. Every read is bounded by the file
    size (_BoundedFile). `census_source` says where its message counts come from."""

    recover = True
    census_source = "MCAP records"

    def open(self) -> None:
        try:
            self.bio = _BoundedFile(self.path)
        except OSError as err:
            raise ReaderError(f"Could not open file {str(self.path)!r}: {err.strerror}.") from err
        try:
            self._open()
        except BaseException:
            try:
                self.close()
            except Exception:
                pass
            raise

    def read_index(self) -> None:
        super().read_index()
        self.census_source = "MCAP summary statistics" if self.statistics is not None else "MCAP chunk indexes"

    def meta_scan(self) -> None:
        super().meta_scan()
        self.census_source = "MCAP record scan"

    def _open(self) -> None:
        self.damage: str | None = None
        try:
            super()._open()
            return
        except ReaderError as exc:
            if not self.recover or not self.data_start:
                raise
            reason = str(exc)
        size = self.bio.seek(0, 2)
        end, records = _mcap_intact_end(self.bio, self.data_start, size)
        self.schemas.clear()
        self.channels.clear()
        self.chunks.clear()
        self.connections.clear()
        self.statistics = None
        self.data_end = end
        self.meta_scan()  # builds statistics and connections from the intact records
        stats = self.statistics
        self.connections = [c._replace(msgcount=stats.channel_message_counts.get(c.id, 0)) for c in self.connections]
        n = stats.message_count
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if n else 0,
            start_time=stats.start_time if n else 2**63 - 1, end_time=stats.end_time + 1 if n else 0,
            message_count=n)
        self.damage = (f"{self.path}: {reason} - file cut at byte {size}; read {records} intact records "
                       f"({n} messages) up to byte {end}")

    on_damaged_chunk: Callable[[str, int], None] | None = None  # (reason, messages lost), set by BagReader

    def messages(self, connections: Any, start: int | None = None, stop: int | None = None) -> Iterator[Any]:
        """Recovering: chunk by chunk, so that a damaged chunk (bad checksum, undecompressable) is
        skipped and reported with the number of messages it held, and reading goes on after it.
        (Chunks that overlap in time - several writers - need rosbags' merge: no skipping then.)"""
        chunks = sorted(self.chunks, key=lambda c: c.message_start_time)
        overlap = any(a.message_end_time >= b.message_start_time for a, b in zip(chunks, chunks[1:]))
        if not self.recover or not chunks or overlap:
            yield from super().messages(connections, start, stop)
            return
        channel_map = {c.id: c for c in connections}
        for chunk in chunks:
            if ((start is not None and chunk.message_end_time < start) or (stop is not None and chunk.message_start_time >= stop)
                    or not any(chunk.channel_count.get(cid, 0) for cid in channel_map)):
                continue
            lo = chunk.message_start_time if start is None else start
            hi = chunk.message_end_time + 1 if stop is None else stop
            try:
                msgs = list(msgsrc(chunk, channel_map, lo, hi, self.bio))  # one chunk in memory, as rosbags does
            except _STORAGE_ERRORS + (RuntimeError,) as exc:  # zstd / lz4 raise their own error types
                lost = sum(chunk.channel_count.get(cid, 0) for cid in channel_map)
                if self.on_damaged_chunk is not None:
                    self.on_damaged_chunk(f"damaged chunk at byte {chunk.chunk_start_offset} (log time "
                                          f"{chunk.message_start_time / 1e9:.3f}..{chunk.message_end_time / 1e9:.3f} s): "
                                          f"{_explain(exc)}", lost)
                continue
            for m in msgs:
                if m.offset:
                    yield m.connection, m.timestamp, m.data


class _StrictMcapReader(_RecoveringMcapReader):
    recover = False


class _RecoveringSqlite3Reader(Sqlite3Reader):
    """A sqlite3 reader that, when the database is malformed, salvages every readable row into a
    temporary database and reads that instead.

    The copy holds recorded data, so it is private: a fresh 0700 folder (mkdtemp) in the system's temp
    folder, removed on close and on every failure. Rows are copied in id (= recording) order; a damaged
    page stops the scan, which resumes at the first id that reads again, so the rows of the damaged
    pages are lost and counted, the rest kept.
    """

    def open(self) -> None:
        self.damage: str | None = None
        self._tmpdir: str | None = None
        try:
            super().open()
            return
        except ReaderError as exc:
            if "malformed" not in str(exc):
                raise
            reason = _explain(exc).split(": ")[-1]
        source = self.path
        self._tmpdir = tempfile.mkdtemp(prefix="liquid_control-salvage-")
        try:
            kept, lost, ranges = _salvage_sqlite(Path(source), Path(self._tmpdir) / "salvaged.db3")
            self.path = Path(self._tmpdir) / "salvaged.db3"
            super().open()
        except BaseException:
            self._remove_copy()
            raise
        finally:
            self.path = source
        where = ", ".join(f"{a}..{b}" for a, b in ranges[:5]) + (" ..." if len(ranges) > 5 else "")
        self.damage = (f"{source}: {reason}; salvaged {kept} messages, {lost} unreadable (message ids {where})")
        self.lost = lost

    def _remove_copy(self) -> None:
        tmp, self._tmpdir = getattr(self, "_tmpdir", None), None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def close(self) -> None:
        try:
            if getattr(self, "dbconn", None) is not None:
                super().close()
        finally:
            self._remove_copy()


def _salvage_sqlite(source: Path, dest: Path, max_probes: int = 1_000_000) -> tuple[int, int, list[tuple[int, int]]]:
    """Copy the readable part of a damaged rosbag2 sqlite3 file into a new one. Returns (rows kept,
    rows lost, lost id ranges). The small tables (schema, topics, definitions) must read whole; a row
    that the damage duplicated or that breaks a constraint is counted lost, never an error."""
    try:
        src = _apsw.Connection(f"file:{source}?immutable=1", flags=_apsw.SQLITE_OPEN_READONLY | _apsw.SQLITE_OPEN_URI)
    except _apsw.Error as exc:
        raise BagError(f"{source}: damaged beyond recovery ({_explain(exc)})") from None
    dst = sqlite3.connect(dest)
    try:
        try:
            tables = list(src.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            if "messages" not in {name for name, _ in tables}:
                raise BagError(f"{source}: damaged beyond recovery (no messages table left)")
            for name, sql in tables:
                if name.startswith("sqlite_"):
                    continue  # sqlite's own tables (sqlite_sequence) are made by the schema
                dst.execute(sql)
                if name != "messages":
                    rows = list(src.execute(f'SELECT * FROM "{name}"'))
                    if rows:
                        dst.executemany(f'INSERT OR IGNORE INTO "{name}" VALUES ({",".join("?" * len(rows[0]))})', rows)
            max_id = next(iter(src.execute("SELECT max(id) FROM messages")))[0] or 0
        except (_apsw.Error, sqlite3.Error) as exc:
            raise BagError(f"{source}: damaged beyond recovery (its schema or topic tables do not read: "
                           f"{_explain(exc)})") from None
        if not isinstance(max_id, int):
            raise BagError(f"{source}: damaged beyond recovery (message ids are not integers)")
        kept, lost, ranges, next_id = 0, 0, [], 1
        insert = "INSERT OR IGNORE INTO messages (id, topic_id, timestamp, data) VALUES (?, ?, ?, ?)"
        while next_id <= max_id:
            try:
                for row in src.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id >= ? ORDER BY id",
                                       (next_id,)):
                    try:
                        ok = dst.execute(insert, row).rowcount == 1
                    except sqlite3.Error:  # a value of the wrong type for its column
                        ok = False
                    kept += ok
                    lost += not ok
                    next_id = row[0] + 1
                break
            except _apsw.Error:
                first_bad, probes = next_id, 0
                next_id += 1
                while next_id <= max_id and probes < max_probes:  # the first id after the damaged pages
                    try:
                        if list(src.execute("SELECT id FROM messages WHERE id = ?", (next_id,))):
                            break
                    except _apsw.Error:
                        pass
                    next_id += 1
                    probes += 1
                ranges.append((first_bad, next_id - 1))
                lost += next_id - first_bad
        try:
            dst.execute("CREATE INDEX IF NOT EXISTS timestamp_idx ON messages (timestamp ASC)")
            dst.commit()
        except sqlite3.Error as exc:
            raise BagError(f"{source}: damaged beyond recovery ({_explain(exc)})") from None
        return kept, lost, ranges
    finally:
        dst.close()
        src.close()


class _TolerantDirectoryReader(DirectoryReader):
    """rosbags' reader of a bag directory, matching metadata.yaml's topics to the storage files' by
    name and type only. rosbags also requires the offered QoS profiles and type hashes to be equal, and
    silently yields nothing for a topic whose metadata.yaml entry differs from the file's; rosbag2 reads
    such a bag (ros2 bag play offers metadata.yaml's profiles). `mismatches` names the differences."""

    def open(self) -> None:
        super().open()
        self.notes = self._reconcile_types()

    def _reconcile_types(self) -> list[str]:
        """A topic whose type in metadata.yaml is not the one its storage file holds is read as the file's
        type (with the file's definition), and said: decoding as metadata.yaml's would fail every message."""
        notes = []
        for i, conn in enumerate(self.connections):
            stored = {x.msgtype: x for s in self.storages for x in s.connections if x.topic == conn.topic}
            if conn.msgtype in stored or len(stored) != 1:
                continue
            (msgtype, x), = stored.items()
            notes.append(f"metadata.yaml gives {conn.topic} the type {conn.msgtype}, its storage file holds {msgtype}: "
                         f"read as {msgtype}")
            self.connections[i] = conn._replace(msgtype=msgtype, msgdef=x.msgdef, digest=x.digest)
        return notes

    def mismatches(self) -> list[str]:
        out = list(getattr(self, "notes", []))
        for conn in self.connections:
            for s in self.storages:
                for x in s.connections:
                    if x.topic != conn.topic or x.msgtype != conn.msgtype:
                        continue
                    if x.ext != conn.ext:
                        out.append(f"metadata.yaml's offered QoS profiles (or serialization) of {conn.topic} differ from "
                                   f"those in {Path(s.path).name}; read all the same (rosbag2 does); playback offers "
                                   "metadata.yaml's")
                    if x.digest and conn.digest and x.digest != conn.digest:
                        out.append(f"metadata.yaml's type hash of {conn.topic} differs from {Path(s.path).name}'s; "
                                   "decoded with the definition stored in the file")
        return list(dict.fromkeys(out))

    def messages(self, connections: Any, start: int | None = None, stop: int | None = None) -> Iterator[Any]:
        for storage in self.storages:
            connmap = {}
            for x in storage.connections:
                conn = next((y for y in connections if y.topic == x.topic and y.msgtype == x.msgtype), None)
                if conn is not None:
                    connmap[x.id] = conn
            storage_conns = [x for x in storage.connections if x.id in connmap]
            if not storage_conns:
                continue
            if self.metadata.compression_mode == "message":
                from rosbags.rosbag2.reader import zstd

                for sc, t_ns, data in storage.messages(storage_conns, start, stop):
                    yield connmap[sc.id], t_ns, zstd.decompress(data)
            else:
                for sc, t_ns, data in storage.messages(storage_conns, start, stop):
                    yield connmap[sc.id], t_ns, data


class _RecoveringDirectoryReader(_TolerantDirectoryReader):
    STORAGE_PLUGINS = {"mcap": _RecoveringMcapReader, "sqlite3": _RecoveringSqlite3Reader}


class _StrictDirectoryReader(_TolerantDirectoryReader):
    STORAGE_PLUGINS = {"mcap": _StrictMcapReader, "sqlite3": Sqlite3Reader}


def _census_source(storage: Any) -> str:
    return getattr(storage, "census_source", None) or ("sqlite3 rows" if isinstance(storage, Sqlite3Reader) else "storage")


def _regular(path: Path, what: str) -> None:
    try:
        regular_file(path, what)
    except LiquidControlError as exc:
        raise BagError(str(exc)) from None


def _explain(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]


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
        from liquid_control.bags.joint_state_cdr import JOINT_STATE, joint_state_decoder

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
                cls = _RecoveringDirectoryReader if self.recover else _StrictDirectoryReader
                self.storage = self._check_metadata(p)
                storage = cls(p)
            else:
                files = sorted(f for f in p.iterdir() if f.suffix in _SUFFIX)
                if len(files) != 1:
                    what = "no .mcap or .db3 file" if not files else f"{len(files)} storage files ({', '.join(f.name for f in files)})"
                    raise BagError(f"{p} is not a rosbag2 bag: no metadata.yaml and {what}")
                self.stats.notes.append(f"{p} has no metadata.yaml (recording not closed?); read {files[0].name} directly")
                self.path = p = files[0]
        if not p.is_dir():
            _regular(p, "bag file")
            if p.suffix not in _SUFFIX:
                raise BagError(f"{p} is not a rosbag2 file: expected a bag directory, .mcap or .db3")
            self.storage = _SUFFIX[p.suffix]
            if self.storage == "mcap":
                storage = (_RecoveringMcapReader if self.recover else _StrictMcapReader)(p)
            else:
                storage = (_RecoveringSqlite3Reader if self.recover else Sqlite3Reader)(p)
        try:
            storage.open()
        except FileNotFoundError as exc:
            raise BagError(f"bag {p}: {_explain(exc)}") from None
        except (*_STORAGE_ERRORS, AttributeError, sqlite3.Error, RecursionError) as exc:
            hint = self._hint(exc)
            raise BagError(f"cannot read bag {p}: {_explain(exc)}{hint}") from None
        self._storage = storage
        for s in getattr(storage, "storages", [storage]):
            if getattr(s, "damage", None):
                self.stats.damage = s.damage
            if isinstance(s, _RecoveringMcapReader):
                s.on_damaged_chunk = self._damaged_chunk
            if getattr(s, "damage", None) and isinstance(s, _RecoveringSqlite3Reader):
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
        _regular(meta, "bag metadata")
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
                _regular(f, "bag file")
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
        counts = [bag_census.census(_census_source(s), s.connections, s.metadata.start_time, s.metadata.end_time)
                  for s in parts]
        self.storage_census = bag_census.merge(" + ".join(dict.fromkeys(c.source for c in counts)), counts)
        if self.metadata_census is not None and self.storage_census is not None:
            lines = bag_census.disagreements(self.metadata_census, self.storage_census)
            if lines:
                self.stats.notes.append("metadata.yaml disagrees with the storage (read by the storage): " + "; ".join(lines))
        if isinstance(storage, _TolerantDirectoryReader):
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
            except _STORAGE_ERRORS as exc:
                where = "at the start" if last_ns is None else f"after log time {last_ns / 1e9:.6f} s"
                reason = f"{self.path}: damaged {where}: {_explain(exc)}"
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


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def qos_profile(*, reliable: bool = True, depth: int = 10, transient_local: bool = False) -> Qos:
    """A QoS profile as rosbag2 stores it (offered_qos_profiles) and `ros2 bag play` reuses it."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


SENSOR_QOS = qos_profile(reliable=False, depth=5)  # rclpy's qos_profile_sensor_data
COMMAND_QOS = qos_profile(reliable=True, depth=1)  # as the controller node publishes (ros/qos.py)


def check_bag_version(value: int | str | None) -> int:
    """A rosbag2 metadata version we write (None: the default); BagError with the choices otherwise."""
    try:
        return bag_versions.parse_bag_version(value)
    except ValueError as exc:
        raise BagError(str(exc)) from None


class BagWriter:
    """Writes a rosbag2 bag atomically: nothing appears at `path` until close() succeeds.

    MCAP by default, sqlite3 on request; `version` is the rosbag2 metadata version (bags/versions.py:
    the default opens in Humble, Jazzy and Kilted). Every topic carries its message definition (from the
    typestore, or copied from a source bag) and its offered QoS profiles, so `ros2 bag info/play`
    and rosbags read the result. Use as a context manager: an exception aborts and removes the
    temporary bag.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap", typestore: Typestore | None = None,
                 overwrite: bool = False, version: int | str | None = None):
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose {' or '.join(STORAGES)}")
        self.version = check_bag_version(version)
        self.path = Path(path)
        if self.path.suffix in _SUFFIX:
            raise BagError(f"{self.path}: give a bag directory name (without {self.path.suffix}); "
                           "the storage file is created inside it")
        if self.path.exists() and not overwrite:
            raise BagError(f"output bag {self.path} exists already (not overwriting)")
        if not self.path.parent.is_dir():
            raise BagError(f"cannot write bag {self.path}: folder {self.path.parent} does not exist")
        self.storage = storage
        self.overwrite = overwrite
        self.typestore = typestore or distro_typestore(None)
        # The temporary parent keeps the final directory name, so the storage file inside is named
        # <bag>.mcap / <bag>.db3 as `ros2 bag record` would name it.
        self._tmp_parent = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._tmp_parent.mkdir()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmp_parent / self.path.name, version=bag_versions.rosbags_version(self.version),
                              storage_plugin=plugin)
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            shutil.rmtree(self._tmp_parent, ignore_errors=True)
            raise BagError(f"cannot write bag {self.path}: {_explain(exc)}") from None
        self._conns: dict[str, Connection] = {}
        self.count = 0
        self._closed = False

    def add_topic(self, topic: str, msgtype: str, *, qos: Iterable[Qos] = (COMMAND_QOS,),
                  msgdef: str | None = None, digest: str | None = None) -> Connection:
        """Register a topic; its definition comes from the typestore unless given."""
        topic = normalize_topic(topic)
        if topic in self._conns:
            raise BagError(f"topic {topic} added twice to {self.path}")
        if not msgdef or not digest:
            if msgtype not in self.typestore.fielddefs:
                raise BagError(f"cannot write {topic}: unknown message type {msgtype}")
            msgdef, digest = self.typestore.generate_msgdef(msgtype, ros_version=2)[0], self.typestore.hash_rihs01(msgtype)
        conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest,
                                           offered_qos_profiles=list(qos))
        self._conns[topic] = conn
        return conn

    def add_topic_like(self, source: BagTopic, source_typestore: Typestore, topic: str | None = None) -> Connection:
        """Register a topic copied from a source bag: same type, definition and QoS."""
        conn = source.connection
        msgdef = conn.msgdef.data if conn.msgdef.format != MessageDefinitionFormat.NONE else None
        if msgdef is None:
            msgdef = source_typestore.generate_msgdef(conn.msgtype, ros_version=2)[0]
        digest = conn.digest or source_typestore.hash_rihs01(conn.msgtype)
        return self.add_topic(topic or source.name, conn.msgtype, qos=source.qos or (COMMAND_QOS,),
                              msgdef=msgdef, digest=digest)

    def write(self, topic: str, log_time_ns: int, data: bytes | memoryview) -> None:
        """Write serialized CDR as is (no re-serialisation)."""
        conn = self._conns.get(topic) or self._conns.get(normalize_topic(topic))
        if conn is None:
            raise BagError(f"topic {topic} was not added to {self.path}")
        self._writer.write(conn, int(log_time_ns), data)
        self.count += 1

    def write_msg(self, topic: str, log_time_ns: int, msg: Any) -> None:
        conn = self._conns.get(topic) or self._conns[normalize_topic(topic)]
        self.write(topic, log_time_ns, self.typestore.serialize_cdr(msg, conn.msgtype))

    def set_custom_data(self, key: str, value: str) -> None:
        if self.version < bag_versions.BAG_FIELD_SINCE["custom_data"]:
            raise BagError(f"bag version {self.version} has no custom_data (version 6 and later have)")
        self._writer.set_custom_data(key, value)

    def close(self) -> Path:
        """Finish the bag and move it into place. Returns the final path."""
        if self._closed:
            return self.path
        try:
            self._writer.close()
            if self.version < 8:
                bag_versions.rewrite_bag_version(self._tmp_parent / self.path.name, self.version)
            if self.path.exists() and self.overwrite:
                shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            os.replace(self._tmp_parent / self.path.name, self.path)
        except BaseException:
            self.abort()
            raise
        finally:
            shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        if self._closed:
            return
        try:
            self._writer.abort()
        except Exception:
            pass
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
