"""Following a run from the shell: ``hrm run ... --follow`` and ``hrm follow RUN_ID``.

Following only reads the registry: stopping it (Ctrl-C, SIGTERM) never stops the run, and the
message says so and how to come back. The last line is the result the run exists for: its
headline (e.g. best val PPL) and the epoch it came from.
"""

import signal
from collections.abc import Mapping
from typing import Any, Optional

import typer

from hrm_tui.cli.common import DbOption, RunIdArgument, console, err_console, registry

INTERRUPT_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit codes of an interrupted ``--follow`` (128 + the signal, as shells report it)."""


class FollowInterrupted(Exception):
    """Ctrl-C or SIGTERM while following."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def follow(ctx: typer.Context, run_id: RunIdArgument, db: DbOption = None) -> None:
    """Watch a run live until it ends (Ctrl-C stops watching, not the run)."""
    from core.registry.status import RunStatus

    database = registry(ctx, db)
    from core import api

    run = api.require_run(database, run_id)
    unscheduled = run.status == RunStatus.QUEUED and not api.scheduler_alive(database)  # it would wait for nothing
    final_status = follow_run(database, run_id, unscheduled=unscheduled)
    raise typer.Exit(0 if final_status == RunStatus.COMPLETED.value else 1)


def follow_run(db, run_id: int, *, unscheduled: bool = False) -> str:
    """Render a run until it ends and print its result; returns the final status.

    Ctrl-C or SIGTERM ends the command (exit 130 / 143) with a line saying the run goes on.
    ``unscheduled``: the run is queued and no scheduler is alive, which the second line says.
    """
    err_console().print(f"[dim]following run {run_id}: Ctrl-C stops following, not the run[/dim]")
    if unscheduled:
        err_console().print(f"[yellow]run {run_id} is queued and no scheduler is running:[/yellow] "
                            f"start one with `hrm scheduler`", highlight=False, soft_wrap=True)
    previous = _on_sigterm(_raise_interrupted)
    try:
        status = _watch(db, run_id)
    except KeyboardInterrupt:
        _interrupted(db, run_id, signal.SIGINT)
    except FollowInterrupted as exc:
        _interrupted(db, run_id, exc.signum)
    finally:
        _on_sigterm(previous)
    return status


def wait_run(db, run_id: int):
    """``--wait``: block until the run ends and return it; Ctrl-C or SIGTERM ends the command
    (exit 130 / 143) with the same line as ``--follow``: the run goes on, and how to come back."""
    from core import api

    previous = _on_sigterm(_raise_interrupted)
    try:
        return api.wait(db, run_id)
    except KeyboardInterrupt:
        _interrupted(db, run_id, signal.SIGINT, "waiting for")
    except FollowInterrupted as exc:
        _interrupted(db, run_id, exc.signum, "waiting for")
    finally:
        _on_sigterm(previous)


def _on_sigterm(handler):
    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, TypeError):  # not the main thread (an embedding app): leave signals alone
        return None


def _raise_interrupted(signum, frame) -> None:
    raise FollowInterrupted(signum)


def _interrupted(db, run_id: int, signum: int, doing: str = "following") -> None:
    from core import api

    queued = api.require_run(db, run_id).status.value == "queued"
    err_console().print(
        f"\nstopped {doing} run {run_id}; the run goes on " + ("waiting in the queue" if queued else "in the background")
        + ".\n"
        f"re-attach: [bold]hrm follow {run_id}[/bold] · its output: hrm logs {run_id} -f · stop it: hrm cancel {run_id}",
        highlight=False, soft_wrap=True)
    raise typer.Exit(INTERRUPT_EXIT.get(signum, 1))


def _watch(db, run_id: int) -> str:
    from core import api
    from hrm_tui import render

    screen = console()
    epochs: list[dict[str, Any]] = []
    layers: dict[int, dict[str, float]] = {}
    logs: list[str] = []
    printer = EpochLines()
    live = None
    if screen.is_terminal:
        from rich.live import Live

        live = Live(console=screen, refresh_per_second=4, transient=False)
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
                live.update(render.follow_view(record, epochs, layers, logs, width=screen.width))
            else:
                printer.add(update.metrics, update.logs)
                printer.flush(keep_last=not update.run.status.is_terminal)
    finally:
        if live:
            live.stop()
        printer.flush(keep_last=False)
    final = api.require_run(db, run_id)
    record = api.list_records(db, ids=[run_id])[0]
    err_console().print(result_line(record, final.error), highlight=False, soft_wrap=True)
    return final.status


class EpochLines:
    """Plain output (a pipe, a log file): one line per whole epoch, its metrics and per-layer values.

    An epoch's run-level numbers and its per-layer numbers arrive as two events, possibly in two
    polls: a line is printed once the next epoch has begun (or the run has ended).
    """

    def __init__(self) -> None:
        self.pending: dict[tuple, dict[str, Any]] = {}

    def add(self, rows, log_lines) -> None:
        for row in rows:
            if row["kind"] not in ("epoch", "layer"):
                continue
            slot = self.pending.setdefault((row["stage"], row["epoch"]), {"metrics": {}, "layers": {}, "logs": []})
            if row["kind"] == "epoch":
                slot["metrics"][row["key"]] = row["value"]
            else:
                slot["layers"].setdefault(row["layer"], {})[row["key"]] = row["value"]
        for line in log_lines:
            if self.pending:
                self.pending[next(reversed(self.pending))]["logs"].append(line["message"])
            else:
                console().print(f"[dim]{line['message']}[/dim]", highlight=False, soft_wrap=True)

    def flush(self, *, keep_last: bool) -> None:
        from hrm_tui import render

        keys = list(self.pending)[: -1 if keep_last else None]
        for key in keys:
            stage, epoch = key
            slot = self.pending.pop(key)
            prefix = (f"stage {stage} " if stage else "") + (f"epoch {epoch}" if epoch is not None else "final")
            metrics = "  ".join(f"{k} {render.fmt(v)}" for k, v in slot["metrics"].items())
            layer_text = "  ".join(f"L{layer} " + "/".join(render.fmt(v) for v in values.values())
                                   for layer, values in sorted(slot["layers"].items()))
            console().print(f"{prefix}  {metrics}" + (f"  | {layer_text}" if layer_text else ""), highlight=False,
                            soft_wrap=True)
            for message in slot["logs"]:
                console().print(f"[dim]{message}[/dim]", highlight=False, soft_wrap=True)


def result_line(record: Mapping[str, Any], error: Optional[str] = None) -> str:
    """``run 12 completed in 1m 04s: best_val_ppl 9.75 at epoch 7`` (what the run was for)."""
    from hrm_tui import render

    status = record["status"]
    text = f"run {record['id']} {status}"
    if record.get("elapsed_s") is not None:
        text += f" in {render.duration(record['elapsed_s'])}"
    headline = headline_result(record)
    if headline:
        text += f": {headline}"
    if error:
        text += f" ({error})"
    return text


def headline_result(record: Mapping[str, Any]) -> Optional[str]:
    """The headline and the epoch it was reached at, from the run's summary or its best so far."""
    from hrm_tui import render

    latest = record.get("latest") or {}
    key = (record.get("headline") or {}).get("key")
    value = (record.get("headline") or {}).get("value")
    epoch = (latest.get("best_epoch") or {}).get("last")
    if value is None and key == "best_val_ppl" and "val_ppl" in latest:
        value, epoch = latest["val_ppl"].get("min"), latest["val_ppl"].get("min_epoch")
        key = "best val_ppl so far"
    elif epoch is None and key == "best_val_ppl" and "val_ppl" in latest:
        epoch = latest["val_ppl"].get("min_epoch")
    if key is None or value is None:
        return None
    where = f" at epoch {int(epoch)}" if isinstance(epoch, (int, float)) and epoch == epoch else ""
    return f"{key} {render.fmt(value)}{where}"
