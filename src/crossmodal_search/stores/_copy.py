"""Copy a store into another: a local development index up to S3 Vectors, or back down.

Both stores keep the same keys, vectors and metadata, so a catalog indexed once (and paid for
once on Bedrock) can move between the embedded store and S3 Vectors without re-embedding. The
source's full-text fields (hybrid search) are set up on the target first, so the copied records
are indexed for words as they land.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from crossmodal_search._batching import batched
from crossmodal_search.errors import (
    DimensionMismatchError,
    IndexMismatchError,
    InvalidInputError,
)
from crossmodal_search.stores._models import VectorRecord
from crossmodal_search.stores._protocol import TextSearchStore, VectorStore
from crossmodal_search.stores._text import TextField

__all__ = ["CopyReport", "copy_store"]

logger = logging.getLogger(__name__)

# A float16 store keeps unit vectors in float16 plus their norms: what `get` returns differs from
# what was put by up to ~5e-4 of the vector's norm, so "unchanged" allows a little more there
# (and nothing for float32 stores, which return exactly what was put).
_FLOAT16_RTOL = 2e-3


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_store` did (also passed to its ``progress`` callback after each batch).

    Attributes:
        read: Records read from the source.
        written: Records put into the target (new there, or different).
        unchanged: Records the target already held with the same vector and metadata.
        deleted: Target records absent from the source, deleted (``prune=True``).
        text_fields_added: Full-text fields of the source added to the target.
    """

    read: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    text_fields_added: tuple[str, ...] = ()


def copy_store(
    source: VectorStore,
    target: VectorStore,
    *,
    batch_size: int = 500,
    skip_unchanged: bool = True,
    prune: bool = False,
    text_fields: bool = True,
    progress: Callable[[CopyReport], None] | None = None,
) -> CopyReport:
    """Copy every record of ``source`` into ``target``: same keys, vectors and metadata.

    A copy that stops part way (an error, Ctrl-C, a killed process) is resumed by running it
    again: with ``skip_unchanged`` the records already copied are read back and compared, not
    written again. Each batch is one ``put`` on the target, so a failing batch leaves the
    batches before it copied and nothing of its own half-written on a local target (S3 Vectors
    reports a partial write as :class:`~crossmodal_search.errors.PartialWriteError`).

    Args:
        source: The store to read.
        target: The store to fill: same dimension and distance metric as ``source``.
        batch_size: Records read, compared and written per step (500 = one S3 Vectors
            ``PutVectors`` call).
        skip_unchanged: Read the target's copy of each batch first and write only records that
            are missing or differ there (costs one ``get`` per batch; saves writes on a re-run).
        prune: Afterwards, delete target records whose keys are not in the source, so that the
            target mirrors it.
        text_fields: First add the source's full-text fields the target lacks (a target that
            has no full-text search, or a CLASSIC S3 Vectors index, is copied without them,
            with a warning).
        progress: Called with the running totals after each batch.

    Returns:
        The totals.

    Raises:
        DimensionMismatchError: The stores' dimensions differ (see ``copy_truncated`` to copy
            into a smaller Matryoshka dimension).
        IndexMismatchError: The stores' distance metrics differ, or a full-text field is
            analyzed in another language on the target.
        InvalidInputError: ``batch_size`` outside 1..10000; a record the target refuses (its
            metadata over the target's filterable limit, say): nothing of that batch is written.

    Example:
        >>> from crossmodal_search.stores import LocalVectorStore
        >>> dev = LocalVectorStore(dimension=2)
        >>> dev.put([VectorRecord.create("a", [1, 0], {"colour": "red"})])
        >>> prod = LocalVectorStore(dimension=2)
        >>> copy_store(dev, prod)
        CopyReport(read=1, written=1, unchanged=0, deleted=0, text_fields_added=())
        >>> copy_store(dev, prod)
        CopyReport(read=1, written=0, unchanged=1, deleted=0, text_fields_added=())
    """
    _check_copy(source, target, batch_size)
    tolerance = _FLOAT16_RTOL if getattr(target, "storage_dtype", "float32") == "float16" else 0.0
    added = _copy_text_fields(source, target) if text_fields else ()
    report = CopyReport(text_fields_added=added)
    seen: set[str] | None = set() if prune else None
    for batch in batched(source.records(), batch_size):
        if seen is not None:
            seen.update(r.key for r in batch)
        changed = _changed(batch, target, tolerance) if skip_unchanged else batch
        if changed:
            target.put(changed)
        report = replace(
            report,
            read=report.read + len(batch),
            written=report.written + len(changed),
            unchanged=report.unchanged + len(batch) - len(changed),
        )
        if progress is not None:
            progress(report)
    if seen is not None:
        report = _prune(target, seen, batch_size, report, progress)
    logger.info("copied %s", report)
    return report


def _check_copy(source: VectorStore, target: VectorStore, batch_size: object) -> None:
    """Settings that make a copy impossible, before anything is read or written."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= 10_000
    ):
        raise InvalidInputError(f"batch_size must be an int in 1..10000, got {batch_size!r}")
    if source.dimension != target.dimension:
        raise DimensionMismatchError(
            f"cannot copy {source.dimension}-d vectors into a {target.dimension}-d store "
            "(copy_truncated derives a smaller Matryoshka dimension)",
            expected=target.dimension,
            actual=source.dimension,
        )
    if source.distance_metric != target.distance_metric:
        raise IndexMismatchError(
            f"the source ranks by {source.distance_metric} distance and the target by "
            f"{target.distance_metric}: results would change; create the target with "
            f"distance_metric={source.distance_metric!r}"
        )
    newly_filterable = source.non_filterable_metadata_keys - target.non_filterable_metadata_keys
    if newly_filterable:
        logger.warning(
            "metadata keys %s are non-filterable in the source but filterable in the target: "
            "records with long values there may exceed the target's filterable metadata limit",
            ", ".join(sorted(newly_filterable)),
        )


def _copy_text_fields(source: VectorStore, target: VectorStore) -> tuple[str, ...]:
    """Add the source's full-text fields the target lacks; the keys added."""
    if not isinstance(source, TextSearchStore) or not source.text_fields:
        return ()
    wanted = [TextField(f.key, f.language) for f in source.text_fields]
    names = ", ".join(f.key for f in wanted)
    if not isinstance(target, TextSearchStore):
        logger.warning("the target has no full-text search: text fields %s not copied", names)
        return ()
    if target.index_mode != "ENHANCED":
        logger.warning(
            "the target index is CLASSIC: text fields %s not copied (move it to ENHANCED, in "
            "place and free: crossmodal store upgrade, then copy again)",
            names,
        )
        return ()
    have = {f.key: f for f in target.text_fields}
    for f in wanted:
        there = have.get(f.key)
        if there is not None and there.language != f.language:
            raise IndexMismatchError(
                f"text field {f.key!r} is analyzed as {f.language or 'standard'} in the source "
                f"and as {there.language or 'standard'} in the target: remove it from the "
                "target (remove_text_fields) or copy with text_fields=False"
            )
    missing = [f for f in wanted if f.key not in have]
    if missing:
        target.add_text_fields(missing)
        logger.info("added text fields %s to the target", ", ".join(f.key for f in missing))
    return tuple(f.key for f in missing)


def _prune(
    target: VectorStore,
    keep: set[str],
    batch_size: int,
    report: CopyReport,
    progress: Callable[[CopyReport], None] | None,
) -> CopyReport:
    """Delete the target's records whose keys are not in ``keep``."""
    stale = [key for key in target.keys() if key not in keep]  # noqa: SIM118 (a store)
    for doomed in batched(stale, batch_size):
        target.delete(doomed)
        report = replace(report, deleted=report.deleted + len(doomed))
        if progress is not None:
            progress(report)
    return report


def _changed(
    batch: Sequence[VectorRecord], target: VectorStore, tolerance: float
) -> list[VectorRecord]:
    """The records of ``batch`` that ``target`` lacks or holds with another vector or metadata."""
    held = {r.key: r for r in target.get([r.key for r in batch]).records}
    out = []
    for record in batch:
        there = held.get(record.key)
        if there is None or there.metadata != record.metadata:
            out.append(record)
        elif tolerance == 0.0:
            if not np.array_equal(there.vector, record.vector):
                out.append(record)
        else:
            want = np.asarray(record.vector, dtype=np.float64)
            gap = np.linalg.norm(np.asarray(there.vector, dtype=np.float64) - want)
            if gap > tolerance * np.linalg.norm(want):
                out.append(record)
    return out
