"""The scheduler: turns queued runs into worker processes on GPU (or CPU) slots."""

from core.scheduler.loop import Scheduler, SchedulerAlreadyRunning, Slots, detect_gpus

__all__ = ["Scheduler", "SchedulerAlreadyRunning", "Slots", "detect_gpus"]
