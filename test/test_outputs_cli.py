"""No command writes over one of its inputs: each case is refused with one line, exit non-zero, and the
input is byte for byte what it was."""
import subprocess
import sys

import pytest

from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.core.resources import default_policy_path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    bag = write_cartpole_bag(root / "bag", duration=1.0, storage="mcap").path
    model = root / "m.onnx"
    model.write_bytes(default_policy_path("cartpole").read_bytes())
    return bag, model


def _snapshot(*paths):
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {p: p.read_bytes() for p in files if p.is_file()}


def _cases(bag, model):
    mcap = next(bag.glob("*.mcap"))
    replay = ["replay", str(bag), "--model", str(model), "--robot", "cartpole", "--no-progress"]
    return [
        (replay + ["--csv", str(mcap)], "--csv", "would overwrite the input BAG"),
        (replay + ["--json", str(bag / "metadata.yaml")], "--json", "would overwrite the input BAG"),
        (replay + ["--csv", str(model)], "--csv", "would overwrite the input --model"),
        (replay + ["--plot", str(bag / "plot.png")], "--plot", "would overwrite the input BAG"),
        (replay + ["--out", str(bag.parent)], "--out", "is a folder holding the input BAG"),
        (replay + ["--csv", str(bag.parent / "o"), "--json", str(bag.parent / "o")], "--json", "are the same file"),
        (["eval", str(model), "--robot", "cartpole", "--episodes", "1", "--json", str(model)], "--json",
         "would overwrite the input MODEL"),
        (["export", str(model), "--out", str(model)], "--out", "would overwrite the input CHECKPOINT"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_an_output_over_an_input_is_refused_and_the_input_kept(inputs, case):
    bag, model = inputs
    argv, option, message = _cases(bag, model)[case]
    before = _snapshot(bag, model)
    run = subprocess.run([sys.executable, "-m", "liquid_control.cli", *argv], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and option in lines[0] and message in lines[0], run.stderr
    assert _snapshot(bag, model) == before
