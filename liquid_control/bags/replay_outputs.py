"""What a replay writes, tick by tick: a CSV, a plot, a bag of the replayed commands (sinks; the bag's
command messages come from bags/codecs.py). Each sink receives every ReplayTick and streams; close(ok) finishes
the file (renamed into place) or drops it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.bags.codecs import CommandSerializer
from liquid_control.bags.io import BAG_COMMAND_QOS, BagReader, BagWriter, RawMessage
from liquid_control.core.control import STEPPED
from liquid_control.core.observation import Fault
from liquid_control.core.outputs import AtomicFile
from liquid_control.core.spec import RobotSpec


def hidden_state(policy: Any) -> np.ndarray | None:
    """The policy's hidden state vector, if it exposes one (for traces)."""
    for name in ("state", "h", "hidden"):
        h = getattr(policy, name, None)
        if isinstance(h, np.ndarray):
            return h.reshape(-1)
    return None


@dataclass
class ReplayTick:
    t_ns: int  # tick time in the time base
    t: float  # seconds since the replay's first tick
    obs: np.ndarray
    fault: Fault | None
    action: np.ndarray | None  # policy output (None when faulted)
    command: np.ndarray  # what the node would have published
    recorded: np.ndarray | None  # the latest recorded command at or before t_ns
    h: np.ndarray | None
    status: int = STEPPED  # core.control's STEPPED / SAFE_*


class CsvSink:
    """One row per tick, floats in repr (exact round trip). Written to a temporary file, renamed at end."""

    def __init__(self, path: Path, spec: RobotSpec, state_size: int):
        self.path = Path(path)
        self.out = AtomicFile(self.path, "w", newline="")
        self.f = self.out.open()
        names = list(spec.action.names)
        cols = (["t", "fault"] + [f"obs:{label}" for label in spec.obs_labels()] + [f"action:{n}" for n in names]
                + [f"command:{n}" for n in names] + [f"recorded:{n}" for n in names] + [f"h{i}" for i in range(state_size)])
        self.nan_a = [math.nan] * len(names)
        self.nan_h = [math.nan] * state_size
        self.f.write(",".join(cols) + "\n")

    def tick(self, k: ReplayTick) -> None:
        fault = f"{k.fault.kind}:{k.fault.topic}" if k.fault else ""
        values = [k.t, *k.obs.tolist(), *(self.nan_a if k.action is None else k.action.tolist()), *k.command.tolist(),
                  *(self.nan_a if k.recorded is None else k.recorded.tolist()), *(self.nan_h if k.h is None else k.h.tolist())]
        self.f.write(f"{values[0]!r},{fault}," + ",".join(map(repr, values[1:])) + "\n")

    def close(self, ok: bool) -> None:
        self.out.close(ok)


class PlotSink:
    """Keeps an evenly decimated trace (at most ~max_points ticks) and draws it at the end (Agg)."""

    def __init__(self, path: Path, spec: RobotSpec, expected_ticks: int, max_points: int = 4000, max_units: int = 8):
        self.path, self.spec = Path(path), spec
        self.stride = max(1, expected_ticks // max_points)
        self.max_units = max_units
        self.n = 0
        self.rows: dict[str, list] = {k: [] for k in ("t", "obs", "action", "command", "recorded", "h", "fault")}

    def tick(self, k: ReplayTick) -> None:
        self.n += 1
        if (self.n - 1) % self.stride and k.fault is None:
            return  # keep every stride-th tick, and every faulted one (capped below)
        if k.fault is not None and len(self.rows["t"]) > 20 * 4000:
            return
        na = np.full(self.spec.action_size, np.nan)
        r = self.rows
        r["t"].append(k.t)
        r["obs"].append(k.obs.copy())
        r["action"].append(na if k.action is None else k.action.copy())
        r["command"].append(k.command.copy())
        r["recorded"].append(na if k.recorded is None else k.recorded.copy())
        r["h"].append(None if k.h is None else k.h[: self.max_units].copy())
        r["fault"].append(k.fault is not None)

    def close(self, ok: bool) -> None:
        if not ok or not self.rows["t"]:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        r, spec = self.rows, self.spec
        t = np.asarray(r["t"])
        has_h = r["h"][0] is not None
        fig, axes = plt.subplots(3 if has_h else 2, 1, sharex=True, figsize=(11, 8 if has_h else 6))
        obs = np.asarray(r["obs"])
        for i, label in enumerate(spec.obs_labels()):
            axes[0].plot(t, obs[:, i], lw=0.8, label=label)
        axes[0].set_ylabel("observation")
        axes[0].legend(fontsize=7, loc="upper right")
        cmd, rec = np.asarray(r["command"]), np.asarray(r["recorded"])
        for i, name in enumerate(spec.action.names):
            line = axes[1].plot(t, cmd[:, i], lw=0.9, label=f"policy {name}")[0]
            if np.isfinite(rec[:, i]).any():
                axes[1].plot(t, rec[:, i], lw=0.9, ls="--", color=line.get_color(), alpha=0.7, label=f"recorded {name}")
        faulted = np.asarray(r["fault"])
        if faulted.any():
            axes[1].fill_between(t, 0, 1, where=faulted, transform=axes[1].get_xaxis_transform(), color="red",
                                 alpha=0.15, label="fault (safe command)")
        axes[1].set_ylabel("command")
        axes[1].legend(fontsize=7, loc="upper right")
        if has_h:
            h = np.asarray([x if x is not None else np.full(len(r["h"][0]), np.nan) for x in r["h"]])
            for i in range(h.shape[1]):
                axes[2].plot(t, h[:, i], lw=0.7)
            axes[2].set_ylabel(f"hidden state (first {h.shape[1]})")
        axes[-1].set_xlabel("bag time since first tick [s]")
        fig.suptitle(f"replay: {spec.name} at {spec.rate_hz:g} Hz")
        fig.tight_layout()
        with AtomicFile(self.path, "wb") as f:
            fig.savefig(f, dpi=110, format=self.path.suffix.lstrip(".").lower() or "png")
        plt.close(fig)


class BagSink:
    """The replayed commands as a new bag (optionally beside the bag's own topics, copied raw)."""

    def __init__(self, path: Path, spec: RobotSpec, reader: BagReader, *, storage: str, command_topic: str,
                 copy_topics: list[str], version: int | str | None = None):
        self.writer = BagWriter(path, storage=storage, typestore=reader.typestore, version=version)
        self.serializer = CommandSerializer(spec, reader.typestore)
        self.topic = command_topic
        self.copy = set()
        self.notes: list[str] = []
        try:
            for name in copy_topics:
                t = reader.topics[name]
                if t.msgtype not in reader.typestore.fielddefs:  # no definition anywhere: cannot describe it
                    self.notes.append(f"not copied to the output bag: {name} ({t.msgtype}: no message definition)")
                    continue
                self.writer.add_topic_like(t, reader.typestore)
                self.copy.add(name)
            self.writer.add_topic(command_topic, spec.action.msg_type, qos=(BAG_COMMAND_QOS,))
        except BaseException:
            self.writer.abort()
            raise

    def raw(self, m: RawMessage) -> None:
        if m.topic in self.copy:
            self.writer.write(m.topic, m.log_time_ns, m.data)

    def tick(self, k: ReplayTick) -> None:
        self.writer.write(self.topic, k.t_ns, self.serializer.serialize(k.command, k.t_ns))

    def close(self, ok: bool) -> None:
        if ok:
            self.writer.close()
        else:
            self.writer.abort()
