"""Resolving and loading the SmolLM2 base model; building add-on LLMs (spec 3.1).

``--model`` accepts a hub id, a local directory (``save_pretrained`` layout) or a ``.gguf`` file.
The default hub id resolves, in order, to: the local Hugging Face cache, the hub itself when it
answers, else the GGUF file ``SmolLM2-135M-Instruct.Q4_1.gguf`` under ``$HRM_MODEL_DIR`` or hrm's cache
(``hrm models fetch smollm2`` puts it there, see :mod:`core.models_fetch`), recorded as such in the run's
``model_source``. Any id that cannot be
resolved raises :class:`ModelUnavailable` at once (no 25-second retry loop when offline).
"""

from __future__ import annotations

import copy
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SUBDIR = "smollm2-135m-instruct"

# Spec 3.1 parameter arithmetic.
EXPECTED_BASE_PARAMS = 134_515_008
EXPECTED_ADDON_PARAMS = {2: 35_392_320, 8: 56_632_896}
SMOLLM2_CONFIG: dict[str, Any] = dict(
    vocab_size=49_152, hidden_size=576, intermediate_size=1_536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8_192,
    rms_norm_eps=1e-5, rope_theta=100_000.0, hidden_act="silu", tie_word_embeddings=True,
)


class ModelUnavailable(RuntimeError):
    """The ``--model`` value names nothing loadable here (no file, no cache entry, hub unreachable)."""


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights come from: ``kind`` is ``gguf``, ``dir``, ``hub-cache`` or ``hub``."""

    kind: str
    path: str  # directory or hub id
    gguf_file: str | None
    source: str  # human-readable, recorded as model_source

    def key(self) -> tuple[str, str, str | None]:
        return (self.kind, self.path, self.gguf_file)


def default_gguf_candidates() -> list[Path]:
    """Where the default model's GGUF file may live: ``$HRM_MODEL_DIR`` first, then where
    ``hrm models fetch smollm2`` puts it (``$HRM_CACHE``/``$XDG_CACHE_HOME``/``~/.cache``, see core.models_fetch)."""
    from core.models_fetch import candidates

    return candidates("smollm2")


def hub_reachable(timeout: float = 2.0) -> bool:
    """A quick TCP probe of the hub endpoint; False when offline mode is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    port = 443
    if ":" in host:
        host, p = host.rsplit(":", 1)
        port = int(p)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hf_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, "config.json")
        return isinstance(hit, str)
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return False


def resolve_model(model: str) -> ModelSpec:
    """Map a ``--model`` value to a loadable :class:`ModelSpec` or raise :class:`ModelUnavailable`."""
    p = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        if not p.is_file():
            raise ModelUnavailable(f"GGUF file not found: {p}")
        return ModelSpec("gguf", str(p.parent), p.name, f"gguf:{p} (dequantized by transformers)")
    if p.is_dir():
        if (p / "config.json").is_file():
            return ModelSpec("dir", str(p), None, f"dir:{p}")
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSpec("gguf", str(p), ggufs[0].name, f"gguf:{ggufs[0]} (dequantized by transformers)")
        raise ModelUnavailable(f"directory {p} holds no config.json and not exactly one .gguf file")
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
        raise ModelUnavailable(f"no such model file or directory: {model}")
    if _in_hf_cache(model):
        return ModelSpec("hub-cache", model, None, f"hub-cache:{model}")
    if hub_reachable():
        return ModelSpec("hub", model, None, f"hub:{model}")
    if model == DEFAULT_MODEL_ID:  # the hub is out of reach: the GGUF from `hrm models fetch smollm2`, if there
        cand = next((c for c in default_gguf_candidates() if c.is_file()), None)
        if cand is not None:
            return ModelSpec(
                "gguf", str(cand.parent), cand.name,
                f"gguf:{cand} (the hub is out of reach: local stand-in for {model}; "
                "Q4_1 weights dequantized to float)",
            )
    hint = " (run `hrm models fetch smollm2` once, or pass --model PATH.gguf)" if model == DEFAULT_MODEL_ID else ""
    raise ModelUnavailable(f"model {model!r} is not cached locally and the hub is not reachable{hint}")


_CPU_CACHE: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def load_base(
    model: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32, cache: bool = True
) -> tuple[Any, Any, ModelSpec]:
    """(model in eval mode with requires_grad False, tokenizer, spec). Loads once per process.

    The fp32 CPU copy is cached; each call returns a deep copy moved to ``device``/``dtype``.
    """
    spec = resolve_model(model)
    key = spec.key()
    if not cache or key not in _CPU_CACHE:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        kwargs: dict[str, Any] = {}
        if spec.gguf_file:
            kwargs["gguf_file"] = spec.gguf_file
        if spec.kind == "hub-cache":
            kwargs["local_files_only"] = True
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tok = AutoTokenizer.from_pretrained(spec.path, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32, **kwargs)
        except OSError as exc:
            raise ModelUnavailable(f"could not load {model!r}: {str(exc).splitlines()[0]}") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        lm.eval()
        for prm in lm.parameters():
            prm.requires_grad_(False)
        if cache:
            _CPU_CACHE[key] = (lm, tok)
    else:
        lm, tok = _CPU_CACHE[key]
    out = copy.deepcopy(lm) if cache else lm
    out = out.to(device=device, dtype=dtype).eval()
    return out, tok, spec


def count_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Parameter count, tied weights counted once (``parameters()`` deduplicates)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def addon_config(base_config: Any, num_layers: int) -> Any:
    """A fresh LlamaConfig copying the base's shape (spec 3.1) with ``num_layers`` layers."""
    from transformers import LlamaConfig

    rope = getattr(base_config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(base_config, "rope_theta", 10_000.0))
    return LlamaConfig(
        vocab_size=base_config.vocab_size,
        hidden_size=base_config.hidden_size,
        intermediate_size=base_config.intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=base_config.num_attention_heads,
        num_key_value_heads=base_config.num_key_value_heads,
        max_position_embeddings=base_config.max_position_embeddings,
        rms_norm_eps=base_config.rms_norm_eps,
        rope_theta=theta,
        hidden_act=base_config.hidden_act,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
    )


def make_addon(base_config: Any, num_layers: int, *, init_head_from: torch.nn.Module | None = None) -> Any:
    """A randomly initialised ``num_layers``-layer Llama with its own tied embedding/head (fp32).

    ``init_head_from``: a base model whose input embedding (= tied head) is copied in.
    """
    from transformers import LlamaForCausalLM

    cfg = addon_config(base_config, num_layers)
    cfg._attn_implementation = "sdpa"
    m = LlamaForCausalLM(cfg)
    if init_head_from is not None:
        with torch.no_grad():
            m.get_input_embeddings().weight.copy_(init_head_from.get_input_embeddings().weight.float().cpu())
    return m


def smollm2_config() -> Any:
    """The SmolLM2-135M LlamaConfig from spec 3.1 (for parameter arithmetic without weights)."""
    from transformers import LlamaConfig

    return LlamaConfig(**SMOLLM2_CONFIG)


# --- a tiny random stand-in (tests, ``benchmarks/gpu_smollm2.py --tiny``) -------------------------

def _byte_level_chars() -> dict[int, str]:
    """The byte-level BPE byte → printable character map (printable bytes map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def build_tiny_model_dir(directory: str | os.PathLike[str], *, hidden: int = 32, layers: int = 4, seed: int = 0) -> str:
    """Write a random tiny Llama (hidden 32, 4 layers) and a byte-level tokenizer to ``directory``.

    The tokenizer maps every byte to its own id (0-255) plus ``<|endoftext|>`` (256) and
    ``<|im_end|>`` (257, the EOS, as in SmolLM2-Instruct); nothing downloaded. Returns the path.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    b2u = _byte_level_chars()
    vocab = {b2u[b]: b for b in range(256)}
    assert set(vocab) == set(byte_chars)
    vocab["<|endoftext|>"] = 256
    vocab["<|im_end|>"] = 257
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", "<|im_end|>"]})
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=260, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
        rope_theta=100_000.0, tie_word_embeddings=True, eos_token_id=257, bos_token_id=256, pad_token_id=256,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    return str(out)
