"""Output parameters for Argo: one file per parameter, read by `valueFrom.path`."""

from __future__ import annotations

import pathlib


def write_outputs(outputs_dir: str | None, values: dict[str, object]) -> None:
    if not outputs_dir:
        return
    folder = pathlib.Path(outputs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (folder / name).write_text(str(value))
