"""The worker's SIGTERM handling stays inside ``execute``: an in-line call leaves the caller's handler as it was.

Before the fix, ``execute`` left SIGTERM ignored in the calling process; every child started afterwards
inherited that (ignored signals survive ``exec``), so a later test could not stop its script with SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess

from core.registry import store
from core.worker import execute


def test_execute_restores_the_callers_sigterm_handler(db):
    before = signal.getsignal(signal.SIGTERM)
    run = store.create_run(db, "smoke", {"epochs": 1})
    assert execute(db.url, run.id) == 0
    assert signal.getsignal(signal.SIGTERM) == before
    ignored = subprocess.run(["grep", "SigIgn", "/proc/self/status"], capture_output=True, text=True).stdout
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)) == 0, "a child would inherit an ignored SIGTERM"
