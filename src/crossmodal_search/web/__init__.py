"""The shopper's search page and its JSON API (optional extra ``web``).

``create_app(searcher, image_root=...)`` builds a FastAPI application serving one self-contained
HTML page at ``/``, ``POST /api/search``, ``GET /api/products/{id}``, product images from the
catalog's image root only (``/images/{path}``) and ``/healthz``; images indexed as ``s3://``
URIs are linked with presigned URLs when ``s3_images=S3ImageLinks(s3_client)`` is given.
``crossmodal serve`` runs it.

The checks the API applies to query photos are public for other servers taking photos from
untrusted callers (the MCP tool server): :func:`prepare_query_image` (type from the bytes, size,
decompression bombs, one decode within a :class:`DecodeBudget`, shrunk), :func:`read_header`,
and :class:`ImageRoot` (files only from one directory). Their refusals are :class:`HTTPProblem`
(``type`` and ``message``, as the API answers them) or ``crossmodal_search.errors`` errors.

Importing this package without FastAPI installed raises :class:`ConfigurationError` naming the
extra to install.
"""

from __future__ import annotations

from crossmodal_search.errors import ConfigurationError

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (FastAPI needs it to parse uploads)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by tests/test_web.py
    raise ConfigurationError(
        "crossmodal_search.web needs the optional 'web' extra (FastAPI, uvicorn, "
        "python-multipart): pip install 'crossmodal-search[web]'"
    ) from exc

from crossmodal_search.web._app import (
    DEFAULT_DECODE_MEMORY_BUDGET,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    create_app,
)
from crossmodal_search.web._files import ImageRoot, S3ImageLinks
from crossmodal_search.web._images import DecodeBudget, QueryImage, prepare_query_image, read_header
from crossmodal_search.web._limits import HTTPProblem
from crossmodal_search.web._models import (
    ErrorDetail,
    ErrorResponse,
    HealthResponse,
    ProductResponse,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

__all__ = [
    "DEFAULT_DECODE_MEMORY_BUDGET",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DecodeBudget",
    "ErrorDetail",
    "ErrorResponse",
    "HTTPProblem",
    "HealthResponse",
    "ImageRoot",
    "ProductResponse",
    "QueryImage",
    "S3ImageLinks",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "create_app",
    "prepare_query_image",
    "read_header",
]
