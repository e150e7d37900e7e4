"""Indexing a catalog through Bedrock batch inference.

:func:`index_with_batch` runs the searcher's own plans (``_planner``) twice: a first pass
collects the texts and images the catalog needs embedded (unchanged products need none) and
embeds them in batch jobs; the second pass is an ordinary ``index`` run whose vectors come
from the jobs' results instead of embedding calls. Keys, metadata, the skipping of unchanged
products and the failure report are therefore exactly the synchronous path's.

Example::

    jobs = BatchEmbeddingJobs(bedrock, s3, role_arn=ROLE, work_s3_uri="s3://my-bucket/batch/")
    report = index_with_batch(searcher, products, jobs=jobs)
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from crossmodal_search._types import Vector
from crossmodal_search.errors import EmbeddingJobError
from crossmodal_search.search._planner import EmbedPart, ProductPlan

if TYPE_CHECKING:
    from crossmodal_search.embeddings import BatchEmbeddingJobs, BatchRequest, BatchResult
    from crossmodal_search.search._catalog import Product
    from crossmodal_search.search._results import IngestReport
    from crossmodal_search.search._searcher import CrossmodalSearcher

logger = logging.getLogger(__name__)

__all__ = ["index_with_batch"]

#: Record failure codes a new job may get past (the input was not refused).
_RETRYABLE_CODES = frozenset(
    {"MissingFromOutput", "RATE_LIMIT_EXCEEDED", "INTERNAL_SERVER_EXCEPTION", "ThrottlingException"}
)


def _content_key(part: EmbedPart, value: bytes | str) -> str:
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    kind = "text" if part == "text" else "image"  # one request per photo, whichever it is
    return f"{kind}:{hashlib.sha256(data).hexdigest()}"


def _part_input(plan: ProductPlan, part: EmbedPart) -> bytes | str:
    return plan.input_of(part)


def _requests(searcher: CrossmodalSearcher, items: list[Product], dim: int) -> list[BatchRequest]:
    """One request per distinct text and image the plans need embedded."""
    from crossmodal_search.embeddings import BatchRequest

    texts: dict[str, str] = {}
    images: dict[str, bytes | str] = {}
    for window in searcher._plans(items):
        for plan in window:
            for part in plan.parts:
                value = _part_input(plan, part)
                key = _content_key(part, value)
                if part == "text":
                    assert isinstance(value, str)
                    texts[key] = value
                else:
                    images[key] = value
    requests = [BatchRequest.text(k, t, dimension=dim) for k, t in sorted(texts.items())]
    requests += [BatchRequest.image(k, img, dimension=dim) for k, img in sorted(images.items())]
    logger.info(
        "batch indexing: %d products, %d texts and %d images to embed",
        len(items),
        len(texts),
        len(images),
    )
    return requests


def _from_results(result: BatchResult) -> Callable[[ProductPlan, EmbedPart], Vector]:
    """The vectors of the batch results; a failed record fails its product."""
    failures = {f.key: f for f in result.failures}

    def lookup(plan: ProductPlan, part: EmbedPart) -> Vector:
        key = _content_key(part, _part_input(plan, part))
        vector = result.vectors.get(key)
        if vector is not None:
            return vector
        failure = failures.get(key)
        reason = failure.describe() if failure else "not embedded by the batch job"
        retryable = failure is None or failure.code in _RETRYABLE_CODES
        raise EmbeddingJobError(
            f"batch embedding failed: {reason}", status="record", retryable=retryable
        )

    return lookup


def index_with_batch(
    searcher: CrossmodalSearcher,
    products: Iterable[Product],
    *,
    jobs: BatchEmbeddingJobs,
    dimension: int | None = None,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Index a catalog like ``searcher.index(products)`` but embed through batch inference.

    1. plan: the searcher's plans (store reads only) say which texts and images need
       embedding; unchanged products need none;
    2. embed: one batch job per ``max_records_per_job`` records (resumed if already submitted);
    3. write: the searcher runs the plans again, taking each vector from the batch results; a
       product whose record failed is reported in ``IngestReport.failed`` (``retryable`` when
       the record was left out or throttled inside the job, not refused).

    Args:
        searcher: a :class:`~crossmodal_search.search.CrossmodalSearcher` (its store, weight and
            batch size are reused; its embedder's ``model_id`` and ``dimension`` identify the
            vectors, so later synchronous runs see them as unchanged).
        products: the catalog.
        jobs: a configured :class:`BatchEmbeddingJobs`.
        dimension: embedding dimension (default: the searcher's store dimension).

    Returns:
        The searcher's ``IngestReport``, with ``embed_calls`` = batch records submitted and
        ``jobs`` = the batch job ARNs.

    Fewer records to embed than a batch job's minimum (100 by default) are embedded with the
    searcher's own embedder instead.

    Raises:
        EmbeddingJobError / JobTimeoutError: a batch job failed or did not finish.
    """
    started = time.perf_counter()
    items = searcher._check_products(products)
    dim = int(dimension or searcher.store.dimension)
    requests = _requests(searcher, items, dim)
    if len(requests) < jobs.min_records_per_job:
        # Below a batch job's minimum: the synchronous path is the only one that can run.
        logger.info(
            "%d records is below the batch minimum of %d: indexing synchronously",
            len(requests),
            jobs.min_records_per_job,
        )
        return searcher.index(items, progress=progress)
    result = jobs.run(requests, timeout=timeout)
    report = searcher._index_with(items, _from_results(result), progress, started)
    return report.model_copy(update={"embed_calls": len(requests), "jobs": list(result.jobs)})
