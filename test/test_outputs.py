"""core/outputs.py: outputs never overwrite inputs, partial files are private and never follow a symlink,
and non-regular inputs are refused before they are read."""
import os
import stat

import pytest

from liquid_control.core.errors import LiquidControlError
from liquid_control.core.outputs import AtomicFile, OutputError, check_paths, regular_file, write_file


def test_an_output_on_or_inside_an_input_is_refused(tmp_path):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "x.mcap").write_bytes(b"data")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"m")
    inputs = {"BAG": bag, "--model": model}
    for out, words in [(bag / "x.mcap", "would overwrite the input BAG"),
                       (bag / "metadata.yaml", "would overwrite the input BAG"),
                       (model, "would overwrite the input --model"),
                       (tmp_path, "is a folder holding the input BAG")]:
        with pytest.raises(OutputError, match=words):
            check_paths({"--csv": out}, inputs)
    link = tmp_path / "link.csv"
    link.symlink_to(model)
    with pytest.raises(OutputError, match="would overwrite the input --model"):
        check_paths({"--csv": link}, inputs)
    with pytest.raises(OutputError, match="--json and --csv are the same file"):
        check_paths({"--csv": tmp_path / "o", "--json": tmp_path / "o"}, inputs)
    check_paths({"--csv": tmp_path / "out.csv", "--json": None}, inputs)  # fine: beside, not inside
    assert (bag / "x.mcap").read_bytes() == b"data"


def test_partial_file_is_private_exclusive_and_never_follows_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    # an attacker plants symlinks at every name the old scheme could have used
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (tmp_path / f".out.csv.partial-{pid}").symlink_to(victim)
    target = tmp_path / "out.csv"
    with AtomicFile(target) as f:
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        assert len(partial) == 1 and not partial[0].is_symlink()
        assert stat.S_IMODE(partial[0].stat().st_mode) == 0o600
        f.write("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n" and victim.read_text() == "keep"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_failed_write_leaves_neither_target_nor_partial(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicFile(target) as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    write_file(target, "new")
    assert target.read_text() == "new"


def test_non_regular_inputs_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, words in [(fifo, "is not a regular file"), ("/dev/zero", "is not a regular file"),
                        (tmp_path, "is a directory"), (tmp_path / "none", "does not exist")]:
        with pytest.raises(LiquidControlError, match=words):
            regular_file(path, "policy file")
    (tmp_path / "ok").write_text("x")
    assert regular_file(tmp_path / "ok", "policy file") == tmp_path / "ok"
