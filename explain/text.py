"""Short, deterministic natural-language explanations from evidence + reasons, one template table per language.

Only the user's own events and shared item facts (titles, categories) are ever quoted, so no other user's data
can appear. Times are relative to the trigger event's time (never the wall clock), so a replay yields the same
text. Adding a language = adding one `Templates` entry to `TEMPLATES`.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> from contracts import EventType
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> relative_time(t - timedelta(minutes=5), t, TEMPLATES["en"])
    '5 minutes ago'
    >>> Lead(EventType.ADD_TO_CART, "Trail running shoes", t - timedelta(minutes=5)).render(t, TEMPLATES["en"])
    "Because you added 'Trail running shoes' to your cart 5 minutes ago"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts import EventType, Reason, ReasonKind

__all__ = [
    "TEMPLATES",
    "BatchText",
    "Lead",
    "Templates",
    "compose",
    "explanation_text",
    "relative_time",
    "render_lead",
    "templates",
]


@dataclass(frozen=True, slots=True)
class Templates:
    """Every phrase of one language; `{}` fields are filled with `str.format`."""

    lead: Mapping[EventType, str]  # "Because you viewed '{title}' {ago}"
    again: Mapping[EventType, str]  # the top evidence is an event on the recommended item itself: "{ago}"
    search_lead: str  # a search as top evidence: "{query}", "{ago}"
    reason: Mapping[ReasonKind, str]  # second clause per reason kind: "{detail}", "{n}"
    seen_once: str  # `seen_before` with one interaction
    trending_any: str  # trending without a category
    units: Sequence[tuple[int, str, str]]  # (seconds, singular, plural), largest first
    just_now: str
    ago: str  # "{n} {unit} ago"
    fallback: str  # nothing specific is true
    joiner: str  # between the lead and a reason clause


TEMPLATES: dict[str, Templates] = {
    "en": Templates(
        lead={
            EventType.VIEW: "Because you viewed '{title}' {ago}",
            EventType.CLICK: "Because you clicked '{title}' {ago}",
            EventType.ADD_TO_CART: "Because you added '{title}' to your cart {ago}",
            EventType.REMOVE_FROM_CART: "Because you removed '{title}' from your cart {ago}",
            EventType.PURCHASE: "Because you bought '{title}' {ago}",
        },
        again={
            EventType.VIEW: "You viewed this {ago}",
            EventType.CLICK: "You clicked this {ago}",
            EventType.ADD_TO_CART: "You added this to your cart {ago}",
            EventType.REMOVE_FROM_CART: "You removed this from your cart {ago}",
            EventType.PURCHASE: "You bought this {ago}",
        },
        search_lead="Because you searched for '{query}' {ago}",
        reason={
            ReasonKind.SEEN_BEFORE: "you looked at it {n} times",  # n >= 2
            ReasonKind.CART_COMPLEMENT: "goes with '{detail}' in your cart",
            ReasonKind.SEARCH_MATCH: "matches your search '{detail}'",
            ReasonKind.CATEGORY_AFFINITY: "you often browse {detail}",
            ReasonKind.TRENDING: "popular in {detail} right now",
            ReasonKind.SIMILAR_TO: "similar to '{detail}'",
            ReasonKind.BOUGHT_TOGETHER: "often bought with '{detail}'",
        },
        seen_once="you looked at it before",
        trending_any="popular right now",
        units=((86400, "day", "days"), (3600, "hour", "hours"), (60, "minute", "minutes")),
        just_now="just now",
        ago="{n} {unit} ago",
        fallback="Recommended for you",
        joiner="; ",
    ),
}

# Which reason may follow the lead, in order of preference (the lead already names the evidence item).
_CLAUSE_ORDER = (
    ReasonKind.CART_COMPLEMENT,
    ReasonKind.SEARCH_MATCH,
    ReasonKind.SEEN_BEFORE,
    ReasonKind.TRENDING,
    ReasonKind.CATEGORY_AFFINITY,
    ReasonKind.SIMILAR_TO,
)
_RANK = {kind: rank for rank, kind in enumerate(_CLAUSE_ORDER)}
_NONE = len(_CLAUSE_ORDER)  # rank of "no clause"
_SEEN, _SIMILAR = _RANK[ReasonKind.SEEN_BEFORE], _RANK[ReasonKind.SIMILAR_TO]


def relative_time(when: datetime, now: datetime, t: Templates) -> str:
    """`when` relative to `now` (the trigger event's time), e.g. '5 minutes ago'."""
    seconds = max(0.0, (now - when).total_seconds())
    for size, one, many in t.units:
        if seconds >= size:
            n = int(seconds // size)
            return t.ago.format(n=n, unit=one if n == 1 else many)
    return t.just_now


@dataclass(frozen=True, slots=True)
class Lead:
    """The top evidence event, as the text quotes it."""

    type: EventType
    label: str  # item title (or id), or the search query
    ts: datetime
    same_item: bool = False  # the event was on the recommended item itself ("You viewed this 5 minutes ago")

    def render(self, now: datetime, t: Templates) -> str:
        """'Because you <did> <label> <ago>' (or 'You <did> this <ago>')."""
        return render_lead(self.type, self.label, self.ts, self.same_item, now, t)


def render_lead(kind: EventType, label: str, ts: datetime, same_item: bool, now: datetime, t: Templates) -> str:
    """`Lead(kind, label, ts, same_item).render(now, t)` without building the `Lead` (once per explained item)."""
    ago = relative_time(ts, now, t)
    if same_item and kind in t.again:
        return t.again[kind].format(ago=ago)
    if kind is EventType.SEARCH:
        return t.search_lead.format(query=_clip(label), ago=ago)
    return t.lead[kind].format(title=_clip(label), ago=ago)


def _clip(text: str, size: int = 80) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _clause(reason: Reason, t: Templates) -> str:
    # Reads kind, detail, int(weight) and weight < 2 only (`BatchText` memoises by exactly these).
    if reason.kind is ReasonKind.TRENDING and not reason.detail:
        return t.trending_any
    if reason.kind is ReasonKind.SEEN_BEFORE and reason.weight < 2:
        return t.seen_once
    return t.reason[reason.kind].format(detail=_clip(reason.detail), n=int(reason.weight))


def explanation_text(lead: Lead | None, reasons: Sequence[Reason], now: datetime | None, language: str = "en") -> str:
    """One short sentence: the lead (top evidence) and the first applicable reason clause.

    Args:
        lead: Top evidence event, or None (then the first reason leads, capitalised).
        reasons: Reasons true for this user and item.
        now: The trigger event's time (None: the lead's own time).
        language: Key of `TEMPLATES` (unknown languages fall back to English).
    """
    t = templates(language)
    if lead is None:
        return compose(None, reasons, t)
    return compose(lead.render(now or lead.ts, t), reasons, t, lead.same_item)


def templates(language: str) -> Templates:
    """The phrases of `language` (unknown languages fall back to English)."""
    return TEMPLATES.get(language, TEMPLATES["en"])


def compose(
    lead: str | None,
    reasons: Sequence[Reason],
    t: Templates,
    lead_on_item: bool = False,
    clause: Callable[[Reason], str] | None = None,
) -> str:
    """`explanation_text` from an already rendered lead (a batch renders each user's lead event once).

    The lead already says what `similar_to` (and, when it is the one event on the item itself, `seen_before`)
    would. `clause` renders a reason's clause (default: `t`'s template; `BatchText` memoises it).
    """
    kinds = {r.kind: r for r in reasons}
    for kind in _CLAUSE_ORDER:
        found = kinds.get(kind)
        if found is None or (lead is not None and kind is ReasonKind.SIMILAR_TO):  # the lead names the item
            continue
        if not (lead_on_item and kind is ReasonKind.SEEN_BEFORE and found.weight < 2):  # "You viewed this" says it
            said = _clause(found, t) if clause is None else clause(found)
            text = lead + t.joiner + said if lead is not None else said
            break
    else:
        if lead is None:
            return t.fallback
        text = lead
    return (text[0].upper() + text[1:])[:1024]


class BatchText:
    """`compose` for one explain step, each distinct clause rendered once.

    A clause depends on the reason's kind, detail and whole weight only, and these recur across a batch's items:
    the shared `seen_before`, `category_affinity` and `trending` records (`explain.reasons.user_reasons`), one
    user's `cart_complement` reasons naming the same cart item, trending items of the same category.
    """

    def __init__(self, t: Templates) -> None:
        """Args: the language's phrases."""
        self.templates = t
        self._clauses: dict[tuple[ReasonKind, str, int, bool], str] = {}

    def clause(self, reason: Reason) -> str:
        """The clause `reason` adds after the lead."""
        weight = reason.weight
        key = (reason.kind, reason.detail, int(weight), weight < 2)  # all that `_clause` reads
        found = self._clauses.get(key)
        if found is None:
            found = self._clauses[key] = _clause(reason, self.templates)
        return found

    def compose(self, lead: str | None, reasons: Sequence[Reason], lead_on_item: bool = False) -> str:
        """`compose` with the memoised clauses, for reasons of distinct kinds (as `explain.reasons` makes them).

        One pass over the reasons keeping the best-ranked clause that may follow the lead, instead of `compose`'s
        kind table (`compose` lets the last reason of a repeated kind stand for it; here kinds do not repeat).
        """
        t = self.templates
        best, best_rank = None, _NONE
        for found in reasons:
            rank = _RANK.get(found.kind, _NONE)
            if rank < best_rank:
                if rank == _SIMILAR and lead is not None:  # the lead names the item
                    continue
                if rank == _SEEN and lead_on_item and found.weight < 2:  # "You viewed this" says it
                    continue
                best, best_rank = found, rank
        if best is not None:
            said = self.clause(best)
            text = lead + t.joiner + said if lead is not None else said
        elif lead is None:
            return t.fallback
        else:
            text = lead
        return (text[0].upper() + text[1:])[:1024]
