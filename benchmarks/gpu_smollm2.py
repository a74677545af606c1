#!/usr/bin/env python3
"""Run the SmolLM2 catalog (reports 003, 001 stage 1, 000, 002) once and compare with the published numbers.

    python benchmarks/gpu_smollm2.py --model /tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --data-file data/alpaca_6k.json [--variants published,corrected] [--only 003,001,000,002] \\
        [--out $OUT/gpu_smollm2.json] [--compile]
    python benchmarks/gpu_smollm2.py --tiny          # CPU smoke test: tiny random model, generated data

Imports only ``core.experiments.*`` (+ torch/transformers through them): no sqlmodel/textual needed.
Each experiment runs with a RecordingEmitter; the base model is loaded once per process. Prints a
markdown report (measured beside published, tokens/s of hidden-state extraction and of stage
training, per-epoch seconds) and writes everything as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.experiments.base import RecordingEmitter  # noqa: E402

# Published numbers (reports 000-003); None where a report gives none.
PUBLISHED: dict[str, dict[str, Any]] = {
    "003": {
        "tokens": 43_008, "layer1_cos_mean": 0.0056, "layer2_cos_mean": 0.8203, "layer25_cos_mean": 0.8408,
        "layer29_cos_mean": 0.9482, "layer29_cos_std": 0.0198, "layer30_cos_mean": 0.1309,
        "layer1_neg_pct": 37.61, "layer30_neg_pct": 24.30, "layer30_below_half_pct": 96.08,
        "layer4_cos_max": 1.0010, "threshold_30pct": 0.9453, "threshold_50pct": 0.9517, "threshold_70pct": 0.9570,
    },
    "001": {
        "train_tokens": 128_000, "val_tokens": 12_800, "threshold": 0.1786, "train_hard_tokens": 115_200,
        "val_hard_tokens": 11_520, "best_val_ppl": 84.43, "best_epoch": 2, "stopped_epoch": 3,
        "epoch_val_ppl": [112.01, 84.43, 88.13], "epoch_train_loss": [5.1721, 3.1900, 2.0465],
        "epoch_seconds": [192.7, 192.6, 192.8], "stage_seconds": 578.2, "params": 134_515_008,
        "addon_params": 56_632_896,
    },
    "000": {
        "base_val_ppl": 12.50, "threshold": 0.9341, "train_hard_tokens": 19_252, "train_hard_tokens_packed": 19_200,
        "llm0_hard_val_ppl": 24_343.01, "llm1_val_ppl_before": 57_792.05, "llm1_val_ppl_after": 11_618.66,
        "improvement_pct": 52.3, "llm1_improvement_pct": 79.9,
        "epoch_val_ppl": [49_712.87, 42_570.53, 35_681.09, 29_371.91, 23_705.57, 18_907.05, 15_386.31,
                          13_167.55, 11_995.81, 11_618.42],
        "accuracy_pct": 2.07, "ppl": 13_847.47, "compute_pct": 95.3, "llm0_input": 20_480, "llm0_exit": 15_461,
        "llm1_input": 4_992, "val_tokens": 20_480, "params": 134_515_008, "addon_params": 35_392_320,
    },
    "002": {
        "train_tokens_total": 86_784, "train_hard_tokens": 10_082, "val_tokens_total": 17_280,
        "val_hard_tokens": 1_842, "hard_val_loss": 7.13, "hard_val_ppl": 1_252, "all_val_loss": 8.04,
        "all_val_ppl": 3_115, "ppl_ratio": 0.402, "hard_seconds": 36.5,
    },
}


def _jobs(args: argparse.Namespace, model: str, data_file: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(report, experiment name, variant, config overrides)."""
    common = {"model": model, "data_file": data_file, "device": args.device}
    tiny = args.tiny
    jobs: list[tuple[str, str, str, dict[str, Any]]] = []
    for v in args.variants.split(","):
        v = v.strip()
        for rep in args.only.split(","):
            rep = rep.strip()
            if rep == "003":
                kw = dict(common, variant=v)
                if tiny:
                    kw.update(num_samples=24, seq_len=32, threshold_layer=3)
                jobs.append((rep, "saturation", v, kw))
            elif rep == "001":
                kw = dict(common, variant=v, recipe="001", stages=1, compile=args.compile)
                if tiny:
                    kw.update(num_samples=40, val_samples=8, seq_len=32, epochs=2, stage_layers=2)
                jobs.append((rep, "cascade", v, kw))
            elif rep == "000":
                kw = dict(common, variant=v, recipe="000")
                if tiny:
                    kw.update(num_samples=40, seq_len=32, epochs=2, hard_ratio=0.3)
                jobs.append((rep, "cascade", v, kw))
            elif rep == "002":
                kw = dict(common, variant=v)
                if tiny:
                    kw.update(num_samples=24, val_samples=8, seq_len=32, epochs=2, threshold=0.97)
                jobs.append((rep, "hard-tokens", v, kw))
            else:
                raise SystemExit(f"unknown report {rep!r} in --only (003, 001, 000, 002)")
    return jobs


def _experiment(name: str):
    import importlib

    module = {"saturation": "saturation", "cascade": "cascade", "hard-tokens": "hard_tokens"}[name]
    return importlib.import_module(f"core.experiments.{module}").EXPERIMENT


def _measured(rep: str, e: RecordingEmitter) -> dict[str, Any]:
    s = e.summary_metrics()
    tables = e.tables()
    epochs = e.of("epoch")
    m: dict[str, Any] = {}
    if rep == "003":
        layers = {row["layer"]: row for row in tables.get("saturation", [])}
        n = max(layers) if layers else 0
        m["tokens"] = s.get("tokens")
        for i, key in ((1, "cos_mean"), (2, "cos_mean"), (25, "cos_mean"), (29, "cos_mean"), (29, "cos_std"),
                       (n, "cos_mean"), (1, "neg_pct"), (n, "neg_pct"), (n, "below_half_pct"), (4, "cos_max")):
            label = f"layer{30 if i == n else i}_{key}"
            if i in layers:
                m[label] = layers[i][key]
        for k in ("threshold_30pct", "threshold_50pct", "threshold_70pct"):
            m[k] = s.get(k)
        m["extract_tokens_per_s"] = s.get("extract_tokens_per_s")
    elif rep in ("001", "000"):
        st = e.summary_metrics(1)
        m.update({k: s.get(k) for k in ("base_val_ppl", "accuracy_pct", "ppl", "compute_pct", "val_tokens",
                                        "train_tokens", "params", "extract_tokens_per_s", "train_tokens_per_s",
                                        "llm0_hard_val_ppl", "llm1_val_ppl_before", "llm1_val_ppl_after",
                                        "llm1_hard_val_ppl", "improvement_pct", "llm1_improvement_pct",
                                        "compute_ctx_pct", "train_hard_tokens_packed")})
        m.update({k: st.get(k) for k in ("threshold", "val_threshold", "train_hard_tokens", "val_hard_tokens",
                                         "best_val_ppl", "best_epoch", "stopped_epoch", "seconds")})
        m["stage_seconds"] = st.get("seconds")
        m["addon_params"] = st.get("params")
        if rep == "000" and "train_hard_tokens" in s:
            m["train_hard_tokens"] = s["train_hard_tokens"]
        ee = tables.get("early_exit", [])
        if ee:
            m["llm0_input"], m["llm0_exit"] = ee[0]["input_tokens"], ee[0]["exit_tokens"]
            if len(ee) > 1:
                m["llm1_input"] = ee[1]["input_tokens"]
        st1 = [x for x in epochs if x["stage"] == 1]
        m["epoch_val_ppl"] = [x["metrics"]["val_ppl"] for x in st1]
        m["epoch_train_loss"] = [x["metrics"]["train_loss"] for x in st1]
        m["epoch_seconds"] = [x["metrics"]["seconds"] for x in st1]
        m["epoch_train_tokens_per_s"] = [x["metrics"].get("train_tokens_per_s") for x in st1]
    elif rep == "002":
        m.update({k: s.get(k) for k in ("train_tokens_total", "train_hard_tokens", "val_tokens_total",
                                        "val_hard_tokens", "hard_val_loss", "hard_val_ppl", "all_val_loss",
                                        "all_val_ppl", "ppl_ratio", "hard_seconds", "threshold",
                                        "base_hard_val_ppl", "extract_tokens_per_s")})
        m["epoch_seconds"] = {st: [x["metrics"]["seconds"] for x in epochs if x["stage"] == st] for st in (1, 2)}
        m["train_tokens_per_s"] = {st: e.summary_metrics(st).get("train_tokens_per_s") for st in (1, 2)}
    return m


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.1f}"
        if abs(v) >= 10:
            return f"{v:.2f}"
        return f"{v:.4f}"
    return str(v)


def _make_tiny(tmp: Path) -> tuple[str, str]:
    from core.smollm2.alpaca import tiny_records
    from core.smollm2.model import build_tiny_model_dir

    model = build_tiny_model_dir(tmp / "tiny-model")
    data = tmp / "tiny_alpaca.json"
    data.write_text(json.dumps(tiny_records(96).rows), encoding="utf-8")
    return model, str(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="GGUF file, model directory or hub id (default: the experiments' default)")
    ap.add_argument("--data-file", default="", help="Alpaca JSON list (e.g. alpaca_6k.json)")
    ap.add_argument("--only", default="003,001,000,002", help="reports to run, in order")
    ap.add_argument("--variants", default="published,corrected", help="published, corrected or both (comma list)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the per-token forward of 001 published")
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "gpu_smollm2.json") if os.environ.get("OUT") else "",
                    help="write the full JSON here ($OUT/gpu_smollm2.json when $OUT is set)")
    ap.add_argument("--tiny", action="store_true", help="tiny random model + generated data (CPU smoke test)")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failed job")
    args = ap.parse_args(argv)

    import torch

    if args.tiny and args.device == "auto":
        args.device = "cpu"
    if args.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(1 if args.tiny else max(1, torch.get_num_threads()))
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False  # the reports' fp32 arithmetic (T4 had no TF32)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_smollm2_"))
    model, data_file = args.model, args.data_file
    if args.tiny:
        model, data_file = _make_tiny(tmp)
    if not model:
        model = "HuggingFaceTB/SmolLM2-135M-Instruct"

    env = {
        "python": sys.version.split()[0], "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(), "model": model, "data_file": data_file, "tiny": args.tiny,
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    from core.experiments.base import resolve_device
    from core.smollm2.model import load_base

    t0 = time.perf_counter()
    load_base(model, device="cpu")  # fills the per-process cache; later loads only copy
    env["model_load_seconds"] = time.perf_counter() - t0
    print(f"# SmolLM2 catalog benchmark\n\ndevice {resolve_device(args.device)} ({env['cuda'] or 'cpu'}), torch "
          f"{env['torch']}, transformers {env.get('transformers')}; model load {env['model_load_seconds']:.1f} s\n",
          flush=True)

    results = []
    failed = 0
    for rep, name, variant, kw in _jobs(args, model, data_file):
        exp = _experiment(name)
        cfg = exp.make_config(**kw)
        e = RecordingEmitter()
        t = time.perf_counter()
        err = None
        try:
            exp.run(cfg, e)
        except Exception as exc:  # noqa: BLE001 - reported, then the next job runs
            err = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            failed += 1
        wall = time.perf_counter() - t
        meas = _measured(rep, e) if err is None else {}
        info = e.infos()
        res = {"report": rep, "experiment": name, "variant": variant, "wall_seconds": wall, "error": err,
               "config": cfg.model_dump(), "measured": meas,
               "published": PUBLISHED[rep] if variant == "published" else {},
               "info": {k: info.get(k) for k in ("quirks", "data_source", "model_source", "code_path", "device")},
               "summary": e.summary_metrics(), "events": e.events}
        results.append(res)
        print(f"## {rep} {name} ({variant}) — {wall:.1f} s" + (f" — FAILED: {err}" if err else ""), flush=True)
        if err is None:
            print(f"quirks {info.get('quirks')}; {info.get('data_source')}\n")
            print("| metric | measured | published |\n|---|---|---|")
            pub = PUBLISHED[rep]
            for k, v in meas.items():
                if v is None and (variant != "published" or pub.get(k) is None):
                    continue
                print(f"| {k} | {_fmt(v)} | {_fmt(pub.get(k)) if variant == 'published' else ''} |")
            print(flush=True)
        if err and not args.keep_going:
            break
    out = {"env": env, "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
        print(f"JSON written to {args.out}")
    brief = [{"report": r["report"], "variant": r["variant"], "wall_seconds": round(r["wall_seconds"], 2),
              "error": r["error"], "measured": r["measured"]} for r in results]
    print("\n```json\n" + json.dumps({"env": env, "results": brief}, default=str) + "\n```")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
