"""The dashboard in a real headless browser (Debian chromium via Selenium) against a real `streamrec worker`.

Replays a user's events through the real broker, loads the page, checks that a recommendation with its
explanation is shown (evidence highlighted in the history), replays one more event, and checks the page
updates to the new trigger. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from contracts import Event, EventType, Item, Settings
from streamrec.child_processes import free_port, terminate, worker_env
from streamrec.commands.replay import replay
from streams.kafka_clients import client_kwargs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER = "dash-u1"
T0 = datetime.now(UTC) - timedelta(hours=3)


def _catalog() -> list[Item]:
    names = ["red enamel mug", "blue enamel mug", "tea towel set", "teapot", "cake tin", "jam jar", "apron", "trivet"]
    return [
        Item(item_id=f"d{i}", title=name.title(), category=name.split()[-1], ts=T0 - timedelta(days=1))
        for i, name in enumerate(names)
    ]


def _events() -> list[Event]:
    """Other users make co-occurrence and popularity; USER views, carts and buys mugs and tea things."""
    out: list[Event] = []
    for u in range(6):
        for k, item in enumerate(["d0", "d1", "d3", "d2"]):
            out.append(Event(event_id=f"o{u}-{k}", user_id=f"dash-o{u}", item_id=item, type=EventType.VIEW,
                             ts=T0 + timedelta(minutes=u, seconds=k)))  # fmt: skip
    plan = [("d0", EventType.VIEW), ("d1", EventType.VIEW), ("d0", EventType.ADD_TO_CART), ("d3", EventType.CLICK)]
    for k, (item, kind) in enumerate(plan):
        out.append(Event(event_id=f"u-{k}", user_id=USER, item_id=item, type=kind, ts=T0 + timedelta(minutes=30 + k)))
    return out


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def worker(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    """A real `streamrec worker` on this test's topics and Redis DB; yields (settings, web port)."""
    settings, port = settings_factory(), free_port()
    env = worker_env(
        settings,
        port,
        STREAMREC_MODEL_DIR=str(tmp_path / "no-models"),  # empty store: the baseline blend serves
        STREAMREC_MAX_WAIT_MS="5",
    )
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "streamrec", "worker", "--loglevel", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait("the worker's /healthz", lambda: _get_json(f"http://127.0.0.1:{port}/healthz")["status"] == "ok")
        yield settings, port
    finally:
        terminate(proc)
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "worker.log", ARTIFACTS / "dashboard-worker.log")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven through Debian's chromedriver (no driver or browser download)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium/chromedriver missing: `bash scripts/bootstrap.sh` as root installs them with apt")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _text_of_first_explanation(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    whys = driver.find_elements(By.CSS_SELECTOR, "#recs li .why")
    return str(whys[0].text) if whys else ""


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `streamrec ARGS` against this test's topics and Redis DB."""
    env = dict(os.environ, COLUMNS="400")
    env.update(
        STREAMREC_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        STREAMREC_REDIS_URL=settings.redis_url.get_secret_value(),
        STREAMREC_REDIS_CLUSTER="true" if settings.redis_cluster else "false",
        STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
    )
    cmd = [sys.executable, "-m", "streamrec", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=True)


async def test_dashboard_shows_explained_recommendations_and_updates(
    worker: tuple[Settings, int], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings, port = worker
    base = f"http://127.0.0.1:{port}"
    events = _events()
    await replay(settings, events, rate=0, items=_catalog())
    _wait(
        "the first recommendation for the user",
        lambda: (
            (_get_json(f"{base}/api/dashboard/users/{USER}")["recommendation"] or {}).get("trigger_event_id") == "u-3"
        ),
    )

    with urllib.request.urlopen(f"{base}/dashboard") as r:  # noqa: S310 - loopback; without the slash too
        assert b"/dashboard/app.js" in r.read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{base}/dashboard/..%2Fweb.py")  # noqa: S310 - only the three page files are served
    browser.get(f"{base}/dashboard/?user={USER}")
    WebDriverWait(browser, 30).until(lambda d: _text_of_first_explanation(d) != "")
    why = _text_of_first_explanation(browser)
    served = _get_json(f"{base}/api/dashboard/users/{USER}")["recommendation"]
    assert why == served["items"][0]["explanation"]["text"] and len(why) > 10, (why, served["items"][0])
    assert browser.find_element(By.ID, "trigger").get_attribute("data-event-id") == "u-3"
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#recs li .rec-title")]
    assert titles and all(titles), titles
    assert browser.find_elements(By.CSS_SELECTOR, "#history li.is-evidence"), "no evidence highlighted in the history"
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "total-events").text not in ("", "–", "0"))
    # A record that is not JSON: the dead-letter table shows its reason.
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.events, b"\xffnot json", key=b"dash-bad")
    finally:
        await producer.stop()
    WebDriverWait(browser, 60).until(lambda d: "undecodable" in d.find_element(By.ID, "dead-letters").text)
    assert browser.find_element(By.ID, "total-dead").text == "1"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-1.png"))

    # The next event goes in through the `streamrec replay` command, from a canonical events file.
    newer = Event(event_id="u-4", user_id=USER, item_id="d4", type=EventType.ADD_TO_CART, ts=T0 + timedelta(hours=1))
    with gzip.open(tmp_path / "events.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(newer.model_dump_json() + "\n")
    replayed = _cli(settings, "replay", str(tmp_path), "--rate", "10", "--no-catalog")
    assert "1 events" in replayed.stderr, replayed.stderr
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "trigger").get_attribute("data-event-id") == "u-4")
    assert _text_of_first_explanation(browser) != ""
    assert "Cake Tin" in browser.find_element(By.ID, "history").text  # the new event, with its title
    browser.save_screenshot(str(ARTIFACTS / "dashboard-2.png"))

    # `streamrec tail` shows the same recommendation in the terminal: trigger, titles, reason text, evidence.
    tail = _cli(settings, "tail", "--from-beginning", "--user", USER, "--idle-exit", "10").stdout
    assert f"user {USER}" in tail and "add_to_cart d4 Cake Tin" in tail, tail
    latest = _get_json(f"{base}/api/dashboard/users/{USER}")["recommendation"]
    assert latest["trigger_event_id"] == "u-4"
    assert latest["items"][0]["explanation"]["text"] in tail, tail  # wide terminal: no wrapping
    assert "reasons: " in tail and "evidence: " in tail, tail
