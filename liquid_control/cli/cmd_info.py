"""`liquid-control info MODEL`: what is inside a policy artifact, human-readable (or its metadata as JSON).
`liquid-control info --robot R`: a robot's spec, with its task's reset, reward and termination terms."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

HELP = "show what is inside a policy artifact (or a robot's spec and task terms)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, nargs="?", help="policy artifact (.onnx)")
    p.add_argument("--robot", help="instead: describe this robot spec (name in config/robots, or a path)")
    p.add_argument("--json", action="store_true", help="print the artifact's metadata as JSON instead")


def _nonzero(params: dict[str, np.ndarray], name: str) -> str:
    a = params[name]
    return f"{int(np.count_nonzero(a))}/{a.size}"


def describe(artifact: Any) -> list[tuple[str, str]]:
    """(label, text) lines describing an artifact; shared by `info` and anything that wants a summary."""
    cfg, meta, p = artifact.cfg, artifact.meta, artifact.params
    I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
    rows: list[tuple[str, str]] = []
    size_kib = len(artifact.model_bytes) / 1024
    rows.append(("model", f"{artifact.path} ({size_kib:.1f} KiB, format {meta['format_version']})"))
    if cfg["cell"] == "cfc":
        c = cfg["cfc"]
        rows.append(("cell", f"CfC, mode {c['mode']}, activation {c['activation']}"))
        layers = c["layers"]
        if len(layers) == 1:
            bb = layers[0]["backbone"]
            width = p["cfc0.bb0.W"].shape[0] if bb else 0
            rows.append(("layers", f"1 fully connected layer of {layers[0]['size']} units"
                         + (f", backbone {bb} x {width} units" if bb else ", no backbone")))
        else:
            head = "ff1.W" if c["mode"] == "pure" else "heads.W"
            desc = ", ".join(f"{s['size']}" + (f" (+{s['backbone']} backbone)" if s["backbone"] else "")
                             for s in layers)
            synapses = ", ".join(_nonzero(p, f"cfc{i}.{head}") for i in range(len(layers)))
            rows.append(("layers", f"{len(layers)} wired layers of {desc} units; nonzero head weights {synapses}"))
        out = layers[-1]["size"]
    else:
        c = cfg["ltc"]
        rows.append(("cell", f"LTC, {c['ode_unfolds']} ODE unfolds, epsilon {c['epsilon']:g}"))
        rows.append(("synapses", f"sensory {_nonzero(p, 'ltc.sensory_W')}, recurrent {_nonzero(p, 'ltc.W')} "
                     f"(nonzero/all); motor neurons {c['motor_size']} of {N}"))
        out = c["motor_size"]
    proj = f", projection {out} -> {A}" if cfg.get("proj") else ""
    rows.append(("sizes", f"{I} observations -> {N} state units -> {A} actions{proj}"))
    rows.append(("parameters", f"{artifact.parameter_count:,} stored values "
                 f"({sum(int(np.count_nonzero(v)) for v in p.values()):,} nonzero)"))
    period = meta.get("nominal_period")
    rows.append(("period", f"{period:g} s ({1.0 / period:g} Hz) nominal" if period else "not recorded"))
    scale = artifact.dt_scale
    rows.append(("time unit", "seconds (dt_scale 1: the cells see the measured dt as it is)" if scale == 1.0 else
                 f"1 model time unit = {1.0 / scale:g} s (dt_scale {scale:g}: the cells see measured dt x {scale:g})"))
    robot, spec_hash = meta.get("robot"), meta.get("spec_hash")
    rows.append(("robot spec", f"{robot or '(no robot name)'}, layout hash {spec_hash}" if spec_hash
                 else "not recorded (any spec with matching sizes is accepted)"))
    labels = meta.get("obs_labels") or [f"obs[{i}]" for i in range(I)]
    mean, std = p["obs_mean"], p["obs_std"]
    for i, label in enumerate(labels):
        rows.append(("observation" if i == 0 else "", f"{i:3d}  {label:<40s} mean {mean[i]:+.4g}  std {std[i]:.4g}"))
    layout = meta.get("layout") or {}
    action = layout.get("action") or {}
    scales = action.get("scale") or [None] * A
    for i, name in enumerate(meta.get("action_labels") or [f"action[{i}]" for i in range(A)]):
        scale = f"  scale {scales[i]:g}" if i < len(scales) and scales[i] is not None else ""
        rows.append(("action" if i == 0 else "", f"{i:3d}  {name}{scale}"
                     + (f"  -> {action['type']}" if i == 0 and action.get("type") else "")
                     + (f" ({action['interface']} interface)" if i == 0 and action.get("interface") else "")))
    prov = meta.get("provenance") or {}
    for i, key in enumerate(k for k in ("command", "seed", "version", "created", "git_commit", "source",
                                        "ncps_class", "ncps_version", "ncps_trained_timespan", "env_steps",
                                        "eval_return") if k in prov):
        rows.append(("provenance" if i == 0 else "", f"{key}: {prov[key]}"))
    return rows


def describe_robot(robot: str) -> list[tuple[str, str]]:
    """(label, text) lines: a robot spec's rates, observation, action, safety settings and task terms."""
    from liquid_control.core.spec import load_spec
    from liquid_control.sim.commands import parse_commands
    from liquid_control.sim.tasks import TASKS, task_terms

    spec = load_spec(robot)
    rows = [("robot", f"{spec.name} ({spec.source}), layout hash {spec.hash}"),
            ("rate", f"{spec.rate_hz:g} Hz"),
            ("sizes", f"{spec.obs_size} observations -> {spec.action_size} actions")]
    lines = []
    for e in spec.observation:
        for k, label in enumerate(e.labels()):
            j = k % len(e.names)  # sincos gives two labels per name
            lines.append(label + (f"  clip [{e.clip[0][j]:g}, {e.clip[1][j]:g}]" if e.clip else ""))
    rows += [("observation" if i == 0 else "", f"{i:3d}  {line}") for i, line in enumerate(lines)]
    a = spec.action
    drives = (f"ros2_control {a.interface} interface" if a.interface else "the model's actuators (MJCF <actuator>)")
    rows.append(("command", f"{a.topic} ({a.msg_type}): {drives}"))
    rows += [("action" if i == 0 else "", f"{i:3d}  {name}  scale {s:g}, limits [{lo:g}, {hi:g}]")
             for i, (name, s, lo, hi) in enumerate(zip(a.names, a.scale, a.lower, a.upper))]
    sf = spec.safety
    own = {e.topic: e.timeout for e in spec.observation if e.timeout is not None}
    rows.append(("safety", f"sensors stale after {sf.sensor_timeout:g} s"
                           + "".join(f", {t} after {v:g} s" for t, v in own.items())
                           + f"; soft start {sf.soft_start:g} s; safe behaviour {sf.safe_behaviour}"))
    rows += [("commands" if i == 0 else "", f"{n}: drawn in [{lo:g}, {hi:g}] per episode")
             for i, (n, (lo, hi)) in enumerate(parse_commands(spec.sim).items())]
    terms = task_terms(spec.sim)
    name = spec.sim.get("task")
    if terms is None:
        doc = (TASKS[name or "none"].__doc__ or "").strip().splitlines()[0]
        rows.append(("task", f"{name or 'none'} (Python: {doc})"))
        return rows
    rows.append(("task", f"preset {name!r} as terms" if name else "terms from the spec"))
    for kind in ("reset", "reward", "termination"):
        lines = [t.describe() for t in terms[kind]] or ["(none)"]
        rows += [(kind if i == 0 else "", line) for i, line in enumerate(lines)]
    return rows


def run(args: argparse.Namespace) -> int:
    from liquid_control.core.artifact import read_artifact
    from liquid_control.core.errors import LiquidControlError

    if args.robot is not None:
        if args.model is not None or args.json:
            raise LiquidControlError("give either MODEL or --robot, not both (--json applies to a MODEL)")
        for label, text in describe_robot(args.robot):
            print(f"{label:<12s} {text}")
        return 0
    if args.model is None:
        raise LiquidControlError("give a policy artifact (MODEL) or --robot NAME")
    artifact = read_artifact(args.model)
    if args.json:
        print(json.dumps(artifact.meta, indent=2, sort_keys=True))
        return 0
    for label, text in describe(artifact):
        print(f"{label:<12s} {text}")
    return 0
