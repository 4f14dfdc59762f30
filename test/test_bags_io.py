"""rosbag2 reading and writing on real bag files (written by rosbags, in both storages), and the ways
recorded bags go wrong: missing, corrupt, truncated, missing topics, unknown types, rmw-padded CDR."""
import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest

from liquid_control.bags.io import (BagError, BagWriter, CdrError, BAG_COMMAND_QOS, BAG_SENSOR_QOS,
                                    decode_cdr, distro_typestore, open_bag)
from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.core.errors import LiquidControlError

JS = "sensor_msgs/msg/JointState"
F64 = "std_msgs/msg/Float64MultiArray"


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("bags")
    return {st: write_cartpole_bag(root / st, duration=2.0, storage=st) for st in ("mcap", "sqlite3")}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_roundtrip_keeps_messages_types_definitions_and_qos(bags, storage):
    info = bags[storage]
    with open_bag(info.path) as bag:
        assert bag.storage == storage
        assert {t: (x.msgtype, x.count) for t, x in bag.topics.items()} == {
            "/joint_states": (JS, info.joint_messages), "/effort_controller/commands": (F64, info.command_messages)}
        assert info.joint_messages == 1000 and info.command_messages == 50
        js = bag.topics["/joint_states"]
        assert js.qos == (BAG_SENSOR_QOS,) and bag.topics["/effort_controller/commands"].qos == (BAG_COMMAND_QOS,)
        assert "float64[] position" in js.connection.msgdef.data  # definition stored in the bag
        times, first = [], None
        for m in bag.messages(["joint_states"]):  # relative names match recorded /joint_states
            times.append(m.log_time_ns)
            first = first or m
        assert len(times) == 1000 and times == sorted(times)
        assert list(first.msg.name) == ["slider", "hinge"] and first.msg.position.shape == (2,)
        assert first.msg.header.stamp.sec == info.start_ns // 10**9
        assert bag.stats.decoded == 1000 and bag.stats.skipped_total == 0


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_single_storage_file_and_dir_without_metadata_open(bags, storage, suffix, tmp_path):
    src = bags[storage].path
    f = src / f"{src.name}{suffix}"
    with open_bag(f) as bag:
        assert bag.message_count == 1050
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / f"crashed{suffix}").write_bytes(f.read_bytes())  # recording died before metadata.yaml
    with open_bag(crashed) as bag:
        assert sum(1 for _ in bag.messages()) == 1050
        assert any("no metadata.yaml" in n for n in bag.stats.notes)


def test_missing_and_foreign_paths_give_one_line_errors(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        open_bag(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 bag: no metadata.yaml and no .mcap or .db3"):
        open_bag(tmp_path / "empty")
    (tmp_path / "x.bag").write_bytes(b"#ROSBAG V2.0\n")
    with pytest.raises(BagError, match="not a rosbag2 file"):
        open_bag(tmp_path / "x.bag")
    assert issubclass(BagError, LiquidControlError)


@pytest.mark.parametrize("suffix, expect", [(".mcap", "magic is invalid"), (".db3", "not a database")])
def test_corrupt_file_is_refused(tmp_path, suffix, expect):
    f = tmp_path / f"junk{suffix}"
    f.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BagError, match=expect) as exc:
        open_bag(f)
    assert "\n" not in str(exc.value)


def test_damaged_sqlite_is_refused_then_salvaged_with_recover(bags, tmp_path):
    src = bags["sqlite3"].path / "sqlite3.db3"
    data = bytearray(src.read_bytes())
    page = 4096
    mid = (len(data) // 2) // page * page
    data[mid: mid + 2 * page] = bytes(2 * page)  # two zeroed pages in the message table
    f = tmp_path / "damaged.db3"
    f.write_bytes(bytes(data))
    copies = set(Path(tempfile.gettempdir()).glob("liquid_control-salvage-*"))
    with pytest.raises(BagError, match="malformed.*--recover"):
        with open_bag(f) as bag:
            list(bag.messages())
    with open_bag(src) as bag:
        reference = [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]
    with open_bag(f, recover=True) as bag:
        got = [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]
        assert "salvaged" in bag.stats.damage
        lost = bag.stats.skipped[("(sqlite)", "unreadable rows on damaged pages")]
        (copy,) = set(Path(tempfile.gettempdir()).glob("liquid_control-salvage-*")) - copies
        assert copy.stat().st_mode & 0o777 == 0o700  # the salvaged bag data is private while it is read
    assert 0 < lost < 100 and len(got) + lost == len(reference)
    kept = set(reference)
    assert all(m in kept for m in got)  # nothing invented: every salvaged message is an original one
    assert got[-1] == reference[-1]  # and reading went on past the damage to the end
    assert set(Path(tempfile.gettempdir()).glob("liquid_control-salvage-*")) == copies  # and removed at close


def test_truncated_mcap_errors_then_recovers_the_intact_prefix(tmp_path):
    info = write_cartpole_bag(tmp_path / "long", duration=30.0, storage="mcap")  # several 1 MiB chunks
    full = (info.path / "long.mcap").read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(full[: int(len(full) * 0.6)])  # the recorder died mid-chunk
    with pytest.raises(BagError, match="truncated.*--recover"):
        open_bag(cut)
    with open_bag(info.path) as bag:
        reference = [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]
    with open_bag(cut, recover=True) as bag:
        got = [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]
        assert bag.stats.damage and "file cut at byte" in bag.stats.damage
    assert 0 < len(got) < len(reference)
    assert got == reference[: len(got)]  # exactly the messages before the cut, nothing invented


def test_missing_or_mistyped_spec_topic_is_named(bags):
    with open_bag(bags["mcap"].path) as bag:
        with pytest.raises(BagError, match=r"no topic /imu \(observation\).*/joint_states \(sensor_msgs/msg/JointState\)"):
            bag.require({"imu": "sensor_msgs/msg/Imu"}, "observation")
        with pytest.raises(BagError, match="/joint_states has type sensor_msgs/msg/JointState, .* as sensor_msgs/msg/Imu"):
            bag.require({"joint_states": "sensor_msgs/msg/Imu"}, "needed")
        assert bag.require({"joint_states": JS})["joint_states"].count == 1000


GIZMO = "acme_msgs/msg/Gizmo"
GIZMO_DEF = "float64 torque\nstring label\n"


def _gizmo_bag(path, storage):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = distro_typestore("kilted")
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(GIZMO_DEF, GIZMO))
    Gizmo = store.types[GIZMO]
    with BagWriter(path, storage=storage, typestore=store) as w:
        w.add_topic("/gizmo", GIZMO)
        w.add_topic("/ok", F64, msgdef=ts.generate_msgdef(F64, ros_version=2)[0], digest=ts.hash_rihs01(F64))
        for i in range(5):
            w.write_msg("/gizmo", 10 + i, Gizmo(torque=float(i), label=f"g{i}"))
            w.write("/ok", 11 + i, ts.serialize_cdr(ts.types[F64](layout=ts.types["std_msgs/msg/MultiArrayLayout"](
                dim=[], data_offset=0), data=np.array([float(i)])), F64))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_custom_type_decodes_from_the_definition_stored_in_the_bag(tmp_path, storage):
    path = _gizmo_bag(tmp_path / "g", storage)
    with open_bag(path) as bag:
        msgs = [m.msg for m in bag.messages(["/gizmo"])]
    assert [(m.torque, m.label) for m in msgs] == [(float(i), f"g{i}") for i in range(5)]


def test_unknown_type_without_definition_is_skipped_and_counted(tmp_path):
    path = _gizmo_bag(tmp_path / "g", "sqlite3")
    with sqlite3.connect(path / "g.db3") as db:  # as an older rosbag2 (no stored definitions) leaves it
        db.execute("DELETE FROM message_definitions")
    with open_bag(path) as bag:
        got = [m.topic for m in bag.messages()]
        assert got == ["/ok"] * 5
        assert bag.stats.skipped == {("/gizmo", f"unknown message type {GIZMO} (not in the bag's definitions nor the distro's)"): 5}
        assert any("skipped 5 on /gizmo" in line for line in bag.stats.lines())


JS_V2 = """std_msgs/Header header
string[] name
float64[] position
float64[] velocity
float64[] effort
float64[] temperature
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
"""


def test_stored_definition_takes_precedence_over_the_distro(tmp_path):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(JS_V2, JS))
    T = store.types
    msg = T[JS](header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f"),
                name=["slider", "hinge"], position=np.array([1.0, 2.0]), velocity=np.array([3.0, 4.0]),
                effort=np.array([5.0, 6.0]), temperature=np.array([40.0, 41.0]))
    with BagWriter(tmp_path / "v2", typestore=store) as w:
        w.add_topic("/joint_states", JS)
        w.write_msg("/joint_states", 5, msg)
    with open_bag(tmp_path / "v2") as bag:
        (m,) = list(bag.messages())
        raw = next(bag.raw_messages())
    np.testing.assert_array_equal(m.msg.temperature, [40.0, 41.0])
    np.testing.assert_array_equal(m.msg.effort, [5.0, 6.0])
    with pytest.raises(CdrError, match="bytes left over"):  # the distro's JointState would misread it
        decode_cdr(distro_typestore("kilted"), raw.data, JS)


def _rclpy_joint_state(effort):
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    msg = JointState()
    msg.header.stamp.sec, msg.header.frame_id = 7, "base"
    msg.name, msg.position, msg.velocity, msg.effort = ["slider", "hinge"], [0.5, -0.25], [1.5, 2.5], effort
    return serialize_message(msg)


@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_rclpy_padded_cdr_decodes_where_rosbags_strict_decoder_refuses(distro):
    from rosbags.serde import SerdeError

    data = _rclpy_joint_state([])  # empty effort: rmw_fastrtps leaves trailing bytes
    ts = distro_typestore(distro)
    with pytest.raises(SerdeError, match="size mismatch"):
        ts.deserialize_cdr(data, JS)
    msg, trailing = decode_cdr(ts, data, JS)
    assert trailing > 3
    assert list(msg.name) == ["slider", "hinge"] and msg.header.stamp.sec == 7 and msg.header.frame_id == "base"
    np.testing.assert_array_equal(msg.position, [0.5, -0.25])
    np.testing.assert_array_equal(msg.velocity, [1.5, 2.5])
    assert msg.effort.size == 0
    full, trailing_full = decode_cdr(ts, _rclpy_joint_state([1.0, 2.0]), JS)
    assert trailing_full <= 3 and list(full.effort) == [1.0, 2.0]


def test_more_trailing_bytes_than_padding_is_an_error():
    ts = distro_typestore("kilted")
    good = bytes(ts.serialize_cdr(ts.types[F64](layout=ts.types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                                                data=np.array([1.0])), F64))
    assert decode_cdr(ts, good + b"\0\0\0", F64)[1] == 3
    with pytest.raises(CdrError, match="left over"):
        decode_cdr(ts, good + bytes(16), F64)
    with pytest.raises(CdrError, match="do not decode"):
        decode_cdr(ts, good[:-4], F64)
    with pytest.raises(CdrError, match="not plain CDR"):
        decode_cdr(ts, b"\x00\x07\x00\x00" + good[4:], F64)


def test_padded_bag_counts_padding_and_keeps_values(tmp_path):
    info = write_cartpole_bag(tmp_path / "pad", duration=0.5, storage="sqlite3", rmw_padding=True)
    with open_bag(info.path) as bag:
        msgs = [m for m in bag.messages(["/joint_states"])]
        assert len(msgs) == info.joint_messages == 250
        assert bag.stats.padded == 250 and bag.stats.skipped_total == 0
    assert all(m.msg.effort.size == 0 and np.isfinite(m.msg.position).all() for m in msgs)


def test_writer_is_atomic_and_never_overwrites(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with BagWriter(target) as w:
            w.add_topic("/cmd", F64)
            w.write_msg("/cmd", 1, distro_typestore().types[F64](
                layout=distro_typestore().types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=np.zeros(1)))
            raise RuntimeError("policy crashed mid-replay")
    assert list(tmp_path.iterdir()) == []  # no half-written bag, no temporary left behind
    target.mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(target)
    with pytest.raises(BagError, match="unknown bag storage"):
        BagWriter(tmp_path / "b", storage="rosbag1")
    with pytest.raises(BagError, match="folder .* does not exist"):
        BagWriter(tmp_path / "no" / "b")


def test_skip_accounting_stays_bounded():
    from liquid_control.bags.io import ReadStats

    st = ReadStats()
    for i in range(1000):
        st.skip("/t", f"reason {i}")
    st.skip("/u", "other topic", 3)
    assert st.skipped_total == 1003
    assert len(st.skipped) == ReadStats.MAX_REASONS + 2
    assert st.skipped[("/t", "other reasons (too many different ones to list)")] == 1000 - ReadStats.MAX_REASONS


def test_damaged_mcap_chunk_errors_or_is_skipped_and_counted(tmp_path):
    from rosbags.rosbag2.storage_mcap import McapReader

    info = write_cartpole_bag(tmp_path / "b", duration=30.0, storage="mcap")
    f = info.path / "b.mcap"
    r = McapReader(f)
    r.open()
    chunks = sorted(r.chunks, key=lambda c: c.message_start_time)
    r.close()
    assert len(chunks) >= 3
    bad = chunks[1]
    data = bytearray(f.read_bytes())
    pos = bad.chunk_start_offset + 9 + 40  # the chunk's first record (uncompressed, as rosbags writes it)
    assert data[pos] == 0x05  # a message record: opcode, then its length
    data[pos + 1:pos + 9] = (2**40).to_bytes(8, "little")  # a length running far past the chunk
    f.write_bytes(bytes(data))
    with open_bag(info.path) as bag:
        with pytest.raises(BagError, match="damaged after log time .*Truncated record.*--recover"):
            list(bag.raw_messages())
    with open_bag(info.path, recover=True) as bag:
        got = [m.log_time_ns for m in bag.raw_messages()]
        (key, lost), = bag.stats.skipped.items()
    assert key[0] == "(chunk)" and f"damaged chunk at byte {bad.chunk_start_offset}" in key[1]
    assert lost == sum(bad.channel_count.values()) and len(got) == info.joint_messages + info.command_messages - lost
    assert got == sorted(got) and not any(bad.message_start_time <= t <= bad.message_end_time for t in got)
    assert got[-1] > bad.message_end_time  # reading went on after the damage


def test_broken_bag_directory_is_refused_clearly(bags, tmp_path):
    import shutil

    bad_yaml = tmp_path / "yaml"
    shutil.copytree(bags["mcap"].path, bad_yaml)
    (bad_yaml / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    with pytest.raises(BagError, match=r"bag metadata .*metadata\.yaml: not valid YAML \(line 2"):
        open_bag(bad_yaml)
    lost = tmp_path / "lost"
    shutil.copytree(bags["sqlite3"].path, lost)
    (lost / "sqlite3.db3").unlink()
    with pytest.raises(BagError, match="database files are missing"):
        open_bag(lost)


def _joint_states(ts):
    """JointStates of every shape the layout has: empty and odd-length strings (alignment), empty and
    full arrays in every position, non-ASCII names."""
    T = ts.types
    out = []
    for i, (frame, names, sizes) in enumerate([("", ["a", "b"], (2, 2, 2)), ("base_link", ["slider", "hinge"], (2, 2, 0)),
                                               ("x", [], (0, 0, 0)), ("odd1", ["j1", "jötunn", "k"], (3, 0, 3)),
                                               ("abcd", ["ab", "abc"], (0, 2, 0)), ("ab", ["abcdefgh"], (1, 1, 1))]):
        rng = np.random.default_rng(i)
        arr = [rng.normal(size=n) for n in sizes]
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1_700_000_000 + i, nanosec=123 + i),
                                       frame_id=frame)
        out.append(T[JS](header=hdr, name=names, position=arr[0], velocity=arr[1], effort=arr[2]))
    return out


def test_fast_joint_state_decoder_gives_what_rosbags_gives():
    from liquid_control.bags.codecs import joint_state_decoder

    ts = distro_typestore()
    fast = joint_state_decoder(ts, ts)
    md = ts.get_msgdef(JS)
    for msg in _joint_states(ts):
        for pad in (b"", b"\x00", b"\x5a\xa5\x7f\x01"):  # rmw alignment and padding bytes after the last field
            data = bytes(ts.serialize_cdr(msg, JS)) + pad
            got, trailing = fast(data)
            ref, pos = md.deserialize_cdr_le(memoryview(data)[4:], 0, md.cls, ts)
            assert type(got) is type(ref) and got.header == ref.header and got.name == ref.name
            for f in ("position", "velocity", "effort"):
                a, b = getattr(got, f), getattr(ref, f)
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
            assert trailing == len(data) - 4 - pos
            try:  # the padding check is the same: too many left-over bytes are refused either way
                expected = decode_cdr(ts, data, JS)[1]
            except CdrError as exc:
                expected = str(exc)
            try:
                assert decode_cdr(ts, data, JS, fast)[1] == expected
            except CdrError as exc:
                assert str(exc) == expected
        # what it does not handle exactly goes to rosbags (and its errors): big-endian, cut, corrupt
        big = bytes(ts.serialize_cdr(msg, JS, little_endian=False))
        assert fast(big) is None and decode_cdr(ts, big, JS, fast)[0].name == msg.name
        data = bytes(ts.serialize_cdr(msg, JS))
        for bad in (data[: len(data) // 2], data[:12] + b"\xff\xff\xff\x7f" + data[16:]):
            assert fast(bad) is None
            with pytest.raises(CdrError):
                decode_cdr(ts, bad, JS, fast)
    # a bag's own JointState definition that differs from the standard one: no fast path
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    own = get_typestore(Stores.EMPTY)
    own.register(get_types_from_msg("std_msgs/Header header\nstring[] name\nfloat64[] position\n", JS))
    own.register({k: v for k, v in ts.fielddefs.items() if k in ("std_msgs/msg/Header", "builtin_interfaces/msg/Time")})
    assert joint_state_decoder(own, ts) is None and joint_state_decoder(ts, ts) is not None


# --- bags that lie, and files that are not bags ----------------------------------------------------
def _all(bag):
    return [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_that_disagrees_with_the_storage_is_read_by_the_storage(bags, storage, tmp_path):
    from bag_damage import copy_bag, edit_metadata, topic_entry

    src = bags[storage].path
    with open_bag(src) as bag:
        reference = _all(bag)
        assert bag.stats.notes == [] and bag.shortfall(bag.topics) == []
    # a start time 5 s late: every message is still read (the span is the storage's), and it is said
    late = copy_bag(src, tmp_path / "late")
    edit_metadata(late, lambda i: i["starting_time"].update(nanoseconds_since_epoch=i["starting_time"]["nanoseconds_since_epoch"] + 5 * 10**9))
    with open_bag(late) as bag:
        assert bag.start_ns == reference[0][1] and bag.end_ns == reference[-1][1] + 1  # the storage's span
        assert _all(bag) == reference and bag.shortfall(bag.topics) == []
        (note,) = bag.stats.notes
        assert "start time: metadata.yaml says" in note and "(+5.000000 s)" in note
    # offered QoS in metadata.yaml unlike the file's: rosbags alone yields nothing for that topic
    qos = copy_bag(src, tmp_path / "qos")
    edit_metadata(qos, lambda i: topic_entry(i, "/joint_states")["topic_metadata"].update(
        offered_qos_profiles=topic_entry(i, "/joint_states")["topic_metadata"]["offered_qos_profiles"].replace(
            "reliability: 2", "reliability: 1")))
    with open_bag(qos) as bag:
        assert _all(bag) == reference and bag.shortfall(bag.topics) == []
        assert any("offered QoS profiles" in n and "/joint_states" in n and "rosbag2" in n for n in bag.stats.notes)
        assert bag.topics["/joint_states"].qos[0].reliability.value == 1  # metadata.yaml's, as ros2 bag play offers
    # more messages in metadata.yaml than in the storage: a whole read falls short, named per topic
    more = copy_bag(src, tmp_path / "more")
    edit_metadata(more, lambda i: topic_entry(i, "/joint_states").update(message_count=1234))
    with open_bag(more) as bag:
        assert _all(bag) == reference
        assert bag.topics["/joint_states"].count == 1000  # what the storage holds
        (line,) = bag.shortfall(bag.topics)
        assert line.startswith("/joint_states: read 1000 of 1234 messages (metadata.yaml: 1234, ")
        assert any("metadata.yaml says 1234 messages" in n for n in bag.stats.notes)


def test_storage_rows_deleted_behind_metadata_are_a_named_shortfall(bags, tmp_path):
    from bag_damage import copy_bag, sqlite_exec

    bag_dir = copy_bag(bags["sqlite3"].path, tmp_path / "b")
    sqlite_exec(bag_dir, "DELETE FROM messages WHERE id BETWEEN 100 AND 139")
    with open_bag(bag_dir) as bag:
        _all(bag)
        lines = bag.shortfall(bag.topics)
    assert len(lines) >= 1 and all("(metadata.yaml: " in x and "sqlite3 rows: " in x for x in lines)
    assert sum(int(x.split(" of ")[1].split()[0]) - int(x.split("read ")[1].split()[0]) for x in lines) == 40


@pytest.mark.parametrize("where", ["bag", "storage file", "metadata.yaml", "no-metadata storage file"])
@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "/dev/null"])
def test_non_regular_files_are_refused_before_reading(bags, tmp_path, where, what):
    import signal
    import shutil

    def place(path):
        if what == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(what, path)

    if where == "bag":
        target = tmp_path / "x.mcap"
        place(target)
    elif where == "storage file":
        target = shutil.copytree(bags["mcap"].path, tmp_path / "b")
        (target / "mcap.mcap").unlink()
        place(target / "mcap.mcap")
    elif where == "metadata.yaml":
        target = shutil.copytree(bags["mcap"].path, tmp_path / "b")
        (target / "metadata.yaml").unlink()
        place(target / "metadata.yaml")
    else:
        target = tmp_path / "crashed"
        target.mkdir()
        place(target / "crashed.db3")
    signal.alarm(20)  # a FIFO opened for reading would block for ever: fail instead of hanging
    try:
        with pytest.raises(BagError, match=r"is not a regular file \(a FIFO, device or socket\)") as exc:
            open_bag(target)
    finally:
        signal.alarm(0)
    assert "\n" not in str(exc.value)


def test_corrupt_mcap_length_fields_read_as_truncated_records(bags, tmp_path):
    from bag_damage import mcap_records

    data = (bags["mcap"].path / "mcap.mcap").read_bytes()
    records = mcap_records(data)
    assert {op for _, op, _ in records} >= {0x01, 0x03, 0x04, 0x06, 0x08, 0x0B}  # header .. chunk .. statistics
    f = tmp_path / "bad.mcap"
    outcomes = set()
    for pos, op, _ in records:
        for length in (2**62, 2**40, 2**31):  # each would allocate that many bytes before the fix
            bad = bytearray(data)
            bad[pos + 1: pos + 9] = length.to_bytes(8, "little")
            f.write_bytes(bytes(bad))
            for recover in (False, True):
                try:
                    with open_bag(f, recover=recover) as bag:
                        n = len(_all(bag))
                        ok = n == 1050 or bag.shortfall(bag.topics) or bag.stats.damage or bag.stats.skipped_total
                        outcomes.add("read" if n == 1050 else "counted")
                        assert ok, (hex(op), length, recover, n)
                except BagError as exc:
                    assert "\n" not in str(exc)
                    outcomes.add("error")
    assert outcomes >= {"error", "read"}


def test_salvage_of_rosbag2_schema_rows_that_break_constraints(bags, tmp_path):
    """rosbag2's schema declares every column NOT NULL: a damaged row read as NULL is lost and counted
    (it was sqlite3.IntegrityError), and a salvage that fails leaves no copy of the bag data behind."""
    import sqlite3

    db = tmp_path / "b.db3"
    db.write_bytes((bags["sqlite3"].path / "sqlite3.db3").read_bytes())
    con = sqlite3.connect(db)
    (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetchone()
    assert "data BLOB NOT NULL" in sql
    con.execute("PRAGMA writable_schema = ON")  # let one stored row hold a NULL, as a damaged page reads
    con.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'messages'", (sql.replace("BLOB NOT NULL", "BLOB"),))
    con.commit()
    con.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE messages SET data = NULL WHERE id = 5")
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'messages'", (sql,))
    con.commit()
    con.close()
    data = bytearray(db.read_bytes())
    mid = (len(data) // 2) // 4096 * 4096
    data[mid: mid + 4096] = bytes(4096)  # and a damaged page: the salvage runs
    db.write_bytes(bytes(data))
    before = set(Path(tempfile.gettempdir()).glob("liquid_control-salvage-*"))
    with open_bag(bags["sqlite3"].path) as bag:
        reference = _all(bag)
    with open_bag(db, recover=True) as bag:
        got = _all(bag)
        lost = bag.stats.skipped[("(sqlite)", "unreadable rows on damaged pages")]
    assert reference[4] not in got and len(got) + lost == 1050 and set(got) <= set(reference)
    # beyond recovery: the topics table is gone; a clean error, and the private copy is removed
    gone = bytearray((bags["sqlite3"].path / "sqlite3.db3").read_bytes())
    gone[4096: 4 * 4096] = bytes(3 * 4096)
    gone[len(gone) // 2:] = bytes(len(gone) - len(gone) // 2)
    f = tmp_path / "gone.db3"
    f.write_bytes(bytes(gone))
    with pytest.raises(BagError, match="damaged beyond recovery") as exc:
        with open_bag(f, recover=True) as bag:
            _all(bag)
    assert "\n" not in str(exc.value)
    assert set(Path(tempfile.gettempdir()).glob("liquid_control-salvage-*")) == before
