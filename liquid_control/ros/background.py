"""Running ROS 2 pieces beside the main work: a node spun by a background thread, and child processes.

Used by the demo, the benchmarks and the tests, which all start nodes in separate processes and watch
them from a small in-process node.

`BackgroundNode` has its own rclpy Context, so several of them (and the code around them) never share
global rclpy state. `ChildProcess` runs a command in its own process group with its output in a log
file, and stops it the way a terminal would (SIGINT: a clean shutdown), then SIGKILL if it hangs.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


class BackgroundNode:
    """An rclpy node on its own Context, spun by a daemon thread until `close()`."""

    def __init__(self, name: str, domain_id: int | None = None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        if domain_id is None:
            rclpy.init(context=self.context)
        else:
            rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # the context was shut down under us by close()
            pass

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def interruptible() -> None:
    """For a child about to be stopped with SIGINT: give it the default SIGINT disposition. A shell starts
    background jobs (`make test &`, nohup) with SIGINT ignored, which every child would inherit, and then
    an interrupt asked for never arrives (Python installs no KeyboardInterrupt handler then)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ChildProcess:
    """A command in its own process (group), output to `<log_dir>/<name>.log`."""

    def __init__(self, argv: list[str], name: str, log_dir: str | Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None):
        self.argv, self.name, self.env, self.cwd = argv, name, env, cwd
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "ChildProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True, preexec_fn=interruptible)
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        """Wait until the log matches the regex `pattern`; TimeoutError, or ChildProcessError if it exits first."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.output())
            if m:
                return m
            if not self.alive():
                raise ChildProcessError(f"{self.name} exited ({self.proc.returncode}) before printing "
                                        f"{pattern!r}; log {self.log_path}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not print {pattern!r} within {timeout} s; "
                                   f"log {self.log_path}:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (a clean shutdown), then SIGKILL of its process group if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ChildProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
