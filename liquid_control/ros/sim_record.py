"""What a sim bridge run keeps: its statistics, the state trace, and the outputs it was asked for.

    record:=PATH   a rosbag2 (MCAP) of the sensor messages, the commands received and /clock, each logged at
                   the stamp of the latest published state (sim time in lockstep, the node's clock in realtime)
    summary:=PATH  the statistics and the state trace as JSON, when the run ends
    video:=PATH    a .gif or .mp4 of the run (offscreen rendering: liquid_control.sim.gl picks the GL backend)
"""
from __future__ import annotations

import array
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class BridgeStats:
    sim_time: float = 0.0  # physics seconds simulated
    wall_time: float = 0.0  # from the first tick (lockstep: the first answered one) to the end
    startup_wait: float = 0.0  # lockstep: wall seconds before that (the controller appearing, pre-roll)
    ticks: int = 0
    preroll_ticks: int = 0  # lockstep: times the clock moved before the first answer (PREROLL_HOLD_S each)
    commands: int = 0
    commands_ignored: int = 0
    command_timeouts: int = 0
    overruns: int = 0  # realtime: ticks that came a whole period late
    pushes: int = 0
    resets: int = 0
    answer_wait: float = 0.0  # lockstep: wall seconds spent waiting for commands (the controller's share)
    trace: dict[str, list[float]] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        return self.sim_time / self.wall_time if self.wall_time > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "trace"}
        out["real_time_factor"] = self.real_time_factor
        return out


class TraceRecorder:
    """The state trace of a run (sim time, stamp, qpos, qvel, command and the sim's commands, i.e. MjData.userdata,
    per published state), kept in flat
    typed arrays while it runs: appending copies a few bytes, and the collector never walks them (lists of
    per-tick lists cost a list each per tick, and gen-2 passes that grow with the run)."""

    def __init__(self) -> None:
        self.t, self.stamp_ns = array.array("d"), array.array("q")
        self.rows = {"qpos": array.array("d"), "qvel": array.array("d"), "command": array.array("d"),
                     "userdata": array.array("d")}
        self._qpos, self._qvel, self._command, self._userdata = self.rows.values()

    def add(self, t: float, stamp_ns: int, qpos: np.ndarray, qvel: np.ndarray, command: np.ndarray,
            userdata: np.ndarray) -> None:
        self.t.append(t)
        self.stamp_ns.append(stamp_ns)
        self._qpos.frombytes(qpos.tobytes())
        self._qvel.frombytes(qvel.tobytes())
        self._command.frombytes(command.tobytes())
        self._userdata.frombytes(userdata.tobytes())

    def as_dict(self) -> dict[str, list]:
        """{"t": [...], "stamp_ns": [...], "qpos": [[...], ...], "qvel": ..., "command": ..., "userdata": ...};
        {} if empty."""
        n = len(self.t)
        if n == 0:
            return {}
        out: dict[str, list] = {"t": self.t.tolist(), "stamp_ns": self.stamp_ns.tolist()}
        for name, flat in self.rows.items():
            out[name] = np.frombuffer(flat, dtype=np.float64).reshape(n, len(flat) // n).tolist()
        return out


class RunRecord:
    """The run's outputs: `keep()` once per published state, `log()` for a message the bridge received,
    `close()` once at the end. `bridge` is the SimBridge (its spec, mode, period, env, sensors, stats)."""

    def __init__(self, bridge: Any, *, summary: str, record: str, bag_version: int, video: str, video_fps: float):
        self._bridge, self._log = bridge, bridge.get_logger()
        self.now_ns = 0  # the stamp of the latest published state: the time the bag logs messages at
        self.summary_path = summary
        self._trace = TraceRecorder()  # into stats.trace when the run ends
        self._lock = threading.Lock()  # realtime: the command callback logs on the executor thread
        self.bag = None
        if record:
            self.bag = self._open_bag(Path(record), bag_version)
        self.video_path = video
        self._frames: list[np.ndarray] = []
        self._renderer = None
        if video:
            from liquid_control.sim.render import FrameRenderer

            self._renderer = FrameRenderer(bridge.env.model, width=480, height=360,
                                           camera=bridge.spec.sim.get("camera"))
            self._frame_every = max(1, int(round(1.0 / (video_fps * bridge.period))))

    def _open_bag(self, path: Path, version: int) -> Any:
        from liquid_control.bags.io import BAG_SENSOR_QOS, BagWriter

        bridge = self._bridge
        bag = BagWriter(path, version=version)
        for topic, msg_type in bridge.sensors.topics():
            bag.add_topic(topic, msg_type, qos=(BAG_SENSOR_QOS,))
        bag.add_topic(bridge.spec.action.topic, bridge.spec.action.msg_type)
        if bridge.mode == "lockstep":
            bag.add_topic("/clock", "rosgraph_msgs/msg/Clock")
        return bag

    def log(self, topic: str, data: bytes) -> None:
        """Log one serialized message at the current time (the bag must be open)."""
        with self._lock:
            self.bag.write(topic, self.now_ns, data)

    def keep(self) -> None:
        """What the run keeps of the state just published (bag, trace, video frame). The sensor fillers still
        hold what they published. Lockstep does this while the controller computes, off the tick's critical
        path."""
        bridge = self._bridge
        if self.bag is not None:
            for topic, data in bridge.sensors.published():
                self.log(topic, data)
        if self.summary_path:
            data = bridge.env.data
            self._trace.add(bridge.stats.sim_time, self.now_ns, data.qpos, data.qvel, bridge.env.command,
                            data.userdata)
        if self._renderer is not None and bridge.stats.ticks % self._frame_every == 0:
            self._frames.append(self._renderer.render(bridge.env.data))

    def close(self) -> None:
        """Close the bag, write the video and the summary."""
        bridge, stats = self._bridge, self._bridge.stats
        stats.trace = self._trace.as_dict()
        if self.bag is not None:
            path = self.bag.close()
            self._log.info(f"recorded {self.bag.count} messages to {path}")
        if self._renderer is not None and self._frames:
            from liquid_control.sim.render import write_video

            fps = 1.0 / (self._frame_every * bridge.period)
            out = write_video(self._frames, self.video_path, fps=fps)
            self._renderer.close()
            self._log.info(f"wrote {len(self._frames)} frames to {out}")
        if self.summary_path:
            path = Path(self.summary_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"robot": bridge.spec.name, "mode": bridge.mode, "period": bridge.period,
                                        **stats.summary(), "trace": stats.trace}) + "\n")
