"""Grid sweeps: ``hrm sweep EXPERIMENT --param hard_ratio=0.1,0.3 --param lr=1e-4,5e-5 --seeds 3``.

Every grid point is validated by the experiment's config (pydantic coerces the strings) before
anything is written; then all points are queued under one tag, which ``hrm compare --tag`` turns
into a mean ± std table over seeds.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core import api
from core.experiments import UnknownExperiment, get_experiment
from core.experiments.base import Unavailable
from core.registry import Database

MAX_POINTS = 2000


@dataclass
class SweepPlan:
    experiment: str
    tag: str
    axes: dict[str, list[str]]
    points: list[dict[str, Any]]
    """Validated configs (``model_dump`` of the experiment's config), one per run to queue."""


def parse_assignment(text: str, *, option: str = "--param") -> tuple[str, list[str]]:
    """``lr=1e-4,5e-5`` → ("lr", ["1e-4", "5e-5"]); ``hard-ratio`` is accepted for ``hard_ratio``."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise api.UserError(f"{option} {text!r}: expected NAME=VALUE[,VALUE...]", 2)
    items = [v.strip() for v in values.split(",")]
    if not values.strip() or any(not v for v in items):
        raise api.UserError(f"{option} {text!r}: empty value", 2)
    return name, list(dict.fromkeys(items))


def default_tag(experiment: str) -> str:
    return f"sweep-{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def plan_sweep(experiment: str, params: Sequence[str], *, fixed: Sequence[str] = (), seeds: int | None = None,
               tag: str | None = None, preflight: bool = False) -> SweepPlan:
    """Parse, expand and validate the whole grid (UserError(2) on the first bad point; nothing written).

    ``preflight`` (a dry run): also ask this machine what a submit would (data reachable, files
    present; UserError(1)), so that a dry run never shows a grid the real sweep refuses."""
    try:
        exp = get_experiment(experiment)
    except UnknownExperiment as exc:
        raise api.UserError(str(exc), 2) from None
    fields = exp.config_cls.model_fields
    axes: dict[str, list[str]] = {}
    for text in params:
        name, values = parse_assignment(text)
        _check_field(experiment, name, fields)
        if name in axes:
            raise api.UserError(f"--param {name} given twice", 2)
        axes[name] = values
    base: dict[str, Any] = {}
    for text in fixed:
        name, values = parse_assignment(text, option="--set")
        _check_field(experiment, name, fields)
        if len(values) != 1:
            raise api.UserError(f"--set {name} takes one value (use --param for several)", 2)
        if name in axes:
            raise api.UserError(f"{name} is both a --param and a --set", 2)
        base[name] = values[0]
    if seeds is not None and seeds < 1:
        raise api.UserError("--seeds must be at least 1", 2)
    if not axes and not seeds:
        raise api.UserError("nothing to sweep: give at least one --param NAME=V1,V2 or --seeds N", 2)
    if seeds is not None:
        if "seed" in axes:
            raise api.UserError("give either --seeds N or --param seed=..., not both", 2)
        try:
            first = int(base.pop("seed")) if "seed" in base else int(fields["seed"].default)
        except ValueError:
            raise api.UserError("--set seed takes an integer", 2) from None
    size = seeds or 1  # counted before anything is materialised: --seeds 10**20 must not fill memory
    for values in axes.values():
        size *= len(values)
    if size > MAX_POINTS:
        raise api.UserError(f"the grid has {size} points (more than {MAX_POINTS}): narrow it", 2)
    if seeds is not None:
        axes["seed"] = [str(first + i) for i in range(seeds)]
    points = []
    names = list(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        values = {**base, **dict(zip(names, combo))}
        try:
            config = api.validate_config(experiment, values)
        except api.UserError as exc:
            where = " ".join(f"{n}={v}" for n, v in zip(names, combo))
            raise api.UserError(f"{exc} at grid point {where}", 2) from None
        points.append(config.model_dump(mode="json"))
        if preflight and len(points) == 1:
            try:
                config.preflight()
            except Unavailable as exc:
                raise api.UserError(f"{experiment}: {exc}", 1) from None
    return SweepPlan(experiment, tag or default_tag(experiment), axes, points)


def _check_field(experiment: str, name: str, fields: Mapping[str, Any]) -> None:
    if name not in fields:
        raise api.UserError(f"{experiment} has no parameter {name!r} (known: {', '.join(fields)})", 2)


def queue_sweep(db: Database, plan: SweepPlan, *, priority: int = 0) -> list[int]:
    """Queue every point of a validated plan under its tag; returns the run ids."""
    return [api.submit(db, plan.experiment, point, tags=[plan.tag], priority=priority).id for point in plan.points]
