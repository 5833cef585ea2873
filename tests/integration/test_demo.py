"""`streamrec demo --quick` (what `make demo QUICK=1` runs) end to end on the real stack: exits 0 and prints
recommendations with explanation text for replayed users, served by the freshly trained model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.child_processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_quick_demo_prints_explained_recommendations_and_stops_what_it_started(
    topic_prefix: str, redis_test_url: str, tmp_path: Path
) -> None:
    db = redis_test_url.rsplit("/", 1)[1]
    if os.environ.get("STREAMREC_TEST_REDIS_CLUSTER"):
        # The demo flushes the DB it is given on the stack's single Redis; the test cluster's URL names DB 0,
        # which is the user's (and holds the test leases). Never hand it over.
        pytest.skip("the demo's own DB lives on the single Redis; run it without STREAMREC_TEST_REDIS_CLUSTER")
    assert db != "0", "the demo flushes its DB: never the user's DB 0"
    cmd = [sys.executable, "-m", "streamrec", "demo", "--quick", "--prefix", topic_prefix, "--redis-db", db]
    cmd += ["--workdir", str(tmp_path), "--web-port", str(free_port())]
    env = dict(os.environ, COLUMNS="120", QUICK="")
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, check=False)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "demo-quick.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    # Panels of replayed users' recommendations: reason text (counted non-empty below), reasons, evidence.
    assert "reasons: " in out and "evidence: " in out
    assert re.search(r"worker serves (?:two-stage|transformer)-[0-9a-f]+", out), "the trained model was not served"
    summary = re.search(r"(\d[\d,]*) recommendations for (\d+) users \((\d[\d,]*) with explanation text", out)
    assert summary and int(summary.group(2)) > 0 and summary.group(3) != "0", out[-2000:]
    assert "stopped worker" in out
    assert "dashboard: http://127.0.0.1:" in out
