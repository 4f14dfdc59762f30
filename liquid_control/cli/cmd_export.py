"""`liquid-control export CHECKPOINT --out MODEL`: turn saved weights into a policy artifact.

CHECKPOINT formats:
  * `.npz` (numpy only, no torch needed): one array per cellmath parameter, named as in
    liquid_control/core/cellmath.py ("obs_mean", "cfc0.heads.W", "ltc.W", ...), plus "cfg": a 0-d string
    array holding the cellmath config as JSON, and optionally "meta": JSON with any of
    {"robot", "nominal_period", "provenance"}.
        np.savez(path, cfg=json.dumps(cfg), meta=json.dumps({"robot": "cartpole"}), **params)
  * `.pt` holding {"cfg": ..., "params": {name: array or tensor}, optional "robot", "nominal_period",
    "provenance"}: the same content through torch.save (tensors, arrays as tensors, plain data: it is
    read with weights_only=True, so a file that needs code to unpickle is refused).
  * `.pt` training checkpoint written by `liquid-control train` (checkpoint.pt / best.pt: "config",
    "agent", "obs_rms", ...): the actor with its frozen observation statistics is exported.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core.errors import ArtifactError

HELP = "export a training checkpoint to a policy artifact"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="weights: .npz (cfg + cellmath params), .pt {cfg, params}, "
                   "or a training checkpoint.pt / best.pt")
    p.add_argument("--out", type=Path, required=True, help="artifact to write (.onnx)")
    p.add_argument("--robot", default=None,
                   help="robot spec (name or YAML) to record; default: the one the checkpoint names")
    p.add_argument("--period", type=float, default=None,
                   help="nominal control period in seconds; default: checkpoint's, else the spec's")


def _load_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path} as .npz: {exc}") from None
    if "cfg" not in arrays:
        raise ArtifactError(f"{path} has no 'cfg' entry (a JSON string with the cellmath config)")
    try:
        cfg = json.loads(str(arrays.pop("cfg")))
        meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    except ValueError as exc:
        raise ArtifactError(f"{path}: 'cfg'/'meta' is not valid JSON ({exc})") from None
    return {"cfg": cfg, "params": arrays, **meta}


def _to_numpy(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def _load_pt(path: Path) -> dict[str, Any]:
    try:
        import torch  # noqa: F401  (only: is it installed?)
    except ImportError:
        raise ArtifactError(f"{path}: reading .pt files needs torch (pip install 'liquid_control[train]'); "
                            "a .npz checkpoint needs only numpy") from None
    from liquid_control.learning.checkpoints import load_checkpoint as load_torch_checkpoint

    ckpt = load_torch_checkpoint(path)  # weights_only: a crafted pickle is refused, never run
    if "cfg" in ckpt and "params" in ckpt:
        return {**ckpt, "params": {k: _to_numpy(v) for k, v in ckpt["params"].items()}}
    if {"config", "agent", "obs_rms"} <= set(ckpt):
        return _from_training_checkpoint(path, ckpt)
    raise ArtifactError(f"{path} is neither {{'cfg', 'params'}} nor a `liquid-control train` checkpoint "
                        f"(keys: {sorted(ckpt)[:8]})")


def _from_training_checkpoint(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    from liquid_control.learning.cell_params import to_params
    from liquid_control.learning.ppo import restore_agent

    config, agent, rms = restore_agent(ckpt, path)
    cfg, params = to_params(agent.actor, rms.mean.astype(np.float32), rms.std.astype(np.float32))
    return {"cfg": cfg, "params": params, "robot": config.robot, "nominal_period": ckpt.get("dt0"),
            "provenance": {"seed": config.seed, "algorithm": "recurrent PPO (liquid_control.learning.ppo)",
                           "env_steps": int(ckpt.get("global_step", 0)), "checkpoint": str(path)}}


def load_checkpoint(path: Path) -> dict[str, Any]:
    """{cfg, params, robot?, nominal_period?, provenance?} from any supported checkpoint format."""
    if not path.exists():
        raise ArtifactError(f"checkpoint {path} does not exist")
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix in (".pt", ".pth"):
        return _load_pt(path)
    raise ArtifactError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .npz or .pt")


def run(args: argparse.Namespace) -> int:
    from liquid_control.core.artifact import read_artifact, write_artifact
    from liquid_control.core.outputs import check_paths
    from liquid_control.core.spec import load_spec

    check_paths({"--out": args.out}, {"CHECKPOINT": args.checkpoint})
    ckpt = load_checkpoint(args.checkpoint)
    robot = args.robot or ckpt.get("robot")
    spec = load_spec(robot) if robot else None
    period = args.period if args.period is not None else ckpt.get("nominal_period")
    if period is not None and not (np.isfinite(period) and period > 0):
        raise ArtifactError(f"--period must be a positive number of seconds, got {period}")
    provenance = {"exported_from": str(args.checkpoint), **(ckpt.get("provenance") or {})}
    out = write_artifact(args.out, ckpt["cfg"], ckpt["params"], spec=spec, nominal_period=period,
                         provenance=provenance)
    art = read_artifact(out)  # what was written reads back and validates
    print(f"wrote {out}: {art.cfg['cell'].upper()} {art.obs_size} -> {art.state_size} -> {art.action_size}, "
          f"{art.parameter_count:,} parameters" + (f", robot {spec.name}" if spec else ", no robot spec recorded"))
    return 0
