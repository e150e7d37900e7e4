"""How a local store lives on disk: a locked directory of segments and one atomic manifest.

Layout::

    DIR/manifest.json          format version, dimension, metric, dtype, non-filterable keys,
                               generation and the ordered list of segments with their byte sizes
    DIR/seg-00000007.npy       the vectors written by one operation (storage dtype, no pickle)
    DIR/seg-00000007.jsonl     one line per record of that operation: {"k", "n", "m"} for a
                               put (key, vector norm, metadata), {"k", "d": true} for a delete
    DIR/.lock                  flock()-ed by the one writer

Every mutating call is durable when it returns. It appends one segment (new files, fsync),
then commits by atomically replacing ``manifest.json`` (write a temporary file, fsync, rename,
fsync the directory). Segments are replayed in order on open. A crash at any point leaves
either the previous or the new manifest, and each references only complete files, so the
store reopens in the previous or the new state, never in between. Files no manifest
references (left by a crash) are removed when a writer next opens the directory.

To keep reopening fast, segments are merged like a binary counter: the newest segments are
rewritten as one whenever the older neighbour is at most twice their size, so a store holds
O(log n) segments and each record is rewritten O(log n) times over its life (amortised
appends). A merge that reaches the first segment writes a fresh snapshot without tombstones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import weakref
from collections.abc import Mapping, Sequence
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
    StoreLockedError,
)
from crossmodal_search.stores._limits import validate_distance_metric
from crossmodal_search.stores._rows import BLOCK_ROWS, RowTable

if sys.platform != "win32":
    import fcntl

__all__ = ["MANIFEST", "Manifest", "SegmentEntry", "SegmentLog", "StorageDType"]

logger = logging.getLogger(__name__)

StorageDType = Literal["float32", "float16"]

_FORMAT = "crossmodal-search/local-vector-store"
_VERSION = 1
MANIFEST = "manifest.json"
_LOCK = ".lock"
_SEGMENT_RE = re.compile(r"^seg-(\d{8})\.(npy|jsonl)$")


@dataclass(frozen=True)
class SegmentEntry:
    """One committed segment as the manifest lists it."""

    seg_id: int
    puts: int
    deletes: int
    vectors_bytes: int
    records_bytes: int

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
        return {
            "id": self.seg_id,
            "puts": self.puts,
            "deletes": self.deletes,
            "vectors_bytes": self.vectors_bytes,
            "records_bytes": self.records_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentEntry:
        return cls(
            int(data["id"]),
            int(data["puts"]),
            int(data["deletes"]),
            int(data["vectors_bytes"]),
            int(data["records_bytes"]),
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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "dimension": self.dimension,
            "distance_metric": self.distance_metric,
            "storage_dtype": self.storage_dtype,
            "non_filterable_metadata_keys": sorted(self.non_filterable_metadata_keys),
            "generation": self.generation,
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: object, where: Path) -> Manifest:
        """Parse and check a manifest read from ``where``; StoreCorruptedError if malformed."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise _corrupt(where, f"{MANIFEST} is not a {_FORMAT} manifest")
        if data.get("version") != _VERSION:
            raise _corrupt(
                where,
                f"format version {data.get('version')!r} is not supported (expected {_VERSION})",
            )
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
            raise _corrupt(where, f"malformed {MANIFEST}: {exc}") from exc


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
        self.manifest: Manifest | None = self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> Manifest | None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"{path} exists and is not a directory")
        if not path.exists():
            if self.read_only:
                raise ConfigurationError(f"no local vector store at {path}")
            path.mkdir(parents=True)
            _fsync_dir(path.parent)  # the new directory's entry must survive a crash too
        if not self.read_only:
            self._acquire_lock()
        try:
            if (path / MANIFEST).exists():
                return self.read_manifest()
            segments = sorted(p.name for p in path.iterdir() if _SEGMENT_RE.match(p.name))
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
        if sys.platform == "win32":  # pragma: no cover - POSIX only
            return
        fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreLockedError(
                f"another process (or another open LocalVectorStore) is writing {self.path}; "
                "close it first, or open this one with read_only=True",
                path=str(self.path),
            ) from exc
        self._lock_finalizer = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        """Release the write lock (if held)."""
        if self._lock_finalizer is not None:
            self._lock_finalizer()
            self._lock_finalizer = None

    def read_manifest(self) -> Manifest:
        """The manifest on disk now."""
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _corrupt(self.path, f"cannot read {MANIFEST}: {exc}") from exc
        return Manifest.from_json(data, self.path)

    # ------------------------------------------------------------------ writing

    def create(self, manifest: Manifest) -> None:
        """Commit the manifest of a new, empty store."""
        self._commit(manifest)

    def _commit(self, manifest: Manifest) -> None:
        """Atomically make ``manifest`` the directory's state."""
        body = json.dumps(manifest.to_json(), indent=1).encode("utf-8")
        tmp = self.path / f"{MANIFEST}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / MANIFEST)
        self.manifest = manifest
        # Past the rename the new state is what a reader sees: it is committed.
        try:
            _fsync_dir(self.path)
        except OSError:
            logger.warning("fsync of directory %s failed", self.path, exc_info=True)

    def append(
        self,
        keys: Sequence[str],
        stored: npt.NDArray[Any],
        norms: npt.NDArray[np.float64],
        metadata: Sequence[Mapping[str, MetadataValue]],
        *,
        deleted: Sequence[str],
    ) -> None:
        """Write one operation as a new segment and commit it."""
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
            vectors_bytes = _write_npy(vectors_path, stored, rows, current.dimension)
            records_bytes = _write_records(records_path, keys, norms, metadata, deleted)
            seg = SegmentEntry(seg_id, len(keys), len(deleted), vectors_bytes, records_bytes)
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
            orphan_segment = _SEGMENT_RE.match(p.name) and p.name not in referenced
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

    def _replay(self, manifest: Manifest, rows: RowTable) -> None:
        for i, seg in enumerate(manifest.segments):
            keys, norms, metadata, deleted = self._read_records(seg)
            self._touched[seg.seg_id] = None if i == 0 else frozenset(keys) | frozenset(deleted)
            rows.delete(deleted)
            vectors = self._read_vectors(seg, manifest)
            if keys:
                rows.put(keys, vectors, np.asarray(norms, dtype=np.float64), metadata)
            del vectors

    def _read_vectors(self, seg: SegmentEntry, manifest: Manifest) -> npt.NDArray[Any]:
        path = self.path / seg.vectors_name
        dtype = np.dtype(manifest.storage_dtype)
        try:
            size = path.stat().st_size
            if size != seg.vectors_bytes:
                raise ValueError(
                    f"{seg.vectors_name} is {size} bytes, expected {seg.vectors_bytes}"
                )
            if seg.puts == 0:
                return np.empty((0, manifest.dimension), dtype=dtype)
            arr: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _corrupt(self.path, str(exc)) from exc
        if arr.shape != (seg.puts, manifest.dimension) or arr.dtype != dtype:
            raise _corrupt(
                self.path,
                f"{seg.vectors_name} holds {arr.dtype}{arr.shape}, expected "
                f"{dtype}{(seg.puts, manifest.dimension)}",
            )
        return arr

    def _read_records(
        self, seg: SegmentEntry
    ) -> tuple[list[str], list[float], list[dict[str, MetadataValue]], list[str]]:
        path = self.path / seg.records_name
        keys: list[str] = []
        norms: list[float] = []
        metadata: list[dict[str, MetadataValue]] = []
        deleted: list[str] = []
        try:
            raw = path.read_bytes()
            if len(raw) != seg.records_bytes:
                raise ValueError(
                    f"{seg.records_name} is {len(raw)} bytes, expected {seg.records_bytes}"
                )
            for line in raw.decode("utf-8").splitlines():
                item = json.loads(line)
                if item.get("d"):
                    deleted.append(item["k"])
                else:
                    keys.append(item["k"])
                    norms.append(float(item["n"]))
                    metadata.append(item["m"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _corrupt(self.path, f"{seg.records_name}: {exc}") from exc
        if len(keys) != seg.puts or len(deleted) != seg.deletes:
            raise _corrupt(self.path, f"{seg.records_name} does not match the manifest")
        return keys, norms, metadata, deleted


def _corrupt(path: Path, why: str) -> StoreCorruptedError:
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
) -> int:
    """Write a segment's records as JSON lines, fsync them, return their size."""
    with open(path, "wb") as fh:
        buf: list[str] = []
        for i, key in enumerate(keys):
            buf.append(_dumps({"k": key, "n": float(norms[i]), "m": metadata[i]}))
            if len(buf) >= 4096:
                fh.write("".join(buf).encode("utf-8"))
                buf.clear()
        buf.extend(_dumps({"k": key, "d": True}) for key in deleted)
        fh.write("".join(buf).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def _write_npy(
    path: Path,
    matrix: npt.NDArray[Any],
    rows: npt.NDArray[np.intp] | None,
    dimension: int,
) -> int:
    """Write ``matrix`` (or ``matrix[rows]``) as .npy in blocks, fsync it, return its size."""
    count = matrix.shape[0] if rows is None else rows.shape[0]
    header = {
        "descr": np.lib.format.dtype_to_descr(matrix.dtype),
        "fortran_order": False,
        "shape": (count, dimension),
    }
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for s in range(0, count, BLOCK_ROWS):
            block = matrix[s : s + BLOCK_ROWS] if rows is None else matrix[rows[s : s + BLOCK_ROWS]]
            fh.write(np.ascontiguousarray(block).tobytes())
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()
