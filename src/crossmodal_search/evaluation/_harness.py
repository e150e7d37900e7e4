"""Run a labelled query set through a searcher, and compare search settings in one run.

:func:`evaluate` scores one :class:`EvalSettings`; :func:`compare` sweeps, one factor at a
time around a base setting: the stored vectors searched (text / image / combined), the fusion
of text+image queries (``mean`` vs ``rrf``), the text weight (0 to 1 by 0.25) and the vector
dimension (256 / 384 / 1024 / 3072). The dimension sweep **truncates** the stored vectors
(Matryoshka: keep the first ``d`` values and re-normalise) into temporary in-memory
``LocalVectorStore``\\ s and truncates the query vectors the same way; it does not re-embed,
so it costs no embedding call and cannot go above the stored dimension (those settings are
reported as skipped). Every setting reports its quality, the embedding calls it needs (one
Bedrock ``InvokeModel`` per query text or image with Nova) and its stored vector bytes, and
the best setting is named. Where the store has full-text fields, hybrid search (the query's
words ranked by BM25 with its vector) is compared with vector-only search, and lexical weights
with each other, per query kind: exact terms (brands, model numbers, sizes) and descriptions.
Where products have several photos, searching only each product's main photo is compared with
searching every photo (``photos``), per query type.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from crossmodal_search.errors import InvalidInputError, UnsupportedMediaError
from crossmodal_search.evaluation._adapters import CountingEmbedder, TruncatingEmbedder
from crossmodal_search.evaluation._metrics import (
    has_relevant,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from crossmodal_search.evaluation._queries import LabelledQuery
from crossmodal_search.evaluation._reports import (
    Comparison,
    EvalReport,
    EvalSettings,
    FusionName,
    MetricSummary,
    PhotosName,
    QueryDetail,
    SearchModeName,
    SettingResult,
    SkippedSetting,
    Sweep,
)
from crossmodal_search.evaluation._stores import main_photo_store, truncated_store
from crossmodal_search.evaluation._sweeps import hybrid_sweeps, photo_sweeps, setting_sweeps

if TYPE_CHECKING:
    from crossmodal_search.embeddings import Embedder
    from crossmodal_search.search import CrossmodalSearcher
    from crossmodal_search.stores import VectorStore

__all__ = [
    "Comparison",
    "EvalReport",
    "EvalSettings",
    "MetricSummary",
    "QueryDetail",
    "SettingResult",
    "SkippedSetting",
    "Sweep",
    "compare",
    "evaluate",
]

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES = (1, 5, 10)
DEFAULT_SEARCH_MODES: tuple[SearchModeName, ...] = ("text", "image", "combined")
DEFAULT_FUSIONS: tuple[FusionName, ...] = ("mean", "rrf")
DEFAULT_TEXT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_DIMENSIONS = (256, 384, 1024, 3072)
DEFAULT_HYBRID = (False, True)
DEFAULT_LEXICAL_WEIGHTS = (0.1, 0.3, 0.5, 0.7)
DEFAULT_PHOTOS: tuple[PhotosName, ...] = ("main", "all")
_MAX_TOP_K = 100
_MODE_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "image": ("image",),
    "combined": ("combined",),
    "all": ("text", "image", "combined"),
}
_FLOAT32_BYTES = 4


def _check_k_values(k_values: Iterable[int]) -> list[int]:
    ks = sorted(set(k_values))
    if not ks:
        raise InvalidInputError("k_values must not be empty")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= _MAX_TOP_K:
            raise InvalidInputError(f"every k must be an int in 1..{_MAX_TOP_K}, got {k!r}")
    return ks


def _check_queries(queries: Sequence[LabelledQuery]) -> None:
    if not queries:
        raise InvalidInputError("the query set is empty")
    seen: set[str] = set()
    for q in queries:
        if q.id in seen:
            raise InvalidInputError(f"duplicate query id {q.id!r}")
        seen.add(q.id)
        if q.image is not None and not q.image.startswith("s3://") and not os.path.isfile(q.image):
            raise UnsupportedMediaError(f"query {q.id!r}: image file not found: {q.image}")


def _metric_names(k_values: Sequence[int]) -> list[str]:
    names: list[str] = []
    for prefix in ("recall", "precision", "ndcg", "hit_rate"):
        names.extend(f"{prefix}@{k}" for k in k_values)
    names.append("mrr")
    return names


def _score(
    ranked: Sequence[str], relevant: dict[str, float], k_values: Sequence[int]
) -> dict[str, float]:
    scores: dict[str, float] = {}
    for k in k_values:
        scores[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
    for k in k_values:
        scores[f"precision@{k}"] = precision_at_k(ranked, relevant, k)
    for k in k_values:
        scores[f"ndcg@{k}"] = ndcg_at_k(ranked, relevant, k)
    for k in k_values:
        scores[f"hit_rate@{k}"] = hit_rate_at_k(ranked, relevant, k)
    scores["mrr"] = reciprocal_rank(ranked, relevant, max(k_values))
    return scores


def _summarise(details: Sequence[QueryDetail], names: Sequence[str]) -> MetricSummary:
    used = [d for d in details if not d.excluded]
    if not used:
        return MetricSummary(queries=0, metrics=dict.fromkeys(names, 0.0))
    return MetricSummary(
        queries=len(used),
        metrics={n: math.fsum(d.metrics[n] for d in used) / len(used) for n in names},
    )


def _scan_index(store: VectorStore) -> tuple[Counter[str], set[str]]:
    """Stored vectors per type and the indexed product ids, from the searcher's key scheme
    ``{type}-{product_id}`` (every product has a ``combined`` vector); extra photos count as
    ``image`` and as ``extra_image``."""
    from crossmodal_search.search import image_number

    counts: Counter[str] = Counter()
    products: set[str] = set()
    keys = store.keys()  # a store method, not dict.keys()
    for key in keys:
        if image_number(key) is not None:
            counts["image"] += 1
            counts["extra_image"] += 1
            continue
        vtype, _, rest = key.partition("-")
        counts[vtype] += 1
        if vtype == "combined" and rest:
            products.add(rest)
    return counts, products


def _missing_relevant(queries: Sequence[LabelledQuery], indexed: set[str]) -> list[str]:
    """Relevant ids (grade > 0) of ``queries`` that are not indexed, sorted; logs a warning."""
    missing: set[str] = set()
    affected = 0
    for q in queries:
        absent = {pid for pid, grade in q.relevant.items() if grade > 0 and pid not in indexed}
        missing |= absent
        affected += bool(absent)
    if missing:
        shown = sorted(missing)
        logger.warning(
            "%d relevant product ids of %d queries are not in the index (%s%s): those queries "
            "cannot reach full recall; index them or fix the query set",
            len(shown),
            affected,
            ", ".join(shown[:5]),
            ", ..." if len(shown) > 5 else "",
        )
    return sorted(missing)


def _searcher_for(embedder: Embedder, store: VectorStore) -> CrossmodalSearcher:
    from crossmodal_search.search import CrossmodalSearcher

    return CrossmodalSearcher(embedder, store)


def _run(
    searcher: CrossmodalSearcher,
    counting: CountingEmbedder,
    queries: Sequence[LabelledQuery],
    ks: list[int],
    settings: EvalSettings,
    stored_vectors: int,
    max_concurrency: int,
) -> EvalReport:
    names = _metric_names(ks)
    top_k = max(ks)
    start = time.perf_counter()
    requested0, _, calls0 = counting.snapshot()

    def ranking(q: LabelledQuery) -> list[str]:
        results = searcher.search(
            q.text,
            q.image,
            search_mode=settings.search_mode,
            top_k=top_k,
            text_weight=settings.text_weight,
            fusion=settings.fusion,
            hybrid=settings.hybrid,
            lexical_weight=settings.lexical_weight,
        )
        return [r.product_id for r in results]

    if max_concurrency > 1 and len(queries) > 1:
        with ThreadPoolExecutor(max_concurrency, thread_name_prefix="crossmodal-eval") as pool:
            rankings = list(pool.map(ranking, queries))
    else:
        rankings = [ranking(q) for q in queries]
    details = [
        QueryDetail(
            id=q.id,
            query_type=q.query_type,
            kind=q.kind,
            ranked=ranked,
            metrics=_score(ranked, q.relevant, ks),
            excluded=not has_relevant(q.relevant),
        )
        for q, ranked in zip(queries, rankings, strict=True)
    ]
    requested1, _, calls1 = counting.snapshot()
    by_type: dict[str, list[QueryDetail]] = defaultdict(list)
    by_kind: dict[str, list[QueryDetail]] = defaultdict(list)
    for d in details:
        by_type[d.query_type].append(d)
        if d.kind is not None:
            by_kind[d.kind].append(d)
    dimension = searcher.store.dimension
    return EvalReport(
        settings=settings,
        dimension=dimension,
        k_values=ks,
        overall=_summarise(details, names),
        by_query_type={
            t: _summarise(by_type[t], names)
            for t in ("text", "image", "text+image")
            if t in by_type
        },
        by_kind={k: _summarise(v, names) for k, v in sorted(by_kind.items())},
        per_query=details,
        excluded_queries=[d.id for d in details if d.excluded],
        embed_calls=requested1 - requested0,
        bedrock_calls=None if calls0 is None or calls1 is None else calls1 - calls0,
        stored_vectors=stored_vectors,
        stored_bytes=stored_vectors * dimension * _FLOAT32_BYTES,
        seconds=time.perf_counter() - start,
    )


class _Context:
    """What a run shares between settings: the counting embedder and truncated stores."""

    def __init__(
        self, searcher: CrossmodalSearcher, *, memoize: bool, max_concurrency: int
    ) -> None:
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise InvalidInputError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        inner = searcher.embedder
        self.store = searcher.store
        self.counting = (
            inner
            if isinstance(inner, CountingEmbedder)
            else CountingEmbedder(inner, memoize=memoize)
        )
        self._stores: dict[tuple[int | None, PhotosName], VectorStore] = {}
        self._counts: Counter[str] | None = None
        self._indexed: set[str] = set()
        self._missing: dict[int, list[str]] = {}

    def store_for(self, dimension: int | None, photos: PhotosName = "all") -> VectorStore:
        if dimension == self.store.dimension:
            dimension = None
        if dimension is not None and dimension > self.store.dimension:
            raise InvalidInputError(
                f"dimension {dimension} is above the stored {self.store.dimension}: truncation "
                "cannot add dimensions; re-index at that dimension instead"
            )
        if dimension is None and photos == "all":
            return self.store
        if (dimension, photos) not in self._stores:
            if photos == "main":  # of the truncated copy, at a smaller dimension
                base = self.store if dimension is None else self.store_for(dimension)
                self._stores[dimension, photos] = main_photo_store(base)
            else:
                assert dimension is not None
                self._stores[dimension, photos] = truncated_store(self.store, dimension)
        return self._stores[dimension, photos]

    def has_extra_photos(self) -> bool:
        """Does the store hold extra photos of products (``Product.images``)?"""
        return self._scan()["extra_image"] > 0

    def has_text_fields(self) -> bool:
        """Can the store answer hybrid searches?"""
        from crossmodal_search.stores import TextSearchStore

        store = self.store
        return (
            isinstance(store, TextSearchStore)
            and store.index_mode == "ENHANCED"
            and any(f.status == "ACTIVE" for f in store.text_fields)
        )

    def stored_vectors(self, search_mode: str, photos: PhotosName = "all") -> int:
        """Vectors a search mode needs (a truncated copy holds the same records)."""
        counts = self._scan()
        extra = counts["extra_image"] if photos == "main" and search_mode in ("image", "all") else 0
        return sum(counts[t] for t in _MODE_TYPES[search_mode]) - extra

    def _scan(self) -> Counter[str]:
        if self._counts is None:
            self._counts, self._indexed = _scan_index(self.store)
        return self._counts

    def missing_relevant(self, queries: Sequence[LabelledQuery]) -> list[str]:
        """Relevant ids not in the index; warned about once per query set."""
        if id(queries) not in self._missing:
            self._scan()
            self._missing[id(queries)] = _missing_relevant(queries, self._indexed)
        return self._missing[id(queries)]

    def close(self) -> None:
        """Close the temporary truncated stores (the caller's store stays open)."""
        for store in self._stores.values():
            close = getattr(store, "close", None)
            if callable(close):
                close()
        self._stores.clear()

    def searcher(self, dimension: int | None, photos: PhotosName = "all") -> CrossmodalSearcher:
        store = self.store_for(dimension, photos)
        if store.dimension == self.store.dimension:
            return _searcher_for(self.counting, store)
        return _searcher_for(TruncatingEmbedder(self.counting, store.dimension), store)

    def evaluate(
        self, queries: Sequence[LabelledQuery], ks: list[int], settings: EvalSettings
    ) -> EvalReport:
        searcher = self.searcher(settings.dimension, settings.photos)
        stored = self.stored_vectors(settings.search_mode, settings.photos)
        report = _run(searcher, self.counting, queries, ks, settings, stored, self.max_concurrency)
        missing = self.missing_relevant(queries)
        if missing:
            report = report.model_copy(update={"missing_relevant": missing})
        logger.info(
            "%s: %s",
            settings.label,
            ", ".join(f"{n}={v:.3f}" for n, v in report.overall.metrics.items()),
        )
        return report


# ---------------------------------------------------------------------------- public API


def evaluate(
    searcher: CrossmodalSearcher,
    queries: Sequence[LabelledQuery],
    *,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    settings: EvalSettings | None = None,
    max_concurrency: int = 1,
) -> EvalReport:
    """Run every query through ``searcher`` and score the rankings.

    Each query is searched with ``top_k = max(k_values)``. Metrics are averaged over the
    queries that have at least one relevant item, overall, per query type and per ``kind``;
    queries without any are listed in ``excluded_queries``.

    Args:
        searcher: A searcher over an indexed store.
        queries: The labelled queries (see :func:`read_queries`).
        k_values: Cut-offs for recall, precision, nDCG and hit rate (each in 1..100).
        settings: Search mode, fusion, text weight and dimension (default
            :class:`EvalSettings`).
        max_concurrency: Queries searched at once (threads); worth raising against Nova and
            S3 Vectors, where each search waits on the network. Results do not depend on it.

    Raises:
        InvalidInputError: empty query set, duplicate ids, bad ``k_values`` or
            ``max_concurrency``, a dimension above the stored one; ``UnsupportedMediaError``
            for a missing query image. All checked before any embedding call.

    Example:
        >>> report = evaluate(searcher, read_queries("queries.jsonl"))  # doctest: +SKIP
        >>> report.metric("ndcg@10")  # doctest: +SKIP
    """
    ks = _check_k_values(k_values)
    queries = list(queries)
    _check_queries(queries)
    settings = settings or EvalSettings()
    context = _Context(searcher, memoize=False, max_concurrency=max_concurrency)
    try:
        return context.evaluate(queries, ks, settings)
    finally:
        context.close()


def _better(a: EvalReport, b: EvalReport, metric: str) -> bool:
    """Whether ``a`` beats ``b``: higher metric, then fewer embed calls, then fewer bytes."""
    ma, mb = a.metric(metric), b.metric(metric)
    if not math.isclose(ma, mb, rel_tol=1e-9, abs_tol=1e-12):
        return ma > mb
    return (a.embed_calls, a.stored_bytes) < (b.embed_calls, b.stored_bytes)


def compare(
    searcher: CrossmodalSearcher,
    queries: Sequence[LabelledQuery],
    *,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    base: EvalSettings | None = None,
    search_modes: Iterable[SearchModeName] = DEFAULT_SEARCH_MODES,
    fusions: Iterable[FusionName] = DEFAULT_FUSIONS,
    text_weights: Iterable[float] = DEFAULT_TEXT_WEIGHTS,
    dimensions: Iterable[int] = DEFAULT_DIMENSIONS,
    hybrid: Iterable[bool] = DEFAULT_HYBRID,
    lexical_weights: Iterable[float] = DEFAULT_LEXICAL_WEIGHTS,
    photos: Iterable[PhotosName] = DEFAULT_PHOTOS,
    primary_metric: str | None = None,
    max_concurrency: int = 1,
) -> Comparison:
    """Compare search settings on one query set in one run and name the best.

    Each sweep varies one factor of ``base``: ``search_modes``, ``fusions``, ``text_weights``,
    ``dimensions`` (by truncation of stored and query vectors; dimensions above the stored one
    are skipped with the reason), ``hybrid`` (vector-only against hybrid search) and
    ``lexical_weights`` (of hybrid search) and ``photos`` (main photo only, on a store copy
    without extra photos, against every photo; left out without extra photos). Hybrid settings
    are skipped, with the reason, on a store without full-text fields. Query vectors are
    embedded once and reused (``Comparison.embed_calls_made``); each report's ``embed_calls``
    is its setting's own cost. An empty iterable leaves a sweep out.

    Args:
        searcher: A searcher over an indexed store.
        queries: The labelled queries.
        k_values: Cut-offs (each in 1..100).
        base: The setting sweeps start from (default :class:`EvalSettings`).
        search_modes: Stored vector types to compare.
        fusions: Fusion methods to compare.
        text_weights: Text weights to compare (each in [0, 1]).
        dimensions: Dimensions to compare.
        hybrid: Hybrid search on and off, to compare.
        lexical_weights: Lexical weights of hybrid search to compare (each in [0, 1]).
        photos: ``main`` and/or ``all`` photos, to compare.
        primary_metric: Picks the best setting (default ``ndcg@{max(k_values)}``).
        max_concurrency: Queries searched at once (threads); above one, two threads may both
            embed a query (``embed_calls_made`` a little higher; per-setting counts exact).

    Raises:
        InvalidInputError: as :func:`evaluate`, or an unknown ``primary_metric``.
    """
    ks = _check_k_values(k_values)
    queries = list(queries)
    _check_queries(queries)
    metric = _primary(primary_metric, ks)
    base = base or EvalSettings()
    plan = setting_sweeps(base, search_modes, fusions, text_weights, dimensions)
    plan += hybrid_sweeps(base, hybrid, lexical_weights)
    plan += photo_sweeps(base, photos)
    context = _Context(searcher, memoize=True, max_concurrency=max_concurrency)
    try:
        plan = [p for p in plan if p[0] != "photos" or context.has_extra_photos()]
        if not plan:
            raise InvalidInputError("nothing to compare: every sweep is empty")
        stored_dim = context.store.dimension
        start = context.counting.snapshot()
        reports, results, skipped = _run_sweeps(context, plan, queries, ks, stored_dim)
        end = context.counting.snapshot()
    finally:
        context.close()
    best, reason = _best(list(reports.values()), metric)
    return Comparison(
        primary_metric=metric,
        base=base,
        results=results,
        skipped=skipped,
        best=best.settings,
        best_reason=reason,
        stored_dimension=stored_dim,
        embed_calls_made=end[1] - start[1],
        bedrock_calls=None if start[2] is None or end[2] is None else end[2] - start[2],
    )


def _primary(primary_metric: str | None, ks: Sequence[int]) -> str:
    """The metric that names the best setting (default ``ndcg@{max k}``), checked."""
    metric = primary_metric or f"ndcg@{max(ks)}"
    if metric not in _metric_names(ks):
        known = ", ".join(_metric_names(ks))
        raise InvalidInputError(f"primary_metric {metric!r} is not computed; choose one of {known}")
    return metric


def _run_sweeps(
    context: _Context,
    plan: Sequence[tuple[Sweep, EvalSettings]],
    queries: Sequence[LabelledQuery],
    ks: list[int],
    stored_dim: int,
) -> tuple[dict[EvalSettings, EvalReport], list[SettingResult], list[SkippedSetting]]:
    """Evaluate each distinct setting once; skip dimensions above the stored one."""
    reports: dict[EvalSettings, EvalReport] = {}
    results: list[SettingResult] = []
    skipped: list[SkippedSetting] = []
    for sweep, settings in plan:
        normal = settings
        if settings.dimension is None:
            normal = settings.model_copy(update={"dimension": stored_dim})
        if normal.dimension is not None and normal.dimension > stored_dim:
            reason = (
                f"the store holds {stored_dim}-d vectors; {normal.dimension} needs "
                "re-indexing at that dimension (truncation only goes down)"
            )
            skipped.append(SkippedSetting(sweep=sweep, settings=settings, reason=reason))
            continue
        if normal.hybrid and not context.has_text_fields():
            reason = (
                "the store has no active full-text fields (index with the searcher, or add "
                "them: crossmodal index --text-field ...)"
            )
            skipped.append(SkippedSetting(sweep=sweep, settings=settings, reason=reason))
            continue
        if normal not in reports:
            reports[normal] = context.evaluate(queries, ks, normal)
        if not any(r.sweep == sweep and r.report.settings == normal for r in results):
            results.append(SettingResult(sweep=sweep, report=reports[normal]))
    if not reports:
        raise InvalidInputError(
            "every compared setting was skipped: " + "; ".join(s.reason for s in skipped)
        )
    return reports, results, skipped


def _best(reports: Sequence[EvalReport], metric: str) -> tuple[EvalReport, str]:
    """The best report by ``metric`` (cheaper on ties), and why."""
    best = reports[0]
    for report in reports:
        if _better(report, best, metric):
            best = report
    reason = f"highest {metric} ({best.metric(metric):.4f})"
    ties = [
        r
        for r in reports
        if r is not best
        and math.isclose(r.metric(metric), best.metric(metric), rel_tol=1e-9, abs_tol=1e-12)
    ]
    if ties:
        reason += f"; tied with {len(ties)} other setting(s), cheaper in embed calls/stored bytes"
    return best, reason
