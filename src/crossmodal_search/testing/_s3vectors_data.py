"""``FakeS3Vectors``'s vector operations: ``PutVectors``, ``GetVectors``, ``ListVectors``,
``DeleteVectors``, with the limits the service enforces server-side."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from crossmodal_search.stores._limits import json_size
from crossmodal_search.testing._s3vectors_model import (
    LIST_PAGE_BYTES,
    MAX_DELETE_VECTORS,
    MAX_FILTERABLE_BYTES,
    MAX_GET_VECTORS,
    MAX_KEY_CHARS,
    MAX_LIST_RESULTS,
    MAX_LIST_SEGMENTS,
    MAX_METADATA_KEYS,
    MAX_PUT_VECTORS,
    MAX_TOTAL_METADATA_BYTES,
    Index,
    StoredVector,
    decode_token,
    encode_token,
    validation,
)

__all__ = [
    "check_key",
    "check_metadata",
    "check_vector",
    "delete_vectors",
    "get_vectors",
    "list_vectors",
    "page_after",
    "put_vectors",
    "resume_token",
]


def put_vectors(index: Index, params: Mapping[str, Any]) -> dict[str, Any]:
    """Upsert all vectors of the request, or none of them if one is invalid."""
    vectors = params.get("vectors")
    if not isinstance(vectors, list) or not vectors:
        raise validation("vectors must contain at least 1 vector")
    if len(vectors) > MAX_PUT_VECTORS:
        raise validation(
            f"vectors has {len(vectors)} items; the maximum per request is {MAX_PUT_VECTORS}"
        )
    staged: dict[str, StoredVector] = {}
    for item in vectors:
        key = item.get("key")
        check_key(key)
        if key in staged:
            raise validation(f"Duplicate key {key!r} in request")
        data = check_vector(item.get("data"), index, what=f"vector {key!r}")
        metadata = item.get("metadata", {})
        check_metadata(key, metadata, index)
        staged[key] = StoredVector(data, dict(metadata))
    # All-or-nothing: only a fully valid request changes the index (and its text indexes).
    index.store(staged)
    return {}


def get_vectors(index: Index, params: Mapping[str, Any]) -> dict[str, Any]:
    """The stored vectors among ``keys``, in the index's order; unknown keys are left out."""
    keys = params.get("keys")
    if not isinstance(keys, list) or not keys:
        raise validation("keys must contain at least 1 key")
    if len(keys) > MAX_GET_VECTORS:
        raise validation(
            f"keys has {len(keys)} items; the maximum per request is {MAX_GET_VECTORS}"
        )
    for key in keys:
        check_key(key)
    wanted = set(keys)
    return_data = bool(params.get("returnData", False))
    return_metadata = bool(params.get("returnMetadata", False))
    # Like moto (and as far as the docs say), unknown keys are left out and the order is the
    # index's own, not the request's: callers must match results by key.
    return {
        "vectors": [
            describe(k, v, return_data, return_metadata)
            for k, v in index.vectors.items()
            if k in wanted
        ]
    }


def list_vectors(index: Index, params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of the index's keys (sorted), optionally of one segment of a parallel scan."""
    segment_count = params.get("segmentCount")
    segment_index = params.get("segmentIndex")
    if (segment_count is None) != (segment_index is None):
        raise validation("segmentCount and segmentIndex must be specified together")
    if segment_count is not None and segment_index is not None:
        count, segment = int(segment_count), int(segment_index)
        if not 1 <= count <= MAX_LIST_SEGMENTS:
            raise validation(f"segmentCount must be between 1 and {MAX_LIST_SEGMENTS}")
        if not 0 <= segment < count:
            raise validation("segmentIndex must be less than segmentCount")
        keys = sorted(k for k in index.vectors if zlib.crc32(k.encode("utf-8")) % count == segment)
    else:
        keys = sorted(index.vectors)
    max_results = int(params.get("maxResults", 500))
    if not 1 <= max_results <= MAX_LIST_RESULTS:
        raise validation(f"maxResults must be between 1 and {MAX_LIST_RESULTS}")
    scope = (segment_count, segment_index)
    start_after = page_after(params.get("nextToken"), scope)
    start = 0
    if start_after is not None:
        # Keys are sorted, so resuming after the last returned key survives concurrent deletes.
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid] <= start_after:
                lo = mid + 1
            else:
                hi = mid
        start = lo
    return_data = bool(params.get("returnData", False))
    return_metadata = bool(params.get("returnMetadata", False))
    out: list[dict[str, Any]] = []
    gathered = 0
    position = start
    while position < len(keys) and len(out) < max_results and gathered < LIST_PAGE_BYTES:
        key = keys[position]
        item = describe(key, index.vectors[key], return_data, return_metadata)
        out.append(item)
        gathered += json_size(item)
        position += 1
    response: dict[str, Any] = {"vectors": out}
    if position < len(keys):
        response["nextToken"] = resume_token(keys[position - 1], scope)
    return response


def delete_vectors(index: Index, params: Mapping[str, Any]) -> dict[str, Any]:
    """Delete ``keys``; unknown keys are ignored."""
    keys = params.get("keys")
    if not isinstance(keys, list) or not keys:
        raise validation("keys must contain at least 1 key")
    if len(keys) > MAX_DELETE_VECTORS:
        raise validation(
            f"keys has {len(keys)} items; the maximum per request is {MAX_DELETE_VECTORS}"
        )
    for key in keys:
        check_key(key)
    for key in keys:
        index.remove(key)
    return {}


# -- checks shared by the handlers ----------------------------------------------------------------


def check_key(key: object) -> None:
    """A vector key: 1 to 1024 characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise validation(f"Vector keys must be 1 to {MAX_KEY_CHARS} characters")


def check_vector(data: object, index: Index, *, what: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A ``{"float32": [...]}`` of the index's dimension, finite, non-zero on cosine."""
    if not isinstance(data, dict) or not isinstance(data.get("float32"), list):
        raise validation(f"{what}: data must be {{'float32': [...]}}")
    values = data["float32"]
    if len(values) != index.dimension:
        raise validation(f"{what}: vector must have length {index.dimension}, got {len(values)}")
    # botocore has already checked each value is a number (its float shape validation).
    try:
        wide = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise validation(f"{what}: vector values must be numbers") from exc
    if wide.ndim != 1:
        raise validation(f"{what}: vector values must be numbers")
    if not np.isfinite(wide).all():
        raise validation(f"{what}: vector contains NaN or Infinity")
    with np.errstate(over="ignore"):
        array = wide.astype(np.float32)
    if not np.isfinite(array).all():
        raise validation(f"{what}: vector overflows float32")
    if index.distance_metric == "cosine" and not array.any():
        raise validation(f"{what}: a zero vector is not allowed on a cosine index")
    return array


def check_metadata(key: str, metadata: object, index: Index) -> None:
    """Metadata types (no NaN/Infinity), key count and the 40 KB / 2 KB filterable sizes.

    The text of searchable keys is ordinary metadata and counts toward both sizes.
    """
    if not isinstance(metadata, dict):
        raise validation(f"vector {key!r}: metadata must be an object")
    if len(metadata) > MAX_METADATA_KEYS:
        raise validation(
            f"vector {key!r}: {len(metadata)} metadata keys; the maximum is {MAX_METADATA_KEYS}"
        )
    for name, value in metadata.items():
        if not name:
            raise validation(f"vector {key!r}: empty metadata key")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, (str, int, float, bool)):
                raise validation(
                    f"vector {key!r}: metadata {name!r} must be a string, number, boolean "
                    "or a list of those"
                )
            if isinstance(v, float) and not math.isfinite(v):
                # botocore sends NaN/Infinity as bare tokens, which are not JSON.
                raise validation(f"vector {key!r}: metadata {name!r} is not valid JSON ({v})")
    if json_size(metadata) > MAX_TOTAL_METADATA_BYTES:
        raise validation(f"vector {key!r}: metadata exceeds {MAX_TOTAL_METADATA_BYTES} bytes")
    filterable = {k: v for k, v in metadata.items() if k not in index.non_filterable}
    if json_size(filterable) > MAX_FILTERABLE_BYTES:
        raise validation(
            f"vector {key!r}: filterable metadata exceeds {MAX_FILTERABLE_BYTES} bytes"
        )


def describe(
    key: str, stored: StoredVector, return_data: bool, return_metadata: bool
) -> dict[str, Any]:
    """One vector as ``GetVectors``/``ListVectors`` return it."""
    item: dict[str, Any] = {"key": key}
    if return_data:
        item["data"] = {"float32": stored.data.tolist()}
    if return_metadata:
        item["metadata"] = stored.metadata
    return item


# -- pagination by name ---------------------------------------------------------------------------


def resume_token(last: str, scope: tuple[object, object]) -> str:
    """A ``nextToken`` resuming after ``last`` within ``scope`` (a segment, or none)."""
    return encode_token({"after": last, "scope": list(scope)})


def page_after(token: object, scope: tuple[object, object]) -> str | None:
    """The name a ``nextToken`` resumes after (None without a token).

    Raises:
        ServiceError: a token of another scope or not ours.
    """
    if token is None:
        return None
    decoded = decode_token(token)
    after = decoded.get("after")
    if decoded.get("scope") != list(scope) or not isinstance(after, str):
        raise validation("Invalid nextToken")
    return after
