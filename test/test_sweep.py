"""Sweeps (learning/sweep.py, learning/sweep_ray.py, `liquid-control sweep`): cartpole trials with a tiny budget,
on a real local Ray instance (started and stopped here) and one after another in this process."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from liquid_control.cli.grid_args import parse_grid, parse_seeds
from liquid_control.cli.main import main
from liquid_control.core.errors import LiquidControlError
from liquid_control.core.policy import Policy
from liquid_control.learning.ppo_config import PPOConfig
from liquid_control.learning.sweep import make_trials

STEPS = 2048  # two updates of 8 envs x 128 steps: the smallest run that logs a curve
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*argv: str) -> list[str]:
    code = "import sys\nfrom liquid_control.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", code, *argv]


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------ arguments
def test_seeds_and_grid_are_parsed_with_the_fields_types():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("3,0-1,3") == [3, 0, 1]
    grid = parse_grid(["lr=1e-3,3e-4", "units=16,32", "anneal-lr=false", "target_kl=0,0.02", "cell=ltc"])
    assert grid == {"lr": [1e-3, 3e-4], "units": [16, 32], "anneal_lr": [False], "target_kl": [None, 0.02],
                    "cell": ["ltc"]}
    trials = make_trials(PPOConfig(steps=STEPS), grid, [5, 6], Path("sw"))
    assert len(trials) == 2 * 2 * 2 * 2
    t = trials[-1]
    assert (t.config.lr, t.config.units, t.config.target_kl, t.config.anneal_lr, t.config.seed, t.config.steps) == \
        (3e-4, 32, 0.02, False, 6, STEPS)
    assert t.run_dir == Path("sw").absolute() / "lr=0.0003_units=32_anneal_lr=False_target_kl=0.02_cell=ltc_seed=6"
    assert len({tr.run_dir for tr in trials}) == len(trials)
    for bad in (["lr"], ["units=abc"], ["seed=1,2"], ["lr=1", "lr=2"]):
        with pytest.raises(LiquidControlError):
            parse_grid(bad)
    for bad in ("", "2-1", "a", "1-"):
        with pytest.raises(LiquidControlError):
            parse_seeds(bad)


MISTAKES = {  # argv after `sweep --robot cartpole --out {tmp}`, and what the one error line says
    "unknown-key": (["--grid", "lrr=1e-3,3e-4"], "unknown setting 'lrr' (did you mean lr?)"),
    "unknown-key-dashed": (["--grid", "gae-lamda=0.9"], "(did you mean gae_lambda?)"),
    "not-a-number": (["--grid", "units=16,many"], "--grid units='many': not an int"),
    "seed-in-grid": (["--grid", "seed=1,2"], "the seeds are given with --seeds"),
    "bad-seeds": (["--seeds", "4-2"], "--seeds '4-2'"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_sweep_mistake_is_one_line(case, tmp_path, capsys):
    argv, expect = MISTAKES[case]
    assert main(["sweep", "--robot", "cartpole", "--out", str(tmp_path / "sw"), *argv]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("liquid-control sweep: error: "), err
    assert expect in err[0], err[0]
    assert not (tmp_path / "sw").exists()  # refused before anything is written


def test_sweep_refuses_a_folder_that_holds_something(tmp_path, capsys):
    (tmp_path / "old.csv").write_text("x\n")
    assert main(["sweep", "--robot", "cartpole", "--out", str(tmp_path)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ in this process
@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> tuple[int, Path, str]:
    """`sweep` without --ray: seed 0 at the default lr and at lr=2, which the config refuses."""
    out = tmp_path_factory.mktemp("sweep_local") / "sw"
    argv = ["sweep", "--robot", "cartpole", "--seeds", "0", "--grid", "lr=1e-3,2", "--steps", str(STEPS),
            "--out", str(out), "--no-progress"]
    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=120)
    return proc.returncode, out, proc.stdout + proc.stderr


def test_a_failed_trial_is_a_row_and_the_others_finish(in_process):
    rc, out, log = in_process
    assert rc == 1, log  # a trial failed
    assert "Traceback" not in log, log
    assert "sweep of 2 trials (2 grid points x 1 seeds) in this process" in log
    rows = _table(out / "sweep.csv")
    assert [(r["lr"], r["seed"], r["status"]) for r in rows] == [("0.001", "0", "ok"), ("2", "0", "failed")]
    assert rows[1]["error"] == "lr must lie in (0, 1), got 2.0" and rows[1]["final_eval"] == ""
    assert rows[0]["error"] == "" and int(rows[0]["steps"]) == STEPS and float(rows[0]["final_eval"]) > 0
    assert Path(rows[0]["run_dir"]) == out / "lr=0.001_seed=0" and (out / "lr=0.001_seed=0" / "metrics.csv").exists()
    assert Policy.load(out / "best.onnx").obs_size == 4
    assert "best: lr=0.001_seed=0" in log and "1 of 2 trials finished, 1 failed" in log


# ------------------------------------------------------------------------------------------ on Ray
@pytest.fixture(scope="module")
def ray_local():
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray, context.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_sweep(ray_local, tmp_path_factory) -> tuple[int, Path, str]:
    """`sweep --seeds 0-2 --ray ADDRESS`: a second process joins this test's Ray instance and runs 3 trials there."""
    out = tmp_path_factory.mktemp("sweep_ray") / "sw"
    argv = ["sweep", "--robot", "cartpole", "--seeds", "0-2", "--steps", str(STEPS), "--ray", ray_local[1],
            "--out", str(out), "--no-progress"]
    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    return proc.returncode, out, proc.stdout + proc.stderr


def test_three_seeds_on_ray_give_the_table_curves_and_best_policy(ray_sweep):
    rc, out, log = ray_sweep
    assert rc == 0, log
    assert "sweep of 3 trials (1 grid points x 3 seeds) on Ray" in log and "2 CPUs" in log, log
    rows = _table(out / "sweep.csv")
    assert list(rows[0]) == ["trial", "seed", "status", "final_eval", "final_eval_std", "best_eval", "best_step",
                             "steps", "wall_s", "run_dir", "error"]
    assert [(r["trial"], r["seed"], r["status"], r["steps"]) for r in rows] == \
        [(str(i), str(i), "ok", str(STEPS)) for i in range(3)]
    assert all(float(r["wall_s"]) > 0 and float(r["best_eval"]) >= float(r["final_eval"]) > 0 for r in rows)
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    # best.onnx: the best seed's best evaluation, exported with its provenance
    best = max(rows, key=lambda r: float(r["best_eval"]))
    policy = Policy.load(out / "best.onnx")
    assert policy.meta["provenance"]["seed"] == int(best["seed"])
    assert policy.meta["provenance"]["checkpoint"] == str(Path(best["run_dir"]) / "best.pt")
    policy.reset()
    action = policy.step(np.zeros(4), 0.04)
    assert action.shape == (1,) and np.all(np.isfinite(action))


def test_a_ray_trial_is_the_same_run_as_in_this_process(ray_sweep, in_process):
    ray_rows, local_rows = _table(ray_sweep[1] / "sweep.csv"), _table(in_process[1] / "sweep.csv")
    keys = ("final_eval", "final_eval_std", "best_eval", "best_step", "steps")
    assert [ray_rows[0][k] for k in keys] == [local_rows[0][k] for k in keys]  # same seed, config and budget


def test_a_failed_trial_on_ray_is_a_row(ray_local, tmp_path):
    from liquid_control.learning.sweep_ray import iter_ray_rows

    trials = make_trials(PPOConfig(units=0, steps=STEPS), {}, [0, 1], tmp_path)
    rows = sorted(iter_ray_rows(trials), key=lambda r: r["trial"])
    assert [(r["trial"], r["seed"], r["status"]) for r in rows] == [(0, 0, "failed"), (1, 1, "failed")]
    assert all(r["error"] == "units must be a positive integer, got 0" for r in rows)


def _pids_holding(path: Path) -> list[int]:
    """The processes that have `path` open (from /proc)."""
    pids = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                pids.append(int(fds.parent.name))
        except OSError:  # a process that ended, or not ours
            continue
    return pids


def test_a_trial_whose_worker_is_killed_resumes_when_ray_retries_it(ray_local, tmp_path):
    from liquid_control.learning.sweep_ray import iter_ray_rows

    steps = 4 * STEPS
    trials = make_trials(PPOConfig(steps=steps), {}, [0], tmp_path)
    metrics = trials[0].run_dir / "metrics.csv"
    rows: list[dict] = []
    runner = threading.Thread(target=lambda: rows.extend(iter_ray_rows(trials)))
    runner.start()
    deadline, killed = time.monotonic() + 120, []
    while not killed and time.monotonic() < deadline:  # kill the worker once two updates are logged
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            killed = _pids_holding(metrics.resolve())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    runner.join(timeout=180)
    assert len(killed) == 1 and not runner.is_alive()
    assert [(r["status"], r["steps"], r["error"]) for r in rows] == [("ok", steps, "")]
    # the retry resumed from the last checkpoint: every update logged once, none lost or repeated
    assert [int(r["step"]) for r in _table(metrics)] == list(range(1024, steps + 1, 1024))


def test_ray_is_not_imported_without_ray():
    code = ("import sys, liquid_control, liquid_control.learning.sweep, liquid_control.cli.cmd_sweep\n"
            "from liquid_control.cli.main import build_parser\n"
            "build_parser(only='sweep')\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
