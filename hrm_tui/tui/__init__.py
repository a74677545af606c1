"""``hrm-tui``: the Textual dashboard over the run registry (entry point: :func:`hrm_tui.tui.app.main`)."""
