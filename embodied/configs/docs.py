"""``--help`` for config dataclasses: every field with its value and its one-line doc.

The docs are the comments written beside (or just above) each field in the dataclass source, so the one place a
default is explained is also what ``embodied <command> --help`` prints.
"""

from __future__ import annotations

import inspect
import io
import tokenize
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: its comment} for a dataclass, from its own source and its bases' (nearest class wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if is_dataclass(klass):
            docs.update(_comments(klass))
    return docs


def _comments(cls: type) -> dict[str, str]:
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in fields(cls)}
    docs: dict[str, str] = {}
    pending: list[str] = []  # comment lines above the next field
    line_name: dict[int, str] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError):
        return {}
    for index, token in enumerate(tokens):
        if token.type == tokenize.NAME and token.start[1] == 4 and token.string in names:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and following.string == ":":
                line_name[token.start[0]] = token.string
                if pending:
                    docs[token.string] = " ".join(pending)
                pending = []
        elif token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if text.startswith("fmt:") or text.startswith("noqa"):
                continue
            name = line_name.get(token.start[0])
            if name is not None:  # a trailing comment: the field's own doc
                docs[name] = text
            elif token.start[1] == 4:
                pending.append(text)
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            if token.start[0] not in line_name and token.start[1] <= 4 and token.type != tokenize.STRING:
                pending = []
    return docs


def describe_fields(config: Any, prefix: str = "", width: int = 34, skip: tuple[str, ...] = ()) -> list[str]:
    """One line per field of a dataclass instance (nested configs flattened as ``optim.lr``): name=value, then
    the doc and, where the field has one, the rule its value must follow."""
    lines: list[str] = []
    docs = field_docs(type(config))
    rules = getattr(type(config), "CHECKS", {})
    for field in fields(config):
        if field.name in skip:
            continue
        value = getattr(config, field.name)
        if is_dataclass(value):
            lines.extend(describe_fields(value, f"{prefix}{field.name}.", width))
            continue
        doc = docs.get(field.name, "")
        if field.name in rules:
            doc = f"{doc} [{rules[field.name].text}]" if doc else f"[{rules[field.name].text}]"
        shown = _short(value)
        lines.append(f"  {prefix}{field.name}={shown}".ljust(width) + (f"  {doc}" if doc else ""))
    return lines


def _short(value: Any, limit: int = 40) -> str:
    text = "null" if value is None else str(value).replace("\n", "\\n")
    if isinstance(value, bool):
        text = str(value).lower()
    return text if len(text) <= limit else text[: limit - 3] + "..."
