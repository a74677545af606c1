"""The new-run form, generated from ``describe(experiment)``; validated by ``api.validate_config``.

Inputs are passed to pydantic as typed text (its lax mode parses ``"3"`` as an int), exactly the
validation the CLI's options go through, so an error reads the same in both: ``--epochs: ...``.
"""

from __future__ import annotations

import re
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from core import api

ERROR_FIELD = re.compile(r"--([a-z0-9-]+):")

_INPUT_HINTS = {"int": "a whole number", "float": "a number", "str": "text",
                "list[int]": "whole numbers, comma separated", "list[float]": "numbers, comma separated",
                "list[str]": "words, comma separated"}


def input_hint(type_name: str) -> str:
    """What to type into a field, in words (the catalog's type names are Python's: ``list[float]``)."""
    return _INPUT_HINTS.get(type_name, type_name)


class NewRunScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with ``{experiment, values, tags, priority, start_scheduler}`` or None."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("ctrl+s", "submit", "Queue run")]

    def __init__(self, experiment: str | None = None, *, start_scheduler: bool = True) -> None:
        super().__init__(classes="modal")
        names = api.experiment_names()
        self.experiment = experiment if experiment in names else names[0]
        self.start_scheduler = start_scheduler
        self.params: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="new-run", classes="dialog"):
            yield Label("New run", classes="dialog-title")
            yield Select([(n, n) for n in api.experiment_names()], value=self.experiment, allow_blank=False, id="experiment",
                         compact=True)
            yield Static(id="experiment-description")
            yield VerticalScroll(id="fields")
            with Horizontal(id="run-options"):
                yield Label("tags", classes="field-name")
                yield Input(placeholder="comma separated", id="tags", compact=True)
                yield Label("priority", classes="option-name")
                yield Input("0", id="priority", type="integer", compact=True)
            yield Checkbox("start a background scheduler if none is alive", self.start_scheduler,
                           id="start-scheduler", compact=True)
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Queue (ctrl+s)", variant="primary", id="submit", compact=True)
                yield Button("Close (esc)", id="close", compact=True)

    async def on_mount(self) -> None:
        await self._build_fields()

    @on(Select.Changed, "#experiment")
    async def _experiment_changed(self, event: Select.Changed) -> None:
        if event.value != self.experiment and isinstance(event.value, str):
            self.experiment = event.value
            await self._build_fields()

    async def _build_fields(self) -> None:
        entry = api.describe_experiment(self.experiment)
        self.params = entry["parameters"]
        self.query_one("#experiment-description", Static).update(entry["description"])
        self.query_one("#form-error", Static).display = False
        fields = self.query_one("#fields", VerticalScroll)
        await fields.remove_children()
        await fields.mount_all([self._field(p) for p in self.params])
        fields.set_class(len(self.params) + 2 > self.app.size.height * 0.45, "-scrolls")

    @staticmethod
    def _field(param: dict[str, Any]) -> Widget:
        name, default = param["name"], param["default"]
        if param["choices"]:
            editor: Widget = Select([(c, c) for c in param["choices"]], value=str(default), allow_blank=False,
                                    id=f"field-{name}", compact=True)
        elif param["type"] == "bool":
            editor = Checkbox("", bool(default), id=f"field-{name}", compact=True)
        else:
            text = "" if default is None else ",".join(map(str, default)) if isinstance(default, list) else str(default)
            editor = Input(text, placeholder=input_hint(param["type"]), id=f"field-{name}", compact=True)
        hint = " · ".join(x for x in (param["bounds"] or input_hint(param["type"]), param["description"]) if x)
        return Vertical(
            Horizontal(Label(name.replace("_", "-"), classes="field-name"), editor,
                       Static(hint, classes="field-hint"), classes="field-row"),
            Static("", classes="field-error", id=f"error-{name}"),
            classes="field",
        )

    def _values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in self.params:
            name, default = param["name"], param["default"]
            editor = self.query_one(f"#field-{name}")
            if isinstance(editor, (Select, Checkbox)):
                values[name] = editor.value
                continue
            text = editor.value.strip()  # type: ignore[attr-defined]
            if text == "":
                continue
            if param["type"].startswith("list"):
                values[name] = [part.strip() for part in text.split(",") if part.strip()]
            else:
                values[name] = default if text == str(default) else text
        return values

    def _show_error(self, field: str | None, message: str) -> None:
        """Under the field the error names, else under the form."""
        names = {p["name"] for p in self.params}
        for name in names:
            box = self.query_one(f"#error-{name}", Static)
            box.update(message if name == field else "")
            box.display = name == field
        general = self.query_one("#form-error", Static)
        general.update("" if field in names else message)
        general.display = bool(message) and field not in names

    def on_descendant_focus(self) -> None:
        """Mark the field being edited (its name is highlighted: see ``.field.-current`` in hrm.tcss)."""
        focused = self.focused
        for field in self.query(".field"):
            field.set_class(focused is not None and field in focused.ancestors, "-current")

    @on(Input.Submitted)
    def _next_field(self, event: Input.Submitted) -> None:
        """Enter in a field moves to the next one; only ctrl+s or the Queue button submit."""
        event.stop()
        self.focus_next()

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        values = self._values()
        try:
            api.validate_config(self.experiment, values)
            priority = int(self.query_one("#priority", Input).value or 0)
        except api.UserError as exc:
            match = ERROR_FIELD.search(str(exc))
            field = match.group(1).replace("-", "_") if match else None
            self._show_error(field, str(exc))
            if field and self.query(f"#field-{field}"):
                self.query_one(f"#field-{field}").focus()
            return
        except ValueError:
            self._show_error(None, "priority must be an integer")
            return
        tags = [t.strip() for t in self.query_one("#tags", Input).value.split(",") if t.strip()]
        self.dismiss({"experiment": self.experiment, "values": values, "tags": tags, "priority": priority,
                      "start_scheduler": self.query_one("#start-scheduler", Checkbox).value})

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
