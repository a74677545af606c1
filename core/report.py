"""``hrm report REPORT --out DIR``: the report regenerated as a markdown document with PNG plots.

The document follows the original's sections: per experiment, each published table with our
numbers and the difference beside the published ones (out-of-tolerance numbers marked ✗), the
runs that produced them with the quirks active in each, and plots (matplotlib, Agg backend):
loss curves, per-layer losses, saturation profile, early-exit / routing trade-off — whichever the
runs have. Headless: no Rich, no Typer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core import published
from core.compare import Table, summary_line, to_markdown
from core.registry import Database, store
from core.reproduce import ReportComparison, compare_report

QUIRKS: dict[str, str] = {
    "B1": "LLM 0's hard val PPL runs LLM 0 again on its own outputs of re-packed hard tokens",
    "B2": "TRUE early exit applies LLM 0 twice",
    "B3": "hard tokens re-packed into fake 128-token sequences, remainder dropped",
    "B4": "early-exit PPL/accuracy divide by tokens that were never scored",
    "B5": "LLM 1 validated on all val tokens, reported as a hard-token PPL",
    "B6": "per-LLM learning rate lr·0.5^k",
    "B7": "hidden states fed as independent length-1 sequences",
    "B8": "last-epoch model kept after early stopping",
    "B9": "val hard set chosen by val's own quantile",
    "B10": "a linear probe stands in for the next-stage LLM; fixed threshold from another cos definition",
    "B11": "toy-fox fallback text instead of WikiText-2",
    "B12": "best weights never restored: analyses and next stages use the last weights",
    "B13": "the first greedy block also freezes the embedding",
    "B14": "generalised HRM: levels updated in parallel from the old states, H also sees the embedding",
    "B15": "unused Q-head kept for parameter parity",
    "B16": "Infini memory: reset retrieves the same window, carry crosses shuffled batches",
    "B17": "hard = score < quantile(score, hard_ratio)",
    "B18": "cos_sim computed in fp16",
    "B19": "eval PPL caps the mean loss at 100 before exp",
    "B20": "patience 0 means stop at the first non-improvement",
}


def write_report(db: Database, report: str, out_dir: str | Path, *, variant: str = "published",
                 exps: Iterable[str] | None = None, tag: str | None = None) -> Path:
    """Write ``DIR/report-<report>.md`` and its PNGs; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare_report(db, report, variant=variant, exps=exps, tag=tag)
    doc = published.load(report)
    histories = {rec["id"]: store.metrics(db, rec["id"]) for rec in _unique_runs(comparison)}
    tables = {rec["id"]: store.result_tables(db, rec["id"]) for rec in _unique_runs(comparison)}

    lines = [f"# Report {report} regenerated: {doc['title']}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} from `{db.safe_url}` — variant **{variant}**"
             + (f", runs tagged `{tag}`" if tag else "") + f". Published source: {doc['source']}.", "",
             f"**{summary_line(comparison.summary)}**. Each number: published | ours | Δ (ours − published); "
             "✗ marks a number outside its tolerance class (digits = to the printed digit, close = ±1 % or ±1 in the "
             "last digit, rule = the rule's arithmetic on our own data, loose, chaotic = ordering only).", ""]
    lines += [f"- {note}" for note in doc.get("notes", [])]
    lines += ["", "## Runs used", "", to_markdown([comparison.runs_table], heading="###").split("\n", 2)[2]]

    by_exp: dict[str, list[Table]] = {}
    pub_tables = {t["id"]: t for t in doc["tables"]}
    for table in comparison.tables:
        tid = table.id.split(".", 2)[2]
        by_exp.setdefault(str(pub_tables[tid]["exp"]), []).append(table)
    for exp, exp_tables in by_exp.items():
        heading = f"Experiment {exp}" if exp.isdigit() and len(exp) < 3 else f"Report {exp}"
        lines += [f"## {heading}", ""]
        lines.append(to_markdown(exp_tables, heading="###"))
        keys = {r.get("run") for t in doc["tables"] if str(t["exp"]) == exp for r in t["rows"]}
        recs = [comparison.matches[k] for k in doc["runs"] if k in keys and comparison.matches.get(k)]
        for rec in recs:
            lines.append(_run_line(rec))
        lines.append("")
        for title, path in _plots_for(exp, recs, histories, tables, comparison, out):
            lines += [f"![{title}]({path.name})", ""]
    lines += ["## Quirks", "", "| id | what the published code does |", "|---|---|"]
    active = sorted({q for rec in _unique_runs(comparison) for q in rec.get("info", {}).get("quirks") or []},
                    key=lambda q: int(q[1:]) if q[1:].isdigit() else 99)
    lines += [f"| {q} | {QUIRKS.get(q, '')} |" for q in active] or ["| — | no quirk active in the runs used |"]
    path = out / f"report-{report}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _unique_runs(comparison: ReportComparison) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for rec in comparison.matches.values():
        if rec is not None:
            seen.setdefault(rec["id"], rec)
    return list(seen.values())


def _run_line(rec: Mapping[str, Any]) -> str:
    info = rec.get("info", {})
    quirks = ", ".join(info.get("quirks") or []) or "none"
    config = " ".join(f"{k}={v}" for k, v in rec["config"].items() if k not in ("variant",))
    return (f"- run {rec['id']} `{rec['experiment']}` ({rec['status']}, {rec['variant']}): quirks {quirks}; "
            f"data {info.get('data_source') or '—'}; config `{config}`")


# --- plots ------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plots_for(exp: str, recs: Sequence[Mapping[str, Any]], histories, tables, comparison, out: Path
               ) -> list[tuple[str, Path]]:
    plots: list[tuple[str, Path]] = []
    slug = exp.replace("/", "-")
    name = f"Experiment {exp}" if exp.isdigit() and len(exp) < 3 else f"report {exp}"
    curve = _loss_curves(recs, histories, out / f"loss-{slug}.png", f"validation PPL per epoch, {name}")
    if curve:
        plots.append(("loss curves", curve))
    for rec in recs:
        rows = histories.get(rec["id"], [])
        p = _layer_plot(rec, rows, out / f"layers-run{rec['id']}.png")
        if p:
            plots.append((f"per-layer losses, run {rec['id']}", p))
        p = _saturation_plot(rec, rows, out / f"saturation-run{rec['id']}.png")
        if p:
            plots.append((f"saturation profile, run {rec['id']}", p))
        p = _tradeoff_plot(rec, tables.get(rec["id"], []), out / f"tradeoff-run{rec['id']}.png")
        if p:
            plots.append((f"early-exit trade-off, run {rec['id']}", p))
    return plots


def _loss_curves(recs, histories, path: Path, title: str) -> Path | None:
    series = []
    for rec in recs:
        by_stage: dict[int, list[tuple[int, float]]] = {}
        for m in histories.get(rec["id"], []):
            if m["kind"] == "epoch" and m["key"] == "val_ppl" and m["epoch"] is not None and _finite(m["value"]):
                by_stage.setdefault(m["stage"], []).append((m["epoch"], m["value"]))
        for stage, points in sorted(by_stage.items()):
            label = f"run {rec['id']} {_short(rec)}" + (f" s{stage}" if stage else "")
            series.append((label, sorted(points)))
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series:
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("val PPL")
    if max(v for _, pts in series for _, v in pts) / max(min(v for _, pts in series for _, v in pts), 1e-9) > 20:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(rec: Mapping[str, Any]) -> str:
    for key in ("method", "model", "loss", "update", "condition", "recipe", "phase"):
        if key in rec["config"]:
            return str(rec["config"][key])
    return rec["experiment"]


def _layer_plot(rec, rows, path: Path) -> Path | None:
    """Per-epoch per-layer losses (layer lines over epochs) or analysis rows (per-class lines over layers)."""
    epoch_rows = [m for m in rows if m["kind"] == "layer" and m["epoch"] is not None and "loss" in m["key"]
                  and _finite(m["value"])]
    analysis = [m for m in rows if m["kind"] == "layer" and m["epoch"] is None and m["key"].startswith("loss")
                and _finite(m["value"])]
    if not epoch_rows and not analysis:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if epoch_rows:
        stage = max(m["stage"] for m in epoch_rows)
        key = sorted({m["key"] for m in epoch_rows})[0]
        lines: dict[int, list[tuple[int, float]]] = {}
        for m in epoch_rows:
            if m["stage"] == stage and m["key"] == key:
                lines.setdefault(m["layer"], []).append((m["epoch"], m["value"]))
        for layer, points in sorted(lines.items()):
            points.sort()
            ax.plot([e for e, _ in points], [v for _, v in points], label=f"L{layer}")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key + (f" (stage {stage})" if stage else ""))
    else:
        lines2: dict[str, list[tuple[int, float]]] = {}
        for m in analysis:
            lines2.setdefault(m["key"], []).append((m["layer"], m["value"]))
        for key, points in sorted(lines2.items()):
            points.sort()
            ax.plot([x for x, _ in points], [v for _, v in points], marker="o", label=key)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
        ax.set_ylabel("loss (analysis)")
    ax.set_title(f"run {rec['id']} {rec['experiment']}: per-layer losses")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _saturation_plot(rec, rows, path: Path) -> Path | None:
    stats: dict[int, dict[str, float]] = {}
    for m in rows:
        if m["kind"] == "layer" and m["epoch"] is None and m["key"] in ("cos_mean", "cos_p10", "cos_p90"):
            stats.setdefault(m["layer"], {})[m["key"]] = m["value"]
    layers = sorted(layer for layer, s in stats.items() if "cos_mean" in s)
    if not layers:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    means = [stats[i]["cos_mean"] for i in layers]
    spread = None
    if all("cos_p10" in stats[i] and "cos_p90" in stats[i] for i in layers):  # p10–p90 as asymmetric error bars
        spread = [[max(0.0, m - stats[i]["cos_p10"]) for i, m in zip(layers, means)],
                  [max(0.0, stats[i]["cos_p90"] - m) for i, m in zip(layers, means)]]
    ax.bar(layers, means, yerr=spread, capsize=2, color="tab:blue", ecolor="gray",
           label="mean" + (" (whiskers: p10–p90)" if spread else ""))
    ax.set_xlabel("layer")
    ax.set_ylabel("cos(h[i-1], h[i])")
    ax.set_title(f"run {rec['id']}: saturation profile")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tradeoff_plot(rec, tables: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Compute % against PPL / accuracy from a threshold sweep (Exp 10/11) or exit rate vs accuracy (Exp 9)."""
    for t in reversed(tables):
        rows = t["rows"]
        if not rows or "threshold" not in t["name"]:
            continue
        x_key = "compute_pct" if "compute_pct" in rows[0] else ("exit_pct" if "exit_pct" in rows[0] else None)
        y_keys = [k for k in ("val_ppl", "val_acc_pct", "adaptive_acc_pct", "acc_pct") if k in rows[0]]
        if x_key is None or not y_keys:
            continue
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(y_keys), figsize=(5 * len(y_keys), 4), squeeze=False)
        for ax, y_key in zip(axes[0], y_keys):
            xs = [r.get(x_key) for r in rows]
            ys = [r.get(y_key) for r in rows]
            ax.plot(xs, ys, marker="o")
            for r, x, y in zip(rows, xs, ys):
                if "threshold" in r and _finite(x) and _finite(y):
                    ax.annotate(f"τ={r['threshold']:g}", (x, y), fontsize=7)
            ax.set_xlabel(x_key)
            ax.set_ylabel(y_key)
        fig.suptitle(f"run {rec['id']} {rec['experiment']}: {t['name']}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
