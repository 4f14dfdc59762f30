"""Behaviour cloning of a liquid policy from demonstration sequences, trained through time.

Input: sequences of (observation, dt, action) (bags/demos.py reads them from bags). The cell (CfC or
LTC, from learning/cells.py) runs over each whole sequence from a zero state, as it will on the robot,
with the recorded dt at every step (the continuous-time state sees the timing the expert ran at);
gradients flow through `seq_len`-step chunks with the state carried across chunks (truncated BPTT), so
the clone learns to stay well-behaved over the full length of an episode, not only over one window.
Loss: mean squared action error. Observations are normalised with the data's mean and std, which go
into the artifact (the runtime applies them). Sequences of a batch run side by side, zero-padded.

Deterministic for a seed (torch on 1 thread).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from liquid_control.learning.cell_params import to_params
from liquid_control.learning.cells import CfC, LTC


@dataclass
class BCConfig:
    """Every setting of a behaviour-cloning run. The fields are the command line of `liquid-control train-bc`
    (cli/config_args.py): each option's type, default and help are written here and nowhere else."""

    cell: str = field(default="cfc", metadata={"help": "liquid cell", "choices": ("cfc", "ltc")})
    units: int = field(default=32, metadata={"help": "hidden units of the cell"})
    backbone_units: int = field(default=32, metadata={"help": "CfC backbone width"})
    epochs: int = field(default=40, metadata={"help": "passes over the demonstrations"})
    seq_len: int = field(default=64, metadata={
        "help": "steps per truncated-BPTT chunk (state carried across chunks)"})
    batch: int = field(default=16, metadata={"help": "sequences per update"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seeds the initial weights and the order of the sequences"})
    val_fraction: float = field(default=0.1, metadata={
        "cli": False, "help": "share of the sequences held out for validation (with 10 or more sequences)"})


@dataclass
class BCResult:
    cfg: dict[str, Any]
    params: dict[str, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    sequences: int = 0
    steps: int = 0
    wall: float = 0.0


def _streams(demos: Sequence[Any], idx: Sequence[int], mean: np.ndarray, std: np.ndarray, n_in: int, n_out: int):
    """Demos `idx` side by side as (B, T_max, ...) arrays, zero-padded, with a mask of real steps."""
    T = max(len(demos[i]) for i in idx)
    B = len(idx)
    x = np.zeros((B, T, n_in), np.float32)
    dt = np.ones((B, T), np.float32)
    y = np.zeros((B, T, n_out), np.float32)
    w = np.zeros((B, T), np.float32)
    for b, i in enumerate(idx):
        d, n = demos[i], len(demos[i])
        x[b, :n] = np.clip((d.obs - mean) / std, -10.0, 10.0)  # as cellmath.normalise
        dt[b, :n] = d.dt
        y[b, :n] = d.action
        w[b, :n] = 1.0
    return torch.from_numpy(x), torch.from_numpy(dt), torch.from_numpy(y), torch.from_numpy(w)


def train_bc(demos: Sequence[Any], n_in: int, n_out: int, config: BCConfig = BCConfig(),
             log: Callable[[str], None] = print) -> BCResult:
    """Fit a liquid cell to the demonstrations; returns its cellmath (cfg, params) with normalisation."""
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(1)
    all_obs = np.concatenate([d.obs for d in demos]).astype(np.float64)
    mean = all_obs.mean(axis=0)
    std = np.maximum(all_obs.std(axis=0), 1e-3)
    if config.cell == "cfc":
        model: nn.Module = CfC(n_in, config.units, proj_size=n_out, backbone_units=config.backbone_units)
    elif config.cell == "ltc":
        model = LTC(n_in, config.units, proj_size=n_out)
    else:
        raise ValueError(f"unknown cell {config.cell!r}: cfc or ltc")
    # Whole demos are the unit: they run from a zero state, as an episode on the robot does, and the state
    # is carried (detached) from one seq_len chunk to the next: truncated backpropagation through time.
    order = rng.permutation(len(demos))
    n_val = max(1, int(len(demos) * config.val_fraction)) if len(demos) >= 10 else 0
    val, train = list(order[:n_val]), list(order[n_val:])
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs))
    m32, s32 = mean.astype(np.float32), std.astype(np.float32)

    def run_streams(idx: list, learn: bool) -> float:
        x, dt, y, w = _streams(demos, idx, m32, s32, n_in, n_out)
        h, total, weight = None, 0.0, 0.0
        for c in range(0, x.shape[1], config.seq_len):
            sl = slice(c, c + config.seq_len)
            with torch.set_grad_enabled(learn):
                pred, h = model(x[:, sl], h, dt[:, sl])
                wc = w[:, sl]
                loss = (((pred - y[:, sl]) ** 2).mean(dim=-1) * wc).sum() / wc.sum().clamp(min=1.0)
            if learn:
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            h = h.detach()
            total, weight = total + float(loss.detach()) * float(wc.sum()), weight + float(wc.sum())
        return total / max(weight, 1.0)

    history = []
    for epoch in range(config.epochs):
        model.train()
        perm = rng.permutation(len(train))
        total, steps = 0.0, 0
        for k in range(0, len(perm), config.batch):
            idx = [train[j] for j in perm[k:k + config.batch]]
            n = sum(len(demos[i]) for i in idx)
            total, steps = total + run_streams(idx, True) * n, steps + n
        sched.step()
        row = {"epoch": epoch + 1, "train_mse": total / max(1, steps)}
        if val:
            model.eval()
            row["val_mse"] = run_streams(val, False)
        history.append(row)
        if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == config.epochs:
            log(f"epoch {epoch + 1:4d}/{config.epochs}: train mse {row['train_mse']:.5f}"
                + (f", val mse {row['val_mse']:.5f}" if "val_mse" in row else ""))
        if not math.isfinite(row["train_mse"]):
            raise FloatingPointError("training diverged (non-finite loss); lower --lr")
    cfg, params = to_params(model, mean, std)
    return BCResult(cfg, params, history, len(demos), int(sum(len(d) for d in demos)), time.perf_counter() - t0)
