"""rosbag2 metadata versions: which one a bag is written in, and what each holds.

rosbag2 versions its metadata (metadata.yaml, and a copy inside the storage file). Each ROS 2 release
writes one version and reads older ones; the readers (rosbag2_storage's YAML decoder) check no upper
bound but read each field in the form of the version that introduced it:

    version  added                                          written by
    4        offered_qos_profiles (a YAML string)           Galactic
    5        files: per-file path, start, duration, count   Humble
    6        custom_data (string -> string map)
    7        type_description_hash per topic (RIHS01)       Iron
    8        ros_distro
    9        offered_qos_profiles as a YAML sequence with   Jazzy, Kilted, Rolling
             enum names instead of numbers

Humble's reader takes offered_qos_profiles as a string and its player reads numeric QoS enums, so it
opens versions 5-8 and fails on 9 ("bad conversion", ros2/rosbag2#2013). Jazzy and Kilted read every
version (their QoS decoder detects numbers or names). Hence the default, 8: the oldest version that
holds everything we write (custom_data, each topic's type hash, ros_distro) and that Humble, Jazzy
and Kilted all open. 5 is Humble's own format (no custom_data, no type hashes in metadata.yaml);
9 is Jazzy's.

rosbags writes versions 8 and 9; 5-7 are written as 8 and then reduced to the fields of the older
version, in metadata.yaml and in the sqlite3 metadata table. The MCAP file keeps rosbags' version 8
copy in its 'rosbag2' metadata record: only Jazzy and later read that record, and only when
metadata.yaml is absent, and they read version 8.
"""
from __future__ import annotations

import sqlite3
from io import StringIO
from pathlib import Path
from typing import Any

BAG_VERSIONS = (5, 6, 7, 8, 9)
DEFAULT_BAG_VERSION = 8

# Bag-level and per-topic fields and the metadata version that introduced them (bag_metadata.hpp,
# yaml.hpp / metadata_io.cpp of ros2/rosbag2).
BAG_FIELD_SINCE = {"custom_data": 6, "ros_distro": 8}
TOPIC_FIELD_SINCE = {"type_description_hash": 7}

VERSION_HELP = (f"rosbag2 metadata version {BAG_VERSIONS[0]}-{BAG_VERSIONS[-1]} (default {DEFAULT_BAG_VERSION}: "
                "Humble, Jazzy and Kilted open it; 5 is Humble's own format, 9 Jazzy's, which Humble cannot read)")


def parse_bag_version(value: Any) -> int:
    """The version asked for as an int; ValueError (one line) for anything else."""
    if value is None:
        return DEFAULT_BAG_VERSION
    try:
        version = int(str(value).strip())
    except ValueError:
        version = None
    if version not in BAG_VERSIONS:
        raise ValueError(f"unsupported bag version {value!r}: choose one of {', '.join(map(str, BAG_VERSIONS))} "
                         f"(8, the default, opens in Humble, Jazzy and Kilted; 9 not in Humble)")
    return version


def rosbags_version(version: int) -> int:
    """The version rosbags' Writer is asked for (it writes 8 and 9)."""
    return 9 if version >= 9 else 8


def reduce_metadata(info: dict[str, Any], version: int) -> dict[str, Any]:
    """A version-8 rosbag2_bagfile_information dict with only the fields `version` has."""
    if version >= 8 or info.get("version") != 8:
        raise ValueError(f"reduce_metadata takes version-8 metadata to an older version, not {info.get('version')} -> {version}")
    out = {k: v for k, v in info.items() if BAG_FIELD_SINCE.get(k, 0) <= version}
    out["version"] = version
    out["topics_with_message_count"] = [
        {**t, "topic_metadata": {k: v for k, v in t["topic_metadata"].items() if TOPIC_FIELD_SINCE.get(k, 0) <= version}}
        for t in info["topics_with_message_count"]]
    return out


def _yaml() -> Any:
    from ruamel.yaml import YAML  # what rosbags writes metadata with

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    return yaml


def _dump(data: Any) -> str:
    stream = StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def rewrite_bag_version(bag: Path, version: int) -> None:
    """Reduce a closed version-8 bag directory written by rosbags to `version` (5-7)."""
    meta = bag / "metadata.yaml"
    info = _yaml().load(meta.read_text())["rosbag2_bagfile_information"]
    reduced = reduce_metadata(info, version)
    if reduced.get("storage_identifier") == "sqlite3":
        for name in reduced["relative_file_paths"]:
            with sqlite3.connect(bag / name) as db:  # the copy `ros2 bag reindex`-less readers use
                if db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='metadata'").fetchone():
                    db.execute("UPDATE metadata SET metadata_version = ?, metadata = ?", (version, _dump(reduced).strip()))
            db.close()
    tmp = meta.with_suffix(".yaml.tmp")
    tmp.write_text(_dump({"rosbag2_bagfile_information": reduced}))
    tmp.replace(meta)
