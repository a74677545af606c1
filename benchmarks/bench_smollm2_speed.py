#!/usr/bin/env python3
"""Speed of the SmolLM2 catalog's hot paths, before vs after, on a random SmolLM2-shaped model.

    python benchmarks/bench_smollm2_speed.py [--out $OUT/bench_smollm2_speed.json] [--only a,b,c] [--profile]
        [--eager-steps 600] [--published-runs eager,graph,compiled,compiled-bf16]
    python benchmarks/bench_smollm2_speed.py --tiny          # CPU smoke test (a test runs it), seconds

On an H100 the whole default run takes ~2 min with ``--eager-steps 600`` (the eager published loop,
~14 ms a step, then runs 600 steps and its epoch time is scaled up), ~4 min without. Results of
2026-11-22: ``benchmarks/results/2026-11-22_h100_smollm2_speed.log``.

Builds a randomly initialised ``LlamaForCausalLM`` with SmolLM2-135M's exact config (spec 3.1; speed does
not depend on the weights, nothing is downloaded) and an 8-layer add-on, then measures:

(a) hidden-state extraction (all 31 hidden states, the cos rule, per-layer cos, CE, argmax, final
    states kept): the previous ``run_frozen`` (copied below verbatim) vs the current one in fp32, TF32,
    bf16 autocast and fp16 weights; prints the ratio and the largest differences old vs new (fp32);
(b) a published 001 stage epoch (3,600 steps x 32 length-1 tokens, 8-layer add-on, fp32, AdamW 1e-4):
    the eager loop vs CUDA-graphed steps vs CUDA-graphed steps with the compiled length-1 forward
    (optionally also with TF32, for information only: not the published numerics);
(c) a corrected stage epoch (1,000 windows x 128 tokens, batch 32, 90 % of positions in the loss,
    bf16 autocast): eager vs CUDA-graphed;
(d) model FLOPs utilisation of stage training: 6 * N * tokens/s over the GPU's dense bf16 peak
    (N = the add-on's 56.6 M parameters, tokens = positions processed).
Epoch seconds are the catalog's (training + validation); "train s" is training alone. The first epoch
of a graphed/compiled run includes its warm-up, capture and compilation; later epochs are steady.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.smollm2 import ops  # noqa: E402
from core.smollm2.model import count_params, make_addon, smollm2_config  # noqa: E402
from core.smollm2.train import OptimSpec, train_sequences, train_tokens  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


# --- the previous extraction path, verbatim (the "before" of (a)) ---------------------------------

@torch.inference_mode()
def run_frozen_before(lm, *, input_ids=None, inputs_embeds=None, labels, rule, batch_size=16, cos_dtype=None,
                      keep_hidden=False, hidden_dtype=torch.float32, layer_cos=False, layer_cos_dtype=None,
                      autocast=None, store_device=None) -> ops.BasePass:
    device = next(lm.parameters()).device
    store = torch.device(store_device) if store_device is not None else device
    src = input_ids if input_ids is not None else inputs_embeds
    n = src.shape[0]
    cos_l, ce_l, ok_l, h_l, lc_l = [], [], [], [], []
    ops._sync(device)
    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        kw: dict[str, Any] = {}
        if input_ids is not None:
            kw["input_ids"] = input_ids[s:s + batch_size].to(device, non_blocking=True)
        else:
            kw["inputs_embeds"] = inputs_embeds[s:s + batch_size].to(device, dtype=lm.dtype, non_blocking=True)
        y = labels[s:s + batch_size].to(device, non_blocking=True)
        ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else ops.null_ctx()
        with ctx:
            out = lm.model(output_hidden_states=True, use_cache=False, **kw)
            hs = out.hidden_states
            logits = lm.lm_head(hs[-1])
        lf = logits.float()
        ce_l.append(F.cross_entropy(lf.transpose(1, 2), y, reduction="none").to(store))
        ok_l.append((lf.argmax(-1) == y).to(store))
        cos_l.append(ops.cos_rule(hs, rule, dtype=cos_dtype).to(store))
        if keep_hidden:
            h_l.append(hs[-1].to(store, dtype=hidden_dtype))
        if layer_cos:
            lc_l.append(torch.stack([
                ops.cos_sim(hs[i - 1], hs[i], dtype=layer_cos_dtype).float() for i in range(1, len(hs))
            ]).to(store))
    ops._sync(device)
    secs = time.perf_counter() - t0
    return ops.BasePass(
        cos=torch.cat(cos_l), ce=torch.cat(ce_l), correct=torch.cat(ok_l),
        h_out=torch.cat(h_l) if keep_hidden else None,
        layer_cos=torch.cat(lc_l, dim=1) if layer_cos else None, seconds=secs, tokens=int(labels.numel()),
    )


# --- set-up ------------------------------------------------------------------------------------------

def base_config(tiny: bool) -> Any:
    cfg = smollm2_config()
    if tiny:
        cfg.update(dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16))
    cfg._attn_implementation = "sdpa"
    return cfg


def build_base(cfg: Any, device: torch.device) -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        lm = LlamaForCausalLM(cfg)
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    return lm


def build_addon(cfg: Any, layers: int, device: torch.device, seed: int = 1) -> Any:
    torch.manual_seed(seed)
    return make_addon(cfg, layers).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device: torch.device, override: float | None) -> float:
    if override:
        return override
    if device.type != "cuda":
        return float("nan")
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), float("nan"))


# --- (a) extraction ----------------------------------------------------------------------------------

def bench_extraction(args: argparse.Namespace, cfg: Any, device: torch.device) -> dict[str, Any]:
    lm = build_base(cfg, device)
    T = args.seq_len
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.extract_windows, T + 1), generator=g)
    x, y = ids[:, :-1], ids[:, 1:]
    kw = dict(rule="last2avg", keep_hidden=True, layer_cos=True)
    out: dict[str, Any] = {"tokens_after": int(y.numel())}

    nb = min(args.before_windows, x.shape[0])
    run_frozen_before(lm, input_ids=x[:16], labels=y[:16], batch_size=16, **kw)  # warm-up
    old = run_frozen_before(lm, input_ids=x[:nb], labels=y[:nb], batch_size=16, **kw)
    out["before_fp32_b16"] = old.tokens_per_s
    print(f"  before (fp32, 16 windows a forward): {old.tokens_per_s:,.0f} tokens/s over {old.tokens:,} tokens", flush=True)

    new = ops.run_frozen(lm, input_ids=x[:nb], labels=y[:nb], batch_size=16, **kw)
    out["max_abs_diff_fp32"] = {
        "cos": float((new.cos.float() - old.cos.float()).abs().max()),
        "ce": float((new.ce - old.ce).abs().max()),
        "layer_cos": float((new.layer_cos - old.layer_cos).abs().max()),
        "h_out": float((new.h_out - old.h_out).abs().max()),
        "argmax_agree_pct": 100.0 * float((new.correct == old.correct).double().mean()),
    }
    print(f"  old vs new fp32: {out['max_abs_diff_fp32']}", flush=True)

    lm16 = copy.deepcopy(lm).half() if device.type == "cuda" else None
    bf16 = {"autocast": torch.bfloat16}
    variants: list[tuple[str, Any, dict[str, Any]]] = [("after_fp32", lm, {})]
    if device.type == "cuda":
        variants += [("after_tf32", lm, {"tf32": True}), ("after_bf16_autocast", lm, bf16),
                     ("after_fp16_weights", lm16, {}), ("after_bf16_autocast_compiled", lm, {**bf16, "compiled": True})]
    else:
        variants += [("after_bf16_autocast", lm, bf16)]
    for name, model, opt in variants:
        opt = dict(opt)
        tf32 = opt.pop("tf32", False)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            rows = ops.forward_rows(16, T, device, bytes_per_token=ops.frozen_bytes_per_token(cfg))
            t = time.perf_counter()
            warm = ops.run_frozen(model, input_ids=x[:rows], labels=y[:rows], batch_size=16, **kw, **opt)  # same shape
            warm_s = time.perf_counter() - t
            r = ops.run_frozen(model, input_ids=x, labels=y, batch_size=16, **kw, **opt)
            out[name] = r.tokens_per_s
            print(f"  {name}: {r.tokens_per_s:,.0f} tokens/s over {r.tokens:,} tokens "
                  f"({rows} windows a forward; warm-up {warm_s:.1f} s)", flush=True)
            if opt.get("compiled"):
                ref = ops.run_frozen(model, input_ids=x[:64], labels=y[:64], batch_size=16, **kw, **bf16)
                out[name + "_max_abs_diff"] = {"ce": float((warm.ce[:64] - ref.ce).abs().max()),
                                               "layer_cos": float((warm.layer_cos[:, :64] - ref.layer_cos).abs().max())}
                print(f"  compiled vs eager (bf16): {out[name + '_max_abs_diff']}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report, go on
            import traceback

            traceback.print_exc()
            out[name + "_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    for ft in args.sweep_forward_tokens:
        r = ops.run_frozen(lm, input_ids=x, labels=y, batch_size=16, autocast=torch.bfloat16, forward_tokens=ft, **kw)
        out[f"after_bf16_autocast_{ft}tok"] = r.tokens_per_s
        print(f"  bf16 autocast, {ft} tokens a forward: {r.tokens_per_s:,.0f} tokens/s", flush=True)
    out["ratio_bf16_vs_before"] = out.get("after_bf16_autocast", math.nan) / out["before_fp32_b16"]
    out["ratio_fp32_vs_before"] = out["after_fp32"] / out["before_fp32_b16"]
    del lm, lm16
    return out


# --- (b) published 001 stage epoch -----------------------------------------------------------------

def _summarise(name: str, res: Any, tokens_per_epoch: int, processed_per_epoch: int, n_params: int,
               peak: float, scale: float = 1.0) -> dict[str, Any]:
    """Per-epoch seconds (x ``scale`` when a part of the epoch was run), train-only seconds, MFU of the last epoch.

    ``tokens_per_epoch``: loss tokens (the rate ``train_tokens_per_s`` counts); ``processed_per_epoch``:
    positions the model processes (for the FLOPs)."""
    epochs = []
    for h in res.history:
        train_s = tokens_per_epoch / h["train_tokens_per_s"] if h["train_tokens_per_s"] else math.nan
        epochs.append({"seconds": h["seconds"] * scale, "train_seconds": train_s * scale,
                       "train_loss": h["train_loss"], "val_loss": h["val_loss"]})
    last = epochs[-1]
    mfu = 6.0 * n_params * processed_per_epoch * scale / last["train_seconds"] / (peak * 1e12) * 100.0
    row = {"name": name, "mode": res.step_mode, "epochs": epochs, "steady_epoch_seconds": last["seconds"],
           "steady_train_seconds": last["train_seconds"], "first_epoch_seconds": epochs[0]["seconds"], "mfu_pct": mfu}
    print(f"  {name} [{res.step_mode}]: epoch s " + ", ".join(f"{e['seconds']:.2f}" for e in epochs)
          + "; train loss " + ", ".join(f"{e['train_loss']:.5f}" for e in epochs)
          + "; val loss " + ", ".join(f"{e['val_loss']:.5f}" for e in epochs) + f"; MFU {mfu:.2f} %", flush=True)
    return row


def _published_run(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """``eager`` | ``graph`` | ``compiled`` (per-layer compiled forward, as ``cascade --compile``), then
    optionally ``-bf16`` (autocast, ``--amp bf16``) or ``-tf32`` (TF32 matmuls): not the published fp32 numerics."""
    base, *mods = spec.split("-")
    if base not in ("eager", "graph", "compiled") or any(m not in ("bf16", "tf32") for m in mods):
        raise SystemExit(f"unknown --published-runs entry {spec!r}")
    label = {"eager": "eager (before)", "graph": "cuda graph", "compiled": "cuda graph + compiled"}[base]
    label += "".join(f", {m}" for m in mods)
    if mods:
        label += " (not the published fp32 numerics)"
    return {"label": label, "graph": base != "eager", "compiled": base == "compiled",
            "autocast": torch.bfloat16 if "bf16" in mods else None, "tf32": "tf32" in mods,
            "epochs": args.eager_epochs if base == "eager" else args.epochs}


def bench_published(args: argparse.Namespace, cfg: Any, device: torch.device, peak: float) -> dict[str, Any]:
    D, V, B = cfg.hidden_size, cfg.vocab_size, 32
    n = args.published_steps * B
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(n, D, generator=g).to(device)
    y_t = torch.randint(0, V, (n,), generator=g).to(device)
    x_v = torch.randn(n // 10, D, generator=g).to(device)
    y_v = torch.randint(0, V, (n // 10,), generator=g).to(device)
    optim = OptimSpec(lr=1e-4, weight_decay=0.01, clip=None, schedule="constant")
    eager_steps = min(args.eager_steps or args.published_steps, args.published_steps)
    runs = [_published_run(r.strip(), args) for r in args.published_runs.split(",") if r.strip()]
    runs = [r for r in runs if device.type == "cuda" or not r["graph"]]
    out: dict[str, Any] = {"steps": args.published_steps, "tokens": n, "runs": []}
    for run in runs:
        name, graph, epochs = run["label"], run["graph"], run["epochs"]
        torch.backends.cuda.matmul.allow_tf32 = run["tf32"]
        torch._dynamo.reset()  # each run compiles afresh (autocast and TF32 are guarded global state)
        ops._COMPILED.clear()
        addon = build_addon(cfg, args.addon_layers, device)
        n_params = count_params(addon)

        def fit(n_steps: int, n_epochs: int, _addon: Any = addon, _run: dict[str, Any] = run) -> Any:
            k = n_steps * B
            return train_tokens(
                _addon, ops.length1_forward(_addon), step_forward=ops.length1_forward(_addon, compiled=_run["compiled"]),
                x_train=x_t[:k], y_train=y_t[:k], x_val=x_v, y_val=y_v, optim=optim,
                epochs=n_epochs, patience=None, batch_size=B, restore_best=False, seed=43, cuda_graph=_run["graph"],
                autocast=_run["autocast"])
        try:
            steps = eager_steps if not graph else args.published_steps
            res = fit(steps, epochs)
            if steps != args.published_steps:  # the slow eager loop on a part of the epoch, scaled up
                name = f"{name}, {steps} steps x {args.published_steps / steps:g}"
            out["runs"].append(_summarise(name, res, steps * B, steps * B, n_params, peak,
                                          scale=args.published_steps / steps))
            if args.profile and device.type == "cuda" and graph:
                profile_steps(f"published 001, {name}", lambda: fit(96, 1), 96)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next variant
            import traceback

            traceback.print_exc()
            out["runs"].append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
        del addon
    return out


def profile_steps(title: str, run: Any, steps: int) -> None:
    """Top CUDA kernels of ``run()`` (``steps`` training steps, warm-up included): where a step's GPU time goes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
    ev = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    ev.sort(key=lambda e: -getattr(e, "self_device_time_total", 0))
    tot = sum(getattr(e, "self_device_time_total", 0) for e in ev)
    cnt = sum(e.count for e in ev)
    print(f"\n  profile: {title}: {cnt / steps:.0f} GPU ops a step, {tot / steps:.0f} us GPU time a step "
          f"({steps} steps incl. warm-up and validation)")
    for e in ev[:16]:
        print(f"    {getattr(e, 'self_device_time_total', 0) / steps:8.1f} us/step {e.count / steps:6.1f}x  {e.key[:100]}")
    print(flush=True)


# --- (c) corrected stage epoch -----------------------------------------------------------------------

def bench_corrected(args: argparse.Namespace, cfg: Any, device: torch.device, peak: float) -> dict[str, Any]:
    D, V, T = cfg.hidden_size, cfg.vocab_size, args.seq_len
    W = args.corrected_windows
    g = torch.Generator().manual_seed(2)
    h_t = torch.randn(W, T, D, generator=g).to(device)
    y_t = torch.randint(0, V, (W, T), generator=g).to(device)
    m_t = (torch.rand(W, T, generator=g) < 0.9).to(device)
    wv = max(1, W // 10)
    h_v = torch.randn(wv, T, D, generator=g).to(device)
    y_v = torch.randint(0, V, (wv, T), generator=g).to(device)
    m_v = (torch.rand(wv, T, generator=g) < 0.9).to(device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    optim = OptimSpec(lr=1e-4, weight_decay=0.01, clip=None, schedule="constant")
    runs = [("eager (before)", False, args.epochs)]
    if device.type == "cuda":
        runs.append(("cuda graph", True, args.epochs + 1))
    out: dict[str, Any] = {"windows": W, "tokens": W * T, "selected": int(m_t.sum()), "runs": []}
    for name, graph, epochs in runs:
        addon = build_addon(cfg, args.addon_layers, device)

        def fit(w: int, n_epochs: int, _addon: Any = addon, _graph: bool = graph) -> Any:
            return train_sequences(
                _addon, h_train=h_t[:w], y_train=y_t[:w], m_train=m_t[:w], h_val=h_v, y_val=y_v, m_val=m_v,
                optim=optim, epochs=n_epochs, patience=None, batch_size=32, restore_best=True, seed=43, autocast=amp,
                cuda_graph=_graph)
        try:
            res = fit(W, epochs)
            out["runs"].append(_summarise(name, res, int(m_t.sum()), W * T, count_params(addon), peak))
            if args.profile and device.type == "cuda" and graph:
                profile_steps(f"corrected, {name}", lambda: fit(32 * 8, 1), 8)
        except Exception as exc:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            out["runs"].append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        del addon
    return out


# --- table ----------------------------------------------------------------------------------------------

def _f(v: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def table(res: dict[str, Any]) -> str:
    lines = ["| measurement | before | after | ratio | target |", "|---|---|---|---|---|"]
    a = res.get("extraction")
    if a:
        b = a["before_fp32_b16"]
        for key, label in (("after_fp32", "fp32"), ("after_tf32", "TF32"), ("after_bf16_autocast", "bf16 autocast"),
                           ("after_fp16_weights", "fp16 weights"),
                           ("after_bf16_autocast_compiled", "bf16 autocast + compiled layers")):
            if key in a:
                lines.append(f"| (a) extraction tokens/s, {label} | {_f(b)} (fp32, 16 windows) | {_f(a[key])} | "
                             f"{a[key] / b:.1f}x | > 500,000 |")
    for sec, label, target in (("published", "(b) published 001 epoch s", "< 5 s"),
                               ("corrected", "(c) corrected epoch s (bf16)", "< 1 s")):
        r = res.get(sec)
        if not r:
            continue
        runs = [x for x in r["runs"] if "error" not in x]
        if not runs:
            continue
        before = runs[0]
        for run in runs:
            ratio = before["steady_epoch_seconds"] / run["steady_epoch_seconds"]
            lines.append(f"| {label}: {run['name']} (train s; first epoch) | {before['steady_epoch_seconds']:.2f} | "
                         f"{run['steady_epoch_seconds']:.2f} ({run['steady_train_seconds']:.2f}; "
                         f"{run['first_epoch_seconds']:.1f}) | {ratio:.1f}x | {target} |")
        for run in runs:
            lines.append(f"| (d) MFU {sec}, {run['name']} | {before['mfu_pct']:.2f} % | {run['mfu_pct']:.2f} % | "
                         f"{run['mfu_pct'] / before['mfu_pct']:.1f}x | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (smoke test)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", default="a,b,c", help="sections: a (extraction), b (published 001), c (corrected)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--extract-windows", type=int, default=2048, help="windows for the current extraction path")
    ap.add_argument("--before-windows", type=int, default=256, help="windows for the previous (slow) path")
    ap.add_argument("--sweep-forward-tokens", default="", help="comma list of tokens per forward to try (bf16)")
    ap.add_argument("--published-steps", type=int, default=3600)
    ap.add_argument("--published-runs", default="eager,graph,compiled",
                    help="published 001 variants: eager, graph, compiled, each with an optional -bf16 or -tf32 "
                         "(e.g. compiled-bf16)")
    ap.add_argument("--corrected-windows", type=int, default=1000)
    ap.add_argument("--addon-layers", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of each after-run (the first includes warm-up)")
    ap.add_argument("--eager-epochs", type=int, default=1, help="epochs of the eager published run (slow)")
    ap.add_argument("--eager-steps", type=int, default=0,
                    help="steps of the eager published run, its epoch time scaled up (default: all)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak (default: from the GPU name)")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of each published step")
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "bench_smollm2_speed.json") if os.environ.get("OUT") else "")
    args = ap.parse_args(argv)
    args.sweep_forward_tokens = [int(v) for v in args.sweep_forward_tokens.split(",") if v.strip()]

    if args.device == "auto":
        args.device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    device = torch.device(args.device)
    if args.tiny:
        torch.set_num_threads(1)
        args.seq_len = min(args.seq_len, 32)
        args.extract_windows, args.before_windows = min(args.extract_windows, 32), min(args.before_windows, 16)
        args.published_steps, args.corrected_windows = min(args.published_steps, 20), min(args.corrected_windows, 40)
        args.addon_layers = min(args.addon_layers, 2)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the catalog's fp32 arithmetic (published numerics)
        import torch._dynamo as dynamo

        dynamo.config.cache_size_limit = 4  # a recompiling region falls back to eager fast, not after minutes
    cfg = base_config(args.tiny)
    peak = peak_tflops(device, args.peak_tflops or None)
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "peak_bf16_tflops": peak, "tiny": args.tiny}
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    print(f"# SmolLM2 speed benchmark\n\n{env}\n", flush=True)
    res: dict[str, Any] = {"env": env, "args": {k: v for k, v in vars(args).items()}}
    only = {s.strip() for s in args.only.split(",")}
    t = time.perf_counter()
    if "a" in only:
        print("(a) extraction", flush=True)
        res["extraction"] = bench_extraction(args, cfg, device)
    if "b" in only:
        print(f"(b) published 001 stage epoch: {args.published_steps} steps x 32 length-1 tokens, "
              f"{args.addon_layers}-layer add-on, fp32", flush=True)
        res["published"] = bench_published(args, cfg, device, peak)
    if "c" in only:
        print(f"(c) corrected stage epoch: {args.corrected_windows} windows x {args.seq_len}, batch 32, "
              f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}", flush=True)
        res["corrected"] = bench_corrected(args, cfg, device, peak)
    res["wall_seconds"] = time.perf_counter() - t
    print("\n" + table(res) + "\n", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
        print(f"JSON written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
