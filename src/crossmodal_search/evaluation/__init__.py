"""Search quality evaluation, setting comparison and zero-shot tagging."""

from crossmodal_search.evaluation._metrics import (
    Relevance,
    dcg_at_k,
    has_relevant,
    hit_rate_at_k,
    ndcg_at_k,
    normalize_relevance,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)

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
