"""The emulator in a process of its own, for benchmarks: like a real provider, it does not
share the client's interpreter (and its GIL). Same shape as ``EmulatorServer`` where it counts:
``.url``, ``.approve()``, ``.stats()``, plus ``.configure()`` and ``.add_fault()`` over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any


class EmulatorProcess:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.url = ""
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "EmulatorProcess":
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "console.emulator", "--host", self.host, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            if line.strip().startswith("base URL"):
                self.url = line.split()[-1]
                break
        while self.url and time.monotonic() < deadline:
            try:  # the banner comes before the server accepts connections
                self._call("GET", "/_emulator/health")
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the emulator process did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def approve(self, authorize_url: str, email: str | None = None) -> dict:
        return self._call("POST", "/_emulator/approve", {"url": authorize_url, **({"email": email} if email else {})})

    def stats(self) -> dict:
        return self._call("GET", "/_emulator/stats")

    def configure(self, **changes: Any) -> dict:
        return self._call("POST", "/_emulator/config", changes)

    def add_fault(self, endpoint: str, status: int, count: int = 1, retry_after: float | None = None) -> dict:
        body = {"endpoint": endpoint, "status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        return self._call("POST", "/_emulator/faults", body)

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})
