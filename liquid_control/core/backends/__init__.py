"""Policy backends. Each is a class `Backend(artifact)` with
`step(obs: float32 (I,), dt: float, h: float32 (N,)) -> (action (A,), h_new (N,))`; the returned arrays may be
internal buffers that the next step overwrites (Policy copies what it keeps).

numpy and onnxruntime live here (core layer); torch lives in liquid_control.learning.torch_backend and is
imported by name only when asked for, so the core never imports torch.
"""
from __future__ import annotations

from typing import Any

BACKENDS = ("numpy", "onnxruntime", "torch")


def make_backend(name: str, artifact: Any, threads: int = 1) -> Any:
    from liquid_control.core.errors import LiquidControlError

    if name == "numpy":
        from liquid_control.core.backends.numpy_backend import NumpyBackend

        return NumpyBackend(artifact)
    if name in ("onnxruntime", "ort"):
        from liquid_control.core.backends.ort_backend import OrtBackend

        return OrtBackend(artifact, threads=threads)
    if name == "torch":
        # The one place the core reaches up a layer: the torch backend needs torch, which a robot may not
        # have, so it lives with the torch cells (learning layer) and is imported lazily, only on request.
        try:
            from liquid_control.learning.torch_backend import TorchBackend
        except ImportError as exc:
            raise LiquidControlError(f"backend 'torch' is not available here ({exc})") from None
        return TorchBackend(artifact)
    raise LiquidControlError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
