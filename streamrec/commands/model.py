"""`streamrec model list | promote DIR | rollback [VERSION]`: the model store (STREAMREC_MODEL_DIR)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from contracts import Settings
    from model.artifacts import Manifest
    from model.store import ModelStore

__all__ = ["register"]

_STORE_HELP = "Model store directory or file:// URI (default: STREAMREC_MODEL_DIR)."


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

    @group.command("list")
    def list_(
        store: str | None = typer.Option(None, help=_STORE_HELP),
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
            row = {
                "version": m.version, "current": v.current, "anchor": m.version == anchor,
                "created_at": m.created_at.isoformat(),
                "parent": m.parent_version, "items": len(m.items), "metrics": m.metrics,
                "online": online.get(m.version, {}),
            }  # fmt: skip
            if as_json:
                typer.echo(json.dumps(row))
                continue
            metrics = " ".join(f"{k}={val:.4f}" for k, val in sorted(m.metrics.items()) if "ndcg" in k)
            effect = online.get(m.version)
            if effect:
                metrics += (
                    f"  online: impressions={effect['impressions']:.0f} ctr={effect['ctr']:.4f} "
                    f"cart_rate={effect['cart_rate']:.4f} conversion={effect['conversion']:.4f}"
                )
            typer.echo(
                f"{'*' if v.current else ' '} {m.version}  {m.created_at:%Y-%m-%d %H:%M:%S}  "
                f"parent={m.parent_version or '-'}  items={len(m.items)}{'  anchor' if m.version == anchor else ''}  "
                f"{metrics}"
            )
        reasons = effects.get("reasons", {})
        if reasons and not as_json:
            typer.echo(f"online effects by reason kind (window {effects.get('window_seconds', 0):.0f}s):")
            for kind, e in reasons.items():
                rates = f"ctr={e['ctr']:.4f} cart_rate={e['cart_rate']:.4f} conversion={e['conversion']:.4f}"
                typer.echo(f"  {kind:18} impressions={e['impressions']:.0f} {rates}")

    @group.command("promote")
    def promote(
        source: Path = typer.Argument(..., help="Model directory (e.g. `streamrec train --out DIR`)."),
        store: str | None = typer.Option(None, help=_STORE_HELP),
        publish: bool = typer.Option(False, "--publish/--no-publish", help="Also announce it to running workers."),
    ) -> None:
        """Verify a model directory, copy it into the store and make it the serving version."""
        from contracts import StreamrecError

        model_store, settings = _store(store, "model promote" if publish else None)
        try:
            manifest = model_store.promote(source)
        except StreamrecError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"promoted {manifest.version} into {model_store.root} (CURRENT)")
        _announce(settings, model_store, manifest, publish)

    @group.command("rollback")
    def rollback(
        version: str | None = typer.Argument(None, help="Version to serve (default: the current one's parent)."),
        store: str | None = typer.Option(None, help=_STORE_HELP),
        publish: bool = typer.Option(True, "--publish/--no-publish", help="Announce it to running workers."),
    ) -> None:
        """Serve an earlier version again (verified first; a corrupted version is refused)."""
        from contracts import StreamrecError

        model_store, settings = _store(store, "model rollback" if publish else None)
        try:
            manifest = model_store.rollback(version)
        except StreamrecError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"rolled back to {manifest.version} (CURRENT)")
        _announce(settings, model_store, manifest, publish)
