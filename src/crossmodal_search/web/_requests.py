"""Reading ``POST /api/search``: a JSON body or a multipart form, into a checked SearchRequest."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread
from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.web._limits import HTTPProblem
from crossmodal_search.web._models import SearchRequest

#: Deepest JSON nesting accepted: room for the filter language's 64 levels of ``$and``/``$or``
#: (an object and an array each).
MAX_JSON_DEPTH = 160
#: Longest JSON integer accepted; 20 digits hold any 64-bit number, longer ones mean nothing here.
MAX_INT_DIGITS = 20
#: Largest filter accepted (as JSON), after ``filter`` and ``where`` are combined.
MAX_FILTER_CHARS = 16 * 1024
#: Longest name or value echoed back in an error message.
MAX_ECHO_CHARS = 64

_FORM_FIELDS = frozenset(SearchRequest.model_fields)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_WHERE_SPLIT = re.compile(r"[,\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_search_request(request: Request) -> tuple[SearchRequest, bytes | None]:
    """The query and the uploaded image bytes (not yet checked), from JSON or a form."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        body = await request.body()
        # Parsing and base64-decoding up to ~14 MB would hold up every other request.
        return await anyio.to_thread.run_sync(_read_json, body)
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return await _read_form(request)
    raise HTTPProblem(
        415,
        "UnsupportedMediaType",
        "send application/json or multipart/form-data",
    )


def _read_json(body: bytes) -> tuple[SearchRequest, bytes | None]:
    query = _validate(loads_json(body, "the body"))
    return query, _decode_base64_image(query.image) if query.image else None


def loads_json(
    data: bytes | str, what: str, error: type[InvalidInputError] = InvalidInputError
) -> object:
    """Parse untrusted JSON: UTF-8, nested at most MAX_JSON_DEPTH deep, integers of at most
    MAX_INT_DIGITS digits, no NaN/Infinity, no unpaired surrogates; else ``error`` (422)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(
            data,
            parse_int=_int_parser(what, error),
            parse_constant=_constant_refuser(what, error),
        )
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the C parser's own guard, long before memory runs out
        raise error(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    _check_structure(value, what, error)
    return value


def _int_parser(what: str, error: type[InvalidInputError]) -> Callable[[str], int]:
    def parse(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            raise error(
                f"{what} holds an integer of {len(digits.lstrip('-'))} digits; "
                f"at most {MAX_INT_DIGITS} are accepted"
            )
        return int(digits)

    return parse


def _constant_refuser(what: str, error: type[InvalidInputError]) -> Callable[[str], object]:
    def refuse(name: str) -> object:
        raise error(f"{what} holds {name}, which is not a JSON number")

    return refuse


def _check_structure(value: object, what: str, error: type[InvalidInputError]) -> None:
    """Depth and text checks, without recursion (the value may be ~1000 levels deep)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, what, error)
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise error(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key, what, error)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_text(text: str, what: str, error: type[InvalidInputError]) -> None:
    # JSON may escape an unpaired UTF-16 surrogate (\ud800); no UTF-8 text can hold one.
    if not text.isascii() and _SURROGATE.search(text):
        raise error(f"{what} holds an unpaired UTF-16 surrogate escape")


def clip(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``value`` as ``repr`` for a message, cut to ``limit`` characters (its length said)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


async def _read_form(request: Request) -> tuple[SearchRequest, bytes | None]:
    fields: dict[str, Any] = {}
    image: bytes | None = None
    async with request.form(max_files=1, max_fields=len(_FORM_FIELDS) + 1) as form:
        for key, value in form.multi_items():
            if key in fields or (key == "image" and image is not None):
                raise InvalidInputError(f"field {key!r} is given more than once")
            if isinstance(value, UploadFile):
                if key != "image":
                    raise InvalidInputError(f"unexpected file field {key!r}")
                # The body limit already bounds the spooled file; this names the image itself.
                data = await value.read()
                if len(data) > 0 or value.filename:
                    image = data
            elif key == "image":
                raise InvalidInputError("'image' must be a file upload in a multipart request")
            elif value != "":
                fields[key] = value
    if "filter" in fields:
        fields["filter"] = _parse_filter_json(fields["filter"])
    return _validate(fields), image


def _validate(payload: object) -> SearchRequest:
    if not isinstance(payload, Mapping):
        raise InvalidInputError("the body must be a JSON object")
    if isinstance(payload.get("filter"), str):
        payload = {**payload, "filter": _parse_filter_json(payload["filter"])}
    try:
        return SearchRequest.model_validate(payload)
    except ValidationError as exc:
        if any(err["loc"][:1] == ("filter",) for err in exc.errors()):
            raise InvalidFilterError("the filter must be a JSON object") from exc
        raise InvalidInputError(describe_errors(exc.errors())) from exc


def _parse_filter_json(raw: str) -> object:
    value = loads_json(raw, "the filter", InvalidFilterError)
    if not isinstance(value, dict):
        raise InvalidFilterError("the filter must be a JSON object")
    return value


def parse_where(where: str | None) -> dict[str, Any] | None:
    """``"color=red, size=9"`` -> ``{"color": "red", "size": 9}`` (JSON numbers/booleans typed)."""
    if not where or not where.strip():
        return None
    result: dict[str, Any] = {}
    for item in _WHERE_SPLIT.split(where):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise InvalidFilterError(f"simple filter {clip(item)} is not key=value")
        if key.startswith("$"):
            raise InvalidFilterError(f"simple filter key {clip(key)} may not start with '$'")
        if key in result:
            raise InvalidFilterError(f"simple filter key {clip(key)} is given twice")
        result[key] = _scalar(raw)
    return result or None


def _scalar(raw: str) -> Any:
    """A number, boolean or quoted JSON string as typed; anything else is the raw text."""
    try:
        # NaN and Infinity stay text; an integer of thousands of digits is refused.
        value = json.loads(
            raw,
            parse_int=_int_parser("a simple filter value", InvalidFilterError),
            parse_constant=lambda name: name,
        )
    except (json.JSONDecodeError, RecursionError):
        return raw
    return value if isinstance(value, str | int | float) else raw


def merge_filters(
    explicit: Mapping[str, Any] | None, simple: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Both filters AND-ed (either may be absent)."""
    parts = [dict(f) for f in (explicit, simple) if f]
    if not parts:
        return None
    merged = parts[0] if len(parts) == 1 else {"$and": parts}
    size = len(json.dumps(merged))
    if size > MAX_FILTER_CHARS:
        raise InvalidFilterError(
            f"the filter is {size} characters as JSON; at most {MAX_FILTER_CHARS} are accepted"
        )
    return merged


def _decode_base64_image(value: str) -> bytes:
    encoded = _DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"'image' is not valid base64: {exc}") from exc


def describe_errors(errors: Any) -> str:
    """Pydantic's validation errors as one line: ``top_k: ...; mode: ...``."""
    parts = []
    for err in errors:
        loc = ".".join(_loc(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _loc(part: object) -> str:
    # A field name comes from the client: an unknown one may be megabytes long.
    text = str(part)
    return text if len(text) <= MAX_ECHO_CHARS else f"{text[:MAX_ECHO_CHARS]}..."
