"""How a local store lives on disk: a locked directory of segments and one atomic manifest.

Layout::

    DIR/manifest.json          format version, dimension, metric, dtype, non-filterable keys,
                               generation and the ordered list of segments with their byte
                               sizes and CRC-32 checksums
    DIR/seg-00000007.npy       the vectors written by one operation (storage dtype, no pickle)
    DIR/seg-00000007.jsonl     one line per record of that operation: {"k", "n", "m"} for a
                               put (key, vector norm, metadata), {"k", "d": true} for a delete;
                               then a trailer line {"end": {...}} with the segment's counts,
                               checksums, the store's settings and whether it is a base (the
                               whole state), so that segments describe themselves
    DIR/.lock                  flock()-ed by the one writer

Every mutating call is durable when it returns. It appends one segment (new files, fsync),
then commits by atomically replacing ``manifest.json`` (write a temporary file, fsync, rename,
fsync the directory). Segments are replayed in order on open. A crash at any point leaves
either the previous or the new manifest, and each references only complete files, so the
store reopens in the previous or the new state, never in between. Files no manifest
references (left by a crash) are removed when a writer next opens the directory.

Checksums are verified when a segment is read. A damaged segment, a lost or unreadable manifest,
is a :class:`~crossmodal_search.errors.StoreCorruptedError` that deletes nothing;
``stores/_recover.py`` checks a directory and rebuilds a manifest from its self-describing
segments (``crossmodal store check|recover``). A reader (``read_only``) notices a new manifest
(one ``stat`` per call) and applies the new segments: :meth:`SegmentLog.refresh`.

To keep reopening fast, segments are merged like a binary counter: the newest segments are
rewritten as one whenever the older neighbour is at most twice their size, so a store holds
O(log n) segments and each record is rewritten O(log n) times over its life (amortised
appends). A merge that reaches the first segment writes a fresh snapshot without tombstones.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import MetadataValue
from crossmodal_search.errors import ConfigurationError, StoreCorruptedError
from crossmodal_search.stores._files import (
    LOCK,
    MANIFEST,
    SEGMENT_RE,
    Manifest,
    SegmentEntry,
    StorageDType,
    commit_manifest,
    corrupt,
    fsync_dir,
    io_error,
    io_error_for,
    lock_directory,
    manifest_stamp,
    read_records,
    read_vectors,
    write_npy,
    write_records,
)
from crossmodal_search.stores._rowmatrix import Rows
from crossmodal_search.stores._rows import RowTable
from crossmodal_search.stores._text import TextField

__all__ = ["MANIFEST", "Manifest", "SegmentEntry", "SegmentLog", "StorageDType"]

logger = logging.getLogger(__name__)


class SegmentLog:
    """A store directory: its write lock, its manifest and its segments.

    Opening creates the directory if needed (not ``read_only``) and takes the lock (writers
    only). :attr:`manifest` is the committed state, or None for a directory that holds no store
    yet (call :meth:`create`).

    Raises:
        StoreLockedError: Another writer holds the directory.
        StoreCorruptedError: Segments without a manifest, or an unreadable manifest.
        ConfigurationError: ``path`` is a file, a foreign directory, or (``read_only``) missing.
    """

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        # Map segment vectors instead of reading them (set by the store before loading); their
        # checksums are then left to `crossmodal store check`.
        self.memory_map = False
        self._lock_finalizer: weakref.finalize[Any, Any] | None = None
        # Keys each segment touched (None: unknown, the first one), for merges.
        self._touched: dict[int, frozenset[str] | None] = {}
        # The manifest file this log last read, by (inode, size, mtime): a new commit replaces
        # the file, so a reader notices it with one stat.
        self._seen: tuple[int, int, int] | None = None
        self.manifest: Manifest | None = self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> Manifest | None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"{path} exists and is not a directory")
        if not path.exists():
            if self.read_only:
                raise ConfigurationError(f"no local vector store at {path}")
            with io_error(path, "create"):
                path.mkdir(parents=True)
                fsync_dir(path.parent)  # the new directory's entry must survive a crash too
        if not self.read_only:
            self._acquire_lock()
        try:
            if (path / MANIFEST).exists():
                return self.read_manifest()
            segments = sorted(p.name for p in path.iterdir() if SEGMENT_RE.match(p.name))
            if segments:
                # Never an empty store over data: the segments may hold every record.
                raise StoreCorruptedError(
                    f"local vector store at {path} has {len(segments)} segment files but no "
                    f"{MANIFEST}; nothing was changed. Rebuild the manifest from its complete "
                    f"segments with `crossmodal store recover {path}`",
                    path=str(path),
                )
            foreign = [
                p.name
                for p in path.iterdir()
                if p.name != LOCK and not p.name.startswith(MANIFEST + ".")
            ]
            if foreign:
                raise ConfigurationError(
                    f"{path} is not empty and holds no {MANIFEST}; refusing to use it as a "
                    f"local vector store (found {sorted(foreign)[:3]})"
                )
            if self.read_only:
                raise ConfigurationError(f"no local vector store at {path}")
            return None
        except BaseException:
            self.close()
            raise

    def _acquire_lock(self) -> None:
        self._lock_finalizer = lock_directory(self.path, owner=self)

    def close(self) -> None:
        """Release the write lock (if held)."""
        if self._lock_finalizer is not None:
            self._lock_finalizer()
            self._lock_finalizer = None

    def read_manifest(self) -> Manifest:
        """The manifest on disk now."""
        path = self.path / MANIFEST
        try:
            seen = manifest_stamp(path)
            data = json.loads(path.read_bytes().decode("utf-8"))
        except ValueError as exc:
            raise corrupt(self.path, f"cannot read {MANIFEST}: {exc}") from exc
        except OSError as exc:
            raise io_error_for(exc, self.path, "read") from exc
        manifest = Manifest.from_json(data, self.path)
        self._seen = seen
        return manifest

    # ------------------------------------------------------------------ writing

    def create(self, manifest: Manifest) -> None:
        """Commit the manifest of a new, empty store."""
        with io_error(self.path, "write"):
            self._commit(manifest)

    def _commit(self, manifest: Manifest) -> None:
        """Atomically make ``manifest`` the directory's state."""
        commit_manifest(self.path, manifest)
        self.manifest = manifest
        # Past the rename the manifest is committed: nothing below may fail the write.
        try:
            self._seen = manifest_stamp(self.path / MANIFEST)
        except OSError:
            self._seen = None

    def set_text_fields(self, fields: tuple[TextField, ...]) -> None:
        """Commit new full-text keys (a manifest change only: the BM25 indexes are derived
        from the rows, so no segment is written)."""
        assert self.manifest is not None
        with io_error(self.path, "write"):
            self._commit(replace(self.manifest, text_fields=fields))

    def append(
        self,
        keys: Sequence[str],
        stored: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[Mapping[str, MetadataValue]],
        *,
        deleted: Sequence[str],
    ) -> None:
        """Write one operation as a new segment and commit it.

        Raises:
            StoreIOError: The file system refused the write (disk full, read-only): nothing
                was committed, and what the store held before is intact.
        """
        with io_error(self.path, "write"):
            self._write_segment(keys, stored, norms, metadata, deleted=deleted)

    def _write_segment(
        self,
        keys: Sequence[str],
        stored: Rows,
        norms: npt.NDArray[np.float64],
        metadata: Sequence[Mapping[str, MetadataValue]],
        *,
        deleted: Sequence[str],
        rows: npt.NDArray[np.intp] | None = None,
        replace_from: int | None = None,
    ) -> None:
        """Write one segment and commit it.

        With ``replace_from`` the segment replaces ``segments[replace_from:]`` (a merge);
        ``rows`` then says which rows of ``stored`` to write (None: ``stored`` as it is).
        """
        current = self.manifest
        assert current is not None
        seg_id = current.generation + 1
        vectors_path = self.path / f"seg-{seg_id:08d}.npy"
        records_path = self.path / f"seg-{seg_id:08d}.jsonl"
        committed = False
        try:
            vectors_bytes, vectors_crc = write_npy(vectors_path, stored, rows, current.dimension)
            trailer = {
                "id": seg_id,
                "puts": len(keys),
                "deletes": len(deleted),
                "vectors_bytes": vectors_bytes,
                "vectors_crc": vectors_crc,
                # A base holds the whole state: recovery needs no earlier segment.
                "base": replace_from == 0 or (replace_from is None and not current.segments),
                "store": current.settings(),
            }
            records_bytes, records_crc = write_records(
                records_path, keys, norms, metadata, deleted, trailer
            )
            seg = SegmentEntry(
                seg_id,
                len(keys),
                len(deleted),
                vectors_bytes,
                records_bytes,
                vectors_crc,
                records_crc,
            )
            touched = frozenset(keys) | frozenset(deleted)
            if replace_from is None:
                self._commit(replace(current, generation=seg_id, segments=(*current.segments, seg)))
                committed = True
                self._touched[seg_id] = touched
                logger.debug(
                    "committed segment %d (%d puts, %d deletes)", seg_id, len(keys), len(deleted)
                )
            else:
                old = current.segments[replace_from:]
                kept = current.segments[:replace_from]
                self._commit(replace(current, generation=seg_id, segments=(*kept, seg)))
                committed = True
                self._touched[seg_id] = None if replace_from == 0 else touched
                for s in old:
                    self._touched.pop(s.seg_id, None)
                    for name in (s.vectors_name, s.records_name):
                        (self.path / name).unlink(missing_ok=True)
                logger.debug("merged %d segments into segment %d", len(old), seg_id)
        except BaseException:
            # Not referenced by any committed manifest: safe to drop (or left for cleanup).
            if not committed:
                vectors_path.unlink(missing_ok=True)
                records_path.unlink(missing_ok=True)
            raise

    def merge_if_due(self, rows: RowTable) -> None:
        """Merge the newest segments when they have grown to half their older neighbour.

        ``rows`` is the store's state after the last write: a merge writes the live rows of the
        keys the merged segments touched (or every row, for a merge reaching the first one).
        """
        assert self.manifest is not None
        segs = self.manifest.segments
        if not segs:
            return
        start = len(segs) - 1
        acc = segs[start].size
        while start > 0 and segs[start - 1].size <= 2 * acc:
            start -= 1
            acc += segs[start].size
        if start == len(segs) - 1:
            return
        try:
            if start == 0:
                self._write_segment(
                    rows.keys,
                    rows.matrix[: rows.n],
                    rows.norms[: rows.n],
                    rows.metadata,
                    deleted=(),
                    replace_from=0,
                )
                return
            touched: set[str] = set()
            for s in segs[start:]:
                keys = self._touched.get(s.seg_id)
                assert keys is not None
                touched |= keys
            live = [k for k in touched if k in rows.index]
            dead = [k for k in touched if k not in rows.index]
            picked = np.asarray([rows.index[k] for k in live], dtype=np.intp)
            self._write_segment(
                live,
                rows.matrix,
                rows.norms[picked],
                [rows.metadata[r] for r in picked.tolist()],
                deleted=dead,
                rows=picked,
                replace_from=start,
            )
        except OSError:
            # The write itself is committed; a failed merge only leaves more segments.
            logger.warning("merging segments of %s failed", self.path, exc_info=True)

    def remove_orphans(self) -> None:
        """Delete segment files no manifest references (left by an interrupted write)."""
        assert self.manifest is not None
        referenced = {n for s in self.manifest.segments for n in (s.vectors_name, s.records_name)}
        for p in self.path.iterdir():
            orphan_segment = SEGMENT_RE.match(p.name) and p.name not in referenced
            if orphan_segment or p.name == f"{MANIFEST}.tmp":
                logger.info("removing %s left by an interrupted write", p)
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading

    def load(self, rows: RowTable) -> None:
        """Replay every committed segment into ``rows`` (which must be empty).

        A reader (no lock) whose segments are merged away by the writer meanwhile rereads the
        manifest and starts again.
        """
        assert self.manifest is not None
        for _ in range(20):
            try:
                self._replay(self.manifest, rows)
                return
            except StoreCorruptedError:
                if not self.read_only:
                    raise
                fresh = self.read_manifest()
                if fresh.generation == self.manifest.generation:
                    raise
                logger.debug("%s changed while loading; rereading", self.path)
                self.manifest = fresh
                rows.reset()
        self._replay(self.manifest, rows)

    def _replay(
        self, manifest: Manifest, rows: RowTable, segments: Sequence[SegmentEntry] | None = None
    ) -> None:
        """Apply ``segments`` (default: all of the manifest's) to ``rows``, in order."""
        chosen = manifest.segments if segments is None else segments
        first = manifest.segments[0].seg_id if manifest.segments else None
        for seg in chosen:
            found = read_records(self.path / seg.records_name, seg)
            keys, deleted = found.keys, found.deleted
            base = seg.seg_id == first
            self._touched[seg.seg_id] = None if base else frozenset(keys) | frozenset(deleted)
            rows.delete(deleted)
            mapped = self.memory_map
            vectors = read_vectors(
                self.path / seg.vectors_name, seg, manifest, verify=not mapped, writable=mapped
            )
            norms = np.asarray(found.norms, dtype=np.float64)
            if keys and not (mapped and rows.map_rows(keys, vectors, norms, found.metadata)):
                rows.put(keys, vectors, norms, found.metadata)
            del vectors

    def check_sizes(self) -> None:
        """Check that every committed segment file is there with its committed size (one
        ``stat`` each): what opening a store verifies before its rows are read.

        Raises:
            StoreCorruptedError: A file is missing or has another size.
        """
        for _ in range(20):
            try:
                self._check_sizes()
                return
            except StoreCorruptedError:
                # A reader may meet segments the writer has just merged away: reread.
                if not self.read_only:
                    raise
                fresh = self.read_manifest()
                assert self.manifest is not None
                if fresh.generation == self.manifest.generation:
                    raise
                self.manifest = fresh
        self._check_sizes()

    def _check_sizes(self) -> None:
        assert self.manifest is not None
        for seg in self.manifest.segments:
            for name, size in (
                (seg.vectors_name, seg.vectors_bytes),
                (seg.records_name, seg.records_bytes),
            ):
                try:
                    found = (self.path / name).stat().st_size
                except FileNotFoundError as exc:
                    raise corrupt(self.path, f"{name} is missing") from exc
                except OSError as exc:
                    raise io_error_for(exc, self.path, "read") from exc
                if found != size:
                    raise corrupt(self.path, f"{name} is {found} bytes, expected {size}")

    def stale(self) -> bool:
        """Has another process committed since this log last read the manifest? (One stat.)"""
        try:
            return manifest_stamp(self.path / MANIFEST) != self._seen
        except OSError:
            return True

    def refresh(self, rows: RowTable, fresh: Callable[[], RowTable]) -> RowTable | None:
        """Catch up with the writer: the rows to use now, or None when nothing changed.

        New segments after the ones ``rows`` holds are applied to ``rows`` in place. A merge
        that replaced segments ``rows`` holds is applied the same way (its segment carries the
        latest state of every key the merged ones touched), except a merge into a new base,
        which holds no deletes: then the whole state is loaded into ``fresh()`` and returned.
        """
        if not self.stale():
            return None
        old = self.manifest
        assert old is not None
        for _ in range(20):
            new = self.read_manifest()
            if new.generation == old.generation:
                self.manifest = new  # settings may have changed (text fields), not the rows
                return None
            held = {s.seg_id for s in old.segments}
            same_base = bool(new.segments) and new.segments[0].seg_id in held
            try:
                if same_base:
                    todo = [s for s in new.segments if s.seg_id not in held]
                    self._replay(new, rows, todo)
                    self.manifest = new
                    return rows
                table = fresh()
                self._replay(new, table)
                self.manifest = new
                return table
            except StoreCorruptedError:
                # Merged away while we read: read the manifest again. (An applied prefix of
                # new segments is harmless: applying them again gives the same state.)
                if self.read_manifest().generation == new.generation:
                    raise
        raise corrupt(self.path, "the store kept changing while it was reread")
