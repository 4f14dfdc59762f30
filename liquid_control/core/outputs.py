"""Files this project writes and reads, handled so that an output never destroys an input.

- `check_paths`: before anything is read, every output is resolved (symlinks followed) and refused if it
  is, or lies inside, one of the command's inputs (`replay BAG --csv BAG/x.mcap`), or another output.
- `AtomicFile`: an output is written to a private temporary file in its target folder, created
  exclusively (mkstemp: O_EXCL, mode 0600, an unpredictable name, so a planted symlink is never
  followed), and renamed over the target only when complete; on failure it is removed.
- `regular_file`: an input that must be a file is refused up front when it is a FIFO, a device, a
  socket or a directory (reading /dev/zero or a FIFO would never end).
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Mapping

from liquid_control.core.errors import LiquidControlError


class OutputError(LiquidControlError):
    """An output path that would overwrite an input (or another output), or cannot be written."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def check_paths(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None]) -> None:
    """Raise OutputError if an output (by option name, e.g. '--csv') is an input, lies inside one
    (inputs may be folders, e.g. a bag), contains one, or is the same file as another output."""
    ins = {name: _real(p) for name, p in inputs.items() if p is not None}
    seen: dict[Path, str] = {}
    for name, p in outputs.items():
        if p is None:
            continue
        out = _real(p)
        for in_name, src in ins.items():
            if out == src or src in out.parents:
                raise OutputError(f"{name} {p} would overwrite the input {in_name} {inputs[in_name]}")
            if out in src.parents:
                raise OutputError(f"{name} {p} is a folder holding the input {in_name} {inputs[in_name]}")
        if out in seen:
            raise OutputError(f"{name} and {seen[out]} are the same file {p}")
        seen[out] = name


def regular_file(path: str | Path, what: str) -> Path:
    """`path` if it is a regular file (after symlinks); LiquidControlError naming `what` otherwise."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LiquidControlError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise LiquidControlError(f"cannot read {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise LiquidControlError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise LiquidControlError(f"{what} {path} is not a regular file (a FIFO, device or socket)")
    return path


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


class AtomicFile:
    """`with AtomicFile(path, "w") as f: f.write(...)`: the target appears complete or not at all.

    The temporary file is `.NAME.XXXXXXXX.partial` in the target's folder, mode 0600 until it is renamed;
    the target then gets the usual mode (0666 less the umask).
    """

    def __init__(self, path: str | Path, mode: str = "w", **open_kwargs: Any) -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFile writes whole files: mode 'w' or 'wb', not {mode!r}")
        self.path = Path(path)
        self._mode, self._kwargs = mode, open_kwargs
        self.tmp: Path | None = None
        self._file: IO | None = None

    def __enter__(self) -> IO:
        return self.open()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(ok=exc_type is None)

    def open(self) -> IO:
        """Create the private temporary file and return it open for writing."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=folder)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, self._mode, **self._kwargs)
        return self._file

    def close(self, ok: bool) -> None:
        """Rename the finished file over the target (ok), or remove it (not ok)."""
        assert self._file is not None and self.tmp is not None
        self._file.close()
        if not ok:
            self.tmp.unlink(missing_ok=True)
            return
        try:
            os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None


def write_file(path: str | Path, data: bytes | str) -> Path:
    """Write a small output (JSON, CSV) whole, through AtomicFile."""
    with AtomicFile(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
