"""Progress bars for long work in the CLI (rich), silent when not on a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Protocol


class Progress(Protocol):
    def advance(self, amount: float = 1) -> None: ...


class _Null:
    def advance(self, amount: float = 1) -> None:
        pass


class _Rich:
    def __init__(self, bar: object, task_id: object) -> None:
        self._bar = bar
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        self._bar.advance(self._task_id, amount)  # type: ignore[attr-defined]


@contextlib.contextmanager
def progress(
    description: str, total: float | None, enabled: bool | None = None
) -> Iterator[Progress]:
    """A progress bar over `total` units; `enabled=None` shows it only on a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _Null()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield _Rich(bar, bar.add_task(description, total=total))
