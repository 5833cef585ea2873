"""`streamrec model list | promote DIR | rollback [VERSION]`: the model store (STREAMREC_MODEL_DIR)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from streamrec.commands.common import StoreOption

if TYPE_CHECKING:
    from collections.abc import Callable

    from contracts import Settings
    from model.artifacts import Manifest
    from model.store import ModelStore

__all__ = ["list_", "promote", "register", "rollback"]


def _store(store: str | None, publish_as: str | None = None) -> tuple[ModelStore, Settings]:
    """The model store and the settings; with `publish_as`, first exit 2 with one line if the broker refuses this
    process's credentials (before torch is imported and before the store changes)."""
    from contracts import Settings

    settings = Settings()
    if publish_as is not None:
        from streamrec.preflight import require_access

        require_access(settings, publish_as, kafka=True)
    from model.store import ModelStore

    return ModelStore(store or settings.model_dir), settings


def _announce(settings: Settings, model_store: ModelStore, manifest: Manifest, publish: bool) -> None:
    if not publish:
        return
    from streams.learner.kafka import model_update, publish_update

    update = model_update(manifest, model_store.uri(manifest.version))
    try:
        asyncio.run(asyncio.wait_for(publish_update(settings, update), timeout=30))
    except Exception as exc:  # the store is already switched; workers also pick CURRENT up at start
        typer.echo(f"warning: {manifest.version} is current but the ModelUpdate was not published: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"published ModelUpdate {manifest.version} on {settings.topics.model_updates}")


def register(app: typer.Typer) -> None:
    """Attach the `model` command group."""
    group = typer.Typer(help="The model store: list, promote, roll back.", no_args_is_help=True)
    app.add_typer(group, name="model")
    group.command("list")(list_)
    group.command("promote")(promote)
    group.command("rollback")(rollback)


def list_(
    store: StoreOption = None,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per version."),
) -> None:
    """Every stored version, oldest first; `*` marks the serving one, `anchor` the gate's anchor."""
    from streams.learner.service import ONLINE_FILE

    model_store, _ = _store(store)
    versions = model_store.versions()
    effects = model_store.read_json(ONLINE_FILE)
    online = effects.get("versions", {})
    if not versions:
        typer.echo(f"model store {model_store.root} is empty (workers serve the baseline blend)")
        return
    anchor = model_store.anchor()
    for v in versions:
        m = v.manifest
        if as_json:
            row = {
                "version": m.version, "current": v.current, "anchor": m.version == anchor,
                "created_at": m.created_at.isoformat(),
                "parent": m.parent_version, "items": len(m.items), "metrics": m.metrics,
                "online": online.get(m.version, {}),
            }  # fmt: skip
            typer.echo(json.dumps(row))
        else:
            typer.echo(_version_line(m, v.current, m.version == anchor, online.get(m.version)))
    reasons = effects.get("reasons", {})
    if reasons and not as_json:
        typer.echo(f"online effects by reason kind (window {effects.get('window_seconds', 0):.0f}s):")
        for kind, e in reasons.items():
            rates = f"ctr={e['ctr']:.4f} cart_rate={e['cart_rate']:.4f} conversion={e['conversion']:.4f}"
            typer.echo(f"  {kind:18} impressions={e['impressions']:.0f} {rates}")


def _version_line(m: Manifest, current: bool, anchor: bool, effect: dict[str, float] | None) -> str:
    """One version of `model list`: marks, time, parent, items, NDCG metrics and online effects."""
    metrics = " ".join(f"{k}={val:.4f}" for k, val in sorted(m.metrics.items()) if "ndcg" in k)
    if effect:
        metrics += (
            f"  online: impressions={effect['impressions']:.0f} ctr={effect['ctr']:.4f} "
            f"cart_rate={effect['cart_rate']:.4f} conversion={effect['conversion']:.4f}"
        )
    return (
        f"{'*' if current else ' '} {m.version}  {m.created_at:%Y-%m-%d %H:%M:%S}  "
        f"parent={m.parent_version or '-'}  items={len(m.items)}{'  anchor' if anchor else ''}  "
        f"{metrics}"
    )


def promote(
    source: Path = typer.Argument(..., help="Model directory (e.g. `streamrec train --out DIR`)."),
    store: StoreOption = None,
    publish: bool = typer.Option(False, "--publish/--no-publish", help="Also announce it to running workers."),
) -> None:
    """Verify a model directory, copy it into the store and make it the serving version."""
    _switch(store, publish, "model promote", lambda s: s.promote(source), "promoted {version} into {root} (CURRENT)")


def rollback(
    version: str | None = typer.Argument(None, help="Version to serve (default: the current one's parent)."),
    store: StoreOption = None,
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Announce it to running workers."),
) -> None:
    """Serve an earlier version again (verified first; a corrupted version is refused)."""
    _switch(store, publish, "model rollback", lambda s: s.rollback(version), "rolled back to {version} (CURRENT)")


def _switch(
    store: str | None, publish: bool, command: str, change: Callable[[ModelStore], Manifest], done: str
) -> None:
    """Change the store's CURRENT with `change` (exit 1 with one line if refused), say `done`, announce it."""
    from contracts import StreamrecError

    model_store, settings = _store(store, command if publish else None)
    try:
        manifest = change(model_store)
    except StreamrecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(done.format(version=manifest.version, root=model_store.root))
    _announce(settings, model_store, manifest, publish)
