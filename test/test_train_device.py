"""--device: the PPO update on a copy of the agent on another torch device, weights brought back to the CPU
agent after every update. Run with device="cpu" the copy path is all there is to --device but the tensor
moves, and it must learn exactly what the default (one CPU agent) learns; with "cuda" it trains where torch
sees a GPU and is a one-line error where it does not."""
from __future__ import annotations

import csv

import pytest
import torch

from liquid_control.cli.main import main
from liquid_control.learning.checkpoints import load_checkpoint
from liquid_control.learning.ppo import PPOConfig, train

TINY = dict(robot="cartpole", cell="cfc", units=8, backbone_units=16, n_envs=2, n_steps=64, tbptt=16,
            epochs=2, minibatches=2, eval_every=256, eval_episodes=1, norm_reward=True)
LEARNING = ("step", "train_return", "eval_mean", "pg_loss", "v_loss", "entropy", "approx_kl", "clip_frac",
            "grad_norm", "log_std")


def learning_rows(path):
    with open(path, newline="") as f:
        return [{k: r[k] for k in LEARNING} for r in csv.DictReader(f)]


def test_a_learner_copy_learns_exactly_what_one_agent_learns_and_resumes(tmp_path):
    for folder, device in (("one", None), ("copy", "cpu")):  # each: 256 steps, then resumed to 512
        train(PPOConfig(steps=256, seed=2, device=device, **TINY), tmp_path / folder, command="t", progress=False)
        train(PPOConfig(steps=512, seed=2, device=device, **TINY), tmp_path / folder, resume=True, command="t",
              progress=False)
    assert learning_rows(tmp_path / "copy" / "metrics.csv") == learning_rows(tmp_path / "one" / "metrics.csv")
    one, copy = (load_checkpoint(tmp_path / d / "checkpoint.pt")["agent"] for d in ("one", "copy"))
    assert one.keys() == copy.keys() and all(torch.equal(one[k], copy[k]) for k in one)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_trains_where_torch_sees_a_gpu_else_one_line(tmp_path, capsys, device):
    rc = main(["train", "--robot", "cartpole", "--steps", "256", "--n-envs", "2", "--n-steps", "64",
               "--eval-every", "256", "--eval-episodes", "1", "--device", device, "--out", str(tmp_path / "run"),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    if torch.cuda.is_available():
        assert rc == 0, err
        assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["global_step"] == 256
        assert (tmp_path / "run" / "policy.onnx").stat().st_size > 0
    else:
        assert rc == 2 and "\n" not in err
        assert err.startswith(f"liquid-control train: error: --device {device}: torch sees no CUDA device")


def test_a_bad_device_name_is_one_line(tmp_path, capsys):
    rc = main(["train", "--steps", "256", "--device", "gpu", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "liquid-control train: error: device must be cpu, cuda or cuda:N, got 'gpu'"
