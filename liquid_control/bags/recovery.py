"""rosbags' storage readers, made safe for damaged and lying bags.

  * every MCAP read is bounded by the file size (BoundedFile): a corrupt length field reads as a
    truncated record, never as an allocation of that many bytes;
  * recovering reads (recover=True / --recover): an MCAP file cut mid-write is read up to its last
    complete record, a damaged MCAP chunk is skipped (its messages counted) and reading goes on, a
    malformed sqlite3 file has its readable rows salvaged into a private temporary database (the rows
    of damaged pages counted as lost; the copy is always removed);
  * a bag directory's topics are matched to its storage files' by name and type only (metadata.yaml's
    QoS or type hash may differ from the file's: read all the same, and said).
Note: rosbags writes MCAP chunks without a CRC, so in bags it wrote, a flipped payload bit is only caught
when it breaks the record structure or the CDR decoding.
"""
from __future__ import annotations

import io
import os
import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import apsw
from rosbags.rosbag2 import ReaderError
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader, msgsrc
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

from liquid_control.bags.common import STORAGE_ERRORS, BagError, explain

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


class BoundedFile(io.BufferedReader):
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


class RecoveringMcapReader(McapReader):
    """An MCAP reader that, when the file has no valid footer (cut while recording), reads the
    complete records before the cut instead of refusing the file. Every read is bounded by the file
    size (BoundedFile). `census_source` says where its message counts come from."""

    recover = True
    census_source = "MCAP records"

    def open(self) -> None:
        try:
            self.bio = BoundedFile(self.path)
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
            except STORAGE_ERRORS + (RuntimeError,) as exc:  # zstd / lz4 raise their own error types
                lost = sum(chunk.channel_count.get(cid, 0) for cid in channel_map)
                if self.on_damaged_chunk is not None:
                    self.on_damaged_chunk(f"damaged chunk at byte {chunk.chunk_start_offset} (log time "
                                          f"{chunk.message_start_time / 1e9:.3f}..{chunk.message_end_time / 1e9:.3f} s): "
                                          f"{explain(exc)}", lost)
                continue
            for m in msgs:
                if m.offset:
                    yield m.connection, m.timestamp, m.data


class StrictMcapReader(RecoveringMcapReader):
    recover = False


class RecoveringSqlite3Reader(Sqlite3Reader):
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
            reason = explain(exc).split(": ")[-1]
        source = self.path
        self._tmpdir = tempfile.mkdtemp(prefix="liquid_control-salvage-")
        try:
            kept, lost, ranges = salvage_sqlite(Path(source), Path(self._tmpdir) / "salvaged.db3")
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


class _Unordered(Exception):
    """A scan in id order met an id out of order (a damaged page links back)."""


def _id_reads(src: Any, i: int) -> bool:
    """Whether looking up message id `i` gets through the table's pages (whether or not a row has that id)."""
    try:
        list(src.execute("SELECT id FROM messages WHERE id = ?", (i,)))
        return True
    except apsw.Error:
        return False


def _next_readable_id(src: Any, bad: int, max_id: int) -> int:
    """The first id after the damaged pages that hold `bad` (max_id + 1: none). The ids past a damaged
    stretch read again, so: steps doubling from `bad` until an id reads, then bisection back to the
    first one that does; O(log n) lookups however large the stretch (or a damaged max(id)) is."""
    lo, step = bad, 1  # lo: an id that does not read
    while lo + step <= max_id and not _id_reads(src, lo + step):
        lo, step = lo + step, step * 2
    hi = lo + step
    if hi > max_id:
        if max_id <= lo or not _id_reads(src, max_id):
            return max_id + 1
        hi = max_id
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _id_reads(src, mid) else (mid, hi)
    return hi


def salvage_sqlite(source: Path, dest: Path) -> tuple[int, int, list[tuple[int, int]]]:
    """Copy the readable part of a damaged rosbag2 sqlite3 file into a new one. Returns (rows kept,
    rows lost, lost id ranges). The small tables (schema, topics, definitions) must read whole; a row
    that the damage duplicated or that breaks a constraint is counted lost, never an error."""
    try:
        src = apsw.Connection(f"file:{source}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error as exc:
        raise BagError(f"{source}: damaged beyond recovery ({explain(exc)})") from None
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
        except (apsw.Error, sqlite3.Error) as exc:
            raise BagError(f"{source}: damaged beyond recovery (its schema or topic tables do not read: "
                           f"{explain(exc)})") from None
        if not isinstance(max_id, int):
            raise BagError(f"{source}: damaged beyond recovery (message ids are not integers)")
        # rosbag2 numbers its rows 1, 2, 3, ...: a max(id) beyond the file's size in bytes is damage itself
        max_id = min(max_id, source.stat().st_size)
        kept, lost, ranges, next_id = 0, 0, [], 1
        insert = "INSERT OR IGNORE INTO messages (id, topic_id, timestamp, data) VALUES (?, ?, ?, ?)"
        budget = 4 * max_id + 1000  # rows read and ids looked up: a damaged tree can lead a scan in circles
        while next_id <= max_id:
            try:
                for row in src.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id >= ? ORDER BY id",
                                       (next_id,)):
                    budget -= 1
                    if not isinstance(row[0], int) or row[0] < next_id or budget < 0:
                        raise _Unordered  # ids must come in increasing order: the tree's pages are damaged
                    try:
                        ok = dst.execute(insert, row).rowcount == 1
                    except sqlite3.Error:  # a value of the wrong type for its column
                        ok = False
                    kept += ok
                    lost += not ok
                    next_id = row[0] + 1
                break
            except (apsw.Error, _Unordered):
                first_bad = next_id
                next_id = max_id + 1 if budget < 0 else _next_readable_id(src, next_id, max_id)
                lost += next_id - first_bad
                if ranges and ranges[-1][1] + 1 == first_bad:  # one damaged stretch, met twice
                    first_bad = ranges.pop()[0]
                ranges.append((first_bad, next_id - 1))
        try:
            dst.execute("CREATE INDEX IF NOT EXISTS timestamp_idx ON messages (timestamp ASC)")
            dst.commit()
        except sqlite3.Error as exc:
            raise BagError(f"{source}: damaged beyond recovery ({explain(exc)})") from None
        return kept, lost, ranges
    finally:
        dst.close()
        src.close()


class TolerantDirectoryReader(DirectoryReader):
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
        """Notes, one per kind: the topics whose metadata.yaml entry differs from their storage file's."""
        qos, digest = {}, {}
        for conn in self.connections:
            for s in self.storages:
                for x in s.connections:
                    if x.topic != conn.topic or x.msgtype != conn.msgtype:
                        continue
                    if x.ext != conn.ext:
                        qos[conn.topic] = None
                    if x.digest and conn.digest and x.digest != conn.digest:
                        digest[conn.topic] = None
        out = list(getattr(self, "notes", []))
        if qos:
            out.append(f"metadata.yaml's offered QoS profiles (or serialization) of {', '.join(qos)} differ from the "
                       "storage file's; read all the same, as rosbag2 reads them; playback offers metadata.yaml's")
        if digest:
            out.append(f"metadata.yaml's type hash of {', '.join(digest)} differs from the storage file's; decoded "
                       "with the definition stored in the file")
        return out

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


class RecoveringDirectoryReader(TolerantDirectoryReader):
    STORAGE_PLUGINS = {"mcap": RecoveringMcapReader, "sqlite3": RecoveringSqlite3Reader}


class StrictDirectoryReader(TolerantDirectoryReader):
    STORAGE_PLUGINS = {"mcap": StrictMcapReader, "sqlite3": Sqlite3Reader}


def census_source(storage: Any) -> str:
    return getattr(storage, "census_source", None) or ("sqlite3 rows" if isinstance(storage, Sqlite3Reader) else "storage")
