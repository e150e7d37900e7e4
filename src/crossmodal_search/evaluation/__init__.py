"""Search quality evaluation, setting comparison, and the quality of zero-shot tags.

Measure a catalog's search with labelled queries (JSON lines, see :func:`read_queries`), or
build them from the catalog itself (:func:`build_queries_from_catalog`)::

    from crossmodal_search.evaluation import compare, read_queries

    comparison = compare(searcher, read_queries("queries.jsonl"), k_values=(1, 5, 10))
    print(comparison.best.label, comparison.best_reason)
    for row in comparison.results:
        report = row.report
        print(row.sweep, report.settings.label, report.metric("ndcg@10"), report.embed_calls)

:func:`compare` sweeps text / image / combined vectors, ``mean`` / ``rrf`` fusion, the text
weight, the dimension (Matryoshka truncation of the stored vectors, not re-embedding) and, for
products with several photos, the main photo only against every photo, each with its quality
overall and per query type, its embedding calls and its stored bytes. Held-out photo queries
stay honest when the catalog is indexed through :func:`hold_out`.

Zero-shot tags (``crossmodal_search.search.tag_products``) are measured against gold labels
with :func:`evaluate_tags`.

The same from the command line: ``crossmodal eval``, ``crossmodal tag``.
"""

from crossmodal_search.evaluation._adapters import CountingEmbedder, TruncatingEmbedder
from crossmodal_search.evaluation._harness import compare, evaluate
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
from crossmodal_search.evaluation._plot import plot_comparison
from crossmodal_search.evaluation._queries import (
    LabelledQuery,
    QueryType,
    build_queries_from_catalog,
    hold_out,
    read_abo_other_images,
    read_queries,
    write_queries,
)
from crossmodal_search.evaluation._reports import (
    Comparison,
    EvalReport,
    EvalSettings,
    MetricSummary,
    QueryDetail,
    SettingResult,
    SkippedSetting,
)
from crossmodal_search.evaluation._sample import SampleEvaluation, write_sample_evaluation
from crossmodal_search.evaluation._tag_quality import (
    TagQuality,
    TagScore,
    evaluate_tags,
)

__all__ = [
    "Comparison",
    "CountingEmbedder",
    "EvalReport",
    "EvalSettings",
    "LabelledQuery",
    "MetricSummary",
    "QueryDetail",
    "QueryType",
    "Relevance",
    "SampleEvaluation",
    "SettingResult",
    "SkippedSetting",
    "TagQuality",
    "TagScore",
    "TruncatingEmbedder",
    "build_queries_from_catalog",
    "compare",
    "dcg_at_k",
    "evaluate",
    "evaluate_tags",
    "has_relevant",
    "hit_rate_at_k",
    "hold_out",
    "ndcg_at_k",
    "normalize_relevance",
    "plot_comparison",
    "precision_at_k",
    "read_abo_other_images",
    "read_queries",
    "recall_at_k",
    "reciprocal_rank",
    "write_queries",
    "write_sample_evaluation",
]
