"""One scheduler, several engines: each run goes to the engine it asked for (``hrm run X --executor slurm|ray``),
or to the scheduler's own (``hrm scheduler --executor ...``, local by default).

:class:`ExecutorByRun` is an :class:`~core.scheduler.executor.Executor` that remembers which engine
owns each worker, so watching, signalling and adopting after a restart go to the right one. Engines
other than the default are made on first use; one that cannot be made (Slurm not installed) fails
that run's launch with its reason, as any launch failure does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.scheduler.executor import Executor
from core.scheduler.process import WorkerHandle


class ExecutorByRun(Executor):
    """Dispatches each run to ``run.executor`` (None: ``default``)."""

    def __init__(self, default: Executor, others: Mapping[str, Callable[[], Executor]]) -> None:
        self.default = default
        self.name = default.name
        self._factories = dict(others)
        self._engines: dict[str, Executor] = {default.name: default}
        self._owner: dict[int, Executor] = {}

    def engine(self, name: str | None) -> Executor:
        """The engine called ``name`` (made now if needed); OSError when it does not exist or cannot start."""
        name = name or self.default.name
        if name not in self._engines:
            factory = self._factories.get(name)
            if factory is None:
                raise OSError(f"no executor {name!r} (known: {', '.join([self.default.name, *self._factories])})")
            self._engines[name] = factory()
        return self._engines[name]

    def accepting(self) -> bool:
        return self.default.accepting()

    def _of(self, handle: WorkerHandle) -> Executor:
        return self._owner.get(handle.run_id, self.default)

    def launch(self, run, slot: str) -> WorkerHandle:
        engine = self.engine(getattr(run, "executor", None))
        handle = engine.launch(run, slot)
        self._owner[run.id] = engine
        return handle

    def poll(self, handle: WorkerHandle) -> int | None:
        return self._of(handle).poll(handle)

    def signal(self, handle: WorkerHandle, sig: int) -> None:
        self._of(handle).signal(handle, sig)

    def cancel(self, handle: WorkerHandle, *, force: bool = False) -> None:
        self._of(handle).cancel(handle, force=force)

    def is_stopped(self, handle: WorkerHandle) -> bool:
        return self._of(handle).is_stopped(handle)

    def adopt(self, run) -> WorkerHandle | None:
        name = getattr(run, "executor", None)
        if name is None and getattr(run, "external_id", None) is None and "local" in self._factories:
            name = "local"  # launched as a local subprocess (local launches record no engine)
        try:
            engine = self.engine(name)
        except OSError:
            return None
        handle = engine.adopt(run)
        if handle is not None:
            self._owner[run.id] = engine
        return handle

    def reap_quietly(self, handle: WorkerHandle, timeout: float = 5.0) -> int | None:
        """The owning engine's reap (local workers leave no zombie), else None."""
        reap = getattr(self._of(handle), "reap_quietly", None)
        return reap(handle, timeout) if reap is not None else None


def default_executor(db, *, env: Mapping[str, str], ray=None) -> ExecutorByRun:
    """Local subprocesses, and Slurm jobs or Ray actors for the runs that ask for them (made on first use;
    Ray's options ``ray``, None: the cluster of ``$RAY_ADDRESS`` or this machine's)."""
    from core.scheduler.executor import LocalExecutor

    def slurm() -> Executor:
        from core.scheduler.slurm import SlurmExecutor

        return SlurmExecutor(db, env=env)

    return ExecutorByRun(LocalExecutor(db, env=env), {"slurm": slurm, "ray": _ray_factory(db, ray, env)})


def slurm_first(db, options, *, env: Mapping[str, str], ray=None) -> ExecutorByRun:
    """Slurm jobs (``hrm scheduler --executor slurm``), and local subprocesses or Ray actors for runs that ask for them."""
    from core.scheduler.executor import LocalExecutor
    from core.scheduler.slurm import SlurmExecutor

    return ExecutorByRun(SlurmExecutor(db, options, env=env), {"local": lambda: LocalExecutor(db, env=env),
                                                               "ray": _ray_factory(db, ray, env)})


def ray_first(db, options, *, env: Mapping[str, str]) -> ExecutorByRun:
    """Ray actors (``hrm scheduler --executor ray``), and local subprocesses or Slurm jobs for runs that ask for them."""
    from core.scheduler.executor import LocalExecutor
    from core.scheduler.ray_engine import RayExecutor

    def slurm() -> Executor:
        from core.scheduler.slurm import SlurmExecutor

        return SlurmExecutor(db, env=env)

    return ExecutorByRun(RayExecutor(db, options, env=env), {"local": lambda: LocalExecutor(db, env=env),
                                                             "slurm": slurm})


def _ray_factory(db, options, env: Mapping[str, str]) -> Callable[[], Executor]:
    def ray() -> Executor:
        from core.scheduler.ray_engine import RayExecutor

        return RayExecutor(db, options, env=env)

    return ray
