"""Process figures for the scale benchmark: CPU time and memory from /proc, and py-spy.

CPU is utime + stime of /proc/<pid>/stat (every thread of the process), read before and
after a phase; memory is VmRSS (now) and VmHWM (the peak) of /proc/<pid>/status. py-spy
samples the operator's Python stacks from outside (ptrace) and writes them collapsed
(`--format raw`: one `frame;frame;...;leaf count` line per distinct stack). Only the thread
holding the GIL is sampled (`--gil`): that is where the operator's Python CPU goes, while
idle thread-pool workers blocked in `queue.get` would otherwise fill the top of the table.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Profile", "PySpy", "cpu_seconds", "memory_mib", "pyspy_binary"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: How long py-spy gets to attach (or fail to) before the benchmark goes on.
ATTACH_WAIT_S = 1.5
#: Sampling rate: 100 Hz is py-spy's default and costs the target little.
RATE_HZ = 100


def cpu_seconds(*pids: int) -> float:
    """User + system CPU seconds consumed so far by these processes (0 for a gone one)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """{"rss": VmRSS, "peak": VmHWM} in MiB (NaN when unreadable)."""
    out = {"rss": float("nan"), "peak": float("nan")}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
    return out


def pyspy_binary(install: bool) -> tuple[Path | None, str]:
    """py-spy next to this interpreter (pip-installed into the venv when missing and
    `install`), or on PATH; (None, why) when there is none."""
    local = Path(sys.executable).parent / "py-spy"
    if not local.exists() and install and shutil.which("py-spy") is None:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "py-spy"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return None, f"pip install py-spy failed: {result.stderr.strip()[-500:]}"
    if local.exists():
        return local, ""
    found = shutil.which("py-spy")
    return (Path(found), "") if found else (None, "py-spy not found")


@dataclass
class Profile:
    """Collapsed stacks summed by frame (line numbers dropped: a frame is a function)."""

    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    @classmethod
    def parse(cls, text: str) -> Profile:
        profile = cls()
        for line in text.splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_function(f) for f in stack.split(";") if f]
            if not frames:
                continue
            profile.samples += count
            profile.own[frames[-1]] += count
            for frame in set(frames):
                profile.inclusive[frame] += count
        return profile

    def table(self, counter: Counter[str], top: int) -> list[str]:
        return [
            f"  {100 * n / max(1, self.samples):5.1f} %  {frame}"
            for frame, n in counter.most_common(top)
        ]


def _function(frame: str) -> str:
    """`handler (helmdeck_operator/x.py:42)` -> `handler (helmdeck_operator/x.py)`."""
    head, sep, tail = frame.rpartition(":")
    if sep and tail.endswith(")") and tail[:-1].isdigit():
        return head + ")"
    return frame


class PySpy:
    """`py-spy record --format raw` on one pid, from `start()` until `stop()`."""

    def __init__(self, binary: Path, pid: int, output: Path) -> None:
        self.binary = binary
        self.pid = pid
        self.output = output
        self.log = output.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.failure = ""

    def start(self) -> bool:
        """Attach; False (and `failure` says why) when py-spy could not, e.g. no ptrace."""
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.binary), "record", "--pid", str(self.pid), "--format", "raw",
                    "--gil", "--rate", str(RATE_HZ), "--output", str(self.output),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + ATTACH_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.failure = self._log_tail() or f"py-spy exited with {self.proc.returncode}"
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> Profile | None:
        """End the recording (SIGINT makes py-spy write its output) and read it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.output.exists():
            self.failure = self.failure or self._log_tail() or "py-spy wrote no output"
            return None
        return Profile.parse(self.output.read_text(errors="replace"))

    def _log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return " ".join(text.split())[-400:]
