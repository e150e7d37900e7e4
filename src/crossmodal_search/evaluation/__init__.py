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
from crossmodal_search.evaluation._queries import (
    LabelledQuery,
    QueryType,
    build_queries_from_catalog,
    read_queries,
    write_queries,
)

__all__ = [
    "LabelledQuery",
    "QueryType",
    "Relevance",
    "build_queries_from_catalog",
    "dcg_at_k",
    "has_relevant",
    "hit_rate_at_k",
    "ndcg_at_k",
    "normalize_relevance",
    "precision_at_k",
    "read_queries",
    "recall_at_k",
    "reciprocal_rank",
    "write_queries",
]
