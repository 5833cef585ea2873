"""Contract records (`contracts.Evidence`, `Reason`, `Explanation`) built from values that are valid by construction.

Why not validate them: at batch 32 x top 10 an explain step emits ~320 explanations holding ~1600 evidence and
~1300 reason records, and validating them (even in one bulk pydantic call) was the largest single share of the
explanation cost. Every field is already valid where it comes from:

- evidence: `event_id`, `item_id`, `type`, `ts` are the user's own past event, which passed the `contracts.Event`
  validation (same constraints) when it entered the system; `weight` is a float the attribution computed;
- reasons: `kind` is a `ReasonKind` member named in code, `detail` a string clipped to the contract's 512 characters
  (`clip`), `weight` a float;
- explanations: lists of the records above and a text `explain.text.compose` clips to 1024 characters.

Validation stays at the system boundaries (events and catalog items in, `contracts` records on the wire). The unit
tests round-trip produced records through `model_validate` to prove they satisfy the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts import Evidence, Explanation, Reason, ReasonKind

__all__ = ["DETAIL_MAX", "builder", "construct", "reason"]

DETAIL_MAX = 512  # `contracts.Reason.detail` max_length

_M = TypeVar("_M", bound=BaseModel)
# The setters of `BaseModel`'s instance slots, called directly: about half the cost of `object.__setattr__` by name
# (which looks each one up on the type first), and `construct` runs ~2,700 times per explain step.
_SLOTS = BaseModel.__dict__
_set_dict = _SLOTS["__dict__"].__set__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def _plain(cls: type[_M]) -> type[_M]:
    """`cls`, checked to be a model whose instances are fully described by their field values.

    `construct` sets an instance's state the way `BaseModel.model_construct` does when every field is given; that
    is only right for a frozen model (records share their fields set) without aliases, private attributes, extra
    fields or a post-init hook. A contract change that breaks this fails here, at import, instead of producing odd
    records.
    """
    aliased = any(f.alias is not None or f.validation_alias is not None for f in cls.model_fields.values())
    unusual = cls.__private_attributes__ or cls.__pydantic_post_init__ or cls.model_config.get("extra") == "allow"
    if aliased or unusual or not cls.model_config.get("frozen"):
        msg = f"{cls.__name__} is not a plain model: explain.records.construct cannot build it"
        raise TypeError(msg)
    return cls


# The fields set of every record built here: all fields. One set per class, shared, not one per record (~2,700
# fewer allocations per batch, a third of the objects the garbage collector would track). Safe because the
# contract models are frozen (pydantic never adds to the set of a frozen model) and copies copy it
# (`BaseModel.__copy__`); only a caller mutating `model_fields_set` in place could notice.
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {
    cls: set(_plain(cls).model_fields) for cls in (Evidence, Reason, Explanation)
}


def construct(cls: type[_M], fields: dict[str, Any]) -> _M:
    """An instance of `cls` (`Evidence`, `Reason` or `Explanation`) from already valid values of all its fields.

    The state `cls.model_construct(**fields)` would set (its fields set shared by all records of `cls`, see
    `_ALL_FIELDS`); `model_construct` itself walks every field's aliases and defaults and costs more than validating.
    """
    record = cls.__new__(cls)
    _set_dict(record, fields)
    _set_fields_set(record, _ALL_FIELDS[cls])
    _set_extra(record, None)
    _set_private(record, None)
    return record


def builder(cls: type[_M]) -> Callable[[dict[str, Any]], _M]:
    """`construct` bound to `cls` (one fewer lookup per record, for the explainer's per-evidence loop)."""
    new, fields_set = cls.__new__, _ALL_FIELDS[cls]

    def build(fields: dict[str, Any]) -> _M:
        record = new(cls)
        _set_dict(record, fields)
        _set_fields_set(record, fields_set)
        _set_extra(record, None)
        _set_private(record, None)
        return record

    return build


def reason(kind: ReasonKind, detail: str, weight: float) -> Reason:
    """A `Reason` (detail clipped to the contract's length)."""
    clipped = detail if len(detail) <= DETAIL_MAX else detail[:DETAIL_MAX]
    return construct(Reason, {"kind": kind, "detail": clipped, "weight": float(weight)})
