"""The records, their JSON Schemas and the README agree."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import Event, EventType, Item, Recommendation, Settings, TopicNames
from contracts.schemas import SCHEMA_MODELS, render_schemas

REPO = Path(__file__).resolve().parents[2]
TS = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _event_json(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "view", "ts": TS.isoformat()}
    doc.update(overrides)
    return doc


def _schema(name: str) -> dict[str, object]:
    return json.loads((REPO / "schemas" / name).read_text())


def test_schema_files_are_generated_from_the_code() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in (REPO / "schemas").glob("*.json")}
    assert on_disk == rendered, "schemas/ is stale: run `streamrec schemas`"


def test_readme_documents_every_field_of_every_contract() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Contracts", 1)[1].split("\n## ", 1)[0]
    for model in SCHEMA_MODELS.values():
        assert f"`{model.__name__}`" in section, model.__name__
        for field in model.model_fields:
            assert re.search(rf"`{field}`", section), f"{model.__name__}.{field} missing from README contracts"


@pytest.mark.parametrize(
    ("overrides", "valid"),
    [
        ({}, True),
        ({"type": "search", "item_id": None, "query": "red shoes"}, True),
        ({"item_id": None}, False),  # only a search may lack an item
        ({"type": "teleport"}, False),
        ({"ts": "2024-05-01T12:00:00"}, False),  # naive time
        ({"ts": 1714564800}, False),  # a number is not a date-time string
        ({"ts": "1714564800"}, False),  # nor is unix time as text
        ({"user_id": "a\x1fb"}, False),  # control characters would split stored id lists
        ({"event_id": "x" * 129}, False),
        ({"extra_field": 1}, False),
    ],
)
def test_pydantic_and_json_schema_agree_on_events(overrides: dict[str, object], valid: bool) -> None:
    doc = _event_json(**overrides)
    try:
        Event.model_validate(doc)
        pydantic_ok = True
    except ValidationError:
        pydantic_ok = False
    validator = jsonschema.Draft202012Validator(_schema("event.json"))
    schema_ok = validator.is_valid(doc)
    assert pydantic_ok is valid
    # The compiled validator the every-line dataset tests use must judge exactly like the reference one.
    assert jsonschema_rs.Draft202012Validator(_schema("event.json")).is_valid(doc) is schema_ok
    # The schema's `ts` pattern (RFC 3339 with an offset) makes it judge time zones like pydantic does.
    assert schema_ok is valid


@given(
    event_type=st.sampled_from(list(EventType)),
    user=st.text(st.characters(codec="utf-8").filter(lambda c: c >= " " and c != "\x7f"), min_size=1, max_size=128),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
)
def test_event_json_round_trip(event_type: EventType, user: str, offset_minutes: int) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    item = None if event_type is EventType.SEARCH else "i1"
    event = Event(event_id="e", user_id=user, item_id=item, type=event_type, ts=TS.astimezone(tz))
    again = Event.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.ts == TS  # the producer's instant survives, whatever its offset


def test_recommendation_matches_its_schema() -> None:
    rec = Recommendation.model_validate(
        {
            "user_id": "u1",
            "trigger_event_id": "e9",
            "model_version": "baseline-cooc",
            "generated_at": TS.isoformat(),
            "latency_ms": 3.5,
            "items": [
                {
                    "item_id": "i2",
                    "score": 0.7,
                    "rank": 1,
                    "explanation": {
                        "evidence": [
                            {
                                "event_id": "e9",
                                "item_id": "i1",
                                "type": "add_to_cart",
                                "ts": TS.isoformat(),
                                "weight": 1,
                            }
                        ],
                        "reasons": [{"kind": "bought_together", "detail": "often bought with Mug", "weight": 0.4}],
                        "text": "Because you added Mug to your cart",
                    },
                }
            ],
        }
    )
    jsonschema.validate(json.loads(rec.model_dump_json()), _schema("recommendation.json"))


def test_item_price_cannot_be_negative() -> None:
    with pytest.raises(ValidationError):
        Item(item_id="i", price=-1.0, ts=TS)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_TOPIC_PREFIX", "shop1")
    monkeypatch.setenv("STREAMREC_REDIS_URL", "rediss://app:hunter2@cache.internal:6380/2")
    settings = Settings()
    assert settings.topics == TopicNames("shop1")
    assert settings.topics.dead_letter == "shop1.dead-letter"
    assert "hunter2" not in repr(settings)
    assert settings.redis_url_redacted() == "rediss://app:***@cache.internal:6380/2"


def test_settings_reject_unknown_and_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(kafka_security_protocol="SASL_SSL")  # no mechanism / credentials
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]


def test_a_web_server_off_loopback_needs_a_token() -> None:
    from contracts import Settings

    assert Settings(web_host="127.0.0.1").web_token is None
    assert Settings(web_host="::1").web_host == "::1"
    with pytest.raises(ValidationError, match="STREAMREC_WEB_TOKEN"):
        Settings(web_host="0.0.0.0")  # noqa: S104 (the point: refused without a token)
    assert Settings(web_host="0.0.0.0", web_token="t").web_token is not None  # noqa: S104


def test_readme_configuration_table_names_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in Settings.model_fields:
        env = f"STREAMREC_{name.upper()}"
        head, _, tail = env.rpartition("_")
        # `STREAMREC_KAFKA_SASL_USERNAME` / `_PASSWORD` rows name a sibling by its last part
        assert f"`{env}`" in section or (f"`_{tail}`" in section and f"`{head}_" in section), env
