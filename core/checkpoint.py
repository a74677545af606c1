"""Checkpoints of a running experiment, so that a run that dies continues instead of starting over.

A checkpoint is one folder ``<run dir>/checkpoints/ckpt-<seq>/`` holding ``tensors.safetensors``
(every tensor of the state: models, optimizers, best weights, torch RNG states) and ``state.json``
(everything else: epoch, stage, early-stopping counters, python and numpy RNG states, and where the
tensors go back). The folder is written under a temporary name, each file fsynced, then renamed
and its parent fsynced: a kill at any point leaves the previous checkpoint complete and loadable,
and a half-written temporary folder is ignored (and removed by the next save).

Experiments ask :func:`checkpoints_for` for the store of the run they are in. A worker attaches a
:class:`Checkpoints` to its emitter (``emit.checkpoints``); anywhere else (tests, notebooks) they get
one that saves nothing, unless the caller attached one of its own. Nothing is ever read with
``torch.load``: safetensors and JSON cannot run code.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
FORMAT = "hrm.checkpoint/v1"
_NAME = re.compile(r"^ckpt-(\d{6,})$")
_TMP_PREFIX = ".tmp-ckpt-"


# --- encoding a nested state into tensors + JSON ------------------------------------------------

class _Encoder:
    """Walks a nested state; tensors go to a flat dict (shared tensors stored once), the rest to JSON."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self._views: dict[tuple, str] = {}
        self._storages: set[int] = set()

    def encode(self, value: Any) -> Any:
        import torch

        if isinstance(value, torch.Tensor):
            return {"__tensor__": self._add_tensor(value)}
        if isinstance(value, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {"__dict__": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return {"__float__": repr(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if type(value).__module__ == "numpy":
            import numpy as np

            if isinstance(value, np.ndarray):
                return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
            return self.encode(value.item())
        raise TypeError(f"cannot checkpoint a value of type {type(value).__name__}")

    def _add_tensor(self, tensor: Any) -> str:
        tensor = tensor.detach()
        storage = tensor.untyped_storage().data_ptr() if tensor.numel() else -len(self.tensors) - 1
        view = (storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if view in self._views:  # the same tensor again (tied weights): stored once, restored as one
            return self._views[view]
        name = f"t{len(self.tensors)}"
        if storage in self._storages or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()  # safetensors refuses tensors that share memory
        self._storages.add(storage)
        self._views[view] = name
        self.tensors[name] = tensor
        return name


def _decode(value: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
    if "__float__" in value:
        return float(value["__float__"])
    if "__ndarray__" in value:
        import numpy as np

        return np.array(value["__ndarray__"], dtype=value["dtype"])
    return {k: _decode(v, tensors) for k, v in value.items()}


# --- random number generators -------------------------------------------------------------------

def capture_rng() -> dict[str, Any]:
    """The state of every generator a training loop draws from: python, numpy, torch CPU and CUDA."""
    import numpy as np
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put the generators back exactly where :func:`capture_rng` found them."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"].to(torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for index, rng in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(rng.to(torch.uint8), index)


# --- atomic folder writes -----------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file (``O_EXCL``: never through a pre-planted file or link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tensors(path: Path, tensors: dict[str, Any]) -> int:
    """Write the tensors as one safetensors file straight to disk (no in-memory copy), fsynced; returns its size."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path))
    except SafetensorError as exc:  # its I/O errors (a full disk) as the OSError they are
        raise OSError(str(exc).rsplit(": ", 1)[-1]) from exc
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished temporary folder into place and make the rename durable."""
    os.rename(tmp, final)
    _fsync_dir(final.parent)


# --- the store ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: where training stood and the state to continue from."""

    path: Path
    seq: int
    stage: int
    epoch: int
    stage_done: bool
    score: float | None
    state: dict[str, Any]
    """The experiment's own state (models, optimizers, counters...), tensors on CPU."""
    rng: dict[str, Any]
    cursor: dict[str, Any]
    """Where the run's recorded events stood when it was saved (the worker drops later ones on resume)."""
    saved_at: float

    def restore_rng(self) -> None:
        restore_rng(self.rng)


@dataclass
class Checkpoints:
    """The checkpoints of one run, in ``directory``.

    ``cursor`` says where the run's recorded events stand (saved with each checkpoint so that a
    resume can drop what a dead attempt emitted after it); ``on_saved`` is told about each new
    checkpoint (the worker records it in the registry), ``on_error`` about one that could not be
    written (a full disk); ``resume`` is set by whoever starts the
    run when it should continue from :meth:`latest` instead of starting over.
    """

    directory: Path
    cursor: Callable[[], dict[str, Any]] | None = None
    on_saved: Callable[[dict[str, Any]], None] | None = None
    on_error: Callable[[str], None] | None = None
    """Told when a save fails for lack of disk (the run goes on without it); None: the error is raised."""
    resume: bool = False
    keep_last: int = 2
    _loaded: Checkpoint | None = field(default=None, init=False, repr=False)
    _resume_used: bool = field(default=False, init=False, repr=False)

    enabled = True

    # -- reading --
    def folders(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _NAME.match(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                found.append((int(match.group(1)), entry))
        return [p for _, p in sorted(found)]

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that loads; a damaged one is skipped for the one before it."""
        from safetensors import SafetensorError

        for path in reversed(self.folders()):
            try:
                return load_checkpoint(path)
            except (OSError, ValueError, KeyError, TypeError, SafetensorError):
                continue
        return None

    def resume_point(self) -> Checkpoint | None:
        """The checkpoint to continue from, when this run is being resumed (loaded once, then cached)."""
        if not self.resume:
            return None
        if not self._resume_used:
            self._loaded = self.latest()
            self._resume_used = True
        return self._loaded

    # -- writing --
    def save(self, state: Mapping[str, Any], *, stage: int = 0, epoch: int = 0, stage_done: bool = False,
             score: float | None = None) -> Path | None:
        """Save ``state`` (plus the RNG states) as the newest checkpoint; returns its folder.

        Returns None (and saves nothing) when ``cursor`` cannot say where the recorded events stand
        (the registry is unreachable and events wait in the worker's spool): a checkpoint whose
        events might be lost on resume would be worse than one checkpoint fewer.
        """
        started = time.perf_counter()
        cursor = self.cursor() if self.cursor else {}
        if cursor is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        existing = self.folders()
        seq = int(_NAME.match(existing[-1].name).group(1)) + 1 if existing else 1
        encoder = _Encoder()
        body = {
            "format": FORMAT,
            "seq": seq,
            "stage": int(stage),
            "epoch": int(epoch),
            "stage_done": bool(stage_done),
            "score": None if score is None or not math.isfinite(score) else float(score),
            "saved_at": time.time(),
            "cursor": dict(cursor),
            "state": encoder.encode(dict(state)),
            "rng": encoder.encode(capture_rng()),
        }
        final = self.directory / f"ckpt-{seq:06d}"
        tmp = self.directory / f"{_TMP_PREFIX}{seq:06d}-{os.getpid()}"
        try:
            tmp.mkdir()  # fresh and ours (mkdir fails on anything already there): files inside are safe to create
            size = _write_tensors(tmp / TENSORS_FILE, encoder.tensors)
            _write_file(tmp / STATE_FILE, json.dumps(body, allow_nan=False).encode())
            _fsync_dir(tmp)
            _publish(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if self.on_error is None:
                raise
            self.on_error(f"checkpoint of epoch {epoch} not saved: {exc.strerror or exc}; the previous one stays")
            return None
        self._prune()
        if self.on_saved is not None:
            self.on_saved({"seq": seq, "stage": body["stage"], "epoch": body["epoch"], "stage_done": body["stage_done"],
                           "score": body["score"], "path": str(final), "bytes": size,
                           "saved_at": body["saved_at"], "seconds": time.perf_counter() - started})
        return final

    def _remove_temporaries(self) -> None:
        for entry in self.directory.iterdir():
            if entry.name.startswith(_TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)

    def _prune(self) -> None:
        """Keep the newest ``keep_last`` and the best-scoring checkpoint."""
        paths = self.folders()
        if len(paths) <= self.keep_last:
            return
        keep = set(paths[-self.keep_last:])
        best = best_checkpoint(paths)
        if best is not None:
            keep.add(best)
        for path in paths:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)


class NoCheckpoints:
    """What an experiment gets outside a worker: saves nothing, never resumes."""

    enabled = False
    resume = False

    def resume_point(self) -> Checkpoint | None:
        return None

    def save(self, state: Mapping[str, Any], **position: Any) -> None:
        return None


def checkpoints_for(emit: Any) -> Checkpoints | NoCheckpoints:
    """The checkpoint store attached to ``emit`` (``emit.checkpoints``), or one that does nothing."""
    store = getattr(emit, "checkpoints", None)
    return store if store is not None else NoCheckpoints()


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` header (no tensors read)."""
    body = json.loads((path / STATE_FILE).read_text())
    if body.get("format") != FORMAT:
        raise ValueError(f"{path}: not an hrm checkpoint")
    return body


def load_checkpoint(path: Path) -> Checkpoint:
    """Load one checkpoint folder onto the CPU (safetensors + JSON: no pickle, no code)."""
    from safetensors.torch import load_file

    body = read_meta(path)
    tensors = load_file(str(path / TENSORS_FILE), device="cpu")
    return Checkpoint(
        path=path, seq=int(body["seq"]), stage=int(body["stage"]), epoch=int(body["epoch"]),
        stage_done=bool(body["stage_done"]), score=body.get("score"),
        state=_decode(body["state"], tensors), rng=_decode(body["rng"], tensors),
        cursor=dict(body.get("cursor") or {}), saved_at=float(body.get("saved_at", 0.0)),
    )


def best_checkpoint(paths: list[Path]) -> Path | None:
    """The checkpoint with the lowest score (the newest among equals); None when none has one."""
    best: tuple[float, int, Path] | None = None
    for order, path in enumerate(paths):
        try:
            score = read_meta(path).get("score")
        except (OSError, ValueError):
            continue
        if score is None:
            continue
        key = (float(score), -order, path)
        if best is None or key[:2] < best[:2]:
            best = key
    return None if best is None else best[2]


def folder_bytes(path: Path) -> int:
    """Bytes under ``path`` (files only, links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
