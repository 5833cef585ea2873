"""Self-contained HTML report of `explain.evaluate` results: tables and inline SVG line/bar plots (no CDN, no JS)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_report", "svg_bars", "svg_lines"]

_STYLE = "body{font-family:sans-serif;max-width:900px}table{border-collapse:collapse}td,th{border:1px solid #ccc}"
_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#666666")


def _legend(x: int, y: int, colour: str, name: str) -> str:
    return f'<text x="{x}" y="{y}" font-size="11" fill="{colour}">{html.escape(name)}</text>'


def svg_lines(series: Mapping[str, Sequence[float]], title: str, width: int = 520, height: int = 260) -> str:
    """Line plot of named series over x = 1..n (nan points skipped)."""
    values = [v for ys in series.values() for v in ys if not math.isnan(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    high = high if high > low else low + 1.0
    n = max((len(ys) for ys in series.values()), default=1)
    pad = 40

    def xy(i: int, y: float) -> str:
        x = pad + (width - 2 * pad) * (i / max(1, n - 1))
        return f"{x:.1f},{height - pad - (height - 2 * pad) * (y - low) / (high - low):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(f'<text x="{pad}" y="16" font-size="13">{html.escape(title)}</text>')
    parts.append(f'<text x="2" y="{pad}" font-size="10">{high:.2f}</text>')
    parts.append(f'<text x="2" y="{height - pad}" font-size="10">{low:.2f}</text>')
    parts.append(f'<text x="{width - pad}" y="{height - 8}" font-size="10">m={n}</text>')
    for c, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        points = " ".join(xy(i, y) for i, y in enumerate(ys) if not math.isnan(y))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(_legend(width - 150, 30 + 14 * c, colour, name))
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(groups: Mapping[str, Sequence[float]], labels: Sequence[str], title: str, width: int = 620) -> str:
    """Grouped bar chart: one bar per group for each label (values are shares in [0, 1])."""
    height, pad = 240, 40
    n, g = max(1, len(labels)), max(1, len(groups))
    slot = (width - 2 * pad) / n
    top = max([v for vs in groups.values() for v in vs] + [1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(f'<text x="{pad}" y="16" font-size="13">{html.escape(title)}</text>')
    for c, (name, values) in enumerate(groups.items()):
        colour = _COLOURS[c % len(_COLOURS)]
        parts.append(_legend(width - 160, 30 + 14 * c, colour, name))
        for i, value in enumerate(values):
            h = (height - 2 * pad) * value / top
            x = pad + i * slot + c * slot / (g + 1)
            w = slot / (g + 1)
            box = f'x="{x:.1f}" y="{height - pad - h:.1f}" width="{w:.1f}" height="{h:.1f}"'
            parts.append(f'<rect {box} fill="{colour}"/>')
    for i, label in enumerate(labels):
        x = pad + i * slot
        parts.append(f'<text x="{x:.1f}" y="{height - pad + 14}" font-size="9">{html.escape(label[:10])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(result: Mapping[str, Any]) -> str:
    keys = ("deletion_auc", "insertion_auc", "comprehensiveness", "sufficiency", "text_agreement", "cost_ms")
    head = "".join(f"<th>{k}</th>" for k in ("method", *keys))
    rows = []
    for name, m in result["methods"].items():
        mark = " (default)" if name == result["default_method"] else ""
        cells = "".join(f"<td>{'-' if m[k] is None else f'{m[k]:.4f}'}</td>" for k in keys)
        rows.append(f"<tr><td>{html.escape(name + mark)}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_report(result: Mapping[str, Any]) -> str:
    """The whole HTML page for one explain-eval result."""
    methods = result["methods"]
    ex = result["exposure"]
    categories = list(ex["categories_data"])
    body = [
        f"<h1>Explanation fidelity: {html.escape(str(result['model_version']))}</h1>",
        f"<p>{result['n_users']} users, {result['n_pairs']} explained (user, item) pairs, top {result['k']} "
        f"items each; default method <b>{html.escape(result['default_method'])}</b> "
        f"(backend {html.escape(result['backend'])}). Score differences are in units of the mean |full - empty| "
        f"= {result['score_scale']:.4f}.</p>",
        _table(result),
        "<p>Deletion/insertion AUC: mean normalised score drop (gain) when the top-m attributed events are deleted "
        "(kept alone), m = 1..L; higher is better. Comprehensiveness / sufficiency (ERASER): drop when the top "
        "1/5/10/20/50 % are deleted / kept alone; high comprehensiveness and low sufficiency are better. "
        "text_agreement: share of pairs whose top event is the one the explanation text leads with.</p>",
        svg_lines({n: m["deletion_curve"] for n, m in methods.items()}, "Deletion: normalised score drop vs m"),
        svg_lines({n: m["insertion_curve"] for n, m in methods.items()}, "Insertion: normalised score gain vs m"),
        svg_lines({n: m["deletion_rank_curve"] for n, m in methods.items()}, "Deletion: rank in the slate vs m"),
        "<h2>Exposure</h2>",
        f"<p>{ex.get('slots', 0)} recommendation slots of the sampled users. "
        f"Catalog coverage {ex['catalog_coverage']:.4f} of {ex['catalog_size']} items; Gini of "
        f"recommendation exposure {ex['gini_recommendations']:.4f} vs data {ex['gini_data']:.4f}.</p>",
        svg_bars(
            {"recommendations": ex["popularity_deciles_recommendations"], "data": ex["popularity_deciles_data"]},
            [f"d{i}" for i in range(1, 11)],
            "Share by popularity decile (d1 = most popular)",
        ),
        svg_bars(
            {
                "recommendations": [ex["categories_recommendations"].get(c, 0.0) for c in categories],
                "data": [ex["categories_data"][c] for c in categories],
            },
            categories,
            "Share by category (top categories in the data)",
        ),
    ]
    head = f"<meta charset='utf-8'><title>explain-eval</title><style>{_STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
