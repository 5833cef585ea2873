"""`streamrec worker` on the real broker and Redis: every event has its effect once, every user is answered,
every malformed record is dead-lettered with its reason."""

from __future__ import annotations

import gzip
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts import Event, Settings
from streamrec.data_import import import_dataset
from tests.integration.dead_letter_support import Record, answered_with_dead_letters, bad_record, produce_with_bad
from tests.integration.worker_support import (
    WorkerPool,
    answered_exactly_once,
    generated_events,
    produce_events,
    wait_for_answers,
)

T0 = datetime.now(UTC) - timedelta(days=2)

MALFORMED: dict[str, Record] = {
    "undecodable": (b"\xff\xfe\x00binary", b"u1"),
    "schema_violation": bad_record(
        {"event_id": "m1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": T0.isoformat(), "price": "x"}
    ),
    "unknown_type": bad_record({"event_id": "m2", "user_id": "u1", "type": "teleport"}),
    "oversize": bad_record({"event_id": "m3", "pad": "x" * 20000}),
    "missing_item": bad_record({"event_id": "m4", "user_id": "u1", "type": "purchase", "ts": T0.isoformat()}),
    "future_timestamp": bad_record(
        {
            "event_id": "m5",
            "user_id": "u1",
            "item_id": "i1",
            "type": "view",
            "ts": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        }
    ),
    "naive_timestamp": bad_record(
        {"event_id": "m6", "user_id": "u1", "item_id": "i1", "type": "view", "ts": "2024-01-01T10:00:00"}
    ),
    "missing_key_field": bad_record({"user_id": "u1", "item_id": "i1", "type": "view"}),
    "key_mismatch": bad_record(
        {"event_id": "m8", "user_id": "u1", "item_id": "i1", "type": "view", "ts": T0.isoformat()}, key=b"u2"
    ),
}


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], subprocess.Popen[bytes]]]:
    """Start `streamrec worker` subprocesses; each is stopped (SIGTERM, then SIGKILL) after the test."""
    # A killed worker's partitions go to the next one after this session timeout (Faust default: 60 s).
    pool = WorkerPool(tmp_path, extra_env={"BROKER_SESSION_TIMEOUT": "10"})
    yield lambda settings: pool.start(settings).proc
    pool.stop_all()


async def test_worker_answers_every_user_and_dead_letters_every_malformed_record(
    settings_factory: Callable[..., Settings], start_worker: Callable[[Settings], subprocess.Popen[bytes]]
) -> None:
    settings = settings_factory()
    events = generated_events(3000)
    start_worker(settings)
    await produce_with_bad(settings, events, MALFORMED.values(), at=1500)
    recs, _ = await answered_with_dead_letters(settings, events, MALFORMED)
    own = {e.event_id: e.user_id for e in events}
    for user, answers in recs.items():
        for rec in answers:
            assert own[rec["trigger_event_id"]] == user
            for item in rec["items"]:
                assert item["explanation"]["text"]
                assert all(own[ev["event_id"]] == user for ev in item["explanation"]["evidence"])


@pytest.mark.slow
async def test_kill_9_mid_replay_then_restart_has_every_effect_exactly_once(
    settings_factory: Callable[..., Settings], start_worker: Callable[[Settings], subprocess.Popen[bytes]]
) -> None:
    settings = settings_factory()
    events = generated_events(20000, users=500, seed=5)
    await produce_events(settings, events)
    first = start_worker(settings)
    # Let it get part-way through, then kill it without warning.
    await wait_for_answers(settings, users=100, timeout_s=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    start_worker(settings)
    # ~150 events/s on a loaded 2-core box (bench/pipeline.py)
    await answered_exactly_once(settings, events, timeout_s=420)


@pytest.mark.shared_data
async def test_ten_thousand_taobao_events_through_the_worker(
    shared_data: Path,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    import_dataset("taobao", shared_data / "taobao_userbehavior", tmp_path / "tb")
    with gzip.open(tmp_path / "tb" / "events.jsonl.gz", "rt") as lines:
        events = [Event.model_validate_json(line) for _, line in zip(range(10000), lines, strict=False)]
    # Replay with event times shifted to now, keeping their spacing, so none is "from the future".
    shift = datetime.now(UTC) - timedelta(minutes=1) - max(e.ts for e in events)
    events = [e.model_copy(update={"ts": e.ts + shift}) for e in events]
    settings = settings_factory()
    start_worker(settings)
    await produce_with_bad(settings, events, MALFORMED.values(), at=len(events))
    await answered_with_dead_letters(settings, events, MALFORMED, timeout_s=240)
