"""Reading ``POST /api/search``: a JSON body or a multipart form, into a checked SearchRequest."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from crossmodal_search.errors import InvalidFilterError, InvalidInputError
from crossmodal_search.web._limits import HTTPProblem
from crossmodal_search.web._models import SearchRequest

_FORM_FIELDS = frozenset(SearchRequest.model_fields)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_WHERE_SPLIT = re.compile(r"[,\n]")


async def read_search_request(request: Request) -> tuple[SearchRequest, bytes | None]:
    """The query and the uploaded image bytes (not yet checked), from JSON or a form."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"the body is not valid JSON: {exc}") from exc
        query = _validate(payload)
        return query, _decode_base64_image(query.image) if query.image else None
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return await _read_form(request)
    raise HTTPProblem(
        415,
        "UnsupportedMediaType",
        "send application/json or multipart/form-data",
    )


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
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidFilterError(f"the filter is not valid JSON: {exc}") from exc
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
            raise InvalidFilterError(f"simple filter {item!r} is not key=value")
        if key.startswith("$"):
            raise InvalidFilterError(f"simple filter key {key!r} may not start with '$'")
        if key in result:
            raise InvalidFilterError(f"simple filter key {key!r} is given twice")
        result[key] = _scalar(raw)
    return result or None


def _scalar(raw: str) -> Any:
    """A number, boolean or quoted JSON string as typed; anything else is the raw text."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, str | int | float) else raw


def merge_filters(
    explicit: Mapping[str, Any] | None, simple: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Both filters AND-ed (either may be absent)."""
    parts = [dict(f) for f in (explicit, simple) if f]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


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
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
