"""Bags in every rosbag2 metadata version we write (5-9), in both storages, checked against what the
readers of Humble, Jazzy and Kilted require of that version, and read back by our reader and rosbags'.

The reader models below follow ros2/rosbag2's YAML decoders field by field:
  humble        rosbag2_storage/src/rosbag2_storage/metadata_io.cpp  convert<BagMetadata / TopicMetadata /
                FileInformation>::decode; QoS: rosbag2_transport/src/rosbag2_transport/qos.cpp
                convert<Rosbag2QoS>::decode (each policy `as<int>()`)
  jazzy, kilted rosbag2_storage/include/rosbag2_storage/yaml.hpp (same decoders), QoS:
                rosbag2_storage/src/rosbag2_storage/qos.cpp convert<rclcpp::QoS>::decode (numbers, or names
                when `history` is not a number); the kilted column is the rolling branch, which kilted
                was cut from with these files unchanged since jazzy.
None of them checks an upper version bound: each reads the fields of the versions it knows, each in the
form the version that introduced it gave it, and ignores other keys. yaml-cpp's `as<std::string>()`
takes any scalar and refuses a sequence or map; `as<int>()` refuses a word.
"""
from __future__ import annotations

import sqlite3
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from liquid_control.bags.io import BagError, BagWriter, check_bag_version, open_bag
from liquid_control.bags.synth import simulate_cartpole, write_cartpole_bag
from liquid_control.bags.versions import BAG_VERSIONS, DEFAULT_BAG_VERSION
from ros_helpers import NodeProcess, console_script

DISTROS = ("humble", "jazzy", "kilted")
STORAGES = ("mcap", "sqlite3")

# What each reader requires: (field, first version read, form). Paths are dotted; "[]" is each item of
# a sequence. Forms: int, str, strmap (str -> str map, or null), qos (offered_qos_profiles, see _qos).
_BASE = [
    ("version", 1, "int"), ("storage_identifier", 1, "str"), ("duration.nanoseconds", 1, "int"),
    ("starting_time.nanoseconds_since_epoch", 1, "int"), ("message_count", 1, "int"),
    ("topics_with_message_count[].topic_metadata.name", 1, "str"),
    ("topics_with_message_count[].topic_metadata.type", 1, "str"),
    ("topics_with_message_count[].topic_metadata.serialization_format", 1, "str"),
    ("topics_with_message_count[].message_count", 1, "int"),
    ("relative_file_paths[]", 1, "str"),
    ("compression_format", 3, "str"), ("compression_mode", 3, "str"),
    ("topics_with_message_count[].topic_metadata.offered_qos_profiles", 4, "qos"),
    ("files[].path", 5, "str"), ("files[].starting_time.nanoseconds_since_epoch", 5, "int"),
    ("files[].duration.nanoseconds", 5, "int"), ("files[].message_count", 5, "int"),
]
READS = {
    "humble": _BASE,
    "jazzy": _BASE + [("custom_data", 6, "strmap"),
                      ("topics_with_message_count[].topic_metadata.type_description_hash", 7, "str"),
                      ("ros_distro", 8, "str")],
}
READS["kilted"] = READS["jazzy"]
QOS_WORDS = {  # rmw's qos_string_conversions: the names a version-9 profile uses
    "history": {"system_default", "keep_last", "keep_all", "unknown"},
    "reliability": {"system_default", "reliable", "best_effort", "unknown", "best_available"},
    "durability": {"system_default", "transient_local", "volatile", "unknown", "best_available"},
    "liveliness": {"system_default", "automatic", "manual_by_topic", "unknown", "best_available"},
}


def _values(node, path):
    """The values at a dotted path ('[]' iterates a sequence); KeyError naming the path if one is missing."""
    nodes = [node]
    for part in path.split("."):
        seq = part.endswith("[]")
        key = part[:-2] if seq else part
        nxt = []
        for n in nodes:
            if not isinstance(n, dict) or key not in n:
                raise KeyError(f"{path}: no {key!r}")
            v = n[key]
            if seq:
                if not isinstance(v, list):
                    raise KeyError(f"{path}: {key!r} is not a sequence")
                nxt += v
            else:
                nxt.append(v)
        nodes = nxt
    return nodes


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _qos_profiles(distro: str, profiles, version: int) -> list[str]:
    """Problems of one offered_qos_profiles value for this distro's reader and player."""
    if distro == "humble" or version < 9:
        if not _scalar(profiles):  # `as<std::string>()`
            return [f"offered_qos_profiles is a {type(profiles).__name__}, the reader takes a string"]
        profiles = yaml.safe_load(profiles or "[]")
    if not isinstance(profiles, list):
        return ["offered_qos_profiles is not a sequence of profiles"]
    problems = []
    for p in profiles:
        numeric = isinstance(p.get("history"), int)
        for policy, words in QOS_WORDS.items():
            v = p.get(policy)
            if distro == "humble" or numeric:  # humble: as<int>(); jazzy+: numbers when history is one
                if not isinstance(v, int):
                    problems.append(f"QoS {policy} {v!r} is not a number")
            elif v not in words:
                problems.append(f"QoS {policy} {v!r} is not an rmw policy name")
        for t in ("deadline", "lifespan", "liveliness_lease_duration"):
            if not all(isinstance(p.get(t, {}).get(k), int) for k in ("sec", "nsec")):
                problems.append(f"QoS {t} lacks integer sec/nsec")
        if not isinstance(p.get("depth"), int) or not isinstance(p.get("avoid_ros_namespace_conventions"), bool):
            problems.append("QoS depth / avoid_ros_namespace_conventions missing")
    return problems


def reader_problems(distro: str, info: dict) -> list[str]:
    """What this distro's metadata reader would fail on in rosbag2_bagfile_information `info`."""
    version = info.get("version")
    if not isinstance(version, int):
        return ["no integer version"]
    problems = []
    for path, since, form in READS[distro]:
        if version < since:
            continue
        try:
            values = _values(info, path)
        except KeyError as exc:
            problems.append(str(exc))
            continue
        for v in values:
            if form == "int" and not (isinstance(v, int) and v >= 0):
                problems.append(f"{path} = {v!r} is not a non-negative integer")
            elif form == "str" and not _scalar(v):
                problems.append(f"{path} is a {type(v).__name__}, not a scalar")
            elif form == "strmap" and not (v is None or (isinstance(v, dict) and all(map(_scalar, v.values())))):
                problems.append(f"{path} is not a string map")
            elif form == "qos":
                problems += _qos_profiles(distro, v, version)
    return problems


def _mcap_channel_qos(path: Path) -> list[str]:
    """offered_qos_profiles of every Channel record at the top level of an MCAP file (its summary)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89MCAP0\r\n"
    pos, out = 8, []

    def string(at):
        n = struct.unpack_from("<I", data, at)[0]
        return data[at + 4:at + 4 + n].decode(), at + 4 + n

    while pos + 9 <= len(data) - 8:
        op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
        if op == 0x04:  # Channel: id u16, schema_id u16, topic, message_encoding, metadata map
            at = pos + 9 + 4
            _, at = string(at)
            _, at = string(at)
            end = at + 4 + struct.unpack_from("<I", data, at)[0]
            at += 4
            while at < end:
                key, at = string(at)
                value, at = string(at)
                if key == "offered_qos_profiles":
                    out.append(value)
        pos += 9 + length
    return out


def _storage_qos(bag: Path, storage: str) -> list[str]:
    """The QoS strings the storage file holds (what `ros2 bag play` takes the publishers' QoS from)."""
    if storage == "sqlite3":
        with sqlite3.connect(next(bag.glob("*.db3"))) as db:
            rows = [r[0] for r in db.execute("SELECT offered_qos_profiles FROM topics")]
        db.close()
        return rows
    return _mcap_channel_qos(next(bag.glob("*.mcap")))


def _metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _ours(bag: Path) -> list[tuple]:
    with open_bag(bag) as b:
        return [(m.topic, m.msgtype, m.log_time_ns, bytes(m.data)) for m in b.raw_messages()]


def _rosbags(bag: Path) -> list[tuple]:
    with AnyReader([bag]) as r:
        return [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in r.messages()]


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """One short synthetic cart-pole bag per (version, storage)."""
    root = tmp_path_factory.mktemp("versions")
    return {(v, s): write_cartpole_bag(root / f"v{v}_{s}", duration=0.3, storage=s, bag_version=v).path
            for v in BAG_VERSIONS for s in STORAGES}


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("version", BAG_VERSIONS)
def test_each_version_holds_its_fields_and_every_distro_that_should_reads_it(bags, version, storage):
    bag = bags[version, storage]
    info = _metadata(bag)
    assert info["version"] == version and info["storage_identifier"] == storage
    # exactly the fields of this version: nothing newer that an older reader could trip over
    assert ("custom_data" in info) == (version >= 6)
    assert ("ros_distro" in info) == (version >= 8)
    for t in info["topics_with_message_count"]:
        assert ("type_description_hash" in t["topic_metadata"]) == (version >= 7)
        if version >= 7:
            assert t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
        assert isinstance(t["topic_metadata"]["offered_qos_profiles"], list if version >= 9 else str)
    if version >= 6:
        assert info["custom_data"] == {"liquid_control.synth": "cartpole seed=0 rate_hz=500"}
    for distro in DISTROS:
        problems = reader_problems(distro, info)
        for qos in _storage_qos(bag, storage):  # YAML strings in every version: what the player reads
            problems += _qos_profiles(distro, qos, 8)
        if distro == "humble" and version >= 9:
            assert problems, "Humble's reader cannot take version 9's QoS sequences, yet the model passed it"
        else:
            assert problems == [], (distro, problems)
    if storage == "sqlite3":  # the copy inside the database says the same version
        with sqlite3.connect(next(bag.glob("*.db3"))) as db:
            (stored,) = db.execute("SELECT metadata_version FROM metadata").fetchone()
        db.close()
        assert stored == version


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("version", BAG_VERSIONS)
def test_our_reader_and_rosbags_read_every_version_alike(bags, version, storage):
    ours, theirs = _ours(bags[version, storage]), _rosbags(bags[version, storage])
    assert len(ours) == 158 and ours == theirs  # 150 joint states at 500 Hz for 0.3 s + 8 commands at 25 Hz
    assert ours == _ours(bags[9, storage])  # the version changes the metadata, never the messages
    _, positions, _, _ = simulate_cartpole(0.3, 500.0, 25.0, seed=0)  # what synth wrote
    with open_bag(bags[version, storage]) as b:
        decoded = np.array([m.msg.position for m in b.messages(["/joint_states"])])
        assert b.stats.skipped_total == 0
    np.testing.assert_array_equal(decoded, positions)


def test_default_version_and_bad_versions(tmp_path):
    assert DEFAULT_BAG_VERSION == 8
    with BagWriter(tmp_path / "default") as w:
        w.add_topic("/x", "std_msgs/msg/Float64MultiArray")
    assert _metadata(tmp_path / "default")["version"] == 8
    assert check_bag_version("5") == 5 and check_bag_version(None) == 8
    for bad in ("4", "10", "latest", "", 3):
        with pytest.raises(BagError, match="unsupported bag version .*choose one of 5, 6, 7, 8, 9"):
            BagWriter(tmp_path / "bad", version=bad)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))
    with BagWriter(tmp_path / "v5", version=5) as w, pytest.raises(BagError, match="version 5 has no custom_data"):
        w.set_custom_data("k", "v")


@pytest.mark.parametrize("argv", [
    ["record", "{tmp}/r", "--robot", "cartpole", "--bag-version", "4"],
    ["sim", "--robot", "cartpole", "--record", "{tmp}/s", "--bag-version", "nine"],
    ["replay", "{bag}", "--out", "{tmp}/o", "--bag-version", "10"],
])
def test_a_bad_bag_version_is_one_line(tmp_path, bags, argv):
    argv = [a.format(tmp=tmp_path, bag=bags[8, "mcap"]) for a in argv]
    proc = subprocess.run(console_script("liquid-control", *argv), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported bag version" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_live_record_and_sim_record_write_the_version_asked_for(tmp_path):
    """The sim bridge publishes (realtime, no controller needed) and records itself in version 6 MCAP,
    while `liquid-control record` records its joint states in version 5 sqlite3 over DDS."""
    sim_bag, rec_bag = tmp_path / "sim", tmp_path / "rec"
    # The recorder runs 6 s of the sim's 12: discovery on a loaded machine can take seconds of it.
    sim = console_script("liquid-control", "sim", "--robot", "cartpole", "--mode", "realtime", "--duration", "12",
                         "--record", str(sim_bag), "--bag-version", "6")
    rec = console_script("liquid-control", "record", str(rec_bag), "--robot", "cartpole", "--no-commands",
                         "--storage", "sqlite3", "--bag-version", "5", "--duration", "6")
    with NodeProcess(sim, name="sim", log_dir=tmp_path) as s:
        s.wait_for_output("realtime", 30.0)
        with NodeProcess(rec, name="record", log_dir=tmp_path) as r:
            assert r.wait_exit(60.0) == 0, r.tail()
        assert s.wait_exit(60.0) == 0, s.tail()
    for bag, version, storage in ((sim_bag, 6, "mcap"), (rec_bag, 5, "sqlite3")):
        info = _metadata(bag)
        assert info["version"] == version and info["storage_identifier"] == storage
        assert all(reader_problems(d, info) == [] for d in DISTROS), bag
        with open_bag(bag) as b:
            assert b.topics["/joint_states"].count > 10
            assert _ours(bag) == _rosbags(bag)
