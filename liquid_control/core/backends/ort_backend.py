"""The ONNX Runtime backend: runs the artifact's own graph, batch 1, on the CPU.

Latency settings: `threads` intra-op threads (1 by default: a batch-1 step is far too small to split, and
extra threads only add wake-up jitter on a robot computer), one inter-op thread, sequential execution,
all graph optimisations. Inputs and outputs are bound once to preallocated numpy buffers (I/O binding),
so a step copies the observation and state in, runs, and allocates nothing on the Python side.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from liquid_control.core.errors import ArtifactError

F = np.float32


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, artifact: Any, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # keep ORT's warnings about unused initializers off the console
        try:
            self.session = ort.InferenceSession(artifact.model_bytes, sess_options=so,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise ArtifactError(f"{artifact.path}: onnxruntime cannot load the model: {exc}".splitlines()[0]) from None
        cfg = artifact.cfg
        I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
        self.obs, self.dt, self.h = np.zeros((1, I), F), np.zeros((1, 1), F), np.zeros((1, N), F)
        self.action, self.h_out = np.zeros((1, A), F), np.zeros((1, N), F)
        self.obs1, self.h1 = self.obs[0], self.h[0]
        self.binding = self.session.io_binding()
        for name, buf in (("obs", self.obs), ("dt", self.dt), ("h_in", self.h)):
            self.binding.bind_input(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        for name, buf in (("action", self.action), ("h_out", self.h_out)):
            self.binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        self._run = self.session.run_with_iobinding
        self.action1, self.h_out1 = self.action[0], self.h_out[0]

    def step(self, obs: np.ndarray, dt: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        np.copyto(self.obs1, obs)
        self.dt[0, 0] = dt
        np.copyto(self.h1, h)
        self._run(self.binding)
        return self.action1, self.h_out1
