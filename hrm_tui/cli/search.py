"""``hrm sweep X --search random|tpe``: the Optuna-driven sweep behind the ``sweep`` command's search options."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

from hrm_tui.cli.common import err_console, print_json, registry


def search_sweep(ctx, experiment: str, params: list[str], *, fixed: list[str], search: str, trials: int,
                 objective: Optional[str], parallel: int, prune: bool, sampler_seed: Optional[int],
                 tag: Optional[str], priority: int, dry_run: bool, start: bool, json_out: bool, db) -> None:
    """Validate the search, then drive it in the foreground: queue trials, tell Optuna each result."""
    from core import api
    from core.facade import Event, plan_search, ranked_trials, run_search

    if not objective:
        raise api.UserError("--search needs --objective KEY:min|max (e.g. val_ppl:min)", 2)
    plan = plan_search(experiment, params, objective=objective, search=search, trials=trials, parallel=parallel,
                       fixed=fixed, tag=tag, prune=prune, seed=sampler_seed, priority=priority)
    space = "  ".join(_describe(p) for p in plan.params)
    if dry_run:
        err_console().print(f"{search} search of {experiment}: {trials} trials, {parallel} at a time, "
                            f"objective {plan.objective.label}: {space} (dry run, nothing queued)", highlight=False)
        return
    database = registry(ctx, db, create=True)
    err_console().print(f"sweep {plan.tag}: {search} search of {experiment}, {trials} trials ({parallel} at a time), "
                        f"objective {plan.objective.label}{', pruning' if prune else ''}: {space}", highlight=False)
    err_console().print(f"stop with Ctrl-C and run the same command with --tag {plan.tag} to resume; "
                        f"compare with: hrm compare --tag {plan.tag}", highlight=False)

    def report(event: Event) -> None:
        values = " ".join(f"{k}={_short(v)}" for k, v in event.params.items())
        result = f" → {event.value:.6g}" if event.value is not None else ""
        err_console().print(f"trial {event.trial:>3} run {event.run_id:>5} {event.kind:<9} {values}{result}",
                            highlight=False)

    try:
        study = run_search(database, plan, start_scheduler=start, on_event=report)
    except KeyboardInterrupt:
        err_console().print(f"stopped: queued trials go on; resume with --tag {plan.tag}", highlight=False)
        raise SystemExit(130) from None
    ranked = ranked_trials(study)
    if json_out:
        print_json({"tag": plan.tag, "objective": plan.objective.label, "trials": ranked}, expand=2)
        return
    done = [t for t in ranked if t["value"] is not None]
    if done:
        best = done[0]
        err_console().print(f"best: trial {best['trial']} (run {best['run_id']}) {plan.objective.label} = "
                            f"{best['value']:.6g} with {json.dumps(best['params'])}", highlight=False)
    sys.stdout.write(plan.tag + "\n")


def _describe(param: Any) -> str:
    if param.kind == "choice":
        return f"{param.name}∈{{{','.join(map(str, param.choices))}}}"
    scale = "log " if param.log else ""
    return f"{param.name}∈[{param.low}, {param.high}] {scale}{param.kind}".rstrip()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
