"""Every topic the worker uses, declared once (raw bytes: the worker decodes and dead-letters itself)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from contracts import Settings

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

    def topic(name: str, partitions: int) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)

    return WorkerTopics(
        events=topic(names.events, settings.events_partitions),
        items=topic(names.items, settings.events_partitions),
        recommendations=topic(names.recommendations, settings.recommendations_partitions),
        dead_letter=topic(names.dead_letter, 1),
    )
