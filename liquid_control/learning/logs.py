"""What a run records besides its weights: the metrics CSV (and TensorBoard when installed), the
learning-curve plot, and the command line for provenance."""
from __future__ import annotations

import csv
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np


class CSVLog:
    """Append-only CSV; on resume the rows already written stay and new ones follow. When TensorBoard is
    installed the same scalars also go to <folder>/tb (`tensorboard --logdir <folder>/tb`)."""

    def __init__(self, path: Path, fields: list[str], step_key: str = "step"):
        self.path, self.fields, self.step_key = Path(path), fields, step_key
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

            self._tb = SummaryWriter(log_dir=str(self.path.parent / "tb"))
        except ImportError:
            self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._f.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != self.step_key and isinstance(v, (int, float)) and np.isfinite(v):
                    self._tb.add_scalar(k, v, int(row[self.step_key]))

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def truncate_csv(path: Path, max_step: int, key: str = "step") -> None:
    """Drop rows past `max_step` (written after the checkpoint a resumed run restarts from)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else None
    if not fields:
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(r for r in rows if r.get(key) and int(float(r[key])) <= max_step)


def plot_learning_curve(csv_path: Path, png_path: Path, title: str = "") -> Path | None:
    """Eval return (mean +- std) and training episode return against env steps."""
    rows = list(csv.DictReader(open(csv_path, newline=""))) if Path(csv_path).exists() else []
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def col(name: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "", "nan")]
        a = np.array(pts) if pts else np.zeros((0, 2))
        return a[:, 0], a[:, 1]

    fig, ax = plt.subplots(figsize=(7, 4))
    s, v = col("train_return")
    if len(s):
        ax.plot(s, v, color="0.6", lw=1, label="training episodes (mean)")
    s, m = col("eval_mean")
    if len(s):
        _, sd = col("eval_std")
        ax.plot(s, m, "o-", color="C0", label="eval, deterministic (mean ± std)")
        if len(sd) == len(m):
            ax.fill_between(s, m - sd, m + sd, color="C0", alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)


def command_line() -> str:
    """The command as the user typed it (for provenance): `liquid-control train ...`."""
    prog = Path(sys.argv[0]).name
    if prog in ("__main__.py", "main.py"):
        prog = "liquid-control"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])
