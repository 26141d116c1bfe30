"""Command-line options made from the config dataclasses, so help and defaults have one source.

Every config field is documented where it is declared (a docstring under the
field). `add_field` turns a field into an argparse option: its type, its
default (or required when it has none) and its help, which is the field's
docstring as `simple-parsing` reads it from the source. The help formatter of
`Parser` shows each option's default. The workflow builders take their Argo
parameter descriptions from the same docstrings (`field_doc`).

Why simple-parsing for the docstrings only, and not its whole parser (or tyro,
or typer): avfleet's flags are a contract with the rendered Argo manifests,
which pass them by name; generating names from field paths
(`--scan.storage.s3-region`) would rename every flag in every manifest, and
most commands expose a few fields of nested configs, not all of them. Reading
attribute docstrings from source is the part worth not writing ourselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from typing import Any

from simple_parsing.docstring import get_attribute_docstring


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default after its help (none for flags and required options)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.required
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)  # flags say what they switch
            or default in ([], ())
            or "(default" in help_text
            or isinstance(action, argparse._VersionAction)
        ):
            return help_text
        shown = "''" if default == "" else "%(default)s"
        return f"{help_text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """argparse with DefaultsFormatter; subcommands' parsers are made of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


@functools.cache
def field_doc(cls: type, name: str) -> str:
    """The docstring under a config field (one line; its first sentence block)."""
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    doc = get_attribute_docstring(cls, name)
    text = doc.docstring_below or doc.comment_inline or doc.comment_above or ""
    return " ".join(text.split())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A config's resolved field types (every CLI call builds every parser: resolve once)."""
    return typing.get_type_hints(cls)


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def add_field(
    parser: argparse.ArgumentParser, cls: type, name: str, *flags: str, **overrides: Any
) -> argparse.Action:
    """An option for `cls.name`: flags default to --name-with-dashes; `overrides` go to
    add_argument (help, dest, default, choices, metavar...)."""
    f = _field(cls, name)
    hint = _unwrap_optional(_hints(cls)[name])
    kwargs: dict[str, Any] = {"help": field_doc(cls, name).replace("%", "%%")}
    if f.default is not dataclasses.MISSING:
        kwargs["default"] = f.default
    elif f.default_factory is not dataclasses.MISSING:
        kwargs["default"] = f.default_factory()
    else:
        kwargs["required"] = True
    origin = typing.get_origin(hint)
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin in (tuple, list):
        kwargs["nargs"] = "*"
        kwargs["type"] = typing.get_args(hint)[0]
        kwargs["default"] = list(kwargs.get("default") or [])
    elif hint in (int, float, str):
        kwargs["type"] = hint
    kwargs.update(overrides)
    return parser.add_argument(*(flags or (f"--{name.replace('_', '-')}",)), **kwargs)


def add_fields(
    parser: argparse.ArgumentParser,
    cls: type,
    names: typing.Iterable[str] | None = None,
    **defaults: Any,
) -> list[str]:
    """An option per field of `cls` (all of them by default); `defaults` override fields'
    defaults for this command. Returns the field names, for `from_args`."""
    names = list(names) if names is not None else [f.name for f in dataclasses.fields(cls)]
    for name in names:
        add_field(parser, cls, name, **({"default": defaults[name]} if name in defaults else {}))
    return names


def from_args(
    cls: type, args: argparse.Namespace, names: typing.Iterable[str] | None = None, **more: Any
) -> Any:
    """`cls` built from the options `add_fields` made for `names` (all fields by default) and
    `more`."""
    if names is None:
        names = [f.name for f in dataclasses.fields(cls)]
    values = {n: getattr(args, n) for n in names}
    hints = _hints(cls)
    for n, v in values.items():
        if typing.get_origin(_unwrap_optional(hints[n])) is tuple and isinstance(v, list):
            values[n] = tuple(v)
    return cls(**values, **more)


def add_outputs_dir(parser: argparse.ArgumentParser) -> None:
    """Where an Argo step's output parameters go (one file per value)."""
    parser.add_argument(
        "--outputs-dir",
        default=None,
        help="write this command's results here, one file per value (Argo output parameters)",
    )


def add_input_hw(parser: argparse.ArgumentParser) -> None:
    """The frame size a latency table is profiled at (latency profile, nas profile)."""
    parser.add_argument(
        "--input-hw",
        type=int,
        nargs=2,
        default=[64, 128],
        metavar=("H", "W"),
        help="the camera frame the nets run on, height and width",
    )


def add_json_flags(parser: argparse.ArgumentParser) -> None:
    """`--json` on every command (leaf parser): print the result as one JSON document."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        if not any("--json" in a.option_strings for a in parser._actions):
            parser.add_argument(
                "--json", action="store_true", help="print the result as JSON (on stdout)"
            )
        return
    for sub in subs:
        for child in sub.choices.values():
            add_json_flags(child)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def emit(
    args: argparse.Namespace, result: Any, text: str | typing.Callable[[], None] | None = None
) -> None:
    """A command's result on stdout: JSON with --json; else `text` (a string, or a function
    that prints), or the result's own str."""
    import json

    if getattr(args, "json", False):
        print(json.dumps(result, default=_jsonable, sort_keys=True))
    elif callable(text):
        text()
    else:
        print(result if text is None else text)


def say(args: argparse.Namespace, line: str) -> None:
    """A progress line: stdout for people, stderr under --json (stdout holds the JSON)."""
    import sys

    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)
