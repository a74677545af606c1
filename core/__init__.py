"""hrm-tui's headless core: experiments, models, data, registry, scheduler and worker.

Nothing in here imports a UI library (Textual, Typer, Rich); import-linter enforces it.
"""
