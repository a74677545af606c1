#!/usr/bin/env python3
"""Cost of a checkpoint: seconds per save and its share of an epoch, against a plain ``torch.save``.

    python benchmarks/bench_checkpoint.py                       # CPU: the lpt char run, a small cascade stage
    python benchmarks/bench_checkpoint.py --device cuda         # GPU: the same, and the 001 8-layer add-on stage
    python benchmarks/bench_checkpoint.py --device cuda --cascade-layers 8 --windows 1000 --out $OUT/ckpt.json

Two workloads, each measured in one process, interleaved:

(a) the ``lpt`` char run of report 004 Exp 4 (d 64, 4 blocks, 275K parameters, the embedded WikiText-2
    excerpt, batch 16 × 64): an epoch (train + validation) and, after it, the checkpoint the run really
    saves (model, AdamW state, early-stopping best weights, RNG states) with :class:`core.checkpoint.Checkpoints`;
(b) a SmolLM2 cascade stage: a random-weight add-on with SmolLM2-135M's shape (``--cascade-layers``; 8 is
    recipe 001's 56.6 M parameters), a stage epoch of the corrected recipe (``--windows`` windows × 128
    positions of synthetic hidden states, batch 32, 90 % of positions in the loss; bf16 autocast on CUDA),
    and a checkpoint of what a stage holds (add-on, AdamW state, best weights).

For each: epoch seconds, checkpoint seconds (median of ``--repeats``, written to ``--dir``, fsynced and
renamed), its share of the epoch, the bytes written, the load time, and the ratios to two baselines
writing the same state to the same folder: a plain ``torch.save`` (no fsync, no rename: neither
durable nor atomic) and ``torch.save`` + fsync (durable, not atomic).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import Checkpoints, capture_rng, folder_bytes  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_saves(state_fn, directory: Path, repeats: int, device: str) -> dict[str, float]:
    """Median seconds of ``Checkpoints.save`` vs ``torch.save`` of the same state, interleaved."""
    store = Checkpoints(directory / "ckpt", keep_last=2)
    ours, baseline, synced, loads = [], [], [], []
    size = 0
    for i in range(repeats):
        state = state_fn()
        _sync(device)
        t0 = time.perf_counter()
        path = store.save(state, epoch=i + 1, score=float(i))
        ours.append(time.perf_counter() - t0)
        size = folder_bytes(path)
        t0 = time.perf_counter()
        torch.save({**state, "rng": capture_rng()}, directory / "plain.pt")
        baseline.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with open(directory / "synced.pt", "wb") as f:
            torch.save({**state, "rng": capture_rng()}, f)
            f.flush()
            os.fsync(f.fileno())
        synced.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.latest()
        loads.append(time.perf_counter() - t0)
    shutil.rmtree(directory / "ckpt", ignore_errors=True)
    (directory / "plain.pt").unlink(missing_ok=True)
    (directory / "synced.pt").unlink(missing_ok=True)
    save_s, plain_s, synced_s = statistics.median(ours), statistics.median(baseline), statistics.median(synced)
    return {"checkpoint_s": save_s, "torch_save_s": plain_s, "ratio_vs_torch_save": save_s / plain_s,
            "torch_save_fsync_s": synced_s, "ratio_vs_torch_save_fsync": save_s / synced_s,
            "load_s": statistics.median(loads), "bytes": size}


def char_run(device: str, epochs: int, repeats: int, directory: Path) -> dict[str, float]:
    from core.data.wikitext import wikitext_char_batches
    from core.models.irt import StackedCharLM
    from core.training.charlm import evaluate, train_epoch_single
    from core.training.loop import EarlyStopping

    torch.manual_seed(42)
    loaders = wikitext_char_batches(source="excerpt")
    model = StackedCharLM(97, 64, 4, 4).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    stopper = EarlyStopping(patience=5, keep_best_state=True)
    times = []
    for epoch in range(1, epochs + 1):
        _sync(device)
        t0 = time.perf_counter()
        train_epoch_single(model, loaders.train, optimizer, weighting="sum", clip=1.0, device=device, amp=False)
        _, val_ppl = evaluate(model, loaders.val, segments=1, device=device)
        stopper.update(epoch, val_ppl, model)
        _sync(device)
        times.append(time.perf_counter() - t0)

    def state():
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "stopper": stopper.state_dict(),
                "val_ppl": 1.0}

    saves = measure_saves(state, directory, repeats, device)
    epoch_s = statistics.median(times[1:] or times)
    return {"workload": "lpt char run (275K params)", "params": sum(p.numel() for p in model.parameters()),
            "epoch_s": epoch_s, **saves, "share_of_epoch_pct": 100 * saves["checkpoint_s"] / epoch_s}


def cascade_stage(device: str, layers: int, windows: int, epochs: int, repeats: int, directory: Path) -> dict[str, float]:
    from core.smollm2.model import make_addon, smollm2_config
    from core.smollm2.train import OptimSpec, train_sequences

    torch.manual_seed(0)
    config = smollm2_config()
    addon = make_addon(config, layers).to(device)
    d, vocab, seq = config.hidden_size, config.vocab_size, 128
    n_val = max(windows // 10, 4)
    h = torch.randn(windows + n_val, seq, d, device=device)
    y = torch.randint(0, vocab, (windows + n_val, seq), device=device)
    m = torch.rand(windows + n_val, seq, device=device) < 0.9
    autocast = torch.bfloat16 if device.startswith("cuda") else None
    result = train_sequences(
        addon, h_train=h[:windows], y_train=y[:windows], m_train=m[:windows], h_val=h[windows:], y_val=y[windows:],
        m_val=m[windows:], optim=OptimSpec(lr=1e-4), epochs=epochs, patience=None, batch_size=32, restore_best=False,
        autocast=autocast)
    epoch_times = [row["seconds"] for row in result.history]
    epoch_s = statistics.median(epoch_times[1:] or epoch_times)  # the first epoch carries graph capture
    params = [p for p in addon.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)  # what a stage's AdamW holds after a step
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    best = {k: v.detach().clone() for k, v in addon.state_dict().items()}

    def state():
        return {"model": addon.state_dict(), "optimizer": optimizer.state_dict(), "best_state": best}

    saves = measure_saves(state, directory, repeats, device)
    return {"workload": f"cascade stage, {layers}-layer SmolLM2 add-on, {windows} windows x {seq}",
            "params": sum(p.numel() for p in addon.parameters()), "epoch_s": epoch_s, "step_mode": result.step_mode,
            **saves, "share_of_epoch_pct": 100 * saves["checkpoint_s"] / epoch_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per workload (the first is warm-up)")
    parser.add_argument("--repeats", type=int, default=5, help="checkpoints timed per workload")
    parser.add_argument("--cascade-layers", type=int, default=2, help="add-on layers (000: 2, 001: 8)")
    parser.add_argument("--windows", type=int, default=None, help="train windows of the stage (default: 1000 on CUDA, 64 on CPU)")
    parser.add_argument("--skip-cascade", action="store_true")
    parser.add_argument("--dir", default=None, help="folder to write checkpoints to (default: a temporary one)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no GPU is visible", file=sys.stderr)
        return 2
    windows = args.windows or (1000 if args.device.startswith("cuda") else 64)
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    directory.mkdir(parents=True, exist_ok=True)
    rows = [char_run(args.device, args.epochs, args.repeats, directory)]
    if not args.skip_cascade:
        rows.append(cascade_stage(args.device, args.cascade_layers, windows, args.epochs, args.repeats, directory))
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"checkpoint cost on {device_name}, folder {directory}")
    print(f"{'workload':58} {'params':>11} {'epoch s':>9} {'ckpt s':>8} {'share':>7} {'MiB':>8} {'load s':>7} "
          f"{'/torch.save':>11} {'/+fsync':>8}")
    for r in rows:
        print(f"{r['workload'][:58]:58} {r['params']:>11,} {r['epoch_s']:>9.3f} {r['checkpoint_s']:>8.3f} "
              f"{r['share_of_epoch_pct']:>6.1f}% {r['bytes'] / 2**20:>8.1f} {r['load_s']:>7.3f} "
              f"{r['ratio_vs_torch_save']:>10.2f}x {r['ratio_vs_torch_save_fsync']:>7.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device_name, "results": rows}, indent=2))
    if not args.dir:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
