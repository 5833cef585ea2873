"""Child processes and ports for `streamrec demo`: start, health-wait and stop in reverse order."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from streamrec.child_processes import terminate

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Procs", "free_port", "interrupt", "wait_http"]


@dataclass
class Procs:
    """Child processes started by the demo; stopped in reverse order (SIGTERM, then SIGKILL)."""

    console: Console
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - closed in stop_all
        # Own session: the terminal's Ctrl-C reaches only the demo, which then stops the children in order.
        proc = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, out))
        self.console.print(f"  started {name} (pid {proc.pid}, log {log})")
        return proc

    def check(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                msg = f"{name} exited with code {proc.returncode}; see its log"
                raise RuntimeError(msg)

    def stop_all(self) -> None:
        for name, proc, out in reversed(self.procs):
            if proc.poll() is None:
                terminate(proc)
                self.console.print(f"  stopped {name} (pid {proc.pid})")
            out.close()
        self.procs.clear()


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    msg = "no free port"
    raise RuntimeError(msg)


def wait_http(url: str, procs: Procs, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URL we built
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    msg = f"{url} did not answer within {timeout_s:.0f} s"
    raise RuntimeError(msg)
