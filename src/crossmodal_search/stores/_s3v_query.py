"""``QueryVectors`` for ``S3VectorsStore``: request building, paging and result parsing.

One request shape serves the three kinds of query S3 Vectors selects from its inputs: a
``queryVector`` alone (vector search, ranked by distance), ``queryTexts`` alone (full-text, ranked
by BM25) and both (hybrid: one BM25 ranking per text entry and the vector ranking, fused by
Reciprocal Rank Fusion). Query text is never logged: the service marks it sensitive.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search.errors import InvalidInputError, ServiceError
from crossmodal_search.stores._models import QueryMatch
from crossmodal_search.stores._s3v_wire import (
    QueryOutputVectorWire,
    QueryTextWire,
    QueryVectorsRequest,
    QueryVectorsResponse,
)
from crossmodal_search.stores._text import IndexMode, TextMatch, TextQuery

__all__ = [
    "collect_pages",
    "effective_mode",
    "parse_text_matches",
    "parse_vector_matches",
    "query_request",
]

logger = logging.getLogger(__name__)

#: A runaway ``nextToken`` chain (a service bug) stops after this many pages.
_MAX_PAGES = 1000


def effective_mode(index_mode: IndexMode, query_mode: object) -> IndexMode:
    """The mode a query runs in: ``query_mode`` when given, else the index's.

    Raises:
        InvalidInputError: ``query_mode`` is not a mode, or is ``CLASSIC`` on an ``ENHANCED``
            index (which S3 Vectors refuses).
    """
    if query_mode is None:
        return index_mode
    if query_mode not in ("CLASSIC", "ENHANCED"):
        raise InvalidInputError(
            f"query_mode must be 'CLASSIC', 'ENHANCED' or None, got {query_mode!r}"
        )
    if query_mode == "CLASSIC" and index_mode == "ENHANCED":
        raise InvalidInputError(
            "query_mode='CLASSIC' cannot be used on an ENHANCED index (S3 Vectors refuses it); "
            "omit query_mode"
        )
    return "ENHANCED" if query_mode == "ENHANCED" else "CLASSIC"


def query_request(
    bucket: str,
    index: str,
    *,
    top_k: int,
    vector: npt.NDArray[np.float32] | None = None,
    texts: Sequence[TextQuery] = (),
    filter: Mapping[str, Any] | None = None,
    query_mode: IndexMode | None = None,
) -> QueryVectorsRequest:
    """A ``QueryVectors`` request asking for metadata, distances and (with texts) scores."""
    request: QueryVectorsRequest = {
        "vectorBucketName": bucket,
        "indexName": index,
        "topK": int(top_k),
        "returnMetadata": True,
    }
    if vector is not None:
        # Plain Python floats: botocore rejects numpy scalars.
        request["queryVector"] = {"float32": vector.astype(np.float32).tolist()}
        request["returnDistance"] = True
    if texts:
        request["queryTexts"] = [QueryTextWire(metadataKey=q.key, text=q.text) for q in texts]
        request["returnScores"] = True
    if filter is not None:
        request["filter"] = filter
    if query_mode is not None:
        request["queryMode"] = query_mode
    return request


def collect_pages(
    send: Callable[[QueryVectorsRequest], QueryVectorsResponse], request: QueryVectorsRequest
) -> list[QueryOutputVectorWire]:
    """Every result of ``request``, following ``nextToken`` until ``topK`` results or the end.

    S3 Vectors returns results "across multiple pages" when ``topK`` exceeds its page size; each
    further page repeats the request with the token.
    """
    items: list[QueryOutputVectorWire] = []
    page = request
    for _ in range(_MAX_PAGES):
        response = send(page)
        items.extend(response["vectors"])
        token = response.get("nextToken")
        if not token or len(items) >= request["topK"]:
            return items[: request["topK"]]
        page = request.copy()
        page["nextToken"] = token
        logger.debug("QueryVectors: %d results so far, fetching the next page", len(items))
    raise ServiceError(
        f"QueryVectors kept returning nextToken after {_MAX_PAGES} pages; giving up",
        code="TooManyPages",
        operation="s3vectors:QueryVectors",
    )


def parse_vector_matches(items: Sequence[QueryOutputVectorWire]) -> list[QueryMatch]:
    """Results of a vector query, in the service's (ranked) order."""
    return [
        QueryMatch(
            key=item["key"],
            distance=float(item.get("distance", math.nan)),
            metadata=dict(item.get("metadata") or {}),
        )
        for item in items
    ]


def parse_text_matches(items: Sequence[QueryOutputVectorWire], *, hybrid: bool) -> list[TextMatch]:
    """Results of a full-text (``hybrid=False``) or hybrid query, in the service's order.

    A hybrid result's ``score`` is its fused (RRF) score and its ``distance`` the
    ``scores.vectorDistance`` the service sends when the record came through the vector ranking;
    a full-text result's ``score`` is the sum of its BM25 scores over the queried keys.
    """
    out: list[TextMatch] = []
    for item in items:
        scores = item.get("scores")
        bm25 = {s["metadataKey"]: float(s["score"]) for s in (scores or {}).get("bm25Scores", ())}
        fused: float | None = None
        distance: float | None = None
        if hybrid:
            if scores is None:  # not what the API documents; keep what the result says
                distance = item.get("distance")
            else:
                fused = scores.get("fused")
                distance = scores.get("vectorDistance")
            score = float(fused) if fused is not None else math.nan
        else:
            score = math.fsum(bm25.values())
        out.append(
            TextMatch(
                key=item["key"],
                score=score,
                bm25=bm25,
                fused=None if fused is None else float(fused),
                distance=None if distance is None else float(distance),
                metadata=dict(item.get("metadata") or {}),
            )
        )
    return out
