"""Recurrent PPO with its rollouts on Ray: `liquid-control train ... --ray [ADDRESS] --workers N --envs-per-worker M`.

The learner (this process) is ppo.Trainer unchanged but for where the rollout runs: each of N rollout workers
is a Ray actor (one CPU) holding a vector env of M envs (envs w*M .. w*M+M-1 of the run, seeded as in one
vector env of all N*M) and a CPU copy of the agent. Every iteration the learner puts the weights and the
observation (and reward-scale) statistics into Ray's object store once; each worker loads them, runs
rollout.Rollout.collect (the code the single-process trainer runs) and returns its T x M buffers, its GAE
bootstrap value and its finished episodes. The learner concatenates the buffers along the env axis (worker
order), so GAE and TBPTT run on the same (T, N*M) layout as a single process with N*M envs, and checkpoints,
metrics.csv, best.pt and the artifact are the single-process trainer's (the config records n_envs = N*M;
no worker state is checkpointed, so a run resumes in either mode).

Statistics: each worker normalises with its copy of the learner's statistics, updated at every step with its
own raw observations (as the single process does with all of its envs'), and returns those observations; the
learner merges each worker's into its own statistics (RunningMeanStd.update, Chan's parallel update: exact).
So after each iteration the learner's statistics are those a single process with the same N*M envs would
hold; what differs is within an iteration: worker w's normalisation has seen its own observations of this
iteration, not the other workers'. Reward scaling (--norm-reward) is handled the same way; each worker keeps
the running discounted returns of its own envs. Actions are sampled from each worker's own torch generator
(seeded by run seed, worker and restart), so a run is not the single process's sample for sample.

Fault tolerance: a worker whose collect fails (its process killed, its node lost, an env that raised) is
killed and re-created by the learner (fresh episodes), its partial rollout dropped and its share of the
iteration collected again, so every update sees N*M x T samples and the step budget is unchanged. Each
restart is logged as one line and counted in metrics.csv's worker_restarts. A worker that fails
MAX_FAILURES times in a row within one iteration stops the run with its error (a bug, not bad luck).

Ray comes from ray_cluster.import_ray, only when this trainer runs (the `dist` extra).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from liquid_control.ray_cluster import import_ray, why_lost
from liquid_control.learning.errors import TrainingError
from liquid_control.learning.normalise import RewardScaler
from liquid_control.learning.ppo import Agent, Trainer
from liquid_control.learning.ppo_config import PPOConfig
from liquid_control.learning.rollout import Collected, RecordingMeanStd, Rollout, env_shapes, vector_env

MAX_FAILURES = 3  # a worker failing this many times in a row within one iteration stops the run
READY_TIMEOUT_S = 300.0  # the workers must have started (envs built) within this long


class RolloutWorker:
    """A Ray actor: M envs and a CPU copy of the agent, collecting a rollout per call with the learner's weights."""

    def __init__(self, config: dict[str, Any], index: int, envs: int, incarnation: int):
        torch.set_num_threads(1)
        cfg = PPOConfig(**config)
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, index, incarnation]).generate_state(1)[0]))
        obs_size, action_size, dt0 = env_shapes(cfg)
        self.agent = Agent(cfg, obs_size, action_size)
        self.obs_rms = RecordingMeanStd(obs_size)
        self.reward_scale = None
        if cfg.norm_reward:
            self.reward_scale = RewardScaler(envs, cfg.gamma)
            self.reward_scale.rms = RecordingMeanStd(1)
        self.rollout = Rollout(vector_env(cfg, index * envs, envs), self.agent, self.obs_rms, self.reward_scale,
                               cfg=cfg, dt0=dt0, first=index * envs)

    def pid(self) -> int:
        return os.getpid()

    def start(self, seed: int) -> None:
        self.rollout.start(seed)

    def collect(self, weights: dict[str, torch.Tensor], obs_rms: dict[str, Any],
                ret_rms: dict[str, Any] | None) -> dict[str, Any]:
        """One rollout with these weights and statistics: the Collected, the raw samples the statistics were
        updated with, the envs' running discounted returns (--norm-reward) and the time the rollout took."""
        t0 = time.perf_counter()
        self.agent.load_state_dict(weights)
        self.obs_rms.load_state_dict(obs_rms)
        if self.reward_scale is not None:
            self.reward_scale.rms.load_state_dict(ret_rms)
        got = self.rollout.collect()
        scale = self.reward_scale
        return {"got": got, "obs_seen": self.obs_rms.take(), "ret_seen": scale.rms.take() if scale else None,
                "ret": scale.ret.copy() if scale else None, "worker_s": time.perf_counter() - t0}


class RayRollouts:
    """The learner's side: N RolloutWorker actors on the Ray this process is connected to."""

    def __init__(self, trainer: Trainer, workers: int, envs_per_worker: int):
        ray = import_ray()
        if not ray.is_initialized():
            raise TrainingError("the Ray trainer needs a Ray connection (ray.init, or ray_cluster.ray_session)")
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < workers:
            raise TrainingError(f"{workers} rollout workers need {workers} CPUs; the Ray cluster has {cpus:g}")
        self.ray, self.trainer, self.m = ray, trainer, envs_per_worker
        self.config = asdict(trainer.cfg)
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self.incarnation = [0] * workers
        self.actors = [self._spawn(w) for w in range(workers)]
        self.seed = trainer.cfg.seed
        self.worker_s: list[float] = []  # each worker's own rollout time in the last iteration
        try:
            self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise TrainingError(f"the {workers} rollout workers did not start within {READY_TIMEOUT_S:.0f} s") from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise TrainingError(f"a rollout worker did not start: {why_lost(exc)}") from None

    def _spawn(self, w: int) -> Any:
        return self.actor_cls.remote(self.config, w, self.m, self.incarnation[w])

    def _restart(self, w: int) -> None:
        """Worker w killed (if it still runs) and re-created, starting fresh episodes."""
        try:
            self.ray.kill(self.actors[w], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.incarnation[w] += 1
        self.actors[w] = self._spawn(w)
        self.actors[w].start.remote(self.seed)

    def start(self, seed: int) -> None:
        self.seed = seed
        for a in self.actors:  # a failure here surfaces in the first collect (actor calls run in order)
            a.start.remote(seed)

    def collect(self) -> Collected:
        ray, tr = self.ray, self.trainer
        scale = tr.reward_scale
        args = (ray.put(tr.agent.state_dict()), ray.put(tr.obs_rms.state_dict()),
                ray.put(scale.rms.state_dict() if scale else None))
        pending = {a.collect.remote(*args): w for w, a in enumerate(self.actors)}
        results: list[dict[str, Any]] = [{}] * len(self.actors)
        failures = [0] * len(self.actors)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            w = pending.pop(ref)
            try:
                results[w] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                failures[w] += 1
                why = why_lost(exc)
                if failures[w] >= MAX_FAILURES:
                    raise TrainingError(f"rollout worker {w} failed {failures[w]} times in a row: {why}") from None
                print(f"rollout worker {w} failed ({why}); restarted, its partial rollout dropped", flush=True)
                self._restart(w)
                pending[self.actors[w].collect.remote(*args)] = w
        for w in np.nonzero(failures)[0]:
            self.pids[w] = ray.get(self.actors[w].pid.remote())
        m = self.m
        for w, res in enumerate(results):  # merge the workers' samples into the learner's statistics
            if len(res["obs_seen"]):
                tr.obs_rms.update(res["obs_seen"])
            if scale is not None:
                scale.rms.update(res["ret_seen"])
                scale.ret[w * m:(w + 1) * m] = res["ret"]
        self.worker_s = [res["worker_s"] for res in results]
        gots: list[Collected] = [res["got"] for res in results]
        return Collected(buf={k: torch.cat([g.buf[k] for g in gots], dim=1) for k in gots[0].buf},
                         next_val=torch.cat([g.next_val for g in gots]),
                         next_start=torch.cat([g.next_start for g in gots]),
                         returns=[r for g in gots for r in g.returns], lengths=[n for g in gots for n in g.lengths],
                         restarts=int(sum(failures)))

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


class RayTrainer(Trainer):
    """ppo.Trainer with its rollouts on `workers` Ray actors of `envs_per_worker` envs each (cfg.n_envs must be
    their product). Needs a Ray connection (ray.init, or ray_cluster.ray_session around it)."""

    def __init__(self, cfg: PPOConfig, out: Any, *, workers: int, envs_per_worker: int, **kwargs: Any):
        if workers < 1 or envs_per_worker < 1:
            raise TrainingError(f"workers and envs-per-worker must be >= 1, got {workers} and {envs_per_worker}")
        if cfg.n_envs != workers * envs_per_worker:
            raise TrainingError(f"n-envs {cfg.n_envs} is not workers x envs-per-worker ({workers} x {envs_per_worker})")
        self.workers, self.envs_per_worker = workers, envs_per_worker
        super().__init__(cfg, out, **kwargs)

    def _rollouts(self) -> RayRollouts:
        return RayRollouts(self, self.workers, self.envs_per_worker)


def train_ray(cfg: PPOConfig, out: Any, *, workers: int, envs_per_worker: int, resume: bool = False,
              command: str = "", progress: bool = True) -> dict[str, Any]:
    return RayTrainer(cfg, out, workers=workers, envs_per_worker=envs_per_worker, resume=resume, command=command,
                      progress=progress).train()
