"""Checking a local store directory, and rebuilding a lost or damaged manifest.

:func:`check_local_store` reads a directory (no lock, no write) and says, segment by segment,
what is sound. :func:`recover_local_store` rebuilds ``manifest.json`` from the segments
themselves (each ``.jsonl`` ends with a trailer holding its counts, checksums, the store's
settings and whether it is a *base*, the whole state): the chain is the newest sound base and
every sound segment after it. Nothing is deleted: a damaged segment stops the recovery unless
``drop_damaged`` is given, and is then moved aside (``damaged-seg-...``) with its keys reported;
an unreadable manifest is kept as ``manifest.json.damaged``.

A segment written completely but not yet committed when its writer died is part of the
rebuilt chain when the manifest was lost (its write is applied, as a journal replay would);
with a readable manifest, the manifest decides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import (
    ConfigurationError,
    CrossmodalSearchError,
    StoreCorruptedError,
    StoreError,
)
from crossmodal_search.stores._files import (
    MANIFEST,
    SEGMENT_RE,
    Manifest,
    SegmentEntry,
    commit_manifest,
    file_crc,
    io_error,
    lock_directory,
    read_records,
    read_vectors,
    text_fields_from_json,
)
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    validate_distance_metric,
    validate_non_filterable_keys,
)

__all__ = [
    "RecoveryReport",
    "SegmentCheck",
    "StoreCheck",
    "check_local_store",
    "recover_local_store",
]

logger = logging.getLogger(__name__)

SegmentStatus = Literal["ok", "damaged", "missing", "unreferenced"]


@dataclass(frozen=True)
class SegmentCheck:
    """One segment of a checked store.

    ``status``: ``ok`` (sound; referenced by the manifest when there is one), ``damaged``
    (unreadable or not matching its checksums), ``missing`` (the manifest lists it, the files are
    gone) or ``unreferenced`` (sound but not in the manifest: left by an interrupted write or a
    merge, removed by the next writer).
    """

    seg_id: int
    status: SegmentStatus
    puts: int = 0
    deletes: int = 0
    base: bool = False
    detail: str = ""


@dataclass(frozen=True)
class StoreCheck:
    """What :func:`check_local_store` found.

    Attributes:
        path: The directory.
        manifest: ``ok``, ``missing`` or ``damaged``.
        detail: Why the manifest is not ``ok``.
        segments: Every segment found on disk or listed by the manifest, by id.
        vectors: Records the store holds (when the manifest and its segments are sound).
    """

    path: str
    manifest: Literal["ok", "missing", "damaged"]
    detail: str = ""
    segments: tuple[SegmentCheck, ...] = ()
    vectors: int | None = None

    @property
    def ok(self) -> bool:
        """True when the store opens and every segment it needs is sound."""
        return self.manifest == "ok" and all(
            s.status in ("ok", "unreferenced") for s in self.segments
        )

    def summary(self) -> str:
        """A few lines a person can act on."""
        lines = [
            f"{self.path}: manifest {self.manifest}" + (f" ({self.detail})" if self.detail else "")
        ]
        for seg in self.segments:
            what = f"{seg.puts} puts, {seg.deletes} deletes" + (", base" if seg.base else "")
            extra = f": {seg.detail}" if seg.detail else ""
            lines.append(f"  segment {seg.seg_id}: {seg.status} ({what}){extra}")
        if self.ok:
            lines.append(f"healthy: {self.vectors} vectors")
        else:
            lines.append(
                f"not healthy: run `crossmodal store recover {self.path}` to rebuild the manifest "
                "from the sound segments (add --drop-damaged to set damaged ones aside)"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover_local_store` did.

    Attributes:
        path: The directory.
        segments: Ids of the segments the new manifest lists, in order.
        vectors: Records the recovered store holds.
        set_aside: Files moved aside (damaged or incomplete segments, an unreadable manifest);
            nothing was deleted.
        lost_keys: Keys written by set-aside segments that no later segment rewrites: their
            latest write is lost (when the damaged records could still be read).
        changed: False when the store was already sound and nothing was written.
    """

    path: str
    segments: tuple[int, ...]
    vectors: int
    set_aside: tuple[str, ...] = ()
    lost_keys: tuple[str, ...] = ()
    changed: bool = True


class _LockHolder:
    """Owns the write lock while a recovery runs (the lock is released with it)."""


@dataclass
class _Found:
    """A segment's files as found on disk, checked on their own."""

    seg_id: int
    entry: SegmentEntry | None = None  # rebuilt from the files when they are sound
    trailer: dict[str, Any] | None = None
    keys: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problem: str = ""


def check_local_store(path: str | os.PathLike[str]) -> StoreCheck:
    """Check every segment of a local store directory against its checksums; change nothing.

    Example:
        >>> report = check_local_store("shop-vectors")  # doctest: +SKIP
        >>> report.ok, report.vectors  # doctest: +SKIP
        (True, 1200)
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigurationError(f"no local vector store at {root}")
    manifest, state, detail = _manifest(root)
    found = _scan(root, manifest)
    checks: list[SegmentCheck] = []
    listed = {s.seg_id: s for s in manifest.segments} if manifest else {}
    for seg_id in sorted(set(found) | set(listed)):
        item = found.get(seg_id)
        base = bool(item and item.trailer and item.trailer.get("base"))
        if item is None:
            checks.append(SegmentCheck(seg_id, "missing", detail="listed by the manifest"))
            continue
        counts = (len(item.keys), len(item.deleted))
        if item.problem:
            status: SegmentStatus = "damaged"
        elif manifest is not None and seg_id not in listed:
            status = "unreferenced"
        else:
            status = "ok"
        checks.append(SegmentCheck(seg_id, status, *counts, base=base, detail=item.problem))
    vectors = None
    if manifest is not None and all(c.status in ("ok", "unreferenced") for c in checks):
        vectors = _live_count(found[s.seg_id] for s in manifest.segments)
    return StoreCheck(str(root), state, detail, tuple(checks), vectors)


def recover_local_store(
    path: str | os.PathLike[str],
    *,
    drop_damaged: bool = False,
    distance_metric: DistanceMetric | None = None,
    non_filterable_metadata_keys: Iterable[str] | None = None,
) -> RecoveryReport:
    """Rebuild a local store's manifest from its sound segments, under the write lock.

    Args:
        path: The store directory.
        drop_damaged: Set damaged segments aside (renamed ``damaged-seg-...``) and recover
            without their writes; without it, a damaged segment stops the recovery.
        distance_metric: Only for stores written before segments described themselves (format
            1) whose manifest is lost: the metric the store was created with.
        non_filterable_metadata_keys: Likewise, its non-filterable keys.

    Raises:
        StoreCorruptedError: A damaged segment and no ``drop_damaged``; or nothing to recover.
        StoreLockedError: A writer has the store open.
        ConfigurationError: A format-1 store without ``distance_metric``.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigurationError(f"no local vector store at {root}")
    holder = _LockHolder()
    release = lock_directory(root, owner=holder)
    try:
        return _recover(root, drop_damaged, distance_metric, non_filterable_metadata_keys)
    finally:
        if release is not None:
            release()


def _recover(
    root: Path,
    drop_damaged: bool,
    distance_metric: DistanceMetric | None,
    non_filterable: Iterable[str] | None,
) -> RecoveryReport:
    manifest, state, _ = _manifest(root)
    found = _scan(root, manifest)
    incomplete = None
    if manifest is not None:
        chain = [
            found.get(s.seg_id) or _Found(s.seg_id, problem="missing") for s in manifest.segments
        ]
        if all(not f.problem for f in chain):
            logger.info("%s is sound: nothing to recover", root)
            return RecoveryReport(
                str(root), tuple(f.seg_id for f in chain), _live_count(chain), changed=False
            )
    else:
        chain, incomplete = _chain_from_files(found)
    bad = [f for f in chain if f.problem]
    if bad and not drop_damaged:
        listing = "; ".join(f"segment {f.seg_id}: {f.problem}" for f in bad)
        raise StoreCorruptedError(
            f"{root}: {listing}. Their writes cannot be recovered; rerun with --drop-damaged "
            "(drop_damaged=True) to set them aside and recover the rest. Nothing was changed.",
            path=str(root),
        )
    good = [f for f in chain if not f.problem]
    if not good:
        raise StoreCorruptedError(f"{root} holds no sound segment to recover from", path=str(root))
    settings = _settings(root, manifest, good, distance_metric, non_filterable)
    # Ids already used (even by set-aside files) are never used again.
    used = max(found, default=0)
    rebuilt = Manifest(
        **settings,
        generation=max(used, manifest.generation if manifest else 0),
        segments=tuple(f.entry for f in good if f.entry is not None),
    )
    for f in good:  # every vector file matches its segment before anything is written
        assert f.entry is not None
        read_vectors(root / f.entry.vectors_name, f.entry, rebuilt)
    set_aside: list[str] = []
    with io_error(root, "write"):
        for f in [*bad, *([incomplete] if incomplete else [])]:
            set_aside += _set_aside(root, f.seg_id)
        if state == "damaged":
            (root / MANIFEST).replace(root / f"{MANIFEST}.damaged")
            set_aside.append(f"{MANIFEST} -> {MANIFEST}.damaged")
        commit_manifest(root, rebuilt)
    rewritten = {k for f in good for k in (*f.keys, *f.deleted)}
    lost = sorted({k for f in bad for k in (*f.keys, *f.deleted)} - rewritten)
    logger.warning(
        "recovered %s: %d segments, %d set aside", root, len(rebuilt.segments), len(set_aside)
    )
    return RecoveryReport(
        str(root),
        tuple(s.seg_id for s in rebuilt.segments),
        _live_count(good),
        tuple(set_aside),
        tuple(lost),
    )


def _manifest(root: Path) -> tuple[Manifest | None, Literal["ok", "missing", "damaged"], str]:
    import json

    path = root / MANIFEST
    if not path.exists():
        return None, "missing", ""
    try:
        return Manifest.from_json(json.loads(path.read_bytes().decode("utf-8")), root), "ok", ""
    except (ValueError, StoreCorruptedError) as exc:
        return None, "damaged", str(exc).split(": ", 1)[-1]


def _scan(root: Path, manifest: Manifest | None) -> dict[int, _Found]:
    """Every segment on disk, each checked against the manifest's entry (when listed) and its
    own trailer."""
    ids = sorted({int(m.group(1)) for p in root.iterdir() if (m := SEGMENT_RE.match(p.name))})
    listed = {s.seg_id: s for s in manifest.segments} if manifest else {}
    return {seg_id: _inspect(root, seg_id, listed.get(seg_id), manifest) for seg_id in ids}


def _inspect(
    root: Path, seg_id: int, listed: SegmentEntry | None, manifest: Manifest | None
) -> _Found:
    found = _Found(seg_id)
    records = root / f"seg-{seg_id:08d}.jsonl"
    vectors = root / f"seg-{seg_id:08d}.npy"
    try:
        parsed = read_records(records, listed)
        found.keys, found.deleted, found.trailer = parsed.keys, parsed.deleted, parsed.trailer
        entry = listed or _entry_from_files(seg_id, records, vectors, parsed.trailer, found)
        settings = manifest or _trailer_manifest(parsed.trailer)
        if settings is not None:
            read_vectors(vectors, entry, settings)
        found.entry = entry
    except (CrossmodalSearchError, OSError) as exc:
        found.problem = _why(exc)
    return found


def _entry_from_files(
    seg_id: int, records: Path, vectors: Path, trailer: dict[str, Any] | None, found: _Found
) -> SegmentEntry:
    raw = records.read_bytes()
    size = vectors.stat().st_size
    if trailer is not None and int(trailer["vectors_bytes"]) != size:
        raise StoreCorruptedError(f"{vectors.name} is {size} bytes, its trailer says otherwise")
    return SegmentEntry(
        seg_id,
        len(found.keys),
        len(found.deleted),
        size,
        len(raw),
        None if trailer is None else int(trailer["vectors_crc"]),
        None if trailer is None else file_crc(records),
    )


def _trailer_manifest(trailer: dict[str, Any] | None) -> Manifest | None:
    if trailer is None:
        return None
    store = trailer["store"]
    return Manifest(
        dimension=int(store["dimension"]),
        distance_metric=validate_distance_metric(store["distance_metric"]),
        storage_dtype=store["storage_dtype"],
        non_filterable_metadata_keys=frozenset(store["non_filterable_metadata_keys"]),
        text_fields=text_fields_from_json(store.get("text_fields", [])),
    )


def _chain_from_files(found: dict[int, _Found]) -> tuple[list[_Found], _Found | None]:
    """Without a manifest: the newest sound base and every segment after it, and the newest
    segment when it is an interrupted write (no trailer: never completed, so never committed)."""
    ordered = [found[i] for i in sorted(found)]
    incomplete = None
    if ordered and ordered[-1].problem and ordered[-1].trailer is None:
        incomplete = ordered.pop()
        incomplete.problem = f"incomplete, an interrupted write: {incomplete.problem}"
    start = 0
    for i, f in enumerate(ordered):
        if not f.problem and f.trailer is not None and f.trailer.get("base"):
            start = i
    return ordered[start:], incomplete


def _settings(
    root: Path,
    manifest: Manifest | None,
    good: list[_Found],
    distance_metric: DistanceMetric | None,
    non_filterable: Iterable[str] | None,
) -> dict[str, Any]:
    if manifest is not None:
        base = manifest
    else:
        described = [f.trailer for f in good if f.trailer is not None]
        trailer_manifest = _trailer_manifest(described[-1]) if described else None
        if trailer_manifest is None:
            base = _legacy_settings(root, good, distance_metric, non_filterable)
        else:
            base = trailer_manifest
    return {
        "dimension": base.dimension,
        "distance_metric": base.distance_metric,
        "storage_dtype": base.storage_dtype,
        "non_filterable_metadata_keys": base.non_filterable_metadata_keys,
        "text_fields": base.text_fields,
    }


def _legacy_settings(
    root: Path,
    good: list[_Found],
    distance_metric: DistanceMetric | None,
    non_filterable: Iterable[str] | None,
) -> Manifest:
    """Settings of a format-1 store (its segments do not describe the store): dimension and
    dtype from a vector file's header, the rest from the caller."""
    import numpy as np

    if distance_metric is None:
        raise ConfigurationError(
            f"{root} was written before segments described the store: pass the distance metric "
            "it was created with (--distance-metric cosine|euclidean) and, if it was not the "
            "default, its non-filterable keys (--non-filterable KEY ...)"
        )
    with_vectors = [f for f in good if f.keys]
    if not with_vectors:
        raise StoreCorruptedError(f"{root}: no segment holds vectors to recover", path=str(root))
    header = np.load(root / f"seg-{with_vectors[0].seg_id:08d}.npy", mmap_mode="r")
    keys = DEFAULT_NON_FILTERABLE_KEYS if non_filterable is None else non_filterable
    return Manifest(
        dimension=int(header.shape[1]),
        distance_metric=validate_distance_metric(distance_metric),
        storage_dtype="float16" if header.dtype == np.float16 else "float32",
        non_filterable_metadata_keys=validate_non_filterable_keys(keys),
    )


def _set_aside(root: Path, seg_id: int) -> list[str]:
    moved = []
    for suffix in ("npy", "jsonl"):
        name = f"seg-{seg_id:08d}.{suffix}"
        if (root / name).exists():
            (root / name).replace(root / f"damaged-{name}")
            moved.append(f"{name} -> damaged-{name}")
    return moved


def _live_count(segments: Iterable[_Found]) -> int:
    live: set[str] = set()
    for f in segments:
        live.difference_update(f.deleted)
        live.update(f.keys)
    return len(live)


def _why(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, StoreError) and "is unreadable: " in text:
        text = text.split("is unreadable: ", 1)[1].split(". Nothing was changed", 1)[0]
    return text
