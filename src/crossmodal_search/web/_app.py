"""The FastAPI application: the search page, the JSON API and the product images."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossmodal_search import __version__
from crossmodal_search.errors import (
    ConfigurationError,
    InvalidInputError,
    ProductNotFoundError,
)
from crossmodal_search.stores import validate_filter
from crossmodal_search.web._errors import install_error_handlers
from crossmodal_search.web._files import ImageRoot, S3ImageLinks
from crossmodal_search.web._images import DecodeBudget, QueryImage, prepare_query_image
from crossmodal_search.web._limits import BodySizeLimitMiddleware
from crossmodal_search.web._memory import return_large_frees_to_the_system
from crossmodal_search.web._middleware import CatchAllMiddleware, SecurityHeadersMiddleware
from crossmodal_search.web._models import (
    ErrorResponse,
    HealthResponse,
    ProductResponse,
    QueryEcho,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SimilarEcho,
    SimilarQuery,
    SimilarResponse,
)
from crossmodal_search.web._page import Page, render_page
from crossmodal_search.web._requests import (
    clip,
    merge_filters,
    parse_filter_json,
    parse_where,
    read_search_request,
)

if TYPE_CHECKING:
    from crossmodal_search.search import CrossmodalSearcher, SearchResult

__all__ = [
    "DEFAULT_DECODE_MEMORY_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "create_app",
]

logger = logging.getLogger(__name__)

#: Largest accepted upload: 10 MiB covers phone photos (the page shrinks bigger ones first).
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Largest accepted image area: 40 megapixels (8000 x 5000), about 160 MB once decoded.
DEFAULT_MAX_PIXELS = 40_000_000
#: Memory all query images being decoded at once may take: 256 MiB, enough for one 40 MP PNG
#: (about 200 MiB to decode and shrink) or a dozen phone photos at a time.
DEFAULT_DECODE_MEMORY_BUDGET = 256 * 1024 * 1024

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
    decode_memory_budget: int = DEFAULT_DECODE_MEMORY_BUDGET,
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
        decode_memory_budget: Bytes of memory the query images being decoded at once may take
            (each upload's need is estimated from its header); uploads wait for their share, and
            one that alone needs more gets 413. The search itself gets the image shrunk to at
            most 2048 px a side. So that freed pixel buffers leave the process, this fixes
            glibc's malloc mmap threshold at 4 MiB (unless the environment sets one).
        title: Title of the OpenAPI description.

    Raises:
        ConfigurationError: ``image_root`` is not a directory, or a limit is not positive.
    """
    if max_upload_bytes <= 0 or max_pixels <= 0 or decode_memory_budget <= 0:
        raise ConfigurationError(
            "max_upload_bytes, max_pixels and decode_memory_budget must be positive"
        )
    service = _Service(
        searcher=searcher,
        images=ImageRoot(image_root) if image_root is not None else None,
        s3_images=s3_images,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        decode_budget=DecodeBudget(decode_memory_budget),
    )
    return_large_frees_to_the_system()
    page = render_page(
        max_upload_bytes=max_upload_bytes,
        hybrid=bool(searcher.text_fields),
        image_sources=(S3ImageLinks.CSP_SOURCE,) if s3_images is not None else (),
    )
    app = FastAPI(
        title=title,
        version=__version__,
        summary="Crossmodal product search: find products by photo, by description, or both.",
        # Swagger UI and ReDoc load their code from a CDN, which an offline shop floor lacks;
        # the description itself is at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    # The last added runs first: headers on everything, including the catch-all's 500.
    app.add_middleware(BodySizeLimitMiddleware, max_upload_bytes=max_upload_bytes)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)
    _add_page_routes(app, page)
    _add_api_routes(app, service)
    _add_image_routes(app, service)
    return app


@dataclass(frozen=True)
class _Service:
    """What the route handlers share: the searcher, the image links and the limits."""

    searcher: CrossmodalSearcher
    images: ImageRoot | None
    s3_images: S3ImageLinks | None
    max_upload_bytes: int
    max_pixels: int
    decode_budget: DecodeBudget

    def image_url(self, path: str | None) -> str | None:
        """Where the browser loads a product image from (``None``: no photo)."""
        if path is not None and path.startswith("s3://"):
            return self.s3_images.url_for(path) if self.s3_images is not None else None
        return self.images.url_for(path) if self.images is not None else None

    async def search(self, request: Request) -> SearchResponse:
        """Answer ``POST /api/search``."""
        query, image_bytes = await read_search_request(request)
        text = query.text.strip() if query.text and query.text.strip() else None
        if text is None and image_bytes is None:
            raise InvalidInputError("give a text, an image, or both")
        filter_ = merge_filters(query.filter, parse_where(query.where))
        if filter_ is not None:
            validate_filter(filter_)
        image = await self._query_image(image_bytes) if image_bytes is not None else None
        started = time.perf_counter()
        # The embedder decodes the (small) image again: its share of the budget is held too.
        held = min(image.decode_bytes, self.decode_budget.total_bytes) if image else 0
        async with self.decode_budget.reserve(held) if held else contextlib.nullcontext():
            found = await _call(
                self.searcher.search,
                text=text,
                image=image.data if image is not None else None,
                search_mode=query.mode,
                top_k=query.top_k,
                filter=filter_,
                text_weight=query.text_weight,
                fusion=query.fusion,
                hybrid=query.hybrid,
                lexical_weight=query.lexical_weight,
                collapse=query.collapse,
            )
        took_ms = (time.perf_counter() - started) * 1000
        ranked_words = (
            text is not None and query.hybrid is not False and bool(self.searcher.text_fields)
        )
        echo = QueryEcho(
            text=text,
            has_image=image is not None,
            mode=query.mode,
            fusion=query.fusion,
            text_weight=query.text_weight,
            top_k=query.top_k,
            filter=filter_,
            hybrid=ranked_words,
            lexical_weight=query.lexical_weight,
            collapse=query.collapse,
        )
        hits = [self._hit(r) for r in found]
        return SearchResponse(results=hits, query=echo, took_ms=round(took_ms, 2))

    async def _query_image(self, data: bytes) -> QueryImage:
        """The upload checked, then decoded once within the budget and shrunk for the search."""
        return await prepare_query_image(
            data,
            budget=self.decode_budget,
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
        )

    def _hit(self, result: SearchResult) -> SearchHit:
        return SearchHit(
            product_id=result.product_id,
            title=result.title,
            similarity=result.similarity,
            part_similarities=result.part_similarities,
            distance=result.distance,
            score=result.score,
            matched_type=result.matched_type,
            matched_by=result.matched_by,
            matched_words=result.matched_words,
            word_scores=result.word_scores,
            image_url=self.image_url(result.image_path),
            matched_image_url=self.image_url(result.matched_image),
            text=result.text,
            metadata=_public_metadata(result.metadata),
            variant_group=result.variant_group,
            variants=list(result.variants),
            **_segment_fields(result),
        )

    async def product(self, product_id: str) -> ProductResponse:
        """Answer ``GET /api/products/{product_id}``."""
        view = await _call(self.searcher.get_product, product_id)
        if view is None:
            raise StarletteHTTPException(404, f"no product {clip(product_id)}")
        return ProductResponse(
            product_id=view.product_id,
            title=view.title,
            text=view.text,
            image_url=self.image_url(view.image_path),
            metadata=_public_metadata(view.metadata),
            vector_types=view.vector_types,
            variant_group=view.variant_group,
        )

    async def similar(self, product_id: str, query: SimilarQuery) -> SimilarResponse:
        """Answer ``GET /api/products/{product_id}/similar``."""
        filter_ = merge_filters(
            parse_filter_json(query.filter) if query.filter else None, parse_where(query.where)
        )
        if filter_ is not None:
            validate_filter(filter_)
        started = time.perf_counter()
        try:
            found = await _call(
                self.searcher.similar,
                product_id,
                top_k=query.top_k,
                search_mode=query.mode,
                filter=filter_,
                collapse=query.collapse,
            )
        except ProductNotFoundError:
            raise StarletteHTTPException(404, f"no product {clip(product_id)}") from None
        echo = SimilarEcho(
            product_id=product_id,
            mode=query.mode,
            top_k=query.top_k,
            filter=filter_,
            collapse=query.collapse,
        )
        took_ms = round((time.perf_counter() - started) * 1000, 2)
        return SimilarResponse(results=[self._hit(r) for r in found], query=echo, took_ms=took_ms)

    def product_image(self, path: str) -> FileResponse:
        """Answer ``GET /images/{path}``: only files under the image root."""
        found = self.images.resolve(path) if self.images is not None else None
        if found is None:
            raise StarletteHTTPException(404, "no such image")
        return FileResponse(
            found,
            media_type=ImageRoot.media_type(found),
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
        )


def _add_page_routes(app: FastAPI, page: Page) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page.html, headers=page.headers)

    @app.get("/healthz", response_model=HealthResponse, tags=["meta"])
    async def healthz() -> HealthResponse:
        """Liveness: answers as long as the server runs."""
        return HealthResponse(version=__version__)


def _add_api_routes(app: FastAPI, service: _Service) -> None:
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
        return await service.search(request)

    @app.get(
        "/api/products/{product_id}",
        response_model=ProductResponse,
        tags=["search"],
        responses={404: {"model": ErrorResponse, "description": "No such product"}, **_INVALID},
    )
    async def get_product(product_id: str) -> ProductResponse:
        """One catalog product by id."""
        return await service.product(product_id)

    @app.get(
        "/api/products/{product_id}/similar",
        response_model=SimilarResponse,
        tags=["search"],
        responses={404: {"model": ErrorResponse, "description": "No such product"}, **_INVALID},
    )
    async def similar_products(
        product_id: str, query: Annotated[SimilarQuery, Query()]
    ) -> SimilarResponse:
        """The products most like one product, ranked by its own stored vectors (no embedding
        call; the product itself never listed)."""
        return await service.similar(product_id, query)


def _add_image_routes(app: FastAPI, service: _Service) -> None:
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
        return service.product_image(path)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking searcher call off the event loop (failures: see ``_errors``)."""
    return await run_in_threadpool(fn, *args, **kwargs)


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
