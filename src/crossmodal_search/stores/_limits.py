"""S3 Vectors limits, checked byte-accurately before anything is written.

Both stores call these helpers before they touch storage or the network, so a record that would
be rejected by Amazon S3 Vectors is rejected the same way by ``LocalVectorStore``, with an error
that names the record key and the metadata key at fault.

Sizes are measured the way the metadata travels: compact UTF-8 JSON
(``json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()``), key names included.
"Filterable" metadata is every key not declared non-filterable for the index.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, MetadataValue, Scalar
from crossmodal_search.errors import (
    DimensionMismatchError,
    InvalidInputError,
    MetadataLimitError,
)
from crossmodal_search.stores._models import VectorRecord

__all__ = [
    "DEFAULT_NON_FILTERABLE_KEYS",
    "DISTANCE_METRICS",
    "StoreLimits",
    "ValidatedBatch",
    "json_size",
    "key_list",
    "normalize_metadata",
    "validate_batch",
    "validate_bucket_name",
    "validate_dimension",
    "validate_distance_metric",
    "validate_index_name",
    "validate_non_filterable_keys",
    "validate_query",
    "validate_query_matrix",
    "validate_records",
    "validate_top_k",
]

#: Long text fields that are stored but not filterable by default, so that a product
#: description never pushes a record over the 2 KB filterable-metadata limit.
DEFAULT_NON_FILTERABLE_KEYS: tuple[str, ...] = ("text", "description", "image_path", "source_uri")

DISTANCE_METRICS: tuple[DistanceMetric, ...] = ("cosine", "euclidean")

_UNLIMITED = 2**62


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreLimits:
    """Limits enforced before a write or query. Defaults are the Amazon S3 Vectors limits.

    Keeping the defaults on a ``LocalVectorStore`` guarantees that whatever works locally also
    works on S3 Vectors. For a purely local store, ``StoreLimits.relaxed()`` lifts every size and
    count limit (vectors must still be finite and of the index dimension, keys non-empty).

    Attributes:
        max_dimension: Largest vector dimension (S3 Vectors: 4096).
        max_key_chars: Longest vector key, in characters (1024).
        max_filterable_bytes: Filterable metadata per vector, compact UTF-8 JSON bytes (2 KB).
        max_total_metadata_bytes: All metadata per vector, compact UTF-8 JSON bytes (40 KB).
        max_metadata_keys: Metadata keys per vector (50).
        max_non_filterable_keys: Non-filterable metadata keys declared per index (10).
        max_metadata_key_chars: Longest metadata key name, in characters (63).
        max_top_k: Largest ``top_k`` of one query (100).
    """

    max_dimension: int = 4096
    max_key_chars: int = 1024
    max_filterable_bytes: int = 2048
    max_total_metadata_bytes: int = 40960
    max_metadata_keys: int = 50
    max_non_filterable_keys: int = 10
    max_metadata_key_chars: int = 63
    max_top_k: int = 100

    @classmethod
    def relaxed(cls) -> StoreLimits:
        """Limits for a purely local store: no size or count limit beyond what memory allows.

        Example:
            >>> StoreLimits.relaxed().max_top_k > 10**9
            True
        """
        return cls(
            max_dimension=_UNLIMITED,
            max_key_chars=_UNLIMITED,
            max_filterable_bytes=_UNLIMITED,
            max_total_metadata_bytes=_UNLIMITED,
            max_metadata_keys=_UNLIMITED,
            max_non_filterable_keys=_UNLIMITED,
            max_metadata_key_chars=_UNLIMITED,
            max_top_k=_UNLIMITED,
        )


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    """A validated write: unique keys, an ``(n, dimension)`` float32 matrix, plain metadata."""

    keys: list[str]
    vectors: npt.NDArray[np.float32]
    metadata: list[dict[str, MetadataValue]]

    def records(self) -> list[VectorRecord]:
        """The batch as records (vectors are rows of :attr:`vectors`)."""
        return [VectorRecord(k, self.vectors[i], self.metadata[i]) for i, k in enumerate(self.keys)]


def json_size(value: object) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON, the way metadata is sized against the limits."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# --------------------------------------------------------------------------- configuration


def validate_dimension(dimension: object, limits: StoreLimits | None = None) -> int:
    """Check an index dimension (an int in ``1..limits.max_dimension``) and return it."""
    limits = limits or StoreLimits()
    if isinstance(dimension, bool) or not isinstance(dimension, int | np.integer):
        raise InvalidInputError(f"dimension must be an int, got {type(dimension).__name__}")
    dim = int(dimension)
    if not 1 <= dim <= limits.max_dimension:
        raise InvalidInputError(f"dimension must be in 1..{limits.max_dimension}, got {dim}")
    return dim


def validate_distance_metric(metric: object) -> DistanceMetric:
    """Check a distance metric name (``"cosine"`` or ``"euclidean"``) and return it."""
    if metric == "cosine":
        return "cosine"
    if metric == "euclidean":
        return "euclidean"
    raise InvalidInputError(f"distance_metric must be 'cosine' or 'euclidean', got {metric!r}")


def validate_non_filterable_keys(
    keys: Iterable[str] | str, limits: StoreLimits | None = None
) -> frozenset[str]:
    """Check the non-filterable metadata keys declared for an index and return them as a set."""
    limits = limits or StoreLimits()
    if isinstance(keys, str):
        raise InvalidInputError(
            "non_filterable_metadata_keys must be a collection of key names, not a single string"
        )
    result = frozenset(keys)
    for key in result:
        _check_metadata_key_name(key, limits, record_key=None)
    if len(result) > limits.max_non_filterable_keys:
        raise MetadataLimitError(
            f"{len(result)} non-filterable metadata keys declared; an index allows at most "
            f"{limits.max_non_filterable_keys}",
            metadata_key=sorted(result)[limits.max_non_filterable_keys],
        )
    return result


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_bucket_name(name: object) -> str:
    """Check an S3 vector bucket name: 3-63 of ``a-z 0-9 -``, starting and ending alphanumeric."""
    if not isinstance(name, str) or not _BUCKET_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid vector bucket name {name!r}: use 3-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_index_name(name: object) -> str:
    """Check an S3 Vectors index name: 3-63 of ``a-z 0-9 - .``, starting and ending alphanumeric."""
    if not isinstance(name, str) or not _INDEX_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid vector index name {name!r}: use 3-63 characters a-z, 0-9, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return name


# --------------------------------------------------------------------------- metadata


def _check_metadata_key_name(key: object, limits: StoreLimits, *, record_key: str | None) -> str:
    where = f"record {record_key!r}: " if record_key is not None else ""
    if not isinstance(key, str):
        raise MetadataLimitError(
            f"{where}metadata key {key!r} must be a string", record_key=record_key
        )
    if not 1 <= len(key) <= limits.max_metadata_key_chars:
        raise MetadataLimitError(
            f"{where}metadata key {key[:80]!r} must have 1..{limits.max_metadata_key_chars} "
            f"characters, has {len(key)}",
            record_key=record_key,
            metadata_key=key,
        )
    _check_utf8(key, f"{where}metadata key {key[:80]!r}", record_key=record_key, metadata_key=key)
    return key


def _check_utf8(
    text: str, what: str, *, record_key: str | None = None, metadata_key: str | None = None
) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        message = f"{what}: not valid UTF-8 text ({exc.reason})"
        if metadata_key is None:
            raise InvalidInputError(message) from exc
        raise MetadataLimitError(message, record_key=record_key, metadata_key=metadata_key) from exc


def _scalar(value: object, *, record_key: str | None, metadata_key: str) -> Scalar:
    # bool first: bool is an int subclass, and np.bool_ is neither.
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        _check_utf8(
            value,
            f"record {record_key!r}: metadata key {metadata_key!r}",
            record_key=record_key,
            metadata_key=metadata_key,
        )
        return str(value)  # np.str_ -> str
    if isinstance(value, int | np.integer):
        number = int(value)
        if not -(2**1023) < number < 2**1023:
            raise MetadataLimitError(
                f"record {record_key!r}: metadata key {metadata_key!r} holds an integer beyond "
                "the range of a JSON number (double)",
                record_key=record_key,
                metadata_key=metadata_key,
            )
        return number
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise MetadataLimitError(
                f"record {record_key!r}: metadata key {metadata_key!r} holds {f}, "
                "which JSON and S3 Vectors cannot store",
                record_key=record_key,
                metadata_key=metadata_key,
            )
        return f
    kind = "None" if value is None else f"a {type(value).__name__}"
    raise MetadataLimitError(
        f"record {record_key!r}: metadata key {metadata_key!r} holds {kind}; values must be "
        "a string, number, boolean or a list of those",
        record_key=record_key,
        metadata_key=metadata_key,
    )


def normalize_metadata(
    metadata: Mapping[str, Any] | None,
    *,
    record_key: str | None = None,
    limits: StoreLimits | None = None,
) -> dict[str, MetadataValue]:
    """Plain-Python copy of ``metadata`` (numpy scalars converted), type-checked.

    Raises:
        MetadataLimitError: A key is not a 1..63 character string, or a value is ``None``, NaN,
            infinite, a nested dict, or a list holding anything but strings, numbers and booleans.
    """
    limits = limits or StoreLimits()
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise MetadataLimitError(
            f"record {record_key!r}: metadata must be a mapping, got {type(metadata).__name__}",
            record_key=record_key,
        )
    out: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        _check_metadata_key_name(key, limits, record_key=record_key)
        if isinstance(value, list | tuple | np.ndarray):
            if isinstance(value, np.ndarray) and value.ndim != 1:
                raise MetadataLimitError(
                    f"record {record_key!r}: metadata key {key!r} holds a {value.ndim}-D array; "
                    "only flat lists are allowed",
                    record_key=record_key,
                    metadata_key=key,
                )
            out[key] = [_scalar(v, record_key=record_key, metadata_key=key) for v in value]
        else:
            out[key] = _scalar(value, record_key=record_key, metadata_key=key)
    return out


def _check_metadata_limits(
    metadata: dict[str, MetadataValue],
    *,
    record_key: str,
    non_filterable: frozenset[str],
    limits: StoreLimits,
) -> None:
    if len(metadata) > limits.max_metadata_keys:
        raise MetadataLimitError(
            f"record {record_key!r}: {len(metadata)} metadata keys, over the limit of "
            f"{limits.max_metadata_keys} per vector",
            record_key=record_key,
            metadata_key=list(metadata)[limits.max_metadata_keys],
        )
    total = json_size(metadata)
    if total > limits.max_total_metadata_bytes:
        largest = max(metadata, key=lambda k: json_size({k: metadata[k]}))
        raise MetadataLimitError(
            f"record {record_key!r}: metadata is {total} bytes as UTF-8 JSON, over the "
            f"{limits.max_total_metadata_bytes}-byte limit per vector; the largest key is "
            f"{largest!r} ({json_size({largest: metadata[largest]})} bytes)",
            record_key=record_key,
            metadata_key=largest,
        )
    if total <= limits.max_filterable_bytes:
        return  # dropping keys only shrinks the JSON: the filterable part fits too
    filterable = {k: v for k, v in metadata.items() if k not in non_filterable}
    size = total if len(filterable) == len(metadata) else json_size(filterable)
    if size > limits.max_filterable_bytes:
        largest = max(filterable, key=lambda k: json_size({k: filterable[k]}))
        raise MetadataLimitError(
            f"record {record_key!r}: filterable metadata is {size} bytes as UTF-8 JSON, over the "
            f"{limits.max_filterable_bytes}-byte limit; the largest filterable key is {largest!r} "
            f"({json_size({largest: filterable[largest]})} bytes): declare it in "
            "non_filterable_metadata_keys when creating the index (CLI: crossmodal index "
            f"--non-filterable {largest}), or shorten it",
            record_key=record_key,
            metadata_key=largest,
        )


# --------------------------------------------------------------------------- records


def _check_key(key: object, limits: StoreLimits) -> str:
    if not isinstance(key, str):
        raise InvalidInputError(f"vector key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidInputError("vector key must not be empty")
    _check_utf8(key, f"vector key {key[:40]!r}")
    if len(key) > limits.max_key_chars:
        raise InvalidInputError(
            f"vector key {key[:40]!r}... has {len(key)} characters, over the limit of "
            f"{limits.max_key_chars}"
        )
    return key


def _as_vector(value: object, *, dimension: int, what: str) -> npt.NDArray[np.float32]:
    if type(value) is np.ndarray and value.dtype == np.float32:
        vec: npt.NDArray[np.float32] = value  # nothing to convert (the common query)
    else:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                vec = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{what}: vector is not numeric ({exc})") from exc
    if vec.ndim != 1:
        raise InvalidInputError(f"{what}: vector must be 1-D, got shape {vec.shape}")
    if vec.shape[0] != dimension:
        raise DimensionMismatchError(
            f"{what}: vector has {vec.shape[0]} dimensions, the index has {dimension}",
            expected=dimension,
            actual=int(vec.shape[0]),
        )
    return vec


def validate_batch(
    records: Iterable[VectorRecord],
    *,
    dimension: int,
    distance_metric: DistanceMetric,
    non_filterable: frozenset[str] = frozenset(),
    limits: StoreLimits | None = None,
) -> ValidatedBatch:
    """Validate a write and return it as one float32 matrix plus keys and plain metadata.

    Every record is checked before anything is returned, so a caller that writes only after this
    succeeds never writes part of a bad batch.

    Raises:
        InvalidInputError: Not a ``VectorRecord``, empty/too long/duplicate key, non-numeric or
            non-1-D vector, NaN or infinity, an all-zero vector on a cosine index.
        DimensionMismatchError: A vector's length differs from ``dimension``.
        MetadataLimitError: Metadata breaks a type, size or key-count limit (names both keys).
    """
    limits = limits or StoreLimits()
    items = list(records)
    keys: list[str] = []
    seen: set[str] = set()
    matrix = np.empty((len(items), dimension), dtype=np.float32)
    metas: list[dict[str, MetadataValue]] = []
    for i, rec in enumerate(items):
        if not isinstance(rec, VectorRecord):
            raise InvalidInputError(
                f"expected VectorRecord, got {type(rec).__name__} "
                "(build one with VectorRecord.create(key, vector, metadata))"
            )
        key = _check_key(rec.key, limits)
        if key in seen:
            raise InvalidInputError(f"vector key {key!r} appears twice in one write")
        seen.add(key)
        matrix[i] = _as_vector(rec.vector, dimension=dimension, what=f"record {key!r}")
        meta = normalize_metadata(rec.metadata, record_key=key, limits=limits)
        _check_metadata_limits(meta, record_key=key, non_filterable=non_filterable, limits=limits)
        keys.append(key)
        metas.append(meta)
    if len(non_filterable) > limits.max_non_filterable_keys:
        validate_non_filterable_keys(non_filterable, limits)
    _check_matrix(matrix, lambda i: f"record {keys[i]!r}", distance_metric)
    return ValidatedBatch(keys, matrix, metas)


def _check_matrix(
    matrix: npt.NDArray[np.float32],
    label: Callable[[int], str],
    distance_metric: DistanceMetric,
) -> None:
    if matrix.shape[0] == 0:
        return
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise InvalidInputError(
            f"{label(bad)}: vector holds NaN or infinity (or a value beyond float32 range)"
        )
    if distance_metric == "cosine":
        nonzero = matrix.any(axis=1)
        if not nonzero.all():
            bad = int(np.argmin(nonzero))
            raise InvalidInputError(
                f"{label(bad)}: an all-zero vector has no direction; a cosine index rejects it"
            )


def validate_records(
    records: Iterable[VectorRecord],
    *,
    dimension: int,
    distance_metric: DistanceMetric,
    non_filterable: frozenset[str] = frozenset(),
    limits: StoreLimits | None = None,
) -> list[VectorRecord]:
    """Validate a write; return records with float32 1-D vectors and plain-Python metadata.

    Example:
        >>> recs = validate_records(
        ...     [VectorRecord.create("a", [1, 0], {"n": np.int64(3)})],
        ...     dimension=2, distance_metric="cosine")
        >>> type(recs[0].metadata["n"])
        <class 'int'>

    Raises:
        InvalidInputError, DimensionMismatchError, MetadataLimitError: see :func:`validate_batch`.
    """
    batch = validate_batch(
        records,
        dimension=dimension,
        distance_metric=distance_metric,
        non_filterable=non_filterable,
        limits=limits,
    )
    return batch.records()


# --------------------------------------------------------------------------- queries


def validate_top_k(top_k: object, limits: StoreLimits | None = None) -> int:
    """Check ``top_k`` (an int in ``1..limits.max_top_k``) and return it."""
    limits = limits or StoreLimits()
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
        raise InvalidInputError(f"top_k must be an int, got {type(top_k).__name__}")
    k = int(top_k)
    if not 1 <= k <= limits.max_top_k:
        raise InvalidInputError(
            f"top_k must be in 1..{limits.max_top_k}, got {k}"
            + (" (S3 Vectors returns at most 100 per query)" if k > limits.max_top_k else "")
        )
    return k


def validate_query(
    vector: object,
    top_k: object,
    dimension: int,
    limits: StoreLimits | None = None,
    *,
    distance_metric: DistanceMetric | None = None,
) -> npt.NDArray[np.float32]:
    """Check a query vector and ``top_k``; return the vector as 1-D float32.

    With ``distance_metric="cosine"`` an all-zero query vector is rejected too (its cosine
    similarity to anything is undefined).

    Raises:
        InvalidInputError: Bad ``top_k``, non-numeric/non-1-D vector, NaN or infinity.
        DimensionMismatchError: The vector's length differs from ``dimension``.
    """
    validate_top_k(top_k, limits)
    vec = _as_vector(vector, dimension=dimension, what="query")
    # One product settles the common case: a finite, non-zero sum of squares means every
    # element is finite and one is not zero (in float64 the squares of float32 values neither
    # overflow nor underflow). Anything else (NaN, infinity, zero) gets the full checks.
    wide = vec.astype(np.float64)
    squares = float(wide.dot(wide))
    if 0.0 < squares < math.inf:
        return vec
    if distance_metric is not None:
        _check_matrix(vec[None, :], lambda _: "query", distance_metric)
    elif not np.isfinite(vec).all():
        _check_matrix(vec[None, :], lambda _: "query", "euclidean")
    return vec


def validate_query_matrix(
    vectors: object,
    top_k: object,
    dimension: int,
    limits: StoreLimits | None = None,
    *,
    distance_metric: DistanceMetric | None = None,
) -> npt.NDArray[np.float32]:
    """Like :func:`validate_query` for an ``(n, dimension)`` batch of query vectors."""
    validate_top_k(top_k, limits)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            mat = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"query vectors are not numeric ({exc})") from exc
    if mat.ndim == 1 and mat.shape[0] == 0:
        mat = mat.reshape(0, dimension)
    if mat.ndim != 2:
        raise InvalidInputError(f"query vectors must be a 2-D matrix, got shape {mat.shape}")
    if mat.shape[1] != dimension:
        raise DimensionMismatchError(
            f"query vectors have {mat.shape[1]} dimensions, the index has {dimension}",
            expected=dimension,
            actual=int(mat.shape[1]),
        )
    _check_matrix(mat, lambda i: f"query {i}", distance_metric or "euclidean")
    return mat


def key_list(keys: Sequence[str]) -> list[str]:
    """``keys`` as a list, checked: a sequence of strings (a single string is refused).

    Raises:
        InvalidInputError: ``keys`` is a string, or holds something else than strings.
    """
    if isinstance(keys, str | bytes):
        raise InvalidInputError("keys must be a sequence of strings, not a single string")
    out = list(keys)
    for key in out:
        if not isinstance(key, str):
            raise InvalidInputError(f"keys must be strings, got {type(key).__name__}")
    return out
