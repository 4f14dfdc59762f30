"""Training with the rollouts on Ray (learning/ppo_ray.py, `liquid-control train --ray`), on a real local Ray
instance started and stopped here (2 CPUs: two rollout workers): cartpole solved by two workers, a worker
killed by its PID mid-run is restarted and the budget still finished, a run resumed across the two modes
continues its step count, and command-line mistakes are one line."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from liquid_control.cli.main import main
from liquid_control.core.policy import Policy
from liquid_control.learning.checkpoints import load_checkpoint
from liquid_control.learning.ppo import PPOConfig, train

# 2 workers x 2 envs x 64 steps: 256 env steps an update
TINY = dict(robot="cartpole", cell="cfc", units=8, backbone_units=16, n_envs=4, n_steps=64, tbptt=16, epochs=2,
            minibatches=2, eval_every=100_000, eval_episodes=1)


def _ray_env() -> dict[str, str]:
    """This process's environment, read after ray.init: it sets RAY_AUTH_MODE there, which a command joining
    the instance needs as well (with the token ray.init saved)."""
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _cli(*argv: str, hide: str | None = None) -> list[str]:
    code = "import sys\n" + (f"sys.modules[{hide!r}] = None\n" if hide else "")
    code += "from liquid_control.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", code, *argv]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for this module; its address for commands that join it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # address="local": a new instance even where a cluster started by `ray start` runs on this machine
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def test_two_workers_train_cartpole_to_950(ray_local, tmp_path):
    """The cartpole defaults (CfC 32, 8 envs x 128 steps, lr 1e-3, seed 0) as 2 workers x 4 envs, through the
    command line joining this module's Ray instance; the run stops at the first evaluation >= 950."""
    out = tmp_path / "run"
    argv = ["train", "--robot", "cartpole", "--steps", "100000", "--seed", "0", "--stop-eval", "950",
            "--ray", ray_local, "--workers", "2", "--envs-per-worker", "4", "--out", str(out), "--no-progress"]
    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=240, env=_ray_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rollouts on Ray" in proc.stdout and "2 workers x 4 envs" in proc.stdout, proc.stdout
    rows = _rows(out / "metrics.csv")
    evals = [(int(r["step"]), float(r["eval_mean"])) for r in rows if r["eval_mean"]]
    assert evals[-1][1] >= 950 and evals[-1][0] <= 100_000, evals
    assert all(r["worker_restarts"] == "0" for r in rows)
    assert all(float(r["rollout_s"]) > 0 and float(r["learn_s"]) > 0 for r in rows)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["n_envs"] == 8 and state["global_step"] == evals[-1][0]
    policy = Policy.load(out / "policy.onnx")
    assert policy.meta["provenance"]["eval_return"] >= 950 and "--ray" in policy.meta["provenance"]["command"]


def test_a_killed_worker_is_restarted_and_the_budget_finished(ray_local, tmp_path, capsys):
    from liquid_control.learning.ppo_ray import RayTrainer

    steps = 40 * 256
    trainer = RayTrainer(PPOConfig(steps=steps, seed=2, **TINY), tmp_path / "run", workers=2, envs_per_worker=2,
                         command="test", progress=False)
    first_pid = trainer.rollouts.pids[0]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(trainer.train()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while len(_rows(tmp_path / "run" / "metrics.csv")) < 2:  # the header is written at start
        assert thread.is_alive() and time.monotonic() < deadline, "no update logged"
        time.sleep(0.1)
    os.kill(first_pid, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive(), "training did not finish"
    assert result["steps"] == steps
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [256 * k for k in range(1, 41)]
    assert sum(int(r["worker_restarts"]) for r in rows) == 1
    assert trainer.rollouts.pids[0] != first_pid and trainer.rollouts.incarnation == [1, 0]
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "rollout worker" in ln]
    assert len(printed) == 1 and printed[0].startswith("rollout worker 0 failed (") and \
        printed[0].endswith("; restarted, its partial rollout dropped"), printed


def test_resume_continues_the_step_count_across_modes(ray_local, tmp_path):
    """Ray (command line) -> this process -> Ray (API): the step count, metrics.csv and the observation and
    reward statistics (one count per env step) go on from each checkpoint."""
    from liquid_control.learning.ppo_ray import train_ray

    out = tmp_path / "run"
    argv = ["train", "--robot", "cartpole", "--units", "8", "--backbone-units", "16", "--n-steps", "64",
            "--epochs", "2", "--minibatches", "2", "--eval-every", "100000", "--eval-episodes", "1", "--norm-reward",
            "--steps", "512", "--ray", ray_local, "--workers", "2", "--envs-per-worker", "2", "--out", str(out),
            "--no-progress"]
    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=120, env=_ray_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = dict(TINY, norm_reward=True)
    res = train(PPOConfig(steps=1024, **cfg), out, resume=True, command="test", progress=False)
    assert res["steps"] == 1024
    res = train_ray(PPOConfig(steps=1536, **cfg), out, workers=2, envs_per_worker=2, resume=True, command="test",
                    progress=False)
    assert res["steps"] == 1536
    rows = _rows(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [256 * k for k in range(1, 7)]
    assert [r["worker_restarts"] for r in rows] == ["0", "0", "", "", "0", "0"]  # blank: no workers
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["global_step"] == 1536 and state["update"] == 6
    assert state["obs_rms"]["count"] == pytest.approx(1536 + 1e-4)
    assert state["reward_scale"]["rms"]["count"] == pytest.approx(1536 + 1e-4)
    assert (out / "policy.onnx").exists()


MISTAKES = {  # argv after `train --steps 256 --out {out} --no-progress`, and what the one error line says
    "zero-workers": (["--ray", "--workers", "0"], "--workers 0 is not >= 1"),
    "workers-without-ray": (["--workers", "2"], "--workers and --envs-per-worker need --ray"),
    "uneven-split": (["--ray", "--workers", "3"], "--n-envs 8 does not split over 3 workers"),
    "n-envs-mismatch": (["--ray", "--workers", "2", "--envs-per-worker", "2", "--n-envs", "6"],
                        "--n-envs 6 is not --workers x --envs-per-worker (4)"),
    "not-an-address": (["--ray", "nowhere"], "--ray 'nowhere' is not a Ray address"),
    "unreachable": (["--ray", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_ray_mistake_is_one_line(case, tmp_path, capsys):
    argv, expect = MISTAKES[case]
    assert main(["train", "--steps", "256", "--out", str(tmp_path / "run"), "--no-progress", *argv]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("liquid-control train: error: "), err
    assert expect in err[0], err[0]
    assert not (tmp_path / "run").exists()


def test_ray_not_installed_is_one_line(tmp_path):
    proc = subprocess.run(_cli("train", "--steps", "256", "--out", str(tmp_path / "run"), "--ray", hide="ray"),
                          capture_output=True, text=True, timeout=120, env=_ray_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'liquid_control[dist]'" in lines[0], lines


def test_ray_is_imported_only_with_ray():
    code = ("import sys, liquid_control.learning.ppo, liquid_control.learning.rollout, liquid_control.cli.cmd_train\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
