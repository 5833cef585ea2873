"""Helpers shared by the demo, benches and tests for `streamrec` child processes (the Redis lease is exercised by
every integration test through the `redis_test_url` fixture)."""

from __future__ import annotations

import socket
import subprocess
import sys

from contracts import Settings
from streamrec.child_processes import free_port, terminate, worker_env


def test_free_port_can_be_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_worker_env_points_at_the_settings_and_extras_win() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:2/9", topic_prefix="p")
    env = worker_env(settings, 1234, STREAMREC_MAX_WAIT_MS="5")
    assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "127.0.0.1:1"
    assert env["STREAMREC_REDIS_URL"] == "redis://127.0.0.1:2/9"
    assert env["STREAMREC_TOPIC_PREFIX"] == "p"
    assert env["STREAMREC_WEB_PORT"] == "1234"
    assert env["STREAMREC_MAX_WAIT_MS"] == "5"
    assert "PATH" in env  # the rest of this process's environment is kept


def test_terminate_kills_a_child_that_ignores_sigterm() -> None:
    ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    code = f"{ignore}; import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    terminate(proc, timeout=0.5)
    assert proc.returncode == -9  # SIGTERM ignored, so SIGKILL after the timeout
    proc.stdout.close()


def test_terminate_stops_a_child_gracefully_and_ignores_one_that_has_exited() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    terminate(proc)
    assert proc.returncode == -15
    terminate(proc)  # already exited: nothing to do, no error
