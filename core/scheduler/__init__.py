"""The scheduler: turns queued runs into worker processes on GPU (or CPU) slots, one scheduler per host."""

from core.scheduler.executor import Executor, LocalExecutor
from core.scheduler.loop import Scheduler, SchedulerAlreadyRunning, Slots, detect_gpus

__all__ = ["Executor", "LocalExecutor", "Scheduler", "SchedulerAlreadyRunning", "Slots", "detect_gpus"]
