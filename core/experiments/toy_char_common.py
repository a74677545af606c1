"""Shared config and helpers of report 004's Exp 5, 8 and 9 (plain character LMs, spec 1.2–1.4).

Not an experiment itself (no ``EXPERIMENT``). The config resolves two upstream quirks per variant:

- data (B11): ``published`` trains on the toy-fox text (pipeline B, V = 30) as the upstream scripts
  silently did; ``corrected`` trains on real WikiText-2 characters (pipeline A, V = 97, via
  :mod:`core.data.wikitext`).
- weights (B12): ``published`` analyses / continues from the *last* weights (≥ patience epochs past the
  best); ``corrected`` restores the best-epoch weights first.

Both can be overridden independently (``--data``, ``--weights``). Only pydantic and the experiment API are
imported at module level; torch is imported inside the helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from core.data.char_data import CharData, char_batches
from core.experiments.base import Emitter, ExperimentConfig
from core.experiments.fields import CharModelFields, EarlyStoppingFields, OptimizerFields, check_toy_batches

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from core.training.loop import FitResult

QUIRK_TOY_TEXT = "B11"
QUIRK_LAST_WEIGHTS = "B12"


class CharVariantConfig(ExperimentConfig):
    """What ``--variant`` decides for every 004 char experiment: the text (B11) and the weights (B12)."""

    data: Literal["auto", "toy-fox", "wikitext2"] = Field(
        "auto",
        description="training text: toy-fox (pipeline B, quirk B11), wikitext2 (pipeline A); auto: toy-fox "
        "for the published variant, wikitext2 for corrected",
    )
    weights: Literal["auto", "last", "best"] = Field(
        "auto",
        description="weights used after training (analyses, next phase): last (quirk B12) or best epoch; "
        "auto: last for published, best for corrected",
    )
    wikitext_source: Literal["auto", "hub", "dir", "excerpt"] = Field(
        "auto", description="where wikitext2 text comes from (see core.data.wikitext): auto, hub, dir, excerpt"
    )
    data_dir: str | None = Field(
        None, min_length=1, max_length=4096, description="directory with WikiText-2 train.txt / valid.txt"
    )

    def resolved_data(self) -> str:
        if self.data != "auto":
            return self.data
        return "toy-fox" if self.variant == "published" else "wikitext2"

    def resolved_weights(self) -> str:
        if self.weights != "auto":
            return self.weights
        return "last" if self.variant == "published" else "best"

    @model_validator(mode="after")
    def _data_fills_a_batch(self) -> CharVariantConfig:
        if self.wikitext_source == "dir" and not self.data_dir:
            raise ValueError("--wikitext-source dir needs --data-dir DIR (a directory with train.txt and valid.txt)")
        if self.resolved_data() == "toy-fox" and hasattr(self, "seq_len"):
            check_toy_batches(self.seq_len, self.batch_size)
        return self

    def quirks(self) -> list[str]:
        active = []
        if self.resolved_data() == "toy-fox":
            active.append(QUIRK_TOY_TEXT)
        if self.resolved_weights() == "last":
            active.append(QUIRK_LAST_WEIGHTS)
        return active


class ToyCharConfig(CharModelFields, OptimizerFields, EarlyStoppingFields, CharVariantConfig):
    """Data, model and training settings; defaults are report 004's (Exp 5, 8, 9)."""


def setup(config: ToyCharConfig) -> str:
    """Thread count and device: returns the resolved device string."""
    import torch

    from core.experiments.base import resolve_device

    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    return resolve_device(config.device)


def load_data(config: ToyCharConfig) -> CharData:
    """Pipeline B (toy-fox) or pipeline A (WikiText-2 characters) at the config's seq_len and batch size."""
    return char_batches(config.resolved_data(), seq_len=config.seq_len, batch_size=config.batch_size,  # type: ignore[arg-type]
                        wikitext_source=config.wikitext_source, data_dir=config.data_dir)


def train_phase(
    model: nn.Module, data: CharData, config: ToyCharConfig, emit: Emitter, device: str, *, stage: int = 0
) -> FitResult:
    """Train with early stopping, emitting every epoch; leaves the last or best weights per the config."""
    from core.training.loop import fit

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        emit.epoch(epoch, metrics, stage=stage, total=config.max_epochs)

    return fit(
        model,
        data.train,
        data.val,
        max_epochs=config.max_epochs,
        patience=config.patience,
        lr=config.lr,
        weight_decay=config.weight_decay,
        clip=config.clip or None,
        device=device,
        restore_best=config.resolved_weights() == "best",
        on_epoch=on_epoch,
    )


def weights_note(result: FitResult, config: ToyCharConfig) -> str:
    if config.resolved_weights() == "best":
        return f"best weights (epoch {result.best_epoch}) restored"
    return f"last weights (epoch {result.epochs_run}; best was epoch {result.best_epoch}, quirk B12)"


def train_analysis_model(config: ToyCharConfig, emit: Emitter, n_layers: int, **info: Any):
    """Exp 8/9 recipe: seed, an ``n_layers``-block model (init I-B), standard training (last-block loss)
    with early stopping; emits info and the per-epoch rows. Returns (model, data, fit result, device);
    the model holds the weights the analysis must use (last or best, per the config)."""
    from core.experiments.base import seed_everything
    from core.models.char_lm import CharLM, count_params

    device = setup(config)
    data = load_data(config)
    seed_everything(config.seed)
    model = CharLM(data.vocab_size, config.d_model, config.n_heads, n_layers, init="I-B").to(device)
    params = count_params(model)
    emit.info(
        params=params,
        trainable_params=count_params(model, trainable_only=True),
        data_source=data.source,
        quirks=config.quirks(),
        weights=config.resolved_weights(),
        vocab_size=data.vocab_size,
        train_batches=data.n_train_batches,
        val_batches=data.n_val_batches,
        **info,
    )
    result = train_phase(model, data, config, emit, device)
    emit.log(f"analysis on the {weights_note(result, config)}")
    return model, data, result, device


def collect_val_outputs(model: nn.Module, batches: Any, device: str) -> dict[str, Any]:
    """One no-grad pass over the val batches (in order): per-layer per-token CE, residual norms
    ‖h_l − h_{l−1}‖₂, layer-1 confidence/entropy and per-layer correctness, all flattened over tokens
    as float64 numpy arrays of shape (n_layers, N) (or (N,))."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    ce: list[list[torch.Tensor]] = []
    norms: list[list[torch.Tensor]] = []
    correct: list[list[torch.Tensor]] = []
    conf1: list[torch.Tensor] = []
    ent1: list[torch.Tensor] = []
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            states = model.hidden_states(x)
            target = y.reshape(-1)
            layer_ce, layer_norm, layer_ok = [], [], []
            for index in range(1, len(states)):
                logits = model.head(states[index]).reshape(-1, model.vocab_size)
                layer_ce.append(F.cross_entropy(logits, target, reduction="none"))
                layer_norm.append((states[index] - states[index - 1]).norm(dim=-1).reshape(-1))
                layer_ok.append(logits.argmax(dim=-1) == target)
                if index == 1:
                    probs = F.softmax(logits, dim=-1)
                    conf1.append(probs.max(dim=-1).values)
                    ent1.append(-(probs * torch.log(probs + 1e-10)).sum(dim=-1))
            ce.append(layer_ce)
            norms.append(layer_norm)
            correct.append(layer_ok)

    def stack(per_batch: list[list[torch.Tensor]]) -> np.ndarray:
        n_layers = len(per_batch[0])
        return np.stack(
            [torch.cat([b[layer] for b in per_batch]).double().cpu().numpy() for layer in range(n_layers)]
        )

    return {
        "ce": stack(ce),
        "norm": stack(norms),
        "correct": stack(correct).astype(bool),
        "conf1": torch.cat(conf1).double().cpu().numpy(),
        "entropy1": torch.cat(ent1).double().cpu().numpy(),
    }


def analysis_summary(config: ToyCharConfig, model: nn.Module, result: FitResult, tokens: int) -> dict[str, float]:
    """The run-level summary every post-training analysis shares: best PPL, which weights, sizes."""
    analysed_best = config.resolved_weights() == "best"
    return {
        "best_val_ppl": result.best_val_ppl,
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
        "analysis_epoch": float(result.best_epoch if analysed_best else result.epochs_run),
        "params": float(sum(p.numel() for p in model.parameters())),
        "trainable_params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "val_tokens": float(tokens),
    }
