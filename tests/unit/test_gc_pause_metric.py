"""The worker's collector-pause histogram counts real passes, by generation, and can be removed again."""

import gc

from streams.metrics import WorkerMetrics


def _count(m: WorkerMetrics, generation: str) -> float:
    value = m.registry.get_sample_value("streamrec_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


def test_each_collection_is_observed_by_generation_until_undone() -> None:
    m = WorkerMetrics()
    undo = m.observe_gc()
    try:
        gc.collect(2)
        gc.collect(2)
        gc.collect(0)
    finally:
        undo()
    assert _count(m, "2") == 2
    assert _count(m, "0") >= 1
    total = m.registry.get_sample_value("streamrec_gc_pause_seconds_sum", {"generation": "2"})
    assert total is not None and total > 0.0
    gc.collect(2)  # after the undo nothing more is counted
    assert _count(m, "2") == 2
