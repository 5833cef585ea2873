"""The compiled codec (`contracts.codec`, msgspec) writes a recommendation as the document pydantic writes.

On generated records (any id text, any offset, non-finite scores) and on the records `explain.explainer` builds
without validation (numpy numbers), `encode_recommendation` gives pydantic's JSON document, valid against
`schemas/recommendation.json`. Events in: `test_codec_parity.py`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema_rs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import EventType, Evidence, Explanation, Reason, ReasonKind, Recommendation, RecommendedItem
from contracts.codec import encode_recommendation
from explain.records import construct

REC_VALIDATOR = jsonschema_rs.Draft202012Validator(
    json.loads((Path(__file__).parents[2] / "schemas" / "recommendation.json").read_text()), validate_formats=True
)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# Any id the contract takes: 1-128 printable UTF-8 characters.
_valid_id = st.text(
    st.characters(codec="utf-8", min_codepoint=0x20, exclude_categories=("Cs",), exclude_characters="\x7f"),
    min_size=1,
    max_size=128,
)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_when = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 1, 1),
    timezones=st.just(UTC) | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))),
)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_evidence = st.builds(
    Evidence,
    event_id=_valid_id,
    item_id=st.none() | _valid_id,
    type=st.sampled_from(EventType),
    ts=_when,
    weight=_finite,
)
_reason = st.builds(Reason, kind=st.sampled_from(ReasonKind), detail=_text, weight=_finite)
_explanation = st.builds(
    Explanation, evidence=st.lists(_evidence, max_size=4), reasons=st.lists(_reason, max_size=3), text=_text
)


@st.composite
def _recommendations(draw: st.DrawFn, number: st.SearchStrategy[float] = _finite) -> Recommendation:
    items = [
        RecommendedItem(item_id=draw(_valid_id), score=draw(number), rank=rank, explanation=draw(_explanation))
        for rank in range(1, draw(st.integers(0, 4)) + 1)
    ]
    return Recommendation(
        user_id=draw(_valid_id),
        trigger_event_id=draw(_valid_id),
        model_version=draw(_valid_id),
        generated_at=draw(_when),
        latency_ms=draw(st.floats(min_value=0, allow_nan=False, allow_infinity=False)),
        items=items,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_recommendations())
def test_an_encoded_recommendation_is_the_document_pydantic_writes(rec: Recommendation) -> None:
    encoded = encode_recommendation(rec)
    doc = json.loads(encoded)
    assert doc == json.loads(rec.model_dump_json())  # same fields, same values, same date-time text
    assert REC_VALIDATOR.is_valid(doc), list(REC_VALIDATOR.iter_errors(doc))[:1]
    assert Recommendation.model_validate_json(encoded) == rec  # what `tail`, the learner and the web read back


@settings(max_examples=50, deadline=None)
@given(_recommendations(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308])))
def test_non_finite_scores_are_written_as_pydantic_writes_them(rec: Recommendation) -> None:
    assert json.loads(encode_recommendation(rec)) == json.loads(rec.model_dump_json())  # NaN/inf: null


def test_explainer_built_records_with_numpy_numbers_encode_as_pydantic_does() -> None:
    # As `explain.explainer` builds them: `construct` (no validation), weights straight from numpy.
    evidence = [
        construct(
            Evidence,
            {
                "event_id": f"e{i}",
                "item_id": None if i == 2 else f"i{i}",
                "type": EventType.ADD_TO_CART,
                "ts": datetime.fromtimestamp(1_780_000_000.25 + i, UTC),
                "weight": np.float64(0.1) * i,
            },
        )
        for i in range(4)
    ]
    reasons = [construct(Reason, {"kind": ReasonKind.SIMILAR_TO, "detail": "like “x”", "weight": np.float32(0.5)})]
    why = construct(Explanation, {"evidence": evidence, "reasons": reasons, "text": "Because you added x"})
    item = RecommendedItem(item_id="i9", score=1.25, rank=1, explanation=why)
    rec = Recommendation(
        user_id="u1", trigger_event_id="e3", model_version="v1", generated_at=NOW, latency_ms=3.5, items=[item]
    )
    doc = json.loads(encode_recommendation(rec))
    assert doc == json.loads(rec.model_dump_json(warnings=False))
    assert REC_VALIDATOR.is_valid(doc)
    assert doc["items"][0]["explanation"]["reasons"][0]["weight"] == 0.5


def test_only_contract_records_are_encoded() -> None:
    rec = Recommendation.model_construct(
        user_id="u1", trigger_event_id="e1", model_version="v", generated_at=NOW, latency_ms=0.0, items=[object()]
    )
    with pytest.raises(TypeError, match="cannot encode object"):
        encode_recommendation(rec)
