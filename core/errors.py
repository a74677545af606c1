"""Errors a user can cause, shared by every front end: one line, no traceback, an exit code.

Kept free of imports so that a front end can catch :class:`UserError` without loading the core.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: one line, no traceback. ``exit_code`` 2 = usage, 1 = runtime."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TrackingError(Exception):
    """A tracking-client call that cannot be honoured (``hrm_tui.init`` and its run): one line.

    A bad argument (a layer that is not an integer, a metric that is not a number), a call after
    ``finish()``, a run that does not exist. Nothing is written when it is raised.
    """


class RunCancelled(TrackingError):
    """``hrm cancel`` (or another process) ended the tracked run: the script should stop."""
