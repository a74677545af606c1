"""Comparison tables built from run records (their exporters: :mod:`core.compare_export`, re-exported here).

Headless: no Rich, no Typer. The CLI (``hrm compare``) renders :class:`Table` with Rich; everything
else (what the rows and columns are, how numbers are qualified, how a table is written to a file)
lives here, so the dashboard and scripts get the same tables.

Table kinds
- ``runs``: one row per run; columns are the config keys that differ between the runs, the headline
  metric, the epoch of the best value, parameters, the last ``val_ppl`` and, with a baseline run, the
  change against it in % (the reports' "ベースライン比" column: positive = better). Built from the
  runs' latest-metric summaries only (``api.list_records``), never from metric histories.
- ``aggregate``: runs that differ only by seed collapsed into one row: mean ± sample std (n ≥ 2).
- ``layers``: per-layer metrics: layer × epoch for one run, layer × run for several (history reads).
- ``stages``: one row per (run, stage) from the ``s<k>/...`` summaries.
- ``thresholds``: the runs' analysis tables whose name contains "threshold", one row per table row.
- ``report``: published vs ours (built by :mod:`core.reproduce`).

Metric specs (``--metric``): ``KEY`` or ``KEY:FIELD`` with FIELD one of last, min, max, min_epoch,
max_epoch, count, best (min when lower is better); a stage prefix reads ``s2/val_ppl:min``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The exporters (and CompareError, which they raise too) live in core.compare_export; importable from here.
from core.compare_export import (  # noqa: F401
    COMPARE_JSON_SCHEMA, COMPARE_JSON_SCHEMA_ID, FORMATS, CompareError, export, latex_escape, summary_line, to_csv,
    to_json, to_latex, to_markdown,
)
from core.registry.view import format_number, latest_key

FIELDS = ("last", "min", "max", "min_epoch", "max_epoch", "count", "best")
IGNORED_CONFIG_KEYS = ("variant",)
"""Keys never shown as 'differs' columns on their own (the variant has its own column)."""


# --- the table model --------------------------------------------------------------------------

@dataclass
class Column:
    """One column: ``key`` into each row dict, a ``label`` for humans, a value ``type``.

    ``decimals`` fixes how numbers print (None: 4 significant decimals); ``suffix`` is appended when
    printing ("%", "K"); ``status_key`` names the row key whose value ("ok", "out", ...) marks the cell;
    ``group`` is a header group (report tables: the published column a triple belongs to).
    """

    key: str
    label: str
    type: str = "number"  # number | integer | text
    decimals: int | None = None
    suffix: str = ""
    comma: bool = False
    signed: bool = False
    status_key: str | None = None
    group: str | None = None
    pair_key: str | None = None
    """Human formats print this column as "value ± <pair_key's value>" (mean ± std)."""
    human: bool = True
    """False: only in CSV/JSON (e.g. the std column already shown after ±)."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "label": self.label, "type": self.type}
        if self.group is not None:
            out["group"] = self.group
        if self.status_key is not None:
            out["status_key"] = self.status_key
        if self.decimals is not None:
            out["decimals"] = self.decimals
        return out


@dataclass
class Table:
    """A titled grid of plain JSON-ready rows (values: number, string or None)."""

    id: str
    title: str
    kind: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: list[dict[str, Any]] | None = None
    """Report tables: one entry per published number (long form, see the JSON schema)."""
    formats: dict[tuple[int, str], Column] = field(default_factory=dict)
    """Per-cell print formats (row index, column key) overriding the column's (mixed-unit columns)."""

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(key)

    def values(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    def human_columns(self) -> list[Column]:
        return [c for c in self.columns if c.human]

    def cell_text(self, index: int, col: Column, *, mark: str = "") -> str:
        """The printed cell (row ``index``, column ``col``); ``mark`` is appended when its status is "out"."""
        row = self.rows[index]
        text = format_value(row.get(col.key), self.formats.get((index, col.key), col))
        if col.pair_key and row.get(col.key) is not None and row.get(col.pair_key) is not None:
            text = f"{text} ± {format_value(row[col.pair_key], col)}"
        if mark and col.status_key and row.get(col.status_key) == "out":
            text = f"{text} {mark}"
        return text

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "title": self.title, "kind": self.kind,
            "columns": [c.as_json() for c in self.columns],
            "rows": [{c.key: _json_value(row.get(c.key)) for c in self.columns} | _status_cells(row, self.columns)
                     for row in self.rows],
            "notes": list(self.notes),
        }
        if self.numbers is not None:
            out["numbers"] = [{k: _json_value(v) for k, v in n.items()} for n in self.numbers]
        return out


def _status_cells(row: Mapping[str, Any], columns: Sequence[Column]) -> dict[str, Any]:
    return {c.status_key: row.get(c.status_key) for c in columns if c.status_key}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


# --- number formatting ------------------------------------------------------------------------

def format_value(value: Any, col: Column | None = None) -> str:
    """How a cell prints in tables, markdown and LaTeX ('—' for missing)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if col is not None and col.decimals is not None:
        value = round(float(value), col.decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
        sign = "+" if col.signed and value > 0 else ""
        text = f"{value:,.{col.decimals}f}" if col.comma else f"{value:.{col.decimals}f}"
        return f"{sign}{text}{col.suffix}"
    if col is not None and col.type == "integer" or isinstance(value, int):
        return f"{int(round(value)):,}" + (col.suffix if col else "")
    value = float(value)
    text = format_number(value)
    if col is not None and col.signed and value > 0:
        text = "+" + text
    return text + (col.suffix if col else "")


# --- reading latest summaries -----------------------------------------------------------------

def parse_metric_spec(spec: str) -> tuple[str, str]:
    """``val_ppl:min`` → ("val_ppl", "min"); a bare key reads ``last``."""
    key, _, fld = spec.partition(":")
    fld = fld or "last"
    if not key or fld not in FIELDS:
        raise CompareError(f"bad metric {spec!r}: use KEY or KEY:FIELD with FIELD in {', '.join(FIELDS)}")
    return key, fld


def latest_value(record: Mapping[str, Any], key: str, fld: str = "last", *, lower_is_better: bool = True) -> Any:
    entry = record.get("latest", {}).get(key)
    if entry is None:
        return None
    if fld == "best":
        fld = "min" if lower_is_better else "max"
    return entry.get(fld)


def headline_key(record: Mapping[str, Any]) -> str:
    return record.get("headline", {}).get("key") or "best_val_ppl"


def best_value(record: Mapping[str, Any], *, lower_is_better: bool = True) -> float | None:
    """The run's headline summary; while it trains (or without a summary) the best ``val_ppl`` so far."""
    key = headline_key(record)
    value = latest_value(record, key)
    if value is None and key == "best_val_ppl":
        value = latest_value(record, _current_stage_key(record, "val_ppl"), "best", lower_is_better=lower_is_better)
    return value


def best_epoch(record: Mapping[str, Any], *, lower_is_better: bool = True) -> int | None:
    """The epoch of :func:`best_value`: the summary's, else that of the best ``val_ppl`` of the current stage."""
    value = latest_value(record, "best_epoch")
    if value is None:
        value = latest_value(record, _current_stage_key(record, "val_ppl"),
                             "min_epoch" if lower_is_better else "max_epoch")
    return None if value is None else int(value)


def _current_stage_key(record: Mapping[str, Any], key: str) -> str:
    """``key`` as stored for the run's current stage (``s2/val_ppl``), as the headline rule reads it."""
    return latest_key({"key": key, "stage": (record.get("progress") or {}).get("stage") or 0})


def params_of(record: Mapping[str, Any], key: str = "params") -> int | None:
    value = latest_value(record, key)
    if value is None:
        value = record.get("info", {}).get(key)
    return None if value is None else int(value)


def _lower_is_better(experiment: str) -> bool:
    try:
        from core.experiments import get_experiment

        return get_experiment(experiment).lower_is_better
    except Exception:  # noqa: BLE001 - unknown/unregistered experiments compare as "lower is better"
        return True


def change_pct(value: float | None, baseline: float | None, *, lower_is_better: bool = True) -> float | None:
    """Change against a baseline in %, positive = better: (base − x)/base for lower-is-better metrics."""
    if value is None or baseline is None or baseline == 0 or _nan(value) or _nan(baseline):
        return None
    delta = (baseline - value) if lower_is_better else (value - baseline)
    return 100.0 * delta / abs(baseline)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def differing_config_keys(records: Sequence[Mapping[str, Any]], *, ignore: Iterable[str] = IGNORED_CONFIG_KEYS) -> list[str]:
    """Config keys whose values differ between the runs (or that some runs lack), in first-seen order."""
    skip = set(ignore)
    seen: dict[str, set[Any]] = {}
    for rec in records:
        for key, value in rec["config"].items():
            seen.setdefault(key, set()).add(_hashable(value))
    return [k for k, values in seen.items()
            if k not in skip and (len(values) > 1 or any(k not in r["config"] for r in records))]


# --- the main table ---------------------------------------------------------------------------

def runs_table(
    records: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = (),
    baseline: int | None = None,
    title: str = "runs",
) -> Table:
    """One row per run (see the module docstring). Reads only ``record['latest']`` and config/info."""
    if baseline is not None and not any(r["id"] == baseline for r in records):
        raise CompareError(f"baseline run {baseline} is not among the compared runs")
    experiments = list(dict.fromkeys(r["experiment"] for r in records))
    lib = {e: _lower_is_better(e) for e in experiments}
    diff_keys = differing_config_keys(records)
    extra = [parse_metric_spec(m) for m in metrics]
    headlines = list(dict.fromkeys(headline_key(r) for r in records))
    best_label = headlines[0] if len(headlines) == 1 else "headline"

    columns = [Column("run", "run", "integer")]
    if len(experiments) > 1:
        columns.append(Column("experiment", "experiment", "text"))
    if len({r["variant"] for r in records}) > 1:
        columns.append(Column("variant", "variant", "text"))
    columns.append(Column("status", "status", "text"))
    columns += [Column(f"config.{k}", k, "text") for k in diff_keys]
    columns += [
        Column("best", f"{best_label} (best)", "number"),
        Column("best_epoch", "epoch of best", "integer"),
        Column("last_val_ppl", "val_ppl (last)", "number"),
        Column("params", "params", "integer"),
    ]
    columns += [Column(f"metric.{k}:{f}", f"{k} ({f})", "number") for k, f in extra]
    base_value = None
    if baseline is not None:
        base_rec = next(r for r in records if r["id"] == baseline)
        base_value = best_value(base_rec, lower_is_better=lib[base_rec["experiment"]])
        columns.append(Column("vs_baseline_pct", f"vs run {baseline} %", "number", decimals=1, suffix="%", signed=True))

    rows = []
    for rec in records:
        lower = lib[rec["experiment"]]
        row: dict[str, Any] = {
            "run": rec["id"], "experiment": rec["experiment"], "variant": rec["variant"], "status": rec["status"],
            "best": best_value(rec, lower_is_better=lower),
            "best_epoch": best_epoch(rec, lower_is_better=lower),
            "last_val_ppl": latest_value(rec, "val_ppl"),
            "params": params_of(rec),
        }
        for key in diff_keys:
            row[f"config.{key}"] = _config_text(rec["config"].get(key, "—"))
        for key, fld in extra:
            row[f"metric.{key}:{fld}"] = latest_value(rec, key, fld, lower_is_better=lower)
        if baseline is not None:
            row["vs_baseline_pct"] = change_pct(row["best"], base_value, lower_is_better=lower)
        rows.append(row)
    notes = []
    if baseline is not None:
        notes.append(f"vs run {baseline}: (baseline − value)/baseline in %, positive = better")
    if any(r["last_val_ppl"] is not None and r["best"] is not None and r["last_val_ppl"] != r["best"] for r in rows):
        notes.append("val_ppl (last) ≠ best: early stopping keeps training past the best epoch (quirk B12)")
    return Table("runs", title, "runs", columns, rows, notes)


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)  # keeps True, 1 and 1.0 apart
    return ("json", json.dumps(value, sort_keys=True))


def _config_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def seed_groups(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Runs grouped by (experiment, variant, config without seed), in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        config = {k: v for k, v in rec["config"].items() if k != "seed"}
        key = json.dumps([rec["experiment"], rec["variant"], config], sort_keys=True)
        groups.setdefault(key, []).append(rec)
    return list(groups.values())


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    clean = [float(v) for v in values if v is not None and not _nan(v)]
    if not clean:
        return None, None
    mean = statistics.fmean(clean)
    return mean, (statistics.stdev(clean) if len(clean) > 1 else None)


def aggregate_table(
    records: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = (),
    baseline: int | None = None,
    title: str = "mean ± std over seeds",
) -> Table:
    """Runs that differ only by seed collapsed into one row each: mean ± sample std per metric."""
    groups = seed_groups(records)
    if baseline is not None and not any(r["id"] == baseline for g in groups for r in g):
        raise CompareError(f"baseline run {baseline} is not among the compared runs")
    reps = [g[0] for g in groups]
    diff_keys = [k for k in differing_config_keys(reps) if k != "seed"]
    extra = [parse_metric_spec(m) for m in metrics]
    experiments = list(dict.fromkeys(r["experiment"] for r in reps))
    lib = {e: _lower_is_better(e) for e in experiments}

    headlines = list(dict.fromkeys(headline_key(r) for r in reps))
    specs: list[tuple[str, str, Any]] = [
        ("best", f"{headlines[0] if len(headlines) == 1 else 'headline'} (best)",
         lambda r: best_value(r, lower_is_better=lib[r["experiment"]])),
        ("best_epoch", "epoch of best", lambda r: best_epoch(r, lower_is_better=lib[r["experiment"]])),
        ("last_val_ppl", "val_ppl (last)", lambda r: latest_value(r, "val_ppl")),
    ]
    for key, fld in extra:
        specs.append((f"metric.{key}:{fld}", f"{key} ({fld})",
                      lambda r, key=key, fld=fld: latest_value(r, key, fld, lower_is_better=lib[r["experiment"]])))

    columns = [Column("runs", "runs", "text"), Column("n", "seeds", "integer")]
    if len(experiments) > 1:
        columns.append(Column("experiment", "experiment", "text"))
    columns += [Column(f"config.{k}", k, "text") for k in diff_keys]
    for key, label, _ in specs:
        columns += [Column(f"{key}.mean", f"{label} mean ± std", pair_key=f"{key}.std"),
                    Column(f"{key}.std", f"{label} std", human=False)]
    base_mean = None
    if baseline is not None:
        base_group = next(g for g in groups if any(r["id"] == baseline for r in g))
        base_mean = mean_std([specs[0][2](r) for r in base_group])[0]
        columns.append(Column("vs_baseline_pct", f"vs run {baseline} group %", decimals=1, suffix="%", signed=True))
    columns.append(Column("params", "params", "integer"))

    rows = []
    for group in groups:
        rep = group[0]
        row: dict[str, Any] = {
            "runs": ",".join(str(r["id"]) for r in sorted(group, key=lambda r: r["id"])),
            "n": len(group), "experiment": rep["experiment"], "params": params_of(rep),
        }
        for key in diff_keys:
            row[f"config.{key}"] = _config_text(rep["config"].get(key, "—"))
        for key, _, getter in specs:
            row[f"{key}.mean"], row[f"{key}.std"] = mean_std([getter(r) for r in group])
        if baseline is not None:
            row["vs_baseline_pct"] = change_pct(row["best.mean"], base_mean, lower_is_better=lib[rep["experiment"]])
        rows.append(row)
    notes = ["std is the sample standard deviation over seeds (— with one seed)"]
    return Table("aggregate", title, "aggregate", columns, rows, notes)


# --- per-layer, per-stage, threshold tables (history / analysis reads) -------------------------

def layer_tables(
    records: Sequence[Mapping[str, Any]],
    layer_rows: Mapping[int, Sequence[Mapping[str, Any]]],
    *,
    epoch: int | None = None,
    epochs: Sequence[int] | None = None,
) -> list[Table]:
    """Per-layer metrics. One run: layer × epoch (optionally only ``epochs``); several: layer × run.

    ``layer_rows`` maps run id → its ``kind == "layer"`` metric rows (``store.metrics(kind="layer")``).
    With several runs each run contributes its last epoch (or ``epoch`` when given); rows with
    epoch None (analyses) count as "final".
    """
    tables: list[Table] = []
    if len(records) == 1:
        rec = records[0]
        groups: dict[tuple[int, str], dict[int, dict[Any, float]]] = {}
        for row in layer_rows.get(rec["id"], ()):
            groups.setdefault((row["stage"], row["key"]), {}).setdefault(row["layer"], {})[row["epoch"]] = row["value"]
        for (stage, key), by_layer in groups.items():
            cols = sorted({e for cells in by_layer.values() for e in cells}, key=_epoch_order)
            if epochs:
                cols = [e for e in cols if e in set(epochs)]
            columns = [Column("layer", "layer", "integer")]
            columns += [Column(_epoch_key(e), "final" if e is None else f"ep {e}") for e in cols]
            rows = [{"layer": layer, **{_epoch_key(e): by_layer[layer].get(e) for e in cols}} for layer in sorted(by_layer)]
            suffix = f", stage {stage}" if stage else ""
            tables.append(Table(f"layers.{key}" + (f".s{stage}" if stage else ""),
                                f"run {rec['id']}: per-layer {key} (layer × epoch{suffix})", "layers", columns, rows))
        return tables
    groups2: dict[tuple[int, str], dict[int, dict[int, float]]] = {}
    picked: dict[tuple[int, str, int], Any] = {}
    for rec in records:
        rows = layer_rows.get(rec["id"], ())
        for stage, key in sorted({(r["stage"], r["key"]) for r in rows}):
            sel = [r for r in rows if r["stage"] == stage and r["key"] == key]
            available = sorted({r["epoch"] for r in sel}, key=_epoch_order)
            want = epoch if epoch is not None else available[-1]
            picked[(rec["id"], key, stage)] = want
            for r in sel:
                if r["epoch"] == want:
                    groups2.setdefault((stage, key), {}).setdefault(r["layer"], {})[rec["id"]] = r["value"]
    for (stage, key), by_layer in sorted(groups2.items()):  # stage by stage, whatever order the runs came in
        ids = [r["id"] for r in records if any(r["id"] in cells for cells in by_layer.values())]
        columns = [Column("layer", "layer", "integer")]
        for run_id in ids:
            ep = picked.get((run_id, key, stage))
            columns.append(Column(f"run.{run_id}", f"run {run_id} ({'final' if ep is None else f'ep {ep}'})"))
        rows = [{"layer": layer, **{f"run.{i}": by_layer[layer].get(i) for i in ids}} for layer in sorted(by_layer)]
        suffix = f", stage {stage}" if stage else ""
        tables.append(Table(f"layers.{key}" + (f".s{stage}" if stage else ""), f"per-layer {key} (layer × run{suffix})",
                            "layers", columns, rows))
    return tables


def _epoch_order(epoch: Any) -> tuple[bool, int]:
    return (epoch is None, epoch or 0)


def _epoch_key(epoch: Any) -> str:
    return "final" if epoch is None else f"ep{epoch}"


STAGE_KEYS = ("best_val_ppl", "best_epoch", "params", "trainable_params")


def stages_table(records: Sequence[Mapping[str, Any]], *, metrics: Sequence[str] = ()) -> Table:
    """One row per (run, stage) from the ``s<k>/<key>`` latest summaries."""
    extra = [parse_metric_spec(m) for m in metrics]
    columns = [Column("run", "run", "integer"), Column("stage", "stage", "integer"),
               Column("best_val_ppl", "best val_ppl"), Column("best_epoch", "epoch of best", "integer"),
               Column("last_val_ppl", "val_ppl (last)"), Column("params", "params", "integer"),
               Column("trainable_params", "trainable", "integer")]
    columns += [Column(f"metric.{k}:{f}", f"{k} ({f})") for k, f in extra]
    rows = []
    for rec in records:
        stages = sorted({int(k.split("/", 1)[0][1:]) for k in rec["latest"] if _is_stage_key(k)})
        for stage in stages:
            p = f"s{stage}/"
            best = latest_value(rec, p + "best_val_ppl")
            if best is None:
                best = latest_value(rec, p + "val_ppl", "min")
            ep = latest_value(rec, p + "best_epoch")
            if ep is None:
                ep = latest_value(rec, p + "val_ppl", "min_epoch")
            row = {"run": rec["id"], "stage": stage, "best_val_ppl": best, "best_epoch": None if ep is None else int(ep),
                   "last_val_ppl": latest_value(rec, p + "val_ppl"),
                   "params": _int(latest_value(rec, p + "params")),
                   "trainable_params": _int(latest_value(rec, p + "trainable_params"))}
            for key, fld in extra:
                row[f"metric.{key}:{fld}"] = latest_value(rec, p + key, fld)
            rows.append(row)
    return Table("stages", "per-stage results", "stages", columns, rows)


def _is_stage_key(key: str) -> bool:
    head, sep, _ = key.partition("/")
    return bool(sep) and head[:1] == "s" and head[1:].isdigit()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def threshold_tables(records: Sequence[Mapping[str, Any]], tables_by_run: Mapping[int, Sequence[Mapping[str, Any]]],
                     *, match: str = "threshold") -> list[Table]:
    """Every analysis table whose name contains ``match``: one Table per name, rows prefixed by run and stage."""
    by_name: dict[str, list[tuple[int, int, Mapping[str, Any]]]] = {}
    for rec in records:
        for t in tables_by_run.get(rec["id"], ()):
            if match.lower() in t["name"].lower():
                for row in t["rows"]:
                    by_name.setdefault(t["name"], []).append((rec["id"], t["stage"], row))
    out = []
    for name, entries in by_name.items():
        keys: list[str] = []
        for _, _, row in entries:
            keys += [k for k in row if k not in keys]
        staged = any(stage for _, stage, _ in entries)
        columns = [Column("run", "run", "integer")] + ([Column("stage", "stage", "integer")] if staged else [])
        columns += [Column(f"col.{k}", k, "text" if any(isinstance(r.get(k), str) for _, _, r in entries) else "number")
                    for k in keys]
        rows = [{"run": run_id, "stage": stage, **{f"col.{k}": row.get(k) for k in keys}} for run_id, stage, row in entries]
        out.append(Table(f"thresholds.{name}", f"{name} (analysis table)", "thresholds", columns, rows))
    return out

