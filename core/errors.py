"""Errors a user can cause, shared by every front end: one line, no traceback, an exit code.

Kept free of imports so that a front end can catch :class:`UserError` without loading the core.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: one line, no traceback. ``exit_code`` 2 = usage, 1 = runtime."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
