"""Argo's template variables and retry expressions, for the local executor.

`substitute` replaces {{...}} tokens strictly: an unknown name is an error
naming it, not a silent empty string. `evaluate_retry_expression` evaluates
the subset of expr-lang that retryStrategy.expression uses (comparisons,
&& || !, asInt/asFloat, string and number literals) on `lastRetry`;
`evaluate_condition` a task's `when` after substitution (govaluate in Argo:
comparisons, && || !, quoted strings, numbers, true/false, and a bare word
as the string it spells, as in Argo's `{{steps.flip.outputs.result}} == heads`).
Both go through a whitelisted Python AST, never eval.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from avfleet.core.errors import PermanentError

_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def substitute(text: str, values: dict[str, str], where: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("="):
            return evaluate_tag(name[1:], values, where)
        if name not in values:
            raise PermanentError(
                f"{where}: cannot resolve {{{{{name}}}}} (known: {', '.join(sorted(values)) or 'none'})"
            )
        return str(values[name])

    return _TOKEN.sub(one, text)


def substitute_all(value: Any, values: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        return substitute(value, values, where)
    if isinstance(value, list):
        return [substitute_all(v, values, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute_all(v, values, where) for k, v in value.items()}
    return value


_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.Call,
    ast.List,
    ast.Tuple,
)


def _to_python(expression: str) -> str:
    # expr-lang -> Python: || && and a leading ! (not !=).
    text = expression.replace("||", " or ").replace("&&", " and ")
    return re.sub(r"!(?!=)", " not ", text)


def _parse(expression: str, what: str, allowed: tuple[type, ...]) -> ast.Expression:
    """The expression's Python AST, every node one of `allowed`; PermanentError naming `what`."""
    try:
        tree = ast.parse(_to_python(expression).strip(), mode="eval")
    except SyntaxError as e:
        raise PermanentError(f"{what} {expression!r} does not parse") from e
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise PermanentError(
                f"{what} {expression!r}: {type(node).__name__} is not supported locally"
            )
    return tree


def evaluate_retry_expression(expression: str, last_retry: dict[str, str]) -> bool:
    tree = _parse(expression, "retryStrategy.expression", _ALLOWED)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in ("asInt", "asFloat")
        ):
            raise PermanentError(
                f"retryStrategy.expression {expression!r}: only asInt/asFloat calls are supported"
            )
        if isinstance(node, ast.Name) and node.id not in ("lastRetry", "asInt", "asFloat"):
            raise PermanentError(
                f"retryStrategy.expression {expression!r}: unknown name {node.id!r}"
            )

    class LastRetry:
        exitCode = last_retry.get("exitCode", "")  # noqa: N815 - Argo's name
        status = last_retry.get("status", "")
        duration = last_retry.get("duration", "0")
        message = last_retry.get("message", "")

    def as_int(v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            return -1  # Argo: a missing exit code never equals a real one

    scope = {"lastRetry": LastRetry, "asInt": as_int, "asFloat": float, "__builtins__": {}}
    return bool(eval(compile(tree, "<retry expression>", "eval"), scope))  # noqa: S307 - AST whitelisted above


_CONDITION_NODES = tuple(
    n for n in _ALLOWED if n not in (ast.Attribute, ast.Call, ast.List, ast.Tuple)
)


def evaluate_condition(expression: str) -> bool:
    """A `when` (already substituted): true or false, or a PermanentError naming what is wrong."""
    tree = _parse(expression, "when", _CONDITION_NODES)

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):  # a bare word: itself, or a boolean
            return {"true": True, "false": False}.get(node.id, node.id)
        if isinstance(node, ast.UnaryOp):
            return not value(node.operand)
        if isinstance(node, ast.BoolOp):
            parts = [bool(value(v)) for v in node.values]
            return all(parts) if isinstance(node.op, ast.And) else any(parts)
        if isinstance(node, ast.Compare):
            left = value(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = value(right_node)
                if not _compare(op, left, right, expression):
                    return False
                left = right
            return True
        return value(node.body) if isinstance(node, ast.Expression) else None

    return bool(value(tree))


def _compare(op: ast.cmpop, left: Any, right: Any, expression: str) -> bool:
    if isinstance(op, ast.Eq | ast.NotEq):
        same = left == right or (str(left) == str(right))
        return same if isinstance(op, ast.Eq) else not same
    try:  # ordering: numbers when both are numbers, as govaluate
        a, b = float(left), float(right)
    except (TypeError, ValueError) as e:
        raise PermanentError(f"when {expression!r}: cannot order {left!r} and {right!r}") from e
    return {ast.Lt: a < b, ast.LtE: a <= b, ast.Gt: a > b, ast.GtE: a >= b}[type(op)]


# Expression tags in resource manifests (avfleet.workflows.common.harden): toJson of a
# concatenation of string literals and parameters, asInt/asFloat of one parameter. Argo
# evaluates them with expr-lang; locally a whitelisted AST does the same few things.
_MANIFEST_NODES = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Subscript,
    ast.Constant,
    ast.BinOp,
    ast.Add,
)


def evaluate_tag(expression: str, values: dict[str, str], where: str) -> str:
    """The text an `{{=...}}` tag renders to (toJson -> a JSON string, asInt/asFloat -> a
    number), or a PermanentError naming the parameter that is not what the tag needs."""
    import json

    tree = _parse(expression, f"{where}: expression", _MANIFEST_NODES)

    def name_of(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{name_of(node.value)}.{node.attr}"
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return f"{name_of(node.value)}.{node.slice.value}"
        raise PermanentError(f"{where}: {expression!r} is not a parameter reference")

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return str(value(node.left)) + str(value(node.right))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or len(node.args) != 1:
                raise PermanentError(f"{where}: {expression!r}: unsupported call")
            arg = value(node.args[0])
            fn = node.func.id
            try:
                if fn == "toJson":
                    return json.dumps(arg)
                if fn == "asInt":
                    return int(str(arg).strip(), 10)
                if fn == "asFloat":
                    return float(str(arg))
            except ValueError:
                raise PermanentError(
                    f"{where}: {arg!r} is not {'an integer' if fn == 'asInt' else 'a number'} "
                    f"({expression})"
                ) from None
            raise PermanentError(f"{where}: {expression!r}: unknown function {fn!r}")
        name = name_of(node)
        if name not in values:
            raise PermanentError(f"{where}: cannot resolve {name} in {{{{={expression}}}}}")
        return values[name]

    return str(value(tree.body))
