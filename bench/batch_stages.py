"""Where a micro-batch's CPU goes, by batch size, without Kafka: `streams.batch.process_batch` on the real Redis.

`bench/pipeline.py` measures the whole worker (Kafka, Faust, the web server) but its batch sizes are whatever
the load makes them. This drives the batch function itself, as the worker calls it (baseline blend, its
explainer, `gc_paused` per batch, the worker's Redis client), on the events of `bench/pipeline.py`'s generator:
a warm-up of `--warmup` events in batches of 1024, then `--rounds` batches of each `--sizes` size, interleaved
(so machine load hits every size alike). Per size it prints the median CPU per event of each stage, of the
whole call (this process), and of Redis (`INFO cpu`, the server's own CPU over the same calls), so it shows
whether a bigger batch makes an event cheaper (a fixed per-batch cost) or not.

Then the codecs side by side on the same records and recommendations (those of the timed batches, `--rounds`
passes, interleaved): decode + validate per event with the pydantic path (`streams.validation.validate_event`,
what the decode stage ran before the compiled codec) and the worker's (`decode_event`: msgspec, pydantic only for
rejected records), and encode per recommendation with `model_dump_json` and `contracts.codec.encode_recommendation`
(the recommend agent's); the encoded documents are checked equal.

`--scorer transformer` (default) scores with a transformer trained by the bench first, loaded as the worker loads
one (`streams.serving.load_serving`: the automatic backend, its explainer); `--scorer blend` with the baseline
blend.

    nice -n 10 .venv/bin/python bench/batch_stages.py --sizes 16 128 1024 --rounds 6 [--scorer blend]

Last line: `RESULT scorer=... us_per_event_<size>=... redis_us_per_event_<size>=... ... decode_us_pydantic=...
decode_us_msgspec=... encode_us_pydantic=... encode_us_msgspec=...` (medians; process CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import Stream, calibration_seconds, catalog, train_bench_model  # noqa: E402 (the pipeline bench's)

from contracts import DeadLetter, Recommendation, Settings  # noqa: E402
from contracts.codec import WireEvent, encode_recommendation  # noqa: E402
from feature_store import FeatureConfig, FeatureStore, store_client  # noqa: E402
from model.exclude import ExcludeCurrentItem  # noqa: E402
from model.store import ModelStore  # noqa: E402
from streamrec.child_processes import leased_redis_db  # noqa: E402
from streamrec.stack import LocalStack  # noqa: E402
from streamrec.stack_config import StackConfig  # noqa: E402
from streams.batch import BatchConfig, BatchOutcome, process_batch  # noqa: E402
from streams.runtime import gc_paused  # noqa: E402
from streams.serving import ServingModel, baseline_serving, load_serving  # noqa: E402
from streams.validation import RawRecord, decode_event, validate_event  # noqa: E402

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


_Run = tuple[BatchOutcome, float, float]  # outcome, process CPU seconds, Redis CPU seconds


async def bench(args: argparse.Namespace) -> None:
    """Warm up, then time the sizes round-robin."""
    print(f"cpu calibration: 10M-add loop {calibration_seconds():.2f} s (idle core ~0.4 s)")
    with tempfile.TemporaryDirectory(prefix="streamrec-stages-") as tmp:
        served = serving(args, Path(tmp))
    print(f"scorer {served.version}")
    rows, measured = await _measure(args, served)
    _report(args, rows, measured)


async def _measure(
    args: argparse.Namespace, served: ServingModel
) -> tuple[dict[int, list[_Run]], list[list[RawRecord]]]:
    """The runs of every size (after the warm-up) and the records of each measured batch."""
    info = LocalStack(StackConfig()).up()
    with leased_redis_db(info.redis_url, ttl_seconds=1800) as url:
        client = store_client(url)  # as `Runtime.store`
        store = FeatureStore(client, FeatureConfig())
        await store.upsert_items(catalog(args.items))
        stream, offset = Stream(args.users, args.items, args.seed), 0
        scorer, explainer = ExcludeCurrentItem(served.scorer), served.explainer  # as `Runtime.ranker`

        measured: list[list[RawRecord]] = []

        async def one(size: int) -> _Run:
            nonlocal offset
            events = stream.take(size)
            records = [
                RawRecord(e.model_dump_json().encode(), e.user_id.encode(), "events", 0, offset + i)
                for i, e in enumerate(events)
            ]
            offset += size
            measured.append(records)
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
        measured.clear()
        rows: dict[int, list[_Run]] = {s: [] for s in args.sizes}
        for _ in range(args.rounds):
            for size in args.sizes:
                rows[size].append(await one(size))
        await client.aclose()
    return rows, measured


def _report(args: argparse.Namespace, rows: dict[int, list[_Run]], measured: list[list[RawRecord]]) -> None:
    """The per-stage table and the RESULT line."""

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
    recs = [r for runs in rows.values() for o, _, _ in runs for r in o.recommendations]
    result += codecs(measured, recs, args.rounds)
    print(f"RESULT scorer={args.scorer} " + " ".join(result))


def codecs(batches: list[list[RawRecord]], recs: list[Recommendation], rounds: int) -> list[str]:
    """Both codecs on the same records and recommendations, interleaved; prints µs of CPU per event / per rec."""
    limits, now = BatchConfig().limits, datetime.now(UTC)
    events = sum(len(b) for b in batches)
    for r in recs:
        assert json.loads(encode_recommendation(r)) == json.loads(r.model_dump_json()), r.user_id
    for record in (r for b in batches for r in b):  # the same verdicts (all valid here)
        assert type(validate_event(record, limits, now=now)) is not DeadLetter
        assert type(decode_event(record, limits, now=now)) is WireEvent
    decoders = {"pydantic": validate_event, "msgspec": decode_event}
    encoders = {"pydantic": lambda r: r.model_dump_json().encode(), "msgspec": encode_recommendation}
    spent: dict[str, list[float]] = {f"{kind}_{name}": [] for kind in ("decode", "encode") for name in decoders}
    for _ in range(rounds):
        for name, decode in decoders.items():
            with gc_paused():
                start = time.process_time()
                for batch in batches:
                    for record in batch:
                        decode(record, limits, now=now)
                spent[f"decode_{name}"].append((time.process_time() - start) / events * 1e6)
        for name, encode in encoders.items():
            with gc_paused():
                start = time.process_time()
                for r in recs:
                    encode(r)
                spent[f"encode_{name}"].append((time.process_time() - start) / len(recs) * 1e6)
    med = {k: statistics.median(v) for k, v in spent.items()}
    size, per_event = statistics.mean(len(encode_recommendation(r)) for r in recs), len(recs) / events
    print(f"codecs, same inputs, {rounds} interleaved passes, median µs of CPU:")
    print(
        f"  decode + validate per event ({events} events): pydantic path {med['decode_pydantic']:.1f}, "
        f"msgspec {med['decode_msgspec']:.1f} (x{med['decode_pydantic'] / med['decode_msgspec']:.1f})"
    )
    print(
        f"  encode per recommendation ({len(recs)} recs, {size:.0f} B): pydantic {med['encode_pydantic']:.1f}, "
        f"msgspec {med['encode_msgspec']:.1f} (x{med['encode_pydantic'] / med['encode_msgspec']:.1f}); "
        f"per event {med['encode_pydantic'] * per_event:.1f} -> {med['encode_msgspec'] * per_event:.1f}"
    )
    return [f"{k}_us={v:.2f}" for k, v in med.items()]


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
