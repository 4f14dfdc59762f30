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
  * what was read is what the bag holds: per-topic counts and the time span from metadata.yaml and
    from the storage itself are compared with what a read got (census.py); the bag is read by the
    storage (a late start time or a QoS that differs in metadata.yaml loses nothing), and where they
    disagree it is said;
  * only regular files are opened (a FIFO or a device is refused before reading); every MCAP read is
    bounded by the file size;
  * corrupt and truncated bags: a clear one-line BagError, or with `recover=True` what is intact is
    read and the damage is reported in the stats: an MCAP file cut mid-write is read up to its last
    complete record, a damaged MCAP chunk is skipped (its messages counted) and reading goes on, a
    malformed sqlite3 file has its readable rows salvaged into a private temporary database (the rows
    of damaged pages counted as lost; the copy is always removed).
    Note: rosbags writes MCAP chunks without a CRC, so in bags it wrote, a flipped payload bit is only
    caught when it breaks the record structure or the CDR decoding;
  * an atomic writer: the bag is written under a temporary name beside the target and renamed into
    place when complete, so a failure never leaves a half-written bag at the target path.

The parts, by concern (import them from here; the names below are the bags layer's interface):
    common     BagError, storages, the errors damaged storage raises, topic names
    typestore  message definitions per bag (stored first, then the distro's), tolerant CDR decoding
    recovery   rosbags' storage readers made safe: bounded reads, cut/damaged files, sqlite salvage
    reader     BagReader: one entry point, streaming, every skip and disagreement counted (with census)
    writer     BagWriter: atomic, metadata version 5-9

Only the bags layer imports this (rosbags is an optional dependency: the `bags` extra).
"""
from __future__ import annotations

from liquid_control.bags.common import STORAGES, BagError, check_max_gap, normalize_topic
from liquid_control.bags.reader import BagMessage, BagReader, BagTopic, RawMessage, ReadStats, open_bag
from liquid_control.bags.typestore import (DEFAULT_DISTRO, DISTROS, CdrError, bag_typestore, decode_cdr,
                                           distro_typestore, ensure_types)
from liquid_control.bags.writer import BAG_COMMAND_QOS, BAG_SENSOR_QOS, BagWriter, check_bag_version, qos_profile

__all__ = ["STORAGES", "BagError", "check_max_gap", "normalize_topic", "BagMessage", "BagReader", "BagTopic", "RawMessage",
           "ReadStats", "open_bag", "DEFAULT_DISTRO", "DISTROS", "CdrError", "bag_typestore", "decode_cdr",
           "distro_typestore", "ensure_types", "BAG_COMMAND_QOS", "BAG_SENSOR_QOS", "BagWriter", "check_bag_version",
           "qos_profile"]
