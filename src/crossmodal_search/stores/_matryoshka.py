"""Matryoshka truncation: smaller vectors from a larger Nova embedding.

Nova Multimodal Embeddings is trained so that the first 256/384/1024 components of its 3072-d
output are themselves a usable embedding. Truncating and re-normalising is therefore a cheap
**approximation** of asking Nova for that dimension directly: close, but not bit-identical, and
worth checking with ``crossmodal eval`` on your own queries before relying on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from crossmodal_search._batching import batched
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.stores._models import VectorRecord
from crossmodal_search.stores._protocol import VectorStore

__all__ = ["copy_truncated", "truncate_dimension", "truncated_records"]

StoreT = TypeVar("StoreT", bound=VectorStore)


def truncate_dimension(vectors: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """Keep the first ``dim`` components of each vector and scale them back to unit length.

    Accepts one vector (1-D) or a matrix of row vectors (2-D) and returns the same rank, float32.
    An approximation of requesting ``dim`` from Nova directly (see the module docstring).

    Raises:
        InvalidInputError: ``dim`` is not in ``1..current dimension``, the input is not 1-D/2-D
            numeric, holds NaN or infinity, or a truncated vector is all zeros.

    Example:
        >>> truncate_dimension([3.0, 4.0, 12.0], 2)
        array([0.6, 0.8], dtype=float32)
    """
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"vectors are not numeric ({exc})") from exc
    if arr.ndim not in (1, 2):
        raise InvalidInputError(f"expected a vector or a matrix of vectors, got shape {arr.shape}")
    full = arr.shape[-1]
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 1 <= dim <= full:
        raise InvalidInputError(f"dim must be an int in 1..{full}, got {dim!r}")
    head = arr[..., :dim].astype(np.float64)
    if not np.isfinite(head).all():
        raise InvalidInputError("vectors hold NaN or infinity")
    norms = np.linalg.norm(head, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidInputError(
            f"a vector's first {dim} components are all zero; it cannot be re-normalised"
        )
    out: npt.NDArray[np.float32] = (head / norms).astype(np.float32)
    return out


def truncated_records(
    records: Iterable[VectorRecord], dim: int, *, batch_size: int = 4096
) -> Iterator[VectorRecord]:
    """Records with vectors truncated to ``dim`` and re-normalised; keys and metadata kept."""
    for batch in batched(records, batch_size):
        matrix = truncate_dimension(np.stack([np.asarray(r.vector) for r in batch]), dim)
        for rec, vec in zip(batch, matrix, strict=True):
            yield VectorRecord(rec.key, vec, rec.metadata)


def copy_truncated(
    source: VectorStore,
    target: StoreT | Callable[[int], StoreT],
    dim: int | None = None,
    *,
    batch_size: int = 500,
) -> StoreT:
    """Fill a smaller store from a bigger one by Matryoshka truncation.

    Args:
        source: The store to read (every record).
        target: An empty store of the smaller dimension, or a factory called with ``dim``
            (for example ``lambda d: LocalVectorStore(dimension=d)``).
        dim: The target dimension; defaults to ``target.dimension``.
        batch_size: Records per ``put`` on the target (500 matches S3 Vectors' batch limit).

    Returns:
        The target store.

    Example:
        >>> from crossmodal_search.stores import LocalVectorStore
        >>> big = LocalVectorStore(dimension=4)
        >>> big.put([VectorRecord.create("a", [3, 4, 1, 1])])
        >>> small = copy_truncated(big, lambda d: LocalVectorStore(dimension=d), 2)
        >>> small.get(["a"]).records[0].vector
        array([0.6, 0.8], dtype=float32)
    """
    if isinstance(target, VectorStore):
        dim = target.dimension if dim is None else dim
    elif dim is None:
        raise InvalidInputError("dim is required when target is a factory")
    if not 1 <= dim <= source.dimension:
        raise InvalidInputError(f"dim must be in 1..{source.dimension}, got {dim}")
    store = target if isinstance(target, VectorStore) else target(dim)
    if store.dimension != dim:
        raise InvalidInputError(f"target store has dimension {store.dimension}, expected {dim}")
    for batch in batched(truncated_records(source.records(), dim), batch_size):
        store.put(batch)
    return store
