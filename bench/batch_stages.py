"""Where a micro-batch's CPU goes, by batch size, without Kafka: `streams.batch.process_batch` on the real Redis.

`bench/pipeline.py` measures the whole worker (Kafka, Faust, the web server) but its batch sizes are whatever
the load makes them. This drives the batch function itself, as the worker calls it (baseline blend, its
explainer, `gc_paused` per batch, the worker's Redis client), on the events of `bench/pipeline.py`'s generator:
a warm-up of `--warmup` events in batches of 1024, then `--rounds` batches of each `--sizes` size, interleaved
(so machine load hits every size alike). Per size it prints the median CPU per event of each stage, of the
whole call (this process), and of Redis (`INFO cpu`, the server's own CPU over the same calls), so it shows
whether a bigger batch makes an event cheaper (a fixed per-batch cost) or not.

`--scorer transformer` (default) scores with a transformer trained by the bench first, loaded as the worker loads
one (`streams.serving.load_serving`: the automatic backend, its explainer); `--scorer blend` with the baseline
blend.

    nice -n 10 .venv/bin/python bench/batch_stages.py --sizes 16 128 1024 --rounds 6 [--scorer blend]

Last line: `RESULT scorer=... us_per_event_<size>=... redis_us_per_event_<size>=... ...` (medians; process CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Stream, calibration_seconds, catalog, train_bench_model  # noqa: E402 (the pipeline bench's)

from contracts import Settings  # noqa: E402
from feature_store import FeatureConfig, FeatureStore, store_client  # noqa: E402
from model.exclude import ExcludeCurrentItem  # noqa: E402
from model.store import ModelStore  # noqa: E402
from streamrec.child_processes import leased_redis_db  # noqa: E402
from streamrec.stack import LocalStack  # noqa: E402
from streamrec.stack_config import StackConfig  # noqa: E402
from streams.batch import BatchConfig, BatchOutcome, process_batch  # noqa: E402
from streams.runtime import gc_paused  # noqa: E402
from streams.serving import ServingModel, baseline_serving, load_serving  # noqa: E402
from streams.validation import RawRecord  # noqa: E402

_STAGES = ("decode", "features_write", "features_read", "score", "explain")


async def _inline(fn, *args):  # type: ignore[no-untyped-def]
    return fn(*args)  # the worker runs the scorer in an executor; here one thread keeps the CPU clock whole


async def _redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def serving(args: argparse.Namespace, workdir: Path) -> ServingModel:
    """The scorer and explainer under test, as the worker would load them."""
    if args.scorer == "blend":
        return baseline_serving()
    import torch  # noqa: PLC0415

    torch.set_num_threads(Settings().scorer_threads)  # as `streamrec worker`
    store = ModelStore(train_bench_model(args, workdir))
    current = store.current_dir()
    assert current is not None
    return load_serving(current, Settings())


async def bench(args: argparse.Namespace) -> None:
    """Warm up, then time the sizes round-robin."""
    print(f"cpu calibration: 10M-add loop {calibration_seconds():.2f} s (idle core ~0.4 s)")
    with tempfile.TemporaryDirectory(prefix="streamrec-stages-") as tmp:
        served = serving(args, Path(tmp))
    print(f"scorer {served.version}")
    info = LocalStack(StackConfig()).up()
    with leased_redis_db(info.redis_url, ttl_seconds=1800) as url:
        client = store_client(url)  # as `Runtime.store`
        store = FeatureStore(client, FeatureConfig())
        await store.upsert_items(catalog(args.items))
        stream, offset = Stream(args.users, args.items, args.seed), 0
        scorer, explainer = ExcludeCurrentItem(served.scorer), served.explainer  # as `Runtime.ranker`

        async def one(size: int) -> tuple[BatchOutcome, float, float]:
            nonlocal offset
            events = stream.take(size)
            records = [
                RawRecord(e.model_dump_json().encode(), e.user_id.encode(), "events", 0, offset + i)
                for i, e in enumerate(events)
            ]
            offset += size
            redis_before, start = await _redis_cpu(client), time.process_time()
            with gc_paused():
                outcome = await process_batch(
                    records,
                    arrived=[time.monotonic()] * size,
                    store=store,
                    scorer=scorer,
                    explainer=explainer,
                    config=BatchConfig(),
                    clock=lambda: datetime.now(UTC),
                    run=_inline,
                )
            spent = time.process_time() - start
            return outcome, spent, await _redis_cpu(client) - redis_before

        gc.set_threshold(50_000, 20, 100)  # as `streamrec worker`
        for _ in range(args.warmup // 1024):
            await one(1024)
        rows: dict[int, list[tuple[BatchOutcome, float, float]]] = {s: [] for s in args.sizes}
        for _ in range(args.rounds):
            for size in args.sizes:
                rows[size].append(await one(size))
        await client.aclose()

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"{args.users} users, {args.items} items, warm-up {args.warmup} events; median µs of CPU per event")
    stage_heads = " ".join(f"{s[:14]:>14s}" for s in _STAGES)
    print(f"{'batch':>6s} {'users':>6s} {stage_heads} {'whole':>7s} {'Redis':>6s}")
    result = []
    for size, runs in rows.items():
        users = med([len(o.recommendations) for o, _, _ in runs])
        stages = [med([o.stage_cpu_seconds.get(s, 0.0) / size * 1e6 for o, _, _ in runs]) for s in _STAGES]
        whole, redis_cpu = med([c / size * 1e6 for _, c, _ in runs]), med([r / size * 1e6 for _, _, r in runs])
        print(f"{size:6d} {users:6.0f} " + " ".join(f"{v:14.0f}" for v in stages) + f" {whole:7.0f} {redis_cpu:6.0f}")
        result += [f"us_per_event_{size}={whole:.0f}", f"redis_us_per_event_{size}={redis_cpu:.0f}"]
    print(f"RESULT scorer={args.scorer} " + " ".join(result))


def main() -> None:
    """CLI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 128, 1024])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=20_000, help="events applied first, in batches of 1024")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scorer", choices=("transformer", "two-stage", "blend"), default="transformer")
    parser.add_argument("--train-events", type=int, default=60_000, help="events the bench model trains on")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
