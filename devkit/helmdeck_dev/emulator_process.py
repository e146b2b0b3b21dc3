"""Run the OpenShell emulator as a subprocess.

Integration tests need a gateway that lives in its own process (it must survive an operator
restart, and faults are injected while the operator runs). `EmulatorProcess` starts
`python -m helmdeck_operator.emulator` on free ports, reads the one-line JSON it prints when
ready, and wraps the admin HTTP API with blocking helpers (each call is a quick loopback
request).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["EmulatorProcess"]

#: How long a started emulator may take to print its ready line (imports dominate).
START_TIMEOUT = 20.0


class EmulatorProcess:
    """An emulator subprocess; use as a context manager or call `start()` / `stop()`."""

    def __init__(self, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.admin_url = ""
        self._stderr: Any = None

    def stderr(self) -> str:
        """What the emulator wrote to stderr so far (for failure messages)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text: str = self._stderr.read()
        return text

    def start(self) -> EmulatorProcess:
        cmd = [sys.executable, "-m", "helmdeck_operator.emulator", "--port", "0"]
        cmd += ["--admin-port", "0", *self.args]
        # stderr goes to a file, not a pipe: nobody drains a pipe during a long test run.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, **(self.env or {})},
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"emulator did not start: {self.stderr()[-2000:]}")
        info = json.loads(line)
        self.address, self.admin_url = info["address"], info["admin_url"]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- admin API ----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.admin_url}{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/snapshot")
        return result

    def set_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/faults", spec)
        return result

    def clear_faults(self) -> None:
        self._request("DELETE", "/faults")

    def append_logs(self, workspace: str, name: str, lines: list[dict[str, Any]]) -> None:
        self._request("POST", f"/sandboxes/{workspace}/{name}/logs", {"lines": lines})

    def vanish(self, workspace: str, name: str) -> None:
        self._request("POST", f"/sandboxes/{workspace}/{name}/vanish", {})

    def error(self, workspace: str, name: str, message: str = "main process exited") -> None:
        self._request("POST", f"/sandboxes/{workspace}/{name}/error", {"message": message})
