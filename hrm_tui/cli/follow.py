"""Following a run live from the shell (``hrm run ... --follow``)."""

from __future__ import annotations

from typing import Any

from core import api
from core.registry import store
from hrm_tui import render
from hrm_tui.cli.common import console, err_console


def follow_run(db, run_id: int) -> str:
    """Render a run live until it ends; returns the final status."""
    from rich.live import Live

    screen = console()
    epochs: list[dict[str, Any]] = []
    layers: dict[int, dict[str, float]] = {}
    logs: list[str] = []
    live = Live(console=screen, refresh_per_second=4, transient=False) if screen.is_terminal else None
    if live:
        live.start()
    try:
        for update in api.follow(db, run_id):
            record = api.run_record(update.run)
            for row in update.metrics:
                if row["kind"] == "epoch":
                    epochs.append(row)
                elif row["kind"] == "layer":
                    layers.setdefault(row["layer"], {})[row["key"]] = row["value"]
            logs.extend(line["message"] for line in update.logs)
            if live:
                live.update(render.follow_view(record, epochs, layers, logs))
            else:
                _print_plain_update(update)
    finally:
        if live:
            live.stop()
    final = store.get_run(db, run_id)
    err = f" ({final.error})" if final.error else ""
    err_console().print(f"run {run_id} {render.status_text(final.status)}{err}")
    return final.status


def _print_plain_update(update: api.FollowUpdate) -> None:
    """Non-terminal output: one line per epoch with its per-layer values."""
    by_epoch: dict[tuple, dict[str, Any]] = {}
    for row in update.metrics:
        if row["kind"] not in ("epoch", "layer"):
            continue
        slot = by_epoch.setdefault((row["stage"], row["epoch"]), {"metrics": {}, "layers": {}})
        if row["kind"] == "epoch":
            slot["metrics"][row["key"]] = row["value"]
        else:
            slot["layers"].setdefault(row["layer"], {})[row["key"]] = row["value"]
    screen = console()
    for (stage, epoch), slot in by_epoch.items():
        prefix = (f"stage {stage} " if stage else "") + (f"epoch {epoch}" if epoch is not None else "final")
        metrics = "  ".join(f"{k} {render.fmt(v)}" for k, v in slot["metrics"].items())
        layer_text = "  ".join(
            f"L{layer} " + "/".join(render.fmt(v) for v in values.values()) for layer, values in sorted(slot["layers"].items())
        )
        screen.print(f"{prefix}  {metrics}" + (f"  | {layer_text}" if layer_text else ""), highlight=False, soft_wrap=True)
    for line in update.logs:
        screen.print(f"[dim]{line['message']}[/dim]", highlight=False, soft_wrap=True)
