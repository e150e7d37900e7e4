"""The FastAPI application: the search page, the JSON API and the product images."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossmodal_search import __version__
from crossmodal_search.errors import (
    ConfigurationError,
    CrossmodalSearchError,
    InvalidFilterError,
    InvalidInputError,
    ServiceError,
    StoreLockedError,
)
from crossmodal_search.search import Fusion
from crossmodal_search.stores import validate_filter
from crossmodal_search.web._files import ImageRoot, S3ImageLinks
from crossmodal_search.web._limits import (
    BodySizeLimitMiddleware,
    HTTPProblem,
    check_image,
)
from crossmodal_search.web._models import (
    ErrorResponse,
    HealthResponse,
    ProductResponse,
    QueryEcho,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

if TYPE_CHECKING:
    from crossmodal_search.search import CrossmodalSearcher, SearchResult

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_UPLOAD_BYTES", "create_app"]

logger = logging.getLogger(__name__)

#: Largest accepted upload: 10 MiB covers phone photos (the page shrinks bigger ones first).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Largest accepted image area: 40 megapixels (8000 x 5000), about 120 MB once decoded as RGB.
DEFAULT_MAX_PIXELS = 40_000_000

#: Fusion methods the page offers (the API accepts the same, from ``SearchRequest``).
FUSIONS: tuple[str, ...] = get_args(Fusion)

_DEFAULT_TOP_K = SearchRequest.model_fields["top_k"].default
_FORM_FIELDS = frozenset(SearchRequest.model_fields)
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)
_WHERE_SPLIT = re.compile(r"[,\n]")

_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid input"},
}


def create_app(
    searcher: CrossmodalSearcher,
    *,
    image_root: str | os.PathLike[str] | None = None,
    s3_images: S3ImageLinks | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    title: str = "crossmodal-search",
) -> FastAPI:
    """Build the web application over a ready :class:`CrossmodalSearcher`.

    Args:
        searcher: Answers the searches (its store should already be indexed).
        image_root: The only directory product images are served from (``/images/...``);
            ``None`` serves no images (cards show no photo).
        s3_images: Link images indexed as ``s3://`` URIs with presigned URLs (the browser loads
            them from S3); ``None``: such cards show no photo.
        max_upload_bytes: Largest query image accepted; bigger uploads get 413 while streaming.
        max_pixels: Largest query image area accepted (decompression-bomb guard); 413 above.
        title: Title of the OpenAPI description.

    Raises:
        ConfigurationError: ``image_root`` is not a directory, or a limit is not positive.
    """
    if max_upload_bytes <= 0 or max_pixels <= 0:
        raise ConfigurationError("max_upload_bytes and max_pixels must be positive")
    images = ImageRoot(image_root) if image_root is not None else None
    page = _render_page(
        max_upload_bytes=max_upload_bytes,
        image_sources=(S3ImageLinks.CSP_SOURCE,) if s3_images is not None else (),
    )

    def image_url(path: str | None) -> str | None:
        if path is not None and path.startswith("s3://"):
            return s3_images.url_for(path) if s3_images is not None else None
        return images.url_for(path) if images is not None else None

    # A fully decoded image may take max_pixels * 4 bytes: bound how many decode at once.
    decode_slots = _Slots(os.cpu_count() or 1)

    app = FastAPI(
        title=title,
        version=__version__,
        summary="Crossmodal product search: find products by photo, by description, or both.",
        # Swagger UI and ReDoc load their code from a CDN, which an offline shop floor lacks;
        # the description itself is at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_upload_bytes=max_upload_bytes)
    _install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page.html, headers=page.headers)

    @app.get("/healthz", response_model=HealthResponse, tags=["meta"])
    async def healthz() -> HealthResponse:
        """Liveness: answers as long as the server runs."""
        return HealthResponse(version=__version__)

    @app.post(
        "/api/search",
        response_model=SearchResponse,
        tags=["search"],
        responses={
            413: {"model": ErrorResponse, "description": "Upload or image area over the limit"},
            415: {"model": ErrorResponse, "description": "Not an accepted image type"},
            **_INVALID,
            502: {"model": ErrorResponse, "description": "The embedding or vector service failed"},
        },
        openapi_extra={"requestBody": _search_request_body()},
    )
    async def search(request: Request) -> SearchResponse:
        """Search products by text, by photo, or both.

        Send JSON (``SearchRequest``, image base64 encoded) or ``multipart/form-data`` with the
        same fields and the photo as the file field ``image`` (``filter`` then is a JSON string).
        """
        query, image_bytes = await _read_search_request(request)
        text = query.text.strip() if query.text and query.text.strip() else None
        if text is None and image_bytes is None:
            raise InvalidInputError("give a text, an image, or both")
        filter_ = _merge_filters(query.filter, _parse_where(query.where))
        if filter_ is not None:
            validate_filter(filter_)
        image = None
        if image_bytes is not None:
            image = await anyio.to_thread.run_sync(
                functools.partial(
                    check_image, image_bytes, max_bytes=max_upload_bytes, max_pixels=max_pixels
                ),
                limiter=decode_slots.get(),
            )
        started = time.perf_counter()
        found = await _call(
            searcher.search,
            text=text,
            image=image.data if image is not None else None,
            search_mode=query.mode,
            top_k=query.top_k,
            filter=filter_,
            text_weight=query.text_weight,
            fusion=query.fusion,
        )
        took_ms = (time.perf_counter() - started) * 1000
        hits = [
            SearchHit(
                product_id=r.product_id,
                title=_title(r.text, r.product_id),
                similarity=r.similarity,
                distance=r.distance,
                score=r.score,
                matched_type=r.matched_type,
                image_url=image_url(r.image_path),
                text=r.text,
                metadata=_public_metadata(r.metadata),
                **_segment_fields(r),
            )
            for r in found
        ]
        echo = QueryEcho(
            text=text,
            has_image=image is not None,
            mode=query.mode,
            fusion=query.fusion,
            text_weight=query.text_weight,
            top_k=query.top_k,
            filter=filter_,
        )
        return SearchResponse(results=hits, query=echo, took_ms=round(took_ms, 2))

    @app.get(
        "/api/products/{product_id}",
        response_model=ProductResponse,
        tags=["search"],
        responses={404: {"model": ErrorResponse, "description": "No such product"}, **_INVALID},
    )
    async def get_product(product_id: str) -> ProductResponse:
        """One catalog product by id."""
        view = await _call(searcher.get_product, product_id)
        if view is None:
            raise StarletteHTTPException(404, f"no product {product_id!r}")
        return ProductResponse(
            product_id=view.product_id,
            title=_title(view.text, view.product_id),
            text=view.text,
            image_url=image_url(view.image_path),
            metadata=_public_metadata(view.metadata),
            vector_types=view.vector_types,
        )

    @app.get(
        "/images/{path:path}",
        tags=["images"],
        response_class=FileResponse,
        responses={
            200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The image"},
            404: {"model": ErrorResponse, "description": "Not an image under the image root"},
            **_INVALID,
        },
    )
    async def product_image(path: str) -> FileResponse:
        """A product image from the catalog's image root (and from nowhere else)."""
        found = images.resolve(path) if images is not None else None
        if found is None:
            raise StarletteHTTPException(404, "no such image")
        return FileResponse(
            found,
            media_type=ImageRoot.media_type(found),
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
        )

    return app


class _Slots:
    """An anyio capacity limiter created on first use, inside the server's event loop."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._limiter: anyio.CapacityLimiter | None = None

    def get(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._total)
        return self._limiter


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking searcher call off the event loop; unexpected failures become a clean 500."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except (CrossmodalSearchError, HTTPProblem):
        raise
    except Exception as exc:
        logger.exception("search backend failed")
        raise HTTPProblem(500, "InternalServerError", "the search backend failed") from exc


async def _read_search_request(request: Request) -> tuple[SearchRequest, bytes | None]:
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
        raise InvalidInputError(_describe(exc.errors())) from exc


def _parse_filter_json(raw: str) -> object:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidFilterError(f"the filter is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidFilterError("the filter must be a JSON object")
    return value


def _parse_where(where: str | None) -> dict[str, Any] | None:
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


def _merge_filters(
    explicit: Mapping[str, Any] | None, simple: Mapping[str, Any] | None
) -> dict[str, Any] | None:
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


def _title(text: str, product_id: str) -> str:
    first = text.strip().split("\n", 1)[0].strip()
    return first or product_id


def _segment_fields(result: SearchResult) -> dict[str, Any]:
    """Where a ``video``/``audio``/``document`` hit matched; nothing for product vectors."""
    if result.segment_unit is None:
        return {}
    source = result.source_uri
    name = PurePosixPath(urlsplit(source).path).name if source else ""
    return {
        "segment_start": result.segment_start,
        "segment_end": result.segment_end,
        "segment_unit": result.segment_unit,
        "page": result.page,
        "segment_label": result.segment_label(dash="\u2013") or None,
        # An S3 URI names the catalog's media; a local path would only reveal the server's disk.
        "source_uri": source if source and source.startswith("s3://") else None,
        "source_name": unquote(name) or None,
    }


def _public_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    # Server-side file paths are not the shopper's business; ``image_url`` replaces them.
    return {k: v for k, v in metadata.items() if k not in ("image_path", "source_uri", "text")}


def _describe(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _error(
    status: int, type_: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse.model_validate({"error": {"type": type_, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


_HTTP_TYPES = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> Response:
        return _error(exc.status_code, exc.type, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        type_ = _HTTP_TYPES.get(exc.status_code, f"HTTP{exc.status_code}")
        return _error(exc.status_code, type_, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, "InvalidInputError", _describe(exc.errors()))

    @app.exception_handler(CrossmodalSearchError)
    async def _ours(request: Request, exc: CrossmodalSearchError) -> Response:
        if isinstance(exc, InvalidInputError):
            return _error(422, type(exc).__name__, str(exc))
        if isinstance(exc, ServiceError):
            logger.warning("service error during %s: %s", request.url.path, exc)
            return _error(502, type(exc).__name__, str(exc))
        if isinstance(exc, StoreLockedError):
            return _error(503, type(exc).__name__, str(exc), {"Retry-After": "1"})
        logger.error("%s during %s: %s", type(exc).__name__, request.url.path, exc)
        return _error(500, type(exc).__name__, str(exc))


class _Page:
    """The search page, rendered once, with a Content-Security-Policy pinning its inline code."""

    def __init__(self, html: str, image_sources: tuple[str, ...] = ()) -> None:
        self.html = html
        script = re.search(r"<script>(.*?)</script>", html, re.S)
        style = re.search(r"<style>(.*?)</style>", html, re.S)
        if script is None or style is None:  # pragma: no cover - the packaged page has both
            raise RuntimeError("index.html lacks its inline <script> or <style>")
        csp = "; ".join(
            [
                "default-src 'none'",
                f"script-src '{_sha256(script.group(1))}'",
                f"style-src '{_sha256(style.group(1))}'",
                " ".join(["img-src 'self' blob: data:", *image_sources]),
                "connect-src 'self'",
                "form-action 'self'",
                "base-uri 'none'",
                "frame-ancestors 'none'",
            ]
        )
        self.headers = {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _render_page(*, max_upload_bytes: int, image_sources: tuple[str, ...] = ()) -> _Page:
    template = resources.files("crossmodal_search.web").joinpath("index.html").read_text("utf-8")
    config = {
        "fusions": list(FUSIONS),
        "defaultFusion": FUSIONS[0],
        "defaultTopK": _DEFAULT_TOP_K,
        "maxUploadBytes": max_upload_bytes,
    }
    # ``<`` escaped so no value can close the data block early.
    html = template.replace("__CONFIG__", json.dumps(config).replace("<", "\\u003c"))
    return _Page(html, image_sources)


def _search_request_body() -> dict[str, Any]:
    schema = SearchRequest.model_json_schema()
    multipart = json.loads(json.dumps(schema))
    multipart["title"] = "SearchForm"
    multipart["properties"]["image"] = {
        "type": "string",
        "format": "binary",
        "description": "The query photo (JPEG, PNG, GIF or WebP).",
    }
    multipart["properties"]["filter"] = {
        "type": "string",
        "description": "Metadata filter as a JSON string.",
    }
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            "multipart/form-data": {"schema": multipart},
        },
    }
