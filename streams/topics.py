"""Every topic the worker uses, declared once (raw bytes: the worker decodes and dead-letters itself)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from contracts import Settings, topic_specs

__all__ = ["WorkerTopics", "declare_topics"]


@dataclass(frozen=True)
class WorkerTopics:
    """The app's topic handles."""

    events: faust.TopicT
    items: faust.TopicT
    recommendations: faust.TopicT
    dead_letter: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> WorkerTopics:
    """Declare the topics on `app` (names from `settings.topics`; they are created by `streamrec stack up`)."""
    names = settings.topics
    specs = topic_specs(names, settings.events_partitions, settings.recommendations_partitions)
    partitions = {spec.name: spec.partitions for spec in specs}

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions[name])

    return WorkerTopics(
        events=topic(names.events),
        items=topic(names.items),
        recommendations=topic(names.recommendations),
        dead_letter=topic(names.dead_letter),
    )
