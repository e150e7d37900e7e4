"""A persistent embedding cache: one SQLite file, float32 bytes, no pickle."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from crossmodal_search._types import Vector
from crossmodal_search.errors import ConfigurationError

__all__ = ["EmbeddingCache", "cache_key"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(
    *, model_id: str, dimension: int, purpose: str, kind: str, options: str, content: bytes
) -> str:
    """The cache key: model, dimension, purpose, modality options and a sha256 of the content.

    ``options`` carries what else changes the vector (truncation mode, detail level, media
    format, video embedding mode); ``content`` is the exact text or media bytes sent.
    """
    head = json.dumps(
        [model_id, int(dimension), str(purpose), kind, options], separators=(",", ":")
    )
    digest = hashlib.sha256(content).hexdigest()
    return f"{hashlib.sha256(head.encode()).hexdigest()[:32]}:{digest}"


class EmbeddingCache:
    """Embeddings keyed by :func:`cache_key`, stored in a SQLite file (WAL, thread-safe).

    Re-indexing the same catalog with the same model, dimension and purpose reads vectors from
    here instead of paying Bedrock again. Vectors are stored as raw float32 bytes with their
    dimension; nothing is pickled.

    Args:
        path: the SQLite file (created with its parent directory), or ``":memory:"``.

    Example:
        >>> with EmbeddingCache(":memory:") as cache:
        ...     cache.put("k", np.ones(4, dtype=np.float32))
        ...     cache.get("k").tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            if self._path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"cannot open embedding cache {self._path!r}: {exc}") from exc
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def path(self) -> str:
        """The SQLite file path."""
        return self._path

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigurationError(f"embedding cache {self._path!r} is closed")
        return self._conn

    def get(self, key: str) -> Vector | None:
        """The cached vector for ``key``, or None."""
        with self._lock:
            row = (
                self._db()
                .execute("SELECT dim, vector FROM embeddings WHERE key = ?", (key,))
                .fetchone()
            )
            if row is None:
                self.misses += 1
                return None
            dim, blob = int(row[0]), bytes(row[1])
            if len(blob) != 4 * dim:
                logger.warning("embedding cache %s: corrupt entry %s ignored", self._path, key)
                self.misses += 1
                return None
            self.hits += 1
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)

    def put(self, key: str, vector: Vector) -> None:
        """Store ``vector`` (1-D, converted to little-endian float32) under ``key``."""
        arr = np.ascontiguousarray(np.asarray(vector, dtype="<f4"))
        if arr.ndim != 1:
            raise ValueError(f"only 1-D vectors can be cached, got shape {arr.shape}")
        with self._lock:
            self._db().execute(
                "INSERT OR REPLACE INTO embeddings (key, dim, vector, created) VALUES (?,?,?,?)",
                (key, int(arr.shape[0]), arr.tobytes(), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            row = self._db().execute("SELECT 1 FROM embeddings WHERE key = ?", (key,)).fetchone()
        return row is not None

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({self._path!r})"
