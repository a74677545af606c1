"""Workers on a Ray cluster: :class:`RayExecutor` runs each run's worker under a detached Ray actor.

- **Submit**: each claimed run gets one actor (:class:`WorkerHost`), placed by Ray with the run's
  ``num_cpus`` and ``num_gpus`` (Ray sets ``CUDA_VISIBLE_DEVICES`` for it). The actor starts the real
  worker (``python -P -m core.worker RUN_ID``, the registry URL in ``HRM_DB_URL``, output appended to
  the run's ``worker.log``), which writes its status, events, heartbeat and output into the registry
  itself, exactly as a local worker does. The actor is *detached*, so a scheduler that stops or is
  restarted leaves it running; the next scheduler of the same name finds it again by name and adopts it.
  The URL reaches the actor as an argument of its start call (in Ray's memory), never on a command
  line or in a file.
- **Watch**: the actor's ``wait`` call is an object reference; ``ray.wait(timeout=0)`` says whether it
  ended, without a round trip. The run's ``external_id`` is Ray's actor id and ``external_state``
  follows it (PENDING until Ray placed it, RUNNING, FINISHED, DEAD).
- **Stop**: ``hrm cancel`` asks the actor to SIGTERM the worker's process group (the worker records
  ``cancelled``); after the grace period, or with ``--force``, the group gets SIGKILL and the actor is
  killed with ``ray.kill``. The worker dies with its actor (``PR_SET_PDEATHSIG``): it never outlives it.
- **Settle**: a worker that wrote its own ending keeps it. An actor that *died* (its process killed,
  its node lost) before the worker wrote one makes the run ``lost`` with Ray's reason, which
  ``--retries`` resumes from the newest checkpoint; a worker that exited without a final status is
  ``failed`` with its exit code or signal. Rows the worker logged are always kept.

Requires ``pip install 'hrm-tui[ray]'`` and a Ray cluster (``ray start --head``) whose nodes have
hrm-tui installed, the run folders on a filesystem they share and the registry within reach
(PostgreSQL on a real cluster; SQLite only when the "cluster" is this machine).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.paths import runs_root, tail, worker_log
from core.registry import RunStatus, store
from core.registry.db import sqlite_path
from core.registry.run_updates import set_run_fields, settle_from_executor
from core.scheduler.executor import Executor
from core.scheduler.process import WorkerHandle, is_stopped, signal_group, signal_name
from core.scheduler.spawn import child_env, module_argv

log = logging.getLogger("hrm.scheduler.ray")

NAMESPACE = "hrm"
"""The Ray namespace of hrm's actors (their names are unique within it)."""
LINGER_S = 900.0
"""An actor whose worker was killed waits this long for a scheduler to read how (and settle the run), then
exits, freeing its CPU and GPU. A worker that exited by itself wrote its own ending: its actor waits
:data:`LINGER_EXITED_S`, enough for a live scheduler's next look, not for one that was stopped."""
LINGER_EXITED_S = 10.0
_SEND_TIMEOUT_S = 5.0


class RayError(OSError):
    """Ray is not installed, the cluster cannot be reached, or it cannot take the run: one line, no traceback."""


@dataclass(frozen=True)
class RayOptions:
    """What each run asks Ray for (``hrm scheduler --executor ray --ray-address ADDR --ray-gpus 1``)."""

    address: str | None = None
    """The cluster (``host:port`` of its head, ``ray://host:port``, ``auto``); None: ``$RAY_ADDRESS``, else ``auto``."""
    num_gpus: float | None = None
    """GPUs per run (fractions share a GPU); None: 1 when the cluster has GPUs, else 0."""
    num_cpus: float = 1.0

    def resolved_address(self) -> str:
        return self.address or os.environ.get("RAY_ADDRESS") or "auto"


def ray_missing() -> str | None:
    """The one line to print when Ray is not installed (without importing it), else None."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else "ray is not installed: pip install 'hrm-tui[ray]'"


def ray_options(*, address: str | None = None, num_gpus: float | None = None) -> RayOptions:
    """:class:`RayOptions` from the command line's; ValueError for a bad one (a usage error, nothing written)."""
    if address is not None and (not address.strip() or any(c.isspace() for c in address)):
        raise ValueError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    if num_gpus is not None and not 0 <= num_gpus <= 64:
        raise ValueError(f"--ray-gpus {num_gpus:g}: expected a number of GPUs per run between 0 and 64")
    return RayOptions(address=address, num_gpus=num_gpus)


# --- on the node: the actor -----------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the worker before ``exec``: SIGKILL when the actor's process dies (Linux), so no worker outlives it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class WorkerHost:
    """The actor that owns one worker process on a Ray node (``ray.remote`` is applied by the executor).

    The worker is started and waited for by a thread of its own (the parent-death signal is tied to
    the thread that forked), so the actor answers ``send`` and ``wait`` while it runs.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._code: int | None = None
        self._error: str | None = None
        self._stop_sig: int | None = None
        self._collected = threading.Event()

    def start(self, log_path: str, db_url: str, env: Mapping[str, str], cwd: str | None, cpu_only: bool) -> dict:
        """Start the worker (once); its pid and this node's name. A cancel that came first starts nothing."""
        with self._lock:
            if self._proc is None and not self._ended.is_set():
                if self._stop_sig is not None:
                    self._error = "cancelled before its worker started"
                    self._ended.set()
                else:
                    self._spawn(log_path, db_url, env, cwd, cpu_only)
            return {"pid": self._proc.pid if self._proc else 0, "node": socket.gethostname(), "error": self._error}

    def _spawn(self, log_path: str, db_url: str, env: Mapping[str, str], cwd: str | None, cpu_only: bool) -> None:
        ready = threading.Event()

        def keep() -> None:
            try:
                os.makedirs(os.path.dirname(log_path), exist_ok=True)
                fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
                try:
                    full_env = child_env(db_url, env)
                    if cpu_only:  # a run given no GPU by Ray must not find one
                        full_env["CUDA_VISIBLE_DEVICES"] = ""
                    self._proc = subprocess.Popen(
                        module_argv("core.worker", str(self.run_id)), stdin=subprocess.DEVNULL, stdout=fd,
                        stderr=subprocess.STDOUT, env=full_env, cwd=cwd if cwd and os.path.isdir(cwd) else None,
                        start_new_session=True, preexec_fn=_die_with_parent)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._error = f"could not start the worker on {socket.gethostname()}: {exc}"
                ready.set()
                self._ended.set()
                return
            ready.set()
            self._code = self._proc.wait()
            self._ended.set()
            # The actor goes once a scheduler has read the ending (or none came for it in time): its CPU and
            # GPU are freed even when the scheduler exits right after reading, or was stopped before it could.
            if self._collected.wait(LINGER_EXITED_S if self._code >= 0 else LINGER_S):
                time.sleep(0.2)  # the reply to ``collected`` goes out first
            os._exit(0)

        threading.Thread(target=keep, name=f"hrm-worker-{self.run_id}", daemon=True).start()
        ready.wait()

    def wait(self) -> dict:
        """Blocks until the worker ended: its exit code (negative: killed by that signal) or why it never ran."""
        self._ended.wait()
        return {"code": self._code, "error": self._error}

    def send(self, sig: int) -> bool:
        """Deliver ``sig`` to the worker's process group; before the worker started, keep it from starting."""
        with self._lock:
            if self._proc is None:
                self._stop_sig = sig
                return False
            if self._ended.is_set():
                return False
            return signal_group(self._proc.pid, sig)

    def stopped(self) -> bool:
        """True when the worker is stopped (SIGSTOP), as the scheduler's lost reason says."""
        return self._proc is not None and not self._ended.is_set() and is_stopped(self._proc.pid)

    def collected(self) -> None:
        """The scheduler has read the ending: the actor exits (see :meth:`_spawn`)."""
        self._collected.set()


# --- the scheduler's side ---------------------------------------------------------------------------

@dataclass
class _Tracked:
    """One run's actor as this scheduler sees it."""

    actor: Any
    name: str
    wait_ref: Any
    start_ref: Any = None
    started: bool = False
    node: str = ""
    code: int | None = None
    ended_seen: float | None = None


def _reason(exc: BaseException) -> str:
    """Ray's reason for an actor's death, in one line (its long advice left out)."""
    text = " ".join(str(exc).split())
    start = text.find("The actor is dead because")
    if start >= 0:
        text = text[start:]
    for cut in (" Some common causes", " The actor never ran"):
        if cut in text:
            text = text[:text.index(cut)]
    return (text[:400].rstrip() or type(exc).__name__)


class RayExecutor(Executor):
    """Each run's worker under a detached Ray actor; states read from Ray's object references."""

    name = "ray"

    def __init__(self, db, options: RayOptions | None = None, *, env: Mapping[str, str] | None = None,
                 settle_grace: float = 5.0) -> None:
        problem = ray_missing()
        if problem:
            raise RayError(problem)
        import ray

        self._ray = ray
        self.db = db
        self.options = options or RayOptions()
        self.address = self.options.resolved_address()
        self.env = dict(env or {})
        self.settle_grace = settle_grace
        self._connect()
        self._prefix = "hrm-" + hashlib.sha256(db.url.encode()).hexdigest()[:10] + "-"
        """Actor names: ``hrm-<registry>-<run id>-<claim>``, so that registries sharing a cluster never meet."""
        self._actor_class = ray.remote(WorkerHost)
        self._tracked: dict[int, _Tracked] = {}

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        probe_head(self.address)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError from ray.init
            raise RayError(f"cannot reach the Ray cluster at {self.address}: {_first_line(exc)}") from None
        finally:  # the scheduler's own SIGTERM/SIGINT handling stays in charge
            for sig, handler in saved.items():
                if handler is not None:
                    signal.signal(sig, handler)

    # --- submit -------------------------------------------------------------------------------
    def launch(self, run, slot: str) -> WorkerHandle:
        """Create the run's actor and ask it to start the worker; raises :class:`RayError` when Ray cannot take it."""
        ray = self._ray
        try:
            self._kill_leftovers(run.id)
            total = ray.cluster_resources().get("GPU", 0)
            gpus = self.options.num_gpus if self.options.num_gpus is not None else (1.0 if total > 0 else 0.0)
            if gpus > total:
                raise RayError(f"each run asks Ray for {gpus:g} GPU but the cluster at {self.address} has {total:g}")
            name = f"{self._prefix}{run.id}-{uuid.uuid4().hex[:8]}"
            actor = self._actor_class.options(
                name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=self.options.num_cpus, num_gpus=gpus,
                max_restarts=0, max_concurrency=16).remote(run.id)
            job_env = dict(self.env)
            if sqlite_path(self.db.url) is None:  # the run folders' base, wherever the actor runs
                job_env.setdefault("HRM_HOME", str(runs_root(self.db).parent))
            log_path = worker_log(self.db, run.id)
            start_ref = actor.start.remote(str(log_path), self.db.url, job_env, os.getcwd(), gpus == 0)
            wait_ref = actor.wait.remote()
            actor_id = actor._actor_id.hex()
        except RayError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray raises plain exceptions (a lost connection, a bad option)
            raise RayError(f"Ray refused the run: {_first_line(exc)}") from None
        self._tracked[run.id] = _Tracked(actor=actor, name=name, wait_ref=wait_ref, start_ref=start_ref)
        set_run_fields(self.db, run.id, {"executor": self.name, "external_id": actor_id, "external_state": "PENDING"})
        store.add_log(self.db, run.id, f"submitted to Ray as actor {actor_id} ({self.address}, {gpus:g} GPU)",
                      source="scheduler")
        return WorkerHandle(run_id=run.id, pid=0, slot=slot, log_path=log_path, external_id=actor_id)

    def _names_of(self, run_id: int) -> list[str]:
        prefix = f"{self._prefix}{run_id}-"
        return [n for n in self._ray.util.list_named_actors() if n.startswith(prefix)]

    def _kill_leftovers(self, run_id: int) -> None:
        """A run claimed again while an actor of an earlier claim lives (its scheduler died before it
        started the worker): that actor must not start a second worker, so it goes first."""
        for name in self._names_of(run_id):
            try:
                self._ray.kill(self._ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            except ValueError:  # gone meanwhile
                continue
            store.add_log(self.db, run_id, f"killed Ray actor {name}, left by an earlier claim of this run",
                          source="scheduler")

    # --- watch --------------------------------------------------------------------------------
    def poll(self, handle: WorkerHandle) -> int | None:
        """None while the actor's worker runs; once it ended, the run is settled and its code returned."""
        ray = self._ray
        job = self._tracked.get(handle.run_id)
        if job is None:
            return -1
        if job.code is not None:
            return job.code
        if not job.started and ray.wait([job.start_ref], timeout=0)[0]:
            job.started = True
            try:
                info = ray.get(job.start_ref)
            except Exception:  # noqa: BLE001 - the actor died: its wait reference says so below
                info = None
            if info and info["pid"]:
                handle.pid, job.node = info["pid"], info["node"]
                set_run_fields(self.db, handle.run_id, {"external_state": "RUNNING", "pid": info["pid"]})
                store.add_log(self.db, handle.run_id, f"Ray actor {handle.external_id} started the worker "
                              f"(pid {info['pid']} on {info['node']})", source="scheduler")
        if not ray.wait([job.wait_ref], timeout=0)[0]:
            return None
        died: str | None = None
        outcome: dict = {}
        try:
            outcome = ray.get(job.wait_ref)
        except Exception as exc:  # noqa: BLE001 - RayActorError (process killed, node lost) and kin
            died = _reason(exc)
        code = self._settle(handle, job, outcome, died)
        if code is None:
            return None
        job.code = code
        self._release(job)
        return code

    def _settle(self, handle: WorkerHandle, job: _Tracked, outcome: dict, died: str | None) -> int | None:
        run = store.get_run(self.db, handle.run_id)
        if run is None:
            return -1
        status = RunStatus(run.status)
        where = f"Ray actor {handle.external_id}" + (f" on {job.node}" if job.node else "")
        if died is not None:
            code = -signal.SIGKILL
            if status.is_terminal and not (status == RunStatus.CANCELLED and not run.cancel_requested):
                set_run_fields(self.db, run.id, {"external_state": "DEAD"})
                return code  # the worker wrote its ending before the actor went
            if run.cancel_requested:
                self._finish(run, RunStatus.CANCELLED, f"cancelled by request ({where} was killed)", "DEAD", code)
            else:
                self._finish(run, RunStatus.LOST, f"{where} died: {died}", "DEAD", code)
            return code
        code = outcome.get("code")
        code = -1 if code is None else code
        if status.is_terminal:
            set_run_fields(self.db, run.id, {"external_state": "FINISHED",
                                             **({"exit_code": code} if run.exit_code is None else {})})
            return code  # the worker's own ending stands
        if code >= 0 and not outcome.get("error"):
            first = job.ended_seen = job.ended_seen or time.monotonic()
            if time.monotonic() - first < self.settle_grace:
                return None  # the worker's final write may still be on its way
        how = f"exit {code}" if code >= 0 else signal_name(code)
        if run.cancel_requested:
            status, error = RunStatus.CANCELLED, f"cancelled by request ({outcome.get('error') or how}, {where})"
        elif outcome.get("error"):
            status, error = RunStatus.FAILED, f"{where}: {outcome['error']}"
        elif code < 0:
            status, error = RunStatus.FAILED, f"worker killed by {how} ({where}) without a final status"
        else:
            status, error = RunStatus.FAILED, f"worker exited with code {code} without a final status ({where})"
        self._finish(run, status, error, "FINISHED", code)
        return code

    def _finish(self, run, status: RunStatus, error: str, state: str, code: int) -> None:
        """Settle the run from Ray's verdict over a non-final status (or an unexplained ``cancelled``); rows untouched."""
        now = time.time()
        values: dict[str, Any] = {"status": status.value, "error": error, "external_state": state, "exit_code": code,
                                  "finished_at": now, "updated_at": now}
        printed = tail(worker_log(self.db, run.id))
        if printed:
            values["stderr_tail"] = printed
        if settle_from_executor(self.db, run.id, values):
            store.add_log(self.db, run.id, f"{status.value}: {error}", source="scheduler")

    def _release(self, job: _Tracked) -> None:
        """The ending is read: the actor goes, and Ray frees its CPU and GPU. Told and waited for, not only
        ``ray.kill``-ed: a kill still in flight when this scheduler exits (``--once``) would be dropped."""
        try:
            self._ray.get(job.actor.collected.remote(), timeout=_SEND_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - already dead, or it exited before answering
            log.debug("Ray actor %s: %s", job.name, exc)
        try:
            self._ray.kill(job.actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001
            log.debug("Ray actor %s: %s", job.name, exc)

    # --- stop ---------------------------------------------------------------------------------
    def signal(self, handle: WorkerHandle, sig: int) -> None:
        """``sig`` to the worker's process group through its actor; SIGKILL also kills the actor."""
        job = self._tracked.get(handle.run_id)
        if job is None:
            return
        if sig == signal.SIGKILL:
            self._kill(job)
            return
        try:
            job.actor.send.remote(int(sig))
        except Exception as exc:  # noqa: BLE001 - the actor is gone: its wait reference says so
            log.warning("Ray actor %s: could not deliver %s: %s", job.name, signal_name(-sig), _first_line(exc))

    def _kill(self, job: _Tracked) -> None:
        ray = self._ray
        try:  # the whole group first (the worker's own children); the worker alone would die with the actor
            ray.get(job.actor.send.remote(int(signal.SIGKILL)), timeout=_SEND_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - an actor that does not answer is killed all the same
            pass
        try:
            ray.kill(job.actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001
            log.debug("Ray actor %s: %s", job.name, exc)

    def is_stopped(self, handle: WorkerHandle) -> bool:
        job = self._tracked.get(handle.run_id)
        if job is None:
            return False
        try:
            return bool(self._ray.get(job.actor.stopped.remote(), timeout=_SEND_TIMEOUT_S))
        except Exception:  # noqa: BLE001
            return False

    def adopt(self, run) -> WorkerHandle | None:
        """The live actor of a run this scheduler's name submitted before a restart, found by name and id."""
        actor_id = getattr(run, "external_id", None)
        if getattr(run, "executor", None) != self.name or not actor_id:
            return None
        ray = self._ray
        for name in self._names_of(run.id):
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
            if actor._actor_id.hex() != actor_id:
                continue
            self._tracked[run.id] = _Tracked(actor=actor, name=name, wait_ref=actor.wait.remote(), started=True,
                                             node=run.host or "")
            return WorkerHandle(run_id=run.id, pid=run.pid or 0, slot=run.gpu or "cpu",
                                log_path=worker_log(self.db, run.id), external_id=actor_id)
        return None


def probe_head(address: str, timeout: float = 5.0) -> None:
    """RayError when a ``HOST:PORT`` head does not accept connections (``ray.init`` would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # ``auto`` and the like: ray.init finds the cluster (or says it found none) by itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
