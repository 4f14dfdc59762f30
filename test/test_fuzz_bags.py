"""Fuzzing the bags a user hands to `replay` and `play`: generated damage to small synthetic bags.

Families (each on real rosbag2 bags written by bags/synth.py, MCAP and sqlite3):
  metadata   edits of metadata.yaml: message counts, start time, duration, offered QoS, version, type,
             type hash, file list, missing keys
  bytes      the storage file truncated at a random offset, bits flipped, a block zeroed
  rows       sqlite3 rows deleted, duplicated, their timestamps moved, topic ids or data broken
  times      an MCAP message's log time with a byte changed (in its record, its index, or both)

Each generated bag is replayed through a real policy (the Python API, for speed), with --recover and
--allow-partial drawn too, and has one of three outcomes, nothing else (no other exception, no hang):
  - a clean error: BagError, one line;
  - counted: the replay ran and reports what it missed (a partial read per topic, counted skips, damage);
  - accepted: the replay ran and read every message the clean bag holds (never fewer: no silent loss).
Where a family implies the outcome (a count raised in metadata.yaml, rows deleted: never "accepted"
without --allow-partial; a timestamp moved beyond --max-gap: an error), that is checked too. A few fixed
cases run the CLI in a subprocess: exit 0 or 2, at most one line on stderr, never a traceback.

Bounded: about 40 s by default (seeded: derandomized); LC_FUZZ=long (`make fuzz`) runs 20x as many.
LC_FUZZ_TABLE=1 prints the tally (tried / clean error / counted / accepted per family) at the end.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st

from bag_damage import copy_bag, edit_metadata, log_time_offsets, sqlite_exec, storage_file
from fuzz_settings import fuzz
from liquid_control.bags.io import BagError, open_bag
from liquid_control.bags.replay import ReplayOptions, replay
from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.core.artifact import write_artifact
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, random_params
from liquid_control.core.spec import load_spec

SPEC = load_spec("cartpole")  # sensor_timeout 0.2 s: --max-gap defaults to 20 s
STORAGES = ("mcap", "sqlite3")
TALLY: dict[str, Counter] = {}
_CACHE: dict[str, object] = {}


def _root() -> Path:
    if "root" not in _CACHE:
        _CACHE["root"] = Path(tempfile.mkdtemp(prefix="lc_fuzz_bags_"))
    return _CACHE["root"]


def clean_bag(storage: str) -> tuple[Path, dict[str, int], list[tuple[str, int, bytes]]]:
    """A 1 s cart-pole bag (100 joint states, 25 commands), its counts per topic and its messages."""
    key = f"bag-{storage}"
    if key not in _CACHE:
        info = write_cartpole_bag(_root() / storage, duration=1.0, rate_hz=100.0, storage=storage)
        with open_bag(info.path) as bag:
            msgs = [(m.topic, m.log_time_ns, m.data) for m in bag.raw_messages()]
            counts = {t: x.count for t, x in bag.topics.items()}
        _CACHE[key] = (info.path, counts, msgs)
    return _CACHE[key]


def policy() -> Policy:
    if "policy" not in _CACHE:
        cfg = cfc_cfg(SPEC.obs_size, 8, SPEC.action_size)
        _CACHE["policy"] = Policy.load(write_artifact(_root() / "rand.onnx", cfg, random_params(cfg, 1), spec=SPEC), spec=SPEC)
    return _CACHE["policy"]


@pytest.fixture(scope="module", autouse=True)
def _cleanup_and_report():
    yield
    if "root" in _CACHE:
        shutil.rmtree(_CACHE.pop("root"), ignore_errors=True)
    _CACHE.clear()
    if os.environ.get("LC_FUZZ_TABLE"):
        print("\nfamily     tried  clean error  counted  accepted")
        for family, c in sorted(TALLY.items()):
            print(f"{family:<10} {sum(c.values()):>5}  {c['error']:>11}  {c['counted']:>7}  {c['accepted']:>8}")


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang("no result within 60 s")


def outcome(family: str, bag: Path, total: int, *, recover: bool, allow_partial: bool) -> tuple[str, object]:
    """Replay `bag`; ('error', BagError) | ('counted', result) | ('accepted', result). Fails the test on
    any other exception, a hang, a multi-line error or a silent loss."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        result = replay(bag, policy(), SPEC, options=ReplayOptions(recover=recover, allow_partial=allow_partial))
    except BagError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        kind, value = "error", exc
    else:
        counted = result.partial or result.stats.skipped_total or result.stats.damage
        if not counted:  # accepted: then every message the clean bag holds was read
            assert result.stats.read >= total, (result.stats.read, total, result.lines())
        kind, value = ("counted" if counted else "accepted"), result
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    TALLY.setdefault(family, Counter())[kind] += 1
    event(f"{family}: {kind}")
    return kind, value


def _work() -> Path:
    return Path(tempfile.mkdtemp(dir=_root()))


# --------------------------------------------------------------------------------------------------
# metadata.yaml edits
# --------------------------------------------------------------------------------------------------
odd = st.sampled_from([None, "", "x", -1, 3.5, [], {}, 2**70, "NaN"])
meta_edits = st.one_of(
    st.tuples(st.just("count"), st.sampled_from(["/joint_states", "/effort_controller/commands"]),
              st.one_of(st.integers(-30, 30).filter(bool), odd)),
    st.tuples(st.just("total"), st.just(""), st.one_of(st.integers(-30, 30).filter(bool), odd)),
    st.tuples(st.just("start"), st.just(""), st.one_of(st.integers(-10**10, 10**10).filter(bool), odd)),
    st.tuples(st.just("duration"), st.just(""), st.one_of(st.integers(-10**10, 10**10).filter(bool), odd)),
    st.tuples(st.just("qos"), st.sampled_from(["/joint_states", "/effort_controller/commands"]),
              st.sampled_from(["reliability: 1", "reliability: 2", "durability: 1", "depth: 1000", "history: 2",
                               "garbage", "[", "- {}", ""])),
    st.tuples(st.just("version"), st.just(""), st.one_of(st.integers(-2, 12), st.just(99), odd)),
    st.tuples(st.just("type"), st.sampled_from(["/joint_states", "/effort_controller/commands"]),
              st.sampled_from(["sensor_msgs/msg/Imu", "std_msgs/msg/String", "nonsense", "a/b/c"])),
    st.tuples(st.just("hash"), st.sampled_from(["/joint_states", "/effort_controller/commands"]),
              st.sampled_from(["", "RIHS01_" + "0" * 64, "nonsense"])),
    st.tuples(st.just("files"), st.just(""), st.sampled_from([[], ["missing.mcap"], ["../../etc/passwd"], [1], "x"])),
    st.tuples(st.just("drop"), st.sampled_from(["duration", "starting_time", "message_count", "topics_with_message_count",
                                                "storage_identifier", "relative_file_paths", "version"]), st.just(None)),
)


def apply_meta_edit(info: dict, edit: tuple) -> None:
    kind, topic, value = edit
    entry = next((t for t in info.get("topics_with_message_count", []) if t["topic_metadata"]["name"] == topic), None)
    if entry is None and kind in ("count", "qos", "type", "hash"):
        return  # an earlier edit dropped the topic list
    def shift(old):  # a number moved by `value`, or `value` itself where either is not a plain number
        ok = isinstance(old, int) and isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**40
        return old + value if ok else value

    if kind == "count":
        entry["message_count"] = shift(entry.get("message_count"))
    elif kind == "total":
        info["message_count"] = shift(info.get("message_count"))
    elif kind == "start" and isinstance(info.get("starting_time"), dict):
        info["starting_time"]["nanoseconds_since_epoch"] = shift(info["starting_time"].get("nanoseconds_since_epoch"))
    elif kind == "duration" and isinstance(info.get("duration"), dict):
        info["duration"]["nanoseconds"] = shift(info["duration"].get("nanoseconds"))
    elif kind == "qos":
        q = str(entry["topic_metadata"]["offered_qos_profiles"])
        if value.split(":")[0] in q and ":" in value:
            key = value.split(":")[0]
            q = "\n".join((f"  {value}" if line.strip().startswith(key + ":") else line) for line in q.split("\n"))
        else:
            q = value
        entry["topic_metadata"]["offered_qos_profiles"] = q
    elif kind == "version":
        info["version"] = value
    elif kind == "type":
        entry["topic_metadata"]["type"] = value
    elif kind == "hash":
        entry["topic_metadata"]["type_description_hash"] = value
    elif kind == "files":
        info["relative_file_paths"] = value
    elif kind == "drop":
        info.pop(topic, None)


@fuzz(60)
@given(storage=st.sampled_from(STORAGES), edits=st.lists(meta_edits, min_size=1, max_size=3),
       recover=st.booleans(), allow_partial=st.booleans())
def test_metadata_edits(storage, edits, recover, allow_partial):
    src, counts, msgs = clean_bag(storage)
    bag = copy_bag(src, _work() / "b")
    for e in edits:
        edit_metadata(bag, lambda info: apply_meta_edit(info, e))
    kind, value = outcome("metadata", bag, len(msgs), recover=recover, allow_partial=allow_partial)
    raised = [e for e in edits if e[0] == "count" and isinstance(e[2], int) and 0 < e[2] < 2**40]
    if raised and kind != "error" and not (recover or allow_partial) and len(edits) == 1:
        pytest.fail(f"metadata.yaml counts more messages than the bag holds, yet the replay passed: {edits}")
    (what, _, amount), *more = edits
    if kind == "accepted" and not more and what in ("start", "duration", "count") and isinstance(amount, int):
        assert any("metadata.yaml disagrees" in n for n in value.stats.notes), value.stats.notes  # and it is said


# --------------------------------------------------------------------------------------------------
# bytes of the storage file: truncation, bit flips, zeroed blocks
# --------------------------------------------------------------------------------------------------
damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("zero"), st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 4096))),
)


def apply_damage(data: bytes, d: tuple) -> bytes:
    kind, arg = d
    if kind == "truncate":
        return data[: int(arg * len(data))]
    b = bytearray(data)
    if kind == "flip":
        for where, bit in arg:
            b[int(where * len(b))] ^= 1 << bit
    else:
        where, n = arg
        o = int(where * len(b))
        b[o: o + n] = bytes(len(b[o: o + n]))
    return bytes(b)


@fuzz(70)
@given(storage=st.sampled_from(STORAGES), d=damage, whole_dir=st.booleans(), recover=st.booleans(),
       allow_partial=st.booleans())
# found by the long run: a zeroed block that makes the salvage's scan in id order go round in circles
@example(storage="sqlite3", d=("zero", (0.8143493479037668, 207)), whole_dir=False, recover=True, allow_partial=False)
def test_storage_bytes(storage, d, whole_dir, recover, allow_partial):
    src, counts, msgs = clean_bag(storage)
    work = _work()
    bag = copy_bag(src, work / "b")
    f = storage_file(bag)
    f.write_bytes(apply_damage(f.read_bytes(), d))
    if not whole_dir:  # the storage file alone: no metadata.yaml to compare with, only the storage's own counts
        bag = f
    kind, value = outcome("bytes", bag, len(msgs) if whole_dir else 0, recover=recover, allow_partial=allow_partial)
    if kind != "error" and d[0] == "truncate" and whole_dir and not (recover or allow_partial):
        assert value.stats.read >= len(msgs), "a cut file replayed whole without a word"


# --------------------------------------------------------------------------------------------------
# sqlite3 rows
# --------------------------------------------------------------------------------------------------
row_edits = st.one_of(
    st.tuples(st.just("delete"), st.lists(st.integers(1, 125), min_size=1, max_size=20, unique=True), st.just(0)),
    st.tuples(st.just("duplicate"), st.lists(st.integers(1, 125), min_size=1, max_size=5, unique=True), st.just(0)),
    st.tuples(st.just("move"), st.lists(st.integers(1, 125), min_size=1, max_size=3, unique=True),
              st.one_of(st.integers(-2 * 10**9, 2 * 10**9), st.sampled_from([10**14, -10**14, 2**62, -(2**62), 0]))),
    st.tuples(st.just("topic_id"), st.lists(st.integers(1, 125), min_size=1, max_size=3, unique=True),
              st.sampled_from([0, 3, 99, -1])),
    st.tuples(st.just("data"), st.lists(st.integers(1, 125), min_size=1, max_size=3, unique=True),
              st.sampled_from([b"", b"\x00\x01\x00\x00", b"\xff" * 64, b"\x00\x01\x00\x00" + b"\x7f" * 3000])),
)


def apply_row_edit(bag: Path, edit: tuple) -> None:
    kind, ids, value = edit
    where = f"id IN ({','.join(map(str, ids))})"
    if kind == "delete":
        sqlite_exec(bag, f"DELETE FROM messages WHERE {where}")
    elif kind == "duplicate":
        sqlite_exec(bag, f"INSERT INTO messages (topic_id, timestamp, data) SELECT topic_id, timestamp, data FROM messages WHERE {where}")
    elif kind == "move":
        sqlite_exec(bag, f"UPDATE messages SET timestamp = max(0, min(timestamp + ({value}), {2**63 - 1})) WHERE {where}")
    elif kind == "topic_id":
        sqlite_exec(bag, f"UPDATE messages SET topic_id = {value} WHERE {where}")
    else:
        db = storage_file(bag)
        con = sqlite3.connect(db)
        con.execute(f"UPDATE messages SET data = ? WHERE {where}", (value,))
        con.commit()
        con.close()


@fuzz(60)
@given(edits=st.lists(row_edits, min_size=1, max_size=3), recover=st.booleans(), allow_partial=st.booleans())
def test_sqlite_rows(edits, recover, allow_partial):
    src, counts, msgs = clean_bag("sqlite3")
    bag = copy_bag(src, _work() / "b")
    for e in edits:
        apply_row_edit(bag, e)
    kind, value = outcome("rows", bag, len(msgs), recover=recover, allow_partial=allow_partial)
    kinds = {e[0] for e in edits}
    if kinds == {"delete"} and not (recover or allow_partial):
        assert kind == "error" and "read fewer messages" in str(value), (kind, value)
    if kinds == {"delete"} and kind == "counted":
        lost = sum(int(x.split(" of ")[1].split()[0]) - int(x.split("read ")[1].split()[0]) for x in value.partial)
        assert lost == len({i for e in edits for i in e[1]}), value.partial  # counted exactly
    if kinds == {"move"} and any(abs(e[2]) > 20 * 10**9 for e in edits) and kind != "error":
        # moved beyond --max-gap (20 s): only acceptable when the moved rows stay within 20 s of the others
        assert value.span < 60.0, value.lines()
    if kinds == {"duplicate"}:
        assert kind != "error" or "gap" in str(value), value


# --------------------------------------------------------------------------------------------------
# MCAP message log times
# --------------------------------------------------------------------------------------------------
@fuzz(40)
@given(index=st.integers(0, 124), byte=st.integers(0, 7), value=st.integers(0, 255),
       where=st.sampled_from(["record", "index", "both"]), recover=st.booleans(), allow_partial=st.booleans())
def test_mcap_log_times(index, byte, value, where, recover, allow_partial):
    src, counts, msgs = clean_bag("mcap")
    bag = copy_bag(src, _work() / "b")
    f = storage_file(bag)
    data = bytearray(f.read_bytes())
    offsets = log_time_offsets(bytes(data), msgs[index][1])
    assert offsets, "the log time is stored in the file"
    chosen = {"record": offsets[:1], "index": offsets[-1:], "both": offsets}[where]
    for o in chosen:
        data[o + byte] = value
    f.write_bytes(bytes(data))
    kind, result = outcome("times", bag, len(msgs), recover=recover, allow_partial=allow_partial)
    if kind != "error":
        assert result.span < 60.0, result.lines()  # never ticks through a jumped clock (max gap 20 s)


# --------------------------------------------------------------------------------------------------
# the CLI, in subprocesses: no traceback, one line, exit 0 or 2
# --------------------------------------------------------------------------------------------------
def _cli_cases(work: Path) -> list[tuple[str, Path, list[str]]]:
    cases = []
    for storage in STORAGES:
        src, counts, msgs = clean_bag(storage)
        rng = random.Random(storage)
        for i in range(2):
            bag = copy_bag(src, work / f"{storage}-flip{i}")
            f = storage_file(bag)
            f.write_bytes(apply_damage(f.read_bytes(), ("flip", [(rng.random(), rng.randrange(8)) for _ in range(6)])))
            cases.append((f"{storage} bit flips {i}", bag, []))
        cut = copy_bag(src, work / f"{storage}-cut")
        f = storage_file(cut)
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) * 2 // 3])
        cases += [(f"{storage} cut", cut, []), (f"{storage} cut --recover", cut, ["--recover"])]
        more = copy_bag(src, work / f"{storage}-more")
        edit_metadata(more, lambda i: i["topics_with_message_count"][0].update(message_count=10**6))
        cases.append((f"{storage} metadata count", more, []))
    fifo = work / "fifo.mcap"
    os.mkfifo(fifo)
    cases.append(("a FIFO", fifo, []))
    zero = copy_bag(clean_bag("sqlite3")[0], work / "zero")
    (zero / "metadata.yaml").unlink()
    os.symlink("/dev/zero", zero / "metadata.yaml")
    cases.append(("metadata.yaml -> /dev/zero", zero, []))
    return cases


def test_cli_on_damaged_bags_never_shows_a_traceback(tmp_path):
    exe = Path(sys.executable).parent / "liquid-control"
    for name, bag, extra in _cli_cases(tmp_path):
        p = subprocess.run([str(exe), "replay", str(bag), "--robot", "cartpole", "--no-progress",
                            "--csv", str(tmp_path / "out.csv"), *extra], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in p.stderr and p.returncode in (0, 2), (name, p.returncode, p.stderr[-2000:])
        assert p.stderr.count("\n") <= 1, (name, p.stderr)
        if p.returncode == 2:
            assert p.stderr.startswith("liquid-control replay: error: ") and not (tmp_path / "out.csv").exists(), name
        (tmp_path / "out.csv").unlink(missing_ok=True)
