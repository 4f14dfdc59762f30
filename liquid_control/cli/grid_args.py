"""`liquid-control sweep` arguments: the seeds (`0-4`, `0,3,7`) and the grid (`lr=1e-3,3e-4 units=16,32`).

Grid keys are the fields of PPOConfig, i.e. the options of `liquid-control train` (with _ or -); each value is
parsed with the field's type as the option would parse it (cli/config_args.py), and a field's "off" value
stands for None as it does there (target_kl=0: no early stop). Values the config refuses (units=0) are not
caught here: that trial fails and the sweep reports it in its row.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

from liquid_control.cli.config_args import _parser_type, cli_fields
from liquid_control.core.errors import LiquidControlError
from liquid_control.learning.ppo_config import PPOConfig

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' and '0-2,9' too. Each seed once, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise LiquidControlError(f"--seeds {text!r}: expected seeds as N, A-B (A <= B) or a comma list of them")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def _value(name: str, text: str) -> Any:
    """One grid value as the field's type ('off' values, e.g. target_kl=0, stand for None as on the command line)."""
    f = next(f for f in cli_fields(PPOConfig) if f.name == name)
    kind = _parser_type(PPOConfig, f)
    try:
        if kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            value: Any = text.lower() in _TRUE
        else:
            value = kind(text)
    except ValueError:
        raise LiquidControlError(f"--grid {name}={text!r}: not a{'n' if kind is int else ''} {kind.__name__}") from None
    return None if "off" in f.metadata and value == f.metadata["off"] else value


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """['lr=1e-3,3e-4', 'units=16,32'] -> {'lr': [0.001, 0.0003], 'units': [16, 32]}: keys checked against
    PPOConfig's fields (an unknown one is an error naming the closest), values parsed with the field's type."""
    names = [f.name for f in cli_fields(PPOConfig) if f.name != "seed"]
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise LiquidControlError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. lr=1e-3,3e-4)")
        if name == "seed":
            raise LiquidControlError("--grid seed: the seeds are given with --seeds, not in the grid")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise LiquidControlError(f"--grid: unknown setting {key.strip()!r}{hint}; the keys are the settings of "
                                     "`liquid-control train` (PPOConfig fields)")
        if name in grid:
            raise LiquidControlError(f"--grid: {name} given twice")
        grid[name] = [_value(name, v.strip()) for v in values.split(",")]
    return grid


