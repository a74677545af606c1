"""Helpers of the compare/reproduce tests: write finished runs fast, and runs that print a report's numbers.

``fake_run`` writes a run the way a worker does (``api.submit`` when the experiment is in the
catalog, then ``RegistryEmitter`` events, then a terminal status). ``published_runs`` builds, for
every run key of a published-numbers file, the events that make each ``ref`` resolve to the
published value: the inverse of :func:`core.reproduce.compare_report`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from core import api, published
from core.experiments import catalog
from core.registry import RunStatus, store
from core.experiments.base import RecordingEmitter
from core.registry.emitter import RegistryEmitter

def _execute(db_url: str, run_id: int) -> int:
    from core.worker import execute

    return execute(db_url, run_id)


def execute_runs(db_url: str, run_ids: Iterable[int], *, workers: int = 1) -> dict[int, int]:
    """Run queued runs to their end with ``core.worker.execute``: in this process, or in ``workers``
    spawned processes. {run id: exit code}. Prints a line per finished run (seen with ``pytest -s``),
    so a long reproduction is never silent."""
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ids = list(run_ids)
    started = time.monotonic()
    codes: dict[int, int] = {}

    def done(run_id: int, code: int) -> None:
        codes[run_id] = code
        print(f"run {run_id} ended with exit code {code} ({len(codes)}/{len(ids)}, "
              f"{time.monotonic() - started:.0f} s)", flush=True)

    if workers <= 1:
        for i in ids:
            done(i, _execute(db_url, i))
        return codes
    import multiprocessing

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_execute, db_url, i): i for i in ids}
        for future in as_completed(futures):
            done(futures[future], future.result())
    return codes


def fake_run(db, experiment: str, config: Mapping[str, Any] | None = None, *, tags: Iterable[str] = (),
             info: Mapping[str, Any] | None = None, summaries: Mapping[int, Mapping[str, float]] | None = None,
             epochs: Mapping[int, Iterable[tuple[int, Mapping[str, float]]]] | None = None,
             layers: Mapping[tuple[int, int | None], Mapping[int, Mapping[str, float]]] | None = None,
             tables: Iterable[tuple[str, int, list[dict[str, Any]]]] = (), status: str = "completed") -> int:
    """A run with these events; returns its id."""
    config = dict(config or {})
    if experiment in catalog():  # validated like a submit, but never preflighted: nothing will run it
        valid = api.validate_config(experiment, config).model_dump(mode="json")
        run = store.create_run(db, experiment, valid, tags=list(tags), headline_key=catalog()[experiment].headline)
    else:
        run = store.create_run(db, experiment, config, tags=list(tags), headline_key="best_val_ppl")
    if status == "queued":
        return run.id
    store.mark_running(db, run.id, pid=1, host="test", info={"seed": config.get("seed", 42)})
    emit = RegistryEmitter(db, run.id)
    if info:
        emit.info(**info)
    for stage, rows in (epochs or {}).items():
        for epoch, metrics in rows:
            emit.epoch(epoch, metrics, stage=stage)
    for (stage, epoch), per_layer in (layers or {}).items():
        emit.layers(epoch, per_layer, stage=stage)
    for name, stage, rows in tables:
        emit.table(name, rows, stage=stage)
    for stage, metrics in sorted((summaries or {}).items(), reverse=True):
        emit.summary(metrics, stage=stage)
    if status != "running":
        store.finish_run(db, run.id, RunStatus(status))
    return run.id


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def published_events(report: str, *, perturb: Mapping[tuple[str, str, str], float] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """{run key: fake_run keyword arguments} whose numbers equal the report's printed ones.

    ``perturb`` maps (table id, row label, column) → a factor applied to that number.
    """
    doc = published.load(report)
    perturb = perturb or {}
    pinned: set[tuple] = set()  # perturbed numbers win over other cells that read the same metric
    events: dict[str, dict[str, Any]] = {k: {"summaries": {}, "epochs": {}, "layers": {}, "tables": {}, "info": {}}
                                         for k in doc["runs"]}
    for table in doc["tables"]:
        for row in table["rows"]:
            if not row.get("reproducible", True):
                continue
            for ci, col in enumerate(table["columns"]):
                # A hand-rounded number: the run prints what the report's rounding stands for.
                pub = published.parse_printed(row.get("rounding", {}).get(col["name"], row["values"][ci]))
                ref = row.get("refs", {}).get(col["name"], col.get("ref"))
                if not pub.numeric or ref is None or "derived" in ref:
                    continue
                ref = _subst(ref["any"][0] if "any" in ref else ref, row)
                value = pub.value * pub.scale / ref.get("scale", 1.0)
                run_key = ref.get("run", row.get("run"))
                ev = events[run_key]
                stage = ref.get("stage", row.get("stage")) or 0
                cell = (table["id"], row["label"], col["name"])
                if cell in perturb:
                    value *= perturb[cell]
                    pinned.add((run_key, stage, json.dumps(ref, sort_keys=True, default=str)))
                elif (run_key, stage, json.dumps(ref, sort_keys=True, default=str)) in pinned:
                    continue
                if "metric" in ref:
                    summary = ev["summaries"].setdefault(stage, {})
                    if ref["metric"] not in summary or pub.scale == 1.0:  # "134,515,008" beats "134.5M"
                        summary[ref["metric"]] = value
                    if "rule" in col:  # a run printing the report's count also satisfies the rule
                        summary[_subst(col["rule"], row)["metric"]] = pub.value * pub.scale
                elif "info" in ref:
                    ev["info"][ref["info"]] = value
                elif "layer" in ref:
                    ev["layers"].setdefault((stage, ref.get("epoch")), {}).setdefault(ref["layer"], {})[ref["key"]] = value
                elif "epoch" in ref:
                    ev["epochs"].setdefault(stage, {}).setdefault(ref["epoch"], {})[ref["key"]] = value
                elif "table" in ref:
                    where = {k: _number(v) for k, v in ref.get("where", {}).items()}
                    rows = ev["tables"].setdefault((ref["table"], stage), [])
                    target = next((r for r in rows if all(r.get(k) == v for k, v in where.items())), None)
                    if target is None:
                        target = dict(where)
                        rows.append(target)
                    target[ref["col"]] = value
    out = {}
    for key, ev in events.items():
        out[key] = {
            "info": ev["info"],
            "summaries": ev["summaries"],
            "epochs": {s: sorted(rows.items()) for s, rows in ev["epochs"].items()},
            "layers": ev["layers"],
            "tables": [(name, stage, rows) for (name, stage), rows in ev["tables"].items()],
        }
    return out


def _subst(ref: Any, row: Mapping[str, Any]) -> Any:
    from core.reproduce import _subst as subst

    return subst(ref, row)


def seed_published(db, report: str, variant: str = "published", *, perturb=None, skip: Iterable[str] = (),
                   tags: Iterable[str] = (), device: str | None = None) -> dict[str, int]:
    """One finished run per run key of ``report`` printing the published numbers; {run key: run id}.

    ``device`` replaces the configs' device (``"cuda"``: runs as if made on a GPU).
    """
    doc = published.load(report)
    events = published_events(report, perturb=perturb)
    ids = {}
    for key, spec in doc["runs"].items():
        if key in skip:
            continue
        config = {**spec["config"], **spec.get(variant, {}), "variant": variant}
        if device is not None:
            config["device"] = device
        ids[key] = fake_run(db, spec["experiment"], config, tags=tags, **events[key])
    return ids


class EchoingEmitter(RecordingEmitter):
    """A RecordingEmitter that also prints each stage and epoch (seen with ``pytest -s``): a long
    reproduction in CI shows a line every epoch instead of minutes of silence."""

    def stage(self, stage, name, *, epochs=None) -> None:
        super().stage(stage, name, epochs=epochs)
        print(f"  stage {stage}: {name}", flush=True)

    def epoch(self, epoch, metrics, *, stage=0, total=None, layers=None) -> None:
        super().epoch(epoch, metrics, stage=stage, total=total, layers=layers)
        ppl = metrics.get("val_ppl")
        print(f"  stage {stage} epoch {epoch}/{total or '?'}" + (f": val_ppl {ppl:.4f}" if ppl is not None else ""),
              flush=True)
