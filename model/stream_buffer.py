"""The learner's view of the live stream: per-user histories and the events since the last update cycle.

`cut()` turns the pending events into one cycle's data, prequentially: the older part (`1 - holdout`) is
training data (each active user's newest sequence), the newest part is the held-back window whose targets are
scored with the state the user had right before each event (never trained on before it is scored). Users seen
only in the held-back window are trained on in the next cycle. `warm()` rebuilds histories from events that
were already used (a restarted learner re-reads them from the events topic) without queueing them again.
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

    def warm(self, events: Iterable[Event]) -> list[UserSequence]:
        """Add already-used events to the histories only; returns the touched users' newest sequences (for the
        replay reservoir), oldest user first."""
        users: dict[str, None] = {}
        for event in events:
            self._history(event.user_id).add(event)
            users[event.user_id] = None
        kept = (h for u in users if (h := self._histories.get(u)) is not None)  # LRU may have dropped some
        sequences = (tuple(h.state().events[-self._length :]) for h in kept)
        return [s for s in sequences if len(s) >= 2]

    def drop_oldest(self, n: int) -> list[UserSequence]:
        """Take the `n` oldest pending events out of the next cycle's data: they only update the histories
        (`warm`); returns the touched users' sequences for the replay reservoir (a learner behind the stream
        trains on the newest events)."""
        oldest, self._pending = self._pending[:n], self._pending[n:]
        return self.warm(oldest)

    @property
    def users(self) -> int:
        """Users with a history."""
        return len(self._histories)

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
