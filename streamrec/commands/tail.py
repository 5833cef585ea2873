"""`streamrec tail`: follow `<prefix>.recommendations` in the terminal, with titles, reasons and evidence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer
    from rich.console import RenderableType

    from contracts import Recommendation, Settings
    from streams.dashboard.live import TitleLookup

__all__ = ["follow", "register", "render_recommendation"]

_MAX_TITLE = 48


def _short(text: str | None, n: int = _MAX_TITLE) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def render_recommendation(
    rec: Recommendation, titles: Mapping[str, str], trigger: Mapping[str, Any] | None, top: int = 3
) -> RenderableType:
    """A rich panel: user, trigger, model, latency, then the top items with reason text, reasons and evidence."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(("user ", "dim"), (rec.user_id, "bold cyan"), ("  after ", "dim"))
    if trigger:
        item = trigger.get("item_id")
        what = f"'{trigger.get('query')}'" if trigger.get("query") else f"{item} {_short(titles.get(item or ''), 30)}"
        head.append(f"{trigger.get('type', '?')} {what}", "yellow")
    else:
        head.append(rec.trigger_event_id, "yellow")
    head.append(f"  model {rec.model_version}  {rec.latency_ms:.1f} ms", "dim")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    for it in rec.items[:top]:
        e = it.explanation
        body = Text.assemble((f"{it.item_id} ", "magenta"), (_short(titles.get(it.item_id)), "bold"))
        body.append(f"  score {it.score:.3f}\n", "dim")
        body.append(e.text + "\n", "green")
        if e.reasons:
            reasons = (f"{r.kind.value}({_short(r.detail, 30)})" if r.detail else r.kind.value for r in e.reasons[:3])
            body.append("reasons: " + ", ".join(reasons))
            body.append("\n")
        if e.evidence:
            ev = ", ".join(
                f"{x.type.value} {_short(titles.get(x.item_id or ''), 24) or x.item_id or 'search'} ({x.weight:+.2f})"
                for x in e.evidence[:3]
            )
            body.append("evidence: " + ev, "cyan")
        grid.add_row(f"{it.rank}.", body)
    return Panel(grid, title=head, title_align="left", expand=True)


async def follow(
    settings: Settings,
    on_recommendation: Callable[[Recommendation, Mapping[str, str], Mapping[str, Any] | None], None],
    *,
    users: set[str] | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_exit_seconds: float | None = None,
    ready: asyncio.Event | None = None,
) -> int:
    """Consume recommendations (own consumer, no group), look up titles and triggers, call `on_recommendation`.

    Returns the number handled; runs until `limit` is reached, nothing arrived for `idle_exit_seconds`, or the task
    is cancelled. `ready` is set once the consumer has its partitions (so a caller can start producing without
    missing anything).
    """
    from aiokafka import AIOKafkaConsumer

    from contracts import Recommendation
    from feature_store import FeatureStore, redis_client
    from streams.dashboard.live import TitleLookup
    from streams.kafka_clients import client_kwargs

    client = redis_client(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
    lookup = TitleLookup(FeatureStore(client), client)
    consumer = AIOKafkaConsumer(
        settings.topics.recommendations,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **client_kwargs(settings),
    )
    await consumer.start()
    n = 0
    try:
        await _start_positions(consumer, ready)
        last = time.monotonic()
        while limit is None or n < limit:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            if batches:
                last = time.monotonic()
            elif idle_exit_seconds is not None and time.monotonic() - last > idle_exit_seconds:
                break
            for m in (m for messages in batches.values() for m in messages):  # all partitions of the batch
                if limit is not None and n >= limit:
                    break
                rec = Recommendation.model_validate_json(m.value)
                if not users or rec.user_id in users:
                    await _show(rec, lookup, on_recommendation)
                    n += 1
    finally:
        await consumer.stop()
        await client.aclose()
    return n


async def _start_positions(consumer: AIOKafkaConsumer, ready: asyncio.Event | None) -> None:
    """Wait for the partitions and resolve their start positions, so nothing produced after `ready` is missed."""
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for tp in consumer.assignment():
        await consumer.position(tp)
    if ready is not None:
        ready.set()


async def _show(
    rec: Recommendation,
    lookup: TitleLookup,
    on_recommendation: Callable[[Recommendation, Mapping[str, str], Mapping[str, Any] | None], None],
) -> None:
    """Look up the titles of the items and evidence and the trigger event, then call `on_recommendation`."""
    ids = {i.item_id for i in rec.items} | {x.item_id for i in rec.items for x in i.explanation.evidence if x.item_id}
    trigger = await lookup.trigger(rec.user_id, rec.trigger_event_id)
    if trigger and trigger.get("item_id"):
        ids.add(trigger["item_id"])
    on_recommendation(rec, await lookup.titles(ids), trigger)


def register(app: typer.Typer) -> None:
    """Attach the `tail` command."""

    @app.command("tail")
    def tail(
        user: list[str] = typer.Option([], "--user", help="Only this user (repeatable)."),
        top: int = typer.Option(3, min=1, help="Items shown per recommendation."),
        from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest recommendation."),
        limit: int | None = typer.Option(None, min=1, help="Stop after this many recommendations."),
        idle_exit: float | None = typer.Option(None, min=0.1, help="Stop after this many seconds without any."),
    ) -> None:
        """Follow live recommendations: user, trigger event, top items with titles, reason, evidence, latency."""
        from rich.console import Console

        from contracts import Settings
        from streamrec.preflight import require_access

        settings = Settings()  # fields come from STREAMREC_* env
        require_access(settings, "tail", kafka=True, redis=True)
        console = Console()
        console.print(f"[dim]following {settings.topics.recommendations} (Ctrl-C stops)[/dim]")

        def show(rec: Recommendation, titles: Mapping[str, str], trigger: Mapping[str, Any] | None) -> None:
            console.print(render_recommendation(rec, titles, trigger, top))

        try:
            asyncio.run(
                follow(
                    settings,
                    show,
                    users=set(user) or None,
                    from_beginning=from_beginning,
                    limit=limit,
                    idle_exit_seconds=idle_exit,
                )
            )
        except KeyboardInterrupt:
            console.print("[dim]stopped[/dim]")
