"""Temporary in-memory copies of a store that a comparison searches instead of it: the
vectors truncated to a smaller dimension, or without products' extra photos. Neither costs an
embedding call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossmodal_search.stores import LocalVectorStore, VectorStore

__all__ = ["main_photo_store", "truncated_store"]

logger = logging.getLogger(__name__)


def _empty_like(source: VectorStore, dimension: int) -> LocalVectorStore:
    from crossmodal_search.stores import LocalVectorStore, StoreLimits, TextSearchStore

    fields = (
        [f for f in source.text_fields if f.status == "ACTIVE"]
        if isinstance(source, TextSearchStore) and source.index_mode == "ENHANCED"
        else []
    )
    return LocalVectorStore(
        dimension=dimension,
        distance_metric=source.distance_metric,
        non_filterable_metadata_keys=source.non_filterable_metadata_keys,
        limits=StoreLimits.relaxed(),
        text_fields=fields,  # so hybrid settings compare on the copy too
    )


def truncated_store(source: VectorStore, dimension: int) -> VectorStore:
    """Every vector of ``source`` cut to its first ``dimension`` values, re-normalised."""
    from crossmodal_search.stores import copy_truncated

    target = _empty_like(source, dimension)
    copy_truncated(source, target, batch_size=1000)
    logger.info("truncated %d vectors to %d dimensions", len(target), dimension)
    return target


def main_photo_store(source: VectorStore) -> VectorStore:
    """``source`` without products' extra photos (``image2-...``): the index a catalog gets
    with ``main_image_only=True``."""
    from crossmodal_search._batching import batched
    from crossmodal_search.search import image_number

    target = _empty_like(source, source.dimension)
    for batch in batched(source.records(), 1000):
        kept = [r for r in batch if image_number(r.key) is None]
        if kept:
            target.put(kept)
    logger.info("copied %d vectors without the extra photos", len(target))
    return target
