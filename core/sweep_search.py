"""Sweeps beyond grids: ``hrm sweep X --search tpe --trials 20 --objective val_ppl:min --param lr=log(1e-4,1e-2)``.

Optuna proposes configs; each trial is an ordinary hrm run (queued through the normal scheduler, so
trials share GPU slots with everything else, tagged with the sweep). The driver keeps up to
``parallel`` trials queued or running, asks the study for a new config when one finishes and tells
it the run's result: the best value of the objective metric over the run's epochs (its minimum for
``:min``, maximum for ``:max``; a summary key such as ``best_val_ppl`` has one value). With pruning,
each epoch the run reports is passed to ``trial.report`` and a trial the pruner stops is cancelled.

The study lives beside the registry (``runs.db`` → ``runs.optuna.db``; a PostgreSQL registry keeps
it in the same database) under the sweep's tag, so a driver that was stopped resumes with the same
``--tag``: it re-attaches to the trials' runs and asks only for the trials still missing.

Parameter forms: ``log(LOW,HIGH)`` (float, log scale), ``float(LOW,HIGH)``, ``int(LOW,HIGH)``,
``intlog(LOW,HIGH)``, ``choice(A,B,...)`` and a plain ``A,B,...`` (categorical). Every bound and
choice is validated by the experiment's config before anything is written.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import api
from core.errors import UserError
from core.experiments import UnknownExperiment, get_experiment
from core.registry import Database, RunStatus, store
from core.registry.db import sqlite_path
from core.sweep import default_tag, parse_assignment

SEARCHES = ("random", "tpe")
MAX_TRIALS = 10_000
_FORM = re.compile(r"(log|float|uniform|int|intlog|choice)\((.*)\)", re.IGNORECASE)


def _optuna():
    try:
        optuna = importlib.import_module("optuna")
    except ImportError:
        raise UserError("optuna is not installed: pip install 'hrm-tui[sweep]'", 1) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --- parsing and validation -------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One searched parameter: ``kind`` float / int / choice, bounds or choices, log scale."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def distribution(self, optuna):
        d = optuna.distributions
        if self.kind == "float":
            return d.FloatDistribution(self.low, self.high, log=self.log)
        if self.kind == "int":
            return d.IntDistribution(self.low, self.high, log=self.log)
        return d.CategoricalDistribution(self.choices)

    def corners(self) -> list[Any]:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class Objective:
    key: str
    """A metric key; ``s2/val_ppl`` for stage 2."""
    stage: int
    direction: str  # minimize | maximize

    @property
    def label(self) -> str:
        return f"{'s%d/' % self.stage if self.stage else ''}{self.key}:{'min' if self.direction == 'minimize' else 'max'}"


def _number(text: str, option: str, *, integer: bool) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a number", 2) from None
    if not math.isfinite(value):
        raise UserError(f"{option}: {text!r} is not a finite number", 2)
    if integer:
        if value != int(value):
            raise UserError(f"{option}: {text!r} is not an integer", 2)
        return int(value)
    return value


def _choice(text: str) -> Any:
    """A categorical value as Optuna stores it: a number or true/false where it reads as one, else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_param(text: str) -> Param:
    """``lr=log(1e-4,1e-2)`` → Param("lr", "float", 1e-4, 1e-2, log=True); UserError(2) when malformed."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    spec = spec.strip()
    option = f"--param {text}"
    if not sep or not name or not spec:
        raise UserError(f"{option!r}: expected NAME=log(LOW,HIGH), int(LOW,HIGH), float(LOW,HIGH) or A,B,...", 2)
    match = _FORM.fullmatch(spec)
    if match is None:
        if "(" in spec or ")" in spec:
            raise UserError(f"{option!r}: unknown form (log, float, int, intlog, choice)", 2)
        _, values = parse_assignment(text)
        return Param(name, "choice", choices=tuple(dict.fromkeys(_choice(v) for v in values)))
    form = match.group(1).lower()
    args = [a.strip() for a in match.group(2).split(",")]
    if any(not a for a in args):
        raise UserError(f"{option!r}: empty value", 2)
    if form == "choice":
        return Param(name, "choice", choices=tuple(dict.fromkeys(_choice(a) for a in args)))
    if len(args) != 2:
        raise UserError(f"{option!r}: {form}(LOW,HIGH) takes two numbers", 2)
    integer = form in ("int", "intlog")
    low, high = (_number(a, option, integer=integer) for a in args)
    if not low < high:
        raise UserError(f"{option!r}: LOW must be below HIGH", 2)
    log = form in ("log", "intlog")
    if log and low <= 0:
        raise UserError(f"{option!r}: a log scale needs LOW > 0", 2)
    return Param(name, "int" if integer else "float", low, high, log=log)


def parse_objective(text: str) -> Objective:
    """``val_ppl:min`` / ``s2/acc:max`` / ``best_val_ppl`` (min by default)."""
    key, _, goal = text.strip().partition(":")
    goal = goal.strip().lower() or "min"
    if goal not in ("min", "max", "minimize", "maximize"):
        raise UserError(f"--objective {text!r}: expected KEY:min or KEY:max", 2)
    stage = 0
    match = re.fullmatch(r"s(\d+)/(.+)", key.strip())
    if match:
        stage, key = int(match.group(1)), match.group(2)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key.strip()):
        raise UserError(f"--objective {text!r}: expected a metric key such as val_ppl", 2)
    return Objective(key.strip(), stage, "minimize" if goal.startswith("min") else "maximize")


@dataclass
class SearchPlan:
    experiment: str
    tag: str
    params: list[Param]
    base: dict[str, Any]
    objective: Objective
    search: str
    trials: int
    parallel: int
    prune: bool = False
    seed: int | None = None
    priority: int = 0


def plan_search(experiment: str, params: Sequence[str], *, objective: str, search: str = "tpe", trials: int = 20,
                parallel: int = 1, fixed: Sequence[str] = (), tag: str | None = None, prune: bool = False,
                seed: int | None = None, priority: int = 0) -> SearchPlan:
    """Parse and validate a search (every bound and choice through the experiment's config); writes nothing."""
    try:
        exp = get_experiment(experiment)
    except UnknownExperiment as exc:
        raise UserError(str(exc), 2) from None
    if search not in SEARCHES:
        raise UserError(f"--search {search!r}: expected one of {', '.join(SEARCHES)}", 2)
    if not 1 <= trials <= MAX_TRIALS:
        raise UserError(f"--trials must be between 1 and {MAX_TRIALS}", 2)
    if not 1 <= parallel <= 1000:
        raise UserError("--parallel must be between 1 and 1000", 2)
    fields = exp.config_cls.model_fields
    parsed: list[Param] = []
    for text in params:
        param = parse_param(text)
        if param.name not in fields:
            raise UserError(f"{experiment} has no parameter {param.name!r} (known: {', '.join(fields)})", 2)
        if any(p.name == param.name for p in parsed):
            raise UserError(f"--param {param.name} given twice", 2)
        parsed.append(param)
    if not parsed:
        raise UserError("nothing to search: give at least one --param NAME=log(LOW,HIGH) / int(LOW,HIGH) / A,B", 2)
    base: dict[str, Any] = {}
    for text in fixed:
        name, values = parse_assignment(text, option="--set")
        if name not in fields:
            raise UserError(f"{experiment} has no parameter {name!r} (known: {', '.join(fields)})", 2)
        if len(values) != 1:
            raise UserError(f"--set {name} takes one value", 2)
        if any(p.name == name for p in parsed):
            raise UserError(f"{name} is both a --param and a --set", 2)
        base[name] = values[0]
    api.validate_config(experiment, base)
    low = {p.name: p.corners()[0] for p in parsed}
    for param in parsed:  # each bound / choice with the others at their first value
        for value in param.corners():
            try:
                api.validate_config(experiment, {**base, **low, param.name: value})
            except UserError as exc:
                raise UserError(f"{exc} (at {param.name}={value})", 2) from None
    return SearchPlan(experiment, tag or default_tag(experiment), parsed, base, parse_objective(objective), search,
                      trials, parallel, prune, seed, priority)


# --- the study --------------------------------------------------------------------------------

def study_storage(db: Database) -> str:
    """Where a registry's studies live: ``runs.optuna.db`` beside a SQLite file, else the same database."""
    path = sqlite_path(db.url)
    if path is None:
        return db.url
    return f"sqlite:///{Path(path).with_suffix('.optuna.db')}"


def open_study(db: Database, plan: SearchPlan, *, pruner=None):
    optuna = _optuna()
    sampler = (optuna.samplers.RandomSampler(seed=plan.seed) if plan.search == "random"
               else optuna.samplers.TPESampler(seed=plan.seed))
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if plan.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=study_storage(db), study_name=plan.tag, sampler=sampler, pruner=pruner,
                                direction=plan.objective.direction, load_if_exists=True)
    recorded = study.user_attrs.get("hrm_experiment")
    if recorded is None:
        study.set_user_attr("hrm_experiment", plan.experiment)
        study.set_user_attr("hrm_objective", plan.objective.label)
    elif recorded != plan.experiment or study.user_attrs.get("hrm_objective") != plan.objective.label:
        raise UserError(f"sweep {plan.tag} is a search of {recorded} for {study.user_attrs.get('hrm_objective')}: "
                        "use another --tag", 2)
    if study.direction.name.lower() != plan.objective.direction:
        raise UserError(f"sweep {plan.tag} already {study.direction.name.lower()}s its objective", 2)
    return study


@dataclass
class Event:
    """What the driver reports as it goes (the CLI prints one line per event)."""

    kind: str  # queued, completed, pruned, failed
    trial: int
    run_id: int
    params: dict[str, Any]
    value: float | None = None


@dataclass
class _Active:
    trial: Any
    run_id: int
    params: dict[str, Any]
    after_metric: int = 0
    reported: set = field(default_factory=set)


def run_search(db: Database, plan: SearchPlan, *, start_scheduler: bool = True, poll: float = 0.5,
               on_event: Callable[[Event], None] | None = None, pruner=None, timeout: float | None = None):
    """Drive the study until ``plan.trials`` trials have ended; returns the study (best trial and all)."""
    optuna = _optuna()
    study = open_study(db, plan, pruner=pruner)
    states = optuna.trial.TrialState
    distributions = {p.name: p.distribution(optuna) for p in plan.params}
    active: dict[int, _Active] = {}
    for frozen in study.get_trials(deepcopy=False, states=(states.RUNNING,)):  # a driver that stopped
        run_id = frozen.user_attrs.get("hrm_run_id")
        trial = optuna.trial.Trial(study, frozen._trial_id)
        if run_id is None or store.get_run(db, run_id) is None:
            study.tell(trial, state=states.FAIL)
            continue
        active[frozen.number] = _Active(trial, run_id, dict(frozen.params))
    deadline = None if timeout is None else time.monotonic() + timeout
    emit = on_event or (lambda event: None)
    scheduler_checked = 0.0
    while True:
        asked = len(study.get_trials(deepcopy=False))
        while len(active) < plan.parallel and asked < plan.trials:
            trial = study.ask(distributions)
            values = {**plan.base, **trial.params}
            try:
                run = api.submit(db, plan.experiment, values, tags=[plan.tag], priority=plan.priority)
            except UserError as exc:  # a proposal the config refuses (e.g. a cross-field rule): a failed trial
                study.tell(trial, state=states.FAIL)
                logging.getLogger("hrm.sweep").warning("trial %d refused: %s", trial.number, exc)
                asked += 1
                continue
            trial.set_user_attr("hrm_run_id", run.id)
            active[trial.number] = _Active(trial, run.id, dict(trial.params))
            emit(Event("queued", trial.number, run.id, dict(trial.params)))
            asked += 1
        if not active:
            return study
        if start_scheduler and time.monotonic() - scheduler_checked > 5:
            api.ensure_scheduler(db)
            scheduler_checked = time.monotonic()
        for number, item in list(active.items()):
            run = store.get_run(db, item.run_id)
            if run is None:  # deleted under us
                study.tell(item.trial, state=states.FAIL)
                del active[number]
                emit(Event("failed", number, item.run_id, item.params))
                continue
            status = RunStatus(run.status)
            if plan.prune and not status.is_terminal and _report_epochs(db, plan, item) and item.trial.should_prune():
                api.cancel(db, item.run_id)
                store.set_tags(db, item.run_id, add=["pruned"])
                study.tell(item.trial, state=states.PRUNED)
                del active[number]
                emit(Event("pruned", number, item.run_id, item.params))
                continue
            if not status.is_terminal:
                continue
            del active[number]
            value = objective_value(db, item.run_id, plan.objective) if status == RunStatus.COMPLETED else None
            if value is None or math.isnan(value):
                study.tell(item.trial, state=states.FAIL)
                emit(Event("failed", number, item.run_id, item.params))
            else:
                study.tell(item.trial, value)
                emit(Event("completed", number, item.run_id, item.params, value))
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"sweep {plan.tag}: timed out with {len(active)} trial(s) still running "
                            f"(run the same command again to resume)", 1)
        time.sleep(poll)


def _report_epochs(db: Database, plan: SearchPlan, item: _Active) -> bool:
    """Pass the objective's new epoch values to the trial; True when something new was reported."""
    rows = store.metrics(db, item.run_id, kind="epoch", after_id=item.after_metric)
    if rows:
        item.after_metric = rows[-1]["id"]
    new = False
    for row in rows:
        if row["key"] != plan.objective.key or row["stage"] != plan.objective.stage or row["epoch"] is None:
            continue
        if row["epoch"] in item.reported or row["value"] is None or math.isnan(row["value"]):
            continue
        item.trial.report(float(row["value"]), int(row["epoch"]))
        item.reported.add(row["epoch"])
        new = True
    return new


def objective_value(db: Database, run_id: int, objective: Objective) -> float | None:
    """The run's best value of the objective key (min or max over its epochs; a summary's single value)."""
    for row in store.latest_metrics(db, [run_id]).get(run_id, []):
        if row["key"] == objective.key and row["stage"] == objective.stage:
            return row["min"] if objective.direction == "minimize" else row["max"]
    return None


def ranked_trials(study) -> list[Mapping[str, Any]]:
    """Finished trials best first: {trial, run_id, state, value, params}."""
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append({"trial": t.number, "run_id": t.user_attrs.get("hrm_run_id"), "state": t.state.name.lower(),
                    "value": t.value, "params": dict(t.params)})
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    return sorted(out, key=lambda r: (r["value"] is None, sign * (r["value"] or 0.0), r["trial"]))


def recorded_objective(db: Database, tag: str) -> str | None:
    """The objective (``val_ppl:min``) of the search sweep tagged ``tag``, or None when it is not one.

    Looks only where :func:`study_storage` keeps studies, and imports Optuna only when a SQLite
    study file exists there (a plain grid sweep costs nothing).
    """
    path = sqlite_path(db.url)
    if path is None or not Path(path).with_suffix(".optuna.db").exists():
        return None
    try:
        optuna = _optuna()
        study = optuna.load_study(study_name=tag, storage=study_storage(db))
    except (KeyError, UserError):
        return None
    return study.user_attrs.get("hrm_objective")


def rank_records(records: Sequence[Mapping[str, Any]], objective: str) -> list[Mapping[str, Any]]:
    """Records best first by the objective (``KEY:min|max``: the run's min or max of KEY); runs without it last."""
    goal = parse_objective(objective)
    key = f"s{goal.stage}/{goal.key}" if goal.stage else goal.key
    stat = "min" if goal.direction == "minimize" else "max"
    sign = 1 if stat == "min" else -1

    def value(record: Mapping[str, Any]) -> float | None:
        found = record.get("latest", {}).get(key)
        number = None if found is None else found.get(stat)
        return None if number is None or math.isnan(number) else number

    return sorted(records, key=lambda r: (value(r) is None, sign * (value(r) or 0.0), r["id"]))
