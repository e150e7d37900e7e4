"""The files of a local store directory: the manifest and segment formats, checksums, the
write lock, and the typed errors of the file system.

``stores/_persist.py`` (the segment log) and ``stores/_recover.py`` (check and recover) build
on these; nothing here keeps state.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import mmap
import os
import platform
import re
import sys
import weakref
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric, MetadataValue
from crossmodal_search.errors import (
    InvalidInputError,
    StoreCorruptedError,
    StoreIOError,
    StoreLockedError,
)
from crossmodal_search.stores._limits import validate_distance_metric
from crossmodal_search.stores._rowmatrix import Rows
from crossmodal_search.stores._rows import BLOCK_ROWS
from crossmodal_search.stores._text import TextField, validate_text_fields

if sys.platform != "win32":
    import fcntl

__all__ = [
    "LOCK",
    "MANIFEST",
    "SEGMENT_RE",
    "Manifest",
    "SegmentEntry",
    "SegmentRecords",
    "StorageDType",
    "commit_manifest",
    "corrupt",
    "file_crc",
    "fsync_dir",
    "io_error",
    "io_error_for",
    "lock_directory",
    "manifest_stamp",
    "read_records",
    "read_vectors",
    "write_npy",
    "write_records",
]

logger = logging.getLogger(__name__)

StorageDType = Literal["float32", "float16"]

# Architectures whose mmap flags are Linux's generic ones (MAP_NORESERVE = 0x4000).
_GENERIC_MMAP_ARCHES = frozenset(
    {"x86_64", "i386", "i686", "aarch64", "arm64", "armv7l", "riscv64", "s390x", "loongarch64"}
)

_FORMAT = "crossmodal-search/local-vector-store"
# Version 2 added checksums and segment trailers; version 1 stores are read (unverified) and
# upgraded by their next write.
_VERSION = 2
_READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
LOCK = ".lock"
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
    #: Full-text searchable keys. Absent from manifests written before full-text search, and
    #: from the JSON when empty, so such a store reads as it did.
    text_fields: tuple[TextField, ...] = ()

    def settings(self) -> dict[str, Any]:
        """What a segment trailer repeats, so a lost manifest can be rebuilt."""
        out: dict[str, Any] = {
            "dimension": self.dimension,
            "distance_metric": self.distance_metric,
            "storage_dtype": self.storage_dtype,
            "non_filterable_metadata_keys": sorted(self.non_filterable_metadata_keys),
        }
        if self.text_fields:
            out["text_fields"] = text_fields_to_json(self.text_fields)
        return out

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
        if self.text_fields:
            body["text_fields"] = text_fields_to_json(self.text_fields)
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
                text_fields=text_fields_from_json(data.get("text_fields", [])),
            )
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise corrupt(where, f"malformed {MANIFEST}: {exc}") from exc


def text_fields_to_json(fields: Sequence[TextField]) -> list[dict[str, str]]:
    """Text fields as stored: key and language (status is always ACTIVE locally)."""
    return [
        {"key": f.key} if f.language is None else {"key": f.key, "language": f.language}
        for f in fields
    ]


def text_fields_from_json(data: object) -> tuple[TextField, ...]:
    """Parse stored text fields (InvalidInputError or TypeError when malformed)."""
    if not isinstance(data, list):
        raise TypeError(f"text_fields is {type(data).__name__}, not a list")
    return validate_text_fields(TextField(d["key"], d.get("language")) for d in data)


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
    writable: bool = False,
) -> npt.NDArray[Any]:
    """A segment's vectors (a read-only memory map; ``writable``: copy-on-write, so writes stay
    in memory), checked against ``expected``: size, CRC-32 (``verify``; read in blocks, so the
    file is read once more, from the page cache), dtype and shape.

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
        arr: npt.NDArray[Any] = (
            _map_private(path) if writable else np.load(path, mmap_mode="r", allow_pickle=False)
        )
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


# Linux's MAP_NORESERVE (Python names it from 3.13): a private writable mapping is then not
# charged against the commit limit, without which the kernel refuses one larger than RAM.
_NORESERVE = getattr(
    mmap,
    "MAP_NORESERVE",
    0x4000 if sys.platform == "linux" and platform.machine() in _GENERIC_MMAP_ARCHES else 0,
)


def _map_private(path: Path) -> npt.NDArray[Any]:
    """A ``.npy`` file's array as a private (copy-on-write) memory map: writes stay in this
    process's memory, the file is never written. Where the kernel refuses to map it that way
    (strict overcommit and a file larger than memory), a read-only map: the caller copies it."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran or dtype.hasobject or len(shape) != 2:
            raise ValueError(f"not a C-ordered 2-D array of numbers: {dtype}{shape}")
        offset = fh.tell()
        try:
            mm = mmap.mmap(
                fh.fileno(),
                0,
                flags=mmap.MAP_PRIVATE | _NORESERVE,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            logger.warning("%s cannot be mapped copy-on-write (%s); reading it", path, exc)
            readonly: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
            return readonly
    return np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset)


def file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 1024 * 1024):
            crc = zlib.crc32(chunk, crc)
    return crc


def _json_crc(body: Mapping[str, Any]) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def manifest_stamp(path: Path) -> tuple[int, int, int]:
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
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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
        fsync_dir(path)
    except OSError:
        logger.warning("fsync of directory %s failed", path, exc_info=True)


def corrupt(path: Path, why: str) -> StoreCorruptedError:
    """The error for a damaged store; names the command that explains it."""
    return StoreCorruptedError(
        f"local vector store at {path} is unreadable: {why}. Nothing was changed; "
        f"`crossmodal store check {path}` explains what is damaged",
        path=str(path),
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(item: Mapping[str, object]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_records(
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


def write_npy(
    path: Path,
    matrix: Rows,
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
