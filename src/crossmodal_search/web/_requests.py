"""Reading ``POST /api/search``: a JSON body or a multipart form, into a checked SearchRequest."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from crossmodal_search._json import MAX_INT_DIGITS, JSONInputError, loads_strict
from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.web._limits import HTTPProblem
from crossmodal_search.web._models import SearchRequest

#: Deepest JSON nesting accepted: room for the filter language's 64 levels of ``$and``/``$or``
#: (an object and an array each).
MAX_JSON_DEPTH = 160
#: Largest filter accepted (as JSON), after ``filter`` and ``where`` are combined.
MAX_FILTER_CHARS = 16 * 1024
#: Longest name or value echoed back in an error message.
MAX_ECHO_CHARS = 64

_FORM_FIELDS = frozenset(SearchRequest.model_fields)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_WHERE_SPLIT = re.compile(r"[,\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INTEGER = re.compile(r"-?\d+")


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
    """Parse untrusted JSON with :func:`~crossmodal_search._json.loads_strict` (UTF-8, integers
    of at most 20 digits, no NaN/Infinity), at most MAX_JSON_DEPTH deep and without unpaired
    surrogates; anything else raises ``error`` (422) naming ``what``."""
    try:
        value = loads_strict(data, max_depth=MAX_JSON_DEPTH)
    except JSONInputError as exc:
        raise error(f"{what}: {exc}") from exc
    _check_texts(value, what, error)
    return value


def _check_texts(value: object, what: str, error: type[InvalidInputError]) -> None:
    """No unpaired surrogate in any key or string (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            # JSON may escape an unpaired UTF-16 surrogate (\ud800); no UTF-8 text holds one,
            # so the answer echoing it could not even be encoded.
            if not item.isascii() and _SURROGATE.search(item):
                raise error(f"{what}: an unpaired UTF-16 surrogate escape")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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
        fields["filter"] = parse_filter_json(fields["filter"])
    return _validate(fields), image


def _validate(payload: object) -> SearchRequest:
    if not isinstance(payload, Mapping):
        raise InvalidInputError("the body must be a JSON object")
    if isinstance(payload.get("filter"), str):
        payload = {**payload, "filter": parse_filter_json(payload["filter"])}
    try:
        return SearchRequest.model_validate(payload)
    except ValidationError as exc:
        if any(err["loc"][:1] == ("filter",) for err in exc.errors()):
            raise InvalidFilterError("the filter must be a JSON object") from exc
        raise InvalidInputError(describe_errors(exc.errors())) from exc


def parse_filter_json(raw: str) -> dict[str, Any]:
    """A filter sent as a JSON string: a JSON object, else InvalidFilterError (422)."""
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
        value = loads_strict(raw, max_depth=1)
    except JSONInputError as exc:
        if _INTEGER.fullmatch(raw) and len(raw.lstrip("-")) > MAX_INT_DIGITS:
            # Thousands of digits: refused, not taken as text.
            raise InvalidFilterError(f"simple filter value: {exc}") from exc
        return raw  # NaN, Infinity, text, nested JSON
    if isinstance(value, float) and not math.isfinite(value):
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
