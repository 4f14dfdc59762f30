"""Ways to damage a rosbag2 bag on disk, as the bag tests and the bag fuzz suite need them: edits of
metadata.yaml, of the sqlite3 rows, of MCAP records and bytes. Each works on a copy the caller made."""
from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path
from typing import Any, Callable

import yaml

INFO = "rosbag2_bagfile_information"


def copy_bag(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def storage_file(bag: Path) -> Path:
    (f,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    return f


def edit_metadata(bag: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply `edit` to rosbag2_bagfile_information and write metadata.yaml back."""
    meta = bag / "metadata.yaml"
    data = yaml.safe_load(meta.read_text())
    edit(data[INFO])
    meta.write_text(yaml.safe_dump(data))


def topic_entry(info: dict[str, Any], topic: str) -> dict[str, Any]:
    return next(t for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] == topic)


def sqlite_exec(bag_or_db: Path, *sql: str) -> None:
    db = storage_file(bag_or_db) if bag_or_db.is_dir() else bag_or_db
    con = sqlite3.connect(db)
    try:
        for s in sql:
            con.execute(s)
        con.commit()
    finally:
        con.close()


def mcap_records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, opcode, length) of each top-level record after the magic."""
    pos, out = 8, []
    while pos + 9 <= len(data) - 8:
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        out.append((pos, op, length))
        pos += 9 + length
    return out


def flip(data: bytes, offset: int, bit: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


def log_time_offsets(data: bytes, log_ns: int) -> list[int]:
    """Where a message's log time (uint64 little-endian) occurs in an uncompressed MCAP file (its Message
    record, and its chunk's message index)."""
    needle, out, i = struct.pack("<Q", log_ns), [], -1
    while (i := data.find(needle, i + 1)) >= 0:
        out.append(i)
    return out
