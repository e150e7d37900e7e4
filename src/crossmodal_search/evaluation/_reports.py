"""What an evaluation reports: settings, per-query details, summaries, and comparisons."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossmodal_search.errors import InvalidInputError

__all__ = [
    "Comparison",
    "EvalReport",
    "EvalSettings",
    "FusionName",
    "MetricSummary",
    "PhotosName",
    "QueryDetail",
    "SearchModeName",
    "SettingResult",
    "SkippedSetting",
    "Sweep",
]

SearchModeName: TypeAlias = Literal["text", "image", "combined", "all"]
FusionName: TypeAlias = Literal["mean", "rrf"]
#: Which photos of products are searched: every one, or the main photo only.
PhotosName: TypeAlias = Literal["all", "main"]
Sweep: TypeAlias = Literal[
    "search_mode", "fusion", "text_weight", "dimension", "hybrid", "lexical_weight", "photos"
]


class EvalSettings(BaseModel):
    """One search configuration to evaluate.

    Attributes:
        search_mode: Which stored vectors are searched (``text``, ``image``, ``combined``,
            ``all``).
        fusion: How text+image queries are combined (``mean`` vector or ``rrf`` rankings).
        text_weight: Weight of the text part of a text+image query (image: ``1 - w``).
        dimension: Vector dimension; ``None`` keeps the stored one, a smaller value
            truncates stored and query vectors (Matryoshka).
        hybrid: Rank by the query's words too (``True``), by vectors only (``False``), or as
            the searcher does by default (``None``: hybrid when the store has text fields).
        lexical_weight: The words' share of a hybrid score.
        photos: ``all``: every indexed photo of a product is searched; ``main``: its main
            photo only, as if the catalog had been indexed with ``main_image_only`` (the
            extra photos' vectors left out of a copy of the store; no embedding call).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    search_mode: SearchModeName = "combined"
    fusion: FusionName = "mean"
    text_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    dimension: int | None = Field(default=None, ge=1)
    hybrid: bool | None = None
    lexical_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    photos: PhotosName = "all"

    @property
    def label(self) -> str:
        """Short human label, e.g. ``combined mean w=0.50 d=1024 hybrid lw=0.30``."""
        dim = "stored" if self.dimension is None else str(self.dimension)
        label = f"{self.search_mode} {self.fusion} w={self.text_weight:.2f} d={dim}"
        if self.hybrid is True:
            label += f" hybrid lw={self.lexical_weight:.2f}"
        elif self.hybrid is False:
            label += " vectors"
        if self.photos == "main":
            label += " main-photo"
        return label


class MetricSummary(BaseModel):
    """Mean of each metric over the queries of one group.

    Attributes:
        queries: Queries averaged (queries without any relevant item are excluded).
        metrics: ``recall@k``, ``precision@k``, ``ndcg@k``, ``hit_rate@k`` for each ``k``,
            and ``mrr`` (reciprocal rank within the ``max(k)`` results).
    """

    model_config = ConfigDict(frozen=True)

    queries: int
    metrics: dict[str, float]


class QueryDetail(BaseModel):
    """One query's results and scores."""

    model_config = ConfigDict(frozen=True)

    id: str
    query_type: str
    kind: str | None
    ranked: list[str]
    metrics: dict[str, float]
    excluded: bool = False


class EvalReport(BaseModel):
    """Quality and cost of one setting over a query set.

    Attributes:
        settings: What was evaluated.
        dimension: The vector dimension actually searched.
        k_values: The cut-offs.
        overall: Means over every query that has a relevant item.
        by_query_type: The same per ``text`` / ``image`` / ``text+image`` query.
        by_kind: The same per query ``kind`` label, when the queries carry one.
        per_query: Each query's ranking and scores.
        excluded_queries: Ids of queries without any relevant item (not averaged).
        embed_calls: Texts and images the searcher asked to embed: with Nova's synchronous
            API, one Bedrock ``InvokeModel`` each, which is what this setting costs per run of
            the query set without caching.
        bedrock_calls: Calls the embedder actually made during this evaluation when it counts
            them (``NovaEmbeddings.calls``), else ``None``. Lower than ``embed_calls`` when a
            :func:`compare` run reused a query vector or a cache answered.
        stored_vectors: Vectors of the searched type(s) in the store (not every vector of
            the index: ``combined`` counts the combined vectors only).
        stored_bytes: Their float32 payload (``stored_vectors * dimension * 4``); metadata is
            the same across settings and not counted.
        seconds: Wall-clock time of the run.
        missing_relevant: Relevant product ids (grade > 0) that are not in the index: no
            setting can rank them, so the queries naming them cannot reach full recall.
    """

    model_config = ConfigDict(frozen=True)

    settings: EvalSettings
    dimension: int
    k_values: list[int]
    overall: MetricSummary
    by_query_type: dict[str, MetricSummary]
    by_kind: dict[str, MetricSummary]
    per_query: list[QueryDetail]
    excluded_queries: list[str]
    embed_calls: int
    bedrock_calls: int | None
    stored_vectors: int
    stored_bytes: int
    seconds: float
    missing_relevant: list[str] = Field(default_factory=list)

    def metric(self, name: str) -> float:
        """An overall metric by name, e.g. ``"ndcg@10"``."""
        try:
            return self.overall.metrics[name]
        except KeyError:
            known = ", ".join(self.overall.metrics)
            raise InvalidInputError(f"unknown metric {name!r}; known: {known}") from None


class SettingResult(BaseModel):
    """One row of a comparison: which sweep it belongs to and its report."""

    model_config = ConfigDict(frozen=True)

    sweep: Sweep
    report: EvalReport


class SkippedSetting(BaseModel):
    """A setting a comparison could not run, and why."""

    model_config = ConfigDict(frozen=True)

    sweep: Sweep
    settings: EvalSettings
    reason: str


class Comparison(BaseModel):
    """Every setting compared in one run and the best one.

    Attributes:
        primary_metric: The metric the best setting maximises.
        base: The setting each sweep varies one factor of.
        results: One row per (sweep, setting); a setting shared by several sweeps is run once.
            Every setting names its dimension (``None`` in ``base`` becomes the stored one).
        skipped: Settings that could not run (e.g. a dimension above the stored one).
        best: The setting with the highest ``primary_metric``; ties go to fewer embedding
            calls, then fewer stored bytes.
        best_reason: Why it won, in words.
        stored_dimension: The dimension of the vectors in the store.
        dimension_method: How other dimensions were obtained (``truncation``).
        embed_calls_made: Texts and images actually embedded in the whole run (query vectors
            are reused across settings).
        bedrock_calls: Bedrock calls made in the whole run, when the embedder counts them.
    """

    model_config = ConfigDict(frozen=True)

    primary_metric: str
    base: EvalSettings
    results: list[SettingResult]
    skipped: list[SkippedSetting]
    best: EvalSettings
    best_reason: str
    stored_dimension: int
    dimension_method: Literal["truncation"] = "truncation"
    embed_calls_made: int
    bedrock_calls: int | None

    @field_validator("results")
    @classmethod
    def _not_empty(cls, value: list[SettingResult]) -> list[SettingResult]:
        if not value:
            raise ValueError("a comparison needs at least one result")
        return value

    def report(self, settings: EvalSettings) -> EvalReport:
        """The report of one compared setting (``dimension=None`` means the stored one).

        Raises:
            KeyError: the setting was not compared.
        """
        if settings.dimension is None:
            settings = settings.model_copy(update={"dimension": self.stored_dimension})
        for row in self.results:
            if row.report.settings == settings:
                return row.report
        raise KeyError(settings.label)

    @property
    def best_report(self) -> EvalReport:
        """The report of :attr:`best`."""
        return self.report(self.best)


# ---------------------------------------------------------------------------- helpers
