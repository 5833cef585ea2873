"""The only `faust.App`: built from `Settings` by `create_app`, never at import time."""

from __future__ import annotations

import faust

from contracts import Settings
from streams.agents.catalog import attach_catalog_agent
from streams.agents.model_updates import attach_model_updates
from streams.agents.new_items import attach_new_items
from streams.agents.recommend import attach_recommend_agent
from streams.kafka_clients import KafkaSecurity
from streams.runtime import Runtime
from streams.serving import initial_serving
from streams.topics import declare_topics
from streams.web import attach_web, bearer_auth

__all__ = ["create_app"]


def create_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    """A worker app: recommend + catalog agents, model-update follower, web endpoints; group `<prefix>-worker`.

    Without a `runtime`, the serving model is the model store's `CURRENT` version (`Settings.model_dir`), or the
    baseline blend when the store is empty.
    """
    app = faust.App(
        f"{settings.topic_prefix}-worker",
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=KafkaSecurity.from_settings(settings).faust_credentials(),
        store="memory://",
        topic_partitions=settings.events_partitions,
        topic_allow_declare=False,  # topics are created by `streamrec stack up` / operators, with their configs
        producer_acks=-1,  # a recommendation counts as delivered only when all in-sync replicas have it
        # A micro-batch sends one recommendation (several KB of JSON) per user and then waits for all of them:
        # per-partition batches of 16 KB (the default) meant a produce request every few records; larger batches
        # and a 2 ms linger send a micro-batch's output in a few requests (measured with bench/pipeline.py).
        producer_max_batch_size=512 * 1024,
        producer_linger=0.002,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_application_options={"middlewares": [bearer_auth(settings.web_token)]} if settings.web_token else None,
        web_in_thread=False,
    )
    if runtime is None:  # the worker process's own runtime (tests pass theirs)
        runtime = Runtime(settings, serving=initial_serving(settings))
        runtime.metrics.observe_gc()
    topics = declare_topics(app, settings)
    live = attach_web(app, runtime)
    attach_recommend_agent(app, topics, runtime, settings, on_sent=live.sent_recommendation)
    attach_catalog_agent(app, topics, runtime, settings)
    attach_model_updates(app, runtime, settings)
    attach_new_items(app, runtime, settings)
    return app
