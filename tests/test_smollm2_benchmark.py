"""``benchmarks/gpu_smollm2.py --tiny`` end to end on CPU, in a subprocess, so the GPU call has no typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_tiny_runs_every_job(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_smollm2.py"), "--tiny", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    jobs = [(r["report"], r["variant"]) for r in data["results"]]
    assert jobs == [(rep, v) for v in ("published", "corrected") for rep in ("003", "001", "000", "002")]
    assert all(r["error"] is None for r in data["results"])
    m = {(r["report"], r["variant"]): r["measured"] for r in data["results"]}
    assert m[("001", "published")]["epoch_seconds"] and m[("001", "published")]["train_tokens_per_s"] > 0
    assert m[("003", "published")]["extract_tokens_per_s"] > 0
    assert "| metric | measured | published |" in proc.stdout and "```json" in proc.stdout
    # the benchmark must not need the registry/TUI stack
    code = ("import sys, runpy; sys.argv=['x','--help']; "
            "import importlib.util as u; "
            f"spec=u.spec_from_file_location('b', r'{ROOT / 'benchmarks' / 'gpu_smollm2.py'}'); "
            "mod=u.module_from_spec(spec); spec.loader.exec_module(mod); "
            "print([n for n in ('sqlmodel','textual','typer','core.registry') if n in sys.modules])")
    chk = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert chk.stdout.strip().endswith("[]"), chk.stdout + chk.stderr


def test_speed_benchmark_tiny_runs_on_cpu(tmp_path):
    """``benchmarks/bench_smollm2_speed.py --tiny``: every section runs on CPU and prints its table."""
    out = tmp_path / "speed.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_smollm2_speed.py"), "--tiny", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    a = data["extraction"]
    assert a["before_fp32_b16"] > 0 and a["after_fp32"] > 0
    assert a["max_abs_diff_fp32"]["ce"] == 0.0 and a["max_abs_diff_fp32"]["argmax_agree_pct"] == 100.0
    assert data["published"]["runs"][0]["epochs"] and data["corrected"]["runs"][0]["epochs"]
    assert "| measurement | before | after | ratio | target |" in proc.stdout
