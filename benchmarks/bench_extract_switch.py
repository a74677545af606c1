"""saturation with --extract exact vs fast on the real model (run on a GPU; the model and data paths are arguments).

    python benchmarks/bench_extract_switch.py MODEL.gguf alpaca_6k.json
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from core.experiments import get_experiment, RecordingEmitter
exp = get_experiment("saturation")
for extract in ("exact", "fast", "fast"):
    cfg = exp.make_config(model=sys.argv[1], data_file=sys.argv[2],
                          num_samples=6000, batch_size=64, extract=extract, device="cuda")
    em = RecordingEmitter(); t = time.perf_counter(); exp.run(cfg, em)
    s = em.summary_metrics()
    print(extract, f"wall {time.perf_counter()-t:.1f}s", {k: round(v, 4) for k, v in s.items() if "extract" in k or k in ("tokens",)},
          "L29 mean", [r for r in em.tables()["saturation"] if r.get("layer") == 29][:1])
