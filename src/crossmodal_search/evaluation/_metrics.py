"""Ranking metrics over one ranked result list and a set of graded relevance judgements.

Conventions shared by every function here:

* ``ranked`` is the result list best first (product ids). It is a *ranked list*: ties in
  similarity were already broken by the order the searcher returned, and the metrics use
  that order as given. A product id that appears again further down is ignored (its later
  occurrences are dropped and the items after it move up), so a result list that repeats a
  product cannot score twice for it.
* ``relevant`` maps product ids to relevance grades (finite numbers ``>= 0``). A grade of
  ``0`` records a judged non-relevant product; only grades ``> 0`` count as relevant. A plain
  sequence of ids means grade 1 for each.
* ``k`` is the cut-off: only the first ``k`` (deduplicated) results count. ``k`` may exceed
  the length of the list; missing positions count as non-relevant results, so e.g.
  precision@10 of a 3-item list divides by 10 (the trec_eval convention).
* A query with **no relevant item** (empty ``relevant`` or all grades ``0``) has undefined
  recall, MRR, nDCG and hit rate. These functions return ``0.0`` for it, and
  :func:`has_relevant` lets callers detect the case: the evaluation harness excludes such
  queries from its averages and reports how many it excluded (trec_eval's default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

from crossmodal_search.errors import InvalidInputError

__all__ = [
    "Relevance",
    "dcg_at_k",
    "has_relevant",
    "hit_rate_at_k",
    "ndcg_at_k",
    "normalize_relevance",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
]

#: Relevance judgements: ``{product_id: grade}`` or a sequence of relevant ids (grade 1 each).
Relevance: TypeAlias = Mapping[str, float] | Sequence[str]


def normalize_relevance(relevant: Relevance) -> dict[str, float]:
    """Return ``relevant`` as ``{product_id: grade}``, validating the grades.

    Raises:
        InvalidInputError: a grade is negative, NaN or infinite, or ``relevant`` is a string.
    """
    if isinstance(relevant, str):
        raise InvalidInputError("relevant must be a mapping or a list of ids, not a string")
    if isinstance(relevant, Mapping):
        grades: dict[str, float] = {}
        for key, grade in relevant.items():
            value = float(grade)
            if not math.isfinite(value) or value < 0:
                raise InvalidInputError(
                    f"relevance grade of {key!r} must be a finite number >= 0, got {grade!r}"
                )
            grades[str(key)] = value
        return grades
    return {str(key): 1.0 for key in relevant}


def has_relevant(relevant: Relevance) -> bool:
    """Whether at least one judged item has a grade above zero."""
    return any(g > 0 for g in normalize_relevance(relevant).values())


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")


def _dedup(ranked: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in ranked:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _top(ranked: Iterable[str], k: int) -> list[str]:
    _check_k(k)
    return _dedup(ranked)[:k]


def recall_at_k(ranked: Sequence[str], relevant: Relevance, k: int) -> float:
    """Share of the relevant items found in the first ``k`` results.

    ``|relevant ∩ top_k| / |relevant|`` where relevant means grade > 0. ``0.0`` when no
    item is relevant.
    """
    grades = normalize_relevance(relevant)
    wanted = {key for key, g in grades.items() if g > 0}
    if not wanted:
        return 0.0
    return sum(1 for item in _top(ranked, k) if item in wanted) / len(wanted)


def precision_at_k(ranked: Sequence[str], relevant: Relevance, k: int) -> float:
    """Share of the first ``k`` result positions that hold a relevant item.

    ``|relevant ∩ top_k| / k``: the denominator is ``k`` even when fewer than ``k`` results
    came back (an unfilled position is a miss).
    """
    grades = normalize_relevance(relevant)
    return sum(1 for item in _top(ranked, k) if grades.get(item, 0.0) > 0) / k


def hit_rate_at_k(ranked: Sequence[str], relevant: Relevance, k: int) -> float:
    """``1.0`` when at least one relevant item is in the first ``k`` results, else ``0.0``.

    Averaged over queries this is the hit rate (a.k.a. success@k).
    """
    grades = normalize_relevance(relevant)
    return 1.0 if any(grades.get(item, 0.0) > 0 for item in _top(ranked, k)) else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: Relevance, k: int | None = None) -> float:
    """``1 / rank`` of the first relevant result (ranks start at 1), ``0.0`` if none.

    With ``k`` only the first ``k`` results are searched (MRR@k). Averaged over queries
    this is the mean reciprocal rank (MRR).
    """
    grades = normalize_relevance(relevant)
    items = _dedup(ranked) if k is None else _top(ranked, k)
    for rank, item in enumerate(items, start=1):
        if grades.get(item, 0.0) > 0:
            return 1.0 / rank
    return 0.0


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of a gain list: ``sum(g_i / log2(i + 1))`` for ``i = 1..k``.

    Linear gain (the grade itself) with the log2 position discount of Järvelin and
    Kekäläinen; position 1 is not discounted.
    """
    _check_k(k)
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains[:k], start=1))


def ndcg_at_k(ranked: Sequence[str], relevant: Relevance, k: int) -> float:
    """Normalised DCG at ``k`` with graded relevance.

    ``DCG@k / IDCG@k`` where DCG uses each result's grade (0 for unjudged items) as gain and
    IDCG is the DCG of the judged grades sorted best first, also cut at ``k``. In ``[0, 1]``;
    ``1.0`` means no reordering of the results could score higher. ``0.0`` when no item is
    relevant.
    """
    grades = normalize_relevance(relevant)
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)
    if not ideal:
        return 0.0
    gains = [grades.get(item, 0.0) for item in _top(ranked, k)]
    return dcg_at_k(gains, k) / dcg_at_k(ideal, k)
