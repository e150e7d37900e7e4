"""Strict JSON for untrusted input: catalog lines, CLI filters, request bodies.

``json.loads`` accepts ``NaN`` and ``Infinity`` (which neither JSON nor S3 Vectors can store),
turns a 5,000-digit integer into a ``ValueError`` about Python's digit limit, and meets a
100,000-deep nesting with ``RecursionError``. :func:`loads_strict` answers each with one
:class:`JSONInputError` whose message says what is wrong with the input.
"""

from __future__ import annotations

import json

__all__ = ["MAX_INT_DIGITS", "MAX_LINE_BYTES", "JSONInputError", "loads_strict", "parse_json_line"]

#: Longest integer accepted: int64 fits; beyond it S3 Vectors' numbers lose precision anyway.
MAX_INT_DIGITS = 20
#: Deepest nesting accepted: metadata and filters are a few levels deep.
MAX_DEPTH = 64
#: Longest catalog line accepted (a product with a 50,000-character text is ~200 KB of JSON).
MAX_LINE_BYTES = 4 * 1024 * 1024


class JSONInputError(ValueError):
    """Untrusted JSON that cannot be used, and why (the caller says where it came from)."""


def _refuse_constant(name: str) -> object:
    raise JSONInputError(f"{name} is not a number JSON or S3 Vectors can store")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONInputError(
            f"an integer with {digits} digits (more than {MAX_INT_DIGITS}); store long codes "
            "as strings"
        )
    return int(text)


def loads_strict(
    data: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH
) -> object:
    """Parse ``data`` (UTF-8 bytes or text) as JSON, refusing what cannot be stored or used.

    Raises:
        JSONInputError: Not UTF-8, longer than ``max_bytes``, not JSON, ``NaN``/``Infinity``,
            an integer over :data:`MAX_INT_DIGITS` digits, or nesting deeper than ``max_depth``.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise JSONInputError(f"{len(data):,} bytes, over the limit of {max_bytes:,}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(
                f"not UTF-8 (byte 0x{data[exc.start]:02x} at position {exc.start + 1})"
            ) from None
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise JSONInputError(f"nested deeper than {max_depth} levels") from None
    if _depth(value) > max_depth:
        raise JSONInputError(f"nested deeper than {max_depth} levels")
    return value


def _depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_line(raw: bytes) -> object:
    """One record of a JSON-lines catalog: :func:`loads_strict` with :data:`MAX_LINE_BYTES`.

    Raises:
        JSONInputError: Why the line cannot be read (the caller adds file and line).
    """
    return loads_strict(raw, max_bytes=MAX_LINE_BYTES)
