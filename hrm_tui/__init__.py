"""hrm-tui's front ends: the ``hrm`` CLI, Rich rendering and the Textual dashboard."""
