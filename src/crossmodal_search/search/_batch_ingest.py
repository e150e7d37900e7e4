"""Indexing a catalog through Bedrock batch inference.

:func:`index_with_batch` drives a :class:`~crossmodal_search.search.CrossmodalSearcher` with
vectors computed by :class:`~crossmodal_search.embeddings.BatchEmbeddingJobs`, so keys,
metadata, skipping of unchanged products and the failure report are exactly those of the
synchronous path. It lives in the search layer because it orchestrates the searcher.

Example::

    jobs = BatchEmbeddingJobs(bedrock, s3, role_arn=ROLE, work_s3_uri="s3://my-bucket/batch/")
    report = index_with_batch(searcher, products, jobs=jobs)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from crossmodal_search._types import DistanceMetric, Filter, Vector
from crossmodal_search.embeddings._batch import BatchEmbeddingJobs, BatchRequest, BatchResult
from crossmodal_search.errors import EmbeddingJobError, InvalidInputError

if TYPE_CHECKING:
    import numpy.typing as npt

    from crossmodal_search.embeddings._protocol import Embedder
    from crossmodal_search.search._catalog import Product
    from crossmodal_search.search._searcher import CrossmodalSearcher, IngestReport
    from crossmodal_search.stores import GetResult, QueryMatch, VectorRecord, VectorStore

logger = logging.getLogger(__name__)

__all__ = ["index_with_batch"]

# --- searcher integration -------------------------------------------------------------------


def _content_key(kind: str, value: bytes | str) -> str:
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    return f"{kind}:{hashlib.sha256(data).hexdigest()}"


class _RecordingEmbedder:
    """Records what the searcher wants embedded and answers with a placeholder vector."""

    def __init__(self, model_id: str, dimension: int) -> None:
        self._model_id = model_id
        self._dimension = dimension
        self.texts: dict[str, str] = {}
        self.images: dict[str, bytes | str] = {}

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    def _placeholder(self) -> Vector:
        v = np.zeros(self._dimension, dtype=np.float32)
        v[0] = 1.0
        return v

    def embed_text(self, text: str, **_: Any) -> Vector:
        self.texts[_content_key("text", text)] = text
        return self._placeholder()

    def embed_image(self, image: Any, **_: Any) -> Vector:
        if not isinstance(image, bytes | str):
            raise InvalidInputError(f"unexpected image input {type(image).__name__}")
        self.images[_content_key("image", image)] = image
        return self._placeholder()

    def embed_texts(self, texts: Sequence[str], **kw: Any) -> Vector:
        return np.stack([self.embed_text(t, **kw) for t in texts])

    def embed_images(self, images: Sequence[Any], **kw: Any) -> Vector:
        return np.stack([self.embed_image(i, **kw) for i in images])


class _PrecomputedEmbedder(_RecordingEmbedder):
    """Answers from batch results; a failed record raises the batch error for that product."""

    def __init__(self, model_id: str, dimension: int, result: BatchResult) -> None:
        super().__init__(model_id, dimension)
        self._vectors = result.vectors
        self._failures = {f.key: f for f in result.failures}
        self.lookups = 0

    def _lookup(self, key: str) -> Vector:
        self.lookups += 1
        if key in self._vectors:
            return self._vectors[key]
        failure = self._failures.get(key)
        reason = failure.describe() if failure else "not embedded by the batch job"
        raise EmbeddingJobError(f"batch embedding failed: {reason}", status="record")

    def embed_text(self, text: str, **_: Any) -> Vector:
        return self._lookup(_content_key("text", text))

    def embed_image(self, image: Any, **_: Any) -> Vector:
        if not isinstance(image, bytes | str):
            raise InvalidInputError(f"unexpected image input {type(image).__name__}")
        return self._lookup(_content_key("image", image))


class _DryRunStore:
    """Reads from the real store, writes nowhere: lets the searcher plan without side effects."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def dimension(self) -> int:
        return int(self._store.dimension)

    @property
    def distance_metric(self) -> DistanceMetric:
        return self._store.distance_metric

    @property
    def non_filterable_metadata_keys(self) -> frozenset[str]:
        return frozenset(self._store.non_filterable_metadata_keys)

    def get(self, keys: Sequence[str]) -> GetResult:
        return self._store.get(keys)

    def query(
        self, vector: npt.ArrayLike, *, top_k: int = 10, filter: Filter | None = None
    ) -> list[QueryMatch]:
        return self._store.query(vector, top_k=top_k, filter=filter)

    def keys(self) -> Iterator[str]:
        return self._store.keys()

    def records(self) -> Iterator[VectorRecord]:
        return self._store.records()

    def put(self, records: Iterable[VectorRecord]) -> None:
        for _ in records:
            pass

    def delete(self, keys: Sequence[str]) -> None:
        return None


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

    Three steps, so that keys, metadata, the skipping of unchanged products and the failure
    report are exactly the searcher's:

    1. plan: a dry run of the searcher (store reads only) records which texts and images need
       embedding; unchanged products need none;
    2. embed: one batch job per ``max_records_per_job`` records (resumed if already submitted);
    3. write: the searcher indexes the products again, taking each vector from the batch
       results; a product whose record failed is reported in ``IngestReport.failed``.

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
    items = list(products)
    store = searcher.store
    embedder = searcher.embedder
    dim = int(dimension or store.dimension)
    searcher_cls = type(searcher)

    def like_searcher(embedder: Embedder, store: VectorStore) -> CrossmodalSearcher:
        return searcher_cls(
            embedder,
            store,
            combined_text_weight=searcher.combined_text_weight,
            batch_size=searcher.batch_size,
            max_concurrency=searcher.max_concurrency,
        )

    recorder = _RecordingEmbedder(embedder.model_id, dim)
    like_searcher(recorder, _DryRunStore(store)).index(items)
    requests = [BatchRequest.text(k, t, dimension=dim) for k, t in sorted(recorder.texts.items())]
    requests += [
        BatchRequest.image(k, img, dimension=dim) for k, img in sorted(recorder.images.items())
    ]
    logger.info(
        "batch indexing: %d products, %d texts and %d images to embed",
        len(items),
        len(recorder.texts),
        len(recorder.images),
    )
    if len(requests) < jobs.min_records_per_job:
        # Below a batch job's minimum: the synchronous path is the only one that can run.
        logger.info(
            "%d records is below the batch minimum of %d: indexing synchronously",
            len(requests),
            jobs.min_records_per_job,
        )
        return searcher.index(items, progress=progress)
    result = jobs.run(requests, timeout=timeout)
    precomputed = _PrecomputedEmbedder(embedder.model_id, dim, result)
    report = like_searcher(precomputed, store).index(items, progress=progress)
    return report.model_copy(update={"embed_calls": len(requests), "jobs": list(result.jobs)})
