"""The five seed reports' published numbers, as data: ``core/published/<report>.json``.

Each file (schema ``hrm.published/v1``, :data:`PUBLISHED_SCHEMA`) lists

- ``runs``: the runs that regenerate the report — ``{key: {exp, experiment, config, published?, corrected?}}``.
  ``config`` selects matching runs in a registry (a subset of their config) and, merged with the
  variant's extra settings (``published`` / ``corrected``) and ``variant``, is what ``hrm reproduce`` queues.
- ``tables``: every results table of the report. A table has ``columns`` (``name``, ``kind``, optional
  ``class``, ``tol`` and a default ``ref``) and ``rows`` (``label``, ``run`` key, optional ``stage`` /
  ``epoch`` / ``layer``, ``values`` = the numbers *as printed* in the report, optional per-column ``refs`` /
  ``classes`` / ``kinds`` / ``tol``, ``reproducible: false`` for external references, ``published_only``
  (true or a list of columns) for numbers that only the published variant's quirks produce). A table may
  set ``published_only`` for all its numbers, with ``corrected_note`` saying why.

Printed values are strings so that their precision survives ("12.10", "152K", "+5.3%", "24,343.01").
A ``ref`` says where our number comes from (resolved by :mod:`core.reproduce`):

- ``{"metric": KEY, "field": "last", "stage": k}``: a latest-metric summary (falls back to run info).
- ``{"epoch": E, "key": KEY, "stage": k}``: an epoch row of the run's history.
- ``{"layer": L, "key": KEY, "epoch": E}``: a per-layer row (epoch null/absent: the analysis rows).
- ``{"table": NAME, "where": {COL: VALUE}, "col": COL, "stage": k}``: a cell of an analysis table.
- ``{"derived": "improvement_pct" | "diff" | "ratio" | "pct", "a": CELL, "b": CELL}``: computed from
  our numbers of other cells (CELL = ``{"row": LABEL, "col": NAME, "table": ID?}``;
  improvement_pct = (b − a)/b·100 with b the baseline, pct = a/b·100).
- ``{"any": [REF, ...]}``: the first that resolves. Any ref may add ``"scale"`` (ours × scale),
  ``"run"`` (another run key) and ``"stage"``.

Inside a ref, the strings ``"$row"``, ``"$stage"``, ``"$epoch"`` and ``"$layer"`` stand for the row's
label and fields, so one column ref serves every row (``{"layer": "$layer", "key": "cos_mean"}``).

Tolerance classes (``class``: file default, then table, column, row ``classes``) say what ``--check`` checks:

- ``digits`` (digit-exact): our number rounds to the printed one (within half a unit of the last printed
  digit). For the numbers the published variant reproduces bit for bit on CPU (004 Exp 5, 6, 8–11). A run
  that did not run on the CPU is checked with ``close`` instead, and the entry says so.
- ``close``: the number the committed script prints, up to GPU numerics: PPL within 1 % or one unit of
  the last printed digit, percentages within 0.5 points, counts/params/epochs printed identically, other
  values within one unit of the last printed digit. ``exact`` is accepted as its former name.
- ``rule``: arithmetic of a rule on the data the run actually used (the quantile rule's hard-token count
  from the run's own token total): the column's ``rule`` ref gives the value the rule predicts from our
  run, and our number must equal it; the published number is shown with its Δ, not checked (the data differ).
- ``loose``: a relative/absolute band per kind, overridable with ``tolerance`` at file or table level and
  ``tol`` per column/row.
- ``chaotic``: ordering only: our value must sit in the same order as the published one relative to every
  other number of its column.
- ``info``: shown, never checked (wall-clock times).

A row's ``rounding`` (``{COLUMN: "304.41M"}``) marks a printed number as the report's own (hand) rounding:
ours is checked against the value the report's inputs give, and the entry says the printed one is the
report's rounding, not a miss.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.plugins import PluginProblem

PUBLISHED_SCHEMA_ID = "hrm.published/v1"
REPORTS = ("000", "001", "002", "003", "004")
KINDS = ("ppl", "pct", "params", "count", "epoch", "loss", "cos", "corr", "norm", "threshold", "ratio", "value",
         "seconds")
CLASSES = ("digits", "close", "rule", "loose", "chaotic", "info", "exact")
CLASS_ALIASES = {"exact": "close"}
"""Former class names still accepted in published files (plugins written before the ``digits``/``close`` split)."""

DIGITS_TOLERANCE: dict[str, float] = {"digits": 0}
"""The digit-exact class: ours rounds to the printed number (within half a unit of its last digit)."""

CLOSE_TOLERANCE: dict[str, dict[str, float]] = {
    "ppl": {"rel": 0.01, "digits": 1},
    "pct": {"abs": 0.5},
    "params": {"digits": 0},
    "count": {"digits": 0},
    "epoch": {"digits": 0},
}
"""The "close" class by kind; every other kind: one unit of the last printed digit."""
CLOSE_DEFAULT = {"digits": 1}

LOOSE_TOLERANCE: dict[str, dict[str, float]] = {
    "ppl": {"rel": 0.25},
    "loss": {"rel": 0.10},
    "pct": {"abs": 5.0},
    "params": {"digits": 0},
    "count": {"rel": 0.25},
    "epoch": {"abs": 5},
    "cos": {"abs": 0.03},
    "corr": {"abs": 0.05},
    "threshold": {"abs": 0.05},
}
"""Default bands of the "loose" class (files and tables narrow or widen them with ``tolerance``)."""
LOOSE_DEFAULT = {"rel": 0.25}


class PublishedError(ValueError):
    """A malformed published-numbers file or an unknown report."""


@dataclass(frozen=True)
class Printed:
    """A number as the report printed it: ``value`` in the printed unit, its decimals and unit scale."""

    text: str
    value: float | None
    decimals: int = 0
    scale: float = 1.0
    suffix: str = ""
    comma: bool = False
    signed: bool = False

    @property
    def numeric(self) -> bool:
        return self.value is not None

    @property
    def unit(self) -> float:
        """One unit of the last printed digit (in the printed unit)."""
        return 10.0 ** (-self.decimals)


_NUMBER = re.compile(r"^(?P<sign>[+\-−]?)(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)(?P<suffix>[KkM%]?)$")


def parse_printed(text: str) -> Printed:
    """``"152K"`` → 152 (scale 1000); ``"+5.3%"`` → 5.3 (signed, %); ``"≤ 0.04"`` → 0.04; ``"baseline"`` → not numeric."""
    raw = str(text)
    cleaned = raw.strip().replace("*", "").replace(" ", "")
    cleaned = cleaned.lstrip("≤≥<>~≈")
    m = _NUMBER.match(cleaned)
    if not m:
        return Printed(raw, None)
    num = m.group("num")
    decimals = len(num.split(".", 1)[1]) if "." in num else 0
    value = float(num.replace(",", ""))
    if m.group("sign") in ("-", "−"):
        value = -value
    suffix = m.group("suffix")
    scale = {"K": 1e3, "k": 1e3, "M": 1e6}.get(suffix, 1.0)
    return Printed(raw, value, decimals, scale, suffix.upper() if suffix in "kK" else suffix, "," in num,
                   m.group("sign") == "+")


def reports() -> tuple[str, ...]:
    """Every report ``load`` knows: the five seed reports (:data:`REPORTS`), then installed plugins'
    (entry point group ``hrm.reports``, see :mod:`core.plugins`)."""
    return REPORTS + tuple(report_plugins()[0])


@cache
def report_plugins() -> tuple[dict[str, dict[str, Any]], list[PluginProblem]]:
    """Published-numbers documents of installed plugins by report id, and the entry points skipped."""
    from core.plugins import REPORT_GROUP, first_line, load_group, report_document, schema_problems

    docs: dict[str, dict[str, Any]] = {}

    def check_entry(name: str, obj: Any) -> str | None:
        try:
            doc = report_document(obj)
            problems = schema_problems(doc, PUBLISHED_SCHEMA) or check(doc)
        except Exception as exc:  # noqa: BLE001 - a malformed document is the plugin's problem, reported
            return f"invalid report document: {first_line(exc)}"
        if problems:
            return f"invalid report document: {problems[0]}"
        if doc.get("report") != name:
            return f"the entry point is named {name!r} but the document says report {doc.get('report')!r}"
        docs[name] = doc
        return None

    _, problems = load_group(REPORT_GROUP, check_entry, reserved=set(REPORTS))
    return docs, problems


@cache
def load(report: str) -> dict[str, Any]:
    """The published-numbers document of ``report`` ("000" … "004", or a plugin's), validated."""
    if report not in REPORTS:
        docs, problems = report_plugins()
        if report in docs:
            return docs[report]
        broken = [p for p in problems if p.name == report]
        if broken:
            raise PublishedError(f"report {report!r} is not available: {broken[0].line()}")
        raise PublishedError(f"unknown report {report!r} (known: {', '.join(reports())})")
    text = resources.files(__name__).joinpath(f"{report}.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    problems = check(doc)
    if problems:
        raise PublishedError(f"core/published/{report}.json: {problems[0]}")
    return doc


def check(doc: dict[str, Any]) -> list[str]:
    """Structural problems of a published document beyond its JSON schema (empty list = fine)."""
    problems: list[str] = []
    if doc.get("schema") != PUBLISHED_SCHEMA_ID:
        problems.append(f"schema must be {PUBLISHED_SCHEMA_ID}")
    runs = doc.get("runs", {})
    table_ids = set()
    for table in doc.get("tables", []):
        tid = table.get("id")
        if tid in table_ids:
            problems.append(f"table id {tid!r} is used twice")
        table_ids.add(tid)
        cols = [c["name"] for c in table.get("columns", [])]
        if len(set(cols)) != len(cols):
            problems.append(f"{tid}: duplicate column names")
        for c in table.get("columns", []):
            if c.get("kind") not in KINDS:
                problems.append(f"{tid}/{c.get('name')}: unknown kind {c.get('kind')!r}")
            if c.get("class", "close") not in CLASSES:
                problems.append(f"{tid}/{c.get('name')}: unknown class {c.get('class')!r}")
            if c.get("class") == "rule" and "rule" not in c:
                problems.append(f"{tid}/{c.get('name')}: class rule needs a rule ref")
        labels = [r["label"] for r in table.get("rows", [])]
        if len(set(labels)) != len(labels):
            problems.append(f"{tid}: duplicate row labels")
        for row in table.get("rows", []):
            where = f"{tid}/{row['label']}"
            if len(row.get("values", [])) != len(cols):
                problems.append(f"{where}: {len(row.get('values', []))} values for {len(cols)} columns")
            if row.get("reproducible", True) and row.get("run") is not None and row["run"] not in runs:
                problems.append(f"{where}: unknown run {row['run']!r}")
            for key in ("refs", "classes", "tol", "kinds", "rounding"):
                for col in row.get(key, {}):
                    if col not in cols:
                        problems.append(f"{where}: {key} names unknown column {col!r}")
            for col, cls in row.get("classes", {}).items():
                if cls not in CLASSES:
                    problems.append(f"{where}/{col}: unknown class {cls!r}")
    return problems


def tables_of(doc: dict[str, Any], exps: set[str] | None = None) -> list[dict[str, Any]]:
    return [t for t in doc["tables"] if not exps or str(t.get("exp")) in exps]


def exps_of(doc: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(str(t.get("exp")) for t in doc["tables"]))


_ROW = {
    "type": "object",
    "required": ["label", "values"],
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string"},
        "run": {"type": ["string", "null"]},
        "stage": {"type": ["integer", "null"]},
        "epoch": {"type": ["integer", "null"]},
        "layer": {"type": ["integer", "null"]},
        "kinds": {"type": "object", "additionalProperties": {"enum": list(KINDS)}},
        "values": {"type": "array", "items": {"type": "string"}},
        "refs": {"type": "object"},
        "classes": {"type": "object", "additionalProperties": {"enum": list(CLASSES)}},
        "tol": {"type": "object"},
        "reproducible": {"type": "boolean"},
        "published_only": {"type": ["boolean", "array"]},
        "rounding": {"type": "object", "additionalProperties": {"type": "string"}},
        "note": {"type": "string"},
    },
}
_TOL = {"type": "object", "additionalProperties": False,
        "properties": {"rel": {"type": "number"}, "abs": {"type": "number"}, "digits": {"type": "number"}}}

PUBLISHED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": PUBLISHED_SCHEMA_ID,
    "title": "published numbers of one seed report",
    "type": "object",
    "required": ["schema", "report", "title", "source", "class", "runs", "tables"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": PUBLISHED_SCHEMA_ID},
        "report": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "source": {"type": "string"},
        "class": {"enum": list(CLASSES)},
        "tolerance": {"type": "object", "additionalProperties": _TOL},
        "notes": {"type": "array", "items": {"type": "string"}},
        "runs": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["exp", "experiment", "config"],
                "additionalProperties": False,
                "properties": {
                    "exp": {"type": "string"},
                    "experiment": {"type": "string"},
                    "config": {"type": "object"},
                    "published": {"type": "object"},
                    "corrected": {"type": "object"},
                    "note": {"type": "string"},
                },
            },
        },
        "tables": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "exp", "title", "columns", "rows"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "exp": {"type": "string"},
                    "title": {"type": "string"},
                    "section": {"type": "string"},
                    "class": {"enum": list(CLASSES)},
                    "tolerance": {"type": "object", "additionalProperties": _TOL},
                    "published_only": {"type": "boolean"},
                    "corrected_note": {"type": "string"},
                    "note": {"type": "string"},
                    "columns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "kind"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {"enum": list(KINDS)},
                                "class": {"enum": list(CLASSES)},
                                "tol": _TOL,
                                "ref": {"type": "object"},
                                "rule": {"type": "object"},
                            },
                        },
                    },
                    "rows": {"type": "array", "items": _ROW},
                },
            },
        },
    },
}
