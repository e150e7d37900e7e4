"""Full-text and hybrid ranking, as S3 Vectors documents it, over our BM25 indexes.

* Text only: a record's score is the sum of its BM25 scores over the queried keys; only records
  holding a query word are ranked, so there may be fewer than ``top_k``.
* Hybrid: one BM25 ranking per queried key (its best ``top_k``) and the vector ranking (its best
  ``top_k``) are fused by Reciprocal Rank Fusion, ``sum 1 / (60 + rank)``.

Both apply the filter first (``mask``). Ties are broken by key, ascending (a local choice; S3
Vectors does not document its order). ``LocalVectorStore`` and ``FakeS3Vectors`` both rank here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crossmodal_search.stores._fulltext import TextIndex, best, sum_by_row
from crossmodal_search.stores._rows import copy_metadata
from crossmodal_search.stores._text import TextMatch, TextQuery, reciprocal_rank_fusion

if TYPE_CHECKING:
    from crossmodal_search.stores._exact import ExactSearch
    from crossmodal_search.stores._filter import CompiledFilter
    from crossmodal_search.stores._rows import RowTable

__all__ = ["Ranked", "rank_text", "text_matches"]

#: One ranked record: its key, ranking score, BM25 score per key it matched, RRF score
#: (hybrid only) and vector distance (when it came through the vector ranking).
Ranked = tuple[str, float, dict[str, float], float | None, float | None]


def _by_key(
    rows: npt.NDArray[np.intp], scores: npt.NDArray[np.float64], keys: Sequence[str], top_k: int
) -> list[tuple[int, float]]:
    """The best ``top_k`` of candidates that include every row tied with the k-th, in
    (score descending, key ascending) order."""
    pairs = sorted(
        zip(rows.tolist(), scores.tolist(), strict=True), key=lambda p: (-p[1], keys[p[0]])
    )
    return pairs[:top_k]


def rank_text(
    queries: Sequence[TextQuery],
    index_of: Callable[[str], TextIndex],
    keys: Sequence[str],
    row_of: Mapping[str, int],
    *,
    top_k: int,
    mask: npt.NDArray[np.bool_] | None,
    vector_ranking: Sequence[tuple[str, float]] | None = None,
) -> list[Ranked]:
    """Rank records by ``queries`` (and ``vector_ranking``, for a hybrid query).

    Args:
        queries: One query text per searchable key (validated).
        index_of: The BM25 index of a key, row-aligned with ``keys``.
        keys: The key of each row.
        row_of: The row of each key.
        top_k: Results wanted (and the rank window of each fused ranking).
        mask: The rows the filter allows (None: all).
        vector_ranking: ``(key, distance)`` of the vector search's best ``top_k`` matches,
            best first, filtered the same way; None for a text-only query.
    """
    matched: dict[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]] = {
        q.key: index_of(q.key).scores(q.text, mask) for q in queries
    }

    def bm25_of(row: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, (rows, scores) in matched.items():
            at = int(np.searchsorted(rows, row))
            if at < rows.shape[0] and rows[at] == row:
                out[key] = float(scores[at])
        return out

    if vector_ranking is None:
        parts = [pair for pair in matched.values() if pair[0].shape[0]]
        if not parts:
            return []
        every = np.concatenate([rows for rows, _ in parts])
        rows, total = sum_by_row(every, np.concatenate([s for _, s in parts]), len(keys))
        chosen = _by_key(*best(rows, total, top_k), keys, top_k)
        return [(keys[row], score, bm25_of(row), None, None) for row, score in chosen]

    rankings: list[list[str]] = []
    for rows, scores in matched.values():
        window = _by_key(*best(rows, scores, top_k), keys, top_k)
        rankings.append([keys[row] for row, _ in window])
    rankings.append([key for key, _ in vector_ranking[:top_k]])
    fused = reciprocal_rank_fusion(rankings)
    distance = dict(vector_ranking)
    order = sorted(fused, key=lambda k: (-fused[k], k))[:top_k]
    return [(k, fused[k], bm25_of(row_of[k]), fused[k], distance.get(k)) for k in order]


def text_matches(
    rows: RowTable,
    search: ExactSearch,
    queries: Sequence[TextQuery],
    q: npt.NDArray[np.float32] | None,
    top_k: int,
    compiled: CompiledFilter | None,
) -> list[TextMatch]:
    """``LocalVectorStore.query_text``: the local store's rows ranked by :func:`rank_text`, the
    vector ranking (hybrid) from its exact ``search``."""
    mask = None if compiled is None else compiled.mask(rows.columns)
    ranking = None
    if q is not None:
        found = search.search(q[None, :], top_k, compiled)[0]
        ranking = [(m.key, m.distance) for m in found]
    ranked = rank_text(
        queries,
        rows.text_index,
        rows.keys,
        rows.index,
        top_k=top_k,
        mask=mask,
        vector_ranking=ranking,
    )
    return [
        TextMatch(key, score, bm25, fused, distance, copy_metadata(rows.metadata[rows.index[key]]))
        for key, score, bm25, fused, distance in ranked
    ]
