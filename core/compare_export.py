"""Writing comparison tables: markdown, csv, json (schema ``hrm.compare/v1``) and latex.

Split out of :mod:`core.compare`, which builds the tables and re-exports every name here: one table,
written in any format by the same code, for ``hrm compare``, the dashboard's exports and ``hrm report``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from core.compare import Table

COMPARE_JSON_SCHEMA_ID = "hrm.compare/v1"


class CompareError(ValueError):
    """A request that cannot be answered (unknown metric field, baseline not among the runs...)."""


def to_markdown(tables: Sequence[Table], *, heading: str = "###") -> str:
    """GitHub pipe tables, one per Table, with its notes as a list. Out-of-tolerance cells end in ✗."""
    parts = []
    for table in tables:
        lines = [f"{heading} {table.title}", ""]
        columns = table.human_columns()
        lines.append("| " + " | ".join(_md_escape(c.label) for c in columns) + " |")
        lines.append("|" + "|".join("---" if c.type == "text" else "---:" for c in columns) + "|")
        for i in range(len(table.rows)):
            lines.append("| " + " | ".join(_md_escape(table.cell_text(i, c, mark="**✗**")) for c in columns) + " |")
        if table.notes:
            lines.append("")
            lines += [f"- {note}" for note in table.notes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_csv(tables: Sequence[Table]) -> str:
    """CSV with raw numbers. Several tables become one long table with a leading ``table`` column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if len(tables) == 1:
        table = tables[0]
        cols = _csv_columns(table)
        writer.writerow([label for _, label in cols])
        for row in table.rows:
            writer.writerow([_csv_value(row.get(key)) for key, _ in cols])
        return buf.getvalue()
    union: list[tuple[str, str]] = []
    for table in tables:
        for col in _csv_columns(table):
            if col not in union:
                union.append(col)
    writer.writerow(["table"] + [label for _, label in union])
    for table in tables:
        keys = {key for key, _ in _csv_columns(table)}
        for row in table.rows:
            writer.writerow([table.id] + [_csv_value(row.get(key)) if key in keys else "" for key, _ in union])
    return buf.getvalue()


def _csv_columns(table: Table) -> list[tuple[str, str]]:
    cols = []
    for c in table.columns:
        label = c.label.replace(" mean ± std", " mean") if c.pair_key else c.label
        cols.append((c.key, label))
        if c.status_key:
            cols.append((c.status_key, c.status_key))
    return cols


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def to_json(tables: Sequence[Table], *, summary: Mapping[str, Any] | None = None, source: Mapping[str, Any] | None = None) -> str:
    """The ``hrm.compare/v1`` document (see :data:`COMPARE_JSON_SCHEMA`)."""
    doc: dict[str, Any] = {
        "schema": COMPARE_JSON_SCHEMA_ID,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": dict(source or {}),
        "tables": [t.as_json() for t in tables],
    }
    if summary is not None:
        doc["summary"] = dict(summary)
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "τ": r"$\tau$", "≥": r"$\geq$", "≤": r"$\leq$", "≠": r"$\neq$", "×": r"$\times$",
    "—": "---", "–": "--", "✗": r"$\times$", "✓": r"$\checkmark$", "→": r"$\rightarrow$", "·": r"$\cdot$",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; map common symbols to math; drop other non-ASCII (pdflatex-safe)."""
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIALS:
            out.append(_LATEX_SPECIALS[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def to_latex(tables: Sequence[Table]) -> str:
    """One ``tabular`` per table (``\\hline`` rules, no packages needed); out-of-tolerance cells in bold with †."""
    parts = []
    for table in tables:
        columns = table.human_columns()
        spec = "".join("l" if c.type == "text" else "r" for c in columns)
        lines = [f"% {latex_escape(table.title)}", f"\\begin{{tabular}}{{{spec}}}", "\\hline"]
        lines.append(" & ".join(latex_escape(c.label) for c in columns) + r" \\")
        lines.append("\\hline")
        for i, row in enumerate(table.rows):
            cells = []
            for c in columns:
                text = latex_escape(table.cell_text(i, c))
                if c.status_key and row.get(c.status_key) == "out":
                    text = f"\\textbf{{{text}}}$^\\dagger$"
                cells.append(text)
            lines.append(" & ".join(cells) + r" \\")
        lines.append("\\hline")
        lines.append("\\end{tabular}")
        for note in table.notes:
            lines.append(f"% {latex_escape(note)}")
        parts.append("\n".join(lines))
    return "\n\n\\bigskip\n\n".join(parts) + "\n"


FORMATS = ("table", "markdown", "csv", "json", "latex")


def export(tables: Sequence[Table], fmt: str, *, summary: Mapping[str, Any] | None = None,
           source: Mapping[str, Any] | None = None) -> str:
    """Text of ``tables`` in ``fmt`` (markdown, csv, json, latex); ``table`` is the CLI's Rich view."""
    if fmt == "markdown":
        text = to_markdown(tables)
        if summary:
            text += "\n" + summary_line(summary) + "\n"
        return text
    if fmt == "csv":
        return to_csv(tables)
    if fmt == "json":
        return to_json(tables, summary=summary, source=source)
    if fmt == "latex":
        return to_latex(tables)
    raise CompareError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")


CLASS_WORDS = {"digits": "to the printed digit", "close": "close (±1 % or ±1 in the last digit)",
               "rule": "as the rule's arithmetic on our data", "loose": "loosely", "chaotic": "by ordering only"}
"""How ``summary_line`` says what a tolerance class checked."""


def summary_line(summary: Mapping[str, Any]) -> str:
    """``32 published numbers: 32 ok; checked 32 to the printed digit``: the verdicts and what they mean."""
    counts = summary.get("counts", {})
    order = ("ok", "out", "missing", "n/a", "info", "ref")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    line = f"{summary.get('numbers', 0)} published numbers: " + ", ".join(parts)
    checked = summary.get("checked_by_class") or {}
    if checked:
        line += "; checked " + ", ".join(f"{checked[c]} {CLASS_WORDS.get(c, c)}" for c in CLASS_WORDS if checked.get(c))
    return line


# --- the JSON schema of ``hrm compare --format json`` ---------------------------------------------

_CELL = {"type": ["number", "string", "null"]}
COMPARE_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": COMPARE_JSON_SCHEMA_ID,
    "title": "hrm compare output",
    "description": "Tables of `hrm compare --format json`. Row values are raw numbers (never formatted), "
                   "strings or null (missing). Report tables add one `numbers` entry per published number.",
    "type": "object",
    "required": ["schema", "generated_at", "source", "tables"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": COMPARE_JSON_SCHEMA_ID},
        "generated_at": {"type": "string"},
        "source": {"type": "object", "description": "what was compared: run ids, tag, report, variant"},
        "summary": {
            "type": "object",
            "required": ["numbers", "counts"],
            "properties": {
                "numbers": {"type": "integer", "minimum": 0},
                "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                "checked_by_class": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
                                     "description": "ok/out verdicts per tolerance class (what was checked)"},
                "within_tolerance": {"type": "boolean"},
            },
        },
        "tables": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "kind", "columns", "rows", "notes"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "kind": {"enum": ["runs", "aggregate", "layers", "stages", "thresholds", "report"]},
                    "columns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["key", "label", "type"],
                            "additionalProperties": False,
                            "properties": {
                                "key": {"type": "string"},
                                "label": {"type": "string"},
                                "type": {"enum": ["number", "integer", "text"]},
                                "group": {"type": "string"},
                                "status_key": {"type": "string"},
                                "decimals": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                    "rows": {"type": "array", "items": {"type": "object", "additionalProperties": _CELL}},
                    "notes": {"type": "array", "items": {"type": "string"}},
                    "numbers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["table", "row", "column", "published", "published_text", "ours", "diff",
                                         "class", "status"],
                            "properties": {
                                "table": {"type": "string"},
                                "row": {"type": "string"},
                                "column": {"type": "string"},
                                "published": {"type": ["number", "null"]},
                                "published_text": {"type": "string"},
                                "unit": {"enum": ["K", "M", "%", None],
                                         "description": "published, ours and diff are in this printed unit"},
                                "ours": {"type": ["number", "null"]},
                                "diff": {"type": ["number", "null"]},
                                "rel_diff": {"type": ["number", "null"]},
                                "class": {"enum": ["digits", "close", "rule", "loose", "chaotic", "info"]},
                                "rule": {"type": ["number", "null"],
                                         "description": "class rule: what the rule gives on the run's own data"},
                                "tolerance": {"type": "string"},
                                "status": {"enum": ["ok", "out", "missing", "n/a", "info", "ref"]},
                                "run": {"type": ["integer", "null"]},
                                "why": {"type": ["string", "null"]},
                            },
                        },
                    },
                },
            },
        },
    },
}
