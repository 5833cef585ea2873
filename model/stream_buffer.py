"""The learner's view of the live stream: per-user histories and the events since the last update cycle.

`cut()` turns the pending events into one cycle's data, prequentially: the older part (`1 - holdout`) is
training data (each active user's newest sequence), the newest part is the held-back window whose targets are
scored with the state the user had right before each event (never trained on before it is scored). Users seen
only in the held-back window are trained on in the next cycle.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from contracts import Event
from model.history import HistoryConfig, UserHistory
from model.scoring import PastEvent
from model.splits import TestPoint, is_target

__all__ = ["CycleData", "StreamBuffer", "UserSequence"]

UserSequence = tuple[PastEvent, ...]  # one user's events, oldest first


@dataclass(frozen=True, slots=True)
class CycleData:
    """One cycle's training sequences and held-back targets."""

    train: list[UserSequence]  # per active user: their newest events, oldest first
    users: list[str]  # the users of `train`, same order
    points: list[TestPoint]  # held-back targets with the state before each
    events: int  # events in this cycle
    items: list[str]  # item ids acted on in this cycle, first-seen order
    first_ts: datetime | None
    last_ts: datetime | None


class StreamBuffer:
    """Per-user running histories (LRU-bounded) and the events not yet used by a cycle."""

    def __init__(
        self, sequence_length: int, item_category: Mapping[str, str], max_users: int = 200_000, recent: int = 50
    ) -> None:
        """Args: events per training sequence (model `max_len` + 1), item -> category (live, may grow),
        users kept (least recently active dropped first), events kept per user (at least `sequence_length`)."""
        self._length = sequence_length
        self._categories = item_category
        self._max_users = max_users
        self._config = HistoryConfig(recent_events=max(recent, sequence_length))
        self._histories: OrderedDict[str, UserHistory] = OrderedDict()
        self._pending: list[Event] = []
        self._carry: set[str] = set()

    @property
    def pending(self) -> int:
        """Events waiting for the next cycle."""
        return len(self._pending)

    def add(self, event: Event) -> None:
        """Queue one event (events of a user arrive in their partition order)."""
        self._pending.append(event)

    def carry(self, users: Iterable[str]) -> None:
        """Train on these users' sequences again in the next cycle (e.g. after a postponed decision)."""
        self._carry.update(users)

    def _history(self, user_id: str) -> UserHistory:
        history = self._histories.get(user_id)
        if history is None:
            history = self._histories[user_id] = UserHistory(user_id, self._categories, self._config)
            while len(self._histories) > self._max_users:
                self._histories.popitem(last=False)
        else:
            self._histories.move_to_end(user_id)
        return history

    def cut(self, holdout_fraction: float) -> CycleData:
        """Consume the pending events into one cycle's data (see the module docstring)."""
        events, self._pending = self._pending, []
        n_fit = int(round(len(events) * (1.0 - holdout_fraction)))
        users = set(self._carry)
        for event in events[:n_fit]:
            self._history(event.user_id).add(event)
            users.add(event.user_id)
        sequences = {u: tuple(self._history(u).state().events[-self._length :]) for u in sorted(users)}
        sequences = {u: s for u, s in sequences.items() if len(s) >= 2}  # an input and a target at least
        points: list[TestPoint] = []
        self._carry = set()
        for event in events[n_fit:]:
            history = self._history(event.user_id)
            state = history.state()
            previous = state.events[-1].item_id if state.events else None
            if is_target("next-new", event.item_id, previous, bool(state.events)) and event.item_id is not None:
                points.append(TestPoint(state, event.item_id, event.type))
            history.add(event)
            self._carry.add(event.user_id)
        items = list(dict.fromkeys(e.item_id for e in events if e.item_id is not None))
        first = min((e.ts for e in events), default=None)
        last = max((e.ts for e in events), default=None)
        return CycleData(list(sequences.values()), list(sequences), points, len(events), items, first, last)
