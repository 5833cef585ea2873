"""Events in → features, recommendations and dead letters out, one micro-batch at a time."""

from __future__ import annotations

import asyncio
import time

import faust

from contracts import Settings
from streams.runtime import Runtime, gc_paused
from streams.topics import WorkerTopics
from streams.validation import RawRecord

__all__ = ["attach_recommend_agent"]


def _raw(event: faust.EventT) -> RawRecord:
    m = event.message
    return RawRecord(value=m.value, key=m.key, topic=m.topic, partition=m.partition, offset=m.offset)


def attach_recommend_agent(app: faust.App, topics: WorkerTopics, runtime: Runtime, settings: Settings) -> None:
    """Register the `recommend` agent on `topics.events`."""

    @app.agent(topics.events, name="recommend")
    async def recommend(stream: faust.StreamT) -> None:
        # take_events acks a batch only after this body has finished with it, so Faust commits an offset only
        # once its features are written and its recommendations and dead letters are delivered.
        try:
            async for batch in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
                with gc_paused():
                    now = time.monotonic()
                    arrived = [e.message.time_in or now for e in batch]
                    outcome = await runtime.run_batch([_raw(e) for e in batch], arrived)
                    pending = [
                        await topics.recommendations.send(key=r.user_id.encode(), value=r.model_dump_json().encode())
                        for r in outcome.recommendations
                    ]
                    pending += [
                        await topics.dead_letter.send(value=d.model_dump_json().encode()) for d in outcome.dead_letters
                    ]
                    await asyncio.gather(*pending)  # delivered (acks=all) before the batch is acked
                    del outcome, pending  # freed before collection resumes, so it has little to scan
        finally:
            await runtime.close()
