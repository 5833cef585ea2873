"""Explanations: evidence attribution, structured reasons and text for every recommended item.

Entry point for the worker and the scorers: `Explainer` (`Explainer.for_scorer(scorer)` for a transformer,
`Explainer()` for a baseline scorer), then `explainer.explain(users, items, scored)` -> `contracts.Explanation`s.
`explain` never imports `streams` or Kafka.
"""

from __future__ import annotations

from explain.explainer import DEFAULT_METHOD, Explainer, default_method, select_method

__all__ = ["DEFAULT_METHOD", "Explainer", "default_method", "select_method"]
