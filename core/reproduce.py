"""Published vs ours: match a report's runs in a registry, check every number, queue reproductions.

- :func:`compare_report` finds, for each run the report needs (``core/published/<report>.json``), the
  newest matching run of the registry (same experiment, config ⊇ the selector, same variant;
  completed before running before queued; failed/cancelled/lost runs are ignored), resolves every
  published number's ``ref`` to our number and marks it ``ok`` / ``out`` (tolerance class),
  ``missing`` (no run or metric), ``n/a`` (a quirk-only number compared on the corrected variant),
  ``info`` (never checked) or ``ref`` (an external number nobody can re-run).
- :func:`plan_reproduce` / :func:`queue_reproduce`: the runs ``hrm reproduce`` queues, tagged
  ``reproduce-<report>-<variant>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import api, published
from core.compare import Column, Table, latest_value
from core.experiments import catalog
from core.published import Printed, parse_printed
from core.published.tolerance import (  # noqa: F401  (within, resolve_*: part of this module's API too)
    ran_on_cpu, resolve_class, resolve_kind, resolve_tolerance, tolerance_text, within,
)
from core.registry import Database, store

USABLE_STATUSES = ("completed", "running", "starting", "queued")
STATUS_RANK = {s: i for i, s in enumerate(USABLE_STATUSES)}
VARIANTS = ("published", "corrected")


def reproduce_tag(report: str, variant: str) -> str:
    return f"reproduce-{report}-{variant}"


def parse_exps(values: Iterable[str] | None, doc: Mapping[str, Any]) -> set[str] | None:
    """``["5", "6,7", "8-11"]`` → {"5", …, "11"}; None when no selection. Unknown ids → UserError(2)."""
    if not values:
        return None
    known = published.exps_of(doc) + [spec["exp"] for spec in doc["runs"].values()]
    wanted: set[str] = set()
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            if dash and lo.isdigit() and hi.isdigit():
                wanted.update(str(i) for i in range(int(lo), int(hi) + 1))
            else:
                wanted.add(part.lstrip("0") or "0" if part.isdigit() and len(part) < 3 else part)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise api.UserError(f"report {doc['report']} has no experiment {', '.join(unknown)} "
                            f"(known: {', '.join(dict.fromkeys(known))})", 2)
    return wanted


def load_report(report: str) -> dict[str, Any]:
    try:
        return published.load(str(report))
    except published.PublishedError as exc:
        raise api.UserError(str(exc), 2) from None


# --- matching runs ----------------------------------------------------------------------------

FREE_KEYS = frozenset({"device", "cpu_threads", "data", "data_dir", "wikitext_source", "model", "data_file",
                       "compile", "amp", "layer_stats"})
"""Config keys that never decide whether a run reproduces a report (where it ran, where the text/model came from)."""


def config_matches(config: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    """Every selector key present in ``config`` with the same value."""
    return all(k in config and _same(config[k], v) for k, v in selector.items())


def expected_config(experiment: str, selector: Mapping[str, Any], variant: str) -> dict[str, Any] | None:
    """The full config a faithful run has: the selector on top of the experiment's defaults (None: unknown experiment)."""
    if experiment not in catalog():
        return None
    try:
        config = api.validate_config(experiment, {**selector, "variant": variant})
    except api.UserError:
        return None
    return config.model_dump(mode="json")


def reproduces(config: Mapping[str, Any], expected: Mapping[str, Any] | None, selector: Mapping[str, Any]) -> bool:
    """A run reproduces a report run when its config equals the expected one outside :data:`FREE_KEYS`."""
    if expected is None:
        return config_matches(config, selector)
    return all((k in FREE_KEYS and k not in selector) or (k in config and _same(config[k], v))
               for k, v in expected.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def match_runs(db: Database, doc: Mapping[str, Any], variant: str, *, keys: Iterable[str] | None = None,
               tag: str | None = None) -> dict[str, dict[str, Any] | None]:
    """{run key: the newest usable matching run record (or None)} for the report's runs."""
    keys = list(keys) if keys is not None else list(doc["runs"])
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for exp in {doc["runs"][k]["experiment"] for k in keys}:
        by_experiment[exp] = [r for r in api.list_records(db, experiment=exp, tag=tag)
                              if r["status"] in USABLE_STATUSES and r["variant"] == variant]
    out: dict[str, dict[str, Any] | None] = {}
    for key in keys:
        spec = doc["runs"][key]
        expected = expected_config(spec["experiment"], spec["config"], variant)
        candidates = [r for r in by_experiment[spec["experiment"]] if reproduces(r["config"], expected, spec["config"])]
        candidates.sort(key=lambda r: (STATUS_RANK[r["status"]], -r["id"]))
        out[key] = candidates[0] if candidates else None
    return out


# --- resolving our numbers --------------------------------------------------------------------

@dataclass
class _Context:
    db: Database
    runs: Mapping[str, dict[str, Any] | None]
    _history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _tables: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def history(self, run_id: int) -> list[dict[str, Any]]:
        if run_id not in self._history:
            self._history[run_id] = store.metrics(self.db, run_id)
        return self._history[run_id]

    def tables(self, run_id: int) -> list[dict[str, Any]]:
        if run_id not in self._tables:
            self._tables[run_id] = store.result_tables(self.db, run_id)
        return self._tables[run_id]


def _subst(obj: Any, row: Mapping[str, Any]) -> Any:
    """Replace "$row", "$layer", "$epoch", "$stage" in a ref by the row's label / fields."""
    if isinstance(obj, str) and obj.startswith("$"):
        field_name = obj[1:]
        if field_name == "row":
            return row["label"]
        if field_name in ("layer", "epoch", "stage"):
            return row.get(field_name)
        return obj
    if isinstance(obj, dict):
        return {k: _subst(v, row) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_subst(v, row) for v in obj]
    return obj


def _resolve(ref: Mapping[str, Any], row: Mapping[str, Any], ctx: _Context) -> float | None:
    ref = _subst(ref, row)
    if "any" in ref:
        for alternative in ref["any"]:
            value = _resolve({**{k: v for k, v in ref.items() if k != "any"}, **alternative}, row, ctx)
            if value is not None:
                return value
        return None
    rec = ctx.runs.get(ref.get("run", row.get("run")))
    if rec is None:
        return None
    stage = ref.get("stage", row.get("stage")) or 0
    value: Any = None
    if "metric" in ref:
        key = ref["metric"] if not stage else f"s{stage}/{ref['metric']}"
        value = latest_value(rec, key, ref.get("field", "last"))
        if value is None and not stage:
            value = rec.get("info", {}).get(ref["metric"])
    elif "layer" in ref:
        want_epoch = ref.get("epoch")  # absent or null: the analysis rows (emitted with epoch None)
        for m in ctx.history(rec["id"]):
            if (m["kind"] == "layer" and m["stage"] == stage and m["layer"] == ref["layer"] and m["key"] == ref["key"]
                    and m["epoch"] == want_epoch):
                value = m["value"]
    elif "epoch" in ref:
        for m in ctx.history(rec["id"]):
            if m["kind"] == "epoch" and m["stage"] == stage and m["epoch"] == ref["epoch"] and m["key"] == ref["key"]:
                value = m["value"]
    elif "table" in ref:
        value = _table_cell(ctx.tables(rec["id"]), ref, stage)
    elif "info" in ref:
        value = rec.get("info", {}).get(ref["info"])
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) * ref.get("scale", 1.0)  # NaN stays NaN: "undefined in our run", not "not found"


def _table_cell(tables: Sequence[Mapping[str, Any]], ref: Mapping[str, Any], stage: int) -> Any:
    names = ref["table"] if isinstance(ref["table"], list) else [ref["table"]]
    for t in reversed(tables):  # the last emitted table of that name wins
        if t["name"] not in names or (t["stage"] or 0) != stage:
            continue
        rows = t["rows"]
        if "index" in ref:
            rows = rows[ref["index"]: ref["index"] + 1]
        for r in rows:
            if all(_cell_equal(r.get(k), v) for k, v in ref.get("where", {}).items()):
                return r.get(ref["col"])
    return None


def _cell_equal(a: Any, b: Any) -> bool:
    fa, fb = _as_float(a), _as_float(b)
    if fa is not None and fb is not None:
        return abs(fa - fb) < 1e-6
    return str(a) == str(b)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _derive(ref: Mapping[str, Any], table_id: str, ours: Mapping[tuple[str, str, str], float | None],
            row: Mapping[str, Any]) -> float | None:
    ref = _subst(ref, row)

    def cell(spec: Mapping[str, Any]) -> float | None:
        return ours.get((spec.get("table", table_id), spec["row"], spec["col"]))

    a, b = cell(ref["a"]), cell(ref["b"])
    if a is None or b is None:
        return None
    op = ref["derived"]
    if op == "improvement_pct":
        return None if b == 0 else 100.0 * (b - a) / b
    if op == "diff":
        return a - b
    if op == "ratio":
        return None if b == 0 else a / b
    if op == "pct":
        return None if b == 0 else 100.0 * a / b
    raise ValueError(f"unknown derived op {op!r}")


# --- the comparison ---------------------------------------------------------------------------

@dataclass
class ReportComparison:
    report: str
    variant: str
    tables: list[Table]
    runs_table: Table
    numbers: list[dict[str, Any]]
    matches: dict[str, dict[str, Any] | None]

    @property
    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        checked: dict[str, int] = {}  # what the ok/out verdicts were checked by, per tolerance class
        for n in self.numbers:
            counts[n["status"]] = counts.get(n["status"], 0) + 1
            if n["status"] in ("ok", "out"):
                checked[n["class"]] = checked.get(n["class"], 0) + 1
        return {"numbers": len(self.numbers), "counts": counts, "checked_by_class": checked,
                "within_tolerance": counts.get("out", 0) == 0 and counts.get("missing", 0) == 0}


def compare_report(db: Database, report: str, *, variant: str = "published", exps: Iterable[str] | None = None,
                   tag: str | None = None, use: Mapping[str, int] | None = None) -> ReportComparison:
    """Every published number of ``report`` (optionally only experiments ``exps``) next to ours.

    ``use`` pins run keys to given run ids (``--use exp10.routed=17``), whatever their config.
    """
    doc = load_report(report)
    wanted = parse_exps(list(exps) if exps else None, doc)
    tables = published.tables_of(doc, wanted)
    keys = list(dict.fromkeys(
        k for t in tables for r in t["rows"] for k in _row_run_keys(t, r) if k is not None and k in doc["runs"]))
    unknown = sorted(set(use or {}) - set(doc["runs"]))
    if unknown:
        raise api.UserError(f"report {report} has no run key {', '.join(unknown)} "
                            f"(known: {', '.join(doc['runs'])})", 2)
    matches = match_runs(db, doc, variant, keys=[k for k in keys if k not in (use or {})], tag=tag)
    for key, run_id in (use or {}).items():
        found = api.list_records(db, ids=[run_id])
        if not found:
            raise api.UserError(f"run {run_id} does not exist in {db.safe_url}", 1)
        matches[key] = found[0]
        if key not in keys:
            keys.append(key)
    ctx = _Context(db, matches)

    # Pass 1: direct refs; pass 2: derived cells (which may use other derived cells once).
    ours: dict[tuple[str, str, str], float | None] = {}
    rules: dict[tuple[str, str, str], float | None] = {}
    derived: list[tuple[str, Mapping[str, Any], str, Mapping[str, Any]]] = []
    for t in tables:
        for row in t["rows"]:
            for col in t["columns"]:
                ref = row.get("refs", {}).get(col["name"], col.get("ref"))
                key = (t["id"], row["label"], col["name"])
                if "rule" in col and row.get("reproducible", True):
                    rules[key] = _resolve(col["rule"], row, ctx)
                if not row.get("reproducible", True) or ref is None:
                    ours[key] = None
                elif "derived" in ref:
                    derived.append((t["id"], row, col["name"], ref))
                else:
                    ours[key] = _resolve(ref, row, ctx)
    for _ in range(2):
        for tid, row, name, ref in derived:
            ours[(tid, row["label"], name)] = _derive(ref, tid, ours, row)

    numbers: list[dict[str, Any]] = []
    out_tables: list[Table] = []
    for t in tables:
        table, nums = _report_table(doc, t, ours, matches, variant, rules)
        out_tables.append(table)
        numbers += nums
    return ReportComparison(report, variant, out_tables, _runs_used(doc, keys, matches, variant), numbers, matches)


def _row_run_keys(table: Mapping[str, Any], row: Mapping[str, Any]) -> list[str | None]:
    keys = [row.get("run")]
    for col in table["columns"]:
        ref = row.get("refs", {}).get(col["name"], col.get("ref")) or {}
        keys.append(ref.get("run"))
        keys += [alt.get("run") for alt in ref.get("any", [])]
    return keys


def _published_only(table: Mapping[str, Any], row: Mapping[str, Any], col: str) -> bool:
    for flag in (table.get("published_only", False), row.get("published_only", False)):
        if flag is True or (isinstance(flag, list) and col in flag):
            return True
    return False


def _report_table(doc, t, ours, matches, variant, rules=None) -> tuple[Table, list[dict[str, Any]]]:
    columns = [Column("row", "row", "text"), Column("run", "run", "text")]
    fmt_cols: dict[str, Printed] = {}
    for ci, col in enumerate(t["columns"]):
        printed = [parse_printed(r["values"][ci]) for r in t["rows"]]
        numeric = [p for p in printed if p.numeric]
        ref_p = max(numeric, key=lambda p: p.decimals) if numeric else Printed("", None)
        fmt_cols[col["name"]] = ref_p
        name = col["name"]
        extra = 1 if ref_p.scale != 1.0 else 0
        columns += [
            Column(f"{name}.pub", f"{name} published", "text", group=name),
            Column(f"{name}.ours", f"{name} ours", "number", decimals=ref_p.decimals + extra if numeric else None,
                   suffix=ref_p.suffix, comma=ref_p.comma, signed=ref_p.signed, group=name),
            Column(f"{name}.diff", f"{name} Δ", "number", decimals=ref_p.decimals + extra if numeric else None,
                   suffix=ref_p.suffix if ref_p.suffix != "%" else " pt", comma=ref_p.comma, signed=True,
                   status_key=f"{name}.status", group=name),
        ]
    rows: list[dict[str, Any]] = []
    numbers: list[dict[str, Any]] = []
    cells: list[tuple[dict[str, Any], dict[str, Any], Printed, float | None, dict]] = []
    formats: dict[tuple[int, str], Column] = {}
    for ri, row in enumerate(t["rows"]):
        rec = matches.get(row.get("run")) if row.get("run") else None
        out_row: dict[str, Any] = {"row": row["label"], "run": _run_text(row, rec)}
        for ci, col in enumerate(t["columns"]):
            name = col["name"]
            pub = parse_printed(row["values"][ci])
            if pub.numeric:
                extra = 1 if pub.scale != 1.0 else 0
                formats[(ri, f"{name}.ours")] = Column(f"{name}.ours", name, decimals=pub.decimals + extra,
                                                       suffix=pub.suffix, comma=pub.comma, signed=pub.signed)
                formats[(ri, f"{name}.diff")] = Column(f"{name}.diff", name, decimals=pub.decimals + extra,
                                                       suffix=pub.suffix if pub.suffix != "%" else " pt",
                                                       comma=pub.comma, signed=True, status_key=f"{name}.status")
            value = ours.get((t["id"], row["label"], name))
            ours_u = None if value is None or not pub.numeric else value / pub.scale
            if ours_u is None and value is not None:
                ours_u = value
            out_row[f"{name}.pub"] = pub.text
            out_row[f"{name}.ours"] = ours_u
            out_row[f"{name}.diff"] = None
            if not pub.numeric:
                out_row[f"{name}.status"] = None
                continue
            cls = resolve_class(doc, t, col, row)
            kind = resolve_kind(col, row)
            expected = (rules or {}).get((t["id"], row["label"], name))
            check_against, how = pub, ""
            if cls == "digits" and not ran_on_cpu(rec):
                cls, how = "close", " (not a CPU run: close, not digit-exact)"
            elif cls == "rule" and expected is None:
                cls, how = "loose", " (the run records no rule value)"
            if name in row.get("rounding", {}):
                check_against = parse_printed(row["rounding"][name])
                how = f" of {check_against.text} (the printed {pub.text} is the report's own rounding)"
            tol = resolve_tolerance(doc, t, col, row, cls, kind)
            entry = {
                "table": t["id"], "row": row["label"], "column": name, "published": pub.value,
                "published_text": pub.text, "unit": pub.suffix.strip() or None, "ours": ours_u, "diff": None,
                "rel_diff": None, "class": cls,
                "kind": kind, "tolerance": tolerance_text(cls, tol, pub) + how, "status": "ok",
                "run": rec["id"] if rec else None, "why": None,
            }
            if ours_u is not None and not math.isnan(ours_u):
                entry["diff"] = out_row[f"{name}.diff"] = ours_u - pub.value
                entry["rel_diff"] = None if pub.value == 0 else (ours_u - pub.value) / abs(pub.value)
            if not row.get("reproducible", True):
                entry["status"], entry["why"] = "ref", row.get("note") or "external: no code exists to re-run it"
            elif cls == "info":
                entry["status"] = "info"
            elif ours_u is None or math.isnan(ours_u):
                entry["status"] = "missing"
                entry["why"] = ("no matching run" if row.get("run") and rec is None
                                else "undefined (NaN) in our run" if ours_u is not None else "metric not found in the run")
                out_row[f"{name}.ours"] = entry["ours"] = None
            elif variant == "corrected" and _published_only(t, row, name):
                entry["status"], entry["why"] = "n/a", t.get("corrected_note") or "produced by a quirk the corrected variant fixes"
            elif cls == "chaotic":
                cells.append((entry, out_row, pub, ours_u, col))
            elif cls == "rule":
                entry["rule"] = expected
                if round(value) != round(expected):
                    entry["status"] = "out"
                    entry["why"] = f"{value:,.0f} ≠ {expected:,.0f}, what the rule gives on this run's own tokens"
                else:
                    entry["why"] = "the rule's count on this run's own tokens"
            elif not within(ours_u, check_against, tol):
                entry["status"], entry["why"] = "out", f"outside {entry['tolerance']}"
            elif check_against is not pub:
                entry["why"] = f"the report's rounding: {pub.text} stands for {check_against.text}"
            out_row[f"{name}.status"] = entry["status"]
            numbers.append(entry)
        rows.append(out_row)
    _check_orderings(cells, numbers)
    notes = [f"{t['section']}" if t.get("section") else ""]
    notes = [n for n in notes if n]
    if t.get("note"):
        notes.append(t["note"])
    classes = sorted({n["class"] for n in numbers})
    if classes:
        notes.append("tolerance: " + "; ".join(
            f"{c}: " + ", ".join(sorted({f"{n['column']} {n['tolerance']}" for n in numbers if n['class'] == c}))
            for c in classes))
    title = f"{doc['report']} {t['title']}"
    table = Table(f"report.{doc['report']}.{t['id']}", title, "report", columns, rows, notes, numbers=[
        {k: v for k, v in n.items() if k != "kind"} for n in numbers], formats=formats)
    return table, numbers


def _check_orderings(cells, numbers) -> None:
    """Chaotic numbers: our value must keep its published order against every other number of its column."""
    for entry, out_row, pub, ours_u, col in cells:
        violations = []
        for other in numbers:
            if other is entry or other["table"] != entry["table"] or other["column"] != entry["column"]:
                continue
            if other["ours"] is None or other["published"] is None or other["status"] in ("ref", "missing"):
                continue
            sign_pub = (pub.value > other["published"]) - (pub.value < other["published"])
            sign_ours = (ours_u > other["ours"]) - (ours_u < other["ours"])
            if sign_pub and sign_ours and sign_pub != sign_ours:
                violations.append(other["row"])
        if violations:
            entry["status"], entry["why"] = "out", "order differs from the published one vs " + ", ".join(violations)
        else:
            entry["why"] = "ordering preserved"
        out_row[f"{col['name']}.status"] = entry["status"]


def _run_text(row: Mapping[str, Any], rec: Mapping[str, Any] | None) -> str:
    if not row.get("reproducible", True):
        return "external"
    if not row.get("run"):
        return "—"
    return "—" if rec is None else str(rec["id"])


def _runs_used(doc, keys, matches, variant) -> Table:
    columns = [Column("key", "run key", "text"), Column("experiment", "experiment", "text"),
               Column("selector", "config", "text"), Column("run", "run", "integer"),
               Column("status", "status", "text"), Column("data_source", "data", "text"),
               Column("quirks", "quirks active", "text")]
    rows = []
    for key in keys:
        spec = doc["runs"][key]
        rec = matches.get(key)
        info = rec.get("info", {}) if rec else {}
        rows.append({
            "key": key, "experiment": spec["experiment"],
            "selector": " ".join(f"{k}={v}" for k, v in spec["config"].items()) or "(defaults)",
            "run": rec["id"] if rec else None, "status": rec["status"] if rec else "no run",
            "data_source": info.get("data_source"), "quirks": ", ".join(info.get("quirks") or []) or None,
        })
    notes = [f"variant {variant}; the newest completed matching run is used",
             f"queue the missing ones with: hrm reproduce {doc['report']} --variant {variant}"]
    return Table(f"report.{doc['report']}.runs", f"{doc['report']} runs used", "runs", columns, rows, notes)


# --- queueing reproductions -------------------------------------------------------------------

@dataclass
class PlanItem:
    key: str
    exp: str
    experiment: str
    config: dict[str, Any]


@dataclass
class ReproduceResult:
    tag: str
    queued: list[tuple[PlanItem, int]] = field(default_factory=list)
    existing: list[tuple[PlanItem, int]] = field(default_factory=list)
    unavailable: list[PlanItem] = field(default_factory=list)


def plan_reproduce(report: str, variant: str, only: Iterable[str] | None = None) -> list[PlanItem]:
    """The runs that regenerate ``report`` (only experiments ``only``), configs merged for ``variant``."""
    if variant not in VARIANTS:
        raise api.UserError(f"unknown variant {variant!r} (use published or corrected)", 2)
    doc = load_report(report)
    wanted = parse_exps(list(only) if only else None, doc)
    items = []
    for key, spec in doc["runs"].items():
        if wanted and spec["exp"] not in wanted:
            continue
        config = {**spec["config"], **spec.get(variant, {}), "variant": variant}
        items.append(PlanItem(key, spec["exp"], spec["experiment"], config))
    return items


def queue_reproduce(db: Database, report: str, items: Sequence[PlanItem], variant: str, *,
                    priority: int = 0) -> ReproduceResult:
    """Validate every plan item first, then queue those not already queued/running/completed under the tag."""
    tag = reproduce_tag(report, variant)
    result = ReproduceResult(tag)
    known = catalog()
    runnable = []
    for item in items:
        if item.experiment not in known:
            result.unavailable.append(item)
            continue
        api.validate_config(item.experiment, item.config)  # raises UserError(2) before anything is written
        runnable.append(item)
    existing = [r for r in api.list_records(db, tag=tag) if r["status"] in USABLE_STATUSES]
    for item in runnable:
        expected = expected_config(item.experiment, item.config, variant)
        same = [r for r in existing if r["experiment"] == item.experiment and reproduces(r["config"], expected, item.config)]
        if same:
            result.existing.append((item, max(r["id"] for r in same)))
            continue
        run = api.submit(db, item.experiment, item.config, tags=[tag], priority=priority)
        result.queued.append((item, run.id))
    return result
