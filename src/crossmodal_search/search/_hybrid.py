"""Hybrid retrieval: a query's words (BM25 over the store's full-text fields) and its meaning
(the query vector) in one store call, fused per product.

The store answers one ``query_text`` call (one ``QueryVectors`` on S3 Vectors) with the
candidates of its own rank fusion, each carrying its BM25 score per field and, when the vector
search found it, its distance. Candidates found by words alone are compared with the query
vector too (their stored vectors are read: one ``get``), so every candidate has a meaning.
The searcher then scores each product:

    score = (1 - w) * meaning + w * words

``meaning`` is the product's similarity to the query (cosine; 0 when negative), ``words``
its BM25 score (summed over fields) divided by the best candidate's, so in [0, 1] like the
meaning, and ``w`` the lexical weight. Scores rather than ranks are fused because ranks turn
ties into noise: "green" matches every green product about equally, and by rank one of them
would be "first by words"; by score they stay level and the meaning decides. The similarity is
used as it is, not stretched between the candidates' worst and best (min-max, as some engines
do): a model number means little to an embedding, and stretching its near-equal similarities
to 0..1 would let that noise outweigh an exact match (measured in docs/evaluation.md, "Hybrid
search").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crossmodal_search._constants import DEFAULT_LEXICAL_WEIGHT as DEFAULT_LEXICAL_WEIGHT
from crossmodal_search._types import Filter, MetadataValue, Vector
from crossmodal_search.errors import ConfigurationError, InvalidInputError
from crossmodal_search.search._results import MatchedBy
from crossmodal_search.search._schema import MEDIA_TYPES, type_filter
from crossmodal_search.stores import (
    ENGLISH_STOP_WORDS,
    MAX_TEXT_FIELDS,
    TextField,
    TextMatch,
    TextSearchStore,
    VectorStore,
    matched_words,
    validate_text_fields,
)

__all__ = [
    "DEFAULT_LEXICAL_WEIGHT",
    "DEFAULT_TEXT_FIELDS",
    "HybridHit",
    "active_text_fields",
    "check_text_fields",
    "ensure_text_fields",
    "hybrid_fields",
    "hybrid_ranking",
    "words_for",
]

logger = logging.getLogger(__name__)

#: The metadata keys the searcher makes full-text searchable by default: the product's title,
#: its description, and its brand and model number (catalog keys, when products have them).
DEFAULT_TEXT_FIELDS: tuple[TextField, ...] = (
    TextField("title"),
    TextField("text"),
    TextField("brand"),
    TextField("model_number"),
)
_MAX_TOP_K = 100
# S3 Vectors takes at most 1,024 characters per query text.
_MAX_WORDS_CHARS = 1024
_PUNCTUATION = "\"'.,;:!?()[]{}"


#: A product's best vector in a vector ranking: product id, key, distance, metadata.
VectorHit = tuple[str, str, float, Mapping[str, MetadataValue]]


@dataclass
class HybridHit:
    """A product's best hit in a hybrid query."""

    product_id: str
    key: str
    metadata: dict[str, MetadataValue]
    distance: float | None  # None: not known (yet) for a product found by words only
    bm25: dict[str, float] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    score: float = 0.0
    by_vector: bool = True  # did the vector search return it?

    @property
    def matched_by(self) -> MatchedBy:
        """``"both"``, ``"words"`` or ``"vector"``."""
        if self.bm25 and self.by_vector:
            return "both"
        return "words" if self.bm25 else "vector"


def active_text_fields(store: VectorStore) -> list[TextField]:
    """The store's full-text fields that answer queries now (none on a CLASSIC index or a store
    without full-text search)."""
    if not isinstance(store, TextSearchStore) or store.index_mode != "ENHANCED":
        return []
    return [f for f in store.text_fields if f.status == "ACTIVE"][:MAX_TEXT_FIELDS]


def hybrid_fields(store: VectorStore, hybrid: bool | None, has_words: bool) -> list[TextField]:
    """The full-text fields a search queries: none when hybrid is off or unavailable, or the
    query has no words (a photo alone is searched by its vector, whatever ``hybrid`` says).

    Raises:
        ConfigurationError: ``hybrid=True`` and the store cannot answer words (not a
            full-text store, a CLASSIC index, no active text field).
    """
    if hybrid is False:
        return []
    why = None
    fields: list[TextField] = []
    if not isinstance(store, TextSearchStore):
        why = f"{type(store).__name__} has no full-text search"
    elif store.index_mode != "ENHANCED":
        why = (
            "the index is CLASSIC; move it to ENHANCED in place, with no re-ingestion and no "
            "charge (S3VectorsStore.update_index_mode('ENHANCED'), crossmodal store upgrade)"
        )
    else:
        fields = [f for f in store.text_fields if f.status == "ACTIVE"]
        if not fields:
            building = [f.key for f in store.text_fields]
            why = (
                f"its text fields {building} are still BUILDING"
                if building
                else "the store has no full-text fields (index the catalog with the searcher, "
                "or add them: crossmodal index --text-field title ...)"
            )
    if why is not None:
        if hybrid is True:
            raise ConfigurationError(f"hybrid search is not available: {why}")
        logger.debug("vector search only: %s", why)
        return []
    return fields[:10] if has_words else []


def check_text_fields(fields: Iterable[str | TextField] | None) -> tuple[TextField, ...]:
    """The searcher's full-text fields: keys or :class:`TextField` values (None: defaults).

    Raises:
        ConfigurationError: Not keys or TextField values, or more than 10.
    """
    if fields is None:
        return DEFAULT_TEXT_FIELDS
    if isinstance(fields, str):
        raise ConfigurationError("text_fields must be a sequence of keys, not a single string")
    out = tuple(f if isinstance(f, TextField) else TextField(f) for f in fields)
    try:
        return validate_text_fields(out)
    except InvalidInputError as exc:
        raise ConfigurationError(f"text_fields: {exc}") from exc


def ensure_text_fields(store: VectorStore, fields: Sequence[TextField]) -> None:
    """Make ``fields`` full-text searchable on ``store`` before indexing into it (their values
    are metadata the searcher writes anyway, so nothing is re-embedded). A store that cannot
    is left as it is, with a log line saying why."""
    if not fields or not isinstance(store, TextSearchStore):
        return
    if store.index_mode != "ENHANCED":
        logger.warning(
            "the index is CLASSIC, so its products get no full-text fields and search stays "
            "vector-only; move it to ENHANCED (in place, free): crossmodal store upgrade"
        )
        return
    have = {f.key: f for f in store.text_fields}
    for f in fields:
        if f.key in have and have[f.key].language != f.language:
            logger.warning(
                "text field %r is analyzed as %s on the store, not %s; keeping the store's",
                f.key,
                have[f.key].language or "standard",
                f.language or "standard",
            )
    missing = [f for f in fields if f.key not in have]
    room = MAX_TEXT_FIELDS - len(have)
    if len(missing) > room:
        logger.warning(
            "the store has %d of %d text fields: %s not added",
            len(have),
            MAX_TEXT_FIELDS,
            ", ".join(f.key for f in missing[room:]),
        )
        missing = missing[:room]
    if missing:
        store.add_text_fields(missing)
        logger.info("full-text search on %s", ", ".join(f.key for f in missing))


def words_for(text: str, fields: Sequence[TextField]) -> str | None:
    """The query's words as sent to full-text search: English stop words left out when the
    fields use the standard analyzer (which keeps them: "in green" would otherwise rank what
    says "in" above what is green), at most 1,024 characters (S3 Vectors' limit)."""
    if all(f.language is None for f in fields):
        kept = [w for w in text.split() if w.strip(_PUNCTUATION).lower() not in ENGLISH_STOP_WORDS]
        text = " ".join(kept)
    if not text.strip():
        return None  # only stop words: the meaning alone ranks
    if len(text) <= _MAX_WORDS_CHARS:
        return text
    cut = text[:_MAX_WORDS_CHARS]
    return cut.rsplit(None, 1)[0] if " " in cut else cut


def hybrid_ranking(
    store: TextSearchStore,
    vector: Vector,
    words: str,
    fields: Sequence[TextField],
    *,
    search_mode: str,
    user_filter: Filter | None,
    top_k: int,
    lexical_weight: float,
    distances: Callable[[Sequence[str]], Mapping[str, float]],
    by_vector: Callable[[], Sequence[VectorHit]] | None = None,
) -> list[HybridHit]:
    """The ``top_k`` products of a hybrid query, best first.

    One store call, unless products have so many vectors (mode ``all``, media segments) that
    the store's 100 results hold fewer than ``top_k`` products: then the call is repeated with
    more results and, if that is still short, ``by_vector`` (the products' vector ranking)
    completes the candidates. ``words`` come from :func:`words_for`; ``distances`` gives the
    distance to ``vector`` of stored keys (for the products found by words alone).
    """
    per_product = 3 if search_mode == "all" else 4 if search_mode in MEDIA_TYPES else 1
    fetch = min(_MAX_TOP_K, max(top_k, top_k * per_product * 2))
    while True:
        matches = store.query_text(
            {f.key: words for f in fields},
            vector=vector,
            top_k=fetch,
            filter=type_filter(search_mode, user_filter),
        )
        hits = _per_product(matches)
        if len(hits) >= top_k or len(matches) < fetch or fetch >= _MAX_TOP_K:
            break
        fetch = min(_MAX_TOP_K, fetch * 2)
    if len(hits) < top_k and len(matches) >= fetch and by_vector is not None:
        _complete(hits, by_vector())
    unmeasured = [h for h in hits if h.distance is None]
    if unmeasured:
        measured = distances([h.key for h in unmeasured])
        for hit in unmeasured:
            hit.distance = measured.get(hit.key)  # None: deleted since the query
    euclidean = store.distance_metric == "euclidean"

    def similarity(distance: float) -> float:
        return 1.0 - distance * distance / 2.0 if euclidean else 1.0 - distance

    best_words = max((sum(h.bm25.values()) for h in hits), default=0.0)
    for hit in hits:
        meaning = 0.0
        if hit.distance is not None:
            meaning = max(similarity(hit.distance), 0.0)
        words_score = sum(hit.bm25.values()) / best_words if best_words > 0 else 0.0
        hit.score = (1.0 - lexical_weight) * meaning + lexical_weight * words_score
    inf = float("inf")
    best = sorted(
        hits,
        key=lambda h: (-h.score, inf if h.distance is None else h.distance, h.product_id),
    )[:top_k]
    language = {f.key: f.language for f in fields}
    inf = float("inf")
    best = sorted(
        hits,
        key=lambda h: (-h.score, inf if h.distance is None else h.distance, h.product_id),
    )[:top_k]
    for hit in best:
        found: list[str] = []
        for key in hit.bm25:
            for word in matched_words(words, hit.metadata.get(key), language.get(key)):
                if word not in found:
                    found.append(word)
        hit.words = sorted(found, key=lambda word: words.find(word))  # in query order
    return best


def _complete(hits: list[HybridHit], ranked: Sequence[VectorHit]) -> None:
    """Add the vector ranking's products to ``hits`` (and their best vector to those known)."""
    known = {h.product_id: h for h in hits}
    for pid, key, distance, metadata in ranked:
        hit = known.get(pid)
        if hit is None:
            hit = known[pid] = HybridHit(pid, key, dict(metadata), distance)
            hits.append(hit)
        elif hit.distance is None or distance < hit.distance:
            hit.key, hit.metadata, hit.distance = key, dict(metadata), distance


def _per_product(matches: Sequence[TextMatch]) -> list[HybridHit]:
    """One hit per product: its closest vector (or, found by words only, its first match),
    with the best BM25 scores any of its vectors had (they share the product's text)."""
    out: dict[str, HybridHit] = {}
    for m in matches:
        md = dict(m.metadata)
        pid = str(md.get("product_id", m.key))
        hit = out.get(pid)
        if hit is None:
            out[pid] = HybridHit(
                pid, m.key, md, m.distance, dict(m.bm25), by_vector=m.distance is not None
            )
            continue
        if sum(m.bm25.values()) > sum(hit.bm25.values()):
            hit.bm25 = dict(m.bm25)
        if m.distance is not None and (hit.distance is None or m.distance < hit.distance):
            hit.key, hit.metadata, hit.distance = m.key, md, m.distance
            hit.by_vector = True
    return list(out.values())
