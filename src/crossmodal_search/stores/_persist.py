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

import errno
import io
import json
import logging
import os
import re
import sys
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, MetadataValue
from crossmodal_search.errors import (
    ConfigurationError,
    InvalidInputError,
    StoreCorruptedError,
    StoreIOError,
    StoreLockedError,
)
from crossmodal_search.stores._limits import validate_distance_metric
from crossmodal_search.stores._rows import BLOCK_ROWS, RowTable

if sys.platform != "win32":
    import fcntl

__all__ = [
    "MANIFEST",
    "SEGMENT_RE",
    "Manifest",
    "SegmentEntry",
    "SegmentLog",
    "StorageDType",
    "commit_manifest",
    "corrupt",
    "file_crc",
    "io_error",
    "lock_directory",
    "read_records",
    "read_vectors",
]

logger = logging.getLogger(__name__)

StorageDType = Literal["float32", "float16"]

_FORMAT = "crossmodal-search/local-vector-store"
# Version 2 added checksums and segment trailers; version 1 stores are read (unverified) and
# upgraded by their next write.
_VERSION = 2
_READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
_LOCK = ".lock"
SEGMENT_RE = re.compile(r"^seg-(\d{8})\.(npy|jsonl)$")


@dataclass(frozen=True)
class SegmentEntry:
    """One committed segment as the manifest lists it."""

    seg_id: int
    puts: int
    deletes: int
    vectors_bytes: int
    records_bytes: int
    # CRC-32 of each whole file; None for segments written before checksums (format 1).
    vectors_crc: int | None = None
    records_crc: int | None = None

    @property
    def size(self) -> int:
        return self.puts + self.deletes

    @property
    def vectors_name(self) -> str:
        return f"seg-{self.seg_id:08d}.npy"

    @property
    def records_name(self) -> str:
        return f"seg-{self.seg_id:08d}.jsonl"

    def to_json(self) -> dict[str, int]:
        out = {
            "id": self.seg_id,
            "puts": self.puts,
            "deletes": self.deletes,
            "vectors_bytes": self.vectors_bytes,
            "records_bytes": self.records_bytes,
        }
        if self.vectors_crc is not None and self.records_crc is not None:
            out.update(vectors_crc=self.vectors_crc, records_crc=self.records_crc)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentEntry:
        crcs = (data.get("vectors_crc"), data.get("records_crc"))
        return cls(
            int(data["id"]),
            int(data["puts"]),
            int(data["deletes"]),
            int(data["vectors_bytes"]),
            int(data["records_bytes"]),
            None if crcs[0] is None else int(crcs[0]),
            None if crcs[1] is None else int(crcs[1]),
        )


@dataclass(frozen=True)
class Manifest:
    """The committed state of a store directory: its settings and its segments, in order."""

    dimension: int
    distance_metric: DistanceMetric
    storage_dtype: StorageDType
    non_filterable_metadata_keys: frozenset[str]
    generation: int = 0
    segments: tuple[SegmentEntry, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What a segment trailer repeats, so a lost manifest can be rebuilt."""
        return {
            "dimension": self.dimension,
            "distance_metric": self.distance_metric,
            "storage_dtype": self.storage_dtype,
            "non_filterable_metadata_keys": sorted(self.non_filterable_metadata_keys),
        }

    def to_json(self) -> dict[str, Any]:
        body = {
            "format": _FORMAT,
            "version": _VERSION,
            "dimension": self.dimension,
            "distance_metric": self.distance_metric,
            "storage_dtype": self.storage_dtype,
            "non_filterable_metadata_keys": sorted(self.non_filterable_metadata_keys),
            "generation": self.generation,
            "segments": [s.to_json() for s in self.segments],
        }
        return {**body, "crc": _json_crc(body)}

    @classmethod
    def from_json(cls, data: object, where: Path) -> Manifest:
        """Parse and check a manifest read from ``where``; StoreCorruptedError if malformed."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise corrupt(where, f"{MANIFEST} is not a {_FORMAT} manifest")
        if data.get("version") not in _READABLE_VERSIONS:
            raise corrupt(
                where,
                f"format version {data.get('version')!r} is not supported (expected {_VERSION})",
            )
        crc = data.get("crc")
        if crc is not None and crc != _json_crc({k: v for k, v in data.items() if k != "crc"}):
            raise corrupt(where, f"{MANIFEST} does not match its checksum (damaged)")
        try:
            dtype = data["storage_dtype"]
            if dtype not in ("float32", "float16"):
                raise ValueError(f"storage_dtype {dtype!r}")
            return cls(
                dimension=int(data["dimension"]),
                distance_metric=validate_distance_metric(data["distance_metric"]),
                storage_dtype=dtype,
                non_filterable_metadata_keys=frozenset(data["non_filterable_metadata_keys"]),
                generation=int(data["generation"]),
                segments=tuple(SegmentEntry.from_json(s) for s in data["segments"]),
            )
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise corrupt(where, f"malformed {MANIFEST}: {exc}") from exc


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
                _fsync_dir(path.parent)  # the new directory's entry must survive a crash too
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
                if p.name != _LOCK and not p.name.startswith(MANIFEST + ".")
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
            seen = _stamp(path)
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
            self._seen = _stamp(self.path / MANIFEST)
        except OSError:
            self._seen = None

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
        stored: npt.NDArray[Any],
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
            vectors_bytes, vectors_crc = _write_npy(vectors_path, stored, rows, current.dimension)
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
            records_bytes, records_crc = _write_records(
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
            vectors = read_vectors(self.path / seg.vectors_name, seg, manifest)
            if keys:
                rows.put(keys, vectors, np.asarray(found.norms, dtype=np.float64), found.metadata)
            del vectors

    def stale(self) -> bool:
        """Has another process committed since this log last read the manifest? (One stat.)"""
        try:
            return _stamp(self.path / MANIFEST) != self._seen
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


@dataclass(frozen=True)
class SegmentRecords:
    """What a segment's ``.jsonl`` holds: its puts, its deletes and its trailer (if any)."""

    keys: list[str]
    norms: list[float]
    metadata: list[dict[str, MetadataValue]]
    deleted: list[str]
    trailer: dict[str, Any] | None


def read_records(path: Path, expected: SegmentEntry | None = None) -> SegmentRecords:
    """Parse a segment's records, checking them against the manifest's ``expected`` entry
    (size, CRC-32, counts) and against the segment's own trailer (counts, body checksum).

    Raises:
        StoreCorruptedError: The file does not match, or does not parse.
        StoreIOError: The file cannot be read.
    """
    where = path.parent
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:  # referenced by the manifest: lost, or merged away
        raise corrupt(where, f"{path.name} is missing") from exc
    except OSError as exc:
        raise io_error_for(exc, where, "read") from exc
    name = path.name
    if expected is not None:
        if len(raw) != expected.records_bytes:
            raise corrupt(where, f"{name} is {len(raw)} bytes, expected {expected.records_bytes}")
        if expected.records_crc is not None and zlib.crc32(raw) != expected.records_crc:
            raise corrupt(where, f"{name} does not match its checksum (damaged)")
    keys: list[str] = []
    norms: list[float] = []
    metadata: list[dict[str, MetadataValue]] = []
    deleted: list[str] = []
    trailer: dict[str, Any] | None = None
    try:
        body = raw
        last = raw.rfind(b"\n", 0, len(raw) - 1) + 1
        if raw[last:].startswith(b'{"end":'):
            trailer = json.loads(raw[last:])["end"]
            body = raw[:last]
            if zlib.crc32(body) != int(trailer["body_crc"]):
                raise ValueError("its records do not match the trailer's checksum (damaged)")
        for line in body.decode("utf-8").splitlines():
            item = json.loads(line)
            if item.get("d"):
                deleted.append(item["k"])
            else:
                keys.append(item["k"])
                norms.append(float(item["n"]))
                metadata.append(item["m"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise corrupt(where, f"{name}: {exc}") from exc
    counts = (len(keys), len(deleted))
    if trailer is not None and counts != (trailer.get("puts"), trailer.get("deletes")):
        raise corrupt(where, f"{name} does not match its trailer")
    if expected is not None and counts != (expected.puts, expected.deletes):
        raise corrupt(where, f"{name} does not match the manifest")
    return SegmentRecords(keys, norms, metadata, deleted, trailer)


def read_vectors(
    path: Path,
    expected: SegmentEntry,
    manifest: Manifest,
    *,
    verify: bool = True,
) -> npt.NDArray[Any]:
    """A segment's vectors (a read-only memory map), checked against ``expected``: size, CRC-32
    (``verify``; read in blocks, so the file is read once more, from the page cache), dtype and
    shape.

    Raises:
        StoreCorruptedError: The file does not match.
        StoreIOError: The file cannot be read.
    """
    where = path.parent
    dtype = np.dtype(manifest.storage_dtype)
    try:
        size = path.stat().st_size
        if size != expected.vectors_bytes:
            raise corrupt(where, f"{path.name} is {size} bytes, expected {expected.vectors_bytes}")
        if verify and expected.vectors_crc is not None and file_crc(path) != expected.vectors_crc:
            raise corrupt(where, f"{path.name} does not match its checksum (damaged)")
        if expected.puts == 0:
            return np.empty((0, manifest.dimension), dtype=dtype)
        arr: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as exc:  # referenced by the manifest: lost, or merged away
        raise corrupt(where, f"{path.name} is missing") from exc
    except OSError as exc:
        raise io_error_for(exc, where, "read") from exc
    except ValueError as exc:
        raise corrupt(where, f"{path.name}: {exc}") from exc
    if arr.shape != (expected.puts, manifest.dimension) or arr.dtype != dtype:
        raise corrupt(
            where,
            f"{path.name} holds {arr.dtype}{arr.shape}, expected "
            f"{dtype}{(expected.puts, manifest.dimension)}",
        )
    return arr


def file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 1024 * 1024):
            crc = zlib.crc32(chunk, crc)
    return crc


def _json_crc(body: Mapping[str, Any]) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def io_error(path: Path, doing: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into a :class:`StoreIOError` about ``path``."""
    try:
        yield
    except OSError as exc:
        raise io_error_for(exc, path, doing) from exc


def io_error_for(exc: OSError, path: Path, doing: str) -> StoreIOError:
    """The typed error for an OS error while ``doing`` (``open``, ``read``, ``write``)."""
    what = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "the disk is full: free space and retry",
        errno.EDQUOT: "the disk quota is exhausted: free space and retry",
        errno.EROFS: "the file system is read-only: open the store with read_only=True "
        "(CLI: commands that only read do), or move it",
        errno.EACCES: "permission denied: check the directory's owner and mode",
        errno.EPERM: "operation not permitted: check the directory's owner and mode",
    }.get(exc.errno or 0, "")
    safe = (
        "nothing was changed: the store holds what it held before this call"
        if doing == "write"
        else "nothing was changed"
    )
    return StoreIOError(
        f"could not {doing} the local vector store at {path}: {what}"
        + (f" ({hint})" if hint else "")
        + f"; {safe}",
        path=str(path),
        errno=exc.errno,
    )


def lock_directory(path: Path, *, owner: object) -> weakref.finalize[Any, Any] | None:
    """Take the directory's write lock (``flock``); released by calling the returned finalizer,
    or when ``owner`` is garbage collected.

    Raises:
        StoreLockedError: Another process (or open store) holds it.
        StoreIOError: The lock file cannot be created (read-only file system, permissions).
    """
    if sys.platform == "win32":  # pragma: no cover - POSIX only
        return None
    try:
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise io_error_for(exc, path, "open for writing") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreLockedError(
            f"another process (or another open LocalVectorStore) is writing {path}; "
            "close it first, or open this one with read_only=True",
            path=str(path),
        ) from exc
    return weakref.finalize(owner, os.close, fd)


def commit_manifest(path: Path, manifest: Manifest) -> None:
    """Atomically replace ``path``'s manifest: write a temporary file, fsync, rename, fsync
    the directory (a failure of that last fsync is logged: the rename is done)."""
    body = json.dumps(manifest.to_json(), indent=1).encode("utf-8")
    tmp = path / f"{MANIFEST}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / MANIFEST)
    try:
        _fsync_dir(path)
    except OSError:
        logger.warning("fsync of directory %s failed", path, exc_info=True)


def corrupt(path: Path, why: str) -> StoreCorruptedError:
    """The error for a damaged store; names the command that explains it."""
    return StoreCorruptedError(
        f"local vector store at {path} is unreadable: {why}. Nothing was changed; "
        f"`crossmodal store check {path}` explains what is damaged",
        path=str(path),
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(item: Mapping[str, object]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_records(
    path: Path,
    keys: Sequence[str],
    norms: npt.NDArray[np.float64],
    metadata: Sequence[Mapping[str, MetadataValue]],
    deleted: Sequence[str],
    trailer: dict[str, Any],
) -> tuple[int, int]:
    """Write a segment's records as JSON lines and its trailer (with the body's CRC-32), fsync
    them; return the file's size and CRC-32."""
    crc = 0
    with open(path, "wb") as fh:
        buf: list[str] = []

        def drain() -> None:
            nonlocal crc
            data = "".join(buf).encode("utf-8")
            fh.write(data)
            crc = zlib.crc32(data, crc)
            buf.clear()

        for i, key in enumerate(keys):
            buf.append(_dumps({"k": key, "n": float(norms[i]), "m": metadata[i]}))
            if len(buf) >= 4096:
                drain()
        buf.extend(_dumps({"k": key, "d": True}) for key in deleted)
        drain()
        buf.append(_dumps({"end": {**trailer, "body_crc": crc}}))
        drain()
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell(), crc


def _write_npy(
    path: Path,
    matrix: npt.NDArray[Any],
    rows: npt.NDArray[np.intp] | None,
    dimension: int,
) -> tuple[int, int]:
    """Write ``matrix`` (or ``matrix[rows]``) as .npy in blocks, fsync it; return its size and
    CRC-32."""
    count = matrix.shape[0] if rows is None else rows.shape[0]
    header = {
        "descr": np.lib.format.dtype_to_descr(matrix.dtype),
        "fortran_order": False,
        "shape": (count, dimension),
    }
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header)
    crc = zlib.crc32(head.getvalue())
    with open(path, "wb") as fh:
        fh.write(head.getvalue())
        for s in range(0, count, BLOCK_ROWS):
            block = matrix[s : s + BLOCK_ROWS] if rows is None else matrix[rows[s : s + BLOCK_ROWS]]
            data = np.ascontiguousarray(block).tobytes()
            fh.write(data)
            crc = zlib.crc32(data, crc)
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell(), crc
