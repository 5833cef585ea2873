"""`streamrec replay`: publish canonical events (and optionally the catalog) into Kafka at a given rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamrec.commands.common import parse_time

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from contracts import Event, Item, Settings

__all__ = ["ReplayStats", "parse_time", "register", "replay", "select_events"]

_SEND_WINDOW = 500  # in-flight sends awaited together (delivery is confirmed before `replay` returns)


@dataclass(frozen=True)
class ReplayStats:
    """What one replay published."""

    events: int
    items: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events per second achieved."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def select_events(
    events: Iterable[Event],
    *,
    users: Sequence[str] = (),
    max_users: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> Iterator[Event]:
    """Filter a time-ordered event stream: explicit users, or the first `max_users` users to appear; [since, until)."""
    wanted = set(users)
    seen: set[str] = set()
    n = 0
    for e in events:
        if wanted and e.user_id not in wanted:
            continue
        if max_users is not None and e.user_id not in seen:
            if len(seen) >= max_users:
                continue
            seen.add(e.user_id)
        if (since is not None and e.ts < since) or (until is not None and e.ts >= until):
            continue
        if limit is not None and n >= limit:
            return
        n += 1
        yield e


async def replay(
    settings: Settings,
    events: Iterable[Event],
    *,
    rate: float,
    items: Iterable[Item] = (),
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Publish `items` to `<prefix>.items` (key item_id), then `events` to `<prefix>.events` (key user_id).

    Args:
        settings: Kafka connection and topic prefix.
        events: Events in the order to send.
        rate: Events per second (paced against a monotonic clock); 0 sends as fast as the broker takes them.
        items: Catalog items, published before the first event.
        on_progress: Called with the number of events sent so far, after every window of sends.

    Returns:
        Counts and wall time; every send is acknowledged by the broker (acks=all) before this returns.
    """
    from aiokafka import AIOKafkaProducer

    from streams.kafka_clients import client_kwargs

    producer = AIOKafkaProducer(acks="all", linger_ms=5, **client_kwargs(settings))
    await producer.start()
    start = time.monotonic()
    n_items = n_events = 0
    try:
        n_items = await _publish_items(producer, settings.topics.items, items)
        start = time.monotonic()
        pending: list[asyncio.Future[object]] = []
        for e in events:
            if rate > 0:
                delay = start + n_events / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(
                await producer.send(settings.topics.events, e.model_dump_json().encode(), key=e.user_id.encode())
            )
            n_events += 1
            if len(pending) >= _SEND_WINDOW or (rate > 0 and n_events % max(1, int(rate)) == 0):
                await asyncio.gather(*pending)
                pending.clear()
                if on_progress is not None:
                    on_progress(n_events)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    if on_progress is not None:
        on_progress(n_events)
    return ReplayStats(events=n_events, items=n_items, seconds=time.monotonic() - start)


async def _publish_items(producer: AIOKafkaProducer, topic: str, items: Iterable[Item]) -> int:
    """Send `items` (key item_id), `_SEND_WINDOW` in flight at most; returns how many, all acknowledged."""
    pending: list[asyncio.Future[object]] = []
    n = 0
    for item in items:
        pending.append(await producer.send(topic, item.model_dump_json().encode(), key=item.item_id.encode()))
        n += 1
        if len(pending) >= _SEND_WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n


def register(app: typer.Typer) -> None:
    """Attach the `replay` command."""

    @app.command("replay")
    def replay_cmd(
        data: Annotated[Path, typer.Argument(help="Imported directory (events.jsonl.gz, catalog.jsonl.gz).")],
        rate: float = typer.Option(50.0, min=0.0, help="Events per second; 0 = as fast as possible."),
        catalog: bool = typer.Option(True, "--catalog/--no-catalog", help="Publish catalog.jsonl.gz first."),
        user: list[str] = typer.Option([], "--user", help="Only this user (repeatable)."),
        max_users: int | None = typer.Option(None, "--users", min=1, help="Only the first N users to appear."),
        since: str | None = typer.Option(None, help="Only events at or after this ISO time (naive = UTC)."),
        until: str | None = typer.Option(None, help="Only events before this ISO time (naive = UTC)."),
        limit: int | None = typer.Option(None, min=1, help="At most this many events."),
    ) -> None:
        """Replay canonical events into `<prefix>.events` keyed by user_id (env: STREAMREC_KAFKA_*, _TOPIC_PREFIX)."""
        from rich.console import Console

        from contracts import Settings
        from streamrec.data_import.writer import read_catalog, read_events

        console = Console(stderr=True)
        if not (data / "events.jsonl.gz").exists():
            console.print(f"[red]error:[/red] {data}/events.jsonl.gz not found (run `streamrec data import` first)")
            raise typer.Exit(2)
        try:
            lo, hi = parse_time(since), parse_time(until)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        from streamrec.preflight import require_access

        settings = Settings()  # fields come from STREAMREC_* env
        require_access(settings, "replay", kafka=True)
        chosen = select_events(read_events(data), users=user, max_users=max_users, since=lo, until=hi, limit=limit)
        items = read_catalog(data).values() if catalog and (data / "catalog.jsonl.gz").exists() else ()

        def progress(n: int) -> None:
            console.print(f"[dim]replay: {n:,} events sent[/dim]", end="\r")

        stats = asyncio.run(replay(settings, chosen, rate=rate, items=items, on_progress=progress))
        console.print(
            f"replay: {stats.events:,} events ({stats.rate:,.0f}/s) and {stats.items:,} items "
            f"to {settings.topics.events} / {settings.topics.items}"
        )
