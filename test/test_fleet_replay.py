"""Fleet replay (bags/fleet.py, bags/fleet_ray.py, `liquid-control replay BAG... [--ray] [--summary]`):
20 synthetic bags, one of them corrupt, replayed in this process and as tasks on a real local Ray instance."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from liquid_control.bags.fleet import (FleetJob, FleetRow, SummaryWriter, columns, expand_bags, is_one_bag, iter_rows,
                                       record, run_table)
from liquid_control.bags.replay import ReplayOptions, replay
from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.core.artifact import read_artifact, write_artifact
from liquid_control.core.errors import LiquidControlError
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, random_params
from liquid_control.core.spec import load_spec

SPEC = load_spec("cartpole")
N_BAGS, CORRUPT = 20, 7


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    cfg = cfc_cfg(SPEC.obs_size, 16, SPEC.action_size)
    return write_artifact(tmp_path_factory.mktemp("model") / "rand.onnx", cfg, random_params(cfg, 5), spec=SPEC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """20 one-second bags (MCAP and sqlite3 alternating, each its own seed) in one folder; bag 07's
    storage file cut in half."""
    root = tmp_path_factory.mktemp("fleet")
    for i in range(N_BAGS):
        write_cartpole_bag(root / f"bag{i:02d}", duration=1.0, seed=i, storage="mcap" if i % 2 else "sqlite3")
    (storage,) = [p for p in (root / f"bag{CORRUPT:02d}").iterdir() if p.suffix in (".mcap", ".db3")]
    with open(storage, "r+b") as f:
        f.truncate(storage.stat().st_size // 2)
    return root


@pytest.fixture(scope="module")
def job(model) -> FleetJob:
    return FleetJob(read_artifact(model), SPEC)


@pytest.fixture(scope="module")
def local_rows(fleet, job) -> list[FleetRow]:
    return list(iter_rows(expand_bags([fleet]), job))


def check_fleet_rows(rows: list[FleetRow], fleet: Path) -> None:
    assert sorted(r.bag for r in rows) == [str(fleet / f"bag{i:02d}") for i in range(N_BAGS)]
    failed = [r for r in rows if r.error is not None]
    assert [r.bag for r in failed] == [str(fleet / f"bag{CORRUPT:02d}")]
    assert "truncated" in failed[0].error and "\n" not in failed[0].error
    assert failed[0].ticks == 0 and failed[0].rmse == (None,)
    assert all(r.ticks == 25 and r.steps == 25 and r.compared == 25 and r.rmse[0] > 0 for r in rows if r not in failed)


# ------------------------------------------------------------------------------------------ bag arguments
def test_expand_bags_takes_bags_folders_and_globs(tmp_path):
    (tmp_path / "site" / "deep").mkdir(parents=True)
    a = write_cartpole_bag(tmp_path / "site" / "a", duration=0.2).path
    b = write_cartpole_bag(tmp_path / "site" / "deep" / "b", duration=0.2, storage="sqlite3").path
    loose = write_cartpole_bag(tmp_path / "loose", duration=0.2).path
    (mcap,) = loose.glob("*.mcap")
    (loose / "metadata.yaml").unlink()  # a crashed recording: one storage file, no metadata.yaml
    (tmp_path / "site" / "notes.txt").write_text("not a bag")
    assert expand_bags([tmp_path / "site"]) == [a, b]  # at any depth; a bag's own storage file is not another bag
    assert expand_bags([str(tmp_path / "site" / "*")]) == [a, b]  # the text file matches the glob but is no bag
    assert expand_bags([b, tmp_path / "site", a]) == [b, a]  # argument order, each bag once
    assert expand_bags([tmp_path / "loose"]) == [mcap]
    assert is_one_bag(a) and is_one_bag(loose) and is_one_bag(mcap) and is_one_bag(tmp_path / "missing")
    assert not is_one_bag(tmp_path / "site") and not is_one_bag(str(a) + "*")
    notes = tmp_path / "site" / "notes.txt"
    assert expand_bags([notes]) == [notes]  # a file named as a bag is one: its replay says what is wrong with it
    (tmp_path / "empty").mkdir()
    for args, message in (([str(tmp_path / "nothing*")], "no bags match"), ([tmp_path / "missing"], "does not exist"),
                          ([tmp_path / "empty"], "holds no bags")):
        with pytest.raises(LiquidControlError, match=message):
            expand_bags(args)


# ------------------------------------------------------------------------------------------ in this process
def test_in_process_fleet_rows_are_each_bags_own_replay(fleet, local_rows, model):
    check_fleet_rows(local_rows, fleet)
    for row in local_rows[:2] + local_rows[-1:]:  # the figures are those of `replay` on the bag alone
        result = replay(row.bag, Policy.load(model, spec=SPEC), SPEC, options=ReplayOptions())
        assert (row.ticks, row.steps, row.faulted_ticks, row.span_s, row.messages) == \
            (result.ticks, result.steps, result.faulted_ticks, result.span, result.messages)
        assert row.rmse == (result.comparison[0].rmse,) and row.max_abs == (result.comparison[0].max_abs,)


def test_summary_writers_stream_every_row_exactly(local_rows, tmp_path):
    actions = SPEC.action.names
    for suffix in (".csv", ".json", ".jsonl"):
        path = tmp_path / f"s{suffix}"
        with SummaryWriter(path, actions) as w:
            totals = run_table(iter(local_rows), len(local_rows), actions, writer=w)
            if suffix == ".csv":  # streamed: the rows are in the file before the run ends
                assert len(path.read_text().splitlines()) == 1 + len(local_rows)
        assert (totals.bags, totals.errors) == (N_BAGS, 1)
        if suffix == ".csv":
            with open(path, newline="") as f:
                header, *rows = list(csv.reader(f))
            got = [dict(zip(header, r)) for r in rows]
            want = [{k: "" if v is None else str(v) for k, v in zip(columns(actions), record(r))} for r in local_rows]
        else:
            text = path.read_text()
            got = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
            want = [dict(zip(columns(actions), record(r))) for r in local_rows]
        assert header == columns(actions) if suffix == ".csv" else True
        assert got == want, suffix
    with pytest.raises(LiquidControlError, match="--summary"):
        SummaryWriter(tmp_path / "s.txt", actions)


# ------------------------------------------------------------------------------------------ on Ray
@pytest.fixture
def ray_local():
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # address="local": a new instance even where a cluster started by `ray start` runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_rows_equal_the_in_process_rows(ray_local, fleet, job, local_rows):
    from liquid_control.bags.fleet_ray import iter_ray_rows

    rows = list(iter_ray_rows(expand_bags([fleet]), job, in_flight=3))
    assert len(rows) == N_BAGS
    check_fleet_rows(rows, fleet)
    assert sorted(rows, key=lambda r: r.bag) == sorted(local_rows, key=lambda r: r.bag)  # every figure, and the error


def test_cli_fleet_on_a_local_ray_instance(fleet, model, local_rows, tmp_path):
    out = tmp_path / "summary.csv"
    argv = ["replay", str(fleet), "--model", str(model), "--ray", "--workers", "2", "--summary", str(out)]
    proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert proc.returncode == 1, proc.stderr  # one bag failed
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "on Ray (local, 2 CPUs)" in proc.stdout and "19 of 20 bags replayed, 1 with errors" in proc.stdout
    with open(out, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == columns(SPEC.action.names) and len(rows) == N_BAGS
    got = {r[0]: dict(zip(header, r), wall_s=None) for r in rows}
    for row in local_rows:
        want = {k: "" if v is None else str(v) for k, v in zip(header, record(row))}
        assert got[row.bag] == dict(want, wall_s=None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_fleet_joins_a_cluster_through_the_ray_client(fleet, model, local_rows, tmp_path):
    """A cluster started apart (`ray start --head`, as on a head node), joined by ray://HOST:PORT: the Ray
    client path (grpcio, the dist extra's [client]) and the cluster's token authentication. Its own temp
    folder keeps its address out of /tmp/ray, where any `ray.init()` on this machine would find and join it."""
    import shutil
    import signal
    import tempfile

    gcs, client = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="lcray")  # short: Ray's socket paths live below it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={gcs}",
                             f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        argv = ["replay", str(fleet), "--model", str(model), "--ray", f"ray://127.0.0.1:{client}",
                "--summary", str(tmp_path / "s.jsonl")]
        deadline = time.monotonic() + 60
        while True:  # the client server listens a few seconds after the head starts
            proc = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                  env={**env, "RAY_AUTH_MODE": "token"})
            # (retried too: the client server starting up refuses its first sessions with an
            # "Initialization failure from server" on a loaded machine)
            starting = "cannot reach" in proc.stderr or "Initialization failure from server" in proc.stderr
            if not starting or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert proc.returncode == 1 and f"on Ray (ray://127.0.0.1:{client}, 2 CPUs)" in proc.stdout, proc.stderr
        rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
        want = {r.bag: dict(zip(columns(SPEC.action.names), record(r)), wall_s=None) for r in local_rows}
        assert {r["bag"]: dict(r, wall_s=None) for r in rows} == want
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the cluster's processes on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_cli_several_bags_in_process_print_a_row_each(fleet, model, capsys):
    from liquid_control.cli.main import main

    bags = [str(fleet / "bag00"), str(fleet / f"bag{CORRUPT:02d}"), str(fleet / "bag1*")]
    assert main(["replay", *bags, "--model", str(model), "--no-progress"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("in this process") and "replay of 12 bags" in out[0]
    assert len(out) == 1 + 12 + 1 and "11 of 12 bags replayed, 1 with errors" in out[-1]
    assert out[2].startswith(f"{fleet / 'bag07'}: error: ") and "slide RMSE" in out[1]


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, liquid_control, liquid_control.bags.fleet, liquid_control.cli.cmd_replay\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------------------ mistakes
def _cli(*argv: str, hide: str | None = None) -> list[str]:
    code = "import sys\n" + (f"sys.modules[{hide!r}] = None\n" if hide else "")
    code += "from liquid_control.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", code, *argv]


MISTAKES = {  # argv with {fleet} / {tmp}, and what the one error line says
    "no-bags-match": (["replay", "{tmp}/nothing*", "--robot", "cartpole"], "no bags match"),
    "missing-bag-among-several": (["replay", "{fleet}/bag00", "{tmp}/missing", "--robot", "cartpole"],
                                  "does not exist"),
    "folder-without-bags": (["replay", "{tmp}", "--robot", "cartpole", "--summary", "{tmp}/s.csv"], "holds no bags"),
    "unreachable-address": (["replay", "{fleet}", "--robot", "cartpole", "--ray", "127.0.0.1:1"],
                            "cannot reach a Ray cluster at 127.0.0.1:1"),
    "unreachable-client-address": (["replay", "{fleet}", "--robot", "cartpole", "--ray", "ray://127.0.0.1:1"],
                                   "cannot reach a Ray cluster at ray://127.0.0.1:1"),
    "not-an-address": (["replay", "--ray", "{fleet}", "{fleet}/bag00", "--robot", "cartpole"], "is not a Ray address"),
    "csv-with-several-bags": (["replay", "{fleet}", "--robot", "cartpole", "--csv", "{tmp}/r.csv"], "--summary"),
    "workers-without-ray": (["replay", "{fleet}", "--robot", "cartpole", "--workers", "2"], "--workers needs --ray"),
    "summary-format": (["replay", "{fleet}", "--robot", "cartpole", "--summary", "{tmp}/s.txt"], ".csv, .json"),
    "summary-over-a-bag": (["replay", "{fleet}", "--robot", "cartpole", "--summary", "{fleet}/bag00/metadata.yaml"],
                           "would overwrite the input"),
}
HIDDEN = {"ray-not-installed": (["replay", "{fleet}", "--robot", "cartpole", "--ray"], "liquid_control[dist]", "ray")}


@pytest.fixture(scope="module")
def mistakes(fleet, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("fleet_mistakes")

    def run(case: str) -> subprocess.CompletedProcess:
        argv, _, *hide = {**MISTAKES, **HIDDEN}[case]
        folder = tmp / case
        folder.mkdir()
        argv = [a.replace("{tmp}", str(folder)).replace("{fleet}", str(fleet)) for a in argv]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        return subprocess.run(_cli(*argv, hide=hide[0] if hide else None), cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([*MISTAKES, *HIDDEN], pool.map(run, [*MISTAKES, *HIDDEN])))


@pytest.mark.parametrize("case", sorted({**MISTAKES, **HIDDEN}))
def test_fleet_mistake_is_one_line(case, mistakes):
    proc = mistakes[case]
    expect = {**MISTAKES, **HIDDEN}[case][1]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("liquid-control replay: "), proc.stderr
    assert expect in lines[0], lines[0]
