#!/usr/bin/env python3
"""Report 001 stage 1 and report 000's base pass on the real model, in the catalog's speed modes (run on a GPU).

    python benchmarks/gpu_cascade_speed.py MODEL.gguf alpaca_6k.json [--out $OUT/gpu_cascade_speed.json]
        [--only 001,000-seeds,000-fast]

001: ``cascade --recipe 001`` stage 1 (``--stages 1``) with the settings below, each through the
catalog's own ``run`` (RecordingEmitter): per-epoch seconds, val PPL, extraction and training
tokens/s, how the steps ran. 000-seeds: LLM 0's val PPL (fp16 base, as published) on the 2,500-record
subsets that ``--data-seed`` picks from the sample: how much of the gap to the report's 12.50 the
choice of records alone can make. 000-fast: the 000 base pass with ``--extract fast``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.experiments import RecordingEmitter, get_experiment  # noqa: E402

DEVICE = "cuda"
RUNS_001: list[tuple[str, dict[str, Any]]] = [
    ("published, fp32, --compile (the report's numerics)", {"variant": "published", "compile": True}),
    ("published, --compile --amp bf16", {"variant": "published", "compile": True, "amp": "bf16"}),
    ("corrected", {"variant": "corrected"}),
    ("corrected, --extract fast", {"variant": "corrected", "extract": "fast"}),
]


def run_001(model: str, data: str) -> list[dict[str, Any]]:
    exp = get_experiment("cascade")
    rows = []
    for label, kw in RUNS_001:
        cfg = exp.make_config(recipe="001", stages=1, model=model, data_file=data, device=DEVICE, **kw)
        em = RecordingEmitter()
        t0 = time.perf_counter()
        exp.run(cfg, em)
        wall = time.perf_counter() - t0
        s = em.summary_metrics()
        epochs = [e["metrics"] for e in em.of("epoch") if e["stage"] == 1]
        steps = [e["message"] for e in em.of("log") if "training steps ran as" in e["message"]]
        row = {"label": label, "config": kw, "wall_s": wall, "extract_tokens_per_s": s.get("extract_tokens_per_s"),
               "train_tokens_per_s": s.get("train_tokens_per_s"), "threshold": s.get("threshold"),
               "best_val_ppl": s.get("best_val_ppl"), "stage_seconds": s.get("seconds"),
               "epoch_seconds": [e.get("seconds") for e in epochs], "epoch_val_ppl": [e.get("val_ppl") for e in epochs],
               "epoch_train_loss": [e.get("train_loss") for e in epochs], "steps": steps}
        rows.append(row)
        print(f"\n## 001 stage 1: {label}\n  wall {wall:.1f} s; extraction {row['extract_tokens_per_s']:,.0f} tokens/s; "
              f"training {row['train_tokens_per_s']:,.0f} tokens/s; threshold {row['threshold']:.4f}; "
              f"best val PPL {row['best_val_ppl']:.2f}\n  epoch s " + ", ".join(f"{x:.2f}" for x in row["epoch_seconds"])
              + "\n  val PPL " + ", ".join(f"{x:.2f}" for x in row["epoch_val_ppl"]) + f"\n  {steps}", flush=True)
    return rows


def run_000_seeds(model: str, data: str, seeds: list[int]) -> list[dict[str, Any]]:
    import torch

    from core.smollm2.alpaca import load_records, pipeline_c
    from core.smollm2.model import load_base
    from core.smollm2.ops import ppl, run_frozen

    lm, tok, _ = load_base(model, device=DEVICE, dtype=torch.float16 if DEVICE.startswith("cuda") else torch.float32)
    records = load_records(data)
    rows = []
    for seed in seeds:
        d = pipeline_c(tok, records, num_samples=2500, seq_len=128, batch_size=16, val_ratio=0.1, seed=seed)
        xv, yv = d.val[:, :-1], d.val[:, 1:]
        bv = run_frozen(lm, input_ids=xv, labels=yv, rule="last2avg", batch_size=16,
                        cos_dtype=torch.float16)
        row = {"data_seed": seed, "val_tokens": int(yv.numel()), "train_windows": int(d.train.shape[0]),
               "base_val_ppl": ppl(float(bv.ce.double().mean()))}
        rows.append(row)
        print(f"  000 LLM 0 val PPL, --data-seed {seed}: {row['base_val_ppl']:.2f} "
              f"({row['val_tokens']} val tokens, {row['train_windows']} train windows)", flush=True)
    vals = [r["base_val_ppl"] for r in rows]
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1))
    print(f"  over {len(vals)} subsets: mean {mean:.2f}, sd {sd:.2f}, min {min(vals):.2f}, max {max(vals):.2f} "
          f"(report: 12.50)", flush=True)
    return rows


def run_000_fast(model: str, data: str) -> list[dict[str, Any]]:
    exp = get_experiment("cascade")
    rows = []
    for extract in ("exact", "fast"):
        cfg = exp.make_config(recipe="000", variant="published", model=model, data_file=data, device=DEVICE,
                              extract=extract, epochs=1)
        em = RecordingEmitter()
        exp.run(cfg, em)
        s = em.summary_metrics()
        rows.append({"extract": extract, "extract_tokens_per_s": s.get("extract_tokens_per_s"),
                     "base_val_ppl": s.get("base_val_ppl"), "threshold": s.get("threshold")})
        print(f"  000 published --extract {extract} --epochs 1: extraction {s.get('extract_tokens_per_s'):,.0f} tokens/s, "
              f"LLM 0 val PPL {s.get('base_val_ppl'):.2f}, threshold {s.get('threshold'):.4f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data_file")
    ap.add_argument("--only", default="001,000-seeds,000-fast")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test with a tiny model")
    ap.add_argument("--seeds", default="42,0,1,2,3,4,5,6")
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "gpu_cascade_speed.json") if os.environ.get("OUT") else "")
    args = ap.parse_args()
    import torch

    global DEVICE
    DEVICE = args.device
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else DEVICE, "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    only = args.only.split(",")
    if "001" in only:
        out["001"] = run_001(args.model, args.data_file)
    if "000-seeds" in only:
        out["000_seeds"] = run_000_seeds(args.model, args.data_file, [int(s) for s in args.seeds.split(",")])
    if "000-fast" in only:
        out["000_fast"] = run_000_fast(args.model, args.data_file)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
        print(f"JSON written to {args.out}")


if __name__ == "__main__":
    main()
