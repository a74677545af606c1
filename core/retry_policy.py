"""Why did a run end, and is it worth running again? A pure classification of a run's ending.

An *infrastructure* ending (the worker or its node went away, the GPU it shared ran out of memory,
the job was preempted) says nothing about the experiment: resuming from the last checkpoint is
likely to succeed. Anything else (an exception in the experiment, a bad config, missing data, a
user's cancel, a CUDA out-of-memory on a GPU of its own) would fail again the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Cause = Literal["completed", "infrastructure", "code", "cancelled"]

_KILLED_BY = re.compile(r"\bkilled by (SIGKILL|SIGTERM|SIGHUP|SIGBUS|SIGPIPE|SIGXCPU)\b")
_OOM = re.compile(r"OutOfMemoryError|CUDA out of memory|CUDA error: out of memory", re.IGNORECASE)
_NODE = re.compile(
    r"preempt|node fail|NODE_FAIL|uncorrectable ECC|ECC error|CUDA error: (unspecified launch failure|"
    r"an illegal memory access|device-side assert)?\s*(GPU is lost|unknown error)|GPU is lost|"
    r"NCCL (error|timeout)|Xid \d+|Connection (reset|refused)|server closed the connection|"
    r"database is locked|disk I/O error",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    cause: Cause
    reason: str

    @property
    def retry(self) -> bool:
        return self.cause == "infrastructure"


def classify(status: str, error: str | None = None, *, shared_gpu: bool = False) -> Verdict:
    """Classify a terminal run from its ``status`` and ``error`` line.

    ``shared_gpu``: the run shared its GPU with others (``--pack``), so a CUDA out-of-memory may
    be its neighbours' doing and is worth a retry; alone on its GPU it would run out again.
    """
    error = error or ""
    if status == "completed":
        return Verdict("completed", "completed")
    if status == "lost":
        return Verdict("infrastructure", "the worker was lost")
    if status == "cancelled":
        if re.search(r"preempt", error, re.IGNORECASE):
            return Verdict("infrastructure", "preempted")
        return Verdict("cancelled", "cancelled by request")
    if _OOM.search(error):
        if shared_gpu:
            return Verdict("infrastructure", "CUDA out of memory on a shared GPU")
        return Verdict("code", "CUDA out of memory on a GPU of its own (it would run out again)")
    killed = _KILLED_BY.search(error)
    if killed:
        return Verdict("infrastructure", f"the worker was killed by {killed.group(1)}")
    if _NODE.search(error):
        return Verdict("infrastructure", "node, GPU or registry failure")
    return Verdict("code", "the experiment failed (code, config or data)")
