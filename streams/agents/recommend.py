"""Events in → features, recommendations and dead letters out, one micro-batch at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust

from contracts import Settings
from contracts.codec import encode_recommendation
from streams.agents import as_stream, delivered, unacked_unless_done
from streams.batch import BatchOutcome
from streams.runtime import Runtime, gc_paused
from streams.topics import WorkerTopics
from streams.validation import RawRecord

__all__ = ["attach_recommend_agent"]


def attach_recommend_agent(
    app: faust.App,
    topics: WorkerTopics,
    runtime: Runtime,
    settings: Settings,
    on_sent: Callable[[str, bytes], None] | None = None,
) -> None:
    """Register the `recommend` agent on `topics.events`; `on_sent(user_id, raw)` sees every recommendation sent."""
    recommendations = topics.recommendations.get_topic_name()
    dead_letters = topics.dead_letter.get_topic_name()

    @app.agent(topics.events, name="recommend")
    async def recommend(stream: faust.StreamT[Any]) -> None:
        async def deliver(outcome: BatchOutcome) -> None:
            # Recommendations (one per user of the batch) go straight to the producer: Faust's topic.send wraps
            # each record in pending/future messages and per-record sensor calls (~15 % of the worker's CPU
            # outside the stages). Same topic, key, value, partitioner and acks=all. The value is written by the
            # compiled codec (`contracts.codec`: the document `model_dump_json` writes, ~2x cheaper).
            producer = await app.maybe_start_producer()
            pending = []
            for r in outcome.recommendations:
                value = encode_recommendation(r)
                pending.append(await producer.send(recommendations, r.user_id.encode(), value, None, None, None))
                if on_sent is not None:
                    on_sent(r.user_id, value)
            for d in outcome.dead_letters:
                pending.append(await producer.send(dead_letters, None, d.model_dump_json().encode(), None, None, None))
            await delivered(pending)

        # take_events acks a batch once this body lets go of it; run_batch returns only when every record is
        # applied and delivered (acks=all) or dead-lettered, and a batch left unfinished is not acked at all.
        try:
            async for batch in as_stream(stream).take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
                with gc_paused(), unacked_unless_done(batch):
                    now = time.monotonic()
                    arrived = [e.message.time_in or now for e in batch]
                    outcome = await runtime.run_batch([RawRecord.of(e.message) for e in batch], arrived, deliver)
                    del outcome  # freed before collection resumes, so it has little to scan
        finally:
            await runtime.close()
