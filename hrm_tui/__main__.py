"""``python -m hrm_tui`` is ``hrm``."""

from hrm_tui.cli import main

main()
