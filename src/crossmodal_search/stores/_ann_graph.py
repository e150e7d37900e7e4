"""One HNSW graph over row labels (``hnswlib``, extra ``ann``): build, update, query."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal_search._types import DistanceMetric
from crossmodal_search.errors import ConfigurationError
from crossmodal_search.stores._ann_scan import FloatMatrix, Hits, as_f32

logger = logging.getLogger(__name__)


def import_hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as exc:
        raise ConfigurationError(
            "accelerator='hnsw' needs hnswlib: pip install 'crossmodal-search[ann]'"
        ) from exc
    return hnswlib


class Graph:
    """An ``hnswlib`` index whose labels are the store's row numbers, and which are live.

    hnswlib keeps deleted labels (marked); ``present`` says which labels are live. Every call
    takes the graph's own lock, so a query never sees a half-applied write.
    """

    def __init__(
        self,
        hnswlib: Any,
        *,
        metric: DistanceMetric,
        dim: int,
        capacity: int,
        m: int,
        ef_construction: int,
        seed: int,
        num_threads: int,
        prefix_dim: int | None = None,
    ) -> None:
        # A prefix graph links rows by their leading dimensions only (the caller re-ranks).
        self.prefix = prefix_dim if prefix_dim is not None and prefix_dim < dim else None
        # hnswlib's "cosine" space normalises rows and queries itself; distance = 1 - cos
        # (of the prefix: a re-normalised Matryoshka prefix ranks by prefix cosine).
        self.index = hnswlib.Index(
            space="cosine" if metric == "cosine" else "l2", dim=self.prefix or dim
        )
        self.index.init_index(
            max_elements=max(capacity, 16), M=m, ef_construction=ef_construction, random_seed=seed
        )
        self.metric = metric
        self.m = m
        self.num_threads = num_threads
        self.present = np.zeros(0, dtype=np.bool_)
        self.lock = threading.Lock()

    @property
    def live(self) -> int:
        return int(np.count_nonzero(self.present))

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the graph and its copy of the vectors."""
        per_row = 4 * int(self.index.dim) + 4 * (2 * self.m + 1) + 8 + 4  # vector, links, ...
        return int(self.index.get_max_elements()) * per_row

    def add(self, rows: npt.ArrayLike, vectors: FloatMatrix) -> None:
        """Rows ``rows`` now hold ``vectors`` (new labels, or re-added ones)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return
        with self.lock:
            data = self._lead(as_f32(np.asarray(vectors)))
            idx, data = self._changed(idx, data)
            if idx.size == 0:
                return
            present = self.present
            if int(idx.max()) >= present.size:
                grown = np.zeros(max(int(idx.max()) + 1, 2 * present.size), dtype=np.bool_)
                grown[: present.size] = present
                present = grown
            # Upper bound on new slots (re-added labels reuse theirs); growth doubles.
            new = int(np.unique(idx).size)
            capacity = int(self.index.get_max_elements())
            count = int(self.index.element_count)
            if count + new > capacity:
                self.index.resize_index(max(2 * capacity, count + new))
            self.index.add_items(data, idx, num_threads=self.num_threads)
            present[idx] = True
            self.present = present

    def _lead(self, data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The dimensions the graph holds: all, or the leading ``prefix``."""
        return data if self.prefix is None else np.ascontiguousarray(data[:, : self.prefix])

    def _changed(
        self, idx: npt.NDArray[np.int64], data: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The rows whose vector differs from the graph's. Re-adding a live label makes hnswlib
        rewire its neighbourhood (slow, and it degrades the graph), so a row written again
        with the same vector (a background build replaying a write it had read) is skipped."""
        if self.present.size == 0:
            return idx, data
        live = (idx < self.present.size) & self.present[np.minimum(idx, self.present.size - 1)]
        if not live.any():
            return idx, data
        stored = np.asarray(self.index.get_items(idx[live]), dtype=np.float32)
        mine = data[live]
        if self.metric == "cosine":  # hnswlib keeps cosine rows normalised
            norms = np.linalg.norm(mine, axis=1, keepdims=True)
            mine = np.divide(mine, norms, out=np.zeros_like(mine), where=norms > 0)
        same = np.zeros(idx.size, dtype=np.bool_)
        same[live] = np.all(np.abs(stored - mine) <= 1e-6, axis=1)
        return idx[~same], data[~same]

    def remove(self, rows: npt.ArrayLike) -> None:
        """Rows ``rows`` no longer hold live records."""
        with self.lock:
            for row in np.asarray(rows, dtype=np.int64).reshape(-1).tolist():
                if 0 <= row < self.present.size and self.present[row]:
                    self.index.mark_deleted(row)
                    self.present[row] = False

    def knn(self, q: npt.NDArray[np.float32], k: int, ef: int) -> list[Hits] | None:
        """The ``k`` nearest live rows per query (a prefix graph: by the prefix, distances
        included); ``None`` when hnswlib cannot return ``k`` rows (too many deleted)."""
        try:
            with self.lock:
                k = min(k, self.live)
                self.index.set_ef(max(ef, k))
                labels, dists = self.index.knn_query(
                    self._lead(q), k=k, num_threads=1 if q.shape[0] == 1 else -1
                )
        except RuntimeError:
            logger.debug("hnswlib returned fewer than %d rows; using the exact scan", k)
            return None
        out: list[Hits] = []
        for row_labels, row_dists in zip(labels, dists, strict=True):
            d = row_dists.astype(np.float32)
            if self.metric == "euclidean":
                d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
            out.append((row_labels.astype(np.intp), d))
        return out
