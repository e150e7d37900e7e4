"""Searching products: query purposes, fusion of text and photo, one result per product.

A query is embedded with the retrieval purpose of what it is compared with (``TEXT_RETRIEVAL``
for text vectors, ``IMAGE_RETRIEVAL`` for images, ``GENERIC_RETRIEVAL`` for combined vectors or
all types, ``VIDEO_/AUDIO_/DOCUMENT_RETRIEVAL`` for segments). A text + photo query is fused
early (one query with the normalised weighted mean vector) or late (reciprocal rank fusion of
the two rankings). Hits are grouped by product: each product appears once, at its best vector
(for a product with several photos, the photo that matched best: ``matched_image``).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias, get_args

import numpy as np

from crossmodal_search._constants import SearchMode as SearchMode
from crossmodal_search._types import EmbeddingPurpose, Filter, MetadataValue, Vector
from crossmodal_search.embeddings import Embedder, ImageInput
from crossmodal_search.errors import (
    ConfigurationError,
    ForeignIndexError,
    InvalidInputError,
    UnsupportedMediaError,
)
from crossmodal_search.search._hybrid import (
    DEFAULT_LEXICAL_WEIGHT,
    HybridHit,
    hybrid_fields,
    hybrid_ranking,
    words_for,
)
from crossmodal_search.search._results import MatchedBy, QueryPart, SearchResult
from crossmodal_search.search._schema import (
    MEDIA_TYPES,
    RESERVED_METADATA_KEYS,
    VARIANT_GROUP_KEY,
    VECTOR_TYPES,
    SegmentUnit,
    public_metadata,
    type_filter,
)
from crossmodal_search.search._variants import (
    Collapse,
    and_filters,
    check_collapse,
    collapse_variants,
)
from crossmodal_search.search._vectors import unit, weighted_mean
from crossmodal_search.stores import (
    QueryMatch,
    TextSearchStore,
    VectorStore,
    validate_filter,
)

__all__ = ["MAX_TOP_K", "Fusion", "ProductSearch", "SearchMode", "is_weight"]

#: How a text+image query is combined: one query with the weighted mean vector, or reciprocal
#: rank fusion of two separate queries.
Fusion: TypeAlias = Literal["mean", "rrf"]

#: Query purpose per search mode (Nova embeds a query for what it will be compared with).
_QUERY_PURPOSE: dict[str, EmbeddingPurpose] = {
    "text": EmbeddingPurpose.TEXT_RETRIEVAL,
    "image": EmbeddingPurpose.IMAGE_RETRIEVAL,
    "video": EmbeddingPurpose.VIDEO_RETRIEVAL,
    "audio": EmbeddingPurpose.AUDIO_RETRIEVAL,
    "document": EmbeddingPurpose.DOCUMENT_RETRIEVAL,
}
_SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
_FUSIONS: tuple[str, ...] = get_args(Fusion)
MAX_TOP_K = 100
_MAX_TOP_K = MAX_TOP_K
_RRF_K = 60


class ProductSearch:
    """Searches one store's products with one embedder (what ``CrossmodalSearcher.search``
    runs)."""

    def __init__(self, embedder: Embedder, store: VectorStore) -> None:
        self._embedder = embedder
        self._store = store

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        search_mode: SearchMode = "combined",
        top_k: int = 5,
        filter: Filter | None = None,
        text_weight: float = 0.5,
        fusion: Fusion = "mean",
        hybrid: bool | None = None,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
        collapse: Collapse = "product",
    ) -> list[SearchResult]:
        """:meth:`CrossmodalSearcher.search <crossmodal_search.search.CrossmodalSearcher.search>`
        (the arguments are documented there)."""
        self._validate_search(text, image, search_mode, top_k, filter, text_weight, fusion)
        check_collapse(collapse)
        if hybrid not in (None, True, False):
            raise InvalidInputError(f"hybrid must be None, True or False, got {hybrid!r}")
        if not is_weight(lexical_weight):
            raise InvalidInputError(
                f"lexical_weight must be a number in [0, 1], got {lexical_weight!r}"
            )
        fields = hybrid_fields(self._store, hybrid, text is not None)
        purpose = _QUERY_PURPOSE.get(search_mode, EmbeddingPurpose.GENERIC_RETRIEVAL)
        parts = self._embed_parts(text, image, purpose, text_weight)
        whole = parts[0].vector
        if len(parts) == 2:
            whole = weighted_mean(parts[0].vector, parts[1].vector, parts[0].weight)
        by_whole = fusion == "mean" or len(parts) == 1
        words = words_for(text, fields) if fields and text is not None else None

        # The words are part of the text: beside a photo they weigh the text's share.
        share = float(text_weight) if image is not None and by_whole else 1.0
        if share == 0.0:
            words = None

        def ranking(
            vector: Vector, with_words: bool, top_k: int, filter: Filter | None
        ) -> list[tuple[_Match, float]]:
            if with_words and words is not None:
                assert isinstance(self._store, TextSearchStore)
                hits = hybrid_ranking(
                    self._store,
                    vector,
                    words,
                    fields,
                    search_mode=search_mode,
                    user_filter=filter,
                    top_k=top_k,
                    lexical_weight=float(lexical_weight) * share,
                    distances=lambda keys: self._distances(keys, vector),
                    by_vector=lambda: [
                        (m.product_id, m.key, m.distance, m.metadata)
                        for m in self._grouped(vector, search_mode, filter, top_k)
                    ],
                )
                return [(self._hybrid_match(h), h.score) for h in hits]
            return [(m, m.similarity) for m in self._grouped(vector, search_mode, filter, top_k)]

        def rank(k: int, flt: Filter | None) -> list[SearchResult]:
            if by_whole:
                ranked = ranking(whole, True, k, flt)[:k]
            else:
                ranked = self._rrf(
                    [(p, ranking(p.vector, p.name == "text", k, flt)) for p in parts], k
                )
            if not ranked:
                self._check_not_foreign()
            return self._results(ranked, parts, whole, ranked_by_whole=by_whole)

        if collapse == "variant":
            return collapse_variants(rank, top_k=top_k, filter=filter, max_fetch=_MAX_TOP_K)
        return rank(top_k, filter)

    def _distances(self, keys: Sequence[str], vector: Vector) -> dict[str, float]:
        """The distance from ``vector`` of each stored key (one ``get``)."""
        found = self._store.get(list(keys)).records
        return {r.key: self._distance(r.vector, vector) for r in found}

    def _hybrid_match(self, hit: HybridHit) -> _Match:
        self._check_model(hit.metadata)
        distance = hit.distance
        return _Match(
            hit.product_id,
            hit.key,
            distance if distance is not None else math.inf,
            self._similarity(distance) if distance is not None else -math.inf,
            hit.metadata,
            matched_by=hit.matched_by,
            word_scores=hit.bm25,
            words=hit.words,
        )

    def _check_not_foreign(self) -> None:
        """An empty answer from a store whose vectors were all written by another tool is
        not "no match": say so (two store queries, only when nothing was found)."""
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        if self._store.query(probe, top_k=1, filter=type_filter("all")):
            return
        sample = self._store.query(probe, top_k=10)
        if not sample:
            return
        keys = [m.key for m in sample]
        metadata_keys = sorted({k for m in sample for k in m.metadata})
        raise ForeignIndexError(
            "the store holds vectors, but none written by crossmodal-search: it looks for "
            f"vectors with metadata 'type' ({', '.join(VECTOR_TYPES)}) and keys like "
            f"combined-PRODUCT_ID, and found keys like {', '.join(map(repr, keys[:3]))} with "
            f"metadata keys {', '.join(metadata_keys[:8]) or '(none)'}. Index your catalog with "
            "the searcher (crossmodal index CATALOG --store ...), or query this index "
            "directly: store.query(vector) in Python, crossmodal search --raw on the command "
            "line",
            sample_keys=keys,
            metadata_keys=metadata_keys,
        )

    def similar(
        self,
        vector: Vector,
        product_id: str,
        *,
        search_mode: SearchMode,
        top_k: int,
        filter: Filter | None,
        collapse: Collapse = "product",
        group: str | None = None,
    ) -> list[SearchResult]:
        """Products closest to ``vector`` (one of ``product_id``'s stored vectors), the product
        itself left out (and its variant ``group`` when collapsing by variant); grouping and
        filters as in :meth:`search`, no embedding call."""
        self._validate_ranking(search_mode, top_k, filter)
        check_collapse(collapse)
        own: Filter = {"product_id": {"$ne": product_id}}
        if collapse == "variant" and group is not None:
            own = {"$and": [own, {VARIANT_GROUP_KEY: {"$ne": group}}]}
        query = unit(vector)

        def rank(k: int, flt: Filter | None) -> list[SearchResult]:
            best = self._grouped(query, search_mode, and_filters(own, flt), k)[:k]
            return [self._result(m, m.similarity, m.distance, m.similarity, {}) for m in best]

        if collapse == "variant":
            return collapse_variants(rank, top_k=top_k, filter=filter, max_fetch=_MAX_TOP_K)
        return rank(top_k, filter)

    def _embed_parts(
        self, text: str | None, image: ImageInput | None, purpose: EmbeddingPurpose, weight: float
    ) -> list[_Part]:
        """The query's parts as unit vectors with their weights. A part with weight 0 cannot
        change the ranking: it is not embedded at all."""
        parts: list[_Part] = []
        if text is not None and (image is None or weight > 0):
            vec = unit(self._embedder.embed_text(text, purpose=purpose))
            parts.append(_Part("text", vec, weight if image is not None else 1.0))
        if image is not None and (text is None or weight < 1):
            vec = unit(self._embedder.embed_image(image, purpose=purpose))
            parts.append(_Part("image", vec, 1.0 - weight if text is not None else 1.0))
        return parts

    def _rrf(
        self, rankings: Sequence[tuple[_Part, Sequence[tuple[_Match, float]]]], top_k: int
    ) -> list[tuple[_Match, float]]:
        """Reciprocal rank fusion of the parts' product rankings: each product's score is the
        sum of ``weight / (60 + rank)``; its match is the one that contributed most."""
        scores: dict[str, float] = {}
        chosen: dict[str, tuple[float, _Match]] = {}
        for part, ranked in rankings:
            for rank, (match, _) in enumerate(ranked, 1):
                term = part.weight / (_RRF_K + rank)
                scores[match.product_id] = scores.get(match.product_id, 0.0) + term
                if match.product_id not in chosen or term > chosen[match.product_id][0]:
                    chosen[match.product_id] = (term, match)
        order = sorted(scores, key=lambda pid: (-scores[pid], chosen[pid][1].distance, pid))
        return [(chosen[pid][1], scores[pid]) for pid in order[:top_k]]

    def _results(
        self,
        ranked: Sequence[tuple[_Match, float]],
        parts: Sequence[_Part],
        whole: Vector,
        *,
        ranked_by_whole: bool,
    ) -> list[SearchResult]:
        """Results with the three numbers: the similarity to the whole query, each part's, and
        the score. One query part ranked by the whole query needs nothing more; otherwise the
        matched vectors are read back (one ``get``) and compared with each vector of the
        query."""
        known = all(math.isfinite(m.distance) for m, _ in ranked)
        if ranked_by_whole and len(parts) == 1 and known:
            name = parts[0].name
            return [
                self._result(m, score, m.distance, m.similarity, {name: m.similarity})
                for m, score in ranked
            ]
        stored = {r.key: r.vector for r in self._store.get([m.key for m, _ in ranked]).records}
        results = []
        for match, score in ranked:
            vector = stored.get(match.key)
            if vector is None:  # deleted since the query: the ranking's numbers are all we have
                results.append(self._result(match, score, match.distance, match.similarity, {}))
                continue
            exact = ranked_by_whole and math.isfinite(match.distance)
            distance = match.distance if exact else self._distance(vector, whole)
            by_part = {p.name: self._similarity(self._distance(vector, p.vector)) for p in parts}
            results.append(
                self._result(match, score, distance, self._similarity(distance), by_part)
            )
        return results

    def _distance(self, stored: Vector, query: Vector) -> float:
        """The store metric's distance between a stored vector and a unit query, in float64."""
        v = np.asarray(stored, dtype=np.float64)
        q = np.asarray(query, dtype=np.float64)
        if self._store.distance_metric == "euclidean":
            return float(np.linalg.norm(v - q))
        norm = float(np.linalg.norm(v)) or 1.0
        return float(min(max(1.0 - float(v @ q) / norm, 0.0), 2.0))

    def explain_no_results(
        self, *, search_mode: SearchMode = "combined", filter: Filter | None = None
    ) -> str:
        """Why a search in ``search_mode`` with ``filter`` found nothing, in one line a person
        can act on: the store holds no vectors of that kind, or no product has a key the
        filter names (with the closest key that exists), or no product matches it. Two store
        queries, no embedding call.

        Example:
            >>> searcher.explain_no_results(filter={"colour": "red"})  # doctest: +SKIP
            "no combined vector has metadata key 'colour' (did you mean 'color'?); ..."
        """
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        sample = self._store.query(probe, top_k=_MAX_TOP_K, filter=type_filter(search_mode, None))
        if not sample:
            return _no_vectors_hint(search_mode)
        if not filter:
            return f"the store holds {search_mode} vectors, but none came back for this query"
        seen = {k for m in sample for k in m.metadata if k not in RESERVED_METADATA_KEYS}
        named = sorted(_filter_keys(filter) - RESERVED_METADATA_KEYS)
        unknown = [k for k in named if k not in seen]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(seen), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            keys = ", ".join(sorted(seen)[:12]) or "none"
            return (
                f"no {search_mode} vector has metadata key {key!r}{guess}; keys seen on "
                f"products: {keys}"
            )
        return f"no {search_mode} vector matches the filter {json.dumps(filter)[:200]}"

    def _validate_search(
        self,
        text: object,
        image: object,
        search_mode: object,
        top_k: object,
        filter: object,
        text_weight: object,
        fusion: object,
    ) -> None:
        if text is None and image is None:
            raise InvalidInputError("give a query text, an image, or both")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidInputError("the query text must be a non-empty string")
        if isinstance(image, str | os.PathLike) and not str(image).startswith("s3://"):
            path = Path(os.fspath(image))
            if not path.is_file():
                raise UnsupportedMediaError(f"image file not found: {path}")
        elif isinstance(image, bytes | bytearray) and not image:
            raise UnsupportedMediaError("the query image is empty")
        if fusion not in _FUSIONS:
            raise InvalidInputError(f"fusion must be one of {', '.join(_FUSIONS)}; got {fusion!r}")
        if not is_weight(text_weight):
            raise InvalidInputError(f"text_weight must be a number in [0, 1], got {text_weight!r}")
        self._validate_ranking(search_mode, top_k, filter)

    def _validate_ranking(self, search_mode: object, top_k: object, filter: object) -> None:
        """What every ranking takes: a search mode, a top-k and a filter."""
        if search_mode not in _SEARCH_MODES:
            raise InvalidInputError(
                f"search_mode must be one of {', '.join(_SEARCH_MODES)}; got {search_mode!r}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= _MAX_TOP_K:
            raise InvalidInputError(f"top_k must be an int in 1..{_MAX_TOP_K}, got {top_k!r}")
        if filter is not None:
            if not isinstance(filter, Mapping):
                raise InvalidInputError(
                    f"filter must be a mapping (JSON object), got {type(filter).__name__}"
                )
            validate_filter(filter, non_filterable=self._store.non_filterable_metadata_keys)

    def _similarity(self, distance: float) -> float:
        if self._store.distance_metric == "euclidean":
            return 1.0 - distance * distance / 2.0
        return 1.0 - distance

    def _grouped(
        self, query: Vector, search_mode: str, user_filter: Filter | None, top_k: int
    ) -> list[_Match]:
        """Products closest to ``query`` (each at its best vector), best first: at least the
        ``top_k`` closest when that many match.

        One store query is enough when it returns ``top_k`` distinct products or every matching
        vector. Where products have several vectors (mode ``all``, segments) the store's topK
        cap of 100 can hold fewer than ``top_k`` products; then each vector type is queried on
        its own, and for segment types again with the products already found excluded
        (``product_id $nin``), until ``top_k`` products are known or the type is exhausted.
        A product found in a query has its best vector of that type in it, so the merge by
        best distance is exact.
        """
        per_product = 3 if search_mode == "all" else 4 if search_mode in MEDIA_TYPES else 1
        query_filter = type_filter(search_mode, user_filter)
        fetch = min(_MAX_TOP_K, max(top_k, top_k * per_product * 2))
        best: dict[str, _Match] = {}
        while True:
            matches = self._store.query(query, top_k=fetch, filter=query_filter)
            self._merge(matches, best)
            if len(best) >= top_k or len(matches) < fetch:
                return self._ranked(best)
            if fetch >= _MAX_TOP_K:
                break
            fetch = min(_MAX_TOP_K, fetch * 2)
        types = VECTOR_TYPES if search_mode == "all" else (search_mode,)
        for vtype in types:
            found: set[str] = set()
            while len(found) < top_k:
                part_filter: Filter = type_filter(vtype, user_filter)
                if found:
                    exclude = {"product_id": {"$nin": sorted(found)}}
                    part_filter = {"$and": [part_filter, exclude]}
                matches = self._store.query(query, top_k=_MAX_TOP_K, filter=part_filter)
                seen = self._merge(matches, best)
                if len(matches) < _MAX_TOP_K or seen <= found:
                    break
                found |= seen
        return self._ranked(best)

    def _merge(self, matches: Sequence[QueryMatch], best: dict[str, _Match]) -> set[str]:
        """Keep each product's closest match in ``best``; return the products seen."""
        seen: set[str] = set()
        for m in matches:
            md = dict(m.metadata)
            self._check_model(md)
            pid = str(md.get("product_id", m.key))
            seen.add(pid)
            if pid not in best or m.distance < best[pid].distance:
                best[pid] = _Match(pid, m.key, m.distance, self._similarity(m.distance), md)
        return seen

    def _check_model(self, metadata: Mapping[str, MetadataValue]) -> None:
        model = metadata.get("embedding_model")
        if model is not None and model != self._embedder.model_id:
            raise ConfigurationError(
                f"the store holds vectors embedded with {model!r} but queries are "
                f"embedded with {self._embedder.model_id!r}; their similarities are "
                "meaningless. Search with the embedder that built the index, or re-index."
            )

    @staticmethod
    def _ranked(best: Mapping[str, _Match]) -> list[_Match]:
        return sorted(best.values(), key=lambda x: (x.distance, x.product_id))

    @staticmethod
    def _result(
        match: _Match,
        score: float,
        distance: float,
        similarity: float,
        part_similarities: dict[QueryPart, float],
    ) -> SearchResult:
        md = match.metadata
        vtype = md.get("type")
        return SearchResult(
            product_id=match.product_id,
            title=_opt_str(md.get("title")) or "",
            text=str(md.get("text", "")),
            image_path=_opt_str(md.get("image_path")),
            similarity=similarity,
            part_similarities=part_similarities,
            distance=distance,
            matched_type=vtype if vtype in VECTOR_TYPES else "combined",
            score=score,
            key=match.key,
            matched_by=match.matched_by,
            word_scores=match.word_scores,
            matched_words=match.words,
            metadata=public_metadata(md),
            segment_start=_opt_float(md.get("segment_start")),
            segment_end=_opt_float(md.get("segment_end")),
            segment_unit=_segment_unit(md.get("segment_unit")),
            source_uri=_opt_str(md.get("source_uri")),
            variant_group=_opt_str(md.get(VARIANT_GROUP_KEY)),
            matched_image=_matched_image(md),
        )


@dataclass(frozen=True)
class _Part:
    """One part of a query: which, its unit vector, its weight."""

    name: QueryPart
    vector: Vector
    weight: float


@dataclass(frozen=True)
class _Match:
    product_id: str
    key: str
    distance: float  # inf: found by words only (the vector search did not return it)
    similarity: float
    metadata: dict[str, MetadataValue]
    matched_by: MatchedBy = "vector"
    word_scores: dict[str, float] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)


def _no_vectors_hint(search_mode: str) -> str:
    if search_mode in MEDIA_TYPES:
        return (
            f"the store holds no {search_mode} segments: index products' {search_mode} with "
            "index_media (CLI: crossmodal index --media-s3-uri s3://...; local PDF documents "
            "are indexed by crossmodal index)"
        )
    return (
        f"the store holds no {search_mode} vectors written by crossmodal-search: index a "
        "catalog first (crossmodal index)"
    )


def _filter_keys(filter: Mapping[str, object]) -> set[str]:
    """The metadata keys a filter names (operators and ``$and``/``$or`` looked through)."""
    keys: set[str] = set()
    for key, value in filter.items():
        if key in ("$and", "$or") and isinstance(value, list):
            for part in value:
                if isinstance(part, Mapping):
                    keys |= _filter_keys(part)
        elif not key.startswith("$"):
            keys.add(key)
    return keys


def is_weight(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _matched_image(metadata: Mapping[str, MetadataValue]) -> str | None:
    """The photo of an image vector: an extra photo names itself, the main one is the
    product's ``image_path``."""
    if metadata.get("type") != "image":
        return None
    return _opt_str(metadata.get("image_source")) or _opt_str(metadata.get("image_path"))


def _segment_unit(value: object) -> SegmentUnit | None:
    if value == "seconds" or value == "chars" or value == "pages":
        return value
    return None


def _opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
