"""Training, CI-sized: recurrent PPO for a few thousand steps in the real MuJoCo env.

The goals (eval >= 950 within 100k steps, ...) are benchmarks in bench/, not tests; here: the loss stays
finite, a checkpoint resumes where it stopped, Ctrl-C leaves a checkpoint that resumes, the export loads
with the core runtime and runs in the env, and bad input gets a one-line error.
"""
from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_control.cli.main import main
from liquid_control.core.policy import Policy
from liquid_control.core.spec import load_spec
from liquid_control.learning.evaluate import run_episodes
from liquid_control.learning.ppo import PPOConfig, Trainer, train
from liquid_control.learning.checkpoints import load_checkpoint
from liquid_control.ros.background import interruptible
from liquid_control.learning.errors import TrainingError

TINY = dict(robot="cartpole", cell="cfc", units=8, backbone_units=16, n_envs=2, n_steps=64, tbptt=16,
            epochs=2, minibatches=2, eval_every=1024, eval_episodes=2)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_resume_export_and_evaluate(tmp_path):
    out = tmp_path / "run"
    res = train(PPOConfig(steps=1024, seed=3, **TINY), out, command="test", progress=False)
    assert res["steps"] == 1024
    first = rows(out / "metrics.csv")
    assert [int(r["step"]) for r in first] == [128 * k for k in range(1, 9)]
    for r in first:  # the loss terms stayed finite
        for key in ("pg_loss", "v_loss", "entropy", "grad_norm"):
            assert math.isfinite(float(r[key])), (key, r)
    assert math.isfinite(float(first[-1]["eval_mean"]))
    assert load_checkpoint(out / "checkpoint.pt")["global_step"] == 1024
    assert (out / "learning_curve.png").stat().st_size > 0

    # Resume: the step count continues from the checkpoint, the CSV grows, nothing restarts at 0.
    res = train(PPOConfig(steps=2048, seed=3, **TINY), out, resume=True, command="test", progress=False)
    assert res["steps"] == 2048
    steps = [int(r["step"]) for r in rows(out / "metrics.csv")]
    assert steps == [128 * k for k in range(1, 17)]

    # The export runs through the core runtime (numpy backend, no torch) in the real env.
    policy = Policy.load(out / "policy.onnx", spec=load_spec("cartpole"))
    assert policy.meta["provenance"]["seed"] == 3 and policy.meta["provenance"]["command"] == "test"
    summary = run_episodes(policy, "cartpole", episodes=2, seed=0)
    assert summary["episodes"] == 2 and all(r >= 1 for r in summary["returns"])


@pytest.mark.parametrize("cell, wiring", [("cfc", "full"), ("cfc", "ncp"), ("ltc", "full")])
def test_export_matches_the_torch_actor(tmp_path, cell, wiring):
    """The artifact computes the training actor's mean action (obs statistics frozen into it)."""
    out = tmp_path / "run"
    cfg = PPOConfig(steps=256, seed=1, **{**TINY, "cell": cell}, wiring=wiring)
    trainer = Trainer(cfg, out, command="test", progress=False)
    trainer.train()
    state = load_checkpoint(out / "best.pt")
    trainer.agent.load_state_dict(state["agent"])
    trainer.obs_rms.load_state_dict(state["obs_rms"])
    from liquid_control.learning.ppo import TorchPolicy

    ours, theirs = TorchPolicy(trainer.agent, trainer.obs_rms), Policy.load(out / "policy.onnx")
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, dt = rng.normal(size=4), float(rng.uniform(0.02, 0.06))
        np.testing.assert_allclose(theirs.step(obs, dt), ours.step(obs, dt), atol=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(PPOConfig(steps=256, seed=0, **TINY), out, command="test", progress=False)
    trainer = Trainer(PPOConfig(steps=1024, seed=0, **TINY), out, resume=True, command="test", progress=False)
    with torch.no_grad():  # a diverged critic: its outputs, so the value loss, become NaN
        trainer.agent.critic[-1].bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan .*at step 384; stopped. "
                                            r"The last good checkpoint is .*checkpoint.pt \(step 256\)"):
        trainer.train()
    good = load_checkpoint(out / "checkpoint.pt")
    assert good["global_step"] == 256
    assert all(torch.isfinite(v).all() for v in good["agent"].values())


def test_ctrl_c_writes_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "liquid_control.cli", "train", "--robot", "cartpole", "--units", "8",
           "--backbone-units", "16", "--n-envs", "2", "--n-steps", "64", "--minibatches", "2", "--epochs", "2",
           "--steps", "1000000", "--eval-every", "100000", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until a few updates are on disk
            if (out / "metrics.csv").exists() and len(rows(out / "metrics.csv")) >= 3:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        else:
            pytest.fail("training wrote no metrics within 60 s")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "resume with --resume" in output
    step = load_checkpoint(out / "checkpoint.pt")["global_step"]
    assert step >= 3 * 128

    target = step + 256
    resumed = subprocess.run(cmd[:cmd.index("--steps")] + ["--steps", str(target), "--eval-every", "100000",
                                                           "--out", str(out), "--no-progress", "--resume"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {out / 'checkpoint.pt'} at step {step}" in resumed.stdout
    assert load_checkpoint(out / "checkpoint.pt")["global_step"] == target
    assert (out / "policy.onnx").exists()


@pytest.mark.parametrize("argv, message", [
    (["--robot", "marsrover"], "unknown robot 'marsrover'"),
    (["--cell", "lstm"], "unknown cell 'lstm'"),
    (["--lr", "-0.1"], "lr must lie in (0, 1)"),
    (["--units", "0"], "units must be a positive integer"),
    (["--n-steps", "100", "--tbptt", "16"], "n-steps (100) must be a multiple of tbptt (16)"),
    (["--dt-jitter", "1.5"], "dt-jitter must lie in [0, 1)"),
    (["--timestep", "0.03"], "control period"),
    (["--wiring", "random"], "unknown wiring 'random'"),  # 0.04 s is not a whole number of 0.03 s steps
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    rc = main(["train", "--steps", "256", "--out", str(tmp_path / "run"), "--no-progress", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and err.startswith("liquid-control train: error:") and "\n" not in err


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    out = tmp_path / "run"
    train(PPOConfig(steps=128, **TINY), out, command="test", progress=False)
    with pytest.raises(TrainingError, match="pass --resume"):
        Trainer(PPOConfig(steps=256, **TINY), out, command="test", progress=False)
    with pytest.raises(TrainingError, match="units=8, now units=16"):
        Trainer(PPOConfig(steps=256, **{**TINY, "units": 16}), out, resume=True, command="test", progress=False)


def test_distill_dagger_student_from_the_shipped_teacher(tmp_path):
    """DAgger: the full-state cartpole policy teaches a positions-only student; the export runs on the runtime."""
    from liquid_control.core.resources import default_policy_path
    from liquid_control.learning.distill import DistillConfig, distill

    out = tmp_path / "distill"
    cfg = DistillConfig(robot="cartpole_novel", teacher=str(default_policy_path("cartpole")), units=8,
                        backbone_units=16, iters=2, n_envs=2, rollout_steps=64, seq_len=16, batch=16,
                        grad_steps=10, eval_episodes=1)
    res = distill(cfg, out, command="test", progress=False)
    assert res["steps"] == 2 * 2 * 64
    losses = [float(r["loss"]) for r in rows(out / "metrics.csv")]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    policy = Policy.load(out / "policy.onnx", spec=load_spec("cartpole_novel"))
    prov = policy.meta["provenance"]
    assert prov["teacher_robot"] == "cartpole" and prov["algorithm"].startswith("DAgger")
    assert run_episodes(policy, "cartpole_novel", episodes=1)["episodes"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--teacher", "/nonexistent/teacher.onnx"], "teacher /nonexistent/teacher.onnx does not exist"),
    (["--robot", "marsrover"], "unknown robot 'marsrover'"),
    (["--rollout-steps", "50", "--seq-len", "32"], "rollout-steps (50) must be a multiple of seq-len (32)"),
])
def test_distill_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    assert main(["distill", "--iters", "1", "--out", str(tmp_path / "d"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liquid-control distill: error:") and message in err and "\n" not in err
