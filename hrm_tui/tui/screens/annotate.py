"""A one-line prompt in a modal: edit a run's tags (``+a -b``) or its note after submit.

The answer is checked as it is typed (the check is the caller's), so a mistake shows in one line
under the field and enter does nothing until it is fixed; escape leaves everything as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

TAG_CHANGE = re.compile(r"[+-]\S+")


def parse_tag_changes(text: str, check_tag: Callable[[str], None] | None = None) -> tuple[list[str], list[str]]:
    """``+a -b +c`` → (["a", "c"], ["b"]); ValueError says which word is wrong.

    ``check_tag`` (``core.api.edit_tags_check``) raises on a tag the registry refuses."""
    add: list[str] = []
    remove: list[str] = []
    for word in text.split():
        if not TAG_CHANGE.fullmatch(word):
            raise ValueError(f"{word!r}: write +TAG to add a tag or -TAG to remove one")
        tag = word[1:]
        if check_tag is not None:
            try:
                check_tag(tag)
            except Exception as exc:  # a UserError from core.api: its message is the line to show
                raise ValueError(str(exc)) from None
        (add if word[0] == "+" else remove).append(tag)
    return add, remove


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the text typed (enter, once ``check`` accepts it) or None (escape)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, *, value: str = "", placeholder: str = "", hint: str = "",
                 check: Callable[[str], str | None] | None = None, id: str | None = None) -> None:
        """``check(text)`` returns the problem in words, or None when the text can be saved."""
        super().__init__(classes="modal", id=id)
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.hint = hint
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog prompt-box"):
            yield Label(self.title_text, classes="dialog-title")
            if self.hint:
                yield Static(self.hint, classes="prompt-hint", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error", markup=False)
            yield Static("enter saves · esc cancels", classes="prompt-hint")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).focus()

    def problem(self, text: str) -> str | None:
        return self.check(text) if self.check is not None else None

    @on(Input.Changed, "#prompt-input")
    def _changed(self, event: Input.Changed) -> None:
        self._show(self.problem(event.value))

    @on(Input.Submitted, "#prompt-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        problem = self.problem(event.value)
        self._show(problem)
        if problem is None:
            self.dismiss(event.value)

    def _show(self, problem: str | None) -> None:
        line = self.query_one("#prompt-error", Static)
        line.update(problem or "")
        line.display = problem is not None

    def action_cancel(self) -> None:
        self.dismiss(None)


def tags_prompt(run_id: int, tags: Sequence[str], check_tag: Callable[[str], None]) -> PromptScreen:
    """The tags editor: the run's tags shown, changes typed as ``+new -old``."""

    def check(text: str) -> str | None:
        try:
            add, remove = parse_tag_changes(text, check_tag)
        except ValueError as exc:
            return str(exc)
        return None if add or remove else "nothing to change: +TAG adds a tag, -TAG removes one"

    current = ", ".join(tags) if tags else "(none)"
    return PromptScreen(f"Tags of run {run_id}", placeholder="+paper -sweep-1", hint=f"now: {current}",
                        check=check, id="tags-prompt")


def note_prompt(run_id: int, note: str | None) -> PromptScreen:
    """The note editor: the current note to edit; an empty note removes it."""

    def check(text: str) -> str | None:
        return "a note is at most 10,000 characters" if len(text) > 10_000 else None

    return PromptScreen(f"Note of run {run_id}", value=" ".join((note or "").splitlines()), placeholder="what to remember about this run",
                        hint="an empty note removes it; hrm ls --where \"note ~ 'word'\" finds it",
                        check=check, id="note-prompt")
