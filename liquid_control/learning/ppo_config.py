"""The settings of a PPO run (`liquid-control train`), kept apart from the algorithm in ppo.py so the
command line can be built from them without importing torch."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from liquid_control.learning.errors import TrainingError

CELLS = ("cfc", "ltc")


@dataclass
class PPOConfig:
    """Every setting of a run. The fields are the command line of `liquid-control train` (cli/config_args.py):
    each option's type, default and help are written here and nowhere else."""

    robot: str = field(default="cartpole", metadata={"help": "robot spec name (cartpole, cartpole_novel, reacher)"})
    cell: str = field(default="cfc", metadata={"help": "liquid cell: cfc or ltc"})
    units: int = field(default=32, metadata={"help": "hidden units of the cell"})
    wiring: str = field(default="full", metadata={
        "help": "full (fully connected + projection) or ncp (ncps AutoNCP, motor neurons = action)"})
    backbone_units: int = field(default=32, metadata={"help": "CfC backbone width"})
    backbone_layers: int = field(default=1, metadata={"help": "CfC backbone depth"})
    mode: str = field(default="default", metadata={"help": "CfC mode: default, pure or no_gate"})
    steps: int = field(default=100_000, metadata={"help": "total environment steps"})
    seed: int = field(default=0, metadata={"help": "seeds torch and the envs (env i gets seed + i)"})
    n_envs: int = field(default=8, metadata={"help": "parallel envs (Gymnasium vector API)"})
    vector: str = field(default="sync", metadata={
        "help": "sync: envs in this process; async: one subprocess each", "choices": ("sync", "async")})
    n_steps: int = field(default=128, metadata={"help": "rollout length per env and update"})
    tbptt: int = field(default=16, metadata={"help": "truncated-BPTT sequence length"})
    epochs: int = field(default=10, metadata={"help": "PPO epochs per update"})
    minibatches: int = field(default=4, metadata={"help": "minibatches per epoch (of the TBPTT sequences)"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    anneal_lr: bool = field(default=True, metadata={"help": "decay the learning rate linearly to 0"})
    gamma: float = field(default=0.99, metadata={"help": "discount factor"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip: float = field(default=0.2, metadata={"help": "PPO ratio clip"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight"})
    max_grad_norm: float = field(default=0.5, metadata={
        "help": "gradient norm clip, applied to actor and critic apart"})
    target_kl: float | None = field(default=0.05, metadata={
        "help": "early-stop epochs above this KL (0: off)", "off": 0.0})
    init_log_std: float = field(default=-0.5, metadata={"help": "initial log-std of the Gaussian policy"})
    critic_hidden: int = field(default=64, metadata={"help": "width of the critic MLP's two hidden layers"})
    norm_reward: bool = field(default=False, metadata={
        "help": "scale rewards by the running std of the discounted return (for returns in the thousands)"})
    dt_jitter: float = field(default=0.0, metadata={
        "help": "train with each control period drawn from nominal * [1-j, 1+j]"})
    eval_every: int = field(default=10_000, metadata={"help": "evaluate every N env steps"})
    eval_episodes: int = field(default=5, metadata={"help": "episodes per evaluation"})
    device: str | None = field(default=None, metadata={
        "help": "the torch device of the PPO update (cpu, cuda, cuda:N): the learner works on a copy of the agent "
                "there; rollouts, evaluation, checkpoints and export stay on the CPU",
        "shown": "the CPU, one copy of the agent"})
    stop_eval: float | None = field(default=None, metadata={
        "help": "stop once an evaluation's mean return reaches this (the schedule stays that of --steps)",
        "shown": "train the whole budget"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "cli": False, "help": "further options of the env (timestep, drop_prob, ...)"})

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise TrainingError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise TrainingError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        positive = {"units": self.units, "steps": self.steps, "n_envs": self.n_envs, "n_steps": self.n_steps,
                    "tbptt": self.tbptt, "epochs": self.epochs, "minibatches": self.minibatches,
                    "eval_every": self.eval_every, "eval_episodes": self.eval_episodes,
                    "backbone_units": self.backbone_units, "critic_hidden": self.critic_hidden}
        for name, v in positive.items():
            if not isinstance(v, int) or v <= 0:
                raise TrainingError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.backbone_layers < 0:
            raise TrainingError(f"backbone-layers must be >= 0, got {self.backbone_layers}")
        if not (0 < self.lr < 1) or not math.isfinite(self.lr):
            raise TrainingError(f"lr must lie in (0, 1), got {self.lr}")
        for name in ("gamma", "gae_lambda"):
            if not 0 < getattr(self, name) <= 1:
                raise TrainingError(f"{name.replace('_', '-')} must lie in (0, 1], got {getattr(self, name)}")
        if not 0 < self.clip < 1:
            raise TrainingError(f"clip must lie in (0, 1), got {self.clip}")
        if not (0 < self.max_grad_norm < math.inf):
            raise TrainingError(f"max-grad-norm must be a positive number, got {self.max_grad_norm}")
        if not (0 <= self.vf_coef < math.inf):
            raise TrainingError(f"vf-coef must be a number >= 0, got {self.vf_coef}")
        if not 0 <= self.dt_jitter < 1:
            raise TrainingError(f"dt-jitter must lie in [0, 1), got {self.dt_jitter}")
        if self.n_steps % self.tbptt:
            raise TrainingError(f"n-steps ({self.n_steps}) must be a multiple of tbptt ({self.tbptt})")
        if (self.n_envs * self.n_steps // self.tbptt) % self.minibatches:
            raise TrainingError(f"the {self.n_envs * self.n_steps // self.tbptt} TBPTT chunks per rollout "
                                f"do not split into {self.minibatches} minibatches")
        if self.vector not in ("sync", "async"):
            raise TrainingError(f"vector must be 'sync' or 'async', got {self.vector!r}")
        if self.wiring not in ("full", "ncp"):
            raise TrainingError(f"unknown wiring {self.wiring!r}; choose full or ncp")
        if self.mode not in ("default", "pure", "no_gate"):
            raise TrainingError(f"unknown CfC mode {self.mode!r}; choose default, pure or no_gate")


# Config keys that shape the network or the rollout buffers: a resumed run must keep them.
RESUME_FIXED = ("robot", "cell", "units", "wiring", "backbone_units", "backbone_layers", "mode", "critic_hidden",
                "n_envs", "n_steps", "tbptt")
