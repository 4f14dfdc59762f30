"""Checkpoints hold tensors and plain data only: loading never runs code from the file."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liquid_control.learning.checkpoints import load_checkpoint, save_checkpoint
from liquid_control.learning.errors import TrainingError


class _Payload:
    """Unpickling this runs `touch MARKER`: what a crafted .pt would do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    torch.save({"cfg": _Payload(marker), "params": {}}, path)
    return path, marker


def test_load_checkpoint_refuses_a_crafted_pickle_unrun(crafted):
    path, marker = crafted
    with pytest.raises(TrainingError, match="holds more than tensors and plain data, refused unread"):
        load_checkpoint(path)
    assert not marker.exists()


def test_export_refuses_a_crafted_pickle_unrun(crafted, tmp_path):
    path, marker = crafted
    run = subprocess.run([sys.executable, "-m", "liquid_control.cli", "export", str(path), "--out",
                          str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "refused unread" in run.stderr
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_saved_state_with_numpy_reads_back_as_tensors(tmp_path):
    import numpy as np

    state = {"obs_rms": {"mean": np.arange(3.0), "var": np.ones(3), "count": np.float64(5.0)},
             "config": {"units": 8, "lr": 3e-4, "wiring": None, "sizes": (1, 2)}, "step": np.int64(7)}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["obs_rms"]["mean"], torch.arange(3.0, dtype=torch.float64))
    assert back["obs_rms"]["count"] == 5.0 and back["step"] == 7 and back["config"]["sizes"] == (1, 2)
