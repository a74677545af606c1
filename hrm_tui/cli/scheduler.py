"""``hrm scheduler``: the scheduler in the foreground."""

from typing import Annotated, Optional

import typer

from hrm_tui.cli.common import DbOption, err_console, registry


def scheduler(
    ctx: typer.Context,
    gpus: Annotated[Optional[str], typer.Option(
        "--gpus", show_default="all visible; none: CPU", help="GPU indices, e.g. 0,1")] = None,
    max_parallel: Annotated[Optional[int], typer.Option(
        "--max-parallel", min=1, show_default="one per GPU slot, 1 on CPU", help="runs at once")] = None,
    pack: Annotated[int, typer.Option("--pack", min=1, help="runs sharing one GPU")] = 1,
    once: Annotated[bool, typer.Option("--once", help="drain the queue, then exit")] = False,
    idle_exit: Annotated[Optional[float], typer.Option("--idle-exit", min=0, help="exit after this many idle seconds")] = None,
    retries: Annotated[int, typer.Option(
        "--retries", min=0, max=100, help="resume a run after an infrastructure failure up to N times (runs' own --retries win)")] = 0,
    on_finish: Annotated[Optional[str], typer.Option(
        "--on-finish", help="command run when a run ends, e.g. 'notify-send hrm {run_id} {status}' (no shell)")] = None,
    webhook: Annotated[Optional[str], typer.Option("--webhook", help="http(s) URL that receives a JSON body when a run ends")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", show_default="this host's name", help="scheduler name: one scheduler per name (host) per registry")] = None,
    stale_after: Annotated[float, typer.Option(
        "--stale-after", min=1, help="seconds without a worker heartbeat before its run is marked lost")] = 60.0,
    executor: Annotated[str, typer.Option(
        "--executor", help="where workers run: local (subprocesses), slurm (a job each, through submitit) or ray "
        "(an actor each on a Ray cluster)")] = "local",
    partition: Annotated[Optional[str], typer.Option("--partition", help="slurm: the partition to submit to")] = None,
    gres: Annotated[Optional[str], typer.Option("--gres", help="slurm: generic resources per job, e.g. gpu:1")] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time", show_default="1:00:00", help="slurm: each job's time limit (MINUTES, HH:MM:SS or D-HH:MM:SS)")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task", min=1, help="slurm: CPUs per job")] = None,
    mem: Annotated[Optional[str], typer.Option("--mem", help="slurm: memory per job, e.g. 16G")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", show_default="$RAY_ADDRESS, else this machine's cluster",
        help="ray: the cluster's head, e.g. 10.0.0.5:6379")] = None,
    ray_gpus: Annotated[Optional[float], typer.Option(
        "--ray-gpus", min=0, show_default="1 if the cluster has GPUs, else 0", help="ray: GPUs per run (0.5 shares one)")] = None,
    db: DbOption = None,
) -> None:
    """Run the scheduler in the foreground: launch queued runs as worker subprocesses."""
    import logging

    from core import api

    api.check_run_policy(on_finish=on_finish, webhook=webhook)
    if name is not None and not name.strip():
        raise api.UserError("--name: a scheduler name cannot be empty", 2)
    plan = api.plan_scheduler(gpus=gpus, pack=pack, max_parallel=max_parallel, executor=executor, partition=partition,
                              gres=gres, time_limit=time_limit, cpus_per_task=cpus_per_task, mem=mem,
                              ray_address=ray_address, ray_gpus=ray_gpus)
    database = registry(ctx, db, create=True)
    shown = getattr(database, "safe_url", None) or "the registry"

    def banner() -> None:  # printed once the lease is held: a refused second scheduler says only why
        err_console().print(f"scheduler {name or api.local_scheduler_name()!r} on {plan.describe()} for {shown} "
                            "(Ctrl-C stops; running workers continue)")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    api.run_scheduler(database, plan, name=name, stale_after=stale_after, once=once, idle_exit=idle_exit,
                      retries=retries, on_finish=on_finish, webhook=webhook, on_start=banner)
