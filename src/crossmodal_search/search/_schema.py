"""The key and metadata scheme of every vector the searcher writes; the one place that builds
and reads it.

Keys::

    text-{id}  image-{id}  combined-{id}      a product's vectors (description, main image,
                                               and their weighted mean)
    image{n}-{id}                             photo n (2, 3, ...) of a product with several
                                               photos (``Product.images``), type ``image``
    {video|audio|document}-{id}-{i}           segment i of a product's long media
    video-{id}-audio-{i}                      the audio vector of video segment i, when a video
                                               was embedded with separate audio and visual vectors

Every vector carries the metadata in :data:`RESERVED_METADATA_KEYS` that the searcher owns
(``type`` says which kind of vector it is, ``product_id`` whose it is, ``variant_group`` the
family it belongs to, when it does) plus the product's own metadata. A product with several
photos also carries ``image_count`` (its photos, the main one included) on its text, image and
combined vectors, so that the extra photos' keys can be found from them; each extra photo's
vector names its photo in ``image_source``. ``tags`` and ``tag_{group}`` are written by
zero-shot tagging
(:func:`~crossmodal_search.search.tag_products`) and carried over when a product is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from crossmodal_search._types import Filter, MetadataValue
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores import StoreLimits, VectorRecord, validate_records

if TYPE_CHECKING:
    from crossmodal_search.embeddings import SegmentedResult
    from crossmodal_search.stores import VectorStore

__all__ = [
    "MEDIA_TYPES",
    "PRODUCT_TYPES",
    "RESERVED_METADATA_KEYS",
    "TAGS_KEY",
    "TAG_GROUP_PREFIX",
    "VARIANT_GROUP_KEY",
    "VECTOR_TYPES",
    "MediaKind",
    "ProductVectorType",
    "SegmentUnit",
    "VectorType",
    "extra_image_key",
    "extra_image_keys",
    "image_number",
    "is_tag_key",
    "key_owners",
    "metadata_problem",
    "product_key",
    "product_keys",
    "public_metadata",
    "segment_key",
    "segment_metadata",
    "segment_records",
    "type_filter",
    "variant_metadata",
]

#: The vectors built from a product's text and image (keys ``{type}-{product_id}``).
ProductVectorType: TypeAlias = Literal["text", "image", "combined"]
#: A product's long media, stored per segment.
MediaKind: TypeAlias = Literal["video", "audio", "document"]
#: Every kind of vector the searcher stores (metadata ``type``).
VectorType: TypeAlias = Literal["text", "image", "combined", "video", "audio", "document"]
#: Where a segment sits in its source: seconds of audio/video, characters of text, PDF pages.
SegmentUnit: TypeAlias = Literal["seconds", "chars", "pages"]

PRODUCT_TYPES: tuple[ProductVectorType, ...] = ("text", "image", "combined")
MEDIA_TYPES: tuple[MediaKind, ...] = ("video", "audio", "document")
VECTOR_TYPES: tuple[VectorType, ...] = (*PRODUCT_TYPES, *MEDIA_TYPES)

#: Metadata keys the searcher writes on its vectors (product vectors and the segment vectors of
#: videos, audio and documents); a product's own metadata may not use them.
RESERVED_METADATA_KEYS: frozenset[str] = frozenset(
    {
        "type",
        "product_id",
        "title",
        "text",
        "image_path",
        "content_hash",
        "metadata_hash",
        "embedding_model",
        "embedding_type",
        "source_uri",
        "segment_index",
        "segment_start",
        "segment_end",
        "segment_unit",
        "segment_count",
        "segment_config",
        "image_count",
        "image_source",
        "variant_group",
    }
)

#: The metadata key of a product's variant group (:attr:`Product.variant_group`).
VARIANT_GROUP_KEY = "variant_group"

#: The metadata key zero-shot tagging writes every chosen label to.
TAGS_KEY = "tags"
#: The prefix of the per-group tag keys (``tag_color``), so catalog keys such as ``color`` stay.
TAG_GROUP_PREFIX = "tag_"

_SEGMENT_KEY = re.compile(r"(video|audio|document)-(.+)-(\d+)")
_EXTRA_IMAGE_KEY = re.compile(r"image([1-9]\d*)-(.+)", re.DOTALL)


def product_key(vtype: ProductVectorType, product_id: str) -> str:
    """The key of one of a product's vectors: ``combined-B01``."""
    return f"{vtype}-{product_id}"


def product_keys(product_id: str) -> list[str]:
    """Every product-vector key a product can have (text, image, combined)."""
    return [product_key(t, product_id) for t in PRODUCT_TYPES]


def extra_image_key(product_id: str, number: int) -> str:
    """The key of photo ``number`` (2, 3, ...) of a product: ``image2-B01`` (photo 1, the main
    one, is ``image-B01``)."""
    if number < 2:
        raise ValueError(f"extra photos are numbered from 2, got {number}")
    return f"image{number}-{product_id}"


def extra_image_keys(product_id: str, count: int) -> list[str]:
    """The keys of a product's extra photos when it has ``count`` photos in all."""
    return [extra_image_key(product_id, n) for n in range(2, count + 1)]


def image_number(key: str) -> int | None:
    """The photo number of an extra photo's key (``image3-B01`` -> 3), else None."""
    match = _EXTRA_IMAGE_KEY.fullmatch(key)
    if match is None or int(match.group(1)) < 2:
        return None
    return int(match.group(1))


def segment_key(kind: MediaKind, product_id: str, index: int, *, audio: bool = False) -> str:
    """The key of segment ``index`` of a product's media (``audio``: the separate audio vector
    of a video segment)."""
    if audio:
        return f"video-{product_id}-audio-{index}"
    return f"{kind}-{product_id}-{index}"


def segment_keys(kind: MediaKind, product_id: str, count: int) -> list[str]:
    """Every key ``count`` segments of a product's ``kind`` source can use."""
    keys = [segment_key(kind, product_id, i) for i in range(count)]
    if kind == "video":
        keys += [segment_key(kind, product_id, i, audio=True) for i in range(count)]
    return keys


def key_owners(key: str) -> tuple[str, ...]:
    """The product ids a key written by the searcher can belong to (none for other keys).

    ``video-{id}-audio-{i}`` (a separate audio vector) is ambiguous with a product id ending in
    ``-audio``: both readings are returned, the usual one last.
    """
    for vtype in PRODUCT_TYPES:
        if key.startswith(f"{vtype}-") and len(key) > len(vtype) + 1:
            return (key[len(vtype) + 1 :],)
    extra = _EXTRA_IMAGE_KEY.fullmatch(key)
    if extra is not None and int(extra.group(1)) >= 2:
        return (extra.group(2),)
    match = _SEGMENT_KEY.fullmatch(key)
    if match is None:
        return ()
    rest = match.group(2)
    if match.group(1) == "video" and rest.endswith("-audio") and len(rest) > len("-audio"):
        return (rest, rest[: -len("-audio")])
    return (rest,)


def variant_metadata(group: str | None) -> dict[str, MetadataValue]:
    """The metadata a product's variant group adds to its vectors (none without a group)."""
    return {} if group is None else {VARIANT_GROUP_KEY: group}


def is_tag_key(key: str) -> bool:
    """Is ``key`` one that zero-shot tagging writes (``tags``, ``tag_*``)?"""
    return key == TAGS_KEY or key.startswith(TAG_GROUP_PREFIX)


def public_metadata(metadata: Mapping[str, MetadataValue]) -> dict[str, MetadataValue]:
    """A stored vector's metadata without the searcher's bookkeeping keys."""
    return {k: v for k, v in metadata.items() if k not in RESERVED_METADATA_KEYS}


def type_filter(search_mode: str, user_filter: Filter | None = None) -> Filter:
    """The filter of a search over the vectors of ``search_mode`` (``all``: every type),
    AND-ed with the caller's filter."""
    own: dict[str, object]
    if search_mode == "all":
        own = {"type": {"$in": list(VECTOR_TYPES)}}
    else:
        own = {"type": {"$eq": search_mode}}
    if not user_filter:
        return own
    return {"$and": [own, dict(user_filter)]}


def metadata_problem(
    store: VectorStore,
    limits: StoreLimits,
    records: Mapping[str, Mapping[str, MetadataValue]],
    *,
    own: Mapping[str, MetadataValue],
) -> str | None:
    """Why ``store`` would refuse these records' metadata (key -> metadata), or None.

    ``own`` is the product's own metadata: when the records have too many keys, the message
    says how many the searcher adds and how many the product may keep.
    """
    limit = limits.max_metadata_keys
    total = max((len(md) for md in records.values()), default=0)
    if total > limit:
        mine = sum(k not in RESERVED_METADATA_KEYS for k in own)
        added = total - mine
        return (
            f"{mine} product keys + {added} added by the searcher = {total} metadata keys, "
            f"over the limit of {limit} per vector: keep at most {max(limit - added, 0)} "
            "product keys"
        )
    probe = np.zeros(store.dimension, dtype=np.float32)
    probe[0] = 1.0  # any valid vector: only the metadata is being checked
    try:
        validate_records(
            [VectorRecord(key, probe, md) for key, md in records.items()],
            dimension=store.dimension,
            distance_metric=store.distance_metric,
            non_filterable=store.non_filterable_metadata_keys,
            limits=limits,
        )
    except InvalidInputError as exc:
        return str(exc)
    return None


def segment_metadata(
    kind: MediaKind,
    product_id: str,
    *,
    index: int,
    unit: SegmentUnit,
    embedding_type: str,
    source_uri: str,
    start: float | None,
    end: float | None,
    extra: Mapping[str, MetadataValue],
) -> dict[str, MetadataValue]:
    """The metadata of one segment vector: ``extra`` (the product's metadata and the run's
    settings) plus where the segment sits; ``extra`` may not set the segment's own keys."""
    meta: dict[str, MetadataValue] = {
        **extra,
        "type": kind,
        "product_id": product_id,
        "segment_index": index,
        "segment_unit": unit,
        "embedding_type": embedding_type,
        "source_uri": source_uri,
    }
    if start is not None:
        meta["segment_start"] = float(start)
    if end is not None:
        meta["segment_end"] = float(end)
    return meta


_SEGMENT_OWN_KEYS = frozenset(
    {
        "type",
        "product_id",
        "segment_index",
        "segment_start",
        "segment_end",
        "segment_unit",
        "embedding_type",
        "source_uri",
    }
)


def segment_records(
    product_id: str,
    result: SegmentedResult,
    *,
    kind: MediaKind,
    extra_metadata: Mapping[str, MetadataValue] | None = None,
) -> list[VectorRecord]:
    """Store records for the successful segments of ``result`` (failed segments produce none;
    they are in ``result.failed_segments`` for the caller to report).

    Raises:
        InvalidInputError: An empty ``product_id``, or ``extra_metadata`` setting a segment key.
    """
    if not product_id:
        raise InvalidInputError("product_id must be a non-empty string")
    extra = dict(extra_metadata or {})
    clash = _SEGMENT_OWN_KEYS & extra.keys()
    if clash:
        raise InvalidInputError(f"extra_metadata may not set reserved keys: {sorted(clash)}")
    records: list[VectorRecord] = []
    for seg in result.segments:
        if seg.vector is None:  # pragma: no cover - SegmentedResult.segments hold vectors
            continue
        meta = segment_metadata(
            kind,
            product_id,
            index=seg.index,
            unit=seg.unit,
            embedding_type=seg.embedding_type,
            source_uri=result.source_uri,
            start=seg.start,
            end=seg.end,
            extra=extra,
        )
        audio = kind == "video" and seg.embedding_type.upper() == "AUDIO"
        key = segment_key(kind, product_id, seg.index, audio=audio)
        records.append(VectorRecord.create(key, seg.vector, meta))
    return records


def owned_keys(product_ids: Iterable[str]) -> list[str]:
    """The product-vector keys of these products (segments need the stored counts)."""
    return [key for pid in product_ids for key in product_keys(pid)]
