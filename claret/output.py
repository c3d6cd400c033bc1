"""Where the CLI's results go: stdout for results (text for people, one JSON document for scripts),
stderr for progress bars and errors, so a script that parses stdout never sees a bar.

Text keeps the original ``clara`` shapes scripts rely on (``JOB_ID:<id>`` lines, ``Key: value`` lines);
tables are rich tables without borders (``NAME  ID``), which read well and still split on whitespace.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Self, cast

import click

if TYPE_CHECKING:  # rich is imported where it is used: most verbs print plain lines, and start-up counts
    from rich.console import Console, RenderableType
    from rich.progress import Progress, TaskID
    from rich.table import Table

__all__ = [
    "PIPE_WIDTH",
    "Output",
    "QuietProgress",
    "Rows",
    "duration",
    "shown",
    "table",
    "when",
]

PIPE_WIDTH = 1000
"""Line width when stdout is not a terminal: wide enough that tables of ids never wrap in a pipe."""


def when(moment: datetime | None) -> str | None:
    """A UTC time as ISO 8601 to the second, or None when unset."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """How long, to the second, in the two largest units that matter: "45 s", "3 min 4 s", "2 h 5 min"."""
    whole = max(int(seconds), 0)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def shown(value: str | None) -> str:
    """A value for text output: ``-`` when there is none."""
    return value if value else "-"


@dataclass(frozen=True)
class Rows:
    """A borderless table with a bold header row, one row per item. It becomes rich's ``Table`` only when
    printed as text (rich asks for it through ``__rich__``): with ``--output json`` rich is never imported."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]

    def __rich__(self) -> Table:
        from rich.table import Table

        grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        for column in self.columns:
            grid.add_column(column, overflow="fold")
        for row in self.rows:
            grid.add_row(*row)
        return grid


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Rows:
    """The table of ``rows`` under ``columns`` (see :class:`Rows`)."""
    return Rows(columns, rows)


class Output:
    """The result of one command, as text or as JSON (``--output json``), and its progress bars."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode

    @cached_property
    def err(self) -> Console:
        """The console on stderr (for progress displays)."""
        from rich.console import Console

        return Console(stderr=True, highlight=False, markup=False, emoji=False)

    def result(self, document: object, *text: str | RenderableType) -> None:
        """Print ``document`` as JSON, or else each text item."""
        if self.json_mode:
            click.echo(json.dumps(document, indent=2))
        else:
            self.text(*text)

    def text(self, *items: str | RenderableType) -> None:
        """Print text items (only in text mode): strings as they are, renderables through rich."""
        if not self.json_mode:
            for item in items:
                click.echo(item if isinstance(item, str) else self._render(item))

    def _render(self, item: RenderableType) -> str:
        """Render through rich (created per call, so it writes to the stdout of the moment) without the
        trailing spaces rich pads table rows with."""
        from rich.console import Console

        console = Console(highlight=False, markup=False, emoji=False)
        if not console.is_terminal:
            console.width = PIPE_WIDTH
        with console.capture() as captured:
            console.print(item)
        return "\n".join(line.rstrip() for line in captured.get().rstrip("\n").split("\n"))

    def progress(self, *, transfer: bool) -> Progress | QuietProgress:
        """A progress display on stderr, shown only when stderr is a terminal; bytes for transfers, else
        completed steps. Where stderr is certainly no terminal (a script's pipe or file), one that shows
        nothing, without importing rich."""
        if not _maybe_terminal():
            return QuietProgress()
        from rich.progress import (  # only verbs that wait or transfer show progress
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
        columns += [DownloadColumn(), TransferSpeedColumn()] if transfer else [MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        return Progress(*columns, console=self.err, transient=True, disable=not self.err.is_terminal)


def _maybe_terminal() -> bool:
    """Whether rich could take stderr for a terminal: False only where its ``Console.is_terminal`` would
    say False too (no tty, and neither ``TTY_COMPATIBLE=1`` nor a non-empty ``FORCE_COLOR`` says otherwise);
    where this says True, rich decides."""
    if os.environ.get("TTY_COMPATIBLE") == "1" or os.environ.get("FORCE_COLOR"):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one: rich says no terminal too
        return False


class QuietProgress:
    """The part of rich's ``Progress`` the verbs use, showing nothing (as rich's does when disabled)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def add_task(self, description: str, **_options: object) -> TaskID:
        return cast("TaskID", 0)  # rich's TaskID is a NewType of int

    def update(self, task_id: TaskID, **_changes: object) -> None:
        return None

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        return None
