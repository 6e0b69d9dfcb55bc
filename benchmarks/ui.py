"""Terminal output: rich progress bars and tables when rich is installed, plain
lines otherwise (``make test`` runs ``--quick`` with the test extras only)."""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any

_MARKUP = re.compile(r"\[/?[a-z][a-z ]*\]|\[/\]")


class PlainConsole:
    """The subset of ``rich.console.Console`` the harness uses, as plain text."""

    def print(self, *objects: Any, **_kwargs: Any) -> None:
        text = " ".join(str(o) for o in objects)
        print(_MARKUP.sub("", text), file=sys.stderr, flush=True)


class PlainProgress:
    """A stand-in for ``rich.progress.Progress`` that shows nothing."""

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **_kwargs: Any) -> int:
        return 0

    def update(self, task: Any, **_kwargs: Any) -> None:
        return None


def make_ui() -> tuple[Any, Any]:
    """(console, progress): rich's when available, plain stand-ins otherwise."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        plain = PlainConsole()
        plain.print("(rich is not installed: plain output; pip install rich for progress bars)")
        return plain, PlainProgress()
    # a fixed width when not on a terminal, so each result stays on one line in logs
    console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    return console, progress


def print_table(console: Any, title: str, header: list[str], rows: list[list[str]]) -> None:
    """A rich table, or the same rows as a Markdown table."""
    try:
        from rich.table import Table
    except ImportError:
        console.print(title)
        console.print("| " + " | ".join(header) + " |")
        for row in rows:
            console.print("| " + " | ".join(row) + " |")
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
