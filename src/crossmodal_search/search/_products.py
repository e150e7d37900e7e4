"""A store's products as wholes: every key of a product (extra photos and segments included),
deleting and pruning products, reading one back, and the stored vector ``similar`` ranks by
(what ``CrossmodalSearcher.delete``, ``prune``, ``get_product`` and ``similar`` run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from crossmodal_search._batching import batched
from crossmodal_search.errors import InvalidInputError, ProductNotFoundError
from crossmodal_search.search._catalog import MAX_EXTRA_IMAGES
from crossmodal_search.search._media_ingest import stored_segment_keys
from crossmodal_search.search._results import IngestReport, ProductView
from crossmodal_search.search._schema import (
    MEDIA_TYPES,
    VARIANT_GROUP_KEY,
    VECTOR_TYPES,
    ProductVectorType,
    extra_image_keys,
    key_owners,
    product_key,
    product_keys,
    public_metadata,
    segment_key,
)
from crossmodal_search.stores import VectorRecord, VectorStore

__all__ = [
    "delete_products",
    "group_of",
    "own_vector",
    "product_view",
    "prune_products",
    "stored_image_keys",
]

logger = logging.getLogger(__name__)


def stored_image_keys(store: VectorStore, product_ids: Sequence[str], batch_size: int) -> list[str]:
    """The keys of these products' extra photos, from the ``image_count`` their stored
    vectors carry (one ``get`` per ``batch_size`` keys)."""
    counts: dict[str, int] = {}
    keys = [k for pid in product_ids for k in product_keys(pid)]
    for batch in batched(keys, batch_size):
        for record in store.get(batch).records:
            pid, count = record.metadata.get("product_id"), record.metadata.get("image_count")
            if isinstance(pid, str) and isinstance(count, int | float) and count > 1:
                counts[pid] = max(counts.get(pid, 1), min(int(count), 1 + MAX_EXTRA_IMAGES))
    return [k for pid, n in counts.items() for k in extra_image_keys(pid, n)]


def delete_products(store: VectorStore, product_ids: Iterable[str], batch_size: int) -> None:
    """Delete every stored vector of these products (unknown ids are ignored)."""
    ids = list(product_ids)
    keys = [k for pid in ids for k in product_keys(pid)]
    keys += stored_image_keys(store, ids, batch_size) + stored_segment_keys(store, ids)
    for batch in batched(keys, batch_size):
        store.delete(batch)


def prune_products(
    store: VectorStore, keep: Iterable[str], *, dry_run: bool, batch_size: int
) -> IngestReport:
    """Delete every product of the store whose id is not in ``keep`` (see
    ``CrossmodalSearcher.prune``)."""
    started = time.perf_counter()
    kept = set(keep)
    doomed: list[str] = []
    products: set[str] = set()
    unsure: list[str] = []
    listed = store.keys()  # a VectorStore need not be iterable itself
    for key in listed:
        owners = key_owners(key)
        if owners and not kept.intersection(owners):
            doomed.append(key)
            products.add(owners[-1])
        elif len(owners) > 1 and not kept.issuperset(owners):
            unsure.append(key)
    # A key two products could own: its metadata says which one.
    for batch in batched(unsure, batch_size):
        for record in store.get(batch).records:
            owner = record.metadata.get("product_id")
            if isinstance(owner, str) and owner not in kept:
                doomed.append(record.key)
                products.add(owner)
    if not dry_run:
        for batch in batched(doomed, batch_size):
            store.delete(batch)
        if products:
            logger.info(
                "pruned %d products (%d vectors) not in the catalog", len(products), len(doomed)
            )
    return IngestReport(
        pruned=len(products),
        vectors_deleted=0 if dry_run else len(doomed),
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
    )


def product_view(store: VectorStore, product_id: str) -> ProductView | None:
    """The product as stored, or ``None`` when none of its vectors exists."""
    keys = product_keys(product_id)
    keys += [segment_key(kind, product_id, 0) for kind in MEDIA_TYPES]
    result = store.get(keys)
    if not result.records:
        return None
    types = {str(r.metadata.get("type")) for r in result.records}
    # Prefer a product vector's metadata: it carries the content hash.
    records = sorted(result.records, key=lambda r: r.metadata.get("type") in MEDIA_TYPES)
    md = dict(records[0].metadata)
    text = str(md.get("text", ""))
    title = _text_or_none(md.get("title")) or text.strip().split("\n", 1)[0].strip()
    return ProductView(
        product_id=product_id,
        title=title or product_id,
        text=text,
        image_path=_text_or_none(md.get("image_path")),
        metadata=public_metadata(md),
        vector_types=[t for t in VECTOR_TYPES if t in types],
        content_hash=_text_or_none(md.get("content_hash")),
        embedding_model=_text_or_none(md.get("embedding_model")),
        variant_group=_text_or_none(md.get(VARIANT_GROUP_KEY)),
    )


def own_vector(store: VectorStore, product_id: str, search_mode: str) -> VectorRecord:
    """The product's stored vector that ``similar`` ranks by: its vector of ``search_mode``'s
    type (``text``, ``image``), else its combined vector.

    Raises:
        InvalidInputError: ``product_id`` is not a non-empty string.
        ProductNotFoundError: The store holds no such vector.
    """
    if not isinstance(product_id, str) or not product_id:
        raise InvalidInputError("product_id must be a non-empty string")
    kinds: list[ProductVectorType] = ["combined"]
    if search_mode == "text":
        kinds.insert(0, "text")
    elif search_mode == "image":
        kinds.insert(0, "image")
    keys = [product_key(k, product_id) for k in kinds]
    stored = {r.key: r for r in store.get(keys).records}
    record = next((stored[k] for k in keys if k in stored), None)
    if record is None:
        raise ProductNotFoundError(
            f"no product {product_id[:64]!r} in the store (similar() ranks by the product's "
            "own stored vectors: index it first)",
            product_id=product_id,
        )
    return record


def group_of(record: VectorRecord) -> str | None:
    """The variant group a stored vector belongs to, if any."""
    return _text_or_none(record.metadata.get(VARIANT_GROUP_KEY))


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
