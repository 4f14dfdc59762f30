"""Checkpoint files: written atomically, read back with weights_only=True (tensors and plain data only)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.learning.errors import TrainingError


def plain_state(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into torch tensors and Python numbers: what
    torch.load(weights_only=True) reads back (it refuses anything that would need code to rebuild)."""
    import torch

    if isinstance(value, dict):
        return {k: plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_state(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash or Ctrl-C mid-write never leaves a torn checkpoint.
    Only tensors and plain data are written, so loading never runs code (weights_only)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(plain_state(state), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's tensors and plain data, read with weights_only=True: a crafted pickle is refused
    before any of its code runs."""
    import pickle

    import torch

    path = Path(path)
    if path.exists() and not path.is_file():
        raise TrainingError(f"checkpoint {path} is not a regular file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise TrainingError(f"checkpoint {path} holds more than tensors and plain data, refused unread "
                                f"(it would call {found.group(1)})") from None
        raise TrainingError(f"cannot read checkpoint {path}: not a torch checkpoint of tensors and plain data") from None
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise TrainingError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state
